//! The lifecycles: one-time secrets, accounts (and later secret requests and team resources).
//!
//! This layer owns the rules — states, TTLs, who may do what — and the records it stores. It knows no
//! HTTP and no bytes on disk: it speaks to the store through conditional batches and hands plain
//! values back to the surface that called it. Every bearer id is stored under
//! [`MasterKey::store_key`] (its SHA-256 led by its creation sequence), every token under its SHA-256,
//! and time comes from the [`Clock`].

pub mod accounts;
pub mod requests;
pub mod secrets;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::MasterKey;
use crate::crypto::passphrase::Hasher;
use crate::store::{StoreHandle, Timestamp};

/// Everything a lifecycle needs, built once at start-up and shared.
#[derive(Debug, Clone)]
pub struct Domain {
    pub settings: Arc<Settings>,
    pub store: StoreHandle,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<MasterKey>,
    pub hasher: Hasher,
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock(now={})", self.now())
    }
}

impl Domain {
    pub fn new(
        settings: Arc<Settings>,
        store: StoreHandle,
        clock: Arc<dyn Clock>,
        keys: MasterKey,
    ) -> Domain {
        let hasher = Hasher::new(settings.passphrase.bcrypt_cost);
        Domain { settings, store, clock, keys: Arc::new(keys), hasher }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// How many times a lifecycle step re-reads and retries after losing a compare-and-set to a concurrent
/// writer. Losing this often means a key under heavy contention; the caller then gets an internal
/// error rather than an unbounded loop.
pub(crate) const CAS_RETRIES: usize = 16;
