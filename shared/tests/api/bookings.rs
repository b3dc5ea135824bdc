use crate::common::*;
use serde_json::json;
use shared::Endpoint;

#[tokio::test]
async fn a_booking_attaches_its_client_and_services() {
    let org = TestOrg::new().await;
    let booking = json!({
        "booking_id": "booking_1001",
        "title": "Roman onboarding call",
        "booking_type": "video_call",
        "status": "confirmed",
        "scheduled_at": "2026-03-25T10:30:00Z",
        "duration_minutes": 45,
        "location": "Google Meet",
        "notes": "Booked from inside the mobile app.",
        "client": { "external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe" },
        "service_external_ids": ["svc_onboarding"]
    });
    let body = org
        .call(Endpoint::BookingsUpsert, booking)
        .await
        .assert_status(201)
        .clone();
    assert_eq!(body["booking"]["scheduled_at"], "2026-03-25T10:30:00.000Z");
    assert_eq!(body["booking"]["duration_minutes"], 45);
    assert_eq!(
        body["booking"]["service_external_ids"],
        json!(["svc_onboarding"])
    );
    assert_eq!(
        body["booking"]["client"],
        json!({"external_user_id": "usr_123"})
    );
    assert_eq!(body["client"]["name"], "John Doe");

    let with_services = json!({
        "booking_id": "booking_1001", "scheduled_at": "2026-03-26T10:30:00Z", "status": "rescheduled",
        "services": [{"external_product_id": "svc_review", "title": "Review", "approx_duration_minutes": 30, "price": "50.00", "currency": "USD"}]
    });
    let body = org
        .call(Endpoint::BookingsUpsert, with_services)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        body["booking"]["service_external_ids"],
        json!(["svc_review"])
    );
    assert_eq!(body["booking"]["title"], "Roman onboarding call");
    assert_eq!(body["services"][0]["type"], "service");
    assert_eq!(body["services"][0]["approx_duration_minutes"], 30);
    // The service is a product of type service in the catalog.
    let product = org
        .call(
            Endpoint::ProductsUpsert,
            json!({"external_product_id": "svc_review"}),
        )
        .await;
    assert_eq!(product.assert_status(200)["product"]["type"], "service");
}

#[tokio::test]
async fn booking_errors() {
    let org = TestOrg::new().await;
    org.call(
        Endpoint::BookingsUpsert,
        json!({"scheduled_at": "2026-03-25T10:30:00Z"}),
    )
    .await
    .assert_error(400, "missing_booking_identity");
    org.call(Endpoint::BookingsUpsert, json!({"booking_id": "b"}))
        .await
        .assert_error(400, "missing_booking_scheduled_at");
    let reply = org
        .call(Endpoint::BookingsUpsert, json!({"booking_id": "b", "scheduled_at": "2026-03-25T10:30:00Z", "client": {"name": "x"}}))
        .await;
    reply.assert_error(400, "missing_user_identity");
    assert_eq!(reply.param(), "client.external_user_id");
    let reply = org
        .call(Endpoint::BookingsUpsert, json!({"booking_id": "b", "scheduled_at": "2026-03-25T10:30:00Z", "services": [{"title": "x"}]}))
        .await;
    reply.assert_error(400, "missing_product_identity");
    assert_eq!(reply.param(), "services[0].external_product_id");
    let many: Vec<String> = (0..51).map(|i| format!("svc_{i}")).collect();
    let reply = org
        .call(Endpoint::BookingsUpsert, json!({"booking_id": "b", "scheduled_at": "2026-03-25T10:30:00Z", "service_external_ids": many}))
        .await;
    reply.assert_error(400, "invalid_field");
    for (field, value) in [
        ("scheduled_at", json!("tomorrow")),
        ("duration_minutes", json!("45")),
        ("service_external_ids", json!("svc")),
    ] {
        let reply = org
            .call(
                Endpoint::BookingsUpsert,
                json!({"booking_id": "b", "scheduled_at": "2026-03-25T10:30:00Z", field: value}),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field);
    }
}
