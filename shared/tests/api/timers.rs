//! Changes the clock makes (issue 26), end to end: bookings written through the real
//! handler, DynamoDB Local's stream handed to the consumer (which arms timers), then the
//! sweeper the Lambda runs, called at chosen instants (never by sleeping).

use crate::changes::pump;
use crate::common::{days_ago, unique, TestOrg};
use crate::record_properties::run_streamed_cases;
use aws_lambda_events::event::dynamodb::Event;
use serde_json::{json, Value};
use shared::changes::timers::{self, SweepTally};
use shared::fields::Timestamp;
use shared::store::codec::changes::Change;
use shared::Endpoint;
use std::time::{Duration, Instant};

const TYPES: [&str; 2] = [timers::REMINDER_DUE, timers::ENDED];

fn at(base: Timestamp, minutes: i64) -> Timestamp {
    base.later_by(time::Duration::minutes(minutes))
}

/// A whole minute `days` days from now plus a random time, so that tests (and runs
/// sharing the table) rarely share due minutes.
fn future_minute(days: i64) -> Timestamp {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // Up to ten years on: the due index is the whole table's, so tests that run at once
    // must not sweep each other's minutes.
    let jitter = i64::try_from(random % (3650 * 1440)).unwrap();
    future_from(Timestamp::now(), days * 1440 + jitter)
}

async fn book(org: &TestOrg, id: &str, scheduled: Timestamp, status: &str) {
    org.call(
        Endpoint::BookingsUpsert,
        json!({"booking_id": id, "scheduled_at": scheduled.to_stored(), "status": status,
               "duration_minutes": 30, "client": {"external_user_id": format!("c-{id}")}}),
    )
    .await
    .assert_success();
}

