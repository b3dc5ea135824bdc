//! Timers' calls (issue 26): put or drop a booking's timers (from the stream consumer),
//! read one due minute's timers (the sweeper), drop a fired timer unless it was replaced,
//! and each sweeper's watermark.

use crate::error::ApiError;
use crate::store::codec::timers::{timer_item, StoredTimer, Timer};
use crate::store::error::{is_condition_failure, storage_error};
use crate::store::expr::{Expr, WithExpression};
use crate::store::ops::queries::{Query, SortKey};
use crate::store::schema::keys::{self, key_attributes, Index, ItemKey};
use crate::store::schema::s;
use crate::store::Store;

/// Timers of one due minute's shard a sweep reads; the rest wait for the next run.
const MAX_PER_BUCKET: usize = 1_000;

impl Store {
    /// Writes (or replaces) a timer at its slot's key.
    pub async fn put_timer(&self, timer: &Timer) -> Result<(), ApiError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(timer_item(timer)))
            .send()
            .await
            .map_err(|e| storage_error("PutItem", e))?;
        Ok(())
    }

    /// Removes the timer of a slot, if any.
    pub async fn drop_timer(&self, key: &ItemKey) -> Result<(), ApiError> {
        self.delete(key).await.map(|_| ())
    }

    /// Removes a fired (or stale) timer unless it was replaced since it was read (a moved
    /// booking's new timer at the same key has another due time and stays).
    pub async fn drop_fired_timer(&self, timer: &Timer) -> Result<(), ApiError> {
        self.delete_if(&timer.key(), "due_at", &timer.due_at, "DeleteItem (timer)")
            .await
    }

    /// The timers of one due minute (`YYYY-MM-DDTHH:MM`) and shard due at or before `now`
    /// (at most [`MAX_PER_BUCKET`]), and whether more are left.
    pub async fn due_timers(
        &self,
        minute: &str,
        shard: u32,
        now: &str,
    ) -> Result<(Vec<Timer>, bool), ApiError> {
        let query = Query::new(
            Index::Gsi2,
            keys::due_bucket(minute, shard),
            SortKey::Between("0".to_owned(), now.to_owned()),
        );
        let (found, more) = self
            .query_up_to::<StoredTimer>(&query, MAX_PER_BUCKET)
            .await?;
        Ok((found.iter().filter_map(StoredTimer::timer).collect(), more))
    }

    /// Where the sweeper `name` stopped, if it ran before.
    pub async fn sweeper_watermark(&self, name: &str) -> Result<Option<String>, ApiError> {
        let item = self.get_consistent(&keys::sweeper_watermark(name)).await?;
        Ok(item.and_then(|item| item.get("swept_to").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// Moves the sweeper's watermark forward to `to` (never back: a late run does not
    /// make the next one re-read what a newer run read).
    pub async fn advance_sweeper_watermark(&self, name: &str, to: &str) -> Result<(), ApiError> {
        let mut expr = Expr::new();
        let value = expr.value(s(to));
        let older = expr.absent_or_below("swept_to", &value);
        expr.condition(older);
        expr.set_to("swept_to", &value);
        let expression = expr.finish();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(&keys::sweeper_watermark(name))))
            .with(expression)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(storage_error("UpdateItem", error)),
        }
    }
}
