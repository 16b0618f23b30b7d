//! `lethe bench`: a load generator for capacity planning. It drives a lethe server over HTTP with a
//! chosen mix, from N keep-alive connections, and reports per operation throughput, latency
//! percentiles and errors, the bytes each stored secret takes on disk, and a capacity statement.
//!
//! Without `--url` it starts a server of its own in this process, on `127.0.0.1:0`, with a fresh
//! temporary data directory (removed afterwards) and a cheap bcrypt cost, so that the run measures the
//! server and nothing else on the machine; with `--url` it sends requests to that address only.
//!
//! A run has three phases, each bounded by both a share of the request cap and a share of the time
//! cap: `GET /health` (the floor of the HTTP stack: everything but the domain and the store), then
//! creates, then reads of what was created (each read consumes its secret). Every throughput is thus
//! comparable, as a ratio, to the `/health` figure of the same run, same client and same server —
//! the only comparison that means something on a shared, noisy machine.
//!
//! The HTTP client is hyper's low-level `client::conn::http1`: one connection per worker, no pool, no
//! retries. A load generator wants exactly that (N connections means N sockets, each request waits
//! for the previous one on its socket), and it adds no dependency the server does not already have.
//!
//! This module must not touch the server's internals beyond starting it: every measurement is taken
//! through HTTP, except the writer statistics and the disk use of a store it opened itself, and the
//! processor time `/proc` reports for this process and the store's writer thread.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::App;
use crate::clock::SystemClock;
use crate::config::{Http, Mode, PassphraseRules, RateLimit, RawConfig, RawListener};
use crate::server::Parts;
use crate::store::{self, Engine, RedbStore, WriterStats};

/// A password-encrypted OpenPGP message (SKESK + SEIPD), made once with
/// `gpg --symmetric --armor --cipher-algo AES256`. The server only checks its shape; nobody decrypts it.
pub const ARMORED_MESSAGE: &str = "-----BEGIN PGP MESSAGE-----

jA0ECQMCgBU5Hs9c3TL/0kgBM5xcpwuaX0sEAjFSnEm6WxNewLsQvJ2/KcLcWV+V
wLfTq3uAOg5PR1YtcTynPj+oP3OzjjBu6RDUgPOMO2bkUOGZ/bo42mc=
=RvoK
-----END PGP MESSAGE-----
";

/// The passphrase of the `v1-passphrase` mix.
const PASSPHRASE: &str = "correct horse battery staple";

/// bcrypt cost of the in-process server unless `--bcrypt-cost` says otherwise.
pub const DEFAULT_BCRYPT_COST: u32 = 4;
const DEFAULT_DURATION: f64 = 10.0;
/// The time cap when only `--requests` is given: the run stays bounded.
const DEFAULT_DURATION_WITH_REQUESTS: f64 = 300.0;
const DEFAULT_REQUESTS: u64 = 10_000_000;
/// One request that takes longer than this counts as an error and its connection is replaced.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Error messages kept per operation, so a report shows why without flooding.
const ERROR_SAMPLES: usize = 3;

/// What `lethe bench` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// v1 dialect: `POST /api/v1/share`, then `POST /api/v1/secret/{key}`.
    V1,
    /// The same with a passphrase on share and on reveal (bcrypt on both).
    V1Passphrase,
    /// Client-encrypted secrets: `POST /create/secret`, then `GET /secret/{id}`.
    Client,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::V1 => "v1",
            Mix::V1Passphrase => "v1-passphrase",
            Mix::Client => "client",
        }
    }

    /// Names of the create and read operations in reports.
    fn ops(self) -> (&'static str, &'static str) {
        match self {
            Mix::V1 | Mix::V1Passphrase => ("share", "reveal"),
            Mix::Client => ("create", "read"),
        }
    }
}

/// `lethe bench` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of a running lethe server (plain HTTP), e.g. http://127.0.0.1:8080. Without it, lethe
    /// bench starts its own server in this process on 127.0.0.1 with a temporary data directory.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Workload: v1 (share + reveal), v1-passphrase (both with a passphrase), client (client-encrypted
    /// create + read).
    #[arg(long, value_enum, default_value_t = Mix::V1)]
    pub mix: Mix,
    /// Concurrent connections, each sending one request at a time.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
    /// Time cap of the whole run in seconds [default: 10, or 300 with --requests].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Request cap of the whole run [default: 10000000]. Both caps always apply; the first reached ends
    /// a phase.
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Storage engine of the in-process server: redb or memory [default: redb].
    #[arg(long, value_name = "ENGINE")]
    pub storage: Option<String>,
    /// bcrypt cost of the in-process server [default: 4, cheap, so that passphrase runs measure the
    /// server; production's default is 10].
    #[arg(long, value_name = "COST")]
    pub bcrypt_cost: Option<u32>,
    /// Live secrets to size the disk for in the capacity statement.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub live_secrets: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A validated run: every default resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub mix: Mix,
    pub concurrency: usize,
    pub duration: Duration,
    pub requests: u64,
    pub live_secrets: u64,
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum Target {
    Url(String),
    InProcess { engine: Engine, bcrypt_cost: u32 },
}

