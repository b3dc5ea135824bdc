//! One client per person: the email and the `external_user_id` name one client, whichever
//! a request carries, in whatever order they are first seen.

use crate::common::*;
use serde_json::{json, Value};
use shared::store::testing::keys;
use shared::Endpoint;

fn purchase(user: Value, amount: &str) -> Value {
    json!({"event": "user_purchased", "user": user, "event_timestamp": "2026-03-01T10:00:00Z",
           "properties": {"amount": amount, "currency": "USD"}})
}

impl TestOrg {
    async fn context(&self, external_user_id: &str) -> Value {
        let reply = self.read(Endpoint::UsersGet, &[external_user_id], "").await;
        reply.assert_status(200).clone()
    }

    /// The segment's users that have `email`.
    async fn listed_with_email(&self, email: &str) -> usize {
        let users = self.read_all(Endpoint::UsersList, &[], "", "users").await;
        users.iter().filter(|user| user["email"] == email).count()
    }

    /// A purchase by an email-only client, then the user that identifies it (created).
    async fn purchase_then_identify(&self, email: &str, external_user_id: &str, amount: &str) {
        self.call(Endpoint::Events, purchase(json!({"email": email}), amount))
            .await
            .assert_status(201);
        self.create_user(json!({"external_user_id": external_user_id, "email": email}))
            .await;
    }

    /// Sends until the answer is not a 503, as a client does with `Retry-After`.
    async fn call_until_stored(&self, endpoint: Endpoint, body: Value) -> Value {
        for _ in 0..10 {
            let reply = self.call(endpoint, body.clone()).await;
            if reply.status.as_u16() != 503 {
                return reply.assert_success().clone();
            }
        }
        panic!("still 503 after 10 attempts");
    }
}

#[tokio::test]
async fn an_email_only_mention_attaches_to_the_identified_client() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "id1", "email": "A@x.com", "name": "Ann"}))
        .await;
    let by_email = json!({"email": " a@X.com "});
    org.call(Endpoint::Events, purchase(by_email.clone(), "5.00"))
        .await
        .assert_status(201);
    org.call(
        Endpoint::SalesUpsert,
        json!({"sale_id": "s1", "date": "2026-03-01T00:00:00Z", "buyer": by_email}),
    )
    .await
    .assert_success();
    org.call(
        Endpoint::MessagesUpsert,
        json!({"message_id": "m1", "thread_id": "t1", "direction": "in",
               "sent_at": "2026-03-01T00:00:00Z", "contact": by_email}),
    )
    .await
    .assert_success();

    let context = org.context("id1").await;
    assert_eq!(context["user"]["name"], "Ann");
    assert_eq!(context["user"]["total_payments_count"], 1);
    assert_eq!(context["user"]["lifetime_value"], "5.00");
    assert_eq!(context["events"].as_array().unwrap().len(), 1);
    assert_eq!(context["sales"][0]["sale_id"], "s1");
    assert_eq!(context["conversations"][0]["thread_id"], "t1");
    assert_eq!(
        context["events"][0]["user"],
        json!({"external_user_id": "id1"})
    );
    assert_eq!(org.listed_with_email("a@x.com").await, 1);
}

