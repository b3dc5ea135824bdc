//! The request headers we parse ourselves: `Authorization` (scheme, token, key id) and
//! `Idempotency-Key`, from arbitrary bytes as API Gateway may pass them.
#![no_main]

use lambda_http::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use shared::auth;
use shared::idempotency::IdempotencyKey;

fuzz_target!(|raw: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(raw) else {
        return;
    };
    if let Ok(token) = auth::bearer_token(value.to_str().ok()) {
        if let Some(key_id) = auth::key_id_of(token) {
            assert!(token.contains(key_id));
        }
        auth::hash_secret(token);
    }
    let mut headers = HeaderMap::new();
    headers.insert("idempotency-key", value);
    if let Ok(Some(key)) = IdempotencyKey::from_headers(&headers) {
        assert!(!key.as_str().is_empty() && key.as_str().len() <= 255);
    }
});
