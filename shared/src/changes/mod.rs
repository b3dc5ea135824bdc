//! The change feed: what happened to each client, derived from the table's stream.
//!
//! [`derive`] is a pure function from one item's old and new image (a DynamoDB stream
//! record, NEW_AND_OLD_IMAGES) to the changes it means, read through the store's
//! records; nothing here does I/O. [`consumer`] runs it over a stream batch and writes the
//! changes; [`feed`] serves `GET changes/`. Every change's id, key and `sequence` come from
//! the images alone, so a redelivered record derives the same changes and adds nothing.

pub mod consumer;
pub mod feed;
pub mod poller;
pub mod publisher;
pub mod settings;
pub mod timers;

use crate::error::ApiError;
use crate::states::{lifecycle_stage, StageSettings};
use crate::store::codec::changes::{
    changed_fields, changed_profile_fields, Change, ClientRef, ItemMeta, NewChange, Subject,
};
use crate::store::records::{
    decode, BookingRecord, EventRecord, SaleRecord, ThreadRecord, UserRecord,
};
use crate::store::Item;
use serde_json::{json, Value};
use timers::LIFECYCLE_CHANGED;

/// Every change type, as documented in docs/api-guide.md.
pub const TYPES: [&str; 16] = [
    "client.created",
    "client.updated",
    "client.billing_changed",
    "client.merged",
    "client.erased",
    "event.recorded",
    "payment.recorded",
    "thread.awaiting_reply",
    "thread.replied",
    "booking.scheduled",
    "booking.rescheduled",
    "booking.canceled",
    "booking.updated",
    "booking.reminder_due",
    "booking.ended",
    "client.lifecycle_changed",
];

/// Where a change of a client takes its place among the changes one write of its record
/// makes: a client change's `sequence` is the record's write count times 4 plus this, so
/// every change of one client has its own `sequence`, increasing write after write (a
/// transition made by time comes after the write it was computed from).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClientPlace {
    Profile = 0,
    Billing = 1,
    LifecycleByWrite = 2,
    LifecycleByTime = 3,
}

pub(crate) fn client_sequence(version: u64, place: ClientPlace) -> u64 {
    version * 4 + place as u64
}

/// One side of a stream record: the item, and what every item has.
struct Image<'a> {
    item: &'a Item,
    meta: ItemMeta,
}

impl<'a> Image<'a> {
    fn of(item: Option<&'a Item>) -> Option<Image<'a>> {
        let item = item.filter(|item| !item.is_empty())?;
        Some(Image {
            item,
            meta: ItemMeta::of(item)?,
        })
    }

    fn record<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        decode(self.item.clone())
    }

    fn version(&self) -> u64 {
        self.meta.version.unwrap_or(1)
    }
}

/// What one change is built from (besides its type and data).
struct Source<'a> {
    org_id: &'a str,
    image: &'a Image<'a>,
    /// When the write happened: the item's `updated_at`, else the stream record's time.
    recorded_at: String,
    client_pk: Option<String>,
    subject: Subject,
}

impl Source<'_> {
    /// A change of `kind`; `occurrence` tells this one from the item's other changes of
    /// the same kind (a version, an event id).
    fn change(
        &self,
        kind: &str,
        occurrence: &str,
        sequence: u64,
        occurred_at: Option<String>,
        data: Value,
    ) -> NewChange {
        let created = self.image.meta.ingested_at.as_deref().unwrap_or_default();
        let occurrence = format!("{created}/{occurrence}");
        NewChange {
            org_id: self.org_id.to_owned(),
            change: Change {
                id: Change::id_of(self.org_id, &self.image.meta.key(), kind, &occurrence),
                kind: kind.to_owned(),
                occurred_at,
                recorded_at: self.recorded_at.clone(),
                subject: self.subject.clone(),
                sequence,
                data,
            },
            client_pk: self.client_pk.clone(),
        }
    }
}

/// The changes one stream record means. `stream_at` is the record's time (stored form),
/// used when the item has none of its own (a deletion). `stages`: the org's lifecycle
/// thresholds, for a client write's `client.lifecycle_changed` (none: not derived).
pub fn derive(
    old: Option<&Item>,
    new: Option<&Item>,
    stream_at: &str,
    stages: Option<&StageSettings>,
) -> Result<Vec<NewChange>, ApiError> {
    let (old, new) = (Image::of(old), Image::of(new));
    let Some(current) = new.as_ref().or(old.as_ref()) else {
        return Ok(Vec::new());
    };
    let Some(org_id) = current.meta.org_id.clone() else {
        return Ok(Vec::new());
    };
    let entity = current.meta.entity.clone().unwrap_or_default();
    let recorded_at = match &new {
        Some(new) => new.meta.updated_at.clone().or(new.meta.ingested_at.clone()),
        None => None,
    }
    .unwrap_or_else(|| stream_at.to_owned());
    let source = Source {
        org_id: &org_id,
        image: current,
        recorded_at,
        client_pk: current.meta.gsi1pk.clone(),
        subject: Subject::default(),
    };
    // A sale, thread or booking removed (its client erased) derives nothing: the client's
    // erasure says it.
    match (entity.as_str(), new.as_ref()) {
        ("user", _) => user(source, old.as_ref(), new.as_ref(), stages),
        ("event", _) if old.is_none() => event(source),
        ("sale", Some(after)) => sale(source, old.as_ref(), after),
        ("conversation", Some(after)) => thread(source, old.as_ref(), after),
        ("booking", Some(after)) => booking(source, old.as_ref(), after),
        _ => Ok(Vec::new()),
    }
}

