//! The client record is a function of the set of distinct events, never of their arrival
//! order: random sets of lifecycle events and payments for a few users (colliding times,
//! several currencies, zero amounts, duplicates by `Idempotency-Key`, identical keyless
//! events) are delivered in a random order, partly concurrently, with keyed events resent,
//! through the real handler against DynamoDB Local. Every record must equal what the
//! reference model (the `record-model` crate, which `make soak` checks against too)
//! computes from the set alone.
//!
//! `make test` runs `RECORD_CASES` cases (default 16); `make test-properties` runs more.

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use record_model::{
    billing_state, events_by_name, lifecycle_stage, record, EventKind, Fact as Event,
    DEFAULT_THRESHOLDS,
};
use serde_json::{json, Value};
use shared::states::StageSettings;
use shared::store::records::UserRecord;
use shared::store::testing::keys;
use shared::Endpoint;

const USERS: usize = 2;
/// Few distinct times, so that ties are common; 35 days between the first two, so that a
/// client can come back after a dormant gap (and a late event can close it).
const TIMES: [&str; 4] = [
    "2026-01-01T10:00:00.000Z",
    "2026-02-05T11:00:00.000Z",
    "2026-03-01T12:00:00.000Z",
    "2026-03-01T12:00:00.500Z",
];
/// The instants the computed states are compared at: right after the last time, then past
/// each threshold and a subscription's end.
const AS_OF: [&str; 6] = [
    "2026-03-01T12:00:00.500Z",
    "2026-03-04T00:00:00.000Z",
    "2026-03-09T00:00:00.000Z",
    "2026-03-21T00:00:00.000Z",
    "2026-04-10T00:00:00.000Z",
    "2026-06-10T00:00:00.000Z",
];

/// One distinct event: a keyed one may be delivered several times.
#[derive(Debug, Clone)]
struct Fact {
    user: usize,
    event: Event,
    /// Deliveries: 1 without a key; 1 to 3 with one (the same key and body each time).
    key: Option<(String, usize)>,
}

fn option<T: Clone + std::fmt::Debug + 'static>(
    values: &'static [T],
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![
        1 => Just(None),
        3 => proptest::sample::select(values).prop_map(Some),
    ]
}

fn kind() -> impl Strategy<Value = EventKind> {
    let amounts: &'static [&'static str] = &["0.00", "5.00", "10.00", "20.00", "7.5"];
    let currencies: &'static [&'static str] = &["USD", "JPY", "EUR"];
    prop_oneof![
        (option(&["ios", "android"]), option(&["1.0", "2.0"]))
            .prop_map(|(platform, version)| EventKind::Install { platform, version }),
        option(&["1.0", "2.0"]).prop_map(|version| EventKind::Open { version }),
        Just(EventKind::Uninstall),
        (option(amounts), option(currencies))
            .prop_map(|(amount, currency)| EventKind::Purchase { amount, currency }),
        (
            proptest::sample::select(
                &[
                    "started",
                    "renewed",
                    "cancelled",
                    "trial_started",
                    "expired",
                    "resumed",
                    "reactivated",
                    "restarted",
                    "paused",
                    "canceled"
                ][..]
            ),
            option(amounts),
            option(currencies),
            option(&["basic", "pro"]),
            option(&["2026-02-01T00:00:00.000Z", "2026-03-20T00:00:00.000Z"]),
        )
            .prop_map(|(suffix, amount, currency, plan, ends_at)| {
                EventKind::Subscription {
                    suffix,
                    amount,
                    currency,
                    plan,
                    ends_at,
                }
            }),
        Just(EventKind::Custom),
    ]
}

fn fact() -> impl Strategy<Value = (usize, &'static str, EventKind, Option<usize>)> {
    (
        0..USERS,
        proptest::sample::select(&TIMES[..]),
        kind(),
        prop_oneof![1 => Just(None), 1 => (1usize..=3).prop_map(Some)],
    )
}

/// A set of facts and how they are delivered: a permutation of every delivery, cut into
/// concurrent waves.
fn case() -> impl Strategy<Value = (Vec<Fact>, Vec<usize>, Vec<usize>)> {
    proptest::collection::vec(fact(), 1..14)
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(index, (user, at, kind, copies))| Fact {
                    user,
                    event: Event {
                        at: at.to_owned(),
                        kind,
                    },
                    key: copies.map(|copies| (format!("fact-{index}"), copies)),
                })
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|facts| {
            let deliveries: Vec<usize> = facts
                .iter()
                .enumerate()
                .flat_map(|(index, fact)| {
                    let copies = fact.key.as_ref().map_or(1, |(_, copies)| *copies);
                    std::iter::repeat_n(index, copies)
                })
                .collect();
            let count = deliveries.len();
            (
                Just(facts),
                Just(deliveries).prop_shuffle(),
                proptest::collection::vec(1usize..=4, count),
            )
        })
}

