//! The segment of `GET users/`: its query string parsed once into a typed [`Segment`], and
//! the exact predicate a client record must satisfy, evaluated at one instant (`as_of`).
//!
//! The store turns what DynamoDB can express into key conditions and FilterExpressions
//! ([`Segment::store_filter`]); everything is also checked here, on the merged record
//! ([`Segment::matches`]), so membership never depends on what DynamoDB could express.

use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::query::QueryParams;
use crate::states::{BillingState, LifecycleStage, StageSettings};
use crate::store::codec::records::{UserRecord, UserView, USER_FLAG_FILTERS, USER_TEXT_FILTERS};
use crate::store::ops::lists::UserFilter;
use rust_decimal::Decimal;

/// Largest `*_days` value (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// The record's times a `<name>_within_days=N` filter keeps recent ones of: the parameter,
/// and the client field it reads.
const RECENT_TIMES: [(&str, &str); 7] = [
    ("created_within_days", "created_at"),
    ("installed_within_days", "installed_at"),
    ("uninstalled_within_days", "uninstalled_at"),
    ("last_opened_within_days", "last_opened_at"),
    ("last_payment_within_days", "last_payment_at"),
    (
        "subscription_started_within_days",
        "subscription_started_at",
    ),
    ("active_within_days", "last_activity_at"),
];

/// The record's counts with `<name>_gte` / `<name>_lt` bounds.
const COUNTS: [&str; 2] = ["total_payments_count", "install_count"];

/// Every parameter of `GET users/` besides `limit` and `cursor`.
pub fn parameters() -> Vec<String> {
    let own = [
        "inactive_days",
        "currency",
        "revenue_gte",
        "revenue_lt",
        "lifecycle_stage",
        "billing_state",
        "did",
        "did_within_days",
        "did_count_gte",
        "did_not",
        "did_not_within_days",
    ];
    let mut names: Vec<String> = own
        .iter()
        .chain(&USER_TEXT_FILTERS)
        .chain(&USER_FLAG_FILTERS)
        .map(|name| (*name).to_owned())
        .collect();
    names.extend(RECENT_TIMES.iter().map(|(param, _)| (*param).to_owned()));
    for count in COUNTS {
        names.push(format!("{count}_gte"));
        names.push(format!("{count}_lt"));
    }
    names
}

/// A half-open range `[gte, lt)`; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds<T> {
    pub gte: Option<T>,
    pub lt: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    fn contains(&self, value: T) -> bool {
        self.gte.is_none_or(|low| value >= low) && self.lt.is_none_or(|high| value < high)
    }

    fn is_open(&self) -> bool {
        self.gte.is_none() && self.lt.is_none()
    }
}

/// Reads `<name>_gte` and `<name>_lt` with `read`; `gte >= lt` is an empty range, refused
/// (naming `<name>_lt`): a segment that can hold no one is a mistake in the query.
fn bounds<T: PartialOrd + Copy>(
    name: &str,
    read: impl Fn(&str) -> Result<Option<T>, ApiError>,
) -> Result<Bounds<T>, ApiError> {
    let (low, high) = (format!("{name}_gte"), format!("{name}_lt"));
    let bounds = Bounds {
        gte: read(&low)?,
        lt: read(&high)?,
    };
    if let (Some(gte), Some(lt)) = (bounds.gte, bounds.lt) {
        if gte >= lt {
            return Err(ApiError::invalid_field(
                high.clone(),
                format!("`{high}` must be greater than `{low}`"),
            ));
        }
    }
    Ok(bounds)
}

