//! Org A's key can never read, overwrite or detect org B's records.

use crate::common::*;
use serde_json::json;
use shared::Endpoint;

#[tokio::test]
async fn the_same_ids_in_two_orgs_are_two_records() {
    let (a, b) = (TestOrg::new().await, TestOrg::new().await);
    let writes = [
        (
            Endpoint::UsersUpsert,
            json!({"external_user_id": "usr_1", "name": "A's user"}),
        ),
        (
            Endpoint::ProductsUpsert,
            json!({"external_product_id": "p1", "title": "A's product"}),
        ),
        (
            Endpoint::SalesUpsert,
            json!({"sale_id": "s1", "total": "1.00", "buyer": {"external_user_id": "usr_1"}}),
        ),
        (
            Endpoint::ConversationsUpsert,
            json!({"thread_id": "t1", "contact": {"external_user_id": "usr_1"}}),
        ),
        (
            Endpoint::MessagesUpsert,
            json!({"message_id": "m1", "thread_id": "t1", "sent_at": "2026-03-24T09:00:00Z"}),
        ),
        (
            Endpoint::BookingsUpsert,
            json!({"booking_id": "b1", "scheduled_at": "2026-03-25T10:30:00Z", "title": "A's"}),
        ),
    ];
    for (endpoint, body) in &writes {
        a.call(*endpoint, body.clone()).await.assert_status(201);
    }
    // B writing the same ids creates its own records: nothing of A's is updated or shown.
    for (endpoint, body) in &writes {
        let reply = b.call(*endpoint, body.clone()).await;
        let reply_body = reply.assert_status(201);
        assert_eq!(reply_body["created"], true, "{endpoint:?} in org B is new");
    }
    let reply = b
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "usr_1", "name": "B's user"}),
        )
        .await;
    assert_eq!(reply.assert_status(200)["user"]["name"], "B's user");
    let reply = a
        .call(Endpoint::UsersUpsert, json!({"external_user_id": "usr_1"}))
        .await;
    assert_eq!(
        reply.assert_status(200)["user"]["name"],
        "A's user",
        "untouched by B"
    );
}

#[tokio::test]
async fn stored_keys_carry_the_org_prefix() {
    let org = TestOrg::new().await;
    org.call(Endpoint::SalesUpsert, json!({"sale_id": "s1", "buyer": {"email": "x@y.z"}, "product": {"external_product_id": "p"}}))
        .await
        .assert_status(201);
    // Every page: one Scan call reads at most 1 MB, less than a table reused across runs.
    let scanned: Vec<_> = org
        .store()
        .client()
        .scan()
        .table_name(org.store().table())
        .filter_expression("org_id = :org")
        .expression_attribute_values(":org", shared::store::testing::s(&org.org_id))
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    let items: Vec<_> = scanned
        .into_iter()
        .map(|item| item.unwrap())
        .filter(|item| !["org", "api_key"].contains(&item["entity"].as_s().unwrap().as_str()))
        .collect();
    assert_eq!(items.len(), 3, "sale, buyer, product");
    for item in items {
        let pk = item["PK"].as_s().unwrap();
        assert!(pk.starts_with(&format!("ORG#{}#", org.org_id)), "{pk}");
    }
}
