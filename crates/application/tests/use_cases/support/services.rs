//! Fakes of the service ports: a cheap hasher, readable tokens and a clock
//! the test moves by hand.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use application::ports::{AccessToken, Clock, PasswordHasher, TokenIssuer};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use domain::{PasswordHash, PlainPassword, Session, SessionId};

/// "Hashes" to `hashed:<password>` and counts its calls.
#[derive(Debug, Default)]
pub struct FakeHasher {
    hash_calls: AtomicUsize,
    verify_calls: AtomicUsize,
    failing: AtomicBool,
}

impl FakeHasher {
    fn digest(password: &PlainPassword) -> String {
        format!("hashed:{}", password.expose())
    }

    pub fn hash_calls(&self) -> usize {
        self.hash_calls.load(Ordering::SeqCst)
    }

    pub fn verify_calls(&self) -> usize {
        self.verify_calls.load(Ordering::SeqCst)
    }

    /// When on, `hash` and `verify` fail.
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            anyhow::bail!("injected hasher failure");
        }
        Ok(())
    }
}

#[async_trait]
impl PasswordHasher for FakeHasher {
    async fn hash(&self, password: &PlainPassword) -> anyhow::Result<PasswordHash> {
        self.hash_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        Ok(PasswordHash::new(Self::digest(password)))
    }

    async fn verify(
        &self,
        password: &PlainPassword,
        hash: Option<&PasswordHash>,
    ) -> anyhow::Result<bool> {
        self.verify_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        Ok(hash.is_some_and(|h| h.as_str() == Self::digest(password)))
    }
}

/// Tokens read `tok:<session id>:<expiry as unix seconds>`. There is no
/// signature: a test may mint any token it likes through `issue`.
#[derive(Debug, Default)]
pub struct FakeTokens {
    issued_ids: AtomicUsize,
}

impl TokenIssuer for FakeTokens {
    fn new_session_id(&self) -> SessionId {
        let n = self.issued_ids.fetch_add(1, Ordering::SeqCst) + 1;
        SessionId::new(format!("sess-{n}"))
    }

    fn issue(&self, session: &Session) -> AccessToken {
        AccessToken::new(format!(
            "tok:{}:{}",
            session.id.as_str(),
            session.expires_at.timestamp()
        ))
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<SessionId> {
        let (id, expires_at) = token.strip_prefix("tok:")?.rsplit_once(':')?;
        let expires_at: i64 = expires_at.parse().ok()?;
        (!id.is_empty() && now.timestamp() < expires_at).then(|| SessionId::new(id))
    }
}

/// A clock that stands still until the test moves it.
#[derive(Debug)]
pub struct SettableClock(Mutex<DateTime<Utc>>);

impl SettableClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for SettableClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