/// `GET users/`'s conditions, all of which a member satisfies (AND).
#[derive(Debug, Clone)]
pub struct Segment {
    /// The instant every time-based condition is evaluated at, and its stored form.
    pub at: Timestamp,
    pub as_of: String,
    /// Last activity before `as_of - inactive_days` (stored form).
    pub inactive_since: Option<String>,
    /// Exact text and flag filters: `(field, value)`.
    pub text: Vec<(&'static str, String)>,
    pub flags: Vec<(&'static str, bool)>,
    /// `(field, earliest stored time)`: the field is at or after it.
    pub recent: Vec<(&'static str, String)>,
    /// `(field, bounds)` on the record's counts.
    pub counts: Vec<(&'static str, Bounds<i64>)>,
    /// Revenue in one currency (see [`revenue_in`]).
    pub revenue: Option<(String, Bounds<Decimal>)>,
    /// Any of these stages / states at `as_of` (empty: any).
    pub stages: Vec<LifecycleStage>,
    pub billing: Vec<BillingState>,
    /// The org's lifecycle thresholds the stages are computed with.
    pub settings: StageSettings,
    pub did: Option<Did>,
    pub did_not: Option<DidNot>,
}

/// `did=<name>`: at least `count_gte` (1 by default) events of `name`, the newest at or
/// after `since` (stored time) when `did_within_days` is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Did {
    pub name: String,
    pub since: Option<String>,
    pub count_gte: i64,
}

/// `did_not=<name>`: no event of `name` (at or after `since`, when
/// `did_not_within_days` is sent).
#[derive(Debug, Clone, PartialEq)]
pub struct DidNot {
    pub name: String,
    pub since: Option<String>,
}

/// What a record says about one event name: its count and newest time, or `None` when
/// the client is past the bound on names kept apart and this name is not one of them.
fn did_name(user: &UserView, name: &str) -> Option<(i64, Option<String>)> {
    match user
        .events_by_name
        .as_ref()
        .and_then(|names| names.get(name))
    {
        Some(activity) => Some((activity.count, Some(activity.last_at.clone()))),
        None if user.events_beyond_name_limit.is_some() => None,
        None => Some((0, None)),
    }
}

/// A comma-separated list of distinct names of `parse`.
fn list_of<T: PartialEq>(
    params: &QueryParams,
    name: &str,
    all: &[&str],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let Some(raw) = params.value(name) else {
        return Ok(Vec::new());
    };
    let mut values = Vec::new();
    for part in raw.split(',') {
        let refused = |why: &str| {
            ApiError::invalid_field(
                name,
                format!(
                    "`{name}` {why}; it is a comma-separated list of: {}",
                    all.join(", ")
                ),
            )
        };
        let value = parse(part).ok_or_else(|| refused(&format!("has no value `{part}`")))?;
        if values.contains(&value) {
            return Err(refused(&format!("repeats `{part}`")));
        }
        values.push(value);
    }
    Ok(values)
}

/// `<name>` requires `needs`: naming `name` when sent without it.
fn requires(params: &QueryParams, name: &str, needs: &str) -> Result<(), ApiError> {
    if params.value(name).is_some() && params.value(needs).is_none() {
        return Err(ApiError::invalid_field(
            name,
            format!("`{name}` applies to `{needs}`: send `{needs}` too"),
        ));
    }
    Ok(())
}

impl Segment {
    /// The segment of `params`, evaluated at `as_of` (now on a first page, the cursor's on
    /// the following ones).
    pub fn parse(
        params: &QueryParams,
        as_of: Timestamp,
        settings: StageSettings,
    ) -> Result<Self, ApiError> {
        let days_before = |days: u32| {
            as_of
                .later_by(-time::Duration::days(days.into()))
                .to_stored()
        };
        let inactive_days = params.integer("inactive_days", 1, MAX_DAYS)?;
        let mut segment = Segment {
            at: as_of,
            as_of: as_of.to_stored(),
            inactive_since: inactive_days.map(days_before),
            text: Vec::new(),
            flags: Vec::new(),
            recent: Vec::new(),
            counts: Vec::new(),
            revenue: None,
            stages: Vec::new(),
            billing: Vec::new(),
            settings,
            did: None,
            did_not: None,
        };
        let names = |all: &[&'static str]| all.to_vec();
        segment.stages = list_of(
            params,
            "lifecycle_stage",
            &names(&LifecycleStage::ALL.map(LifecycleStage::as_str)),
            LifecycleStage::parse,
        )?;
        segment.billing = list_of(
            params,
            "billing_state",
            &names(&BillingState::ALL.map(BillingState::as_str)),
            BillingState::parse,
        )?;
        for (name, needs) in [
            ("did_within_days", "did"),
            ("did_count_gte", "did"),
            ("did_not_within_days", "did_not"),
        ] {
            requires(params, name, needs)?;
        }
        let did_within = params.integer("did_within_days", 1, MAX_DAYS)?;
        if let Some(name) = params.text("did")? {
            segment.did = Some(Did {
                name: name.as_str().to_owned(),
                since: did_within.map(days_before),
                count_gte: params
                    .integer("did_count_gte", 1, u32::MAX)?
                    .map_or(1, i64::from),
            });
        }
        let not_within = params.integer("did_not_within_days", 1, MAX_DAYS)?;
        if let Some(name) = params.text("did_not")? {
            // Did it in the last N days, yet not in the last M >= N (or ever): no one.
            let same = segment
                .did
                .as_ref()
                .is_some_and(|did| did.name == name.as_str());
            let covered = not_within.is_none_or(|not| did_within.is_some_and(|did| did <= not));
            if same && covered {
                return Err(ApiError::invalid_field(
                    "did_not",
                    "`did_not` contradicts `did`: no one did and did not the same event in that window",
                ));
            }
            segment.did_not = Some(DidNot {
                name: name.as_str().to_owned(),
                since: not_within.map(days_before),
            });
        }
        for name in USER_TEXT_FILTERS {
            if let Some(value) = params.text(name)? {
                segment.text.push((name, value.as_str().to_owned()));
            }
        }
        for name in USER_FLAG_FILTERS {
            if let Some(value) = params.boolean(name)? {
                segment.flags.push((name, value));
            }
        }
        for (param, field) in RECENT_TIMES {
            if let Some(days) = params.integer(param, 1, MAX_DAYS)? {
                if param == "active_within_days" && inactive_days.is_some_and(|i| i >= days) {
                    return Err(ApiError::invalid_field(
                        param,
                        "`active_within_days` must be greater than `inactive_days`",
                    ));
                }
                segment.recent.push((field, days_before(days)));
            }
        }
        for count in COUNTS {
            let read = |name: &str| Ok(params.integer(name, 0, u32::MAX)?.map(i64::from));
            let range = bounds(count, read)?;
            if !range.is_open() {
                segment.counts.push((count, range));
            }
        }
        let revenue = bounds("revenue", |name| params.decimal(name))?;
        let currency = params.currency("currency")?;
        segment.revenue = match (currency, revenue.is_open()) {
            (Some(currency), false) => Some((currency, revenue)),
            (None, true) => None,
            (Some(_), true) => {
                return Err(ApiError::invalid_field(
                    "currency",
                    "`currency` is the currency of `revenue_gte` or `revenue_lt`: send one",
                ))
            }
            (None, false) => {
                let param = if revenue.gte.is_some() {
                    "revenue_gte"
                } else {
                    "revenue_lt"
                };
                return Err(ApiError::invalid_field(
                    param,
                    format!("`{param}` needs `currency` (an ISO 4217 code)"),
                ));
            }
        };
        Ok(segment)
    }

    /// What DynamoDB can check before the record is decoded: the activity cutoff (a key
    /// condition and a filter) and the exact profile filters.
    pub fn store_filter(&self) -> UserFilter {
        UserFilter {
            inactive_since: self.inactive_since.clone(),
            text: self.text.clone(),
            flags: self.flags.clone(),
        }
    }

    /// Whether the client record `user` is a member at `as_of`: every condition holds.
    /// A user active after `as_of` is not (see "Exact membership" in docs/api-guide.md):
    /// the pages of one `as_of` never see it move past their cursor.
    pub fn matches(&self, record: &UserRecord) -> bool {
        let (user, as_of) = (&record.view, self.at);
        let stage_ok = self.stages.is_empty() || {
            let stage = crate::states::lifecycle_stage(&record.timeline(), &self.settings, as_of);
            self.stages.contains(&stage)
        };
        let billing_ok = self.billing.is_empty() || {
            let state = crate::states::billing_state(&record.billing(), as_of);
            self.billing.contains(&state)
        };
        let did_ok = self.did.as_ref().is_none_or(|did| {
            did_name(user, &did.name).is_some_and(|(count, last)| {
                count >= did.count_gte
                    && did
                        .since
                        .as_ref()
                        .is_none_or(|since| last.is_some_and(|at| at >= *since))
            })
        });
        // Unknown (a name past the bound): not a member either way.
        let did_not_ok = self.did_not.as_ref().is_none_or(|not| {
            did_name(user, &not.name).is_some_and(|(count, last)| {
                count == 0
                    || not
                        .since
                        .as_ref()
                        .is_some_and(|since| last.is_none_or(|at| at < *since))
            })
        });
        stage_ok && billing_ok && did_ok && did_not_ok && self.matches_fields(user)
    }

    /// The conditions on the record's fields.
    fn matches_fields(&self, user: &UserView) -> bool {
        let activity = user.last_activity_at.as_deref();
        if activity.is_none_or(|at| at > self.as_of.as_str()) {
            return false;
        }
        let text_ok = self
            .text
            .iter()
            .all(|(field, value)| text_field(user, field) == Some(value.as_str()));
        let flags_ok = self
            .flags
            .iter()
            .all(|(field, value)| flag_field(user, field) == Some(*value));
        let inactive_ok = self
            .inactive_since
            .as_deref()
            .is_none_or(|cutoff| activity.is_some_and(|at| at < cutoff));
        let recent_ok = self
            .recent
            .iter()
            .all(|(field, since)| time_field(user, field).is_some_and(|at| at >= since.as_str()));
        let counts_ok = self
            .counts
            .iter()
            .all(|(field, range)| range.contains(count_field(user, field)));
        let revenue_ok = self
            .revenue
            .as_ref()
            .is_none_or(|(currency, range)| range.contains(revenue_in(user, currency)));
        text_ok && flags_ok && inactive_ok && recent_ok && counts_ok && revenue_ok
    }
}

/// A user's revenue in `currency`: its `lifetime_value` when that is counted in
/// `currency` (the profile's imported value plus its payment events'), else its payment
/// events' revenue in `currency` (`revenue_by_currency`), else zero.
pub fn revenue_in(user: &UserView, currency: &str) -> Decimal {
    let parse = |value: &str| value.parse::<Decimal>().unwrap_or_default();
    if user.lifetime_value_currency.as_deref() == Some(currency) {
        return user
            .lifetime_value
            .as_deref()
            .map(parse)
            .unwrap_or_default();
    }
    user.revenue_by_currency
        .as_ref()
        .and_then(|revenue| revenue.get(currency))
        .map(|value| parse(value))
        .unwrap_or_default()
}

fn text_field<'a>(user: &'a UserView, field: &str) -> Option<&'a str> {
    match field {
        "subscription_status" => user.subscription_status.as_deref(),
        "plan" => user.plan.as_deref(),
        "status" => user.status.as_deref(),
        "install_source" => user.install_source.as_deref(),
        "install_platform" => user.install_platform.as_deref(),
        _ => None,
    }
}

fn flag_field(user: &UserView, field: &str) -> Option<bool> {
    match field {
        "is_installed" => user.is_installed,
        "is_active_customer" => user.is_active_customer,
        _ => None,
    }
}

fn time_field<'a>(user: &'a UserView, field: &str) -> Option<&'a str> {
    match field {
        "created_at" => user.created_at.as_deref(),
        "installed_at" => user.installed_at.as_deref(),
        "uninstalled_at" => user.uninstalled_at.as_deref(),
        "last_opened_at" => user.last_opened_at.as_deref(),
        "last_payment_at" => user.last_payment_at.as_deref(),
        "subscription_started_at" => user.subscription_started_at.as_deref(),
        "last_activity_at" => user.last_activity_at.as_deref(),
        _ => None,
    }
}

