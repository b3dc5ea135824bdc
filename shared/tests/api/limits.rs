//! Hostile and extreme input: every limit answers with a precise 4xx, and the largest
//! requests the limits allow are stored (so no accepted request can build an item over
//! DynamoDB's 400 KB limit or end in a 5xx).

use crate::common::*;
use lambda_http::Body;
use serde_json::{json, Value};
use shared::fields::{
    MAX_ID_CHARS, MAX_JSON_DEPTH, MAX_LONG_TEXT_CHARS, MAX_METADATA_BYTES, MAX_SHORT_TEXT_CHARS,
};
use shared::input::MAX_SERVICES_PER_BOOKING;
use shared::Endpoint;

/// A four-byte UTF-8 character: the worst case for item size per character.
const WIDE: char = '𝄞';

fn wide(chars: usize) -> String {
    std::iter::repeat_n(WIDE, chars).collect()
}

/// A unique id of exactly `MAX_ID_CHARS` wide characters.
fn max_id(prefix: &str) -> String {
    let head = unique(prefix);
    format!("{head}{}", wide(MAX_ID_CHARS - head.chars().count()))
}

fn short() -> String {
    wide(MAX_SHORT_TEXT_CHARS)
}

fn long() -> String {
    wide(MAX_LONG_TEXT_CHARS)
}

/// The largest `metadata` object accepted: exactly `MAX_METADATA_BYTES` of JSON.
fn max_metadata() -> Value {
    let overhead = r#"{"k":""}"#.len();
    let value = wide((MAX_METADATA_BYTES - overhead) / WIDE.len_utf8());
    let metadata = json!({ "k": value });
    assert!(metadata.to_string().len() <= MAX_METADATA_BYTES);
    metadata
}

fn max_user() -> Value {
    let at = "2026-01-01T00:00:00Z";
    json!({
        // A 64-character local part, unique: an email names one client.
        "external_user_id": max_id("usr"), "email": format!("{:a<64}@example.com", unique("e")),
        "name": short(), "phone": short(), "created_at": at, "plan": short(), "status": short(),
        "subscription_status": short(), "billing_model": short(), "billing_interval": short(),
        "subscription_started_at": at, "subscription_ends_at": at, "installed_at": at,
        "last_opened_at": at, "uninstalled_at": at, "install_platform": short(),
        "install_source": short(), "app_version": short(), "install_count": u32::MAX,
        "is_installed": true, "next_billing_at": at, "last_payment_at": at,
        "last_payment_amount": "99999999999999.99999999", "last_payment_currency": "USD",
        "lifetime_value": "99999999999999.99999999", "total_payments_count": u32::MAX,
        "is_active_customer": true, "metadata": max_metadata()
    })
}

fn max_product(kind: &str) -> Value {
    json!({
        "external_product_id": max_id("prd"), "sku": short(), "title": short(), "type": kind,
        "description": long(), "short_description": short(), "currency": "EUR",
        "price": "1.5", "sale_price": "1", "cost_price": "0.5",
        "approx_duration_minutes": u32::MAX, "is_active": true
    })
}

fn max_channel() -> Value {
    json!({"external_channel_id": max_id("chn"), "display_name": short(), "type": short()})
}

