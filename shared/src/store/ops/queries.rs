//! Reads and deletes: Query (one page, or a bounded walk), BatchGetItem and BatchWriteItem
//! deletes with bounded retries of what DynamoDB leaves unprocessed. Never a Scan.

use crate::error::ApiError;
use crate::store::codec::client_record;
use crate::store::codec::records::{decode, Erasure, Stored};
use crate::store::expr::Expr;
use crate::store::schema::attributes::{event_attribute, ERASED_EVENT, ERASED_KEY_RETENTION_SECS};
use crate::store::schema::keys::{self, key_attributes, Index, ItemKey};
use crate::store::schema::table::TTL_ATTRIBUTE;
use crate::store::schema::{n, s, Item};
use crate::store::{storage_error, Store};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest,
};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;

/// Most keys in one BatchGetItem call (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;
/// Most requests in one BatchWriteItem call (DynamoDB's limit).
const BATCH_WRITE_ITEMS: usize = 25;
/// Calls per batch operation, the first one included, before unprocessed keys are a 503.
const BATCH_ATTEMPTS: u32 = 5;
/// Query calls one page may make to fill itself when a filter drops items.
pub const FILTERED_PAGE_CALLS: usize = 3;
/// Query calls (of up to 1 MB each) one read of a whole collection may make.
const COLLECTION_CALLS: usize = 10;

/// The sort-key part of a Query's key condition.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Any,
    BeginsWith(String),
    Below(String),
    /// Inclusive bounds.
    Between(String, String),
}

impl SortKey {
    /// The children of one kind under a parent (see [`keys::kind_prefix`]).
    pub fn children(kind: &str) -> Self {
        SortKey::BeginsWith(keys::kind_prefix(kind))
    }
}

/// One Query: a partition of `index`, a sort-key condition, equality filters.
#[derive(Debug, Clone)]
pub struct Query {
    pub index: Index,
    pub partition: String,
    pub sort: SortKey,
    /// `attribute = value` filters, applied by DynamoDB after the key condition.
    filters: Vec<(&'static str, AttributeValue)>,
    /// `attribute < value` filters (text), likewise.
    before: Vec<(&'static str, String)>,
    pub ascending: bool,
    /// Only these attributes (keys are always included), or the whole item.
    pub projection: Option<Vec<&'static str>>,
    /// A strongly consistent read (the table only: indexes are eventually consistent).
    pub consistent: bool,
}

impl Query {
    pub fn new(index: Index, partition: impl Into<String>, sort: SortKey) -> Self {
        Query {
            index,
            partition: partition.into(),
            sort,
            filters: Vec::new(),
            before: Vec::new(),
            ascending: true,
            projection: None,
            consistent: false,
        }
    }

    /// Only items whose text attribute `name` is `value` (a filter, see [`Query::filters`]).
    pub fn filter_text(&mut self, name: &'static str, value: &str) {
        self.filters.push((name, s(value)));
    }

    /// Only items whose boolean attribute `name` is `value`.
    pub fn filter_flag(&mut self, name: &'static str, value: bool) {
        self.filters.push((name, AttributeValue::Bool(value)));
    }

    /// Only items whose text attribute `name` sorts before `value`.
    pub fn filter_before(&mut self, name: &'static str, value: &str) {
        self.before.push((name, value.to_owned()));
    }

    fn filtered(&self) -> bool {
        !self.filters.is_empty() || !self.before.is_empty()
    }

    pub fn newest_first(mut self) -> Self {
        self.ascending = false;
        self
    }
}

/// A page of records and, when more may follow, the position to continue from.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Position>,
    /// Query calls made for it.
    pub queries: usize,
}

/// A position in an index (DynamoDB's LastEvaluatedKey / ExclusiveStartKey): the key
/// attributes of the item a page ended at, all strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Position(Item);

impl Position {
    /// The same position in another partition of `index` (a shard of the same list):
    /// where that partition's items sorting after this one begin.
    fn in_partition(&self, index: Index, partition: &str) -> Position {
        let (pk, _) = index.key();
        let mut item = self.0.clone();
        item.insert(pk.to_owned(), s(partition));
        Position(item)
    }

