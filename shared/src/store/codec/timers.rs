//! Timers (issue 26): a moment a change is due, stored under its org and listed in GSI2 by
//! due minute across orgs (`keys::due_bucket`), so a sweep reads only what is due.

use crate::states::LifecycleStage;
use crate::store::schema::keys::{self, ItemKey};
use crate::store::schema::table::TTL_ATTRIBUTE;
use crate::store::schema::{n, s, Item};
use serde::{Deserialize, Serialize};

/// How long a timer outlives its due time if no sweep drops it (DynamoDB's TTL).
const TIMER_RETENTION_SECS: i64 = 7 * 86_400;

/// What a timer fires: a reminder `minutes` before the booking, its end, or a client's
/// next lifecycle transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    Reminder {
        minutes: u32,
    },
    Ended,
    Lifecycle {
        from: LifecycleStage,
        to: LifecycleStage,
    },
}

impl Slot {
    /// The slot's name in keys and change ids.
    pub fn name(self) -> String {
        match self {
            Slot::Reminder { minutes } => format!("reminder#{minutes}"),
            Slot::Ended => "ended".to_owned(),
            Slot::Lifecycle { from, to } => format!("lifecycle#{}#{}", from.as_str(), to.as_str()),
        }
    }
}

/// What a timer is about: a booking (by id), or a client (by its record's PK).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerSubject {
    Booking { booking_id: String },
    Client { user_pk: String },
}

/// One timer as stored: its subject and slot, when it is due and what it was computed
/// from (`basis`: a booking's `scheduled_at`, a client's `last_activity_at`), which the
/// fire-time check compares with the subject as it is then.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Timer {
    pub org_id: String,
    pub subject: TimerSubject,
    pub slot: Slot,
    pub due_at: String,
    pub basis: String,
}

impl Timer {
    /// A booking has a timer per slot; a client one, its next transition.
    pub fn key(&self) -> ItemKey {
        match &self.subject {
            TimerSubject::Booking { booking_id } => {
                keys::booking_timer(&self.org_id, booking_id, &self.slot.name())
            }
            TimerSubject::Client { user_pk } => keys::client_timer(user_pk),
        }
    }

    /// The due minute's shard: a hash of the timer's key.
    fn shard(&self) -> u32 {
        let key = self.key();
        keys::shard_of(&format!("{}#{}", key.pk, key.sk), keys::DUE_SHARDS)
    }
}

/// A timer item as a query reads it.
#[derive(Deserialize)]
pub struct StoredTimer {
    timer: String,
}

impl StoredTimer {
    /// Its timer (`None` if it does not read as one).
    pub fn timer(&self) -> Option<Timer> {
        serde_json::from_str(&self.timer).ok()
    }
}

/// The stored form: keys, GSI2 keys of its due minute, the timer as JSON text, the TTL.
pub fn timer_item(timer: &Timer) -> Item {
    let mut item = keys::key_attributes(&timer.key());
    let expires = timer
        .due_at
        .parse::<crate::fields::Timestamp>()
        .map_or(0, |at| at.unix_seconds())
        + TIMER_RETENTION_SECS;
    let minute = timer.due_at.get(..16).unwrap_or(&timer.due_at);
    item.extend([
        ("entity".to_owned(), s("timer")),
        ("org_id".to_owned(), s(&timer.org_id)),
        (
            "GSI2PK".to_owned(),
            s(keys::due_bucket(minute, timer.shard())),
        ),
        ("GSI2SK".to_owned(), s(&timer.due_at)),
        ("due_at".to_owned(), s(&timer.due_at)),
        (
            "timer".to_owned(),
            s(serde_json::to_string(timer).expect("a timer serializes")),
        ),
        (TTL_ATTRIBUTE.to_owned(), n(expires)),
    ]);
    item
}