#[tokio::test]
async fn the_largest_accepted_request_of_every_endpoint_is_stored() {
    let org = TestOrg::new().await;
    let at = "2026-01-01T00:00:00Z";
    let cases = [
        (Endpoint::UsersUpsert, max_user()),
        (Endpoint::ProductsUpsert, max_product("product")),
        (
            Endpoint::Events,
            json!({"event": max_id("evt"), "user": max_user(), "properties": max_metadata(),
                   "event_timestamp": at}),
        ),
        (
            Endpoint::SalesUpsert,
            json!({"sale_id": max_id("sale"), "date": at, "quantity": u32::MAX,
                   "total": "1.00", "currency": "USD", "status": short(),
                   "metadata": max_metadata(), "buyer": max_user(),
                   "product": max_product("product")}),
        ),
        (
            Endpoint::ConversationsUpsert,
            json!({"thread_id": max_id("thr"), "last_message_at": at, "subject": short(),
                   "status": short(), "metadata": max_metadata(), "channel": max_channel(),
                   "contact": max_user()}),
        ),
        (
            Endpoint::MessagesUpsert,
            json!({"message_id": max_id("msg"), "thread_id": max_id("thr"), "direction": "in",
                   "text": long(), "media": max_metadata(), "sent_at": at,
                   "delivery_status": short(), "metadata": max_metadata(),
                   "channel": max_channel(), "contact": max_user()}),
        ),
        (
            Endpoint::BookingsUpsert,
            json!({"booking_id": max_id("bkg"), "title": short(), "booking_type": short(),
                   "status": short(), "scheduled_at": at, "duration_minutes": u32::MAX,
                   "location": short(), "notes": long(), "metadata": max_metadata(),
                   "client": max_user(),
                   "service_external_ids": (0..MAX_SERVICES_PER_BOOKING - 1)
                        .map(|_| max_id("svc")).collect::<Vec<_>>(),
                   "services": [max_product("service")]}),
        ),
    ];
    for (endpoint, body) in cases {
        let size = body.to_string().len();
        assert!(
            size <= shared::http::MAX_BODY_BYTES,
            "{endpoint:?}: {size} bytes"
        );
        // Twice: the create and the update path (SET of every field on an existing item).
        for attempt in ["create", "update"] {
            let reply = org.call(endpoint, body.clone()).await;
            // Not the body: it echoes hundreds of kilobytes.
            let error = &reply.body["error"];
            assert!(reply.status.is_success(), "{endpoint:?} {attempt}: {error}");
        }
    }
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_invalid_json() {
    let org = TestOrg::new().await;
    let bodies: [&[u8]; 10] = [
        b"",
        b"   ",
        b"null",
        b"42",
        b"true",
        b"[{\"external_user_id\": \"u\"}]",
        b"{\"external_user_id\": \"u\"} {}",
        b"\xef\xbb\xbf{\"external_user_id\": \"u\"}",
        b"{\"external_user_id\": \"\xff\xfe\"}",
        b"{\"external_user_id\": \"u\", \"name\": \"\x01\"}",
    ];
    for body in bodies {
        let reply = org
            .call_with(Endpoint::UsersUpsert, &[], Body::from(body.to_vec()))
            .await;
        reply.assert_error(400, "invalid_json");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(!message.contains(" at line "), "{message}");
    }
}

#[tokio::test]
async fn repeated_keys_are_refused_at_the_top_and_inside_free_form_json() {
    let org = TestOrg::new().await;
    let top = br#"{"external_user_id": "u1", "external_user_id": "u2"}"#;
    let reply = org
        .call_with(Endpoint::UsersUpsert, &[], Body::from(top.to_vec()))
        .await;
    reply.assert_error(400, "invalid_field");
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("duplicate field"));

    let nested = br#"{"external_user_id": "u1", "metadata": {"tier": "a", "tier": "b"}}"#;
    let reply = org
        .call_with(Endpoint::UsersUpsert, &[], Body::from(nested.to_vec()))
        .await;
    reply.assert_error(400, "invalid_field");
    assert!(reply.param().starts_with("metadata"), "{}", reply.body);

    let event = br#"{"event": "app_opened", "user": {"external_user_id": "u1"},
                     "properties": {"a": {"b": 1, "b": 2}}}"#;
    let reply = org
        .call_with(Endpoint::Events, &[], Body::from(event.to_vec()))
        .await;
    reply.assert_error(400, "invalid_field");
    assert!(reply.param().starts_with("properties"), "{}", reply.body);
}