/// A count the record does not have is zero.
fn count_field(user: &UserView, field: &str) -> i64 {
    match field {
        "total_payments_count" => user.total_payments_count,
        "install_count" => user.install_count,
        _ => None,
    }
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Segment, ApiError> {
        let names = parameters();
        let allowed: Vec<&str> = names.iter().map(String::as_str).collect();
        let params = QueryParams::parse(Some(query), &allowed)?;
        let as_of = "2026-03-01T00:00:00Z".parse().unwrap();
        Segment::parse(&params, as_of, StageSettings::default())
    }

    #[test]
    fn conditions_are_evaluated_at_as_of() {
        let segment = parse("installed_within_days=7&currency=USD&revenue_gte=100").unwrap();
        assert_eq!(segment.recent[0].1, "2026-02-22T00:00:00.000Z");
        let user = |installed: &str, value: &str, activity: &str| UserView {
            installed_at: Some(installed.into()),
            lifetime_value: Some(value.into()),
            lifetime_value_currency: Some("USD".into()),
            last_activity_at: Some(activity.into()),
            ..UserView::default()
        };
        let recent = "2026-02-22T00:00:00.000Z";
        assert!(segment.matches_fields(&user(recent, "100.00", recent)));
        assert!(!segment.matches_fields(&user("2026-02-21T23:59:59.999Z", "100", recent)));
        assert!(!segment.matches_fields(&user(recent, "99.99", recent)));
        // Active after `as_of`: not in the segment of that instant.
        assert!(!segment.matches_fields(&user(recent, "100", "2026-03-01T00:00:00.001Z")));
        // A later window of the same event is no contradiction: did it 7 to 30 days ago.
        parse("did=a&did_within_days=30&did_not=a&did_not_within_days=7").unwrap();
    }
}
