//! `DELETE users/{external_user_id}/`: erases a client and what is attached to it, for
//! privacy requests.
//!
//! Everything attached to a user is listed under the user's PK in GSI1: its events (which
//! are also the idempotency records), sales, bookings and the threads it is the contact
//! of; a thread's messages are in the thread's partition. Children are deleted first
//! (a thread's messages before the thread), the user item last, so a repeated request
//! still finds whatever a cut-short one left. The work per request is bounded; when
//! something remains the answer says `"complete": false` and the client repeats the
//! request. Products, services and channels are shared catalog records: kept.

use crate::auth::Caller;
use crate::endpoint::PathParams;
use crate::error::ApiError;
use crate::fields::Email;
use crate::handlers::Reply;
use crate::input::UserIdentity;
use crate::store::keys::{self, Index};
use crate::store::ops::queries::{Query, SortKey};
use crate::store::records::Erasure;
use crate::store::records::{Listed, UserRecord};
use crate::store::Store;
use serde_json::json;
use std::time::{Duration, Instant};

/// Most items one request deletes (about 40 BatchWriteItem calls).
pub const MAX_DELETED_PER_REQUEST: usize = 1_000;
/// No new batch starts after this long: the function's timeout is 10 s, and each DynamoDB
/// call is bounded by the client's 5 s operation timeout.
const TIME_BUDGET: Duration = Duration::from_secs(4);
/// Keys read per Query page while listing what to delete.
const LISTING_PAGE: usize = 250;

#[derive(Debug, Default)]
struct Erased {
    user: bool,
    events: usize,
    sales: usize,
    bookings: usize,
    conversations: usize,
    messages: usize,
}

impl Erased {
    fn total(&self) -> usize {
        usize::from(self.user)
            + self.events
            + self.sales
            + self.bookings
            + self.conversations
            + self.messages
    }

    fn count(&mut self, entity: Option<&str>) {
        match entity {
            Some("event") => self.events += 1,
            Some("sale") => self.sales += 1,
            Some("booking") => self.bookings += 1,
            Some("conversation") => self.conversations += 1,
            Some("message") => self.messages += 1,
            _ => {}
        }
    }
}

struct Budget {
    started: Instant,
    left: usize,
}

impl Budget {
    fn exhausted(&self) -> bool {
        self.left == 0 || self.started.elapsed() >= TIME_BUDGET
    }

    fn page(&self) -> usize {
        self.left.min(LISTING_PAGE)
    }
}

/// Deletes what `query` lists, page by page, within the budget. Whether it got to the end.
async fn delete_listed(
    store: &Store,
    org_id: &str,
    query: &Query,
    budget: &mut Budget,
    erased: &mut Erased,
) -> Result<bool, ApiError> {
    let mut start = None;
    loop {
        if budget.exhausted() {
            return Ok(false);
        }
        let page = store
            .query_page::<Listed>(query, budget.page(), start)
            .await?;
        let mut keys: Vec<Erasure> = Vec::new();
        for item in &page.items {
            let entity = item.entity.as_deref();
            if entity == Some("conversation") {
                // The thread's messages first: if they do not all fit, the thread stays
                // and the next request finds it again.
                let messages = listing(Index::Table, item.key().pk, keys::MESSAGE);
                if !Box::pin(delete_listed(store, org_id, &messages, budget, erased)).await? {
                    store.batch_delete(&keys).await?;
                    return Ok(false);
                }
            }
            keys.push(item.erasure());
            keys.extend(item.companion(org_id).map(Erasure::Delete));
            erased.count(entity);
            budget.left = budget.left.saturating_sub(1);
        }
        store.batch_delete(&keys).await?;
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(true),
        }
    }
}

/// Keys (and entity) of the items of one partition: all, or the children of one `kind`.
fn listing(index: Index, partition: String, kind: &str) -> Query {
    let sort = if kind.is_empty() {
        SortKey::Any
    } else {
        SortKey::children(kind)
    };
    let mut query = Query::new(index, partition, sort);
    query.projection = Some(Listed::ATTRIBUTES.to_vec());
    query
}

pub async fn users_delete(
    store: &Store,
    caller: &Caller,
    params: &PathParams,
) -> Result<Reply, ApiError> {
    let identity = crate::reads::client_identity(store, &caller.org_id, params).await?;
    let user_key = keys::user(&caller.org_id, &identity);
    let mut budget = Budget {
        started: Instant::now(),
        left: MAX_DELETED_PER_REQUEST,
    };
    let mut erased = Erased::default();
    let org = caller.org_id.as_str();
    let user = store.get_consistent_record::<UserRecord>(&user_key).await?;
    // The email-only records merged into this client (see `store::identity`) first, each
    // with its history, then the client's own history, its email's alias, and the client
    // last: a request cut short leaves the client, whose next erasure finds the rest.
    let merged = user
        .as_ref()
        .and_then(|user| user.merged_identities.clone())
        .unwrap_or_default();
    let mut complete = true;
    for pk in merged.iter().chain([&user_key.pk]) {
        let children = listing(Index::Gsi1, pk.clone(), "");
        complete = delete_listed(store, org, &children, &mut budget, &mut erased).await?;
        if !complete {
            break;
        }
        if pk != &user_key.pk {
            store.delete(&keys::user_key_of(pk)).await?;
        }
    }
    if complete {
        if let (Some(email), UserIdentity::External(id)) = (
            user.as_ref().and_then(|user| user.view.email.as_deref()),
            &identity,
        ) {
            if let Ok(email) = email.parse::<Email>() {
                store.release_email(org, &email, id).await?;
            }
        }
        erased.user = store.delete(&user_key).await?;
    }
    tracing::info!(
        org_id = caller.org_id,
        deleted = erased.total(),
        complete,
        "user erased"
    );
    Ok(Reply::ok(json!({
        "deleted": {
            "user": u8::from(erased.user),
            "events": erased.events,
            "sales": erased.sales,
            "bookings": erased.bookings,
            "conversations": erased.conversations,
            "messages": erased.messages,
        },
        "complete": complete,
    })))
}
