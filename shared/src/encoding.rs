//! Request bodies sent with `Content-Encoding: gzip`: inflated with a hard cap checked while
//! inflating, so a small bomb costs at most the cap in memory and answers 413.

use crate::error::ApiError;
use std::borrow::Cow;
use std::io::Read;

/// Largest accepted request body (after inflating); far below Lambda's 6 MB so a 413 is
/// ours, with our shape. A batch item is held to it too.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The body as the handler sees it: as sent, or inflated when `content_encoding` is gzip.
/// Over `limit` bytes (after inflating) is 413 `payload_too_large`; a corrupt gzip stream is
/// 400 `invalid_encoding`; any encoding but `gzip`/`x-gzip`/`identity` is 415
/// `unsupported_encoding`.
pub fn decode_body<'a>(
    content_encoding: Option<&[u8]>,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit };
    let encoding = content_encoding
        .map(|value| std::str::from_utf8(value).map(str::trim))
        .transpose()
        .map_err(|_| ApiError::UnsupportedEncoding)?
        .unwrap_or("");
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        if body.len() > limit {
            return Err(too_large);
        }
        return Ok(Cow::Borrowed(body));
    }
    if !(encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip")) {
        return Err(ApiError::UnsupportedEncoding);
    }
    // One byte more than allowed tells "at the limit" from "over it"; the decoder never
    // produces more than it is asked for.
    let mut inflated = Vec::with_capacity(body.len().saturating_mul(4).min(limit + 1));
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|_| ApiError::InvalidEncoding)?;
    if inflated.len() > limit {
        return Err(too_large);
    }
    Ok(Cow::Owned(inflated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_is_inflated_and_plain_passes() {
        let body = br#"{"email": "a@b.c"}"#;
        assert_eq!(
            decode_body(Some(b"gzip"), &gzip(body), 100)
                .unwrap()
                .as_ref(),
            body
        );
        assert_eq!(
            decode_body(Some(b" GZip "), &gzip(body), 100)
                .unwrap()
                .as_ref(),
            body
        );
        assert_eq!(decode_body(None, body, 100).unwrap().as_ref(), body);
        assert_eq!(
            decode_body(Some(b"identity"), body, 100).unwrap().as_ref(),
            body
        );
    }

    #[test]
    fn the_limit_applies_to_the_inflated_size() {
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "{}", bomb.len());
        let error = decode_body(Some(b"gzip"), &bomb, 1024 * 1024).unwrap_err();
        assert_eq!(error.code(), "payload_too_large");
        let exact = gzip(&[b' '; 100]);
        assert!(decode_body(Some(b"gzip"), &exact, 100).is_ok());
        assert!(decode_body(Some(b"gzip"), &exact, 99).is_err());
        assert_eq!(
            decode_body(None, &[b' '; 101], 100).unwrap_err().code(),
            "payload_too_large"
        );
    }

    #[test]
    fn corrupt_streams_and_unknown_encodings_are_refused() {
        let mut corrupt = gzip(b"{\"a\": 1}");
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        for body in [&corrupt[..], b"{\"a\": 1}", &gzip(b"{}")[..10]] {
            let error = decode_body(Some(b"gzip"), body, 100).unwrap_err();
            assert_eq!(error.code(), "invalid_encoding");
            assert_eq!(error.status(), 400);
        }
        for encoding in [&b"br"[..], b"deflate", b"gzip, br", b"\xff"] {
            let error = decode_body(Some(encoding), b"{}", 100).unwrap_err();
            assert_eq!(error.code(), "unsupported_encoding");
            assert_eq!(error.status(), 415);
        }
    }
}