impl BenchArgs {
    /// Checks the flags; the error is one line for the terminal.
    pub fn plan(&self) -> Result<Plan, String> {
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err("--concurrency must be between 1 and 10000".into());
        }
        let duration = match (self.duration, self.requests) {
            (Some(d), _) => d,
            (None, Some(_)) => DEFAULT_DURATION_WITH_REQUESTS,
            (None, None) => DEFAULT_DURATION,
        };
        if !duration.is_finite() || duration <= 0.0 || duration > 86_400.0 {
            return Err("--duration must be a number of seconds between 0 and 86400".into());
        }
        let requests = self.requests.unwrap_or(DEFAULT_REQUESTS);
        if requests == 0 {
            return Err("--requests must be at least 1".into());
        }
        let target = match &self.url {
            Some(url) => {
                if self.storage.is_some() || self.bcrypt_cost.is_some() {
                    return Err(
                        "--storage and --bcrypt-cost apply to the in-process server only, not to --url"
                            .into(),
                    );
                }
                Endpoint::parse(url)?;
                Target::Url(url.clone())
            }
            None => {
                let engine = match &self.storage {
                    Some(s) => s.parse().map_err(|e| format!("--storage: {e}"))?,
                    None => Engine::Redb,
                };
                let bcrypt_cost = self.bcrypt_cost.unwrap_or(DEFAULT_BCRYPT_COST);
                if !(4..=31).contains(&bcrypt_cost) {
                    return Err("--bcrypt-cost must be between 4 and 31".into());
                }
                Target::InProcess { engine, bcrypt_cost }
            }
        };
        Ok(Plan {
            target,
            mix: self.mix,
            concurrency: self.concurrency,
            duration: Duration::from_secs_f64(duration),
            requests,
            live_secrets: self.live_secrets,
        })
    }
}

/// `lethe bench`: runs the plan on a runtime of its own and prints the report.
pub fn main(args: &BenchArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("lethe bench: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("lethe bench: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(&plan)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(err) => {
                        eprintln!("lethe bench: cannot encode the report: {err}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", report.render());
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("lethe bench: {message}");
            ExitCode::from(1)
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The base URL the load went to.
    pub url: String,
    /// `"in-process"` or `"url"`.
    pub server: &'static str,
    /// Storage engine of an in-process server.
    pub storage: Option<String>,
    /// bcrypt cost of an in-process server.
    pub bcrypt_cost: Option<u32>,
    pub mix: &'static str,
    pub concurrency: usize,
    /// Processors this process may run on (`available_parallelism`).
    pub cores: Option<usize>,
    pub duration_cap_seconds: f64,
    pub request_cap: u64,
    /// `health`, then the mix's create and read operations.
    pub operations: Vec<OpReport>,
    pub disk: Disk,
    /// The group-commit writer during the create and read phases (in-process redb only).
    pub writer: Option<WriterReport>,
    /// How the data directory's disk flushes; `None` without a redb store of this process's own to
    /// probe (`--url`, the memory store), or when the probe failed (then see `flush_error`).
    pub flush: Option<Flush>,
    pub flush_error: Option<String>,
    pub capacity: Capacity,
}

/// One operation's numbers. Latencies are of successful requests only.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub name: &'static str,
    /// Successful requests.
    pub ok: u64,
    pub errors: u64,
    /// Wall time of the phase.
    pub seconds: f64,
    /// Successful requests per second.
    pub per_second: f64,
    /// `per_second` over the `/health` rate of the same run.
    pub vs_health: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// A few distinct error descriptions (status and message, never a key or a value).
    pub error_samples: Vec<String>,
    /// Processor use during the phase; `None` without `/proc`.
    pub cpu: Option<CpuUse>,
    /// Processor time per successful request, in µs: `cpu.cores` over `per_second`. Steadier than the
    /// rates on a shared host, so the figure to compare builds by.
    pub cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// Growth of the pages in use over the create phase, per secret created; `None` when the run
    /// cannot see the store (`--url`, memory store).
    pub bytes_per_secret: Option<f64>,
    pub secrets_created: u64,
    /// Growth of the pages in use ([`RedbStore::allocated_bytes`]) over the create phase.
    pub pages_growth_bytes: Option<u64>,
    /// Growth of the file's length over the create phase: redb doubles the file ahead of use (up to
    /// 4 GiB, then grows it 4 GiB at a time), so over a short run this is a step, not a rate.
    pub file_growth_bytes: Option<u64>,
    /// Why `bytes_per_secret` is missing, or what it includes.
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WriterReport {
    pub commits: u64,
    pub batches: u64,
    pub batches_per_commit: f64,
    pub largest_group: u64,
    pub mean_commit_ms: f64,
    pub max_commit_ms: f64,
}

/// How fast the disk under the data directory makes writes durable, measured the way PostgreSQL's
/// `pg_test_fsync` does: the median time of `fdatasync` after writing one page, [`FLUSH_PAGES`]
/// adjacent pages, and as many pages scattered over a file written out beforehand. A durable redb
/// commit flushes the B-tree pages its group dirtied, and reveals of secrets made at different times
/// dirty pages far apart, so where a disk charges for each separate write, the scattered figure is
/// what bounds a commit of reveals.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Flush {
    pub pages: usize,
    pub one_page_ms: f64,
    pub adjacent_ms: f64,
    pub scattered_ms: f64,
}

/// Pages written before each flush of the adjacent and scattered probes: a full group of reveals
/// dirties about that many.
pub const FLUSH_PAGES: usize = 64;
const FLUSH_PAGE_BYTES: u64 = 4096;
/// Written out in full, not just sized: in a sparse file every flush would also pay for allocating
/// blocks, which a database file that has settled does not.
const FLUSH_FILE_BYTES: u64 = 32 << 20;
const FLUSH_ROUNDS: usize = 15;

/// Measures [`Flush`] with a scratch file in `dir`, removed afterwards. Blocking: it writes 32 MiB and
/// flushes 45 times.
fn probe_flush(dir: &Path) -> std::io::Result<Flush> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("flush-probe");
    let result = (|| {
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let chunk = vec![0x5a_u8; 1 << 20];
        for at in (0..FLUSH_FILE_BYTES).step_by(chunk.len()) {
            file.write_all_at(&chunk, at)?;
        }
        file.sync_data()?;
        let pages = FLUSH_FILE_BYTES / FLUSH_PAGE_BYTES;
        // xorshift64: any spread of offsets will do, and the same one every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random_page = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % pages
        };
        let page = [0xa5_u8; FLUSH_PAGE_BYTES as usize];
        let median_flush = |offsets: &mut dyn FnMut() -> Vec<u64>| -> std::io::Result<f64> {
            let mut times = Vec::with_capacity(FLUSH_ROUNDS);
            for _ in 0..FLUSH_ROUNDS {
                for page_no in offsets() {
                    file.write_all_at(&page, page_no * FLUSH_PAGE_BYTES)?;
                }
                let started = Instant::now();
                file.sync_data()?;
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            Ok(times[times.len() / 2])
        };
        let n = FLUSH_PAGES as u64;
        let one_page_ms = median_flush(&mut || vec![random_page()])?;
        let adjacent_ms = median_flush(&mut || {
            let first = random_page() % (pages - n);
            (first..first + n).collect()
        })?;
        let scattered_ms = median_flush(&mut || (0..n).map(|_| random_page()).collect())?;
        Ok(Flush { pages: FLUSH_PAGES, one_page_ms, adjacent_ms, scattered_ms })
    })();
    let _ = std::fs::remove_file(&path);
    result
}

