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

use record_model::{EventKind, Fact};
use std::collections::{BTreeMap, HashMap};

/// One field of one user, written by one client in sequence.
#[derive(Debug, Default, Clone)]
pub struct FieldValues {
    pub acked: Option<String>,
    /// Values written after the last acknowledged one without an acknowledgement.
    pub maybe: Vec<String>,
}

/// A value a nested mention carried, and whether its request was acknowledged.
pub type Mentioned = (String, bool);

/// What a nested user said about an owned user besides its id: an old name and email.
#[derive(Debug, Clone)]
pub struct Mention {
    pub name: String,
    pub email: String,
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
    /// sale's `buyer`) carried, and whether their request was acknowledged. They may only
    /// fill a gap: where `users/upsert` set the field, its value must stand.
    pub mentions: HashMap<String, HashMap<&'static str, Vec<Mentioned>>>,
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

    pub fn mentioned(&mut self, user: &str, mention: Option<Mention>, acked: bool) {
        let Some(Mention { name, email }) = mention else {
            return;
        };
        let fields = self.mentions.entry(user.to_owned()).or_default();
        for (field, value) in [("name", name), ("email", email)] {
            fields.entry(field).or_default().push((value, acked));
        }
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

    /// What the distinct events were: by name, payments by currency, and how many shared
    /// their user's millisecond with another event.
    pub fn mix(&self) -> String {
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        let mut currencies: BTreeMap<&str, u64> = BTreeMap::new();
        let mut tied = 0;
        for events in self.events.values() {
            let mut at_time: HashMap<&str, u64> = HashMap::new();
            for (fact, _) in events.values() {
                *names.entry(fact.name_and_properties().0).or_default() += 1;
                *at_time.entry(&fact.at).or_default() += 1;
                if let EventKind::Purchase { currency, .. }
                | EventKind::Subscription { currency, .. } = &fact.kind
                {
                    *currencies.entry(currency.unwrap_or("none")).or_default() += 1;
                }
            }
            tied += at_time.values().filter(|n| **n > 1).sum::<u64>();
        }
        let list = |map: Vec<(String, u64)>| {
            map.iter()
                .map(|(what, n)| format!("{what} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Keys are named `soak-<run>-...`; keyless events by their client and sequence.
        let keyless = self
            .events
            .values()
            .flat_map(HashMap::keys)
            .filter(|identity| !identity.starts_with("soak-"))
            .count();
        format!(
            "distinct events {} ({keyless} keyless; {}); purchases and subscription events by currency ({}); {tied} share their millisecond with another of their user's events",
            self.events.values().map(HashMap::len).sum::<usize>(),
            list(names.into_iter().collect()),
            list(currencies.into_iter().map(|(c, n)| (c.to_owned(), n)).collect()),
        )
    }
}
