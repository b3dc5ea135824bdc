//! The change feed's records: a change as stored and as clients see it, and what the
//! derivation (`crate::changes`) needs to read from a stream image without naming
//! attributes (an item's org, entity and version; which profile fields a write changed).

use crate::error::ApiError;
use crate::store::codec::client_record;
use crate::store::codec::records::{decode, UserRef};
use crate::store::schema::attributes::{
    EVENT_FIELD_PREFIX, MERGED_IDENTITIES, MERGED_INTO, NAME_PREFIX, RECORD_BOOKKEEPING,
    REVENUE_PREFIX,
};
use crate::store::schema::keys::{self, ItemKey};
use crate::store::schema::table::TTL_ATTRIBUTE;
use crate::store::schema::{n, s, Item};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Changes are kept this long (DynamoDB's TTL deletes them after; the feed promises 30 days).
pub const CHANGE_RETENTION_SECS: i64 = 35 * 86_400;

/// A client as a change names it: its `external_user_id`, or for an email-only client a
/// SHA-256 of its email (a change never holds an email; see docs/api-guide.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClientRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sha256: Option<String>,
}

impl ClientRef {
    pub fn of(user: &UserRef) -> Option<ClientRef> {
        match (&user.external_user_id, &user.email) {
            (Some(id), _) => Some(ClientRef::external(id)),
            (None, Some(email)) => Some(ClientRef::email(email)),
            (None, None) => None,
        }
    }

    fn external(id: &str) -> ClientRef {
        ClientRef {
            external_user_id: Some(id.to_owned()),
            email_sha256: None,
        }
    }

    fn email(email: &str) -> ClientRef {
        ClientRef {
            external_user_id: None,
            email_sha256: Some(hex::encode(Sha256::digest(email.as_bytes()))),
        }
    }

    /// The client of a user PK (a `merged_into` reference, a stream record's key).
    pub fn of_user_pk(pk: &str) -> Option<ClientRef> {
        match keys::identity_of_user_pk(pk)? {
            ("ext", id) => Some(ClientRef::external(id)),
            (_, email) => Some(ClientRef::email(email)),
        }
    }
}

/// What a change is about: its client and the object it concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

/// One change record, as stored and as `GET changes/` and the bus show it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Change {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: Option<String>,
    pub recorded_at: String,
    pub subject: Subject,
    pub sequence: u64,
    pub data: Value,
}

impl Change {
    /// A change id: a hash of what caused it (the org, the source item, the change type and
    /// what tells this occurrence from others: a version, an event id), so a redelivered
    /// stream record derives the same id.
    pub fn id_of(org_id: &str, source: &ItemKey, kind: &str, occurrence: &str) -> String {
        let mut hash = Sha256::new();
        for part in [org_id, &source.pk, &source.sk, kind, occurrence] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        format!("chg_{}", &hex::encode(hash.finalize())[..32])
    }
}

/// A change to write, with the PK of its client's record (so that erasing the client finds it).
#[derive(Debug, Clone, PartialEq)]
pub struct NewChange {
    pub org_id: String,
    pub change: Change,
    pub client_pk: Option<String>,
}

/// The stored form: keys, the change as JSON text, its type (for filters), its client's
/// PK in GSI1 (not for `client.erased`, which must outlive the erasure) and the TTL.
pub fn change_item(org_id: &str, new: &NewChange) -> Item {
    let change = &new.change;
    let key = keys::change(org_id, &change.recorded_at, &change.id);
    let mut item = keys::key_attributes(&key);
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + CHANGE_RETENTION_SECS;
    item.extend([
        ("entity".to_owned(), s("change")),
        ("org_id".to_owned(), s(org_id)),
        ("change_type".to_owned(), s(&change.kind)),
        (
            "change".to_owned(),
            s(serde_json::to_string(change).expect("a change serializes")),
        ),
        (TTL_ATTRIBUTE.to_owned(), n(expires)),
    ]);
    if let Some(client_pk) = &new.client_pk {
        let index = keys::under_parent(
            client_pk.clone(),
            keys::CHANGE,
            &change.recorded_at,
            &change.id,
        );
        item.insert("GSI1PK".to_owned(), s(index.gsi1pk));
        item.insert("GSI1SK".to_owned(), s(index.gsi1sk));
    }
    item
}

#[derive(Deserialize)]
struct StoredChange {
    change: Option<String>,
}

/// A stored change item back as its change; `None` for an erased one (its tombstone).
pub fn decode_change(item: Item) -> Result<Option<Change>, ApiError> {
    let stored: StoredChange = decode(item)?;
    let Some(change) = stored.change else {
        return Ok(None);
    };
    serde_json::from_str(&change).map(Some).map_err(|error| {
        tracing::error!(%error, "stored change does not decode");
        ApiError::Internal
    })
}

/// What every stored item has: its key, org, entity and write count.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ItemMeta {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub org_id: Option<String>,
    pub entity: Option<String>,
    pub version: Option<u64>,
    pub updated_at: Option<String>,
    pub ingested_at: Option<String>,
    /// The record it is listed under (a user's children: its PK).
    #[serde(rename = "GSI1PK")]
    pub gsi1pk: Option<String>,
}

impl ItemMeta {
    pub fn of(item: &Item) -> Option<ItemMeta> {
        serde_dynamo::from_item(item.clone()).ok()
    }

    pub fn key(&self) -> ItemKey {
        ItemKey {
            pk: self.pk.clone(),
            sk: self.sk.clone(),
        }
    }
}

/// Attributes of a user item that are bookkeeping, not profile fields: keys, counters and
/// what events keep (`ev_*`, `rev_*`, activity times), merge references.
fn is_bookkeeping(name: &str) -> bool {
    RECORD_BOOKKEEPING.contains(&name)
        || name == "last_activity_at"
        || name == "last_event_at"
        || name == MERGED_INTO
        || name == MERGED_IDENTITIES
        || name.starts_with(EVENT_FIELD_PREFIX)
        || name.starts_with(REVENUE_PREFIX)
        || name.starts_with(NAME_PREFIX)
        || name == client_record::FIRST_SEEN
        || name == client_record::PREVIOUS_ACTIVITY_AT
        || name == TTL_ATTRIBUTE
}

/// The names of either side whose values differ and that `skip` does not leave out, sorted.
fn differing<'a, V: PartialEq + 'a>(
    names: impl Iterator<Item = &'a String>,
    value: impl Fn(&str) -> (Option<&'a V>, Option<&'a V>),
    skip: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut names: Vec<String> = names
        .filter(|name| !skip(name))
        .filter(|name| {
            let (old, new) = value(name);
            old != new
        })
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The profile fields (as the API names them) whose stored value differs between `old`
/// and `new`, sorted: what a `client.updated` lists.
pub fn changed_profile_fields(old: &Item, new: &Item) -> Vec<String> {
    differing(
        old.keys().chain(new.keys()),
        |name| (old.get(name), new.get(name)),
        is_bookkeeping,
    )
}

/// The fields of a booking view that differ (for `booking.updated`), leaving out times.
pub fn changed_fields<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    differing(
        old.keys().chain(new.keys()),
        |name| (old.get(name), new.get(name)),
        |name| matches!(name, "updated_at" | "ingested_at"),
    )
}
