//! Changes the clock makes (issue 26): `booking.reminder_due` at each reminder offset
//! before a booking and `booking.ended` at its end, each exactly once per booking, slot
//! and schedule; `client.lifecycle_changed` when time alone moves a client's stage, once
//! per transition and the activity it was computed from.
//!
//! The stream consumer arms timers ([`arm`]): when a booking's schedule changes (created,
//! moved, canceled, un-canceled, its duration), each of its slots gets a timer item (or
//! loses it) at a key of its own, so a moved booking's old timers are replaced. A slot is
//! armed only if it is not past at the write that set the schedule (the item's
//! `updated_at`): a booking made 30 minutes ahead gets no 24 h or 1 h reminder. A client
//! whose activity times change gets a timer for its next transition after that write
//! (`states::next_transition`); firing it arms the one after. The
//! sweeper ([`sweep`], a scheduled Lambda; `make run` runs it too) reads only the due
//! minutes since its watermark, re-checks each timer against the booking as it is now
//! (moved, canceled or erased since: dropped) and records the change under an id made of
//! the booking, slot and schedule, so a second run or an overlapping one adds nothing.
//! `now` is always an argument: tests drive the clock, nothing sleeps.

use super::consumer::PUT_BUDGET;
use super::settings::{OrgSettings, SettingsCache};
use super::{client_sequence, ClientPlace};
use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::states::{next_transition, StageSettings};
use crate::store::codec::changes::{Change, ClientRef, ItemMeta, NewChange, Subject};
use crate::store::codec::timers::{Slot, Timer, TimerSubject};
use crate::store::ops::changes::Recorded;
use crate::store::records::{decode, BookingRecord, UserRecord};
use crate::store::schema::keys;
use crate::store::{Item, Store};
use futures::StreamExt;
use serde_json::json;

/// Reminder offsets, in minutes before `scheduled_at`, of an org that set none
/// (`admin orgs set-reminders`).
pub const DEFAULT_REMINDER_MINUTES: [u32; 2] = [24 * 60, 60];
/// A booking without `duration_minutes` ends this long after it starts.
pub const DEFAULT_DURATION_MINUTES: i64 = 60;
/// A sweep re-reads this far before its watermark: a timer written after its minute was
/// swept (a booking written seconds before a reminder, a slow consumer) is still found.
pub const OVERLAP_MINUTES: i64 = 5;
/// How far back a sweeper with no watermark (its first run) reads.
pub const FIRST_LOOKBACK_MINUTES: i64 = 15;
/// Due minutes one run reads at most: after an outage, runs catch up this much at a time.
pub const MAX_MINUTES_PER_RUN: i64 = 120;
/// Due buckets read at once, and timers of one bucket fired at once.
const CONCURRENT_BUCKETS: usize = 8;
const CONCURRENT_FIRES: usize = 8;

pub const REMINDER_DUE: &str = "booking.reminder_due";
pub const ENDED: &str = "booking.ended";
pub const LIFECYCLE_CHANGED: &str = "client.lifecycle_changed";

fn minutes(n: i64) -> time::Duration {
    time::Duration::minutes(n)
}

fn is_canceled(booking: &BookingRecord) -> bool {
    super::is_cancellation(booking.status.as_deref())
}

/// The slots of a booking of an org with these reminder offsets.
fn slots(reminders: &[u32]) -> Vec<Slot> {
    let mut slots: Vec<Slot> = reminders
        .iter()
        .map(|&minutes| Slot::Reminder { minutes })
        .collect();
    slots.push(Slot::Ended);
    slots
}

