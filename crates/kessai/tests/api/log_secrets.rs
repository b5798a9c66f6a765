//! The real binary, logging at debug, through a whole checkout (register,
//! login, order, PaymentIntent, card confirmed at the built-in emulator,
//! signed webhook, paid): no secret may appear anywhere in its output.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{Backend, TestDatabase};

const KESSAI: &str = env!("CARGO_BIN_EXE_kessai");

const AUTH_SECRET: &str = "log-test-auth-secret-0123456789abcdef-XYZ";
const WEBHOOK_SECRET: &str = "whsec_logtest_9f8e7d6c5b4a39281706";
const PASSWORD: &str = "a password nobody logs 4711";

#[tokio::test]
async fn debug_logs_of_a_whole_checkout_hold_no_secret() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut child = Command::new(KESSAI)
        .env("DATABASE_URL", &db.url)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env("AUTH_SECRET", AUTH_SECRET)
        .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env_remove("STRIPE_SECRET_KEY")
        .env_remove("STRIPE_API_BASE")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let stderr_text = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let stderr_reader = {
        let text = stderr_text.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Ok(event) = serde_json::from_str::<Value>(&line) {
                        if let Some(addr) = event["addr"].as_str() {
                            let _ = addr_tx.send(addr.to_string());
                            sent = true;
                        }
                    }
                }
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        })
    };
    let mut stdout = child.stdout.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });

    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server announced its address");
    let base = format!("http://{addr}");
    let secrets = run_checkout(&base).await;

    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kessai did not stop within 10 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stderr_reader.join().unwrap();
    let output = format!(
        "{}{}",
        stderr_text.lock().unwrap(),
        stdout_reader.join().unwrap()
    );

    // The log really was at debug, and saw the flow.
    assert!(output.contains(r#""level":"DEBUG""#), "no debug output");
    assert!(output.contains("payment_intent.succeeded"), "{output}");
    // The webhook's log line names the request, the event, the PaymentIntent
    // and the order it settled, so an operator can follow one payment.
    let handled: Value = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["message"] == "webhook handled" && event["outcome"] == "applied")
        .unwrap_or_else(|| panic!("no applied webhook logged:\n{output}"));
    let fields: serde_json::Map<String, Value> = handled["spans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|span| span.as_object().unwrap().clone())
        .collect();
    assert!(fields["request_id"].as_str().is_some(), "{handled}");
    assert!(
        fields["event_id"].as_str().unwrap().starts_with("evt_"),
        "{handled}"
    );
    assert!(
        fields["payment_intent"]
            .as_str()
            .unwrap()
            .starts_with("pi_"),
        "{handled}"
    );
    assert!(fields["order_id"].as_i64().is_some(), "{handled}");

    let mut checked = vec![
        ("AUTH_SECRET", AUTH_SECRET.to_string()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ("the password", PASSWORD.to_string()),
    ];
    checked.extend(secrets);
    for (what, secret) in &checked {
        if let Some(at) = output.find(secret.as_str()) {
            let line_start = output[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = output[at..].find('\n').map_or(output.len(), |i| at + i);
            panic!(
                "{what} appears in the output:\n{}",
                &output[line_start..line_end]
            );
        }
    }
}

/// Walks the checkout as a frontend and Stripe.js would; returns the
/// secrets it saw (access token, its signature, the client secret).
async fn run_checkout(base: &str) -> Vec<(&'static str, String)> {
    let http = reqwest::Client::new();
    let email = "log-test@example.jp";
    let response = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "ログ 太郎"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // A failed login, then a good one.
    let response = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": format!("{PASSWORD}-wrong")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let login: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    let signature = token.rsplit('.').next().unwrap().to_string();

    // The cookie on a read, and on a refused cross-site write.
    let cookie = format!("access_token={token}");
    let me = http
        .get(format!("{base}/api/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let refused = http
        .post(format!("{base}/api/orders"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&json!({"items": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let products: Value = http
        .get(format!("{base}/api/products"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product = products["products"][0]["id"].clone();
    let order: Value = http
        .post(format!("{base}/api/orders"))
        .bearer_auth(&token)
        .json(&json!({"items": [{"product_id": product, "quantity": 1}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_id = order["id"].as_i64().unwrap();
    let intent: Value = http
        .post(format!("{base}/api/payments/intent"))
        .header("cookie", &cookie)
        .json(&json!({"order_id": order_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intent_id = intent["payment_intent_id"].as_str().unwrap().to_string();
    let client_secret = intent["client_secret"].as_str().unwrap().to_string();
    let secret_part = client_secret
        .split("_secret_")
        .nth(1)
        .expect("client_secret has a secret part")
        .to_string();

    // The checkout page (its path holds the client secret), then what
    // Stripe.js does with the card.
    let page = http
        .get(format!("{base}/_stripe/checkout/{client_secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let confirmed = http
        .post(format!(
            "{base}/_stripe/v1/payment_intents/{intent_id}/confirm"
        ))
        .form(&[
            ("payment_method", "pm_card_visa"),
            ("client_secret", client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(confirmed.status().is_success(), "{}", confirmed.status());

    // A forged webhook too (rejected, and logged as such).
    let forged = http
        .post(format!("{base}/api/payments/webhook"))
        .header("stripe-signature", "t=1,v1=deadbeef")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current: Value = http
            .get(format!("{base}/api/orders/{order_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if current["status"] == "paid" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "order not paid after 30 s: {current}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    vec![
        ("the access token", token),
        ("the access token's signature", signature),
        ("the client_secret", client_secret),
        ("the client_secret's secret part", secret_part),
    ]
}
