//! `GET users/`'s segment: every parameter and every refusal, one `as_of` for all the pages
//! of a traversal, and what a page costs in Queries.

use crate::batch::item;
use crate::common::*;
use serde_json::{json, Value};
use shared::fields::Timestamp;
use shared::query::QueryParams;
use shared::segment::{self, Segment};
use shared::states::{BillingState, LifecycleStage, StageSettings};
use shared::store::records::UserRecord;
use shared::Endpoint;
use std::collections::HashSet;

fn ids(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .map(|user| user["external_user_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn segment_of(org: &TestOrg, query: &str) -> Vec<String> {
    ids(&org.read_all(Endpoint::UsersList, &[], query, "users").await)
}

async fn event(org: &TestOrg, user: &str, name: &str, days: f64, properties: Value) {
    org.call(
        Endpoint::Events,
        json!({
            "event": name, "user": {"external_user_id": user},
            "event_timestamp": days_ago(days), "properties": properties,
        }),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn every_range_and_recency_parameter_filters_exactly() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    // `old` installed 40 days ago and paid 20 USD; `new` installed 3 days ago, paid
    // 150 USD in two payments and opened the app yesterday; `euro` paid in EUR only.
    let profiles = [
        json!({"external_user_id": "old", "created_at": days_ago(40.0),
               "installed_at": days_ago(40.0), "install_count": 1,
               "uninstalled_at": days_ago(35.0), "subscription_started_at": days_ago(39.0)}),
        json!({"external_user_id": "new", "created_at": days_ago(3.0),
               "installed_at": days_ago(3.0), "install_count": 2,
               "last_opened_at": days_ago(1.0), "subscription_started_at": days_ago(2.0)}),
        json!({"external_user_id": "euro", "created_at": days_ago(20.0)}),
    ];
    for profile in profiles {
        org.create_user(profile).await;
    }
    let paid = |amount: &str, currency: &str| json!({"amount": amount, "currency": currency});
    event(&org, "old", "user_purchased", 38.0, paid("20.00", "USD")).await;
    event(&org, "euro", "user_purchased", 10.0, paid("500.00", "EUR")).await;
    event(&org, "new", "user_purchased", 2.0, paid("100.00", "USD")).await;
    event(&org, "new", "user_purchased", 1.0, paid("50.00", "USD")).await;

    // Least recently active first: old (38 days), euro (10), new (1).
    for (query, expected) in [
        ("", vec!["old", "euro", "new"]),
        ("currency=USD&revenue_gte=100", vec!["new"]),
        ("currency=usd&revenue_gte=20&revenue_lt=150", vec!["old"]),
        ("currency=USD&revenue_lt=20", vec!["euro"]),
        ("currency=EUR&revenue_gte=0.01", vec!["euro"]),
        ("total_payments_count_gte=2", vec!["new"]),
        ("total_payments_count_lt=2", vec!["old", "euro"]),
        (
            "total_payments_count_gte=1&total_payments_count_lt=2",
            vec!["old", "euro"],
        ),
        ("install_count_gte=2", vec!["new"]),
        ("install_count_lt=1", vec!["euro"]),
        ("created_within_days=7", vec!["new"]),
        ("created_within_days=30", vec!["euro", "new"]),
        ("installed_within_days=7", vec!["new"]),
        ("uninstalled_within_days=36", vec!["old"]),
        ("last_opened_within_days=2", vec!["new"]),
        ("last_payment_within_days=5", vec!["new"]),
        ("last_payment_within_days=15", vec!["euro", "new"]),
        ("subscription_started_within_days=3", vec!["new"]),
        ("active_within_days=15", vec!["euro", "new"]),
        ("inactive_days=5&active_within_days=15", vec!["euro"]),
        ("inactive_days=5&currency=USD&revenue_gte=1", vec!["old"]),
        (
            "created_within_days=30&total_payments_count_lt=2",
            vec!["euro"],
        ),
    ] {
        assert_eq!(segment_of(&org, query).await, expected, "{query}");
        // Page by page too: each page of one is exact.
        let paged = segment_of(&org, &format!("{query}&limit=1")).await;
        assert_eq!(paged, expected, "{query}&limit=1");
    }
}

#[tokio::test]
async fn every_bad_parameter_is_invalid_field_naming_it() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    let long_name = format!("did={}", "x".repeat(1001));
    for (query, param) in [
        ("revenue_gte=10", "revenue_gte"),
        ("revenue_lt=10", "revenue_lt"),
        ("currency=USD", "currency"),
        ("currency=XXY&revenue_gte=1", "currency"),
        ("currency=USD&revenue_gte=-1", "revenue_gte"),
        ("currency=USD&revenue_lt=1e3", "revenue_lt"),
        ("currency=USD&revenue_gte=10&revenue_lt=10", "revenue_lt"),
        (
            "total_payments_count_gte=5&total_payments_count_lt=2",
            "total_payments_count_lt",
        ),
        ("total_payments_count_gte=x", "total_payments_count_gte"),
        ("install_count_lt=-1", "install_count_lt"),
        ("install_count_gte=3&install_count_lt=3", "install_count_lt"),
        ("created_within_days=0", "created_within_days"),
        ("installed_within_days=36501", "installed_within_days"),
        ("uninstalled_within_days=two", "uninstalled_within_days"),
        ("last_opened_within_days=-1", "last_opened_within_days"),
        ("last_payment_within_days=1.5", "last_payment_within_days"),
        (
            "subscription_started_within_days=0",
            "subscription_started_within_days",
        ),
        ("active_within_days=0", "active_within_days"),
        (
            "inactive_days=30&active_within_days=30",
            "active_within_days",
        ),
        (
            "created_within_days=3&created_within_days=4",
            "created_within_days",
        ),
        ("revenue_gt=5", "revenue_gt"),
        ("lifecycle_stage=sleeping", "lifecycle_stage"),
        ("lifecycle_stage=new,active,new", "lifecycle_stage"),
        ("billing_state=free", "billing_state"),
        ("billing_state=paying&billing_state=none", "billing_state"),
        ("did_within_days=7", "did_within_days"),
        ("did_count_gte=2", "did_count_gte"),
        ("did=a&did_count_gte=0", "did_count_gte"),
        ("did=a&did_within_days=0", "did_within_days"),
        ("did_not_within_days=7", "did_not_within_days"),
        ("did=a&did_not=a", "did_not"),
        (
            "did=a&did_within_days=7&did_not=a&did_not_within_days=7",
            "did_not",
        ),
        (&long_name, "did"),
        ("install_source=a&install_source=b", "install_source"),
    ] {
        let reply = org.read(Endpoint::UsersList, &[], query).await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), param, "{query}");
    }
}

