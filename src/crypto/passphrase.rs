//! Passphrase hashing with bcrypt, off the async runtime and with a concurrency cap.
//!
//! bcrypt at cost 10 takes tens of milliseconds of CPU; run inline it would stall every request on the
//! worker, and unbounded it would let a burst of reveals starve the machine. So every hash and verify
//! runs on the blocking pool behind a semaphore sized to the CPU count.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// bcrypt reads at most 72 bytes; longer passphrases are refused instead of silently truncated.
pub const MAX_PASSPHRASE_BYTES: usize = 72;

#[derive(Debug)]
pub enum PassphraseError {
    /// Longer than [`MAX_PASSPHRASE_BYTES`].
    TooLong,
    /// bcrypt itself failed (an invalid stored hash), or the blocking task was cancelled.
    Internal(String),
}

impl fmt::Display for PassphraseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassphraseError::TooLong => write!(f, "passphrase longer than {MAX_PASSPHRASE_BYTES} bytes"),
            PassphraseError::Internal(msg) => write!(f, "passphrase hashing failed: {msg}"),
        }
    }
}

impl std::error::Error for PassphraseError {}

/// A passphrase as received; redacted in `Debug` so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(String);

impl Passphrase {
    pub fn new(s: String) -> Passphrase {
        Passphrase(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

#[derive(Clone)]
pub struct Hasher {
    cost: u32,
    /// Caps concurrent bcrypt runs so they cannot take every core.
    permits: Arc<Semaphore>,
    /// Callers waiting for or holding a permit, for the bcrypt queue-depth metric.
    queued: Arc<AtomicUsize>,
    /// Verifications that ran bcrypt: the cost a guesser actually imposed, for metrics and tests.
    checks: Arc<AtomicU64>,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("cost", &self.cost).finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new(cost: u32) -> Hasher {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Hasher {
            cost,
            permits: Arc::new(Semaphore::new(cores)),
            queued: Arc::new(AtomicUsize::new(0)),
            checks: Arc::default(),
        }
    }

    /// Passphrase verifications that ran bcrypt since start.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Callers currently waiting for or running bcrypt.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, PassphraseError> + Send + 'static,
    ) -> Result<T, PassphraseError> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let _permit =
                self.permits.acquire().await.map_err(|e| PassphraseError::Internal(e.to_string()))?;
            match tokio::task::spawn_blocking(f).await {
                Ok(result) => result,
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(err) => Err(PassphraseError::Internal(err.to_string())),
            }
        }
        .await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        result
    }

    pub async fn hash(&self, passphrase: &Passphrase) -> Result<String, PassphraseError> {
        if passphrase.0.len() > MAX_PASSPHRASE_BYTES {
            return Err(PassphraseError::TooLong);
        }
        let (pass, cost) = (passphrase.clone(), self.cost);
        self.run(move || {
            // Our own length check above guarantees nothing is truncated; the crate's non-truncating
            // variant would also refuse exactly 72 bytes, since it counts the C terminator.
            bcrypt::hash(pass.expose(), cost).map_err(|e| PassphraseError::Internal(e.to_string()))
        })
        .await
    }

    /// `Ok(false)` for a wrong passphrase, including one too long to ever have been stored.
    pub async fn verify(&self, passphrase: &Passphrase, hash: &str) -> Result<bool, PassphraseError> {
        if passphrase.0.len() > MAX_PASSPHRASE_BYTES {
            return Ok(false);
        }
        let (pass, hash, checks) = (passphrase.clone(), hash.to_owned(), Arc::clone(&self.checks));
        self.run(move || {
            checks.fetch_add(1, Ordering::Relaxed);
            bcrypt::verify(pass.expose(), &hash).map_err(|e| PassphraseError::Internal(e.to_string()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_and_long_passphrases_are_refused() {
        let h = Hasher::new(4);
        let hash = h.hash(&Passphrase::new("open sesame".into())).await.unwrap();
        assert!(h.verify(&Passphrase::new("open sesame".into()), &hash).await.unwrap());
        assert!(!h.verify(&Passphrase::new("open sesam".into()), &hash).await.unwrap());
        assert!(matches!(h.hash(&Passphrase::new("x".repeat(73))).await, Err(PassphraseError::TooLong)));
        assert!(h.hash(&Passphrase::new("x".repeat(72))).await.is_ok());
        assert_eq!(h.queue_depth(), 0);
        assert_eq!(h.checks(), 2);
        assert!(!h.verify(&Passphrase::new("x".repeat(73)), &hash).await.unwrap());
        assert_eq!(h.checks(), 2, "a passphrase too long to be stored costs no bcrypt run");
        assert_eq!(format!("{:?}", Passphrase::new("hunter2".into())), "Passphrase(<redacted>)");
    }
}
