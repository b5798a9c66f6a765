use axum::http::StatusCode;

use crate::helpers::spawn;

#[tokio::test]
async fn events_list_newest_first_with_limit_type_and_cursor() {
    let em = spawn().await;
    em.customer().await;
    let pi = em.paid_intent("1000").await;
    let id = pi["id"].as_str().unwrap();

    let all = em.get("/v1/events").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body["object"], "list");
    assert_eq!(all.body["url"], "/v1/events");
    assert_eq!(all.body["has_more"], false);
    let types: Vec<&str> = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "payment_intent.succeeded",
            "charge.succeeded",
            "payment_intent.created",
            "customer.created"
        ]
    );

    let limited = em.get("/v1/events?limit=2").await.body;
    assert_eq!(limited["data"].as_array().unwrap().len(), 2);
    assert_eq!(limited["has_more"], true);
    let last = limited["data"][1]["id"].as_str().unwrap();
    let next = em
        .get(&format!("/v1/events?limit=2&starting_after={last}"))
        .await
        .body;
    assert_eq!(next["data"][0]["type"], "payment_intent.created");
    assert_eq!(next["has_more"], false);

    let succeeded = em
        .get("/v1/events?type=payment_intent.succeeded")
        .await
        .body;
    assert_eq!(succeeded["data"].as_array().unwrap().len(), 1);
    assert_eq!(succeeded["data"][0]["data"]["object"]["id"], id);
    let wildcard = em.get("/v1/events?type=payment_intent.*").await.body;
    assert_eq!(wildcard["data"].as_array().unwrap().len(), 2);

    let event_id = succeeded["data"][0]["id"].as_str().unwrap();
    assert!(event_id.starts_with("evt_"));
    let one = em.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body, succeeded["data"][0]);
    assert_eq!(one.body["api_version"], "2024-06-20");
    assert_eq!(one.body["livemode"], false);
    assert_eq!(one.body["pending_webhooks"], 0);

    let missing = em.get("/v1/events/evt_nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body["error"]["message"],
        "No such event: 'evt_nope'"
    );
    assert_eq!(
        em.get("/v1/events?limit=101").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        em.get("/v1/events?limit=x").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        em.get("/v1/events?colour=red").await.error_code(),
        "parameter_unknown"
    );
    assert_eq!(
        em.get("/v1/events?starting_after=evt_nope")
            .await
            .error_code(),
        "resource_missing"
    );
}