#[tokio::test]
async fn every_page_of_a_traversal_is_evaluated_at_its_first_pages_instant() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    for (n, days) in [40.0, 39.0, 38.0, 37.0].into_iter().enumerate() {
        event(&org, &format!("p{n}"), "app_opened", days, json!({})).await;
    }
    let first = org
        .read(Endpoint::UsersList, &[], "limit=2&inactive_days=30")
        .await;
    let first = first.assert_status(200).clone();
    assert_eq!(ids(first["users"].as_array().unwrap()), ["p0", "p1"]);
    let as_of = first["as_of"].as_str().unwrap().to_owned();
    assert!(as_of.parse::<Timestamp>().is_ok() && as_of <= days_ago(0.0));
    assert_eq!(
        first["inactive_since"].as_str().unwrap(),
        as_of
            .parse::<Timestamp>()
            .unwrap()
            .later_by(-time::Duration::days(30))
            .to_stored()
    );
    // Between pages: p2 becomes active (after `as_of`), a new user is created, an
    // already listed user moves forward in the order.
    std::thread::sleep(std::time::Duration::from_millis(5));
    event(&org, "p2", "app_opened", 0.0, json!({})).await;
    event(&org, "p0", "app_opened", 0.0, json!({})).await;
    org.create_user(json!({"external_user_id": "late"})).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = org
        .read(
            Endpoint::UsersList,
            &[],
            &format!("limit=2&inactive_days=30&cursor={cursor}"),
        )
        .await;
    let second = second.assert_status(200);
    assert_eq!(second["as_of"], as_of.as_str(), "the cursor carries as_of");
    assert_eq!(second["inactive_since"], first["inactive_since"]);
    // p2 left the segment; p0 is not listed again; `late` is newer than `as_of`.
    assert_eq!(ids(second["users"].as_array().unwrap()), ["p3"]);
    assert!(second["next_cursor"].is_null());
    // A new traversal is evaluated now.
    let now: HashSet<String> = segment_of(&org, "").await.into_iter().collect();
    let expected = ["p0", "p1", "p2", "p3", "late"].map(str::to_owned);
    assert_eq!(now, HashSet::from(expected));
}

/// Stores batch `items`, 100 a request, retrying the ones a busy DynamoDB Local refused.
pub async fn store_all(org: &TestOrg, mut items: Vec<Value>) {
    for _ in 0..5 {
        let mut refused = Vec::new();
        for chunk in items.chunks(100) {
            let reply = org.call(Endpoint::Batch, json!({ "batch": chunk })).await;
            let results = reply.assert_status(200)["results"].as_array().unwrap();
            for (result, item) in results.iter().zip(chunk) {
                match result["status"].as_u64() {
                    Some(200 | 201) => {}
                    Some(503) => refused.push(item.clone()),
                    _ => panic!("{result}"),
                }
            }
        }
        if refused.is_empty() {
            return;
        }
        items = refused;
    }
    panic!("{} items still refused", items.len());
}

