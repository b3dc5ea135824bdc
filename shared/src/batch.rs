//! `POST batch/`: up to [`MAX_BATCH_ITEMS`] objects of any type in one request.
//!
//! Each item is parsed once, as exactly the body its single endpoint gets (the item without
//! `type` and `idempotency_key`), into the value that endpoint's very handler takes, so
//! validation, error codes, nested upserts, identity, idempotency and counters cannot
//! differ. The email-only user mentions are then resolved (one BatchGetItem for all), and
//! items that touch a common record (the same user, however named, product, sale, thread,
//! message, booking, channel or idempotency key, nested ones included) form a group that is
//! applied in request order; groups run concurrently, at most [`MAX_CONCURRENT_ITEMS`] at a
//! time, until the request deadline. What was not stored because of storage trouble or the deadline is
//! 503 `storage_unavailable`, never a 2xx, so the client resends only those items.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::fields::{json_without_repeated_keys, Email, Id};
use crate::handlers::{self, Reply};
use crate::idempotency::{IdempotencyKey, MAX_IDEMPOTENCY_KEY_CHARS};
use crate::input::{self, User, UserIdentity};
use crate::request::{ObjectType, WriteRequest};
use crate::store::Store;
use futures::StreamExt;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
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

/// The body of `batch/`: the items, each parsed (before the rate limit: their cost
/// depends on what they are).
#[derive(Debug)]
pub struct Batch {
    /// An item's error comes with its type when it has a valid one.
    items: Vec<Result<Item, (Option<ObjectType>, ApiError)>>,
    /// Each item's rate-limit tokens.
    costs: Vec<u32>,
}

#[derive(Deserialize)]
struct Envelope {
    batch: Option<Vec<Box<RawValue>>>,
}

/// Parses the envelope `{"batch": [...]}`: 1 to [`MAX_BATCH_ITEMS`] items of any JSON,
/// then each item on its own ([`parse_item`]; its error is its answer, in [`run`]).
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
    let parsed: Vec<_> = items.iter().map(|raw| parse_item(raw)).collect();
    let costs = items
        .iter()
        .zip(&parsed)
        .map(|(raw, item)| match item {
            Ok(item) => item.request.cost(),
            Err(_) => item_cost(raw),
        })
        .collect();
    Ok(Batch {
        items: parsed,
        costs,
    })
}

/// The tokens of an item that did not parse: a booking's by its `services`, any other
/// item's one (it is refused in [`run`]).
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

/// An item as its single endpoint would get it.
#[derive(Debug)]
struct Prepared {
    kind: ObjectType,
    idempotency_key: Option<IdempotencyKey>,
    /// The single endpoint's body.
    body: Vec<u8>,
}

fn within_size(raw: &RawValue) -> Result<(), ApiError> {
    if raw.get().len() > crate::encoding::MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: crate::encoding::MAX_BODY_BYTES,
        });
    }
    Ok(())
}

/// One item, parsed for its handler.
#[derive(Debug)]
struct Item {
    kind: ObjectType,
    request: WriteRequest,
    /// Its email-only mention could not be resolved (storage trouble): what it answers.
    unresolved: Option<ApiError>,
}

/// Parses an item once: as JSON, then its members (but `type` and `idempotency_key`) as
/// the body of its type. An item that does not make it that way (a bad `type`, a repeated
/// key, a field error) goes through [`prepare`] and the single endpoint's byte parser,
/// whose error is the one the item answers.
/// The error comes with the item's type when it has a valid one.
fn parse_item(raw: &RawValue) -> Result<Item, (Option<ObjectType>, ApiError)> {
    within_size(raw).map_err(|error| (None, error))?;
    let parsed = match json_without_repeated_keys(raw.get().as_bytes()) {
        Some(Value::Object(members)) => from_members(members),
        _ => None,
    };
    let (kind, request) = match parsed {
        Some(parsed) => parsed,
        None => {
            let item = prepare(raw).map_err(|error| (None, error))?;
            let request = WriteRequest::parse(item.kind, &item.body, item.idempotency_key);
            (item.kind, request)
        }
    };
    Ok(Item {
        kind,
        request: request.map_err(|error| (Some(kind), error))?,
        unresolved: None,
    })
}

