//! Per-key rate limiting against DynamoDB Local: several limiter instances (as separate
//! Lambda instances would be) share one key's budget; 429s through the real handler.

use crate::common::*;
use lambda_http::Body;
use serde_json::json;
use shared::ratelimit::RateLimiter;
use shared::Endpoint;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `instances` limiters for `key_id` until `until`, each offering a request every
/// `every`; returns admitted requests per window and the limiters' DynamoDB writes.
async fn offer_load(
    key_id: String,
    limit: u32,
    instances: usize,
    every: Duration,
    until: Instant,
) -> (BTreeMap<u64, u32>, u64, Vec<Duration>) {
    let store = store().await;
    let tasks = (0..instances).map(|_| {
        let (store, key_id) = (store.clone(), key_id.clone());
        tokio::spawn(async move {
            let limiter = RateLimiter::default();
            let mut admitted: BTreeMap<u64, u32> = BTreeMap::new();
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                let decision = limiter.check(&store, &key_id, limit).await;
                if decision.admitted {
                    latencies.push(started.elapsed());
                    *admitted.entry(decision.window).or_default() += 1;
                }
                tokio::time::sleep(every).await;
            }
            (admitted, limiter.writes(), latencies)
        })
    });
    let mut admitted = BTreeMap::new();
    let mut writes = 0;
    let mut latencies = Vec::new();
    for result in futures::future::join_all(tasks).await {
        let (per_window, instance_writes, instance_latencies) = result.unwrap();
        for (window, count) in per_window {
            *admitted.entry(window).or_default() += count;
        }
        writes += instance_writes;
        latencies.extend(instance_latencies);
    }
    (admitted, writes, latencies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_instances_share_one_keys_limit_and_other_keys_are_unaffected() {
    // Ten seconds: the guarantee is "at most the limit + 10% over any 10-second window".
    let (limit, seconds) = (20u32, 10u64);
    let until = Instant::now() + Duration::from_secs(seconds);
    // Four instances hammer key A (about 4,000 requests/s offered); one instance sends key B.
    let hammered = offer_load(unique("key-a"), limit, 4, Duration::from_millis(1), until);
    let other = offer_load(unique("key-b"), limit, 1, Duration::from_millis(1), until);
    let ((a, a_writes, _), (b, _, _)) = tokio::join!(hammered, other);

    let a_total: u32 = a.values().sum();
    for (window, count) in &a {
        assert!(
            *count <= limit,
            "window {window}: {count} admitted over a limit of {limit}"
        );
    }
    assert!(
        a_total <= limit * (seconds as u32 + 1),
        "{a_total} admitted in {seconds} s"
    );
    // Full windows (not the first and last, which the run only partly covers) get their quota.
    let full: Vec<u32> = a
        .values()
        .skip(1)
        .take(a.len().saturating_sub(2))
        .copied()
        .collect();
    assert!(
        full.iter().all(|count| *count >= limit * 3 / 4),
        "under-admitted: {a:?}"
    );
    let b_total: u32 = b.values().sum();
    assert!(
        b_total >= limit * (seconds as u32 - 1),
        "key B was slowed by key A: {b:?}"
    );
    println!(
        "rate limit {limit}/s, 4 instances for {seconds} s: {a_total} admitted (per window {:?}), {a_writes} writes ({:.3} per admitted request)",
        a.values().collect::<Vec<_>>(),
        a_writes as f64 / a_total as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steady_load_at_the_limit_costs_under_a_tenth_of_a_write_per_request() {
    // Two instances at 50 requests/s each: the key's limit of 100/s, as two warm Lambdas
    // with ~20 ms requests would serve it.
    let until = Instant::now() + Duration::from_secs(4);
    let (admitted, writes, mut latencies) =
        offer_load(unique("steady"), 100, 2, Duration::from_millis(20), until).await;
    let total: u32 = admitted.values().sum();
    let per_request = writes as f64 / total as f64;
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    println!("steady 100/s on 2 instances: {total} admitted, {writes} writes ({per_request:.3} per request), limiter p50 {p50:?}");
    assert!(
        total >= 300,
        "{total} admitted: the limit refused a load at the limit"
    );
    assert!(per_request <= 0.1, "{per_request} writes per request");
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_ratelimit_headers() {
    let org = TestOrg::with_rate_limit(Some(2)).await;
    let mut replies = Vec::new();
    for _ in 0..10 {
        replies.push(org.call_with(Endpoint::Me, &[], Body::Empty).await);
    }
    let ok = replies
        .iter()
        .find(|r| r.status == 200)
        .expect("some admitted");
    assert_eq!(ok.headers["ratelimit-policy"], "\"default\";q=2;w=1");
    assert!(ok.headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"default\";r="));
    let limited = replies
        .iter()
        .find(|r| r.status == 429)
        .expect("some refused");
    limited.assert_error(429, "rate_limited");
    assert_eq!(limited.headers["retry-after"], "1");
    assert_eq!(limited.headers["ratelimit"], "\"default\";r=0;t=1");
    assert_eq!(limited.headers["ratelimit-policy"], "\"default\";q=2;w=1");
}

#[tokio::test]
async fn a_429_is_not_an_idempotent_answer() {
    let org = TestOrg::with_rate_limit(Some(1)).await;
    let event = json!({"event": "app_opened", "user": {"external_user_id": "u"}}).to_string();
    // Spend the window's one token, then send the event until it is refused. A window can
    // roll over between the two calls (a slow machine): that event is then stored, and the
    // next attempt takes a key of its own.
    let mut attempt = 0;
    let (refused, key) = loop {
        attempt += 1;
        let key = format!("after-429-{attempt}");
        org.call_with(Endpoint::Me, &[], Body::Empty).await;
        let reply = org
            .call_with(
                Endpoint::Events,
                &[("idempotency-key", key.as_str())],
                event.clone(),
            )
            .await;
        if reply.status == 429 {
            break (reply, key);
        }
        reply.assert_status(201);
    };
    refused.assert_error(429, "rate_limited");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let retry = org
        .call_with(
            Endpoint::Events,
            &[("idempotency-key", key.as_str())],
            event,
        )
        .await;
    retry.assert_status(201);
    assert!(
        retry.headers.get("idempotent-replayed").is_none(),
        "processed, not replayed"
    );
}

#[tokio::test]
async fn requests_without_a_valid_key_spend_no_budget() {
    let org = TestOrg::with_rate_limit(Some(3)).await;
    let tampered = tampered(&org.secret);
    let app = Arc::new(shared::http::App::new(org.store().clone()));
    for _ in 0..20 {
        let request = lambda_http::http::Request::builder()
            .method("GET")
            .uri(Endpoint::Me.path())
            .header("authorization", format!("Bearer {tampered}"))
            .body(Body::Empty)
            .unwrap();
        send(&app, Endpoint::Me, request)
            .await
            .assert_error(401, "invalid_api_key");
    }
    assert_eq!(app.limiter.writes(), 0);
    org.call_with(Endpoint::Me, &[], Body::Empty)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn limits_are_set_per_key_or_per_org() {
    let org = TestOrg::new().await;
    let listed = |org: &TestOrg| {
        let store = org.store().clone();
        let org_id = org.org_id.clone();
        async move { shared::admin::list_keys(&store, &org_id).await.unwrap()[0].rate_limit }
    };
    assert_eq!(listed(&org).await, shared::ratelimit::DEFAULT_RATE_LIMIT);
    shared::admin::set_org_rate_limit(org.store(), &org.org_id, Some(50))
        .await
        .unwrap();
    assert_eq!(listed(&org).await, 50);
    shared::admin::set_key_rate_limit(org.store(), &org.key_id, Some(7))
        .await
        .unwrap();
    assert_eq!(listed(&org).await, 7, "the key's own limit wins");
    shared::admin::set_key_rate_limit(org.store(), &org.key_id, None)
        .await
        .unwrap();
    assert_eq!(listed(&org).await, 50);
    let reply = me_from_fresh_instance(org.store(), &org.secret).await;
    assert_eq!(reply.headers["ratelimit-policy"], "\"default\";q=50;w=1");
    let error = shared::admin::set_key_rate_limit(org.store(), "0123456789abcdef", Some(1))
        .await
        .unwrap_err();
    assert!(matches!(error, shared::admin::AdminError::NoSuchKey(_)));
}
