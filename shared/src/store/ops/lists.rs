//! The named reads of the read endpoints, erasure and the tools: every query they make is
//! built here, so nothing outside the store names an index, a sort-key condition or an
//! attribute to filter on. Each is the very Query the caller built before (same index,
//! key condition, filters, projection, order and page size): the calls made per request
//! are unchanged.

use super::queries::{Page, Position, Query, SortKey};
use crate::error::ApiError;
use crate::fields::Id;
use crate::input::UserIdentity;
use crate::store::codec::records::{decode, Listed, MessageTally};
use crate::store::schema::keys::{self, Index, OrgList};
use crate::store::{storage_error, Store};
use aws_sdk_dynamodb::types::Select;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A client's lists under its user key (GSI1), each newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserList {
    Events,
    Sales,
    Bookings,
    Conversations,
}

impl UserList {
    fn query(self, user_pk: &str) -> Query {
        let kind = match self {
            UserList::Events => keys::EVENT,
            UserList::Sales => keys::SALE,
            UserList::Bookings => keys::BOOKING,
            UserList::Conversations => keys::THREAD,
        };
        Query::new(Index::Gsi1, user_pk, SortKey::children(kind)).newest_first()
    }
}

/// What a page of a paginated read comes from: a cursor is only valid inside it (see
/// `crate::cursor`): one org's partitions of one index.
#[derive(Debug, Clone)]
pub struct PageScope {
    index: Index,
    org_prefix: String,
    partitions: Vec<String>,
}

impl PageScope {
    /// An org-wide list: all its shards.
    pub fn list(org_id: &str, list: OrgList) -> Self {
        PageScope::org_list_partitions(org_id, list.partitions(org_id))
    }

    /// A thread's messages (GSI1, in `sent_at` order).
    pub fn thread_messages(org_id: &str, thread_id: &Id) -> Self {
        PageScope {
            index: Index::Gsi1,
            org_prefix: keys::org_prefix(org_id),
            partitions: vec![keys::thread_pk(org_id, thread_id)],
        }
    }

    /// Some partitions of GSI2 (`list` gives an org-wide list's; tests name others).
    pub(crate) fn org_list_partitions(org_id: &str, partitions: Vec<String>) -> Self {
        PageScope {
            index: Index::Gsi2,
            org_prefix: keys::org_prefix(org_id),
            partitions,
        }
    }

    /// Whether `attributes` are a position in this scope: exactly the index's key
    /// attributes, a table key of the org, a partition of the scope.
    pub fn holds(&self, attributes: &BTreeMap<String, String>) -> bool {
        let names = self.index.position_attributes();
        let (partition, _) = self.index.key();
        attributes.len() == names.len()
            && names.iter().all(|name| attributes.contains_key(*name))
            && attributes[keys::TABLE_PK].starts_with(&self.org_prefix)
            && self.partitions.contains(&attributes[partition])
    }
}

