//! The store's hot path, per backend: create (`require_absent` + `put`) and take (`require_present` +
//! `take`, the retrieve-and-delete of a reveal), from 1, 16 and 64 concurrent callers, in two shapes:
//!
//! - `store/create`, `store/take`: each caller is a thread that calls the blocking `apply` and waits.
//! - `store/create-pipelined`, `store/take-pipelined`: one thread keeps that many batches in flight
//!   through `apply_then`, as the server's async tasks do: a task does not hold a thread while its
//!   batch waits for the commit, so the writer does not compete with 64 runnable threads for the
//!   cores. With one in flight this is the same one-commit-per-operation baseline.
//!
//! On redb a single caller pays one durable commit per operation — the one-commit-per-operation
//! baseline; with many callers the writer thread shares each commit among every batch waiting, so
//! compare the 16/64-caller throughput with the 1-caller figure of the same run and shape. Stores and
//! keys are prepared outside the timed section; after each redb benchmark the writer's own statistics
//! (batches per commit, commit latency) are printed.
//!
//! `cargo bench --bench store`; `-- take`, `-- pipelined` or `-- redb` to filter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lethe::store::{
    Batch, Keyspace, MemoryStore, Outcome, REDB_FILE, RedbStore, Store, StoreError, WriterStats,
};

/// The server's allocator (see `src/main.rs`), so that memory and speed are measured as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: u64 = 1_800_000_000;
const EXPIRES: u64 = NOW + 3600;
const KS: Keyspace = lethe::domain::secrets::SECRET;
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

/// The order in which a run uses its keys `from..from + iters`: the `i`-th operation gets key
/// `from + i * stride mod iters`, a permutation because the stride is coprime to `iters`. Creates go in
/// sequence (stride 1), as new keys lead with the next sequence number. Takes are spread over the whole
/// range, because reveals come in no particular order: taking keys in order would let one commit's
/// takes share leaves, which reveals rarely do.
#[derive(Clone, Copy)]
struct Order {
    from: u64,
    iters: u64,
    stride: u64,
}

impl Order {
    fn new(op: &Op, from: u64, iters: u64) -> Order {
        let iters = iters.max(1);
        let stride = if op.prefill { spread(iters) } else { 1 };
        Order { from, iters, stride }
    }

    fn key(&self, i: u64) -> u64 {
        let offset = u128::from(i) * u128::from(self.stride) % u128::from(self.iters);
        self.from + u64::try_from(offset).unwrap_or(0)
    }
}

/// About `n / φ`, the stride that spreads consecutive picks most evenly (as in Fibonacci hashing),
/// moved up to the next one coprime to `n`.
fn spread(n: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let mut stride = ((n as f64 * 0.618_033_988_75) as u64).max(1);
    while gcd(stride, n) != 1 {
        stride += 1;
    }
    stride
}

/// An operation: the batch for key number `n`, and the check of its outcome.
#[derive(Clone, Copy)]
struct Op {
    name: &'static str,
    batch: fn(u64) -> Batch,
    check: fn(Outcome),
    /// Whether its keys must be stored first (they are then taken in a spread [`Order`]).
    prefill: bool,
}

const CREATE: Op = Op {
    name: "create",
    batch: |n| {
        let k = key(n);
        Batch::new().require_absent(KS, k.clone()).put(KS, k, VALUE.to_vec(), Some(EXPIRES))
    },
    check: |outcome| assert_eq!(outcome, Outcome::Applied(vec![None])),
    prefill: false,
};

const TAKE: Op = Op {
    name: "take",
    batch: |n| {
        let k = key(n);
        Batch::new().require_present(KS, k.clone()).take(KS, k)
    },
    check: |outcome| match outcome {
        Outcome::Applied(slots) => assert!(slots[0].is_some()),
        Outcome::Conflict(_) => panic!("take found no entry"),
    },
    prefill: true,
};

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
fn parallel(store: &Arc<dyn Store>, callers: usize, from: u64, iters: u64, op: Op) -> Duration {
    let order = Order::new(&op, from, iters);
    let next = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..callers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= iters {
                        break;
                    }
                    (op.check)(store.apply((op.batch)(order.key(i)), NOW).expect("apply"));
                }
            });
        }
    });
    start.elapsed()
}

/// Runs `op` on keys `from..from + iters` with up to `depth` batches in flight, all sent from this
/// thread through `apply_then`, and returns the wall time.
fn pipelined(store: &Arc<dyn Store>, depth: usize, from: u64, iters: u64, op: Op) -> Duration {
    let (answered, answers) = mpsc::channel::<Result<Outcome, StoreError>>();
    let order = Order::new(&op, from, iters);
    let mut next = 0;
    let mut in_flight = 0;
    let start = Instant::now();
    while next < iters || in_flight > 0 {
        while in_flight < depth && next < iters {
            let answered = answered.clone();
            store.apply_then(
                (op.batch)(order.key(next)),
                NOW,
                Box::new(move |result| {
                    let _ = answered.send(result);
                }),
            );
            next += 1;
            in_flight += 1;
        }
        // A commit answers its whole group at once: take every answer there is before refilling.
        let first = answers.recv().expect("the store answers every batch");
        for result in std::iter::once(first).chain(answers.try_iter()) {
            (op.check)(result.expect("apply"));
            in_flight -= 1;
        }
    }
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
    let redb =
        Arc::new(RedbStore::open(&dir.path().join(REDB_FILE), lethe::domain::KEYSPACES).expect("open redb"));
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

/// How concurrent callers reach the store (see the module docs).
#[derive(Clone, Copy)]
enum Shape {
    Threads,
    Pipelined,
}

fn bench_op(c: &mut Criterion, op: Op, shape: Shape) {
    let label = match shape {
        Shape::Threads => op.name.to_owned(),
        Shape::Pipelined => format!("{}-pipelined", op.name),
    };
    let mut group = c.benchmark_group(format!("store/{label}"));
    group.throughput(Throughput::Elements(1));
    for backend in backends() {
        // Every benchmark uses fresh keys: creates need them absent, takes need them present.
        let next = AtomicU64::new(0);
        for callers in CALLERS {
            let before = backend.redb.as_ref().map(|r| r.writer_stats());
            group.bench_with_input(BenchmarkId::new(backend.name, callers), &callers, |b, &callers| {
                b.iter_custom(|iters| {
                    let from = next.fetch_add(iters, Ordering::Relaxed);
                    if op.prefill {
                        fill(&*backend.store, from, from + iters);
                    }
                    match shape {
                        Shape::Threads => parallel(&backend.store, callers, from, iters, op),
                        Shape::Pipelined => pipelined(&backend.store, callers, from, iters, op),
                    }
                })
            });
            if let (Some(redb), Some(before)) = (&backend.redb, before) {
                writer_line(&format!("redb {label} x{callers}"), before, redb.writer_stats());
            }
        }
    }
    group.finish();
}

fn store_benches(c: &mut Criterion) {
    for shape in [Shape::Threads, Shape::Pipelined] {
        bench_op(c, CREATE, shape);
        bench_op(c, TAKE, shape);
    }
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
