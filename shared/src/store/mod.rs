//! The DynamoDB store: the only module that talks to DynamoDB. Every write on the request
//! path is one conditional `UpdateItem` or `PutItem`; nothing reads before it writes.

pub mod items;
pub mod keys;
pub mod reads;
pub mod table;

use crate::error::ApiError;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use keys::ItemKey;
use std::collections::HashMap;
use std::time::Duration;

pub type Item = HashMap<String, AttributeValue>;

/// Table name when `TABLE_NAME` is not set (local development).
pub const DEFAULT_TABLE_NAME: &str = "developer-ingest";
/// Rate-limit counter items are deleted by DynamoDB's TTL this long after their window.
const RATE_COUNTER_TTL_SECS: u64 = 3600;
/// Region when `AWS_REGION` is not set. Set explicitly so the SDK never probes for one.
const DEFAULT_REGION: &str = "us-east-1";

/// DynamoDB client limits, explicit so that a slow, unreachable or throttling DynamoDB
/// answers 503 well within the 10 s Lambda timeout (see [`REQUEST_DEADLINE`]).
///
/// One operation: up to [`MAX_ATTEMPTS`] attempts, each cut at [`ATTEMPT_TIMEOUT`] (a new
/// connection must also open within [`CONNECT_TIMEOUT`]), separated by jittered exponential
/// backoff (retry n waits a random fraction of `INITIAL_BACKOFF * 2^(n-1)`, at most
/// [`MAX_BACKOFF`]); the SDK retries throttling, 5xx, timeouts and connection errors.
/// Whatever happens, [`OPERATION_TIMEOUT`] ends the operation: a black hole costs 4 s
/// (attempt 1 until 2 s, backoff < 0.1 s, attempt 2 cut at 4 s); a refused connection or
/// throttling answer costs 3 fast attempts and < 0.3 s of backoff.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
pub const MAX_ATTEMPTS: u32 = 3;
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A request makes up to four DynamoDB operations in sequence (key lookup, rate-limit lease,
/// related writes, primary write), so the request as a whole also has a deadline: past it
/// the answer is 503 `storage_unavailable`. With the Lambda timeout at 10 s this leaves 4 s
/// of headroom, and the client always gets our answer, never API Gateway's timeout.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(6);

fn client_config(
    region: Region,
    credentials: aws_sdk_dynamodb::config::SharedCredentialsProvider,
) -> aws_sdk_dynamodb::config::Builder {
    use aws_sdk_dynamodb::config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion};
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        )
}

#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
}

/// One entity write: SET the given attributes, bump the version, keep `ingested_at`, and
/// (optionally) only if the `newer_than` timestamps are older than `stamp`.
#[derive(Debug, Clone)]
pub struct Upsert {
    pub key: ItemKey,
    pub entity: &'static str,
    pub org_id: String,
    pub set: Vec<(String, AttributeValue)>,
    /// Set only when the item does not have the attribute yet.
    pub set_if_absent: Vec<(String, AttributeValue)>,
    /// Numeric attributes to increment.
    pub add: Vec<(String, AttributeValue)>,
    /// Attributes to remove.
    pub remove: Vec<&'static str>,
    /// Apply only if each of these attributes is absent or older than `stamp`.
    pub newer_than: Vec<&'static str>,
    pub stamp: Option<String>,
    /// Attributes that only move forward, independently of `newer_than`.
    pub advance: Option<Advance>,
}

