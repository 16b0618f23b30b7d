//! The team surface at size, through the real server (in-process, redb, durable commits): `GET
//! /resources.json` for a user who can see 1,000 and 10,000 resources (every record is opened on the
//! listing: this is that cost), the same listing with each resource's secret contained, and a share
//! of one resource (dry run, then the share carrying the new user's secret) among that many.
//!
//! Users, sessions, resources and the OpenPGP messages are made outside the timed sections (a session
//! is opened through the domain, as a GPGAuth stage 2 would; gpg makes the keys and the one message).
//! `cargo bench --bench team`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use lethe::App;
use lethe::clock::SystemClock;
use lethe::config::{Http, RateLimit, RawConfig, RawListener};
use lethe::domain::team::resources::{NewResource, RESOURCE_TYPE_IDS, SecretIn};
use lethe::domain::team::users::{NewUser, User};
use lethe::server::Parts;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The server's allocator (see `src/main.rs`), so that memory and speed are measured as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 2] = [1_000, 10_000];

/// gpg in a throwaway home: one key per user, and messages to them.
struct Gpg(tempfile::TempDir);

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::tempdir().expect("GNUPGHOME");
        std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Gpg(home)
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", self.0.path())
            .args(["--batch", "--no-tty", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gpg (Debian package gnupg)");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new ed25519/cv25519 key: (fingerprint, armored public key).
    fn key(&self, uid: &str) -> (String, String) {
        let status = self
            .run(&["--status-fd", "1", "--quick-gen-key", uid, "future-default", "default", "never"], b"");
        let fpr = status
            .lines()
            .find_map(|l| l.strip_prefix("[GNUPG:] KEY_CREATED "))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .expect("KEY_CREATED")
            .to_owned();
        let public = self.run(&["--armor", "--export", &fpr], b"");
        (fpr, public)
    }

    fn encrypt(&self, fpr: &str, plaintext: &str) -> String {
        self.run(&["--trust-model", "always", "--armor", "--encrypt", "-r", fpr], plaintext.as_bytes())
    }
}

/// One keep-alive connection with a user's session cookie and CSRF token.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    cookie: String,
    csrf: String,
}

impl Client {
    async fn connect(base: &str, app: &App, user: &User) -> Client {
        let team = &app.domain.team;
        let nonce = team.issue_login_token(user).await.expect("login token");
        let session = team.redeem(user, nonce.as_bytes()).await.expect("redeem").expect("a session");
        let stream = TcpStream::connect(base.trim_start_matches("http://")).await.expect("connect");
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        Client { sender, cookie: format!("passbolt_session={}", session.cookie), csrf: session.csrf_token }
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Bytes) {
        self.sender.ready().await.expect("connection");
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let response = self.sender.send_request(request).await.expect("request");
        let status = response.status();
        (status, response.into_body().collect().await.expect("body").to_bytes())
    }

    async fn json(&mut self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let (status, bytes) = self.send(method, path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).expect("JSON")
    }
}

