//! Reads the table directly (DynamoDB Local, through `shared::store`) and compares it with
//! what the acknowledged requests imply.

use crate::expect::{Expected, FieldValues};
use futures::stream::{self, StreamExt};
use record_model as model;
use serde_json::{json, Value};
use shared::store::records::{ProductView, SaleView, UserView, View};
use shared::store::testing::keys;
use shared::store::Store;
use std::collections::{BTreeMap, BTreeSet};

/// Concurrent reads while verifying.
const READS_IN_FLIGHT: usize = 16;

#[derive(Debug, Default)]
pub struct Report {
    /// Checks made, by what they check.
    pub checks: BTreeMap<&'static str, u64>,
    pub failures: Vec<String>,
}

impl Report {
    fn check(&mut self, what: &'static str, ok: bool, detail: impl FnOnce() -> String) {
        *self.checks.entry(what).or_default() += 1;
        if !ok {
            self.failures.push(format!("{what}: {}", detail()));
        }
    }

    /// Whether `value` is in `low..=high` (a range that is one value when every request
    /// was acknowledged).
    fn check_range<T: PartialOrd + std::fmt::Debug>(
        &mut self,
        what: &'static str,
        who: &str,
        value: T,
        (low, high): (T, T),
    ) {
        let ok = low <= value && value <= high;
        self.check(what, ok, || {
            format!("{who}: stored {value:?}, expected {low:?}..={high:?}")
        });
    }

    pub fn summary(&self) -> String {
        let total: u64 = self.checks.values().sum();
        let by_kind: Vec<String> = self
            .checks
            .iter()
            .map(|(what, n)| format!("{what} {n}"))
            .collect();
        format!(
            "checks: {total} made, {} failed ({})",
            self.failures.len(),
            by_kind.join(", ")
        )
    }
}

fn user_key(org_id: &str, id: &str) -> keys::ItemKey {
    keys::user(org_id, &identity(id))
}

fn identity(id: &str) -> shared::input::UserIdentity {
    shared::input::UserIdentity::External(serde_json::from_value(json!(id)).expect("an id"))
}

fn id(value: &str) -> shared::fields::Id {
    serde_json::from_value(json!(value)).expect("an id")
}

async fn count_events(store: &Store, org_id: &str, user: &str) -> Result<usize, String> {
    store
        .count_user_events(org_id, &identity(user))
        .await
        .map_err(|e| format!("query events of {user}: {e}"))
}

/// The public view of the record of type `R` at `key`.
async fn get<R: View>(store: &Store, key: &keys::ItemKey) -> Result<Option<Value>, String> {
    store
        .get_record::<R>(key)
        .await
        .map(|record| record.map(|record| shared::views::json(&record)))
        .map_err(|e| format!("get {}: {e:?}", key.pk))
}

/// What is stored for one user: its public view and how many events it has.
struct StoredUser {
    user: String,
    item: Option<Value>,
    events: usize,
}

