//! Segment pages: what a page of 25 of `GET users/` costs for a dense and a sparse segment,
//! through the real handler (in this process, a release build under `make bench`) whose
//! DynamoDB is behind the counting proxy: Query calls and read units (the proxy asks for
//! `ReturnConsumedCapacity`) per page, and the p50 of a page.

use crate::proxy::CountingProxy;
use lambda_http::http::Request as HttpRequest;
use lambda_http::Body;
use serde_json::{json, Value};
use shared::http::App;
use shared::store::Store;
use shared::Endpoint;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One user in `SPARSE_EVERY` has purchased: the sparse segment.
const SPARSE_EVERY: usize = 100;
const BATCH_ITEMS: usize = 500;

/// Stores `users` users, each last active 31 to 120 days ago (so `inactive_days=30` is all
/// of them), one in [`SPARSE_EVERY`] with a purchase.
async fn seed(app: &App, secret: &str, users: usize) {
    let mut items = Vec::new();
    for n in 0..users {
        let user = json!({"external_user_id": format!("seg-{n:06}")});
        let days = 31.0 + (n % 89) as f64 + (n as f64 / users as f64);
        let at = time::OffsetDateTime::now_utc() - time::Duration::seconds_f64(days * 86_400.0);
        let at = shared::fields::Timestamp::from_offset_date_time(at).to_stored();
        let name = if n % SPARSE_EVERY == 0 {
            "user_purchased"
        } else {
            "app_opened"
        };
        items.push(json!({"type": "event", "event": name, "user": user, "event_timestamp": at}));
    }
    for chunk in items.chunks(BATCH_ITEMS) {
        let body = json!({ "batch": chunk }).to_string();
        let request = HttpRequest::builder()
            .method("POST")
            .uri("https://bench.example/api/developer/batch/")
            .header("authorization", format!("Bearer {secret}"))
            .header("content-type", "application/json")
            .body(Body::Text(body))
            .expect("a request");
        let response = shared::http::handle(app, Endpoint::Batch, request).await;
        assert!(response.status().is_success(), "seeding the segment");
    }
}

async fn page(app: &App, secret: &str, query: &str) -> Value {
    let request = HttpRequest::builder()
        .method("GET")
        .uri(format!(
            "https://bench.example/api/developer/users/?{query}"
        ))
        .header("authorization", format!("Bearer {secret}"))
        .body(Body::Empty)
        .expect("a request");
    let response = shared::http::handle(app, Endpoint::UsersList, request).await;
    assert!(response.status().is_success(), "a segment page: {query}");
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON"),
        _ => panic!("a text body"),
    }
}

/// The section of the report: `users` users, up to `pages` pages per segment.
pub async fn section(store: &Store, proxy: &CountingProxy, users: usize, pages: usize) -> String {
    let org = format!("bench-segments-{}", std::process::id());
    let key =
        shared::admin::create_key_with_limit(store, &org, "bench", true, "bench", Some(1_000_000))
            .await
            .expect("a key");
    seed(&App::new(store.clone()), &key.key, users).await;
    let app = App::new(Store::at_endpoint(&proxy.endpoint, store.table()));
    let mut rows = String::new();
    for (name, query) in [
        ("dense (all users): `inactive_days=30`", "inactive_days=30"),
        (
            "dense, a condition on the record: `total_payments_count_lt=5`",
            "total_payments_count_lt=5",
        ),
        (
            "sparse (1 in 100): `did=user_purchased`",
            "did=user_purchased",
        ),
    ] {
        let (mut queries, mut units, mut times, mut listed) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        let mut cursor: Option<String> = None;
        for _ in 0..pages {
            let mut page_query = format!("{query}&limit=25");
            if let Some(cursor) = &cursor {
                let _ = write!(page_query, "&cursor={cursor}");
            }
            proxy.take();
            let started = Instant::now();
            let body = page(&app, &key.key, &page_query).await;
            times.push(started.elapsed());
            let stats = proxy.take();
            let query_stats = stats.get("data:Query");
            queries.push(query_stats.map_or(0, |op| op.requests));
            units.push(query_stats.map_or(0.0, |op| op.capacity_units));
            listed += body["users"].as_array().map_or(0, Vec::len);
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        times.sort();
        let n = queries.len().max(1);
        let _ = writeln!(
            rows,
            "| {name} | {} | {:.1} | {} | {:.1} | {:.1} | {} |",
            queries.len(),
            f64::from(queries.iter().sum::<u32>()) / n as f64,
            queries.iter().max().copied().unwrap_or(0),
            units.iter().sum::<f64>() / n as f64,
            listed as f64 / n as f64,
            crate::ms(
                times
                    .get(times.len() / 2)
                    .copied()
                    .unwrap_or(Duration::ZERO)
            ),
        );
    }
    format!(
        "## Segment pages\n\n\
         `GET users/` pages of 25 over {users} users (each last active 31 to 120 days ago, one in 100 with a \
         purchase), through the handler in this process with DynamoDB Local behind the counting proxy; up to \
         {pages} pages each, following `next_cursor`. Queries and read units (DynamoDB Local's \
         `ConsumedCapacity`) are per page; a sparse page may be short (see docs/data-model.md, Pages of a \
         sharded list). Before this change a dense page of 25 took 190 Queries (`users-list` above, \
         `inactive_days=30`).\n\n\
         | segment | pages | Queries / page | max | read units / page | users / page | p50 ms |\n\
         |---|---|---|---|---|---|---|\n{rows}"
    )
}
