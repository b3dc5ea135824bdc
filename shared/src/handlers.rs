//! One function per endpoint: parse the body into domain values, write the related
//! entities concurrently, then the request's primary record last (so a retry after a
//! partial failure converges), and answer with the stored objects.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::input::{self, Channel, Event, User};
use crate::lifecycle::lifecycle_update;
use crate::store::items::{self, public_view};
use crate::store::{PutOutcome, Store, Upsert, UpsertOutcome};
use lambda_http::http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The version `health/` reports; the workspace version in Cargo.toml is the one place it is set.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Longest accepted `Idempotency-Key` header.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// A successful answer: status, JSON body and extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
            headers: Vec::new(),
        }
    }

    /// 201 when the primary record was created, 200 when it was updated.
    fn upserted(created: bool, name: &str, object: Value, related: Map<String, Value>) -> Self {
        let mut body = Map::from_iter([
            ("created".to_owned(), json!(created)),
            (name.to_owned(), object),
        ]);
        body.extend(related);
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Reply {
            status,
            body: Value::Object(body),
            headers: Vec::new(),
        }
    }
}

pub fn health() -> Reply {
    Reply::ok(json!({ "status": "ok", "api_version": API_VERSION }))
}

pub fn me(caller: &Caller) -> Reply {
    Reply::ok(json!({
        "org": { "id": caller.org_id, "name": caller.org_name },
        "api_key": {
            "id": caller.key_id,
            "name": caller.name,
            "prefix": caller.prefix,
            "created_at": caller.created_at,
            "expires_at": caller.expires_at,
            "rate_limit": caller.effective_rate_limit(),
        },
    }))
}

/// The written item and whether it was created; a write that was not applied is a bug here.
fn written(outcome: UpsertOutcome) -> Result<(Value, bool), ApiError> {
    match outcome {
        UpsertOutcome::Written { item, created } => Ok((public_view(&item), created)),
        UpsertOutcome::Stale => {
            tracing::error!("an unguarded upsert reported a stale write");
            Err(ApiError::Internal)
        }
    }
}

/// Where a related object goes in the response: under its name, or appended to a list.
#[derive(Debug, Clone, Copy)]
enum Slot {
    One(&'static str),
    List(&'static str),
}

/// Writes the related entities of a request concurrently, then the primary record.
/// Related objects come back in their slots. A related write that was stale (a thread
/// that already has a newer message) is left out of the answer.
async fn write_all(
    store: &Store,
    related: Vec<(Slot, Upsert)>,
    primary: Upsert,
) -> Result<(Value, bool, Map<String, Value>), ApiError> {
    let (names, writes): (Vec<_>, Vec<_>) = related.into_iter().unzip();
    let outcomes =
        futures::future::try_join_all(writes.into_iter().map(|w| store.upsert(w))).await?;
    let mut objects = Map::new();
    for (slot, outcome) in names.into_iter().zip(outcomes) {
        let UpsertOutcome::Written { item, .. } = outcome else {
            continue;
        };
        let object = public_view(&item);
        match slot {
            Slot::One(name) => {
                objects.insert(name.to_owned(), object);
            }
            Slot::List(name) => {
                let list = objects.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut().expect("a list slot").push(object);
            }
        }
    }
    let (object, created) = written(store.upsert(primary).await?)?;
    Ok((object, created, objects))
}

pub async fn users_upsert(store: &Store, caller: &Caller, body: &[u8]) -> Result<Reply, ApiError> {
    let user = input::parse_user(body)?;
    let (object, created) = written(store.upsert(items::user(&caller.org_id, &user)).await?)?;
    Ok(Reply::upserted(created, "user", object, Map::new()))
}

pub async fn products_upsert(
    store: &Store,
    caller: &Caller,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let product = input::parse_product(body)?;
    let (object, created) = written(
        store
            .upsert(items::product(&caller.org_id, &product))
            .await?,
    )?;
    Ok(Reply::upserted(created, "product", object, Map::new()))
}

pub async fn sales_upsert(store: &Store, caller: &Caller, body: &[u8]) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let sale = input::parse_sale(body)?;
    let mut related = Vec::new();
    if let Some(buyer) = &sale.buyer {
        related.push((Slot::One("buyer"), items::user(org, buyer)));
    }
    if let Some(product) = &sale.product {
        related.push((Slot::One("product"), items::product(org, product)));
    }
    let (object, created, related) = write_all(store, related, items::sale(org, &sale)).await?;
    Ok(Reply::upserted(created, "sale", object, related))
}

/// The nested `contact` and `channel` writes of a conversation or message.
fn contact_and_channel(
    org: &str,
    contact: Option<&User>,
    channel: Option<&Channel>,
) -> Vec<(Slot, Upsert)> {
    let contact = contact.map(|contact| (Slot::One("contact"), items::user(org, contact)));
    let channel = channel.map(|channel| (Slot::One("channel"), items::channel(org, channel)));
    contact.into_iter().chain(channel).collect()
}

pub async fn conversations_upsert(
    store: &Store,
    caller: &Caller,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let conversation = input::parse_conversation(body)?;
    let related = contact_and_channel(
        org,
        conversation.contact.as_ref(),
        conversation.channel.as_ref(),
    );
    let (object, created, related) =
        write_all(store, related, items::thread(org, &conversation)).await?;
    Ok(Reply::upserted(created, "conversation", object, related))
}

pub async fn messages_upsert(
    store: &Store,
    caller: &Caller,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let message = input::parse_message(body)?;
    let mut related = contact_and_channel(org, message.contact.as_ref(), message.channel.as_ref());
    related.push((
        Slot::One("conversation"),
        items::thread_for_message(org, &message),
    ));
    let (object, created, related) =
        write_all(store, related, items::message(org, &message)).await?;
    Ok(Reply::upserted(created, "message", object, related))
}

pub async fn bookings_upsert(
    store: &Store,
    caller: &Caller,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let booking = input::parse_booking(body)?;
    let mut related = Vec::new();
    if let Some(client) = &booking.client {
        related.push((Slot::One("client"), items::user(org, client)));
    }
    for service in &booking.services {
        related.push((Slot::List("services"), items::product(org, service)));
    }
    let (object, created, related) =
        write_all(store, related, items::booking(org, &booking)).await?;
    Ok(Reply::upserted(created, "booking", object, related))
}

/// The `Idempotency-Key` header, if sent: 1 to 255 printable ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey {
            max: MAX_IDEMPOTENCY_KEY_CHARS,
        })?;
    check_idempotency_key(key).map(Some)
}

