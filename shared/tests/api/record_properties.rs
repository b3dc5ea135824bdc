//! The client record is a function of the set of distinct events, never of their arrival
//! order: random sets of lifecycle events and payments for a few users (colliding times,
//! several currencies, zero amounts, duplicates by `Idempotency-Key`, identical keyless
//! events) are delivered in a random order, partly concurrently, with keyed events resent,
//! through the real handler against DynamoDB Local. Every record must equal what a small
//! reference model computes from the set alone.
//!
//! `make test` runs `RECORD_CASES` cases (default 16); `make test-properties` runs more.

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use shared::facts::{Field, Latest, Offer};
use shared::Endpoint;
use std::collections::BTreeMap;

const USERS: usize = 2;
/// Few distinct times, so that ties are common.
const TIMES: [&str; 4] = [
    "2026-03-01T10:00:00.000Z",
    "2026-03-01T11:00:00.000Z",
    "2026-03-01T12:00:00.000Z",
    "2026-03-01T12:00:00.500Z",
];

#[derive(Debug, Clone)]
enum Kind {
    Installed {
        platform: Option<&'static str>,
        version: Option<&'static str>,
    },
    Opened {
        version: Option<&'static str>,
    },
    Uninstalled,
    Purchased {
        amount: Option<&'static str>,
        currency: Option<&'static str>,
    },
    Subscription {
        suffix: &'static str,
        amount: Option<&'static str>,
        currency: Option<&'static str>,
        plan: Option<&'static str>,
    },
    Custom,
}

/// One distinct event: a keyed one may be delivered several times.
#[derive(Debug, Clone)]
struct Fact {
    user: usize,
    at: &'static str,
    kind: Kind,
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

fn kind() -> impl Strategy<Value = Kind> {
    let amounts: &'static [&'static str] = &["0.00", "5.00", "10.00", "20.00", "7.5"];
    let currencies: &'static [&'static str] = &["USD", "JPY", "EUR"];
    prop_oneof![
        (option(&["ios", "android"]), option(&["1.0", "2.0"]))
            .prop_map(|(platform, version)| Kind::Installed { platform, version }),
        option(&["1.0", "2.0"]).prop_map(|version| Kind::Opened { version }),
        Just(Kind::Uninstalled),
        (option(amounts), option(currencies))
            .prop_map(|(amount, currency)| Kind::Purchased { amount, currency }),
        (
            proptest::sample::select(
                &[
                    "started",
                    "renewed",
                    "cancelled",
                    "trial_started",
                    "expired",
                    "resumed"
                ][..]
            ),
            option(amounts),
            option(currencies),
            option(&["basic", "pro"]),
        )
            .prop_map(|(suffix, amount, currency, plan)| Kind::Subscription {
                suffix,
                amount,
                currency,
                plan
            }),
        Just(Kind::Custom),
    ]
}

fn fact() -> impl Strategy<Value = (usize, &'static str, Kind, Option<usize>)> {
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
                    at,
                    kind,
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

fn properties(kind: &Kind) -> (String, Value) {
    let mut properties = Map::new();
    let mut put = |name: &str, value: Option<&str>| {
        if let Some(value) = value {
            properties.insert(name.to_owned(), json!(value));
        }
    };
    let name = match kind {
        Kind::Installed { platform, version } => {
            put("install_platform", *platform);
            put("app_version", *version);
            "app_installed".to_owned()
        }
        Kind::Opened { version } => {
            put("app_version", *version);
            "app_opened".to_owned()
        }
        Kind::Uninstalled => "app_uninstalled".to_owned(),
        Kind::Purchased { amount, currency } => {
            put("amount", *amount);
            put("currency", *currency);
            "user_purchased".to_owned()
        }
        Kind::Subscription {
            suffix,
            amount,
            currency,
            plan,
        } => {
            put("amount", *amount);
            put("currency", *currency);
            put("plan", *plan);
            format!("subscription_{suffix}")
        }
        Kind::Custom => "level_completed".to_owned(),
    };
    (name, Value::Object(properties))
}

fn body(fact: &Fact, user_id: &str) -> String {
    let (name, properties) = properties(&fact.kind);
    json!({
        "event": name,
        "user": {"external_user_id": user_id},
        "event_timestamp": fact.at,
        "properties": properties,
    })
    .to_string()
}

// ------------------------------------------------------------------ the reference model

fn text(value: &str) -> Latest {
    Latest::Text(value.to_owned())
}

fn nonzero(amount: Option<&str>) -> bool {
    amount.is_some_and(|a| !a.parse::<Decimal>().unwrap().is_zero())
}

fn status_of(suffix: &str) -> Option<&'static str> {
    match suffix {
        "started" | "renewed" | "resumed" => Some("active"),
        "cancelled" => Some("cancelled"),
        "expired" => Some("expired"),
        "trial_started" => Some("trialing"),
        _ => None,
    }
}

