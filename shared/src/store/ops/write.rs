//! The request path's writes: guarded upserts, create-only puts, the rate-limit lease and
//! key-use bookkeeping. Every write is one conditional `UpdateItem` or `PutItem` (an event
//! and its client's counts are one transaction, see `events_write`); nothing reads before
//! it writes.

use crate::error::ApiError;
use crate::store::codec::records::Stored;
use crate::store::codec::upsert::{Advance, Upsert};
use crate::store::error::{conditional_check_item, is_condition_failure, storage_error};
use crate::store::expr::{Expr, WithExpression};
use crate::store::schema::keys;
use crate::store::schema::{n, s, Item};
use crate::store::Store;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

/// Rate-limit counter items are deleted by DynamoDB's TTL this long after their window.
const RATE_COUNTER_TTL_SECS: u64 = 3600;

#[derive(Debug, Clone, PartialEq)]
pub enum UpsertOutcome {
    Written {
        item: Stored,
        created: bool,
    },
    /// The `newer_than` guard failed: the item already reflects this or newer data.
    Stale,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PutOutcome {
    Created,
    /// An item with this key exists; here it is.
    Exists(Stored),
}

impl Store {
    /// Sets an API key's `last_used_at` (if the key still exists). Failures are only
    /// logged: this is bookkeeping, never a reason to fail a request.
    pub async fn record_key_use(&self, key_id: &str, at: &str) {
        let mut expr = Expr::new();
        expr.set("last_used_at", s(at));
        let exists = expr.exists(keys::TABLE_PK);
        expr.condition(exists);
        let expression = expr.finish();
        let result = self
            .update_item(&keys::api_key(key_id))
            .with(expression)
            .send()
            .await;
        if let Err(error) = result {
            tracing::warn!(key_id, error = %aws_sdk_dynamodb::error::DisplayErrorContext(error), "could not record key use");
        }
    }

    /// Rate limiting (see `crate::ratelimit`): adds `wanted` to the key's or org's counter of `window` unless the window is already full.
    /// `Ok(Some(count after))`, `Ok(None)` when full, `Err` when storage failed (logged).
    pub async fn lease_tokens(
        &self,
        counter: keys::RateCounter<'_>,
        window: u64,
        wanted: u32,
        limit: u32,
    ) -> Result<Option<u32>, ()> {
        let mut expr = Expr::new();
        let limit = expr.value(n(limit));
        expr.add("used", n(wanted))
            .set("expires_at_epoch", n(window + RATE_COUNTER_TTL_SECS));
        let unused = expr.not_exists("used");
        let below = expr.below("used", &limit);
        expr.condition(format!("{unused} OR {below}"));
        let result = self
            .update_item(&keys::rate_counter(counter, window))
            .with(expr.finish())
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let used = output
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("used"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u32::MAX);
                Ok(Some(used))
            }
            Err(error) if is_condition_failure(&error) => Ok(None),
            Err(error) => {
                let _ = storage_error("UpdateItem (rate limit)", error);
                Err(())
            }
        }
    }

    /// One conditional UpdateItem (two, only for out-of-order data, see [`Advance`]). The
    /// condition also checks that an existing item belongs to the same org and entity: the
    /// key schema already guarantees it, this makes a bug there fail loudly instead of
    /// corrupting data.
    pub async fn upsert(&self, upsert: Upsert) -> Result<UpsertOutcome, ApiError> {
        let old = match self.update(&upsert, true).await? {
            Ok(written) => return Ok(written),
            Err(old) => old,
        };
        upsert.check_not_merged(&old)?;
        if !upsert.is_owner_of(&old) {
            tracing::error!(
                pk = upsert.key.loggable(),
                "item owned by another org or entity"
            );
            return Err(ApiError::Internal);
        }
        if upsert.advance.is_none() || !guard_passes(&upsert, &old) {
            return Ok(UpsertOutcome::Stale);
        }
        Ok(self
            .update(&upsert, false)
            .await?
            .unwrap_or(UpsertOutcome::Stale))
    }

    /// Sends the UpdateItem; `Err(old item)` when its condition failed.
    async fn update(
        &self,
        upsert: &Upsert,
        with_advance: bool,
    ) -> Result<Result<UpsertOutcome, Item>, ApiError> {
        let advance = upsert.advance.as_ref().filter(|_| with_advance);
        let result = self
            .update_item(&upsert.key)
            .with(upsert_expression(upsert, advance).finish())
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output.attributes.unwrap_or_default();
                let created = matches!(item.get("version"), Some(AttributeValue::N(v)) if v == "1");
                Ok(Ok(UpsertOutcome::Written {
                    item: Stored::new(item),
                    created,
                }))
            }
            Err(error) => match conditional_check_item(&error) {
                Some(old) => Ok(Err(old)),
                None => Err(storage_error("UpdateItem", error)),
            },
        }
    }

    /// One conditional PutItem that only creates: if the key exists, the existing item is
    /// returned (ReturnValuesOnConditionCheckFailure=ALL_OLD) instead of being overwritten.
    pub async fn put_new(&self, item: &Stored) -> Result<PutOutcome, ApiError> {
        let mut expr = Expr::new();
        let new_item = expr.not_exists(keys::TABLE_PK);
        expr.condition(new_item);
        let expression = expr.finish();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.item().clone()))
            .set_condition_expression(expression.condition)
            .set_expression_attribute_names(expression.names)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Created),
            Err(error) => match conditional_check_item(&error) {
                Some(existing) => Ok(PutOutcome::Exists(Stored::new(existing))),
                None => Err(storage_error("PutItem", error)),
            },
        }
    }
}