/// When `slot` of `booking` is due (`None`: no `scheduled_at` it can read, or not a
/// booking's slot).
fn due_at(booking: &BookingRecord, slot: Slot) -> Option<Timestamp> {
    let start: Timestamp = booking.scheduled_at.as_deref()?.parse().ok()?;
    match slot {
        Slot::Reminder { minutes: m } => Some(start.earlier_by(minutes(i64::from(m)))),
        Slot::Ended => Some(
            start.later_by(minutes(
                booking
                    .duration_minutes
                    .filter(|d| *d >= 0)
                    .unwrap_or(DEFAULT_DURATION_MINUTES),
            )),
        ),
        Slot::Lifecycle { .. } => None,
    }
}

/// The timer `slot` of `booking` has while the booking is as it is (any time).
fn timer_of(org_id: &str, booking: &BookingRecord, slot: Slot) -> Option<Timer> {
    if is_canceled(booking) {
        return None;
    }
    Some(Timer {
        org_id: org_id.to_owned(),
        subject: TimerSubject::Booking {
            booking_id: booking.booking_id.clone()?,
        },
        slot,
        due_at: due_at(booking, slot)?.to_stored(),
        basis: booking.scheduled_at.clone()?,
    })
}

/// What decides a booking's timers: a write that changes none of it arms nothing.
fn schedule(booking: &BookingRecord) -> (Option<&str>, bool, Option<i64>) {
    (
        booking.scheduled_at.as_deref(),
        is_canceled(booking),
        booking.duration_minutes,
    )
}

/// What one booking stream record does to its timers: per slot, the timer to put, or
/// `None` to drop the slot's timer. Empty when the write left the schedule as it was.
pub fn timer_writes(
    org_id: &str,
    old: Option<&BookingRecord>,
    new: Option<&BookingRecord>,
    reminders: &[u32],
) -> Vec<(keys::ItemKey, Option<Timer>)> {
    let Some(booking_id) = new.or(old).and_then(|b| b.booking_id.clone()) else {
        return Vec::new();
    };
    if let (Some(old), Some(new)) = (old, new) {
        if schedule(old) == schedule(new) {
            return Vec::new();
        }
    }
    // The write that set this schedule: slots already past at it are not armed.
    let written: Option<Timestamp> = new
        .and_then(|b| b.updated_at.as_deref().or(b.ingested_at.as_deref()))
        .and_then(|at| at.parse().ok());
    slots(reminders)
        .into_iter()
        .map(|slot| {
            let key = keys::booking_timer(org_id, &booking_id, &slot.name());
            let timer = new
                .and_then(|booking| timer_of(org_id, booking, slot))
                .filter(|timer| {
                    let due: Option<Timestamp> = timer.due_at.parse().ok();
                    matches!((due, written), (Some(due), Some(written)) if due >= written)
                });
            (key, timer)
        })
        .collect()
}

/// The consumer's hook: a booking's or a client's stream record puts or drops its timers;
/// how many timer writes it made.
pub async fn arm(
    store: &Store,
    settings: &mut SettingsCache,
    old: Option<&Item>,
    new: Option<&Item>,
) -> Result<usize, ApiError> {
    let Some(meta) = new.or(old).and_then(ItemMeta::of) else {
        return Ok(0);
    };
    let Some(org_id) = meta.org_id.clone() else {
        return Ok(0);
    };
    match meta.entity.as_deref() {
        Some("booking") => {
            let (old, new) = (read::<BookingRecord>(old)?, read::<BookingRecord>(new)?);
            if let (Some(old), Some(new)) = (&old, &new) {
                if schedule(old) == schedule(new) {
                    return Ok(0);
                }
            }
            let reminders = &settings.of(store, &org_id).await?.reminders;
            let writes = timer_writes(&org_id, old.as_ref(), new.as_ref(), reminders);
            for (key, timer) in &writes {
                match timer {
                    Some(timer) => store.put_timer(timer).await?,
                    None => store.drop_timer(key).await?,
                }
            }
            Ok(writes.len())
        }
        Some("user") => arm_client(store, settings, &org_id, &meta.pk, old, new).await,
        _ => Ok(0),
    }
}

