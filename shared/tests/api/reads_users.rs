//! `GET users/{external_user_id}/` (a client with its context) and `GET users/` (the
//! activity segment).

use crate::common::*;
use serde_json::{json, Value};
use shared::Endpoint;

async fn event(org: &TestOrg, user: &str, name: &str, at: &str) {
    org.call(
        Endpoint::Events,
        json!({"event": name, "user": {"external_user_id": user}, "event_timestamp": at}),
    )
    .await
    .assert_status(201);
}

fn ids(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_client_comes_back_with_its_context_newest_first() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "usr_1", "name": "Ann", "plan": "pro"}))
        .await;
    for (index, name) in ["app_installed", "app_opened", "level_completed"]
        .iter()
        .enumerate()
    {
        event(&org, "usr_1", name, &days_ago(3.0 - index as f64)).await;
    }
    for (sale, days) in [("s_old", 5.0), ("s_new", 1.0)] {
        org.call(
            Endpoint::SalesUpsert,
            json!({
                "sale_id": sale, "date": days_ago(days), "total": "29.00",
                "buyer": {"external_user_id": "usr_1"},
                "product": {"external_product_id": "p1", "title": "Pro"}
            }),
        )
        .await
        .assert_status(201);
    }
    org.call(Endpoint::BookingsUpsert, json!({
        "booking_id": "b1", "scheduled_at": days_ago(-2.0), "client": {"external_user_id": "usr_1"}
    }))
    .await
    .assert_status(201);
    for (thread, message, days, direction) in [
        ("t_old", "m1", 4.0, "in"),
        ("t_new", "m2", 2.0, "in"),
        ("t_new", "m3", 1.0, "out"),
    ] {
        org.call(
            Endpoint::MessagesUpsert,
            json!({
                "message_id": message, "thread_id": thread, "direction": direction, "text": message,
                "sent_at": days_ago(days), "contact": {"external_user_id": "usr_1"}
            }),
        )
        .await
        .assert_status(201);
    }

    let reply = org.read(Endpoint::UsersGet, &["usr_1"], "").await;
    let body = reply.assert_status(200);
    assert_eq!(body["user"]["name"], "Ann");
    assert_eq!(body["user"]["object"], "user");
    assert!(body["user"].get("GSI2SK").is_none(), "keys stay internal");
    assert_eq!(
        body["user"]["last_activity_at"],
        body["events"][0]["event_timestamp"]
    );
    assert_eq!(
        ids(body["events"].as_array().unwrap(), "event"),
        ["level_completed", "app_opened", "app_installed"]
    );
    let sales = body["sales"].as_array().unwrap();
    assert_eq!(ids(sales, "sale_id"), ["s_new", "s_old"]);
    assert_eq!(sales[0]["product"]["title"], "Pro");
    assert_eq!(body["bookings"][0]["booking_id"], "b1");
    let threads = body["conversations"].as_array().unwrap();
    assert_eq!(ids(threads, "thread_id"), ["t_new", "t_old"]);
    assert_eq!(threads[0]["last_message"]["message_id"], "m3");
    assert_eq!(threads[0]["awaiting_reply"], false);
    assert_eq!(threads[1]["last_message"]["text"], "m1");
    assert_eq!(threads[1]["awaiting_reply"], true);
    assert_eq!(
        body["has_more"],
        json!({"events": false, "sales": false, "bookings": false, "conversations": false})
    );
}

#[tokio::test]
async fn context_lists_are_bounded() {
    let org = TestOrg::new().await;
    let limit = shared::reads::USER_CONTEXT_ITEMS;
    let times: Vec<String> = (0..=limit).map(|i| days_ago(i as f64 / 100.0)).collect();
    let writes = times.iter().map(|at| event(&org, "busy", "app_opened", at));
    futures::future::join_all(writes).await;
    let reply = org.read(Endpoint::UsersGet, &["busy"], "").await;
    let body = reply.assert_status(200);
    assert_eq!(body["events"].as_array().unwrap().len(), limit);
    assert_eq!(body["has_more"]["events"], true);
}

#[tokio::test]
async fn unknown_and_foreign_users_are_user_not_found() {
    let (a, b) = (TestOrg::new().await, TestOrg::new().await);
    a.call(Endpoint::UsersUpsert, json!({"external_user_id": "usr_1"}))
        .await
        .assert_status(201);
    let reply = a.read(Endpoint::UsersGet, &["usr_2"], "").await;
    reply.assert_error(404, "user_not_found");
    assert_eq!(reply.param(), "external_user_id");
    b.read(Endpoint::UsersGet, &["usr_1"], "")
        .await
        .assert_error(404, "user_not_found");
    // Email-only users are separate records, not addressed by this path.
    a.call(Endpoint::UsersUpsert, json!({"email": "x@y.io"}))
        .await
        .assert_status(201);
    a.read(Endpoint::UsersGet, &["x@y.io"], "")
        .await
        .assert_error(404, "user_not_found");
}

#[tokio::test]
async fn ids_in_the_path_are_decoded_and_checked() {
    let org = TestOrg::new().await;
    let id = "usr 1/ü";
    org.call(Endpoint::UsersUpsert, json!({"external_user_id": id}))
        .await
        .assert_status(201);
    let body = org.read(Endpoint::UsersGet, &[id], "").await;
    assert_eq!(body.assert_status(200)["user"]["external_user_id"], id);
    let reply = org.read(Endpoint::UsersGet, &[&"x".repeat(257)], "").await;
    reply.assert_error(400, "invalid_field");
    assert_eq!(reply.param(), "external_user_id");
}

/// Users of `org` in the segment for `query`, all pages.
async fn segment(org: &TestOrg, query: &str) -> Vec<String> {
    let users = org.read_all(Endpoint::UsersList, &[], query, "users").await;
    ids(&users, "external_user_id")
}

