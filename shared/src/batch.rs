//! `POST batch/`: up to [`MAX_BATCH_ITEMS`] objects of any type in one request.
//!
//! Each item is turned into exactly the body its single endpoint gets (the item without
//! `type` and `idempotency_key`) and handed to that endpoint's very handler, so validation,
//! error codes, nested upserts, identity, idempotency and counters cannot differ. Items
//! that touch a common record (the same user, product, sale, thread, message, booking,
//! channel or idempotency key, nested ones included) form a group that is applied in
//! request order; groups run concurrently, at most [`MAX_CONCURRENT_ITEMS`] at a time, until
//! the request deadline. What was not stored because of storage trouble or the deadline is
//! 503 `storage_unavailable`, never a 2xx, so the client resends only those items.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::handlers::{self, Reply};
use crate::idempotency::{IdempotencyKey, MAX_IDEMPOTENCY_KEY_CHARS};
use crate::input::{self, User, UserIdentity};
use futures::StreamExt;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Most items in one batch.
pub const MAX_BATCH_ITEMS: usize = 500;
/// Largest batch body, after decompression.
pub const MAX_BATCH_BODY_BYTES: usize = 1024 * 1024;
/// Items being written at once: enough to hide DynamoDB's latency (an event waits for about
/// 3 calls one after the other; with 16 in flight a batch of 100 spent most of its time
/// waiting, `make bench`), few enough to stay clear of its per-partition limits and of the
/// instance's memory.
pub const MAX_CONCURRENT_ITEMS: usize = 48;
/// Kept free at the end of the request deadline to build the answer: items still running
/// then are cut and reported as 503.
const ANSWER_MARGIN: Duration = Duration::from_millis(300);

/// The item field naming the object type.
const TYPE_FIELD: &str = "type";
/// An event item's idempotency key (the single endpoint's `Idempotency-Key` header).
const IDEMPOTENCY_KEY_FIELD: &str = "idempotency_key";
/// A product's own `type` (product or service) inside a batch item, where `type` is taken.
const PRODUCT_TYPE_FIELD: &str = "product_type";

/// The object types an item may be, with the name of the object in the single endpoint's
/// answer and the field that identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    User,
    Event,
    Product,
    Sale,
    Conversation,
    Message,
    Booking,
}

impl ObjectType {
    pub const ALL: [ObjectType; 7] = [
        ObjectType::User,
        ObjectType::Event,
        ObjectType::Product,
        ObjectType::Sale,
        ObjectType::Conversation,
        ObjectType::Message,
        ObjectType::Booking,
    ];

    /// The value of `type`, which is also the object's key in the single endpoint's answer.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::User => "user",
            ObjectType::Event => "event",
            ObjectType::Product => "product",
            ObjectType::Sale => "sale",
            ObjectType::Conversation => "conversation",
            ObjectType::Message => "message",
            ObjectType::Booking => "booking",
        }
    }

    fn from_name(name: &str) -> Option<ObjectType> {
        ObjectType::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The fields of the stored object that give the item's `id`, first present wins.
    fn id_fields(self) -> &'static [&'static str] {
        match self {
            ObjectType::User => &["external_user_id", "email"],
            ObjectType::Event => &["id"],
            ObjectType::Product => &["external_product_id"],
            ObjectType::Sale => &["sale_id"],
            ObjectType::Conversation => &["thread_id"],
            ObjectType::Message => &["message_id"],
            ObjectType::Booking => &["booking_id"],
        }
    }
}

/// The body of `batch/`: the items, not yet looked into but for their cost.
#[derive(Debug)]
pub struct Batch {
    items: Vec<Box<RawValue>>,
    /// Each item's rate-limit tokens.
    costs: Vec<u32>,
}

#[derive(Deserialize)]
struct Envelope {
    batch: Option<Vec<Box<RawValue>>>,
}

/// Parses the envelope `{"batch": [...]}`: 1 to [`MAX_BATCH_ITEMS`] items of any JSON
/// (each item is checked on its own, in [`run`]).
pub fn parse(body: &[u8]) -> Result<Batch, ApiError> {
    let envelope: Envelope = input::parse_json(body)?;
    let items = envelope.batch.ok_or(ApiError::MissingField {
        param: "batch".into(),
    })?;
    if items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::TooManyItems {
            max: MAX_BATCH_ITEMS,
        });
    }
    if items.is_empty() {
        return Err(ApiError::invalid_field(
            "batch",
            format!("`batch` must hold 1 to {MAX_BATCH_ITEMS} items"),
        ));
    }
    let costs = items.iter().map(|item| item_cost(item)).collect();
    Ok(Batch { items, costs })
}

