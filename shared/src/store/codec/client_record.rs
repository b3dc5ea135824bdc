//! The client record as clients see it: what `users/upsert` sent (the profile) merged with
//! what events say (the `ev_*` fields and counters written by `ops::events_write`), computed
//! when a user item is read, so it is a function of both and of nothing else:
//!
//! - a timestamp is the later of the profile's and the events' (`installed_at`...);
//! - a value is the events' when an event carried one, the profile's otherwise;
//! - the last payment's time, amount and currency come together from whichever is newer;
//! - counts are the profile's (imported history, a baseline) plus the events';
//! - `revenue_by_currency` is the events' revenue per currency; `lifetime_value` is the
//!   profile's plus the events' revenue in `lifetime_value_currency`, the currency of the
//!   first payment event.

use crate::facts::Field;
use crate::fields::Timestamp;
use crate::store::schema::attributes::{
    event_attribute, money_string, EVENT_FIELD_PREFIX, EVENT_INSTALLS, EVENT_PAYMENTS, FIRST_EVENT,
    NAME_PREFIX, PREVIOUS_ACTIVITY, REVENUE_PREFIX,
};
use crate::store::schema::{n, s, Item};
use aws_sdk_dynamodb::types::AttributeValue;
use rust_decimal::Decimal;
use std::collections::HashMap;

/// The internal attributes of the merged record the computed states read (see
/// [`crate::states`]): never stored, never shown.
pub const FIRST_SEEN: &str = "first_seen_at";
pub const PREVIOUS_ACTIVITY_AT: &str = "previous_activity_at";

/// The events' fields shown instead of the profile's when an event carried one: all but
/// the times (shown as the later of the two), the last payment (a whole) and the lifetime
/// value's currency (what the revenue is counted in).
fn is_value(field: Field) -> bool {
    !field.is_time_only() && !matches!(field, Field::LastPayment | Field::LifetimeValueCurrency)
}

/// The event-kept field shown as the client field `name`, if events keep one.
pub fn event_field(name: &str) -> Option<Field> {
    Field::ALL
        .into_iter()
        .find(|field| is_value(*field) && field.name() == name)
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn member<'a>(item: &'a Item, attribute: &str, name: &str) -> Option<&'a AttributeValue> {
    item.get(attribute)?.as_m().ok()?.get(name)
}