    pub fn from_strings(attributes: BTreeMap<String, String>) -> Self {
        Position(
            attributes
                .into_iter()
                .map(|(name, value)| (name, s(value)))
                .collect(),
        )
    }

    pub fn strings(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_s().ok()?.clone())))
            .collect()
    }
}

/// An item's position in `index`: what DynamoDB's LastEvaluatedKey would be after it.
fn position_of(item: &Item, index: Index) -> Position {
    Position(
        index
            .position_attributes()
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), item.get(name)?.clone())))
            .collect(),
    )
}

/// How much more a shard read again asks for than its previous read.
const SHARD_READ_GROWTH: usize = 5;
/// Items a shard's first read asks for beyond its share of the page: with 64 shards a page
/// of 25 is about 0.4 items a shard, and a shard holds 3 or more of them rarely (about 1%).
const SHARD_READ_MARGIN: usize = 2;

/// What a shard's first read asks for: its share of `limit + 1` items, plus a margin.
pub fn first_shard_read(limit: usize, shards: usize) -> usize {
    (limit + 1).div_ceil(shards.max(1)) + SHARD_READ_MARGIN
}

/// One shard's reads of one page.
struct ShardRead {
    query: Query,
    /// Where its next read starts (its frontier, once read).
    resume: Option<Item>,
    /// Read to its end.
    done: bool,
    /// Items asked for so far, and by the next read.
    asked: usize,
    next_read: usize,
}

/// The earliest frontier of the shards not read to their end.
fn frontier<'a>(shards: &'a [ShardRead], order: &MergeOrder) -> Option<&'a Item> {
    shards
        .iter()
        .filter(|shard| !shard.done)
        .filter_map(|shard| shard.resume.as_ref())
        .min_by(|a, b| order.compare(a, b))
}

/// The order of a list's items across partitions: the index's sort key, then the table
/// key (sort keys of a list are unique already: they end with the record's id).
struct MergeOrder {
    index: Index,
    ascending: bool,
}

impl MergeOrder {
    fn compare(&self, a: &Item, b: &Item) -> std::cmp::Ordering {
        let (_, sort) = self.index.key();
        let key = |item: &Item| {
            [sort, keys::TABLE_PK, keys::TABLE_SK]
                .map(|name| item.get(name).and_then(|v| v.as_s().ok()).cloned())
        };
        let order = key(a).cmp(&key(b));
        if self.ascending {
            order
        } else {
            order.reverse()
        }
    }
}

fn decode_all<T: DeserializeOwned>(items: Vec<Item>) -> Result<Vec<T>, ApiError> {
    items.into_iter().map(decode).collect()
}

/// The expressions of one Query, and the maps they refer to.
struct QueryExpression {
    key_condition: String,
    filter: Option<String>,
    projection: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
}

fn query_expression(query: &Query) -> QueryExpression {
    let (pk, sk) = query.index.key();
    let mut expr = Expr::new();
    let mut key_condition = expr.equals(pk, s(&query.partition));
    let sort = match &query.sort {
        SortKey::Any => None,
        SortKey::BeginsWith(prefix) => {
            let prefix = expr.value(s(prefix));
            Some(format!("begins_with({}, {prefix})", expr.name(sk)))
        }
        SortKey::Below(bound) => {
            let bound = expr.value(s(bound));
            Some(expr.below(sk, &bound))
        }
        SortKey::Between(low, high) => {
            let (low, high) = (expr.value(s(low)), expr.value(s(high)));
            Some(format!("{} BETWEEN {low} AND {high}", expr.name(sk)))
        }
    };
    if let Some(sort) = sort {
        key_condition = format!("{key_condition} AND {sort}");
    }
    let mut filters: Vec<String> = query
        .filters
        .iter()
        .map(|(name, value)| filter(&mut expr, name, value))
        .collect();
    for (name, bound) in &query.before {
        let bound = expr.value(s(bound));
        filters.push(expr.below(name, &bound));
    }
    let projection = query.projection.as_ref().map(|attributes| {
        let all = query.index.position_attributes();
        expr.projection(all.into_iter().chain(attributes.iter().copied()))
    });
    let expression = expr.finish();
    QueryExpression {
        key_condition,
        filter: (!filters.is_empty()).then(|| filters.join(" AND ")),
        projection,
        names: expression.names,
        values: expression.values,
    }
}