#[tokio::test]
async fn a_client_identified_later_is_merged_once_with_its_history() {
    let org = TestOrg::new().await;
    let by_email = json!({"email": "late@x.com", "name": "From the widget", "phone": "+1"});
    org.call(Endpoint::Events, purchase(by_email.clone(), "10.00"))
        .await
        .assert_status(201);
    org.call(Endpoint::Events, purchase(by_email.clone(), "2.50"))
        .await
        .assert_status(201);
    org.call(
        Endpoint::BookingsUpsert,
        json!({"booking_id": "b1", "scheduled_at": "2026-04-01T10:00:00Z", "client": by_email}),
    )
    .await
    .assert_success();
    let identify = json!({"external_user_id": "id2", "email": "late@x.com", "name": "Lee"});
    for _ in 0..3 {
        // Repeated: the merge happens once.
        org.call(Endpoint::UsersUpsert, identify.clone())
            .await
            .assert_success();
    }
    org.call(
        Endpoint::Events,
        purchase(json!({"external_user_id": "id2"}), "1.00"),
    )
    .await
    .assert_status(201);

    let context = org.context("id2").await;
    let user = &context["user"];
    assert_eq!(user["name"], "Lee", "the identified profile wins");
    assert_eq!(
        user["phone"], "+1",
        "gaps are filled from the email-only record"
    );
    assert_eq!(user["total_payments_count"], 3);
    assert_eq!(user["revenue_by_currency"], json!({"USD": "13.50"}));
    assert_eq!(context["events"].as_array().unwrap().len(), 3);
    assert_eq!(context["bookings"][0]["booking_id"], "b1");
    assert_eq!(org.listed_with_email("late@x.com").await, 1);

    // Later email-only mentions go to the identified client.
    org.call(
        Endpoint::Events,
        purchase(json!({"email": "late@x.com"}), "1.00"),
    )
    .await
    .assert_status(201);
    assert_eq!(org.context("id2").await["user"]["total_payments_count"], 4);
}

#[tokio::test]
async fn mentions_racing_the_identifying_upsert_all_count_once() {
    let org = TestOrg::with_rate_limit(Some(1_000_000)).await;
    let by_email = json!({"email": "race@x.com"});
    org.call(Endpoint::Events, purchase(by_email.clone(), "1.00"))
        .await
        .assert_status(201);
    let mentions = (0..10).map(|i| {
        let event = json!({"event": "app_installed", "user": by_email,
                           "event_timestamp": format!("2026-03-01T10:00:0{i}Z")});
        org.call_until_stored(Endpoint::Events, event)
    });
    let identify = org.call_until_stored(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "id3", "email": "race@x.com"}),
    );
    let (_, _) = futures::join!(futures::future::join_all(mentions), identify);
    let user = &org.context("id3").await["user"];
    assert_eq!(user["install_count"], 10);
    assert_eq!(user["total_payments_count"], 1);
    assert_eq!(org.listed_with_email("race@x.com").await, 1);
}

