use std::time::{Duration, Instant};

use axum::http::StatusCode;
use stripe_emulator::Faults;

use crate::helpers::{spawn, spawn_with, SECRET_KEY};

#[tokio::test]
async fn error_rate_answers_500_before_doing_anything() {
    let em = spawn_with(
        None,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let answer = em
        .post_with("/v1/customers", &[("email", "a@b.jp")], Some("k1"))
        .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.body["error"]["type"], "api_error");
    assert_eq!(answer.header("stripe-should-retry"), Some("true"));
    assert!(answer.header("request-id").is_some());
    assert!(em.emulator.events().is_empty());
    // Faults off: the same key now runs for the first time.
    em.emulator.set_faults(Faults::default());
    let answer = em
        .post_with("/v1/customers", &[("email", "a@b.jp")], Some("k1"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.header("idempotent-replayed").is_none());
}

#[tokio::test]
async fn rate_limit_rate_answers_429() {
    let em = spawn_with(
        None,
        Faults {
            rate_limit_rate: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let answer = em.get("/v1/events").await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.error_code(), "rate_limit");
    // The admin endpoints and the checkout page are never faulted.
    assert_eq!(em.get("/_emulator/faults").await.status, StatusCode::OK);
}

#[tokio::test]
async fn latency_is_added_to_every_answer() {
    let em = spawn_with(
        None,
        Faults {
            latency_ms: 300,
            ..Faults::default()
        },
    )
    .await;
    let started = Instant::now();
    let answer = em.get("/v1/events").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn dropped_connections_get_no_answer_and_change_nothing() {
    let em = spawn_with(
        None,
        Faults {
            drop_connection_rate: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let result = em
        .http
        .post(em.url("/v1/customers"))
        .bearer_auth(SECRET_KEY)
        .form(&[("email", "a@b.jp")])
        .send()
        .await;
    let error = result.expect_err("no answer expected");
    assert!(!error.is_connect(), "connected, then closed: {error:?}");
    assert!(em.emulator.events().is_empty());
    // Raw TCP: the server closes without writing a byte.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = em
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/_stripe")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /_stripe/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "{read:?} {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(buf.is_empty());
}

#[tokio::test]
async fn faults_are_read_and_set_as_json_with_the_secret_key() {
    let em = spawn().await;
    let current = em.get("/_emulator/faults").await;
    assert_eq!(current.status, StatusCode::OK);
    assert_eq!(current.body["webhooks_enabled"], true);
    assert_eq!(current.body["error_rate"], 0.0);

    let answer = em
        .http
        .put(em.url("/_emulator/faults"))
        .bearer_auth(SECRET_KEY)
        .header("content-type", "application/json")
        .body(r#"{"rate_limit_rate": 0.5, "latency_ms": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let faults = em.emulator.faults();
    assert_eq!(faults.rate_limit_rate, 0.5);
    assert_eq!(faults.latency_ms, 5);
    assert!(faults.webhooks_enabled, "absent fields take their defaults");

    let bad = em
        .put_faults(&Faults {
            error_rate: 1.5,
            ..Faults::default()
        })
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown = em
        .http
        .put(em.url("/_emulator/faults"))
        .bearer_auth(SECRET_KEY)
        .body(r#"{"eror_rate": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 400);
    let anonymous = em
        .http
        .get(em.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let reset = em.put_faults(&Faults::default()).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(em.emulator.faults(), Faults::default());
}