/// [`parse_item`]'s one parse; `None` sends the item to the byte parser.
fn from_members(
    mut members: serde_json::Map<String, Value>,
) -> Option<(ObjectType, Result<WriteRequest, ApiError>)> {
    let kind = ObjectType::from_name(members.remove(TYPE_FIELD)?.as_str()?)?;
    let key = match (kind, members.remove(IDEMPOTENCY_KEY_FIELD)) {
        (ObjectType::Event, Some(Value::String(key))) => Some(IdempotencyKey::parse(&key).ok()?),
        (ObjectType::Event, Some(Value::Null)) | (_, None) => None,
        (ObjectType::Event, Some(_)) => return None,
        // Like any unknown field, ignored on other types.
        (_, Some(_)) => None,
    };
    if kind == ObjectType::Product {
        if let Some(product_type) = members.remove(PRODUCT_TYPE_FIELD) {
            members.insert(TYPE_FIELD.to_owned(), product_type);
        }
    }
    let request = WriteRequest::from_value(kind, Value::Object(members), key)?;
    Some((kind, request))
}

/// Reads `type` and `idempotency_key` and rebuilds the rest as the single endpoint's body.
fn prepare(raw: &RawValue) -> Result<Prepared, ApiError> {
    within_size(raw)?;
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
    Ok(Prepared {
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
    store: &Store,
    caller: &Caller,
    batch: Batch,
    admitted: usize,
    rate: &crate::ratelimit::Decision,
    deadline: Instant,
) -> Result<Reply, ApiError> {
    let retry_after_secs = rate.reset_secs;
    let deadline = deadline - ANSWER_MARGIN;
    let Batch { items, costs } = batch;
    let count = items.len();
    let mut results: Vec<Value> = vec![Value::Null; count];
    let mut ready: Vec<Option<Item>> = Vec::with_capacity(count);
    let mut kinds: Vec<Option<ObjectType>> = Vec::with_capacity(count);
    for (index, parsed) in items.into_iter().enumerate() {
        let kind = match &parsed {
            Ok(item) => Some(item.kind),
            Err((kind, _)) => *kind,
        };
        kinds.push(kind);
        match parsed {
            // Past what the rate limit granted, an item with a valid type is refused.
            _ if index >= admitted && kind.is_some() => {
                results[index] = failure(kind, &rate.refusal(costs[index]));
                ready.push(None);
            }
            Ok(item) => ready.push(Some(item)),
            Err((kind, error)) => {
                results[index] = failure(kind, &error);
                ready.push(None);
            }
        }
    }
    resolve_emails(store, &caller.org_id, &mut ready, deadline).await;
    let records: Vec<Vec<String>> = ready
        .iter()
        .map(|item| {
            item.as_ref()
                .map(|item| item.request.records())
                .unwrap_or_default()
        })
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
        let kind = kinds[index].expect("a parsed item has a kind");
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

/// The email of an email-only user mention.
fn email_only(user: &User) -> Option<&Email> {
    match &user.identity {
        UserIdentity::Email(email) => Some(email),
        UserIdentity::External(_) => None,
    }
}

/// Resolves the items' email-only user mentions before they are grouped, so that a person
/// named by email in one item and by id in another is one group: the read each of them
/// made in its handler, here in BatchGetItem calls of 100 (one read per distinct email).
/// When it fails, those items answer its error.
async fn resolve_emails(store: &Store, org: &str, items: &mut [Option<Item>], deadline: Instant) {
    let emails: Vec<Email> = items
        .iter()
        .flatten()
        .filter_map(|item| item.request.user().and_then(email_only).cloned())
        .collect();
    if emails.is_empty() {
        return;
    }
    let owners = tokio::time::timeout_at(deadline, store.email_owners(org, &emails))
        .await
        .unwrap_or(Err(ApiError::StorageUnavailable));
    for item in items.iter_mut().flatten() {
        let Some(user) = item.request.user_mut() else {
            continue;
        };
        let Some(email) = email_only(user) else {
            continue;
        };
        match &owners {
            Ok(owners) => {
                if let Some(owner) = owners.get(email) {
                    user.identity = UserIdentity::External(owner.clone());
                }
                user.resolved = true;
            }
            Err(error) => item.unresolved = Some(error.clone()),
        }
    }
}

/// What the items of a group applied so far may have changed about emails: the ones they
/// claimed, and the users whose email `users/upsert` moved (releasing the old one).
#[derive(Default)]
struct Claims {
    emails: HashSet<Email>,
    movers: HashSet<Id>,
}

impl Claims {
    /// Notes what `item` may change (before it runs: it is consumed).
    fn note(&mut self, item: &Item) {
        let Some(user) = item.request.user() else {
            return;
        };
        if let (Some(id), Some(email)) = (&user.fields.external_user_id, &user.fields.email) {
            self.emails.insert(email.clone());
            if item.kind == ObjectType::User {
                self.movers.insert(id.clone());
            }
        }
    }

    /// A mention resolved before the group ran is looked up again when an earlier item may
    /// have changed what its email names.
    fn refresh(&self, item: &mut Item) {
        let Some(user) = item.request.user_mut() else {
            return;
        };
        let Some(email) = user.fields.email.clone().filter(|_| user.resolved) else {
            return;
        };
        let moved =
            matches!(&user.identity, UserIdentity::External(id) if self.movers.contains(id));
        if moved || self.emails.contains(&email) {
            user.identity = UserIdentity::Email(email);
            user.resolved = false;
        }
    }
}

/// Applies one group's items one after the other. Once one is unavailable (storage trouble,
/// or the deadline), the rest are not attempted: a resend of that item must not apply it
/// after a later one of the same record.
async fn apply_in_order(
    store: &Store,
    caller: &Caller,
    group: Vec<(usize, Item)>,
    deadline: Instant,
) -> Vec<(usize, Result<Reply, ApiError>)> {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut stopped = false;
    let mut claims = Claims::default();
    for (index, mut item) in group {
        if stopped || Instant::now() >= deadline {
            outcomes.push((index, Err(ApiError::StorageUnavailable)));
            continue;
        }
        claims.refresh(&mut item);
        claims.note(&item);
        let outcome = match item.unresolved {
            Some(error) => Err(error),
            None => {
                let write = Box::pin(handlers::write(store, caller, item.request));
                tokio::time::timeout_at(deadline, write)
                    .await
                    .unwrap_or(Err(ApiError::StorageUnavailable))
            }
        };
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
    fn an_item_parses_once_into_what_its_single_body_gives() {
        for item in [
            json!({"type": "product", "external_product_id": "p", "product_type": "service",
                   "idempotency_key": 5}),
            json!({"type": "event", "idempotency_key": " k ", "event": "e", "n": [1.0, {"b": 1, "a": 2}],
                   "event_timestamp": "2026-01-01T00:00:00Z", "user": {"email": "A@x.io"}}),
            json!({"type": "user", "external_user_id": "u", "product_type": "x"}),
        ] {
            let raw = raw(item);
            let parsed = parse_item(&raw).unwrap();
            let single = prepare(&raw).unwrap();
            let single = WriteRequest::parse(single.kind, &single.body, single.idempotency_key);
            assert_eq!(
                format!("{:?}", parsed.request),
                format!("{:?}", single.unwrap())
            );
        }
        let bad =
            raw(json!({"type": "product", "external_product_id": "p", "product_type": "gift"}));
        let (kind, error) = parse_item(&bad).unwrap_err();
        assert_eq!(
            (kind, error.param()),
            (Some(ObjectType::Product), Some("type"))
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
