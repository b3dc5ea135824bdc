//! `DELETE users/{external_user_id}/`: erasing a client and what is attached to it.

use crate::common::*;
use futures::StreamExt;
use serde_json::json;
use shared::store::testing::keys;
use shared::Endpoint;

/// A client with one of everything attached, plus records of another client.
async fn client_with_history(org: &TestOrg, user: &str) {
    let writes = [
        (
            Endpoint::UsersUpsert,
            json!({"external_user_id": user, "name": "Ann"}),
        ),
        (
            Endpoint::SalesUpsert,
            json!({
                "sale_id": format!("{user}-sale"), "date": days_ago(2.0), "total": "5.00",
                "buyer": {"external_user_id": user}, "product": {"external_product_id": "p1"}
            }),
        ),
        (
            Endpoint::SalesUpsert,
            json!({
                "sale_id": format!("{user}-undated"), "buyer": {"external_user_id": user}
            }),
        ),
        (
            Endpoint::BookingsUpsert,
            json!({
                "booking_id": format!("{user}-booking"), "scheduled_at": days_ago(-1.0),
                "client": {"external_user_id": user}, "services": [{"external_product_id": "svc"}]
            }),
        ),
        (
            Endpoint::ConversationsUpsert,
            json!({
                "thread_id": format!("{user}-thread"), "contact": {"external_user_id": user},
                "channel": {"external_channel_id": "support"}
            }),
        ),
    ];
    for (endpoint, body) in writes {
        assert!(org.call(endpoint, body).await.status.is_success());
    }
    for (index, direction) in ["in", "out", "in"].iter().enumerate() {
        org.call(
            Endpoint::MessagesUpsert,
            json!({
                // Message ids are unique in an org (the same id in another thread moves it).
                "message_id": format!("{user}-m{index}"), "thread_id": format!("{user}-thread"),
                "direction": direction, "sent_at": days_ago(1.0 - index as f64 / 10.0),
                "contact": {"external_user_id": user}
            }),
        )
        .await
        .assert_status(201);
    }
    org.call_with(
        Endpoint::Events,
        &[("idempotency-key", &format!("{user}-signup"))],
        json!({"event": "app_opened", "user": {"external_user_id": user}}).to_string(),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn erasing_a_client_deletes_everything_attached_and_nothing_shared() {
    let org = TestOrg::new().await;
    client_with_history(&org, "gone").await;
    client_with_history(&org, "kept").await;
    let reply = org.read(Endpoint::UsersDelete, &["gone"], "").await;
    let body = reply.assert_status(200);
    assert_eq!(
        body["deleted"],
        json!({"user": 1, "events": 1, "sales": 2, "bookings": 1, "conversations": 1, "messages": 3})
    );
    assert_eq!(body["complete"], true);

    org.read(Endpoint::UsersGet, &["gone"], "")
        .await
        .assert_error(404, "user_not_found");
    org.read(Endpoint::ConversationsGet, &["gone-thread"], "")
        .await
        .assert_error(404, "thread_not_found");
    let inbox = org
        .read_all(Endpoint::Inbox, &[], "", "conversations")
        .await;
    assert_eq!(inbox.len(), 1, "only kept's thread: {inbox:?}");
    let bookings = org
        .read_all(
            Endpoint::BookingsList,
            &[],
            &format!("from={}&to={}", days_ago(1.0), days_ago(-2.0)),
            "bookings",
        )
        .await;
    assert_eq!(bookings.len(), 1);
    let users = org.read_all(Endpoint::UsersList, &[], "", "users").await;
    assert_eq!(users.len(), 1);
    // The other client is whole; shared catalog records stay.
    let body = org.read(Endpoint::UsersGet, &["kept"], "").await;
    let body = body.assert_status(200);
    assert_eq!(body["sales"].as_array().unwrap().len(), 2);
    assert_eq!(body["sales"][0]["product"]["external_product_id"], "p1");
    let store = org.store();
    for key in [
        keys::product(&org.org_id, &shared::endpoint::parse_id("svc").unwrap()),
        keys::channel(&org.org_id, &shared::endpoint::parse_id("support").unwrap()),
    ] {
        assert!(store.get(&key).await.unwrap().is_some(), "{key:?} kept");
    }
    // The event's key is remembered without its data: a retry of it stores nothing, a new
    // event (another key) starts a new client.
    let event = json!({"event": "app_opened", "user": {"external_user_id": "gone"}}).to_string();
    org.call_with(
        Endpoint::Events,
        &[("idempotency-key", "gone-signup")],
        event.clone(),
    )
    .await
    .assert_error(410, "client_erased");
    let reply = org
        .call_with(
            Endpoint::Events,
            &[("idempotency-key", "gone-again")],
            event,
        )
        .await;
    reply.assert_status(201);
    assert!(reply.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn erasing_is_idempotent_and_a_later_upsert_recreates_the_client() {
    let org = TestOrg::new().await;
    client_with_history(&org, "usr_1").await;
    org.read(Endpoint::UsersDelete, &["usr_1"], "")
        .await
        .assert_status(200);
    let reply = org.read(Endpoint::UsersDelete, &["usr_1"], "").await;
    let body = reply.assert_status(200);
    assert_eq!(
        body["deleted"],
        json!({"user": 0, "events": 0, "sales": 0, "bookings": 0, "conversations": 0, "messages": 0})
    );
    assert_eq!(body["complete"], true);
    let reply = org
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "usr_1", "plan": "pro"}),
        )
        .await;
    assert_eq!(reply.assert_status(201)["created"], true);
    let body = org.read(Endpoint::UsersGet, &["usr_1"], "").await;
    let body = body.assert_status(200);
    assert_eq!(body["user"]["plan"], "pro");
    assert!(
        body["user"].get("name").is_none(),
        "nothing of the erased record"
    );
    assert!(body["events"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn another_org_erases_nothing_of_this_one() {
    let (a, b) = (TestOrg::new().await, TestOrg::new().await);
    client_with_history(&a, "usr_1").await;
    let reply = b.read(Endpoint::UsersDelete, &["usr_1"], "").await;
    assert_eq!(reply.assert_status(200)["deleted"]["user"], 0);
    let body = a.read(Endpoint::UsersGet, &["usr_1"], "").await;
    let body = body.assert_status(200);
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert_eq!(body["conversations"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn erasing_needs_the_delete_method_and_a_key() {
    let org = TestOrg::new().await;
    let request = lambda_http::http::Request::builder()
        .method("DELETE")
        .uri(Endpoint::UsersDelete.path_with(&["usr_1"]))
        .body(lambda_http::Body::Empty)
        .unwrap();
    send(&org.app, Endpoint::UsersDelete, request)
        .await
        .assert_error(401, "missing_authorization");
    let request = lambda_http::http::Request::builder()
        .method("GET")
        .uri(Endpoint::UsersDelete.path_with(&["usr_1"]))
        .body(lambda_http::Body::Empty)
        .unwrap();
    let reply = send(&org.app, Endpoint::UsersDelete, request).await;
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.headers["allow"], "DELETE");
}

/// More attached records than one request may delete: the first answer says
/// `"complete": false` and keeps the user (so the repeat still finds the rest), the repeat
/// finishes. Nothing is counted twice.
#[tokio::test]
async fn an_erasure_larger_than_one_request_finishes_on_repeat() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    let events = shared::erase::MAX_DELETED_PER_REQUEST + 5;
    org.call(Endpoint::UsersUpsert, json!({"external_user_id": "usr_1"}))
        .await
        .assert_status(201);
    // Sent 32 at a time, so the setup takes seconds, not a minute.
    let replies: Vec<Reply> = futures::stream::iter(0..events)
        .map(|i| {
            org.call(
                Endpoint::Events,
                json!({
                    "event": "app_opened", "user": {"external_user_id": "usr_1"},
                    "event_timestamp": days_ago(1.0 + i as f64 / 10_000.0)
                }),
            )
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for reply in &replies {
        reply.assert_status(201);
    }

    let first = org.read(Endpoint::UsersDelete, &["usr_1"], "").await;
    let first = first.assert_status(200);
    assert_eq!(first["complete"], false);
    assert_eq!(first["deleted"]["user"], 0, "the user goes last");
    assert_eq!(
        first["deleted"]["events"],
        shared::erase::MAX_DELETED_PER_REQUEST
    );
    org.read(Endpoint::UsersGet, &["usr_1"], "")
        .await
        .assert_status(200);

    let second = org.read(Endpoint::UsersDelete, &["usr_1"], "").await;
    let second = second.assert_status(200);
    assert_eq!(second["complete"], true);
    assert_eq!(second["deleted"]["user"], 1);
    assert_eq!(second["deleted"]["events"], 5);
    org.read(Endpoint::UsersGet, &["usr_1"], "")
        .await
        .assert_error(404, "user_not_found");
}

#[tokio::test]
async fn erasing_a_client_deletes_its_messages_in_threads_now_someone_elses() {
    let org = TestOrg::new().await;
    // `gone` writes in, then the thread's contact becomes `stays` (a later message
    // names another contact): the thread is no longer listed under `gone`.
    for (id, contact, direction, days) in [
        ("m1", "gone", "in", 2.0),
        ("m2", "stays", "out", 1.5),
        ("m3", "gone", "in", 1.0),
    ] {
        org.call(
            Endpoint::MessagesUpsert,
            json!({"message_id": id, "thread_id": "shared", "direction": direction,
                   "text": "private", "sent_at": days_ago(days),
                   "contact": {"external_user_id": contact}}),
        )
        .await
        .assert_status(201);
    }
    org.call(
        Endpoint::MessagesUpsert,
        json!({"message_id": "m4", "thread_id": "shared", "direction": "out",
               "sent_at": days_ago(0.5), "contact": {"external_user_id": "stays"}}),
    )
    .await
    .assert_status(201);
    let reply = org.read(Endpoint::UsersDelete, &["gone"], "").await;
    let body = reply.assert_status(200);
    assert_eq!(body["complete"], true);
    assert_eq!(body["deleted"]["messages"], 2, "{body}");
    assert_eq!(body["deleted"]["conversations"], 0, "{body}");
    let body = org.read(Endpoint::ConversationsGet, &["shared"], "").await;
    let body = body.assert_status(200);
    let ids: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m2", "m4"]);
    assert_eq!(body["contact"]["external_user_id"], "stays");
    assert_eq!(body["summary"]["inbound_count"], 0);
    // The erased messages' ids are free again (their locators went with them).
    let locator = keys::message_locator(&org.org_id, &shared::endpoint::parse_id("m1").unwrap());
    assert_eq!(org.store().get(&locator).await, Ok(None));
}

#[tokio::test]
async fn erasing_a_client_recomputes_a_thread_whose_newest_message_was_its_own() {
    let org = TestOrg::new().await;
    for (id, contact, direction, days) in [("n1", "stays", "out", 2.0), ("n2", "gone", "in", 1.0)] {
        org.call(
            Endpoint::MessagesUpsert,
            json!({"message_id": id, "thread_id": "t", "direction": direction,
                   "sent_at": days_ago(days), "contact": {"external_user_id": contact}}),
        )
        .await
        .assert_status(201);
    }
    // The thread moves to `stays`: erasing `gone` leaves it, without `gone`'s message.
    org.call(
        Endpoint::ConversationsUpsert,
        json!({"thread_id": "t", "contact": {"external_user_id": "stays"}}),
    )
    .await
    .assert_status(200);
    let inbox = org
        .read_all(Endpoint::Inbox, &[], "", "conversations")
        .await;
    assert_eq!(inbox.len(), 1, "n2 is inbound and newest");
    org.read(Endpoint::UsersDelete, &["gone"], "")
        .await
        .assert_status(200);
    let body = org.read(Endpoint::ConversationsGet, &["t"], "").await;
    let body = body.assert_status(200);
    assert_eq!(body["conversation"]["last_message_id"], "n1", "{body}");
    assert_eq!(body["conversation"]["awaiting_reply"], false);
    let inbox = org
        .read_all(Endpoint::Inbox, &[], "", "conversations")
        .await;
    assert!(inbox.is_empty(), "{inbox:?}");
}

#[tokio::test]
async fn aliases_and_messages_from_before_the_erasure_listing_are_indexed_by_admin() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "old", "email": "old-first@x.com"}))
        .await;
    org.call(
        Endpoint::SalesUpsert,
        json!({"sale_id": "s", "buyer": {"external_user_id": "old", "email": "old-second@x.com"}}),
    )
    .await
    .assert_status(201);
    for (id, contact) in [("m1", "old"), ("m2", "other")] {
        org.call(
            Endpoint::MessagesUpsert,
            json!({"message_id": id, "thread_id": "t", "sent_at": days_ago(1.0),
                   "contact": {"external_user_id": contact}}),
        )
        .await
        .assert_status(201);
    }
    // As written before: the second alias and the message without their listing keys.
    let id = |raw: &str| shared::endpoint::parse_id(raw).unwrap();
    let alias = keys::email_alias(&org.org_id, &"old-second@x.com".parse().unwrap());
    let message = keys::message(&org.org_id, &id("t"), &id("m1"));
    for (key, index) in [(&alias, "GSI1"), (&message, "GSI2")] {
        org.store()
            .client()
            .update_item()
            .table_name(org.store().table())
            .set_key(Some(keys::key_attributes(key)))
            .update_expression(format!("REMOVE {index}PK, {index}SK"))
            .send()
            .await
            .unwrap();
    }
    let indexed = shared::admin::index_for_erasure(org.store()).await.unwrap();
    assert!(indexed.aliases >= 1 && indexed.messages >= 1, "{indexed:?}");
    // Idempotent: a second run finds nothing left to index.
    let again = shared::admin::index_for_erasure(org.store()).await.unwrap();
    assert_eq!((again.aliases, again.messages), (0, 0), "{again:?}");
    let listed = org.store().get(&alias).await.unwrap().unwrap();
    assert_eq!(listed["GSI1SK"].as_s().unwrap(), "EMAIL#old-second@x.com");
    let body = org.read(Endpoint::UsersDelete, &["old"], "").await;
    assert_eq!(body.assert_status(200)["deleted"]["messages"], 1);
    assert_eq!(org.store().get(&alias).await, Ok(None));
    assert_eq!(org.store().get(&message).await, Ok(None));
}
