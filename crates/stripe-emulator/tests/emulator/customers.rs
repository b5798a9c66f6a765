use axum::http::StatusCode;

use crate::helpers::spawn;

#[tokio::test]
async fn create_and_retrieve_a_customer() {
    let em = spawn().await;
    let created = em
        .post(
            "/v1/customers",
            &[
                ("email", "taro@example.jp"),
                ("name", "山田太郎"),
                ("metadata[kessai_user_id]", "7"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let customer = created.body;
    let id = customer["id"].as_str().unwrap();
    assert!(id.starts_with("cus_") && id.len() == 18, "{id}");
    assert_eq!(customer["object"], "customer");
    assert_eq!(customer["email"], "taro@example.jp");
    assert_eq!(customer["name"], "山田太郎");
    assert_eq!(customer["metadata"]["kessai_user_id"], "7");
    assert_eq!(customer["livemode"], false);

    let fetched = em.get(&format!("/v1/customers/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, customer);
    assert_eq!(em.event_types(), vec!["customer.created"]);
    assert_eq!(em.emulator.events()[0]["data"]["object"], customer);
}

#[tokio::test]
async fn customer_errors() {
    let em = spawn().await;
    let missing = em.get("/v1/customers/cus_nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "resource_missing");
    assert_eq!(
        missing.body["error"]["message"],
        "No such customer: 'cus_nope'"
    );

    let bad_email = em.post("/v1/customers", &[("email", "not an email")]).await;
    assert_eq!(bad_email.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_email.error_code(), "email_invalid");
    assert_eq!(bad_email.body["error"]["param"], "email");

    let unknown = em
        .post("/v1/customers", &[("email", "a@b.jp"), ("bogus", "1")])
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.error_code(), "parameter_unknown");
    assert_eq!(
        unknown.body["error"]["message"],
        "Received unknown parameter: bogus"
    );
    assert_eq!(unknown.body["error"]["param"], "bogus");
    assert!(em.emulator.events().is_empty());
}
