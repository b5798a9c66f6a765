//! `kessai demo`: the whole checkout against a running kessai, step by
//! step, as a shop's frontend and Stripe.js would do it — register, order,
//! PaymentIntent, pay with a test card, and watch the webhook mark the
//! order paid. Works against the built-in emulator (the card is confirmed
//! at `/_stripe`); with a real Stripe account, confirm in the browser.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub async fn run(base_url: &str, card: &str) -> anyhow::Result<()> {
    let base = base_url.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()?;

    let ready: Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    step(1, "kessai is ready", &ready);

    let email = format!("demo-{}@example.jp", chrono::Utc::now().timestamp_millis());
    let registered = post_json(
        &http,
        &format!("{base}/api/auth/register"),
        &json!({
            "email": email, "password": "demo password 123", "name": "デモ 太郎"
        }),
    )
    .await?;
    step(
        2,
        "registered (the access_token cookie is kept)",
        &json!({
            "user_id": registered["user_id"], "email": registered["email"]
        }),
    );
    let me: Value = http
        .get(format!("{base}/api/auth/me"))
        .send()
        .await?
        .json()
        .await?;
    step(
        3,
        "the user's Stripe Customer",
        &json!({"stripe_customer_id": me["stripe_customer_id"]}),
    );

    let products: Value = http
        .get(format!("{base}/api/products"))
        .send()
        .await?
        .json()
        .await?;
    let first = products["products"][0]["id"].clone();
    let order = post_json(
        &http,
        &format!("{base}/api/orders"),
        &json!({
            "items": [{"product_id": first, "quantity": 2}], "notes": "kessai demo"
        }),
    )
    .await?;
    step(
        4,
        "order placed (priced by the server)",
        &json!({
            "id": order["id"], "order_number": order["order_number"], "subtotal": order["subtotal"],
            "tax": order["tax"], "total": order["total"], "status": order["status"]
        }),
    );

    let intent = post_json(
        &http,
        &format!("{base}/api/payments/intent"),
        &json!({"order_id": order["id"]}),
    )
    .await?;
    let intent_id = intent["payment_intent_id"]
        .as_str()
        .context("no payment_intent_id")?
        .to_string();
    let client_secret = intent["client_secret"]
        .as_str()
        .context("no client_secret")?
        .to_string();
    step(
        5,
        "PaymentIntent created (client_secret goes to Stripe.js)",
        &json!({
            "payment_intent_id": intent_id, "amount": intent["amount"], "currency": intent["currency"]
        }),
    );

    // What Stripe.js does with the card: confirm with the client_secret.
    let confirmed = http
        .post(format!(
            "{base}/_stripe/v1/payment_intents/{intent_id}/confirm"
        ))
        .form(&[
            ("payment_method", card),
            ("client_secret", client_secret.as_str()),
        ])
        .send()
        .await?;
    let status = confirmed.status();
    let confirmed: Value = confirmed.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        step(6, "the card was declined", &confirmed["error"]);
    } else {
        step(
            6,
            "card confirmed at the (emulated) Stripe",
            &json!({
                "status": confirmed["status"], "latest_charge": confirmed["latest_charge"]
            }),
        );
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current: Value = http
            .get(format!("{base}/api/orders/{}", order["id"]))
            .send()
            .await?
            .json()
            .await?;
        let paid = current["status"] == "paid";
        let failed = current["last_payment_error"].is_object();
        if paid || failed {
            step(
                7,
                "the webhook reached kessai",
                &json!({
                    "status": current["status"], "paid_at": current["paid_at"],
                    "last_payment_error": current["last_payment_error"]
                }),
            );
            return if paid {
                Ok(())
            } else {
                bail!("the payment failed (as the test card says)")
            };
        }
        if Instant::now() > deadline {
            bail!(
                "order {} is still {} after 30 s: no webhook arrived",
                order["id"],
                current["status"]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url} → {status}: {body}");
    }
    Ok(body)
}

fn step(n: u32, what: &str, detail: &Value) {
    println!("{n}. {what}");
    println!("   {detail}");
}
