//! The segment's membership, brute-forced: a few hundred users with random events, and for
//! random combinations of conditions, `users/` pages followed to the end hold exactly the
//! users the reference model (`record-model`, which shares no code with the server) puts in
//! the segment at the first page's `as_of`, none twice.
//!
//! `SEGMENT_SEED=<n>` replays a run (the seed is printed); `SEGMENT_CASES=<n>` sets how many
//! combinations are tried (40 by default).

use crate::common::*;
use crate::segments::store_all;
use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};
use record_model::{EventKind, Fact, DEFAULT_THRESHOLDS};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use shared::Endpoint;
use std::collections::{BTreeMap, HashSet};

const USERS: usize = 300;
const DAY_MS: i64 = 86_400_000;

/// proptest's seedable generator, driven by hand: the users and the combinations are drawn
/// one by one, so a failing case is replayed from its seed alone.
struct Rng(TestRng);

impl Rng {
    fn seeded(seed: u64) -> Rng {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Rng(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, values: &[T]) -> T {
        values[self.below(values.len())]
    }

    fn maybe<T: Copy>(&mut self, values: &[T]) -> Option<T> {
        (self.below(4) > 0).then(|| self.pick(values))
    }
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn kind(rng: &mut Rng, ends: &[&'static str]) -> EventKind {
    let amounts = ["0.00", "5.00", "10.00", "20.00", "7.5"];
    let currencies = ["USD", "EUR"];
    match rng.below(6) {
        0 => EventKind::Install {
            platform: rng.maybe(&["ios", "android"]),
            version: None,
        },
        1 => EventKind::Open { version: None },
        2 => EventKind::Uninstall,
        3 => EventKind::Purchase {
            amount: rng.maybe(&amounts),
            currency: rng.maybe(&currencies),
        },
        4 => EventKind::Subscription {
            suffix: rng.pick(&[
                "started",
                "renewed",
                "cancelled",
                "trial_started",
                "expired",
            ]),
            amount: rng.maybe(&amounts),
            currency: rng.maybe(&currencies),
            plan: None,
            ends_at: rng.maybe(ends),
        },
        _ => EventKind::Custom,
    }
}

/// What the reference model says of one user at `as_of`.
struct Expected {
    record: BTreeMap<&'static str, Value>,
    stage: &'static str,
    billing: &'static str,
    names: Value,
    /// Events of names past the bound (their names not kept apart).
    beyond: bool,
    last: i64,
}

impl Expected {
    fn of(facts: &[Fact], as_of: &str) -> Expected {
        let (names, beyond) = record_model::events_by_name(facts);
        Expected {
            record: record_model::record(facts),
            stage: record_model::lifecycle_stage(facts, &DEFAULT_THRESHOLDS, as_of),
            billing: record_model::billing_state(facts, as_of),
            names,
            beyond: beyond.is_some(),
            last: facts
                .iter()
                .map(|f| record_model::millis(&f.at))
                .max()
                .unwrap(),
        }
    }

    fn time(&self, field: &str) -> Option<i64> {
        self.record[field].as_str().map(record_model::millis)
    }

    fn revenue(&self, currency: &str) -> Decimal {
        let parse = |v: &Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
        if self.record["lifetime_value_currency"] == json!(currency) {
            return parse(&self.record["lifetime_value"]);
        }
        self.record["revenue_by_currency"]
            .get(currency)
            .map(parse)
            .unwrap_or_default()
    }
}

/// One condition: its query parameters, and the model's verdict on a user at `as_of`.
type Condition = (String, Box<dyn Fn(&Expected, i64) -> bool>);

fn condition(rng: &mut Rng) -> Condition {
    let days = rng.pick(&[3i64, 7, 30, 60]);
    let since = move |as_of: i64| as_of - days * DAY_MS;
    let names = ["app_opened", "app_installed", "user_purchased", "level_up"];
    match rng.below(11) {
        0 => {
            let stages = [
                "new",
                "active",
                "at_risk",
                "dormant",
                "churned",
                "resurrected",
            ];
            let (a, b) = (rng.pick(&stages), rng.pick(&stages));
            let list = if a == b {
                a.to_owned()
            } else {
                format!("{a},{b}")
            };
            let query = format!("lifecycle_stage={list}");
            (query, Box::new(move |e, _| e.stage == a || e.stage == b))
        }
        1 => {
            let states = [
                "none", "trialing", "paying", "past_due", "canceled", "lapsed",
            ];
            let (a, b) = (rng.pick(&states), rng.pick(&states));
            let list = if a == b {
                a.to_owned()
            } else {
                format!("{a},{b}")
            };
            let query = format!("billing_state={list}");
            (
                query,
                Box::new(move |e, _| e.billing == a || e.billing == b),
            )
        }
        2 => (
            format!("inactive_days={days}"),
            Box::new(move |e, as_of| e.last < since(as_of)),
        ),
        3 => (
            format!("active_within_days={days}"),
            Box::new(move |e, as_of| e.last >= since(as_of)),
        ),
        4 => {
            let name = rng.pick(&names);
            let count = rng.pick(&[1i64, 2]);
            let windowed = rng.below(2) == 0;
            let mut query = format!("did={name}&did_count_gte={count}");
            if windowed {
                query.push_str(&format!("&did_within_days={days}"));
            }
            let verdict = move |e: &Expected, as_of: i64| {
                let Some(kept) = e.names.get(name) else {
                    return false;
                };
                let last = record_model::millis(kept["last_at"].as_str().unwrap());
                kept["count"].as_i64().unwrap() >= count && (!windowed || last >= since(as_of))
            };
            (query, Box::new(verdict))
        }
        5 => {
            let name = rng.pick(&names);
            let windowed = rng.below(2) == 0;
            let mut query = format!("did_not={name}");
            if windowed {
                query.push_str(&format!("&did_not_within_days={days}"));
            }
            // A name not kept apart, with names past the bound: unknown, in neither.
            let verdict = move |e: &Expected, as_of: i64| match e.names.get(name) {
                None => !e.beyond,
                Some(kept) => {
                    windowed
                        && record_model::millis(kept["last_at"].as_str().unwrap()) < since(as_of)
                }
            };
            (query, Box::new(verdict))
        }
        6 => {
            let bound = rng.pick(&[1i64, 2]);
            let count = |e: &Expected| e.record["total_payments_count"].as_i64().unwrap_or(0);
            if rng.below(2) == 0 {
                let query = format!("total_payments_count_gte={bound}");
                (query, Box::new(move |e, _| count(e) >= bound))
            } else {
                let query = format!("total_payments_count_lt={bound}");
                (query, Box::new(move |e, _| count(e) < bound))
            }
        }
        7 => {
            let currency = rng.pick(&["USD", "EUR"]);
            let bound: Decimal = rng.pick(&["5", "10", "20.5"]).parse().unwrap();
            let query = format!("currency={currency}&revenue_gte={bound}");
            (query, Box::new(move |e, _| e.revenue(currency) >= bound))
        }
        8 => (
            format!("installed_within_days={days}"),
            Box::new(move |e, as_of| e.time("installed_at").is_some_and(|t| t >= since(as_of))),
        ),
        9 => {
            let flag = rng.below(2) == 0;
            (
                format!("is_installed={flag}"),
                Box::new(move |e, _| e.record["is_installed"] == json!(flag)),
            )
        }
        _ => (
            format!("last_payment_within_days={days}"),
            Box::new(move |e, as_of| e.time("last_payment_at").is_some_and(|t| t >= since(as_of))),
        ),
    }
}

#[tokio::test]
async fn segment_pages_hold_exactly_the_users_the_reference_model_selects() {
    let seed = std::env::var("SEGMENT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let cases: usize = std::env::var("SEGMENT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    println!("SEGMENT_SEED={seed}");
    let mut rng = Rng::seeded(seed);
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    let ends = [leak(days_ago(10.0)), leak(days_ago(-20.0))];
    let mut users: Vec<(String, Vec<Fact>)> = Vec::new();
    let mut items = Vec::new();
    for n in 0..USERS {
        let id = format!("s{n:03}");
        let mut facts: Vec<Fact> = Vec::new();
        for _ in 0..1 + rng.below(4) {
            // Up to 120 days ago, to the millisecond; one event per instant and user.
            let millis = rng.below(120 * DAY_MS as usize) as f64;
            let at = days_ago(millis / DAY_MS as f64);
            if facts.iter().any(|fact| fact.at == at) {
                continue;
            }
            let fact = Fact {
                at,
                kind: kind(&mut rng, &ends),
            };
            let (name, properties) = fact.name_and_properties();
            let body = json!({
                "event": name, "user": {"external_user_id": id},
                "event_timestamp": fact.at, "properties": properties,
            });
            items.push(crate::batch::item(Endpoint::Events, &body, None));
            facts.push(fact);
        }
        users.push((id, facts));
    }
    store_all(&org, items).await;

    let (mut checked, mut members) = (0, 0);
    for case in 0..cases {
        let conditions: Vec<Condition> =
            (0..1 + rng.below(3)).map(|_| condition(&mut rng)).collect();
        let mut names = HashSet::new();
        let conditions: Vec<Condition> = conditions
            .into_iter()
            .filter(|(query, _)| names.insert(query.split('=').next().unwrap().to_owned()))
            .collect();
        let query: Vec<&str> = conditions.iter().map(|(q, _)| q.as_str()).collect();
        let query = query.join("&");
        let limit = rng.pick(&[10, 25, 100]);
        let Some((got, as_of)) = pages(&org, &format!("{query}&limit={limit}")).await else {
            // A contradiction (`inactive_days` over `active_within_days`, `did` and
            // `did_not` of one name, an empty range): refused, as the end-to-end tests check.
            continue;
        };
        let at = record_model::millis(&as_of);
        let expected: HashSet<String> = users
            .iter()
            .filter(|(_, facts)| {
                let model = Expected::of(facts, &as_of);
                conditions.iter().all(|(_, verdict)| verdict(&model, at))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let found: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(
            found.len(),
            got.len(),
            "case {case} `{query}`: a user twice"
        );
        assert_eq!(
            found, expected,
            "case {case} `{query}` (SEGMENT_SEED={seed}): pages != model"
        );
        checked += 1;
        members += found.len();
    }
    println!("{checked} of {cases} combinations checked, {members} members in all");
    assert!(
        checked * 2 >= cases,
        "most combinations are not contradictions"
    );
}

/// Every page of `query`, and the `as_of` they were evaluated at (the same on each); `None`
/// when the query is refused as contradictory.
async fn pages(org: &TestOrg, query: &str) -> Option<(Vec<String>, String)> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut as_of: Option<String> = None;
    for _ in 0..200 {
        let mut page_query = query.to_owned();
        if let Some(cursor) = &cursor {
            page_query.push_str(&format!("&cursor={cursor}"));
        }
        let reply = org.read(Endpoint::UsersList, &[], &page_query).await;
        if cursor.is_none() && reply.status.as_u16() == 400 {
            reply.assert_error(400, "invalid_field");
            let contradicted = ["active_within_days", "did_not", "total_payments_count_lt"];
            assert!(contradicted.contains(&reply.param()), "{query}");
            return None;
        }
        let body = reply.assert_status(200);
        let page_as_of = body["as_of"].as_str().unwrap().to_owned();
        assert_eq!(*as_of.get_or_insert(page_as_of.clone()), page_as_of);
        for user in body["users"].as_array().unwrap() {
            ids.push(user["external_user_id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Some((ids, as_of.unwrap())),
        }
    }
    panic!("too many pages: {query}");
}