#[tokio::test]
async fn an_email_of_another_identified_user_is_a_conflict_for_the_profile_only() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "owner", "email": "taken@x.com"}))
        .await;
    let reply = org
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "other", "email": "taken@x.com"}),
        )
        .await;
    reply.assert_error(409, "identity_conflict");
    assert_eq!(reply.param(), "email");
    org.read(Endpoint::UsersGet, &["other"], "")
        .await
        .assert_error(404, "user_not_found");

    // A fact naming `other` with the owner's email is stored under `other`, without the
    // email, and says so; in a batch item likewise.
    let other = json!({"external_user_id": "other", "email": "taken@x.com"});
    let at = "2026-03-01T10:00:00Z";
    let facts = [
        (
            Endpoint::SalesUpsert,
            "sale",
            "buyer",
            json!({"sale_id": "s", "total": "2.00", "buyer": other}),
        ),
        (
            Endpoint::Events,
            "event",
            "user",
            purchase(other.clone(), "3.00"),
        ),
        (
            Endpoint::MessagesUpsert,
            "message",
            "contact",
            json!({"message_id": "m", "thread_id": "t", "sent_at": at, "contact": other}),
        ),
        (
            Endpoint::ConversationsUpsert,
            "conversation",
            "contact",
            json!({"thread_id": "t2", "contact": other}),
        ),
        (
            Endpoint::BookingsUpsert,
            "booking",
            "client",
            json!({"booking_id": "b", "scheduled_at": at, "client": other}),
        ),
    ];
    for (endpoint, object, slot, body) in facts.clone() {
        let reply = org.call(endpoint, body).await;
        let body = reply.assert_status(201);
        assert_eq!(
            body["warnings"],
            json!([{"code": "email_conflict", "param": format!("{slot}.email"),
                    "message": body["warnings"][0]["message"]}]),
            "{object}: {body}"
        );
        assert!(body["warnings"][0]["message"].is_string());
        if let Some(user) = body.get(slot) {
            assert_eq!(user["external_user_id"], "other");
            assert!(user.get("email").is_none(), "{user}");
        }
    }
    let context = org.context("other").await;
    assert_eq!(context["user"]["lifetime_value"], "3.00");
    assert!(context["user"].get("email").is_none());
    assert_eq!(context["sales"].as_array().unwrap().len(), 1);
    assert_eq!(context["bookings"].as_array().unwrap().len(), 1);
    // The email still names its owner only.
    assert!(org.context("owner").await["user"]
        .get("lifetime_value")
        .is_none());
    let alias = org
        .store()
        .get(&keys::email_alias(
            &org.org_id,
            &"taken@x.com".parse().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alias["external_user_id"].as_s().unwrap(), "owner");

    // A client with its own email keeps it.
    org.create_user(json!({"external_user_id": "third", "email": "mine@x.com"}))
        .await;
    let third = json!({"external_user_id": "third", "email": "taken@x.com"});
    let reply = org
        .call(
            Endpoint::Batch,
            json!({"batch": [
                {"type": "sale", "sale_id": "s3", "buyer": third},
                {"type": "user", "external_user_id": "third", "email": "taken@x.com"},
            ]}),
        )
        .await;
    let results = &reply.assert_status(200)["results"];
    assert_eq!(results[0]["status"], 201, "{results}");
    assert_eq!(results[0]["warnings"][0]["code"], "email_conflict");
    assert_eq!(results[0]["warnings"][0]["param"], "buyer.email");
    assert_eq!(results[1]["status"], 409, "{results}");
    assert_eq!(results[1]["error"]["code"], "identity_conflict");
    assert_eq!(org.context("third").await["user"]["email"], "mine@x.com");
}

#[tokio::test]
async fn erasing_a_client_releases_every_email_it_claimed() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "u", "email": "first@x.com"}))
        .await;
    // A nested mention with another email claims that one too.
    org.call(
        Endpoint::Events,
        purchase(
            json!({"external_user_id": "u", "email": "second@x.com"}),
            "1.00",
        ),
    )
    .await
    .assert_status(201);
    let body = org.read(Endpoint::UsersDelete, &["u"], "").await;
    assert_eq!(body.assert_status(200)["complete"], true);
    for email in ["first@x.com", "second@x.com"] {
        let alias = keys::email_alias(&org.org_id, &email.parse().unwrap());
        assert_eq!(org.store().get(&alias).await, Ok(None), "{email}");
    }
    // Either email is free: another user takes it, and an email-only mention no longer
    // brings back the erased client.
    org.call(
        Endpoint::Events,
        purchase(json!({"email": "first@x.com"}), "2.00"),
    )
    .await
    .assert_status(201);
    org.read(Endpoint::UsersGet, &["u"], "")
        .await
        .assert_error(404, "user_not_found");
    org.create_user(json!({"external_user_id": "v", "email": "second@x.com"}))
        .await;
}

#[tokio::test]
async fn changing_a_users_email_moves_its_alias() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "mover", "email": "old@x.com"}))
        .await;
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "mover", "email": "new@x.com"}),
    )
    .await
    .assert_status(200);
    org.call(
        Endpoint::Events,
        purchase(json!({"email": "new@x.com"}), "3.00"),
    )
    .await
    .assert_status(201);
    org.call(
        Endpoint::Events,
        purchase(json!({"email": "old@x.com"}), "4.00"),
    )
    .await
    .assert_status(201);
    let user = &org.context("mover").await["user"];
    assert_eq!(user["email"], "new@x.com");
    assert_eq!(
        user["lifetime_value"], "3.00",
        "the old email names another client now"
    );
    // The old email is free: another user may take it.
    org.create_user(json!({"external_user_id": "taker", "email": "old@x.com"}))
        .await;
    assert_eq!(
        org.context("taker").await["user"]["lifetime_value"],
        "4.00",
        "and gets the email-only history"
    );
}