#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub creates_per_second: f64,
    pub reads_per_second: f64,
    pub live_secrets: u64,
    /// Pages `live_secrets` secrets fill; the file can be up to twice this (see [`Disk`]).
    pub disk_bytes: Option<f64>,
}

impl Report {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let server = match (&self.storage, self.bcrypt_cost) {
            (Some(storage), Some(cost)) => format!(
                "in-process server at {} ({storage} store in a temporary data directory, bcrypt cost {cost}, \
                 sharing this machine's cores with the load generator)",
                self.url
            ),
            _ => format!("server at {}", self.url),
        };
        let _ = writeln!(out, "lethe bench: mix {}, {} connections, {server}", self.mix, self.concurrency);
        let _ = writeln!(
            out,
            "caps: {:.1} s and {} requests for the whole run (health 20 %, creates 40 %, reads 40 %)\n",
            self.duration_cap_seconds, self.request_cap
        );
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8}",
            "op", "ok", "errors", "req/s", "x health", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        for op in &self.operations {
            let _ = writeln!(
                out,
                "{:<8} {:>9} {:>7} {:>10.0} {:>9} {:>8} {:>8} {:>8} {:>8}",
                op.name,
                op.ok,
                op.errors,
                op.per_second,
                op.vs_health.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                ms(op.p50_ms),
                ms(op.p90_ms),
                ms(op.p99_ms),
                ms(op.max_ms),
            );
        }
        let busy: Vec<String> = self
            .operations
            .iter()
            .filter_map(|op| {
                let cpu = op.cpu?;
                let details: Vec<String> = [
                    cpu.writer_cores.map(|writer| format!("store writer {writer:.2}")),
                    op.cpu_us_per_request.map(|us| format!("{us:.0} µs per request")),
                ]
                .into_iter()
                .flatten()
                .collect();
                Some(if details.is_empty() {
                    format!("{} {:.2}", op.name, cpu.cores)
                } else {
                    format!("{} {:.2} ({})", op.name, cpu.cores, details.join(", "))
                })
            })
            .collect();
        if !busy.is_empty() {
            let whose = if self.in_process() { "load generator and server" } else { "the load generator" };
            let of = self.cores.map_or_else(String::new, |n| format!(", of {n}"));
            let _ = writeln!(out, "cores busy in this process ({whose}{of}): {}", busy.join(", "));
        }
        for op in &self.operations {
            for sample in &op.error_samples {
                let _ = writeln!(out, "  {} error: {sample}", op.name);
            }
        }
        let _ = writeln!(out);
        match (self.disk.bytes_per_secret, self.disk.pages_growth_bytes) {
            (Some(per), Some(growth)) => {
                let file = match self.disk.file_growth_bytes {
                    Some(file) => format!("; the file grew {} in redb's steps", human_bytes(file as f64)),
                    None => String::new(),
                };
                let _ = writeln!(
                    out,
                    "disk: {per:.0} bytes per stored secret (pages in use grew {} over {} secrets: {}{file})",
                    human_bytes(growth as f64),
                    self.disk.secrets_created,
                    self.disk.note
                );
            }
            _ => {
                let _ = writeln!(out, "disk: bytes per stored secret n/a ({})", self.disk.note);
            }
        }
        if let Some(w) = &self.writer {
            let _ = writeln!(
                out,
                "group commit: {} batches in {} durable commits ({:.1} per commit, largest {}), commit \
                 mean {:.2} ms, max {:.2} ms",
                w.batches,
                w.commits,
                w.batches_per_commit,
                w.largest_group,
                w.mean_commit_ms,
                w.max_commit_ms
            );
        }
        match (&self.flush, &self.flush_error) {
            (Some(f), _) => {
                let _ = writeln!(
                    out,
                    "disk flush (fdatasync in the data directory, median of {FLUSH_ROUNDS}): after 1 page \
                     {:.2} ms, {n} adjacent pages {:.2} ms, {n} scattered pages {:.2} ms",
                    f.one_page_ms,
                    f.adjacent_ms,
                    f.scattered_ms,
                    n = f.pages
                );
            }
            (None, Some(err)) => {
                let _ = writeln!(out, "disk flush: n/a ({err})");
            }
            (None, None) => {}
        }
        let c = &self.capacity;
        let (create, read) = self.ops_names();
        let _ = writeln!(
            out,
            "\ncapacity on this machine at {} connections: about {:.0} {create}s/s and {:.0} {read}s/s \
             sustained (see p99 above for the latency at that rate);",
            self.concurrency, c.creates_per_second, c.reads_per_second
        );
        let failed: u64 = self.operations.iter().skip(1).map(|op| op.errors).sum();
        if failed > 0 {
            // A server that refuses (rate limits, a full disk) answers fast, and those answers are not
            // capacity: the rates count successes only, so say so where the plan is read.
            let _ = writeln!(
                out,
                "{failed} creates and reads failed (see the errors above): the rates count successes only, \
                 so plan from a run without errors;"
            );
        }
        if let Some(limit) = self.processor_limit() {
            let _ = writeln!(out, "{limit}");
        }
        match c.disk_bytes {
            Some(bytes) => {
                let _ = writeln!(
                    out,
                    "{} live secrets fill about {} of pages; give the data directory twice that, because \
                     redb doubles its file as it fills (4 GiB at a time past 4 GiB) and never shrinks it.",
                    c.live_secrets,
                    human_bytes(bytes)
                );
            }
            None => {
                let _ = writeln!(out, "disk for {} live secrets: n/a ({}).", c.live_secrets, self.disk.note);
            }
        }
        out
    }

    fn in_process(&self) -> bool {
        self.server == "in-process"
    }

    /// Whether the processor bounded the create and read rates, when the whole system under test is this
    /// process and the cores it may use are known.
    fn processor_limit(&self) -> Option<String> {
        let cores = self.cores.filter(|_| self.in_process())? as f64;
        let busiest =
            self.operations.iter().skip(1).filter_map(|op| op.cpu).map(|c| c.cores).reduce(f64::max)?;
        Some(if busiest >= 0.9 * cores {
            format!(
                "the processor was the limit ({busiest:.2} of {cores} cores busy): more cores, or the load \
                 generator on another machine (--url), would raise these rates;"
            )
        } else {
            let wait = if self.writer.is_some() { ", and requests waited for durable commits" } else { "" };
            format!(
                "the processor was not the limit (at most {busiest:.2} of {cores} cores busy){wait}: more \
                 connections would raise these rates, and their latency with them;"
            )
        })
    }

    fn ops_names(&self) -> (&'static str, &'static str) {
        match self.mix {
            "client" => Mix::Client.ops(),
            _ => Mix::V1.ops(),
        }
    }
}

fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Runs a plan: starts the in-process server if asked, runs the three phases, stops the server.
pub async fn run(plan: &Plan) -> Result<Report, String> {
    match &plan.target {
        Target::Url(url) => {
            let endpoint = Arc::new(Endpoint::parse(url)?);
            let mut report = drive(plan, endpoint, None).await?;
            report.server = "url";
            Ok(report)
        }
        Target::InProcess { engine, bcrypt_cost } => {
            let server = LocalServer::start(*engine, *bcrypt_cost, plan.concurrency).await?;
            let endpoint = Arc::new(Endpoint::parse(&server.base)?);
            let result = drive(plan, endpoint, Some(&server)).await;
            server.stop().await;
            let mut report = result?;
            report.storage = Some(engine.to_string());
            report.bcrypt_cost = Some(*bcrypt_cost);
            Ok(report)
        }
    }
}

async fn drive(plan: &Plan, endpoint: Arc<Endpoint>, server: Option<&LocalServer>) -> Result<Report, String> {
    // One request first, so an unreachable or wrong URL is one clear error instead of a report full of
    // connection failures.
    let mut probe = Connection::new(Arc::clone(&endpoint));
    match probe.send(Method::GET, "/health", None, Bytes::new()).await {
        Ok((status, _)) if status.is_success() => {}
        Ok((status, _)) => {
            return Err(format!("{}/health answered {status}; is this a lethe server?", endpoint.base));
        }
        Err(err) => return Err(format!("cannot reach {}: {err}", endpoint.base)),
    }
    drop(probe);

    let secs = plan.duration.as_secs_f64();
    let share = |fraction: f64| Duration::from_secs_f64(secs * fraction);
    let health_cap = (plan.requests / 5).max(1);
    let create_cap = (plan.requests * 2 / 5).max(1);

    // Before any load, so that neither disturbs the other.
    let (flush, flush_error) = match server {
        Some(server) => match server.probe_flush().await {
            Some(Ok(flush)) => (Some(flush), None),
            Some(Err(err)) => (None, Some(err)),
            None => (None, None),
        },
        None => (None, None),
    };
    let health =
        phase(plan.concurrency, share(0.2), health_cap, Arc::clone(&endpoint), |_, _| Work::Health).await;

    let before_file = server.and_then(LocalServer::file_size);
    let before_pages = match server {
        Some(server) => server.allocated_bytes().await,
        None => None,
    };
    let before_writer = server.and_then(LocalServer::writer_stats);
    let mix = plan.mix;
    let created = phase(plan.concurrency, share(0.4), create_cap, Arc::clone(&endpoint), move |worker, i| {
        Work::Create { mix, value: format!("lethe-bench-{worker}-{i}-0123456789abcdef") }
    })
    .await;
    let after_file = server.and_then(LocalServer::file_size);
    let after_pages = match server {
        Some(server) => server.allocated_bytes().await,
        None => None,
    };

    let keys: Arc<Vec<(String, String)>> = Arc::new(created.made.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let read_cap = (keys.len() as u64).min(create_cap);
    let read = phase(plan.concurrency, share(0.4), read_cap, Arc::clone(&endpoint), move |_, _| {
        match keys.get(next.fetch_add(1, Ordering::Relaxed)) {
            Some((key, value)) => Work::Read { mix, key: key.clone(), value: value.clone() },
            None => Work::Done,
        }
    })
    .await;
    let writer = match (before_writer, server.and_then(LocalServer::writer_stats)) {
        (Some(before), Some(after)) => Some(writer_report(&after.since(&before))),
        _ => None,
    };

    let (create_name, read_name) = mix.ops();
    let health_rate = health.rate();
    let secrets_created = created.ok();
    let operations = vec![
        health.report("health", None),
        created.report(create_name, Some(health_rate)),
        read.report(read_name, Some(health_rate)),
    ];
    let what = if mix == Mix::Client {
        "the record and its expiry index row"
    } else {
        "the secret, its metadata and their expiry index rows"
    };
    let file_growth = before_file.zip(after_file).map(|(before, after)| after.saturating_sub(before));
    let pages_growth = before_pages.zip(after_pages).map(|(before, after)| after.saturating_sub(before));
    let measured = pages_growth.filter(|_| secrets_created > 0);
    let note = match (server, pages_growth) {
        (None, _) => "the server is not in this process; measure its data directory",
        (Some(server), _) if server.redb.is_none() => "the memory store keeps nothing on disk",
        (Some(_), None) => "the store could not report the pages it has in use",
        (Some(_), Some(_)) if secrets_created == 0 => "no secret was created",
        (Some(_), Some(_)) => what,
    };
    let disk = Disk {
        bytes_per_secret: measured.map(|growth| growth as f64 / secrets_created as f64),
        secrets_created,
        pages_growth_bytes: measured,
        file_growth_bytes: file_growth,
        note: note.into(),
    };
    let capacity = Capacity {
        creates_per_second: operations[1].per_second,
        reads_per_second: operations[2].per_second,
        live_secrets: plan.live_secrets,
        disk_bytes: disk.bytes_per_secret.map(|b| b * plan.live_secrets as f64),
    };
    Ok(Report {
        url: endpoint.base.clone(),
        server: "in-process",
        storage: None,
        bcrypt_cost: None,
        mix: mix.name(),
        concurrency: plan.concurrency,
        cores: std::thread::available_parallelism().ok().map(usize::from),
        duration_cap_seconds: secs,
        request_cap: plan.requests,
        operations,
        disk,
        writer,
        flush,
        flush_error,
        capacity,
    })
}

fn writer_report(s: &WriterStats) -> WriterReport {
    WriterReport {
        commits: s.commits,
        batches: s.jobs,
        batches_per_commit: s.jobs_per_commit(),
        largest_group: s.largest_group,
        mean_commit_ms: s.mean_commit_time().as_secs_f64() * 1e3,
        max_commit_ms: s.max_commit_time.as_secs_f64() * 1e3,
    }
}

/// One request a worker is told to make.
enum Work {
    Health,
    Create {
        mix: Mix,
        value: String,
    },
    /// `key` names the secret, `value` is what must come back.
    Read {
        mix: Mix,
        key: String,
        value: String,
    },
    /// Nothing left to do in this phase.
    Done,
}

/// What the workers of one phase measured.
#[derive(Debug, Default)]
struct PhaseResult {
    /// Latency of each successful request, in microseconds.
    latencies: Vec<u64>,
    errors: u64,
    samples: Vec<String>,
    /// What creates produced: (key, value).
    made: Vec<(String, String)>,
    elapsed: Duration,
    cpu: Option<CpuUse>,
}

impl PhaseResult {
    fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }

    fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.ok() as f64 / secs } else { 0.0 }
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&message) {
            self.samples.push(message);
        }
    }

    fn merge(&mut self, other: PhaseResult) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for sample in other.samples {
            if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&sample) {
                self.samples.push(sample);
            }
        }
        self.made.extend(other.made);
    }

    fn report(mut self, name: &'static str, health: Option<f64>) -> OpReport {
        self.latencies.sort_unstable();
        let pct = |p: f64| -> Option<f64> {
            let n = self.latencies.len();
            if n == 0 {
                return None;
            }
            // Nearest rank: the smallest latency with at least p of all requests at or below it.
            let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
            Some(self.latencies[rank - 1] as f64 / 1e3)
        };
        let per_second = self.rate();
        OpReport {
            name,
            ok: self.ok(),
            errors: self.errors,
            seconds: self.elapsed.as_secs_f64(),
            per_second,
            vs_health: health.filter(|h| *h > 0.0).map(|h| per_second / h),
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            max_ms: pct(1.0),
            error_samples: self.samples,
            cpu_us_per_request: self.cpu.filter(|_| per_second > 0.0).map(|c| c.cores / per_second * 1e6),
            cpu: self.cpu,
        }
    }
}