fn body(fact: &Fact, user_id: &str) -> String {
    let (name, properties) = fact.event.name_and_properties();
    json!({
        "event": name,
        "user": {"external_user_id": user_id},
        "event_timestamp": fact.event.at,
        "properties": properties,
    })
    .to_string()
}

// ------------------------------------------------------------------ the property

/// `order` cut into consecutive waves of the given sizes (cycled), each sent concurrently.
fn in_waves<'a>(order: &'a [usize], sizes: &'a [usize]) -> impl Iterator<Item = &'a [usize]> {
    let mut rest = order;
    let mut sizes = sizes.iter().cycle();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = (*sizes.next()?).clamp(1, rest.len());
        let (wave, after) = rest.split_at(size);
        rest = after;
        Some(wave)
    })
}

async fn deliver_and_compare(
    org: &TestOrg,
    facts: &[Fact],
    order: &[usize],
    waves: &[usize],
) -> Result<(), TestCaseError> {
    let run = unique("run");
    let user_id = |user: usize| format!("{run}-u{user}");
    for wave in in_waves(order, waves) {
        let calls = wave.iter().map(|&index| {
            let fact = &facts[index];
            let key = fact.key.as_ref().map(|(key, _)| format!("{run}-{key}"));
            let body = body(fact, &user_id(fact.user));
            async move {
                let headers: Vec<(&str, &str)> = key
                    .as_deref()
                    .map(|key| ("idempotency-key", key))
                    .into_iter()
                    .collect();
                org.call_with(Endpoint::Events, &headers, body).await
            }
        });
        for reply in futures::future::join_all(calls).await {
            prop_assert_eq!(reply.status.as_u16(), 201, "{}", reply.body);
        }
    }
    for user in 0..USERS {
        let mine: Vec<&Event> = facts
            .iter()
            .filter(|f| f.user == user)
            .map(|f| &f.event)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let reply = org.read(Endpoint::UsersGet, &[&user_id(user)], "").await;
        let body = reply.assert_status(200);
        let stored = &body["user"];
        for (field, want) in record(mine.iter().copied()) {
            let got = stored.get(field).cloned().unwrap_or(Value::Null);
            prop_assert_eq!(&got, &want, "field {} of user {}: {}", field, user, stored);
        }
        let (names, rest) = events_by_name(mine.iter().copied());
        prop_assert_eq!(&stored["events_by_name"], &names);
        let rest = rest.unwrap_or(Value::Null);
        prop_assert_eq!(&stored["events_beyond_name_limit"], &rest);
        let as_of = body["as_of"].as_str().unwrap_or_default();
        let states = |as_of: &str| {
            json!({
                "lifecycle_stage": lifecycle_stage(mine.iter().copied(), &DEFAULT_THRESHOLDS, as_of),
                "billing_state": billing_state(mine.iter().copied(), as_of),
            })
        };
        let shown = |user: &Value| json!({"lifecycle_stage": user["lifecycle_stage"], "billing_state": user["billing_state"]});
        prop_assert_eq!(shown(stored), states(as_of), "at {}: {}", as_of, stored);
        // The same record at other instants: what the read computes at its `as_of`.
        let key = keys::user(&org.org_id, &external_identity(&user_id(user)));
        let record: UserRecord = org.store().get_record(&key).await.unwrap().unwrap();
        for as_of in AS_OF {
            let view = json!(record.view_at(as_of.parse().unwrap(), &StageSettings::default()));
            prop_assert_eq!(shown(&view), states(as_of), "at {}: {}", as_of, stored);
        }
    }
    Ok(())
}

/// Runs `check` on `RECORD_CASES` (16) cases of `strategy`, each in a fresh org with a key
/// limit far above what a case sends (many requests in little time).
pub fn run_cases<S: Strategy>(
    strategy: S,
    check: impl AsyncFn(&TestOrg, S::Value) -> Result<(), TestCaseError>,
) {
    run_cases_on(false, 16, strategy, check);
}

/// [`run_cases`] with each org on the streamed table (`common::streamed_store`), 6 cases
/// by default: each waits for the stream and the feed's horizon, and `make test` must stay
/// well under its time budget (`RECORD_CASES` runs more).
pub fn run_streamed_cases<S: Strategy>(
    strategy: S,
    check: impl AsyncFn(&TestOrg, S::Value) -> Result<(), TestCaseError>,
) {
    run_cases_on(true, 6, strategy, check);
}

fn run_cases_on<S: Strategy>(
    streamed: bool,
    default_cases: u32,
    strategy: S,
    check: impl AsyncFn(&TestOrg, S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::env::var("RECORD_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_cases);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |case| {
            runtime.block_on(async {
                let limit = Some(1_000_000);
                let org = match streamed {
                    true => TestOrg::streamed(limit).await,
                    false => TestOrg::with_rate_limit(limit).await,
                };
                check(&org, case).await
            })
        })
        .unwrap();
}

