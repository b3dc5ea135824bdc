//! A write request's body parsed once: into the typed, validated value its handler takes
//! (a single endpoint's body, or a batch item), and for a keyed event the fingerprint
//! ([`crate::idempotency`]) from the same parse.

use crate::error::ApiError;
use crate::fields::{json_without_repeated_keys, Timestamp};
use crate::idempotency::{body_fingerprint, fingerprint, Idempotency, IdempotencyKey};
use crate::input::{self, Event, User, UserIdentity};
use crate::input::{Booking, Conversation, Message, Product, Sale};
use serde::de::DeserializeOwned;
use serde_json::Value;

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

    pub(crate) fn from_name(name: &str) -> Option<ObjectType> {
        ObjectType::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The fields of the stored object that give the item's `id`, first present wins.
    pub(crate) fn id_fields(self) -> &'static [&'static str] {
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

/// The value a write handler takes (boxed: from 0.3 to 2 KB, moved into futures).
#[derive(Debug)]
pub enum WriteRequest {
    User(Box<User>),
    Event(Box<EventRequest>),
    Product(Box<Product>),
    Sale(Box<Sale>),
    Conversation(Box<Conversation>),
    Message(Box<Message>),
    Booking(Box<Booking>),
}

/// An event and its idempotency (the event id, and with a key the body's fingerprint).
#[derive(Debug)]
pub struct EventRequest {
    pub event: Event,
    pub idempotency: Idempotency,
}

impl WriteRequest {
    /// The body of `kind`'s single endpoint; `key` is an event's `Idempotency-Key`.
    pub fn parse(
        kind: ObjectType,
        body: &[u8],
        key: Option<IdempotencyKey>,
    ) -> Result<WriteRequest, ApiError> {
        if kind == ObjectType::Event && key.is_some() {
            // The fingerprint hashes the whole document: parse it as JSON once and read
            // the event from that.
            if let Some(parsed) = json_without_repeated_keys(body)
                .and_then(|value| Self::from_value(kind, value, key.clone()))
            {
                return parsed;
            }
        }
        let now = Timestamp::now();
        match kind {
            ObjectType::User => {
                input::parse_user(body).map(|value| WriteRequest::User(Box::new(value)))
            }
            ObjectType::Event => input::parse_event(body, now)
                .and_then(|event| EventRequest::request(event, key, || body_fingerprint(body))),
            ObjectType::Product => {
                input::parse_product(body).map(|value| WriteRequest::Product(Box::new(value)))
            }
            ObjectType::Sale => {
                input::parse_sale(body).map(|value| WriteRequest::Sale(Box::new(value)))
            }
            ObjectType::Conversation => input::parse_conversation(body)
                .map(|value| WriteRequest::Conversation(Box::new(value))),
            ObjectType::Message => {
                input::parse_message(body).map(|value| WriteRequest::Message(Box::new(value)))
            }
            ObjectType::Booking => {
                input::parse_booking(body).map(|value| WriteRequest::Booking(Box::new(value)))
            }
        }
    }

    /// From a body already parsed as JSON (with no repeated key). `None` when it does not
    /// deserialize as `kind`'s body: [`WriteRequest::parse`] of its bytes then says why,
    /// with the field path and message the byte parser gives.
    pub fn from_value(
        kind: ObjectType,
        body: Value,
        key: Option<IdempotencyKey>,
    ) -> Option<Result<WriteRequest, ApiError>> {
        fn typed<T: DeserializeOwned>(body: &Value) -> Option<T> {
            body.is_object()
                .then(|| T::deserialize(body).ok())
                .flatten()
        }
        let now = Timestamp::now();
        Some(match kind {
            ObjectType::User => typed::<input::UserFields>(&body)?
                .into_user()
                .map(|value| WriteRequest::User(Box::new(value))),
            ObjectType::Event => input::event_from(typed(&body)?, now)
                .and_then(|event| EventRequest::request(event, key, || Ok(fingerprint(&body)))),
            ObjectType::Product => typed::<input::ProductFields>(&body)?
                .into_product()
                .map(|value| WriteRequest::Product(Box::new(value))),
            ObjectType::Sale => {
                input::sale_from(typed(&body)?).map(|value| WriteRequest::Sale(Box::new(value)))
            }
            ObjectType::Conversation => input::conversation_from(typed(&body)?)
                .map(|value| WriteRequest::Conversation(Box::new(value))),
            ObjectType::Message => input::message_from(typed(&body)?)
                .map(|value| WriteRequest::Message(Box::new(value))),
            ObjectType::Booking => input::booking_from(typed(&body)?)
                .map(|value| WriteRequest::Booking(Box::new(value))),
        })
    }

    /// Its rate-limit tokens ([`crate::cost`]): a booking's by its services, others one.
    pub fn cost(&self) -> u32 {
        match self {
            WriteRequest::Booking(booking) => crate::cost::booking(booking.services.len()),
            _ => 1,
        }
    }

    /// The user it mentions: the user, an event's `user`, a `buyer`, `contact` or `client`.
    pub fn user(&self) -> Option<&User> {
        match self {
            WriteRequest::User(user) => Some(user),
            WriteRequest::Event(request) => Some(&request.event.user),
            WriteRequest::Sale(sale) => sale.buyer.as_ref(),
            WriteRequest::Conversation(conversation) => conversation.contact.as_ref(),
            WriteRequest::Message(message) => message.contact.as_ref(),
            WriteRequest::Booking(booking) => booking.client.as_ref(),
            WriteRequest::Product(_) => None,
        }
    }

    pub fn user_mut(&mut self) -> Option<&mut User> {
        match self {
            WriteRequest::User(user) => Some(user),
            WriteRequest::Event(request) => Some(&mut request.event.user),
            WriteRequest::Sale(sale) => sale.buyer.as_mut(),
            WriteRequest::Conversation(conversation) => conversation.contact.as_mut(),
            WriteRequest::Message(message) => message.contact.as_mut(),
            WriteRequest::Booking(booking) => booking.client.as_mut(),
            WriteRequest::Product(_) => None,
        }
    }

    /// The records the request writes or reads to decide, as opaque names: a batch applies
    /// items sharing one in order. A user is named by its resolved identity and by the email
    /// it mentions (whose alias it reads or claims, whose email-only client it may merge).
    pub fn records(&self) -> Vec<String> {
        fn user(user: &User, names: &mut Vec<String>) {
            let email = |email: &crate::fields::Email| format!("user:email:{}", email.as_str());
            names.push(match &user.identity {
                UserIdentity::External(id) => format!("user:id:{}", id.as_str()),
                UserIdentity::Email(address) => email(address),
            });
            if let (UserIdentity::External(_), Some(address)) = (&user.identity, &user.fields.email)
            {
                names.push(email(address));
            }
        }
        let product = |id: &crate::fields::Id| format!("product:{}", id.as_str());
        let thread = |id: &crate::fields::Id| format!("thread:{}", id.as_str());
        let channel = |id: &crate::fields::Id| format!("channel:{}", id.as_str());
        let mut names = Vec::new();
        match self {
            WriteRequest::User(_) | WriteRequest::Event(_) => {}
            WriteRequest::Product(p) => names.push(product(&p.id)),
            WriteRequest::Sale(sale) => {
                names.push(format!("sale:{}", sale.id.as_str()));
                names.extend(sale.product.as_ref().map(|p| product(&p.id)));
            }
            WriteRequest::Conversation(conversation) => {
                names.push(thread(&conversation.thread_id));
                names.extend(conversation.channel.as_ref().map(|c| channel(&c.id)));
            }
            WriteRequest::Message(message) => {
                names.push(thread(&message.thread_id));
                names.extend(message.channel.as_ref().map(|c| channel(&c.id)));
            }
            WriteRequest::Booking(booking) => {
                names.push(format!("booking:{}", booking.id.as_str()));
                names.extend(booking.services.iter().map(|p| product(&p.id)));
            }
        }
        if let WriteRequest::Event(request) = self {
            if let Some((key, _)) = &request.idempotency.keyed {
                names.push(format!("event:{}", key.as_str()));
            }
        }
        if let Some(mention) = self.user() {
            user(mention, &mut names);
        }
        names
    }
}

impl EventRequest {
    fn request(
        event: Event,
        key: Option<IdempotencyKey>,
        fingerprint: impl FnOnce() -> Result<String, ApiError>,
    ) -> Result<WriteRequest, ApiError> {
        let idempotency = Idempotency::of(key, fingerprint)?;
        Ok(WriteRequest::Event(Box::new(EventRequest {
            event,
            idempotency,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The one-parse path (a JSON value, then the type) and the byte parser agree on every
    /// valid body, and a body the value path does not take is left to the byte parser.
    #[test]
    fn a_value_reads_as_its_bytes_do() {
        let bodies = [
            (
                ObjectType::User,
                json!({"external_user_id": " u1 ", "email": "A@x.io", "install_count": 3.0,
                       "lifetime_value": "9.50", "last_payment_currency": "usd",
                       "metadata": {"b": [1, 2.5, null], "a": "é\n"}, "unknown": {"x": 1}}),
            ),
            (
                ObjectType::Product,
                json!({"external_product_id": "p", "type": "service", "price": "1.00"}),
            ),
            (
                ObjectType::Sale,
                json!({"sale_id": "s", "total": "5.00", "currency": "EUR",
                       "buyer": {"email": "b@x.io"}, "product": {"external_product_id": "p"}}),
            ),
            (
                ObjectType::Conversation,
                json!({"thread_id": "t", "channel": {"external_channel_id": "c", "type": "chat"},
                       "contact": {"external_user_id": "u"}, "last_message_at": "2026-01-01T00:00:00Z"}),
            ),
            (
                ObjectType::Message,
                json!({"message_id": "m", "thread_id": "t", "direction": "in", "text": "hi",
                       "media": [{"url": "x"}], "sent_at": "2026-01-01T00:00:00+02:00"}),
            ),
            (
                ObjectType::Booking,
                json!({"booking_id": "b", "scheduled_at": "2026-03-25T10:30:00Z",
                       "service_external_ids": ["a"], "services": [{"external_product_id": "c"}],
                       "client": {"external_user_id": "u", "email": "c@x.io"}}),
            ),
        ];
        for (kind, body) in bodies {
            let bytes = body.to_string().into_bytes();
            let value = json_without_repeated_keys(&bytes).unwrap();
            let from_value = WriteRequest::from_value(kind, value, None)
                .unwrap()
                .unwrap();
            let from_bytes = WriteRequest::parse(kind, &bytes, None).unwrap();
            assert_eq!(
                format!("{from_value:?}"),
                format!("{from_bytes:?}"),
                "{kind:?}"
            );
        }
        // Not an object, or a field error: no value-path answer.
        for body in [json!([1]), json!({"external_user_id": 5})] {
            assert!(WriteRequest::from_value(ObjectType::User, body, None).is_none());
        }
    }

    #[test]
    fn a_keyed_event_is_fingerprinted_from_its_parse() {
        let key = || Some(IdempotencyKey::parse("k").unwrap());
        let body = br#"{"event":"user_purchased","event_timestamp":"2026-03-01T10:00:00Z",
            "user":{"external_user_id":"u","email":"a@x.io"},
            "properties":{"amount":"9.50","currency":"USD"},"extra":[1.5,{"z":1,"a":2}]}"#;
        let WriteRequest::Event(parsed) =
            WriteRequest::parse(ObjectType::Event, body, key()).unwrap()
        else {
            panic!("an event");
        };
        let fingerprint = body_fingerprint(body).unwrap();
        assert_eq!(
            parsed.idempotency.stored(),
            Some(("k", fingerprint.as_str()))
        );
        let from_bytes = input::parse_event(body, Timestamp::now()).unwrap();
        assert_eq!(format!("{:?}", parsed.event), format!("{from_bytes:?}"));
        // A repeated key is the byte parser's error, as it always was.
        let repeated = br#"{"event":"a","event":"b","user":{"external_user_id":"u"}}"#;
        let error = WriteRequest::parse(ObjectType::Event, repeated, key()).unwrap_err();
        let expected = input::parse_event(repeated, Timestamp::now()).unwrap_err();
        assert_eq!(error, expected);
    }
}
