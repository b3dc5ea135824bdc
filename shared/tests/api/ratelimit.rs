//! Rate limiting against DynamoDB Local: several limiter instances (as separate Lambda
//! instances would be) share one key's budget, and the keys of an org share the org's;
//! requests cost tokens by the work they cause; 429s through the real handler.

use crate::common::*;
use lambda_http::Body;
use serde_json::{json, Value};
use shared::ratelimit::{Budgets, RateLimiter, DEFAULT_ORG_FACTOR};
use shared::Endpoint;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `instances` limiters for `key_id` (alone in its org) until `until`, each offering
/// a request every `every`; returns admitted requests per window and the limiters'
/// DynamoDB writes.
async fn offer_load(
    key_id: String,
    limit: u32,
    instances: usize,
    every: Duration,
    until: Instant,
) -> (BTreeMap<u64, u32>, u64, Vec<Duration>) {
    let store = store().await;
    let org_id = unique("org");
    let tasks = (0..instances).map(|_| {
        let (store, key_id, org_id) = (store.clone(), key_id.clone(), org_id.clone());
        tokio::spawn(async move {
            let limiter = RateLimiter::default();
            let budgets = Budgets {
                key_id: &key_id,
                key_limit: limit,
                org_id: &org_id,
                org_limit: limit * DEFAULT_ORG_FACTOR,
            };
            let mut admitted: BTreeMap<u64, u32> = BTreeMap::new();
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                let decision = limiter.check(&store, &budgets, 1).await;
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
async fn steady_load_at_the_limit_costs_under_a_fifth_of_a_write_per_request() {
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
    // Two counters (the key's and the org's), each leased in blocks.
    assert!(per_request <= 0.2, "{per_request} writes per request");
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
    let policy = "\"key\";q=2;w=1, \"org\";q=8;w=1";
    assert_eq!(ok.headers["ratelimit-policy"], policy);
    assert!(ok.headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"key\";r="));
    let limited = replies
        .iter()
        .find(|r| r.status == 429)
        .expect("some refused");
    limited.assert_error(429, "rate_limited");
    assert_eq!(
        limited.body["error"]["rate_limit"],
        json!({"scope": "key", "limit": 2, "cost": 1})
    );
    assert_eq!(limited.headers["retry-after"], "1");
    assert!(limited.headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"key\";r=0;t=1, \"org\";r="));
    assert_eq!(limited.headers["ratelimit-policy"], policy);
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
    assert_eq!(
        reply.headers["ratelimit-policy"],
        "\"key\";q=50;w=1, \"org\";q=200;w=1"
    );
    shared::admin::set_org_total_rate_limit(org.store(), &org.org_id, Some(120))
        .await
        .unwrap();
    let reply = me_from_fresh_instance(org.store(), &org.secret).await;
    assert_eq!(
        reply.headers["ratelimit-policy"],
        "\"key\";q=50;w=1, \"org\";q=120;w=1"
    );
    let listed = shared::admin::list_keys(org.store(), &org.org_id)
        .await
        .unwrap();
    assert_eq!(listed[0].org_rate_limit, 120);
    let error = shared::admin::set_key_rate_limit(org.store(), "0123456789abcdef", Some(1))
        .await
        .unwrap_err();
    assert!(matches!(error, shared::admin::AdminError::NoSuchKey(_)));
}

/// An org of `keys` keys whose per-key limit is `per_key` (so its total is the default,
/// [`DEFAULT_ORG_FACTOR`] times that), each key with its own warm instance.
async fn org_with_keys(keys: usize, per_key: u32) -> Vec<TestOrg> {
    let first = TestOrg::new().await;
    shared::admin::set_org_rate_limit(first.store(), &first.org_id, Some(per_key))
        .await
        .unwrap();
    let mut orgs = vec![];
    for _ in 0..keys {
        let key = shared::admin::create_key(first.store(), &first.org_id, "k", false, "test")
            .await
            .unwrap();
        orgs.push(TestOrg {
            app: shared::http::App::new(first.store().clone()),
            org_id: first.org_id.clone(),
            secret: key.key,
            key_id: key.key_id,
        });
    }
    orgs
}

/// What one client of an org saw: statuses, latencies, and the 429 bodies.
#[derive(Default)]
struct Seen {
    statuses: BTreeMap<u16, u32>,
    latencies: Vec<Duration>,
    refusals: Vec<Value>,
}

/// Sends `endpoint` with `query` from `org` every `every` until `until`.
async fn client(
    org: &TestOrg,
    endpoint: Endpoint,
    query: &str,
    every: Duration,
    until: Instant,
) -> Seen {
    let mut seen = Seen::default();
    while Instant::now() < until {
        let mut request = org.request(endpoint, &[], Body::Empty);
        *request.uri_mut() = format!("https://api.example.test{}{query}", endpoint.path())
            .parse()
            .unwrap();
        let started = Instant::now();
        let reply = send(&org.app, endpoint, request).await;
        seen.latencies.push(started.elapsed());
        *seen.statuses.entry(reply.status.as_u16()).or_default() += 1;
        if reply.status == 429 {
            seen.refusals.push(reply.body["error"].clone());
        }
        tokio::time::sleep(every).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_org_flooding_from_many_keys_gets_its_org_limit_and_another_org_is_unaffected() {
    // Org A: 8 keys of 10 requests/s each, so 40/s together by default; each floods `me/`
    // from its own instance. Org B: one key at a moderate rate of list pages and `me/`.
    let seconds = 3;
    let flooders = org_with_keys(8, 10).await;
    let other = TestOrg::new().await;
    let until = Instant::now() + Duration::from_secs(seconds);
    let flood = flooders
        .iter()
        .map(|key| client(key, Endpoint::Me, "", Duration::from_millis(2), until));
    let moderate = async {
        let pages = client(
            &other,
            Endpoint::UsersList,
            "?limit=10",
            Duration::from_millis(100),
            until,
        );
        let me = client(&other, Endpoint::Me, "", Duration::from_millis(50), until);
        tokio::join!(pages, me)
    };
    let (flood, (pages, me)) = tokio::join!(futures::future::join_all(flood), moderate);

    let admitted: u32 = flood
        .iter()
        .map(|seen| seen.statuses.get(&200).copied().unwrap_or(0))
        .sum();
    let refused: u32 = flood
        .iter()
        .map(|seen| seen.statuses.get(&429).copied().unwrap_or(0))
        .sum();
    // At most the org's 40 per window over the windows the run touched (keys alone: 80).
    let most = 40 * (seconds as u32 + 1);
    assert!(
        admitted <= most,
        "org A: {admitted} admitted, at most {most}"
    );
    assert!(
        admitted >= 40 * (seconds as u32 - 1),
        "org A under-admitted: {admitted}"
    );
    let by_org = flood
        .iter()
        .flat_map(|seen| &seen.refusals)
        .filter(|error| error["rate_limit"]["scope"] == "org")
        .count();
    assert!(by_org > 0, "no 429 named the org's limit");
    let refusal = flood
        .iter()
        .flat_map(|seen| &seen.refusals)
        .find(|e| e["rate_limit"]["scope"] == "org")
        .unwrap();
    assert_eq!(
        refusal["rate_limit"],
        json!({"scope": "org", "limit": 40, "cost": 1})
    );
    for (name, seen) in [("pages", &pages), ("me", &me)] {
        assert_eq!(
            seen.statuses.keys().collect::<Vec<_>>(),
            [&200],
            "org B's {name}: {:?}",
            seen.statuses
        );
    }
    println!(
        "org A (8 keys flooding): {admitted} admitted, {refused} refused in {seconds} s; org B: {} pages, {} me/, all 200",
        pages.latencies.len(),
        me.latencies.len()
    );
}

#[tokio::test]
async fn an_orgs_total_limit_is_set_by_the_admin_and_binds_all_its_keys() {
    let keys = org_with_keys(3, 100).await;
    shared::admin::set_org_total_rate_limit(keys[0].store(), &keys[0].org_id, Some(4))
        .await
        .unwrap();
    // Fresh instances (the key cache holds the old limit for up to 30 s).
    let keys: Vec<TestOrg> = keys
        .into_iter()
        .map(|key| TestOrg {
            app: shared::http::App::new(key.store().clone()),
            ..key
        })
        .collect();
    // Two windows at most for 12 quick requests: at most 8 admitted, though each key may do 100.
    let mut statuses = Vec::new();
    let mut last_refusal = None;
    for _ in 0..4 {
        for key in &keys {
            let reply = key.call_with(Endpoint::Me, &[], Body::Empty).await;
            if reply.status == 429 {
                last_refusal = Some(reply.body["error"]["rate_limit"].clone());
            }
            statuses.push(reply.status.as_u16());
        }
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(admitted <= 8, "{statuses:?}");
    assert_eq!(
        last_refusal.expect("some refused"),
        json!({"scope": "org", "limit": 4, "cost": 1})
    );
}

/// Sends `GET users/?limit=100` (26 tokens) with `org`'s key until one is refused, at most 4.
async fn list_until_refused(org: &TestOrg) -> Vec<(u16, Value)> {
    let mut replies = Vec::new();
    for _ in 0..4 {
        let reply = client(
            org,
            Endpoint::UsersList,
            "?limit=100",
            Duration::ZERO,
            Instant::now() + Duration::from_millis(1),
        )
        .await;
        let status = *reply.statuses.keys().next().unwrap();
        replies.push((
            status,
            reply.refusals.first().cloned().unwrap_or(Value::Null),
        ));
        if status == 429 {
            break;
        }
    }
    replies
}

#[tokio::test]
async fn a_large_page_costs_more_tokens_and_a_429_says_so() {
    // 26 tokens a page: a key of 30 per second gets one a second.
    let org = TestOrg::with_rate_limit(Some(30)).await;
    let replies = list_until_refused(&org).await;
    let (status, refusal) = replies.last().unwrap();
    assert_eq!(*status, 429, "{replies:?}");
    assert_eq!(
        refusal["rate_limit"],
        json!({"scope": "key", "limit": 30, "cost": 26})
    );
    assert!(
        replies.len() <= 3,
        "at most one page per window: {replies:?}"
    );
    // A cost above the limit is charged as the whole limit: still served in a fresh window.
    let small = TestOrg::with_rate_limit(Some(5)).await;
    let reply = client(
        &small,
        Endpoint::UsersList,
        "?limit=100",
        Duration::ZERO,
        Instant::now() + Duration::from_millis(1),
    )
    .await;
    assert_eq!(reply.statuses.keys().collect::<Vec<_>>(), [&200]);
}

fn booking_with_services(id: &str, services: usize) -> Value {
    let services: Vec<Value> = (0..services)
        .map(|n| json!({"external_product_id": format!("svc-{n}"), "name": "Cut"}))
        .collect();
    json!({
        "booking_id": id,
        "scheduled_at": "2026-12-01T10:00:00Z",
        "services": services,
    })
}

#[tokio::test]
async fn a_booking_costs_by_its_services_alone_and_in_a_batch() {
    // 10 services: 3 tokens. A key of 7: two such bookings a second, the third refused
    // (six in a row span two windows at most).
    let org = TestOrg::with_rate_limit(Some(7)).await;
    let items: Vec<Value> = (0..4)
        .map(|n| {
            let mut item = booking_with_services(&format!("b{n}"), 10);
            item["type"] = json!("booking");
            item
        })
        .collect();
    let reply = org.call(Endpoint::Batch, json!({ "batch": items })).await;
    let results = reply.body["results"].as_array().unwrap().clone();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 201, 429, 429], "{results:?}");
    assert_eq!(
        results[2]["error"]["rate_limit"],
        json!({"scope": "key", "limit": 7, "cost": 3})
    );
    // The unused token went back (7 - 6 = 1 left).
    assert!(reply.headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"key\";r=1;"));

    // Alone: the same cost, all or nothing.
    let alone = TestOrg::with_rate_limit(Some(7)).await;
    let mut refusal = None;
    for n in 0..6 {
        let reply = alone
            .call(
                Endpoint::BookingsUpsert,
                booking_with_services(&format!("s{n}"), 10),
            )
            .await;
        if reply.status == 429 {
            refusal = Some(reply.body["error"]["rate_limit"].clone());
            break;
        }
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    assert_eq!(
        refusal.expect("a third booking in one window is refused"),
        json!({"scope": "key", "limit": 7, "cost": 3})
    );
}
