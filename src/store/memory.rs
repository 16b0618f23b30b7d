//! The in-memory backend: every keyspace is an ordered map behind one mutex, plus an expiry index.
//!
//! It serves tests and ephemeral deployments, and it is the reference model the redb backend is fuzzed
//! against, so it favours being obviously correct over being fast: every operation takes the one lock,
//! and every change to an entry goes through [`State::insert`] or [`State::remove`], which keep the
//! expiry index in step with the maps.
//!
//! A put whose `expires_at` is already `<= now` is applied as a delete: the entry could never be read,
//! and storing it would only make `count` and `next_expiry` differ between backends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use super::*;

/// An entry as kept in a map; the key is the map's key.
#[derive(Clone)]
struct Stored {
    value: Vec<u8>,
    version: u64,
    expires_at: Option<Timestamp>,
}

impl Stored {
    fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    fn to_entry(&self) -> Entry {
        Entry { value: self.value.clone(), version: self.version, expires_at: self.expires_at }
    }
}

#[derive(Default)]
struct State {
    tables: BTreeMap<Keyspace, BTreeMap<Vec<u8>, Stored>>,
    /// Invariant: holds `(at, ks, key)` exactly when `tables[ks][key].expires_at == Some(at)`.
    expiry: BTreeSet<(Timestamp, Keyspace, Vec<u8>)>,
}

impl State {
    fn lookup(&self, ks: Keyspace, key: &[u8]) -> Option<&Stored> {
        self.tables.get(&ks).and_then(|table| table.get(key))
    }

    fn live(&self, ks: Keyspace, key: &[u8], now: Timestamp) -> Option<&Stored> {
        self.lookup(ks, key).filter(|stored| stored.is_live(now))
    }

    fn insert(&mut self, ks: Keyspace, key: Vec<u8>, stored: Stored) {
        self.remove(ks, &key);
        if let Some(at) = stored.expires_at {
            self.expiry.insert((at, ks, key.clone()));
        }
        self.tables.entry(ks).or_default().insert(key, stored);
    }

    fn remove(&mut self, ks: Keyspace, key: &[u8]) -> Option<Stored> {
        let stored = self.tables.get_mut(&ks)?.remove(key)?;
        if let Some(at) = stored.expires_at {
            self.expiry.remove(&(at, ks, key.to_vec()));
        }
        Some(stored)
    }

    fn holds(&self, condition: &Condition, now: Timestamp) -> bool {
        match condition {
            Condition::Absent { ks, key } => self.live(*ks, key, now).is_none(),
            Condition::Present { ks, key } => self.live(*ks, key, now).is_some(),
            Condition::Version { ks, key, version } => {
                self.live(*ks, key, now).is_some_and(|stored| stored.version == *version)
            }
        }
    }

    fn apply(&mut self, batch: Batch, now: Timestamp) -> Outcome {
        if let Some(failed) = batch.conditions.iter().position(|c| !self.holds(c, now)) {
            return Outcome::Conflict(failed);
        }
        Outcome::Applied(batch.mutations.into_iter().map(|m| self.mutate(m, now)).collect())
    }

    fn mutate(&mut self, mutation: Mutation, now: Timestamp) -> Option<Entry> {
        match mutation {
            Mutation::Put { ks, key, value, expires_at } => {
                let version = self.live(ks, &key, now).map_or(1, |old| old.version.saturating_add(1));
                let stored = Stored { value, version, expires_at };
                if stored.is_live(now) {
                    self.insert(ks, key, stored);
                } else {
                    self.remove(ks, &key);
                }
                None
            }
            Mutation::Delete { ks, key } => {
                self.remove(ks, &key);
                None
            }
            Mutation::Take { ks, key } => {
                self.remove(ks, &key).filter(|old| old.is_live(now)).map(|old| old.to_entry())
            }
        }
    }
}

