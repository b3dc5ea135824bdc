//! Administration of orgs and API keys (the `admin` CLI, and the tests' setup), over the
//! same table and key schema as the functions. Not on the request path, so it may read
//! before it writes; every write is still conditional so two admins cannot silently
//! overwrite each other.

use crate::auth::{generate_secret, hash_secret, key_id_of, ApiKeyRecord, NewSecret};
use crate::fields::Timestamp;
use crate::states::StageSettings;
use crate::store::keys::OrgList;
use crate::store::ops::orgs::{
    KeyEnd, KeyEnded, Migrated, NewApiKey, OrgRecord, RateLimitOf, SettingOf,
};
use crate::store::table::TableStream;
use crate::store::Store;
use serde::Serialize;
use std::time::Duration;

/// Every failure of a command: printed as one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no org with id `{0}` (create it with `admin orgs create`, or pass --create-org)")]
    NoSuchOrg(String),
    #[error("an org with id `{0}` already exists")]
    OrgExists(String),
    #[error("org ids are 1 to 64 characters of a-z, 0-9, `-` and `_`: `{0}` is not")]
    BadOrgId(String),
    #[error("{0}")]
    BadSetting(String),
    #[error("no API key with id `{0}`")]
    NoSuchKey(String),
    #[error("API key `{0}` is already revoked")]
    AlreadyRevoked(String),
    #[error("API key `{0}` has expired: create a new key (`admin keys create`) instead")]
    AlreadyExpired(String),
    #[error("DynamoDB ({table}): {detail}")]
    Storage { table: String, detail: String },
    #[error("{}", store_failure(.0))]
    Store(#[from] crate::error::ApiError),
}

type Result<T> = std::result::Result<T, AdminError>;

fn store_failure(error: &crate::error::ApiError) -> &'static str {
    match error {
        crate::error::ApiError::StorageUnavailable => {
            "DynamoDB is unreachable, timing out or throttling: is DynamoDB Local running (make run), \
             or are AWS credentials and AWS_REGION set? (RUST_LOG=warn shows the detail)"
        }
        _ => "DynamoDB refused the request: does the table exist (admin table create)? \
              (RUST_LOG=warn shows the detail)",
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// Requests per second for each of its keys that sets none itself.
    pub rate_limit: Option<u32>,
    /// Requests per second of all its keys together (unset: see
    /// [`ApiKeyRecord::effective_org_rate_limit`]).
    pub total_rate_limit: Option<u32>,
    /// Its lifecycle thresholds (unset: the defaults).
    pub lifecycle: Option<StageSettings>,
}

impl From<OrgRecord> for Org {
    fn from(record: OrgRecord) -> Self {
        Org {
            id: record.org_id,
            name: record.name,
            created_at: record.created_at,
            rate_limit: record.rate_limit,
            total_rate_limit: record.total_rate_limit,
            lifecycle: record.lifecycle,
        }
    }
}

/// What `keys create` and `keys rotate` print: the secret, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    pub key: String,
    pub key_id: String,
    pub org_id: String,
    pub prefix: String,
}

/// What `keys list` shows: never the secret or its hash.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyListing {
    pub key_id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub expires_at: Option<String>,
    /// The requests per second the key gets (its own, its org's, or the default).
    pub rate_limit: u32,
    /// The requests per second all the org's keys get together, as this key sees it.
    pub org_rate_limit: u32,
}

impl From<ApiKeyRecord> for KeyListing {
    fn from(record: ApiKeyRecord) -> Self {
        KeyListing {
            rate_limit: record.effective_rate_limit(),
            org_rate_limit: record.effective_org_rate_limit(),
            key_id: record.key_id,
            name: record.name,
            prefix: record.prefix,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            revoked_at: record.revoked_at,
            expires_at: record.expires_at,
        }
    }
}

pub fn validate_org_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(AdminError::BadOrgId(id.to_owned()))
    }
}

pub async fn create_table(store: &Store, stream: TableStream) -> Result<bool> {
    store
        .create_table(stream)
        .await
        .map_err(|detail| AdminError::Storage {
            table: store.table().to_owned(),
            detail,
        })
}

