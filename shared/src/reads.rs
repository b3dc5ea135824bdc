use crate::auth::Caller;
use crate::cursor::CursorScope;
use crate::endpoint::{parse_id, PathParams};
use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::handlers::Reply;
use crate::input::UserIdentity;
use crate::query::QueryParams;
use crate::segment::Segment;
use crate::states::{billing_state, lifecycle_stage, StageSettings};
use crate::store::keys::{self, ItemKey, OrgList};
use crate::store::ops::lists::{PageScope, UserList};
use crate::store::records::{
    BookingView, ChannelView, EventView, MessageTally, MessageView, ProductView, SaleView,
    ThreadView, UserRecord, UserRef, UserView,
};
use crate::store::Store;
use crate::store::{Page, Position};
use crate::views::{json, BookingWithLinks, SaleWithProduct, ThreadWithContext};
use serde_json::{json, Value};
use std::collections::HashMap;

/// One page of the org-wide `list`, read by `read` (from a position, `limit` items)
/// from the request's `cursor` (refused unless it was issued for this org and this `name`
/// with the same parameters), with the next page's cursor.
async fn list_page<T, Read>(
    org: &str,
    params: &QueryParams,
    (name, list): (&str, OrgList),
    read: impl FnOnce(Option<Position>, usize) -> Read,
) -> Result<(Page<T>, Option<String>), ApiError>
where
    Read: std::future::Future<Output = Result<Page<T>, ApiError>>,
{
    let pages = PageScope::list(org, list);
    let scope = CursorScope {
        org_id: org,
        query: params.fingerprint(name),
        pages: &pages,
    };
    let start = scope.start(params.cursor())?;
    let page = read(start, params.limit()?).await?;
    let next = scope.next(page.next.as_ref());
    Ok((page, next))
}

/// Most events, sales, bookings and conversations `users/{id}/` returns, each.
pub const USER_CONTEXT_ITEMS: usize = 20;
/// Conversations read to pick the most recent ones (they are keyed by thread id, not time).
pub const USER_CONTEXT_THREADS_READ: usize = 100;
/// Largest `inactive_days` (100 years).
pub const MAX_INACTIVE_DAYS: u32 = crate::segment::MAX_DAYS;
/// Messages a thread's counts are computed over, at most.
pub const MAX_COUNTED_MESSAGES: usize = 5_000;

/// The user a stored reference (`client`, `contact`) points to.
fn referenced_user(org_id: &str, reference: Option<&UserRef>) -> Option<ItemKey> {
    let reference = reference?;
    let identity = match (&reference.external_user_id, &reference.email) {
        (Some(id), _) => UserIdentity::External(parse_id(id).ok()?),
        (None, Some(email)) => UserIdentity::Email(email.parse().ok()?),
        (None, None) => return None,
    };
    Some(keys::user(org_id, &identity))
}

fn product_key(org_id: &str, id: &str) -> Option<ItemKey> {
    Some(keys::product(org_id, &parse_id(id).ok()?))
}

/// Related records by key, read with one BatchGetItem (chunked by 100 keys), each decoded
/// as the record type its key names.
struct Related {
    users: HashMap<ItemKey, UserView>,
    products: HashMap<ItemKey, ProductView>,
    channels: HashMap<ItemKey, ChannelView>,
}

impl Related {
    /// Reads `users`, `products` and `channels` (by key) in one batch.
    async fn read(
        store: &Store,
        users: Vec<ItemKey>,
        products: Vec<ItemKey>,
        channels: Vec<ItemKey>,
    ) -> Result<Self, ApiError> {
        let wanted: Vec<ItemKey> = users
            .iter()
            .chain(&products)
            .chain(&channels)
            .cloned()
            .collect();
        let mut related = Related {
            users: HashMap::new(),
            products: HashMap::new(),
            channels: HashMap::new(),
        };
        // A user merged into another (see `store::identity`) is shown as that one.
        let mut merged: Vec<(ItemKey, ItemKey)> = Vec::new();
        for stored in store.batch_get(&wanted).await? {
            let Some(key) = stored.key() else { continue };
            if users.contains(&key) {
                let user: UserRecord = stored.decode()?;
                match user.merged_into.as_deref() {
                    Some(into) => merged.push((key, keys::user_key_of(into))),
                    None => {
                        related.users.insert(key, user.view);
                    }
                }
            } else if products.contains(&key) {
                related.products.insert(key, stored.decode()?);
            } else if channels.contains(&key) {
                related.channels.insert(key, stored.decode()?);
            }
        }
        let targets: Vec<ItemKey> = merged.iter().map(|(_, into)| into.clone()).collect();
        let found: HashMap<ItemKey, UserView> = store
            .batch_get(&targets)
            .await?
            .into_iter()
            .filter_map(|stored| Some((stored.key()?, stored.decode::<UserView>())))
            .map(|(key, user)| user.map(|user| (key, user)))
            .collect::<Result<_, _>>()?;
        for (key, into) in merged {
            if let Some(user) = found.get(&into) {
                related.users.insert(key, user.clone());
            }
        }
        Ok(related)
    }

