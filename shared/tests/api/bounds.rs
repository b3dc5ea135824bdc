//! A client item never grows toward DynamoDB's 400 KB item limit: what it keeps per currency
//! and per merged email-only record is bounded, and what is past a bound is refused with a
//! documented 4xx before anything is written, never a 500.

use crate::common::*;
use serde_json::{json, Value};
use shared::store::identity::MAX_MERGED_IDENTITIES;
use shared::Endpoint;

fn purchase(user: Value, amount: &str, currency: &str) -> Value {
    json!({"event": "user_purchased", "user": user, "event_timestamp": "2026-03-01T10:00:00Z",
           "properties": {"amount": amount, "currency": currency}})
}

/// Revenue is kept per ISO 4217 currency: a code outside the standard (any three letters
/// made a counter until now) is a 400 naming the field, and nothing is stored.
#[tokio::test]
async fn a_currency_outside_iso_4217_is_refused_before_anything_is_written() {
    let org = TestOrg::new().await;
    let user = unique("usr");
    for code in ["ABC", "QQQ", "ZZZ"] {
        let reply = org
            .call(
                Endpoint::Events,
                purchase(json!({"external_user_id": user}), "1.00", code),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), "properties.currency");
    }
    assert_eq!(org.count_events(&user).await, 0);
    let sale = json!({"sale_id": unique("sale"), "total": "5.00", "currency": "QQQ",
                      "buyer": {"external_user_id": user}});
    let reply = org.call(Endpoint::SalesUpsert, sale).await;
    reply.assert_error(400, "invalid_field");
    assert_eq!(reply.param(), "currency");
    // Real codes in any case still count, each in its own currency.
    for code in ["usd", "JPY", "Eur", "XXX"] {
        org.call(
            Endpoint::Events,
            purchase(json!({"external_user_id": user}), "2.00", code),
        )
        .await
        .assert_status(201);
    }
    let stored = org.stored_user(&user).await;
    assert_eq!(stored["total_payments_count"], 4, "{stored}");
}

/// At most MAX_MERGED_IDENTITIES email-only records merge into one client; the next is a
/// 409 `too_many_identities`: its email is not claimed, the email-only record keeps its
/// history, and email-only mentions still reach it.
#[tokio::test]
async fn merged_identities_are_bounded_and_past_the_bound_nothing_is_lost() {
    let org = TestOrg::new().await;
    let user = unique("usr");
    let email = |n: usize| format!("{user}-{n}@bounds.example");
    for n in 0..=MAX_MERGED_IDENTITIES {
        org.call(
            Endpoint::Events,
            purchase(json!({"email": email(n)}), "1.00", "USD"),
        )
        .await
        .assert_status(201);
    }
    for n in 0..MAX_MERGED_IDENTITIES {
        let reply = org
            .call(
                Endpoint::UsersUpsert,
                json!({"external_user_id": user, "email": email(n)}),
            )
            .await;
        assert!(reply.status.is_success(), "{n}: {}", reply.body);
    }
    let past = email(MAX_MERGED_IDENTITIES);
    let reply = org
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": user, "email": past}),
        )
        .await;
    reply.assert_error(409, "too_many_identities");
    assert_eq!(reply.param(), "email");
    let client = org.stored_user(&user).await;
    assert_eq!(
        client["total_payments_count"], MAX_MERGED_IDENTITIES,
        "{client}"
    );
    assert_eq!(client["email"], email(MAX_MERGED_IDENTITIES - 1));

    // A fact naming the client with that email is kept, under the client, with a warning.
    let event = purchase(
        json!({"external_user_id": user, "email": past}),
        "3.00",
        "USD",
    );
    let reply = org.call(Endpoint::Events, event).await;
    let stored = reply.assert_status(201);
    assert_eq!(
        stored["warnings"][0]["code"], "too_many_identities",
        "{stored}"
    );
    assert_eq!(stored["warnings"][0]["param"], "user.email");
    let client = org.stored_user(&user).await;
    assert_eq!(client["total_payments_count"], MAX_MERGED_IDENTITIES + 1);

    // The email-only record past the bound is whole and still named by its email.
    org.call(
        Endpoint::Events,
        purchase(json!({"email": past}), "1.00", "USD"),
    )
    .await
    .assert_status(201);
    let path = format!("/api/developer/users/email/{past}/");
    let email_only = org.read_at(Endpoint::UsersGet, &path, "").await;
    let email_only = email_only.assert_status(200);
    assert_eq!(
        email_only["user"]["total_payments_count"], 2,
        "{email_only}"
    );
}
