//! lethe on a local three-master Redis Cluster (`redis.cluster = true`, the masters as seeds): every
//! flow's batches keep to one hash slot, since the domain groups what it writes together (a secret
//! with its metadata, attempts and mail; a request with its outbox entries), and the listings (an
//! account's recent secrets, the outbox sender's walk, the record counts) read every master.

use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use lethe::store::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::redis::RedisCluster;
use crate::support::{TestServer, key, metric, until};

async fn on_cluster(
    cluster: &RedisCluster,
    tweak: &(dyn Fn(&mut lethe::config::RawConfig) + Sync),
) -> TestServer {
    let urls = cluster.urls();
    TestServer::start_with(Engine::Redis, &|raw| {
        raw.redis.urls = urls.clone();
        raw.redis.cluster = true;
        tweak(raw);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_v1_secrets_reveal_once_burn_count_attempts_and_list_in_the_accounts_recent() {
    let cluster = RedisCluster::start();
    // Mail to a port where nothing listens: the entry stays queued, in its secret's group.
    let closed =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let s = on_cluster(&cluster, &|raw| {
        raw.mail.url = Some(format!("smtp://127.0.0.1:{closed}"));
        raw.mail.from = Some("lethe@example.org".into());
    })
    .await;
    let alice = s.account("alice@example.com").await;
    let first = s.post_form_as("/api/v1/share", "secret=one", "alice@example.com", &alice).await.json();
    s.clock.advance(1);
    let second =
        s.post_form_as("/api/v1/share", "secret=two&passphrase=pw", "alice@example.com", &alice).await.json();
    let anonymous = s.share("secret=three").await;
    s.clock.advance(1);
    let mailed = s
        .post_form_as("/api/v1/share", "secret=four&recipient=bob@example.org", "alice@example.com", &alice)
        .await;
    assert_eq!(mailed.status, StatusCode::OK, "{}", mailed.text());
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 1").await);

    // The account's listing row lives in the account's group, the secrets each in their own.
    let recent = s.get_as("/api/v1/private/recent", "alice@example.com", &alice).await;
    assert_eq!(recent.status, StatusCode::OK, "{}", recent.text());
    let listed: Vec<Value> =
        recent.json().as_array().expect("a list").iter().map(|m| m["metadata_key"].clone()).collect();
    let mailed = mailed.json()["metadata_key"].clone();
    assert_eq!(listed, [mailed, second["metadata_key"].clone(), first["metadata_key"].clone()]);

    let sk = key(&first, "secret_key");
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
    assert_eq!(r.json()["value"], "one", "{}", r.text());
    assert_eq!(s.post_form(&format!("/api/v1/secret/{sk}"), "").await.status, StatusCode::NOT_FOUND);
    let meta = s.get(&format!("/api/v1/private/{}", key(&first, "metadata_key"))).await.json();
    assert_eq!(meta["state"], "received", "the reveal updated the metadata in the same batch");

    // Attempts are kept with their secret.
    let sk = key(&second, "secret_key");
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=wrong").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=pw").await;
    assert_eq!(r.json()["value"], "two", "{}", r.text());

    let (sk, mk) = (key(&anonymous, "secret_key"), key(&anonymous, "metadata_key"));
    assert_eq!(s.post_form(&format!("/api/v1/private/{mk}/burn"), "").await.status, StatusCode::OK);
    assert_eq!(s.post_form(&format!("/api/v1/secret/{sk}"), "").await.status, StatusCode::NOT_FOUND);

    // 50 concurrent reveals of one secret: one value.
    let racing = s.share("secret=raced").await;
    let path = format!("/api/v1/secret/{}", key(&racing, "secret_key"));
    let reveals = (0..50).map(|_| s.post_form(&path, "")).collect();
    let won = crate::support::join_all(reveals).await.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(won, 1);
    assert!(
        metric(&s, "lethe_live_records{kind=\"secret\"} 1").await,
        "the mailed one, counted on every master"
    );
    s.stop().await;
}

/// A webhook receiver answering 200 to every POST, keeping each body.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() < length {
                            continue;
                        }
                        kept.lock().unwrap().push(serde_json::from_str(body).unwrap_or(Value::Null));
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                });
            }
        });
        Receiver { url, bodies }
    }

    fn events(&self) -> Vec<String> {
        let mut events: Vec<String> = self
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["event"].as_str().unwrap_or("?").to_owned())
            .collect();
        events.sort();
        events
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_requests_queue_their_webhooks_in_their_group_and_the_sender_finds_them_on_every_master()
{
    let cluster = RedisCluster::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, "cluster-webhook-secret\n").expect("write the secret");
    std::fs::set_permissions(&secret_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let url = receiver.url.clone();
    let s = on_cluster(&cluster, &|raw| {
        raw.webhooks.url = Some(url.clone());
        raw.webhooks.secret_file = Some(secret_file.clone());
    })
    .await;
    let keys = crate::support::gpg::shared_keys();
    let public_key = keys.gpg.export_public(&keys.key);
    let mut made = Vec::new();
    for _ in 0..2 {
        let r = s.post_json("/request", &json!({"public_key": public_key, "expiration": 3600})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.json();
        made.push((key(&v, "id"), key(&v, "token")));
    }
    let (id, token) = &made[0];
    let message = keys.gpg.encrypt_to(&keys.key, b"provided");
    let r = s.post_json(&format!("/request/{id}/secret"), &json!({ "message": message })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = s
        .request(Method::GET, &format!("/request/{id}/secret"), &[("x-lethe-request-token", token)], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (id, token) = &made[1];
    let r =
        s.request(Method::DELETE, &format!("/request/{id}"), &[("x-lethe-request-token", token)], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());

    until("three deliveries", async || receiver.events().len() >= 3).await;
    assert_eq!(receiver.events(), ["request.collected", "request.fulfilled", "request.revoked"]);
    // The scheduled request.expired entries went with their requests.
    until("an empty outbox", async || metric(&s, "lethe_live_records{kind=\"outbox\"} 0").await).await;
    s.stop().await;
}

/// `lethe serve --redis-cluster` with every master as a `--redis-url` seed, two nodes sharing one key
/// file: what one makes, the other reveals, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lethe_serve_nodes_on_a_cluster_by_flags_reveal_each_others_secrets_once() {
    use crate::redis_nodes::call;
    use crate::support::daemon::{BIN, Daemon};

    let cluster = RedisCluster::start();
    let keys = tempfile::tempdir().expect("temporary directory");
    let env = [
        ("LETHE_MASTER_KEY_FILE", keys.path().join("master.key").display().to_string()),
        ("LETHE_TEAM__SERVER_KEY_FILE", keys.path().join("team-server-key.asc").display().to_string()),
        ("LETHE_PASSPHRASE__BCRYPT_COST", "4".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let urls = cluster.urls();
    let mut args = vec!["--storage", "redis"];
    for url in &urls {
        args.extend(["--redis-url", url.as_str()]);
    }

    // Several seeds without cluster mode: refused, naming the setting.
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().expect("UTF-8 path")])
        .args(&args)
        .env_remove("LETHE_STORAGE")
        .env_remove("LETHE_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run lethe serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redis.cluster = true"), "{stderr}");

    args.push("--redis-cluster");
    let (a_dir, b_dir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let (a, a_addr) = Daemon::start_args(a_dir.path(), &args, &env);
    let mut a = Running(Some(a));
    let (b, b_addr) = Daemon::start_args(b_dir.path(), &args, &env);
    let mut b = Running(Some(b));
    let (a_base, b_base) = (format!("http://{a_addr}"), format!("http://{b_addr}"));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let made = call(&a_base, Method::POST, "/api/v1/share", &form, "secret=from+a&ttl=3600").await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text());
    let sk = key(&made.json(), "secret_key");
    let r = call(&b_base, Method::POST, &format!("/api/v1/secret/{sk}"), &form, "").await;
    assert_eq!(r.json()["value"], "from a", "{}", r.text());
    let r = call(&a_base, Method::POST, &format!("/api/v1/secret/{sk}"), &form, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    for node in [&mut a, &mut b] {
        assert!(node.0.take().expect("running").terminate().success(), "a graceful stop exits 0");
    }
}

/// A `lethe serve` killed if the test fails before stopping it.
struct Running(Option<crate::support::daemon::Daemon>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(daemon) = self.0.take() {
            daemon.kill();
        }
    }
}
