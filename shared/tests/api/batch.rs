//! `POST batch/` end to end: every item answered exactly as its single endpoint answers the
//! same body (status, code, param, and what gets stored), in request order; re-sent
//! batches change nothing; the limits; gzip bodies; the rate limit counting items.

use crate::common::*;
use flate2::write::GzEncoder;
use serde_json::{json, Value};
use shared::batch::{MAX_BATCH_BODY_BYTES, MAX_BATCH_ITEMS};
use shared::Endpoint;
use std::io::Write;

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The batch item for a single endpoint's body (and an event's Idempotency-Key).
pub fn item(endpoint: Endpoint, body: &Value, key: Option<&str>) -> Value {
    let kind = match endpoint {
        Endpoint::UsersUpsert => "user",
        Endpoint::Events => "event",
        Endpoint::ProductsUpsert => "product",
        Endpoint::SalesUpsert => "sale",
        Endpoint::ConversationsUpsert => "conversation",
        Endpoint::MessagesUpsert => "message",
        Endpoint::BookingsUpsert => "booking",
        other => panic!("{other:?} has no batch item"),
    };
    let mut item = body.as_object().unwrap().clone();
    if endpoint == Endpoint::ProductsUpsert {
        if let Some(product_type) = item.remove("type") {
            item.insert("product_type".into(), product_type);
        }
    }
    item.insert("type".into(), json!(kind));
    if let Some(key) = key {
        item.insert("idempotency_key".into(), json!(key));
    }
    Value::Object(item)
}

/// `count` upserts of new users.
pub fn new_user_items(count: usize) -> Vec<Value> {
    (0..count)
        .map(|_| {
            let user = json!({"external_user_id": unique("usr")});
            item(Endpoint::UsersUpsert, &user, None)
        })
        .collect()
}

async fn send_batch(org: &TestOrg, items: &[Value]) -> Reply {
    org.call(Endpoint::Batch, json!({ "batch": items })).await
}

fn results(reply: &Reply) -> &Vec<Value> {
    reply.assert_status(200)["results"].as_array().unwrap()
}

/// Requests of every type, valid and not, with ids unique to this call.
struct Mixed {
    users: [String; 3],
    thread: String,
    cases: Vec<(Endpoint, Value, Option<String>)>,
}

impl Mixed {
    fn new() -> Mixed {
        let users = [unique("usr"), unique("usr"), unique("usr")];
        let [u1, u2, u3] = users.clone();
        let (p1, p2, p3) = (unique("prod"), unique("prod"), unique("svc"));
        let thread = unique("thr");
        let cases = vec![
            (
                Endpoint::UsersUpsert,
                json!({"external_user_id": u1, "name": "Ann", "plan": "pro"}),
                None,
            ),
            (Endpoint::UsersUpsert, json!({"name": "nobody"}), None),
            (
                Endpoint::UsersUpsert,
                json!({"external_user_id": u2, "install_count": "three"}),
                None,
            ),
            (
                Endpoint::Events,
                json!({"event": "app_installed", "user": {"external_user_id": u1},
                       "properties": {"install_platform": "ios"}, "event_timestamp": "2026-01-02T03:04:05Z"}),
                Some(unique("idem")),
            ),
            (
                Endpoint::Events,
                json!({"event": "app_opened", "user": {"name": "x"}}),
                None,
            ),
            (
                Endpoint::Events,
                json!({"event": "app_opened", "user": {"external_user_id": u1}, "event_timestamp": "2999-01-01T00:00:00Z"}),
                Some(unique("idem")),
            ),
            (
                Endpoint::Events,
                json!({"event": "app_opened", "user": {"external_user_id": u1}}),
                Some(" ".into()),
            ),
            (
                Endpoint::ProductsUpsert,
                json!({"external_product_id": p1, "type": "service", "price": "10.00"}),
                None,
            ),
            (
                Endpoint::ProductsUpsert,
                json!({"external_product_id": p2, "type": "gift"}),
                None,
            ),
            (
                Endpoint::SalesUpsert,
                json!({"sale_id": unique("sale"), "total": "58.00", "currency": "usd",
                       "buyer": {"external_user_id": u3, "name": "Cy"}, "product": {"external_product_id": p1}}),
                None,
            ),
            (
                Endpoint::SalesUpsert,
                json!({"sale_id": unique("sale"), "buyer": {"email": "not-an-email"}}),
                None,
            ),
            (
                Endpoint::ConversationsUpsert,
                json!({"thread_id": thread, "subject": "Billing", "last_message_at": "2026-01-02T03:00:00Z",
                       "contact": {"external_user_id": u3}, "channel": {"external_channel_id": "ch", "type": "app_inbox"}}),
                None,
            ),
            (
                Endpoint::MessagesUpsert,
                json!({"message_id": unique("msg"), "thread_id": thread, "direction": "in",
                       "text": "help", "sent_at": "2026-01-02T03:05:00Z"}),
                None,
            ),
            (
                Endpoint::BookingsUpsert,
                json!({"booking_id": unique("bk"), "scheduled_at": "2026-02-01T10:00:00Z",
                       "client": {"external_user_id": u1}, "services": [{"external_product_id": p3, "type": "service"}]}),
                None,
            ),
            (
                Endpoint::BookingsUpsert,
                json!({"booking_id": unique("bk")}),
                None,
            ),
            (
                Endpoint::MessagesUpsert,
                json!({"message_id": unique("msg")}),
                None,
            ),
        ];
        Mixed {
            users,
            thread,
            cases,
        }
    }

