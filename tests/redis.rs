//! Several lethe nodes on one Redis: what one node makes, another reveals, exactly once; a Redis that
//! goes away makes the store unavailable without consuming anything; `rediss://` speaks TLS.

use std::sync::Arc;

use hyper::StatusCode;
use lethe::store::Engine;

use crate::support::redis::{RedisServer, free_port};
use crate::support::tls::Certs;
use crate::support::{TestServer, key};

/// Two nodes on the same Redis with the same master key and team server key files (`master_key`, and
/// a `team-server-key.asc` beside it), as a deployment runs them.
async fn two_nodes(url: &str, master_key: &std::path::Path) -> (TestServer, TestServer) {
    let url = url.to_owned();
    let key_file = master_key.to_owned();
    let team_key = master_key.with_file_name("team-server-key.asc");
    let tweak = move |raw: &mut lethe::config::RawConfig| {
        raw.redis.urls = vec![url.clone()];
        raw.master_key_file = Some(key_file.clone());
        raw.team.server_key_file = Some(team_key.clone());
    };
    let a = TestServer::start_with(Engine::Redis, &tweak).await;
    let b = TestServer::start_with(Engine::Redis, &tweak).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_made_on_one_node_is_revealed_once_across_fifty_concurrent_reveals_on_two() {
    let redis = Arc::new(RedisServer::start());
    let keys = tempfile::tempdir().expect("temporary directory");
    let (a, b) = two_nodes(&redis.url(), &keys.path().join("master.key")).await;
    let (a, b) = (Arc::new(a), Arc::new(b));

    let m = a.share("secret=one+node+to+another&ttl=3600").await;
    let path = format!("/api/v1/secret/{}", key(&m, "secret_key"));
    let mut reveals = tokio::task::JoinSet::new();
    for i in 0..50 {
        let node = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let path = path.clone();
        reveals.spawn(async move { node.post_form(&path, "").await });
    }
    let mut values = Vec::new();
    while let Some(answer) = reveals.join_next().await {
        let r = answer.expect("a reveal");
        if r.status == StatusCode::OK && r.json().get("value").is_some() {
            values.push(r.json()["value"].as_str().expect("a string value").to_owned());
        }
    }
    assert_eq!(values, ["one node to another"], "exactly one reveal, of the value made on the other node");

    for node in [a, b] {
        Arc::into_inner(node).expect("no reveal holds the node").stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_reveal_fails_and_after_its_restart_the_acknowledged_secret_is_revealed() {
    let mut redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("temporary directory");
    let (a, b) = two_nodes(&redis.url(), &keys.path().join("master.key")).await;
    let m = a.share("secret=kept&ttl=3600").await;
    let path = format!("/api/v1/secret/{}", key(&m, "secret_key"));
    redis.kill();
    let r = b.post_form(&path, "").await;
    assert_ne!(r.status, StatusCode::OK, "nothing is revealed while Redis is down");
    assert!(!r.text().contains("kept"));
    // A crash of Redis with appendfsync always keeps what was acknowledged.
    redis.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let r = loop {
        let r = a.post_form(&path, "").await;
        if r.status == StatusCode::OK || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["value"], "kept", "the secret survived Redis's restart and was not consumed");
    a.stop().await;
    b.stop().await;
}

/// Why a node on `url` with a data directory of its own (and `tweak`'s settings) does not start.
fn refused_start(url: &str, tweak: &dyn Fn(&mut lethe::config::RawConfig)) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut raw = lethe::config::RawConfig {
        data_dir: Some(dir.path().to_owned()),
        storage: "redis".into(),
        ..Default::default()
    };
    raw.redis.urls = vec![url.to_owned()];
    tweak(&mut raw);
    let settings = Arc::new(raw.validate(None).expect("valid settings"));
    let clock = Arc::new(lethe::clock::ManualClock::new(crate::support::T0));
    match lethe::server::Parts::open(settings, clock) {
        Ok(_) => panic!("the node started"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_master_key_differs_from_the_first_nodes_is_refused() {
    let redis = RedisServer::start();
    let url = redis.url();
    let tweak = move |raw: &mut lethe::config::RawConfig| raw.redis.urls = vec![url.clone()];
    let a = TestServer::start_with(Engine::Redis, &tweak).await;
    let err = refused_start(&redis.url(), &|_| {});
    assert!(err.contains("master key is not the one"), "{err}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_team_server_key_differs_from_the_first_nodes_is_refused() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("temporary directory");
    let master = keys.path().join("master.key");
    let (url, key_file) = (redis.url(), master.clone());
    let tweak = move |raw: &mut lethe::config::RawConfig| {
        raw.redis.urls = vec![url.clone()];
        raw.master_key_file = Some(key_file.clone());
    };
    // Each node makes its own team server key in its own data directory: the second is refused.
    let a = TestServer::start_with(Engine::Redis, &tweak).await;
    let err = refused_start(&redis.url(), &|raw| raw.master_key_file = Some(master.clone()));
    assert!(err.contains("team server key is not the one"), "{err}");
    assert!(err.contains("team.server_key_file"), "{err}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_redis_conf_satisfies_the_durability_check() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/config/redis.conf");
    let redis = RedisServer::start_from(Some(conf), &[]);
    assert_eq!(redis.cli(&["CONFIG", "GET", "appendfsync"]), "appendfsync\nalways");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut raw = lethe::config::RawConfig {
        data_dir: Some(dir.path().to_owned()),
        storage: "redis".into(),
        ..Default::default()
    };
    raw.redis.urls = vec![redis.url()];
    let settings = Arc::new(raw.validate(None).expect("valid settings"));
    let clock = Arc::new(lethe::clock::ManualClock::new(crate::support::T0));
    lethe::server::Parts::open(Arc::clone(&settings), clock.clone()).expect("lethe starts on it");
    // The same Redis without fsync on every write is refused, so the check above is a real one.
    redis.cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
    let err = lethe::server::Parts::open(settings, clock).expect_err("refused without appendfsync always");
    assert!(err.to_string().contains("appendfsync everysec"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_speak_tls_verified_against_redis_ca_file() {
    let certs = Certs::make("IP:127.0.0.1");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();
    let (ca, cert, key_file) = (path(&certs.ca), path(&certs.cert), path(&certs.key));
    let tls_port = free_port().to_string();
    let redis = RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}/0");

    // Trusting the test CA, a node keeps its secrets in that Redis over TLS.
    let (u, c) = (url.clone(), certs.ca.clone());
    let s = TestServer::start_with(Engine::Redis, &|raw| {
        raw.redis.urls = vec![u.clone()];
        raw.redis.ca_file = Some(c.clone());
    })
    .await;
    let m = s.share("secret=over-tls&ttl=3600").await;
    assert_ne!(redis.cli(&["DBSIZE"]), "0", "the secret went to the TLS Redis");
    let r = s.post_form(&format!("/api/v1/secret/{}", key(&m, "secret_key")), "").await;
    assert_eq!(r.json()["value"], "over-tls");
    s.stop().await;

    // Without it, the server's certificate chains to nothing lethe trusts: the start is refused.
    let err = refused_start(&url, &|_| {});
    assert!(err.contains("Redis is unavailable"), "{err}");
}