fn read<T: serde::de::DeserializeOwned>(item: Option<&Item>) -> Result<Option<T>, ApiError> {
    item.filter(|i| !i.is_empty())
        .map(|i| decode(i.clone()))
        .transpose()
}

/// A client's timer: its next transition after `after`, computed from `user` (none for a
/// merged client: its facts live in the one it was merged into).
fn client_timer(
    org_id: &str,
    user_pk: &str,
    user: &UserRecord,
    settings: &StageSettings,
    after: Timestamp,
) -> Option<Timer> {
    if user.merged_into.is_some() {
        return None;
    }
    let (at, from, to) = next_transition(&user.timeline(), settings, after)?;
    Some(Timer {
        org_id: org_id.to_owned(),
        subject: TimerSubject::Client {
            user_pk: user_pk.to_owned(),
        },
        slot: Slot::Lifecycle { from, to },
        due_at: at.to_stored(),
        basis: user.last_activity_at.clone().unwrap_or_default(),
    })
}

/// A client write that changed its activity times arms its next transition after the
/// write (its `updated_at`); a write that did not arms nothing.
async fn arm_client(
    store: &Store,
    settings: &mut SettingsCache,
    org_id: &str,
    user_pk: &str,
    old: Option<&Item>,
    new: Option<&Item>,
) -> Result<usize, ApiError> {
    let (old, new) = (read::<UserRecord>(old)?, read::<UserRecord>(new)?);
    let timeline = |user: &Option<UserRecord>| {
        user.as_ref()
            .map(|u| (u.timeline(), u.merged_into.is_some()))
    };
    if old.is_some() && timeline(&old) == timeline(&new) {
        return Ok(0);
    }
    let key = crate::store::schema::keys::client_timer(user_pk);
    let written = new
        .as_ref()
        .and_then(|u| u.updated_at.as_deref().or(u.ingested_at.as_deref()))
        .and_then(|at| at.parse::<Timestamp>().ok());
    let timer = match (&new, written) {
        (Some(user), Some(written)) => {
            let stages = settings.of(store, org_id).await?.stages;
            client_timer(org_id, user_pk, user, &stages, written)
        }
        _ => None,
    };
    match timer {
        Some(timer) => store.put_timer(&timer).await?,
        None => store.drop_timer(&key).await?,
    }
    Ok(1)
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepTally {
    /// Due buckets (minute and shard) read.
    pub buckets: usize,
    /// Due timers read.
    pub timers: usize,
    /// Changes written.
    pub fired: usize,
    /// Timers whose change was there already (a second or overlapping run).
    pub duplicates: usize,
    /// Timers the booking no longer has (moved, canceled, erased): dropped.
    pub stale: usize,
    /// Timers that failed (left for the next run).
    pub failed: usize,
    /// Due buckets with more timers than one run reads (the rest: the next run).
    pub unfinished: usize,
}

impl SweepTally {
    fn add(&mut self, other: SweepTally) {
        self.buckets += other.buckets;
        self.timers += other.timers;
        self.fired += other.fired;
        self.duplicates += other.duplicates;
        self.stale += other.stale;
        self.failed += other.failed;
        self.unfinished += other.unfinished;
    }
}

/// One run of the sweeper `name` at `now`: the due minutes from its watermark (less the
/// overlap) to `now`, at most [`MAX_MINUTES_PER_RUN`]; the watermark moves to where it
/// read, only if every due timer was handled (else the next run reads them again).
pub async fn sweep(store: &Store, name: &str, now: Timestamp) -> Result<SweepTally, ApiError> {
    let from = match store.sweeper_watermark(name).await? {
        Some(mark) => mark
            .parse::<Timestamp>()
            .map_err(|_| ApiError::Internal)?
            .earlier_by(minutes(OVERLAP_MINUTES)),
        None => now.earlier_by(minutes(FIRST_LOOKBACK_MINUTES)),
    };
    let to = if now.since(from) > minutes(MAX_MINUTES_PER_RUN) {
        from.later_by(minutes(MAX_MINUTES_PER_RUN))
    } else {
        now
    };
    let tally = sweep_between(store, from, to).await?;
    if tally.failed == 0 && tally.unfinished == 0 {
        store
            .advance_sweeper_watermark(name, &to.to_stored())
            .await?;
    }
    Ok(tally)
}

/// The due minutes of `from` to `to` (both included), every shard: each timer due by
/// `to` is fired or dropped.
pub async fn sweep_between(
    store: &Store,
    from: Timestamp,
    to: Timestamp,
) -> Result<SweepTally, ApiError> {
    let to_stored = to.to_stored();
    let mut buckets = Vec::new();
    let mut minute = from;
    while minute <= to || minute.to_stored()[..16] == to_stored[..16] {
        let label = minute.to_stored()[..16].to_owned();
        buckets.extend((0..keys::DUE_SHARDS).map(|shard| (label.clone(), shard)));
        minute = minute.later_by(minutes(1));
    }
    let results: Vec<Result<SweepTally, ApiError>> = futures::stream::iter(buckets)
        .map(|(minute, shard)| {
            let to_stored = to_stored.clone();
            async move {
                let (due, more) = store.due_timers(&minute, shard, &to_stored).await?;
                let mut tally = SweepTally {
                    buckets: 1,
                    timers: due.len(),
                    unfinished: usize::from(more),
                    ..SweepTally::default()
                };
                let fired: Vec<_> = futures::stream::iter(&due)
                    .map(|timer| async move { (timer, fire(store, timer).await) })
                    .buffer_unordered(CONCURRENT_FIRES)
                    .collect()
                    .await;
                for (timer, outcome) in fired {
                    match outcome {
                        Ok(Some(Recorded::Written)) => tally.fired += 1,
                        Ok(Some(Recorded::Duplicate)) => tally.duplicates += 1,
                        Ok(None) => tally.stale += 1,
                        Err(error) => {
                            tracing::warn!(
                                ?error,
                                due_at = timer.due_at,
                                "timer failed; the next run retries it"
                            );
                            tally.failed += 1;
                        }
                    }
                }
                Ok(tally)
            }
        })
        .buffer_unordered(CONCURRENT_BUCKETS)
        .collect()
        .await;
    let mut total = SweepTally::default();
    for result in results {
        total.add(result?);
    }
    Ok(total)
}

/// Fires one due timer: re-checks it against its subject now, records its change (once)
/// and drops the timer (a client's fired timer is replaced by its next transition).
/// `None`: stale (dropped, nothing recorded).
async fn fire(store: &Store, timer: &Timer) -> Result<Option<Recorded>, ApiError> {
    let OrgSettings {
        stages: settings,
        reminders,
    } = OrgSettings::read(store, &timer.org_id).await?;
    let (change, next) = match &timer.subject {
        TimerSubject::Booking { booking_id } => {
            let key = keys::booking_of_id(&timer.org_id, booking_id);
            let item = store.get_consistent(&key).await?;
            let change = item
                .as_ref()
                .and_then(|item| booking_change(item, timer, &reminders));
            (change, None)
        }
        TimerSubject::Client { user_pk } => {
            let item = store.get_consistent(&keys::user_key_of(user_pk)).await?;
            match item
                .as_ref()
                .and_then(|item| client_change(item, timer, &settings))
            {
                Some((change, next)) => (Some(change), next),
                None => (None, None),
            }
        }
    };
    let outcome = match change {
        Some(change) => {
            // A change's on-time key is its due time, behind readers' horizon: it is
            // written late (now), with the marker that makes a second run add nothing.
            let late_at = Timestamp::now().to_stored();
            let write = store.record_change(&timer.org_id, &change, Some(&late_at));
            Some(
                tokio::time::timeout(PUT_BUDGET, write)
                    .await
                    .map_err(|_| ApiError::StorageUnavailable)??,
            )
        }
        None => None,
    };
    store.drop_fired_timer(timer).await?;
    if let Some(next) = next {
        store.put_timer(&next).await?;
    }
    Ok(outcome)
}

/// The change a client's timer means for the client stored as `item`, and its next timer,
/// if the client still has that transition (same activity, due time and stages).
fn client_change(
    item: &Item,
    timer: &Timer,
    settings: &StageSettings,
) -> Option<(NewChange, Option<Timer>)> {
    let meta = ItemMeta::of(item).filter(|m| m.entity.as_deref() == Some("user"))?;
    let user: UserRecord = decode(item.clone()).ok()?;
    let due: Timestamp = timer.due_at.parse().ok()?;
    let just_before = due.earlier_by(time::Duration::milliseconds(1));
    let now = client_timer(&timer.org_id, &meta.pk, &user, settings, just_before)?;
    if &now != timer {
        return None;
    }
    let Slot::Lifecycle { from, to } = timer.slot else {
        return None;
    };
    let data = json!({ "from": from.as_str(), "to": to.as_str(), "reason": "time" });
    let subject = Subject {
        client: ClientRef::of_user_pk(&meta.pk),
        ..Subject::default()
    };
    let sequence = client_sequence(meta.version.unwrap_or(1), ClientPlace::LifecycleByTime);
    let change = timed_change(
        (&meta, sequence),
        timer,
        LIFECYCLE_CHANGED,
        subject,
        data,
        Some(meta.pk.clone()),
    );
    let next = client_timer(&timer.org_id, &meta.pk, &user, settings, due);
    Some((change, next))
}

/// A change made by `timer` of the item `meta` (with its `sequence`): its id from the
/// item, slot, basis and due time; occurred at the due time.
fn timed_change(
    (meta, sequence): (&ItemMeta, u64),
    timer: &Timer,
    kind: &str,
    subject: Subject,
    data: serde_json::Value,
    client_pk: Option<String>,
) -> NewChange {
    let created = meta.ingested_at.clone().unwrap_or_default();
    let occurrence = format!(
        "{created}/{}/{}/{}",
        timer.slot.name(),
        timer.basis,
        timer.due_at
    );
    NewChange {
        org_id: timer.org_id.clone(),
        change: Change {
            id: Change::id_of(&timer.org_id, &meta.key(), kind, &occurrence),
            kind: kind.to_owned(),
            occurred_at: Some(timer.due_at.clone()),
            recorded_at: timer.due_at.clone(),
            subject,
            sequence,
            data,
        },
        client_pk,
    }
}

/// The change `timer` means for the booking stored as `item`, if the booking still has
/// that timer (same slot, schedule and due time; not canceled; an offset the org has).
fn booking_change(item: &Item, timer: &Timer, reminders: &[u32]) -> Option<NewChange> {
    let meta = ItemMeta::of(item).filter(|m| m.entity.as_deref() == Some("booking"))?;
    let booking: BookingRecord = decode(item.clone()).ok()?;
    if timer_of(&timer.org_id, &booking, timer.slot).as_ref() != Some(timer)
        || !slots(reminders).contains(&timer.slot)
    {
        return None;
    }
    let (kind, data) = match timer.slot {
        Slot::Reminder { minutes } => (
            REMINDER_DUE,
            json!({ "offset": minutes, "scheduled_at": timer.basis }),
        ),
        _ => (
            ENDED,
            json!({ "scheduled_at": timer.basis, "ended_at": timer.due_at }),
        ),
    };
    let subject = Subject {
        client: booking.client.as_ref().and_then(ClientRef::of),
        booking_id: booking.booking_id.clone(),
        ..Subject::default()
    };
    Some(timed_change(
        (&meta, meta.version.unwrap_or(1)),
        timer,
        kind,
        subject,
        data,
        meta.gsi1pk.clone(),
    ))
}