    fn items(&self) -> Vec<Value> {
        self.cases
            .iter()
            .map(|(endpoint, body, key)| item(*endpoint, body, key.as_deref()))
            .collect()
    }

    /// What each single endpoint answers, in order.
    async fn send_singly(&self, org: &TestOrg) -> Vec<Reply> {
        let mut replies = Vec::new();
        for (endpoint, body, key) in &self.cases {
            let headers: Vec<(&str, &str)> = key
                .iter()
                .map(|key| ("idempotency-key", key.as_str()))
                .collect();
            replies.push(org.call_with(*endpoint, &headers, body.to_string()).await);
        }
        replies
    }

    /// The stored state: each user's context and the thread, with what differs between
    /// two runs (write times) left out.
    async fn state(&self, org: &TestOrg) -> Value {
        let mut state = serde_json::Map::new();
        for user in &self.users {
            let reply = org.read(Endpoint::UsersGet, &[user], "").await;
            state.insert(user.clone(), without_write_times(reply.body));
        }
        let reply = org
            .read(Endpoint::ConversationsGet, &[&self.thread], "")
            .await;
        state.insert(self.thread.clone(), without_write_times(reply.body));
        Value::Object(state)
    }
}

/// Drops the attributes set from the clock at write time, at any depth.
fn without_write_times(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(name, _)| {
                    !matches!(
                        name.as_str(),
                        "ingested_at" | "updated_at" | "last_activity_at" | "as_of"
                    )
                })
                .map(|(name, value)| (name, without_write_times(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_write_times).collect()),
        other => other,
    }
}

#[tokio::test]
async fn every_item_is_answered_and_stored_exactly_as_its_single_endpoint_does() {
    let mixed = Mixed::new();
    let (single, batched) = (TestOrg::new().await, TestOrg::new().await);
    let singles = mixed.send_singly(&single).await;
    let reply = send_batch(&batched, &mixed.items()).await;
    let results = results(&reply);
    assert_eq!(results.len(), mixed.cases.len());
    for (((endpoint, body, _), one), result) in mixed.cases.iter().zip(&singles).zip(results) {
        let context = format!("{endpoint:?} {body}: single {} / batch {result}", one.body);
        assert_eq!(result["status"], one.status.as_u16(), "{context}");
        if one.status.is_success() {
            assert_eq!(result["created"], one.body["created"], "{context}");
            assert!(result["id"].is_string(), "{context}");
            assert!(result.get("error").is_none(), "{context}");
        } else {
            let error = &one.body["error"];
            assert_eq!(result["error"]["code"], error["code"], "{context}");
            assert_eq!(result["error"]["message"], error["message"], "{context}");
            let param = match (endpoint, error["param"].as_str()) {
                (_, Some("Idempotency-Key")) => json!("idempotency_key"),
                (Endpoint::ProductsUpsert, Some("type")) => json!("product_type"),
                (_, _) => error["param"].clone(),
            };
            assert_eq!(result["error"]["param"], param, "{context}");
        }
    }
    // Some of each kind, so the comparison means something.
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert!(
        statuses.contains(&201) && statuses.contains(&400),
        "{statuses:?}"
    );
    assert_eq!(results[0]["object"], "user");
    assert_eq!(results[0]["id"], mixed.users[0].as_str());
    assert_eq!(results[3]["object"], "event");
    assert_eq!(results[8]["error"]["param"], "product_type");
    assert_eq!(results[10]["error"]["param"], "buyer.email");
    assert_eq!(results[6]["error"]["param"], "idempotency_key");
    assert_eq!(mixed.state(&batched).await, mixed.state(&single).await);
}

