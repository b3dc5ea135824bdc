//! A reference model of the client record: its derived fields as a function of the set of
//! a user's distinct events, the documented rules (docs/api-guide.md, "The client record") written out
//! for a small event vocabulary, independently of the server's `facts::contribution` and of
//! its conditional writes. Only the ordering of two offers (newest event time, then the
//! documented tie-break) is the shared `facts::Offer`. The property test
//! (`shared/tests/api/record_properties.rs`) and `make soak` both check the stored records
//! against it.

use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use shared::facts::{Field, Latest, Offer};
use std::collections::BTreeMap;

/// What a soak event is, with the properties it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
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
    },
    /// `level_up`: only activity.
    Custom,
}

/// One distinct event of a user: its time (as stored) and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub at: String,
    pub kind: Kind,
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
            Kind::Install { platform, version } => {
                put("install_platform", *platform);
                put("app_version", *version);
                "app_installed".to_owned()
            }
            Kind::Open { version } => {
                put("app_version", *version);
                "app_opened".to_owned()
            }
            Kind::Uninstall => "app_uninstalled".to_owned(),
            Kind::Purchase { amount, currency } => {
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
            Kind::Custom => "level_up".to_owned(),
        };
        (name, Value::Object(properties))
    }
}

fn text(value: &str) -> Latest {
    Latest::Text(value.to_owned())
}

fn decimal(amount: &str) -> Decimal {
    amount.parse().expect("a valid amount")
}

fn above_zero(amount: Option<&str>) -> bool {
    amount.is_some_and(|amount| !decimal(amount).is_zero())
}

/// What one event says: its offers for last-value fields, whether it is an install, and
/// the payment it is (amount and currency as sent).
struct Effect {
    offers: Vec<(Field, Latest)>,
    install: bool,
    payment: Option<(Option<&'static str>, Option<&'static str>)>,
}

