//! Service ports: capabilities the use cases need that are not storage.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{PasswordHash, PlainPassword, Session, SessionId};

#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &PlainPassword) -> anyhow::Result<PasswordHash>;
    /// Checks `password` against `hash`. With `None` (no such user) it still
    /// does the same amount of work and answers `false`, so that a login's
    /// timing does not tell whether the email is registered.
    async fn verify(
        &self,
        password: &PlainPassword,
        hash: Option<&PasswordHash>,
    ) -> anyhow::Result<bool>;
}

/// A bearer credential handed to the client. Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// Mints and checks access tokens. A token is signed and carries its
/// session id and expiry; checking the signature is cheap and needs no I/O,
/// the session row (revocation) is checked by the use case.
pub trait TokenIssuer: Send + Sync {
    fn new_session_id(&self) -> SessionId;
    fn issue(&self, session: &Session) -> AccessToken;
    /// The session a well-signed, unexpired token names; `None` otherwise.
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<SessionId>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Whether the service can do its work (the database answers).
#[async_trait]
pub trait ReadinessProbe: Send + Sync {
    async fn check(&self) -> anyhow::Result<()>;
}

pub mod payment_gateway;
pub mod webhooks;