/// Gives email aliases and messages written before erasure listed them their index keys
/// (see `store::ops::backfill`): one pass over the table, idempotent.
pub async fn index_for_erasure(store: &Store) -> Result<crate::store::ops::backfill::Indexed> {
    Ok(store.index_for_erasure().await?)
}

/// Moves every record of the org-wide lists (segment, inbox, bookings) written before
/// the lists were sharded into its shard, for `org` or every org: idempotent, resumable
/// (see `Store::migrate_list`). What it did, per org and list.
pub async fn migrate_shards(
    store: &Store,
    org: Option<&str>,
) -> Result<Vec<(String, OrgList, Migrated)>> {
    let orgs = match org {
        Some(id) => vec![
            get_org(store, id)
                .await?
                .ok_or_else(|| AdminError::NoSuchOrg(id.to_owned()))?
                .id,
        ],
        None => list_orgs(store).await?.into_iter().map(|o| o.id).collect(),
    };
    let mut done = Vec::new();
    for org in orgs {
        for list in OrgList::ALL {
            let migrated = store.migrate_list(&org, list).await?;
            done.push((org.clone(), list, migrated));
        }
    }
    Ok(done)
}

pub async fn create_org(store: &Store, id: &str, name: &str) -> Result<Org> {
    validate_org_id(id)?;
    let created_at = Timestamp::now().to_stored();
    if !store.create_org(id, name, &created_at).await? {
        return Err(AdminError::OrgExists(id.to_owned()));
    }
    Ok(Org {
        id: id.to_owned(),
        name: name.to_owned(),
        created_at,
        rate_limit: None,
        total_rate_limit: None,
        lifecycle: None,
    })
}

pub async fn get_org(store: &Store, id: &str) -> Result<Option<Org>> {
    validate_org_id(id)?;
    Ok(store.org(id).await?.map(Org::from))
}

pub async fn list_orgs(store: &Store) -> Result<Vec<Org>> {
    let orgs = store.orgs().await?;
    Ok(orgs.into_iter().map(Org::from).collect())
}

/// Creates an API key for an existing org (or, with `create_org`, creates the org first).
pub async fn create_key(
    store: &Store,
    org_id: &str,
    name: &str,
    create_org: bool,
    environment: &str,
) -> Result<CreatedKey> {
    create_key_with_limit(store, org_id, name, create_org, environment, None).await
}

/// [`create_key`] with the key's own rate limit (requests per second).
pub async fn create_key_with_limit(
    store: &Store,
    org_id: &str,
    name: &str,
    create_org: bool,
    environment: &str,
    rate_limit: Option<u32>,
) -> Result<CreatedKey> {
    let org = match get_org(store, org_id).await? {
        Some(org) => org,
        None if create_org => match self::create_org(store, org_id, org_id).await {
            Ok(org) => org,
            Err(AdminError::OrgExists(_)) => get_org(store, org_id)
                .await?
                .ok_or_else(|| AdminError::NoSuchOrg(org_id.into()))?,
            Err(e) => return Err(e),
        },
        None => return Err(AdminError::NoSuchOrg(org_id.to_owned())),
    };
    let secret = generate_secret(environment);
    store_key(store, &org, name, &secret, rate_limit).await?;
    Ok(CreatedKey {
        key: secret.secret,
        key_id: secret.key_id,
        org_id: org.id,
        prefix: secret.prefix,
    })
}

/// Stores a key with a given secret (tests and fixtures, whose secret is fixed).
pub async fn insert_key(store: &Store, org_id: &str, name: &str, secret: &str) -> Result<()> {
    let org = get_org(store, org_id)
        .await?
        .ok_or_else(|| AdminError::NoSuchOrg(org_id.to_owned()))?;
    let key_id = key_id_of(secret).expect("a well-formed secret").to_owned();
    let prefix =
        secret[..secret.len() - secret.rsplit('_').next().map_or(0, |r| r.len() + 1)].to_owned();
    let secret = NewSecret {
        secret: secret.to_owned(),
        key_id,
        prefix,
        hash: hash_secret(secret),
    };
    store_key(store, &org, name, &secret, None).await
}