/// A part of a write applied only if `attribute` is absent or older than `value`.
///
/// Written in the same UpdateItem as the rest (one condition covers both). Only when that
/// condition fails because of this part alone (out-of-order data: the item already
/// reflects something newer here) is the rest written again without it, so the common
/// in-order case stays one write.
#[derive(Debug, Clone)]
pub struct Advance {
    pub attribute: &'static str,
    pub value: String,
    /// Set with `attribute = value` (they replace `set_if_absent` entries of the same name).
    pub set: Vec<(String, AttributeValue)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpsertOutcome {
    Written {
        item: Item,
        created: bool,
    },
    /// The `newer_than` guard failed: the item already reflects this or newer data.
    Stale,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PutOutcome {
    Created,
    /// An item with this key exists; here it is.
    Exists(Item),
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The root certificates of Amazon Trust Services, which sign every DynamoDB endpoint's
/// certificate (Amazon Root CA 1–4, and Starfield Services Root G2 that cross-signs them).
pub const AMAZON_ROOT_CAS_PEM: &str = include_str!("amazon-root-cas.pem");

/// The SDK's HTTPS client (rustls with aws-lc) trusting only Amazon's roots. In Lambda the
/// functions talk to nothing but DynamoDB, and loading and parsing the system's ~140 roots
/// instead is about 2 ms of every cold start (measured: client creation 2.3 ms → 0.15 ms).
/// Elsewhere (the admin CLI, tests) the SDK's default, the system's roots, is kept: a
/// developer's network may need them.
pub fn https_client_trusting_amazon_roots() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let roots = tls::TrustStore::empty().with_pem_certificate(AMAZON_ROOT_CAS_PEM.as_bytes());
    let context = tls::TlsContext::builder()
        .with_trust_store(roots)
        .build()
        .expect("the bundled Amazon root certificates are valid PEM");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https()
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Store {
            client,
            table: table.into(),
        }
    }

    /// Configured from the environment: `TABLE_NAME`, `AWS_REGION`, and `DYNAMODB_ENDPOINT`
    /// for DynamoDB Local (which then needs no real credentials).
    ///
    /// Built directly rather than through `aws_config`'s provider chains, which cold starts
    /// pay for: Lambda puts the role's credentials in the environment, so they are read from
    /// there; only without them (an admin's machine) does the SDK's default chain run.
    pub async fn from_env() -> Self {
        use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
        let table = std::env::var("TABLE_NAME").unwrap_or_else(|_| DEFAULT_TABLE_NAME.into());
        let region =
            Region::new(std::env::var("AWS_REGION").unwrap_or_else(|_| DEFAULT_REGION.into()));
        let endpoint = std::env::var("DYNAMODB_ENDPOINT").ok();
        let credentials = if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
            SharedCredentialsProvider::new(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            )
        } else if endpoint.is_some() {
            SharedCredentialsProvider::new(Credentials::new(
                "local",
                "local",
                None,
                None,
                "dynamodb-local",
            ))
        } else {
            let chain = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(region.clone())
                .load()
                .await;
            chain
                .credentials_provider()
                .expect("the default chain has a credentials provider")
        };
        let mut config = client_config(region, credentials);
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            config.set_http_client(Some(https_client_trusting_amazon_roots()));
        }
        config.set_endpoint_url(endpoint);
        Store::new(Client::from_conf(config.build()), table)
    }

    /// A store on a DynamoDB-compatible endpoint (DynamoDB Local, or a test proxy in front
    /// of it) with dummy credentials and the same timeouts and retries as [`Store::from_env`].
    pub fn at_endpoint(endpoint: &str, table: impl Into<String>) -> Self {
        use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
        let credentials = SharedCredentialsProvider::new(Credentials::new(
            "local",
            "local",
            None,
            None,
            "dynamodb-local",
        ));
        let config = client_config(Region::new(DEFAULT_REGION), credentials).endpoint_url(endpoint);
        Store::new(Client::from_conf(config.build()), table)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An UpdateItem request on the item at `key` of this table.
    pub fn update_item(
        &self,
        key: ItemKey,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(key.pk))
            .key("SK", s(key.sk))
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
            .key("PK", s(&key.pk))
            .key("SK", s(&key.sk))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| storage_error("GetItem", e))?;
        Ok(output.item)
    }

    /// Sends a guarded `upsert` unless a read shows it would change nothing: for a request
    /// that may have made this write already (an idempotent replay), one read instead of a
    /// write DynamoDB would refuse, and the write again only if the first attempt failed.
    pub async fn upsert_unless_done(&self, upsert: Upsert) -> Result<UpsertOutcome, ApiError> {
        let current = self.get_consistent(&upsert.key).await?;
        if current.is_some_and(|item| !still_applies(&upsert, &item)) {
            return Ok(UpsertOutcome::Stale);
        }
        self.upsert(upsert).await
    }

    /// Sets an API key's `last_used_at` (if the key still exists). Failures are only
    /// logged: this is bookkeeping, never a reason to fail a request.
    pub async fn record_key_use(&self, key_id: &str, at: &str) {
        let result = self
            .update_item(keys::api_key(key_id))
            .update_expression("SET last_used_at = :at")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":at", s(at))
            .send()
            .await;
        if let Err(error) = result {
            tracing::warn!(key_id, error = %aws_sdk_dynamodb::error::DisplayErrorContext(error), "could not record key use");
        }
    }

    /// Rate limiting (see `crate::ratelimit`): adds `wanted` to the key's counter of `window` unless the window is already full.
    /// `Ok(Some(count after))`, `Ok(None)` when full, `Err` when storage failed (logged).
    pub async fn lease_tokens(
        &self,
        key_id: &str,
        window: u64,
        wanted: u32,
        limit: u32,
    ) -> Result<Option<u32>, ()> {
        let result = self
            .update_item(keys::rate_limit_window(key_id, window))
            .update_expression("ADD used :wanted SET expires_at_epoch = :expires")
            .condition_expression("attribute_not_exists(used) OR used < :limit")
            .expression_attribute_values(":wanted", n(wanted))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":expires", n(window + RATE_COUNTER_TTL_SECS))
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
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(error) => {
                let _ = crate::store::storage_error("UpdateItem (rate limit)", error);
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
        let same_owner = old.get("org_id") == Some(&s(&upsert.org_id))
            && old.get("entity") == Some(&s(upsert.entity));
        if !same_owner {
            tracing::error!(pk = upsert.key.pk, "item owned by another org or entity");
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
        let mut names = HashMap::from([
            ("#pk".to_owned(), "PK".to_owned()),
            ("#entity".to_owned(), "entity".to_owned()),
            ("#org".to_owned(), "org_id".to_owned()),
            ("#ingested".to_owned(), "ingested_at".to_owned()),
            ("#updated".to_owned(), "updated_at".to_owned()),
            ("#version".to_owned(), "version".to_owned()),
        ]);
        let mut values = HashMap::from([
            (":entity".to_owned(), s(upsert.entity)),
            (":org".to_owned(), s(&upsert.org_id)),
            (
                ":now".to_owned(),
                s(crate::fields::Timestamp::now().to_stored()),
            ),
            (":one".to_owned(), n(1)),
        ]);
        let mut sets = vec![
            "#entity = :entity".to_owned(),
            "#org = :org".to_owned(),
            "#ingested = if_not_exists(#ingested, :now)".to_owned(),
            "#updated = :now".to_owned(),
        ];
        let mut adds = vec!["#version :one".to_owned()];
        let advance = upsert.advance.as_ref().filter(|_| with_advance);
        let advanced =
            |name: &String| advance.is_some_and(|a| a.set.iter().any(|(n, _)| n == name));
        let set = upsert.set.iter().chain(advance.iter().flat_map(|a| &a.set));
        for (index, (name, value)) in set.enumerate() {
            names.insert(format!("#s{index}"), name.clone());
            values.insert(format!(":s{index}"), value.clone());
            sets.push(format!("#s{index} = :s{index}"));
        }
        let set_if_absent = upsert
            .set_if_absent
            .iter()
            .filter(|(name, _)| !advanced(name));
        for (index, (name, value)) in set_if_absent.enumerate() {
            names.insert(format!("#i{index}"), name.clone());
            values.insert(format!(":i{index}"), value.clone());
            sets.push(format!("#i{index} = if_not_exists(#i{index}, :i{index})"));
        }
        for (index, (name, value)) in upsert.add.iter().enumerate() {
            names.insert(format!("#a{index}"), name.clone());
            values.insert(format!(":a{index}"), value.clone());
            adds.push(format!("#a{index} :a{index}"));
        }
        let mut removes = Vec::new();
        for (index, name) in upsert.remove.iter().enumerate() {
            names.insert(format!("#r{index}"), (*name).to_owned());
            removes.push(format!("#r{index}"));
        }
        let mut condition =
            "(attribute_not_exists(#pk) OR (#org = :org AND #entity = :entity))".to_owned();
        if let Some(stamp) = &upsert.stamp {
            values.insert(":stamp".to_owned(), s(stamp));
            for (index, name) in upsert.newer_than.iter().enumerate() {
                names.insert(format!("#g{index}"), (*name).to_owned());
                condition.push_str(&format!(
                    " AND (attribute_not_exists(#g{index}) OR #g{index} < :stamp)"
                ));
            }
        }
        if let Some(advance) = advance {
            names.insert("#adv".to_owned(), advance.attribute.to_owned());
            values.insert(":adv".to_owned(), s(&advance.value));
            condition.push_str(" AND (attribute_not_exists(#adv) OR #adv < :adv)");
        }
        let mut expression = format!("SET {} ADD {}", sets.join(", "), adds.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }

        let result = self
            .update_item(upsert.key.clone())
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let item = output.attributes.unwrap_or_default();
                let created = matches!(item.get("version"), Some(AttributeValue::N(v)) if v == "1");
                Ok(Ok(UpsertOutcome::Written { item, created }))
            }
            Err(error) => match conditional_check_item(&error) {
                Some(old) => Ok(Err(old)),
                None => Err(storage_error("UpdateItem", error)),
            },
        }
    }

    /// One conditional PutItem that only creates: if the key exists, the existing item is
    /// returned (ReturnValuesOnConditionCheckFailure=ALL_OLD) instead of being overwritten.
    pub async fn put_new(&self, item: Item) -> Result<PutOutcome, ApiError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Created),
            Err(error) => match conditional_check_item(&error) {
                Some(existing) => Ok(PutOutcome::Exists(existing)),
                None => Err(storage_error("PutItem", error)),
            },
        }
    }
}

