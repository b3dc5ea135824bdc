//! Stored items as typed records, decoded at the store's edge (serde_dynamo).
//!
//! Each record comes with its view, the allow-list of what a client sees (see [`record!`]):
//! an attribute that is stored but not declared in the view (keys, `org_id`, `version`, an
//! internal attribute the code reads, declared under `internal`) never reaches a client.
//! Adding a client-visible field is one line in a view here (and the write in `items.rs`);
//! adding an internal one, one line under `internal`.

use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::states::{
    billing_state, lifecycle_stage, BillingFacts, BillingState, ClientTimeline, LifecycleStage,
    StageSettings,
};
use crate::store::schema::attributes::{money_string, NUMERIC_MONEY_ATTRIBUTES};
use crate::store::schema::keys::{self, ItemKey};
use crate::store::schema::Item;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The text and boolean user attributes `GET users/` filters on (its query parameters have
/// the same names).
pub const USER_TEXT_FILTERS: [&str; 5] = [
    "subscription_status",
    "plan",
    "status",
    "install_source",
    "install_platform",
];
pub const USER_FLAG_FILTERS: [&str; 2] = ["is_installed", "is_active_customer"];

/// A record's view, decoded from a stored item and serialized for a client.
pub trait View: DeserializeOwned + Serialize {}
impl<T: DeserializeOwned + Serialize> View for T {}

/// A stored item whose type the caller decides ([`Stored::decode`]): what a BatchGetItem
/// of mixed records returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored(Item);

impl Stored {
    pub(crate) fn new(item: Item) -> Self {
        Stored(item)
    }

    /// The raw item (for the store, and for `make bench`'s heat simulation).
    pub fn item(&self) -> &Item {
        &self.0
    }

    /// The table key of the item (every stored item has one).
    pub fn key(&self) -> Option<ItemKey> {
        keys::key_of(&self.0)
    }

    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        decode(self.0.clone())
    }
}

/// Decodes a stored item, money totals first rewritten as decimal strings with at least two
/// places (DynamoDB may drop trailing zeros: `58.00` comes back as `58`).
pub fn decode<T: DeserializeOwned>(mut item: Item) -> Result<T, ApiError> {
    if item
        .get("entity")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        == Some("user")
    {
        item = super::client_record::merge(item);
    }
    for name in NUMERIC_MONEY_ATTRIBUTES {
        if let Some(AttributeValue::N(number)) = item.get(name) {
            let text = money_string(number);
            item.insert(name.to_owned(), AttributeValue::S(text));
        }
    }
    serde_dynamo::from_item(item).map_err(|error| {
        tracing::error!(%error, record = std::any::type_name::<T>(), "stored item does not decode");
        ApiError::Internal
    })
}

