//! API keys: the secret format, hashing, and the warm-instance lookup cache.
//!
//! A secret looks like `dfk_live_<key_id>_<secret>`: the key id (16 hex chars) names the
//! one item to GetItem, and only the SHA-256 of the whole secret is stored and compared.
//! A malformed secret is refused without touching DynamoDB.

use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::store::Store;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a warm instance trusts what it read about a key. A revoked key stops working
/// at most this long after `admin keys revoke`.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// How often a warm instance records that a key was used (`last_used_at`): at most one
/// write per key per instance per this interval, never one per request.
pub const LAST_USED_INTERVAL: Duration = Duration::from_secs(3600);
/// Most keys (valid or not) a warm instance remembers; past it the cache starts afresh.
const KEY_CACHE_CAPACITY: usize = 10_000;
pub const SECRET_PREFIX: &str = "dfk_";
const KEY_ID_HEX_CHARS: usize = 16;
const SECRET_HEX_CHARS: usize = 48;

/// The stored API key item (`APIKEY#<key_id>`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub org_id: String,
    pub org_name: String,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Set when a key is rotated: it keeps working until then.
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    /// Requests per second for this key (`admin keys set-rate-limit`).
    pub rate_limit: Option<u32>,
    /// Requests per second for each key of the org (`admin orgs set-rate-limit`).
    pub org_rate_limit: Option<u32>,
    /// Requests per second of all the org's keys together (`admin orgs set-total-rate-limit`).
    pub org_total_rate_limit: Option<u32>,
    /// The org's lifecycle thresholds (`admin orgs set-lifecycle`), copied on its keys so
    /// that a read needs no org lookup.
    pub lifecycle: Option<crate::states::StageSettings>,
}

impl ApiKeyRecord {
    /// The key's own limit, else its org's, else the default.
    pub fn effective_rate_limit(&self) -> u32 {
        self.rate_limit
            .or(self.org_rate_limit)
            .unwrap_or(crate::ratelimit::DEFAULT_RATE_LIMIT)
    }

    /// The limit of all the org's keys together: the org's total, else
    /// [`crate::ratelimit::DEFAULT_ORG_FACTOR`] times the key's limit (so that a key given
    /// a high limit of its own is not held back by a default it never chose).
    pub fn effective_org_rate_limit(&self) -> u32 {
        self.org_total_rate_limit.unwrap_or_else(|| {
            self.effective_rate_limit()
                .saturating_mul(crate::ratelimit::DEFAULT_ORG_FACTOR)
        })
    }

    /// Whether the key may be used at `now` (stored timestamps compare as strings).
    pub fn is_active_at(&self, now: &str) -> bool {
        let ended = |at: &Option<String>| at.as_deref().is_some_and(|at| at <= now);
        !ended(&self.revoked_at) && !ended(&self.expires_at)
    }
}

/// Who is calling: the org the key acts for and the key itself.
pub type Caller = ApiKeyRecord;

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A freshly generated secret. `secret` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub secret: String,
    pub key_id: String,
    /// What lists show to recognize a key: `dfk_live_<key_id>`.
    pub prefix: String,
    pub hash: String,
}

fn random_hex(chars: usize) -> String {
    let mut bytes = vec![0u8; chars / 2];
    getrandom::fill(&mut bytes).expect("the OS random generator is available");
    hex::encode(bytes)
}

/// A new secret from the OS random generator: 64 bits of key id, 192 bits of secret.
pub fn generate_secret(environment: &str) -> NewSecret {
    let key_id = random_hex(KEY_ID_HEX_CHARS);
    let prefix = format!("{SECRET_PREFIX}{environment}_{key_id}");
    let secret = format!("{prefix}_{}", random_hex(SECRET_HEX_CHARS));
    NewSecret {
        hash: hash_secret(&secret),
        key_id,
        prefix,
        secret,
    }
}

/// The key id inside a well-formed secret.
pub fn key_id_of(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(SECRET_PREFIX)?;
    let (environment, rest) = rest.split_once('_')?;
    let (key_id, random) = rest.split_once('_')?;
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let well_formed = !environment.is_empty()
        && environment.bytes().all(|b| b.is_ascii_lowercase())
        && is_hex(key_id, KEY_ID_HEX_CHARS)
        && is_hex(random, SECRET_HEX_CHARS);
    well_formed.then_some(key_id)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, ApiError> {
    let value = header.ok_or(ApiError::MissingAuthorization)?.trim();
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(ApiError::MissingAuthorization)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::MissingAuthorization);
    }
    Ok(token.trim())
}

