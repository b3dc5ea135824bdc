//! Storage faults: the real handler with its DynamoDB behind a fault-injecting proxy in front
//! of DynamoDB Local. Whatever DynamoDB does (refuse, never answer, throttle, fail, lose the
//! response of a write it made), the client gets a 503 `storage_unavailable` with
//! `Retry-After` and nothing internal, well within the Lambda timeout; once DynamoDB is back
//! the same requests succeed and the stored state is what they imply, once.
//!
//! The black hole costs the request deadline (6 s); the tests run their requests
//! concurrently so each test costs it at most once.

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use serde_json::{json, Value};
use shared::http::App;
use shared::store::testing::keys;
use shared::store::{Store, MAX_ATTEMPTS, REQUEST_DEADLINE};
use shared::Endpoint;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The slowest acceptable answer under a fault: the request deadline plus slack for a busy
/// test machine, still 2 s below the 10 s Lambda timeout.
const ANSWER_BOUND: Duration = Duration::from_secs(8);

/// What the proxy does with the DynamoDB requests it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Forward to DynamoDB Local and return its answer.
    None,
    /// Closed listener: new connections are refused, kept-alive ones are closed.
    Refuse,
    /// Accept and read the request, never answer.
    BlackHole,
    /// Forward (DynamoDB Local does the work), then close the connection instead of answering.
    DropResponses,
    /// Like `DropResponses` for the next request of one operation (`X-Amz-Target`), then `None`.
    DropNextResponseOf(&'static str),
    ProvisionedThroughputExceeded,
    Throttling,
    /// HTTP 500 with DynamoDB's JSON error body.
    InternalServerError,
    /// HTTP 503 with a plain-text body, as a load balancer would send.
    ServiceUnavailable,
    /// Every `TransactWriteItems` cancelled because one of its items was throttled (as
    /// DynamoDB does when a partition or an index is hot), the other requests forwarded.
    TransactionsThrottled,
    /// `ProvisionedThroughputExceeded` for requests whose body contains the marker (a hot
    /// partition), `None` for the others.
    ThrottleWhere(&'static str),
}

/// What makes the proxy close a connection without answering.
type Dropped = std::io::Error;
type ProxyResponse = hyper::Response<Full<Bytes>>;

struct ProxyState {
    upstream: String,
    fault: watch::Sender<Fault>,
    requests: AtomicU32,
}

struct FaultProxy {
    endpoint: String,
    address: SocketAddr,
    state: Arc<ProxyState>,
}

impl FaultProxy {
    async fn start() -> FaultProxy {
        let upstream = std::env::var("DYNAMODB_ENDPOINT").expect("DYNAMODB_ENDPOINT is set");
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream,
            fault: watch::channel(Fault::None).0,
            requests: AtomicU32::new(0),
        });
        tokio::spawn(accept_loop(listener, address, Arc::clone(&state)));
        FaultProxy {
            endpoint: format!("http://{address}"),
            address,
            state,
        }
    }

    /// Switches the fault; returns once new connections are refused (or accepted again).
    async fn set(&self, fault: Fault) {
        self.state.fault.send_replace(fault);
        let refusing = fault == Fault::Refuse;
        for _ in 0..200 {
            if TcpStream::connect(self.address).await.is_err() == refusing {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the proxy did not switch to {fault:?}");
    }

    fn requests(&self) -> u32 {
        self.state.requests.load(Ordering::Relaxed)
    }
}

/// Accepts connections while not refusing; closes the listener (so connecting is refused)
/// while refusing, and binds the same address again afterwards.
async fn accept_loop(listener: TcpListener, address: SocketAddr, state: Arc<ProxyState>) {
    let mut faults = state.fault.subscribe();
    let mut listener = Some(listener);
    loop {
        let refusing = *faults.borrow_and_update() == Fault::Refuse;
        if refusing {
            listener = None;
            if faults.changed().await.is_err() {
                return;
            }
            continue;
        }
        let open = match &listener {
            Some(open) => open,
            None => listener.insert(TcpListener::bind(address).await.expect("rebind")),
        };
        tokio::select! {
            accepted = open.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve_connection(stream, Arc::clone(&state)));
                }
            }
            changed = faults.changed() => if changed.is_err() { return },
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<ProxyState>) {
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { answer(&state, request).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// An error from the service makes hyper close the connection without an answer.
async fn answer(
    state: &ProxyState,
    request: hyper::Request<Incoming>,
) -> Result<ProxyResponse, Dropped> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let operation = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|target| target.split('.').nth(1))
        .unwrap_or_default()
        .to_owned();
    let mut fault = Fault::None;
    state.fault.send_if_modified(|current| {
        fault = *current;
        match *current {
            Fault::DropNextResponseOf(target) if target == operation => {
                *current = Fault::None;
                true
            }
            Fault::DropNextResponseOf(_) => {
                fault = Fault::None;
                false
            }
            _ => false,
        }
    });
    match fault {
        Fault::None => forward(state, request).await,
        Fault::Refuse => Err(Dropped::other("refusing")),
        Fault::BlackHole => {
            let _ = request.into_body().collect().await;
            std::future::pending().await
        }
        Fault::DropResponses | Fault::DropNextResponseOf(_) => {
            forward(state, request).await?;
            Err(Dropped::other("response dropped"))
        }
        Fault::ProvisionedThroughputExceeded => Ok(throughput_exceeded()),
        Fault::ThrottleWhere(marker) => {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map_err(Dropped::other)?.to_bytes();
            if body.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                Ok(throughput_exceeded())
            } else {
                forward_bytes(state, parts, body).await
            }
        }
        Fault::TransactionsThrottled if operation == "TransactWriteItems" => {
            Ok(cancelled_by_throttling())
        }
        Fault::TransactionsThrottled => forward(state, request).await,
        Fault::Throttling => Ok(dynamodb_error(
            400,
            "com.amazon.coral.availability#ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        )),
        Fault::InternalServerError => Ok(dynamodb_error(
            500,
            "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "Internal server error",
        )),
        Fault::ServiceUnavailable => Ok(hyper::Response::builder()
            .status(503)
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from_static(
                b"<html>503 Service Unavailable</html>",
            )))
            .unwrap()),
    }
}

