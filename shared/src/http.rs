//! The Lambda side: turns an API Gateway request into a handler call and any result into
//! a response with the request id, and logs one structured line per request (plus its
//! metrics, [`crate::metrics`]).

use crate::auth::{self, Caller, KeyCache};
use crate::endpoint::Endpoint;
use crate::error::{ApiError, STORAGE_RETRY_AFTER_SECS};
use crate::handlers::{self, Reply};
use crate::idempotency::IdempotencyKey;
use crate::metrics::{self, Metrics};
use crate::query::QueryParams;
use crate::ratelimit::{Budgets, Decision, RateLimiter};
use crate::request::ObjectType;
use crate::request::WriteRequest;
use crate::store::keys::OrgList;
use crate::store::Store;
use crate::{batch, changes, cost, encoding, erase, reads};
use lambda_http::http::header::{HeaderValue, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

pub use crate::encoding::MAX_BODY_BYTES;
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Set on an event answered from the stored event of an earlier request (a replay).
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// What a warm function instance keeps between requests.
#[derive(Debug)]
pub struct App {
    pub store: Store,
    pub keys: KeyCache,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
}

impl App {
    pub fn new(store: Store) -> Self {
        App {
            store,
            keys: KeyCache::default(),
            limiter: RateLimiter::default(),
            metrics: Metrics::from_env(),
        }
    }
}

/// What the response and its log line report besides the result.
#[derive(Debug, Default)]
struct RequestFacts {
    org_id: Option<String>,
    rate: Option<Decision>,
}

/// API Gateway's request id (it matches API Gateway's own logs), else the Lambda one.
fn request_id(request: &Request) -> String {
    if let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() {
        if let Some(id) = &context.request_id {
            return id.clone();
        }
    }
    request
        .lambda_context_ref()
        .map(|context| context.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

fn body_bytes(request: &Request) -> Result<Cow<'_, [u8]>, ApiError> {
    body_within(request, MAX_BODY_BYTES)
}

/// The body, inflated if sent with `Content-Encoding: gzip`, at most `limit` bytes.
fn body_within(request: &Request, limit: usize) -> Result<Cow<'_, [u8]>, ApiError> {
    let encoding = request
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.as_bytes());
    encoding::decode_body(encoding, request.body().as_ref(), limit)
}

/// A write endpoint: its body parsed once, then its handler. An event's `Idempotency-Key`
/// is checked after the body is decoded and before it is parsed.
async fn write(
    store: &Store,
    caller: &Caller,
    kind: ObjectType,
    request: &Request,
) -> Result<Reply, ApiError> {
    let body = body_bytes(request)?;
    let key = match kind {
        ObjectType::Event => IdempotencyKey::from_headers(request.headers())?,
        _ => None,
    };
    let parsed = WriteRequest::parse(kind, &body, key)?;
    // Boxed: the handlers' futures hold the parsed body and are as large as the largest one.
    Box::pin(handlers::write(store, caller, parsed)).await
}

/// What is parsed before the rate limit, because the request's cost depends on it (and
/// then handed to its handler). What does not parse costs one token and is answered once
/// that is spent.
enum Priced {
    Batch(Result<batch::Batch, ApiError>),
    /// Parsed once, for its cost and its handler.
    Booking(Result<WriteRequest, ApiError>),
    List(Result<(OrgList, QueryParams), ApiError>),
    Changes(Result<QueryParams, ApiError>),
    Fixed(u32),
    Other,
}

impl Priced {
    fn of(endpoint: Endpoint, request: &Request) -> Priced {
        if let Some(list) = endpoint.org_list() {
            let params = reads::list_params(list, request.uri().query());
            return Priced::List(params.map(|params| (list, params)));
        }
        match endpoint {
            Endpoint::Batch => Priced::Batch(
                body_within(request, batch::MAX_BATCH_BODY_BYTES).and_then(|b| batch::parse(&b)),
            ),
            Endpoint::ChangesList => {
                Priced::Changes(QueryParams::parse(request.uri().query(), &["types"]))
            }
            Endpoint::BookingsUpsert => Priced::Booking(
                body_bytes(request)
                    .and_then(|b| WriteRequest::parse(ObjectType::Booking, &b, None)),
            ),
            // It reads the whole segment: priced as the largest filtered page.
            Endpoint::StatsUsers => Priced::Fixed(cost::USERS_STATS),
            _ => Priced::Other,
        }
    }

