//! Request bodies, parsed into typed, validated values. Unknown fields are ignored; `null`
//! is the same as an absent field (it leaves the stored value alone). Each `parse_*`
//! function (or its `*_from` / `into_*` half, for a body already deserialized, see
//! [`crate::request`]) is the only way to get the domain value a handler works with, so a
//! missing identity or a wrong type can never reach the store.
//!
//! The input structs double as the stored form of their scalar fields: serializing one
//! (nested objects are skipped) gives the attributes its upsert sets.

use crate::error::ApiError;
use crate::fields::{
    Count, Currency, Email, Id, JsonDocument, LongText, Metadata, Money, ShortText, Timestamp,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Most entries in `service_external_ids` or `services`.
pub const MAX_SERVICES_PER_BOOKING: usize = 50;

/// How far ahead of our clock a time that moves a record forward (`event_timestamp`,
/// `sent_at`, `last_message_at`) may be: clock skew. Later ones are refused, because guarded
/// updates only move those timestamps forward, so a single far-future value (a client bug,
/// a milliseconds-as-seconds mix-up) would freeze the record's lifecycle or thread order.
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::hours(24);

fn not_in_future(at: Option<Timestamp>, param: &str, now: Timestamp) -> Result<(), ApiError> {
    match at {
        Some(at) if at > now.later_by(MAX_CLOCK_SKEW) => Err(ApiError::invalid_field(
            param,
            format!("`{param}` must not be more than 24 hours in the future"),
        )),
        _ => Ok(()),
    }
}

/// Parses a request body into `T`, reporting syntax errors as `invalid_json` and type or
/// format errors as `invalid_field` with the dotted path of the offending field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde would accept an array for a struct (as a tuple of its fields): only objects are.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(_) => ApiError::InvalidJson("the body must be a JSON object".into()),
            Err(error) => ApiError::InvalidJson(without_position(&error.to_string())),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = without_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = without_value(&message);
                ApiError::invalid_field(path.clone(), format!("`{path}` {message}"))
            }
            _ => ApiError::InvalidJson(message),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::InvalidJson(without_position(&e.to_string())))?;
    Ok(value)
}

/// serde_json appends "at line L column C"; the field path says more to an API client.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// serde's type errors quote the offending value (`invalid type: string "…", expected u32`).
/// A value can be anything, a secret pasted into the wrong field included, and error bodies
/// end up in client logs: the message keeps what was expected and the kind of value sent,
/// never the value itself.
fn without_value(message: &str) -> String {
    let kind_of = |got: &str| {
        let kind = got.split(['`', '"']).next().unwrap_or(got).trim();
        if kind == "unit value" {
            "null".to_owned()
        } else {
            kind.to_owned()
        }
    };
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some((got, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.rsplit_once(", expected "))
        {
            return format!("must be {expected} (got {})", kind_of(got));
        }
    }
    if let Some((_, expected)) = message
        .strip_prefix("unknown variant ")
        .and_then(|rest| rest.rsplit_once(", expected "))
    {
        return format!("must be {expected}");
    }
    message.to_owned()
}

/// How a user is identified: `external_user_id` when sent, otherwise the normalized email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserIdentity {
    External(Id),
    Email(Email),
}

/// The fields of a user, at the top level of `users/upsert/` and nested as an event's
/// `user`, a sale's `buyer`, a thread's or message's `contact`, a booking's `client`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct UserFields {
    pub external_user_id: Option<Id>,
    pub email: Option<Email>,
    pub name: Option<ShortText>,
    pub phone: Option<ShortText>,
    pub created_at: Option<Timestamp>,
    pub plan: Option<ShortText>,
    pub status: Option<ShortText>,
    pub subscription_status: Option<ShortText>,
    pub billing_model: Option<ShortText>,
    pub billing_interval: Option<ShortText>,
    pub subscription_started_at: Option<Timestamp>,
    pub subscription_ends_at: Option<Timestamp>,
    pub installed_at: Option<Timestamp>,
    pub last_opened_at: Option<Timestamp>,
    pub uninstalled_at: Option<Timestamp>,
    pub install_platform: Option<ShortText>,
    pub install_source: Option<ShortText>,
    pub app_version: Option<ShortText>,
    pub install_count: Option<Count>,
    pub is_installed: Option<bool>,
    pub next_billing_at: Option<Timestamp>,
    pub last_payment_at: Option<Timestamp>,
    pub last_payment_amount: Option<Money>,
    pub last_payment_currency: Option<Currency>,
    pub lifetime_value: Option<Money>,
    pub total_payments_count: Option<Count>,
    pub is_active_customer: Option<bool>,
    pub metadata: Option<Metadata>,
}