fn effect(kind: &Kind) -> Effect {
    let mut offers = Vec::new();
    let mut install = false;
    let mut payment = None;
    match kind {
        Kind::Install { platform, version } => {
            offers.push((Field::InstalledAt, Latest::Time));
            offers.extend(platform.map(|p| (Field::InstallPlatform, text(p))));
            offers.extend(version.map(|v| (Field::AppVersion, text(v))));
            offers.push((Field::IsInstalled, Latest::Flag(true)));
            install = true;
        }
        Kind::Open { version } => {
            offers.push((Field::LastOpenedAt, Latest::Time));
            offers.extend(version.map(|v| (Field::AppVersion, text(v))));
            offers.push((Field::IsInstalled, Latest::Flag(true)));
        }
        Kind::Uninstall => {
            offers.push((Field::UninstalledAt, Latest::Time));
            offers.push((Field::IsInstalled, Latest::Flag(false)));
        }
        // A purchase is a payment unless its amount is zero.
        Kind::Purchase { amount, currency } => {
            if amount.is_none() || above_zero(*amount) {
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
            let status = match *suffix {
                "started" | "renewed" | "resumed" => Some("active"),
                "cancelled" => Some("cancelled"),
                "expired" => Some("expired"),
                "trial_started" => Some("trialing"),
                _ => None,
            };
            offers.extend(status.map(|s| (Field::SubscriptionStatus, text(s))));
            offers.extend(plan.map(|p| (Field::Plan, text(p))));
            // Only a start or a renewal above zero is a payment; a trial or a cancellation
            // carrying the plan price never is.
            if matches!(*suffix, "started" | "renewed") && above_zero(*amount) {
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
        offers.push((
            Field::LastPayment,
            Latest::Payment {
                amount: amount.map(|a| decimal(a).to_string()),
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
    let mut installs = 0u64;
    let mut payments = 0u64;
    let mut revenue: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut winners: BTreeMap<Field, Offer> = BTreeMap::new();
    let mut last_event_at: Option<&str> = None;
    for fact in facts {
        let effect = effect(&fact.kind);
        installs += u64::from(effect.install);
        if let Some((amount, currency)) = effect.payment {
            payments += 1;
            if let Some(amount) = amount {
                *revenue
                    .entry(currency.unwrap_or("XXX").to_owned())
                    .or_default() += decimal(amount);
            }
        }
        for (field, value) in effect.offers {
            let offer = Offer {
                field,
                at: fact.at.parse().expect("a stored time"),
                value,
            };
            let current = winners.get(&field).map(Offer::position);
            if offer.wins_over(current.as_ref()) {
                winners.insert(field, offer);
            }
        }
        last_event_at = last_event_at.max(Some(&fact.at));
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
    let payment = winner(Field::LastPayment).and_then(|offer| match &offer.value {
        Latest::Payment { amount, currency } => Some((amount.clone(), currency.clone())),
        _ => None,
    });
    let ltv_currency = value(Field::LifetimeValueCurrency);
    let ltv = ltv_currency.as_ref().map(|currency| {
        let total = currency
            .as_str()
            .and_then(|code| revenue.get(code))
            .copied()
            .unwrap_or_default();
        json!(money(total))
    });
    let by_currency: Map<String, Value> = revenue
        .iter()
        .map(|(currency, total)| (currency.clone(), json!(money(*total))))
        .collect();
    let (payment_amount, payment_currency) = payment.unwrap_or_default();
    let fields: [(&str, Option<Value>); 20] = [
        ("install_count", (installs > 0).then(|| json!(installs))),
        (
            "total_payments_count",
            (payments > 0).then(|| json!(payments)),
        ),
        (
            "revenue_by_currency",
            (!by_currency.is_empty()).then_some(Value::Object(by_currency)),
        ),
        ("lifetime_value", ltv),
        ("lifetime_value_currency", ltv_currency),
        ("last_payment_at", at(Field::LastPayment)),
        ("last_payment_amount", payment_amount.map(Value::from)),
        ("last_payment_currency", payment_currency.map(Value::from)),
        ("installed_at", at(Field::InstalledAt)),
        ("install_platform", value(Field::InstallPlatform)),
        ("last_opened_at", at(Field::LastOpenedAt)),
        ("uninstalled_at", at(Field::UninstalledAt)),
        ("is_installed", value(Field::IsInstalled)),
        ("app_version", value(Field::AppVersion)),
        ("is_active_customer", value(Field::IsActiveCustomer)),
        ("subscription_status", value(Field::SubscriptionStatus)),
        ("plan", value(Field::Plan)),
        ("subscription_updated_at", at(Field::SubscriptionUpdatedAt)),
        ("subscription_started_at", at(Field::SubscriptionStartedAt)),
        ("last_event_at", last_event_at.map(|at| json!(at))),
    ];
    debug_assert!(fields.iter().map(|(name, _)| *name).eq(FIELDS));
    fields
        .into_iter()
        .map(|(name, value)| (name, value.unwrap_or(Value::Null)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(at: &str, kind: Kind) -> Fact {
        Fact {
            at: at.to_owned(),
            kind,
        }
    }

    fn purchase(at: &str, amount: &'static str, currency: Option<&'static str>) -> Fact {
        fact(
            at,
            Kind::Purchase {
                amount: Some(amount),
                currency,
            },
        )
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
                Kind::Subscription {
                    suffix: "trial_started",
                    amount: Some("0.00"),
                    currency: Some("USD"),
                    plan: Some("pro"),
                },
            ),
            fact(
                "2026-03-01T13:00:00.000Z",
                Kind::Subscription {
                    suffix: "cancelled",
                    amount: Some("9.99"),
                    currency: Some("USD"),
                    plan: None,
                },
            ),
        ];
        let record = record(&facts);
        assert_eq!(record["total_payments_count"], Value::Null);
        assert_eq!(record["is_active_customer"], false);
        assert_eq!(record["subscription_status"], "cancelled");
        assert_eq!(record["plan"], "pro");
    }
}
