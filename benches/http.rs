//! The HTTP hot path over loopback, through the real server (in-process, redb, bcrypt cost 4):
//! `GET /health` (the floor: accept, parse, route, headers), v1 share and v1 reveal, from 1 and 64
//! keep-alive connections. Compare share and reveal with `/health` of the same run.
//!
//! The runtime, the server, the connections and (for reveals) the secrets to reveal are made outside
//! the timed section. `cargo bench --bench http`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hyper::Method;
use hyper::body::Bytes;
use lethe::bench::{Connection, Endpoint, LocalServer};
use lethe::store::Engine;

/// The server's allocator (see `src/main.rs`), so that memory and speed are measured as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const CONNECTIONS: [usize; 2] = [1, 64];

#[derive(Clone, Copy)]
enum Op {
    Health,
    Share,
    Reveal,
}

async fn health(conn: &mut Connection) {
    let (status, _) = conn.send(Method::GET, "/health", None, Bytes::new()).await.expect("health");
    assert!(status.is_success());
}

async fn share(conn: &mut Connection) -> String {
    let form = Bytes::from_static(b"secret=lethe-http-bench-0123456789abcdef&ttl=3600");
    let (status, body) = conn.send(Method::POST, "/api/v1/share", FORM, form).await.expect("share");
    assert!(status.is_success(), "share answered {status}");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("share reply");
    json["secret_key"].as_str().expect("secret_key").to_owned()
}

async fn reveal(conn: &mut Connection, key: &str) {
    let path = format!("/api/v1/secret/{key}");
    let (status, _) = conn.send(Method::POST, &path, FORM, Bytes::new()).await.expect("reveal");
    assert!(status.is_success(), "reveal answered {status}");
}

/// Runs `iters` operations spread over every connection; returns the wall time of the timed part.
async fn run(conns: &Mutex<Vec<Connection>>, op: Op, iters: u64) -> Duration {
    let mut pool: Vec<Connection> = std::mem::take(&mut *conns.lock().unwrap());
    let iters = iters as usize;
    let mut keys = Vec::new();
    if let Op::Reveal = op {
        // The secrets to reveal are made first, untimed.
        let made = many(pool, iters, |mut conn, n| async move {
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(share(&mut conn).await);
            }
            (conn, keys)
        })
        .await;
        pool = Vec::with_capacity(made.len());
        for (conn, made) in made {
            pool.push(conn);
            keys.extend(made);
        }
    }
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let done = many(pool, iters, move |mut conn, n| {
        let keys = Arc::clone(&keys);
        let next = Arc::clone(&next);
        async move {
            for _ in 0..n {
                match op {
                    Op::Health => health(&mut conn).await,
                    Op::Share => {
                        share(&mut conn).await;
                    }
                    Op::Reveal => reveal(&mut conn, &keys[next.fetch_add(1, Ordering::Relaxed)]).await,
                }
            }
            (conn, Vec::new())
        }
    })
    .await;
    let elapsed = start.elapsed();
    conns.lock().unwrap().extend(done.into_iter().map(|(conn, _)| conn));
    elapsed
}

/// Gives each connection its share of `total` and runs them all at once.
async fn many<F, Fut>(pool: Vec<Connection>, total: usize, f: F) -> Vec<(Connection, Vec<String>)>
where
    F: Fn(Connection, usize) -> Fut,
    Fut: Future<Output = (Connection, Vec<String>)> + Send + 'static,
{
    let n = pool.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, conn) in pool.into_iter().enumerate() {
        let count = total / n + usize::from(i < total % n);
        tasks.spawn(f(conn, count));
    }
    let mut out = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        out.push(done.expect("connection task"));
    }
    out
}

fn http_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let server = rt.block_on(LocalServer::start(Engine::Redb, 4, 64)).expect("start the server");
    let endpoint = Arc::new(Endpoint::parse(server.base()).expect("endpoint"));
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(1));
    for connections in CONNECTIONS {
        let conns =
            Mutex::new((0..connections).map(|_| Connection::new(Arc::clone(&endpoint))).collect::<Vec<_>>());
        for (name, op) in [("health", Op::Health), ("v1_share", Op::Share), ("v1_reveal", Op::Reveal)] {
            group.bench_with_input(BenchmarkId::new(name, connections), &op, |b, &op| {
                b.iter_custom(|iters| rt.block_on(run(&conns, op, iters)))
            });
        }
    }
    group.finish();
    if let Some(stats) = server.writer_stats() {
        eprintln!(
            "redb writer over the whole run: {:.1} batches per commit, commit mean {:.3} ms",
            stats.jobs_per_commit(),
            stats.mean_commit_time().as_secs_f64() * 1e3
        );
    }
    rt.block_on(server.stop());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = http_benches
}
criterion_main!(benches);
