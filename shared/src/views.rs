//! Response objects. Each entity's view (`UserView`, `ThreadView`...) is declared with its
//! record in `store::records`: an allow-list, the only part of a stored item that can be
//! serialized. Here are the views that join records (a sale and its product, a thread and
//! its contact), each an explicit type.

use crate::error::ApiError;
use crate::store::records::{
    BookingView, MessageView, ProductView, Stored, ThreadView, UserRef, UserView,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A view as the JSON of a response body.
pub fn json(view: &impl Serialize) -> Value {
    serde_json::to_value(view).expect("views serialize to JSON")
}

/// The view `R` of a stored record, as JSON.
pub fn view_as<R: DeserializeOwned + Serialize>(stored: &Stored) -> Result<Value, ApiError> {
    Ok(json(&stored.decode::<R>()?))
}

/// A user reference, replaced by the user's record when it was found.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Linked<'a> {
    Found(&'a UserView),
    Reference(UserRef),
}

impl<'a> Linked<'a> {
    /// `reference` expanded to `found` when the record exists.
    pub fn of(reference: Option<UserRef>, found: Option<&'a UserView>) -> Option<Self> {
        let reference = reference?;
        Some(found.map_or(Linked::Reference(reference), Linked::Found))
    }
}

/// A thread as the read endpoints show it: `awaiting_reply` spelled out, its contact
/// (expanded where the read joins it) and, in a client's context, its last message.
#[derive(Debug, Serialize)]
pub struct ThreadWithContext<'a> {
    #[serde(flatten)]
    pub thread: ThreadView,
    pub awaiting_reply: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Linked<'a>>,
    /// `Some(None)` is shown as `null`: the thread has no message yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Option<&'a MessageView>>,
}

impl<'a> ThreadWithContext<'a> {
    /// The thread with its contact `found` (or its stored reference when not found).
    pub fn new(thread: &ThreadView, found: Option<&'a UserView>) -> Self {
        let mut thread = thread.clone();
        let contact = Linked::of(thread.contact.take(), found);
        ThreadWithContext {
            awaiting_reply: thread.awaiting_reply(),
            thread,
            contact,
            last_message: None,
        }
    }
}

/// A sale in a client's context, with its product (`null` when unknown).
#[derive(Debug, Serialize)]
pub struct SaleWithProduct<'a, S: Serialize> {
    #[serde(flatten)]
    pub sale: &'a S,
    pub product: Option<&'a ProductView>,
}

/// A booking in a list, with its client (expanded when found) and its services.
#[derive(Debug, Serialize)]
pub struct BookingWithLinks<'a> {
    #[serde(flatten)]
    pub booking: BookingView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<Linked<'a>>,
    pub services: Vec<&'a ProductView>,
}

impl<'a> BookingWithLinks<'a> {
    pub fn new(
        booking: &BookingView,
        client: Option<&'a UserView>,
        services: Vec<&'a ProductView>,
    ) -> Self {
        let mut booking = booking.clone();
        let client = Linked::of(booking.client.take(), client);
        BookingWithLinks {
            booking,
            client,
            services,
        }
    }
}