/// A page of 25 users from `segment` (from `start`) and the Queries it took.
async fn page_cost(
    org: &TestOrg,
    query: &str,
    start: Option<shared::store::Position>,
) -> (usize, usize, Option<shared::store::Position>) {
    let names = segment::parameters();
    let allowed: Vec<&str> = names.iter().map(String::as_str).collect();
    let params = QueryParams::parse(Some(query), &allowed).unwrap();
    let segment = Segment::parse(&params, Timestamp::now(), StageSettings::default()).unwrap();
    let page = org
        .store()
        .users_page::<UserRecord>(&org.org_id, &segment.store_filter(), 25, start, |user| {
            segment.matches(user)
        })
        .await
        .unwrap();
    (page.items.len(), page.queries, page.next)
}

#[tokio::test]
async fn a_page_of_25_from_a_dense_segment_costs_at_most_80_queries() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    // 400 users, all inactive for 30 days or more: the segment is the whole list.
    let items: Vec<Value> = (0..400)
        .map(|n| {
            let body = json!({
                "event": "app_opened", "user": {"external_user_id": format!("d{n:03}")},
                "event_timestamp": days_ago(30.0 + f64::from(n) / 10.0),
            });
            item(Endpoint::Events, &body, None)
        })
        .collect();
    store_all(&org, items).await;
    let mut costs = Vec::new();
    for query in [
        "",
        "inactive_days=30",
        "inactive_days=30&install_count_lt=5",
    ] {
        let mut start = None;
        for _ in 0..4 {
            let (found, queries, next) = page_cost(&org, query, start).await;
            assert_eq!(found, 25, "{query}: a dense page is full");
            costs.push(queries);
            assert!(queries <= 80, "{query}: {queries} Queries for a page of 25");
            start = next;
        }
    }
    println!("Queries per dense page of 25: {costs:?}");
}

async fn set_of(org: &TestOrg, query: &str) -> HashSet<String> {
    segment_of(org, query).await.into_iter().collect()
}

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

#[tokio::test]
async fn states_and_behaviour_filter_as_the_records_show_them() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    org.create_user(json!({"external_user_id": "ph", "install_source": "producthunt"}))
        .await;
    event(&org, "ph", "app_installed", 2.0, json!({})).await;
    event(&org, "buyer", "app_installed", 3.0, json!({})).await;
    let paid = json!({"amount": "10.00", "currency": "USD"});
    event(&org, "buyer", "user_purchased", 1.0, paid).await;
    event(&org, "dormant", "app_opened", 45.0, json!({})).await;
    event(&org, "dormant", "app_opened", 40.0, json!({})).await;
    event(&org, "opener", "app_opened", 1.0, json!({})).await;
    for (id, status) in [("trial", "trialing"), ("payer", "active")] {
        org.create_user(json!({"external_user_id": id, "subscription_status": status}))
            .await;
    }
    let everyone = org.read_all(Endpoint::UsersList, &[], "", "users").await;
    assert_eq!(everyone.len(), 6);
    for state in ["lifecycle_stage", "billing_state"] {
        let all: Vec<&str> = match state {
            "lifecycle_stage" => LifecycleStage::ALL.map(LifecycleStage::as_str).to_vec(),
            _ => BillingState::ALL.map(BillingState::as_str).to_vec(),
        };
        for value in all {
            let shown: HashSet<String> = everyone
                .iter()
                .filter(|user| user[state] == value)
                .map(|user| user["external_user_id"].as_str().unwrap().to_owned())
                .collect();
            let query = format!("{state}={value}");
            assert_eq!(set_of(&org, &query).await, shown, "{query}");
        }
    }
    assert_eq!(
        set_of(&org, "lifecycle_stage=dormant").await,
        set(&["dormant"])
    );
    assert_eq!(
        set_of(&org, "lifecycle_stage=dormant,new").await,
        set(&["dormant", "ph", "buyer", "trial", "payer", "opener"])
    );
    assert_eq!(
        set_of(&org, "billing_state=trialing").await,
        set(&["trial"])
    );
    assert_eq!(
        set_of(&org, "billing_state=paying,trialing&lifecycle_stage=new").await,
        set(&["trial", "payer", "buyer"])
    );
    for (query, expected) in [
        ("did=user_purchased", vec!["buyer"]),
        ("did=app_opened&did_count_gte=2", vec!["dormant"]),
        ("did=app_opened&did_within_days=7", vec!["opener"]),
        (
            "did=app_opened&did_within_days=41",
            vec!["dormant", "opener"],
        ),
        (
            "did=app_installed&did_within_days=7&did_not=user_purchased",
            vec!["ph"],
        ),
        (
            "did=app_installed&did_within_days=7&did_not=user_purchased&install_source=producthunt",
            vec!["ph"],
        ),
        (
            "did_not=app_opened&did_not_within_days=30",
            vec!["ph", "buyer", "trial", "payer", "dormant"],
        ),
        ("did_not=app_opened", vec!["ph", "buyer", "trial", "payer"]),
        (
            "did=app_opened&did_within_days=60&did_not=app_opened&did_not_within_days=30",
            vec!["dormant"],
        ),
        ("did=never_sent", vec![]),
    ] {
        assert_eq!(set_of(&org, query).await, set(&expected), "{query}");
    }
    // Every listed user shows its states at the page's `as_of`.
    assert!(everyone
        .iter()
        .all(|user| user["lifecycle_stage"].is_string() && user["billing_state"].is_string()));
}

