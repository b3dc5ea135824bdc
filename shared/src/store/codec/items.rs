//! How domain values become DynamoDB writes (stored items become typed records in
//! `records.rs`).

use super::records::Stored;
use super::upsert::{Advance, Upsert};
use crate::fields::{Id, Timestamp};
use crate::input::{
    Booking, Channel, Conversation, Direction, Event, Message, Product, Sale, User, UserIdentity,
};
use crate::store::schema::attributes::{message_stamp, MERGED_INTO, NUMERIC_MONEY_ATTRIBUTES};
use crate::store::schema::keys::{self, ItemKey, ParentIndexKey};
use crate::store::schema::{n, s};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

fn to_attribute(name: &str, value: Value) -> Option<AttributeValue> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(flag) => AttributeValue::Bool(flag),
        Value::Number(number) => n(number),
        Value::String(text) if NUMERIC_MONEY_ATTRIBUTES.contains(&name) => n(text),
        Value::String(text) => s(text),
        Value::Array(list) => AttributeValue::L(
            list.into_iter()
                .filter_map(|v| to_attribute("", v))
                .collect(),
        ),
        Value::Object(map) => AttributeValue::M(
            map.into_iter()
                .filter_map(|(k, v)| to_attribute(&k, v).map(|a| (k, a)))
                .collect(),
        ),
    })
}

/// The stored attributes of an input struct: every field it has a value for.
fn attributes_of(fields: &impl Serialize) -> Vec<(String, AttributeValue)> {
    let Ok(Value::Object(map)) = serde_json::to_value(fields) else {
        unreachable!("input structs serialize to objects");
    };
    map.into_iter()
        .filter_map(|(name, value)| to_attribute(&name, value).map(|a| (name, a)))
        .collect()
}

fn identity_ref(identity: &UserIdentity) -> AttributeValue {
    let (name, value) = match identity {
        UserIdentity::External(id) => ("external_user_id", id.as_str()),
        UserIdentity::Email(email) => ("email", email.as_str()),
    };
    AttributeValue::M(HashMap::from([(name.to_owned(), s(value))]))
}

fn upsert(org_id: &str, key: ItemKey, entity: &'static str, fields: &impl Serialize) -> Upsert {
    Upsert {
        key,
        entity,
        org_id: org_id.to_owned(),
        set: attributes_of(fields),
        set_if_absent: Vec::new(),
        add: Vec::new(),
        remove: Vec::new(),
        newer_than: Vec::new(),
        stamp: None,
        advance: None,
        absent: Vec::new(),
    }
}

impl Upsert {
    fn with(mut self, name: &str, value: AttributeValue) -> Self {
        self.set.retain(|(existing, _)| existing != name);
        self.set.push((name.to_owned(), value));
        self
    }

    fn indexed(self, index: Option<ParentIndexKey>) -> Self {
        match index {
            Some(index) => self
                .with("GSI1PK", s(index.gsi1pk))
                .with("GSI1SK", s(index.gsi1sk)),
            None => self,
        }
    }
}

/// A user write. Every user is in the org's activity list (GSI2, in its shard): until an
/// event says otherwise, the time the record was first written counts as its last activity.
pub fn user(org_id: &str, user: &User) -> Upsert {
    let first_seen = Timestamp::now();
    let mut write = upsert(
        org_id,
        keys::user(org_id, &user.identity),
        "user",
        &user.fields,
    )
    .with("GSI2PK", s(keys::users_by_activity(org_id, &user.identity)));
    write.absent = vec![MERGED_INTO];
    write.set_if_absent = vec![
        ("last_activity_at".to_owned(), s(first_seen.to_stored())),
        (
            "GSI2SK".to_owned(),
            s(keys::user_activity_sort(first_seen, &user.identity)),
        ),
    ];
    write
}

/// A user mentioned in another object (an event's `user`, a sale's `buyer`, a thread's or
/// message's `contact`, a booking's `client`): the record is created when missing and gets
/// the fields it does not have yet, but no value it has is replaced. The user's own
/// endpoint is the authority; a backfilled mention from 2024 never overwrites today's email.
pub fn user_mention(org_id: &str, user: &User) -> Upsert {
    fill_gaps(self::user(org_id, user))
}

/// The user write of an event: the nested user as a mention, and the event's time as the
/// user's last activity when it is the newest event (see `ops::events_write` for the rest).
/// The index key follows [`keys::user_activity_sort`]: the same value for a whole day of
/// events, so that only one event per user and day moves the index entry; the partition
/// key is set too (a record written before the lists were sharded moves to its shard).
pub fn user_for_event(org_id: &str, user: &User, at: Timestamp) -> Upsert {
    let stamp = at.to_stored();
    let mut write = user_mention(org_id, user);
    write.advance = Some(Advance {
        attribute: "last_event_at",
        value: stamp.clone(),
        set: vec![
            ("last_event_at".to_owned(), s(&stamp)),
            ("last_activity_at".to_owned(), s(&stamp)),
            (
                "GSI2PK".to_owned(),
                s(keys::users_by_activity(org_id, &user.identity)),
            ),
            (
                "GSI2SK".to_owned(),
                s(keys::user_activity_sort(at, &user.identity)),
            ),
        ],
    });
    write
}