    /// Tokens of a request that is admitted whole (all but a batch).
    fn cost(&self) -> u32 {
        match self {
            Priced::Booking(Ok(booking)) => booking.cost(),
            Priced::List(Ok((list, params))) => cost::list_page(*list, params),
            Priced::Changes(Ok(params)) => cost::changes_page(params),
            Priced::Fixed(cost) => *cost,
            _ => 1,
        }
    }
}

async fn dispatch(
    app: &App,
    endpoint: Endpoint,
    request: &Request,
    facts: &mut RequestFacts,
    deadline: tokio::time::Instant,
) -> Result<Reply, ApiError> {
    // API Gateway also routes `<path>/{proxy+}` here (HTTP APIs cannot declare a trailing
    // slash): anything longer than the documented path is not an endpoint.
    let params = endpoint
        .match_path(request.uri().path())
        .ok_or(ApiError::NotFound)?;
    if request.method() != endpoint.method() {
        return Err(ApiError::MethodNotAllowed {
            allow: endpoint.method_name(),
        });
    }
    if !endpoint.requires_api_key() {
        return Ok(handlers::health());
    }
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let caller = auth::authenticate(&app.store, &app.keys, authorization).await?;
    facts.org_id = Some(caller.org_id.clone());
    // After authentication: a request without a valid key never spends a key's budget.
    // A batch spends its items' tokens (a malformed one, one token).
    let budgets = Budgets {
        key_id: &caller.key_id,
        key_limit: caller.effective_rate_limit(),
        org_id: &caller.org_id,
        org_limit: caller.effective_org_rate_limit(),
    };
    let store = &app.store;
    let priced = Priced::of(endpoint, request);
    let rate = match &priced {
        Priced::Batch(Ok(batch)) => {
            let limiter = &app.limiter;
            limiter
                .acquire(store, &budgets, batch.cost(), batch.first_cost())
                .await
        }
        other => app.limiter.check(store, &budgets, other.cost()).await,
    };
    facts.rate = Some(rate);
    if !rate.admitted {
        return Err(rate.refusal(rate.cost));
    }
    let query = request.uri().query();
    match endpoint {
        Endpoint::Health => Ok(handlers::health()),
        Endpoint::Me => Ok(handlers::me(&caller)),
        Endpoint::UsersUpsert => write(store, &caller, ObjectType::User, request).await,
        Endpoint::Events => write(store, &caller, ObjectType::Event, request).await,
        Endpoint::ProductsUpsert => write(store, &caller, ObjectType::Product, request).await,
        Endpoint::SalesUpsert => write(store, &caller, ObjectType::Sale, request).await,
        Endpoint::ConversationsUpsert => {
            write(store, &caller, ObjectType::Conversation, request).await
        }
        Endpoint::MessagesUpsert => write(store, &caller, ObjectType::Message, request).await,
        Endpoint::BookingsUpsert => {
            let Priced::Booking(booking) = priced else {
                unreachable!("priced above")
            };
            Box::pin(handlers::write(store, &caller, booking?)).await
        }
        Endpoint::Batch => {
            let Priced::Batch(batch) = priced else {
                unreachable!("priced above")
            };
            let batch = batch?;
            // A first item that costs more than a limit was granted the whole limit.
            let (paid, spent) = batch.paid_by(rate.granted);
            if paid > 0 && spent < rate.granted {
                let unspent = rate.granted - spent;
                app.limiter.give_back(&budgets, rate.window, unspent);
                if let Some(reported) = &mut facts.rate {
                    reported.key.remaining += unspent;
                    reported.org.remaining += unspent;
                }
            }
            let admitted = paid.max(1);
            Box::pin(batch::run(store, &caller, batch, admitted, &rate, deadline)).await
        }
        // Boxed: their futures (several concurrent queries each) are large, and every
        // function's request future is as large as the largest handler's.
        Endpoint::UsersGet => Box::pin(reads::users_get(store, &caller, &params)).await,
        Endpoint::StatsUsers => {
            let deadline = deadline.into_std();
            Box::pin(reads::users_stats(store, &caller, query, deadline)).await
        }
        Endpoint::UsersList | Endpoint::Inbox | Endpoint::BookingsList => {
            let Priced::List(list) = priced else {
                unreachable!("priced above")
            };
            let (list, params) = list?;
            match list {
                OrgList::Users => Box::pin(reads::users_list(store, &caller, &params)).await,
                OrgList::Inbox => Box::pin(reads::inbox(store, &caller, &params)).await,
                OrgList::Bookings => Box::pin(reads::bookings_list(store, &caller, &params)).await,
            }
        }
        Endpoint::ChangesList => {
            let Priced::Changes(params) = priced else {
                unreachable!("priced above")
            };
            Box::pin(changes::feed::changes_list(store, &caller, &params?)).await
        }
        Endpoint::UsersDelete => Box::pin(erase::users_delete(store, &caller, &params)).await,
        Endpoint::ConversationsGet => {
            Box::pin(reads::conversations_get(store, &caller, &params, query)).await
        }
    }
}

