use std::collections::HashMap;
use std::time::Duration;

use stripe_emulator::Faults;

use crate::helpers::{spawn_with, verify_signature, Receiver, WEBHOOK_SECRET};

#[tokio::test]
async fn events_are_delivered_signed_as_stripe_signs_them() {
    let (receiver, url) = Receiver::start(0).await;
    let em = spawn_with(Some(url), Faults::default()).await;
    let pi = em.paid_intent("16500").await;
    let received = receiver.wait_until(|r| r.len() >= 3).await;
    assert_eq!(
        receiver.types(),
        vec![
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
    for delivery in &received {
        assert!(
            verify_signature(&delivery.signature, &delivery.body, WEBHOOK_SECRET),
            "bad signature {}",
            delivery.signature
        );
        assert!(!verify_signature(
            &delivery.signature,
            &delivery.body,
            "whsec_other"
        ));
        assert!(delivery.content_type.starts_with("application/json"));
        let event = delivery.event();
        assert_eq!(event["object"], "event");
        assert_eq!(event["api_version"], "2024-06-20");
        assert_eq!(event["pending_webhooks"], 1);
        assert!(event["request"]["id"].as_str().unwrap().starts_with("req_"));
    }
    let succeeded = received[2].event();
    assert_eq!(succeeded["data"]["object"]["id"], pi["id"]);
    assert_eq!(succeeded["data"]["object"]["amount"], 16500);
    // Once delivered, nothing is pending.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(em
        .emulator
        .events()
        .iter()
        .all(|e| e["pending_webhooks"] == 0));
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_backoff() {
    let (receiver, url) = Receiver::start(2).await;
    let em = spawn_with(Some(url), Faults::default()).await;
    em.customer().await;
    let received = receiver.wait_until(|r| !r.is_empty()).await;
    assert_eq!(received.len(), 1);
    assert_eq!(*receiver.attempts.lock().unwrap(), 3);
    assert!(verify_signature(
        &received[0].signature,
        &received[0].body,
        WEBHOOK_SECRET
    ));
    assert_eq!(received[0].event()["type"], "customer.created");
    let status = em.get("/_emulator/webhooks").await.body;
    assert_eq!(status["stats"]["delivered"], 1);
    assert_eq!(status["stats"]["failed_attempts"], 2);
    // The receiver answered both failures: refused, not unreachable.
    assert_eq!(status["stats"]["refused"], 2);
    assert_eq!(status["stats"]["unreachable"], 0);
}

#[tokio::test]
async fn deliveries_to_nowhere_give_up_after_the_last_attempt() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let em = spawn_with(Some(url), Faults::default()).await;
    em.customer().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = em.get("/_emulator/webhooks").await.body;
        if status["stats"]["given_up"] == 1 {
            assert_eq!(status["stats"]["failed_attempts"], 4);
            assert_eq!(status["stats"]["unreachable"], 4);
            assert_eq!(status["stats"]["refused"], 0);
            assert_eq!(status["pending"], 0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn duplicates_arrive_twice_with_the_same_event_id() {
    let (receiver, url) = Receiver::start(0).await;
    let faults = Faults {
        webhook_duplicate_rate: 1.0,
        ..Faults::default()
    };
    let em = spawn_with(Some(url), faults).await;
    em.customer().await;
    em.customer().await;
    let received = receiver.wait_until(|r| r.len() >= 4).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for delivery in &received {
        assert!(verify_signature(
            &delivery.signature,
            &delivery.body,
            WEBHOOK_SECRET
        ));
        *counts
            .entry(delivery.event()["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 2);
    assert!(counts.values().all(|n| *n == 2));
}

#[tokio::test]
async fn dropped_events_are_stored_but_never_delivered() {
    let (receiver, url) = Receiver::start(0).await;
    let faults = Faults {
        webhook_drop_rate: 1.0,
        ..Faults::default()
    };
    let em = spawn_with(Some(url), faults).await;
    em.paid_intent("1000").await;
    let flushed = em.post("/_emulator/webhooks/deliver", &[]).await.body;
    assert_eq!(flushed["attempted"], 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(receiver.received().is_empty());
    let listed = em.get("/v1/events").await.body;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        em.get("/_emulator/webhooks").await.body["stats"]["dropped"],
        3
    );
}

#[tokio::test]
async fn disabled_webhooks_deliver_nothing() {
    let (receiver, url) = Receiver::start(0).await;
    let faults = Faults {
        webhooks_enabled: false,
        ..Faults::default()
    };
    let em = spawn_with(Some(url), faults).await;
    em.customer().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(receiver.received().is_empty());
    assert_eq!(em.emulator.events().len(), 1);
}

#[tokio::test]
async fn delayed_and_reordered_deliveries_are_flushed_on_demand() {
    let (receiver, url) = Receiver::start(0).await;
    let faults = Faults {
        webhook_delay_ms: 60_000,
        webhook_reorder: true,
        ..Faults::default()
    };
    let em = spawn_with(Some(url), faults).await;
    for _ in 0..12 {
        em.customer().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        receiver.received().is_empty(),
        "the delay holds deliveries back"
    );
    let flushed = em.post("/_emulator/webhooks/deliver", &[]).await;
    assert_eq!(
        flushed.status,
        axum::http::StatusCode::OK,
        "{}",
        flushed.body
    );
    assert_eq!(flushed.body["attempted"], 12);
    assert_eq!(flushed.body["delivered"], 12);
    let received: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.event()["id"].as_str().unwrap().to_string())
        .collect();
    let created: Vec<String> = em
        .emulator
        .events()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(received.len(), 12);
    let mut sorted = received.clone();
    sorted.sort();
    let mut expected = created.clone();
    expected.sort();
    assert_eq!(sorted, expected, "every event exactly once");
    assert_ne!(
        received, created,
        "12 events in creation order: 1 in 12! chance"
    );
}

#[tokio::test]
async fn webhook_url_can_be_set_later_and_flushed_without_the_loop() {
    let (receiver, url) = Receiver::start(0).await;
    let em = spawn_with(None, Faults::default()).await;
    em.customer().await;
    em.emulator.set_webhook_url(Some(url));
    em.customer().await;
    let received = receiver.wait_until(|r| !r.is_empty()).await;
    // Only the event created after the endpoint existed, as at Stripe.
    assert_eq!(received.len(), 1);
    let summary = em.emulator.deliver_pending().await;
    assert_eq!(summary["attempted"], 0);
}
