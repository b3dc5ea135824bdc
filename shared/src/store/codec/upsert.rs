//! What one entity write is: the attributes an UpdateItem sets, fills, adds and removes,
//! and its guards. Built by [`super::items`], sent by `ops::write` and `ops::events_write`.

use crate::error::ApiError;
use crate::store::schema::attributes::MERGED_INTO;
use crate::store::schema::keys::ItemKey;
use crate::store::schema::{s, Item};
use aws_sdk_dynamodb::types::AttributeValue;

/// One entity write: SET the given attributes, bump the version, keep `ingested_at`, and
/// (optionally) only if the `newer_than` timestamps are older than `stamp`.
#[derive(Debug, Clone)]
pub struct Upsert {
    pub key: ItemKey,
    pub entity: &'static str,
    pub org_id: String,
    pub set: Vec<(String, AttributeValue)>,
    /// Set only when the item does not have the attribute yet.
    pub set_if_absent: Vec<(String, AttributeValue)>,
    /// Numeric attributes to increment.
    pub add: Vec<(String, AttributeValue)>,
    /// Attributes to remove.
    pub remove: Vec<&'static str>,
    /// Apply only if each of these attributes is absent or older than `stamp`.
    pub newer_than: Vec<&'static str>,
    pub stamp: Option<String>,
    /// Attributes that only move forward, independently of `newer_than`.
    pub advance: Option<Advance>,
    /// Attributes the item must not have for the write to apply (a user merged into
    /// another takes no more writes, see `store::identity`).
    pub absent: Vec<&'static str>,
}

/// A part of a write applied only if `attribute` is absent, older than `value` or equal to it.
///
/// Written in the same UpdateItem as the rest (one condition covers both). Only when that
/// condition fails because of this part alone (out-of-order data: the item already
/// reflects something newer here) is the rest written again without it, so the common
/// in-order case stays one write.
#[derive(Debug, Clone)]
pub struct Advance {
    pub attribute: &'static str,
    pub value: String,
    /// Set with `attribute = value` (they replace `set_if_absent` entries of the same name).
    pub set: Vec<(String, AttributeValue)>,
}

impl Upsert {
    /// A write refused because its user was merged meanwhile (see `store::identity`) is a
    /// 503: the client's retry resolves the email again, to the identified client.
    pub(crate) fn check_not_merged(&self, item: &Item) -> Result<(), ApiError> {
        if item.contains_key(MERGED_INTO) {
            tracing::warn!(pk = self.key.loggable(), "write to a user merged meanwhile");
            return Err(ApiError::StorageUnavailable);
        }
        Ok(())
    }

    /// Whether `item` (as it is stored) is this write's org's and entity's: the key schema
    /// guarantees it, checking makes a bug there fail loudly instead of corrupting data.
    pub(crate) fn is_owner_of(&self, item: &Item) -> bool {
        item.get("org_id") == Some(&s(&self.org_id)) && item.get("entity") == Some(&s(self.entity))
    }
}
