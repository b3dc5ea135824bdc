//! The client record's computed states, `lifecycle_stage` and `billing_state`: pure
//! functions of the record's stored facts and of one instant, `as_of`. Nothing is written
//! when time passes: a read evaluates them against its own `as_of` (one per response), so
//! every client of a page is judged at the same instant. No I/O here; the store's codec
//! builds the plain structs below from a user item (`store::codec::client_record`).
//!
//! The rules are written out in docs/api-guide.md ("Lifecycle stage and billing state"); the
//! reference model (`record-model/`) implements them again on its own.

use crate::fields::Timestamp;
use serde::{Deserialize, Serialize};
use time::Duration;

/// Where a client is in its life with the app (see [`lifecycle_stage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    New,
    Active,
    AtRisk,
    Dormant,
    Churned,
    Resurrected,
}

/// Where a client stands with its payments (see [`billing_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingState {
    None,
    Trialing,
    Paying,
    PastDue,
    Canceled,
    Lapsed,
}

/// `ALL`, `as_str` and `parse` of a state enum, from one list of names.
macro_rules! named {
    ($type:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $type {
            pub const ALL: [$type; [$($name),*].len()] = [$($type::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|state| state.as_str() == name)
            }
        }
    };
}

named!(LifecycleStage {
    New => "new",
    Active => "active",
    AtRisk => "at_risk",
    Dormant => "dormant",
    Churned => "churned",
    Resurrected => "resurrected",
});

named!(BillingState {
    None => "none",
    Trialing => "trialing",
    Paying => "paying",
    PastDue => "past_due",
    Canceled => "canceled",
    Lapsed => "lapsed",
});

/// The lifecycle thresholds of an org, in days (set with `admin orgs set-lifecycle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSettings {
    pub new_days: u32,
    pub at_risk_days: u32,
    pub dormant_days: u32,
    pub churned_days: u32,
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings {
            new_days: 7,
            at_risk_days: 7,
            dormant_days: 30,
            churned_days: 90,
        }
    }
}

/// The most days a threshold may be (100 years, as `inactive_days`).
pub const MAX_STAGE_DAYS: u32 = 36_500;

impl StageSettings {
    /// Settings that make the stages well ordered: every threshold from 1 to
    /// [`MAX_STAGE_DAYS`] days, and `at_risk_days < dormant_days < churned_days`.
    pub fn validated(self) -> Result<Self, String> {
        let all = [
            ("new_days", self.new_days),
            ("at_risk_days", self.at_risk_days),
            ("dormant_days", self.dormant_days),
            ("churned_days", self.churned_days),
        ];
        if let Some((name, _)) = all.iter().find(|(_, d)| !(1..=MAX_STAGE_DAYS).contains(d)) {
            return Err(format!("{name} must be from 1 to {MAX_STAGE_DAYS}"));
        }
        if !(self.at_risk_days < self.dormant_days && self.dormant_days < self.churned_days) {
            return Err("at_risk_days < dormant_days < churned_days must hold".into());
        }
        Ok(self)
    }
}

/// The times a client's lifecycle stage depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientTimeline {
    /// The earliest of the profile's `created_at` and `installed_at` and the client's
    /// event times; when none is known, when the record was first written.
    pub first_seen: Option<Timestamp>,
    /// The newest activity (event time); before any event, when the record was first
    /// written (`last_activity_at`).
    pub last_activity: Option<Timestamp>,
    /// The newest activity strictly before `last_activity` (none: a single activity).
    pub previous_activity: Option<Timestamp>,
    /// `uninstalled_at` as the record shows it (the later of the profile's and the events').
    pub uninstalled_at: Option<Timestamp>,
}

fn days(n: u32) -> Duration {
    Duration::days(n.into())
}

/// The lifecycle stage at `as_of`, the first rule that holds:
///
/// 1. `churned`: uninstalled with no activity after the uninstall, or no activity for
///    `churned_days`;
/// 2. `dormant`: no activity for `dormant_days`; 3. `at_risk`: for `at_risk_days`;
/// 4. `resurrected`: the gap between its two most recent activities is at least
///    `dormant_days`, and it came back (its last activity) less than `new_days` ago;
/// 5. `new`: first seen less than `new_days` ago; 6. `active`.
///
/// "No activity for N days" is `as_of - last_activity >= N days`; a time after `as_of`
/// counts as `as_of`.
pub fn lifecycle_stage(
    timeline: &ClientTimeline,
    settings: &StageSettings,
    as_of: Timestamp,
) -> LifecycleStage {
    let since = |at: Option<Timestamp>| at.map(|at| as_of.since(at));
    let idle = since(timeline.last_activity).unwrap_or(Duration::ZERO);
    let uninstalled = match (timeline.uninstalled_at, timeline.last_activity) {
        (Some(uninstalled), Some(activity)) => uninstalled >= activity,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let gap = match (timeline.last_activity, timeline.previous_activity) {
        (Some(last), Some(previous)) => last.since(previous),
        _ => Duration::ZERO,
    };
    if uninstalled || idle >= days(settings.churned_days) {
        LifecycleStage::Churned
    } else if idle >= days(settings.dormant_days) {
        LifecycleStage::Dormant
    } else if idle >= days(settings.at_risk_days) {
        LifecycleStage::AtRisk
    } else if gap >= days(settings.dormant_days) && idle < days(settings.new_days) {
        LifecycleStage::Resurrected
    } else if since(timeline.first_seen).is_some_and(|age| age < days(settings.new_days)) {
        LifecycleStage::New
    } else {
        LifecycleStage::Active
    }
}

/// The facts a client's billing state depends on, as the record shows them (the profile's
/// and the events' merged by the documented precedence).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BillingFacts {
    pub subscription_status: Option<String>,
    pub subscription_ends_at: Option<Timestamp>,
    pub is_active_customer: Option<bool>,
    /// Whether the client ever paid: a payment counted (`total_payments_count` above zero,
    /// events and sales alike), or a `last_payment_at`.
    pub has_paid: bool,
}

