//! The client record's rules, one scenario each, as a new user of the API would try them:
//! late, out-of-order and same-second events, money in several currencies, what counts as
//! a payment, profile snapshots next to events, and nested mentions that never overwrite.

use crate::common::*;
use serde_json::{json, Value};
use shared::Endpoint;

fn event(user: &str, name: &str, at: &str, properties: Value) -> Value {
    json!({
        "event": name, "user": {"external_user_id": user},
        "event_timestamp": at, "properties": properties,
    })
}

impl TestOrg {
    async fn send_events(&self, events: &[Value]) {
        for event in events {
            self.call(Endpoint::Events, event.clone())
                .await
                .assert_status(201);
        }
    }

    /// The client record as `GET users/{id}/` returns it.
    async fn client(&self, external_user_id: &str) -> Value {
        let reply = self.read(Endpoint::UsersGet, &[external_user_id], "").await;
        reply.assert_status(200)["user"].clone()
    }
}

#[tokio::test]
async fn late_and_same_second_purchases_all_count() {
    let org = TestOrg::new().await;
    let purchase = |amount: &str, at: &str| {
        event(
            "p",
            "user_purchased",
            at,
            json!({"amount": amount, "currency": "USD"}),
        )
    };
    org.send_events(&[
        purchase("20.00", "2026-03-01T12:00:00Z"),
        purchase("10.00", "2026-03-01T11:00:00Z"),
        purchase("5.00", "2026-03-01T12:00:00Z"),
    ])
    .await;
    let client = org.client("p").await;
    assert_eq!(client["total_payments_count"], 3);
    assert_eq!(client["lifetime_value"], "35.00");
    assert_eq!(client["revenue_by_currency"], json!({"USD": "35.00"}));
    assert_eq!(client["last_payment_at"], "2026-03-01T12:00:00.000Z");
    // Two payments share 12:00: the documented tie-break picks one of them, as a whole.
    let amount = client["last_payment_amount"].as_str().unwrap();
    assert!(amount == "20.00" || amount == "5.00", "{client}");
    assert_eq!(client["last_payment_currency"], "USD");
}

#[tokio::test]
async fn currencies_are_never_added_together() {
    let org = TestOrg::new().await;
    org.send_events(&[
        event(
            "c",
            "user_purchased",
            "2026-03-02T00:00:00Z",
            json!({"amount": "10.00", "currency": "USD"}),
        ),
        event(
            "c",
            "user_purchased",
            "2026-03-01T00:00:00Z",
            json!({"amount": "1000", "currency": "JPY"}),
        ),
        event(
            "c",
            "user_purchased",
            "2026-03-03T00:00:00Z",
            json!({"amount": "3.00"}),
        ),
    ])
    .await;
    let client = org.client("c").await;
    assert_eq!(
        client["revenue_by_currency"],
        json!({"USD": "10.00", "JPY": "1000.00", "XXX": "3.00"})
    );
    // The first payment (by event time) was in JPY: lifetime value is counted in JPY.
    assert_eq!(client["lifetime_value_currency"], "JPY");
    assert_eq!(client["lifetime_value"], "1000.00");
    assert_eq!(client["total_payments_count"], 3);
}

#[tokio::test]
async fn trials_and_cancellations_are_not_payments_and_end_the_customer_state() {
    let org = TestOrg::new().await;
    org.send_events(&[
        event(
            "s",
            "subscription_trial_started",
            "2026-03-01T00:00:00Z",
            json!({"amount": "0.00", "currency": "USD", "plan": "pro"}),
        ),
        event(
            "s",
            "subscription_started",
            "2026-03-08T00:00:00Z",
            json!({"amount": "9.99", "currency": "USD"}),
        ),
        event(
            "s",
            "subscription_cancelled",
            "2026-04-08T00:00:00Z",
            json!({"amount": "9.99", "currency": "USD"}),
        ),
    ])
    .await;
    let client = org.client("s").await;
    assert_eq!(client["total_payments_count"], 1);
    assert_eq!(client["lifetime_value"], "9.99");
    assert_eq!(client["subscription_status"], "cancelled");
    assert_eq!(client["plan"], "pro", "kept from the event that carried it");
    assert_eq!(client["is_active_customer"], false);
    assert_eq!(
        client["subscription_started_at"],
        "2026-03-08T00:00:00.000Z"
    );
    assert_eq!(
        client["subscription_updated_at"],
        "2026-04-08T00:00:00.000Z"
    );

    // A renewal without an amount is no payment, but makes the subscription active again.
    org.send_events(&[event(
        "s",
        "subscription_renewed",
        "2026-05-08T00:00:00Z",
        json!({}),
    )])
    .await;
    let client = org.client("s").await;
    assert_eq!(client["total_payments_count"], 1);
    assert_eq!(client["subscription_status"], "active");
    assert_eq!(client["is_active_customer"], true);
}