/// Every attribute `write` sets becomes "set only if absent".
fn fill_gaps(mut write: Upsert) -> Upsert {
    let set = std::mem::take(&mut write.set);
    write.set_if_absent.extend(set);
    write
}

/// A product mentioned in a sale or as a booking's service: like [`user_mention`], it
/// fills gaps and never overwrites the catalog.
pub fn product_mention(org_id: &str, product: &Product) -> Upsert {
    fill_gaps(self::product(org_id, product))
}

pub fn product(org_id: &str, product: &Product) -> Upsert {
    upsert(
        org_id,
        keys::product(org_id, &product.id),
        "product",
        &product.fields,
    )
}

pub fn channel(org_id: &str, channel: &Channel) -> Upsert {
    upsert(
        org_id,
        keys::channel(org_id, &channel.id),
        "channel",
        &channel.fields,
    )
}

pub fn sale(org_id: &str, sale: &Sale) -> Upsert {
    let mut write = upsert(org_id, keys::sale(org_id, &sale.id), "sale", &sale.fields);
    let id = sale.id.as_str();
    if let Some(date) = sale.fields.date {
        // Also without the buyer: a re-dated sale moves in its buyer's list.
        write = write.with(
            "GSI1SK",
            s(keys::child_sort(keys::SALE, &date.to_stored(), id)),
        );
    }
    if let Some(buyer) = &sale.buyer {
        write = write
            .with("buyer", identity_ref(&buyer.identity))
            .with("GSI1PK", s(keys::user_pk(org_id, &buyer.identity)));
        if sale.fields.date.is_none() {
            // Listed under the buyer all the same (so erasing the buyer finds it), with an
            // empty date that sorts before every date; a later upsert with a date moves it.
            let undated = keys::child_sort(keys::SALE, "", id);
            write.set_if_absent = vec![("GSI1SK".to_owned(), s(undated))];
        }
    }
    if let Some(product) = &sale.product {
        write = write.with("external_product_id", s(product.id.as_str()));
    }
    write
}

fn with_contact_and_channel(
    mut write: Upsert,
    contact: Option<&User>,
    channel: Option<&Channel>,
) -> Upsert {
    if let Some(contact) = contact {
        write = write.with("contact", identity_ref(&contact.identity));
    }
    if let Some(channel) = channel {
        write = write.with("external_channel_id", s(channel.id.as_str()));
    }
    write
}

pub fn thread(org_id: &str, conversation: &Conversation) -> Upsert {
    let write = upsert(
        org_id,
        keys::thread(org_id, &conversation.thread_id),
        "conversation",
        &conversation.fields,
    );
    let write = with_contact_and_channel(
        write,
        conversation.contact.as_ref(),
        conversation.channel.as_ref(),
    );
    let index = conversation.contact.as_ref().map(|contact| {
        let parent = keys::user_pk(org_id, &contact.identity);
        keys::thread_under_user(parent, &conversation.thread_id)
    });
    let mut write = write.indexed(index);
    // The stated `last_message_at` only moves the thread's forward; the inbox follows the
    // messages themselves (`store::ops::threads`), never this.
    if let Some(at) = conversation.fields.last_message_at {
        write.set.retain(|(name, _)| name != "last_message_at");
        write.advance = Some(last_message_at(at.to_stored()));
    }
    write
}