#[tokio::test]
async fn one_orgs_email_never_names_another_orgs_client() {
    let (first, second) = (TestOrg::new().await, TestOrg::new().await);
    first
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "same", "email": "shared@x.com"}),
        )
        .await
        .assert_status(201);
    second
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "elsewhere", "email": "shared@x.com"}),
        )
        .await
        .assert_status(201);
    second
        .call(
            Endpoint::Events,
            purchase(json!({"email": "shared@x.com"}), "9.00"),
        )
        .await
        .assert_status(201);
    assert_eq!(
        second.context("elsewhere").await["user"]["lifetime_value"],
        "9.00"
    );
    assert!(first.context("same").await["user"]
        .get("lifetime_value")
        .is_none());
}

#[tokio::test]
async fn erasing_a_client_erases_its_merged_email_history_and_alias() {
    let org = TestOrg::new().await;
    org.purchase_then_identify("gone@x.com", "gone", "1.00")
        .await;
    let reply = org.read(Endpoint::UsersDelete, &["gone"], "").await;
    let body = reply.assert_status(200);
    assert_eq!(body["complete"], true);
    assert_eq!(body["deleted"]["events"], 1);
    org.read(Endpoint::UsersGet, &["gone"], "")
        .await
        .assert_error(404, "user_not_found");
    assert_eq!(org.listed_with_email("gone@x.com").await, 0);
    // The email names nobody now: a new mention starts a new email-only client.
    org.purchase_then_identify("gone@x.com", "gone", "2.00")
        .await;
    assert_eq!(org.context("gone").await["user"]["lifetime_value"], "2.00");
}

#[tokio::test]
async fn a_retry_after_the_erasure_does_not_bring_the_client_back() {
    let org = TestOrg::new().await;
    let event = json!({"event": "app_installed", "event_timestamp": "2026-03-01T10:00:00Z",
                       "user": {"external_user_id": "er1", "email": "er1@x.com", "name": "Erin"}});
    let headers = [("idempotency-key", "er1-install")];
    org.call_with(Endpoint::Events, &headers, event.to_string())
        .await
        .assert_status(201);
    org.read(Endpoint::UsersDelete, &["er1"], "")
        .await
        .assert_status(200);
    for _ in 0..2 {
        let reply = org
            .call_with(Endpoint::Events, &headers, event.to_string())
            .await;
        reply.assert_error(410, "client_erased");
        assert_eq!(reply.param(), "Idempotency-Key");
    }
    org.read(Endpoint::UsersGet, &["er1"], "")
        .await
        .assert_error(404, "user_not_found");
    // What erasure leaves: the key's tombstone, with no personal data, and no alias.
    let email = "er1@x.com".parse().unwrap();
    let alias = org.stored(&keys::email_alias(&org.org_id, &email)).await;
    assert!(alias.is_none(), "{alias:?}");
    let mut key_header = lambda_http::http::HeaderMap::new();
    key_header.insert("idempotency-key", "er1-install".parse().unwrap());
    let key = shared::idempotency::IdempotencyKey::from_headers(&key_header)
        .unwrap()
        .unwrap();
    let tombstone = org
        .stored(&keys::event(&org.org_id, &key.event_id()))
        .await
        .expect("a tombstone")
        .to_string();
    assert!(tombstone.contains("erased_event"), "{tombstone}");
    for personal in ["Erin", "er1@x.com", "er1\"", "app_installed"] {
        assert!(!tombstone.contains(personal), "{tombstone}");
    }
    // New data after the erasure is a new client.
    org.call(Endpoint::Events, event.clone())
        .await
        .assert_status(201);
    assert_eq!(org.context("er1").await["user"]["install_count"], 1);
}