#[tokio::test]
async fn a_profile_snapshot_never_stops_an_event_from_counting() {
    let org = TestOrg::new().await;
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "snap", "installed_at": "2026-03-23T10:30:00Z", "install_count": 2,
               "total_payments_count": 4, "lifetime_value": "100.00"}),
    )
    .await
    .assert_status(201);
    org.send_events(&[
        event(
            "snap",
            "app_installed",
            "2026-03-23T10:30:00Z",
            json!({"install_platform": "ios"}),
        ),
        event(
            "snap",
            "user_purchased",
            "2026-03-24T00:00:00Z",
            json!({"amount": "5.00", "currency": "USD"}),
        ),
    ])
    .await;
    let client = org.client("snap").await;
    assert_eq!(client["install_count"], 3, "imported 2 + one event");
    assert_eq!(client["total_payments_count"], 5);
    assert_eq!(client["lifetime_value"], "105.00");
    assert_eq!(client["installed_at"], "2026-03-23T10:30:00.000Z");
    assert_eq!(client["install_platform"], "ios");
    assert_eq!(client["last_event_at"], "2026-03-24T00:00:00.000Z");
    assert_eq!(client["last_activity_at"], "2026-03-24T00:00:00.000Z");

    // A later snapshot with an older install time does not move the record back.
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "snap", "installed_at": "2026-01-01T00:00:00Z"}),
    )
    .await
    .assert_status(200);
    assert_eq!(
        org.client("snap").await["installed_at"],
        "2026-03-23T10:30:00.000Z"
    );
}

#[tokio::test]
async fn lifecycle_times_on_a_profile_may_not_be_in_the_future() {
    let org = TestOrg::new().await;
    for field in [
        "installed_at",
        "last_opened_at",
        "uninstalled_at",
        "last_payment_at",
        "subscription_started_at",
        "created_at",
    ] {
        let reply = org
            .call(
                Endpoint::UsersUpsert,
                json!({"external_user_id": "future", field: "2099-01-01T00:00:00Z"}),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field);
    }
}

#[tokio::test]
async fn a_backfilled_sale_fills_gaps_but_never_overwrites() {
    let org = TestOrg::new().await;
    org.create_user(
        json!({"external_user_id": "buyer", "email": "new@example.com", "name": "Jane Roe"}),
    )
    .await;
    org.call(
        Endpoint::ProductsUpsert,
        json!({"external_product_id": "prod", "title": "Pro", "price": "29.00", "currency": "USD"}),
    )
    .await
    .assert_status(201);
    org.call(
        Endpoint::SalesUpsert,
        json!({
            "sale_id": "old-sale", "date": "2024-05-01T00:00:00Z", "total": "19.00", "currency": "USD",
            "buyer": {"external_user_id": "buyer", "email": "old@example.com", "name": "J.", "phone": "+100"},
            "product": {"external_product_id": "prod", "price": "19.00", "sku": "PRO-1"}
        }),
    )
    .await
    .assert_status(201);
    let client = org.client("buyer").await;
    assert_eq!(client["email"], "new@example.com");
    assert_eq!(client["name"], "Jane Roe");
    assert_eq!(client["phone"], "+100", "a gap is filled");
    let reply = org.read(Endpoint::UsersGet, &["buyer"], "").await;
    let product = &reply.assert_status(200)["sales"][0]["product"];
    assert_eq!(product["price"], "29.00");
    assert_eq!(product["sku"], "PRO-1");

    // A mention also creates what does not exist yet, with everything it says.
    org.call(
        Endpoint::SalesUpsert,
        json!({"sale_id": "s2", "buyer": {"external_user_id": "fresh", "name": "F"},
               "product": {"external_product_id": "p2", "price": "1.00"}}),
    )
    .await
    .assert_status(201);
    assert_eq!(org.client("fresh").await["name"], "F");
}