/// An idempotency key, trimmed: 1 to 255 printable ASCII characters.
pub fn check_idempotency_key(key: &str) -> Result<String, ApiError> {
    let key = key.trim();
    let printable = key.bytes().all(|b| (0x20..0x7f).contains(&b));
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_CHARS || !printable {
        return Err(ApiError::InvalidIdempotencyKey {
            max: MAX_IDEMPOTENCY_KEY_CHARS,
        });
    }
    Ok(key.to_owned())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hash of the request body with keys sorted, so a retry that re-serializes the same
/// JSON in another key order still counts as the same body.
fn body_fingerprint(body: &[u8]) -> Result<String, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(sha256_hex(value.to_string().as_bytes()))
}

fn new_event_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS random generator is available");
    format!("evt_{}", hex::encode(bytes))
}

/// Stores an event and applies its lifecycle change to the user.
///
/// With an `Idempotency-Key`, the event id is derived from the key and the event item is
/// the idempotency record: one create-only PutItem decides, for any number of concurrent
/// retries, which request stored it; the others get the stored event back. The user write
/// is applied on a replay too: it is guarded (a no-op when already applied) and is what
/// makes a retry after a partial failure converge.
pub async fn events(
    store: &Store,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, ApiError> {
    events_with_key(store, caller, idempotency_key(headers)?, body).await
}

/// [`events`] with the idempotency key already read (from the header, or from a batch
/// item's `idempotency_key`, checked by [`check_idempotency_key`]).
pub async fn events_with_key(
    store: &Store,
    caller: &Caller,
    idempotency_key: Option<String>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let received_at = Timestamp::now();
    let mut event: Event = input::parse_event(body, received_at)?;
    let change = lifecycle_update(&event)?;

    let (event_id, request_hash) = match &idempotency_key {
        Some(key) => (
            format!("evt_{}", &sha256_hex(key.as_bytes())[..32]),
            Some(body_fingerprint(body)?),
        ),
        None => (new_event_id(), None),
    };
    let idempotency = idempotency_key.as_deref().zip(request_hash.as_deref());
    let item = items::event(org, &event, &event_id, received_at, idempotency);

    let (stored, replayed) = match store.put_new(item.clone()).await? {
        PutOutcome::Created => (item, false),
        // Without an Idempotency-Key the id is random, so an existing item is this very
        // request's own PutItem, retried by the SDK after its response was lost.
        PutOutcome::Exists(_) if idempotency_key.is_none() => (item, false),
        PutOutcome::Exists(existing) => {
            let stored_hash = existing.get("request_hash").and_then(|v| v.as_s().ok());
            if stored_hash != request_hash.as_ref() {
                return Err(ApiError::IdempotencyKeyReused);
            }
            // Re-apply with the time the first request recorded, not this retry's.
            if let Some(at) = existing.get("event_timestamp").and_then(|v| v.as_s().ok()) {
                event.occurred_at = at.parse().unwrap_or(event.occurred_at);
            }
            (existing, true)
        }
    };
    let user_write = items::user_for_event(org, &event.user, &change, event.occurred_at);
    if replayed {
        // Usually already made by the first attempt: checked with a read, sent again only
        // if that attempt stored the event but failed before its user write.
        store.upsert_unless_done(user_write).await?;
    } else {
        store.upsert(user_write).await?;
    }

    let mut reply = Reply::upserted(true, "event", public_view(&stored), Map::new());
    if replayed {
        reply
            .headers
            .push(("idempotent-replayed", "true".to_owned()));
    }
    Ok(reply)
}
