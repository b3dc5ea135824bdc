//! The publisher: a second consumer of the table's stream that puts every new change item
//! on the EventBridge bus (`source` [`SOURCE`], `detail-type` the change type, `detail` the
//! change). It reads only INSERTs of change items (the event source mapping filters them on
//! AWS; this skips the rest too), so a change is published once it is stored, never before.
//! PutEvents takes 10 entries a call; entries it refuses are retried with backoff, at most
//! [`PUT_ATTEMPTS`] calls, then the record is reported failed and Lambda retries the batch
//! from it (bisecting, bounded, then the on-failure queue). So delivery is at least once:
//! a retried batch may put a change twice, with the same `id` (consumers dedupe on it).

use crate::store::codec::changes::{decode_change, Change, ItemMeta};
use crate::store::Item;
use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use std::time::Duration;

/// The `source` of every event the feed puts on the bus.
pub const SOURCE: &str = "developer-ingest.changes";
/// PutEvents calls per group of entries before the record counts as failed.
pub const PUT_ATTEMPTS: u32 = 4;
/// Entries per PutEvents call (EventBridge's limit).
const ENTRIES_PER_CALL: usize = 10;

/// An EventBridge client: `EVENTBRIDGE_ENDPOINT` (an emulator) or AWS, credentials from the
/// environment (Lambda sets them), region `AWS_REGION`.
pub async fn client_from_env() -> Client {
    use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let mut config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region));
    config = match std::env::var("EVENTBRIDGE_ENDPOINT") {
        Ok(endpoint) if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() => config
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("local", "local", None, None, "local")),
        Ok(endpoint) => config.endpoint_url(endpoint).credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        ),
        Err(_) => config.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        ),
    };
    Client::from_conf(config.build())
}

/// The change a stream record inserted, with its org, if it inserted one.
fn inserted_change(event_name: &str, image: &serde_dynamo::Item) -> Option<(String, Change)> {
    if event_name != "INSERT" || image.is_empty() {
        return None;
    }
    let item: Item = image.clone().into();
    let meta = ItemMeta::of(&item)?;
    if meta.entity.as_deref() != Some("change") {
        return None;
    }
    let org_id = meta.org_id?;
    Some((org_id, decode_change(item).ok().flatten()?))
}

/// The event's `detail`: the change record, and the org it belongs to (the bus carries
/// every org's changes).
fn detail(org_id: &str, change: &Change) -> String {
    let mut detail = serde_json::to_value(change).expect("a change serializes");
    detail["org_id"] = serde_json::Value::from(org_id);
    detail.to_string()
}

/// What one batch published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub changes: usize,
    pub retried: usize,
}

/// Puts the batch's new changes on `bus`, in groups of 10; the first group that still fails
/// after [`PUT_ATTEMPTS`] calls makes its first record the batch's failure (the records
/// before it are done).
pub async fn handle(
    client: &Client,
    bus: &str,
    event: Event,
) -> (DynamoDbEventResponse, Published) {
    let mut published = Published::default();
    let mut response = DynamoDbEventResponse::default();
    let changes: Vec<(Option<String>, (String, Change))> = event
        .records
        .iter()
        .filter_map(|record| {
            let change = inserted_change(&record.event_name, &record.change.new_image)?;
            Some((record.change.sequence_number.clone(), change))
        })
        .collect();
    for group in changes.chunks(ENTRIES_PER_CALL) {
        let entries: Vec<PutEventsRequestEntry> = group
            .iter()
            .map(|(_, (org_id, change))| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source(SOURCE)
                    .detail_type(&change.kind)
                    .detail(detail(org_id, change))
                    .build()
            })
            .collect();
        match put_all(client, entries, &mut published.retried).await {
            Ok(()) => published.changes += group.len(),
            Err(error) => {
                tracing::warn!(%error, "PutEvents failed; the batch is retried from this group");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = group[0].0.clone();
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    (response, published)
}

/// PutEvents of `entries`, again for those refused (throttled, internal errors), with
/// backoff, at most [`PUT_ATTEMPTS`] calls.
async fn put_all(
    client: &Client,
    mut entries: Vec<PutEventsRequestEntry>,
    retried: &mut usize,
) -> Result<(), String> {
    for attempt in 0..PUT_ATTEMPTS {
        if attempt > 0 {
            *retried += entries.len();
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let output = match client
            .put_events()
            .set_entries(Some(entries.clone()))
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if attempt + 1 < PUT_ATTEMPTS => {
                tracing::warn!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&error), "PutEvents call failed");
                continue;
            }
            Err(error) => {
                return Err(aws_sdk_eventbridge::error::DisplayErrorContext(&error).to_string())
            }
        };
        if output.failed_entry_count == 0 {
            return Ok(());
        }
        // Results are in the order of the entries; a failed one has an error code.
        let results = output.entries.unwrap_or_default();
        entries = entries
            .into_iter()
            .zip(results)
            .filter(|(_, result)| result.error_code.is_some())
            .map(|(entry, _)| entry)
            .collect();
    }
    Err(format!("{} entries still refused", entries.len()))
}
