//! The store's hot path, per backend: create (`require_absent` + `put`) and take (`require_present` +
//! `take`, the retrieve-and-delete of a reveal), from 1, 16 and 64 concurrent callers.
//!
//! On redb a single caller pays one durable commit per operation — the one-commit-per-operation
//! baseline; with many callers the writer thread shares each commit among every batch waiting, so
//! compare the 16/64-caller throughput with the 1-caller figure of the same run. Stores, keys and
//! threads' work lists are prepared outside the timed section; after each redb benchmark the writer's
//! own statistics (batches per commit, commit latency) are printed.
//!
//! `cargo bench --bench store`; `-- take` or `-- redb` to filter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lethe::store::{Batch, Keyspace, MemoryStore, Outcome, REDB_FILE, RedbStore, Store, WriterStats};

/// The server's allocator (see `src/main.rs`), so that memory and speed are measured as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: u64 = 1_800_000_000;
const EXPIRES: u64 = NOW + 3600;
const KS: Keyspace = Keyspace::Secret;
/// About the size of a sealed v1 secret record.
const VALUE: [u8; 120] = [7; 120];
const CALLERS: [usize; 3] = [1, 16, 64];

/// Keys like the domain's (`MasterKey::store_key`): the id's creation sequence, then 28 bytes of its
/// SHA-256, so keys made one after another sit together in the B-tree.
fn key(n: u64) -> Vec<u8> {
    let mut key = (n as u32).to_be_bytes().to_vec();
    key.extend_from_slice(&ring::digest::digest(&ring::digest::SHA256, &n.to_le_bytes()).as_ref()[..28]);
    key
}

fn create(store: &dyn Store, n: u64) {
    let k = key(n);
    let batch = Batch::new().require_absent(KS, k.clone()).put(KS, k, VALUE.to_vec(), Some(EXPIRES));
    let outcome = store.apply(batch, NOW).expect("create");
    assert_eq!(outcome, Outcome::Applied(vec![None]));
}

fn take(store: &dyn Store, n: u64) {
    let k = key(n);
    match store.apply(Batch::new().require_present(KS, k.clone()).take(KS, k), NOW).expect("take") {
        Outcome::Applied(slots) => assert!(slots[0].is_some()),
        Outcome::Conflict(_) => panic!("take found no entry"),
    }
}

/// Puts keys `from..to` in large batches (a few commits, untimed).
fn fill(store: &dyn Store, from: u64, to: u64) {
    let mut n = from;
    while n < to {
        let mut batch = Batch::new();
        for m in n..(n + 2000).min(to) {
            batch = batch.put(KS, key(m), VALUE.to_vec(), Some(EXPIRES));
        }
        store.apply(batch, NOW).expect("fill");
        n += 2000;
    }
}

/// Runs `op` on keys `from..from + iters` from `callers` threads and returns the wall time.
fn parallel(
    store: &Arc<dyn Store>,
    callers: usize,
    from: u64,
    iters: u64,
    op: fn(&dyn Store, u64),
) -> Duration {
    let next = AtomicU64::new(from);
    let end = from + iters;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..callers {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= end {
                        break;
                    }
                    op(&**store, n);
                }
            });
        }
    });
    start.elapsed()
}

struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    redb: Option<Arc<RedbStore>>,
    _dir: Option<tempfile::TempDir>,
}

fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let redb = Arc::new(RedbStore::open(&dir.path().join(REDB_FILE)).expect("open redb"));
    vec![
        Backend { name: "memory", store: Arc::new(MemoryStore::new()), redb: None, _dir: None },
        Backend { name: "redb", store: redb.clone(), redb: Some(redb), _dir: Some(dir) },
    ]
}

fn writer_line(name: &str, before: WriterStats, after: WriterStats) {
    let s = after.since(&before);
    eprintln!(
        "  {name}: {} batches in {} commits ({:.1} per commit), commit mean {:.3} ms",
        s.jobs,
        s.commits,
        s.jobs_per_commit(),
        s.mean_commit_time().as_secs_f64() * 1e3
    );
}

fn bench_op(c: &mut Criterion, op_name: &str, op: fn(&dyn Store, u64), prefill: bool) {
    let mut group = c.benchmark_group(format!("store/{op_name}"));
    group.throughput(Throughput::Elements(1));
    for backend in backends() {
        // Every benchmark uses fresh keys: creates need them absent, takes need them present.
        let next = AtomicU64::new(0);
        for callers in CALLERS {
            let before = backend.redb.as_ref().map(|r| r.writer_stats());
            group.bench_with_input(BenchmarkId::new(backend.name, callers), &callers, |b, &callers| {
                b.iter_custom(|iters| {
                    let from = next.fetch_add(iters, Ordering::Relaxed);
                    if prefill {
                        fill(&*backend.store, from, from + iters);
                    }
                    parallel(&backend.store, callers, from, iters, op)
                })
            });
            if let (Some(redb), Some(before)) = (&backend.redb, before) {
                writer_line(&format!("redb {op_name} x{callers}"), before, redb.writer_stats());
            }
        }
    }
    group.finish();
}

fn store_benches(c: &mut Criterion) {
    bench_op(c, "create", create, false);
    bench_op(c, "take", take, true);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = store_benches
}
criterion_main!(benches);
