//! `lethe bench`: a load generator for capacity planning. It drives a lethe server over HTTP with a
//! chosen mix, from N keep-alive connections, and reports per operation throughput, latency
//! percentiles and errors, the bytes each stored secret takes on disk, and a capacity statement.
//!
//! Without `--url` it starts a server of its own in this process, on `127.0.0.1:0`, with a fresh
//! temporary data directory (removed afterwards) and a cheap bcrypt cost, so that the run measures the
//! server and nothing else on the machine (on `--storage redis`, against the Redis at `--redis-url`);
//! with `--url` it sends requests to that address only, and with several `--url`s it spreads its
//! connections over them in turn, as a load balancer in front of several nodes would, so a secret
//! made through one node is often revealed through another.
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

mod system;
use system::*;
pub use system::{CpuUse, FLUSH_PAGES, Flush};
mod client;
pub use client::{Connection, Endpoint};
mod local;
pub use local::LocalServer;
#[cfg(test)]
mod tests;

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
    /// Base URL of a running lethe server (plain HTTP), e.g. http://127.0.0.1:8080; repeat for several
    /// nodes of one deployment, and connections are spread over them in turn. Without it, lethe bench
    /// starts its own server in this process on 127.0.0.1 with a temporary data directory.
    #[arg(long = "url", value_name = "URL")]
    pub url: Vec<String>,
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
    /// Storage engine of the in-process server: redb, memory or redis (the Redis at --redis-url, which
    /// must run with appendonly yes and appendfsync always) [default: redb].
    #[arg(long, value_name = "ENGINE")]
    pub storage: Option<String>,
    /// Redis of the in-process server on --storage redis [default: redis://127.0.0.1:6379/0]. The run
    /// writes under a key prefix of its own (lethe-bench-…:), never beside a deployment's keys.
    #[arg(long = "redis-url", value_name = "URL")]
    pub redis_url: Option<String>,
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
    /// One or more nodes; connection `i` goes to URL `i mod n`.
    Url(Vec<String>),
    /// `redis_url` only on the redis engine.
    InProcess { engine: Engine, bcrypt_cost: u32, redis_url: Option<String> },
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
        let target = if !self.url.is_empty() {
            if self.storage.is_some() || self.bcrypt_cost.is_some() || self.redis_url.is_some() {
                return Err("--storage, --redis-url and --bcrypt-cost apply to the in-process server only, \
                            not to --url"
                    .into());
            }
            for url in &self.url {
                Endpoint::parse(url)?;
            }
            Target::Url(self.url.clone())
        } else {
            let engine = match &self.storage {
                Some(s) => s.parse().map_err(|e| format!("--storage: {e}"))?,
                None => Engine::Redb,
            };
            if self.redis_url.is_some() && engine != Engine::Redis {
                return Err("--redis-url applies to --storage redis only".into());
            }
            if let Some(url) = &self.redis_url
                && !(url.starts_with("redis://") || url.starts_with("rediss://"))
            {
                return Err("--redis-url must start with redis:// or rediss://".into());
            }
            let bcrypt_cost = self.bcrypt_cost.unwrap_or(DEFAULT_BCRYPT_COST);
            if !(4..=31).contains(&bcrypt_cost) {
                return Err("--bcrypt-cost must be between 4 and 31".into());
            }
            Target::InProcess { engine, bcrypt_cost, redis_url: self.redis_url.clone() }
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
    /// The base URL the load went to (the first, with several).
    pub url: String,
    /// Every base URL the load went to, connections spread over them in turn.
    pub urls: Vec<String>,
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
                "in-process server at {} ({storage} store {}, bcrypt cost {cost}, sharing this machine's \
                 cores with the load generator)",
                self.url,
                if storage == "redis" {
                    "under a key prefix of its own"
                } else {
                    "in a temporary data directory"
                }
            ),
            _ if self.urls.len() > 1 => {
                format!("{} servers, connections spread over {}", self.urls.len(), self.urls.join(", "))
            }
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
        Target::Url(urls) => {
            let endpoints =
                urls.iter().map(|url| Endpoint::parse(url).map(Arc::new)).collect::<Result<_, _>>()?;
            let mut report = drive(plan, endpoints, None).await?;
            report.server = "url";
            Ok(report)
        }
        Target::InProcess { engine, bcrypt_cost, redis_url } => {
            let server =
                LocalServer::start_on(*engine, *bcrypt_cost, plan.concurrency, redis_url.as_deref()).await?;
            let endpoint = Arc::new(Endpoint::parse(&server.base)?);
            let result = drive(plan, vec![endpoint], Some(&server)).await;
            server.stop().await;
            let mut report = result?;
            report.storage = Some(engine.to_string());
            report.bcrypt_cost = Some(*bcrypt_cost);
            Ok(report)
        }
    }
}

async fn drive(
    plan: &Plan,
    endpoints: Vec<Arc<Endpoint>>,
    server: Option<&LocalServer>,
) -> Result<Report, String> {
    // One request to each first, so an unreachable or wrong URL is one clear error instead of a report
    // full of connection failures.
    for endpoint in &endpoints {
        let mut probe = Connection::new(Arc::clone(endpoint));
        match probe.send(Method::GET, "/health", None, Bytes::new()).await {
            Ok((status, _)) if status.is_success() => {}
            Ok((status, _)) => {
                return Err(format!("{}/health answered {status}; is this a lethe server?", endpoint.base));
            }
            Err(err) => return Err(format!("cannot reach {}: {err}", endpoint.base)),
        }
    }
    let endpoints = Arc::new(endpoints);

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
        phase(plan.concurrency, share(0.2), health_cap, Arc::clone(&endpoints), |_, _| Work::Health).await;

    let before_file = server.and_then(LocalServer::file_size);
    let before_pages = match server {
        Some(server) => server.allocated_bytes().await,
        None => None,
    };
    let before_writer = server.and_then(LocalServer::writer_stats);
    let mix = plan.mix;
    let created =
        phase(plan.concurrency, share(0.4), create_cap, Arc::clone(&endpoints), move |worker, i| {
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
    let read = phase(plan.concurrency, share(0.4), read_cap, Arc::clone(&endpoints), move |_, _| match keys
        .get(next.fetch_add(1, Ordering::Relaxed))
    {
        Some((key, value)) => Work::Read { mix, key: key.clone(), value: value.clone() },
        None => Work::Done,
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
        (Some(server), _) if server.app.domain.settings.storage == Engine::Redis => {
            "a Redis store's memory and append-only file are Redis's own (INFO memory, INFO persistence)"
        }
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
        url: endpoints[0].base.clone(),
        urls: endpoints.iter().map(|e| e.base.clone()).collect(),
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

/// Runs `concurrency` workers until `cap` requests were started or `time` has passed; worker `w` talks
/// to `endpoints[w mod n]`. `next(worker, i)` says what the worker's `i`-th request is.
async fn phase<F>(
    concurrency: usize,
    time: Duration,
    cap: u64,
    endpoints: Arc<Vec<Arc<Endpoint>>>,
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
        let mut conn = Connection::new(Arc::clone(&endpoints[worker % endpoints.len()]));
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