    fn user(&self, key: Option<&ItemKey>) -> Option<&UserView> {
        key.and_then(|key| self.users.get(key))
    }

    fn product(&self, key: Option<&ItemKey>) -> Option<&ProductView> {
        key.and_then(|key| self.products.get(key))
    }
}

fn page_body(name: &str, items: Vec<Value>, next_cursor: Option<String>) -> Value {
    json!({ name: items, "next_cursor": next_cursor })
}

/// The client a `users/{external_user_id}/` or `users/email/{email}/` path names: an email
/// that an identified user owns names that user (`store::identity`).
pub async fn client_identity(
    store: &Store,
    org: &str,
    params: &PathParams,
) -> Result<UserIdentity, ApiError> {
    match params.email()? {
        Some(email) => {
            let resolution = store
                .resolve_identity(org, &UserIdentity::Email(email.clone()), Some(&email))
                .await?;
            Ok(resolution.identity)
        }
        None => Ok(UserIdentity::External(params.id("external_user_id")?)),
    }
}

/// A client's recent history under one user key: newest first, each list with whether more
/// exist.
struct History {
    events: (Vec<EventView>, bool),
    sales: (Vec<SaleView>, bool),
    bookings: (Vec<BookingView>, bool),
    threads: (Vec<ThreadView>, bool),
}

impl History {
    async fn read(store: &Store, user_pk: &str) -> Result<Self, ApiError> {
        let (events, sales, bookings, threads) = futures::try_join!(
            store.user_list::<EventView>(user_pk, UserList::Events, USER_CONTEXT_ITEMS),
            store.user_list::<SaleView>(user_pk, UserList::Sales, USER_CONTEXT_ITEMS),
            store.user_list::<BookingView>(user_pk, UserList::Bookings, USER_CONTEXT_ITEMS),
            store.user_list::<ThreadView>(
                user_pk,
                UserList::Conversations,
                USER_CONTEXT_THREADS_READ
            ),
        )?;
        Ok(History {
            events,
            sales,
            bookings,
            threads,
        })
    }

    /// Both histories, each list newest first again and cut at its bound.
    fn with(self, other: History) -> History {
        fn merge<T>(
            (mut mine, more): (Vec<T>, bool),
            (theirs, their_more): (Vec<T>, bool),
            time: impl Fn(&T) -> Option<&String>,
            bound: usize,
        ) -> (Vec<T>, bool) {
            mine.extend(theirs);
            mine.sort_by(|a, b| time(b).cmp(&time(a)));
            let cut = mine.len() > bound;
            mine.truncate(bound);
            (mine, more || their_more || cut)
        }
        History {
            events: merge(
                self.events,
                other.events,
                |e| e.event_timestamp.as_ref(),
                USER_CONTEXT_ITEMS,
            ),
            sales: merge(
                self.sales,
                other.sales,
                |s| s.date.as_ref(),
                USER_CONTEXT_ITEMS,
            ),
            bookings: merge(
                self.bookings,
                other.bookings,
                |b| b.scheduled_at.as_ref(),
                USER_CONTEXT_ITEMS,
            ),
            threads: merge(
                self.threads,
                other.threads,
                |t| t.last_message_at.as_ref(),
                USER_CONTEXT_THREADS_READ,
            ),
        }
    }
}

/// `GET users/{external_user_id}/`: the client record and, newest first, its recent
/// events, sales (with their products), bookings and conversations (with their last
/// message), at most [`USER_CONTEXT_ITEMS`] of each; `has_more` says which lists were cut.
/// The caller's org's lifecycle thresholds: their copy on its key (no read of its own).
fn stage_settings(caller: &Caller) -> StageSettings {
    caller.lifecycle.unwrap_or_default()
}