/// `name = value`; for a client field that events also keep (see [`client_record`]), the
/// record's merged value: the events' when an event carried one, the profile's otherwise.
fn filter(expr: &mut Expr, name: &str, value: &AttributeValue) -> String {
    let Some(field) = client_record::event_field(name) else {
        return expr.equals(name, value.clone());
    };
    let attribute = event_attribute(field);
    let stored = match value {
        AttributeValue::Bool(flag) => n(u8::from(*flag)),
        other => other.clone(),
    };
    let (has, lacks) = (expr.exists(&attribute), expr.not_exists(&attribute));
    let event_value = format!("{}.{}", expr.name(&attribute), expr.name("v"));
    let event_value = format!("{event_value} = {}", expr.value(stored));
    let profile_value = expr.equals(name, value.clone());
    format!("(({has} AND {event_value}) OR ({lacks} AND {profile_value}))")
}

impl Store {
    /// The Query request of `query`, from its first item.
    pub(super) fn query_request(
        &self,
        query: &Query,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let expression = query_expression(query);
        self.client
            .query()
            .table_name(&self.table)
            .set_index_name(query.index.name().map(str::to_owned))
            .key_condition_expression(expression.key_condition)
            .set_filter_expression(expression.filter)
            .set_projection_expression(expression.projection)
            .set_expression_attribute_names(expression.names)
            .set_expression_attribute_values(expression.values)
            .scan_index_forward(query.ascending)
            .consistent_read(query.consistent)
    }

