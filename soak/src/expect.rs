//! What the acknowledged requests imply, recorded by each client and merged at the end.
//!
//! "Last write" has to be well defined for the final values to be checkable, so the records
//! are split three ways:
//! - each client owns some users and writes them one request at a time: the last
//!   acknowledged value of each field is what must be stored, and its lifecycle events have
//!   increasing times, so every acknowledged install or purchase must be counted once;
//! - some users get `app_opened` from every client at once, at random times: whatever order
//!   the writes land in, `last_opened_at` must be the latest acknowledged time (the write is
//!   guarded), and every acknowledged event must be stored;
//! - sales carry buyers and products whose fields never change, so a late duplicate of a
//!   dropped request cannot change the outcome.
//!
//! A request that was not acknowledged (an error, or a response dropped on purpose with no
//! successful retry) may or may not have been applied: it widens what is accepted instead of
//! being ignored, so the checks stay exact when every request is acknowledged.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Install,
    /// `app_opened` at this stored time.
    Open(String),
    /// `user_purchased` of this many cents.
    Purchase(i64),
    Other,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Install => "app_installed",
            EventKind::Open(_) => "app_opened",
            EventKind::Purchase(_) => "user_purchased",
            EventKind::Other => "level_up",
        }
    }
}

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
    pub buyer_name: String,
    pub product: String,
    pub product_title: String,
}

#[derive(Debug, Default)]
pub struct Expected {
    /// Per user: each distinct event (Idempotency-Key, or one keyless request), and whether
    /// any request for it was acknowledged.
    pub events: HashMap<String, HashMap<String, (EventKind, bool)>>,
    pub fields: HashMap<String, HashMap<&'static str, FieldValues>>,
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

    pub fn event(&mut self, user: &str, identity: String, kind: EventKind, acked: bool) {
        let entry = self
            .events
            .entry(user.to_owned())
            .or_default()
            .entry(identity)
            .or_insert((kind, false));
        entry.1 |= acked;
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
        self.sales.extend(other.sales);
    }
}
