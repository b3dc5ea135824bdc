//! The client record's computed states (`lifecycle_stage`, `billing_state`) and per-name
//! history, end to end: events through the real handler, the record read back.

use crate::common::*;
use serde_json::{json, Value};
use shared::Endpoint;

async fn event(org: &TestOrg, user: &str, name: &str, days: f64, properties: Value) {
    let body = json!({
        "event": name,
        "user": {"external_user_id": user},
        "event_timestamp": days_ago(days),
        "properties": properties,
    });
    org.call(Endpoint::Events, body).await.assert_status(201);
}

async fn user(org: &TestOrg, user: &str) -> Value {
    let reply = org.read(Endpoint::UsersGet, &[user], "").await;
    let body = reply.assert_status(200);
    assert!(body["as_of"].is_string(), "{body}");
    body["user"].clone()
}

/// A user whose events are at `days` ago (each an `app_opened`), and its stage.
async fn stage_after(org: &TestOrg, days: &[f64]) -> Value {
    let id = unique("u");
    for day in days {
        event(org, &id, "app_opened", *day, json!({})).await;
    }
    user(org, &id).await["lifecycle_stage"].clone()
}

#[tokio::test]
async fn each_lifecycle_stage_is_reached() {
    let org = TestOrg::new().await;
    // First seen 1 day ago: new.
    assert_eq!(stage_after(&org, &[1.0]).await, "new");
    // Seen 20 days ago and yesterday: active.
    assert_eq!(stage_after(&org, &[20.0, 1.0]).await, "active");
    assert_eq!(stage_after(&org, &[20.0, 8.0]).await, "at_risk");
    assert_eq!(stage_after(&org, &[40.0]).await, "dormant");
    assert_eq!(stage_after(&org, &[100.0]).await, "churned");
    // Back yesterday after 40 days away: resurrected; late events inside the gap close it.
    assert_eq!(stage_after(&org, &[50.0, 1.0]).await, "resurrected");
    assert_eq!(stage_after(&org, &[1.0, 50.0]).await, "resurrected");
    assert_eq!(stage_after(&org, &[50.0, 1.0, 20.0]).await, "active");
    assert_eq!(stage_after(&org, &[1.0, 20.0, 50.0]).await, "active");
    // Back 10 days ago: no longer resurrected (new_days passed), and idle: at risk.
    assert_eq!(stage_after(&org, &[50.0, 10.0]).await, "at_risk");
}

#[tokio::test]
async fn an_uninstall_with_no_activity_since_is_churned() {
    let org = TestOrg::new().await;
    let id = unique("u");
    event(&org, &id, "app_opened", 2.0, json!({})).await;
    event(&org, &id, "app_uninstalled", 1.0, json!({})).await;
    assert_eq!(user(&org, &id).await["lifecycle_stage"], "churned");
    event(&org, &id, "app_opened", 0.5, json!({})).await;
    assert_eq!(user(&org, &id).await["lifecycle_stage"], "new");
}

#[tokio::test]
async fn each_name_keeps_its_count_and_newest_time() {
    let org = TestOrg::new().await;
    let id = unique("u");
    let (old, new) = (days_ago(3.0), days_ago(1.0));
    for at in [&new, &old, &new] {
        let body = json!({"event": "app_opened", "user": {"external_user_id": id},
            "event_timestamp": at});
        org.call(Endpoint::Events, body).await.assert_status(201);
    }
    event(&org, &id, "level_up", 2.0, json!({})).await;
    let record = user(&org, &id).await;
    assert_eq!(
        record["events_by_name"]["app_opened"],
        json!({"count": 3, "last_at": new})
    );
    assert_eq!(record["events_by_name"]["level_up"]["count"], 1);
}

