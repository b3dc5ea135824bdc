//! The change feed's calls: writing a change exactly once, reading an org's feed in
//! order up to a visibility horizon, and removing an erased client's changes.
//!
//! A change's key is `ORG#<org>#CHANGES#<day>` / `<recorded_at>#<id>`, both deterministic
//! from the stream record (see `crate::changes`), so a redelivery meets the first write's
//! item and its conditional put adds nothing. Readers stop at a horizon a little before
//! now (`crate::changes::feed`): a change is written before its `recorded_at` falls behind
//! the horizon, or else it is written *late*, with a new `recorded_at` past the horizon and
//! a marker item keyed by its id, in one transaction that also checks that its on-time key
//! is absent, so a late redelivery adds nothing either.

use crate::error::ApiError;
use crate::store::codec::changes::{change_item, decode_change, Change, NewChange};
use crate::store::codec::records::{Erasure, Listed, Stored};
use crate::store::error::storage_error;
use crate::store::expr::Expr;
use crate::store::ops::queries::{Query, SortKey};
use crate::store::ops::write::PutOutcome;
use crate::store::schema::keys::{self, key_attributes, Index};
use crate::store::schema::table::TTL_ATTRIBUTE;
use crate::store::schema::{n, s, Item};
use crate::store::Store;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};

/// Query calls one page of the feed may make (a day per partition: 31 empty days cost 31).
const PAGE_CALLS: usize = 40;
/// Items read per Query call when a `types` filter drops some.
const FILTERED_READ: i32 = 200;

/// One page of the feed: the changes, where the next page starts, and whether more
/// changes before the horizon are known to follow.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub changes: Vec<Change>,
    pub next: String,
    pub has_more: bool,
}

/// Whether a change was written, or was there already (a redelivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Written,
    Duplicate,
}