/// Runs `concurrency` workers until `cap` requests were started or `time` has passed. `next(worker, i)`
/// says what the worker's `i`-th request is.
async fn phase<F>(
    concurrency: usize,
    time: Duration,
    cap: u64,
    endpoint: Arc<Endpoint>,
    next: F,
) -> PhaseResult
where
    F: Fn(usize, u64) -> Work + Send + Sync + 'static,
{
    let next = Arc::new(next);
    let started = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let cpu_before = CpuTimes::now();
    let deadline = begin + time;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let next = Arc::clone(&next);
        let started = Arc::clone(&started);
        let mut conn = Connection::new(Arc::clone(&endpoint));
        workers.spawn(async move {
            let mut result = PhaseResult::default();
            let mut i = 0;
            while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < cap {
                let work = next(worker, i);
                i += 1;
                if matches!(work, Work::Done) {
                    break;
                }
                let sent = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, conn.perform(&work)).await {
                    Ok(Ok(made)) => {
                        result.latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                        if let Some(made) = made {
                            result.made.push(made);
                        }
                    }
                    Ok(Err(message)) => result.error(message),
                    Err(_) => {
                        conn.reset();
                        result.error("timed out".into());
                    }
                }
            }
            result
        });
    }
    let mut total = PhaseResult::default();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(result) => total.merge(result),
            Err(err) => total.error(format!("worker failed: {err}")),
        }
    }
    total.elapsed = begin.elapsed();
    total.cpu = cpu_before.zip(CpuTimes::now()).map(|(before, after)| after.since(&before, total.elapsed));
    total
}

/// Processor time used so far by this process, and by the store's writer thread if this process runs
/// one, read from `/proc` (Linux); `None` where there is no `/proc`.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    process: Duration,
    writer: Option<Duration>,
}

