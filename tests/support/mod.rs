//! Test support: a real lethe server on `127.0.0.1:0` with a controllable clock, and a small HTTP
//! client. Every server gets its own temporary data directory.

pub mod daemon;
pub mod faults;
pub mod gpg;
pub mod redis;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lethe::App;
use lethe::clock::ManualClock;
use lethe::config::{Mode, PassphraseRules, RawConfig, RawListener, Settings};
use lethe::store::Engine;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A fixed starting time, so tests read the same timestamps every run.
pub const T0: u64 = 1_800_000_000;

pub struct TestServer {
    pub base: String,
    /// The read-only listener's base URL, when started with one.
    pub mirror: Option<String>,
    pub clock: ManualClock,
    pub app: Arc<App>,
    pub engine: Engine,
    /// Switches for the fault-injecting store every test server runs on.
    pub faults: Arc<faults::Faults>,
    /// Everything the audit sink wrote.
    audit: AuditBuffer,
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    /// The `redis-server` of a Redis-backed server; kept across a restart, killed with the last owner.
    pub redis: Option<Arc<redis::RedisServer>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The v1 dialect's intended status, if the response carries one.
    pub fn intended(&self) -> Option<u16> {
        self.header("x-lethe-intended-status").and_then(|v| v.parse().ok())
    }
}

fn settings(engine: Engine, data_dir: &Path, tweak: &dyn Fn(&mut RawConfig)) -> Settings {
    let mut raw = RawConfig {
        data_dir: Some(data_dir.to_owned()),
        storage: engine.to_string(),
        listeners: vec![RawListener { addr: "127.0.0.1:0".into(), mode: "full".into() }],
        passphrase: PassphraseRules { bcrypt_cost: 4, ..PassphraseRules::default() },
        ..RawConfig::default()
    };
    tweak(&mut raw);
    raw.validate(None).expect("test configuration is valid")
}

impl TestServer {
    pub async fn start(engine: Engine) -> TestServer {
        TestServer::start_with(engine, &|_| {}).await
    }

    pub async fn start_with(engine: Engine, tweak: &dyn Fn(&mut RawConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().to_owned();
        TestServer::launch(engine, Some(dir), data_dir, ManualClock::new(T0), false, None, tweak).await
    }

    /// A server on an existing data directory (a restored backup, say), which the caller keeps.
    pub async fn start_on(engine: Engine, data_dir: &Path) -> TestServer {
        TestServer::launch(engine, None, data_dir.to_owned(), ManualClock::new(T0), false, None, &|_| {})
            .await
    }

    /// One server, two listeners: full at `base`, read-only at `mirror`, links pointing at the mirror.
    pub async fn start_with_mirror(engine: Engine, tweak: &dyn Fn(&mut RawConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().to_owned();
        TestServer::launch(engine, Some(dir), data_dir, ManualClock::new(T0), true, None, tweak).await
    }

    async fn launch(
        engine: Engine,
        dir: Option<tempfile::TempDir>,
        data_dir: PathBuf,
        clock: ManualClock,
        with_mirror: bool,
        redis: Option<Arc<redis::RedisServer>>,
        tweak: &dyn Fn(&mut RawConfig),
    ) -> TestServer {
        let redis = match engine {
            Engine::Redis => Some(redis.unwrap_or_else(|| Arc::new(redis::RedisServer::start()))),
            _ => None,
        };
        let redis_url = redis.as_ref().map(|server| server.url());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let base = format!("http://{addr}");
        let mut listeners = vec![(listener, Mode::Full)];
        let mut mirror = None;
        if with_mirror {
            let ro = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            mirror = Some(format!("http://{}", ro.local_addr().expect("local addr")));
            listeners.push((ro, Mode::ReadOnly));
        }
        let public = mirror.clone().unwrap_or_else(|| base.clone());
        let settings = settings(engine, &data_dir, &|raw| {
            raw.public_url = Some(public.clone());
            if let Some(url) = &redis_url {
                raw.redis.urls = vec![url.clone()];
            }
            tweak(raw)
        });
        let parts =
            lethe::server::Parts::open(Arc::new(settings), Arc::new(clock.clone())).expect("open the store");
        let faults = Arc::new(faults::Faults::default());
        let parts = parts.wrap_store(|inner| {
            lethe::store::StoreHandle::new(Arc::new(faults::Faulty { inner, faults: Arc::clone(&faults) }))
        });
        let audit = AuditBuffer::default();
        let app = Arc::new(parts.app(lethe::audit::AuditSink::to_writer(Box::new(audit.clone()))));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(lethe::server::run(Arc::clone(&app), listeners, stop_rx));
        let client = Client::builder(TokioExecutor::new()).build_http();
        TestServer {
            base,
            mirror,
            faults,
            audit,
            clock,
            app,
            engine,
            dir,
            data_dir,
            redis,
            stop,
            task,
            client,
        }
    }

    /// Stops the server gracefully and waits until the store is closed.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        let _ = self.stop.send(true);
        self.task.await.expect("server task");
        drop(self.client);
        // The redb file is released when the last handle is gone.
        drop(self.app);
        self.dir
    }

    /// Stops the server and returns every audit line it wrote.
    pub async fn stop_with_audit(self) -> Vec<Value> {
        let audit = self.audit.clone();
        self.stop().await;
        let bytes = audit.0.lock().expect("audit buffer").clone();
        String::from_utf8(bytes)
            .expect("audit is UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each audit line is JSON"))
            .collect()
    }