async fn store_key(
    store: &Store,
    org: &Org,
    name: &str,
    secret: &NewSecret,
    rate_limit: Option<u32>,
) -> Result<()> {
    let created_at = Timestamp::now().to_stored();
    let key = NewApiKey {
        key_id: &secret.key_id,
        org_id: &org.id,
        org_name: &org.name,
        name,
        prefix: &secret.prefix,
        secret_hash: &secret.hash,
        created_at: &created_at,
        rate_limit,
        org_rate_limit: org.rate_limit,
        org_total_rate_limit: org.total_rate_limit,
        lifecycle: org.lifecycle,
    };
    if store.create_api_key(&key).await? {
        return Ok(());
    }
    // 64 random bits of key id: a collision is a storage-level surprise, not a user error.
    Err(AdminError::Storage {
        table: store.table().to_owned(),
        detail: format!("key id {} already exists; try again", secret.key_id),
    })
}

pub async fn get_key(store: &Store, key_id: &str) -> Result<ApiKeyRecord> {
    store
        .api_key(key_id)
        .await?
        .ok_or_else(|| AdminError::NoSuchKey(key_id.to_owned()))
}

pub async fn list_keys(store: &Store, org_id: &str) -> Result<Vec<KeyListing>> {
    if get_org(store, org_id).await?.is_none() {
        return Err(AdminError::NoSuchOrg(org_id.to_owned()));
    }
    let keys = store.org_api_keys::<ApiKeyRecord>(org_id).await?;
    Ok(keys.into_iter().map(KeyListing::from).collect())
}

/// Ends a key at `at` (now for revoke, later for a rotation's grace period).
async fn end_key(store: &Store, key_id: &str, end: KeyEnd, at: &str) -> Result<()> {
    let now = Timestamp::now().to_stored();
    match store.end_api_key(key_id, end, at, &now).await? {
        KeyEnded::Ended => Ok(()),
        KeyEnded::AlreadyRevoked => Err(AdminError::AlreadyRevoked(key_id.to_owned())),
        KeyEnded::AlreadyExpired => Err(AdminError::AlreadyExpired(key_id.to_owned())),
        KeyEnded::NoSuchKey => Err(AdminError::NoSuchKey(key_id.to_owned())),
    }
}

/// Revokes a key now. Functions stop accepting it within `shared::auth::KEY_CACHE_TTL`.
pub async fn revoke_key(store: &Store, key_id: &str) -> Result<String> {
    let now = Timestamp::now().to_stored();
    end_key(store, key_id, KeyEnd::Revoked, &now).await?;
    Ok(now)
}

/// Creates a replacement key (same org and name) and lets the old one work for `grace`
/// (or until its earlier expiry: a rotation never extends a key's life). A revoked or
/// expired key is refused: rotating must never revive it. The old key's expiry is set
/// first (conditionally), so a refused rotation creates no key.
pub async fn rotate_key(
    store: &Store,
    key_id: &str,
    grace: Duration,
) -> Result<(CreatedKey, String)> {
    let old = get_key(store, key_id).await?;
    if old.revoked_at.is_some() {
        return Err(AdminError::AlreadyRevoked(key_id.to_owned()));
    }
    let now = Timestamp::now().to_stored();
    if old
        .expires_at
        .as_deref()
        .is_some_and(|at| at <= now.as_str())
    {
        return Err(AdminError::AlreadyExpired(key_id.to_owned()));
    }
    let ends = expiry_after(grace);
    let ends = match old.expires_at {
        Some(earlier) if earlier < ends => earlier,
        _ => ends,
    };
    end_key(store, key_id, KeyEnd::Expires, &ends).await?;
    let environment = old
        .prefix
        .strip_prefix("dfk_")
        .and_then(|p| p.split('_').next())
        .unwrap_or("live")
        .to_owned();
    let new = create_key(store, &old.org_id, &old.name, false, &environment).await?;
    Ok((new, ends))
}