/// CPU busy during a phase, in cores (1.0 = one core for the whole phase).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    /// This process: the load generator, and the server when it runs in-process.
    pub cores: f64,
    /// The in-process redb store's writer thread (its commits, including the kernel's share).
    pub writer_cores: Option<f64>,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let process = stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let writer = std::fs::read_dir("/proc/self/task").ok()?.flatten().find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            // The kernel keeps 15 bytes of a thread's name.
            if comm.trim_end() != &store::WRITER_THREAD[..store::WRITER_THREAD.len().min(15)] {
                return None;
            }
            stat_cpu(&std::fs::read_to_string(task.path().join("stat")).ok()?)
        });
        Some(CpuTimes { process, writer })
    }

    fn since(&self, earlier: &CpuTimes, wall: Duration) -> CpuUse {
        let wall = wall.as_secs_f64().max(1e-9);
        let cores = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() / wall;
        CpuUse {
            cores: cores(self.process, earlier.process),
            writer_cores: self.writer.zip(earlier.writer).map(|(now, then)| cores(now, then)),
        }
    }
}

/// User plus system time from a `/proc/.../stat` line. The fields after the command name (which is in
/// parentheses and may hold spaces) start with the state; `utime` and `stime` are the 12th and 13th of
/// them, in clock ticks of `USER_HZ`, which Linux fixes at 100 for user space on every architecture it
/// ships for.
fn stat_cpu(stat: &str) -> Option<Duration> {
    const USER_HZ: u64 = 100;
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime).saturating_mul(1000 / USER_HZ)))
}

/// A parsed `--url`: where to connect, what to send as `Host`, and the path prefix.
#[derive(Debug)]
pub struct Endpoint {
    base: String,
    host: String,
    port: u16,
    authority: String,
    prefix: String,
}

impl Endpoint {
    /// Accepts `http://host[:port][/prefix]`; anything else is a one-line error.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: Uri = url.trim().parse().map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(
                    "--url: https is not supported; target the server's plain-HTTP listener (or the \
                            proxy's backend address)"
                        .into(),
                );
            }
            _ => return Err(format!("--url {url:?} must start with http://")),
        }
        let authority = uri.authority().ok_or_else(|| format!("--url {url:?} has no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(format!("--url {url:?} has no host"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let base = format!("http://{}{prefix}", authority.as_str());
        Ok(Endpoint { base, host, port, authority: authority.as_str().to_owned(), prefix })
    }

    async fn resolve(&self) -> Result<SocketAddr, String> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        addrs.next().ok_or_else(|| format!("{} has no address", self.host))
    }
}

/// One keep-alive HTTP/1.1 connection, opened on first use and replaced after any error.
pub struct Connection {
    endpoint: Arc<Endpoint>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("base", &self.endpoint.base).finish_non_exhaustive()
    }
}

impl Connection {
    pub fn new(endpoint: Arc<Endpoint>) -> Connection {
        Connection { endpoint, sender: None }
    }

    fn reset(&mut self) {
        self.sender = None;
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let addr = self.endpoint.resolve().await?;
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; either is normal here.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends one request and reads the whole response. `path` is relative to the URL's prefix.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let result = self.try_send(method, path, content_type, body).await;
        if result.is_err() {
            self.reset();
        }
        result
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint.prefix))
            .header(hyper::header::HOST, &self.endpoint.authority);
        if let Some(content_type) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body)).map_err(|e| format!("request: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body =
            response.into_body().collect().await.map_err(|e| format!("response body: {e}"))?.to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }

    /// Does one unit of work; a create returns the (key, value) it made.
    async fn perform(&mut self, work: &Work) -> Result<Option<(String, String)>, String> {
        const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
        const JSON: Option<&str> = Some("application/json");
        match work {
            Work::Health | Work::Done => {
                let (status, body) = self.send(Method::GET, "/health", None, Bytes::new()).await?;
                expect::<IgnoredAny>(status, &body).map(|_| None)
            }
            Work::Create { mix: Mix::Client, value } => {
                let body =
                    serde_json::json!({"message": ARMORED_MESSAGE, "expiration": 3600, "one_time": true});
                let (status, body) =
                    self.send(Method::POST, "/create/secret", JSON, Bytes::from(body.to_string())).await?;
                let reply: Field<'_> = expect(status, &body)?;
                match reply.message {
                    Some(id) => Ok(Some((id.into_owned(), value.clone()))),
                    None => Err("create: no \"message\" id in the reply".into()),
                }
            }
            Work::Create { mix, value } => {
                let mut form = format!("secret={value}&ttl=3600");
                if *mix == Mix::V1Passphrase {
                    form.push_str("&passphrase=");
                    form.push_str(&PASSPHRASE.replace(' ', "+"));
                }
                let (status, body) =
                    self.send(Method::POST, "/api/v1/share", FORM, Bytes::from(form)).await?;
                let reply: Field<'_> = expect(status, &body)?;
                match reply.secret_key {
                    Some(key) => Ok(Some((key.into_owned(), value.clone()))),
                    None => Err("share: no secret_key in the reply".into()),
                }
            }
            Work::Read { mix: Mix::Client, key, .. } => {
                let (status, body) =
                    self.send(Method::GET, &format!("/secret/{key}"), None, Bytes::new()).await?;
                let reply: Field<'_> = expect(status, &body)?;
                match reply.message {
                    Some(message) if message == ARMORED_MESSAGE => Ok(None),
                    _ => Err("read: the reply is not the message that was stored".into()),
                }
            }
            Work::Read { mix, key, value } => {
                let form = match mix {
                    Mix::V1Passphrase => format!("passphrase={}", PASSPHRASE.replace(' ', "+")),
                    _ => String::new(),
                };
                let (status, body) = self
                    .send(Method::POST, &format!("/api/v1/secret/{key}"), FORM, Bytes::from(form))
                    .await?;
                let reply: Field<'_> = expect(status, &body)?;
                match reply.value {
                    Some(v) if v == value.as_str() => Ok(None),
                    _ => Err("reveal: the reply is not the value that was shared".into()),
                }
            }
        }
    }
}

