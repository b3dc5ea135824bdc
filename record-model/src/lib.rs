//! A reference model of the client record: its derived fields as a function of the set of
//! a user's distinct events, for a small event vocabulary. Every rule is written here from
//! the documentation (docs/api-guide.md, "Behaviour worth knowing" and "The client record";
//! docs/data-model.md), with no code of the server: the crate does not depend on `shared`,
//! so a rule the server gets wrong cannot be checked against itself. It is written to be
//! obviously right, not fast: each last-value field looks at every offer it got and keeps
//! the newest. The property test (`shared/tests/api/record_properties.rs`) and `make soak`
//! check the stored records against it.

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What a soak event is, with the properties it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Install {
        platform: Option<&'static str>,
        version: Option<&'static str>,
    },
    Open {
        version: Option<&'static str>,
    },
    Uninstall,
    Purchase {
        amount: Option<&'static str>,
        currency: Option<&'static str>,
    },
    Subscription {
        suffix: &'static str,
        amount: Option<&'static str>,
        currency: Option<&'static str>,
        plan: Option<&'static str>,
        /// `properties.subscription_ends_at`, a stored time.
        ends_at: Option<&'static str>,
    },
    /// `level_up`: only activity.
    Custom,
}

/// One distinct event of a user: its time, as the API stores it (UTC, milliseconds:
/// `2026-03-01T12:00:00.000Z`), and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub at: String,
    pub kind: EventKind,
}

impl Fact {
    /// The event's name and properties as sent.
    pub fn name_and_properties(&self) -> (String, Value) {
        let mut properties = Map::new();
        let mut put = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                properties.insert(name.to_owned(), json!(value));
            }
        };
        let name = match &self.kind {
            EventKind::Install { platform, version } => {
                put("install_platform", *platform);
                put("app_version", *version);
                "app_installed".to_owned()
            }
            EventKind::Open { version } => {
                put("app_version", *version);
                "app_opened".to_owned()
            }
            EventKind::Uninstall => "app_uninstalled".to_owned(),
            EventKind::Purchase { amount, currency } => {
                put("amount", *amount);
                put("currency", *currency);
                "user_purchased".to_owned()
            }
            EventKind::Subscription {
                suffix,
                amount,
                currency,
                plan,
                ends_at,
            } => {
                put("amount", *amount);
                put("currency", *currency);
                put("plan", *plan);
                put("subscription_ends_at", *ends_at);
                format!("subscription_{suffix}")
            }
            EventKind::Custom => "level_up".to_owned(),
        };
        (name, Value::Object(properties))
    }
}

/// The currency a payment without `properties.currency` counts in: ISO 4217's "no currency".
const NO_CURRENCY: &str = "XXX";

/// The one field that keeps its oldest offer: the first payment's currency.
const OLDEST_WINS: &str = "lifetime_value_currency";

/// Whether `at` is a time as the API stores it (`2026-03-01T12:00:00.000Z`): in that one
/// shape, comparing two times as text compares them as times.
fn is_stored_time(at: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    at.len() == shape.len()
        && at.chars().zip(shape.chars()).all(|(c, s)| match s {
            'd' => c.is_ascii_digit(),
            _ => c == s,
        })
}

fn is_zero(amount: &str) -> bool {
    decimal(amount).is_zero()
}

fn decimal(amount: &str) -> Decimal {
    amount.parse().expect("a valid amount")
}

/// The payment an event is, if it is one: its amount as sent and its currency, upper-cased.
fn payment(kind: &EventKind) -> Option<(Option<&'static str>, Option<String>)> {
    let upper = |currency: Option<&str>| currency.map(str::to_ascii_uppercase);
    match *kind {
        // A purchase unless its amount is zero; one without an amount is still counted.
        EventKind::Purchase { amount, currency } if !amount.is_some_and(is_zero) => {
            Some((amount, upper(currency)))
        }
        // A start or a renewal with an amount above zero (amounts are never negative).
        EventKind::Subscription {
            suffix: "started" | "renewed",
            amount: Some(amount),
            currency,
            ..
        } if !is_zero(amount) => Some((Some(amount), upper(currency))),
        _ => None,
    }
}

