//! What every read endpoint shares: tenant isolation, paths, methods, and the GSI2 that an
//! older local table gets added.

use crate::common::*;
use serde_json::json;
use shared::store::table::{create_table, TableStream, GSIS};
use shared::Endpoint;

/// Org A's records, written through the write endpoints.
async fn write_everything(org: &TestOrg) {
    let writes = [
        (
            Endpoint::UsersUpsert,
            json!({"external_user_id": "usr_1", "plan": "pro"}),
        ),
        (
            Endpoint::Events,
            json!({"event": "app_opened", "user": {"external_user_id": "usr_1"}, "event_timestamp": days_ago(40.0)}),
        ),
        (
            Endpoint::SalesUpsert,
            json!({"sale_id": "s1", "date": days_ago(1.0), "buyer": {"external_user_id": "usr_1"}}),
        ),
        (
            Endpoint::MessagesUpsert,
            json!({"message_id": "m1", "thread_id": "t1", "direction": "in", "sent_at": days_ago(1.0), "contact": {"external_user_id": "usr_1"}}),
        ),
        (
            Endpoint::BookingsUpsert,
            json!({"booking_id": "b1", "scheduled_at": days_ago(-1.0), "client": {"external_user_id": "usr_1"}}),
        ),
    ];
    for (endpoint, body) in writes {
        assert!(org.call(endpoint, body).await.status.is_success());
    }
}

#[tokio::test]
async fn another_org_sees_none_of_these_records_through_any_read() {
    let (a, b) = (TestOrg::new().await, TestOrg::new().await);
    write_everything(&a).await;
    let window = format!("from={}&to={}", days_ago(2.0), days_ago(-2.0));
    // A sees its records...
    a.read(Endpoint::UsersGet, &["usr_1"], "")
        .await
        .assert_status(200);
    a.read(Endpoint::ConversationsGet, &["t1"], "")
        .await
        .assert_status(200);
    for (endpoint, query, list) in [
        (Endpoint::UsersList, "inactive_days=30", "users"),
        (Endpoint::Inbox, "", "conversations"),
        (Endpoint::BookingsList, window.as_str(), "bookings"),
    ] {
        assert_eq!(
            a.read_all(endpoint, &[], query, list).await.len(),
            1,
            "{endpoint:?}"
        );
        // ...B, asking the same, sees nothing.
        assert!(
            b.read_all(endpoint, &[], query, list).await.is_empty(),
            "{endpoint:?}"
        );
    }
    b.read(Endpoint::UsersGet, &["usr_1"], "")
        .await
        .assert_error(404, "user_not_found");
    b.read(Endpoint::ConversationsGet, &["t1"], "")
        .await
        .assert_error(404, "thread_not_found");
    // B writing the same ids gets its own context, with nothing of A's in it.
    b.call(Endpoint::UsersUpsert, json!({"external_user_id": "usr_1"}))
        .await
        .assert_status(201);
    let reply = b.read(Endpoint::UsersGet, &["usr_1"], "").await;
    let body = reply.assert_status(200);
    for list in ["events", "sales", "bookings", "conversations"] {
        assert!(body[list].as_array().unwrap().is_empty(), "{list}");
    }
}

#[tokio::test]
async fn read_paths_methods_and_keys_are_checked() {
    let org = TestOrg::new().await;
    let reads = [
        (Endpoint::UsersGet, vec!["usr_1"]),
        (Endpoint::UsersList, vec![]),
        (Endpoint::ConversationsGet, vec!["t1"]),
        (Endpoint::Inbox, vec![]),
        (Endpoint::BookingsList, vec![]),
    ];
    for (endpoint, params) in reads {
        let path = endpoint.path_with(&params);
        let request = |method: &str, path: &str, key: bool| {
            let mut builder = lambda_http::http::Request::builder()
                .method(method)
                .uri(path);
            if key {
                builder = builder.header("authorization", format!("Bearer {}", org.secret));
            }
            builder.body(lambda_http::Body::Empty).unwrap()
        };
        let reply = send(&org.app, endpoint, request("POST", &path, true)).await;
        reply.assert_error(405, "method_not_allowed");
        assert_eq!(reply.headers["allow"], "GET");
        send(
            &org.app,
            endpoint,
            request("GET", &format!("{path}extra/"), true),
        )
        .await
        .assert_error(404, "not_found");
        send(&org.app, endpoint, request("GET", &path, false))
            .await
            .assert_error(401, "missing_authorization");
        // Without the trailing slash and behind a stage prefix, it is the same endpoint.
        let bare = format!("/v1{}", path.trim_end_matches('/'));
        let reply = send(&org.app, endpoint, request("GET", &bare, true)).await;
        assert_ne!(
            reply.body["error"]["code"], "not_found",
            "{bare}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn an_older_table_gets_the_missing_index() {
    let store = store().await;
    let client = store.client();
    let table = unique("old-table");
    // The table as it was before GSI2.
    let (name, gsi1_keys) = &GSIS[0];
    let keys = |pairs: &[(&str, aws_sdk_dynamodb::types::KeyType)]| -> Vec<_> {
        pairs
            .iter()
            .map(|(attribute, kind)| {
                aws_sdk_dynamodb::types::KeySchemaElement::builder()
                    .attribute_name(*attribute)
                    .key_type(kind.clone())
                    .build()
                    .unwrap()
            })
            .collect()
    };
    let mut request = client
        .create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .set_key_schema(Some(keys(&shared::store::table::TABLE_KEYS)))
        .global_secondary_indexes(
            aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
                .index_name(*name)
                .set_key_schema(Some(keys(gsi1_keys)))
                .projection(
                    aws_sdk_dynamodb::types::Projection::builder()
                        .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        );
    for attribute in ["PK", "SK", "GSI1PK", "GSI1SK"] {
        request = request.attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        );
    }
    request.send().await.unwrap();

    assert!(
        !create_table(client, &table, TableStream::Off)
            .await
            .unwrap(),
        "exists already"
    );
    let description = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let mut indexes: Vec<String> = description
        .table
        .unwrap()
        .global_secondary_indexes
        .unwrap()
        .into_iter()
        .filter_map(|index| index.index_name)
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["GSI1", "GSI2"]);
    // Run again: nothing left to add.
    assert!(shared::store::table::add_missing_indexes(client, &table)
        .await
        .unwrap()
        .is_empty());
    // DynamoDB Local keeps a backfilled index CREATING and allows only 5 such tables at
    // once: a table left behind by each run would soon make the UpdateTable above fail.
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}
