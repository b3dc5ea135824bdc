//! The read endpoints: one customer with its context, the activity segment, a thread, the
//! inbox, the bookings of a time window. Each is a GetItem and/or Queries on one partition
//! (bounded in number), plus at most a BatchGetItem for the related records of the page.
//! Never a Scan.

use crate::auth::Caller;
use crate::cursor::CursorScope;
use crate::endpoint::{parse_id, PathParams};
use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::handlers::Reply;
use crate::input::UserIdentity;
use crate::query::QueryParams;
use crate::store::items::public_view;
use crate::store::keys::item_key;
use crate::store::keys::{self, Index, ItemKey};
use crate::store::reads::{Page, Query, SortKey};
use crate::store::{s, Item, Store};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use std::collections::HashMap;

/// One page of `query` for `org`, resumed from the request's `cursor` (refused unless it
/// was issued for this org and this `list` with the same parameters), with the next page's
/// cursor.
async fn list_page(
    store: &Store,
    org: &str,
    params: &QueryParams,
    list: &str,
    query: &Query,
) -> Result<(Page, Option<String>), ApiError> {
    let scope = CursorScope {
        org_id: org,
        query: params.fingerprint(list),
        index: query.index,
        partition: &query.partition,
    };
    let page = store
        .query_page(query, params.limit()?, scope.start(params.cursor())?)
        .await?;
    let next = scope.next(page.next.as_ref());
    Ok((page, next))
}

/// Most events, sales, bookings and conversations `users/{id}/` returns, each.
pub const USER_CONTEXT_ITEMS: usize = 20;
/// Conversations read to pick the most recent ones (they are keyed by thread id, not time).
pub const USER_CONTEXT_THREADS_READ: usize = 100;
/// Largest `inactive_days` (100 years).
pub const MAX_INACTIVE_DAYS: u32 = 36_500;
/// Messages a thread's counts are computed over, at most.
pub const MAX_COUNTED_MESSAGES: usize = 5_000;

/// The user filters of `users/`: text fields, then boolean fields.
const USER_TEXT_FILTERS: [&str; 5] = [
    "subscription_status",
    "plan",
    "status",
    "install_source",
    "install_platform",
];
const USER_FLAG_FILTERS: [&str; 2] = ["is_installed", "is_active_customer"];

fn text_attribute<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .map(String::as_str)
}

/// The user a stored reference (`client`, `contact`: `{"external_user_id"}` or
/// `{"email"}`) points to.
fn referenced_user(org_id: &str, item: &Item, attribute: &str) -> Option<ItemKey> {
    let reference = item.get(attribute)?.as_m().ok()?;
    let text = |name: &str| reference.get(name).and_then(|v| v.as_s().ok());
    let identity = match (text("external_user_id"), text("email")) {
        (Some(id), _) => UserIdentity::External(parse_id(id).ok()?),
        (None, Some(email)) => UserIdentity::Email(email.parse().ok()?),
        (None, None) => return None,
    };
    Some(keys::user(org_id, &identity))
}

fn product_key(org_id: &str, id: &str) -> Option<ItemKey> {
    Some(keys::product(org_id, &parse_id(id).ok()?))
}

fn service_ids(item: &Item) -> Vec<&str> {
    item.get("service_external_ids")
        .and_then(|v| v.as_l().ok())
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_s().ok())
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default()
}

/// Related records by key, read with one BatchGetItem (chunked by 100 keys).
struct Related(HashMap<ItemKey, Item>);

impl Related {
    async fn read(store: &Store, keys: Vec<ItemKey>) -> Result<Self, ApiError> {
        let items = store.batch_get(&keys).await?;
        Ok(Related(
            items
                .into_iter()
                .filter_map(|item| Some((item_key(&item)?, item)))
                .collect(),
        ))
    }

    fn view(&self, key: Option<&ItemKey>) -> Option<Value> {
        key.and_then(|key| self.0.get(key)).map(public_view)
    }
}