/// Whether the `newer_than` guard of `upsert` holds on `old` (the item as it was).
fn guard_passes(upsert: &Upsert, old: &Item) -> bool {
    let Some(stamp) = &upsert.stamp else {
        return true;
    };
    upsert.newer_than.iter().all(|name| match old.get(*name) {
        Some(AttributeValue::S(value)) => value < stamp,
        _ => true,
    })
}

/// The update and condition of one upsert (with its `advance` part, or without it).
pub(super) fn upsert_expression(upsert: &Upsert, advance: Option<&Advance>) -> Expr {
    let mut expr = Expr::new();
    let now = expr.value(s(crate::fields::Timestamp::now().to_stored()));
    let entity = s(upsert.entity);
    let org = s(&upsert.org_id);
    expr.set("entity", entity.clone())
        .set("org_id", org.clone())
        .set_if_absent_to("ingested_at", &now)
        .set_to("updated_at", &now)
        .add("version", n(1));
    let advanced = |name: &String| advance.is_some_and(|a| a.set.iter().any(|(n, _)| n == name));
    for (name, value) in upsert.set.iter().chain(advance.iter().flat_map(|a| &a.set)) {
        expr.set(name, value.clone());
    }
    for (name, value) in upsert
        .set_if_absent
        .iter()
        .filter(|(name, _)| !advanced(name))
    {
        expr.set_if_absent(name, value.clone());
    }
    for (name, value) in &upsert.add {
        expr.add(name, value.clone());
    }
    for name in &upsert.remove {
        expr.remove(name);
    }
    let new_item = expr.not_exists(keys::TABLE_PK);
    let same_org = expr.equals("org_id", org);
    let same_entity = expr.equals("entity", entity);
    expr.condition(format!("({new_item} OR ({same_org} AND {same_entity}))"));
    for attribute in &upsert.absent {
        let absent = expr.not_exists(attribute);
        expr.condition(absent);
    }
    if let Some(stamp) = &upsert.stamp {
        let stamp = expr.value(s(stamp));
        for name in &upsert.newer_than {
            let guard = expr.absent_or_below(name, &stamp);
            expr.condition(guard);
        }
    }
    if let Some(advance) = advance {
        let value = expr.value(s(&advance.value));
        let guard = expr.absent_or_at_most(advance.attribute, &value);
        expr.condition(guard);
    }
    expr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_upsert_with_an_advance() {
        let upsert = Upsert {
            key: keys::warm_up(),
            entity: "user",
            org_id: "acme".into(),
            set: vec![("name".into(), s("Ann"))],
            set_if_absent: vec![("last_activity_at".into(), s("t0"))],
            add: vec![("install_count".into(), n(1))],
            remove: vec!["uninstalled_at"],
            newer_than: vec!["installed_at"],
            stamp: Some("t1".into()),
            advance: Some(Advance {
                attribute: "last_event_at",
                value: "t1".into(),
                set: vec![("last_activity_at".into(), s("t1"))],
            }),
            absent: vec!["merged_into"],
        };
        let expression = upsert_expression(&upsert, upsert.advance.as_ref()).finish();
        assert_eq!(
            expression.update.as_deref(),
            Some(
                "SET #n0 = :v1, #n1 = :v2, #n2 = if_not_exists(#n2, :v0), #n3 = :v0, \
                 #n5 = :v4, #n6 = :v5 ADD #n4 :v3, #n7 :v6 REMOVE #n8"
            )
        );
        assert_eq!(
            expression.condition.as_deref(),
            Some(
                "(attribute_not_exists(#n9) OR (#n1 = :v7 AND #n0 = :v8)) \
                 AND attribute_not_exists(#n10) \
                 AND (attribute_not_exists(#n11) OR #n11 < :v9) \
                 AND (attribute_not_exists(#n12) OR #n12 <= :v10)"
            )
        );
        let names = expression.names.unwrap();
        assert_eq!(names["#n6"], "last_activity_at");
        assert_eq!(names["#n10"], "merged_into");
        assert_eq!(names["#n11"], "installed_at");
        assert_eq!(names["#n12"], "last_event_at");
        // Without its advance part, `last_activity_at` is only set when absent.
        let without = upsert_expression(&upsert, None).finish();
        assert!(without
            .update
            .unwrap()
            .contains("#n6 = if_not_exists(#n6, :v5)"));
    }
}
