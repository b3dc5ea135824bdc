//! What one event tells about its client, in a form that combines in any order.
//!
//! A client record must be a function of the *set* of distinct events it has seen, never of
//! their arrival order (mobile SDKs flush offline queues late, backfills arrive newest
//! first, two purchases share a second). So an event contributes two kinds of facts:
//!
//! - **Counts** (installs, payments, revenue in the payment's own currency). They are added
//!   once per distinct event: the event item and the user's counters are written in one
//!   transaction, so "the event is stored" and "its counts are added" are the same fact.
//!   Addition commutes, so the order never matters.
//! - **Offers** for last-value fields (`installed_at`, `plan`, the last payment...). Each
//!   [`Field`] keeps one offer: the one with the newest event time (the oldest for
//!   [`Pick::Oldest`]), and between offers of the same millisecond the one with the greater
//!   [`Latest::tie_break`], so every arrival order picks the same offer. The last payment's
//!   time, amount and currency are one offer, so they always come from one payment.
//!
//! Nothing here talks to storage: the store turns a [`Contribution`] into guarded writes,
//! and the user view merges what the fields hold with what `users/upsert` sent.

use crate::error::ApiError;
use crate::fields::{Currency, Metadata, Money, ShortText, Timestamp};
use crate::input::Event;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The currency a payment sent without `properties.currency` is counted in: ISO 4217's
/// code for "no currency", so it is never added to a real currency's total.
pub const NO_CURRENCY: &str = "XXX";

/// Which offer a field keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Newest,
    Oldest,
}

/// A client field that events keep as "the value of the newest (or oldest) event that
/// carries it". Each is stored apart from what `users/upsert` sent (the user view merges
/// the two), together with the time of the event it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The newest `app_installed`.
    InstalledAt,
    /// The newest `app_opened`.
    LastOpenedAt,
    /// The newest `app_uninstalled`.
    UninstalledAt,
    /// The newest `subscription_*` event.
    SubscriptionUpdatedAt,
    /// The newest `subscription_started`.
    SubscriptionStartedAt,
    /// From the newest install that carries them.
    InstallPlatform,
    InstallSource,
    /// From the newest install or open that carries one.
    AppVersion,
    /// From the newest install or open (true) or uninstall (false).
    IsInstalled,
    /// From the newest payment (true) or subscription state change.
    IsActiveCustomer,
    /// From the newest `subscription_*` event that carries them.
    SubscriptionStatus,
    Plan,
    BillingModel,
    BillingInterval,
    SubscriptionEndsAt,
    NextBillingAt,
    /// The newest payment: its time, amount and currency, always together.
    LastPayment,
    /// The currency of the first payment: the currency `lifetime_value` is counted in.
    LifetimeValueCurrency,
}

impl Field {
    pub const ALL: [Field; 18] = [
        Field::InstalledAt,
        Field::LastOpenedAt,
        Field::UninstalledAt,
        Field::SubscriptionUpdatedAt,
        Field::SubscriptionStartedAt,
        Field::InstallPlatform,
        Field::InstallSource,
        Field::AppVersion,
        Field::IsInstalled,
        Field::IsActiveCustomer,
        Field::SubscriptionStatus,
        Field::Plan,
        Field::BillingModel,
        Field::BillingInterval,
        Field::SubscriptionEndsAt,
        Field::NextBillingAt,
        Field::LastPayment,
        Field::LifetimeValueCurrency,
    ];

    /// Whether the field holds only a time (`installed_at`...), not a value with its time.
    pub fn is_time_only(self) -> bool {
        matches!(
            self,
            Field::InstalledAt
                | Field::LastOpenedAt
                | Field::UninstalledAt
                | Field::SubscriptionUpdatedAt
                | Field::SubscriptionStartedAt
        )
    }

    pub fn pick(self) -> Pick {
        match self {
            Field::LifetimeValueCurrency => Pick::Oldest,
            _ => Pick::Newest,
        }
    }

    /// The client field's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Field::InstalledAt => "installed_at",
            Field::LastOpenedAt => "last_opened_at",
            Field::UninstalledAt => "uninstalled_at",
            Field::SubscriptionUpdatedAt => "subscription_updated_at",
            Field::SubscriptionStartedAt => "subscription_started_at",
            Field::InstallPlatform => "install_platform",
            Field::InstallSource => "install_source",
            Field::AppVersion => "app_version",
            Field::IsInstalled => "is_installed",
            Field::IsActiveCustomer => "is_active_customer",
            Field::SubscriptionStatus => "subscription_status",
            Field::Plan => "plan",
            Field::BillingModel => "billing_model",
            Field::BillingInterval => "billing_interval",
            Field::SubscriptionEndsAt => "subscription_ends_at",
            Field::NextBillingAt => "next_billing_at",
            Field::LastPayment => "last_payment",
            Field::LifetimeValueCurrency => "lifetime_value_currency",
        }
    }
}