/// The status a `subscription_<suffix>` event sets, if any.
fn subscription_status(suffix: &str) -> Option<&'static str> {
    match suffix {
        "started" | "renewed" | "resumed" | "reactivated" | "restarted" => Some("active"),
        "cancelled" | "canceled" => Some("cancelled"),
        "expired" => Some("expired"),
        "paused" => Some("paused"),
        "trial_started" => Some("trialing"),
        _ => None,
    }
}

/// What a subscription status says of `is_active_customer` (a trial says nothing).
fn customer_in(status: &str) -> Option<bool> {
    match status {
        "active" => Some(true),
        "cancelled" | "expired" | "paused" => Some(false),
        _ => None,
    }
}

/// An event's candidate for one last-value field.
struct Offer {
    field: &'static str,
    at: String,
    /// What the field shows when this offer wins (a payment: its amount and currency).
    value: Value,
    /// Orders offers of the same millisecond: the greater wins.
    tie: String,
}

/// The first 16 hex digits of the SHA-256 of `<amount>\n<currency>` (each empty when the
/// payment has none): the documented tie-break of two payments in the same millisecond.
fn payment_tie_break(amount: Option<&str>, currency: Option<&str>) -> String {
    let digest = Sha256::digest(format!(
        "{}\n{}",
        amount.unwrap_or(""),
        currency.unwrap_or("")
    ));
    hex::encode(digest)[..16].to_owned()
}

/// The offers of one event, all at its time.
struct Offers<'a> {
    at: &'a str,
    list: Vec<Offer>,
}

impl Offers<'_> {
    fn offer(&mut self, field: &'static str, value: Value, tie: String) {
        self.list.push(Offer {
            field,
            at: self.at.to_owned(),
            value,
            tie,
        });
    }

    /// A time-only field shows the event's time: two offers of one millisecond are equal.
    fn time(&mut self, field: &'static str) {
        self.offer(field, json!(self.at), String::new());
    }

    /// Between texts of one millisecond the greater wins.
    fn text(&mut self, field: &'static str, text: &str) {
        self.offer(field, json!(text), text.to_owned());
    }

    /// Between flags of one millisecond `true` wins.
    fn flag(&mut self, field: &'static str, flag: bool) {
        self.offer(field, json!(flag), u8::from(flag).to_string());
    }
}

/// Every offer one event makes.
fn offers(fact: &Fact) -> Vec<Offer> {
    let mut offers = Offers {
        at: &fact.at,
        list: Vec::new(),
    };
    match &fact.kind {
        EventKind::Install { platform, version } => {
            offers.time("installed_at");
            if let Some(p) = platform {
                offers.text("install_platform", p);
            }
            if let Some(v) = version {
                offers.text("app_version", v);
            }
            offers.flag("is_installed", true);
        }
        EventKind::Open { version } => {
            offers.time("last_opened_at");
            if let Some(v) = version {
                offers.text("app_version", v);
            }
            offers.flag("is_installed", true);
        }
        EventKind::Uninstall => {
            offers.time("uninstalled_at");
            offers.flag("is_installed", false);
        }
        EventKind::Subscription {
            suffix,
            plan,
            ends_at,
            ..
        } => {
            offers.time("subscription_updated_at");
            if let Some(ends_at) = ends_at {
                offers.text("subscription_ends_at", ends_at);
            }
            if *suffix == "started" {
                offers.time("subscription_started_at");
            }
            let status = subscription_status(suffix);
            if let Some(s) = status {
                offers.text("subscription_status", s);
            }
            if let Some(p) = plan {
                offers.text("plan", p);
            }
            if let Some(c) = status.and_then(customer_in) {
                offers.flag("is_active_customer", c);
            }
        }
        EventKind::Purchase { .. } | EventKind::Custom => {}
    }
    if let Some((amount, currency)) = payment(&fact.kind) {
        let value = json!({"amount": amount, "currency": currency});
        let tie = payment_tie_break(amount, currency.as_deref());
        offers.offer("last_payment", value, tie);
        offers.text(OLDEST_WINS, currency.as_deref().unwrap_or(NO_CURRENCY));
        offers.flag("is_active_customer", true);
    }
    offers.list
}

