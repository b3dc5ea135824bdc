//! Request-level errors shared by every endpoint: bad JSON, big bodies, wrong methods.

use crate::common::*;
use lambda_http::Body;
use serde_json::json;
use shared::Endpoint;

fn write_endpoints() -> impl Iterator<Item = Endpoint> {
    Endpoint::ALL.into_iter().filter(|e| e.method() == "POST")
}

#[tokio::test]
async fn malformed_json_is_invalid_json_on_every_endpoint() {
    let org = TestOrg::new().await;
    let bodies: [&[u8]; 6] = [
        b"{",
        b"",
        b"{\"a\": }",
        b"[1,2]",
        b"\"text\"",
        b"\xff\xfe{}",
    ];
    for endpoint in write_endpoints() {
        for body in bodies {
            let reply = org
                .call_with(endpoint, &[], Body::from(body.to_vec()))
                .await;
            reply.assert_error(400, "invalid_json");
        }
    }
}

#[tokio::test]
async fn huge_bodies_are_payload_too_large() {
    let org = TestOrg::new().await;
    for endpoint in write_endpoints() {
        // batch/ takes up to 1 MiB.
        let limit = match endpoint {
            Endpoint::Batch => shared::batch::MAX_BATCH_BODY_BYTES,
            _ => shared::http::MAX_BODY_BYTES,
        };
        let huge = json!({"external_user_id": "u", "name": "x".repeat(limit)});
        let reply = org.call(endpoint, huge).await;
        reply.assert_error(413, "payload_too_large");
    }
}

#[tokio::test]
async fn long_strings_and_big_metadata_are_rejected_before_storage() {
    let org = TestOrg::new().await;
    let reply = org
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "u", "name": "x".repeat(1001)}),
        )
        .await;
    reply.assert_error(400, "invalid_field");
    assert_eq!(reply.param(), "name");
    let reply = org
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "x".repeat(257)}),
        )
        .await;
    reply.assert_error(400, "invalid_field");
    let big = json!({"external_user_id": "u", "metadata": {"blob": "x".repeat(20_000)}});
    org.call(Endpoint::UsersUpsert, big)
        .await
        .assert_error(400, "invalid_field");
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let org = TestOrg::new().await;
    for endpoint in shared::Endpoint::ALL {
        let wrong = if endpoint.method() == "GET" {
            "DELETE"
        } else {
            "GET"
        };
        let request = lambda_http::http::Request::builder()
            .method(wrong)
            .uri(endpoint.path())
            .header("authorization", format!("Bearer {}", org.secret))
            .body(Body::Empty)
            .unwrap();
        let reply = send(&org.app, endpoint, request).await;
        reply.assert_error(405, "method_not_allowed");
        assert_eq!(reply.headers["allow"], endpoint.method_name());
    }
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let org = TestOrg::new().await;
    let reply = org
        .call(
            Endpoint::ProductsUpsert,
            json!({"external_product_id": "p", "colour": "red"}),
        )
        .await;
    let body = reply.assert_status(201);
    assert!(body["product"].get("colour").is_none());
}

#[tokio::test]
async fn storage_outages_are_503_with_retry_after_and_no_detail() {
    let org = TestOrg::new().await;
    let down = shared::http::App::new(unreachable_store());
    let request = lambda_http::http::Request::builder()
        .method("POST")
        .uri(Endpoint::UsersUpsert.path())
        .header("authorization", format!("Bearer {}", org.secret))
        .body(Body::from(json!({"external_user_id": "u"}).to_string()))
        .unwrap();
    let reply = send(&down, Endpoint::UsersUpsert, request).await;
    reply.assert_error(503, "storage_unavailable");
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(!reply.body.to_string().contains("127.0.0.1"));
}

#[tokio::test]
async fn paths_with_and_without_the_trailing_slash_work_and_longer_ones_are_404() {
    let org = TestOrg::new().await;
    let post = |uri: &'static str| {
        let request = lambda_http::http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("authorization", format!("Bearer {}", org.secret))
            .body(Body::from(json!({"external_product_id": "p"}).to_string()))
            .unwrap();
        send(&org.app, Endpoint::ProductsUpsert, request)
    };
    for documented in [
        "/api/developer/products/upsert",
        "/api/developer/products/upsert/",
    ] {
        assert!(post(documented).await.status.is_success(), "{documented}");
    }
    post("/api/developer/products/upsert/extra")
        .await
        .assert_error(404, "not_found");
}