    /// One Query call: up to `limit` items from `start` on, and DynamoDB's LastEvaluatedKey.
    pub(super) async fn query_once(
        &self,
        query: &Query,
        limit: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), ApiError> {
        let resumed = start.is_some();
        let result = self
            .query_request(query)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await;
        match result {
            Ok(output) => Ok((output.items.unwrap_or_default(), output.last_evaluated_key)),
            // A start key outside the key condition: a cursor that was tampered with.
            Err(error)
                if resumed
                    && error
                        .as_service_error()
                        .is_some_and(|e| e.code() == Some("ValidationException")) =>
            {
                tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&error), "query rejected its start key");
                Err(ApiError::InvalidCursor)
            }
            Err(error) => Err(storage_error("Query", error)),
        }
    }

    /// Up to `limit` items from `start` on, and where to continue if more may follow.
    ///
    /// Asks for one item more than the page so that a page that ends exactly at the last
    /// item says so (`next` is `None`). With filters, DynamoDB applies `Limit` before
    /// filtering, so a page may come back short; up to [`FILTERED_PAGE_CALLS`] calls fill
    /// it, after which `next` says more may exist.
    pub async fn query_page<T: DeserializeOwned>(
        &self,
        query: &Query,
        limit: usize,
        start: Option<Position>,
    ) -> Result<Page<T>, ApiError> {
        let page = self.raw_page(query, limit, start).await?;
        Ok(Page {
            items: decode_all(page.items)?,
            next: page.next,
            queries: page.queries,
        })
    }

    async fn raw_page(
        &self,
        query: &Query,
        limit: usize,
        start: Option<Position>,
    ) -> Result<Page<Item>, ApiError> {
        let mut items = Vec::new();
        let mut start = start.map(|position| position.0);
        let mut queries = 0;
        for _ in 0..FILTERED_PAGE_CALLS {
            let wanted = limit + 1 - items.len();
            let (found, last) = self.query_once(query, wanted, start).await?;
            queries += 1;
            items.extend(found);
            start = last;
            if items.len() > limit || start.is_none() || !query.filtered() {
                break;
            }
        }
        if items.len() > limit {
            items.truncate(limit);
            let next = items.last().map(|item| position_of(item, query.index));
            return Ok(Page {
                items,
                next,
                queries,
            });
        }
        Ok(Page {
            items,
            next: start.map(Position),
            queries,
        })
    }

    /// One page of a list spread over `partitions` (the shards of a list, see
    /// [`keys::OrgList`]), in the order one partition holding them all would give, of the
    /// records `keep` accepts (a predicate on the decoded record: what DynamoDB cannot
    /// express).
    ///
    /// Every shard is read concurrently from the page's start, asking each for about its
    /// share of the page ([`first_shard_read`]: a shard holds about `1/shards` of it). A
    /// shard that has more than it returned has been read up to its *frontier* (its last
    /// evaluated position); only items up to the earliest frontier are known to be in
    /// order. When fewer than `limit + 1` kept items are known, only the shards whose
    /// frontier is before the `limit + 1`-th kept item read so far (or all unfinished
    /// shards, when fewer were read) are read again, asking for more each time, within
    /// [`FILTERED_PAGE_CALLS`] calls and `limit + 1` items per shard on average. The page is
    /// the first `limit` known items; it ends at one point of the merged order before
    /// which every shard's items were returned (or filtered out) and after which none was:
    /// every shard's position at once. So the next position is that one point (the last
    /// item returned, or the earliest frontier when the reads left the page short), and
    /// each shard resumes there: exact pages (no duplicate, no gap) from one position, of
    /// the same size as an unsharded cursor's.
    pub async fn sharded_page<T: DeserializeOwned>(
        &self,
        query: &Query,
        partitions: &[String],
        limit: usize,
        start: Option<Position>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Page<T>, ApiError> {
        let index = query.index;
        let order = MergeOrder {
            index,
            ascending: query.ascending,
        };
        let item_budget = (limit + 1) * FILTERED_PAGE_CALLS;
        let call_budget = partitions.len() * FILTERED_PAGE_CALLS;
        let first = first_shard_read(limit, partitions.len());
        let mut shards: Vec<ShardRead> = partitions
            .iter()
            .map(|partition| {
                let mut shard = query.clone();
                shard.partition.clone_from(partition);
                let resume = start.as_ref().map(|p| p.in_partition(index, partition).0);
                ShardRead {
                    query: shard,
                    resume,
                    done: false,
                    asked: 0,
                    next_read: first,
                }
            })
            .collect();
        let mut kept: Vec<(Item, T)> = Vec::new();
        let mut reading: Vec<usize> = (0..shards.len()).collect();
        let mut queries = 0;
        loop {
            let reads = reading.iter().map(|&i| {
                let shard = &shards[i];
                self.query_once(&shard.query, shard.next_read, shard.resume.clone())
            });
            let results = futures::future::try_join_all(reads).await?;
            queries += reading.len();
            for (&i, (found, last)) in reading.iter().zip(results) {
                let shard = &mut shards[i];
                shard.asked += shard.next_read;
                shard.next_read = (shard.next_read * SHARD_READ_GROWTH)
                    .min(item_budget.saturating_sub(shard.asked));
                shard.done = last.is_none();
                shard.resume = last;
                for item in found {
                    let position = position_of(&item, index).0;
                    let record: T = decode(item)?;
                    if keep(&record) {
                        kept.push((position, record));
                    }
                }
            }
            kept.sort_by(|a, b| order.compare(&a.0, &b.0));
            let frontier = frontier(&shards, &order);
            let known = kept
                .iter()
                .take_while(|(at, _)| frontier.is_none_or(|f| order.compare(at, f).is_le()))
                .count();
            if known > limit || frontier.is_none() {
                break;
            }
            // The page ends at or before the `limit + 1`-th kept item read so far: a shard
            // already read past it cannot add to the page.
            let target = kept.get(limit).map(|(at, _)| at);
            reading = shards
                .iter()
                .enumerate()
                .filter(|(_, shard)| {
                    !shard.done
                        && shard.next_read > 0
                        && shard.resume.as_ref().is_some_and(|at| {
                            target.is_none_or(|target| order.compare(at, target).is_lt())
                        })
                })
                .map(|(i, _)| i)
                .collect();
            if reading.is_empty() || queries + reading.len() > call_budget {
                break;
            }
        }
        let frontier = frontier(&shards, &order).cloned();
        let mut items: Vec<(Item, T)> = kept
            .into_iter()
            .take_while(|(at, _)| {
                frontier
                    .as_ref()
                    .is_none_or(|f| order.compare(at, f).is_le())
            })
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(at, _)| Position(at.clone()))
        } else {
            frontier.map(Position)
        };
        tracing::debug!(queries, "sharded page");
        Ok(Page {
            items: items.into_iter().map(|(_, record)| record).collect(),
            next,
            queries,
        })
    }

    /// Every item the query finds, up to `max` (a bound, not a page size) and at most
    /// [`COLLECTION_CALLS`] calls: for reads that need a whole small collection. The flag
    /// says whether items were left unread.
    pub async fn query_up_to<T: DeserializeOwned>(
        &self,
        query: &Query,
        max: usize,
    ) -> Result<(Vec<T>, bool), ApiError> {
        let mut items = Vec::new();
        let mut start = None;
        for _ in 0..COLLECTION_CALLS {
            let (found, last) = self.query_once(query, max + 1 - items.len(), start).await?;
            items.extend(found);
            start = last;
            if items.len() > max || start.is_none() {
                break;
            }
        }
        let more = items.len() > max || start.is_some();
        items.truncate(max);
        Ok((decode_all(items)?, more))
    }

    /// The items at `keys` that exist (in no particular order), in BatchGetItem calls of
    /// 100 keys, retrying unprocessed keys with a bounded backoff. Duplicate keys are read once.
    pub async fn batch_get(&self, keys: &[ItemKey]) -> Result<Vec<Stored>, ApiError> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&ItemKey> = keys.iter().filter(|key| seen.insert(*key)).collect();
        let chunks = unique.chunks(BATCH_GET_KEYS).map(|chunk| {
            let keys: Vec<Item> = chunk.iter().map(|key| key_attributes(key)).collect();
            self.batch_get_chunk(keys, false)
        });
        let found = futures::future::try_join_all(chunks).await?;
        Ok(found.into_iter().flatten().map(Stored::new).collect())
    }

    /// The items at two distinct keys, read strongly consistently in one BatchGetItem
    /// (one request where two GetItems would be two; the same read units).
    pub async fn get_pair_consistent(
        &self,
        keys: [&ItemKey; 2],
    ) -> Result<[Option<Item>; 2], ApiError> {
        let found = self
            .batch_get_chunk(keys.iter().map(|key| key_attributes(key)).collect(), true)
            .await?;
        let mut pair = [None, None];
        for item in found {
            let position =
                keys::key_of(&item).and_then(|key| keys.iter().position(|wanted| **wanted == key));
            if let Some(position) = position {
                pair[position] = Some(item);
            }
        }
        Ok(pair)
    }

    async fn batch_get_chunk(
        &self,
        mut keys: Vec<Item>,
        consistent: bool,
    ) -> Result<Vec<Item>, ApiError> {
        let mut items = Vec::new();
        for attempt in 0..BATCH_ATTEMPTS {
            if keys.is_empty() {
                return Ok(items);
            }
            backoff(attempt).await;
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(consistent)
                .build()
                .map_err(|error| {
                    tracing::error!(%error, "batch get request");
                    ApiError::Internal
                })?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| storage_error("BatchGetItem", e))?;
            if let Some(mut responses) = output.responses {
                items.extend(responses.remove(&self.table).unwrap_or_default());
            }
            keys = output
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                .map(|rest| rest.keys)
                .unwrap_or_default();
        }
        if keys.is_empty() {
            return Ok(items);
        }
        tracing::warn!(left = keys.len(), "BatchGetItem left keys unprocessed");
        Err(ApiError::StorageUnavailable)
    }

    /// Deletes one item; whether it existed.
    pub async fn delete(&self, key: &ItemKey) -> Result<bool, ApiError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| storage_error("DeleteItem", e))?;
        Ok(output.attributes.is_some_and(|item| !item.is_empty()))
    }

    /// Deletes the item at `key` only if its text attribute `attribute` is `value` (an
    /// item replaced since it was read stays); a failed condition is no error.
    pub(crate) async fn delete_if(
        &self,
        key: &ItemKey,
        attribute: &str,
        value: &str,
        what: &'static str,
    ) -> Result<(), ApiError> {
        let mut expr = Expr::new();
        let same = expr.equals(attribute, s(value));
        expr.condition(same);
        let expression = expr.finish();
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .set_condition_expression(expression.condition)
            .set_expression_attribute_names(expression.names)
            .set_expression_attribute_values(expression.values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if crate::store::error::is_condition_failure(&error) => Ok(()),
            Err(error) => Err(storage_error(what, error)),
        }
    }

    /// Erases items in BatchWriteItem calls of 25 (concurrently), retrying what DynamoDB
    /// leaves unprocessed with a bounded backoff: each item is deleted, or replaced by a
    /// [`Erasure::Tombstone`]. Erasing a missing item is a no-op.
    pub async fn batch_delete(&self, erasures: &[Erasure]) -> Result<(), ApiError> {
        let expires = u64::try_from(crate::fields::Timestamp::now().unix_seconds()).unwrap_or(0)
            + ERASED_KEY_RETENTION_SECS;
        let chunks = erasures.chunks(BATCH_WRITE_ITEMS).map(|chunk| {
            let requests = chunk
                .iter()
                .map(|erasure| match erasure {
                    Erasure::Delete(key) => {
                        let delete = DeleteRequest::builder()
                            .set_key(Some(key_attributes(key)))
                            .build()
                            .expect("the key is set");
                        WriteRequest::builder().delete_request(delete).build()
                    }
                    Erasure::Tombstone(key) => {
                        let mut item = key_attributes(key);
                        item.insert("entity".into(), s(ERASED_EVENT));
                        item.insert(TTL_ATTRIBUTE.into(), n(expires));
                        let put = PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .expect("the item is set");
                        WriteRequest::builder().put_request(put).build()
                    }
                })
                .collect();
            self.batch_delete_chunk(requests)
        });
        futures::future::try_join_all(chunks).await?;
        Ok(())
    }

    async fn batch_delete_chunk(&self, mut requests: Vec<WriteRequest>) -> Result<(), ApiError> {
        for attempt in 0..BATCH_ATTEMPTS {
            if requests.is_empty() {
                return Ok(());
            }
            backoff(attempt).await;
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.table, std::mem::take(&mut requests))
                .send()
                .await
                .map_err(|e| storage_error("BatchWriteItem", e))?;
            requests = output
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                .unwrap_or_default();
        }
        if requests.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            left = requests.len(),
            "BatchWriteItem left deletes unprocessed"
        );
        Err(ApiError::StorageUnavailable)
    }
}