/// Replaces the reference `attribute` of `object` with the record it names, when found.
fn expand(object: &mut Value, attribute: &str, record: Option<Value>) {
    if let Some(record) = record {
        object[attribute] = record;
    }
}

fn awaiting_reply(thread: &Item) -> bool {
    text_attribute(thread, "last_message_direction") == Some("in")
}

fn thread_view(thread: &Item) -> Value {
    let mut view = public_view(thread);
    view["awaiting_reply"] = json!(awaiting_reply(thread));
    view
}

fn page_body(name: &str, items: Vec<Value>, next_cursor: Option<String>) -> Value {
    json!({ name: items, "next_cursor": next_cursor })
}

/// `GET users/{external_user_id}/`: the client record and, newest first, its recent
/// events, sales (with their products), bookings and conversations (with their last
/// message), at most [`USER_CONTEXT_ITEMS`] of each; `has_more` says which lists were cut.
pub async fn users_get(
    store: &Store,
    caller: &Caller,
    params: &PathParams,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let identity = UserIdentity::External(params.id("external_user_id")?);
    let user_key = keys::user(org, &identity);
    let under_user = |kind: &str| {
        Query::new(
            Index::Gsi1,
            user_key.pk.clone(),
            SortKey::BeginsWith(format!("{kind}#")),
        )
        .newest_first()
    };
    let [events, sales, bookings, threads] = ["EVENT", "SALE", "BOOKING", "THREAD"].map(under_user);
    let (user, events, sales, bookings, threads) = futures::try_join!(
        store.get(&user_key),
        store.query_up_to(&events, USER_CONTEXT_ITEMS),
        store.query_up_to(&sales, USER_CONTEXT_ITEMS),
        store.query_up_to(&bookings, USER_CONTEXT_ITEMS),
        store.query_up_to(&threads, USER_CONTEXT_THREADS_READ),
    )?;
    let user = user.ok_or(ApiError::UserNotFound)?;

    let (mut threads, more_threads) = threads;
    threads.sort_by(|a, b| {
        text_attribute(b, "last_message_at").cmp(&text_attribute(a, "last_message_at"))
    });
    let more_threads = more_threads || threads.len() > USER_CONTEXT_ITEMS;
    threads.truncate(USER_CONTEXT_ITEMS);

    let product_keys: Vec<Option<ItemKey>> = sales
        .0
        .iter()
        .map(|sale| product_key(org, text_attribute(sale, "external_product_id")?))
        .collect();
    let last_messages = futures::future::try_join_all(threads.iter().map(|thread| async {
        let Some(pk) = text_attribute(thread, "PK") else {
            return Ok(None);
        };
        let query =
            Query::new(Index::Gsi1, pk, SortKey::BeginsWith("MESSAGE#".into())).newest_first();
        let (found, _) = store.query_up_to(&query, 1).await?;
        Ok::<_, ApiError>(found.first().map(public_view))
    }));
    let products = Related::read(store, product_keys.iter().flatten().cloned().collect());
    let (last_messages, products) = futures::try_join!(last_messages, products)?;

    let sales_view: Vec<Value> = sales
        .0
        .iter()
        .zip(&product_keys)
        .map(|(sale, product)| {
            let mut view = public_view(sale);
            view["product"] = products.view(product.as_ref()).unwrap_or(Value::Null);
            view
        })
        .collect();
    let threads_view: Vec<Value> = threads
        .iter()
        .zip(last_messages)
        .map(|(thread, last_message)| {
            let mut view = thread_view(thread);
            view["last_message"] = last_message.unwrap_or(Value::Null);
            view
        })
        .collect();
    let views = |items: &[Item]| items.iter().map(public_view).collect::<Vec<_>>();
    Ok(Reply::ok(json!({
        "user": public_view(&user),
        "events": views(&events.0),
        "sales": sales_view,
        "bookings": views(&bookings.0),
        "conversations": threads_view,
        "has_more": {
            "events": events.1,
            "sales": sales.1,
            "bookings": bookings.1,
            "conversations": more_threads,
        },
    })))
}