#[tokio::test]
async fn stats_count_the_segment_per_value_exactly() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    for (id, source) in [
        ("a", Some("ads")),
        ("b", Some("ads")),
        ("c", Some("seo")),
        ("d", None),
    ] {
        let mut body = json!({"external_user_id": id});
        if let Some(source) = source {
            body["install_source"] = json!(source);
        }
        org.create_user(body).await;
    }
    event(&org, "d", "app_opened", 40.0, json!({})).await;
    event(
        &org,
        "c",
        "user_purchased",
        1.0,
        json!({"amount": "5.00", "currency": "USD"}),
    )
    .await;
    let stats = |query: &str| {
        let org = &org;
        let query = query.to_owned();
        async move {
            let reply = org.read(Endpoint::StatsUsers, &[], &query).await;
            reply.assert_status(200).clone()
        }
    };
    let body = stats("group_by=install_source").await;
    assert_eq!(body["counts"], json!({"ads": 2, "seo": 1}));
    assert_eq!(body["without_value"], 1);
    assert_eq!(body["total"], 4);
    assert!(body["as_of"].as_str().unwrap() <= days_ago(0.0).as_str());
    // Every state is a bucket; the counts are what users/ lists.
    let body = stats("group_by=lifecycle_stage").await;
    let counts = body["counts"].as_object().unwrap();
    assert_eq!(counts.len(), LifecycleStage::ALL.len());
    for (stage, count) in counts {
        let listed = segment_of(&org, &format!("lifecycle_stage={stage}")).await;
        assert_eq!(listed.len() as u64, count.as_u64().unwrap(), "{stage}");
    }
    assert_eq!(counts["dormant"], 1);
    let body = stats("group_by=billing_state&install_source=ads").await;
    assert_eq!(body["counts"]["none"], 2);
    assert_eq!(body["total"], 2);
    let body = stats("group_by=billing_state&did=user_purchased").await;
    assert_eq!(body["total"], 1);
    assert_eq!(
        body["counts"].as_object().unwrap().len(),
        BillingState::ALL.len()
    );

    for (query, status, param) in [
        ("", "missing_field", "group_by"),
        ("group_by=plan", "invalid_field", "group_by"),
        ("group_by=billing_state&limit=10", "invalid_field", "limit"),
        ("group_by=billing_state&cursor=x", "invalid_field", "cursor"),
        (
            "group_by=billing_state&did_within_days=3",
            "invalid_field",
            "did_within_days",
        ),
        (
            "group_by=billing_state&lifecycle_stage=x",
            "invalid_field",
            "lifecycle_stage",
        ),
        (
            "group_by=billing_state&group_by=install_source",
            "invalid_field",
            "group_by",
        ),
    ] {
        let reply = org.read(Endpoint::StatsUsers, &[], query).await;
        reply.assert_error(400, status);
        assert_eq!(reply.param(), param, "{query}");
    }
}

#[tokio::test]
async fn stats_refuse_a_segment_they_cannot_count_in_time() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "x"})).await;
    let filter = shared::store::ops::lists::UserFilter::default();
    let past = std::time::Instant::now();
    let result = org
        .store()
        .users_fold::<UserRecord, u64>(&org.org_id, &filter, (10, past), |n, _| *n += 1)
        .await;
    assert_eq!(result.unwrap_err().code(), "segment_too_large");
    let later = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (counts, queries) = org
        .store()
        .users_fold::<UserRecord, u64>(&org.org_id, &filter, (10, later), |n, _| *n += 1)
        .await
        .unwrap();
    assert_eq!(counts.iter().sum::<u64>(), 1);
    assert_eq!(queries, 64, "one Query a shard for a small org");
}