#[tokio::test]
async fn free_form_json_nesting_is_bounded_with_a_precise_error() {
    let org = TestOrg::new().await;
    let nested = |depth: usize| -> Value { (1..depth).fold(json!(1), |inner, _| json!([inner])) };
    let ok = json!({"external_user_id": "deep", "metadata": {"a": nested(MAX_JSON_DEPTH - 1)}});
    org.call(Endpoint::UsersUpsert, ok).await.assert_success();
    let deep = json!({"external_user_id": "deep", "metadata": {"a": nested(MAX_JSON_DEPTH + 1)}});
    let reply = org.call(Endpoint::UsersUpsert, deep).await;
    reply.assert_error(400, "invalid_field");
    assert!(reply.param().starts_with("metadata"), "{}", reply.body);
    // Nesting is refused at the first level too deep, however deep the body goes.
    let very_deep = |field: &str| {
        format!(
            r#"{{"external_user_id": "deep", "{field}": {{"a": {}1{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        )
    };
    let reply = org
        .call_with(Endpoint::UsersUpsert, &[], very_deep("metadata"))
        .await;
    reply.assert_error(400, "invalid_field");
    // An unknown field is skipped without recursion (serde_json keeps its own stack), so
    // any depth the body size allows is harmless there: it is checked as JSON and dropped.
    org.call_with(Endpoint::UsersUpsert, &[], very_deep("unknown"))
        .await
        .assert_success();
}

#[tokio::test]
async fn numbers_out_of_range_are_refused() {
    let org = TestOrg::new().await;
    for (field, value) in [
        ("install_count", json!(u64::from(u32::MAX) + 1)),
        ("install_count", json!(-1)),
        ("install_count", json!(1.5)),
        ("install_count", json!("3")),
        ("lifetime_value", json!("1e3")),
        ("lifetime_value", json!("-5.00")),
        ("lifetime_value", json!("1".repeat(40))),
        ("lifetime_value", json!(19.99)),
    ] {
        let reply = org
            .call(
                Endpoint::UsersUpsert,
                json!({"external_user_id": "n", field: value}),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field, "{value}");
    }
    // A number JSON itself cannot represent as a double.
    let body = r#"{"external_user_id": "n", "metadata": {"x": 1e400}}"#;
    org.call_with(Endpoint::UsersUpsert, &[], body)
        .await
        .assert_error(400, "invalid_json");
}

#[tokio::test]
async fn dates_out_of_range_are_refused() {
    let org = TestOrg::new().await;
    for value in [
        "10000-01-01T00:00:00Z",
        "9999-12-31T23:30:00-01:00",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01",
        "1700000000",
    ] {
        let reply = org
            .call(
                Endpoint::UsersUpsert,
                json!({"external_user_id": "d", "installed_at": value}),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), "installed_at", "{value}");
    }
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "d", "created_at": "0000-01-01T00:00:00Z",
               "subscription_ends_at": "9999-12-31T23:59:59Z"}),
    )
    .await
    .assert_success();
}

#[tokio::test]
async fn times_that_move_records_forward_may_not_be_far_in_the_future() {
    let org = TestOrg::new().await;
    let in_days = |days: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let user = json!({"external_user_id": "future"});
    let cases = [
        (
            Endpoint::Events,
            "event_timestamp",
            json!({"event": "app_opened", "user": user, "event_timestamp": in_days(2)}),
        ),
        (
            Endpoint::MessagesUpsert,
            "sent_at",
            json!({"message_id": "m", "thread_id": "t", "direction": "in",
                   "sent_at": in_days(365)}),
        ),
        (
            Endpoint::ConversationsUpsert,
            "last_message_at",
            json!({"thread_id": "t", "last_message_at": "9999-01-01T00:00:00Z"}),
        ),
    ];
    for (endpoint, field, body) in cases {
        let reply = org.call(endpoint, body).await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field);
    }
    // Clock skew is tolerated: an hour ahead is accepted.
    let skewed = json!({"event": "app_opened", "user": user, "event_timestamp": in_days(0)
        .replace('Z', "+00:00")});
    org.call(Endpoint::Events, skewed).await.assert_success();
}