#[tokio::test]
async fn an_event_user_mention_does_not_overwrite_the_profile() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "m", "name": "Real Name", "plan": "pro"}))
        .await;
    org.call(
        Endpoint::Events,
        json!({"event": "app_opened", "user": {"external_user_id": "m", "name": "stale", "email": "m@example.com"}}),
    )
    .await
    .assert_status(201);
    let client = org.client("m").await;
    assert_eq!(client["name"], "Real Name");
    assert_eq!(client["email"], "m@example.com");
}

#[tokio::test]
async fn twenty_concurrent_retries_and_sequential_ones_count_once() {
    let org = TestOrg::new().await;
    let purchase = event(
        "r",
        "user_purchased",
        "2026-03-01T00:00:00Z",
        json!({"amount": "7.00", "currency": "EUR"}),
    );
    let headers = [("idempotency-key", "purchase-r-1")];
    let calls = (0..20).map(|_| org.call_with(Endpoint::Events, &headers, purchase.to_string()));
    for reply in futures::future::join_all(calls).await {
        reply.assert_status(201);
    }
    for _ in 0..3 {
        org.call_with(Endpoint::Events, &headers, purchase.to_string())
            .await
            .assert_status(201);
    }
    let client = org.client("r").await;
    assert_eq!(client["total_payments_count"], 1);
    assert_eq!(client["revenue_by_currency"], json!({"EUR": "7.00"}));
}

// ------------------------------------------------------------------ threads and the inbox

fn message(id: &str, thread: &str, at: &str, direction: &str) -> Value {
    json!({"message_id": id, "thread_id": thread, "sent_at": at, "direction": direction,
           "contact": {"external_user_id": "inbox-contact"}})
}

impl TestOrg {
    async fn send_messages(&self, messages: &[Value]) {
        for message in messages {
            self.call(Endpoint::MessagesUpsert, message.clone())
                .await
                .assert_success();
        }
    }

    /// `GET conversations/{thread_id}/`.
    async fn thread(&self, thread_id: &str) -> Value {
        let reply = self
            .read(Endpoint::ConversationsGet, &[thread_id], "")
            .await;
        reply.assert_status(200).clone()
    }

    /// The inbox's threads: `(thread_id, awaiting_reply_since)`.
    async fn inbox(&self) -> Vec<(String, String)> {
        let threads = self
            .read_all(Endpoint::Inbox, &[], "", "conversations")
            .await;
        threads
            .iter()
            .map(|t| {
                let text = |name: &str| t[name].as_str().unwrap_or_default().to_owned();
                (text("thread_id"), text("awaiting_reply_since"))
            })
            .collect()
    }
}

#[tokio::test]
async fn an_inbound_message_at_the_stated_last_message_time_enters_the_inbox() {
    let org = TestOrg::new().await;
    org.call(
        Endpoint::ConversationsUpsert,
        json!({"thread_id": "t", "last_message_at": "2026-03-24T07:00:00Z"}),
    )
    .await
    .assert_status(201);
    org.send_messages(&[message("m1", "t", "2026-03-24T07:00:00Z", "in")])
        .await;
    assert_eq!(
        org.inbox().await,
        [("t".to_owned(), "2026-03-24T07:00:00.000Z".to_owned())]
    );
    // A conversation upsert's time moves `last_message_at` forward only, and never the inbox.
    org.call(
        Endpoint::ConversationsUpsert,
        json!({"thread_id": "t", "last_message_at": "2026-03-24T06:00:00Z"}),
    )
    .await
    .assert_status(200);
    let body = org.thread("t").await;
    assert_eq!(
        body["conversation"]["last_message_at"],
        "2026-03-24T07:00:00.000Z"
    );
    assert_eq!(body["summary"]["awaiting_reply"], true);
}

#[tokio::test]
async fn late_messages_never_reopen_or_misdate_a_thread() {
    let org = TestOrg::new().await;
    // Answered, then a late older inbound message: still answered.
    org.send_messages(&[
        message("a1", "answered", "2026-03-24T08:00:00Z", "in"),
        message("a2", "answered", "2026-03-24T09:00:00Z", "out"),
        message("a0", "answered", "2026-03-24T07:00:00Z", "in"),
    ])
    .await;
    // Two questions, then the late reply to the first: waiting since the second.
    org.send_messages(&[
        message("w1", "waiting", "2026-03-24T08:00:00Z", "in"),
        message("w3", "waiting", "2026-03-24T10:00:00Z", "in"),
        message("w2", "waiting", "2026-03-24T09:00:00Z", "out"),
    ])
    .await;
    // Newest first, then older questions arriving late: waiting since the earliest one.
    org.send_messages(&[
        message("e3", "early", "2026-03-24T10:00:00Z", "in"),
        message("e1", "early", "2026-03-24T06:00:00Z", "in"),
    ])
    .await;
    assert_eq!(
        org.inbox().await,
        [
            ("early".to_owned(), "2026-03-24T06:00:00.000Z".to_owned()),
            ("waiting".to_owned(), "2026-03-24T10:00:00.000Z".to_owned()),
        ]
    );
    let body = org.thread("answered").await;
    assert_eq!(body["conversation"]["last_message_id"], "a2");
    assert_eq!(body["summary"]["awaiting_reply"], false);
}