fn decimal(value: Option<&AttributeValue>) -> Decimal {
    value
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// Rewrites a stored user item into the client record: the merged fields under their API
/// names, the `ev_*` and `rev_*` attributes removed.
pub fn merge(mut item: Item) -> Item {
    for field in Field::ALL.into_iter().filter(|field| field.is_time_only()) {
        let name = field.name();
        if let Some(event_at) = text(&item, &event_attribute(field)) {
            if text(&item, name).is_none_or(|profile_at| profile_at < event_at) {
                item.insert(name.to_owned(), s(event_at));
            }
        }
    }
    for field in Field::ALL.into_iter().filter(|field| is_value(*field)) {
        let Some(value) = member(&item, &event_attribute(field), "v").cloned() else {
            continue;
        };
        let value = match (field, value) {
            (Field::IsInstalled | Field::IsActiveCustomer, AttributeValue::N(flag)) => {
                AttributeValue::Bool(flag == "1")
            }
            (_, value) => value,
        };
        item.insert(field.name().to_owned(), value);
    }
    merge_last_payment(&mut item);
    merge_counts(&mut item);
    merge_timeline(&mut item);
    merge_names(&mut item);
    item.retain(|name, _| {
        !name.starts_with(EVENT_FIELD_PREFIX)
            && !name.starts_with(REVENUE_PREFIX)
            && !name.starts_with(NAME_PREFIX)
    });
    item
}

/// The internal `first_seen_at` (the earliest of the profile's `created_at` and
/// `installed_at` and the first event; the first write when none is known) and
/// `previous_activity_at`, read before the profile's times are merged with the events'.
fn merge_timeline(item: &mut Item) {
    let first_seen = ["created_at", "installed_at", FIRST_EVENT]
        .into_iter()
        .filter_map(|name| text(item, name))
        .filter_map(|at| at.parse::<Timestamp>().ok())
        .min()
        .map(Timestamp::to_stored)
        .or_else(|| text(item, "ingested_at"));
    if let Some(first_seen) = first_seen {
        item.insert(FIRST_SEEN.into(), s(first_seen));
    }
    if let Some(previous) = text(item, PREVIOUS_ACTIVITY).filter(|at| !at.is_empty()) {
        item.insert(PREVIOUS_ACTIVITY_AT.into(), s(previous));
    }
}

/// `events_by_name` (`{"app_opened": {"count": 3, "last_at": ...}}`) and, past the bound,
/// `events_beyond_name_limit` (the other names' events together), from the `~` entries.
fn merge_names(item: &mut Item) {
    let entry = |value: &AttributeValue| -> Option<AttributeValue> {
        let list = value.as_l().ok()?;
        let count = list.first()?.as_n().ok()?.clone();
        let millis: i64 = list.get(1)?.as_n().ok()?.parse().ok()?;
        let at = Timestamp::from_unix_millis(millis)?.to_stored();
        Some(AttributeValue::M(HashMap::from([
            ("count".to_owned(), AttributeValue::N(count)),
            ("last_at".to_owned(), s(at)),
        ])))
    };
    let mut names = HashMap::new();
    for (attribute, value) in item.iter() {
        let Some(name) = attribute.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some(entry) = entry(value) else { continue };
        names.insert(name.to_owned(), entry);
    }
    if let Some(other) = names.remove("") {
        item.insert("events_beyond_name_limit".into(), other);
    }
    if !names.is_empty() {
        item.insert("events_by_name".into(), AttributeValue::M(names));
    }
}

fn merge_last_payment(item: &mut Item) {
    let payment = event_attribute(Field::LastPayment);
    let Some(at) = member(item, &payment, "at")
        .and_then(|v| v.as_s().ok())
        .cloned()
    else {
        return;
    };
    if text(item, "last_payment_at").is_some_and(|profile_at| profile_at > at) {
        return;
    }
    let amount = member(item, &payment, "amount").cloned();
    let currency = member(item, &payment, "currency").cloned();
    item.insert("last_payment_at".into(), s(at));
    for (name, value) in [
        ("last_payment_amount", amount),
        ("last_payment_currency", currency),
    ] {
        match value {
            Some(value) => item.insert(name.into(), value),
            None => item.remove(name),
        };
    }
}

fn merge_counts(item: &mut Item) {
    for (shown, events) in [
        ("install_count", EVENT_INSTALLS),
        ("total_payments_count", EVENT_PAYMENTS),
    ] {
        if let Some(count) = item.get(events).map(|v| decimal(Some(v))) {
            let total = decimal(item.get(shown)) + count;
            item.insert(shown.into(), n(total));
        }
    }
    let revenue: HashMap<String, AttributeValue> = item
        .iter()
        .filter_map(|(name, value)| {
            let currency = name.strip_prefix(REVENUE_PREFIX)?;
            Some((currency.to_owned(), s(money_string(value.as_n().ok()?))))
        })
        .collect();
    let currency = member(item, &event_attribute(Field::LifetimeValueCurrency), "v").cloned();
    if let Some(AttributeValue::S(code)) = &currency {
        let revenue = decimal(item.get(&format!("{REVENUE_PREFIX}{code}")));
        let total = decimal(item.get("lifetime_value")) + revenue;
        item.insert("lifetime_value".into(), n(total));
        item.insert("lifetime_value_currency".into(), s(code));
    }
    if !revenue.is_empty() {
        item.insert("revenue_by_currency".into(), AttributeValue::M(revenue));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Latest, Offer};
    use crate::store::codec::records::{decode, UserView};
    use crate::store::schema::attributes::stored_offer;
    use serde_json::json;

    fn offer(field: Field, at: &str, value: Latest) -> (String, AttributeValue) {
        let offer = Offer {
            field,
            at: at.parse().unwrap(),
            value,
        };
        (event_attribute(field), stored_offer(&offer))
    }

    fn view(item: Vec<(String, AttributeValue)>) -> serde_json::Value {
        let mut item: Item = item.into_iter().collect();
        item.insert("entity".into(), s("user"));
        serde_json::to_value(decode::<UserView>(item).unwrap()).unwrap()
    }

    #[test]
    fn every_field_events_keep_is_shown_under_its_name() {
        let at = "2026-03-01T00:00:00Z";
        let mut item: Vec<_> = Field::ALL
            .into_iter()
            .map(|field| {
                let value = match field {
                    Field::IsInstalled | Field::IsActiveCustomer => Latest::Flag(true),
                    Field::LastPayment => Latest::Payment {
                        amount: Some("5.00".into()),
                        currency: Some("USD".into()),
                    },
                    _ if field.is_time_only() => Latest::Time,
                    _ => Latest::Text("USD".into()),
                };
                offer(field, at, value)
            })
            .collect();
        item.push((EVENT_INSTALLS.into(), n(2)));
        item.push((EVENT_PAYMENTS.into(), n(1)));
        item.push(("rev_USD".into(), n("5")));
        let view = view(item);
        for field in Field::ALL {
            let shown = match field {
                Field::LastPayment => "last_payment_at",
                other => other.name(),
            };
            assert!(view.get(shown).is_some(), "{shown} is not shown: {view}");
        }
        assert_eq!(view["is_installed"], true);
        assert_eq!(view["install_count"], 2);
        assert_eq!(view["revenue_by_currency"], json!({"USD": "5.00"}));
        assert_eq!(view["lifetime_value"], "5.00");
        let internal = view
            .as_object()
            .unwrap()
            .keys()
            .filter(|name| name.starts_with(EVENT_FIELD_PREFIX) || name.starts_with(REVENUE_PREFIX))
            .count();
        assert_eq!(internal, 0);
    }

    #[test]
    fn profiles_and_events_merge() {
        let view = view(vec![
            ("installed_at".into(), s("2026-03-05T00:00:00.000Z")),
            ("install_platform".into(), s("android")),
            ("status".into(), s("vip")),
            ("last_payment_at".into(), s("2026-03-09T00:00:00.000Z")),
            ("last_payment_amount".into(), s("1.00")),
            ("install_count".into(), n(3)),
            ("lifetime_value".into(), n("100")),
            offer(Field::InstalledAt, "2026-03-01T00:00:00Z", Latest::Time),
            offer(
                Field::InstallPlatform,
                "2026-03-01T00:00:00Z",
                Latest::Text("ios".into()),
            ),
            offer(
                Field::LastPayment,
                "2026-03-02T00:00:00Z",
                Latest::Payment {
                    amount: Some("7.00".into()),
                    currency: Some("EUR".into()),
                },
            ),
            offer(
                Field::LifetimeValueCurrency,
                "2026-03-02T00:00:00Z",
                Latest::Text("EUR".into()),
            ),
            (EVENT_INSTALLS.into(), n(1)),
            ("rev_EUR".into(), n("7")),
        ]);
        assert_eq!(
            view["installed_at"], "2026-03-05T00:00:00.000Z",
            "the later time"
        );
        assert_eq!(view["install_platform"], "ios", "the events' value");
        assert_eq!(view["status"], "vip");
        // The profile's payment is newer: its trio is shown whole.
        assert_eq!(view["last_payment_at"], "2026-03-09T00:00:00.000Z");
        assert_eq!(view["last_payment_amount"], "1.00");
        assert!(view.get("last_payment_currency").is_none());
        assert_eq!(view["install_count"], 4);
        assert_eq!(view["lifetime_value"], "107.00");
        assert_eq!(view["lifetime_value_currency"], "EUR");
    }
}
