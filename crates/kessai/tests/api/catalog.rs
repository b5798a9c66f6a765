use std::io::Write;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with, Backend, TestApp};
use crate::on_both_backends;

async fn the_demo_catalog_is_on_sale(app: TestApp) {
    let response = app.get("/api/products", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let products = body["products"].as_array().unwrap();
    assert!(products.len() >= 3);
    for product in products {
        assert!(product["id"].as_i64().is_some());
        assert!(!product["name"].as_str().unwrap().is_empty());
        assert!(product["price"].as_i64().unwrap() > 0);
        assert_eq!(product["currency"], "jpy");
    }
}

on_both_backends!(the_demo_catalog_is_on_sale);

#[tokio::test]
async fn a_catalog_file_replaces_the_demo_catalog() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        r#"{{"products": [
            {{"sku": "mug", "name": "マグカップ", "price": 1800, "currency": "jpy"}},
            {{"sku": "retired", "name": "旧商品", "price": 100, "currency": "jpy", "active": false}}
        ]}}"#
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_string();
    let app = spawn_app_with(Backend::Sqlite, &[("CATALOG_FILE", &path)]).await;
    let body: Value = app.get("/api/products", None).await.json().await.unwrap();
    let names: Vec<&str> = body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["マグカップ"]);

    // The inactive product cannot be ordered.
    let user = app.new_user().await;
    let response = app
        .create_order(&user.token, json!([{"product_id": 2, "quantity": 1}]))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "product_not_found").await;
}