/// An item's tokens: a booking's by its services ([`crate::cost::booking`]), any other
/// item's one, as on its single endpoint. An item that does not parse costs one (it is
/// refused in [`run`]).
fn item_cost(raw: &RawValue) -> u32 {
    #[derive(Deserialize)]
    struct Priced {
        #[serde(rename = "type")]
        kind: Option<String>,
        services: Option<Vec<serde::de::IgnoredAny>>,
    }
    match serde_json::from_str::<Priced>(raw.get()) {
        Ok(Priced {
            kind: Some(kind),
            services: Some(services),
        }) if kind == ObjectType::Booking.name() => crate::cost::booking(services.len()),
        _ => 1,
    }
}

impl Batch {
    /// Tokens of all the items.
    pub fn cost(&self) -> u32 {
        self.costs.iter().sum()
    }

    /// Tokens of the first item: fewer are not worth having.
    pub fn first_cost(&self) -> u32 {
        self.costs.first().copied().unwrap_or(1)
    }

    /// How many items, from the first, `tokens` pay for.
    pub fn paid_by(&self, tokens: u32) -> (usize, u32) {
        let mut spent = 0;
        let mut items = 0;
        for cost in &self.costs {
            if spent + cost > tokens {
                break;
            }
            spent += cost;
            items += 1;
        }
        (items, spent)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A JSON object's members in order, repeated keys kept (the single endpoint's parser
/// refuses those, so it must see them).
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// One item, ready for its handler.
#[derive(Debug)]
struct Item {
    kind: ObjectType,
    idempotency_key: Option<IdempotencyKey>,
    /// The single endpoint's body.
    body: Vec<u8>,
}

/// Reads `type` and `idempotency_key` and rebuilds the rest as the single endpoint's body.
fn prepare(raw: &RawValue) -> Result<Item, ApiError> {
    if raw.get().len() > crate::encoding::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: crate::encoding::MAX_BODY_BYTES,
        });
    }
    let Members(members) = serde_json::from_str(raw.get())
        .map_err(|_| ApiError::InvalidJson("each item must be a JSON object".into()))?;
    let mut kind = None;
    let mut idempotency_key = None;
    let mut rest = Vec::with_capacity(members.len());
    for (name, value) in members {
        match name.as_str() {
            TYPE_FIELD => {
                if kind.is_some() {
                    return Err(ApiError::invalid_field("type", "`type` is repeated"));
                }
                kind = Some(item_kind(&value)?);
            }
            IDEMPOTENCY_KEY_FIELD => idempotency_key = Some(value),
            _ => rest.push((name, value)),
        }
    }
    let kind = kind.flatten().ok_or(ApiError::MissingField {
        param: TYPE_FIELD.into(),
    })?;
    let idempotency_key = match (kind, idempotency_key) {
        (ObjectType::Event, Some(raw)) => match serde_json::from_str::<Option<String>>(raw.get()) {
            Ok(Some(key)) => Some(IdempotencyKey::parse(&key)?),
            Ok(None) => None,
            Err(_) => {
                return Err(ApiError::InvalidIdempotencyKey {
                    max: MAX_IDEMPOTENCY_KEY_CHARS,
                })
            }
        },
        // Like any unknown field, ignored on other types.
        _ => None,
    };
    let mut body = Vec::with_capacity(raw.get().len());
    body.push(b'{');
    for (index, (name, value)) in rest.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        let name = match (kind, name.as_str()) {
            (ObjectType::Product, PRODUCT_TYPE_FIELD) => TYPE_FIELD,
            _ => name.as_str(),
        };
        serde_json::to_writer(&mut body, name).expect("a string serializes");
        body.push(b':');
        body.extend_from_slice(value.get().as_bytes());
    }
    body.push(b'}');
    Ok(Item {
        kind,
        idempotency_key,
        body,
    })
}

