//! Argon2id password hashing, kept off the async runtime.

use std::sync::Arc;

use anyhow::Context;
use application::ports::PasswordHasher;
use argon2::password_hash::{rand_core::OsRng, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use domain::{PasswordHash, PlainPassword};
use tokio::sync::Semaphore;

/// Argon2id with the crate's recommended parameters (19 MiB, 2 passes).
///
/// Each hash holds 19 MiB for tens of milliseconds, so the number running at
/// once is capped: a burst of logins queues instead of exhausting memory.
#[derive(Clone)]
pub struct Argon2Hasher {
    permits: Arc<Semaphore>,
    /// Hash of a random password, verified against when the user does not
    /// exist so that such a login costs the same as a real one.
    decoy: Arc<String>,
}

impl Argon2Hasher {
    pub fn new(max_concurrent: usize) -> anyhow::Result<Self> {
        let decoy = hash_blocking(&uuid_like_secret())?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            decoy: Arc::new(decoy),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        tokio::task::spawn_blocking(work)
            .await
            .context("password hashing task failed")?
    }
}

fn uuid_like_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

fn verify_blocking(password: &str, phc: &str) -> anyhow::Result<bool> {
    let parsed = argon2::PasswordHash::new(phc)
        .map_err(|e| anyhow::anyhow!("stored password hash is malformed: {e}"))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &PlainPassword) -> anyhow::Result<PasswordHash> {
        let password = password.expose().to_owned();
        self.run(move || hash_blocking(&password).map(PasswordHash::new))
            .await
    }

    async fn verify(
        &self,
        password: &PlainPassword,
        hash: Option<&PasswordHash>,
    ) -> anyhow::Result<bool> {
        let password = password.expose().to_owned();
        let (phc, real) = match hash {
            Some(h) => (h.as_str().to_owned(), true),
            None => (self.decoy.as_str().to_owned(), false),
        };
        let matched = self.run(move || verify_blocking(&password, &phc)).await?;
        Ok(matched && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let hasher = Argon2Hasher::new(2).unwrap();
        let password = PlainPassword::parse("correct horse".into()).unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(hasher.verify(&password, Some(&hash)).await.unwrap());
        let wrong = PlainPassword::unchecked("wrong horse".into());
        assert!(!hasher.verify(&wrong, Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_user_never_verifies_even_with_the_decoy_password() {
        let hasher = Argon2Hasher::new(1).unwrap();
        let anything = PlainPassword::unchecked("whatever-it-is".into());
        assert!(!hasher.verify(&anything, None).await.unwrap());
    }
}