/// The billing state at `as_of`:
///
/// - `past_due`: subscription status `past_due` or `unpaid`;
/// - `trialing`: status `trialing` whose `subscription_ends_at` is not past;
/// - `paying`: status `active` whose `subscription_ends_at` is not past, or no known
///   subscription status and `is_active_customer` true;
/// - `canceled`: status `cancelled`/`canceled` whose `subscription_ends_at` is not past (or
///   unknown): access until the end of the paid period;
/// - otherwise `lapsed` when the client ever paid, `none` when it never did.
///
/// "Not past" is `subscription_ends_at` absent or later than `as_of`.
pub fn billing_state(facts: &BillingFacts, as_of: Timestamp) -> BillingState {
    let current = facts.subscription_ends_at.is_none_or(|ends| ends > as_of);
    let status = facts.subscription_status.as_deref();
    match status {
        Some("past_due" | "unpaid") => return BillingState::PastDue,
        Some("trialing") if current => return BillingState::Trialing,
        Some("active") if current => return BillingState::Paying,
        Some("cancelled" | "canceled") if current => return BillingState::Canceled,
        Some("trialing" | "active" | "cancelled" | "canceled" | "expired" | "paused") => {}
        _ if facts.is_active_customer == Some(true) => return BillingState::Paying,
        _ => {}
    }
    if facts.has_paid {
        BillingState::Lapsed
    } else {
        BillingState::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn day(n: i64) -> Timestamp {
        at("2026-01-01T00:00:00Z").later_by(Duration::days(n))
    }

    #[test]
    fn names_round_trip() {
        for stage in LifecycleStage::ALL {
            assert_eq!(LifecycleStage::parse(stage.as_str()), Some(stage));
            assert_eq!(serde_json::to_value(stage).unwrap(), stage.as_str());
        }
        for state in BillingState::ALL {
            assert_eq!(BillingState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(LifecycleStage::parse("gone"), None);
    }

    #[test]
    fn stages_follow_the_thresholds() {
        let settings = StageSettings::default();
        let timeline = ClientTimeline {
            first_seen: Some(day(0)),
            last_activity: Some(day(0)),
            ..ClientTimeline::default()
        };
        let stage = |n| lifecycle_stage(&timeline, &settings, day(n));
        assert_eq!(stage(0), LifecycleStage::New);
        assert_eq!(stage(6), LifecycleStage::New);
        assert_eq!(stage(7), LifecycleStage::AtRisk);
        assert_eq!(stage(30), LifecycleStage::Dormant);
        assert_eq!(stage(90), LifecycleStage::Churned);
        let returned = ClientTimeline {
            last_activity: Some(day(40)),
            previous_activity: Some(day(10)),
            ..timeline
        };
        let stage = |n| lifecycle_stage(&returned, &settings, day(n));
        assert_eq!(stage(41), LifecycleStage::Resurrected);
        assert_eq!(stage(46), LifecycleStage::Resurrected);
        assert_eq!(stage(47), LifecycleStage::AtRisk);
        let short_gap = ClientTimeline {
            previous_activity: Some(day(11)),
            ..returned
        };
        assert_eq!(
            lifecycle_stage(&short_gap, &settings, day(41)),
            LifecycleStage::Active
        );
        let uninstalled = ClientTimeline {
            uninstalled_at: Some(day(40)),
            ..returned
        };
        assert_eq!(
            lifecycle_stage(&uninstalled, &settings, day(41)),
            LifecycleStage::Churned
        );
    }

    #[test]
    fn billing_states() {
        let facts = |status: Option<&str>, ends: Option<i64>, paid: bool| BillingFacts {
            subscription_status: status.map(str::to_owned),
            subscription_ends_at: ends.map(day),
            is_active_customer: None,
            has_paid: paid,
        };
        let state = |f: BillingFacts| billing_state(&f, day(10));
        assert_eq!(state(facts(None, None, false)), BillingState::None);
        assert_eq!(state(facts(None, None, true)), BillingState::Lapsed);
        assert_eq!(
            state(facts(Some("trialing"), Some(11), false)),
            BillingState::Trialing
        );
        assert_eq!(
            state(facts(Some("trialing"), Some(9), false)),
            BillingState::None
        );
        assert_eq!(
            state(facts(Some("active"), None, true)),
            BillingState::Paying
        );
        assert_eq!(
            state(facts(Some("active"), Some(10), true)),
            BillingState::Lapsed
        );
        assert_eq!(
            state(facts(Some("past_due"), None, true)),
            BillingState::PastDue
        );
        assert_eq!(
            state(facts(Some("cancelled"), Some(12), true)),
            BillingState::Canceled
        );
        assert_eq!(
            state(facts(Some("expired"), None, true)),
            BillingState::Lapsed
        );
        let customer = BillingFacts {
            is_active_customer: Some(true),
            ..facts(None, None, true)
        };
        assert_eq!(state(customer), BillingState::Paying);
    }

    #[test]
    fn settings_are_validated() {
        assert!(StageSettings::default().validated().is_ok());
        let bad = StageSettings {
            dormant_days: 7,
            ..StageSettings::default()
        };
        assert!(bad.validated().is_err());
        let zero = StageSettings {
            new_days: 0,
            ..StageSettings::default()
        };
        assert!(zero.validated().is_err());
    }
}
