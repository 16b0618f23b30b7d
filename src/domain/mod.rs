//! The lifecycles, one service each: v1 one-time secrets ([`Secrets`]), client-encrypted secrets
//! ([`ClientSecrets`]), secret requests ([`Requests`]) and accounts ([`Accounts`]); team resources will
//! be a fifth.
//!
//! This layer owns the rules — states, TTLs, who may do what — and the records it stores. It knows no
//! HTTP and no bytes on disk: it speaks to the store through conditional batches and hands plain
//! values back to the surface that called it. Every bearer id is stored under
//! [`MasterKey::store_key`] (its SHA-256 led by its creation sequence), every token under its SHA-256,
//! and time comes from the [`Clock`].
//!
//! Each keyspace declares its grouping, and every batch keeps to one group, since a store may spread
//! groups apart (Redis Cluster): a v1 secret, its metadata (made with the same creation sequence), its
//! attempts and its mail form one group; a request and its outbox entries another; the accounts, and
//! the whole team keyspace, one each. The one write that spans groups, an account's listing row for a
//! new secret, follows the create as a batch of its own where the store asks for it.

pub mod accounts;
pub mod outbox;
pub mod requests;
pub mod secrets;
pub mod team;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::MasterKey;
use crate::crypto::passphrase::Hasher;
use crate::crypto::server_key::ServerKey;
use crate::store::{Keyspace, StoreHandle, Timestamp};

/// Everything a lifecycle needs, built once at start-up and shared by the services. Its store is the
/// domain's alone: a surface reaches stored records only through a service's rules.
#[derive(Debug, Clone)]
pub struct Core {
    pub(in crate::domain) settings: Arc<Settings>,
    pub(in crate::domain) store: StoreHandle,
    pub(in crate::domain) clock: Arc<dyn Clock>,
    pub(in crate::domain) keys: Arc<MasterKey>,
    pub(in crate::domain) hasher: Hasher,
    /// Shared by every clone: the per-account mail allowance must count one process's shares once.
    pub(in crate::domain) mail_quota: Arc<outbox::MailQuota>,
}

impl Core {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Defines a lifecycle service: a handle on the [`Core`] whose methods are the lifecycle's steps.
macro_rules! service {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            core: Core,
        }

        impl std::ops::Deref for $name {
            type Target = Core;

            fn deref(&self) -> &Core {
                &self.core
            }
        }
    };
}

service!(
    /// One-time secrets of the v1 dialect: share, peek, reveal once, metadata, burn, recent.
    Secrets
);
service!(
    /// Client-encrypted one-time secrets and files: create, read once, status, delete.
    ClientSecrets
);
service!(
    /// Secret requests: pending → fulfilled → collected, revoke, key rotation.
    Requests
);
service!(
    /// Accounts: API tokens, kept as digests.
    Accounts
);
service!(
    /// The outbox: deliveries written with the changes that cause them, for the sender to drain.
    Outbox
);

/// The lifecycles, one service each, built once at start-up and shared.
#[derive(Debug, Clone)]
pub struct Domain {
    pub secrets: Secrets,
    pub client: ClientSecrets,
    pub requests: Requests,
    pub accounts: Accounts,
    pub outbox: Outbox,
    pub team: team::Team,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<MasterKey>,
    pub hasher: Hasher,
    store: StoreHandle,
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
        server_key: ServerKey,
    ) -> Domain {
        let hasher = Hasher::new(settings.passphrase.bcrypt_cost);
        let keys = Arc::new(keys);
        let core = Core {
            settings: Arc::clone(&settings),
            store: store.clone(),
            clock: Arc::clone(&clock),
            keys: Arc::clone(&keys),
            hasher: hasher.clone(),
            mail_quota: Arc::default(),
        };
        Domain {
            secrets: Secrets { core: core.clone() },
            client: ClientSecrets { core: core.clone() },
            requests: Requests { core: core.clone() },
            outbox: Outbox { core: core.clone() },
            accounts: Accounts { core: core.clone() },
            team: team::Team::new(core, Arc::new(server_key)),
            settings,
            clock,
            keys,
            hasher,
            store,
        }
    }

    /// The store, for what sits beside the lifecycles rather than in one: readiness, metrics,
    /// backups, the reaper.
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Every keyspace of the domain, as the store is opened with (`server::Parts`): each declared by
/// the lifecycle that owns its records.
pub const KEYSPACES: &[Keyspace] = &[
    secrets::SECRET,
    secrets::METADATA,
    accounts::ACCOUNT,
    accounts::RECENT,
    secrets::ATTEMPTS,
    requests::REQUEST,
    outbox::OUTBOX,
    team::TEAM,
];

/// The record kinds `/metrics` counts, by label.
pub const COUNTED: [(&str, Keyspace); 4] = [
    ("secret", secrets::SECRET),
    ("metadata", secrets::METADATA),
    ("request", requests::REQUEST),
    ("outbox", outbox::OUTBOX),
];

/// How many times a lifecycle step re-reads and retries after losing a compare-and-set to a concurrent
/// writer. Losing this often means a key under heavy contention; the caller then gets an internal
/// error rather than an unbounded loop.
pub(crate) const CAS_RETRIES: usize = 16;