/// The documented rules, written out for this vocabulary: what an event says about which
/// fields, and what it adds.
struct Effect {
    offers: Vec<(Field, Latest)>,
    install: bool,
    /// A payment: its amount and currency as sent.
    payment: Option<(Option<&'static str>, Option<&'static str>)>,
}

fn effect(kind: &Kind) -> Effect {
    let mut offers = Vec::new();
    let mut install = false;
    let mut payment = None;
    match kind {
        Kind::Installed { platform, version } => {
            offers.push((Field::InstalledAt, Latest::Time));
            offers.extend(platform.map(|p| (Field::InstallPlatform, text(p))));
            offers.extend(version.map(|v| (Field::AppVersion, text(v))));
            offers.push((Field::IsInstalled, Latest::Flag(true)));
            install = true;
        }
        Kind::Opened { version } => {
            offers.push((Field::LastOpenedAt, Latest::Time));
            offers.extend(version.map(|v| (Field::AppVersion, text(v))));
            offers.push((Field::IsInstalled, Latest::Flag(true)));
        }
        Kind::Uninstalled => {
            offers.push((Field::UninstalledAt, Latest::Time));
            offers.push((Field::IsInstalled, Latest::Flag(false)));
        }
        Kind::Purchased { amount, currency } => {
            if amount.is_none() || nonzero(*amount) {
                payment = Some((*amount, *currency));
            }
        }
        Kind::Subscription {
            suffix,
            amount,
            currency,
            plan,
        } => {
            offers.push((Field::SubscriptionUpdatedAt, Latest::Time));
            if *suffix == "started" {
                offers.push((Field::SubscriptionStartedAt, Latest::Time));
            }
            let status = status_of(suffix);
            offers.extend(status.map(|s| (Field::SubscriptionStatus, text(s))));
            offers.extend(plan.map(|p| (Field::Plan, text(p))));
            if matches!(*suffix, "started" | "renewed") && nonzero(*amount) {
                payment = Some((*amount, *currency));
            } else {
                let customer = match status {
                    Some("active") => Some(true),
                    Some("cancelled" | "expired") => Some(false),
                    _ => None,
                };
                offers.extend(customer.map(|c| (Field::IsActiveCustomer, Latest::Flag(c))));
            }
        }
        Kind::Custom => {}
    }
    if let Some((amount, currency)) = payment {
        let amount_text = amount.map(|a| a.parse::<Decimal>().unwrap().to_string());
        offers.push((
            Field::LastPayment,
            Latest::Payment {
                amount: amount_text,
                currency: currency.map(str::to_owned),
            },
        ));
        offers.push((
            Field::LifetimeValueCurrency,
            text(currency.unwrap_or("XXX")),
        ));
        offers.push((Field::IsActiveCustomer, Latest::Flag(true)));
    }
    Effect {
        offers,
        install,
        payment,
    }
}

/// Money as the API shows totals: at least two decimal places.
fn money(amount: Decimal) -> String {
    let mut amount = amount.normalize();
    if amount.scale() < 2 {
        amount.rescale(2);
    }
    amount.to_string()
}

