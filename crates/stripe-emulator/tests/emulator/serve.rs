use std::time::Duration;

use stripe_emulator::{Emulator, EmulatorConfig, Faults};

use crate::helpers::{fast_timings, verify_signature, Receiver, SECRET_KEY, WEBHOOK_SECRET};

#[tokio::test]
async fn serve_answers_at_the_root_delivers_webhooks_and_stops() {
    let (receiver, url) = Receiver::start(0).await;
    let emulator = Emulator::with_timings(
        EmulatorConfig {
            secret_key: SECRET_KEY.to_string(),
            webhook_secret: WEBHOOK_SECRET.to_string(),
            webhook_url: Some(url),
            faults: Faults::default(),
        },
        fast_timings(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(emulator.clone().serve(listener, async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/customers"))
        .bearer_auth(SECRET_KEY)
        .form(&[("email", "hanako@example.jp")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let received = receiver.wait_until(|r| !r.is_empty()).await;
    assert!(verify_signature(
        &received[0].signature,
        &received[0].body,
        WEBHOOK_SECRET
    ));
    assert_eq!(emulator.events().len(), 1);

    stop.send(()).unwrap();
    drop(http);
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve stops on shutdown")
        .unwrap();
    assert!(result.is_ok());
}
