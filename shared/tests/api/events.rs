use crate::common::*;
use serde_json::{json, Value};
use shared::store::testing::keys;
use shared::Endpoint;

fn install_event() -> Value {
    json!({
        "event": "app_installed",
        "user": { "external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe" },
        "properties": { "install_platform": "ios", "install_source": "producthunt", "app_version": "1.4.2" },
        "event_timestamp": "2026-03-23T10:30:00Z"
    })
}

#[tokio::test]
async fn the_reference_event_is_stored_and_moves_the_lifecycle() {
    let org = TestOrg::new().await;
    let reply = org.call(Endpoint::Events, install_event()).await;
    let body = reply.assert_status(201);
    let event = &body["event"];
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["event"], "app_installed");
    assert_eq!(event["user"], json!({"external_user_id": "usr_123"}));
    assert_eq!(event["properties"]["install_platform"], "ios");
    assert_eq!(event["event_timestamp"], "2026-03-23T10:30:00.000Z");

    let user = org.stored_user("usr_123").await;
    assert_eq!(user["name"], "John Doe");
    assert_eq!(user["installed_at"], "2026-03-23T10:30:00.000Z");
    assert_eq!(user["is_installed"], true);
    assert_eq!(user["install_count"], 1);
    assert_eq!(user["install_source"], "producthunt");
}

