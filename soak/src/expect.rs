//! What the acknowledged requests imply, recorded by each client and merged at the end.
//!
//! "Last write" has to be well defined for the final values to be checkable, so the records
//! are split three ways:
//! - each client owns some users. Their profiles (`users/upsert`) are written one request
//!   at a time: the last acknowledged value of each field is what must be stored, whatever
//!   nested mentions (event users, backfilled sale buyers with an old name and email) said.
//!   Their events come in bursts sent at once in a random order, at a few distinct times
//!   (same-millisecond ties), with keyed duplicates and keyless events: the client record
//!   must be what `model::record` computes from the set of acknowledged events;
//! - some users get `app_opened` from every client at once, at random times: the record is
//!   again the model of the set, whatever order the writes land in;
//! - sales carry buyers and products whose fields never change, so a late duplicate of a
//!   dropped request cannot change the outcome.
//!
//! A request that was not acknowledged (an error, or a response dropped on purpose with no
//! successful retry) may or may not have been applied: it widens what is accepted instead of
//! being ignored, so the checks stay exact when every request is acknowledged.

use crate::model::Fact;
use std::collections::HashMap;

/// One field of one user, written by one client in sequence.
#[derive(Debug, Default, Clone)]
pub struct FieldValues {
    pub acked: Option<String>,
    /// Values written after the last acknowledged one without an acknowledgement.
    pub maybe: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Sale {
    pub id: String,
    pub total: String,
    pub buyer: String,
    /// The name the buyer must have: `None` for a backfill, whose nested buyer (an owned
    /// user, with an old name and email) only fills gaps (see `Expected::mentions`).
    pub buyer_name: Option<String>,
    pub product: String,
    pub product_title: String,
}

#[derive(Debug, Default)]
pub struct Expected {
    /// Per user: each distinct event (Idempotency-Key, or one keyless request), and whether
    /// any request for it was acknowledged.
    pub events: HashMap<String, HashMap<String, (Fact, bool)>>,
    pub fields: HashMap<String, HashMap<&'static str, FieldValues>>,
    /// Per user and field: the values nested mentions (an event's `user`, a backfilled
    /// sale's `buyer`) carried, acknowledged or not. They may only fill a gap: where
    /// `users/upsert` set the field, its value must stand.
    pub mentions: HashMap<String, HashMap<&'static str, Vec<String>>>,
    pub sales: Vec<(Sale, bool)>,
}

impl Expected {
    pub fn field_written(&mut self, user: &str, field: &'static str, value: String, acked: bool) {
        let values = self
            .fields
            .entry(user.to_owned())
            .or_default()
            .entry(field)
            .or_default();
        if acked {
            values.acked = Some(value);
            values.maybe.clear();
        } else {
            values.maybe.push(value);
        }
    }

    pub fn event(&mut self, user: &str, identity: String, fact: Fact, acked: bool) {
        let entry = self
            .events
            .entry(user.to_owned())
            .or_default()
            .entry(identity)
            .or_insert((fact, false));
        entry.1 |= acked;
    }

    pub fn mentioned(&mut self, user: &str, field: &'static str, value: String) {
        self.mentions
            .entry(user.to_owned())
            .or_default()
            .entry(field)
            .or_default()
            .push(value);
    }

    pub fn sale(&mut self, sale: Sale, acked: bool) {
        self.sales.push((sale, acked));
    }

    /// Adds another client's expectations (identities never collide across clients).
    pub fn merge(&mut self, other: Expected) {
        for (user, events) in other.events {
            self.events.entry(user).or_default().extend(events);
        }
        for (user, fields) in other.fields {
            self.fields.entry(user).or_default().extend(fields);
        }
        for (user, fields) in other.mentions {
            self.mentions.entry(user).or_default().extend(fields);
        }
        self.sales.extend(other.sales);
    }
}