/// The fields of a reply the load generator looks at. Decoding only these, borrowed where the JSON has
/// no escapes, keeps the client's share of the machine small next to the server it measures.
#[derive(Deserialize)]
struct Field<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    secret_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<Cow<'a, str>>,
}

/// A 2xx JSON reply, or an error naming the status and the server's `message` (never the body itself,
/// which may echo a key).
fn expect<'a, T: Deserialize<'a>>(status: StatusCode, body: &'a [u8]) -> Result<T, String> {
    if status.is_success() {
        return serde_json::from_slice(body)
            .map_err(|_| format!("HTTP {status} with a body that is not JSON"));
    }
    let message = serde_json::from_slice::<Field<'_>>(body).ok().and_then(|f| f.message);
    let message: String = message.as_deref().unwrap_or("no JSON message").chars().take(120).collect();
    Err(format!("HTTP {}: {message}", status.as_u16()))
}

/// A server started by `lethe bench` (and the HTTP benches) in this process, on `127.0.0.1:0`, in a
/// temporary data directory it removes when stopped.
#[derive(Debug)]
pub struct LocalServer {
    base: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    app: Arc<App>,
    /// The same store the server writes through, kept to read its writer statistics.
    redb: Option<Arc<RedbStore>>,
    db_file: PathBuf,
    dir: TempDir,
}

impl LocalServer {
    /// Starts a full-mode server with rate limits off (the load comes from one address) and room for
    /// `concurrency` connections.
    pub async fn start(engine: Engine, bcrypt_cost: u32, concurrency: usize) -> Result<LocalServer, String> {
        let dir = TempDir::new()?;
        let listener =
            TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("listener address: {e}"))?;
        let base = format!("http://{addr}");
        // Every connection comes from this one address, so the per-client cap is the listener's.
        let connections = concurrency.max(1024) + 16;
        let raw = RawConfig {
            data_dir: Some(dir.path().to_owned()),
            storage: engine.to_string(),
            public_url: Some(base.clone()),
            listeners: vec![RawListener { addr: addr.to_string(), mode: "full".into() }],
            passphrase: PassphraseRules { bcrypt_cost, ..PassphraseRules::default() },
            // The load comes from one address; a limiter would measure itself.
            rate_limit: RateLimit { enabled: false, ..RateLimit::default() },
            http: Http {
                max_connections: connections,
                max_connections_per_client: connections,
                ..Http::default()
            },
            ..RawConfig::default()
        };
        let settings = Arc::new(raw.validate(None).map_err(|e| format!("configuration: {e}"))?);
        let db_file = dir.path().join(store::REDB_FILE);
        let parts = Parts::open(settings, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
        let redb = parts.redb.clone();
        let app = Arc::new(parts.app(crate::audit::AuditSink::disabled()));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(crate::server::run(Arc::clone(&app), vec![(listener, Mode::Full)], stop_rx));
        Ok(LocalServer { base, stop, task, app, redb, db_file, dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Size of the redb file; `None` on the memory store.
    pub fn file_size(&self) -> Option<u64> {
        self.redb.as_ref()?;
        std::fs::metadata(&self.db_file).ok().map(|m| m.len())
    }

    /// Bytes in pages the redb file has in use ([`RedbStore::allocated_bytes`]); `None` on the memory
    /// store, or if the store cannot say. It holds the write lock while it walks the tables, so call it
    /// between phases.
    pub async fn allocated_bytes(&self) -> Option<u64> {
        let redb = Arc::clone(self.redb.as_ref()?);
        tokio::task::spawn_blocking(move || redb.allocated_bytes().ok()).await.ok().flatten()
    }

    /// [`Flush`] of the data directory's disk; `None` on the memory store, which never flushes.
    pub async fn probe_flush(&self) -> Option<Result<Flush, String>> {
        self.redb.as_ref()?;
        let dir = self.dir.path().to_owned();
        let probed = tokio::task::spawn_blocking(move || probe_flush(&dir)).await;
        Some(match probed {
            Ok(result) => result.map_err(|err| err.to_string()),
            Err(err) => Err(format!("the probe stopped: {err}")),
        })
    }

    /// The group-commit writer's totals; `None` on the memory store.
    pub fn writer_stats(&self) -> Option<WriterStats> {
        self.redb.as_ref().map(|r| r.writer_stats())
    }

    /// Stops gracefully, closes the store and removes the data directory.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // The store (and its writer thread) closes when the last handle goes; then the directory can go.
        drop(self.app);
        drop(self.redb);
        drop(self.dir);
    }
}

/// A directory under the system's temporary directory, mode 0700, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("lethe-bench-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mix: Mix) -> BenchArgs {
        BenchArgs {
            url: None,
            mix,
            concurrency: 4,
            duration: Some(60.0),
            requests: Some(40),
            storage: None,
            bcrypt_cost: None,
            live_secrets: 1000,
            json: false,
        }
    }