struct Fixture {
    app: Arc<App>,
    base: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    alice: User,
    bob: User,
    /// A message to bob's key: the secret a share to him carries.
    to_bob: String,
    resources: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn start(dir: &Path) -> (Arc<App>, String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let raw = RawConfig {
        data_dir: Some(dir.to_owned()),
        storage: "redb".into(),
        public_url: Some(base.clone()),
        listeners: vec![RawListener { addr: addr.to_string(), mode: "full".into() }],
        rate_limit: RateLimit { enabled: false, ..RateLimit::default() },
        http: Http { max_connections: 1024, max_connections_per_client: 1024, ..Http::default() },
        ..RawConfig::default()
    };
    let settings = Arc::new(raw.validate(None).expect("configuration"));
    let parts = Parts::open(settings, Arc::new(SystemClock)).expect("open");
    let app = Arc::new(parts.app(lethe::audit::AuditSink::disabled()));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(lethe::server::run(
        Arc::clone(&app),
        vec![(listener, lethe::config::Mode::Full)],
        stop_rx,
    ));
    (app, base, stop, task)
}

async fn fixture(size: usize, gpg: &Gpg, keys: &[(String, String); 2]) -> Fixture {
    let dir = tempfile::tempdir().expect("data dir");
    let (app, base, stop, task) = start(dir.path()).await;
    let team = &app.domain.team;
    let mut users = Vec::new();
    for (name, (_, public)) in ["alice", "bob"].iter().zip(keys) {
        let new =
            NewUser { username: name, armored_key: public, admin: false, first_name: None, last_name: None };
        users.push(team.add_user(new).await.expect("user"));
    }
    let (alice, bob) = (users[0].clone(), users[1].clone());
    let to_alice = gpg.encrypt(&keys[0].0, "correct horse battery staple");
    let to_bob = gpg.encrypt(&keys[1].0, "correct horse battery staple");
    // Made concurrently so that the durable commits group.
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = size.div_ceil(64);
    for t in 0..64 {
        let (app, alice, data) = (Arc::clone(&app), alice.clone(), to_alice.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in (t * per_task)..((t + 1) * per_task).min(size) {
                let new = NewResource {
                    name: format!("service-{i:05}"),
                    username: Some(format!("svc{i}")),
                    uri: Some(format!("https://host{i}.example.com")),
                    description: Some("a resource made by the team bench".into()),
                    resource_type_id: RESOURCE_TYPE_IDS[0].into(),
                    secret: SecretIn { user_id: alice.id.clone(), data: data.clone() },
                };
                ids.push(app.domain.team.create_resource(&alice, new).await.expect("resource").id);
            }
            ids
        });
    }
    let mut resources = Vec::with_capacity(size);
    while let Some(ids) = tasks.join_next().await {
        resources.extend(ids.expect("seeding task"));
    }
    Fixture { app, base, stop, task, alice, bob, to_bob, resources, _dir: dir }
}

fn team_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let gpg = Gpg::new();
    let keys = [gpg.key("alice <alice@example.com>"), gpg.key("bob <bob@example.com>")];
    let mut group = c.benchmark_group("team");
    for size in SIZES {
        let f = rt.block_on(fixture(size, &gpg, &keys));
        let mut client = rt.block_on(Client::connect(&f.base, &f.app, &f.alice));
        let listed = rt.block_on(client.json(Method::GET, "/resources.json", None));
        assert_eq!(listed["body"].as_array().map(Vec::len), Some(size));
        for (name, path) in
            [("list", "/resources.json"), ("list_with_secret", "/resources.json?contain[secret]=1")]
        {
            group.bench_with_input(BenchmarkId::new(name, size), &path, |b, path| {
                b.iter(|| {
                    rt.block_on(async {
                        let (status, body) = client.send(Method::GET, path, None).await;
                        assert_eq!(status, StatusCode::OK);
                        body.len()
                    })
                })
            });
        }
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("share", size), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let id = &f.resources[next % f.resources.len()];
                        next += 1;
                        let permissions = json!([{"aro": "User", "aro_foreign_key": f.bob.id, "type": 1}]);
                        let share = json!({"permissions": permissions, "secrets": [{"user_id": f.bob.id, "data": f.to_bob}]});
                        let start = Instant::now();
                        let simulated = client
                            .json(Method::POST, &format!("/share/simulate/resource/{id}.json"), Some(&json!({"permissions": permissions})))
                            .await;
                        assert_eq!(simulated["body"]["changes"]["added"][0]["User"]["id"], f.bob.id.as_str());
                        client.json(Method::PUT, &format!("/share/resource/{id}.json"), Some(&share)).await;
                        timed += start.elapsed();
                        // Untimed: take bob off again so that the next round can add him.
                        let view = client.json(Method::GET, &format!("/resources/{id}.json?contain[permissions]=1"), None).await;
                        let perm = view["body"]["permissions"]
                            .as_array()
                            .and_then(|ps| ps.iter().find(|p| p["aro_foreign_key"] == f.bob.id.as_str()))
                            .and_then(|p| p["id"].as_str())
                            .expect("bob's permission")
                            .to_owned();
                        let remove = json!({"permissions": [{"id": perm, "delete": true}]});
                        client.json(Method::PUT, &format!("/share/resource/{id}.json"), Some(&remove)).await;
                    }
                    timed
                })
            })
        });
        let _ = f.stop.send(true);
        rt.block_on(async {
            drop(client);
            let _ = f.task.await;
        });
        drop(f.app);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = team_benches
}
criterion_main!(benches);