/// The item's `type`; `null` counts as absent.
fn item_kind(value: &RawValue) -> Result<Option<ObjectType>, ApiError> {
    let invalid = || {
        let names: Vec<&str> = ObjectType::ALL.iter().map(|kind| kind.name()).collect();
        ApiError::invalid_field(
            TYPE_FIELD,
            format!("`type` must be one of {}", names.join(", ")),
        )
    };
    match serde_json::from_str::<Option<String>>(value.get()) {
        Ok(Some(name)) => ObjectType::from_name(&name).map(Some).ok_or_else(invalid),
        Ok(None) => Ok(None),
        Err(_) => Err(invalid()),
    }
}

/// The records an item writes, as opaque names: items sharing one are applied in order.
/// An item that does not parse writes nothing and has none.
fn records(item: &Item) -> Vec<String> {
    fn user(user: &User) -> String {
        match &user.identity {
            UserIdentity::External(id) => format!("user:id:{}", id.as_str()),
            UserIdentity::Email(email) => format!("user:email:{}", email.as_str()),
        }
    }
    let product = |id: &crate::fields::Id| format!("product:{}", id.as_str());
    let thread = |id: &crate::fields::Id| format!("thread:{}", id.as_str());
    let channel = |id: &crate::fields::Id| format!("channel:{}", id.as_str());
    let body = item.body.as_slice();
    let mut names = Vec::new();
    match item.kind {
        ObjectType::User => names.extend(input::parse_user(body).ok().map(|u| user(&u))),
        ObjectType::Event => {
            if let Ok(event) = input::parse_event(body, Timestamp::now()) {
                names.push(user(&event.user));
            }
            if let Some(key) = &item.idempotency_key {
                names.push(format!("event:{}", key.as_str()));
            }
        }
        ObjectType::Product => {
            names.extend(input::parse_product(body).ok().map(|p| product(&p.id)))
        }
        ObjectType::Sale => {
            if let Ok(sale) = input::parse_sale(body) {
                names.push(format!("sale:{}", sale.id.as_str()));
                names.extend(sale.buyer.as_ref().map(user));
                names.extend(sale.product.as_ref().map(|p| product(&p.id)));
            }
        }
        ObjectType::Conversation => {
            if let Ok(conversation) = input::parse_conversation(body) {
                names.push(thread(&conversation.thread_id));
                names.extend(conversation.contact.as_ref().map(user));
                names.extend(conversation.channel.as_ref().map(|c| channel(&c.id)));
            }
        }
        ObjectType::Message => {
            if let Ok(message) = input::parse_message(body) {
                names.push(thread(&message.thread_id));
                names.extend(message.contact.as_ref().map(user));
                names.extend(message.channel.as_ref().map(|c| channel(&c.id)));
            }
        }
        ObjectType::Booking => {
            if let Ok(booking) = input::parse_booking(body) {
                names.push(format!("booking:{}", booking.id.as_str()));
                names.extend(booking.client.as_ref().map(user));
                names.extend(booking.services.iter().map(|p| product(&p.id)));
            }
        }
    }
    names
}