/// What an event says a field is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Latest {
    /// Only the time: the field is the event time (`installed_at`...).
    Time,
    Text(String),
    Flag(bool),
    /// Amount (as sent, scale kept) and currency, either of which a payment may lack.
    Payment {
        amount: Option<String>,
        currency: Option<String>,
    },
}

impl Latest {
    /// What orders two offers made at the same millisecond: the greater wins. For texts the
    /// text itself, `true` over `false`, and for a payment the first 16 hex digits of the
    /// SHA-256 of its amount and currency. So every arrival order picks the same offer.
    pub fn tie_break(&self) -> String {
        match self {
            Latest::Time => String::new(),
            Latest::Text(text) => text.clone(),
            Latest::Flag(flag) => u8::from(*flag).to_string(),
            Latest::Payment { amount, currency } => {
                let canonical = format!(
                    "{}\n{}",
                    amount.as_deref().unwrap_or(""),
                    currency.as_deref().unwrap_or("")
                );
                hex::encode(Sha256::digest(canonical))[..16].to_owned()
            }
        }
    }
}

/// An event's candidate value for one field, at the event's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub field: Field,
    pub at: Timestamp,
    pub value: Latest,
}

/// Where an offer stands: the stored time of its event and its tie-break.
pub type Position = (String, String);

impl Offer {
    pub fn position(&self) -> Position {
        (self.at.to_stored(), self.value.tie_break())
    }

    /// Whether this offer replaces what the field holds now (`None`: nothing yet). Equal
    /// positions change nothing: the same offer again is a no-op.
    pub fn wins_over(&self, current: Option<&Position>) -> bool {
        wins(self.field.pick(), &self.position(), current)
    }
}

/// Whether a value at `mine` replaces one at `current` in a field that keeps `pick`.
pub fn wins(pick: Pick, mine: &Position, current: Option<&Position>) -> bool {
    let Some((at, tie)) = current else {
        return true;
    };
    let (my_at, my_tie) = mine;
    let by_time = match pick {
        Pick::Newest => my_at.cmp(at),
        Pick::Oldest => at.cmp(my_at),
    };
    by_time.then_with(|| my_tie.cmp(tie)) == std::cmp::Ordering::Greater
}

/// Everything one event adds to its client record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Contribution {
    pub offers: Vec<Offer>,
    /// `app_installed` events: 1 or 0.
    pub installs: u32,
    /// Payments: 1 or 0.
    pub payments: u32,
    /// The payment's amount in its currency ([`NO_CURRENCY`] when it named none).
    pub revenue: Option<(String, Decimal)>,
}

/// Reads an optional typed property, naming it `properties.<key>` when it is malformed.
fn property<T: DeserializeOwned>(
    properties: Option<&Metadata>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match properties.and_then(|p| p.get(key)) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => T::deserialize(value).map(Some).map_err(|error| {
            ApiError::invalid_field(
                format!("properties.{key}"),
                format!("`properties.{key}` {error}"),
            )
        }),
    }
}

/// The subscription status a `subscription_<suffix>` event implies, if any.
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

/// Whether a subscription in `status` makes the client a customer (`Some(true)`), stops it
/// being one (`Some(false)`), or says nothing about it (`None`: a trial, an unknown status).
fn customer_in_status(status: &str) -> Option<bool> {
    match status {
        "active" => Some(true),
        "cancelled" | "canceled" | "expired" | "paused" => Some(false),
        _ => None,
    }
}

struct Builder<'a> {
    at: Timestamp,
    properties: Option<&'a Metadata>,
    contribution: Contribution,
}

impl Builder<'_> {
    fn offer(&mut self, field: Field, value: Latest) {
        self.contribution.offers.push(Offer {
            field,
            at: self.at,
            value,
        });
    }

    /// Offers `properties.<field name>`, if the event carries it.
    fn text_property(&mut self, field: Field) -> Result<(), ApiError> {
        if let Some(text) = property::<ShortText>(self.properties, field.name())? {
            self.offer(field, Latest::Text(text.as_str().to_owned()));
        }
        Ok(())
    }

    fn time_property(&mut self, field: Field) -> Result<(), ApiError> {
        if let Some(at) = property::<Timestamp>(self.properties, field.name())? {
            self.offer(field, Latest::Text(at.to_stored()));
        }
        Ok(())
    }

    /// A payment of `amount` (none: an amount the event did not say) in `currency`.
    fn payment(&mut self, amount: Option<Money>, currency: Option<Currency>) {
        let code = currency
            .as_ref()
            .map_or(NO_CURRENCY.to_owned(), |c| c.as_str().to_owned());
        self.offer(
            Field::LastPayment,
            Latest::Payment {
                amount: amount.map(|a| a.decimal().to_string()),
                currency: currency.map(|c| c.as_str().to_owned()),
            },
        );
        self.offer(Field::LifetimeValueCurrency, Latest::Text(code.clone()));
        self.offer(Field::IsActiveCustomer, Latest::Flag(true));
        self.contribution.payments = 1;
        self.contribution.revenue = amount.map(|amount| (code, amount.decimal()));
    }
}