pub async fn users_get(
    store: &Store,
    caller: &Caller,
    params: &PathParams,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let identity = client_identity(store, org, params).await?;
    let user_key = keys::user(org, &identity);
    let (user, mine) = futures::try_join!(
        store.get_record::<UserRecord>(&user_key),
        History::read(store, &user_key.pk),
    )?;
    let user = user.ok_or(ApiError::UserNotFound)?;
    let as_of = Timestamp::now();
    let settings = stage_settings(caller);
    // Email-only records merged into this one keep their history under their own keys.
    let merged = user.merged_identities.clone().unwrap_or_default();
    let theirs =
        futures::future::try_join_all(merged.iter().map(|pk| History::read(store, pk))).await?;
    let History {
        events,
        sales,
        bookings,
        threads,
    } = theirs.into_iter().fold(mine, History::with);
    let user = user.view_at(as_of, &settings);
    let (mut threads, more_threads) = threads;
    threads.sort_by(|a, b| b.last_message_at.cmp(&a.last_message_at));
    let more_threads = more_threads || threads.len() > USER_CONTEXT_ITEMS;
    threads.truncate(USER_CONTEXT_ITEMS);

    let product_keys: Vec<Option<ItemKey>> = sales
        .0
        .iter()
        .map(|sale| product_key(org, sale.external_product_id.as_deref()?))
        .collect();
    let last_messages = futures::future::try_join_all(threads.iter().map(|thread| async {
        let Some(thread_id) = thread.thread_id.as_deref().and_then(|id| parse_id(id).ok()) else {
            return Ok(None);
        };
        store.last_message::<MessageView>(org, &thread_id).await
    }));
    let products = Related::read(
        store,
        Vec::new(),
        product_keys.iter().flatten().cloned().collect(),
        Vec::new(),
    );
    let (last_messages, products) = futures::try_join!(last_messages, products)?;

    let sales_view: Vec<Value> = sales
        .0
        .iter()
        .zip(&product_keys)
        .map(|(sale, product)| {
            json(&SaleWithProduct {
                sale,
                product: products.product(product.as_ref()),
            })
        })
        .collect();
    let threads_view: Vec<Value> = threads
        .iter()
        .zip(&last_messages)
        .map(|(thread, last_message)| {
            let mut view = ThreadWithContext::new(thread, None);
            view.last_message = Some(last_message.as_ref());
            json(&view)
        })
        .collect();
    fn views<R: serde::Serialize>(records: &[R]) -> Vec<Value> {
        records.iter().map(json).collect()
    }
    Ok(Reply::ok(json!({
        "user": json(&user),
        "as_of": as_of,
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

/// The query string of an org-wide list's endpoint, parsed once: its cost
/// ([`crate::cost::list_page`]) is priced from it before its handler reads it.
pub fn list_params(list: OrgList, raw_query: Option<&str>) -> Result<QueryParams, ApiError> {
    match list {
        OrgList::Users => {
            let names = crate::segment::parameters();
            let allowed: Vec<&str> = names.iter().map(String::as_str).collect();
            QueryParams::parse(raw_query, &allowed)
        }
        OrgList::Inbox => QueryParams::parse(raw_query, &["status"]),
        OrgList::Bookings => QueryParams::parse(raw_query, &["from", "to"]),
    }
}

/// `GET users/`: the org's users, least recently active first, those in the segment the
/// query describes ([`Segment`]) at one instant, `as_of`: now on a first page, the cursor's
/// on the pages that follow it. Paginated.
pub async fn users_list(
    store: &Store,
    caller: &Caller,
    params: &QueryParams,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let pages = PageScope::list(org, OrgList::Users);
    let scope = CursorScope {
        org_id: org,
        query: params.fingerprint("users"),
        pages: &pages,
    };
    let (start, as_of) = match params.cursor() {
        Some(raw) => {
            let (position, as_of) = scope.decode_at(raw)?;
            (Some(position), as_of)
        }
        None => (None, None),
    };
    let as_of = match as_of {
        Some(raw) => raw.parse().map_err(|_| ApiError::InvalidCursor)?,
        // Milliseconds, as stored and as the cursor carries it: every page computes the
        // same cutoffs.
        None => Timestamp::now()
            .to_stored()
            .parse()
            .map_err(|_| ApiError::Internal)?,
    };
    let settings = stage_settings(caller);
    let segment = Segment::parse(params, as_of, settings)?;
    let limit = params.limit()?;
    let filter = segment.store_filter();
    let keep = |user: &UserRecord| segment.matches(user);
    let page = store
        .users_page::<UserRecord>(org, &filter, limit, start, keep)
        .await?;
    let next = page
        .next
        .as_ref()
        .map(|position| scope.encode_at(position, Some(&segment.as_of)));
    let users = page
        .items
        .iter()
        .map(|user| json(&user.view_at(as_of, &settings)))
        .collect();
    let mut body = page_body("users", users, next);
    body["as_of"] = json!(segment.as_of);
    body["inactive_since"] = json!(segment.inactive_since);
    Ok(Reply::ok(body))
}

/// Users `stats/users/` reads at most before it refuses (`segment_too_large`): about 250 MB
/// of 1 KB users, what a 1,024 MB function decodes well within its time.
pub const MAX_STATS_USERS: usize = 250_000;
/// What `stats/users/` groups by.
pub const STATS_GROUPS: [&str; 3] = ["lifecycle_stage", "billing_state", "install_source"];

/// `GET stats/users/?group_by=...`: the number of users of the segment (the same
/// conditions as `users/`, at one `as_of`) per value of `group_by`, exact: every shard read
/// to its end, or [`ApiError::SegmentTooLarge`] when that cannot be done by `deadline` or
/// within [`MAX_STATS_USERS`].
pub async fn users_stats(
    store: &Store,
    caller: &Caller,
    raw_query: Option<&str>,
    deadline: std::time::Instant,
) -> Result<Reply, ApiError> {
    let mut names = crate::segment::parameters();
    names.push("group_by".to_owned());
    let allowed: Vec<&str> = names.iter().map(String::as_str).collect();
    let params = QueryParams::parse(raw_query, &allowed)?;
    for name in ["limit", "cursor"] {
        if params.value(name).is_some() {
            return Err(ApiError::invalid_field(
                name,
                format!("`stats/users/` counts the whole segment: it takes no `{name}`"),
            ));
        }
    }
    let group_by =
        params
            .choice("group_by", &STATS_GROUPS)?
            .ok_or_else(|| ApiError::MissingField {
                param: "group_by".to_owned(),
            })?;
    let as_of: Timestamp = Timestamp::now()
        .to_stored()
        .parse()
        .map_err(|_| ApiError::Internal)?;
    let settings = stage_settings(caller);
    let segment = Segment::parse(&params, as_of, settings)?;
    let fold = |counts: &mut StatsCounts, user: UserRecord| {
        if !segment.matches(&user) {
            return;
        }
        let value = match group_by {
            "lifecycle_stage" => {
                let stage = lifecycle_stage(&user.timeline(), &settings, as_of);
                Some(stage.as_str().to_owned())
            }
            "billing_state" => Some(billing_state(&user.billing(), as_of).as_str().to_owned()),
            _ => user.view.install_source.clone(),
        };
        match value {
            Some(value) => *counts.by_value.entry(value).or_default() += 1,
            None => counts.without_value += 1,
        }
    };
    let (shards, queries) = store
        .users_fold(
            caller.org_id.as_str(),
            &segment.store_filter(),
            (MAX_STATS_USERS, deadline),
            fold,
        )
        .await?;
    tracing::debug!(queries, "stats/users");
    let mut total = StatsCounts::default();
    // Every state is a bucket, counted or not: a dashboard reads zeros as zeros.
    let all: Vec<&str> = match group_by {
        "lifecycle_stage" => crate::states::LifecycleStage::ALL
            .map(crate::states::LifecycleStage::as_str)
            .to_vec(),
        "billing_state" => crate::states::BillingState::ALL
            .map(crate::states::BillingState::as_str)
            .to_vec(),
        _ => Vec::new(),
    };
    for value in all {
        total.by_value.insert(value.to_owned(), 0);
    }
    for shard in shards {
        for (value, count) in shard.by_value {
            *total.by_value.entry(value).or_default() += count;
        }
        total.without_value += shard.without_value;
    }
    let users: u64 = total.by_value.values().sum::<u64>() + total.without_value;
    Ok(Reply::ok(json!({
        "group_by": group_by,
        "counts": total.by_value,
        "without_value": total.without_value,
        "total": users,
        "as_of": segment.as_of,
    })))
}

/// One shard's counts for `stats/users/`.
#[derive(Debug, Default)]
struct StatsCounts {
    by_value: std::collections::BTreeMap<String, u64>,
    /// Users without a value (no `install_source`).
    without_value: u64,
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
    let pages = PageScope::thread_messages(org, &thread_id);
    let scope = CursorScope {
        org_id: org,
        query: query.fingerprint(&format!("conversation\0{thread_id}")),
        pages: &pages,
    };
    let start = scope.start(query.cursor())?;
    let thread_key = keys::thread(org, &thread_id);
    // Counts at read time, over all the thread's messages: exact however often,
    // concurrently or out of order messages were upserted.
    let (thread, page, (counted, more)) = futures::try_join!(
        store.get_record::<ThreadView>(&thread_key),
        store.messages_page::<MessageView>(org, &thread_id, limit, start),
        store.message_tally(org, &thread_id, MAX_COUNTED_MESSAGES),
    )?;
    let thread = thread.ok_or(ApiError::ThreadNotFound)?;

    let contact = referenced_user(org, thread.contact.as_ref());
    let channel = thread
        .external_channel_id
        .as_deref()
        .and_then(|id| Some(keys::channel(org, &parse_id(id).ok()?)));
    let related = Related::read(
        store,
        contact.iter().cloned().collect(),
        Vec::new(),
        channel.iter().cloned().collect(),
    )
    .await?;

    let of_direction = |direction: &str| {
        let matching: Vec<&MessageTally> = counted
            .iter()
            .filter(|m| m.direction.as_deref() == Some(direction))
            .collect();
        let last = matching.iter().filter_map(|m| m.sent_at.clone()).max();
        (matching.len(), last)
    };
    let (inbound, last_inbound_at) = of_direction("in");
    let (outbound, last_outbound_at) = of_direction("out");
    let messages: Vec<Value> = page.items.iter().map(json).collect();
    let channel = channel.as_ref().and_then(|key| related.channels.get(key));
    Ok(Reply::ok(json!({
        "conversation": json(&ThreadWithContext::new(&thread, None)),
        "contact": related.user(contact.as_ref()),
        "channel": channel,
        "summary": {
            "message_count": counted.len(),
            "inbound_count": inbound,
            "outbound_count": outbound,
            "last_inbound_at": last_inbound_at,
            "last_outbound_at": last_outbound_at,
            "awaiting_reply": thread.awaiting_reply(),
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
    params: &QueryParams,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    // The one inbox list kept so far; the parameter names it so others can be added.
    params.choice("status", &["awaiting_reply"])?;
    let list = ("inbox", OrgList::Inbox);
    let read = |start, limit| store.inbox_page::<ThreadView>(org, limit, start);
    let (page, next) = list_page(org, params, list, read).await?;
    let contacts: Vec<Option<ItemKey>> = page
        .items
        .iter()
        .map(|thread| referenced_user(org, thread.contact.as_ref()))
        .collect();
    let wanted = contacts.iter().flatten().cloned().collect();
    let related = Related::read(store, wanted, Vec::new(), Vec::new()).await?;
    let threads = page
        .items
        .iter()
        .zip(&contacts)
        .map(|(thread, contact)| {
            json(&ThreadWithContext::new(
                thread,
                related.user(contact.as_ref()),
            ))
        })
        .collect();
    Ok(Reply::ok(page_body("conversations", threads, next)))
}

/// `GET bookings/?from=&to=`: bookings scheduled in `[from, to)`, earliest first, each
/// with its client and services. Paginated.
pub async fn bookings_list(
    store: &Store,
    caller: &Caller,
    params: &QueryParams,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let from = params.required_timestamp("from")?;
    let to = params.required_timestamp("to")?;
    if to <= from {
        return Err(ApiError::invalid_field("to", "`to` must be after `from`"));
    }
    let (from, to) = (from.to_stored(), to.to_stored());
    let list = ("bookings", OrgList::Bookings);
    let read = |start, limit| store.bookings_page::<BookingView>(org, (&from, &to), limit, start);
    let (page, next) = list_page(org, params, list, read).await?;
    let clients: Vec<Option<ItemKey>> = page
        .items
        .iter()
        .map(|booking| referenced_user(org, booking.client.as_ref()))
        .collect();
    let services: Vec<Vec<ItemKey>> = page
        .items
        .iter()
        .map(|booking| {
            let ids = booking.service_external_ids.iter().flatten();
            ids.filter_map(|id| product_key(org, id)).collect()
        })
        .collect();
    let related = Related::read(
        store,
        clients.iter().flatten().cloned().collect(),
        services.iter().flatten().cloned().collect(),
        Vec::new(),
    )
    .await?;
    let bookings = page
        .items
        .iter()
        .zip(clients.iter().zip(&services))
        .map(|(booking, (client, services))| {
            let services = services
                .iter()
                .filter_map(|key| related.product(Some(key)))
                .collect();
            json(&BookingWithLinks::new(
                booking,
                related.user(client.as_ref()),
                services,
            ))
        })
        .collect();
    Ok(Reply::ok(page_body("bookings", bookings, next)))
}
