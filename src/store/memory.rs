//! Placeholder; being written on the `store` branch.
use super::*;

#[derive(Debug)]
pub struct MemoryStore;

impl MemoryStore {
    #[allow(clippy::new_without_default)]
    pub fn new() -> MemoryStore {
        MemoryStore
    }
    pub fn open(_path: &Path) -> Result<MemoryStore, StoreError> {
        Ok(MemoryStore)
    }
}

impl Store for MemoryStore {
    fn get(&self, _ks: Keyspace, _key: &[u8], _now: Timestamp) -> Result<Option<Entry>, StoreError> {
        todo!()
    }
    fn scan_prefix(
        &self,
        _ks: Keyspace,
        _prefix: &[u8],
        _now: Timestamp,
        _limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        todo!()
    }
    fn apply(&self, _batch: Batch, _now: Timestamp) -> Result<Outcome, StoreError> {
        todo!()
    }
    fn purge_expired(&self, _now: Timestamp, _limit: usize) -> Result<usize, StoreError> {
        todo!()
    }
    fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        todo!()
    }
    fn count(&self, _ks: Keyspace) -> Result<u64, StoreError> {
        todo!()
    }
    fn check(&self) -> Result<(), StoreError> {
        todo!()
    }
}