/// The thread write of a message: creates the thread if it is missing and, when the
/// message is the thread's newest (see `store::ops::threads`), makes it the last message and
/// keeps the inbox: an inbound message puts the thread in it (waiting since the first
/// inbound message after the last reply), any other takes it out. Guarded by the thread's
/// `newest_message`: a message that is not the newest is `Stale` here, and the caller
/// recomputes the thread from its messages. `last_message_at` only moves forward (an
/// [`Advance`]: a conversation may have stated a later one).
pub fn thread_for_message(org_id: &str, message: &Message) -> Upsert {
    #[derive(Serialize)]
    struct ThreadRef<'a> {
        thread_id: &'a Id,
    }
    let write = upsert(
        org_id,
        keys::thread(org_id, &message.thread_id),
        "conversation",
        &ThreadRef {
            thread_id: &message.thread_id,
        },
    );
    let mut write =
        with_contact_and_channel(write, message.contact.as_ref(), message.channel.as_ref());
    let index = message.contact.as_ref().map(|contact| {
        let parent = keys::user_pk(org_id, &contact.identity);
        keys::thread_under_user(parent, &message.thread_id)
    });
    write = write.indexed(index);
    if let Some(sent_at) = message.fields.sent_at {
        let sent_at = sent_at.to_stored();
        let stamp = message_stamp(&sent_at, message.message_id.as_str());
        write = write
            .with("newest_message", s(&stamp))
            .with("last_message_id", s(message.message_id.as_str()));
        match message.fields.direction {
            Some(Direction::In) => {
                write = write.with("last_message_direction", s("in")).with(
                    "GSI2PK",
                    s(keys::inbox_awaiting_reply(org_id, &message.thread_id)),
                );
                write.set_if_absent = vec![
                    ("awaiting_reply_since".to_owned(), s(&sent_at)),
                    (
                        "GSI2SK".to_owned(),
                        s(keys::inbox_sort(&sent_at, &message.thread_id)),
                    ),
                ];
            }
            direction => {
                if direction == Some(Direction::Out) {
                    write = write.with("last_message_direction", s("out"));
                } else {
                    write.remove.push("last_message_direction");
                }
                write
                    .remove
                    .extend(["GSI2PK", "GSI2SK", "awaiting_reply_since"]);
            }
        }
        write.newer_than = vec!["newest_message"];
        write.stamp = Some(stamp);
        write.advance = Some(last_message_at(sent_at));
    }
    write
}

/// `last_message_at` moved forward to `at`, never back.
fn last_message_at(at: String) -> Advance {
    Advance {
        attribute: "last_message_at",
        set: vec![("last_message_at".to_owned(), s(&at))],
        value: at,
    }
}

pub fn message(org_id: &str, message: &Message) -> Upsert {
    let key = keys::message(org_id, &message.thread_id, &message.message_id);
    let write = upsert(org_id, key, "message", &message.fields);
    let mut write =
        with_contact_and_channel(write, message.contact.as_ref(), message.channel.as_ref());
    if let Some(contact) = &message.contact {
        let (pk, sort) = keys::message_under_contact(
            keys::user_pk(org_id, &contact.identity),
            &message.message_id,
        );
        write = write.with("GSI2PK", s(pk)).with("GSI2SK", s(sort));
    }
    let index = message.fields.sent_at.map(|sent_at| {
        let parent = keys::thread_pk(org_id, &message.thread_id);
        keys::under_parent(
            parent,
            keys::MESSAGE,
            &sent_at.to_stored(),
            message.message_id.as_str(),
        )
    });
    write.indexed(index)
}

pub fn booking(org_id: &str, booking: &Booking) -> Upsert {
    let mut write = upsert(
        org_id,
        keys::booking(org_id, &booking.id),
        "booking",
        &booking.fields,
    );
    if let Some(ids) = &booking.service_ids {
        let list = ids.iter().map(|id| s(id.as_str())).collect();
        write = write.with("service_external_ids", AttributeValue::L(list));
    }
    let scheduled_at = booking.scheduled_at.to_stored();
    write = write
        .with("GSI2PK", s(keys::bookings_by_schedule(org_id, &booking.id)))
        .with(
            "GSI2SK",
            s(keys::booking_schedule_sort(&scheduled_at, &booking.id)),
        );
    // Also without the client: a rescheduled booking moves in its client's list.
    let client_sort = keys::child_sort(keys::BOOKING, &scheduled_at, booking.id.as_str());
    write = write.with("GSI1SK", s(client_sort));
    if let Some(client) = &booking.client {
        write = write
            .with("client", identity_ref(&client.identity))
            .with("GSI1PK", s(keys::user_pk(org_id, &client.identity)));
    }
    write
}

/// The complete event item, written once with a create-only PutItem.
pub fn event(
    org_id: &str,
    event: &Event,
    event_id: &str,
    received_at: Timestamp,
    idempotency: Option<(&str, &str)>,
) -> Stored {
    let key = keys::event(org_id, event_id);
    let occurred_at = event.occurred_at.to_stored();
    let index = keys::under_parent(
        keys::user_pk(org_id, &event.user.identity),
        keys::EVENT,
        &occurred_at,
        event_id,
    );
    let now = received_at.to_stored();
    let mut item = keys::key_attributes(&key);
    item.extend([
        ("GSI1PK".to_owned(), s(index.gsi1pk)),
        ("GSI1SK".to_owned(), s(index.gsi1sk)),
        ("entity".to_owned(), s("event")),
        ("org_id".to_owned(), s(org_id)),
        ("id".to_owned(), s(event_id)),
        ("event".to_owned(), s(event.name.as_str())),
        ("user".to_owned(), identity_ref(&event.user.identity)),
        ("event_timestamp".to_owned(), s(occurred_at)),
        ("ingested_at".to_owned(), s(&now)),
        ("updated_at".to_owned(), s(now)),
    ]);
    if let Some(properties) = &event.properties {
        item.insert("properties".to_owned(), s(properties.to_json_string()));
    }
    if let Some((idempotency_key, request_hash)) = idempotency {
        item.insert("idempotency_key".to_owned(), s(idempotency_key));
        item.insert("request_hash".to_owned(), s(request_hash));
    }
    Stored::new(item)
}