    /// Stops and starts again on the same data directory and clock.
    pub async fn restart(self) -> TestServer {
        let (engine, clock, data_dir) = (self.engine, self.clock.clone(), self.data_dir.clone());
        let redis = self.redis.clone();
        let dir = self.stop().await;
        TestServer::launch(engine, dir, data_dir, clock, false, redis, &|_| {}).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.request_at(&self.base, method, path, headers, body).await
    }

    /// A request to a chosen listener.
    pub async fn request_at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut builder = Request::builder().method(method).uri(format!("{base}{path}"));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(Full::new(body.into())).expect("request");
        let resp = self.client.request(req).await.expect("HTTP request");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post_form(&self, path: &str, form: &str) -> Resp {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            form.to_owned(),
        )
        .await
    }

    pub async fn post_form_as(&self, path: &str, form: &str, user: &str, token: &str) -> Resp {
        let auth = basic(user, token);
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/x-www-form-urlencoded"), ("authorization", &auth)],
            form.to_owned(),
        )
        .await
    }

    pub async fn get_as(&self, path: &str, user: &str, token: &str) -> Resp {
        self.request(Method::GET, path, &[("authorization", &basic(user, token))], Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, json: &Value) -> Resp {
        self.request(Method::POST, path, &[("content-type", "application/json")], json.to_string()).await
    }

    /// Shares a secret anonymously and returns the metadata object.
    pub async fn share(&self, form: &str) -> Value {
        let r = self.post_form("/api/v1/share", form).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()
    }

    pub fn clock_now(&self) -> u64 {
        use lethe::clock::Clock;
        self.clock.now()
    }

    pub async fn account(&self, name: &str) -> String {
        self.app.domain.accounts.add(name).await.expect("account")
    }
}

/// Polls every future concurrently on this task, returning outputs in order (no extra crate for a
/// `join_all`).
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, f) in outputs.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => *slot = Some(out),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// Collects audit output; shared with the sink's writer thread.
#[derive(Clone, Default)]
pub struct AuditBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for AuditBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("audit buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `n` random bytes: message bodies that compression cannot shrink.
pub fn noise(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    while out.len() < n {
        out.extend_from_slice(&lethe::crypto::random_bytes::<32>());
    }
    out.truncate(n);
    out
}

pub fn basic(user: &str, token: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
}

pub fn key(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("{field} missing in {v}")).to_owned()
}

/// Instantiates each listed `async fn(&TestServer)` once per storage backend.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::support::TestServer::start(lethe::store::Engine::Memory).await;
                    super::$name(&server).await;
                    server.stop().await;
                }
            )*
        }
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::support::TestServer::start(lethe::store::Engine::Redb).await;
                    super::$name(&server).await;
                    server.stop().await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::support::TestServer::start(lethe::store::Engine::Redis).await;
                    super::$name(&server).await;
                    server.stop().await;
                }
            )*
        }
    };
}

/// Polls `cond` until it holds; fails after 20 s.
pub async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether `s`'s `/metrics` has exactly this line.
pub async fn metric(s: &TestServer, line: &str) -> bool {
    s.get("/metrics").await.text().lines().any(|l| l == line)
}