/// The filters of the segment (`GET users/`).
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Only users whose last activity is before this stored time.
    pub inactive_since: Option<String>,
    /// `(attribute, value)` of `USER_TEXT_FILTERS` (see `codec::records`).
    pub text: Vec<(&'static str, String)>,
    /// `(attribute, value)` of `USER_FLAG_FILTERS`.
    pub flags: Vec<(&'static str, bool)>,
}

/// The segment's Query (its partition set per shard): sort keys are `<start of the user's
/// activity period>#<identity>`, at most a day before the exact `last_activity_at`
/// (`keys::user_activity_sort`), so every user inactive since the cutoff is below it, and
/// the filter drops those active since their key.
fn users_query(filter: &UserFilter) -> Query {
    let cutoff = filter.inactive_since.clone();
    let sort = cutoff.clone().map_or(SortKey::Any, SortKey::Below);
    let mut query = Query::new(Index::Gsi2, String::new(), sort);
    if let Some(cutoff) = &cutoff {
        query.filter_before("last_activity_at", cutoff);
    }
    for (name, value) in &filter.text {
        query.filter_text(name, value);
    }
    for (name, value) in &filter.flags {
        query.filter_flag(name, *value);
    }
    query
}

/// What erasure lists: the keys and entities ([`Listed`]) of one partition's items.
#[derive(Debug, Clone)]
pub struct Listing(Query);

impl Listing {
    fn new(index: Index, partition: String, sort: SortKey) -> Self {
        let mut query = Query::new(index, partition, sort);
        query.projection = Some(Listed::ATTRIBUTES.to_vec());
        Listing(query)
    }

    /// Everything listed under a user (GSI1): its history, threads and aliases.
    pub fn under_user(user_pk: &str) -> Self {
        Listing::new(Index::Gsi1, user_pk.to_owned(), SortKey::Any)
    }

    /// The email aliases listed under a user (GSI1).
    pub fn aliases_of(user_pk: &str) -> Self {
        Listing::new(
            Index::Gsi1,
            user_pk.to_owned(),
            SortKey::children(keys::EMAIL),
        )
    }

    /// The messages whose contact is a user (GSI2, see `keys::message_under_contact`).
    pub fn messages_with_contact(user_pk: &str) -> Self {
        let messages = SortKey::children(keys::MESSAGE);
        Listing::new(Index::Gsi2, user_pk.to_owned(), messages)
    }

    /// A thread's messages, in the thread's own partition.
    pub fn messages_of(thread_pk: &str) -> Self {
        let messages = SortKey::children(keys::MESSAGE);
        Listing::new(Index::Table, thread_pk.to_owned(), messages)
    }
}

impl Store {
    /// Up to `max` of a client's `list` under `user_pk`, newest first, and whether more exist.
    pub async fn user_list<T: DeserializeOwned>(
        &self,
        user_pk: &str,
        list: UserList,
        max: usize,
    ) -> Result<(Vec<T>, bool), ApiError> {
        self.query_up_to(&list.query(user_pk), max).await
    }

    /// The newest message of a thread.
    pub async fn last_message<T: DeserializeOwned>(
        &self,
        org_id: &str,
        thread_id: &Id,
    ) -> Result<Option<T>, ApiError> {
        let pk = keys::thread_pk(org_id, thread_id);
        let query = Query::new(Index::Gsi1, pk, SortKey::children(keys::MESSAGE)).newest_first();
        let (mut found, _) = self.query_up_to(&query, 1).await?;
        Ok(found.pop())
    }

    /// A page of a thread's messages in `sent_at` order ([`PageScope::thread_messages`]).
    pub async fn messages_page<T: DeserializeOwned>(
        &self,
        org_id: &str,
        thread_id: &Id,
        limit: usize,
        start: Option<Position>,
    ) -> Result<Page<T>, ApiError> {
        let pk = keys::thread_pk(org_id, thread_id);
        let query = Query::new(Index::Gsi1, pk, SortKey::children(keys::MESSAGE));
        self.query_page(&query, limit, start).await
    }

    /// Up to `max` messages of a thread as its summary counts them, read from the thread's
    /// own partition with a small projection; whether more exist.
    pub async fn message_tally(
        &self,
        org_id: &str,
        thread_id: &Id,
        max: usize,
    ) -> Result<(Vec<MessageTally>, bool), ApiError> {
        let pk = keys::thread_pk(org_id, thread_id);
        let mut query = Query::new(Index::Table, pk, SortKey::children(keys::MESSAGE));
        query.projection = Some(MessageTally::ATTRIBUTES.to_vec());
        self.query_up_to(&query, max).await
    }

    /// A page of the segment: users least recently active first, filtered by `filter`
    /// (in DynamoDB) and `keep` (on the decoded record).
    pub async fn users_page<T: DeserializeOwned>(
        &self,
        org_id: &str,
        filter: &UserFilter,
        limit: usize,
        start: Option<Position>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Page<T>, ApiError> {
        let partitions = OrgList::Users.partitions(org_id);
        self.sharded_page(&users_query(filter), &partitions, limit, start, keep)
            .await
    }

    /// Every user `filter` selects, each shard read to its end (1 MB Queries, the shards
    /// concurrently), folded per shard into an `A` by `fold` (the caller merges them): what
    /// `stats/users/` counts. More than `max` users read, or reads past `deadline`:
    /// [`ApiError::SegmentTooLarge`], never a partial answer. Also returns the Queries made.
    pub async fn users_fold<T: DeserializeOwned + Send, A: Default + Send>(
        &self,
        org_id: &str,
        filter: &UserFilter,
        (max, deadline): (usize, std::time::Instant),
        fold: impl Fn(&mut A, T) + Sync,
    ) -> Result<(Vec<A>, usize), ApiError> {
        let query = users_query(filter);
        let read = AtomicUsize::new(0);
        let queries = AtomicUsize::new(0);
        let shards = OrgList::Users
            .partitions(org_id)
            .into_iter()
            .map(|partition| {
                let mut shard = query.clone();
                shard.partition = partition;
                let (read, queries, fold) = (&read, &queries, &fold);
                async move {
                    let mut folded = A::default();
                    let mut start = None;
                    loop {
                        let (items, last) = self.query_once(&shard, usize::MAX, start).await?;
                        queries.fetch_add(1, Ordering::Relaxed);
                        let total = read.fetch_add(items.len(), Ordering::Relaxed) + items.len();
                        if total > max || std::time::Instant::now() > deadline {
                            return Err(ApiError::SegmentTooLarge { max });
                        }
                        for item in items {
                            fold(&mut folded, decode(item)?);
                        }
                        start = last;
                        if start.is_none() {
                            return Ok(folded);
                        }
                    }
                }
            });
        let folded = futures::future::try_join_all(shards).await?;
        Ok((folded, queries.into_inner()))
    }

    /// A page of the inbox: threads awaiting a reply, longest waiting first.
    pub async fn inbox_page<T: DeserializeOwned>(
        &self,
        org_id: &str,
        limit: usize,
        start: Option<Position>,
    ) -> Result<Page<T>, ApiError> {
        let query = Query::new(Index::Gsi2, String::new(), SortKey::Any);
        self.list_page(org_id, OrgList::Inbox, &query, limit, start)
            .await
    }

    /// A page of the bookings scheduled in `[from, to)` (stored times), earliest first.
    pub async fn bookings_page<T: DeserializeOwned>(
        &self,
        org_id: &str,
        (from, to): (&str, &str),
        limit: usize,
        start: Option<Position>,
    ) -> Result<Page<T>, ApiError> {
        // Sort keys are `<scheduled_at>#<booking_id>`: `from` itself sorts before every key
        // at `from`, and `to` before every key at `to`, so BETWEEN gives [from, to).
        let window = SortKey::Between(from.to_owned(), to.to_owned());
        let query = Query::new(Index::Gsi2, String::new(), window);
        self.list_page(org_id, OrgList::Bookings, &query, limit, start)
            .await
    }

    /// `query` over every shard of `list`, merged (its own partition is not used).
    async fn list_page<T: DeserializeOwned>(
        &self,
        org_id: &str,
        list: OrgList,
        query: &Query,
        limit: usize,
        start: Option<Position>,
    ) -> Result<Page<T>, ApiError> {
        let partitions = list.partitions(org_id);
        self.sharded_page(query, &partitions, limit, start, |_| true)
            .await
    }

    /// A page of what erasure lists.
    pub async fn listing_page(
        &self,
        listing: &Listing,
        limit: usize,
        start: Option<Position>,
    ) -> Result<Page<Listed>, ApiError> {
        self.query_page(&listing.0, limit, start).await
    }

    /// How many events are listed under the user `identity` (every page counted): for the
    /// tests, the soak and the importer's tests, never the request path.
    pub async fn count_user_events(
        &self,
        org_id: &str,
        identity: &UserIdentity,
    ) -> Result<usize, ApiError> {
        let query = UserList::Events.query(&keys::user_pk(org_id, identity));
        let mut count = 0;
        let mut start = None;
        loop {
            let page = self
                .query_request(&query)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| storage_error("Query", error))?;
            count += usize::try_from(page.count).unwrap_or(0);
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }
}