/// `GET users/`: the org's users, least recently active first, optionally only those
/// inactive for `inactive_days` and matching the field filters. Paginated.
pub async fn users_list(
    store: &Store,
    caller: &Caller,
    raw_query: Option<&str>,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let allowed: Vec<&str> = std::iter::once("inactive_days")
        .chain(USER_TEXT_FILTERS)
        .chain(USER_FLAG_FILTERS)
        .collect();
    let params = QueryParams::parse(raw_query, &allowed)?;
    let inactive_days = params.integer("inactive_days", 1, MAX_INACTIVE_DAYS)?;
    let mut filters = Vec::new();
    for name in USER_TEXT_FILTERS {
        if let Some(value) = params.text(name)? {
            filters.push((name, s(value.as_str())));
        }
    }
    for name in USER_FLAG_FILTERS {
        if let Some(value) = params.boolean(name)? {
            filters.push((name, AttributeValue::Bool(value)));
        }
    }
    let partition = keys::users_by_activity(org);
    let cutoff = inactive_days.map(|days| {
        let at = time::OffsetDateTime::now_utc() - time::Duration::days(days.into());
        Timestamp::from_offset_date_time(at).to_stored()
    });
    // Sort keys are `<last activity>#<identity>`: everything below the cutoff time is
    // older than it.
    let sort = cutoff.clone().map_or(SortKey::Any, SortKey::Below);
    let mut query = Query::new(Index::Gsi2, partition.clone(), sort);
    query.filters = filters;
    let (page, next) = list_page(store, org, &params, "users", &query).await?;
    let users = page.items.iter().map(public_view).collect();
    let mut body = page_body("users", users, next);
    body["inactive_since"] = json!(cutoff);
    Ok(Reply::ok(body))
}

/// `GET conversations/{thread_id}/`: the thread, its contact and channel, its messages in
/// `sent_at` order (paginated), and a summary computed from all its messages (up to
/// [`MAX_COUNTED_MESSAGES`]; `complete` says whether all were counted).
pub async fn conversations_get(
    store: &Store,
    caller: &Caller,
    params: &PathParams,
    raw_query: Option<&str>,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let thread_id = params.id("thread_id")?;
    let query = QueryParams::parse(raw_query, &[])?;
    let limit = query.limit()?;
    let thread_pk = keys::thread_pk(org, &thread_id);
    let scope = CursorScope {
        org_id: org,
        query: query.fingerprint(&format!("conversation\0{thread_id}")),
        index: Index::Gsi1,
        partition: &thread_pk,
    };
    let start = scope.start(query.cursor())?;
    let messages = Query::new(
        Index::Gsi1,
        thread_pk.clone(),
        SortKey::BeginsWith("MESSAGE#".into()),
    );
    // Counts at read time, over the thread's own partition with a small projection:
    // exact however often, concurrently or out of order messages were upserted.
    let mut all_messages = Query::new(
        Index::Table,
        thread_pk.clone(),
        SortKey::BeginsWith("MESSAGE#".into()),
    );
    all_messages.projection = Some(vec!["direction", "sent_at"]);
    let thread_key = keys::thread(org, &thread_id);
    let (thread, page, (counted, more)) = futures::try_join!(
        store.get(&thread_key),
        store.query_page(&messages, limit, start),
        store.query_up_to(&all_messages, MAX_COUNTED_MESSAGES),
    )?;
    let thread = thread.ok_or(ApiError::ThreadNotFound)?;

    let contact = referenced_user(org, &thread, "contact");
    let channel = text_attribute(&thread, "external_channel_id")
        .and_then(|id| Some(keys::channel(org, &parse_id(id).ok()?)));
    let related = Related::read(store, contact.iter().chain(&channel).cloned().collect()).await?;

    let of_direction = |direction: &str| {
        let matching: Vec<&Item> = counted
            .iter()
            .filter(|m| text_attribute(m, "direction") == Some(direction))
            .collect();
        let last = matching
            .iter()
            .filter_map(|m| text_attribute(m, "sent_at"))
            .max()
            .map(str::to_owned);
        (matching.len(), last)
    };
    let (inbound, last_inbound_at) = of_direction("in");
    let (outbound, last_outbound_at) = of_direction("out");
    let messages: Vec<Value> = page.items.iter().map(public_view).collect();
    Ok(Reply::ok(json!({
        "conversation": thread_view(&thread),
        "contact": related.view(contact.as_ref()),
        "channel": related.view(channel.as_ref()),
        "summary": {
            "message_count": counted.len(),
            "inbound_count": inbound,
            "outbound_count": outbound,
            "last_inbound_at": last_inbound_at,
            "last_outbound_at": last_outbound_at,
            "awaiting_reply": awaiting_reply(&thread),
            "complete": !more,
        },
        "messages": messages,
        "next_cursor": scope.next(page.next.as_ref()),
    })))
}

