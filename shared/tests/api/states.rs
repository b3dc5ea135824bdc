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