/// The offer a field keeps: of those at its newest time (the oldest for the first
/// payment's currency), the one with the greatest tie-break.
fn winner<'a>(offers: &'a [Offer], field: &str) -> Option<&'a Offer> {
    let mine = || offers.iter().filter(move |offer| offer.field == field);
    let times = mine().map(|offer| &offer.at);
    let at = if field == OLDEST_WINS {
        times.min()
    } else {
        times.max()
    }?;
    mine()
        .filter(|offer| offer.at == *at)
        .max_by(|a, b| a.tie.cmp(&b.tie))
}

/// Money as the API shows totals: at least two decimal places.
fn money(amount: Decimal) -> String {
    let mut amount = amount;
    if amount.scale() < 2 {
        amount.rescale(2);
    }
    amount.to_string()
}

/// The fields the model predicts, in the order they are checked.
pub const FIELDS: [&str; 20] = [
    "install_count",
    "total_payments_count",
    "revenue_by_currency",
    "lifetime_value",
    "lifetime_value_currency",
    "last_payment_at",
    "last_payment_amount",
    "last_payment_currency",
    "installed_at",
    "install_platform",
    "last_opened_at",
    "uninstalled_at",
    "is_installed",
    "app_version",
    "is_active_customer",
    "subscription_status",
    "plan",
    "subscription_updated_at",
    "subscription_started_at",
    "last_event_at",
];

/// The client record's derived fields by name.
pub type Record = BTreeMap<&'static str, Value>;

/// The client record's derived fields (`Null` when absent), from a user's distinct events.
pub fn record<'a>(facts: impl IntoIterator<Item = &'a Fact>) -> Record {
    let facts: Vec<&Fact> = facts.into_iter().collect();
    for fact in &facts {
        assert!(is_stored_time(&fact.at), "not a stored time: {}", fact.at);
    }
    let offers: Vec<Offer> = facts.iter().flat_map(|fact| offers(fact)).collect();
    let installs = facts
        .iter()
        .filter(|fact| matches!(fact.kind, EventKind::Install { .. }))
        .count();
    let payments: Vec<_> = facts
        .iter()
        .filter_map(|fact| payment(&fact.kind))
        .collect();
    let mut revenue: BTreeMap<String, Decimal> = BTreeMap::new();
    for (amount, currency) in &payments {
        if let Some(amount) = amount {
            let currency = currency.as_deref().unwrap_or(NO_CURRENCY);
            *revenue.entry(currency.to_owned()).or_default() += decimal(amount);
        }
    }
    let value = |field| winner(&offers, field).map(|offer| offer.value.clone());
    let last_payment = winner(&offers, "last_payment");
    let of_payment = |key: &str| last_payment.map(|offer| offer.value[key].clone());
    let ltv_currency = value(OLDEST_WINS);
    // The revenue in the first payment's currency (none yet: zero).
    let ltv = ltv_currency.as_ref().map(|currency| {
        let code = currency.as_str().expect("a currency code");
        json!(money(revenue.get(code).copied().unwrap_or_default()))
    });
    let by_currency: Map<String, Value> = revenue
        .iter()
        .map(|(currency, total)| (currency.clone(), json!(money(*total))))
        .collect();
    let fields: [(&str, Option<Value>); 20] = [
        ("install_count", (installs > 0).then(|| json!(installs))),
        (
            "total_payments_count",
            (!payments.is_empty()).then(|| json!(payments.len())),
        ),
        (
            "revenue_by_currency",
            (!by_currency.is_empty()).then_some(Value::Object(by_currency)),
        ),
        ("lifetime_value", ltv),
        ("lifetime_value_currency", ltv_currency),
        ("last_payment_at", last_payment.map(|offer| json!(offer.at))),
        ("last_payment_amount", of_payment("amount")),
        ("last_payment_currency", of_payment("currency")),
        ("installed_at", value("installed_at")),
        ("install_platform", value("install_platform")),
        ("last_opened_at", value("last_opened_at")),
        ("uninstalled_at", value("uninstalled_at")),
        ("is_installed", value("is_installed")),
        ("app_version", value("app_version")),
        ("is_active_customer", value("is_active_customer")),
        ("subscription_status", value("subscription_status")),
        ("plan", value("plan")),
        ("subscription_updated_at", value("subscription_updated_at")),
        ("subscription_started_at", value("subscription_started_at")),
        // The newest event's time, whatever the event.
        (
            "last_event_at",
            facts.iter().map(|fact| &fact.at).max().map(|at| json!(at)),
        ),
    ];
    debug_assert!(fields.iter().map(|(name, _)| *name).eq(FIELDS));
    fields
        .into_iter()
        .map(|(name, value)| (name, value.unwrap_or(Value::Null)))
        .collect()
}