/// `GET inbox/?status=awaiting_reply`: threads whose last message is inbound, longest
/// waiting first, each with its contact. Paginated.
pub async fn inbox(
    store: &Store,
    caller: &Caller,
    raw_query: Option<&str>,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let params = QueryParams::parse(raw_query, &["status"])?;
    // The one inbox list kept so far; the parameter names it so others can be added.
    params.choice("status", &["awaiting_reply"])?;
    let query = Query::new(Index::Gsi2, keys::inbox_awaiting_reply(org), SortKey::Any);
    let (page, next) = list_page(store, org, &params, "inbox", &query).await?;
    let contacts: Vec<Option<ItemKey>> = page
        .items
        .iter()
        .map(|thread| referenced_user(org, thread, "contact"))
        .collect();
    let related = Related::read(store, contacts.iter().flatten().cloned().collect()).await?;
    let threads = page
        .items
        .iter()
        .zip(&contacts)
        .map(|(thread, contact)| {
            let mut view = thread_view(thread);
            expand(&mut view, "contact", related.view(contact.as_ref()));
            view
        })
        .collect();
    Ok(Reply::ok(page_body("conversations", threads, next)))
}

/// `GET bookings/?from=&to=`: bookings scheduled in `[from, to)`, earliest first, each
/// with its client and services. Paginated.
pub async fn bookings_list(
    store: &Store,
    caller: &Caller,
    raw_query: Option<&str>,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let params = QueryParams::parse(raw_query, &["from", "to"])?;
    let from = params.required_timestamp("from")?;
    let to = params.required_timestamp("to")?;
    if to <= from {
        return Err(ApiError::invalid_field("to", "`to` must be after `from`"));
    }
    // Sort keys are `<scheduled_at>#<booking_id>`: `from` itself sorts before every key
    // at `from`, and `to` before every key at `to`, so BETWEEN gives [from, to).
    let window = SortKey::Between(from.to_stored(), to.to_stored());
    let query = Query::new(Index::Gsi2, keys::bookings_by_schedule(org), window);
    let (page, next) = list_page(store, org, &params, "bookings", &query).await?;
    let clients: Vec<Option<ItemKey>> = page
        .items
        .iter()
        .map(|booking| referenced_user(org, booking, "client"))
        .collect();
    let services: Vec<Vec<ItemKey>> = page
        .items
        .iter()
        .map(|booking| {
            service_ids(booking)
                .into_iter()
                .filter_map(|id| product_key(org, id))
                .collect()
        })
        .collect();
    let wanted = clients
        .iter()
        .flatten()
        .chain(services.iter().flatten())
        .cloned()
        .collect();
    let related = Related::read(store, wanted).await?;
    let bookings = page
        .items
        .iter()
        .zip(clients.iter().zip(&services))
        .map(|(booking, (client, services))| {
            let mut view = public_view(booking);
            expand(&mut view, "client", related.view(client.as_ref()));
            view["services"] = services
                .iter()
                .filter_map(|key| related.view(Some(key)))
                .collect();
            view
        })
        .collect();
    Ok(Reply::ok(page_body("bookings", bookings, next)))
}