#[test]
fn the_client_record_is_a_function_of_the_set_of_events() {
    run_cases(case(), async |org, (facts, order, waves)| {
        deliver_and_compare(org, &facts, &order, &waves).await
    });
}

// ------------------------------------------------------------------ threads and the inbox

/// One distinct message: its thread, time and direction never change between deliveries.
#[derive(Debug, Clone)]
struct MessageFact {
    id: usize,
    thread: usize,
    at: &'static str,
    direction: Option<&'static str>,
    copies: usize,
}

fn thread_case() -> impl Strategy<Value = (Vec<MessageFact>, Vec<usize>, Vec<usize>)> {
    let fact = (
        0..2usize,
        proptest::sample::select(&TIMES[..]),
        option(&["in", "out"]),
        1usize..=2,
    );
    proptest::collection::vec(fact, 1..10)
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(id, (thread, at, direction, copies))| MessageFact {
                    id,
                    thread,
                    at,
                    direction,
                    copies,
                })
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|facts| {
            let deliveries: Vec<usize> = facts
                .iter()
                .flat_map(|fact| std::iter::repeat_n(fact.id, fact.copies))
                .collect();
            let count = deliveries.len();
            (
                Just(facts),
                Just(deliveries).prop_shuffle(),
                proptest::collection::vec(1usize..=4, count),
            )
        })
}

/// The documented rule, written out: the newest message (by time, then the greater id)
/// decides; a thread whose newest message is inbound waits since the first inbound message
/// after its newest message that is not inbound (a reply, or one without a direction). `(last_message_id, direction, awaiting_reply_since)`.
fn expected_thread(
    messages: &[&MessageFact],
    name: impl Fn(usize) -> String,
) -> (Value, Value, Value) {
    let mut ordered: Vec<(&str, String, Option<&str>)> = messages
        .iter()
        .map(|m| (m.at, name(m.id), m.direction))
        .collect();
    ordered.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let Some(newest) = ordered.last() else {
        return (Value::Null, Value::Null, Value::Null);
    };
    let since = (newest.2 == Some("in")).then(|| {
        let after_reply = ordered
            .iter()
            .rposition(|m| m.2 != Some("in"))
            .map_or(0, |index| index + 1);
        ordered[after_reply..]
            .iter()
            .find(|m| m.2 == Some("in"))
            .map(|m| m.0)
    });
    (
        json!(newest.1),
        newest.2.map_or(Value::Null, |d| json!(d)),
        since.flatten().map_or(Value::Null, |at| json!(at)),
    )
}

async fn deliver_messages_and_compare(
    org: &TestOrg,
    facts: &[MessageFact],
    order: &[usize],
    waves: &[usize],
) -> Result<(), TestCaseError> {
    let run = unique("run");
    let thread_id = |thread: usize| format!("{run}-t{thread}");
    // Ids of one width, so that their order is the numbers' order.
    let message_id = |id: usize| format!("{run}-m{id:02}");
    for wave in in_waves(order, waves) {
        let calls = wave.iter().map(|&id| {
            let fact = &facts[id];
            let mut body = json!({
                "message_id": message_id(id), "thread_id": thread_id(fact.thread),
                "sent_at": fact.at, "contact": {"external_user_id": format!("{run}-contact")},
            });
            if let Some(direction) = fact.direction {
                body["direction"] = json!(direction);
            }
            org.call(Endpoint::MessagesUpsert, body)
        });
        for reply in futures::future::join_all(calls).await {
            prop_assert!(reply.status.is_success(), "{}", reply.body);
        }
    }
    let inbox = org
        .read_all(Endpoint::Inbox, &[], "", "conversations")
        .await;
    for thread in 0..2 {
        let mine: Vec<&MessageFact> = facts.iter().filter(|m| m.thread == thread).collect();
        if mine.is_empty() {
            continue;
        }
        let (last_id, direction, since) = expected_thread(&mine, message_id);
        let reply = org
            .read(Endpoint::ConversationsGet, &[&thread_id(thread)], "")
            .await;
        let body = reply.assert_status(200);
        let conversation = &body["conversation"];
        let field = |name: &str| conversation.get(name).cloned().unwrap_or(Value::Null);
        prop_assert_eq!(field("last_message_id"), last_id, "{}", body);
        prop_assert_eq!(field("last_message_direction"), direction, "{}", body);
        prop_assert_eq!(field("awaiting_reply_since"), since.clone(), "{}", body);
        let listed = inbox
            .iter()
            .find(|t| t["thread_id"] == json!(thread_id(thread)))
            .map(|t| t["awaiting_reply_since"].clone());
        prop_assert_eq!(listed.unwrap_or(Value::Null), since);
    }
    Ok(())
}

#[test]
fn the_inbox_is_a_function_of_the_set_of_messages() {
    run_cases(thread_case(), async |org, (facts, order, waves)| {
        deliver_messages_and_compare(org, &facts, &order, &waves).await
    });
}