/// `properties.amount` if it is above zero; `Err` names a malformed amount.
fn positive_amount(properties: Option<&Metadata>) -> Result<Option<Money>, ApiError> {
    Ok(property::<Money>(properties, "amount")?.filter(|amount| !amount.decimal().is_zero()))
}

/// What `event` contributes to its client record; empty for events that only attach to
/// the client (`user_signed_up`, custom events), whose only effect is the activity time.
pub fn contribution(event: &Event) -> Result<Contribution, ApiError> {
    let properties = event.properties.as_ref();
    let mut build = Builder {
        at: event.occurred_at,
        properties,
        contribution: Contribution::default(),
    };
    match event.name.as_str() {
        "app_installed" => {
            build.offer(Field::InstalledAt, Latest::Time);
            build.text_property(Field::InstallPlatform)?;
            build.text_property(Field::InstallSource)?;
            build.text_property(Field::AppVersion)?;
            build.offer(Field::IsInstalled, Latest::Flag(true));
            build.contribution.installs = 1;
        }
        "app_opened" => {
            build.offer(Field::LastOpenedAt, Latest::Time);
            build.text_property(Field::AppVersion)?;
            build.offer(Field::IsInstalled, Latest::Flag(true));
        }
        "app_uninstalled" => {
            build.offer(Field::UninstalledAt, Latest::Time);
            build.offer(Field::IsInstalled, Latest::Flag(false));
        }
        "user_purchased" => {
            // A purchase is a payment unless its amount is zero; one without an amount is
            // counted, with no revenue.
            let amount = property::<Money>(properties, "amount")?;
            let currency = property::<Currency>(properties, "currency")?;
            if amount.is_none_or(|amount| !amount.decimal().is_zero()) {
                build.payment(amount, currency);
            }
        }
        name => {
            let Some(suffix) = name.strip_prefix("subscription_") else {
                return Ok(build.contribution);
            };
            build.offer(Field::SubscriptionUpdatedAt, Latest::Time);
            if suffix == "started" {
                build.offer(Field::SubscriptionStartedAt, Latest::Time);
            }
            let status = match property::<ShortText>(properties, "subscription_status")? {
                Some(status) => Some(status.as_str().to_owned()),
                None => subscription_status(suffix).map(str::to_owned),
            };
            if let Some(status) = &status {
                build.offer(Field::SubscriptionStatus, Latest::Text(status.clone()));
            }
            for field in [Field::Plan, Field::BillingModel, Field::BillingInterval] {
                build.text_property(field)?;
            }
            for field in [Field::SubscriptionEndsAt, Field::NextBillingAt] {
                build.time_property(field)?;
            }
            // Only a start or a renewal with an amount above zero is a payment: a trial, a
            // cancellation carrying the plan price, a pause or an expiry never is.
            let amount = match suffix {
                "started" | "renewed" => positive_amount(properties)?,
                _ => None,
            };
            if let Some(amount) = amount {
                build.payment(Some(amount), property::<Currency>(properties, "currency")?);
            } else if let Some(customer) = status.as_deref().and_then(customer_in_status) {
                build.offer(Field::IsActiveCustomer, Latest::Flag(customer));
            }
        }
    }
    Ok(build.contribution)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_event;
    use serde_json::{json, Value};

    fn contribution_of(body: Value) -> Result<Contribution, ApiError> {
        let event = parse_event(&serde_json::to_vec(&body).unwrap(), Timestamp::now()).unwrap();
        contribution(&event)
    }

    fn event(name: &str, properties: Value) -> Contribution {
        contribution_of(json!({
            "event": name, "user": {"external_user_id": "u"},
            "event_timestamp": "2026-03-01T12:00:00Z", "properties": properties
        }))
        .unwrap()
    }

    fn fields(contribution: &Contribution) -> Vec<Field> {
        contribution
            .offers
            .iter()
            .map(|offer| offer.field)
            .collect()
    }

    fn value_of(contribution: &Contribution, field: Field) -> Option<&Latest> {
        contribution
            .offers
            .iter()
            .find(|offer| offer.field == field)
            .map(|offer| &offer.value)
    }

    #[test]
    fn an_install_counts_and_offers_what_it_carries() {
        let install = event("app_installed", json!({"install_platform": "ios", "x": 1}));
        assert_eq!(install.installs, 1);
        assert_eq!(
            fields(&install),
            [
                Field::InstalledAt,
                Field::InstallPlatform,
                Field::IsInstalled
            ]
        );
        assert_eq!(
            value_of(&install, Field::InstallPlatform),
            Some(&Latest::Text("ios".into()))
        );
    }

    #[test]
    fn purchases_are_payments_in_their_own_currency() {
        let purchase = event(
            "user_purchased",
            json!({"amount": "19.99", "currency": "jpy"}),
        );
        assert_eq!(purchase.payments, 1);
        assert_eq!(
            purchase.revenue,
            Some(("JPY".into(), Decimal::new(1999, 2)))
        );
        assert_eq!(
            value_of(&purchase, Field::LastPayment),
            Some(&Latest::Payment {
                amount: Some("19.99".into()),
                currency: Some("JPY".into())
            })
        );
        let without_currency = event("user_purchased", json!({"amount": "5"}));
        assert_eq!(without_currency.revenue.unwrap().0, NO_CURRENCY);
        let without_amount = event("user_purchased", json!({}));
        assert_eq!((without_amount.payments, without_amount.revenue), (1, None));
    }

    #[test]
    fn zero_amounts_trials_and_cancellations_are_never_payments() {
        for (name, properties) in [
            (
                "user_purchased",
                json!({"amount": "0.00", "currency": "USD"}),
            ),
            ("subscription_trial_started", json!({"amount": "0.00"})),
            ("subscription_cancelled", json!({"amount": "9.99"})),
            ("subscription_renewed", json!({})),
            ("subscription_paused", json!({"amount": "9.99"})),
            ("subscription_expired", json!({"amount": "9.99"})),
        ] {
            let contribution = event(name, properties);
            assert_eq!(contribution.payments, 0, "{name}");
            assert!(
                !fields(&contribution).contains(&Field::LastPayment),
                "{name}"
            );
        }
        let renewal = event("subscription_renewed", json!({"amount": "9.99"}));
        assert_eq!(renewal.payments, 1);
    }

    #[test]
    fn a_cancellation_ends_the_customer_state_and_a_trial_says_nothing() {
        let cancelled = event("subscription_cancelled", json!({}));
        assert_eq!(
            value_of(&cancelled, Field::IsActiveCustomer),
            Some(&Latest::Flag(false))
        );
        let trial = event("subscription_trial_started", json!({}));
        assert_eq!(value_of(&trial, Field::IsActiveCustomer), None);
        assert_eq!(
            value_of(&trial, Field::SubscriptionStatus),
            Some(&Latest::Text("trialing".into()))
        );
    }

    fn offer(field: Field, at: &str, value: Latest) -> Offer {
        Offer {
            field,
            at: at.parse().unwrap(),
            value,
        }
    }

    #[test]
    fn newer_offers_win_and_ties_go_to_the_greater_value() {
        let text = |t: &str| Latest::Text(t.into());
        let early = offer(Field::Plan, "2026-03-01T11:00:00Z", text("pro"));
        let late = offer(Field::Plan, "2026-03-01T12:00:00Z", text("basic"));
        assert!(late.wins_over(Some(&early.position())));
        assert!(!early.wins_over(Some(&late.position())));
        let tie = offer(Field::Plan, "2026-03-01T12:00:00Z", text("pro"));
        assert!(tie.wins_over(Some(&late.position())));
        assert!(!late.wins_over(Some(&tie.position())));
        assert!(
            !late.wins_over(Some(&late.position())),
            "the same offer changes nothing"
        );
        let installed = offer(
            Field::IsInstalled,
            "2026-03-01T12:00:00Z",
            Latest::Flag(true),
        );
        let removed = offer(
            Field::IsInstalled,
            "2026-03-01T12:00:00Z",
            Latest::Flag(false),
        );
        assert!(installed.wins_over(Some(&removed.position())));
        assert!(!removed.wins_over(Some(&installed.position())));
    }

    #[test]
    fn the_lifetime_value_currency_keeps_the_oldest_offer() {
        let usd = |at: &str| offer(Field::LifetimeValueCurrency, at, Latest::Text("USD".into()));
        let first = usd("2026-01-01T00:00:00Z");
        let later = usd("2026-02-01T00:00:00Z");
        assert!(first.wins_over(Some(&later.position())));
        assert!(!later.wins_over(Some(&first.position())));
    }

    #[test]
    fn malformed_interpreted_properties_are_field_errors() {
        let error = contribution_of(json!({
            "event": "user_purchased", "user": {"email": "a@b.c"}, "properties": {"amount": 5}
        }))
        .unwrap_err();
        assert_eq!(error.param(), Some("properties.amount"));
    }
}
