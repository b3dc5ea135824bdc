//! The DynamoDB store: the only module that talks to DynamoDB and knows its attributes.
//!
//! - [`client`]: the SDK client (credentials, TLS roots, timeouts, retries).
//! - [`keys`]: the key schema and index names; [`table`]: the table definition.
//! - [`expr`]: the expression builder every call with an expression uses.
//! - [`write`]: the request path's conditional writes; [`reads`]: queries, batches, deletes.
//! - [`events_write`]: an event and its client's counts in one transaction.
//! - [`items`]: domain values as writes; [`records`]: stored items as typed records;
//!   [`client_record`]: a user item merged into the client record clients see;
//!   [`threads`]: a thread's inbox state from its messages, and where a message is;
//!   [`identity`]: emails and external ids naming one client (aliases, the merge).
//! - [`error`]: SDK errors as [`ApiError`]s; [`admin`]: orgs and API keys; [`backfill`]:
//!   index keys for erasure on items written before it listed them.

pub mod admin;
pub mod backfill;
pub mod client;
pub mod client_record;
pub mod error;
pub mod events_write;
pub mod expr;
pub mod identity;
pub mod items;
pub mod keys;
pub mod reads;
pub mod records;
pub mod table;
pub mod threads;
pub mod write;

pub use client::{
    https_client_trusting_amazon_roots, AMAZON_ROOT_CAS_PEM, ATTEMPT_TIMEOUT, CONNECT_TIMEOUT,
    DEFAULT_TABLE_NAME, INITIAL_BACKOFF, MAX_ATTEMPTS, MAX_BACKOFF, OPERATION_TIMEOUT,
    REQUEST_DEADLINE,
};
pub use error::storage_error;
pub use events_write::{EventOutcome, EventWrite};
pub use write::{Advance, PutOutcome, Upsert, UpsertOutcome};

use crate::error::ApiError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use keys::ItemKey;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
}

/// A string attribute value.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute value.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
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
            .set_key(Some(keys::key_item(key)))
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
            .set_key(Some(keys::key_item(key)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| storage_error("GetItem", e))?;
        Ok(output.item)
    }
}