// ------------------------------------------------------------------ computed states

/// An org's lifecycle thresholds in days (the documented defaults: 7, 7, 30, 90).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub new_days: i64,
    pub at_risk_days: i64,
    pub dormant_days: i64,
    pub churned_days: i64,
}

pub const DEFAULT_THRESHOLDS: Thresholds = Thresholds {
    new_days: 7,
    at_risk_days: 7,
    dormant_days: 30,
    churned_days: 90,
};

/// Milliseconds since 1970 of a stored time (`2026-03-01T12:00:00.000Z`), by the civil
/// calendar (days before a year: 365 a year plus its leap days).
pub fn millis(at: &str) -> i64 {
    assert!(is_stored_time(at), "not a stored time: {at}");
    let part = |range: std::ops::Range<usize>| at[range].parse::<i64>().expect("digits");
    let (year, month, day) = (part(0..4), part(5..7), part(8..10));
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut days: i64 = if year >= 1970 {
        (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum()
    } else {
        -(year..1970)
            .map(|y| if leap(y) { 366 } else { 365 })
            .sum::<i64>()
    };
    days += days_in_month[..(month - 1) as usize].iter().sum::<i64>();
    if month > 2 && leap(year) {
        days += 1;
    }
    days += day - 1;
    let seconds = days * 86_400 + part(11..13) * 3_600 + part(14..16) * 60 + part(17..19);
    seconds * 1_000 + part(20..23)
}

const DAY_MS: i64 = 86_400_000;

/// The lifecycle stage at `as_of` of a client known only from its events (so first seen is
/// its first event): the documented rules, in their documented order.
pub fn lifecycle_stage<'a>(
    facts: impl IntoIterator<Item = &'a Fact>,
    thresholds: &Thresholds,
    as_of: &str,
) -> &'static str {
    let facts: Vec<&Fact> = facts.into_iter().collect();
    let mut instants: Vec<i64> = facts.iter().map(|fact| millis(&fact.at)).collect();
    instants.sort_unstable();
    instants.dedup();
    let (Some(&first), Some(&last)) = (instants.first(), instants.last()) else {
        return "new";
    };
    // The most recent activity before the last one, if any (a repeat of an instant is not one).
    let previous = instants.iter().rev().nth(1).copied();
    let uninstall = facts
        .iter()
        .filter(|fact| fact.kind == EventKind::Uninstall)
        .map(|fact| millis(&fact.at))
        .max();
    let now = millis(as_of);
    let idle = (now - last).max(0);
    let days = |n: i64| n * DAY_MS;
    if uninstall == Some(last) || idle >= days(thresholds.churned_days) {
        "churned"
    } else if idle >= days(thresholds.dormant_days) {
        "dormant"
    } else if idle >= days(thresholds.at_risk_days) {
        "at_risk"
    } else if previous.is_some_and(|p| last - p >= days(thresholds.dormant_days))
        && idle < days(thresholds.new_days)
    {
        "resurrected"
    } else if now - first < days(thresholds.new_days) {
        "new"
    } else {
        "active"
    }
}

/// The billing state at `as_of` of a client known only from its events.
pub fn billing_state<'a>(facts: impl IntoIterator<Item = &'a Fact>, as_of: &str) -> &'static str {
    let facts: Vec<&Fact> = facts.into_iter().collect();
    let record = record(facts.iter().copied());
    let offers: Vec<Offer> = facts.iter().flat_map(|fact| offers(fact)).collect();
    let ends_at = winner(&offers, "subscription_ends_at").map(|offer| offer.value.clone());
    let not_past = ends_at
        .as_ref()
        .and_then(Value::as_str)
        .is_none_or(|ends| millis(ends) > millis(as_of));
    let paid = !record["total_payments_count"].is_null() || !record["last_payment_at"].is_null();
    let customer = record["is_active_customer"] == json!(true);
    let status = record["subscription_status"].as_str();
    let known = [
        "trialing",
        "active",
        "cancelled",
        "canceled",
        "expired",
        "paused",
    ];
    match status {
        Some("past_due" | "unpaid") => "past_due",
        Some("trialing") if not_past => "trialing",
        Some("active") if not_past => "paying",
        Some("cancelled" | "canceled") if not_past => "canceled",
        Some(status) if known.contains(&status) => lapsed_or_none(paid),
        _ if customer => "paying",
        _ => lapsed_or_none(paid),
    }
}

