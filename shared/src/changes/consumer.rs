//! The stream consumer: the `changes-consumer` Lambda's handler (and `make run`'s and the
//! tests' poller call it the same way). For each record of a DynamoDB stream batch, in
//! order: derive its changes and write each exactly once. A record that fails stops the
//! batch and is reported (`ReportBatchItemFailures`): Lambda retries from it, and what was
//! already written is found again and skipped.

use super::feed::visibility_lag;
use super::settings::SettingsCache;
use super::{derive, is_client_update};
use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::store::codec::changes::ItemMeta;
use crate::store::ops::changes::Recorded;
use crate::store::{Item, Store};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use std::time::Duration;

/// The longest an on-time change write may take: past it the write counts as failed (and
/// is retried, then late). It must stay well under the visibility lag, so that a change
/// is in the table before readers' horizon passes its `recorded_at`.
pub const PUT_BUDGET: Duration = Duration::from_millis(500);

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub records: usize,
    pub written: usize,
    pub duplicates: usize,
    pub late: usize,
    pub purged: usize,
}

/// Handles one stream batch: the Lambda's answer (the first failed record, if any).
pub async fn handle(store: &Store, event: Event) -> (DynamoDbEventResponse, Tally) {
    let mut tally = Tally::default();
    let mut response = DynamoDbEventResponse::default();
    let mut settings = SettingsCache::default();
    for record in &event.records {
        if let Err(error) = handle_record(store, &mut settings, record, &mut tally).await {
            tracing::warn!(?error, sequence = ?record.change.sequence_number, "stream record failed; the batch is retried from it");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
            break;
        }
        tally.records += 1;
    }
    (response, tally)
}

fn image(image: &serde_dynamo::Item) -> Option<Item> {
    (!image.is_empty()).then(|| image.clone().into())
}

async fn handle_record(
    store: &Store,
    settings: &mut SettingsCache,
    record: &EventRecord,
    tally: &mut Tally,
) -> Result<(), ApiError> {
    let (old, new) = (
        image(&record.change.old_image),
        image(&record.change.new_image),
    );
    let millis = record
        .change
        .approximate_creation_date_time
        .timestamp_millis();
    let stream_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map(Timestamp::from_offset_date_time)
        .unwrap_or_else(|_| Timestamp::now())
        .to_stored();
    // A client's write may move its lifecycle stage, which depends on the org's thresholds.
    let stages = match old.as_ref().and_then(ItemMeta::of) {
        Some(meta) if is_client_update(old.as_ref(), new.as_ref()) => {
            let org_id = meta.org_id.unwrap_or_default();
            Some(settings.of(store, &org_id).await?.stages)
        }
        _ => None,
    };
    let changes = match derive(old.as_ref(), new.as_ref(), &stream_at, stages.as_ref()) {
        Ok(changes) => changes,
        Err(error) => {
            // An item the records cannot read (planted by a test, or a bug): retrying would
            // block the shard for a day, so it is logged and skipped.
            tracing::error!(?error, "stream record does not derive; skipped");
            return Ok(());
        }
    };
    let lag = visibility_lag();
    for new_change in &changes {
        let org_id = new_change.org_id.as_str();
        let now = Timestamp::now();
        let on_time = new_change
            .change
            .recorded_at
            .parse::<Timestamp>()
            .is_ok_and(|at| {
                let deadline = at.later_by(time::Duration::try_from(lag).unwrap_or_default());
                now.later_by(time::Duration::try_from(PUT_BUDGET).unwrap_or_default()) < deadline
            });
        // Either write must land before its `recorded_at` falls behind readers' horizon:
        // past the budget it counts as failed, and the record is retried (then late).
        let late_at = (!on_time).then(|| now.to_stored());
        tally.late += usize::from(late_at.is_some());
        let write = store.record_change(org_id, new_change, late_at.as_deref());
        let outcome = tokio::time::timeout(PUT_BUDGET, write)
            .await
            .map_err(|_| ApiError::StorageUnavailable)??;
        match outcome {
            Recorded::Written => tally.written += 1,
            Recorded::Duplicate => tally.duplicates += 1,
        }
    }
    // Issue 26: a booking's schedule arms its timers (the sweeper fires them).
    super::timers::arm(store, settings, old.as_ref(), new.as_ref()).await?;
    // An erased client: its changes written since its erasure listed them go too.
    let erased = changes.iter().any(|c| c.change.kind == "client.erased");
    if let Some(meta) = old.as_ref().and_then(ItemMeta::of).filter(|_| erased) {
        tally.purged += store.purge_client_changes(&meta.pk).await?;
    }
    Ok(())
}