/// Splits item indexes into groups of items connected by a common record (union-find),
/// each group in request order, groups ordered by their first item.
fn groups(records: &[Vec<String>]) -> Vec<Vec<usize>> {
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..records.len()).collect();
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (index, names) in records.iter().enumerate() {
        for name in names {
            let first = *owner.entry(name.as_str()).or_insert(index);
            let (a, b) = (root(&mut parent, first), root(&mut parent, index));
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut by_root: Vec<Vec<usize>> = vec![Vec::new(); records.len()];
    for index in 0..records.len() {
        let group = root(&mut parent, index);
        by_root[group].push(index);
    }
    by_root.into_iter().filter(|g| !g.is_empty()).collect()
}

async fn call_handler(
    store: &crate::store::Store,
    caller: &Caller,
    item: Item,
) -> Result<Reply, ApiError> {
    let body = item.body.as_slice();
    match item.kind {
        ObjectType::User => handlers::users_upsert(store, caller, body).await,
        ObjectType::Event => {
            handlers::events_with_key(store, caller, item.idempotency_key, body).await
        }
        ObjectType::Product => handlers::products_upsert(store, caller, body).await,
        ObjectType::Sale => handlers::sales_upsert(store, caller, body).await,
        ObjectType::Conversation => handlers::conversations_upsert(store, caller, body).await,
        ObjectType::Message => handlers::messages_upsert(store, caller, body).await,
        ObjectType::Booking => {
            handlers::bookings_upsert(store, caller, input::parse_booking(body)?).await
        }
    }
}

/// One entry of `results`: what the single endpoint would have answered, in short.
fn success(kind: ObjectType, reply: &Reply) -> Value {
    let object = &reply.body[kind.name()];
    let id = kind
        .id_fields()
        .iter()
        .find_map(|field| object.get(*field).filter(|v| v.is_string()))
        .cloned()
        .unwrap_or(Value::Null);
    let mut result = json!({
        "status": reply.status.as_u16(),
        "created": reply.body["created"],
        "object": kind.name(),
        "id": id,
    });
    if reply.replayed {
        result["replayed"] = json!(true);
    }
    if let Some(warnings) = reply.body.get("warnings") {
        result["warnings"] = warnings.clone();
    }
    result
}

/// An item's error, with `param` relative to the item: the header of the single endpoint
/// is the item's `idempotency_key` field, a product's `type` its `product_type`.
fn failure(kind: Option<ObjectType>, error: &ApiError) -> Value {
    let mut body = json!({ "code": error.code(), "message": error.to_string() });
    let param = match (kind, error.param()) {
        (_, Some("Idempotency-Key")) => Some(IDEMPOTENCY_KEY_FIELD),
        (Some(ObjectType::Product), Some(TYPE_FIELD)) => Some(PRODUCT_TYPE_FIELD),
        (_, param) => param,
    };
    if let Some(param) = param {
        body["param"] = json!(param);
    }
    if let Some(detail) = error.rate_limit() {
        body["rate_limit"] = detail;
    }
    json!({ "status": error.status().as_u16(), "error": body })
}

/// Applies the items: the first `admitted` (what the rate limit granted) are written, the
/// others answered 429 as `rate` says. `deadline` is the request's; `rate.reset_secs` goes
/// into `Retry-After` when some items should be resent.
pub async fn run(
    store: &crate::store::Store,
    caller: &Caller,
    batch: Batch,
    admitted: usize,
    rate: &crate::ratelimit::Decision,
    deadline: Instant,
) -> Result<Reply, ApiError> {
    let retry_after_secs = rate.reset_secs;
    let deadline = deadline - ANSWER_MARGIN;
    let count = batch.items.len();
    let mut results: Vec<Value> = vec![Value::Null; count];
    let mut ready: Vec<Option<Item>> = Vec::with_capacity(count);
    let mut kinds: Vec<Option<ObjectType>> = Vec::with_capacity(count);
    for (index, raw) in batch.items.iter().enumerate() {
        match prepare(raw) {
            Ok(item) if index >= admitted => {
                results[index] = failure(Some(item.kind), &rate.refusal(batch.costs[index]));
                kinds.push(Some(item.kind));
                ready.push(None);
            }
            Ok(item) => {
                kinds.push(Some(item.kind));
                ready.push(Some(item));
            }
            Err(error) => {
                results[index] = failure(None, &error);
                kinds.push(None);
                ready.push(None);
            }
        }
    }
    let records: Vec<Vec<String>> = ready
        .iter()
        .map(|item| item.as_ref().map(records).unwrap_or_default())
        .collect();
    let work: Vec<Vec<(usize, Item)>> = groups(&records)
        .into_iter()
        .map(|group| {
            group
                .into_iter()
                .filter_map(|index| ready[index].take().map(|item| (index, item)))
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect();

    let outcomes: Vec<Vec<(usize, Result<Reply, ApiError>)>> = futures::stream::iter(work)
        .map(|group| apply_in_order(store, caller, group, deadline))
        .buffer_unordered(MAX_CONCURRENT_ITEMS)
        .collect()
        .await;
    for (index, outcome) in outcomes.into_iter().flatten() {
        let kind = kinds[index].expect("a prepared item has a kind");
        results[index] = match outcome {
            Ok(reply) => success(kind, &reply),
            Err(error) => failure(Some(kind), &error),
        };
    }

    let resend = results
        .iter()
        .any(|result| matches!(result["status"].as_u64(), Some(429) | Some(503)));
    let mut reply = Reply::ok(json!({ "results": results }));
    if resend {
        reply
            .headers
            .push(("retry-after", retry_after_secs.to_string()));
    }
    Ok(reply)
}

/// Applies one group's items one after the other. Once one is unavailable (storage trouble,
/// or the deadline), the rest are not attempted: a resend of that item must not apply it
/// after a later one of the same record.
async fn apply_in_order(
    store: &crate::store::Store,
    caller: &Caller,
    group: Vec<(usize, Item)>,
    deadline: Instant,
) -> Vec<(usize, Result<Reply, ApiError>)> {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut stopped = false;
    for (index, item) in group {
        if stopped || Instant::now() >= deadline {
            outcomes.push((index, Err(ApiError::StorageUnavailable)));
            continue;
        }
        let outcome =
            tokio::time::timeout_at(deadline, Box::pin(call_handler(store, caller, item)))
                .await
                .unwrap_or(Err(ApiError::StorageUnavailable));
        stopped = matches!(
            outcome,
            Err(ApiError::StorageUnavailable | ApiError::Internal)
        );
        outcomes.push((index, outcome));
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: Value) -> Box<RawValue> {
        RawValue::from_string(value.to_string()).unwrap()
    }

    #[test]
    fn an_item_becomes_the_single_endpoints_body() {
        let item = prepare(&raw(json!({
            "type": "event", "idempotency_key": " k1 ", "event": "app_opened",
            "user": {"external_user_id": "u"}
        })))
        .unwrap();
        assert_eq!(item.kind, ObjectType::Event);
        assert_eq!(
            item.idempotency_key.as_ref().map(IdempotencyKey::as_str),
            Some("k1")
        );
        let body: Value = serde_json::from_slice(&item.body).unwrap();
        assert_eq!(
            body,
            json!({"event": "app_opened", "user": {"external_user_id": "u"}})
        );
    }

    #[test]
    fn a_products_own_type_is_product_type() {
        let item = prepare(&raw(json!({
            "type": "product", "external_product_id": "p", "product_type": "service"
        })))
        .unwrap();
        let body: Value = serde_json::from_slice(&item.body).unwrap();
        assert_eq!(body, json!({"external_product_id": "p", "type": "service"}));
    }

    #[test]
    fn repeated_keys_reach_the_handler() {
        let raw =
            RawValue::from_string(r#"{"type":"user","email":"a@b.c","email":"d@e.f"}"#.into())
                .unwrap();
        let item = prepare(&raw).unwrap();
        assert_eq!(item.body, br#"{"email":"a@b.c","email":"d@e.f"}"#);
        assert!(input::parse_user(&item.body).is_err());
    }

    #[test]
    fn a_bad_type_is_a_field_error() {
        for (item, code) in [
            (json!({"email": "a@b.c"}), "missing_field"),
            (json!({"type": null}), "missing_field"),
            (json!({"type": "users"}), "invalid_field"),
            (json!({"type": 1}), "invalid_field"),
            (json!(["user"]), "invalid_json"),
            (
                json!({"type": "event", "idempotency_key": 5}),
                "invalid_idempotency_key",
            ),
            (
                json!({"type": "event", "idempotency_key": ""}),
                "invalid_idempotency_key",
            ),
        ] {
            let error = prepare(&raw(item.clone())).unwrap_err();
            assert_eq!(error.code(), code, "{item}");
        }
    }

    #[test]
    fn items_sharing_a_record_form_one_ordered_group() {
        let records: Vec<Vec<String>> = [
            vec!["user:a"],
            vec!["product:p"],
            vec!["sale:1", "user:b", "product:p"],
            vec!["user:b"],
            vec![],
            vec!["user:a", "thread:t"],
            vec!["thread:t"],
        ]
        .iter()
        .map(|names| names.iter().map(|n| n.to_string()).collect())
        .collect();
        assert_eq!(
            groups(&records),
            vec![vec![0, 5, 6], vec![1, 2, 3], vec![4]]
        );
    }

    #[test]
    fn envelope_limits() {
        let body = |n: usize| {
            let items: Vec<Value> = (0..n).map(|_| json!({"type": "user"})).collect();
            json!({ "batch": items }).to_string().into_bytes()
        };
        assert_eq!(
            parse(&body(MAX_BATCH_ITEMS)).unwrap().len(),
            MAX_BATCH_ITEMS
        );
        assert_eq!(
            parse(&body(MAX_BATCH_ITEMS + 1)).unwrap_err().code(),
            "too_many_items"
        );
        assert_eq!(parse(&body(0)).unwrap_err().code(), "invalid_field");
        assert_eq!(parse(b"{}").unwrap_err().code(), "missing_field");
        assert_eq!(parse(b"[1]").unwrap_err().code(), "invalid_json");
        assert_eq!(
            parse(b"{\"batch\": 3}").unwrap_err().code(),
            "invalid_field"
        );
    }
}
