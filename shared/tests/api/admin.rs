//! The key administration library behind the `admin` CLI, against DynamoDB Local.

use crate::common::*;
use shared::admin::{self, AdminError};
use shared::Endpoint;

#[tokio::test]
async fn orgs_are_created_once_and_listed() {
    let store = store().await;
    let id = unique("acme");
    let org = admin::create_org(&store, &id, "Acme Labs").await.unwrap();
    assert_eq!(org.name, "Acme Labs");
    assert!(matches!(
        admin::create_org(&store, &id, "Again").await,
        Err(AdminError::OrgExists(_))
    ));
    let listed = admin::list_orgs(&store).await.unwrap();
    assert!(listed.iter().any(|o| o.id == id && o.name == "Acme Labs"));
    for bad in ["", "Acme", "a#b", "a b", &"x".repeat(65)] {
        assert!(
            matches!(
                admin::create_org(&store, bad, "x").await,
                Err(AdminError::BadOrgId(_))
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn keys_need_an_existing_org_unless_asked_to_create_it() {
    let store = store().await;
    let id = unique("nobody");
    let error = admin::create_key(&store, &id, "k", false, "live")
        .await
        .unwrap_err();
    assert!(matches!(error, AdminError::NoSuchOrg(_)));
    assert!(error.to_string().contains("--create-org"));
    let key = admin::create_key(&store, &id, "k", true, "live")
        .await
        .unwrap();
    assert!(key.key.starts_with(&format!("{}_", key.prefix)));
    assert!(key.prefix.starts_with("dfk_live_"));
    assert_eq!(key.org_id, id);
}

#[tokio::test]
async fn listing_keys_never_shows_a_secret_or_hash() {
    let org = TestOrg::new().await;
    let second = admin::create_key(org.store(), &org.org_id, "Android app", false, "live")
        .await
        .unwrap();
    let keys = admin::list_keys(org.store(), &org.org_id).await.unwrap();
    assert_eq!(keys.len(), 2);
    let listed = serde_json::to_string(&keys).unwrap();
    for secret in [&org.secret, &second.key] {
        assert!(!listed.contains(secret.as_str()));
        assert!(!listed.contains(&shared::auth::hash_secret(secret)));
    }
    assert!(keys
        .iter()
        .any(|k| k.name == "Android app" && k.revoked_at.is_none()));
    assert!(matches!(
        admin::list_keys(org.store(), &unique("none")).await,
        Err(AdminError::NoSuchOrg(_))
    ));
}

#[tokio::test]
async fn unknown_keys_cannot_be_revoked_or_rotated() {
    let store = store().await;
    let missing = "0123456789abcdef";
    assert!(matches!(
        admin::revoke_key(&store, missing).await,
        Err(AdminError::NoSuchKey(_))
    ));
    let error = admin::rotate_key(&store, missing, std::time::Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(error, AdminError::NoSuchKey(_)));
}

#[tokio::test]
async fn use_is_recorded_at_most_once_per_interval_per_instance() {
    let org = TestOrg::new().await;
    for _ in 0..3 {
        org.call_with(Endpoint::Me, &[], lambda_http::Body::Empty)
            .await
            .assert_status(200);
    }
    let mut last_used = None;
    for _ in 0..50 {
        let keys = admin::list_keys(org.store(), &org.org_id).await.unwrap();
        last_used = keys[0].last_used_at.clone();
        if last_used.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let first = last_used.expect("last_used_at recorded");
    org.call_with(Endpoint::Me, &[], lambda_http::Body::Empty)
        .await
        .assert_status(200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let keys = admin::list_keys(org.store(), &org.org_id).await.unwrap();
    assert_eq!(
        keys[0].last_used_at.as_ref(),
        Some(&first),
        "no second write within the interval"
    );
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_one_clear_error() {
    let store = unreachable_store();
    let error = admin::create_key(&store, "acme", "k", false, "live")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("unreachable") && !message.contains('\n'),
        "{message}"
    );
}

/// A rotation must never revive a key: an expired or revoked key is refused and no
/// replacement is created; a key already in a grace period keeps its earlier end.
#[tokio::test]
async fn rotation_refuses_expired_and_revoked_keys_and_never_extends_one() {
    let org = TestOrg::new().await;
    let store = org.store();
    let keys_now = || async { admin::list_keys(store, &org.org_id).await.unwrap().len() };

    let expiring = admin::create_key(store, &org.org_id, "expiring", false, "test")
        .await
        .unwrap();
    admin::expire_key_after(store, &expiring.key_id, std::time::Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let before = keys_now().await;
    let error = admin::rotate_key(
        store,
        &expiring.key_id,
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, AdminError::AlreadyExpired(_)), "{error}");
    assert_eq!(keys_now().await, before, "no replacement key");
    assert!(!admin::verify_secret(store, &expiring.key).await.unwrap());
    // Nor can the expiry be moved again by hand.
    assert!(matches!(
        admin::expire_key_after(store, &expiring.key_id, std::time::Duration::from_secs(60)).await,
        Err(AdminError::AlreadyExpired(_))
    ));

    let revoked = admin::create_key(store, &org.org_id, "revoked", false, "test")
        .await
        .unwrap();
    admin::revoke_key(store, &revoked.key_id).await.unwrap();
    let before = keys_now().await;
    assert!(matches!(
        admin::rotate_key(store, &revoked.key_id, std::time::Duration::from_secs(60)).await,
        Err(AdminError::AlreadyRevoked(_))
    ));
    assert_eq!(keys_now().await, before);

    let (_, first_end) = admin::rotate_key(store, &org.key_id, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let (_, second_end) =
        admin::rotate_key(store, &org.key_id, std::time::Duration::from_secs(86_400))
            .await
            .unwrap();
    assert_eq!(
        second_end, first_end,
        "a second rotation never extends the grace"
    );
    assert!(admin::verify_secret(store, &org.secret).await.unwrap());
}
