//! Idempotency of `events/`: the `Idempotency-Key` header, the event id derived from it,
//! the request body's fingerprint, and what a stored event means for a retry.
//!
//! With a key, the event id is derived from it and the event item is the idempotency
//! record: one create-only PutItem decides, for any number of concurrent retries, which
//! request stored it. Without one, the event id is random.

use crate::error::ApiError;
use lambda_http::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest accepted `Idempotency-Key` header.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// A valid `Idempotency-Key`: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The `Idempotency-Key` header, if sent.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get("idempotency-key") else {
            return Ok(None);
        };
        let key = value.to_str().map_err(|_| Self::invalid())?;
        Self::parse(key).map(Some)
    }

    /// A key sent as text (a header's value, a batch item's `idempotency_key`), trimmed.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let key = raw.trim();
        let printable = key.bytes().all(|b| (0x20..0x7f).contains(&b));
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_CHARS || !printable {
            return Err(Self::invalid());
        }
        Ok(IdempotencyKey(key.to_owned()))
    }

    fn invalid() -> ApiError {
        ApiError::InvalidIdempotencyKey {
            max: MAX_IDEMPOTENCY_KEY_CHARS,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the event this key stores: the same for every retry (per org, as event
    /// keys are under the org).
    pub fn event_id(&self) -> String {
        format!("evt_{}", &sha256_hex(self.0.as_bytes())[..32])
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A random event id, for an event sent without a key.
pub fn new_event_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS random generator is available");
    format!("evt_{}", hex::encode(bytes))
}

/// Hash of the request body with keys sorted, so a retry that re-serializes the same
/// JSON in another key order still counts as the same body. Computed from a body that
/// already parsed as an event (so it is valid JSON), and only when a key was sent.
pub fn body_fingerprint(body: &[u8]) -> Result<String, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(fingerprint(&value))
}

/// [`body_fingerprint`] of a body already parsed: the hash stored events hold.
pub fn fingerprint(body: &Value) -> String {
    sha256_hex(body.to_string().as_bytes())
}

/// An event request's idempotency: the event id to store, and with a key, the key and
/// the body's fingerprint that the stored event records.
#[derive(Debug, Clone, PartialEq)]
pub struct Idempotency {
    pub event_id: String,
    pub keyed: Option<(IdempotencyKey, String)>,
}

/// What an existing event at the request's id means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Without a key the id is random, so an existing item is this very request's own
    /// PutItem, retried by the SDK after its response was lost: a first answer.
    OwnWrite,
    /// The same key with the same body: a replay of the stored event.
    Replay,
}

impl Idempotency {
    /// `fingerprint` (the body's) is only computed with a key.
    pub fn of(
        key: Option<IdempotencyKey>,
        fingerprint: impl FnOnce() -> Result<String, ApiError>,
    ) -> Result<Self, ApiError> {
        Ok(match key {
            Some(key) => Idempotency {
                event_id: key.event_id(),
                keyed: Some((key, fingerprint()?)),
            },
            None => Idempotency {
                event_id: new_event_id(),
                keyed: None,
            },
        })
    }

    /// `(key, fingerprint)` as the event item stores them.
    pub fn stored(&self) -> Option<(&str, &str)> {
        self.keyed
            .as_ref()
            .map(|(key, fingerprint)| (key.as_str(), fingerprint.as_str()))
    }

    /// The replay decision for an event already stored at this id with `stored_fingerprint`:
    /// a different body under the same key is refused (422 `idempotency_key_reused`).
    pub fn existing(&self, stored_fingerprint: Option<&str>) -> Result<Existing, ApiError> {
        match &self.keyed {
            None => Ok(Existing::OwnWrite),
            Some((_, fingerprint)) if stored_fingerprint == Some(fingerprint.as_str()) => {
                Ok(Existing::Replay)
            }
            Some(_) => Err(ApiError::IdempotencyKeyReused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", value.parse().unwrap());
        headers
    }

    #[test]
    fn keys_are_trimmed_printable_and_bounded() {
        let key = IdempotencyKey::from_headers(&headers(" k-1 ")).unwrap();
        assert_eq!(key.unwrap().as_str(), "k-1");
        assert_eq!(IdempotencyKey::from_headers(&HeaderMap::new()), Ok(None));
        for bad in ["", "   ", &"k".repeat(256)] {
            assert!(
                IdempotencyKey::from_headers(&headers(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn one_key_one_event_id_and_bodies_compare_in_any_key_order() {
        let key = |raw: &str| IdempotencyKey(raw.to_owned());
        assert_eq!(key("a").event_id(), key("a").event_id());
        assert_ne!(key("a").event_id(), key("b").event_id());
        assert_eq!(key("a").event_id().len(), 4 + 32);
        assert_eq!(
            body_fingerprint(br#"{"a":1,"b":2}"#),
            body_fingerprint(br#"{ "b": 2, "a": 1 }"#)
        );
    }

    #[test]
    fn the_replay_decision() {
        let keyed =
            Idempotency::of(Some(IdempotencyKey("k".into())), || body_fingerprint(b"{}")).unwrap();
        let fingerprint = keyed.stored().unwrap().1.to_owned();
        assert_eq!(keyed.existing(Some(&fingerprint)), Ok(Existing::Replay));
        assert_eq!(
            keyed.existing(Some("other")),
            Err(ApiError::IdempotencyKeyReused)
        );
        assert_eq!(keyed.existing(None), Err(ApiError::IdempotencyKeyReused));
        let keyless = Idempotency::of(None, || unreachable!("no key, no fingerprint")).unwrap();
        assert!(keyless.event_id.starts_with("evt_"));
        assert_eq!(keyless.existing(None), Ok(Existing::OwnWrite));
    }

    #[test]
    fn a_parsed_body_has_the_fingerprint_of_its_bytes() {
        // Stored events hold `body_fingerprint` of the raw body: a retry parsed once must
        // still match them.
        for body in [
            &br#"{"event":"app_opened","user":{"external_user_id":"u"}}"#[..],
            br#"{ "user": {"email": "A@x.io", "external_user_id": "u"}, "event": "x" }"#,
            br#"{"event":"p","properties":{"amount":"9.50","n":1.0,"big":18446744073709551615,"neg":-3,"s":"\u00e9\n"},"user":{"external_user_id":"u"}}"#,
            br#"{"event":"e","unknown":[1,{"b":null,"a":true}],"user":{"external_user_id":"u"}}"#,
        ] {
            let parsed = crate::fields::json_without_repeated_keys(body).unwrap();
            assert_eq!(Ok(fingerprint(&parsed)), body_fingerprint(body));
        }
        assert!(crate::fields::json_without_repeated_keys(br#"{"a":{"b":1,"b":2}}"#).is_none());
    }
}
