//! The change feed: how long from a write's 2xx until its change is in `GET changes/`, and
//! what the stream consumer pays per change. As under `make run`: a follower reads
//! DynamoDB Local's stream every [`POLL_INTERVAL`] (each round takes whatever is new, up to
//! 1,000 records per shard read) and hands it to the consumer the Lambda runs, whose
//! DynamoDB is behind the counting proxy; a client upserts users one after the other and
//! follows `next_cursor` every [`READ_INTERVAL`] until each one's `client.created` shows.

use crate::proxy::CountingProxy;
use lambda_http::http::Request as HttpRequest;
use lambda_http::Body;
use serde_json::{json, Value};
use shared::changes::poller::{follow_once, local_client, StreamPoller};
use shared::http::App;
use shared::store::table::{self, TableStream};
use shared::store::Store;
use shared::Endpoint;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `make run`'s interval (`admin changes follow`).
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often the client reads the feed while it waits.
const READ_INTERVAL: Duration = Duration::from_millis(50);

async fn call(
    app: &App,
    secret: &str,
    endpoint: Endpoint,
    query: &str,
    body: Option<Value>,
) -> Value {
    let builder = HttpRequest::builder()
        .method(endpoint.method())
        .uri(format!("https://bench.example{}?{query}", endpoint.path()))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json");
    let body = body.map_or(Body::Empty, |b| Body::Text(b.to_string()));
    let response =
        shared::http::handle(app, endpoint, builder.body(body).expect("a request")).await;
    assert!(
        response.status().is_success(),
        "{endpoint:?}: {}",
        response.status()
    );
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON"),
        _ => panic!("a text body"),
    }
}

/// The section of the report: `writes` upserts, one after the other.
pub async fn section(
    dynamodb: &str,
    store: &Store,
    proxy: &CountingProxy,
    writes: usize,
) -> String {
    // A table of its own with the stream (the bench's other tables have none).
    let streamed = Store::new(store.client().clone(), format!("{}-changes", store.table()));
    shared::admin::create_table(&streamed, TableStream::On)
        .await
        .expect("the streamed table");
    let org = format!("bench-feed-{}", std::process::id());
    let key = shared::admin::create_key_with_limit(
        &streamed,
        &org,
        "bench",
        true,
        "bench",
        Some(1_000_000),
    )
    .await
    .expect("a key");
    let app = App::new(streamed.clone());
    let arn = table::stream_arn(streamed.client(), streamed.table())
        .await
        .expect("describe")
        .expect("a stream");
    let consumer_store = Store::at_endpoint(&proxy.endpoint, streamed.table());
    let (stop, written) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    proxy.take();
    let follower = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        let streams = local_client(dynamodb);
        tokio::spawn(async move {
            let mut poller = StreamPoller::new(arn);
            while !stop.load(Ordering::SeqCst) {
                let round = follow_once(&mut poller, &streams, &consumer_store, None)
                    .await
                    .expect("the stream");
                written.fetch_add(round.consumed.written, Ordering::SeqCst);
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        })
    };
    let mut cursor = call(&app, &key.key, Endpoint::ChangesList, "", None).await["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    let mut latencies = Vec::new();
    for n in 0..writes {
        let id = format!("feed-{n:05}");
        let body = json!({"external_user_id": id, "plan": "pro"});
        call(&app, &key.key, Endpoint::UsersUpsert, "", Some(body)).await;
        let acknowledged = Instant::now();
        'seen: loop {
            let query = format!("cursor={cursor}&limit=100");
            let page = call(&app, &key.key, Endpoint::ChangesList, &query, None).await;
            cursor = page["next_cursor"].as_str().expect("a cursor").to_owned();
            for change in page["changes"].as_array().expect("changes") {
                if change["subject"]["client"]["external_user_id"] == id.as_str() {
                    break 'seen;
                }
            }
            tokio::time::sleep(READ_INTERVAL).await;
        }
        latencies.push(acknowledged.elapsed());
    }
    stop.store(true, Ordering::SeqCst);
    follower.await.expect("the follower");
    let stats = proxy.take();
    let changes = written.load(Ordering::SeqCst).max(1);
    let write_units: f64 = stats
        .iter()
        .filter(|(op, _)| {
            [
                "PutItem",
                "UpdateItem",
                "DeleteItem",
                "TransactWriteItems",
                "BatchWriteItem",
            ]
            .iter()
            .any(|w| op.ends_with(w))
        })
        .map(|(_, op)| op.capacity_units)
        .sum();
    let reads: u32 = stats
        .iter()
        .filter(|(op, _)| op.ends_with("GetItem") || op.ends_with("Query"))
        .map(|(_, op)| op.requests)
        .sum();
    latencies.sort();
    let lag = shared::changes::feed::visibility_lag();
    format!(
        "## Change feed\n\n\
         From a `users/upsert` 2xx until its `client.created` is in `GET changes/`, over {writes} upserts one \
         after the other, through the handlers in this process and DynamoDB Local's stream: a follower polls \
         the stream every {poll} ms (DescribeStream, then GetRecords of whatever is new, up to 1,000 records) \
         and hands each round to the consumer the Lambda runs, as `make run` does; the client reads the \
         feed every {read} ms from its cursor. Readers stop {lag} ms before now (the visibility lag, \
         docs/design.md).\n\n\
         | write to visible (ms) | p50 | p99 | max |\n|---|---|---|---|\n| {writes} upserts | {} | {} | {} |\n\n\
         The consumer (behind the counting proxy) wrote {changes} changes with {write_units:.1} write units \
         (DynamoDB Local's `ConsumedCapacity` TOTAL, indexes included: {:.2} per change). Each new \
         client here costs the change's put and its GSI1 entry (for erasure) and the arming of the \
         client's lifecycle timer (a put and its GSI2 entry, issue 26). Reads: {reads} (the org's \
         settings, once per stream batch and org; each round here holds one write).\n",
        crate::ms(crate::percentile(&mut latencies, 50)),
        crate::ms(crate::percentile(&mut latencies, 99)),
        crate::ms(*latencies.last().expect("a latency")),
        write_units / changes as f64,
        poll = POLL_INTERVAL.as_millis(),
        read = READ_INTERVAL.as_millis(),
        lag = lag.as_millis(),
    )
}
