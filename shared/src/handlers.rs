//! One function per write endpoint: it takes the body parsed ([`crate::request`]), writes
//! the related entities concurrently, then the request's primary record last (so a retry
//! after a partial failure converges), and answers with the stored objects.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::facts;
use crate::fields::Timestamp;
use crate::idempotency::{Existing, Idempotency};
use crate::input::{Booking, Channel, Conversation, Message, Product, Sale, User, UserIdentity};
use crate::request::{EventRequest, WriteRequest};
use crate::store::identity::{EventUser, Resolution};
use crate::store::items;
use crate::store::records::{
    BookingView, ChannelView, EventRecord, EventView, MessageView, ProductView, SaleView, Stored,
    ThreadView, UserView,
};
use crate::store::schema::attributes::ERASED_EVENT;
use crate::store::{EventOutcome, EventWrite, Store, Upsert, UpsertOutcome};
use crate::views::{json, view_as};
use lambda_http::http::StatusCode;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The version `health/` reports; the workspace version in Cargo.toml is the one place it is set.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How a written record of one type becomes its response object.
type View = fn(&Stored) -> Result<Value, ApiError>;

/// A successful answer: status, JSON body and extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    /// Answered from what an earlier request stored (an event's replay): `http` says so in
    /// a header and in the metrics, `batch` in the item's result.
    pub replayed: bool,
}

impl Reply {
    pub(crate) fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
            headers: Vec::new(),
            replayed: false,
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
            replayed: false,
        }
    }
}

/// Something in a request that was left out while the rest was stored: an entry of the
/// answer's `warnings` (`{code, param, message}`; the codes are stable, see openapi.yaml).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub param: String,
    pub message: String,
}

/// Every warning code (openapi.yaml's `Warnings` lists the same).
pub const WARNING_CODES: [&str; 2] = [EMAIL_CONFLICT, TOO_MANY_IDENTITIES];
const EMAIL_CONFLICT: &str = "email_conflict";
const TOO_MANY_IDENTITIES: &str = "too_many_identities";

impl Warning {
    /// A nested user's email that could not be claimed (see [`resolve`]): another
    /// `external_user_id` owns it, or the client has as many merged email-only records as
    /// it may keep. `None` for any other error.
    fn email_not_claimed(slot: &str, error: &ApiError) -> Option<Self> {
        let (code, why) = match error {
            ApiError::IdentityConflict { .. } => (
                EMAIL_CONFLICT,
                "This email identifies another user (another `external_user_id`)",
            ),
            ApiError::TooManyIdentities { .. } => (
                TOO_MANY_IDENTITIES,
                "This client already has as many email-only records merged into it as it keeps",
            ),
            _ => return None,
        };
        Some(Warning {
            code,
            param: format!("{slot}.email"),
            message: format!(
                "{why}: the object was stored under `{slot}.external_user_id`, without this email."
            ),
        })
    }
}