fn json_response(
    status: lambda_http::http::StatusCode,
    body: &serde_json::Value,
    request_id: &str,
) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Handles one request for `endpoint`: what every function's `main` runs, and what the
/// tests call.
pub async fn handle(app: &App, endpoint: Endpoint, request: Request) -> Response<Body> {
    let started = Instant::now();
    let request_id = request_id(&request);
    let mut facts = RequestFacts::default();
    // Only storage can be slow here: past the deadline the client gets a retryable 503
    // (a write may or may not have happened; a retry converges), never the Lambda timeout.
    let deadline = tokio::time::Instant::now() + crate::store::REQUEST_DEADLINE;
    let dispatched = dispatch(app, endpoint, &request, &mut facts, deadline);
    let result = tokio::time::timeout_at(deadline, dispatched)
        .await
        .unwrap_or_else(|_| {
            tracing::warn!(request_id, "request deadline passed waiting for storage");
            Err(ApiError::StorageUnavailable)
        });
    let replayed = result.as_ref().is_ok_and(|reply| reply.replayed);
    let (status, body, mut headers, code) = match result {
        Ok(mut reply) => {
            if reply.replayed {
                reply
                    .headers
                    .push((IDEMPOTENT_REPLAYED_HEADER, "true".to_owned()));
            }
            (reply.status, reply.body, reply.headers, None)
        }
        Err(error) => {
            let mut headers = Vec::new();
            match &error {
                ApiError::StorageUnavailable => {
                    headers.push((RETRY_AFTER.as_str(), STORAGE_RETRY_AFTER_SECS.to_string()));
                }
                ApiError::RateLimited { .. } => {
                    let wait = facts.rate.map_or(1, |rate| rate.reset_secs);
                    headers.push((RETRY_AFTER.as_str(), wait.to_string()));
                }
                ApiError::MethodNotAllowed { allow } => {
                    headers.push((ALLOW.as_str(), allow.to_string()))
                }
                _ => {}
            }
            (
                error.status(),
                error.body(&request_id),
                headers,
                Some(error.code()),
            )
        }
    };
    headers.extend(facts.rate.iter().flat_map(Decision::headers));
    let mut response = json_response(status, &body, &request_id);
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    let outcome = metrics::outcome(response.status());
    tracing::info!(
        request_id,
        function = endpoint.function_name(),
        org_id = facts.org_id.as_deref(),
        status = response.status().as_u16(),
        outcome,
        error_code = code,
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    app.metrics.record(endpoint, response.status(), replayed);
    response
}

/// The log format: one JSON object per line (CloudWatch Logs Insights reads its fields),
/// no timestamps (CloudWatch adds them), no span noise. `writer` is stdout in Lambda; tests
/// pass a buffer to check what gets logged.
pub fn log_subscriber<W>(filter: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .without_time()
        .with_target(false)
        .with_writer(writer)
        .finish()
}

/// JSON logs on stdout; `RUST_LOG` (or the template's `LOG_LEVEL`) sets the level.
pub fn init_logging() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing::subscriber::set_global_default(log_subscriber(&filter, std::io::stdout));
}