#[tokio::test]
async fn the_segment_lists_inactive_users_oldest_first_and_follows_events() {
    let org = TestOrg::new().await;
    for (user, days) in [("u40", 40.0), ("u60", 60.0), ("u31", 31.0), ("u5", 5.0)] {
        event(&org, user, "app_opened", &days_ago(days)).await;
    }
    // Never sent an event: first seen now, so active.
    org.call(Endpoint::UsersUpsert, json!({"external_user_id": "fresh"}))
        .await
        .assert_status(201);
    assert_eq!(
        segment(&org, "inactive_days=30").await,
        ["u60", "u40", "u31"]
    );
    assert_eq!(
        segment(&org, "").await,
        ["u60", "u40", "u31", "u5", "fresh"]
    );

    // Any newer event makes a user active again; an older one changes nothing.
    event(&org, "u40", "level_completed", &days_ago(1.0)).await;
    event(&org, "u60", "app_opened", &days_ago(90.0)).await;
    assert_eq!(segment(&org, "inactive_days=30").await, ["u60", "u31"]);
    let body = org.read(Endpoint::UsersGet, &["u60"], "").await;
    let user = &body.assert_status(200)["user"];
    assert_eq!(user["last_activity_at"], user["last_event_at"]);
    assert!(user["last_activity_at"].as_str().unwrap() > days_ago(61.0).as_str());
    // A plain upsert is not activity.
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "u31", "name": "x"}),
    )
    .await
    .assert_status(200);
    assert_eq!(segment(&org, "inactive_days=30").await, ["u60", "u31"]);
}

#[tokio::test]
async fn the_segment_filters_on_lifecycle_fields() {
    let org = TestOrg::new().await;
    for (user, plan, source) in [
        ("a", "pro", "ads"),
        ("b", "free", "ads"),
        ("c", "pro", "seo"),
    ] {
        org.call(
            Endpoint::UsersUpsert,
            json!({
                "external_user_id": user, "plan": plan, "install_source": source
            }),
        )
        .await
        .assert_status(201);
        event(&org, user, "app_installed", &days_ago(50.0)).await;
    }
    event(&org, "c", "app_uninstalled", &days_ago(45.0)).await;
    assert_eq!(segment(&org, "plan=pro").await, ["a", "c"]);
    assert_eq!(segment(&org, "plan=pro&install_source=ads").await, ["a"]);
    assert_eq!(
        segment(&org, "inactive_days=40&is_installed=false").await,
        ["c"]
    );
    assert!(segment(&org, "plan=enterprise").await.is_empty());
    // One filtered page may be short; following next_cursor finds the rest.
    assert_eq!(segment(&org, "plan=pro&limit=1").await, ["a", "c"]);
}

#[tokio::test]
async fn segment_pages_end_exactly_and_cursors_round_trip() {
    let org = TestOrg::new().await;
    for (index, user) in ["p1", "p2", "p3", "p4"].iter().enumerate() {
        event(&org, user, "app_opened", &days_ago(10.0 - index as f64)).await;
    }
    // Exactly `limit` items: no next page.
    let reply = org.read(Endpoint::UsersList, &[], "limit=4").await;
    let body = reply.assert_status(200);
    assert_eq!(body["users"].as_array().unwrap().len(), 4);
    assert!(body["next_cursor"].is_null());
    // limit + 1 items: a cursor, then the last one, then the end.
    let reply = org.read(Endpoint::UsersList, &[], "limit=3").await;
    let body = reply.assert_status(200).clone();
    assert_eq!(
        ids(body["users"].as_array().unwrap(), "external_user_id"),
        ["p1", "p2", "p3"]
    );
    let cursor = body["next_cursor"].as_str().unwrap();
    let reply = org
        .read(
            Endpoint::UsersList,
            &[],
            &format!("limit=3&cursor={cursor}"),
        )
        .await;
    let body = reply.assert_status(200);
    assert_eq!(
        ids(body["users"].as_array().unwrap(), "external_user_id"),
        ["p4"]
    );
    assert!(body["next_cursor"].is_null());
    // The page size may change between pages; the filter may not.
    let reply = org
        .read(
            Endpoint::UsersList,
            &[],
            &format!("limit=1&cursor={cursor}"),
        )
        .await;
    assert_eq!(
        reply.assert_status(200)["users"][0]["external_user_id"],
        "p4"
    );
    org.read(
        Endpoint::UsersList,
        &[],
        &format!("plan=pro&cursor={cursor}"),
    )
    .await
    .assert_error(400, "invalid_cursor");
    // Another org cannot replay it, even with the same query.
    let other = TestOrg::new().await;
    other
        .read(
            Endpoint::UsersList,
            &[],
            &format!("limit=3&cursor={cursor}"),
        )
        .await
        .assert_error(400, "invalid_cursor");
    for bad in ["garbage", "e30", &cursor[..cursor.len() - 2]] {
        let reply = org
            .read(Endpoint::UsersList, &[], &format!("cursor={bad}"))
            .await;
        reply.assert_error(400, "invalid_cursor");
        assert_eq!(reply.param(), "cursor");
    }
}

#[tokio::test]
async fn segment_parameters_are_typed() {
    let org = TestOrg::new().await;
    for (query, param) in [
        ("inactive_days=0", "inactive_days"),
        ("inactive_days=-3", "inactive_days"),
        ("inactive_days=ten", "inactive_days"),
        ("is_installed=yes", "is_installed"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("plna=pro", "plna"),
        ("plan=a&plan=b", "plan"),
    ] {
        let reply = org.read(Endpoint::UsersList, &[], query).await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), param, "{query}");
    }
}
