//! A fresh database per test, on either backend, so tests never share state.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use sqlx::Connection;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test. Keep it alive for the test's
/// duration: for SQLite it owns the temporary directory holding the file.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// Another handle on a database some other `TestDatabase` owns (a
    /// second kessai instance on the same database).
    pub fn existing(url: &str) -> Self {
        Self {
            url: url.to_string(),
            _dir: None,
        }
    }

    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("kessai.db").display());
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Self {
                url: fresh_postgres_database().await,
                _dir: None,
            },
        }
    }
}

/// The PostgreSQL server tests use: `TEST_POSTGRES_URL`, which
/// `scripts/test.sh` sets after starting a throwaway server.
pub fn postgres_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL").expect(
        "TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh, which starts \
         PostgreSQL, or point TEST_POSTGRES_URL at a server you may create databases on",
    )
}

/// Creates an empty database with a unique name and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let server = postgres_server_url();
    let name = format!("kessai_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("connect to TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let mut url = url::Url::parse(&server).expect("TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The localstripe server tests use: `TEST_LOCALSTRIPE_URL`, which
/// `scripts/test.sh` sets after starting one on loopback.
pub fn localstripe_url() -> String {
    std::env::var("TEST_LOCALSTRIPE_URL").expect(
        "TEST_LOCALSTRIPE_URL is not set: run the tests with scripts/test.sh, which starts \
         localstripe, or start one with `scripts/localstripe.sh start DIR`",
    )
}

/// A loopback address where nothing listens (a port that was just free).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// The `Stripe-Signature` header Stripe sends with `payload`, signed with
/// `secret` at unix time `t`: `t={t},v1={hex HMAC-SHA256 of "{t}." + payload}`.
pub fn stripe_signature(secret: &str, t: i64, payload: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}
