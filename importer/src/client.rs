//! One `POST batch/`: the body (gzip when on), the answer classified for the retry loop.

use flate2::write::GzEncoder;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What one request came to.
#[derive(Debug)]
pub enum Answer {
    /// 200: one result per item sent, in order; Retry-After when some should be resent.
    Results {
        results: Vec<Value>,
        retry_after: Option<Duration>,
    },
    /// Worth sending again after a while: 429, 502, 503, 504 or a transport error.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 413: the batch is too large as a whole; send it in halves.
    TooLarge,
    /// Nothing will make this request succeed (a bad key, a refused envelope).
    Fatal(String),
}

pub struct Client {
    agent: ureq::Agent,
    url: String,
    authorization: String,
    gzip: AtomicBool,
    /// The key's items per second, from `RateLimit-Policy` (0 until the first answer).
    rate_limit: AtomicU32,
}

impl Client {
    pub fn new(base_url: &str, api_key: &str, gzip: bool) -> Client {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(system_roots())))
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls)
            .build();
        Client {
            agent: config.into(),
            url: format!("{}/api/developer/batch/", base_url.trim_end_matches('/')),
            authorization: format!("Bearer {}", api_key.trim()),
            gzip: AtomicBool::new(gzip),
            rate_limit: AtomicU32::new(0),
        }
    }

    /// Items per second the key may send, once an answer said (`q` of `RateLimit-Policy`).
    pub fn rate_limit(&self) -> Option<u32> {
        Some(self.rate_limit.load(Ordering::Relaxed)).filter(|&q| q > 0)
    }

    pub fn gzip(&self) -> bool {
        self.gzip.load(Ordering::Relaxed)
    }

    pub fn send(&self, items: &[Value]) -> Answer {
        let body = json!({ "batch": items }).to_string().into_bytes();
        let gzip = self.gzip();
        let request = self
            .agent
            .post(&self.url)
            .header("authorization", &self.authorization);
        // Gzip goes as application/octet-stream: a binary type is what both API Gateway and
        // `cargo lambda watch` hand to the function untouched (base64); the local server
        // answers 500 to a gzip body labelled application/json. The API reads the inflated
        // body as JSON whatever the type says.
        let response = if gzip {
            request
                .header("content-type", "application/octet-stream")
                .header("content-encoding", "gzip")
                .send(&compress(&body)[..])
        } else {
            request
                .header("content-type", "application/json")
                .send(&body[..])
        };
        let mut response = match response {
            Ok(response) => response,
            Err(error) => {
                return Answer::Retry {
                    reason: format!("transport: {error}"),
                    retry_after: None,
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if let Some(q) = response
            .headers()
            .get("ratelimit-policy")
            .and_then(|v| v.to_str().ok())
            .and_then(policy_quota)
        {
            self.rate_limit.store(q, Ordering::Relaxed);
        }
        let text = match response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
        {
            Ok(text) => text,
            Err(error) => {
                return Answer::Retry {
                    reason: format!("reading the answer: {error}"),
                    retry_after: None,
                }
            }
        };
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        match status {
            200 => match body["results"].as_array() {
                Some(results) if results.len() == items.len() => Answer::Results {
                    results: results.clone(),
                    retry_after,
                },
                _ => Answer::Fatal(format!("200 without one result per item: {text:.200}")),
            },
            429 | 502 | 503 | 504 => Answer::Retry {
                reason: format!("{status} {code}").trim().to_owned(),
                retry_after,
            },
            413 if items.len() > 1 => Answer::TooLarge,
            415 if gzip => {
                // Something in front of the API does not take gzip: plain from now on.
                self.gzip.store(false, Ordering::Relaxed);
                Answer::Retry {
                    reason: "415: gzip refused, sending uncompressed".into(),
                    retry_after: Some(Duration::ZERO),
                }
            }
            _ => Answer::Fatal(format!(
                "{status} {code}: {}",
                body["error"]["message"].as_str().unwrap_or(&text)
            )),
        }
    }
}

/// The smallest `q` of `"key";q=100;w=1, "org";q=400;w=1`: the key's quota, or its org's
/// when that is lower (the org's keys share it, so this is an upper bound).
fn policy_quota(policy: &str) -> Option<u32> {
    policy
        .split([';', ','])
        .filter_map(|part| part.trim().strip_prefix("q="))
        .filter_map(|q| q.parse().ok())
        .min()
}

fn compress(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The system's trusted roots (rustls-native-certs); none is fine for plain http.
fn system_roots() -> Vec<ureq::tls::Certificate<'static>> {
    rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_quota_is_read_from_the_policy() {
        assert_eq!(super::policy_quota("\"default\";q=250;w=1"), Some(250));
        let both = "\"key\";q=250;w=1, \"org\";q=100;w=1";
        assert_eq!(super::policy_quota(both), Some(100));
        assert_eq!(super::policy_quota("nonsense"), None);
    }
}
