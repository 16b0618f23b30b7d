//! Several real `lethe serve` processes on one `redis-server`, as a deployment behind a load balancer
//! runs them: what one node makes, another serves, exactly once; revocations, passphrase attempt
//! limits and accounts hold across nodes because they live in Redis; per-address rate limits are each
//! node's own; a read-only node serves the public mirror beside a full node; and the account and team
//! commands work on Redis directly, with no daemon, seen at once by a running node.

use std::path::Path;
use std::process::{Command, Output};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::support::daemon::{BIN, Daemon};
use crate::support::redis::RedisServer;
use crate::support::{Resp, basic};

/// One Redis and the key files every node shares (`master_key_file`, the team server key), as the
/// README tells operators to distribute them.
pub struct Deployment {
    pub redis: RedisServer,
    keys: tempfile::TempDir,
}

impl Deployment {
    pub fn new() -> Deployment {
        Deployment { redis: RedisServer::start(), keys: tempfile::tempdir().expect("temporary directory") }
    }

    /// The configuration every node and command of this deployment gets, through the environment.
    pub fn env(&self) -> Vec<(String, String)> {
        let keys = self.keys.path();
        vec![
            ("LETHE_STORAGE".into(), "redis".into()),
            ("LETHE_REDIS__URLS".into(), self.redis.url()),
            ("LETHE_MASTER_KEY_FILE".into(), keys.join("master.key").display().to_string()),
            ("LETHE_TEAM__SERVER_KEY_FILE".into(), keys.join("team-server-key.asc").display().to_string()),
            ("LETHE_PASSPHRASE__BCRYPT_COST".into(), "4".into()),
        ]
    }

    /// A node with its own data directory (only its admin socket lives there), `lethe serve` `args`
    /// and configuration `extra` over [`Deployment::env`].
    pub fn node(&self, args: &[&str], extra: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (daemon, addr) = Daemon::start_args(dir.path(), args, &env);
        Node { daemon: Some(daemon), base: format!("http://{addr}"), dir }
    }

    /// `lethe ARGS` with this deployment's configuration and `data_dir`, no other `LETHE_*` variable.
    pub fn lethe(&self, data_dir: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("LETHE_") || k == "STATE_DIRECTORY" {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env()).arg("--data-dir").arg(data_dir).args(args);
        cmd.output().expect("run lethe")
    }
}

/// A running `lethe serve`, killed if a test fails before stopping it.
pub struct Node {
    daemon: Option<Daemon>,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// SIGTERM and a clean exit.
    pub fn stop(mut self) {
        let daemon = self.daemon.take().expect("a running node");
        assert!(daemon.terminate().success(), "graceful stop exits 0");
    }

    /// SIGKILL, as a crash.
    pub fn kill(mut self) {
        self.daemon.take().expect("a running node").kill();
    }

    pub async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        call(&self.base, method, path, headers, body).await
    }

    pub async fn post_form(&self, path: &str, form: &str) -> Resp {
        self.call(Method::POST, path, &[("content-type", "application/x-www-form-urlencoded")], form).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, &[], "").await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
        }
    }
}