#[tokio::test]
async fn an_orgs_lifecycle_thresholds_are_set_with_the_admin_cli() {
    use shared::admin::{change_org_lifecycle, AdminError, LifecycleChange};
    let org = TestOrg::new().await;
    let store = org.store();
    // Before the org's key is first used (a warm instance caches it for 30 s).
    let change = LifecycleChange {
        at_risk_days: Some(14),
        ..LifecycleChange::default()
    };
    let (settings, keys) = change_org_lifecycle(store, &org.org_id, change)
        .await
        .unwrap();
    assert_eq!(keys, 1);
    assert_eq!(
        (
            settings.new_days,
            settings.at_risk_days,
            settings.dormant_days,
            settings.churned_days
        ),
        (7, 14, 30, 90)
    );
    for wrong in [
        LifecycleChange {
            dormant_days: Some(14),
            ..LifecycleChange::default()
        },
        LifecycleChange {
            churned_days: Some(30),
            ..LifecycleChange::default()
        },
        LifecycleChange {
            new_days: Some(0),
            ..LifecycleChange::default()
        },
    ] {
        let refused = change_org_lifecycle(store, &org.org_id, wrong).await;
        assert!(
            matches!(refused, Err(AdminError::BadSetting(_))),
            "{refused:?}"
        );
    }
    // Idle 10 days: at risk by default, still active with 14.
    assert_eq!(stage_after(&org, &[20.0, 10.0]).await, "active");
    let other = TestOrg::new().await;
    assert_eq!(stage_after(&other, &[20.0, 10.0]).await, "at_risk");
    // A key created later gets the org's thresholds too.
    let key = shared::admin::create_key(store, &org.org_id, "later", true, "test")
        .await
        .unwrap();
    let record = shared::admin::get_key(store, &key.key_id).await.unwrap();
    assert_eq!(record.lifecycle, Some(settings));
}

/// A user with `events` (name, days ago, properties) and its billing state.
async fn billing_after(
    org: &TestOrg,
    profile: Option<Value>,
    events: &[(&str, f64, Value)],
) -> Value {
    let id = unique("u");
    if let Some(mut profile) = profile {
        profile["external_user_id"] = json!(id);
        org.call(Endpoint::UsersUpsert, profile)
            .await
            .assert_success();
    }
    for (name, days, properties) in events {
        event(org, &id, name, *days, properties.clone()).await;
    }
    user(org, &id).await["billing_state"].clone()
}

#[tokio::test]
async fn each_billing_state_is_reached() {
    let org = TestOrg::new().await;
    let paid = json!({"amount": "9.99", "currency": "USD"});
    let (soon, past) = (days_ago(-10.0), days_ago(1.0));
    let states = [
        ("none", None, vec![("app_opened", 1.0, json!({}))]),
        (
            "trialing",
            None,
            vec![(
                "subscription_trial_started",
                1.0,
                json!({"subscription_ends_at": soon}),
            )],
        ),
        // A trial that ended without a payment.
        (
            "none",
            None,
            vec![(
                "subscription_trial_started",
                5.0,
                json!({"subscription_ends_at": past}),
            )],
        ),
        (
            "paying",
            None,
            vec![("subscription_started", 2.0, paid.clone())],
        ),
        // One-off purchases: a customer until an event says otherwise.
        ("paying", None, vec![("user_purchased", 2.0, paid.clone())]),
        (
            "canceled",
            None,
            vec![
                ("subscription_started", 20.0, paid.clone()),
                (
                    "subscription_cancelled",
                    2.0,
                    json!({"subscription_ends_at": soon}),
                ),
            ],
        ),
        (
            "lapsed",
            None,
            vec![
                ("subscription_started", 40.0, paid.clone()),
                (
                    "subscription_cancelled",
                    20.0,
                    json!({"subscription_ends_at": past}),
                ),
            ],
        ),
        (
            "lapsed",
            None,
            vec![
                ("user_purchased", 40.0, paid.clone()),
                ("subscription_expired", 2.0, json!({})),
            ],
        ),
        // What users/upsert says counts where no event said otherwise.
        (
            "past_due",
            Some(json!({"subscription_status": "past_due", "total_payments_count": 3})),
            vec![],
        ),
        (
            "paying",
            Some(json!({"subscription_status": "past_due"})),
            vec![("subscription_renewed", 1.0, paid.clone())],
        ),
        (
            "lapsed",
            Some(json!({"total_payments_count": 2, "is_active_customer": false})),
            vec![],
        ),
    ];
    for (want, profile, events) in states {
        let got = billing_after(&org, profile.clone(), &events).await;
        assert_eq!(got, want, "{profile:?} {events:?}");
    }
}

/// What a client that sent `names` (each once, in this order, then the first again) shows.
async fn names_after(org: &TestOrg, names: &[String]) -> Value {
    let id = unique("u");
    for (index, name) in names.iter().enumerate() {
        event(org, &id, name, 1.0 - index as f64 / 1e4, json!({})).await;
    }
    event(org, &id, &names[0], 0.5, json!({})).await;
    user(org, &id).await
}

