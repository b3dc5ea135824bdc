use crate::common::*;
use serde_json::json;
use shared::Endpoint;

#[tokio::test]
async fn a_sale_upserts_its_buyer_and_product() {
    let org = TestOrg::new().await;
    let sale = json!({
        "sale_id": "order_1001",
        "date": "2026-03-23T16:45:00Z",
        "quantity": 2,
        "total": "58.00",
        "buyer": { "external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe" },
        "product": { "external_product_id": "prod_roman_pro", "sku": "ROMAN-PRO", "title": "Roman Pro", "currency": "USD", "price": "29.00" }
    });
    let reply = org.call(Endpoint::SalesUpsert, sale.clone()).await;
    let body = reply.assert_status(201);
    assert_eq!(body["sale"]["sale_id"], "order_1001");
    assert_eq!(body["sale"]["total"], "58.00");
    assert_eq!(body["sale"]["quantity"], 2);
    assert_eq!(
        body["sale"]["buyer"],
        json!({"external_user_id": "usr_123"})
    );
    assert_eq!(body["sale"]["external_product_id"], "prod_roman_pro");
    assert_eq!(body["buyer"]["name"], "John Doe");
    assert_eq!(body["product"]["price"], "29.00");

    let again = org
        .call(
            Endpoint::SalesUpsert,
            json!({"sale_id": "order_1001", "quantity": 3}),
        )
        .await;
    let body = again.assert_status(200);
    assert_eq!(body["sale"]["quantity"], 3);
    assert_eq!(body["sale"]["total"], "58.00");

    // The buyer is the same client record users/upsert writes.
    let user = org
        .call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "usr_123", "plan": "pro"}),
        )
        .await;
    assert_eq!(user.assert_status(200)["user"]["name"], "John Doe");
}

#[tokio::test]
async fn sale_errors() {
    let org = TestOrg::new().await;
    org.call(Endpoint::SalesUpsert, json!({"total": "1.00"}))
        .await
        .assert_error(400, "missing_sale_identity");
    let reply = org
        .call(
            Endpoint::SalesUpsert,
            json!({"sale_id": "o", "buyer": {"name": "n"}}),
        )
        .await;
    reply.assert_error(400, "missing_user_identity");
    assert_eq!(reply.param(), "buyer.external_user_id");
    let reply = org
        .call(
            Endpoint::SalesUpsert,
            json!({"sale_id": "o", "product": {"sku": "x"}}),
        )
        .await;
    reply.assert_error(400, "missing_product_identity");
    for (field, value) in [
        ("total", json!(58)),
        ("quantity", json!(-2)),
        ("date", json!("yesterday")),
    ] {
        let reply = org
            .call(Endpoint::SalesUpsert, json!({"sale_id": "o", field: value}))
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field);
    }
    let reply = org
        .call(
            Endpoint::SalesUpsert,
            json!({"sale_id": "o", "product": {"external_product_id": "p", "price": "x"}}),
        )
        .await;
    assert_eq!(reply.param(), "product.price");
}

#[tokio::test]
async fn products_are_upserted_with_types() {
    let org = TestOrg::new().await;
    let product = json!({
        "external_product_id": "prod_roman_pro", "sku": "ROMAN-PRO", "title": "Roman Pro", "type": "product",
        "description": "Training app for modern athletes.", "short_description": "Roman mobile training",
        "currency": "USD", "price": "29.00", "sale_price": "19.00", "cost_price": "3.10",
        "approx_duration_minutes": 0, "is_active": true
    });
    let body = org
        .call(Endpoint::ProductsUpsert, product)
        .await
        .assert_status(201)
        .clone();
    assert_eq!(body["product"]["type"], "product");
    assert_eq!(body["product"]["sale_price"], "19.00");
    let body = org
        .call(
            Endpoint::ProductsUpsert,
            json!({"external_product_id": "prod_roman_pro", "is_active": false}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["product"]["is_active"], false);
    assert_eq!(body["product"]["title"], "Roman Pro");
    for (field, value) in [
        ("type", json!("gift")),
        ("price", json!("free")),
        ("currency", json!("US")),
        ("is_active", json!("yes")),
        ("approx_duration_minutes", json!(-5)),
    ] {
        let reply = org
            .call(
                Endpoint::ProductsUpsert,
                json!({"external_product_id": "p", field: value}),
            )
            .await;
        reply.assert_error(400, "invalid_field");
        assert_eq!(reply.param(), field);
    }
    org.call(Endpoint::ProductsUpsert, json!({"title": "x"}))
        .await
        .assert_error(400, "missing_product_identity");
}