#[cfg(test)]
mod tests {
    //! Every attribute a write sets either reaches the client through its record's view, or
    //! is a key: a field added to a write but not to its record fails here.

    use super::*;
    use crate::input;
    use crate::store::codec::records::{
        decode, BookingView, MessageView, SaleView, ThreadView, UserView, View,
    };
    use serde_json::json;

    /// Index keys, and what records declare `internal` (never shown).
    const KEY_ATTRIBUTES: [&str; 5] = ["GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "newest_message"];

    fn assert_shown<R: View>(write: &Upsert) {
        let advanced = write.advance.iter().flat_map(|advance| &advance.set);
        let written: Vec<_> = write
            .set
            .iter()
            .chain(&write.set_if_absent)
            .chain(&write.add)
            .chain(advanced)
            .cloned()
            .collect();
        let mut item: crate::store::schema::Item = written.iter().cloned().collect();
        item.insert("entity".into(), s(write.entity));
        let view = serde_json::to_value(decode::<R>(item).unwrap()).unwrap();
        for (name, _) in &written {
            if !KEY_ATTRIBUTES.contains(&name.as_str()) {
                assert!(
                    view.get(name).is_some(),
                    "`{name}` is written but not shown"
                );
            }
        }
    }

    fn body(value: serde_json::Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn every_user_field() -> serde_json::Value {
        let at = "2025-01-01T00:00:00Z";
        json!({
            "external_user_id": "u1", "email": "a@b.co", "name": "A", "phone": "1",
            "created_at": at, "plan": "p", "status": "s", "subscription_status": "active",
            "billing_model": "m", "billing_interval": "i", "subscription_started_at": at,
            "subscription_ends_at": at, "installed_at": at, "last_opened_at": at,
            "uninstalled_at": at, "install_platform": "ios", "install_source": "ads",
            "app_version": "1", "install_count": 1, "is_installed": true,
            "next_billing_at": at, "last_payment_at": at, "last_payment_amount": "1.00",
            "last_payment_currency": "USD", "lifetime_value": "1.00",
            "total_payments_count": 1, "is_active_customer": true, "metadata": {"k": 1}
        })
    }

    #[test]
    fn every_written_attribute_is_shown() {
        let user = input::parse_user(&body(every_user_field())).unwrap();
        assert_shown::<UserView>(&super::user("o", &user));

        // What the event adds besides is checked in `client_record`'s tests.
        let event = body(json!({"event": "app_opened", "user": every_user_field()}));
        let event = input::parse_event(&event, Timestamp::now()).unwrap();
        assert_shown::<UserView>(&user_for_event("o", &event.user, event.occurred_at));

        let sale = input::parse_sale(&body(json!({
            "sale_id": "s", "date": "2025-01-01T00:00:00Z", "quantity": 1, "total": "1.00",
            "currency": "USD", "status": "paid", "metadata": {},
            "buyer": {"external_user_id": "u1"}, "product": {"external_product_id": "p"}
        })))
        .unwrap();
        assert_shown::<SaleView>(&super::sale("o", &sale));

        let message = input::parse_message(&body(json!({
            "message_id": "m", "thread_id": "t", "direction": "in", "text": "hi",
            "media": [], "sent_at": "2025-01-01T00:00:00Z", "delivery_status": "sent",
            "metadata": {}, "contact": {"external_user_id": "u1"},
            "channel": {"external_channel_id": "c"}
        })))
        .unwrap();
        assert_shown::<MessageView>(&super::message("o", &message));
        assert_shown::<ThreadView>(&super::thread_for_message("o", &message));

        let conversation = input::parse_conversation(&body(json!({
            "thread_id": "t", "last_message_at": "2025-01-01T00:00:00Z", "subject": "s",
            "status": "open", "metadata": {}, "contact": {"external_user_id": "u1"},
            "channel": {"external_channel_id": "c"}
        })))
        .unwrap();
        assert_shown::<ThreadView>(&super::thread("o", &conversation));

        let booking = input::parse_booking(&body(json!({
            "booking_id": "b", "title": "t", "booking_type": "x", "status": "s",
            "scheduled_at": "2025-01-01T00:00:00Z", "duration_minutes": 30, "location": "l",
            "notes": "n", "metadata": {}, "client": {"external_user_id": "u1"},
            "service_external_ids": ["p"]
        })))
        .unwrap();
        assert_shown::<BookingView>(&super::booking("o", &booking));
    }
}