/// The stored time `after` from now.
fn expiry_after(after: Duration) -> String {
    Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc() + after).to_stored()
}

/// Lets a key work for `after` from now (a rotated key's grace, a short-lived key such as
/// the deploy's smoke test key). Returns when it ends.
pub async fn expire_key_after(store: &Store, key_id: &str, after: Duration) -> Result<String> {
    let ends = expiry_after(after);
    end_key(store, key_id, KeyEnd::Expires, &ends).await?;
    Ok(ends)
}

/// Whether a secret is a usable key in this table (used by `make run` to reuse its key).
pub async fn verify_secret(store: &Store, secret: &str) -> Result<bool> {
    let Some(key_id) = key_id_of(secret) else {
        return Ok(false);
    };
    match get_key(store, key_id).await {
        Ok(record) => Ok(record.secret_hash == hash_secret(secret)
            && record.is_active_at(&Timestamp::now().to_stored())),
        Err(AdminError::NoSuchKey(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets a key's own rate limit (`None`: back to its org's or the default). Functions use
/// it within their key cache time (30 s).
pub async fn set_key_rate_limit(store: &Store, key_id: &str, limit: Option<u32>) -> Result<()> {
    if store
        .set_rate_limit(RateLimitOf::Key(key_id), limit)
        .await?
    {
        Ok(())
    } else {
        Err(AdminError::NoSuchKey(key_id.to_owned()))
    }
}

/// Sets the rate limit of every key of an org that has none of its own (and of keys
/// created later). Returns how many keys it updated.
pub async fn set_org_rate_limit(store: &Store, org_id: &str, limit: Option<u32>) -> Result<usize> {
    set_org_limit(
        store,
        org_id,
        limit,
        |o| RateLimitOf::Org(o),
        |k| RateLimitOf::KeysOrg(k),
    )
    .await
}

/// Sets the rate limit of all the org's keys together (`None`: back to the default, a
/// multiple of each key's limit). Returns how many keys it updated.
pub async fn set_org_total_rate_limit(
    store: &Store,
    org_id: &str,
    limit: Option<u32>,
) -> Result<usize> {
    set_org_limit(
        store,
        org_id,
        limit,
        |o| RateLimitOf::OrgTotal(o),
        |k| RateLimitOf::KeysOrgTotal(k),
    )
    .await
}

/// Sets a limit on the org item and its copy on each of its keys.
async fn set_org_limit(
    store: &Store,
    org_id: &str,
    limit: Option<u32>,
    on_org: fn(&str) -> RateLimitOf<'_>,
    on_key: fn(&str) -> RateLimitOf<'_>,
) -> Result<usize> {
    on_org_and_keys(
        org_id,
        async |of| match of {
            SettingOf::Org(org) => store.set_rate_limit(on_org(org), limit).await,
            SettingOf::Key(key) => store.set_rate_limit(on_key(key), limit).await,
        },
        store,
    )
    .await
}

/// Sets (`None`: removes, back to the defaults 7/7/30/90) an org's lifecycle thresholds,
/// validated (see [`StageSettings::validated`]); the keys' copies are read within their
/// key cache time (30 s). Returns how many keys it updated.
pub async fn set_org_lifecycle(
    store: &Store,
    org_id: &str,
    settings: Option<StageSettings>,
) -> Result<usize> {
    let settings = settings
        .map(StageSettings::validated)
        .transpose()
        .map_err(AdminError::BadSetting)?;
    on_org_and_keys(
        org_id,
        async |of| store.set_lifecycle(of, settings.as_ref()).await,
        store,
    )
    .await
}

/// Most reminder offsets an org may set, and the longest (30 days, in minutes).
pub const MAX_REMINDERS: usize = 10;
pub const MAX_REMINDER_MINUTES: u32 = 30 * 1440;

/// Sets (`None`: removes, back to the defaults 24 h and 1 h) an org's booking reminder
/// offsets in minutes: 0 to [`MAX_REMINDERS`] distinct offsets of 1 to
/// [`MAX_REMINDER_MINUTES`]. Applies to bookings whose schedule is written afterwards;
/// armed timers of removed offsets are dropped when they fall due.
pub async fn set_org_reminders(
    store: &Store,
    org_id: &str,
    minutes: Option<Vec<u32>>,
) -> Result<()> {
    validate_org_id(org_id)?;
    if let Some(minutes) = &minutes {
        let distinct: std::collections::BTreeSet<&u32> = minutes.iter().collect();
        if minutes.len() > MAX_REMINDERS
            || distinct.len() != minutes.len()
            || minutes
                .iter()
                .any(|m| !(1..=MAX_REMINDER_MINUTES).contains(m))
        {
            return Err(AdminError::BadSetting(format!(
                "reminders: at most {MAX_REMINDERS} distinct offsets of 1 to {MAX_REMINDER_MINUTES} minutes"
            )));
        }
    }
    if store.set_reminders(org_id, minutes.as_deref()).await? {
        Ok(())
    } else {
        Err(AdminError::NoSuchOrg(org_id.to_owned()))
    }
}

/// Some of an org's lifecycle thresholds (`admin orgs set-lifecycle --dormant-days 45`):
/// the others keep the org's current values (the defaults if it set none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleChange {
    pub new_days: Option<u32>,
    pub at_risk_days: Option<u32>,
    pub dormant_days: Option<u32>,
    pub churned_days: Option<u32>,
}

/// Applies `change` to the org's thresholds; the thresholds now set and how many keys it
/// updated.
pub async fn change_org_lifecycle(
    store: &Store,
    org_id: &str,
    change: LifecycleChange,
) -> Result<(StageSettings, usize)> {
    let org = get_org(store, org_id)
        .await?
        .ok_or_else(|| AdminError::NoSuchOrg(org_id.to_owned()))?;
    let current = org.lifecycle.unwrap_or_default();
    let settings = StageSettings {
        new_days: change.new_days.unwrap_or(current.new_days),
        at_risk_days: change.at_risk_days.unwrap_or(current.at_risk_days),
        dormant_days: change.dormant_days.unwrap_or(current.dormant_days),
        churned_days: change.churned_days.unwrap_or(current.churned_days),
    };
    let updated = set_org_lifecycle(store, org_id, Some(settings)).await?;
    Ok((settings, updated))
}

/// Writes a setting on the org item, then its copy on each of its keys (the request path
/// reads only the key's item).
async fn on_org_and_keys(
    org_id: &str,
    set: impl AsyncFn(SettingOf<'_>) -> std::result::Result<bool, crate::error::ApiError>,
    store: &Store,
) -> Result<usize> {
    validate_org_id(org_id)?;
    if !set(SettingOf::Org(org_id)).await? {
        return Err(AdminError::NoSuchOrg(org_id.to_owned()));
    }
    let org_keys = store.org_api_keys::<ApiKeyRecord>(org_id).await?;
    for key in &org_keys {
        set(SettingOf::Key(&key.key_id)).await?;
    }
    Ok(org_keys.len())
}

/// The org of the events/ fixtures' key.
pub const FIXTURE_ORG: &str = "fixture-org";
/// The secret every events/ fixture sends: published in the repository, so it is registered
/// only in local tables (the tests', and `make run`'s through `admin fixtures register`),
/// never in a deployment's.
pub const FIXTURE_SECRET: &str =
    "dfk_test_0000000000f1c7e5_f1c7e5f1c7e5f1c7e5f1c7e5f1c7e5f1c7e5f1c7e5f1c7e5";

/// Registers the fixtures' org and key unless the key already works. Returns whether it
/// registered anything.
pub async fn register_fixture_key(store: &Store) -> Result<bool> {
    if verify_secret(store, FIXTURE_SECRET).await? {
        return Ok(false);
    }
    match create_org(store, FIXTURE_ORG, "Fixture Org").await {
        Ok(_) | Err(AdminError::OrgExists(_)) => {}
        Err(e) => return Err(e),
    }
    insert_key(store, FIXTURE_ORG, "fixtures", FIXTURE_SECRET).await?;
    Ok(true)
}
