//! A small reader of a table's stream for where there is no Lambda event source mapping:
//! DynamoDB Local (`make run`, the tests). It reads each shard's new records (DescribeStream,
//! GetShardIterator from the oldest record, GetRecords) and returns them as the batch
//! Lambda would hand the consumer, typed as `aws_lambda_events`' DynamoDB event.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client;
use std::collections::BTreeMap;

/// A stream and where each of its shards was read up to (the client is passed to each
/// call: a test's runtime may end while the reader lives on).
pub struct StreamPoller {
    stream_arn: String,
    /// Shard id -> the iterator to read it on with (None: the shard is closed and read).
    shards: BTreeMap<String, Option<String>>,
}

/// A streams client for the DynamoDB endpoint in `DYNAMODB_ENDPOINT` (DynamoDB Local).
pub fn local_client(endpoint: &str) -> Client {
    use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let config = aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .build();
    Client::from_conf(config)
}

type PollError = aws_sdk_dynamodbstreams::Error;

impl StreamPoller {
    pub fn new(stream_arn: String) -> Self {
        StreamPoller {
            stream_arn,
            shards: BTreeMap::new(),
        }
    }

    /// Every record written since the last call (the first call: since the stream's
    /// oldest record), shard by shard, each shard's in order.
    pub async fn poll(&mut self, client: &Client) -> Result<Event, PollError> {
        self.discover(client).await?;
        let mut records = Vec::new();
        let ids: Vec<String> = self.shards.keys().cloned().collect();
        for id in ids {
            while let Some(Some(iterator)) = self.shards.get(&id).cloned() {
                let output = client
                    .get_records()
                    .shard_iterator(iterator)
                    .limit(1000)
                    .send()
                    .await
                    .map_err(PollError::from)?;
                let found = output.records.unwrap_or_default();
                let done = found.is_empty();
                records.extend(found.iter().map(lambda_record));
                // An open shard gives a next iterator even when it has nothing new yet.
                self.shards
                    .insert(id.clone(), output.next_shard_iterator.clone());
                if done {
                    break;
                }
            }
        }
        let mut event = Event::default();
        event.records = records;
        Ok(event)
    }

    /// Shards not seen yet, read from their oldest record.
    async fn discover(&mut self, client: &Client) -> Result<(), PollError> {
        let mut start: Option<String> = None;
        loop {
            let output = client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(PollError::from)?;
            let description = output.stream_description;
            let shards = description
                .as_ref()
                .and_then(|d| d.shards.clone())
                .unwrap_or_default();
            for shard in shards {
                let Some(id) = shard.shard_id else { continue };
                if self.shards.contains_key(&id) {
                    continue;
                }
                let iterator = client
                    .get_shard_iterator()
                    .stream_arn(&self.stream_arn)
                    .shard_id(&id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .map_err(PollError::from)?
                    .shard_iterator;
                self.shards.insert(id, iterator);
            }
            start = description.and_then(|d| d.last_evaluated_shard_id);
            if start.is_none() {
                return Ok(());
            }
        }
    }
}

/// A stream record as Lambda delivers it.
fn lambda_record(record: &Record) -> EventRecord {
    let mut event = EventRecord::default();
    event.event_name = record
        .event_name
        .as_ref()
        .map(|name| name.as_str().to_owned())
        .unwrap_or_default();
    event.event_id = record.event_id.clone().unwrap_or_default();
    if let Some(change) = &record.dynamodb {
        if let Some(at) = change.approximate_creation_date_time {
            let millis = at.to_millis().unwrap_or_default();
            if let Some(at) = chrono_from_millis(millis) {
                event.change.approximate_creation_date_time = at;
            }
        }
        event.change.sequence_number = change.sequence_number.clone();
        if let Some(image) = change.new_image.clone() {
            event.change.new_image = image.into();
        }
        if let Some(image) = change.old_image.clone() {
            event.change.old_image = image.into();
        }
        if let Some(keys) = change.keys.clone() {
            event.change.keys = keys.into();
        }
    }
    event
}

fn chrono_from_millis(millis: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(millis)
}

/// What one round of [`follow_once`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub records: usize,
    pub consumed: super::consumer::Tally,
    pub published: Option<super::publisher::Published>,
}

/// One round of what the two stream consumers do in AWS, for where there is no event
/// source mapping (`make run`): the stream's new records through the consumer, then
/// through the publisher when a bus is given (change items written in a round are new
/// records of the next). A failed batch is logged; its records are not read again (a
/// local convenience, not the Lambda's retry).
pub async fn follow_once(
    poller: &mut StreamPoller,
    streams: &Client,
    store: &crate::store::Store,
    bus: Option<(&aws_sdk_eventbridge::Client, &str)>,
) -> Result<Round, PollError> {
    let event = poller.poll(streams).await?;
    let mut round = Round {
        records: event.records.len(),
        ..Round::default()
    };
    if event.records.is_empty() {
        return Ok(round);
    }
    let (response, tally) = super::consumer::handle(store, event.clone()).await;
    if !response.batch_item_failures.is_empty() {
        tracing::warn!(?response, "the consumer failed a record");
    }
    round.consumed = tally;
    if let Some((client, bus)) = bus {
        let (response, published) = super::publisher::handle(client, bus, event).await;
        if !response.batch_item_failures.is_empty() {
            tracing::warn!(?response, "the publisher failed a record");
        }
        round.published = Some(published);
    }
    Ok(round)
}