impl Store {
    /// Writes `new` at its deterministic key (`new.change.recorded_at`), or, when
    /// `late_at` is set, at `late_at` with a marker, checking its on-time key is absent.
    pub async fn record_change(
        &self,
        org_id: &str,
        new: &NewChange,
        late_at: Option<&str>,
    ) -> Result<Recorded, ApiError> {
        let Some(late_at) = late_at else {
            let item = Stored::new(change_item(org_id, new));
            return Ok(match self.put_new(&item).await? {
                PutOutcome::Created => Recorded::Written,
                PutOutcome::Exists(_) => Recorded::Duplicate,
            });
        };
        let on_time = keys::change(org_id, &new.change.recorded_at, &new.change.id);
        let mut late = new.clone();
        late.change.recorded_at = late_at.to_owned();
        let mut marker = key_attributes(&keys::change_marker(org_id, &new.change.id));
        marker.insert("entity".to_owned(), s("change_marker"));
        marker.insert("org_id".to_owned(), s(org_id));
        let expires = time::OffsetDateTime::now_utc().unix_timestamp()
            + crate::store::codec::changes::CHANGE_RETENTION_SECS;
        marker.insert(TTL_ATTRIBUTE.to_owned(), n(expires));
        let absent = |key: Item| {
            let mut expr = Expr::new();
            let condition = expr.not_exists(keys::TABLE_PK);
            expr.condition(condition);
            (key, expr.finish())
        };
        let (check_key, check) = absent(key_attributes(&on_time));
        let (marker_item, marker_condition) = absent(marker);
        let items = vec![
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(check_key))
                        .set_condition_expression(check.condition)
                        .set_expression_attribute_names(check.names)
                        .build()
                        .expect("table, key and condition are set"),
                )
                .build(),
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(marker_item))
                        .set_condition_expression(marker_condition.condition)
                        .set_expression_attribute_names(marker_condition.names)
                        .build()
                        .expect("table and item are set"),
                )
                .build(),
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(change_item(org_id, &late)))
                        .build()
                        .expect("table and item are set"),
                )
                .build(),
        ];
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Recorded::Written),
            Err(error)
                if error.as_service_error().is_some_and(|e| {
                    e.is_transaction_canceled_exception()
                        && format!("{e:?}").contains("ConditionalCheckFailed")
                }) =>
            {
                Ok(Recorded::Duplicate)
            }
            Err(error) => Err(storage_error("TransactWriteItems", error)),
        }
    }

    /// Up to `limit` changes of the org after `after` (a position: a stored time, or a
    /// change's `<recorded_at>#<id>`) and before `horizon` (a stored time), of `types` if
    /// given, oldest first.
    pub async fn changes_page(
        &self,
        org_id: &str,
        after: &str,
        horizon: &str,
        limit: usize,
        types: Option<&[String]>,
    ) -> Result<FeedPage, ApiError> {
        let mut changes = Vec::new();
        let mut position = after.to_owned();
        let last_day = &horizon[..10];
        for _ in 0..PAGE_CALLS {
            let day = position[..10].to_owned();
            let wanted = match types {
                Some(_) => FILTERED_READ,
                None => i32::try_from(limit + 1 - changes.len()).unwrap_or(i32::MAX),
            };
            let (items, last) = self
                .feed_query(org_id, &day, &position, horizon, wanted)
                .await?;
            for item in items {
                let sort = item
                    .get(keys::TABLE_SK)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let change = decode_change(item)?;
                let wanted = |c: &Change| types.is_none_or(|types| types.contains(&c.kind));
                if let Some(change) = change.filter(wanted) {
                    changes.push((sort.clone(), change));
                }
                position = sort;
                if changes.len() > limit {
                    break;
                }
            }
            if changes.len() > limit {
                changes.truncate(limit);
                let next = changes
                    .last()
                    .map(|(sort, _)| sort.clone())
                    .unwrap_or(position);
                return Ok(FeedPage {
                    changes: changes.into_iter().map(|(_, c)| c).collect(),
                    next,
                    has_more: true,
                });
            }
            if last.is_none() {
                // This day is read up to the horizon: the next day, from its start.
                if day.as_str() >= last_day {
                    return Ok(FeedPage {
                        changes: changes.into_iter().map(|(_, c)| c).collect(),
                        next: horizon.to_owned(),
                        has_more: false,
                    });
                }
                position = next_day(&day);
            }
        }
        // Out of calls: the page ends where reading stopped.
        Ok(FeedPage {
            changes: changes.into_iter().map(|(_, c)| c).collect(),
            next: position,
            has_more: true,
        })
    }

    /// One Query of a day's changes after `after` and before `horizon`.
    async fn feed_query(
        &self,
        org_id: &str,
        day: &str,
        after: &str,
        horizon: &str,
        limit: i32,
    ) -> Result<(Vec<Item>, Option<Item>), ApiError> {
        let partition = keys::changes_partition(org_id, day);
        let mut expr = Expr::new();
        let same_partition = expr.equals(keys::TABLE_PK, s(&partition));
        let bound = expr.value(s(horizon));
        let before = expr.below(keys::TABLE_SK, &bound);
        let expression = expr.finish();
        let mut start = key_attributes(&keys::ItemKey {
            pk: partition,
            sk: after.to_owned(),
        });
        if after.len() <= 10 {
            // The start of a day: nothing sorts before it.
            start.clear();
        }
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{same_partition} AND {before}"))
            .set_expression_attribute_names(expression.names)
            .set_expression_attribute_values(expression.values)
            .set_exclusive_start_key((!start.is_empty()).then_some(start))
            .limit(limit)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| storage_error("Query", e))?;
        Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
    }

    /// Erases the changes listed under a client's record (GSI1) as erasure does (each
    /// leaves a tombstone at its key, so a redelivery cannot write it again); how many.
    pub async fn purge_client_changes(&self, user_pk: &str) -> Result<usize, ApiError> {
        let mut query = Query::new(Index::Gsi1, user_pk, SortKey::children(keys::CHANGE));
        query.projection = Some(Listed::ATTRIBUTES.to_vec());
        let (found, _) = self.query_up_to::<Listed>(&query, 1_000).await?;
        let erasures: Vec<Erasure> = found.iter().map(Listed::erasure).collect();
        self.batch_delete(&erasures).await?;
        Ok(erasures.len())
    }
}

/// The first position of the day after `day` (`YYYY-MM-DD`).
fn next_day(day: &str) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, format)
        .ok()
        .and_then(|date| date.next_day())
        .and_then(|date| date.format(format).ok())
        .unwrap_or_else(|| "9999-12-31".to_owned())
}