fn lapsed_or_none(paid: bool) -> &'static str {
    if paid {
        "lapsed"
    } else {
        "none"
    }
}

/// The most event names a client keeps apart: the smallest (in byte order) of all it sent.
pub const MAX_EVENT_NAMES: usize = 64;

/// Per event name, its count and newest event time: `{"app_opened": {"count": 2,
/// "last_at": ...}}` (every distinct event once), for the [`MAX_EVENT_NAMES`] smallest names;
/// and the other names' events together (`None` when there are none).
pub fn events_by_name<'a>(facts: impl IntoIterator<Item = &'a Fact>) -> (Value, Option<Value>) {
    let mut names: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for fact in facts {
        let entry = names
            .entry(fact.name_and_properties().0)
            .or_insert((0, fact.at.clone()));
        entry.0 += 1;
        if fact.at > entry.1 {
            entry.1 = fact.at.clone();
        }
    }
    let shown = |(count, at): &(u64, String)| json!({"count": count, "last_at": at});
    let kept: Map<String, Value> = names
        .iter()
        .take(MAX_EVENT_NAMES)
        .map(|(name, entry)| (name.clone(), shown(entry)))
        .collect();
    let rest = names
        .values()
        .skip(MAX_EVENT_NAMES)
        .fold(None, |sum, (count, at)| {
            let (total, latest) = sum.unwrap_or((0, String::new()));
            Some((total + count, latest.max(at.clone())))
        });
    (Value::Object(kept), rest.as_ref().map(shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(at: &str, kind: EventKind) -> Fact {
        Fact {
            at: at.to_owned(),
            kind,
        }
    }

    fn purchase(at: &str, amount: &'static str, currency: Option<&'static str>) -> Fact {
        fact(
            at,
            EventKind::Purchase {
                amount: Some(amount),
                currency,
            },
        )
    }

    /// A subscription event without an amount: never a payment.
    fn subscription(suffix: &'static str, plan: Option<&'static str>) -> EventKind {
        EventKind::Subscription {
            suffix,
            amount: None,
            currency: None,
            plan,
            ends_at: None,
        }
    }

    #[test]
    fn the_issue_example_counts_every_purchase_in_its_currency() {
        let facts = [
            purchase("2026-03-01T12:00:00.000Z", "20.00", Some("USD")),
            purchase("2026-03-01T11:00:00.000Z", "10.00", Some("USD")),
            purchase("2026-03-01T12:00:00.000Z", "5.00", Some("USD")),
            purchase("2026-03-01T11:30:00.000Z", "1000", Some("JPY")),
            purchase("2026-03-01T12:00:00.000Z", "0.00", Some("USD")),
            purchase("2026-03-01T10:00:00.000Z", "3", None),
        ];
        let record = record(&facts);
        assert_eq!(record["total_payments_count"], 5);
        assert_eq!(
            record["revenue_by_currency"],
            json!({"USD": "35.00", "JPY": "1000.00", "XXX": "3.00"})
        );
        assert_eq!(record["lifetime_value_currency"], "XXX");
        assert_eq!(record["lifetime_value"], "3.00");
        assert_eq!(record["last_payment_at"], "2026-03-01T12:00:00.000Z");
        assert_eq!(record["last_event_at"], "2026-03-01T12:00:00.000Z");
    }

    #[test]
    fn trials_cancellations_and_zero_amounts_are_not_payments() {
        let facts = [
            fact(
                "2026-03-01T12:00:00.000Z",
                EventKind::Subscription {
                    suffix: "trial_started",
                    amount: Some("0.00"),
                    currency: Some("USD"),
                    plan: Some("pro"),
                    ends_at: None,
                },
            ),
            fact(
                "2026-03-01T13:00:00.000Z",
                EventKind::Subscription {
                    suffix: "cancelled",
                    amount: Some("9.99"),
                    currency: Some("USD"),
                    plan: None,
                    ends_at: None,
                },
            ),
        ];
        let record = record(&facts);
        assert_eq!(record["total_payments_count"], Value::Null);
        assert_eq!(record["is_active_customer"], false);
        assert_eq!(record["subscription_status"], "cancelled");
        assert_eq!(record["plan"], "pro");
    }

    #[test]
    fn ties_in_one_millisecond_go_to_the_greater_value_and_true() {
        let at = "2026-03-01T12:00:00.000Z";
        let renewed = |plan| subscription("renewed", Some(plan));
        let facts = [
            fact(at, renewed("pro")),
            fact(at, renewed("basic")),
            fact(at, EventKind::Uninstall),
            fact(at, EventKind::Open { version: None }),
            fact("2026-03-01T11:00:00.000Z", renewed("team")),
        ];
        let record = record(&facts);
        assert_eq!(record["plan"], "pro");
        assert_eq!(record["is_installed"], true);
        assert_eq!(record["subscription_updated_at"], at);
    }

    #[test]
    fn two_payments_in_one_millisecond_are_ordered_by_the_hash_of_amount_and_currency() {
        // `printf '5.00\nUSD' | sha256sum` and `printf '10.00\nJPY' | sha256sum`.
        assert_eq!(
            payment_tie_break(Some("5.00"), Some("USD")),
            "06f9047a4ad7bc13"
        );
        assert_eq!(
            payment_tie_break(Some("10.00"), Some("JPY")),
            "74e3279024f4bf09"
        );
        let at = "2026-03-01T12:00:00.000Z";
        let facts = [
            purchase(at, "5.00", Some("usd")),
            purchase(at, "10.00", Some("JPY")),
        ];
        let record = record(&facts);
        assert_eq!(record["last_payment_amount"], "10.00");
        assert_eq!(record["last_payment_currency"], "JPY");
        // The first payment's currency: of one millisecond, the greater code.
        assert_eq!(record["lifetime_value_currency"], "USD");
        assert_eq!(record["lifetime_value"], "5.00");
    }

    #[test]
    fn times_are_counted_in_milliseconds_since_1970() {
        assert_eq!(millis("1970-01-01T00:00:00.000Z"), 0);
        assert_eq!(millis("2000-03-01T00:00:00.001Z"), 951_868_800_001);
        assert_eq!(millis("2026-03-01T12:00:00.500Z"), 1_772_366_400_500);
        assert_eq!(millis("1969-12-31T23:59:59.000Z"), -1_000);
    }

    #[test]
    fn a_late_event_inside_the_gap_closes_it() {
        let open = |at: &str| fact(at, EventKind::Open { version: None });
        let back = [
            open("2026-01-01T00:00:00.000Z"),
            open("2026-02-15T00:00:00.000Z"),
        ];
        let as_of = "2026-02-16T00:00:00.000Z";
        assert_eq!(
            lifecycle_stage(&back, &DEFAULT_THRESHOLDS, as_of),
            "resurrected"
        );
        let closed = [
            back[0].clone(),
            back[1].clone(),
            open("2026-02-01T00:00:00.000Z"),
        ];
        assert_eq!(
            lifecycle_stage(&closed, &DEFAULT_THRESHOLDS, as_of),
            "active"
        );
        let (names, rest) = events_by_name(&closed);
        assert_eq!(rest, None);
        assert_eq!(names["app_opened"]["count"], 3);
        assert_eq!(names["app_opened"]["last_at"], "2026-02-15T00:00:00.000Z");
    }

    #[test]
    fn a_pause_ends_the_customer_state_and_a_later_renewal_restores_it() {
        let paused = [
            purchase("2026-03-01T10:00:00.000Z", "5.00", None),
            fact("2026-03-01T11:00:00.000Z", subscription("paused", None)),
        ];
        assert_eq!(record(&paused)["is_active_customer"], false);
        assert_eq!(record(&paused)["subscription_status"], "paused");
        let renewed = [
            paused[1].clone(),
            fact("2026-03-01T12:00:00.000Z", subscription("renewed", None)),
        ];
        assert_eq!(record(&renewed)["is_active_customer"], true);
        assert_eq!(record(&renewed)["total_payments_count"], Value::Null);
    }
}
