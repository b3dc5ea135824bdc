//! `GET bookings/?from=&to=`: bookings of a time window with their client and services.

use crate::common::*;
use serde_json::{json, Value};
use shared::Endpoint;

async fn booking(org: &TestOrg, id: &str, scheduled_at: &str) {
    let reply = org
        .call(
            Endpoint::BookingsUpsert,
            json!({
                "booking_id": id, "scheduled_at": scheduled_at, "title": id,
                "client": {"external_user_id": "usr_1", "name": "Ann"},
                "services": [{"external_product_id": "svc_a", "title": "Onboarding"}],
                "service_external_ids": ["svc_b", "svc_missing"]
            }),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
}

fn window(from: &str, to: &str) -> String {
    // `+` in an offset must be escaped in a query string; these are UTC (`Z`).
    format!("from={from}&to={to}")
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["booking_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn bookings_of_a_window_come_earliest_first_with_client_and_services() {
    let org = TestOrg::new().await;
    org.call(
        Endpoint::ProductsUpsert,
        json!({"external_product_id": "svc_b", "title": "Follow-up", "type": "service"}),
    )
    .await
    .assert_status(201);
    let (from, to) = (days_ago(-1.0), days_ago(-3.0));
    booking(&org, "before", &days_ago(0.0)).await;
    booking(&org, "late", &days_ago(-2.5)).await;
    booking(&org, "early", &days_ago(-1.5)).await;
    booking(&org, "at_from", &from).await;
    booking(&org, "at_to", &to).await;
    let bookings = org
        .read_all(Endpoint::BookingsList, &[], &window(&from, &to), "bookings")
        .await;
    assert_eq!(ids(&bookings), ["at_from", "early", "late"], "[from, to)");
    assert_eq!(bookings[0]["client"]["name"], "Ann");
    let services: Vec<&str> = bookings[0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["Follow-up", "Onboarding"],
        "in id order, missing ones left out"
    );
    assert_eq!(
        bookings[0]["service_external_ids"],
        json!(["svc_b", "svc_missing", "svc_a"])
    );

    // Rescheduling moves a booking out of the window.
    booking(&org, "early", &days_ago(-5.0)).await;
    let bookings = org
        .read_all(Endpoint::BookingsList, &[], &window(&from, &to), "bookings")
        .await;
    assert_eq!(ids(&bookings), ["at_from", "late"]);
}

#[tokio::test]
async fn booking_pages_end_exactly() {
    let org = TestOrg::new().await;
    for (index, id) in ["b1", "b2", "b3"].iter().enumerate() {
        booking(&org, id, &days_ago(-(index as f64) - 1.0)).await;
    }
    let query = window(&days_ago(0.0), &days_ago(-10.0));
    let reply = org
        .read(Endpoint::BookingsList, &[], &format!("{query}&limit=3"))
        .await;
    assert!(reply.assert_status(200)["next_cursor"].is_null());
    let reply = org
        .read(Endpoint::BookingsList, &[], &format!("{query}&limit=2"))
        .await;
    let body = reply.assert_status(200).clone();
    assert_eq!(ids(body["bookings"].as_array().unwrap()), ["b1", "b2"]);
    let cursor = body["next_cursor"].as_str().unwrap();
    let reply = org
        .read(
            Endpoint::BookingsList,
            &[],
            &format!("{query}&limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(
        ids(reply.assert_status(200)["bookings"].as_array().unwrap()),
        ["b3"]
    );
    // The cursor is bound to the window.
    let other_window = window(&days_ago(0.0), &days_ago(-9.0));
    org.read(
        Endpoint::BookingsList,
        &[],
        &format!("{other_window}&cursor={cursor}"),
    )
    .await
    .assert_error(400, "invalid_cursor");
}

#[tokio::test]
async fn windows_are_checked() {
    let org = TestOrg::new().await;
    let now = days_ago(0.0);
    let reply = org
        .read(Endpoint::BookingsList, &[], &format!("from={now}"))
        .await;
    reply.assert_error(400, "missing_field");
    assert_eq!(reply.param(), "to");
    let reply = org
        .read(Endpoint::BookingsList, &[], &format!("to={now}"))
        .await;
    assert_eq!(reply.param(), "from");
    let reply = org
        .read(Endpoint::BookingsList, &[], &window("2026-03-25", &now))
        .await;
    reply.assert_error(400, "invalid_field");
    assert_eq!(reply.param(), "from");
    let reply = org
        .read(Endpoint::BookingsList, &[], &window(&now, &now))
        .await;
    reply.assert_error(400, "invalid_field");
    assert_eq!(reply.param(), "to");
    // An offset is accepted when escaped.
    let reply = org
        .read(
            Endpoint::BookingsList,
            &[],
            "from=2026-03-25T10:00:00%2B02:00&to=2026-03-26T00:00:00Z",
        )
        .await;
    reply.assert_status(200);
}