fn throughput_exceeded() -> ProxyResponse {
    dynamodb_error(
        400,
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
    )
}

/// A two-item transaction cancelled because its second item was throttled.
fn cancelled_by_throttling() -> ProxyResponse {
    let body = json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ThrottlingError]",
        "CancellationReasons": [
            {"Code": "None"},
            {"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity of your table or index."}
        ]
    });
    hyper::Response::builder()
        .status(400)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-requestid", "FAULTPROXY")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// An error as DynamoDB sends it (awsJson1_0: the code in `__type`).
fn dynamodb_error(status: u16, error_type: &str, message: &str) -> ProxyResponse {
    let code = error_type.rsplit('#').next().unwrap();
    let body = json!({ "__type": error_type, "message": message }).to_string();
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-requestid", "FAULTPROXY")
        .header("x-amzn-query-error", format!("{code};Sender"))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn forward(
    state: &ProxyState,
    request: hyper::Request<Incoming>,
) -> Result<ProxyResponse, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(Dropped::other)?.to_bytes();
    forward_bytes(state, parts, body).await
}

async fn forward_bytes(
    state: &ProxyState,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<ProxyResponse, Dropped> {
    let stream = TcpStream::connect(&state.upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Dropped::other)?;
    tokio::spawn(connection);
    let response = sender
        .send_request(hyper::Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(Dropped::other)?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await.map_err(Dropped::other)?.to_bytes();
    parts.headers.remove("transfer-encoding");
    Ok(hyper::Response::from_parts(parts, Full::new(body)))
}

/// An org, and a warm instance whose DynamoDB is behind the proxy, its key already cached
/// so that faults hit the rate limiter and the writes; `cold` has nothing cached, so
/// faults hit its key lookup.
struct Setup {
    org: TestOrg,
    proxy: FaultProxy,
    warm: App,
    cold: App,
}

impl Setup {
    async fn new() -> Setup {
        let org = TestOrg::new().await;
        let proxy = FaultProxy::start().await;
        let store = Store::at_endpoint(&proxy.endpoint, org.store().table());
        let warm = App::new(store.clone());
        let me = org.request(Endpoint::Me, &[], Body::Empty);
        send(&warm, Endpoint::Me, me).await.assert_status(200);
        Setup {
            org,
            proxy,
            warm,
            cold: App::new(store),
        }
    }
}

/// The requests every fault is tried with: writes of one, two and three entities, and one
/// that needs the key looked up. Ids are unique to the batch.
struct Batch {
    user: String,
    event_user: String,
    idempotency_key: String,
    sale: String,
    buyer: String,
    product: String,
    cold_user: String,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            user: unique("usr"),
            event_user: unique("usr"),
            idempotency_key: unique("idem"),
            sale: unique("sale"),
            buyer: unique("usr"),
            product: unique("prod"),
            cold_user: unique("usr"),
        }
    }

    fn user_body(&self) -> Value {
        json!({"external_user_id": self.user, "name": "Final Name", "plan": "pro"})
    }

    fn event_body(&self) -> Value {
        json!({
            "event": "app_installed",
            "user": {"external_user_id": self.event_user},
            "properties": {"install_platform": "ios"},
            "event_timestamp": "2026-03-23T10:30:00Z"
        })
    }

    fn sale_body(&self) -> Value {
        json!({
            "sale_id": self.sale,
            "total": "58.00",
            "buyer": {"external_user_id": self.buyer, "name": "Buyer"},
            "product": {"external_product_id": self.product, "title": "Pro", "price": "29.00"}
        })
    }

    /// Sends the batch concurrently: the writes through `warm`, the key lookup through
    /// `cold`. Each reply comes with how long it took.
    async fn send(&self, setup: &Setup) -> [(Reply, Duration); 4] {
        let org = &setup.org;
        let timed = |app: &'static str, endpoint: Endpoint, request| async move {
            let app = if app == "warm" {
                &setup.warm
            } else {
                &setup.cold
            };
            let started = Instant::now();
            let reply = send(app, endpoint, request).await;
            (reply, started.elapsed())
        };
        let key = [("idempotency-key", self.idempotency_key.as_str())];
        let cold_user = json!({"external_user_id": self.cold_user}).to_string();
        let (user, event, sale, cold) = tokio::join!(
            timed(
                "warm",
                Endpoint::UsersUpsert,
                org.request(Endpoint::UsersUpsert, &[], self.user_body().to_string())
            ),
            timed(
                "warm",
                Endpoint::Events,
                org.request(Endpoint::Events, &key, self.event_body().to_string())
            ),
            timed(
                "warm",
                Endpoint::SalesUpsert,
                org.request(Endpoint::SalesUpsert, &[], self.sale_body().to_string())
            ),
            timed(
                "cold",
                Endpoint::UsersUpsert,
                org.request(Endpoint::UsersUpsert, &[], cold_user)
            ),
        );
        [user, event, sale, cold]
    }

    /// Whether each of the batch's records is stored: user, event, sale, buyer, product, cold user.
    async fn stored(&self, org: &TestOrg) -> [bool; 6] {
        let exists =
            |key: keys::ItemKey| async move { org.store().get(&key).await.unwrap().is_some() };
        let user = |id: &str| keys::user(&org.org_id, &external_identity(id));
        let id = |id: &str| serde_json::from_value(json!(id)).unwrap();
        [
            exists(user(&self.user)).await,
            org.count_events(&self.event_user).await > 0,
            exists(keys::sale(&org.org_id, &id(&self.sale))).await,
            exists(user(&self.buyer)).await,
            exists(keys::product(&org.org_id, &id(&self.product))).await,
            exists(user(&self.cold_user)).await,
        ]
    }

    /// After the retries succeeded: every record holds what the requests sent, once.
    async fn assert_converged(&self, org: &TestOrg) {
        assert_eq!(self.stored(org).await, [true; 6]);
        let user = org.stored_user(&self.user).await;
        assert_eq!(
            (&user["name"], &user["plan"]),
            (&json!("Final Name"), &json!("pro"))
        );
        assert_eq!(org.count_events(&self.event_user).await, 1, "stored once");
        let installed = org.stored_user(&self.event_user).await;
        assert_eq!(installed["install_count"], 1, "counted once");
        assert_eq!(installed["install_platform"], "ios");
        assert_eq!(org.stored_user(&self.buyer).await["name"], "Buyer");
    }
}

