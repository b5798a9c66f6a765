use axum::http::StatusCode;

use crate::helpers::spawn;

#[tokio::test]
async fn the_page_shows_the_amount_and_escapes_what_it_echoes() {
    let em = spawn().await;
    let pi = em
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "16500"),
                ("currency", "jpy"),
                ("description", "<script>alert(\"x\")</script> & 'co'"),
            ],
        )
        .await
        .body;
    let secret = pi["client_secret"].as_str().unwrap();
    let response = em
        .http
        .get(em.url(&format!("/checkout/{secret}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers.get("request-id").is_some());
    let html = response.text().await.unwrap();
    assert!(html.contains("¥16,500"), "amount");
    assert!(html.contains("JPY"));
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;"));
    assert!(!html.contains("<script>alert"));
    for card in [
        "4242 4242 4242 4242",
        "4000 0000 0000 0002",
        "4000 0000 0000 9995",
    ] {
        assert!(html.contains(card), "{card}");
    }
    for method in [
        "pm_card_visa",
        "pm_card_visa_chargeDeclined",
        "pm_card_visa_chargeDeclinedInsufficientFunds",
        "pm_card_delayed",
    ] {
        assert!(html.contains(&format!("value=\"{method}\"")), "{method}");
    }
    // Relative confirm URL (works under any mount point), no external resources.
    assert!(html.contains("'../v1/payment_intents/'"));
    assert!(html.contains("/confirm"));
    assert!(!html.contains("src=\"http"));
    assert!(!html.contains("href=\"http"));
}

#[tokio::test]
async fn unknown_or_wrong_secrets_get_a_404_page() {
    let em = spawn().await;
    let pi = em.intent("1000", "jpy").await;
    let id = pi["id"].as_str().unwrap();
    for secret in [
        format!("{id}_secret_wrongwrongwrongwrongwrong1"),
        "pi_nope_secret_abc".to_string(),
        "garbage".to_string(),
        "%3Cscript%3E".to_string(),
    ] {
        let response = em
            .http
            .get(em.url(&format!("/checkout/{secret}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{secret}");
        let html = response.text().await.unwrap();
        assert!(!html.contains(&secret));
        assert!(!html.contains("<script>"));
    }
}

#[tokio::test]
async fn a_paid_intent_shows_as_paid() {
    let em = spawn().await;
    let pi = em.paid_intent("2000").await;
    let secret = pi["client_secret"].as_str().unwrap();
    let response = em
        .http
        .get(em.url(&format!("/checkout/{secret}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("Already paid"));
    assert!(html.contains(" disabled>"));
}