#[tokio::test]
async fn a_resent_batch_changes_nothing_the_first_one_stored() {
    let mixed = Mixed::new();
    let org = TestOrg::new().await;
    let first = send_batch(&org, &mixed.items()).await;
    let stored = mixed.state(&org).await;
    let again = send_batch(&org, &mixed.items()).await;
    for (first, again) in results(&first).iter().zip(results(&again)) {
        match first["status"].as_u64().unwrap() {
            201 if first["object"] == "event" => {
                assert_eq!(again["status"], 201, "{again}");
                assert_eq!(again["replayed"], true, "{again}");
                assert_eq!(again["id"], first["id"]);
            }
            200 | 201 => {
                assert_eq!(again["status"], 200, "{again}");
                assert_eq!(again["created"], false, "{again}");
                assert_eq!(again["id"], first["id"]);
            }
            _ => assert_eq!(again, first),
        }
    }
    assert_eq!(mixed.state(&org).await, stored);
    assert_eq!(org.stored_user(&mixed.users[0]).await["install_count"], 1);
    assert_eq!(org.count_events(&mixed.users[0]).await, 1);
}

#[tokio::test]
async fn items_to_the_same_record_apply_in_order_and_share_idempotency_keys() {
    let org = TestOrg::with_rate_limit(Some(100_000)).await;
    let user = unique("usr");
    let key = unique("idem");
    let opened = |at: &str| json!({"event": "app_installed", "user": {"external_user_id": user}, "event_timestamp": at});
    let mut items = Vec::new();
    // Many independent items around the ones of `user`, so they run concurrently.
    for round in 0..40 {
        items.push(item(
            Endpoint::UsersUpsert,
            &json!({"external_user_id": unique("other"), "name": format!("other {round}")}),
            None,
        ));
        items.push(item(
            Endpoint::UsersUpsert,
            &json!({"external_user_id": user, "name": format!("name {round}")}),
            None,
        ));
    }
    items.push(item(
        Endpoint::Events,
        &opened("2026-01-01T00:00:00Z"),
        Some(&key),
    ));
    items.push(item(
        Endpoint::Events,
        &opened("2026-01-01T00:00:00Z"),
        Some(&key),
    ));
    items.push(item(
        Endpoint::Events,
        &opened("2026-01-02T00:00:00Z"),
        Some(&key),
    ));
    items.push(item(
        Endpoint::SalesUpsert,
        &json!({"sale_id": unique("sale"), "buyer": {"external_user_id": user, "plan": "last"}}),
        None,
    ));
    let reply = send_batch(&org, &items).await;
    let results = results(&reply);
    let n = results.len();
    assert!(results[..n - 4]
        .iter()
        .all(|r| r["status"].as_u64().unwrap() / 100 == 2));
    assert_eq!(
        (
            results[n - 4]["status"].clone(),
            results[n - 4].get("replayed")
        ),
        (json!(201), None)
    );
    assert_eq!(results[n - 3]["replayed"], true, "{}", results[n - 3]);
    assert_eq!(results[n - 3]["id"], results[n - 4]["id"]);
    assert_eq!(results[n - 2]["status"], 422);
    assert_eq!(results[n - 2]["error"]["code"], "idempotency_key_reused");
    assert_eq!(results[n - 2]["error"]["param"], "idempotency_key");
    let stored = org.stored_user(&user).await;
    assert_eq!(
        stored["name"], "name 39",
        "the last upsert in the batch wins"
    );
    assert_eq!(stored["plan"], "last");
    assert_eq!(stored["install_count"], 1);
    assert_eq!(org.count_events(&user).await, 1);
}

