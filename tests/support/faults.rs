//! A fault-injecting store: wraps a real backend and fails reads or writes on demand, the way a full
//! disk or a failing device would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lethe::store::{
    Batch, Entry, Keyspace, Outcome, Plan, Planned, Reply, Store, StoreError, StoreHandle, Timestamp,
};

#[derive(Debug, Default)]
pub struct Faults {
    pub fail_reads: AtomicBool,
    pub fail_writes: AtomicBool,
}

impl Faults {
    pub fn writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    pub fn reads(&self, fail: bool) {
        self.fail_reads.store(fail, Ordering::SeqCst);
    }
}

pub struct Faulty {
    pub inner: StoreHandle,
    pub faults: Arc<Faults>,
}

impl Faulty {
    fn read(&self) -> Result<(), StoreError> {
        if self.faults.fail_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Io("injected read failure".into()));
        }
        Ok(())
    }

    fn write(&self) -> Result<(), StoreError> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Io("No space left on device (injected)".into()));
        }
        Ok(())
    }
}

impl Store for Faulty {
    fn get(&self, ks: Keyspace, key: &[u8], now: Timestamp) -> Result<Option<Entry>, StoreError> {
        self.read()?;
        self.inner.blocking().get(ks, key, now)
    }

    fn scan_prefix(
        &self,
        ks: Keyspace,
        prefix: &[u8],
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.read()?;
        self.inner.blocking().scan_prefix(ks, prefix, now, limit)
    }

    fn apply(&self, batch: Batch, now: Timestamp) -> Result<Outcome, StoreError> {
        self.write()?;
        self.inner.blocking().apply(batch, now)
    }

    fn apply_then(&self, batch: Batch, now: Timestamp, done: Reply<Outcome>) {
        match self.write() {
            Ok(()) => self.inner.blocking().apply_then(batch, now, done),
            Err(err) => done(Err(err)),
        }
    }

    fn capabilities(&self) -> lethe::store::Capabilities {
        self.inner.capabilities().clone()
    }

    // A plan both reads and writes, so either fault fails it, before anything is read.
    fn apply_planned(&self, plan: Plan, now: Timestamp, done: Reply<Planned>) {
        match self.read().and_then(|()| self.write()) {
            Ok(()) => self.inner.blocking().apply_planned(plan, now, done),
            Err(err) => done(Err(err)),
        }
    }

    fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        self.write()?;
        self.inner.blocking().purge_expired(now, limit)
    }

    fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read()?;
        self.inner.blocking().next_expiry()
    }

    fn count(&self, ks: Keyspace) -> Result<u64, StoreError> {
        self.read()?;
        self.inner.blocking().count(ks)
    }

    fn check(&self) -> Result<(), StoreError> {
        self.read()?;
        self.inner.blocking().check()
    }

    // A device that fails writes is a store that cannot commit, as redb reports between an I/O
    // error and reopening its file.
    fn healthy(&self) -> bool {
        !self.faults.fail_writes.load(Ordering::SeqCst) && self.inner.blocking().healthy()
    }

    fn visit_all(&self, now: Timestamp, visit: &mut lethe::store::Visitor<'_>) -> Result<(), StoreError> {
        self.read()?;
        self.inner.blocking().visit_all(now, visit)
    }
}