#[tokio::test]
async fn control_characters_are_refused_in_ids_and_short_texts() {
    let org = TestOrg::new().await;
    for (field, value) in [
        ("external_user_id", "usr\u{0}1"),
        ("name", "John\u{7}"),
        ("name", "two\nlines"),
        ("plan", "\u{1b}[31mred"),
        ("external_user_id", "usr\u{85}1"),
    ] {
        let reply = org
            .call(
                Endpoint::UsersUpsert,
                json!({"external_user_id": "c", field: value}),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field, "{value:?}");
    }
    // Long texts keep their line breaks.
    org.call(
        Endpoint::MessagesUpsert,
        json!({"message_id": "m1", "thread_id": "t1", "direction": "in",
               "text": "line 1\r\nline 2\tend"}),
    )
    .await
    .assert_success();
}

#[tokio::test]
async fn lists_and_strings_one_past_their_limit_are_refused() {
    let org = TestOrg::new().await;
    let too_many: Vec<String> = (0..=MAX_SERVICES_PER_BOOKING)
        .map(|i| format!("svc_{i}"))
        .collect();
    let reply = org
        .call(
            Endpoint::BookingsUpsert,
            json!({"booking_id": "b", "scheduled_at": "2026-01-01T00:00:00Z",
                   "service_external_ids": too_many}),
        )
        .await;
    reply.assert_error(400, "invalid_field");
    assert_eq!(reply.param(), "service_external_ids");
    for (endpoint, field, body) in [
        (
            Endpoint::MessagesUpsert,
            "text",
            json!({"message_id": "m", "thread_id": "t", "text": wide(MAX_LONG_TEXT_CHARS + 1)}),
        ),
        (
            Endpoint::ProductsUpsert,
            "external_product_id",
            json!({"external_product_id": wide(MAX_ID_CHARS + 1)}),
        ),
        (
            Endpoint::UsersUpsert,
            "phone",
            json!({"external_user_id": "u", "phone": wide(MAX_SHORT_TEXT_CHARS + 1)}),
        ),
    ] {
        let reply = org.call(endpoint, body).await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field);
    }
}

/// 256 four-byte characters: within the character limit, past the bytes a key leaves.
fn wide_id() -> String {
    wide(MAX_ID_CHARS)
}