/// Whether a guarded `upsert` would still change `item`, as its conditions would decide:
/// its `newer_than` guard, or, without one, its `advance` attribute still moving forward.
fn still_applies(upsert: &Upsert, item: &Item) -> bool {
    if !upsert.newer_than.is_empty() {
        return guard_passes(upsert, item);
    }
    match &upsert.advance {
        Some(advance) => match item.get(advance.attribute) {
            Some(AttributeValue::S(value)) => value < &advance.value,
            _ => true,
        },
        None => true,
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

/// The existing item returned with a ConditionalCheckFailedException, if that is the error.
fn conditional_check_item<E, R>(error: &SdkError<E, R>) -> Option<Item>
where
    E: ConditionalFailure,
{
    match error {
        SdkError::ServiceError(service) => service.err().conditional_item(),
        _ => None,
    }
}

/// Lets [`conditional_check_item`] serve both UpdateItem's and PutItem's error types.
pub trait ConditionalFailure {
    fn conditional_item(&self) -> Option<Item>;
}

impl ConditionalFailure for aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    fn conditional_item(&self) -> Option<Item> {
        match self {
            Self::ConditionalCheckFailedException(e) => Some(e.item.clone().unwrap_or_default()),
            _ => None,
        }
    }
}

impl ConditionalFailure for aws_sdk_dynamodb::operation::put_item::PutItemError {
    fn conditional_item(&self) -> Option<Item> {
        match self {
            Self::ConditionalCheckFailedException(e) => Some(e.item.clone().unwrap_or_default()),
            _ => None,
        }
    }
}

/// Maps an SDK error to the API: throttling, timeouts, unreachable endpoints and any 5xx
/// answer are a retryable 503; anything else is a 500. The detail goes to the log only.
pub fn storage_error<E>(
    operation: &'static str,
    error: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const RETRYABLE_CODES: [&str; 6] = [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    ];
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || service
                    .err()
                    .code()
                    .is_some_and(|code| RETRYABLE_CODES.contains(&code))
        }
        _ => false,
    };
    let detail = aws_sdk_dynamodb::error::DisplayErrorContext(&error);
    if retryable {
        tracing::warn!(operation, error = %detail, "storage unavailable");
        ApiError::StorageUnavailable
    } else {
        tracing::error!(operation, error = %detail, "storage error");
        ApiError::Internal
    }
}