#[tokio::test]
async fn batches_over_the_limits_are_refused_whole() {
    let org = TestOrg::with_rate_limit(Some(100_000)).await;
    let user = |i: usize| {
        item(
            Endpoint::UsersUpsert,
            &json!({"external_user_id": format!("u{i}")}),
            None,
        )
    };
    let too_many: Vec<Value> = (0..=MAX_BATCH_ITEMS).map(user).collect();
    let reply = send_batch(&org, &too_many).await;
    reply.assert_error(413, "too_many_items");
    assert_eq!(reply.param(), "batch");

    let padding = "x".repeat(MAX_BATCH_BODY_BYTES);
    let reply = org
        .call(
            Endpoint::Batch,
            json!({"batch": [user(1)], "padding": padding}),
        )
        .await;
    reply.assert_error(413, "payload_too_large");

    for (body, code) in [
        ("{\"batch\": [", "invalid_json"),
        ("[]", "invalid_json"),
        ("{}", "missing_field"),
        ("{\"batch\": []}", "invalid_field"),
        ("{\"batch\": {}}", "invalid_field"),
    ] {
        let reply = org.call_with(Endpoint::Batch, &[], body).await;
        reply.assert_error(400, code);
    }
}

#[tokio::test]
async fn a_batch_of_the_largest_size_is_stored_whole() {
    let org = TestOrg::with_rate_limit(Some(100_000)).await;
    let users: Vec<String> = (0..MAX_BATCH_ITEMS).map(|_| unique("usr")).collect();
    let items: Vec<Value> = users
        .iter()
        .map(|id| {
            item(
                Endpoint::UsersUpsert,
                &json!({"external_user_id": id, "plan": "bulk"}),
                None,
            )
        })
        .collect();
    let reply = send_batch(&org, &items).await;
    let stored = results(&reply);
    assert_eq!(stored.len(), MAX_BATCH_ITEMS);
    for (result, id) in stored.iter().zip(&users) {
        assert_eq!(result["status"], 201, "{result}");
        assert_eq!(result["id"], id.as_str());
    }
    assert_eq!(
        org.stored_user(&users[MAX_BATCH_ITEMS - 1]).await["plan"],
        "bulk"
    );
    // An item over the single endpoint's limit is refused alone.
    let big = item(
        Endpoint::UsersUpsert,
        &json!({"external_user_id": unique("usr"), "name": "x".repeat(shared::http::MAX_BODY_BYTES)}),
        None,
    );
    let reply = send_batch(&org, &[big, items[0].clone()]).await;
    let answered = results(&reply);
    assert_eq!(answered[0]["status"], 413);
    assert_eq!(answered[0]["error"]["code"], "payload_too_large");
    assert_eq!(answered[1]["status"], 200);
}

#[tokio::test]
async fn gzip_bodies_are_inflated_under_the_limit_on_every_post() {
    let org = TestOrg::new().await;
    let gz = [("content-encoding", "gzip")];
    let user = unique("usr");
    let body = json!({"external_user_id": user, "name": "Zip"}).to_string();
    let reply = org
        .call_with(Endpoint::UsersUpsert, &gz, gzip(body.as_bytes()))
        .await;
    assert_eq!(reply.assert_status(201)["user"]["name"], "Zip");

    let batch = json!({"batch": [item(Endpoint::UsersUpsert, &json!({"external_user_id": user, "plan": "gz"}), None)]});
    let reply = org
        .call_with(Endpoint::Batch, &gz, gzip(batch.to_string().as_bytes()))
        .await;
    assert_eq!(results(&reply)[0]["status"], 200);
    assert_eq!(org.stored_user(&user).await["plan"], "gz");

    // A bomb: 16 KiB that inflates to 16 MiB, refused once past the limit.
    let bomb = gzip(&vec![b' '; 16 * 1024 * 1024]);
    assert!(bomb.len() < 32 * 1024);
    for endpoint in [Endpoint::Batch, Endpoint::UsersUpsert] {
        let reply = org.call_with(endpoint, &gz, bomb.clone()).await;
        reply.assert_error(413, "payload_too_large");
    }
    let mut corrupt = gzip(body.as_bytes());
    corrupt.truncate(corrupt.len() - 6);
    let reply = org.call_with(Endpoint::Events, &gz, corrupt).await;
    reply.assert_error(400, "invalid_encoding");
    assert_eq!(reply.param(), "Content-Encoding");
    let reply = org
        .call_with(
            Endpoint::UsersUpsert,
            &[("content-encoding", "br")],
            body.clone(),
        )
        .await;
    reply.assert_error(415, "unsupported_encoding");
    // Reads ignore it: they have no body.
    let reply = org
        .call_with(Endpoint::Me, &[("content-encoding", "br")], "")
        .await;
    reply.assert_status(200);
}

