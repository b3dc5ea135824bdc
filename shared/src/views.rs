//! Response objects: each is an explicit `Serialize` type over typed records (whose own
//! `Serialize` is an allow-list, see `store::records`), so only declared fields reach a
//! client. Views that join records (a sale and its product, a thread and its contact)
//! say so in their type.

use crate::error::ApiError;
use crate::store::records::{
    BookingRecord, MessageRecord, ProductRecord, Stored, ThreadRecord, UserRecord, UserRef,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A view as the JSON of a response body.
pub fn json(view: &impl Serialize) -> Value {
    serde_json::to_value(view).expect("views serialize to JSON")
}

/// The view of a stored record of type `R`.
pub fn view_as<R: DeserializeOwned + Serialize>(stored: &Stored) -> Result<Value, ApiError> {
    Ok(json(&stored.decode::<R>()?))
}

/// A user reference, replaced by the user's record when it was found.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Linked<'a> {
    Record(&'a UserRecord),
    Reference(UserRef),
}

impl<'a> Linked<'a> {
    /// `reference` expanded to `found` when the record exists.
    pub fn of(reference: Option<UserRef>, found: Option<&'a UserRecord>) -> Option<Self> {
        let reference = reference?;
        Some(found.map_or(Linked::Reference(reference), Linked::Record))
    }
}

/// A thread as the read endpoints show it: `awaiting_reply` spelled out, its contact
/// (expanded where the read joins it) and, in a client's context, its last message.
#[derive(Debug, Serialize)]
pub struct ThreadView<'a> {
    #[serde(flatten)]
    pub thread: ThreadRecord,
    pub awaiting_reply: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Linked<'a>>,
    /// `Some(None)` is shown as `null`: the thread has no message yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Option<&'a MessageRecord>>,
}

impl<'a> ThreadView<'a> {
    /// The thread with its contact `found` (or its stored reference when not found).
    pub fn new(thread: &ThreadRecord, found: Option<&'a UserRecord>) -> Self {
        let mut thread = thread.clone();
        let contact = Linked::of(thread.contact.take(), found);
        ThreadView {
            awaiting_reply: thread.awaiting_reply(),
            thread,
            contact,
            last_message: None,
        }
    }
}

/// A sale in a client's context, with its product (`null` when unknown).
#[derive(Debug, Serialize)]
pub struct SaleView<'a, S: Serialize> {
    #[serde(flatten)]
    pub sale: &'a S,
    pub product: Option<&'a ProductRecord>,
}

/// A booking in a list, with its client (expanded when found) and its services.
#[derive(Debug, Serialize)]
pub struct BookingView<'a> {
    #[serde(flatten)]
    pub booking: BookingRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<Linked<'a>>,
    pub services: Vec<&'a ProductRecord>,
}

impl<'a> BookingView<'a> {
    pub fn new(
        booking: &BookingRecord,
        client: Option<&'a UserRecord>,
        services: Vec<&'a ProductRecord>,
    ) -> Self {
        let mut booking = booking.clone();
        let client = Linked::of(booking.client.take(), client);
        BookingView {
            booking,
            client,
            services,
        }
    }
}