/// Runs the consumer over the org's stream records until `records` of them were handled;
/// the records.
async fn consume(org: &TestOrg, records: usize) -> Event {
    let started = Instant::now();
    let mut seen = Event::default();
    while seen.records.len() < records {
        seen.records.extend(pump(org).await.0.records);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "stream records missing: {}/{records}",
            seen.records.len()
        );
        if seen.records.len() < records {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    seen
}

/// One sweeper run at `now` by a sweeper that never ran (it looks back a few minutes).
async fn sweep_at(org: &TestOrg, now: Timestamp) -> SweepTally {
    timers::sweep(org.store(), &unique("sweeper"), now)
        .await
        .unwrap()
}

/// The org's changes of `types` as stored (no visibility wait), oldest first.
async fn stored_changes(org: &TestOrg, types: &[&str]) -> Vec<Change> {
    let day = time::Duration::days(1);
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    org.store()
        .changes_page(
            &org.org_id,
            &Timestamp::now().earlier_by(day).to_stored(),
            &Timestamp::now().later_by(day).to_stored(),
            1000,
            Some(&types),
        )
        .await
        .unwrap()
        .changes
}

/// The org's booking changes made by time, as JSON.
async fn timed_changes(org: &TestOrg) -> Vec<Value> {
    stored_changes(org, &TYPES)
        .await
        .into_iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect()
}

/// (booking, type, offset or `scheduled_at` for an end), in the order recorded.
fn summary(changes: &[Value]) -> Vec<(String, String, String)> {
    changes
        .iter()
        .map(|c| {
            let what = match c["type"].as_str().unwrap() {
                timers::ENDED => c["data"]["scheduled_at"].as_str().unwrap().to_owned(),
                _ => c["data"]["offset"].to_string(),
            };
            (
                c["subject"]["booking_id"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
                what,
            )
        })
        .collect()
}

fn row(booking: &str, kind: &str, what: &str) -> (String, String, String) {
    (booking.to_owned(), kind.to_owned(), what.to_owned())
}

#[tokio::test]
async fn a_reminder_fires_once_at_each_offset_and_the_end_once() {
    let org = TestOrg::streamed(None).await;
    let start = future_minute(5);
    book(&org, "b1", start, "confirmed").await;
    let created = consume(&org, 1).await;
    // Just before the 24 h reminder: nothing.
    assert_eq!(sweep_at(&org, at(start, -1441)).await.fired, 0);
    assert!(timed_changes(&org).await.is_empty());
    let day_before = at(start, -1440);
    assert_eq!(sweep_at(&org, day_before).await.fired, 1);
    // The same instant again, twice at once, and a sweeper with a watermark: nothing new.
    let name = unique("sweeper");
    let (a, b, c) = tokio::join!(
        sweep_at(&org, day_before),
        sweep_at(&org, at(day_before, 1)),
        timers::sweep(org.store(), &name, at(day_before, 2)),
    );
    assert_eq!(a.fired + b.fired + c.unwrap().fired, 0);
    sweep_at(&org, at(start, -60)).await;
    sweep_at(&org, at(start, -59)).await;
    sweep_at(&org, at(start, 30)).await;
    let changes = timed_changes(&org).await;
    assert_eq!(
        summary(&changes),
        [
            row("b1", timers::REMINDER_DUE, "1440"),
            row("b1", timers::REMINDER_DUE, "60"),
            row("b1", timers::ENDED, &start.to_stored()),
        ],
        "{changes:#?}"
    );
    assert_eq!(changes[2]["data"]["ended_at"], at(start, 30).to_stored());
    assert_eq!(changes[0]["occurred_at"], day_before.to_stored());
    assert_eq!(changes[0]["subject"]["client"]["external_user_id"], "c-b1");
    // A redelivered stream record re-arms the timers: their changes exist, nothing new.
    let (response, _) = shared::changes::consumer::handle(org.store(), created).await;
    assert!(response.batch_item_failures.is_empty());
    for minute in [-1440, -60, 30] {
        assert_eq!(sweep_at(&org, at(start, minute)).await.fired, 0);
    }
    assert_eq!(timed_changes(&org).await.len(), 3);
    // And they are in the feed, through the real handler.
    let started = Instant::now();
    loop {
        let reply = org
            .read(
                Endpoint::ChangesList,
                &[],
                "types=booking.reminder_due,booking.ended",
            )
            .await;
        let listed = reply.assert_status(200)["changes"]
            .as_array()
            .unwrap()
            .len();
        if listed == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{listed} of 3 in the feed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_moved_booking_fires_only_at_its_new_time_and_a_canceled_one_not_at_all() {
    let org = TestOrg::streamed(None).await;
    let start = future_minute(6);
    let moved = at(start, 2 * 1440);
    book(&org, "moved", start, "confirmed").await;
    book(&org, "moved", moved, "confirmed").await;
    book(&org, "canceled", start, "confirmed").await;
    book(&org, "canceled", start, "Cancelled").await;
    // Moved twice within a minute: only the last time counts.
    book(&org, "twice", start, "confirmed").await;
    book(&org, "twice", at(start, 60), "confirmed").await;
    book(&org, "twice", at(start, 120), "confirmed").await;
    consume(&org, 7).await;
    for minute in [-1440, -60, 0, 30, 60, 90, 120, 150] {
        sweep_at(&org, at(start, minute)).await;
        sweep_at(&org, at(start, minute - 1440)).await;
    }
    for minute in [-1440, -60, 30] {
        sweep_at(&org, at(moved, minute)).await;
    }
    let mut got = summary(&timed_changes(&org).await);
    got.sort();
    let mut want = vec![
        row("moved", timers::REMINDER_DUE, "1440"),
        row("moved", timers::REMINDER_DUE, "60"),
        row("moved", timers::ENDED, &moved.to_stored()),
        row("twice", timers::REMINDER_DUE, "1440"),
        row("twice", timers::REMINDER_DUE, "60"),
        row("twice", timers::ENDED, &at(start, 120).to_stored()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn an_uncanceled_booking_fires_what_is_ahead_and_nothing_twice() {
    let org = TestOrg::streamed(None).await;
    let start = future_minute(7);
    book(&org, "b", start, "confirmed").await;
    consume(&org, 1).await;
    assert_eq!(sweep_at(&org, at(start, -1440)).await.fired, 1);
    book(&org, "b", start, "canceled").await;
    consume(&org, 1).await;
    // Canceled: the 1 h reminder's timer was dropped.
    assert_eq!(sweep_at(&org, at(start, -60)).await.fired, 0);
    book(&org, "b", start, "confirmed").await;
    consume(&org, 1).await;
    let tally = sweep_at(&org, at(start, -60)).await;
    assert_eq!(tally.fired, 1, "{tally:?}");
    // Re-armed 24 h reminder: its change exists (same booking, offset and time).
    assert_eq!(sweep_at(&org, at(start, -1440)).await.fired, 0);
    sweep_at(&org, at(start, 30)).await;
    let got = summary(&timed_changes(&org).await);
    assert_eq!(
        got,
        [
            row("b", timers::REMINDER_DUE, "1440"),
            row("b", timers::REMINDER_DUE, "60"),
            row("b", timers::ENDED, &start.to_stored()),
        ]
    );
}

#[tokio::test]
async fn a_booking_made_inside_a_window_skips_the_reminders_already_past() {
    let org = TestOrg::streamed(None).await;
    let written = Timestamp::now();
    let soon = future_from(written, 30);
    let later = future_from(written, 90);
    book(&org, "soon", soon, "confirmed").await;
    book(&org, "later", later, "confirmed").await;
    consume(&org, 2).await;
    for (booking, minute) in [
        (soon, -1440),
        (soon, -60),
        (later, -1440),
        (later, -60),
        (soon, 30),
        (later, 30),
    ] {
        sweep_at(&org, at(booking, minute)).await;
    }
    let mut got = summary(&timed_changes(&org).await);
    got.sort();
    assert_eq!(
        got,
        [
            row("later", timers::ENDED, &later.to_stored()),
            row("later", timers::REMINDER_DUE, "60"),
            row("soon", timers::ENDED, &soon.to_stored()),
        ]
    );
}

/// The whole minute `minutes` after `from`.
fn future_from(from: Timestamp, minutes: i64) -> Timestamp {
    format!("{}:00.000Z", &at(from, minutes + 1).to_stored()[..16])
        .parse()
        .unwrap()
}

async fn event_at(org: &TestOrg, user: &str, at: &str) {
    let body = json!({"event": "app_opened", "user": {"external_user_id": user},
        "event_timestamp": at});
    org.call(Endpoint::Events, body).await.assert_status(201);
}

/// Runs the consumer over the org's stream records until none came for a while.
async fn consume_all(org: &TestOrg) {
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    let mut seen = 0;
    loop {
        let read = pump(org).await.0.records.len();
        seen += read;
        if read > 0 || seen == 0 {
            quiet_since = None;
        } else if quiet_since.get_or_insert_with(Instant::now).elapsed()
            > Duration::from_millis(700)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the stream kept coming"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn time_of(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn days_after(at: &str, days: i64) -> Timestamp {
    time_of(at).later_by(time::Duration::days(days))
}

/// The org's `client.lifecycle_changed` changes made by time: (client, from, to, occurred_at).
async fn transitions(org: &TestOrg) -> Vec<(String, String, String, String)> {
    stored_changes(org, &[timers::LIFECYCLE_CHANGED])
        .await
        .into_iter()
        .filter(|c| c.data["reason"] == "time")
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap().to_owned();
            (
                c.subject.client.unwrap().external_user_id.unwrap(),
                text(&c.data["from"]),
                text(&c.data["to"]),
                c.occurred_at.unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn time_moves_a_client_through_its_stages_once_each() {
    let org = TestOrg::streamed(None).await;
    let (first, last) = (days_ago(6.0), days_ago(1.0));
    event_at(&org, "u", &first).await;
    event_at(&org, "u", &last).await;
    consume_all(&org).await;
    let moments = [
        days_after(&first, 7),
        days_after(&last, 7),
        days_after(&last, 30),
        days_after(&last, 90),
    ];
    for moment in moments {
        // Twice, and once a minute later: each transition once.
        let (a, b) = tokio::join!(sweep_at(&org, moment), sweep_at(&org, moment));
        assert_eq!(a.fired + b.fired, 1, "{moment:?}: {a:?} {b:?}");
        assert_eq!(sweep_at(&org, at(moment, 1)).await.fired, 0);
    }
    assert_eq!(sweep_at(&org, days_after(&last, 200)).await.fired, 0);
    let got = transitions(&org).await;
    let want: Vec<_> = [
        ("new", "active"),
        ("active", "at_risk"),
        ("at_risk", "dormant"),
        ("dormant", "churned"),
    ]
    .iter()
    .zip(moments)
    .map(|((from, to), at)| {
        (
            "u".to_owned(),
            (*from).to_owned(),
            (*to).to_owned(),
            at.to_stored(),
        )
    })
    .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_late_event_cancels_a_transition_and_the_next_is_due_from_it() {
    let org = TestOrg::streamed(None).await;
    let last = days_ago(7.0 - 10.0 / 1440.0);
    event_at(&org, "u", &days_ago(20.0)).await;
    event_at(&org, "u", &last).await;
    consume_all(&org).await;
    let due = days_after(&last, 7);
    // The late event is stored before the sweep, its stream record not yet consumed: the
    // sweep's re-check against the client as it is now drops the transition.
    let late = days_ago(1.0 / 24.0);
    event_at(&org, "u", &late).await;
    let tally = sweep_at(&org, at(due, 1)).await;
    assert_eq!((tally.fired, tally.stale), (0, 1), "{tally:?}");
    consume_all(&org).await;
    assert_eq!(sweep_at(&org, at(due, 1)).await.fired, 0);
    sweep_at(&org, days_after(&late, 7)).await;
    assert_eq!(
        transitions(&org).await,
        [(
            "u".to_owned(),
            "active".to_owned(),
            "at_risk".to_owned(),
            days_after(&late, 7).to_stored()
        )]
    );
}

/// One step of a simulated week: a booking written (moved, canceled or not), or the
/// sweeper run near a moment some write made due.
#[derive(Debug, Clone)]
enum Step {
    Write {
        booking: usize,
        half_hours: i64,
        canceled: bool,
    },
    Sweep {
        write: usize,
        slot: usize,
        late_minutes: i64,
    },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        1 => (0..3usize, 0..(7 * 48i64), proptest::bool::weighted(0.25)).prop_map(
            |(booking, half_hours, canceled)| Step::Write {
                booking,
                half_hours,
                canceled
            }
        ),
        2 => (0..8usize, 0..3usize, 0..20i64).prop_map(|(write, slot, late_minutes)| Step::Sweep {
            write,
            slot,
            late_minutes
        }),
    ]
}

/// When slot 0 (24 h reminder), 1 (1 h) or 2 (the end, 30 minutes) of a booking at
/// `start` is due, and the row its change gives.
fn slot_of(booking: usize, start: Timestamp, slot: usize) -> (Timestamp, (String, String, String)) {
    let (minutes, kind, what) = match slot {
        0 => (-1440, timers::REMINDER_DUE, "1440".to_owned()),
        1 => (-60, timers::REMINDER_DUE, "60".to_owned()),
        _ => (30, timers::ENDED, start.to_stored()),
    };
    let row = (
        format!("p{booking}"),
        format!("{kind}/{}", start.to_stored()),
        what,
    );
    (at(start, minutes), row)
}

/// The rows of every slot of the bookings in `state` (start, canceled) that a sweep at
/// `now` finds due: not canceled, due at most `now`, in a minute from 15 minutes before.
fn due_in(
    state: &std::collections::BTreeMap<usize, (Timestamp, bool)>,
    now: Timestamp,
) -> Vec<(String, String, String)> {
    let from = at(now, -15).to_stored()[..16].to_owned();
    let mut rows = Vec::new();
    for (&booking, &(start, canceled)) in state {
        for slot in 0..3 {
            let (due, row) = slot_of(booking, start, slot);
            if !canceled && due.to_stored()[..16] >= *from && due <= now {
                rows.push(row);
            }
        }
    }
    rows
}

/// Random bookings, moves and cancellations over a simulated week, the sweeper run at
/// random instants between them (each a sweeper that never ran: it reads the 15 minutes
/// before), then every stream record delivered again and every sweep run again: the feed
/// holds exactly what a small model derives (a slot's change when a sweep's window holds
/// its due time while the booking, as last written, has that slot), none twice.
/// `RECORD_CASES` cases (6 by default).
#[test]
fn time_made_changes_are_what_a_model_of_writes_and_sweeps_derives() {
    use std::collections::{BTreeMap, BTreeSet};
    run_streamed_cases(
        proptest::collection::vec(step(), 2..14),
        async |org: &TestOrg, steps: Vec<Step>| {
            let base = future_minute(10);
            let mut writes: Vec<(usize, Timestamp)> = Vec::new();
            let mut state: BTreeMap<usize, (Timestamp, bool)> = BTreeMap::new();
            let mut want = BTreeSet::new();
            let mut sweeps = Vec::new();
            let mut records = Event::default();
            for (n, step) in steps.iter().enumerate() {
                match *step {
                    Step::Write {
                        booking,
                        half_hours,
                        canceled,
                    } => {
                        let start = at(base, half_hours * 30);
                        let status = if canceled { "canceled" } else { "confirmed" };
                        org.call(
                                Endpoint::BookingsUpsert,
                                json!({"booking_id": format!("p{booking}"), "scheduled_at": start.to_stored(),
                                       "status": status, "duration_minutes": 30, "notes": format!("w{n}"),
                                       "client": {"external_user_id": "c"}}),
                            )
                            .await
                            .assert_success();
                        records.records.extend(consume(org, 1).await.records);
                        writes.push((booking, start));
                        state.insert(booking, (start, canceled));
                    }
                    Step::Sweep {
                        write,
                        slot,
                        late_minutes,
                    } => {
                        let Some(&(booking, start)) = writes.get(write % writes.len().max(1))
                        else {
                            continue;
                        };
                        let now = at(slot_of(booking, start, slot).0, late_minutes);
                        sweep_at(org, now).await;
                        sweeps.push(now);
                        // The model: every slot of a booking as last written whose due
                        // time is in this sweep's window (its minutes from 15 before).
                        want.extend(due_in(&state, now));
                    }
                }
            }
            // Redelivered stream records and repeated sweeps add nothing.
            let (response, _) = shared::changes::consumer::handle(org.store(), records).await;
            assert!(response.batch_item_failures.is_empty());
            // (The timers are re-armed as last written: sweeps run again fire those.)
            for now in sweeps {
                sweep_at(org, now).await;
                want.extend(due_in(&state, now));
            }
            let got: Vec<_> = stored_changes(org, &TYPES)
                .await
                .into_iter()
                .map(|c| {
                    let scheduled = c.data["scheduled_at"].as_str().unwrap().to_owned();
                    let what = match c.kind.as_str() {
                        timers::ENDED => scheduled.clone(),
                        _ => c.data["offset"].to_string(),
                    };
                    (
                        c.subject.booking_id.unwrap(),
                        format!("{}/{scheduled}", c.kind),
                        what,
                    )
                })
                .collect();
            let distinct: BTreeSet<_> = got.iter().cloned().collect();
            assert_eq!(distinct.len(), got.len(), "a change twice: {got:#?}");
            assert_eq!(distinct, want, "steps: {steps:?}");
            Ok(())
        },
    );
}

#[tokio::test]
async fn an_org_sets_its_own_reminder_offsets() {
    let org = TestOrg::streamed(None).await;
    shared::admin::set_org_reminders(org.store(), &org.org_id, Some(vec![30, 2 * 1440]))
        .await
        .unwrap();
    let refused = shared::admin::set_org_reminders(org.store(), &org.org_id, Some(vec![0])).await;
    assert!(refused.is_err(), "an offset of 0 minutes");
    let start = future_minute(4);
    book(&org, "b", start, "confirmed").await;
    consume(&org, 1).await;
    for minute in [-2 * 1440, -1440, -60, -30, 30] {
        sweep_at(&org, at(start, minute)).await;
    }
    assert_eq!(
        summary(&timed_changes(&org).await),
        [
            row("b", timers::REMINDER_DUE, "2880"),
            row("b", timers::REMINDER_DUE, "30"),
            row("b", timers::ENDED, &start.to_stored()),
        ]
    );
    // Back to the defaults: a timer of an offset the org no longer has is dropped.
    shared::admin::set_org_reminders(org.store(), &org.org_id, None)
        .await
        .unwrap();
    book(&org, "c", start, "confirmed").await;
    consume(&org, 1).await;
    shared::admin::set_org_reminders(org.store(), &org.org_id, Some(vec![60]))
        .await
        .unwrap();
    let tally = sweep_at(&org, at(start, -1440)).await;
    assert_eq!((tally.fired, tally.stale), (0, 1), "{tally:?}");
    assert_eq!(sweep_at(&org, at(start, -60)).await.fired, 1);
}