impl Reply {
    /// The answer with its `warnings`, when there are any.
    fn warned(mut self, warning: Option<Warning>) -> Self {
        if let (Some(warning), Some(body)) = (warning, self.body.as_object_mut()) {
            body.insert("warnings".to_owned(), json!([warning]));
        }
        self
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

/// The written record's view and whether it was created; a write that was not applied is
/// a bug here.
fn written(outcome: UpsertOutcome, view: View) -> Result<(Value, bool), ApiError> {
    match outcome {
        UpsertOutcome::Written { item, created } => Ok((view(&item)?, created)),
        UpsertOutcome::Stale => {
            tracing::error!("an unguarded upsert reported a stale write");
            Err(ApiError::Internal)
        }
    }
}

/// Where a related object goes in the response: under its name, or appended to a list;
/// and the record type it is.
#[derive(Debug, Clone, Copy)]
enum Slot {
    One(&'static str, View),
    List(&'static str, View),
}

const USER: View = view_as::<UserView>;
const PRODUCT: View = view_as::<ProductView>;
const CHANNEL: View = view_as::<ChannelView>;
const THREAD: View = view_as::<ThreadView>;
const SALE: View = view_as::<SaleView>;
const MESSAGE: View = view_as::<MessageView>;
const BOOKING: View = view_as::<BookingView>;

/// Writes the related entities of a request concurrently, then the primary record.
/// Related objects come back in their slots. A related write that was stale (a thread
/// that already has a newer message) is left out of the answer.
async fn write_all(
    store: &Store,
    related: Vec<(Slot, Upsert)>,
    primary: Upsert,
    view: View,
) -> Result<(Value, bool, Map<String, Value>), ApiError> {
    let (names, writes): (Vec<_>, Vec<_>) = related.into_iter().unzip();
    let outcomes =
        futures::future::try_join_all(writes.into_iter().map(|w| store.upsert(w))).await?;
    let mut objects = Map::new();
    for (slot, outcome) in names.into_iter().zip(outcomes) {
        let UpsertOutcome::Written { item, .. } = outcome else {
            continue;
        };
        match slot {
            Slot::One(name, view) => {
                objects.insert(name.to_owned(), view(&item)?);
            }
            Slot::List(name, view) => {
                let list = objects.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut().expect("a list slot").push(view(&item)?);
            }
        }
    }
    let (object, created) = written(store.upsert(primary).await?, view)?;
    Ok((object, created, objects))
}

/// Resolves a user mention to its client (`store::identity`): an email-only mention of an
/// identified user's email names that user; a mention with both claims the email. `slot`
/// names where a nested user sits, for errors. A mention a batch resolved already is taken
/// as it is.
///
/// A nested user whose email another `external_user_id` owns does not cost the app its
/// fact (an install, a purchase, a message): the fact is stored under the
/// `external_user_id` it names, the stronger identifier, without the email (not claimed,
/// not written on the record), and the answer warns. `users/upsert`, where the user is the
/// object itself, keeps its 409.
async fn resolve(
    store: &Store,
    org: &str,
    user: &mut User,
    slot: Option<&str>,
) -> Result<(Resolution, Option<Warning>), ApiError> {
    if user.resolved {
        return Ok((unresolved(user), None));
    }
    let resolved = store
        .resolve_identity(org, &user.identity, user.fields.email.as_ref())
        .await;
    resolved_as(user, slot, resolved)
}

/// A mention's identity as it stands, claiming nothing.
fn unresolved(user: &User) -> Resolution {
    Resolution {
        identity: user.identity.clone(),
        replaced_email: None,
        claimed: None,
    }
}

/// What a resolution means for `user` (see [`resolve`]): its identity, or a warning.
fn resolved_as(
    user: &mut User,
    slot: Option<&str>,
    resolved: Result<Resolution, ApiError>,
) -> Result<(Resolution, Option<Warning>), ApiError> {
    let (resolution, warning) = match (resolved, slot) {
        (Ok(resolution), _) => (resolution, None),
        (Err(error), Some(slot)) => match Warning::email_not_claimed(slot, &error) {
            Some(warning) => {
                user.fields.email = None;
                (unresolved(user), Some(warning))
            }
            None => return Err(error.within(slot)),
        },
        (Err(error), None) => return Err(error),
    };
    user.identity = resolution.identity.clone();
    Ok((resolution, warning))
}

/// [`resolve`] for a nested user, if the request has one: its warning, if any.
async fn resolve_nested(
    store: &Store,
    org: &str,
    user: Option<&mut User>,
    slot: &str,
) -> Result<Option<Warning>, ApiError> {
    match user {
        Some(user) => Ok(resolve(store, org, user, Some(slot)).await?.1),
        None => Ok(None),
    }
}

/// The handler of a parsed write request.
pub async fn write(
    store: &Store,
    caller: &Caller,
    request: WriteRequest,
) -> Result<Reply, ApiError> {
    match request {
        WriteRequest::User(user) => users_upsert(store, caller, *user).await,
        WriteRequest::Event(event) => events(store, caller, *event).await,
        WriteRequest::Product(product) => products_upsert(store, caller, *product).await,
        WriteRequest::Sale(sale) => sales_upsert(store, caller, *sale).await,
        WriteRequest::Conversation(conversation) => {
            conversations_upsert(store, caller, *conversation).await
        }
        WriteRequest::Message(message) => messages_upsert(store, caller, *message).await,
        WriteRequest::Booking(booking) => bookings_upsert(store, caller, *booking).await,
    }
}

/// The profile's upsert: the authority on the user's fields. Sending another email for an
/// identified user moves its alias: the old email no longer names it.
pub async fn users_upsert(
    store: &Store,
    caller: &Caller,
    mut user: User,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let (resolution, _) = resolve(store, org, &mut user, None).await?;
    let write = items::user(org, &user);
    let (object, created) = written(store.upsert(write).await?, USER)?;
    if let (Some(previous), UserIdentity::External(id)) =
        (&resolution.replaced_email, &resolution.identity)
    {
        store.release_email(org, previous, id).await?;
    }
    Ok(Reply::upserted(created, "user", object, Map::new()))
}

pub async fn products_upsert(
    store: &Store,
    caller: &Caller,
    product: Product,
) -> Result<Reply, ApiError> {
    let write = items::product(&caller.org_id, &product);
    let (object, created) = written(store.upsert(write).await?, PRODUCT)?;
    Ok(Reply::upserted(created, "product", object, Map::new()))
}

pub async fn sales_upsert(
    store: &Store,
    caller: &Caller,
    mut sale: Sale,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let warning = resolve_nested(store, org, sale.buyer.as_mut(), "buyer").await?;
    let mut related = Vec::new();
    if let Some(buyer) = &sale.buyer {
        related.push((Slot::One("buyer", USER), items::user_mention(org, buyer)));
    }
    if let Some(product) = &sale.product {
        related.push((
            Slot::One("product", PRODUCT),
            items::product_mention(org, product),
        ));
    }
    let (object, created, related) =
        write_all(store, related, items::sale(org, &sale), SALE).await?;
    Ok(Reply::upserted(created, "sale", object, related).warned(warning))
}

/// The nested `contact` and `channel` writes of a conversation or message.
fn contact_and_channel(
    org: &str,
    contact: Option<&User>,
    channel: Option<&Channel>,
) -> Vec<(Slot, Upsert)> {
    let contact = contact.map(|contact| {
        (
            Slot::One("contact", USER),
            items::user_mention(org, contact),
        )
    });
    let channel =
        channel.map(|channel| (Slot::One("channel", CHANNEL), items::channel(org, channel)));
    contact.into_iter().chain(channel).collect()
}

pub async fn conversations_upsert(
    store: &Store,
    caller: &Caller,
    mut conversation: Conversation,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let warning = resolve_nested(store, org, conversation.contact.as_mut(), "contact").await?;
    let related = contact_and_channel(
        org,
        conversation.contact.as_ref(),
        conversation.channel.as_ref(),
    );
    let (object, created, related) =
        write_all(store, related, items::thread(org, &conversation), THREAD).await?;
    Ok(Reply::upserted(created, "conversation", object, related).warned(warning))
}

/// A message, its contact and channel, and its thread. The thread is written after the
/// message, so that when the message is not the thread's newest (late, or re-sent) the
/// thread is recomputed from a set that includes it (`store::ops::threads`). A message id is
/// unique in the org: re-sent with another `thread_id`, the message moves.
pub async fn messages_upsert(
    store: &Store,
    caller: &Caller,
    mut message: Message,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let warning = resolve_nested(store, org, message.contact.as_mut(), "contact").await?;
    let (id, thread_id) = (&message.message_id, &message.thread_id);
    let related = contact_and_channel(org, message.contact.as_ref(), message.channel.as_ref());
    let (moved_from, (object, created, mut related)) = futures::try_join!(
        store.locate_message(org, id, thread_id),
        write_all(store, related, items::message(org, &message), MESSAGE),
    )?;
    let thread = match store
        .upsert(items::thread_for_message(org, &message))
        .await?
    {
        UpsertOutcome::Written { item, .. } => Some(item),
        UpsertOutcome::Stale => store.recompute_thread(org, thread_id).await?,
    };
    if let Some(thread) = thread {
        related.insert("conversation".to_owned(), THREAD(&thread)?);
    }
    if let Some(old_thread) = moved_from {
        store.move_message(org, id, &old_thread, thread_id).await?;
    }
    Ok(Reply::upserted(created, "message", object, related).warned(warning))
}

pub async fn bookings_upsert(
    store: &Store,
    caller: &Caller,
    mut booking: Booking,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let warning = resolve_nested(store, org, booking.client.as_mut(), "client").await?;
    let mut related = Vec::new();
    if let Some(client) = &booking.client {
        related.push((Slot::One("client", USER), items::user_mention(org, client)));
    }
    for service in &booking.services {
        related.push((
            Slot::List("services", PRODUCT),
            items::product_mention(org, service),
        ));
    }
    let (object, created, related) =
        write_all(store, related, items::booking(org, &booking), BOOKING).await?;
    Ok(Reply::upserted(created, "booking", object, related).warned(warning))
}

/// Stores an event and adds what it says to its client (see [`crate::facts`]).
///
/// The event item and its user's update are one transaction (`store::ops::events_write`), so
/// an event is stored with its counts or not at all. Idempotency (see
/// [`crate::idempotency`]): with an `Idempotency-Key` (the header, or a batch item's
/// `idempotency_key`) the event item is the idempotency record, and a retry gets the stored
/// event back, its counts already in. A retry that would claim an email finds the stored
/// event first (`Store::resolve_event_user`) and claims nothing.
pub async fn events(
    store: &Store,
    caller: &Caller,
    request: EventRequest,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let EventRequest {
        mut event,
        idempotency,
    } = request;
    let received_at = Timestamp::now();
    event.received(received_at);
    let (resolution, warning) = if idempotency.keyed.is_some() && !event.user.resolved {
        let user = &mut event.user;
        let found = store
            .resolve_event_user(
                org,
                &user.identity,
                user.fields.email.as_ref(),
                &idempotency.event_id,
            )
            .await;
        let resolved = match found {
            Ok(EventUser::Stored {
                event: existing,
                conflict,
            }) => {
                // A body the transaction would have refused is refused as before, and the
                // replay warns as the first answer did when the email is another's.
                facts::contribution(&event)?;
                let stored = already_stored(store, org, existing, &idempotency, None, None).await?;
                let refused = ApiError::IdentityConflict {
                    param: "email".into(),
                };
                let warning = conflict
                    .then(|| Warning::email_not_claimed("user", &refused))
                    .flatten();
                return Ok(event_reply(stored, warning));
            }
            Ok(EventUser::Resolved(resolution)) => Ok(resolution),
            Err(error) => Err(error),
        };
        resolved_as(user, Some("user"), resolved)?
    } else {
        resolve(store, org, &mut event.user, Some("user")).await?
    };
    let contribution = facts::contribution(&event)?;
    let write = EventWrite {
        event: items::event(
            org,
            &event,
            &idempotency.event_id,
            received_at,
            idempotency.stored(),
        ),
        user: items::user_for_event(org, &event.user, event.occurred_at),
        contribution,
    };
    let stored = match store.record_event(&write).await? {
        EventOutcome::Recorded => (write.event.decode::<EventView>()?, false),
        EventOutcome::Exists(existing) => {
            let own = Some(&write.event);
            already_stored(store, org, existing, &idempotency, Some(&resolution), own).await?
        }
    };
    Ok(event_reply(stored, warning))
}

/// What an event already stored at the request's id answers: its view and whether it is a
/// replay. `resolution` is the request's, if it resolved its user; `own` its event item, if
/// it built one (without a key, an existing item is its own write retried by the SDK).
async fn already_stored(
    store: &Store,
    org: &str,
    existing: Stored,
    idempotency: &Idempotency,
    resolution: Option<&Resolution>,
    own: Option<&Stored>,
) -> Result<(EventView, bool), ApiError> {
    let existing: EventRecord = existing.decode()?;
    // Its client was erased: a retry does not bring the client back, nor its email.
    if existing.view.object == ERASED_EVENT {
        if let Some((Some(email), UserIdentity::External(id))) =
            resolution.map(|r| (&r.claimed, &r.identity))
        {
            store.release_email(org, email, id).await?;
        }
        return Err(ApiError::ClientErased);
    }
    match (idempotency.existing(existing.request_hash.as_deref())?, own) {
        (Existing::OwnWrite, Some(own)) => Ok((own.decode::<EventView>()?, false)),
        (Existing::Replay, _) => Ok((existing.view, true)),
        (Existing::OwnWrite, None) => {
            tracing::error!("an event without a key found stored before it was written");
            Err(ApiError::Internal)
        }
    }
}

fn event_reply((stored, replayed): (EventView, bool), warning: Option<Warning>) -> Reply {
    let mut reply = Reply::upserted(true, "event", json(&stored), Map::new()).warned(warning);
    reply.replayed = replayed;
    reply
}
