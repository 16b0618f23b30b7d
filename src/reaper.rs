//! The reaper: a background task that reclaims the space of expired entries, in bounded batches, off
//! the request path.
//!
//! It owns no correctness: every backend already treats an expired entry as absent, so a reaper that
//! is late, stopped or failing only costs disk space. That is why store errors here are logged and
//! retried rather than propagated. Each pass removes at most one batch, so a backlog (after downtime,
//! say) is worked off as a series of short write transactions that interleave with requests instead of
//! one long one that would hold up every write behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{Clock, Timestamp};
use crate::store::{StoreError, StoreHandle};

/// Longest sleep between passes, so an entry written with an earlier expiry than the one the reaper
/// is waiting for is still reclaimed within a minute.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// Shortest sleep after a partial pass; expiry has one-second resolution.
const MIN_PAUSE: Duration = Duration::from_secs(1);
/// Pause after a store error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(10);

/// Runs until `shutdown` becomes `true` (or its sender is dropped): purges up to `batch` expired
/// entries per pass, goes straight on while passes come back full, otherwise sleeps until the next
/// expiry. A `batch` of 0 is treated as 1 so the reaper always makes progress.
/// What the reaper has done, for metrics.
#[derive(Debug, Default)]
pub struct ReaperStats {
    /// Purge passes run.
    pub passes: AtomicU64,
    /// Expired entries removed.
    pub removed: AtomicU64,
}

pub async fn run(
    store: StoreHandle,
    clock: Arc<dyn Clock>,
    batch: usize,
    stats: Arc<ReaperStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let batch = batch.max(1);
    tracing::debug!(batch, "reaper started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let purged = store.purge_expired(clock.now(), batch).await;
        if let Ok(removed) = &purged {
            stats.passes.fetch_add(1, Ordering::Relaxed);
            stats.removed.fetch_add(*removed as u64, Ordering::Relaxed);
        }
        let pause = match purged {
            Ok(removed) if removed >= batch => {
                tracing::debug!(removed, "reaper pass was full; continuing");
                // Let requests and shutdown in between back-to-back passes.
                tokio::task::yield_now().await;
                continue;
            }
            Ok(removed) => {
                if removed > 0 {
                    tracing::debug!(removed, "reaper pass done");
                }
                match store.next_expiry().await {
                    Ok(next) => pause_until(next, clock.now()),
                    Err(err) => {
                        warn(&err);
                        ERROR_PAUSE
                    }
                }
            }
            Err(err) => {
                warn(&err);
                ERROR_PAUSE
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            // `Err` means the sender is gone: nobody can ask us to stop any more, so stop now.
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    tracing::debug!("reaper stopped");
}

fn warn(err: &StoreError) {
    tracing::warn!(error = %err, "reaper pass failed; retrying in {}s", ERROR_PAUSE.as_secs());
}

/// How long to sleep when the earliest expiry is `next` and it is `now`.
fn pause_until(next: Option<Timestamp>, now: Timestamp) -> Duration {
    match next {
        Some(at) => Duration::from_secs(at.saturating_sub(now)).clamp(MIN_PAUSE, MAX_PAUSE),
        None => MAX_PAUSE,
    }
}

/// Purges everything expired at `now`, one bounded pass at a time, stopping after a pass that was not
/// full; returns how many entries were removed. For tests and offline maintenance.
pub async fn sweep(store: &StoreHandle, now: Timestamp, batch: usize) -> Result<usize, StoreError> {
    let batch = batch.max(1);
    let mut total = 0;
    loop {
        let removed = store.purge_expired(now, batch).await?;
        total += removed;
        if removed < batch {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{Batch, MemoryStore, RedbStore};

    const NOW: Timestamp = 10_000;

    /// 25 entries expired at `NOW` and 3 live ones.
    async fn seeded(store: &StoreHandle) {
        let mut batch = Batch::new();
        for i in 0..25u8 {
            batch = batch.put(crate::domain::secrets::SECRET, vec![i], vec![], Some(NOW - u64::from(i)));
        }
        for i in 0..3u8 {
            batch =
                batch.put(crate::domain::secrets::METADATA, vec![i], vec![], Some(NOW + 1 + u64::from(i)));
        }
        store.apply(batch, NOW - 100).await.expect("seed");
    }

    fn memory() -> StoreHandle {
        StoreHandle::new(Arc::new(MemoryStore::new()))
    }

    #[tokio::test]
    async fn a_single_pass_removes_at_most_one_batch() {
        let store = memory();
        seeded(&store).await;
        assert_eq!(store.purge_expired(NOW, 10).await.expect("purge"), 10);
        assert_eq!(store.count(crate::domain::secrets::SECRET).await.expect("count"), 15);
    }

    #[tokio::test]
    async fn sweep_removes_every_expired_entry_and_keeps_live_ones() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let redb = RedbStore::open(&dir.path().join("sweep.redb"), crate::domain::KEYSPACES).expect("open");
        for store in [memory(), StoreHandle::new(Arc::new(redb))] {
            seeded(&store).await;
            assert_eq!(sweep(&store, NOW, 10).await.expect("sweep"), 25);
            assert_eq!(store.count(crate::domain::secrets::SECRET).await.expect("count"), 0);
            assert_eq!(store.count(crate::domain::secrets::METADATA).await.expect("count"), 3);
            assert_eq!(store.next_expiry().await.expect("next expiry"), Some(NOW + 1));
            assert_eq!(sweep(&store, NOW, 10).await.expect("sweep"), 0);
        }
    }

    #[tokio::test]
    async fn run_reaps_a_backlog_in_batches_and_stops_on_shutdown() {
        let store = memory();
        seeded(&store).await;
        let clock = Arc::new(ManualClock::new(NOW));
        let (stop, shutdown) = watch::channel(false);
        let reaper = tokio::spawn(run(store.clone(), clock, 10, Arc::default(), shutdown));
        let drained = async {
            while store.count(crate::domain::secrets::SECRET).await.expect("count") > 0 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), drained).await.expect("backlog reaped");
        assert_eq!(store.count(crate::domain::secrets::METADATA).await.expect("count"), 3);
        // The reaper is now asleep until the next expiry; shutdown must wake it.
        stop.send(true).expect("reaper listening");
        tokio::time::timeout(Duration::from_secs(10), reaper).await.expect("reaper stopped").expect("join");
    }

    #[tokio::test]
    async fn run_stops_when_the_shutdown_sender_is_dropped() {
        let (stop, shutdown) = watch::channel(false);
        let reaper =
            tokio::spawn(run(memory(), Arc::new(ManualClock::new(NOW)), 10, Arc::default(), shutdown));
        drop(stop);
        tokio::time::timeout(Duration::from_secs(10), reaper).await.expect("reaper stopped").expect("join");
    }

    #[test]
    fn the_pause_is_until_the_next_expiry_within_one_second_and_a_minute() {
        assert_eq!(pause_until(None, NOW), MAX_PAUSE);
        assert_eq!(pause_until(Some(NOW + 7), NOW), Duration::from_secs(7));
        assert_eq!(pause_until(Some(NOW), NOW), MIN_PAUSE);
        assert_eq!(pause_until(Some(NOW - 50), NOW), MIN_PAUSE);
        assert_eq!(pause_until(Some(NOW + 3_600), NOW), MAX_PAUSE);
        assert_eq!(pause_until(Some(u64::MAX), 0), MAX_PAUSE);
    }
}