#[tokio::test]
async fn a_message_resent_with_another_thread_moves() {
    let org = TestOrg::new().await;
    org.send_messages(&[
        message("q", "first", "2026-03-24T08:00:00Z", "in"),
        message("r", "first", "2026-03-24T09:00:00Z", "out"),
    ])
    .await;
    // The reply belonged to another thread: re-sent there, it leaves the first.
    org.send_messages(&[message("r", "second", "2026-03-24T09:00:00Z", "out")])
        .await;
    let first = org.thread("first").await;
    assert_eq!(first["summary"]["message_count"], 1);
    assert_eq!(first["summary"]["awaiting_reply"], true);
    assert_eq!(first["messages"].as_array().unwrap().len(), 1);
    let second = org.thread("second").await;
    assert_eq!(second["summary"]["message_count"], 1);
    assert_eq!(second["messages"][0]["message_id"], "r");
    assert_eq!(
        org.inbox().await,
        [("first".to_owned(), "2026-03-24T08:00:00.000Z".to_owned())]
    );
}

#[tokio::test]
async fn a_rescheduled_booking_and_a_redated_sale_move_in_their_clients_lists() {
    let org = TestOrg::new().await;
    let client = json!({"external_user_id": "moves"});
    for (id, at) in [
        ("b1", "2026-05-01T10:00:00Z"),
        ("b2", "2026-05-02T10:00:00Z"),
    ] {
        org.call(
            Endpoint::BookingsUpsert,
            json!({"booking_id": id, "scheduled_at": at, "client": client}),
        )
        .await
        .assert_status(201);
    }
    for (id, at) in [
        ("s1", "2026-01-01T00:00:00Z"),
        ("s2", "2026-01-02T00:00:00Z"),
    ] {
        org.call(
            Endpoint::SalesUpsert,
            json!({"sale_id": id, "date": at, "buyer": client}),
        )
        .await
        .assert_status(201);
    }
    // Without their client: the new times still order the client's lists.
    org.call(
        Endpoint::BookingsUpsert,
        json!({"booking_id": "b1", "scheduled_at": "2026-05-03T10:00:00Z"}),
    )
    .await
    .assert_status(200);
    org.call(
        Endpoint::SalesUpsert,
        json!({"sale_id": "s1", "date": "2026-01-03T00:00:00Z"}),
    )
    .await
    .assert_status(200);
    let reply = org.read(Endpoint::UsersGet, &["moves"], "").await;
    let body = reply.assert_status(200);
    let ids = |list: &str, id: &str| -> Vec<String> {
        body[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[id].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("bookings", "booking_id"), ["b1", "b2"], "newest first");
    assert_eq!(ids("sales", "sale_id"), ["s1", "s2"]);
}

#[tokio::test]
async fn the_segment_filters_on_the_merged_record() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "seg", "plan": "basic", "is_installed": false}))
        .await;
    org.send_events(&[
        event(
            "seg",
            "subscription_started",
            "2026-03-01T00:00:00Z",
            json!({"plan": "pro"}),
        ),
        event("seg", "app_installed", "2026-03-01T00:00:00Z", json!({})),
    ])
    .await;
    assert_eq!(org.segment("plan=pro").await, ["seg"], "the event's plan");
    assert!(
        org.segment("plan=basic").await.is_empty(),
        "not the profile's"
    );
    assert_eq!(org.segment("is_installed=true").await, ["seg"]);
    assert!(org.segment("is_installed=false").await.is_empty());
}

impl TestOrg {
    /// The `external_user_id`s of `GET users/?<query>`, every page.
    async fn segment(&self, query: &str) -> Vec<String> {
        let users = self
            .read_all(Endpoint::UsersList, &[], query, "users")
            .await;
        users
            .iter()
            .map(|user| user["external_user_id"].as_str().unwrap().to_owned())
            .collect()
    }
}