/// A JSON document stored as a string (see `fields::JsonDocument`), returned parsed.
fn json_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.map(|text| serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A stored reference to a user (`buyer`, `contact`, `client`, an event's `user`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct UserRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Declares a record and its view. `XView` is the allow-list of what a client sees: every
/// field optional (left out when absent), plus `object` (the stored `entity`),
/// `ingested_at` and `updated_at`. `XRecord` is the stored item: its view plus the
/// `internal` fields code reads but no client sees. A record has no `Serialize`, so only a
/// view can become a response; it derefs to its view for reading.
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $record:ident / $view:ident {
            $( $(#[$field_meta:meta])* $field:ident : $type:ty ),* $(,)?
        }
        $( internal { $( $(#[$internal_meta:meta])* $internal:ident : $internal_type:ty ),* $(,)? } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        pub struct $record {
            #[serde(flatten)]
            pub view: $view,
            $($(
                $(#[$internal_meta])*
                #[serde(default)]
                pub $internal: Option<$internal_type>,
            )*)?
        }

        /// What a client sees of a
        #[doc = concat!("[`", stringify!($record), "`].")]
        #[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
        pub struct $view {
            /// The stored `entity`.
            #[serde(rename(deserialize = "entity"))]
            pub object: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub ingested_at: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub updated_at: Option<String>,
            $(
                $(#[$field_meta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$type>,
            )*
        }

        impl std::ops::Deref for $record {
            type Target = $view;
            fn deref(&self) -> &$view {
                &self.view
            }
        }
    };
}

record! {
    /// `ORG#..#USER#..`: the client record.
    pub struct UserRecord / UserView {
        external_user_id: String,
        email: String,
        name: String,
        phone: String,
        created_at: String,
        plan: String,
        status: String,
        subscription_status: String,
        billing_model: String,
        billing_interval: String,
        subscription_started_at: String,
        subscription_ends_at: String,
        subscription_updated_at: String,
        installed_at: String,
        last_opened_at: String,
        uninstalled_at: String,
        install_platform: String,
        install_source: String,
        app_version: String,
        install_count: i64,
        is_installed: bool,
        next_billing_at: String,
        last_payment_at: String,
        last_payment_amount: String,
        last_payment_currency: String,
        /// A decimal string (see [`decode`]), in `lifetime_value_currency`.
        lifetime_value: String,
        lifetime_value_currency: String,
        /// Revenue from payment events per currency, each a decimal string.
        revenue_by_currency: std::collections::BTreeMap<String, String>,
        total_payments_count: i64,
        is_active_customer: bool,
        #[serde(deserialize_with = "json_text")]
        metadata: Value,
        last_event_at: String,
        last_activity_at: String,
        /// Per event name, its count and newest event time (at most `MAX_EVENT_NAMES`).
        events_by_name: std::collections::BTreeMap<String, NameActivity>,
        /// The events of the names past the bound, together.
        events_beyond_name_limit: NameActivity,
        /// Computed when read, at the response's `as_of` (see [`UserRecord::view_at`]).
        lifecycle_stage: LifecycleStage,
        billing_state: BillingState,
    }
    internal {
        /// See `client_record::merge`: what the computed states read.
        first_seen_at: String,
        previous_activity_at: String,
        /// An email-only record merged into an identified one: that one's PK.
        merged_into: String,
        /// The email-only records merged into this one (their PKs): their history is listed
        /// under them.
        merged_identities: Vec<String>,
    }
}

/// What a client did under one event name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct NameActivity {
    pub count: i64,
    /// The newest `event_timestamp` of the name.
    pub last_at: String,
}

impl UserRecord {
    /// The times the lifecycle stage depends on.
    pub fn timeline(&self) -> ClientTimeline {
        let time = |at: &Option<String>| at.as_deref().and_then(|at| at.parse().ok());
        ClientTimeline {
            first_seen: time(&self.first_seen_at),
            last_activity: time(&self.view.last_activity_at),
            previous_activity: time(&self.previous_activity_at),
            uninstalled_at: time(&self.view.uninstalled_at),
        }
    }

    /// The facts the billing state depends on, as the record shows them.
    pub fn billing(&self) -> BillingFacts {
        let view = &self.view;
        BillingFacts {
            subscription_status: view.subscription_status.clone(),
            subscription_ends_at: view
                .subscription_ends_at
                .as_deref()
                .and_then(|at| at.parse().ok()),
            is_active_customer: view.is_active_customer,
            has_paid: view.total_payments_count.is_some_and(|count| count > 0)
                || view.last_payment_at.is_some(),
        }
    }

    /// The client's view with its computed states at `as_of`.
    pub fn view_at(&self, as_of: Timestamp, settings: &StageSettings) -> UserView {
        UserView {
            lifecycle_stage: Some(lifecycle_stage(&self.timeline(), settings, as_of)),
            billing_state: Some(billing_state(&self.billing(), as_of)),
            ..self.view.clone()
        }
    }
}

record! {
    pub struct ProductRecord / ProductView {
        external_product_id: String,
        sku: String,
        title: String,
        #[serde(rename = "type")]
        kind: String,
        description: String,
        short_description: String,
        currency: String,
        price: String,
        sale_price: String,
        cost_price: String,
        approx_duration_minutes: i64,
        is_active: bool,
    }
}

record! {
    pub struct ChannelRecord / ChannelView {
        external_channel_id: String,
        display_name: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

record! {
    pub struct SaleRecord / SaleView {
        sale_id: String,
        date: String,
        quantity: i64,
        total: String,
        currency: String,
        status: String,
        #[serde(deserialize_with = "json_text")]
        metadata: Value,
        buyer: UserRef,
        external_product_id: String,
    }
}

record! {
    /// A conversation thread (`entity` is `conversation`).
    pub struct ThreadRecord / ThreadView {
        thread_id: String,
        last_message_at: String,
        subject: String,
        status: String,
        #[serde(deserialize_with = "json_text")]
        metadata: Value,
        contact: UserRef,
        external_channel_id: String,
        last_message_id: String,
        last_message_direction: String,
        awaiting_reply_since: String,
    }
}

impl ThreadView {
    /// Whether the thread's last message is inbound.
    pub fn awaiting_reply(&self) -> bool {
        self.last_message_direction.as_deref() == Some("in")
    }
}

record! {
    pub struct MessageRecord / MessageView {
        message_id: String,
        thread_id: String,
        direction: String,
        text: String,
        #[serde(deserialize_with = "json_text")]
        media: Value,
        sent_at: String,
        delivery_status: String,
        #[serde(deserialize_with = "json_text")]
        metadata: Value,
        contact: UserRef,
        external_channel_id: String,
    }
}

record! {
    pub struct BookingRecord / BookingView {
        booking_id: String,
        title: String,
        booking_type: String,
        status: String,
        scheduled_at: String,
        duration_minutes: i64,
        location: String,
        notes: String,
        #[serde(deserialize_with = "json_text")]
        metadata: Value,
        service_external_ids: Vec<String>,
        client: UserRef,
    }
}

record! {
    /// A stored event, which is also the idempotency record of its `Idempotency-Key`.
    pub struct EventRecord / EventView {
        id: String,
        event: String,
        user: UserRef,
        event_timestamp: String,
        #[serde(deserialize_with = "json_text")]
        properties: Value,
        idempotency_key: String,
    }
    internal {
        /// The fingerprint of the body that stored it.
        request_hash: String,
    }
}

/// A message as a thread's summary counts it and its inbox state is computed from it: a
/// projection of three attributes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageTally {
    pub message_id: Option<String>,
    pub direction: Option<String>,
    pub sent_at: Option<String>,
}

impl MessageTally {
    /// The projection that reads it.
    pub const ATTRIBUTES: [&'static str; 3] = ["message_id", "direction", "sent_at"];
}

/// What erasure lists: an item's key and entity (a projection of both).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Listed {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    pub entity: Option<String>,
    message_id: Option<String>,
    idempotency_key: Option<String>,
}

impl Listed {
    /// The projection that reads it (keys are always included).
    pub const ATTRIBUTES: [&'static str; 3] = ["entity", "message_id", "idempotency_key"];

    /// How erasing treats the item: an event stored with an `Idempotency-Key` leaves a
    /// tombstone, everything else is deleted.
    pub fn erasure(&self) -> Erasure {
        let keyed_event = self.entity.as_deref() == Some("event") && self.idempotency_key.is_some();
        // A change keeps its key too: a redelivered stream record must not write it again.
        let change = self.entity.as_deref() == Some("change");
        if keyed_event || change {
            Erasure::Tombstone(self.key())
        } else {
            Erasure::Delete(self.key())
        }
    }

    /// What goes with the item when it is deleted: a message's locator.
    pub fn companion(&self, org_id: &str) -> Option<ItemKey> {
        let id = crate::fields::parse_id(self.message_id.as_deref()?).ok()?;
        (self.entity.as_deref() == Some("message")).then(|| keys::message_locator(org_id, &id))
    }

    pub fn key(&self) -> ItemKey {
        ItemKey {
            pk: self.pk.clone(),
            sk: self.sk.clone(),
        }
    }
}

/// What erasing does to one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Erasure {
    Delete(ItemKey),
    /// An erased event that had an `Idempotency-Key`: replaced by an item holding nothing
    /// but its key (no personal data), so a retry of the request that stored it cannot
    /// bring the client back (`events/` answers 410 `client_erased`), until DynamoDB's TTL
    /// removes it after [`ERASED_KEY_RETENTION_SECS`](crate::store::schema::attributes::ERASED_KEY_RETENTION_SECS).
    Tombstone(ItemKey),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{n, s};

    #[test]
    fn internal_attributes_never_reach_the_view() {
        let item = Item::from([
            ("PK".to_owned(), s("ORG#a#EVENT#e")),
            ("org_id".to_owned(), s("a")),
            ("version".to_owned(), n(1)),
            ("entity".to_owned(), s("event")),
            ("id".to_owned(), s("e")),
            ("request_hash".to_owned(), s("abc")),
            ("some_new_internal".to_owned(), s("x")),
            ("properties".to_owned(), s(r#"{"a":1}"#)),
        ]);
        let event: EventRecord = decode(item).unwrap();
        assert_eq!(event.request_hash.as_deref(), Some("abc"));
        assert_eq!(
            serde_json::to_value(&event.view).unwrap(),
            serde_json::json!({"object": "event", "id": "e", "properties": {"a": 1}})
        );
    }

    #[test]
    fn money_totals_have_two_places() {
        let item = Item::from([
            ("entity".to_owned(), s("user")),
            ("lifetime_value".to_owned(), n(58)),
            ("install_count".to_owned(), n(2)),
        ]);
        let record: UserRecord = decode(item.clone()).unwrap();
        let user: UserView = decode(item).unwrap();
        assert_eq!(
            record.view, user,
            "a record decodes its view through `flatten` alike"
        );
        assert_eq!(user.lifetime_value.as_deref(), Some("58.00"));
        assert_eq!(
            serde_json::to_value(&user).unwrap(),
            serde_json::json!({"object": "user", "lifetime_value": "58.00", "install_count": 2})
        );
    }
}