/// A 503 `storage_unavailable` with `Retry-After`, nothing internal in the body, in time.
#[track_caller]
fn assert_unavailable((reply, elapsed): &(Reply, Duration), proxy: &FaultProxy) {
    reply.assert_error(503, "storage_unavailable");
    assert_eq!(reply.headers["retry-after"], "1");
    let body = reply.body.to_string().to_lowercase();
    let port = proxy.address.port().to_string();
    for internal in [
        "dispatch",
        "timeout",
        "timed out",
        "unhandled",
        "dynamodb",
        "throughput",
        "throttl",
        "internalservererror",
        "service error",
        "connection",
        "127.0.0.1",
        "localhost",
        "http://",
        port.as_str(),
    ] {
        assert!(!body.contains(internal), "{internal:?} in {body}");
    }
    assert!(*elapsed < ANSWER_BOUND, "answered after {elapsed:?}");
}

/// Puts the proxy in `fault`, sends a batch (all 503), checks what was written, then lets
/// DynamoDB through again and resends the same batch: all succeed and converge.
async fn fault_then_recovery(fault: Fault, writes_happen: bool) -> (Setup, Batch) {
    let setup = Setup::new().await;
    let batch = Batch::new();
    setup.proxy.set(fault).await;
    for reply in &batch.send(&setup).await {
        assert_unavailable(reply, &setup.proxy);
    }
    let stored = batch.stored(&setup.org).await;
    if writes_happen {
        // Written but never acknowledged; a sale's own item comes after its buyer and product.
        // The event is not: a new client's first event of a name is a second transaction
        // (the first guesses a known name and is refused), never sent once the refusal's
        // answer is lost.
        assert_eq!(stored, [true, false, false, true, true, false], "{fault:?}");
    } else {
        assert_eq!(
            stored, [false; 6],
            "{fault:?}: nothing acknowledged, nothing written"
        );
    }

    setup.proxy.set(Fault::None).await;
    let [user, event, sale, cold] = batch.send(&setup).await;
    let (created, updated) = (201, 200);
    user.0
        .assert_status(if writes_happen { updated } else { created });
    event.0.assert_status(created);
    assert_eq!(
        event.0.headers.get("idempotent-replayed").is_some(),
        stored[1],
        "a retry of a stored event replays it"
    );
    sale.0.assert_status(created);
    cold.0.assert_status(created);
    batch.assert_converged(&setup.org).await;
    (setup, batch)
}