/// Whether a stream record is a client's write that may change its lifecycle stage (what
/// [`derive`] needs the org's thresholds for).
pub fn is_client_update(old: Option<&Item>, new: Option<&Item>) -> bool {
    let (Some(old), Some(new)) = (Image::of(old), Image::of(new)) else {
        return false;
    };
    [old, new]
        .iter()
        .all(|image| image.meta.entity.as_deref() == Some("user"))
}

fn user(
    mut source: Source<'_>,
    old: Option<&Image<'_>>,
    new: Option<&Image<'_>>,
    stages: Option<&StageSettings>,
) -> Result<Vec<NewChange>, ApiError> {
    let pk = source.image.meta.pk.clone();
    source.subject.client = ClientRef::of_user_pk(&pk);
    source.client_pk = Some(pk);
    let (old, new) = match (old, new) {
        (None, Some(new)) => {
            let record: UserRecord = new.record()?;
            let created_at = record.created_at.clone();
            let version = new.version();
            return Ok(vec![source.change(
                "client.created",
                &version.to_string(),
                client_sequence(version, ClientPlace::Profile),
                created_at,
                json!({}),
            )]);
        }
        (Some(old), None) => {
            // Only ids: what a consumer needs to erase its own copies. Not listed under the
            // client, so erasing it does not take this one away.
            source.client_pk = None;
            let sequence = client_sequence(old.version() + 1, ClientPlace::Profile);
            return Ok(vec![source.change(
                "client.erased",
                "erased",
                sequence,
                None,
                json!({}),
            )]);
        }
        (Some(old), Some(new)) => (old, new),
        (None, None) => return Ok(Vec::new()),
    };
    let (before, after): (UserRecord, UserRecord) = (old.record()?, new.record()?);
    let version = new.version();
    if let (None, Some(into)) = (&before.merged_into, &after.merged_into) {
        // The email-only record now points at the identified one: the merge, told about
        // the client it was merged into (listed under it, so erasing that one removes it).
        let from = source.subject.client.take();
        source.subject.client = ClientRef::of_user_pk(into);
        source.client_pk = Some(into.clone());
        return Ok(vec![source.change(
            "client.merged",
            &version.to_string(),
            client_sequence(version, ClientPlace::Profile),
            None,
            json!({ "from": from }),
        )]);
    }
    if after.merged_into.is_some() {
        return Ok(Vec::new());
    }
    let mut changes = Vec::new();
    let changed = changed_profile_fields(old.item, new.item);
    if !changed.is_empty() {
        changes.push(source.change(
            "client.updated",
            &version.to_string(),
            client_sequence(version, ClientPlace::Profile),
            None,
            json!({ "changed": changed }),
        ));
    }
    // The billing state and the lifecycle stage before and after this write, both at the
    // write's own time (one instant): changes the write caused. What time alone changes
    // (a subscription's end passing, a client going quiet) has no write: the lifecycle's
    // come from the sweeper (`timers`), with `reason: "time"`.
    let at = new
        .meta
        .updated_at
        .as_deref()
        .and_then(|at| at.parse::<crate::fields::Timestamp>().ok())
        .unwrap_or_else(crate::fields::Timestamp::now);
    let from = crate::states::billing_state(&before.billing(), at);
    let to = crate::states::billing_state(&after.billing(), at);
    if from != to {
        changes.push(source.change(
            "client.billing_changed",
            &version.to_string(),
            client_sequence(version, ClientPlace::Billing),
            None,
            json!({ "from": from, "to": to }),
        ));
    }
    if let Some(stages) = stages {
        let from = lifecycle_stage(&before.timeline(), stages, at);
        let to = lifecycle_stage(&after.timeline(), stages, at);
        if from != to {
            changes.push(source.change(
                LIFECYCLE_CHANGED,
                &version.to_string(),
                client_sequence(version, ClientPlace::LifecycleByWrite),
                None,
                json!({ "from": from.as_str(), "to": to.as_str(), "reason": "write" }),
            ));
        }
    }
    Ok(changes)
}

fn event(mut source: Source<'_>) -> Result<Vec<NewChange>, ApiError> {
    let record: EventRecord = source.image.record()?;
    let id = record.id.clone().unwrap_or_default();
    source.subject.client = record.user.as_ref().and_then(ClientRef::of);
    source.subject.event_id = Some(id.clone());
    let at = record.event_timestamp.clone();
    let mut changes = vec![source.change(
        "event.recorded",
        &id,
        1,
        at.clone(),
        json!({ "event": record.event, "event_id": id, "event_timestamp": at }),
    )];
    if let Some((amount, currency)) = event_payment(&record) {
        changes.push(source.change(
            "payment.recorded",
            &id,
            1,
            at,
            json!({ "amount": amount, "currency": currency, "source": "event", "event": record.event }),
        ));
    }
    Ok(changes)
}