/// The client record's derived fields, computed from the set of facts of one user.
fn expected(facts: &[&Fact]) -> BTreeMap<&'static str, Value> {
    let mut installs = 0;
    let mut payments = 0;
    let mut revenue: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut winners: BTreeMap<Field, Offer> = BTreeMap::new();
    let mut last_event_at: Option<&str> = None;
    for fact in facts {
        let effect = effect(&fact.kind);
        installs += u32::from(effect.install);
        if let Some((amount, currency)) = effect.payment {
            payments += 1;
            if let Some(amount) = amount {
                *revenue
                    .entry(currency.unwrap_or("XXX").to_owned())
                    .or_default() += amount.parse::<Decimal>().unwrap();
            }
        }
        for (field, value) in effect.offers {
            let offer = Offer {
                field,
                at: fact.at.parse().unwrap(),
                value,
            };
            let current = winners.get(&field).map(Offer::position);
            if offer.wins_over(current.as_ref()) {
                winners.insert(field, offer);
            }
        }
        last_event_at = last_event_at.max(Some(fact.at));
    }
    let winner = |field: Field| winners.get(&field);
    let at = |field: Field| winner(field).map(|offer| json!(offer.at.to_stored()));
    let value = |field: Field| {
        winner(field).and_then(|offer| match &offer.value {
            Latest::Text(text) => Some(json!(text)),
            Latest::Flag(flag) => Some(json!(flag)),
            Latest::Time | Latest::Payment { .. } => None,
        })
    };
    let payment = winner(Field::LastPayment).map(|offer| match &offer.value {
        Latest::Payment { amount, currency } => (amount.clone(), currency.clone()),
        _ => unreachable!(),
    });
    let ltv_currency = value(Field::LifetimeValueCurrency);
    let ltv = ltv_currency.as_ref().map(|currency| {
        let total = revenue
            .get(currency.as_str().unwrap())
            .copied()
            .unwrap_or_default();
        json!(money(total))
    });
    let by_currency: Map<String, Value> = revenue
        .iter()
        .map(|(currency, total)| (currency.clone(), json!(money(*total))))
        .collect();
    let fields = [
        ("install_count", (installs > 0).then(|| json!(installs))),
        (
            "total_payments_count",
            (payments > 0).then(|| json!(payments)),
        ),
        ("installed_at", at(Field::InstalledAt)),
        ("install_platform", value(Field::InstallPlatform)),
        ("last_opened_at", at(Field::LastOpenedAt)),
        ("uninstalled_at", at(Field::UninstalledAt)),
        ("is_installed", value(Field::IsInstalled)),
        ("app_version", value(Field::AppVersion)),
        ("last_payment_at", at(Field::LastPayment)),
        (
            "last_payment_amount",
            payment.as_ref().and_then(|p| p.0.clone()).map(Value::from),
        ),
        (
            "last_payment_currency",
            payment.as_ref().and_then(|p| p.1.clone()).map(Value::from),
        ),
        ("is_active_customer", value(Field::IsActiveCustomer)),
        ("subscription_status", value(Field::SubscriptionStatus)),
        ("plan", value(Field::Plan)),
        ("subscription_updated_at", at(Field::SubscriptionUpdatedAt)),
        ("subscription_started_at", at(Field::SubscriptionStartedAt)),
        ("lifetime_value_currency", ltv_currency),
        ("lifetime_value", ltv),
        (
            "revenue_by_currency",
            (!by_currency.is_empty()).then_some(Value::Object(by_currency)),
        ),
        ("last_event_at", last_event_at.map(|at| json!(at))),
    ];
    fields
        .into_iter()
        .map(|(name, value)| (name, value.unwrap_or(Value::Null)))
        .collect()
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
        let mine: Vec<&Fact> = facts.iter().filter(|f| f.user == user).collect();
        if mine.is_empty() {
            continue;
        }
        let reply = org.read(Endpoint::UsersGet, &[&user_id(user)], "").await;
        let stored = &reply.assert_status(200)["user"];
        for (field, want) in expected(&mine) {
            let got = stored.get(field).cloned().unwrap_or(Value::Null);
            prop_assert_eq!(&got, &want, "field {} of user {}: {}", field, user, stored);
        }
    }
    Ok(())
}

/// Runs `check` on `RECORD_CASES` (16) cases of `strategy`, each in a fresh org with a key
/// limit far above what a case sends (many requests in little time).
fn run_cases<S: Strategy>(
    strategy: S,
    check: impl AsyncFn(&TestOrg, S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::env::var("RECORD_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16);
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
                let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
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