/// The in-memory store. Cloning is not offered: share it through an `Arc` or a [`StoreHandle`].
pub struct MemoryStore {
    /// One lock for everything, so a batch is trivially atomic and serialised against every reader.
    state: Mutex<State>,
}

impl MemoryStore {
    #[allow(clippy::new_without_default)]
    pub fn new() -> MemoryStore {
        MemoryStore { state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters more
        // than losing the store entirely, and every method keeps the invariant before returning.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for MemoryStore {
    // Keys and values are hashes and ciphertext; show only sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let entries: usize = state.tables.values().map(BTreeMap::len).sum();
        f.debug_struct("MemoryStore")
            .field("entries", &entries)
            .field("expiring", &state.expiry.len())
            .finish()
    }
}

impl Store for MemoryStore {
    fn get(&self, ks: Keyspace, key: &[u8], now: Timestamp) -> Result<Option<Entry>, StoreError> {
        Ok(self.lock().live(ks, key, now).map(Stored::to_entry))
    }

    fn scan_prefix(
        &self,
        ks: Keyspace,
        prefix: &[u8],
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        let state = self.lock();
        let Some(table) = state.tables.get(&ks) else {
            return Ok(Vec::new());
        };
        Ok(table
            .range::<[u8], _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, stored)| stored.is_live(now))
            .take(limit)
            .map(|(key, stored)| (key.clone(), stored.to_entry()))
            .collect())
    }

    fn apply(&self, batch: Batch, now: Timestamp) -> Result<Outcome, StoreError> {
        Ok(self.lock().apply(batch, now))
    }

    // One mutex section: nothing here waits on I/O, so it runs in place, even on the runtime.
    fn apply_then(&self, batch: Batch, now: Timestamp, done: Reply<Outcome>) {
        done(self.apply(batch, now));
    }

    // The plan reads and its batch applies under one lock, as in redb's writer; the reply is sent
    // after the lock is released.
    fn apply_planned(&self, mut plan: Plan, now: Timestamp, done: Reply<Planned>) {
        struct Locked<'a> {
            state: &'a State,
            now: Timestamp,
        }
        impl Lookup for Locked<'_> {
            fn get(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Entry>, StoreError> {
                Ok(self.state.live(ks, key, self.now).map(Stored::to_entry))
            }
        }
        let result = {
            let mut state = self.lock();
            plan(&mut Locked { state: &state, now }).map(|(batch, report)| Planned {
                report,
                outcome: batch.map(|batch| state.apply(batch, now)),
            })
        };
        done(result);
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { reads: ReadPath::InPlace, plans_block: false, commit_metrics: None, one_group: false }
    }

    fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        let mut state = self.lock();
        let due: Vec<(Timestamp, Keyspace, Vec<u8>)> =
            state.expiry.iter().take_while(|(at, _, _)| *at <= now).take(limit).cloned().collect();
        let mut removed = 0;
        for (_, ks, key) in due {
            if state.remove(ks, &key).is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.lock().expiry.first().map(|(at, _, _)| *at))
    }

    fn visit_all(&self, now: Timestamp, visit: &mut super::Visitor<'_>) -> Result<(), StoreError> {
        // Copy under the lock, visit after it: the visitor may be slow (it writes a file) and must not
        // stall every request meanwhile.
        let snapshot: Vec<(Keyspace, Vec<u8>, Entry)> = {
            let state = self.lock();
            state
                .tables
                .iter()
                .flat_map(|(ks, table)| {
                    table
                        .iter()
                        .filter(|(_, s)| s.is_live(now))
                        .map(move |(k, s)| (*ks, k.clone(), s.to_entry()))
                })
                .collect()
        };
        snapshot.iter().try_for_each(|(ks, key, entry)| visit(*ks, key, entry))
    }

    fn count(&self, ks: Keyspace) -> Result<u64, StoreError> {
        Ok(self.lock().tables.get(&ks).map_or(0, |table| table.len() as u64))
    }

    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