/// The payment an event counts, read by the same rules the client record counts it with
/// (`facts::contribution`): `(amount, currency)`, either possibly unknown.
fn event_payment(record: &EventRecord) -> Option<(Option<String>, Option<String>)> {
    let mut body = json!({
        "event": record.event,
        "user": record.user,
        "event_timestamp": record.event_timestamp,
    });
    if let Some(properties) = record.properties.as_ref().filter(|p| p.is_object()) {
        body["properties"] = properties.clone();
    }
    let bytes = serde_json::to_vec(&body).ok()?;
    let event = crate::input::parse_event(&bytes, crate::fields::Timestamp::now()).ok()?;
    let contribution = crate::facts::contribution(&event).ok()?;
    if contribution.payments == 0 {
        return None;
    }
    let properties = record.properties.as_ref();
    let text = |key: &str| {
        properties
            .and_then(|p| p.get(key))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    Some((text("amount"), text("currency")))
}

/// Sale statuses that are not a payment (yet, or any more).
const UNPAID_SALE_STATUSES: [&str; 6] = [
    "pending",
    "failed",
    "refunded",
    "canceled",
    "cancelled",
    "void",
];

fn sale_counts(sale: &SaleRecord) -> bool {
    let status = sale
        .status
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    sale.total.is_some() && !UNPAID_SALE_STATUSES.contains(&status.as_str())
}

fn sale(
    mut source: Source<'_>,
    old: Option<&Image<'_>>,
    new: &Image<'_>,
) -> Result<Vec<NewChange>, ApiError> {
    let new: SaleRecord = new.record()?;
    let counted_before = match old {
        Some(old) => sale_counts(&old.record::<SaleRecord>()?),
        None => false,
    };
    if !sale_counts(&new) || counted_before {
        return Ok(Vec::new());
    }
    source.subject.client = new.buyer.as_ref().and_then(ClientRef::of);
    source.subject.sale_id = new.sale_id.clone();
    let version = source.image.version();
    Ok(vec![source.change(
        "payment.recorded",
        "sale",
        version,
        new.date.clone(),
        json!({ "amount": new.total, "currency": new.currency, "source": "sale" }),
    )])
}

fn thread(
    mut source: Source<'_>,
    old: Option<&Image<'_>>,
    new: &Image<'_>,
) -> Result<Vec<NewChange>, ApiError> {
    let after: ThreadRecord = new.record()?;
    let before: Option<ThreadRecord> = old.map(Image::record).transpose()?;
    let was_waiting = before.is_some_and(|t| t.awaiting_reply_since.is_some());
    source.subject.client = after.contact.as_ref().and_then(ClientRef::of);
    source.subject.thread_id = after.thread_id.clone();
    let version = new.version();
    let change = match (was_waiting, &after.awaiting_reply_since) {
        (false, Some(since)) => source.change(
            "thread.awaiting_reply",
            &version.to_string(),
            version,
            Some(since.clone()),
            json!({ "awaiting_reply_since": since }),
        ),
        (true, None) => source.change(
            "thread.replied",
            &version.to_string(),
            version,
            after.last_message_at.clone(),
            json!({ "last_message_id": after.last_message_id }),
        ),
        _ => return Ok(Vec::new()),
    };
    Ok(vec![change])
}

pub(crate) fn is_cancellation(status: Option<&str>) -> bool {
    status.is_some_and(|status| {
        status.eq_ignore_ascii_case("canceled") || status.eq_ignore_ascii_case("cancelled")
    })
}

fn booking(
    mut source: Source<'_>,
    old: Option<&Image<'_>>,
    new: &Image<'_>,
) -> Result<Vec<NewChange>, ApiError> {
    let after: BookingRecord = new.record()?;
    source.subject.client = after.client.as_ref().and_then(ClientRef::of);
    source.subject.booking_id = after.booking_id.clone();
    let version = new.version();
    let occurrence = version.to_string();
    let Some(old) = old else {
        return Ok(vec![source.change(
            "booking.scheduled",
            &occurrence,
            version,
            None,
            json!({ "scheduled_at": after.scheduled_at, "status": after.status }),
        )]);
    };
    let before: BookingRecord = old.record()?;
    let change =
        if is_cancellation(after.status.as_deref()) && !is_cancellation(before.status.as_deref()) {
            source.change(
                "booking.canceled",
                &occurrence,
                version,
                None,
                json!({ "status": after.status }),
            )
        } else if before.scheduled_at != after.scheduled_at {
            source.change(
                "booking.rescheduled",
                &occurrence,
                version,
                None,
                json!({ "from": before.scheduled_at, "to": after.scheduled_at }),
            )
        } else {
            let changed = changed_fields(&before.view, &after.view);
            if changed.is_empty() {
                return Ok(Vec::new());
            }
            source.change(
                "booking.updated",
                &occurrence,
                version,
                None,
                json!({ "changed": changed }),
            )
        };
    Ok(vec![change])
}
