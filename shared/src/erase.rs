//! `DELETE users/{external_user_id}/`: erases a client and what is attached to it, for
//! privacy requests.
//!
//! Everything attached to a user is listed under the user's PK in GSI1: its events (which
//! are also the idempotency records), sales, bookings, the threads it is the contact of,
//! and the aliases of the emails it owns; a thread's messages are in the thread's
//! partition. The messages naming it as their contact are also listed under its PK in
//! GSI2, so those in threads whose contact is someone else now go too (those threads are
//! then recomputed from the messages they keep). Children are deleted first (a thread's
//! messages before the thread), the user item last, so a repeated request still finds
//! whatever a cut-short one left. The work per request is bounded; when
//! something remains the answer says `"complete": false` and the client repeats the
//! request. Products, services and channels are shared catalog records: kept.

use crate::auth::Caller;
use crate::endpoint::parse_id;
use crate::endpoint::PathParams;
use crate::error::ApiError;
use crate::fields::{Email, Id};
use crate::handlers::Reply;
use crate::input::UserIdentity;
use crate::store::keys;
use crate::store::ops::lists::Listing;
use crate::store::records::{Erasure, UserRecord};
use crate::store::schema::attributes::EMAIL_ALIAS;
use crate::store::Store;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Most items one request deletes (about 40 BatchWriteItem calls).
pub const MAX_DELETED_PER_REQUEST: usize = 1_000;
/// No new batch starts after this long, 2 s before [`crate::store::REQUEST_DEADLINE`] (6 s;
/// past it the answer is a 503, inside the function's 10 s timeout): the last batch's calls
/// usually take far less (each is cut at [`crate::store::OPERATION_TIMEOUT`], 4 s, when
/// DynamoDB is in trouble), and a request cut short is repeated like an incomplete one.
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
    /// PKs of the threads deleted, and of those that lost a message (recomputed unless
    /// deleted).
    deleted_threads: BTreeSet<String>,
    touched_threads: BTreeSet<String>,
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

/// Deletes what `listing` lists, page by page, within the budget. Whether it got to the end.
async fn delete_listed(
    store: &Store,
    org_id: &str,
    listing: &Listing,
    budget: &mut Budget,
    erased: &mut Erased,
) -> Result<bool, ApiError> {
    let mut start = None;
    loop {
        if budget.exhausted() {
            return Ok(false);
        }
        let page = store.listing_page(listing, budget.page(), start).await?;
        let mut keys: Vec<Erasure> = Vec::new();
        for item in &page.items {
            let entity = item.entity.as_deref();
            if entity == Some(EMAIL_ALIAS) {
                // Released one by one, only while they name this client (below).
                continue;
            }
            match entity {
                Some("message") => erased.touched_threads.insert(item.key().pk),
                Some("conversation") => erased.deleted_threads.insert(item.key().pk),
                _ => false,
            };
            if entity == Some("conversation") {
                // The thread's messages first: if they do not all fit, the thread stays
                // and the next request finds it again.
                let messages = Listing::messages_of(&item.key().pk);
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

/// Releases the aliases listed under the client `id` (every email it ever claimed), each
/// only if it still names it. Whether it got to the end.
async fn release_aliases(
    store: &Store,
    user_pk: &str,
    id: &Id,
    budget: &mut Budget,
) -> Result<bool, ApiError> {
    let aliases = Listing::aliases_of(user_pk);
    let mut start = None;
    loop {
        if budget.exhausted() {
            return Ok(false);
        }
        let page = store.listing_page(&aliases, budget.page(), start).await?;
        let releases = page
            .items
            .iter()
            .map(|alias| store.release_alias_at(alias.key(), id));
        futures::future::try_join_all(releases).await?;
        budget.left = budget.left.saturating_sub(page.items.len());
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(true),
        }
    }
}

/// Recomputes the threads that lost a message and still exist (`store::ops::threads`).
async fn recompute_touched(
    store: &Store,
    org_id: &str,
    erased: &mut Erased,
) -> Result<(), ApiError> {
    let touched = std::mem::take(&mut erased.touched_threads);
    for pk in touched.difference(&erased.deleted_threads) {
        let Some(thread_id) = keys::thread_id_of(org_id, pk).and_then(|id| parse_id(id).ok())
        else {
            continue;
        };
        store.recompute_thread(org_id, &thread_id).await?;
    }
    Ok(())
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
        let children = Listing::under_user(pk);
        let messages = Listing::messages_with_contact(pk);
        complete = delete_listed(store, org, &children, &mut budget, &mut erased).await?
            && delete_listed(store, org, &messages, &mut budget, &mut erased).await?;
        recompute_touched(store, org, &mut erased).await?;
        if !complete {
            break;
        }
        if pk != &user_key.pk {
            store.delete(&keys::user_key_of(pk)).await?;
        }
    }
    if let (true, UserIdentity::External(id)) = (complete, &identity) {
        complete = release_aliases(store, &user_key.pk, id, &mut budget).await?;
        // The current email's alias also when it was claimed before aliases were listed.
        let email = user.as_ref().and_then(|user| user.view.email.as_deref());
        if let Some(email) = email.and_then(|email| email.parse::<Email>().ok()) {
            store.release_email(org, &email, id).await?;
        }
    }
    if complete {
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