#[tokio::test]
async fn refused_connections_are_503_then_retries_converge() {
    fault_then_recovery(Fault::Refuse, false).await;
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_503_within_the_deadline() {
    let started = Instant::now();
    fault_then_recovery(Fault::BlackHole, false).await;
    // The batch ran concurrently: one deadline, not one per request or per operation.
    assert!(started.elapsed() < REQUEST_DEADLINE + ANSWER_BOUND);
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_then_503() {
    for fault in [Fault::ProvisionedThroughputExceeded, Fault::Throttling] {
        let (setup, _) = fault_then_recovery(fault, false).await;
        // Each failed operation was attempted MAX_ATTEMPTS times: the rate-limit lease and
        // the first write of each of the three warm requests, the cold key lookup.
        assert!(setup.proxy.requests() >= 5 * MAX_ATTEMPTS, "{fault:?}");
    }
}

#[tokio::test]
async fn server_errors_are_503_then_retries_converge() {
    for fault in [Fault::InternalServerError, Fault::ServiceUnavailable] {
        fault_then_recovery(fault, false).await;
    }
}

#[tokio::test]
async fn lost_responses_are_503_although_written_and_the_retry_converges() {
    fault_then_recovery(Fault::DropResponses, true).await;
}

/// The SDK retries a write whose response was lost; the retry finds the event it stored.
/// Without an Idempotency-Key that is still this request's own event, not a reused key.
#[tokio::test]
async fn an_event_whose_put_response_was_lost_is_stored_once() {
    let setup = Setup::new().await;
    let user = unique("usr");
    let event = json!({"event": "app_installed", "user": {"external_user_id": user}});
    setup.proxy.set(Fault::DropNextResponseOf("PutItem")).await;
    let request = setup.org.request(Endpoint::Events, &[], event.to_string());
    let reply = send(&setup.warm, Endpoint::Events, request).await;
    reply.assert_status(201);
    assert!(reply.headers.get("idempotent-replayed").is_none());
    assert_eq!(setup.org.count_events(&user).await, 1);
    assert_eq!(setup.org.stored_user(&user).await["install_count"], 1);
}

/// The marker of [`Fault::ThrottleWhere`] in the batch tests: part of the ids it hits.
const HOT: &str = "hot-partition";

fn batch_request(org: &TestOrg, items: &[Value]) -> lambda_http::Request {
    let body = json!({ "batch": items }).to_string();
    org.request(Endpoint::Batch, &[], body)
}

fn statuses(reply: &Reply) -> Vec<u64> {
    reply.assert_status(200)["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["status"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn batch_items_hit_by_storage_faults_are_503_and_only_they_need_resending() {
    use crate::batch::item;
    let setup = Setup::new().await;
    let org = &setup.org;
    let hot = format!("{HOT}-{}", unique("usr"));
    let (calm, other) = (unique("usr"), unique("usr"));
    let key = unique("idem");
    let user = |id: &str, name: &str| {
        item(
            Endpoint::UsersUpsert,
            &json!({"external_user_id": id, "name": name}),
            None,
        )
    };
    let installed = json!({"event": "app_installed", "user": {"external_user_id": hot}});
    let items = vec![
        user(&calm, "Calm"),
        user(&hot, "First"),
        item(Endpoint::Events, &installed, Some(&key)),
        user(&other, "Other"),
        item(
            Endpoint::SalesUpsert,
            &json!({"sale_id": unique("sale"), "buyer": {"external_user_id": calm}}),
            None,
        ),
        user(&hot, "Last"),
    ];
    setup.proxy.set(Fault::ThrottleWhere(HOT)).await;
    let started = Instant::now();
    let reply = send(&setup.warm, Endpoint::Batch, batch_request(org, &items)).await;
    assert!(started.elapsed() < ANSWER_BOUND);
    // The hot user's items: the first failed, the later ones of the same record were not
    // attempted (a resend must not apply "First" after "Last").
    assert_eq!(statuses(&reply), [201, 503, 503, 201, 201, 503]);
    assert_eq!(reply.headers["retry-after"], "1");
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results[1]["error"]["code"], "storage_unavailable");
    assert!(!reply.body.to_string().to_lowercase().contains("throughput"));
    let hot_key = keys::user(&org.org_id, &external_identity(&hot));
    assert_eq!(org.store().get(&hot_key).await, Ok(None));
    assert_eq!(org.count_events(&hot).await, 0);

    setup.proxy.set(Fault::None).await;
    let resend: Vec<Value> = [1, 2, 5].iter().map(|&i| items[i].clone()).collect();
    let reply = send(&setup.warm, Endpoint::Batch, batch_request(org, &resend)).await;
    assert_eq!(statuses(&reply), [201, 201, 200]);
    assert!(reply.headers.get("retry-after").is_none());
    // All of it again changes nothing.
    let reply = send(&setup.warm, Endpoint::Batch, batch_request(org, &items)).await;
    assert_eq!(statuses(&reply), [200, 200, 201, 200, 200, 200]);
    let stored = org.stored_user(&hot).await;
    assert_eq!(
        (&stored["name"], &stored["install_count"]),
        (&json!("Last"), &json!(1))
    );
    assert_eq!(org.count_events(&hot).await, 1);
    assert_eq!(org.stored_user(&calm).await["name"], "Calm");
}

#[tokio::test]
async fn a_batch_against_a_black_hole_answers_every_item_503_within_the_deadline() {
    let setup = Setup::new().await;
    let items = crate::batch::new_user_items(40);
    setup.proxy.set(Fault::BlackHole).await;
    let started = Instant::now();
    let reply = send(
        &setup.warm,
        Endpoint::Batch,
        batch_request(&setup.org, &items),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < ANSWER_BOUND, "answered after {elapsed:?}");
    assert!(
        elapsed >= REQUEST_DEADLINE - Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert_eq!(
        statuses(&reply),
        vec![503; items.len()],
        "never a 2xx for an item not written"
    );
    assert_eq!(reply.headers["retry-after"], "1");
}

/// A transaction cancelled by throttling (an event and its user's counts; the merge of an
/// email-only client) is a 503 with `Retry-After` like every other throttle, never a 500,
/// and the retries converge: the event is stored once, the merge happens once.
#[tokio::test]
async fn transactions_cancelled_by_throttling_are_503_and_retries_converge() {
    let setup = Setup::new().await;
    let (user, email) = (unique("usr"), format!("{}@example.com", unique("merge")));
    let event = json!({
        "event": "app_installed",
        "user": {"external_user_id": user},
        "event_timestamp": "2026-03-23T10:30:00Z"
    });
    const KEYED: &[(&str, &str)] = &[("idempotency-key", "throttled-transaction")];
    let email_only = json!({
        "event": "user_purchased",
        "user": {"email": email},
        "properties": {"amount": "10.00", "currency": "USD"},
        "event_timestamp": "2026-03-23T10:00:00Z"
    });
    let identify = json!({"external_user_id": user, "email": email});
    let call = |endpoint: Endpoint, headers: &[(&str, &str)], body: &Value| {
        let request = setup
            .org
            .request(endpoint, headers, Body::from(body.to_string()));
        send(&setup.warm, endpoint, request)
    };
    call(Endpoint::Events, &[], &email_only)
        .await
        .assert_status(201);

    setup.proxy.set(Fault::TransactionsThrottled).await;
    for reply in [
        call(Endpoint::Events, KEYED, &event).await,
        call(Endpoint::UsersUpsert, &[], &identify).await,
    ] {
        reply.assert_error(503, "storage_unavailable");
        assert_eq!(reply.headers["retry-after"], "1");
    }

    setup.proxy.set(Fault::None).await;
    call(Endpoint::Events, KEYED, &event)
        .await
        .assert_status(201);
    call(Endpoint::UsersUpsert, &[], &identify)
        .await
        .assert_status(200);
    let client = setup.org.stored_user(&user).await;
    assert_eq!(client["install_count"], 1, "{client}");
    assert_eq!(client["total_payments_count"], 1, "merged: {client}");
}
