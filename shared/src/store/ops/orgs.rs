//! Orgs and API keys as stored: what `crate::admin` (the admin CLI, the tests' setup)
//! reads and writes. Not on the request path; every write is still conditional so two
//! admins cannot silently overwrite each other.

use super::queries::{Query, SortKey};
use super::table::TableStream;
use super::write::PutOutcome;
use crate::error::ApiError;
use crate::states::StageSettings;
use crate::store::codec::records::Stored;
use crate::store::error::{conditional_check_item, is_condition_failure, storage_error};
use crate::store::expr::{Expr, WithExpression};
use crate::store::schema::keys::{self, Index, ItemKey, OrgList};
use crate::store::schema::{n, s, Item};
use crate::store::Store;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Most orgs, or keys of one org, a list reads (bounded, like every read).
const MAX_LISTED: usize = 100_000;

/// Records one migration call moves at once (a page of the old partition).
const MIGRATION_PAGE: usize = 100;

/// What migrating one org's list to its shards did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Migrated {
    /// Records moved to their shard.
    pub moved: usize,
    /// Records written by someone else between the read and the move: still in the old
    /// partition unless that write moved them (run the migration again).
    pub changed_meanwhile: usize,
    /// Entries that are not the list's records (left alone, logged).
    pub skipped: usize,
}

/// An entry of a list's partition from before sharding.
#[derive(Debug, Deserialize)]
struct UnshardedEntry {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    #[serde(rename = "GSI2SK")]
    sort: String,
    last_activity_at: Option<String>,
}

/// The stored org item (`ORG#<org_id>`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrgRecord {
    #[serde(default)]
    pub org_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub created_at: String,
    /// Requests per second for each of its keys that sets none itself.
    pub rate_limit: Option<u32>,
    /// Requests per second of all its keys together.
    pub total_rate_limit: Option<u32>,
    /// Its lifecycle thresholds (unset: the defaults).
    pub lifecycle: Option<StageSettings>,
    /// Its booking reminder offsets in minutes (unset: the defaults, 24 h and 1 h).
    #[serde(default)]
    pub reminder_minutes: Option<Vec<u32>>,
}

/// A new API key item, as `admin keys create` stores it.
#[derive(Debug, Clone, Serialize)]
pub struct NewApiKey<'a> {
    pub key_id: &'a str,
    pub org_id: &'a str,
    pub org_name: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_hash: &'a str,
    pub created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_rate_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_total_rate_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<StageSettings>,
}

/// How a key ends: revoked now, or expiring at the end of a rotation's grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnd {
    Revoked,
    Expires,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnded {
    Ended,
    NoSuchKey,
    AlreadyRevoked,
    /// Its expiry had passed: an expiry is never moved again once reached (a rotation
    /// must not revive a key).
    AlreadyExpired,
}

