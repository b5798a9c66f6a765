//! Argon2id password hashing, kept off the async runtime.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use application::ports::PasswordHasher;
use argon2::password_hash::{rand_core::OsRng, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use domain::{PasswordHash, PlainPassword};

/// Argon2id with the crate's recommended parameters (19 MiB, 2 passes).
///
/// Each hash holds 19 MiB for tens of milliseconds, so hashes run on a
/// fixed set of `threads` threads of their own: a burst of logins queues
/// instead of exhausting memory. Not tokio's blocking pool: glibc gives each
/// thread that frees a 19 MiB block an arena that keeps it, so hashing on
/// whichever of up to 512 blocking threads held on to 19 MiB per arena
/// (about 650 MiB after a burst of registrations, measured by the bench);
/// with a fixed set, at most `threads` such blocks are ever kept.
#[derive(Clone)]
pub struct Argon2Hasher {
    jobs: std::sync::mpsc::Sender<Job>,
    /// Hash of a random password, verified against when the user does not
    /// exist so that such a login costs the same as a real one.
    decoy: Arc<String>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Argon2Hasher {
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let decoy = hash_blocking(&uuid_like_secret())?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job;
                    // every sender gone (the hasher dropped) ends the thread.
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panicking job loses its answer (the caller gets
                        // an error), never the thread.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                })
                .context("cannot start a password hashing thread")?;
        }
        Ok(Self {
            jobs,
            decoy: Arc::new(decoy),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                // The caller may have gone away (request cancelled).
                let _ = done.send(work());
            }))
            .map_err(|_| anyhow::anyhow!("password hashing threads stopped"))?;
        result.await.context("password hashing job was lost")?
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
