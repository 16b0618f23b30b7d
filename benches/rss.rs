//! Resident memory of the redb store with many live secrets: loads N secrets (default one million)
//! the way v1 shares store them — a secret record and a metadata record, both expiring, so four rows
//! with the expiry index — through the store's own write path, then reads a sample back, and prints
//! the process's resident memory (`VmRSS`, and the peak `VmHWM`), and the disk per secret (pages in use,
//! and the file's length).
//!
//! Run it alone, in release mode, so nothing else in the process counts:
//! `cargo bench --bench rss` (env `LETHE_RSS_SECRETS`, `LETHE_RSS_CACHE_MIB` to change the size of
//! the load and of redb's page cache). It reports; it asserts nothing about memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lethe::store::{Batch, DEFAULT_CACHE_BYTES, REDB_FILE, RedbStore, Store};

/// The server's allocator (see `src/main.rs`), so that memory and speed are measured as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: u64 = 1_800_000_000;
/// Secrets per batch while loading: few commits, so the load is quick.
const PER_BATCH: u64 = 250;
const THREADS: usize = 4;

/// Keys shaped like the domain's (`MasterKey::store_key`): a creation sequence, then 28 bytes of a
/// SHA-256. A secret and its metadata get consecutive sequence numbers, as a v1 share gives them.
fn key(tag: u8, n: u64) -> Vec<u8> {
    let mut input = n.to_le_bytes().to_vec();
    input.push(tag);
    let sequence = (n * 2 + u64::from(tag)) as u32;
    let mut key = sequence.to_be_bytes().to_vec();
    key.extend_from_slice(&ring::digest::digest(&ring::digest::SHA256, &input).as_ref()[..28]);
    key
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench -- FILTER` passes its filter to every bench binary; run only when it names us.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "rss".contains(f.as_str())) {
        return;
    }
    let secrets = env("LETHE_RSS_SECRETS", 1_000_000);
    let cache = env("LETHE_RSS_CACHE_MIB", (DEFAULT_CACHE_BYTES / (1 << 20)) as u64) as usize * (1 << 20);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(REDB_FILE);
    let store = RedbStore::open_with_cache(&path, cache, lethe::domain::KEYSPACES).expect("open redb");
    let (rss0, _) = rss();
    eprintln!(
        "rss: loading {secrets} secrets, redb cache {} MiB, resident at start {} KiB",
        cache >> 20,
        rss0
    );

    let started = Instant::now();
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                loop {
                    let from = next.fetch_add(PER_BATCH, Ordering::Relaxed);
                    if from >= secrets {
                        break;
                    }
                    let mut batch = Batch::new();
                    for n in from..(from + PER_BATCH).min(secrets) {
                        // Sizes of a sealed v1 secret and its metadata record.
                        batch = batch
                            .put(
                                lethe::domain::secrets::SECRET,
                                key(1, n),
                                vec![1; 120],
                                Some(NOW + 604_800 + n % 1000),
                            )
                            .put(
                                lethe::domain::secrets::METADATA,
                                key(2, n),
                                vec![2; 150],
                                Some(NOW + 1_209_600 + n % 1000),
                            );
                    }
                    store.apply(batch, NOW).expect("load");
                }
            });
        }
    });
    let load = started.elapsed();
    let (rss_loaded, hwm_loaded) = rss();

    let started = Instant::now();
    let sample = secrets.min(100_000);
    let step = (secrets / sample).max(1);
    let mut found = 0;
    for i in 0..sample {
        if store.get(lethe::domain::secrets::SECRET, &key(1, i * step), NOW).expect("get").is_some() {
            found += 1;
        }
    }
    let reads = started.elapsed();
    let (rss_read, hwm) = rss();
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let stats = store.writer_stats();
    println!(
        "rss: {secrets} live secrets loaded in {:.1} s ({} commits); {found}/{sample} sampled reads in {:.2} s",
        load.as_secs_f64(),
        stats.commits,
        reads.as_secs_f64()
    );
    println!(
        "rss: resident {:.1} MiB after loading (peak {:.1} MiB), {:.1} MiB after reads (peak {:.1} MiB); \
         redb cache {} MiB",
        rss_loaded as f64 / 1024.0,
        hwm_loaded as f64 / 1024.0,
        rss_read as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cache >> 20
    );
    // After the memory readings: walking every table would fill the cache.
    let pages = store.allocated_bytes().expect("allocated bytes");
    println!(
        "rss: pages in use {:.1} MiB, {:.0} bytes per secret (secret + metadata + 2 index rows); database \
         file {:.1} MiB, as redb doubles it ahead of use",
        pages as f64 / (1 << 20) as f64,
        pages as f64 / secrets.max(1) as f64,
        file as f64 / (1 << 20) as f64,
    );
}
