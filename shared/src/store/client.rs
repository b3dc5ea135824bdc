//! The DynamoDB client: region, credentials, TLS roots, timeouts and retries.

use super::Store;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::Client;
use std::time::Duration;

/// Table name when `TABLE_NAME` is not set (local development).
pub const DEFAULT_TABLE_NAME: &str = "developer-ingest";
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
}
