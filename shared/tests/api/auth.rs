use crate::common::*;
use serde_json::json;
use shared::admin;
use shared::Endpoint;

#[tokio::test]
async fn health_needs_no_key_and_reports_the_version() {
    let org = TestOrg::new().await;
    let request = lambda_http::http::Request::builder()
        .method("GET")
        .uri(Endpoint::Health.path())
        .body(lambda_http::Body::Empty)
        .unwrap();
    let reply = send(&org.app, Endpoint::Health, request).await;
    let body = reply.assert_status(200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["api_version"], shared::handlers::API_VERSION);
}

#[tokio::test]
async fn me_returns_the_org_and_key_metadata() {
    let org = TestOrg::new().await;
    let reply = org
        .call_with(Endpoint::Me, &[], lambda_http::Body::Empty)
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["org"]["id"], org.org_id.as_str());
    assert_eq!(body["org"]["name"], org.org_id.as_str());
    assert_eq!(body["api_key"]["id"], org.key_id.as_str());
    assert_eq!(body["api_key"]["name"], "test key");
    assert!(org
        .secret
        .starts_with(body["api_key"]["prefix"].as_str().unwrap()));
    assert!(body["api_key"]["created_at"].is_string());
    assert_eq!(
        body["api_key"]["rate_limit"],
        shared::ratelimit::DEFAULT_RATE_LIMIT
    );
    assert!(
        !body.to_string().contains(&org.secret),
        "the secret is never echoed"
    );
}

#[tokio::test]
async fn missing_or_non_bearer_authorization_is_missing_authorization() {
    let org = TestOrg::new().await;
    for header in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer "),
        Some(org.secret.as_str()),
    ] {
        let mut builder = lambda_http::http::Request::builder()
            .method("GET")
            .uri(Endpoint::Me.path());
        if let Some(value) = header {
            builder = builder.header("authorization", value);
        }
        let reply = send(
            &org.app,
            Endpoint::Me,
            builder.body(lambda_http::Body::Empty).unwrap(),
        )
        .await;
        reply.assert_error(401, "missing_authorization");
    }
}

#[tokio::test]
async fn unknown_malformed_or_tampered_keys_are_invalid() {
    let org = TestOrg::new().await;
    let tampered = tampered(&org.secret);
    let unknown = shared::auth::generate_secret("live").secret;
    for secret in ["nope", unknown.as_str(), tampered.as_str()] {
        let request = lambda_http::http::Request::builder()
            .method("POST")
            .uri(Endpoint::UsersUpsert.path())
            .header("authorization", format!("Bearer {secret}"))
            .body(lambda_http::Body::from(
                json!({"external_user_id": "u"}).to_string(),
            ))
            .unwrap();
        let reply = send(&org.app, Endpoint::UsersUpsert, request).await;
        reply.assert_error(401, "invalid_api_key");
        assert!(!reply.body.to_string().contains(secret));
    }
}

#[tokio::test]
async fn keys_are_stored_only_as_a_hash() {
    let org = TestOrg::new().await;
    let item = org
        .store()
        .get(&shared::store::testing::keys::api_key(&org.key_id))
        .await
        .unwrap()
        .unwrap();
    let stored = format!("{item:?}");
    assert!(!stored.contains(&org.secret));
    assert!(stored.contains(&shared::auth::hash_secret(&org.secret)));
}

#[tokio::test]
async fn a_revoked_key_is_refused_once_the_cache_expires() {
    let org = TestOrg::new().await;
    org.call_with(Endpoint::Me, &[], lambda_http::Body::Empty)
        .await
        .assert_status(200);
    admin::revoke_key(org.store(), &org.key_id).await.unwrap();
    me_from_fresh_instance(org.store(), &org.secret)
        .await
        .assert_error(401, "invalid_api_key");
    let error = admin::revoke_key(org.store(), &org.key_id)
        .await
        .unwrap_err();
    assert!(matches!(error, admin::AdminError::AlreadyRevoked(_)));
}

#[tokio::test]
async fn a_rotated_key_works_during_its_grace_period_only() {
    let org = TestOrg::new().await;
    let grace = std::time::Duration::from_secs(2);
    let (new_key, _) = admin::rotate_key(org.store(), &org.key_id, grace)
        .await
        .unwrap();
    me_from_fresh_instance(org.store(), &org.secret)
        .await
        .assert_status(200);
    let reply = me_from_fresh_instance(org.store(), &new_key.key).await;
    let body = reply.assert_status(200);
    assert_eq!(body["api_key"]["name"], "test key");
    assert_eq!(body["org"]["id"], org.org_id.as_str());
    tokio::time::sleep(grace + std::time::Duration::from_millis(100)).await;
    me_from_fresh_instance(org.store(), &org.secret)
        .await
        .assert_error(401, "invalid_api_key");
    me_from_fresh_instance(org.store(), &new_key.key)
        .await
        .assert_status(200);
}