#[tokio::test]
async fn a_client_known_by_email_is_read_and_erased_by_its_email() {
    let org = TestOrg::new().await;
    let at = |email: &str| format!("/api/developer/users/email/{email}/");
    org.call(
        Endpoint::Events,
        purchase(json!({"email": "only@x.com", "name": "O"}), "2.00"),
    )
    .await
    .assert_status(201);
    let reply = org
        .read_at(Endpoint::UsersGet, &at("ONLY%40x.com"), "")
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["user"]["name"], "O");
    assert_eq!(body["user"]["lifetime_value"], "2.00");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);

    // An identified user's email names that user.
    org.create_user(json!({"external_user_id": "named", "email": "named@x.com", "name": "N"}))
        .await;
    let reply = org
        .read_at(Endpoint::UsersGet, &at("named@x.com"), "")
        .await;
    assert_eq!(
        reply.assert_status(200)["user"]["external_user_id"],
        "named"
    );
    org.read_at(Endpoint::UsersGet, &at("nobody@x.com"), "")
        .await
        .assert_error(404, "user_not_found");
    org.read_at(Endpoint::UsersGet, &at("not-an-email"), "")
        .await
        .assert_error(400, "invalid_field");

    let reply = org
        .read_at(Endpoint::UsersDelete, &at("only@x.com"), "")
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["deleted"]["user"], 1);
    assert_eq!(body["deleted"]["events"], 1);
    org.read_at(Endpoint::UsersGet, &at("only@x.com"), "")
        .await
        .assert_error(404, "user_not_found");
}

#[tokio::test]
async fn a_replayed_event_claims_no_email() {
    let org = TestOrg::new().await;
    let event = json!({"event": "app_installed", "event_timestamp": "2026-03-01T10:00:00Z",
                       "user": {"external_user_id": "rp1", "email": "first@x.com"}});
    let headers = [("idempotency-key", "rp1-install")];
    org.call_with(Endpoint::Events, &headers, event.to_string())
        .await
        .assert_status(201);
    // The user moves to another email: the first one names nobody now.
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "rp1", "email": "second@x.com"}),
    )
    .await
    .assert_status(200);
    let reply = org
        .call_with(Endpoint::Events, &headers, event.to_string())
        .await;
    reply.assert_status(201);
    assert_eq!(reply.headers["idempotent-replayed"], "true");
    // The replay is answered before identity is resolved: the old email stays free.
    let email = "first@x.com".parse().unwrap();
    let alias = org.stored(&keys::email_alias(&org.org_id, &email)).await;
    assert!(alias.is_none(), "{alias:?}");
    org.create_user(json!({"external_user_id": "rp2", "email": "first@x.com"}))
        .await;
    assert_eq!(org.context("rp1").await["user"]["email"], "second@x.com");
}

#[tokio::test]
async fn a_replay_warns_as_its_first_answer_did() {
    let org = TestOrg::new().await;
    org.create_user(json!({"external_user_id": "owner", "email": "taken@x.com"}))
        .await;
    let event = json!({"event": "app_opened", "event_timestamp": "2026-03-01T10:00:00Z",
                       "user": {"external_user_id": "other", "email": "taken@x.com"}});
    let headers = [("idempotency-key", "warned-1")];
    for replay in [false, true] {
        let reply = org
            .call_with(Endpoint::Events, &headers, event.to_string())
            .await;
        let body = reply.assert_status(201);
        assert_eq!(body["warnings"][0]["code"], "email_conflict", "{body}");
        assert_eq!(body["warnings"][0]["param"], "user.email");
        assert_eq!(reply.headers.contains_key("idempotent-replayed"), replay);
    }
}
