use crate::common::*;
use serde_json::json;
use shared::Endpoint;

fn reference_user() -> serde_json::Value {
    json!({
        "external_user_id": "usr_123",
        "email": "user@example.com",
        "name": "John Doe",
        "created_at": "2026-03-23T10:30:00Z",
        "plan": "pro",
        "status": "active",
        "subscription_status": "active",
        "billing_model": "subscription",
        "billing_interval": "month",
        "installed_at": "2026-03-23T10:30:00Z",
        "install_platform": "ios",
        "install_source": "producthunt",
        "app_version": "1.4.2",
        "metadata": { "source": "producthunt", "company": "Acme Labs" }
    })
}

#[tokio::test]
async fn the_reference_example_creates_then_updates_one_record() {
    let org = TestOrg::new().await;
    let first = org.call(Endpoint::UsersUpsert, reference_user()).await;
    let body = first.assert_status(201);
    assert_eq!(body["created"], true);
    let user = &body["user"];
    assert_eq!(user["object"], "user");
    assert_eq!(user["external_user_id"], "usr_123");
    assert_eq!(user["installed_at"], "2026-03-23T10:30:00.000Z");
    assert_eq!(
        user["metadata"],
        json!({ "source": "producthunt", "company": "Acme Labs" })
    );
    assert!(
        user.get("PK").is_none() && user.get("org_id").is_none(),
        "no internals: {user}"
    );
    assert!(user["ingested_at"].is_string() && user["updated_at"].is_string());

    let second = org
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "usr_123", "plan": "team"}),
        )
        .await;
    let body = second.assert_status(200);
    assert_eq!(body["created"], false);
    assert_eq!(body["user"]["plan"], "team");
    assert_eq!(
        body["user"]["name"], "John Doe",
        "absent fields are left alone"
    );
    assert_eq!(body["user"]["ingested_at"], user["ingested_at"]);
}

#[tokio::test]
async fn every_documented_field_is_stored_with_its_type() {
    let org = TestOrg::new().await;
    let mut all = reference_user();
    let extra = json!({
        "subscription_started_at": "2026-03-01T00:00:00Z",
        "subscription_ends_at": "2026-04-01T00:00:00+02:00",
        "last_opened_at": "2026-03-24T08:00:00Z",
        "uninstalled_at": "2026-03-20T08:00:00Z",
        "install_count": 2,
        "is_installed": true,
        "next_billing_at": "2026-04-23T10:30:00Z",
        "last_payment_at": "2026-03-23T10:30:00Z",
        "last_payment_amount": "29.00",
        "last_payment_currency": "usd",
        "lifetime_value": "58.00",
        "total_payments_count": 2,
        "is_active_customer": true
    });
    all.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let reply = org.call(Endpoint::UsersUpsert, all).await;
    let user = &reply.assert_status(201)["user"];
    assert_eq!(user["subscription_ends_at"], "2026-03-31T22:00:00.000Z");
    assert_eq!(user["install_count"], 2);
    assert_eq!(user["is_installed"], true);
    assert_eq!(user["last_payment_amount"], "29.00");
    assert_eq!(user["last_payment_currency"], "USD");
    assert_eq!(user["lifetime_value"], "58.00");
    assert_eq!(user["total_payments_count"], 2);
}

#[tokio::test]
async fn email_identifies_a_user_without_an_external_id() {
    let org = TestOrg::new().await;
    org.create_user(json!({"email": "Jane@Example.com", "name": "Jane"}))
        .await;
    let reply = org
        .call(
            Endpoint::UsersUpsert,
            json!({"email": " jane@example.COM ", "plan": "pro"}),
        )
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["user"]["email"], "jane@example.com");
    assert_eq!(body["user"]["name"], "Jane");
}

#[tokio::test]
async fn a_user_without_identity_is_rejected() {
    let org = TestOrg::new().await;
    for body in [
        json!({"name": "x"}),
        json!({"external_user_id": "  ", "name": "x"}),
        json!({}),
    ] {
        let reply = org.call(Endpoint::UsersUpsert, body).await;
        reply.assert_error(400, "missing_user_identity");
        assert_eq!(reply.param(), "external_user_id");
    }
}

#[tokio::test]
async fn every_typed_field_rejects_a_wrong_type_with_its_name() {
    let org = TestOrg::new().await;
    let cases = [
        ("email", json!("not-an-email")),
        ("email", json!(5)),
        ("name", json!(["x"])),
        ("created_at", json!("2026-03-23")),
        ("installed_at", json!(1711189800)),
        ("install_count", json!(-1)),
        ("install_count", json!(1.5)),
        ("install_count", json!("3")),
        ("total_payments_count", json!(4294967296u64)),
        ("is_installed", json!("true")),
        ("is_active_customer", json!(1)),
        ("last_payment_amount", json!(29.0)),
        ("lifetime_value", json!("-5.00")),
        ("last_payment_currency", json!("dollars")),
        ("metadata", json!("not an object")),
        ("subscription_ends_at", json!("2026-02-30T00:00:00Z")),
    ];
    for (field, value) in cases {
        let reply = org
            .call(
                Endpoint::UsersUpsert,
                json!({"external_user_id": "u1", field: value}),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field, "{field} = {value}");
    }
}
