//! The DynamoDB store: the only module that talks to DynamoDB and knows its attributes.
//! It reads bottom-up; each layer uses only the ones below it (`module_graph`'s tests fail
//! on an import cycle or a layer that looks up; docs/data-model.md shows the graph):
//!
//! 1. [`schema`], no I/O: [`schema::keys`] (every key and index name),
//!    [`schema::table`] (the table definition), [`schema::attributes`] (the attributes and
//!    encodings shared by several parts: `ev_*`, `rev_*`, `merged_into`, offers, money).
//! 2. Support, no I/O either: [`expr`] (the expression builder every call with an
//!    expression uses), [`error`] (SDK errors as [`ApiError`]s).
//! 3. [`codec`]: [`codec::items`] (domain values as writes), [`codec::upsert`] (what one
//!    write is), [`codec::records`] (stored items as typed records and views),
//!    [`codec::client_record`] (a user item merged into the client record clients see).
//! 4. The calls: [`client`] (the SDK client's configuration), [`ops::write`] (the request
//!    path's conditional writes), [`ops::events_write`] (an event and its client's counts in
//!    one transaction), [`ops::identity`] (emails and external ids naming one client),
//!    [`ops::threads`] (a thread's inbox state), `ops::queries` (the query machinery,
//!    batches, deletes), [`ops::lists`] (every read made outside the store, by name),
//!    [`ops::orgs`] (orgs and API keys), [`ops::table`] (creating the table),
//!    [`ops::backfill`] (index keys for erasure on items written before it listed them).

pub mod client;
pub mod codec;
pub mod error;
pub mod expr;
pub mod ops;
pub(crate) mod schema;

pub use client::{
    https_client_trusting_amazon_roots, AMAZON_ROOT_CAS_PEM, ATTEMPT_TIMEOUT, CONNECT_TIMEOUT,
    DEFAULT_TABLE_NAME, INITIAL_BACKOFF, MAX_ATTEMPTS, MAX_BACKOFF, OPERATION_TIMEOUT,
    REQUEST_DEADLINE,
};
pub use codec::upsert::{Advance, Upsert};
pub use codec::{items, records};
pub use error::storage_error;
pub use ops::events_write::{EventOutcome, EventWrite};
pub use ops::queries::{Page, Position, FILTERED_PAGE_CALLS};
pub use ops::write::{PutOutcome, UpsertOutcome};
pub use ops::{identity, table};
pub(crate) use schema::keys;
pub use schema::keys::{ItemKey, OrgList};
/// A stored item as the SDK holds it (a stream image, for the change feed's derivation).
pub use schema::Item;

use crate::error::ApiError;
use aws_sdk_dynamodb::Client;

/// Keys, raw items and queries, for what inspects the table beside the store: the tests
/// that read or plant raw items (and the one that compares a merged sharded page with
/// DynamoDB's own order over one partition), the soak's checks and `make bench`'s heat
/// simulation. Nothing in the crate outside the store uses the raw items and queries.
#[doc(hidden)]
pub mod testing {
    pub use super::ops::queries::{Query, SortKey};
    pub use super::schema::keys::Index;
    pub use super::schema::{attributes, keys, n, s, Item};
}

#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Store {
            client,
            table: table.into(),
        }
    }

    /// The SDK client, for tests and tools that inspect the table independently of the
    /// store (nothing in the crate outside `store` uses it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An UpdateItem request on the item at `key` of this table.
    pub(crate) fn update_item(
        &self,
        key: &ItemKey,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::key_attributes(key)))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Opens the HTTP(S) connection to DynamoDB (and resolves credentials) with one small
    /// GetItem, so that a function's init pays it instead of its first request. Errors are
    /// ignored: the first request retries, and reports, what this could not do.
    pub async fn warm_up(&self) {
        let _ = self.get(&keys::warm_up()).await;
    }

    pub async fn get(&self, key: &ItemKey) -> Result<Option<Item>, ApiError> {
        self.get_item(key, false).await
    }

    /// A strongly consistent read: it sees every write acknowledged before it.
    pub async fn get_consistent(&self, key: &ItemKey) -> Result<Option<Item>, ApiError> {
        self.get_item(key, true).await
    }

    async fn get_item(&self, key: &ItemKey, consistent: bool) -> Result<Option<Item>, ApiError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(keys::key_attributes(key)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| storage_error("GetItem", e))?;
        Ok(output.item)
    }
}