impl Store {
    /// The record at `key`, decoded as `T`.
    pub async fn get_record<T: DeserializeOwned>(
        &self,
        key: &ItemKey,
    ) -> Result<Option<T>, ApiError> {
        self.get(key).await?.map(decode).transpose()
    }

    /// [`Store::get_record`] with a strongly consistent read.
    pub async fn get_consistent_record<T: DeserializeOwned>(
        &self,
        key: &ItemKey,
    ) -> Result<Option<T>, ApiError> {
        self.get_consistent(key).await?.map(decode).transpose()
    }
}

/// Nothing before the first call, then 25, 50, 100, 200 ms: DynamoDB's advice for
/// unprocessed batch items, bounded well inside the operation timeout.
async fn backoff(attempt: u32) {
    if attempt > 0 {
        tokio::time::sleep(Duration::from_millis(25 << (attempt - 1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_with_a_range_a_filter_and_a_projection() {
        let mut query = Query::new(
            Index::Gsi2,
            "ORG#acme#BOOKINGS",
            SortKey::Between("a".into(), "b".into()),
        );
        query.filters = vec![("status", s("confirmed"))];
        query.projection = Some(vec!["entity"]);
        let expression = query_expression(&query);
        assert_eq!(
            expression.key_condition,
            "#n0 = :v0 AND #n1 BETWEEN :v1 AND :v2"
        );
        assert_eq!(expression.filter.as_deref(), Some("#n2 = :v3"));
        assert_eq!(
            expression.projection.as_deref(),
            Some("#n3, #n4, #n0, #n1, #n5")
        );
        let names = expression.names.unwrap();
        assert_eq!(names["#n0"], "GSI2PK");
        assert_eq!(names["#n1"], "GSI2SK");
        assert_eq!(names["#n5"], "entity");
    }

    #[test]
    fn a_query_of_a_whole_partition() {
        let query = Query::new(Index::Table, "ORG#acme#THREAD#t1", SortKey::Any);
        let expression = query_expression(&query);
        assert_eq!(expression.key_condition, "#n0 = :v0");
        assert_eq!(expression.filter, None);
        assert_eq!(expression.projection, None);
    }
}