#[tokio::test]
async fn every_id_is_limited_in_bytes_before_anything_is_written() {
    let org = TestOrg::new().await;
    let at = "2026-01-01T00:00:00Z";
    // Every other id is valid and the nested users carry a new email: nothing of them
    // may be stored, nor the email claimed.
    let user = || json!({"external_user_id": "u-ok", "email": "fresh@x.co"});
    let wide_user = || json!({"external_user_id": wide_id(), "email": "fresh@x.co"});
    let cases = [
        (
            Endpoint::UsersUpsert,
            "external_user_id",
            json!({"external_user_id": wide_id(), "email": "fresh@x.co"}),
        ),
        (
            Endpoint::Events,
            "user.external_user_id",
            json!({"event": "app_opened", "user": wide_user()}),
        ),
        (
            Endpoint::ProductsUpsert,
            "external_product_id",
            json!({"external_product_id": wide_id()}),
        ),
        (
            Endpoint::SalesUpsert,
            "sale_id",
            json!({"sale_id": wide_id(), "date": at, "buyer": user()}),
        ),
        (
            Endpoint::SalesUpsert,
            "buyer.external_user_id",
            json!({"sale_id": "s-ok", "buyer": wide_user()}),
        ),
        (
            Endpoint::SalesUpsert,
            "product.external_product_id",
            json!({"sale_id": "s-ok", "buyer": user(), "product": {"external_product_id": wide_id()}}),
        ),
        (
            Endpoint::ConversationsUpsert,
            "thread_id",
            json!({"thread_id": wide_id(), "contact": user()}),
        ),
        (
            Endpoint::ConversationsUpsert,
            "contact.external_user_id",
            json!({"thread_id": "t-ok", "contact": wide_user()}),
        ),
        (
            Endpoint::ConversationsUpsert,
            "channel.external_channel_id",
            json!({"thread_id": "t-ok", "contact": user(), "channel": {"external_channel_id": wide_id()}}),
        ),
        (
            Endpoint::MessagesUpsert,
            "message_id",
            json!({"message_id": wide_id(), "thread_id": "t-ok", "sent_at": at, "contact": user()}),
        ),
        (
            Endpoint::MessagesUpsert,
            "thread_id",
            json!({"message_id": "m-ok", "thread_id": wide_id(), "sent_at": at, "contact": user()}),
        ),
        (
            Endpoint::MessagesUpsert,
            "contact.external_user_id",
            json!({"message_id": "m-ok", "thread_id": "t-ok", "sent_at": at, "contact": wide_user()}),
        ),
        (
            Endpoint::MessagesUpsert,
            "channel.external_channel_id",
            json!({"message_id": "m-ok", "thread_id": "t-ok", "contact": user(),
                "channel": {"external_channel_id": wide_id()}}),
        ),
        (
            Endpoint::BookingsUpsert,
            "booking_id",
            json!({"booking_id": wide_id(), "scheduled_at": at, "client": user()}),
        ),
        (
            Endpoint::BookingsUpsert,
            "client.external_user_id",
            json!({"booking_id": "b-ok", "scheduled_at": at, "client": wide_user()}),
        ),
        (
            Endpoint::BookingsUpsert,
            "service_external_ids",
            json!({"booking_id": "b-ok", "scheduled_at": at, "client": user(), "service_external_ids": [wide_id()]}),
        ),
        (
            Endpoint::BookingsUpsert,
            "services[0].external_product_id",
            json!({"booking_id": "b-ok", "scheduled_at": at, "client": user(),
                "services": [{"external_product_id": wide_id()}]}),
        ),
    ];
    for (endpoint, param, body) in cases {
        let reply = org.call(endpoint, body.clone()).await;
        reply.assert_error(400, "invalid_field");
        assert!(reply.param().starts_with(param), "{param}: {}", reply.body);
        // A batch item gets the same answer.
        let item = crate::batch::item(endpoint, &body, None);
        let reply = org.call(Endpoint::Batch, json!({ "batch": [item] })).await;
        let result = &reply.assert_status(200)["results"][0];
        assert_eq!(result["status"], 400, "{result}");
        assert_eq!(result["error"]["code"], "invalid_field");
        assert!(result["error"]["param"]
            .as_str()
            .unwrap()
            .starts_with(param));
    }
    for (endpoint, param) in [
        (Endpoint::UsersGet, "external_user_id"),
        (Endpoint::UsersDelete, "external_user_id"),
        (Endpoint::ConversationsGet, "thread_id"),
    ] {
        let reply = org.read(endpoint, &[&wide_id()], "").await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), param);
    }
    let id = |raw: &str| shared::endpoint::parse_id(raw).unwrap();
    let org_id = org.org_id.as_str();
    let email = "fresh@x.co".parse().unwrap();
    for key in [
        shared::store::testing::keys::email_alias(org_id, &email),
        shared::store::testing::keys::user(org_id, &external_identity("u-ok")),
        shared::store::testing::keys::sale(org_id, &id("s-ok")),
        shared::store::testing::keys::thread(org_id, &id("t-ok")),
        shared::store::testing::keys::message_locator(org_id, &id("m-ok")),
        shared::store::testing::keys::booking(org_id, &id("b-ok")),
    ] {
        assert_eq!(org.store().get(&key).await, Ok(None), "{key:?}");
    }
    let users = org.read_all(Endpoint::UsersList, &[], "", "users").await;
    assert!(users.is_empty(), "{users:?}");
}