/// A user ready to store: identity resolved.
#[derive(Debug, Clone)]
pub struct User {
    pub identity: UserIdentity,
    pub fields: UserFields,
    /// `identity` is the resolved one already (a batch resolves email-only mentions before
    /// grouping its items): the handler does not look it up again.
    pub resolved: bool,
}

impl UserFields {
    /// The lifecycle times a profile may carry: like `event_timestamp`, at most
    /// [`MAX_CLOCK_SKEW`] ahead, since the record shows the later of them and the events' (a
    /// far-future `last_payment_at` would hide every real payment).
    fn lifecycle_times(&self) -> [(Option<Timestamp>, &'static str); 6] {
        [
            (self.installed_at, "installed_at"),
            (self.last_opened_at, "last_opened_at"),
            (self.uninstalled_at, "uninstalled_at"),
            (self.last_payment_at, "last_payment_at"),
            (self.subscription_started_at, "subscription_started_at"),
            (self.created_at, "created_at"),
        ]
    }

    /// The user these fields identify (`external_user_id`, else `email`). A missing
    /// identity names `external_user_id`, a future lifecycle time its field; a nested user's
    /// caller re-roots the error at where the user sits (`user`, `buyer`, ...) with
    /// [`ApiError::within`].
    pub fn into_user(mut self) -> Result<User, ApiError> {
        let now = Timestamp::now();
        for (at, param) in self.lifecycle_times() {
            not_in_future(at, param, now)?;
        }
        self.external_user_id = Id::present(self.external_user_id);
        let identity = match (&self.external_user_id, &self.email) {
            (Some(id), _) => UserIdentity::External(id.clone()),
            (None, Some(email)) => UserIdentity::Email(email.clone()),
            (None, None) => {
                return Err(ApiError::MissingUserIdentity {
                    param: "external_user_id".into(),
                })
            }
        };
        Ok(User {
            identity,
            fields: self,
            resolved: false,
        })
    }
}

/// A nested user object that, when present, must carry its identity.
fn nested_user(user: Option<UserFields>, name: &str) -> Result<Option<User>, ApiError> {
    user.map(|user| user.into_user().map_err(|e| e.within(name)))
        .transpose()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductType {
    Product,
    Service,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ProductFields {
    pub external_product_id: Option<Id>,
    pub sku: Option<ShortText>,
    pub title: Option<ShortText>,
    #[serde(rename = "type")]
    pub kind: Option<ProductType>,
    pub description: Option<LongText>,
    pub short_description: Option<ShortText>,
    pub currency: Option<Currency>,
    pub price: Option<Money>,
    pub sale_price: Option<Money>,
    pub cost_price: Option<Money>,
    pub approx_duration_minutes: Option<Count>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: Id,
    pub fields: ProductFields,
}

impl ProductFields {
    pub fn into_product(self) -> Result<Product, ApiError> {
        let id = Id::present(self.external_product_id.clone()).ok_or(
            ApiError::MissingProductIdentity {
                param: "external_product_id".into(),
            },
        )?;
        Ok(Product { id, fields: self })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ChannelFields {
    pub external_channel_id: Option<Id>,
    pub display_name: Option<ShortText>,
    #[serde(rename = "type")]
    pub kind: Option<ShortText>,
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: Id,
    pub fields: ChannelFields,
}

fn nested_channel(channel: Option<ChannelFields>) -> Result<Option<Channel>, ApiError> {
    channel
        .map(|fields| {
            let id = Id::present(fields.external_channel_id.clone()).ok_or(
                ApiError::MissingChannelIdentity {
                    param: "channel.external_channel_id".into(),
                },
            )?;
            Ok(Channel { id, fields })
        })
        .transpose()
}

// ---------------------------------------------------------------------------- events

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EventInput {
    pub event: Option<Id>,
    #[serde(skip_serializing)]
    pub user: Option<UserFields>,
    pub properties: Option<Metadata>,
    pub event_timestamp: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub name: Id,
    pub user: User,
    pub properties: Option<Metadata>,
    /// When it happened: `event_timestamp`, or the time it was received.
    pub occurred_at: Timestamp,
    /// Whether `event_timestamp` was sent.
    pub timestamped: bool,
}

impl Event {
    /// Stamps an event sent without `event_timestamp` with the time its handler took it (a
    /// batch parses all its items first, then handles them in order).
    pub fn received(&mut self, at: Timestamp) {
        if !self.timestamped {
            self.occurred_at = at;
        }
    }
}

pub fn parse_event(body: &[u8], received_at: Timestamp) -> Result<Event, ApiError> {
    event_from(parse_json(body)?, received_at)
}

/// [`parse_event`] of a body already deserialized (and so for each type below).
pub fn event_from(input: EventInput, received_at: Timestamp) -> Result<Event, ApiError> {
    not_in_future(input.event_timestamp, "event_timestamp", received_at)?;
    let name = Id::present(input.event).ok_or(ApiError::MissingField {
        param: "event".into(),
    })?;
    let user = nested_user(input.user, "user")?.ok_or(ApiError::MissingUserIdentity {
        param: "user".into(),
    })?;
    Ok(Event {
        name,
        user,
        properties: input.properties,
        occurred_at: input.event_timestamp.unwrap_or(received_at),
        timestamped: input.event_timestamp.is_some(),
    })
}

// ---------------------------------------------------------------------------- users & products

pub fn parse_user(body: &[u8]) -> Result<User, ApiError> {
    parse_json::<UserFields>(body)?.into_user()
}

pub fn parse_product(body: &[u8]) -> Result<Product, ApiError> {
    parse_json::<ProductFields>(body)?.into_product()
}

// ---------------------------------------------------------------------------- sales

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SaleFields {
    pub sale_id: Option<Id>,
    pub date: Option<Timestamp>,
    pub quantity: Option<Count>,
    pub total: Option<Money>,
    pub currency: Option<Currency>,
    pub status: Option<ShortText>,
    pub metadata: Option<Metadata>,
    #[serde(skip_serializing)]
    pub buyer: Option<UserFields>,
    #[serde(skip_serializing)]
    pub product: Option<ProductFields>,
}

#[derive(Debug, Clone)]
pub struct Sale {
    pub id: Id,
    pub fields: SaleFields,
    pub buyer: Option<User>,
    pub product: Option<Product>,
}

pub fn parse_sale(body: &[u8]) -> Result<Sale, ApiError> {
    sale_from(parse_json(body)?)
}

pub fn sale_from(mut fields: SaleFields) -> Result<Sale, ApiError> {
    let id = Id::present(fields.sale_id.clone()).ok_or(ApiError::MissingSaleIdentity)?;
    let buyer = nested_user(fields.buyer.take(), "buyer")?;
    let product = fields
        .product
        .take()
        .map(|product| product.into_product().map_err(|e| e.within("product")))
        .transpose()?;
    Ok(Sale {
        id,
        fields,
        buyer,
        product,
    })
}

// ---------------------------------------------------------------------------- conversations

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConversationFields {
    pub thread_id: Option<Id>,
    pub last_message_at: Option<Timestamp>,
    pub subject: Option<ShortText>,
    pub status: Option<ShortText>,
    pub metadata: Option<Metadata>,
    #[serde(skip_serializing)]
    pub channel: Option<ChannelFields>,
    #[serde(skip_serializing)]
    pub contact: Option<UserFields>,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub thread_id: Id,
    pub fields: ConversationFields,
    pub channel: Option<Channel>,
    pub contact: Option<User>,
}

pub fn parse_conversation(body: &[u8]) -> Result<Conversation, ApiError> {
    conversation_from(parse_json(body)?)
}

pub fn conversation_from(mut fields: ConversationFields) -> Result<Conversation, ApiError> {
    not_in_future(fields.last_message_at, "last_message_at", Timestamp::now())?;
    let thread_id = Id::present(fields.thread_id.clone()).ok_or(ApiError::MissingThreadIdentity)?;
    let channel = nested_channel(fields.channel.take())?;
    let contact = nested_user(fields.contact.take(), "contact")?;
    Ok(Conversation {
        thread_id,
        fields,
        channel,
        contact,
    })
}

// ---------------------------------------------------------------------------- messages

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MessageFields {
    pub message_id: Option<Id>,
    pub thread_id: Option<Id>,
    pub direction: Option<Direction>,
    pub text: Option<LongText>,
    pub media: Option<Media>,
    pub sent_at: Option<Timestamp>,
    pub delivery_status: Option<ShortText>,
    pub metadata: Option<Metadata>,
    #[serde(skip_serializing)]
    pub channel: Option<ChannelFields>,
    #[serde(skip_serializing)]
    pub contact: Option<UserFields>,
}

/// Attachments: any JSON (usually a list of URLs or objects), bounded like `metadata`.
pub type Media = JsonDocument;

#[derive(Debug, Clone)]
pub struct Message {
    pub message_id: Id,
    pub thread_id: Id,
    pub fields: MessageFields,
    pub channel: Option<Channel>,
    pub contact: Option<User>,
}

pub fn parse_message(body: &[u8]) -> Result<Message, ApiError> {
    message_from(parse_json(body)?)
}

pub fn message_from(mut fields: MessageFields) -> Result<Message, ApiError> {
    not_in_future(fields.sent_at, "sent_at", Timestamp::now())?;
    let message_id =
        Id::present(fields.message_id.clone()).ok_or(ApiError::MissingMessageIdentity)?;
    let thread_id = Id::present(fields.thread_id.clone()).ok_or(ApiError::MissingThreadIdentity)?;
    let channel = nested_channel(fields.channel.take())?;
    let contact = nested_user(fields.contact.take(), "contact")?;
    Ok(Message {
        message_id,
        thread_id,
        fields,
        channel,
        contact,
    })
}

// ---------------------------------------------------------------------------- bookings

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BookingFields {
    pub booking_id: Option<Id>,
    pub title: Option<ShortText>,
    pub booking_type: Option<ShortText>,
    pub status: Option<ShortText>,
    pub scheduled_at: Option<Timestamp>,
    pub duration_minutes: Option<Count>,
    pub location: Option<ShortText>,
    pub notes: Option<LongText>,
    pub metadata: Option<Metadata>,
    #[serde(skip_serializing)]
    pub client: Option<UserFields>,
    #[serde(skip_serializing)]
    pub service_external_ids: Option<Vec<Id>>,
    #[serde(skip_serializing)]
    pub services: Option<Vec<ProductFields>>,
}

#[derive(Debug, Clone)]
pub struct Booking {
    pub id: Id,
    pub scheduled_at: Timestamp,
    pub fields: BookingFields,
    pub client: Option<User>,
    /// Services sent as objects, upserted as products of type `service`.
    pub services: Vec<Product>,
    /// Every linked service id: `service_external_ids` then the ids of `services`,
    /// without repeats. `None` when the request sent neither (links are left alone).
    pub service_ids: Option<Vec<Id>>,
}

pub fn parse_booking(body: &[u8]) -> Result<Booking, ApiError> {
    booking_from(parse_json(body)?)
}

pub fn booking_from(mut fields: BookingFields) -> Result<Booking, ApiError> {
    let id = Id::present(fields.booking_id.clone()).ok_or(ApiError::MissingBookingIdentity)?;
    let scheduled_at = fields
        .scheduled_at
        .ok_or(ApiError::MissingBookingScheduledAt)?;
    let client = nested_user(fields.client.take(), "client")?;

    let listed_ids = fields.service_external_ids.take();
    let service_objects = fields.services.take();
    for (list, name) in [
        (listed_ids.as_ref().map(Vec::len), "service_external_ids"),
        (service_objects.as_ref().map(Vec::len), "services"),
    ] {
        if list.unwrap_or(0) > MAX_SERVICES_PER_BOOKING {
            return Err(ApiError::invalid_field(
                name,
                format!("`{name}` may list at most {MAX_SERVICES_PER_BOOKING} services"),
            ));
        }
    }
    let services = service_objects
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, mut service)| {
            service.kind = Some(ProductType::Service);
            service
                .into_product()
                .map_err(|e| e.within(&format!("services[{index}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let service_ids = (listed_ids.is_some() || !services.is_empty()).then(|| {
        let mut ids: Vec<Id> = Vec::new();
        let candidates = listed_ids
            .into_iter()
            .flatten()
            .filter_map(|id| Id::present(Some(id)));
        for id in candidates.chain(services.iter().map(|s| s.id.clone())) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    });

    Ok(Booking {
        id,
        scheduled_at,
        fields,
        client,
        services,
        service_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_errors_never_quote_the_value_sent() {
        let secret = "dfk_live_0123456789abcdef_secret";
        for (body, expected) in [
            (
                json!({"external_user_id": "u", "install_count": secret}),
                "must be a whole number from 0 to 4294967295 (got string)",
            ),
            (
                json!({"external_user_id": "u", "install_count": -7}),
                "must be a whole number from 0 to 4294967295 (got integer)",
            ),
            (
                json!({"external_user_id": "u", "is_installed": null, "name": 5}),
                "(got integer)",
            ),
            (json!({"external_user_id": ["a", secret]}), "(got sequence)"),
        ] {
            let error = parse_user(&body.to_string().into_bytes()).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(
                !message.contains("secret") && !message.contains("-7"),
                "{message}"
            );
        }
        let body = json!({"message_id": "m", "thread_id": "t", "direction": secret});
        let message = parse_message(&body.to_string().into_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(message, "`direction` must be `in` or `out`");
    }

    fn body(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        for raw in [
            &b"{"[..],
            b"",
            b"not json",
            b"{\"a\":1} trailing",
            b"\xff\xfe",
        ] {
            let error = parse_user(raw).unwrap_err();
            assert_eq!(error.code(), "invalid_json", "{raw:?}");
        }
    }

    #[test]
    fn non_object_bodies_are_invalid_json() {
        for raw in [json!([1, 2]), json!("x"), json!(null), json!(42)] {
            let error = parse_user(&body(raw.clone())).unwrap_err();
            assert_eq!(error.code(), "invalid_json", "{raw}");
        }
    }

    #[test]
    fn wrong_types_name_the_field_path() {
        let error = parse_sale(&body(json!({
            "sale_id": "o1",
            "buyer": {"external_user_id": "u1", "install_count": -1}
        })))
        .unwrap_err();
        assert_eq!(error.code(), "invalid_field");
        assert_eq!(error.param(), Some("buyer.install_count"));

        let error = parse_booking(&body(json!({
            "booking_id": "b1", "scheduled_at": "2026-03-25T10:30:00Z",
            "services": [{"external_product_id": "s1", "price": 10}]
        })))
        .unwrap_err();
        assert_eq!(error.param(), Some("services[0].price"));
    }

    #[test]
    fn user_identity_prefers_external_id_then_email() {
        let user = parse_user(&body(json!({"external_user_id": "u1", "email": "A@x.io"}))).unwrap();
        assert!(matches!(user.identity, UserIdentity::External(ref id) if id.as_str() == "u1"));
        let user = parse_user(&body(json!({"external_user_id": "", "email": "A@x.io"}))).unwrap();
        assert!(matches!(user.identity, UserIdentity::Email(ref e) if e.as_str() == "a@x.io"));
        let error = parse_user(&body(json!({"name": "x"}))).unwrap_err();
        assert_eq!(error.code(), "missing_user_identity");
    }

    #[test]
    fn unknown_fields_are_ignored_and_null_is_absent() {
        let user = parse_user(&body(
            json!({"external_user_id": "u1", "shoe_size": 44, "plan": null}),
        ))
        .unwrap();
        assert!(user.fields.plan.is_none());
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let error = parse_user(br#"{"external_user_id":"a","external_user_id":"b"}"#).unwrap_err();
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn nested_identities_are_required_when_the_object_is_sent() {
        let error =
            parse_sale(&body(json!({"sale_id": "o1", "buyer": {"name": "x"}}))).unwrap_err();
        assert_eq!(error.code(), "missing_user_identity");
        assert_eq!(error.param(), Some("buyer.external_user_id"));
        let error =
            parse_sale(&body(json!({"sale_id": "o1", "product": {"title": "x"}}))).unwrap_err();
        assert_eq!(error.code(), "missing_product_identity");
        let error =
            parse_event(&body(json!({"event": "app_opened"})), Timestamp::now()).unwrap_err();
        assert_eq!(error.code(), "missing_user_identity");
    }

    #[test]
    fn each_entity_reports_its_missing_identity() {
        let cases = [
            (parse_sale(b"{}").unwrap_err(), "missing_sale_identity"),
            (
                parse_conversation(b"{}").unwrap_err(),
                "missing_thread_identity",
            ),
            (
                parse_message(b"{}").unwrap_err(),
                "missing_message_identity",
            ),
            (
                parse_message(br#"{"message_id":"m"}"#).unwrap_err(),
                "missing_thread_identity",
            ),
            (
                parse_booking(b"{}").unwrap_err(),
                "missing_booking_identity",
            ),
            (
                parse_booking(br#"{"booking_id":"b"}"#).unwrap_err(),
                "missing_booking_scheduled_at",
            ),
            (
                parse_product(b"{}").unwrap_err(),
                "missing_product_identity",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn enums_accept_only_documented_values() {
        let error = parse_message(&body(
            json!({"message_id": "m", "thread_id": "t", "direction": "sideways"}),
        ))
        .unwrap_err();
        assert_eq!(error.param(), Some("direction"));
        let error =
            parse_product(&body(json!({"external_product_id": "p", "type": "gift"}))).unwrap_err();
        assert_eq!(error.param(), Some("type"));
    }

    #[test]
    fn booking_services_are_services_and_ids_are_merged() {
        let booking = parse_booking(&body(json!({
            "booking_id": "b1", "scheduled_at": "2026-03-25T10:30:00Z",
            "service_external_ids": ["svc_a", "svc_b"],
            "services": [{"external_product_id": "svc_b", "type": "product"}, {"external_product_id": "svc_c"}]
        })))
        .unwrap();
        let ids: Vec<&str> = booking
            .service_ids
            .as_ref()
            .unwrap()
            .iter()
            .map(Id::as_str)
            .collect();
        assert_eq!(ids, ["svc_a", "svc_b", "svc_c"]);
        assert!(booking
            .services
            .iter()
            .all(|s| s.fields.kind == Some(ProductType::Service)));
    }

    #[test]
    fn serialized_fields_skip_nested_objects() {
        let sale = parse_sale(&body(
            json!({"sale_id": "o1", "total": "58.00", "buyer": {"email": "a@b.c"}}),
        ))
        .unwrap();
        let stored = serde_json::to_value(&sale.fields).unwrap();
        assert_eq!(stored["total"], "58.00");
        assert!(stored.get("buyer").is_none());
    }
}
