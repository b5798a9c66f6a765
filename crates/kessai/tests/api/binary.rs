//! The `kessai` executable itself: configuration errors, serving, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::{Backend, TestDatabase};

const KESSAI: &str = env!("CARGO_BIN_EXE_kessai");

#[test]
fn a_bad_database_url_stops_the_start_with_a_clear_message() {
    let output = Command::new(KESSAI)
        .arg("serve")
        .env("DATABASE_URL", "mysql://localhost/shop")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn a_bad_bind_address_is_reported() {
    let output = Command::new(KESSAI)
        .env("BIND_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("BIND_ADDR"));
}

/// A live key takes real money: without secure cookies and a fixed token
/// key the start is refused (exit 78, as any configuration error), naming
/// what is missing and never the key.
#[test]
fn a_live_key_without_secure_cookies_and_auth_secret_is_refused() {
    for key in ["sk_live_kessai_refused", "rk_live_kessai_refused"] {
        let output = Command::new(KESSAI)
            .arg("serve")
            .env("STRIPE_SECRET_KEY", key)
            .env("DATABASE_URL", "sqlite:///dev/null/never-created.db")
            .env_remove("COOKIE_SECURE")
            .env_remove("AUTH_SECRET")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for name in ["STRIPE_SECRET_KEY", "COOKIE_SECURE", "AUTH_SECRET"] {
            assert!(stderr.contains(name), "{name} not named: {stderr}");
        }
        assert!(
            !stderr.contains("kessai_refused"),
            "the key leaked: {stderr}"
        );
    }
    // With both set, the configuration passes (the start then fails on the
    // database, which is not a configuration error).
    let output = Command::new(KESSAI)
        .arg("serve")
        .env("STRIPE_SECRET_KEY", "sk_live_kessai_refused")
        .env("COOKIE_SECURE", "true")
        .env("AUTH_SECRET", "0123456789abcdef0123456789abcdef-live")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", "sqlite:///dev/null/never-created.db")
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(78), "{output:?}");
    assert!(!output.status.success());
}

#[tokio::test]
async fn migrate_creates_the_schema_and_exits() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let status = Command::new(KESSAI)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let path = db.url.trim_start_matches("sqlite://");
    assert!(std::path::Path::new(path).exists());
}

/// Starts the real binary on a free port, serves a request, and stops
/// cleanly on SIGTERM.
#[tokio::test]
async fn serves_and_shuts_down_gracefully_on_sigterm() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut child = Command::new(KESSAI)
        .env("DATABASE_URL", &db.url)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(addr) = event["addr"].as_str() {
                        let _ = tx.send(addr.to_string());
                        sent = true;
                    }
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server announced its address");
    let response = reqwest::get(format!("http://{addr}/api/products"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kessai did not stop within 10 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}