#[tokio::test]
async fn past_the_name_bound_the_smallest_names_are_kept_whatever_the_order() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    let max = shared::store::testing::attributes::MAX_EVENT_NAMES as usize;
    let names: Vec<String> = (0..max + 2).map(|i| format!("step_{i:03}")).collect();
    let ascending = names_after(&org, &names).await;
    let kept = ascending["events_by_name"].as_object().unwrap();
    assert_eq!(kept.len(), max);
    assert_eq!(kept["step_000"]["count"], 2);
    assert!(!kept.contains_key(&names[max]));
    assert_eq!(ascending["events_beyond_name_limit"]["count"], 2);
    // Newest first: the smallest names still win their entries, the others join the rest.
    let mut descending = names.clone();
    descending.reverse();
    let descending = names_after(&org, &descending).await;
    let kept_too = descending["events_by_name"].as_object().unwrap();
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        kept_too.keys().collect::<Vec<_>>()
    );
    assert_eq!(kept_too["step_000"]["count"], 1);
    // The first name sent (`step_065`) was sent twice: both in the rest.
    assert_eq!(descending["events_beyond_name_limit"]["count"], 3);
}

#[tokio::test]
async fn each_user_of_a_page_shows_its_states_at_the_pages_as_of() {
    let org = TestOrg::new().await;
    let id = unique("u");
    event(&org, &id, "app_opened", 1.0, json!({})).await;
    let page = org.read(Endpoint::UsersList, &[], "").await;
    let body = page.assert_status(200);
    assert!(body["as_of"].is_string(), "{body}");
    let users = body["users"].as_array().unwrap();
    assert_eq!(users[0]["lifecycle_stage"], "new");
    assert_eq!(users[0]["billing_state"], "none");
}

#[tokio::test]
async fn a_client_identified_later_keeps_the_history_of_its_email() {
    let org = TestOrg::new().await;
    let id = unique("u");
    let email = format!("{id}@example.com");
    event(&org, &id, "app_opened", 1.0, json!({})).await;
    for days in [50.0, 40.0] {
        let body = json!({"event": "app_opened", "user": {"email": email},
            "event_timestamp": days_ago(days)});
        org.call(Endpoint::Events, body).await.assert_status(201);
    }
    let body = json!({"event": "level_up", "user": {"email": email},
        "event_timestamp": days_ago(45.0)});
    org.call(Endpoint::Events, body).await.assert_status(201);
    let identify = json!({"external_user_id": id, "email": email});
    for _ in 0..2 {
        org.call(Endpoint::UsersUpsert, identify.clone())
            .await
            .assert_success();
    }
    let record = user(&org, &id).await;
    assert_eq!(record["events_by_name"]["app_opened"]["count"], 3);
    assert_eq!(
        record["events_by_name"]["app_opened"]["last_at"],
        record["last_event_at"]
    );
    assert_eq!(record["events_by_name"]["level_up"]["count"], 1);
    // Back yesterday after 39 days away (the gap is between the two records' events).
    assert_eq!(record["lifecycle_stage"], "resurrected");
}

#[tokio::test]
async fn names_racing_past_the_bound_end_as_the_smallest_kept() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    let max = shared::store::testing::attributes::MAX_EVENT_NAMES as usize;
    let id = unique("u");
    for index in 0..max {
        event(&org, &id, &format!("m_{index:03}"), 2.0, json!({})).await;
    }
    // Smaller names (evicting) and greater ones (joining the rest), all at once.
    let racing: Vec<String> = (0..6)
        .map(|i| format!("a_{i}"))
        .chain((0..6).map(|i| format!("z_{i}")))
        .collect();
    // Keyed, and retried on a 503 as a client does (many events of one client racing may
    // use up their transaction attempts).
    let calls = racing.iter().map(|name| {
        let body = json!({"event": name, "user": {"external_user_id": id},
            "event_timestamp": days_ago(1.0)})
        .to_string();
        let key = format!("{id}-{name}");
        let org = &org;
        async move {
            for _ in 0..10 {
                let reply = org
                    .call_with(Endpoint::Events, &[("idempotency-key", &key)], body.clone())
                    .await;
                if reply.status != 503 {
                    return reply;
                }
            }
            panic!("still 503 after 10 tries");
        }
    });
    for reply in futures::future::join_all(calls).await {
        reply.assert_status(201);
    }
    let record = user(&org, &id).await;
    let kept: Vec<&String> = record["events_by_name"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let mut all: Vec<String> = (0..max).map(|i| format!("m_{i:03}")).collect();
    all.extend(racing.iter().cloned());
    all.sort();
    assert_eq!(kept, all.iter().take(max).collect::<Vec<_>>());
    // The 6 greatest `m_` names and the 6 `z_` names: one event each.
    assert_eq!(record["events_beyond_name_limit"]["count"], 12);
    let total: i64 = record["events_by_name"]
        .as_object()
        .unwrap()
        .values()
        .map(|entry| entry["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total + 12, (max + racing.len()) as i64);
}