/// What an instance knows about a secret: when it looked, and the active record (if any).
type CachedKey = (Instant, Option<Arc<ApiKeyRecord>>);

#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, CachedKey>>,
    /// When this instance last recorded each key's use.
    recorded_use: Mutex<HashMap<String, Instant>>,
}

impl KeyCache {
    fn get(&self, hash: &str) -> Option<Option<Arc<ApiKeyRecord>>> {
        let entries = self.entries.lock().expect("cache lock");
        entries
            .get(hash)
            .filter(|(fetched, _)| fetched.elapsed() < KEY_CACHE_TTL)
            .map(|(_, record)| record.clone())
    }

    fn put(&self, hash: String, record: Option<Arc<ApiKeyRecord>>) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= KEY_CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(hash, (Instant::now(), record));
    }

    /// True at most once per [`LAST_USED_INTERVAL`] per key: time to record its use.
    fn use_is_due(&self, key_id: &str) -> bool {
        let mut recorded = self.recorded_use.lock().expect("cache lock");
        let due = recorded
            .get(key_id)
            .is_none_or(|at| at.elapsed() >= LAST_USED_INTERVAL);
        if due {
            if recorded.len() >= KEY_CACHE_CAPACITY {
                recorded.clear();
            }
            recorded.insert(key_id.to_owned(), Instant::now());
        }
        due
    }
}

/// Resolves the caller of a request: one GetItem per key per [`KEY_CACHE_TTL`]. Warm
/// requests share the cached record (no copy per request).
pub async fn authenticate(
    store: &Store,
    cache: &KeyCache,
    authorization: Option<&str>,
) -> Result<Arc<Caller>, ApiError> {
    let token = bearer_token(authorization)?;
    let key_id = key_id_of(token).ok_or(ApiError::InvalidApiKey)?;
    let hash = hash_secret(token);
    let record = match cache.get(&hash) {
        Some(record) => record,
        None => {
            let record = store
                .api_key::<ApiKeyRecord>(key_id)
                .await?
                .filter(|record| record.secret_hash == hash)
                .map(Arc::new);
            cache.put(hash, record.clone());
            record
        }
    };
    let now = Timestamp::now().to_stored();
    let caller = record
        .filter(|record| record.is_active_at(&now))
        .ok_or(ApiError::InvalidApiKey)?;
    if cache.use_is_due(&caller.key_id) {
        // Off the request path: the answer does not wait for this bookkeeping write.
        let (store, key_id) = (store.clone(), caller.key_id.clone());
        tokio::spawn(async move { store.record_key_use(&key_id, &now).await });
    }
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_and_hash() {
        let new = generate_secret("live");
        assert!(new.secret.starts_with("dfk_live_"));
        assert_eq!(key_id_of(&new.secret), Some(new.key_id.as_str()));
        assert_eq!(new.hash, hash_secret(&new.secret));
        assert_ne!(new.secret, generate_secret("live").secret);
    }

    #[test]
    fn malformed_secrets_have_no_key_id() {
        for bad in [
            "",
            "dfk_live_",
            "dfk_live_abc_def",
            "sk_live_0123456789abcdef_00",
            "dfk__0123456789abcdef_",
        ] {
            assert_eq!(key_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn bearer_scheme_is_required() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Ok("abc"));
        for bad in [
            None,
            Some(""),
            Some("Basic abc"),
            Some("Bearer"),
            Some("Bearer   "),
            Some("abc"),
        ] {
            assert_eq!(
                bearer_token(bad),
                Err(ApiError::MissingAuthorization),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn revoked_and_expired_keys_are_inactive() {
        let record = ApiKeyRecord {
            key_id: "k".into(),
            org_id: "o".into(),
            org_name: "O".into(),
            name: "n".into(),
            prefix: "p".into(),
            secret_hash: "h".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            revoked_at: None,
            expires_at: Some("2026-06-01T00:00:00.000Z".into()),
            last_used_at: None,
            rate_limit: None,
            org_rate_limit: None,
            org_total_rate_limit: None,
            lifecycle: None,
        };
        assert!(record.is_active_at("2026-05-31T23:59:59.999Z"));
        assert!(!record.is_active_at("2026-06-01T00:00:00.000Z"));
        let revoked = ApiKeyRecord {
            revoked_at: Some("2026-02-01T00:00:00.000Z".into()),
            ..record
        };
        assert!(!revoked.is_active_at("2026-03-01T00:00:00.000Z"));
    }
}
