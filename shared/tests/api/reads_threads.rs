//! `GET conversations/{thread_id}/` and `GET inbox/`.

use crate::common::*;
use serde_json::{json, Value};
use shared::Endpoint;

async fn message(org: &TestOrg, thread: &str, id: &str, direction: &str, days: f64) -> Value {
    org.call(
        Endpoint::MessagesUpsert,
        json!({
            "message_id": id, "thread_id": thread, "direction": direction, "text": id,
            "sent_at": days_ago(days),
            "contact": {"external_user_id": format!("contact-{thread}"), "name": "Ann"},
            "channel": {"external_channel_id": "support", "display_name": "Support"}
        }),
    )
    .await
    .assert_status(201)
    .clone()
}

fn ids(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

async fn inbox(org: &TestOrg, query: &str) -> Vec<String> {
    let threads = org
        .read_all(Endpoint::Inbox, &[], query, "conversations")
        .await;
    ids(&threads, "thread_id")
}

#[tokio::test]
async fn a_thread_comes_back_with_its_messages_in_sent_at_order_and_a_summary() {
    let org = TestOrg::new().await;
    // Upserted out of order, one of them twice: order and counts do not depend on it.
    for (id, direction, days) in [
        ("m3", "in", 1.0),
        ("m1", "in", 3.0),
        ("m2", "out", 2.0),
        ("m3", "in", 1.0),
    ] {
        org.call(
            Endpoint::MessagesUpsert,
            json!({
                "message_id": id, "thread_id": "t1", "direction": direction, "text": id,
                "sent_at": days_ago(days), "contact": {"external_user_id": "usr_1", "name": "Ann"},
                "channel": {"external_channel_id": "support", "display_name": "Support"}
            }),
        )
        .await;
    }
    let reply = org.read(Endpoint::ConversationsGet, &["t1"], "").await;
    let body = reply.assert_status(200).clone();
    assert_eq!(
        ids(body["messages"].as_array().unwrap(), "message_id"),
        ["m1", "m2", "m3"]
    );
    assert_eq!(body["conversation"]["thread_id"], "t1");
    assert_eq!(body["conversation"]["awaiting_reply"], true);
    assert_eq!(body["contact"]["name"], "Ann");
    assert_eq!(body["channel"]["display_name"], "Support");
    let summary = &body["summary"];
    assert_eq!(summary["message_count"], 3);
    assert_eq!(summary["inbound_count"], 2);
    assert_eq!(summary["outbound_count"], 1);
    assert_eq!(summary["last_inbound_at"], body["messages"][2]["sent_at"]);
    assert_eq!(summary["last_outbound_at"], body["messages"][1]["sent_at"]);
    assert_eq!(summary["awaiting_reply"], true);
    assert_eq!(summary["complete"], true);
    assert!(body["next_cursor"].is_null());

    // Paginated: limit 2, then the rest; the cursor belongs to this thread only.
    let reply = org
        .read(Endpoint::ConversationsGet, &["t1"], "limit=2")
        .await;
    let body = reply.assert_status(200).clone();
    assert_eq!(
        ids(body["messages"].as_array().unwrap(), "message_id"),
        ["m1", "m2"]
    );
    let cursor = body["next_cursor"].as_str().unwrap();
    let reply = org
        .read(
            Endpoint::ConversationsGet,
            &["t1"],
            &format!("limit=2&cursor={cursor}"),
        )
        .await;
    let body = reply.assert_status(200);
    assert_eq!(
        ids(body["messages"].as_array().unwrap(), "message_id"),
        ["m3"]
    );
    assert!(body["next_cursor"].is_null());
    message(&org, "t2", "x1", "in", 1.0).await;
    org.read(
        Endpoint::ConversationsGet,
        &["t2"],
        &format!("cursor={cursor}"),
    )
    .await
    .assert_error(400, "invalid_cursor");
}

#[tokio::test]
async fn unknown_and_foreign_threads_are_thread_not_found() {
    let (a, b) = (TestOrg::new().await, TestOrg::new().await);
    message(&a, "t1", "m1", "in", 1.0).await;
    let reply = a.read(Endpoint::ConversationsGet, &["t2"], "").await;
    reply.assert_error(404, "thread_not_found");
    assert_eq!(reply.param(), "thread_id");
    b.read(Endpoint::ConversationsGet, &["t1"], "")
        .await
        .assert_error(404, "thread_not_found");
    b.read(Endpoint::ConversationsGet, &["t1"], "status=x")
        .await
        .assert_error(400, "invalid_field");
}

#[tokio::test]
async fn the_inbox_lists_threads_awaiting_a_reply_longest_waiting_first() {
    let org = TestOrg::new().await;
    message(&org, "late", "l1", "in", 1.0).await;
    let e1 = message(&org, "early", "e1", "in", 3.0).await;
    message(&org, "answered", "a1", "in", 4.0).await;
    message(&org, "answered", "a2", "out", 3.5).await;
    // A second inbound message keeps the time the thread started waiting.
    message(&org, "early", "e2", "in", 0.5).await;
    assert_eq!(
        inbox(&org, "status=awaiting_reply").await,
        ["early", "late"]
    );
    assert_eq!(
        inbox(&org, "").await,
        ["early", "late"],
        "awaiting_reply is the default"
    );

    let reply = org.read(Endpoint::Inbox, &[], "").await;
    let first = &reply.assert_status(200)["conversations"][0];
    assert_eq!(first["thread_id"], "early");
    assert_eq!(first["awaiting_reply"], true);
    assert_eq!(first["awaiting_reply_since"], e1["message"]["sent_at"]);
    assert_eq!(
        first["contact"]["name"], "Ann",
        "the contact record, not a reference"
    );

    // A reply takes the thread out; an older inbound message does not put it back.
    message(&org, "early", "e3", "out", 0.25).await;
    assert_eq!(inbox(&org, "").await, ["late"]);
    org.call(
        Endpoint::MessagesUpsert,
        json!({
            "message_id": "e0", "thread_id": "early", "direction": "in", "sent_at": days_ago(5.0)
        }),
    )
    .await
    .assert_status(201);
    assert_eq!(inbox(&org, "").await, ["late"]);
    // A newer inbound message does, waiting since that message.
    message(&org, "early", "e4", "in", 0.1).await;
    assert_eq!(inbox(&org, "").await, ["late", "early"]);
}

#[tokio::test]
async fn inbox_pages_and_parameters() {
    let org = TestOrg::new().await;
    for (index, thread) in ["t1", "t2", "t3"].iter().enumerate() {
        message(&org, thread, &format!("m{index}"), "in", 3.0 - index as f64).await;
    }
    let reply = org.read(Endpoint::Inbox, &[], "limit=3").await;
    assert!(reply.assert_status(200)["next_cursor"].is_null());
    assert_eq!(inbox(&org, "limit=2").await, ["t1", "t2", "t3"]);
    assert_eq!(inbox(&org, "limit=1").await, ["t1", "t2", "t3"]);
    let reply = org.read(Endpoint::Inbox, &[], "status=closed").await;
    reply.assert_error(400, "invalid_field");
    assert_eq!(reply.param(), "status");
    // Another org's inbox is its own, and its cursors are not this org's.
    let other = TestOrg::new().await;
    assert!(inbox(&other, "").await.is_empty());
    let reply = org.read(Endpoint::Inbox, &[], "limit=1").await;
    let cursor = reply.assert_status(200)["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    other
        .read(Endpoint::Inbox, &[], &format!("cursor={cursor}"))
        .await
        .assert_error(400, "invalid_cursor");
}
