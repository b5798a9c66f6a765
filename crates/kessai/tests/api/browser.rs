//! The emulator's checkout page in headless Chromium (Debian's, driven by
//! playwright-core through `scripts/browser/checkout.mjs`): a customer
//! pays with 4242 4242 4242 4242 and kessai's order becomes paid.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{spawn_app, Backend};
use crate::payments::{intent, two_block_order};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_on_the_checkout_page_in_chromium_pays_the_order() {
    let script = repo_root().join("scripts/browser/checkout.mjs");
    assert!(
        repo_root()
            .join("scripts/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run scripts/browser/setup.sh (scripts/test.sh does)"
    );
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.new_user().await;
    let order = two_block_order(&app, &user).await;
    let created: Value = intent(&app, &user, &order).await.json().await.unwrap();
    let url = app.url(&format!(
        "/_stripe/checkout/{}",
        created["client_secret"].as_str().unwrap()
    ));
    let shots = tempfile::tempdir().unwrap();
    let screenshot = shots.path().join("checkout.png");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&url)
        .arg(&screenshot)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Payment succeeded"), "{stdout}");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1000);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current: Value = app
            .get(&format!("/api/orders/{}", order["id"]), Some(&user.token))
            .await
            .json()
            .await
            .unwrap();
        if current["status"] == "paid" {
            break;
        }
        assert!(Instant::now() < deadline, "never paid: {current}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