    fn sane(op: &OpReport) {
        assert!(op.ok > 0, "{op:?}");
        assert_eq!(op.errors, 0, "{op:?}");
        let (p50, p99, max) = (op.p50_ms.unwrap(), op.p99_ms.unwrap(), op.max_ms.unwrap());
        assert!(p50 <= op.p90_ms.unwrap() && op.p90_ms.unwrap() <= p99 && p99 <= max, "{op:?}");
        assert!(op.per_second > 0.0, "{op:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_v1_run_on_redb_reports_sane_numbers() {
        let plan = args(Mix::V1).plan().expect("plan");
        let report = run(&plan).await.expect("run");
        assert_eq!(
            report.operations.iter().map(|o| o.name).collect::<Vec<_>>(),
            ["health", "share", "reveal"]
        );
        for op in &report.operations {
            sane(op);
        }
        // Every share was revealed: the caps give reads as many slots as creates.
        assert_eq!(report.operations[1].ok, report.operations[2].ok);
        assert_eq!(report.disk.secrets_created, report.operations[1].ok);
        // Each share stores a sealed value, its metadata and two index rows: hundreds of bytes.
        let per_secret = report.disk.bytes_per_secret.expect("bytes per secret");
        assert!((100.0..20_000.0).contains(&per_secret), "{:?}", report.disk);
        // Linux has /proc: every phase says how busy the cores were, and the redb phases the writer.
        assert!(report.operations.iter().all(|op| op.cpu.is_some_and(|c| c.cores >= 0.0)), "{report:?}");
        assert!(report.operations[1].cpu.and_then(|c| c.writer_cores).is_some(), "{report:?}");
        // Processor time per request is the cores over the rate.
        let share = &report.operations[1];
        let expected = share.cpu.map(|c| c.cores / share.per_second * 1e6);
        assert_eq!(share.cpu_us_per_request, expected);
        let writer = report.writer.as_ref().expect("redb writer stats");
        assert!(writer.commits > 0 && writer.batches >= writer.commits);
        assert!(report.capacity.creates_per_second > 0.0 && report.capacity.disk_bytes.is_some());
        // The flush probe ran, in the data directory of the server it started.
        let flush = report.flush.expect("flush probe");
        assert_eq!(flush.pages, FLUSH_PAGES);
        assert!(
            [flush.one_page_ms, flush.adjacent_ms, flush.scattered_ms]
                .iter()
                .all(|ms| ms.is_finite() && *ms >= 0.0)
        );
        assert_eq!(report.flush_error, None);
        let text = report.render();
        assert!(text.contains("bcrypt cost 4") && text.contains("capacity"), "{text}");
        assert!(text.contains("64 scattered pages") && text.contains("µs per request"), "{text}");
        assert!(!text.contains("failed"), "{text}");
        // Refusals are not capacity: a run with errors says its rates count successes only.
        let mut refused = report.clone();
        refused.operations[1].errors = 3;
        refused.operations[2].errors = 2;
        assert!(refused.render().contains("5 creates and reads failed"), "{}", refused.render());
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["mix"], "v1");
        assert_eq!(json["operations"][2]["name"], "reveal");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_passphrase_run_on_the_memory_store_reports_disk_as_not_applicable() {
        let mut a = args(Mix::V1Passphrase);
        a.storage = Some("memory".into());
        a.requests = Some(20);
        let report = run(&a.plan().expect("plan")).await.expect("run");
        for op in &report.operations {
            sane(op);
        }
        assert!(report.disk.bytes_per_secret.is_none() && report.writer.is_none());
        // Nothing here flushes, so there is no disk to probe.
        assert!(report.flush.is_none() && report.flush_error.is_none());
        assert!(report.render().contains("n/a") && !report.render().contains("disk flush"));
    }

    #[test]
    fn the_flush_probe_removes_its_file_and_fails_with_the_reason() {
        let dir = TempDir::new().expect("temporary directory");
        let flush = probe_flush(dir.path()).expect("probe");
        assert!(flush.one_page_ms.is_finite() && flush.scattered_ms.is_finite());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        let missing = dir.path().join("missing");
        let err = probe_flush(&missing).expect_err("no such directory");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_client_mix_reports_errors_instead_of_failing_when_the_route_is_missing_or_refuses() {
        let mut a = args(Mix::Client);
        a.storage = Some("memory".into());
        a.requests = Some(10);
        let report = run(&a.plan().expect("plan")).await.expect("run");
        sane(&report.operations[0]);
        let create = &report.operations[1];
        assert_eq!(create.ok + create.errors, 4, "{create:?}");
        assert!(create.errors == 0 || !create.error_samples.is_empty(), "{create:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_url_is_one_clear_error() {
        // A port that was free a moment ago: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut a = args(Mix::V1);
        a.url = Some(format!("http://127.0.0.1:{port}"));
        let err = run(&a.plan().expect("plan")).await.expect_err("nothing listens");
        assert!(err.contains("cannot reach"), "{err}");
    }

    #[test]
    fn cpu_time_is_read_from_a_proc_stat_line_whatever_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 3 0 250 75 0 0 20 0 9 0 100 1 1";
        assert_eq!(stat_cpu(line), Some(Duration::from_millis(3250)));
        assert_eq!(stat_cpu("4242 (lethe) S 1 2"), None);
        assert_eq!(stat_cpu("no parenthesis at all"), None);
        let this = CpuTimes::now().expect("/proc on Linux");
        let later = CpuTimes { process: this.process + Duration::from_millis(500), writer: None };
        let used = later.since(&this, Duration::from_millis(250));
        assert!((used.cores - 2.0).abs() < 1e-9 && used.writer_cores.is_none());
    }

    #[test]
    fn bad_flags_are_refused_with_a_message() {
        for url in ["ftp://x", "https://example.com", "not a url", "http://"] {
            let mut a = args(Mix::V1);
            a.url = Some(url.into());
            assert!(a.plan().is_err(), "{url}");
        }
        let mut a = args(Mix::V1);
        a.url = Some("http://127.0.0.1:1/base/".into());
        a.bcrypt_cost = Some(5);
        assert!(a.plan().unwrap_err().contains("in-process"));
        a.bcrypt_cost = None;
        assert!(a.plan().is_ok());
        let e = Endpoint::parse("http://127.0.0.1:1/base/").unwrap();
        assert_eq!((e.prefix.as_str(), e.port, e.base.as_str()), ("/base", 1, "http://127.0.0.1:1/base"));
        let mut a = args(Mix::V1);
        a.concurrency = 0;
        assert!(a.plan().is_err());
        let mut a = args(Mix::V1);
        a.storage = Some("floppy".into());
        assert!(a.plan().unwrap_err().contains("redb or memory"));
        let mut a = args(Mix::V1);
        a.duration = Some(f64::NAN);
        assert!(a.plan().is_err());
    }
}