#[tokio::test]
async fn the_rate_limit_counts_items() {
    let limit = 10;
    let org = TestOrg::with_rate_limit(Some(limit)).await;
    let items = new_user_items(15);
    let reply = send_batch(&org, &items).await;
    let results = results(&reply);
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [vec![201; 10], vec![429; 5]].concat());
    assert_eq!(results[14]["error"]["code"], "rate_limited");
    assert_eq!(
        results[14]["error"]["rate_limit"],
        json!({"scope": "key", "limit": 10, "cost": 1})
    );
    assert_eq!(
        reply.headers["ratelimit"],
        "\"key\";r=0;t=1, \"org\";r=30;t=1"
    );
    assert_eq!(
        reply.headers["ratelimit-policy"],
        "\"key\";q=10;w=1, \"org\";q=40;w=1"
    );
    assert_eq!(reply.headers["retry-after"], "1");
    // The refused items were not written.
    let refused = items[14]["external_user_id"].as_str().unwrap();
    let key = shared::store::testing::keys::user(&org.org_id, &external_identity(refused));
    assert_eq!(org.store().get(&key).await, Ok(None));
}

#[tokio::test]
async fn a_batch_within_the_limit_leaves_the_rest_of_the_budget() {
    let org = TestOrg::with_rate_limit(Some(50)).await;
    let items = new_user_items(20);
    let reply = send_batch(&org, &items).await;
    assert!(results(&reply).iter().all(|r| r["status"] == 201));
    assert!(reply.headers.get("retry-after").is_none());
    // The batch took its 20 tokens at once, in one window.
    assert_eq!(
        reply.headers["ratelimit"],
        "\"key\";r=30;t=1, \"org\";r=180;t=1"
    );
}

#[tokio::test]
async fn a_person_named_by_email_and_by_id_is_one_group() {
    let org = TestOrg::with_rate_limit(Some(100_000)).await;
    for round in 0..3 {
        let (user, old, new) = (unique("usr"), unique("old"), unique("new"));
        let (old, new) = (format!("{old}@x.com"), format!("{new}@x.com"));
        org.create_user(json!({"external_user_id": user, "email": old}))
            .await;
        let items = [
            // By email only: the identified user (the alias), so it comes first.
            item(
                Endpoint::UsersUpsert,
                &json!({"email": old, "plan": "by email"}),
                None,
            ),
            item(
                Endpoint::UsersUpsert,
                &json!({"external_user_id": user, "plan": "by id"}),
                None,
            ),
            // The user moves to a new email; then the old one names nobody: a new client.
            item(
                Endpoint::UsersUpsert,
                &json!({"external_user_id": user, "email": new}),
                None,
            ),
            item(
                Endpoint::SalesUpsert,
                &json!({"sale_id": unique("sale"), "total": "5.00", "currency": "USD",
                        "buyer": {"email": old, "name": "someone else"}}),
                None,
            ),
        ];
        let reply = send_batch(&org, &items).await;
        let results = results(&reply);
        assert!(
            results
                .iter()
                .all(|r| r["status"].as_u64().unwrap() / 100 == 2),
            "{results:?}"
        );
        let stored = org.stored_user(&user).await;
        assert_eq!(stored["plan"], "by id", "round {round}: in request order");
        assert_eq!(stored["email"], json!(new));
        assert!(stored.get("name").is_none(), "round {round}: {stored}");
        assert_eq!(results[3]["status"], 201, "a new email-only client");
    }
}