/// One request on a fresh connection.
pub async fn call(base: &str, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::builder().method(method).uri(format!("{base}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(Full::new(Bytes::from(body.to_owned()))).expect("request");
    let response = client.request(request).await.expect("HTTP request");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp { status: parts.status, headers: parts.headers, body }
}

fn share_key(r: &Resp, field: &str) -> String {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()[field].as_str().unwrap_or_else(|| panic!("no {field} in {}", r.text())).to_owned()
}

/// The load of this test comes from one address; it is about exactly-once, not about rate limits.
const UNLIMITED: &[(&str, &str)] = &[("LETHE_RATE_LIMIT__ENABLED", "false")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_made_on_one_lethe_serve_is_revealed_on_another_exactly_once_across_fifty_reveals() {
    let deployment = Deployment::new();
    let (a, b) = (deployment.node(&[], UNLIMITED), deployment.node(&[], UNLIMITED));

    let made_on_a = share_key(&a.post_form("/api/v1/share", "secret=from+a&ttl=3600").await, "secret_key");
    let r = b.post_form(&format!("/api/v1/secret/{made_on_a}"), "").await;
    assert_eq!(r.json()["value"], "from a", "node b reveals what node a made");
    let r = a.post_form(&format!("/api/v1/secret/{made_on_a}"), "").await;
    assert_eq!(r.json()["message"], "Unknown secret", "and node a no longer has it");

    let raced = share_key(&b.post_form("/api/v1/share", "secret=raced&ttl=3600").await, "secret_key");
    let path = format!("/api/v1/secret/{raced}");
    let mut reveals = tokio::task::JoinSet::new();
    for i in 0..50 {
        let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
        let path = path.clone();
        reveals.spawn(async move { call(&base, Method::POST, &path, &[], "").await });
    }
    let (mut values, mut unknown) = (Vec::new(), 0);
    while let Some(answer) = reveals.join_next().await {
        let r = answer.expect("a reveal");
        match r.json().get("value") {
            Some(value) => values.push(value.as_str().expect("a string value").to_owned()),
            None => {
                assert_eq!(r.json()["message"], "Unknown secret", "a losing reveal");
                unknown += 1;
            }
        }
    }
    assert_eq!(values, ["raced"], "exactly one of 50 reveals on two processes gets the value");
    assert_eq!(unknown, 49);
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_revoked_on_one_node_is_gone_on_both() {
    let deployment = Deployment::new();
    let (a, b) = (deployment.node(&[], &[]), deployment.node(&[], &[]));
    let keys = crate::support::gpg::shared_keys();
    let body =
        json!({"public_key": keys.gpg.export_public(&keys.key), "label": "ticket", "expiration": 3600});
    let r =
        a.call(Method::POST, "/request", &[("content-type", "application/json")], &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (id, token) = (share_key(&r, "id"), share_key(&r, "token"));
    assert_eq!(b.get(&format!("/request/{id}")).await.status, StatusCode::OK, "node b sees the request");

    let r = b.call(Method::DELETE, &format!("/request/{id}"), &[("x-lethe-request-token", &token)], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    for node in [&a, &b] {
        let r = node.get(&format!("/request/{id}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json(), json!({"message": "Secret request not found"}));
        let r = node
            .call(Method::DELETE, &format!("/request/{id}"), &[("x-lethe-request-token", &token)], "")
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "revoked is revoked on every node");
    }
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_attempts_on_one_secret_are_counted_across_nodes() {
    let deployment = Deployment::new();
    let limit = [("LETHE_PASSPHRASE__MAX_FAILURES", "3")];
    let (a, b) = (deployment.node(&[], &limit), deployment.node(&[], &limit));
    let key = share_key(&a.post_form("/api/v1/share", "secret=guarded&passphrase=right").await, "secret_key");
    let path = format!("/api/v1/secret/{key}");
    // Three failures, split so that neither node alone has seen three.
    for node in [&a, &b, &a] {
        let r = node.post_form(&path, "passphrase=wrong").await;
        assert!(r.json().get("value").is_none(), "{}", r.text());
    }
    for node in [&b, &a] {
        let r = node.post_form(&path, "passphrase=right").await;
        assert_eq!(
            r.json(),
            json!({"message": "Too many incorrect passphrase attempts. Please try again later."}),
            "the lock holds on every node, even for the right passphrase"
        );
        assert_eq!(r.intended(), Some(429));
    }
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_rate_limits_are_each_nodes_own() {
    let deployment = Deployment::new();
    let limit = [("LETHE_RATE_LIMIT__CREATES", "2")];
    let (a, b) = (deployment.node(&[], &limit), deployment.node(&[], &limit));
    for _ in 0..2 {
        assert_eq!(a.post_form("/api/v1/share", "secret=x").await.status, StatusCode::OK);
    }
    let r = a.post_form("/api/v1/share", "secret=x").await;
    assert_eq!(r.intended(), Some(429), "node a's window is spent: {}", r.text());
    // The limiter is in each node's memory, not in Redis: a client behind a balancer spreading over
    // two nodes gets up to twice the configured rate (the README says so).
    for _ in 0..2 {
        assert_eq!(b.post_form("/api/v1/share", "secret=x").await.status, StatusCode::OK);
    }
    assert_eq!(b.post_form("/api/v1/share", "secret=x").await.intended(), Some(429));
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_node_serves_the_public_mirror_of_a_full_node_on_the_same_redis() {
    let deployment = Deployment::new();
    let mirror = deployment.node(&["--read-only"], &[]);
    let inside = deployment.node(&["--public-url", &mirror.base], &[]);

    let r = mirror.post_form("/api/v1/share", "secret=x").await;
    assert_eq!((r.status, r.json()), (StatusCode::NOT_FOUND, json!({"message": "Not found"})));
    let r = mirror.call(Method::POST, "/create/secret", &[("content-type", "application/json")], "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "no creation route on the mirror");

    let r = inside.post_form("/api/v1/share", "secret=from+staff&passphrase=pw").await;
    let (sk, mk) = (share_key(&r, "secret_key"), share_key(&r, "metadata_key"));
    let page = inside.get(&format!("/private/{mk}")).await.text();
    assert!(page.contains(&format!("{}/secret/{sk}", mirror.base)), "links point at the mirror: {page}");
    assert_eq!(mirror.get(&format!("/secret/{sk}")).await.status, StatusCode::OK);
    let r = mirror.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=pw").await;
    assert_eq!(r.json()["value"], "from staff", "the mirror reveals what the inside made");
    let r = inside.get(&format!("/api/v1/private/{mk}")).await;
    assert_eq!(r.json()["state"], "received", "and the inside sees it received");
    mirror.stop();
    inside.stop();
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "lethe failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_and_team_commands_work_on_redis_without_a_daemon_and_a_running_node_sees_them() {
    let deployment = Deployment::new();
    let node = deployment.node(&[], &[]);
    // Another machine's data directory: no daemon there, so the commands open Redis themselves.
    let elsewhere = tempfile::tempdir().expect("temporary directory");
    let token = stdout(&deployment.lethe(elsewhere.path(), &["account", "add", "alice@example.com"]));
    assert!(!elsewhere.path().join("admin.sock").exists(), "no daemon answered");
    let auth = basic("alice@example.com", &token);
    let form = [("content-type", "application/x-www-form-urlencoded"), ("authorization", auth.as_str())];
    let r = node.call(Method::POST, "/api/v1/share", &form, "secret=mine").await;
    let mk = share_key(&r, "metadata_key");
    assert_eq!(r.json()["custid"], "alice@example.com", "the running node knows the new account");
    let r = node.call(Method::GET, "/api/v1/private/recent", &[("authorization", &auth)], "").await;
    assert_eq!(r.json().as_array().map(|l| l.len()), Some(1), "{}", r.text());
    assert_eq!(r.json()[0]["metadata_key"], mk.as_str());
    let listed = stdout(&deployment.lethe(elsewhere.path(), &["account", "list"]));
    assert!(listed.starts_with("alice@example.com\t"), "{listed}");

    let keys = crate::support::gpg::shared_keys();
    let key_file = elsewhere.path().join("bob.asc");
    std::fs::write(&key_file, keys.gpg.export_public(&keys.key)).expect("write the key");
    let key_arg = key_file.to_str().expect("UTF-8 path");
    let id = stdout(&deployment.lethe(elsewhere.path(), &["team", "user", "add", "bob", "--key", key_arg]));
    // Through the running node's admin socket: the node reads the user from Redis.
    let users = stdout(&deployment.lethe(node.dir.path(), &["team", "user", "list"]));
    assert!(users.lines().any(|l| l.starts_with(&format!("{id}\tbob\tuser\t"))), "{users}");

    stdout(&deployment.lethe(elsewhere.path(), &["account", "remove", "alice@example.com"]));
    let r = node.call(Method::POST, "/api/v1/share", &form, "secret=again").await;
    assert_eq!(r.json(), json!({"message": "Not authorized"}), "the removed account is gone on the node");
    node.stop();
}

/// The status of `GET path` on `base`, from a blocking caller; 0 when the node does not answer.
pub fn status_of(base: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let attempt = || -> std::io::Result<u16> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0))
    };
    attempt().unwrap_or(0)
}

/// `lethe bench ARGS --json`, its report.
fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN).arg("bench").args(args).arg("--json").output().expect("run lethe bench");
    assert!(out.status.success(), "lethe bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

/// Successful v1 shares a node counted in its `/metrics`.
async fn shares_served(node: &Node) -> u64 {
    let text = node.get("/metrics").await.text();
    text.lines()
        .filter(|l| {
            l.starts_with("lethe_http_requests_total{") && l.contains("share") && l.contains("\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lethe_bench_spreads_its_connections_over_several_nodes() {
    let deployment = Deployment::new();
    let (a, b) = (deployment.node(&[], UNLIMITED), deployment.node(&[], UNLIMITED));
    let report = tokio::task::spawn_blocking({
        let (a, b) = (a.base.clone(), b.base.clone());
        move || bench(&["--url", &a, "--url", &b, "--requests", "200", "--concurrency", "4"])
    })
    .await
    .expect("bench");
    assert_eq!(report["urls"], json!([a.base, b.base]));
    let ops = report["operations"].as_array().expect("operations");
    let (share, reveal) = (&ops[1], &ops[2]);
    assert_eq!((share["name"].as_str(), share["errors"].as_u64()), (Some("share"), Some(0)), "{share}");
    assert!(share["ok"].as_u64() > Some(0));
    // Every secret is revealed, many of them through the node that did not make them.
    assert_eq!(
        (reveal["ok"].as_u64(), reveal["errors"].as_u64()),
        (share["ok"].as_u64(), Some(0)),
        "{reveal}"
    );
    let (on_a, on_b) = (shares_served(&a).await, shares_served(&b).await);
    assert!(on_a > 0 && on_b > 0, "both nodes took shares: {on_a} and {on_b}");
    assert_eq!(Some(on_a + on_b), share["ok"].as_u64());
    a.stop();
    b.stop();
}

#[test]
fn lethe_bench_runs_its_in_process_server_on_the_redis_it_is_given() {
    let redis = RedisServer::start();
    let report = bench(&[
        "--storage",
        "redis",
        "--redis-url",
        &redis.url(),
        "--requests",
        "100",
        "--concurrency",
        "4",
    ]);
    assert_eq!(report["storage"], "redis");
    let ops = report["operations"].as_array().expect("operations");
    for op in &ops[1..] {
        assert_eq!(op["errors"], 0, "{op}");
        assert!(op["ok"].as_u64() > Some(0), "{op}");
    }
    // The batches ran on this Redis, under the run's own prefix, whose keys the run removed at its end
    // (the metadata records of revealed secrets among them).
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_evalsha:calls="), "{stats}");
    let keyspace = redis.cli(&["INFO", "keyspace"]);
    assert!(!keyspace.contains("keys="), "the bench left keys behind: {keyspace}");
}