#[tokio::test]
async fn events_without_a_key_are_each_stored() {
    let org = TestOrg::new().await;
    for _ in 0..3 {
        org.call(
            Endpoint::Events,
            json!({"event": "level_up", "user": {"external_user_id": "u"}}),
        )
        .await
        .assert_status(201);
    }
    assert_eq!(org.count_events("u").await, 3);
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_first_answer() {
    let org = TestOrg::new().await;
    let headers = [(
        "idempotency-key",
        "evt-usr_123-app_installed-20260323T103000Z",
    )];
    let first = org
        .call_with(Endpoint::Events, &headers, install_event().to_string())
        .await;
    first.assert_status(201);
    assert!(first.headers.get("idempotent-replayed").is_none());

    // Same JSON, other key order: still the same request.
    let reordered = r#"{"event_timestamp":"2026-03-23T10:30:00Z","properties":{"app_version":"1.4.2","install_source":"producthunt","install_platform":"ios"},"user":{"name":"John Doe","email":"user@example.com","external_user_id":"usr_123"},"event":"app_installed"}"#;
    let second = org.call_with(Endpoint::Events, &headers, reordered).await;
    second.assert_status(201);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(second.body, first.body);
    assert_eq!(org.count_events("usr_123").await, 1);
    assert_eq!(
        org.stored_user("usr_123").await["install_count"],
        1,
        "counted once"
    );
    // The replay found the user write done with a read: it wrote nothing (version counts writes).
    let user_key = keys::user(&org.org_id, &external_identity("usr_123"));
    let version =
        || async { org.store().get(&user_key).await.unwrap().unwrap()["version"].clone() };
    let before = version().await;
    let third = org.call_with(Endpoint::Events, &headers, reordered).await;
    assert_eq!(third.headers["idempotent-replayed"], "true");
    assert_eq!(version().await, before);
}

/// The event and its client's counts are one transaction: when the user write cannot be
/// made, the event is not stored either, so a retry still counts it exactly once.
#[tokio::test]
async fn an_event_is_stored_with_its_counts_or_not_at_all() {
    let org = TestOrg::new().await;
    let headers = [("idempotency-key", "install-while-the-user-write-fails")];
    // An item of another entity at the user's key: the user write's condition refuses it.
    let user_key = keys::user(&org.org_id, &external_identity("usr_123"));
    let text = |value: &str| aws_sdk_dynamodb::types::AttributeValue::S(value.to_owned());
    org.store()
        .client()
        .put_item()
        .table_name(org.store().table())
        .item("PK", text(&user_key.pk))
        .item("SK", text(&user_key.sk))
        .item("entity", text("product"))
        .item("org_id", text(&org.org_id))
        .send()
        .await
        .unwrap();
    org.call_with(Endpoint::Events, &headers, install_event().to_string())
        .await
        .assert_error(500, "internal_error");
    assert_eq!(org.count_events("usr_123").await, 0);

    org.store().delete(&user_key).await.unwrap();
    org.call_with(Endpoint::Events, &headers, install_event().to_string())
        .await
        .assert_status(201);
    let replay = org
        .call_with(Endpoint::Events, &headers, install_event().to_string())
        .await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    let user = org.stored_user("usr_123").await;
    assert_eq!(user["install_count"], 1);
    assert_eq!(user["installed_at"], "2026-03-23T10:30:00.000Z");
    assert_eq!(org.count_events("usr_123").await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_rejected() {
    let org = TestOrg::new().await;
    let headers = [("idempotency-key", "k-1")];
    org.call_with(Endpoint::Events, &headers, install_event().to_string())
        .await
        .assert_status(201);
    let mut other = install_event();
    other["event"] = json!("app_opened");
    let reply = org
        .call_with(Endpoint::Events, &headers, other.to_string())
        .await;
    reply.assert_error(422, "idempotency_key_reused");
    assert_eq!(reply.param(), "Idempotency-Key");
    assert!(
        org.stored_user("usr_123")
            .await
            .get("last_opened_at")
            .is_none(),
        "no side effect"
    );
}

#[tokio::test]
async fn twenty_concurrent_duplicates_store_one_event_and_agree() {
    let org = TestOrg::new().await;
    let body = install_event().to_string();
    let calls = (0..20).map(|_| {
        org.call_with(
            Endpoint::Events,
            &[("idempotency-key", "burst-1")],
            body.clone(),
        )
    });
    let replies = futures::future::join_all(calls).await;
    for reply in &replies {
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.body, replies[0].body);
    }
    let fresh = replies
        .iter()
        .filter(|r| r.headers.get("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1);
    assert_eq!(org.count_events("usr_123").await, 1);
    assert_eq!(org.stored_user("usr_123").await["install_count"], 1);
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_org() {
    let (a, b) = (TestOrg::new().await, TestOrg::new().await);
    let headers = [("idempotency-key", "shared-key")];
    a.call_with(Endpoint::Events, &headers, install_event().to_string())
        .await
        .assert_status(201);
    let mut other = install_event();
    other["event"] = json!("app_opened");
    let reply = b
        .call_with(Endpoint::Events, &headers, other.to_string())
        .await;
    reply.assert_status(201);
    assert!(reply.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn bad_idempotency_keys_are_rejected() {
    let org = TestOrg::new().await;
    let long = "k".repeat(256);
    for key in [long.as_str(), "   "] {
        let reply = org
            .call_with(
                Endpoint::Events,
                &[("idempotency-key", key)],
                install_event().to_string(),
            )
            .await;
        reply.assert_error(400, "invalid_idempotency_key");
    }
}

#[tokio::test]
async fn older_events_never_move_timestamps_back() {
    let org = TestOrg::new().await;
    let event = |name: &str, at: &str| json!({"event": name, "user": {"external_user_id": "u"}, "event_timestamp": at});
    org.call(
        Endpoint::Events,
        event("app_opened", "2026-03-24T10:00:00Z"),
    )
    .await
    .assert_status(201);
    org.call(
        Endpoint::Events,
        event("app_opened", "2026-03-23T10:00:00Z"),
    )
    .await
    .assert_status(201);
    let user = org.stored_user("u").await;
    assert_eq!(user["last_opened_at"], "2026-03-24T10:00:00.000Z");

    org.call(
        Endpoint::Events,
        event("app_uninstalled", "2026-03-25T10:00:00Z"),
    )
    .await
    .assert_status(201);
    assert_eq!(org.stored_user("u").await["is_installed"], false);
    org.call(
        Endpoint::Events,
        event("app_installed", "2026-03-26T10:00:00Z"),
    )
    .await
    .assert_status(201);
    let user = org.stored_user("u").await;
    assert_eq!(user["is_installed"], true);
    assert_eq!(user["install_count"], 1);
    assert_eq!(user["uninstalled_at"], "2026-03-25T10:00:00.000Z");
    // An uninstall from before the reinstall is stale: the user stays installed.
    org.call(
        Endpoint::Events,
        event("app_uninstalled", "2026-03-25T12:00:00Z"),
    )
    .await
    .assert_status(201);
    assert_eq!(org.stored_user("u").await["is_installed"], true);
}

#[tokio::test]
async fn subscription_and_purchase_events_update_billing_state() {
    let org = TestOrg::new().await;
    let user = json!({"external_user_id": "payer", "email": "payer@example.com"});
    org.call(Endpoint::Events, json!({
        "event": "subscription_started", "user": user, "event_timestamp": "2026-03-01T00:00:00Z",
        "properties": {"plan": "pro", "billing_interval": "month", "next_billing_at": "2026-04-01T00:00:00Z"}
    })).await.assert_status(201);
    org.call(Endpoint::Events, json!({
        "event": "subscription_renewed", "user": user, "event_timestamp": "2026-04-01T00:00:00Z",
        "properties": {"amount": "29.00", "currency": "USD"}
    })).await.assert_status(201);
    org.call(
        Endpoint::Events,
        json!({
            "event": "user_purchased", "user": user, "event_timestamp": "2026-04-02T00:00:00Z",
            "properties": {"amount": "10.50", "currency": "USD"}
        }),
    )
    .await
    .assert_status(201);
    let stored = org.stored_user("payer").await;
    assert_eq!(stored["subscription_status"], "active");
    assert_eq!(stored["plan"], "pro");
    assert_eq!(
        stored["subscription_started_at"],
        "2026-03-01T00:00:00.000Z"
    );
    assert_eq!(stored["next_billing_at"], "2026-04-01T00:00:00.000Z");
    assert_eq!(stored["last_payment_at"], "2026-04-02T00:00:00.000Z");
    assert_eq!(stored["last_payment_amount"], "10.50");
    assert_eq!(stored["lifetime_value"], "39.50");
    assert_eq!(stored["total_payments_count"], 2);

    org.call(Endpoint::Events, json!({"event": "subscription_cancelled", "user": user, "event_timestamp": "2026-04-03T00:00:00Z"}))
        .await
        .assert_status(201);
    assert_eq!(
        org.stored_user("payer").await["subscription_status"],
        "cancelled"
    );
}

#[tokio::test]
async fn event_errors_name_their_field() {
    let org = TestOrg::new().await;
    let reply = org
        .call(Endpoint::Events, json!({"user": {"external_user_id": "u"}}))
        .await;
    reply.assert_error(400, "missing_field");
    assert_eq!(reply.param(), "event");
    let reply = org.call(Endpoint::Events, json!({"event": "x"})).await;
    reply.assert_error(400, "missing_user_identity");
    let reply = org
        .call(
            Endpoint::Events,
            json!({"event": "x", "user": {"name": "n"}}),
        )
        .await;
    reply.assert_error(400, "missing_user_identity");
    assert_eq!(reply.param(), "user.external_user_id");
    let reply = org
        .call(
            Endpoint::Events,
            json!({"event": "x", "user": {"email": "a@b.c"}, "event_timestamp": "soon"}),
        )
        .await;
    reply.assert_error(400, "invalid_field");
    assert_eq!(reply.param(), "event_timestamp");
    let reply = org
        .call(
            Endpoint::Events,
            json!({"event": "x", "user": {"email": "a@b.c"}, "properties": [1]}),
        )
        .await;
    assert_eq!(reply.param(), "properties");
}