/// A rate limit an admin sets: on a key itself, on an org (for each of its keys, or for
/// all of them together), or the org's copies of those on one of its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitOf<'a> {
    Key(&'a str),
    Org(&'a str),
    KeysOrg(&'a str),
    OrgTotal(&'a str),
    KeysOrgTotal(&'a str),
}

/// An org's setting (other than its rate limits), or its copy on one of its keys (the
/// request path reads only the key's item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingOf<'a> {
    Org(&'a str),
    Key(&'a str),
}

/// The attribute of the lifecycle thresholds, on an org's item and on each of its keys'.
const LIFECYCLE: &str = "lifecycle";
/// The attribute of the booking reminder offsets, on an org's item only (the stream
/// consumer and the sweeper read it, no request does).
const REMINDER_MINUTES: &str = "reminder_minutes";

impl Store {
    /// Creates the table (or adds missing indexes); whether it created it. The error is
    /// DynamoDB's, as text.
    pub async fn create_table(&self, stream: TableStream) -> Result<bool, String> {
        let describe = |error| aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string();
        let created = super::table::create_table(&self.client, &self.table, stream)
            .await
            .map_err(describe)?;
        if !created && stream == TableStream::On {
            // A table from before the change feed gets its stream.
            super::table::enable_stream(&self.client, &self.table)
                .await
                .map_err(describe)?;
        }
        Ok(created)
    }

    /// Stores a new org; `false` if the id is taken.
    pub async fn create_org(
        &self,
        id: &str,
        name: &str,
        created_at: &str,
    ) -> Result<bool, ApiError> {
        let key = keys::org(id);
        let mut item = keys::key_attributes(&key);
        item.extend([
            ("GSI1PK".to_owned(), s(keys::ORGS_LIST)),
            ("GSI1SK".to_owned(), s(id)),
            ("entity".to_owned(), s("org")),
            ("org_id".to_owned(), s(id)),
            ("name".to_owned(), s(name)),
            ("created_at".to_owned(), s(created_at)),
        ]);
        let outcome = self.put_new(&Stored::new(item)).await?;
        Ok(outcome == PutOutcome::Created)
    }

    pub async fn org(&self, id: &str) -> Result<Option<OrgRecord>, ApiError> {
        self.get_record(&keys::org(id)).await
    }

    pub async fn orgs(&self) -> Result<Vec<OrgRecord>, ApiError> {
        let query = Query::new(Index::Gsi1, keys::ORGS_LIST, SortKey::Any);
        Ok(self.query_up_to(&query, MAX_LISTED).await?.0)
    }

    /// Stores a new API key; `false` if its id is taken.
    pub async fn create_api_key(&self, key: &NewApiKey<'_>) -> Result<bool, ApiError> {
        let key_of = keys::api_key(key.key_id);
        let mut item: Item = serde_dynamo::to_item(key).map_err(|error| {
            tracing::error!(%error, "API key item");
            ApiError::Internal
        })?;
        item.extend(keys::key_attributes(&key_of));
        item.extend([
            ("GSI1PK".to_owned(), s(keys::org_api_keys(key.org_id))),
            (
                "GSI1SK".to_owned(),
                s(format!("{}#{}", key.created_at, key.key_id)),
            ),
            ("entity".to_owned(), s("api_key")),
        ]);
        let outcome = self.put_new(&Stored::new(item)).await?;
        Ok(outcome == PutOutcome::Created)
    }

    /// The key's record, decoded as the caller's type (`auth::ApiKeyRecord`: what a key
    /// means is `auth`'s, where it is stored the store's).
    pub async fn api_key<R: DeserializeOwned>(&self, key_id: &str) -> Result<Option<R>, ApiError> {
        self.get_record(&keys::api_key(key_id)).await
    }

    /// The keys of an org, oldest first.
    pub async fn org_api_keys<R: DeserializeOwned>(
        &self,
        org_id: &str,
    ) -> Result<Vec<R>, ApiError> {
        let query = Query::new(Index::Gsi1, keys::org_api_keys(org_id), SortKey::Any);
        Ok(self.query_up_to(&query, MAX_LISTED).await?.0)
    }

    /// Ends a key at `at`, unless it is missing or already revoked, or (for a new expiry)
    /// already expired at `now`.
    pub async fn end_api_key(
        &self,
        key_id: &str,
        end: KeyEnd,
        at: &str,
        now: &str,
    ) -> Result<KeyEnded, ApiError> {
        let attribute = match end {
            KeyEnd::Revoked => "revoked_at",
            KeyEnd::Expires => "expires_at",
        };
        let mut expr = Expr::new();
        expr.set(attribute, s(at));
        let exists = expr.exists(keys::TABLE_PK);
        let not_revoked = expr.not_exists("revoked_at");
        expr.condition(exists).condition(not_revoked);
        if end == KeyEnd::Expires {
            let now = expr.value(s(now));
            let not_expired = expr.absent_or_above("expires_at", &now);
            expr.condition(not_expired);
        }
        let result = self
            .update_item(&keys::api_key(key_id))
            .with(expr.finish())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(KeyEnded::Ended),
            Err(error) => match conditional_check_item(&error) {
                Some(old) if old.contains_key("revoked_at") => Ok(KeyEnded::AlreadyRevoked),
                Some(old) if !old.is_empty() => Ok(KeyEnded::AlreadyExpired),
                Some(_) => Ok(KeyEnded::NoSuchKey),
                None => Err(storage_error("UpdateItem", error)),
            },
        }
    }

    /// Sets (or with `None` removes) a rate limit; `false` if its item does not exist.
    pub async fn set_rate_limit(
        &self,
        of: RateLimitOf<'_>,
        limit: Option<u32>,
    ) -> Result<bool, ApiError> {
        let (key, attribute): (ItemKey, &str) = match of {
            RateLimitOf::Key(key_id) => (keys::api_key(key_id), "rate_limit"),
            RateLimitOf::Org(org_id) => (keys::org(org_id), "rate_limit"),
            RateLimitOf::KeysOrg(key_id) => (keys::api_key(key_id), "org_rate_limit"),
            RateLimitOf::OrgTotal(org_id) => (keys::org(org_id), "total_rate_limit"),
            RateLimitOf::KeysOrgTotal(key_id) => (keys::api_key(key_id), "org_total_rate_limit"),
        };
        self.set_or_remove(&key, attribute, limit.map(n)).await
    }

    /// Sets (or with `None` removes) an org's lifecycle thresholds, on the org item or
    /// (`key`) its copy on one of its keys; `false` if the item does not exist.
    pub async fn set_lifecycle(
        &self,
        of: SettingOf<'_>,
        settings: Option<&StageSettings>,
    ) -> Result<bool, ApiError> {
        let key = match of {
            SettingOf::Org(org_id) => keys::org(org_id),
            SettingOf::Key(key_id) => keys::api_key(key_id),
        };
        let value = settings
            .map(|settings| serde_dynamo::to_item(settings).map(AttributeValue::M))
            .transpose()
            .map_err(|error| {
                tracing::error!(%error, "lifecycle settings do not encode");
                ApiError::Internal
            })?;
        self.set_or_remove(&key, LIFECYCLE, value).await
    }

    /// Sets (or with `None` removes) an org's booking reminder offsets; `false` if no org.
    pub async fn set_reminders(
        &self,
        org_id: &str,
        minutes: Option<&[u32]>,
    ) -> Result<bool, ApiError> {
        let value = minutes.map(|minutes| AttributeValue::L(minutes.iter().map(n).collect()));
        self.set_or_remove(&keys::org(org_id), REMINDER_MINUTES, value)
            .await
    }

    /// Sets `attribute` of an existing item, or removes it (`None`); `false` if no item.
    async fn set_or_remove(
        &self,
        key: &ItemKey,
        attribute: &str,
        value: Option<AttributeValue>,
    ) -> Result<bool, ApiError> {
        let mut expr = Expr::new();
        match value {
            Some(value) => expr.set(attribute, value),
            None => expr.remove(attribute),
        };
        let exists = expr.exists(keys::TABLE_PK);
        expr.condition(exists);
        let result = self.update_item(key).with(expr.finish()).send().await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(storage_error("UpdateItem", error)),
        }
    }

    /// Moves the records of `list` that are still in its partition from before the lists
    /// were sharded into their shards (their keys as a write today gives them), in one
    /// pass over that partition. Each move is one UpdateItem conditioned on the record
    /// still being there (and, for users, on its `last_activity_at` being the one read):
    /// so the migration is idempotent, safe alongside live traffic, and resumable without
    /// any state of its own (moved records leave the partition; a second run finds the rest).
    pub async fn migrate_list(&self, org_id: &str, list: OrgList) -> Result<Migrated, ApiError> {
        let old = list.unsharded(org_id);
        let mut query = Query::new(Index::Gsi2, old.clone(), SortKey::Any);
        query.projection = Some(vec!["last_activity_at"]);
        let mut migrated = Migrated::default();
        let mut start = None;
        loop {
            let page = self
                .query_page::<UnshardedEntry>(&query, MIGRATION_PAGE, start)
                .await?;
            let moves = page
                .items
                .iter()
                .map(|entry| self.move_to_shard(org_id, list, &old, entry));
            for outcome in futures::future::try_join_all(moves).await? {
                match outcome {
                    Some(true) => migrated.moved += 1,
                    Some(false) => migrated.changed_meanwhile += 1,
                    None => migrated.skipped += 1,
                }
            }
            match page.next {
                Some(next) => start = Some(next),
                None => return Ok(migrated),
            }
        }
    }

    /// `Some(moved)`, or `None` for an entry that is not one of the list's records.
    async fn move_to_shard(
        &self,
        org_id: &str,
        list: OrgList,
        old: &str,
        entry: &UnshardedEntry,
    ) -> Result<Option<bool>, ApiError> {
        let at = entry
            .last_activity_at
            .as_deref()
            .and_then(|at| at.parse().ok());
        let Some((partition, sort)) = keys::sharded_keys(list, org_id, &entry.pk, &entry.sort, at)
        else {
            tracing::warn!(
                pk = keys::loggable_pk(&entry.pk),
                "not a record of the list: left alone"
            );
            return Ok(None);
        };
        let mut expr = Expr::new();
        expr.set("GSI2PK", s(partition)).set("GSI2SK", s(sort));
        let still_there = expr.equals("GSI2PK", s(old));
        expr.condition(still_there);
        if let Some(at) = &entry.last_activity_at {
            let unchanged = expr.equals("last_activity_at", s(at));
            expr.condition(unchanged);
        }
        let key = ItemKey {
            pk: entry.pk.clone(),
            sk: entry.sk.clone(),
        };
        let result = self.update_item(&key).with(expr.finish()).send().await;
        match result {
            Ok(_) => Ok(Some(true)),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Some(false))
            }
            Err(error) => Err(storage_error("UpdateItem (migration)", error)),
        }
    }
}