pub async fn verify(org_id: &str, expected: &Expected) -> Report {
    let store = Store::from_env().await;
    let mut report = Report::default();
    let users: BTreeSet<&String> = expected
        .events
        .keys()
        .chain(expected.fields.keys())
        .chain(expected.sales.iter().map(|(sale, _)| &sale.buyer))
        .collect();
    let stored: Vec<Result<StoredUser, String>> = stream::iter(users)
        .map(|user| {
            let store = &store;
            async move {
                Ok(StoredUser {
                    user: user.clone(),
                    item: get::<UserView>(store, &user_key(org_id, user)).await?,
                    events: count_events(store, org_id, user).await?,
                })
            }
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect()
        .await;
    for stored in stored {
        match stored {
            Ok(stored) => check_user(&mut report, expected, &stored),
            Err(error) => report.failures.push(error),
        }
    }

    let acked_sales = expected.sales.iter().filter(|(_, acked)| *acked);
    let sales: Vec<_> = stream::iter(acked_sales)
        .map(|(sale, _)| {
            let store = &store;
            async move {
                let sale_item = get::<SaleView>(store, &keys::sale(org_id, &id(&sale.id))).await;
                let product =
                    get::<ProductView>(store, &keys::product(org_id, &id(&sale.product))).await;
                (sale, sale_item, product)
            }
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect()
        .await;
    for (sale, sale_item, product) in sales {
        let (sale_item, product) = match (sale_item, product) {
            (Ok(sale_item), Ok(product)) => (sale_item, product),
            (Err(error), _) | (_, Err(error)) => {
                report.failures.push(error);
                continue;
            }
        };
        let total = sale_item.as_ref().map(|item| item["total"].clone());
        report.check(
            "sale stored with its total",
            total == Some(json!(sale.total)),
            || format!("{}: {total:?}, expected {}", sale.id, sale.total),
        );
        let title = product.as_ref().map(|item| item["title"].clone());
        report.check(
            "sale's product stored",
            title == Some(json!(sale.product_title)),
            || format!("{}: {title:?}", sale.product),
        );
    }
    report
}

/// Lifecycle times both `users/upsert` and events set: the record shows the later.
const PROFILE_TIMES: [&str; 1] = ["installed_at"];

/// `stored` is the later of the profile's time (its last acknowledged value, or one sent
/// after it) and the events' (the model of the acknowledged events, or of all sent).
fn check_later_time(
    report: &mut Report,
    user: &str,
    name: &'static str,
    stored: &Value,
    profile: Option<&FieldValues>,
    (acked, sent): (&model::Record, &model::Record),
) {
    let profile_times: Vec<Option<&str>> = match profile {
        None => vec![None],
        Some(FieldValues { acked, maybe }) => std::iter::once(acked.as_deref())
            .chain(maybe.iter().map(|v| Some(v.as_str())))
            .collect(),
    };
    let ok = profile_times.iter().any(|profile_at| {
        [&acked[name], &sent[name]].into_iter().any(|events_at| {
            let later = (*profile_at).max(events_at.as_str());
            stored.as_str() == later
        })
    });
    report.check(name, ok, || {
        format!(
            "{user}: stored {stored}, events say {}, profile {profile_times:?}: expected the later",
            acked[name]
        )
    });
}

fn check_user(report: &mut Report, expected: &Expected, stored: &StoredUser) {
    let user = stored.user.as_str();
    let field = |name: &str| {
        stored
            .item
            .as_ref()
            .map_or(&Value::Null, |item| &item[name])
    };
    let no_events = Default::default();
    let events = expected.events.get(user).unwrap_or(&no_events);
    let acked = model::record(events.values().filter(|(_, a)| *a).map(|(f, _)| f));
    let sent = model::record(events.values().map(|(f, _)| f));
    // Every event acknowledged: the record is exactly the model of the set. Otherwise the
    // unacknowledged ones may or may not be in: the model with or without them.
    let all_acked = events.values().all(|(_, a)| *a);
    if !events.is_empty() {
        let stored_count = stored.events;
        let counts = (events.values().filter(|(_, a)| *a).count(), events.len());
        report.check_range("events stored per user", user, stored_count, counts);
        let profile = expected.fields.get(user);
        for name in model::FIELDS {
            let from_profile = profile.and_then(|p| p.get(name));
            if PROFILE_TIMES.contains(&name) {
                check_later_time(
                    report,
                    user,
                    name,
                    field(name),
                    from_profile,
                    (&acked, &sent),
                );
                continue;
            }
            // No event carried it: the profile's value shows, checked below.
            if acked[name].is_null() && from_profile.is_some() {
                continue;
            }
            let value = field(name);
            let ok = *value == acked[name] || (!all_acked && *value == sent[name]);
            report.check(name, ok, || {
                format!(
                    "{user}: stored {value}, expected {} from {} acknowledged events",
                    acked[name], counts.0
                )
            });
        }
    }
    let mentions = expected.mentions.get(user);
    for (name, values) in expected.fields.get(user).into_iter().flatten() {
        if PROFILE_TIMES.contains(name) {
            if events.is_empty() {
                check_later_time(
                    report,
                    user,
                    name,
                    field(name),
                    Some(values),
                    (&acked, &sent),
                );
            }
            continue;
        }
        let value = field(name);
        // A value events keep (`plan`) is the events' when an event carried one.
        if acked.get(name).is_some_and(|events| !events.is_null()) {
            report.check(
                "profile field shown merged with events",
                value == &acked[name] || (!all_acked && value == &sent[name]),
                || format!("{user}.{name}: stored {value}, events say {}", acked[name]),
            );
            continue;
        }
        let value = value.as_str().map(str::to_owned);
        let FieldValues { acked, maybe } = values;
        let mentioned = mentions.and_then(|m| m.get(name));
        // With no upsert acknowledged, a mention may have filled the gap first.
        let mention_allowed = acked.is_none()
            && mentioned.is_some_and(|m| m.iter().any(|(v, _)| Some(v) == value.as_ref()));
        let ok =
            value == *acked || value.as_ref().is_some_and(|v| maybe.contains(v)) || mention_allowed;
        let what = if mentioned.is_some() {
            "profile field not replaced by nested mentions"
        } else {
            "field holds the last acknowledged value"
        };
        report.check(what, ok, || {
            format!("{user}.{name}: stored {value:?}, expected {acked:?} (or one of {maybe:?})")
        });
    }
    // A field only nested mentions carried: one of them filled the gap (or none, when no
    // request with one was acknowledged).
    for (name, values) in mentions.into_iter().flatten() {
        if expected
            .fields
            .get(user)
            .is_some_and(|f| f.contains_key(name))
        {
            continue;
        }
        let value = field(name);
        let ok = match value.as_str() {
            Some(stored) => values.iter().any(|(v, _)| v == stored),
            None => values.iter().all(|(_, acked)| !acked),
        };
        report.check("nested mention fills a gap", ok, || {
            format!("{user}.{name}: stored {value}, mentioned {values:?}")
        });
    }
    for (sale, _) in expected
        .sales
        .iter()
        .filter(|(sale, acked)| *acked && sale.buyer == user)
    {
        let Some(buyer_name) = &sale.buyer_name else {
            continue;
        };
        report.check(
            "sale's buyer stored",
            field("name") == &json!(buyer_name),
            || format!("{user}: name {}", field("name")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_both_sides_set_must_be_the_later() {
        let events: model::Record = [("installed_at", json!("2026-03-01T10:00:00.000Z"))].into();
        let profile = FieldValues {
            acked: Some("2026-03-01T11:00:00.000Z".into()),
            maybe: Vec::new(),
        };
        let mut report = Report::default();
        for stored in ["2026-03-01T11:00:00.000Z", "2026-03-01T10:00:00.000Z"] {
            let stored = json!(stored);
            let both = (&events, &events);
            check_later_time(
                &mut report,
                "u",
                "installed_at",
                &stored,
                Some(&profile),
                both,
            );
        }
        assert_eq!(report.checks["installed_at"], 2);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(report.failures[0].contains("stored \"2026-03-01T10:00:00.000Z\""));
    }
}