/// The whole `main` of a function: set up once per instance, then serve requests.
///
/// On a single-threaded runtime: an instance serves one request at a time, and with the
/// multi-threaded one every I/O wake-up crossed threads, a third of a warm request's CPU
/// (README, Design choices).
pub fn run(endpoint: Endpoint) -> Result<(), lambda_http::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(endpoint))
}

async fn serve(endpoint: Endpoint) -> Result<(), lambda_http::Error> {
    init_logging();
    let app = Arc::new(App::new(Store::from_env().await));
    if endpoint.requires_api_key() {
        // Pay for the TLS connection during init (free of request latency), not on request 1.
        app.store.warm_up().await;
    }
    lambda_http::run(lambda_http::service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, std::convert::Infallible>(handle(&app, endpoint, request).await) }
    }))
    .await
}

/// The whole `main` of the `changes-consumer` function: a DynamoDB stream event source
/// mapping (with `ReportBatchItemFailures`) calls it with batches of the table's stream.
pub fn run_changes_consumer() -> Result<(), lambda_runtime::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            init_logging();
            let store = Store::from_env().await;
            let store = &store;
            lambda_runtime::run(lambda_runtime::service_fn(
                move |event: lambda_runtime::LambdaEvent<
                    aws_lambda_events::event::dynamodb::Event,
                >| async move {
                    let (response, tally) = changes::consumer::handle(store, event.payload).await;
                    tracing::info!(
                        ?tally,
                        failed = response.batch_item_failures.len(),
                        "stream batch"
                    );
                    Ok::<_, std::convert::Infallible>(response)
                },
            ))
            .await
        })
}

/// The whole `main` of the `changes-publisher` function: a second event source mapping on
/// the table's stream (INSERTs of change items) calls it; it puts them on `EVENT_BUS_NAME`.
pub fn run_changes_publisher() -> Result<(), lambda_runtime::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            init_logging();
            let client = changes::publisher::client_from_env().await;
            let bus = std::env::var("EVENT_BUS_NAME").unwrap_or_else(|_| "default".to_owned());
            let (client, bus) = (&client, bus.as_str());
            lambda_runtime::run(lambda_runtime::service_fn(
                move |event: lambda_runtime::LambdaEvent<
                    aws_lambda_events::event::dynamodb::Event,
                >| async move {
                    let (response, published) =
                        changes::publisher::handle(client, bus, event.payload).await;
                    tracing::info!(
                        ?published,
                        failed = response.batch_item_failures.len(),
                        "published"
                    );
                    Ok::<_, std::convert::Infallible>(response)
                },
            ))
            .await
        })
}

/// The whole `main` of the `changes-sweeper` function: EventBridge Scheduler invokes it
/// every minute (asynchronously: retried, then the dead-letter queue). It sweeps the due
/// timers up to now (`SWEEPER_NAME` names its watermark) and fails the invocation if any
/// timer failed, so that the failure is retried and counted.
pub fn run_changes_sweeper() -> Result<(), lambda_runtime::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        init_logging();
        let store = Store::from_env().await;
        let name = std::env::var("SWEEPER_NAME").unwrap_or_else(|_| "timers".to_owned());
        lambda_runtime::run(lambda_runtime::service_fn(
            |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
                sweep_once(&store, &name, event.payload)
            },
        ))
        .await
    })
}

/// One scheduled invocation: sweeps up to now; an error if a due timer failed.
async fn sweep_once(
    store: &Store,
    name: &str,
    payload: serde_json::Value,
) -> Result<usize, lambda_runtime::Error> {
    let now = crate::fields::Timestamp::now();
    let tally = changes::timers::sweep(store, name, now).await?;
    tracing::info!(?tally, scheduled = ?payload.get("scheduled_time"), "swept");
    if tally.failed > 0 {
        return Err(format!(
            "{} due timers failed; the next run retries them",
            tally.failed
        )
        .into());
    }
    Ok(tally.fired)
}
