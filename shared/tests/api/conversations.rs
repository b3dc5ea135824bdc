use crate::common::*;
use serde_json::{json, Value};
use shared::Endpoint;

fn message(id: &str, sent_at: &str, direction: &str) -> Value {
    json!({
        "message_id": id,
        "thread_id": "conv_support_1001",
        "direction": direction,
        "text": "I need help with my billing screen.\nIt crashes.",
        "sent_at": sent_at,
        "delivery_status": "read",
        "channel": { "external_channel_id": "app_support_main", "display_name": "In-App Support", "type": "app_inbox" },
        "contact": { "external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe" },
        "metadata": { "screen": "billing_modal", "device": "ios" }
    })
}

#[tokio::test]
async fn a_conversation_upserts_its_contact_and_channel() {
    let org = TestOrg::new().await;
    let conversation = json!({
        "thread_id": "conv_support_1001",
        "last_message_at": "2026-03-24T09:00:00Z",
        "channel": { "external_channel_id": "app_support_main", "display_name": "In-App Support", "type": "app_inbox" },
        "contact": { "external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe", "phone": "+15551234567" },
        "metadata": { "topic": "billing", "plan": "pro" }
    });
    let body = org
        .call(Endpoint::ConversationsUpsert, conversation.clone())
        .await
        .assert_status(201)
        .clone();
    assert_eq!(body["conversation"]["thread_id"], "conv_support_1001");
    assert_eq!(
        body["conversation"]["contact"],
        json!({"external_user_id": "usr_123"})
    );
    assert_eq!(
        body["conversation"]["external_channel_id"],
        "app_support_main"
    );
    assert_eq!(body["contact"]["phone"], "+15551234567");
    assert_eq!(body["channel"]["display_name"], "In-App Support");
    assert_eq!(body["channel"]["type"], "app_inbox");
    let body = org
        .call(Endpoint::ConversationsUpsert, conversation)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["created"], false);
}

#[tokio::test]
async fn messages_create_their_thread_and_move_it_forward_only() {
    let org = TestOrg::new().await;
    let body = org
        .call(
            Endpoint::MessagesUpsert,
            message("msg_1", "2026-03-24T09:15:00Z", "in"),
        )
        .await
        .assert_status(201)
        .clone();
    assert_eq!(body["message"]["direction"], "in");
    assert_eq!(
        body["message"]["text"],
        "I need help with my billing screen.\nIt crashes."
    );
    assert_eq!(
        body["conversation"]["last_message_at"],
        "2026-03-24T09:15:00.000Z"
    );
    assert_eq!(body["conversation"]["last_message_direction"], "in");
    assert_eq!(body["contact"]["external_user_id"], "usr_123");

    let body = org
        .call(
            Endpoint::MessagesUpsert,
            message("msg_2", "2026-03-24T09:20:00Z", "out"),
        )
        .await
        .assert_status(201)
        .clone();
    assert_eq!(body["conversation"]["last_message_id"], "msg_2");

    // An older message arriving late is stored but does not move the thread back.
    let body = org
        .call(
            Endpoint::MessagesUpsert,
            message("msg_0", "2026-03-24T09:00:00Z", "in"),
        )
        .await
        .assert_status(201)
        .clone();
    assert_eq!(body["conversation"]["last_message_id"], "msg_2", "{body}");
    assert_eq!(body["conversation"]["last_message_direction"], "out");
    assert_eq!(
        body["conversation"]["last_message_at"],
        "2026-03-24T09:20:00.000Z"
    );
    let conversation = org
        .call(
            Endpoint::ConversationsUpsert,
            json!({"thread_id": "conv_support_1001"}),
        )
        .await;
    let thread = &conversation.assert_status(200)["conversation"];
    assert_eq!(thread["last_message_at"], "2026-03-24T09:20:00.000Z");
    assert_eq!(thread["last_message_direction"], "out");

    // The same message id updates the message.
    let mut edited = message("msg_1", "2026-03-24T09:15:00Z", "in");
    edited["delivery_status"] = json!("delivered");
    let body = org
        .call(Endpoint::MessagesUpsert, edited)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["message"]["delivery_status"], "delivered");
}

#[tokio::test]
async fn conversation_and_message_errors() {
    let org = TestOrg::new().await;
    org.call(Endpoint::ConversationsUpsert, json!({"metadata": {}}))
        .await
        .assert_error(400, "missing_thread_identity");
    org.call(Endpoint::MessagesUpsert, json!({"thread_id": "t"}))
        .await
        .assert_error(400, "missing_message_identity");
    org.call(Endpoint::MessagesUpsert, json!({"message_id": "m"}))
        .await
        .assert_error(400, "missing_thread_identity");
    let reply = org
        .call(
            Endpoint::MessagesUpsert,
            json!({"message_id": "m", "thread_id": "t", "contact": {"phone": "1"}}),
        )
        .await;
    reply.assert_error(400, "missing_user_identity");
    assert_eq!(reply.param(), "contact.external_user_id");
    let reply = org
        .call(
            Endpoint::ConversationsUpsert,
            json!({"thread_id": "t", "channel": {"display_name": "x"}}),
        )
        .await;
    reply.assert_error(400, "missing_channel_identity");
    for (field, value) in [
        ("direction", json!("up")),
        ("sent_at", json!("now")),
        ("text", json!(5)),
        ("metadata", json!([])),
    ] {
        let reply = org
            .call(
                Endpoint::MessagesUpsert,
                json!({"message_id": "m", "thread_id": "t", field: value}),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field);
    }
    let reply = org
        .call(
            Endpoint::ConversationsUpsert,
            json!({"thread_id": "t", "last_message_at": "2026"}),
        )
        .await;
    assert_eq!(reply.param(), "last_message_at");
}
