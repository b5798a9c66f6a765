//! Argon2id password hashing, kept off the async runtime.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use application::ports::PasswordHasher;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use domain::{PasswordHash, PlainPassword};

/// Argon2id at 9 MiB and 4 passes: one of the equivalent settings OWASP's
/// password storage guidance lists (beside the argon2 crate's default of
/// 19 MiB and 2 passes, which costs the same time). The smaller block
/// keeps kessai's memory under a burst of registrations (2 threads × 9
/// MiB instead of × 19 MiB, measured by the bench); hashes made with other
/// parameters, such as the default, still verify under their own.
const MEMORY_KIB: u32 = 9 * 1024;
const PASSES: u32 = 4;

fn hashing_params() -> anyhow::Result<Params> {
    Params::new(MEMORY_KIB, PASSES, 1, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))
}

/// The password hasher.
///
/// Each hash holds its memory for tens of milliseconds, so hashes run on a
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

thread_local! {
    /// The Argon2 memory of this hashing thread, kept from one hash to the
    /// next: allocating and freeing a block per hash leaves freed blocks in
    /// glibc's per-thread arenas (376 MiB after a burst of registrations,
    /// measured by the bench); reused, each thread holds exactly one. Every
    /// block is written before it is read, so what a
    /// previous hash left there does not matter.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Argon2 of `password` and `salt` into `out`, in this thread's memory.
fn argon2_into(argon: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> anyhow::Result<()> {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        let needed = argon.params().block_count();
        // Grown, never shrunk: swapping sizes back and forth (old hashes
        // under other parameters) would free blocks into glibc's arenas.
        if memory.len() < needed {
            *memory = vec![Block::default(); needed];
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut memory[..needed])
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
}

/// A PHC string (`$argon2id$v=19$m=9216,t=4,p=1$salt$hash`) for
/// `password` with a fresh salt: the same string the argon2 crate's
/// `hash_password` gives with these parameters.
fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let phc_error = |e: argon2::password_hash::Error| anyhow::anyhow!("argon2 hashing failed: {e}");
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, hashing_params()?);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(phc_error)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon, password.as_bytes(), salt_bytes, &mut out)?;
    let phc = argon2::PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(phc_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(phc_error)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, under the parameters
/// `phc` names (so hashes made with other parameters still verify).
fn verify_blocking(password: &str, phc: &str) -> anyhow::Result<bool> {
    let malformed =
        |e: argon2::password_hash::Error| anyhow::anyhow!("stored password hash is malformed: {e}");
    let parsed = argon2::PasswordHash::new(phc).map_err(malformed)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(malformed)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v)
            .map_err(|e| anyhow::anyhow!("stored password hash is malformed: {e}"))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(malformed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored password hash is malformed: no salt or hash");
    };
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(malformed)?;
    let mut out = vec![0u8; expected.len()];
    argon2_into(
        &Argon2::new(algorithm, version, params),
        password.as_bytes(),
        salt_bytes,
        &mut out,
    )?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(malformed)? == expected)
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

    /// Hashes made by the crate's own `hash_password` (as before the
    /// memory was reused) verify here, and ours verify there.
    #[test]
    fn agrees_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify_blocking("correct horse", &theirs).unwrap());
        assert!(!verify_blocking("correct hors", &theirs).unwrap());

        let ours = hash_blocking("correct horse").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=9216,t=4,p=1$"), "{ours}");
        let parsed = argon2::PasswordHash::new(&ours).unwrap();
        // The crate's verifier reads the parameters from the string.
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong horse", &parsed)
            .is_err());

        // Other parameters (a smaller memory cost) verify too, in the same
        // thread's reused memory, and the default ones still do after.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert!(verify_blocking("pw", &small).unwrap());
        assert!(verify_blocking("correct horse", &theirs).unwrap());
        assert!(verify_blocking("pw", "$argon2id$v=19$garbage").is_err());
    }

    #[tokio::test]
    async fn unknown_user_never_verifies_even_with_the_decoy_password() {
        let hasher = Argon2Hasher::new(1).unwrap();
        let anything = PlainPassword::unchecked("whatever-it-is".into());
        assert!(!hasher.verify(&anything, None).await.unwrap());
    }
}
