//! Delivery from the outbox: secret-request events reach a local webhook receiver signed with
//! HMAC-SHA256, are retried with backoff and given up after `webhooks.give_up_seconds`, are sealed in
//! the database file, and survive a SIGKILL of the real binary between the acknowledgement and the
//! delivery — sent once after the restart.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lethe::store::Engine;
use ring::hmac;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::gpg::Gpg;
use crate::support::tls::Certs;
use crate::support::{T0, TestServer, metric, until};

const SECRET: &str = "webhook-test-secret";
const LABEL: &str = "ticket-4711-LABELMARK";

/// One keyring for the module: generating keys is the slow part.
fn gpg() -> &'static (Gpg, String) {
    static KEYS: OnceLock<(Gpg, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Requester <req@example.com>", "future-default", "never");
        (gpg, fpr)
    })
}

/// One POST as the receiver saw it, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

/// A webhook receiver on a free loopback port that records every POST and answers `status`.
struct Receiver {
    addr: SocketAddr,
    /// Whether it speaks https.
    tls: bool,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        Receiver::start_with(status, None).await
    }

    /// An https receiver with the certificate and key in `certs`.
    async fn start_tls(status: u16, certs: &Certs) -> Receiver {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain =
            CertificateDer::pem_file_iter(&certs.cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        Receiver::start_with(status, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(status: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let secure = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let status = Arc::new(AtomicU16::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (Arc::clone(&status), Arc::clone(&got));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (st, g, tls) = (Arc::clone(&st), Arc::clone(&g), tls.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let (st, g) = (Arc::clone(&st), Arc::clone(&g));
                            async move {
                                let signature = req
                                    .headers()
                                    .get("x-lethe-signature")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned();
                                let ok = req.method() == Method::POST && req.uri().path() == "/hook";
                                let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec());
                                let answered = if ok { st.load(Ordering::SeqCst) } else { 404 };
                                g.lock().expect("receiver log").push(Received {
                                    signature,
                                    body: body.unwrap_or_default(),
                                    answered,
                                });
                                let mut resp = Response::new(Full::new(Bytes::new()));
                                *resp.status_mut() = StatusCode::from_u16(answered).expect("status");
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // A sender that refuses the certificate ends the handshake: nothing is recorded.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver { addr, tls: secure, status, got, task }
    }

    fn url(&self) -> String {
        format!("{}://{}/hook", if self.tls { "https" } else { "http" }, self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("receiver log").clone()
    }

    /// The accepted (2xx) deliveries' bodies, each checked against its signature.
    fn accepted(&self) -> Vec<Value> {
        self.got().iter().filter(|r| r.answered < 300).map(verified).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The body of `r` as JSON, after checking `X-Lethe-Signature` the way the README tells a receiver to.
fn verified(r: &Received) -> Value {
    let mut t = None;
    let mut v1 = None;
    for part in r.signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t= in the signature"), v1.expect("v1= in the signature"));
    let tag: Vec<u8> = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v1[i..i + 2], 16).expect("hex signature"))
        .collect();
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&r.body);
    hmac::verify(&key, &signed, &tag).expect("the signature verifies with the shared secret");
    serde_json::from_slice(&r.body).expect("a JSON body")
}

/// The secret file, 0600, in `dir`.
fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("webhook.secret");
    std::fs::write(&path, format!("{SECRET}\n")).expect("write the secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

async fn server(engine: Engine, receiver: &Receiver, secrets: &Path) -> TestServer {
    let url = receiver.url();
    let file = secret_file(secrets);
    TestServer::start_with(engine, &|raw| {
        raw.webhooks.url = Some(url.clone());
        raw.webhooks.secret_file = Some(file.clone());
        raw.webhooks.give_up_seconds = 60;
    })
    .await
}

/// Creates a request; returns its id and token.
async fn create(s: &TestServer) -> (String, String) {
    let (gpg, fpr) = gpg();
    let r = s
        .post_json(
            "/request",
            &json!({"public_key": gpg.export_public(fpr), "label": LABEL, "expiration": 3600}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    (v["id"].as_str().expect("id").to_owned(), v["token"].as_str().expect("token").to_owned())
}

async fn fulfil(s: &TestServer, id: &str) -> String {
    let (gpg, fpr) = gpg();
    let message = gpg.encrypt_to(fpr, b"the provided secret");
    let r = s.post_json(&format!("/request/{id}/secret"), &json!({ "message": message })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    message
}

async fn with_token(s: &TestServer, method: Method, id: &str, path: &str, token: &str) -> StatusCode {
    s.request(method, &format!("/request/{id}{path}"), &[("x-lethe-request-token", token)], "").await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_events_are_posted_signed_to_the_configured_url_memory() {
    request_events_are_posted_signed(Engine::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_events_are_posted_signed_to_the_configured_url_redb() {
    request_events_are_posted_signed(Engine::Redb).await;
}

async fn request_events_are_posted_signed(engine: Engine) {
    let receiver = Receiver::start(200).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let s = server(engine, &receiver, dir.path()).await;
    let (first, first_token) = create(&s).await;
    let message = fulfil(&s, &first).await;
    assert_eq!(with_token(&s, Method::GET, &first, "/secret", &first_token).await, StatusCode::OK);
    let (second, second_token) = create(&s).await;
    assert_eq!(with_token(&s, Method::DELETE, &second, "", &second_token).await, StatusCode::NO_CONTENT);
    until("three accepted deliveries", async || receiver.accepted().len() >= 3).await;
    until("an empty outbox", async || metric(&s, "lethe_live_records{kind=\"outbox\"} 0").await).await;

    let mut events: Vec<(String, String)> = receiver
        .accepted()
        .iter()
        .map(|v| {
            let object = v.as_object().expect("an object");
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["event", "label", "occurred_at", "request_id"], "{v}");
            assert_eq!(v["label"], LABEL);
            assert_eq!(v["occurred_at"], T0);
            (v["event"].as_str().expect("event").to_owned(), v["request_id"].as_str().expect("id").to_owned())
        })
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            ("request.collected".to_owned(), first.clone()),
            ("request.fulfilled".to_owned(), first.clone()),
            ("request.revoked".to_owned(), second.clone()),
        ]
    );
    for r in receiver.got() {
        let body = String::from_utf8(r.body).expect("UTF-8 body");
        for secret in [&first_token, &second_token, &message] {
            assert!(!body.contains(secret.as_str()), "a token or ciphertext went out: {body}");
        }
    }
    assert!(metric(&s, "lethe_webhooks_total{outcome=\"sent\"} 3").await);

    let lines = s.stop_with_audit().await;
    let sent: Vec<&Value> = lines.iter().filter(|l| l["event"] == "webhook.sent").collect();
    assert_eq!(sent.len(), 3, "{lines:?}");
    for line in &lines {
        let text = line.to_string();
        assert!(!text.contains(&first) && !text.contains(&second) && !text.contains(LABEL), "{text}");
    }
    for line in sent {
        assert_eq!(line["outcome"], "success");
        assert_eq!(line["id_hash"].as_str().map(str::len), Some(12), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_with_backoff_then_the_delivery_is_given_up_memory() {
    failing_receiver(Engine::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_with_backoff_then_the_delivery_is_given_up_redb() {
    failing_receiver(Engine::Redb).await;
}

async fn failing_receiver(engine: Engine) {
    let receiver = Receiver::start(503).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let s = server(engine, &receiver, dir.path()).await;
    let (id, _) = create(&s).await;
    fulfil(&s, &id).await;
    until("a first attempt", async || !receiver.got().is_empty()).await;
    until("a retry scheduled", async || metric(&s, "lethe_webhooks_total{outcome=\"retried\"} 1").await)
        .await;
    // The next attempt waits for its backoff (2 s on the server's clock, which stands still here).
    assert_eq!(receiver.got().len(), 1);
    // The fulfilment's event, and the request's expiry scheduled since its creation.
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 2").await);
    s.clock.advance(2);
    until("a second attempt", async || receiver.got().len() >= 2).await;
    until("a second retry", async || metric(&s, "lethe_webhooks_total{outcome=\"retried\"} 2").await).await;
    // Past webhooks.give_up_seconds the next failure ends it.
    s.clock.advance(120);
    until("the delivery given up", async || metric(&s, "lethe_webhooks_total{outcome=\"failed\"} 1").await)
        .await;
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 1").await);
    assert!(metric(&s, "lethe_webhooks_total{outcome=\"sent\"} 0").await);
    for r in receiver.got() {
        verified(&r);
    }
    // Nothing else broke: the server still serves requests.
    create(&s).await;
    let lines = s.stop_with_audit().await;
    let failed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "webhook.failed").collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["outcome"], "failure");
    assert_eq!(failed[0]["reason"], "gave_up");
    assert!(!lines.iter().any(|l| l["event"] == "webhook.sent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_gets_events_when_its_certificate_verifies_and_nothing_otherwise() {
    let certs = Certs::make("IP:127.0.0.1");
    let receiver = Receiver::start_tls(200, &certs).await;
    let dir = tempfile::tempdir().expect("temporary directory");

    // Without the receiver's CA the handshake fails: retried, nothing reaches the receiver.
    let s = server(Engine::Memory, &receiver, dir.path()).await;
    let (id, _) = create(&s).await;
    fulfil(&s, &id).await;
    until("a refused attempt", async || metric(&s, "lethe_webhooks_total{outcome=\"retried\"} 1").await)
        .await;
    assert!(receiver.got().is_empty());
    s.stop().await;

    let url = receiver.url();
    let file = secret_file(dir.path());
    let ca = certs.ca.clone();
    let s = TestServer::start_with(Engine::Memory, &|raw| {
        raw.webhooks.url = Some(url.clone());
        raw.webhooks.secret_file = Some(file.clone());
        raw.webhooks.ca_file = Some(ca.clone());
    })
    .await;
    let (id, _) = create(&s).await;
    fulfil(&s, &id).await;
    until("a delivery over TLS", async || receiver.accepted().len() == 1).await;
    assert_eq!(receiver.accepted()[0]["event"], "request.fulfilled");
    assert_eq!(receiver.accepted()[0]["request_id"], id.as_str());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_recovers_gets_the_event_once() {
    let receiver = Receiver::start(500).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let s = server(Engine::Redb, &receiver, dir.path()).await;
    let (id, _) = create(&s).await;
    fulfil(&s, &id).await;
    until("a retry scheduled", async || metric(&s, "lethe_webhooks_total{outcome=\"retried\"} 1").await)
        .await;
    receiver.status.store(204, Ordering::SeqCst);
    s.clock.advance(2);
    until("the event sent", async || metric(&s, "lethe_webhooks_total{outcome=\"sent\"} 1").await).await;
    // Only the request's scheduled expiry is left.
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 1").await);
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0]["event"], "request.fulfilled");
    assert_eq!(accepted[0]["request_id"], id.as_str());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_runs_out_fires_request_expired_and_a_collected_one_does_not_memory() {
    request_expired(Engine::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_runs_out_fires_request_expired_and_a_collected_one_does_not_redb() {
    request_expired(Engine::Redb).await;
}

async fn request_expired(engine: Engine) {
    let receiver = Receiver::start(200).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let s = server(engine, &receiver, dir.path()).await;
    let (pending, _) = create(&s).await;
    let (fulfilled, _) = create(&s).await;
    fulfil(&s, &fulfilled).await;
    let (collected, token) = create(&s).await;
    fulfil(&s, &collected).await;
    assert_eq!(with_token(&s, Method::GET, &collected, "/secret", &token).await, StatusCode::OK);
    until("three events sent", async || metric(&s, "lethe_webhooks_total{outcome=\"sent\"} 3").await).await;
    assert!(receiver.accepted().iter().all(|v| v["event"] != "request.expired"));
    // Requests were made with a 3600 s expiration.
    s.clock.advance(3600);
    until("two expiries sent", async || metric(&s, "lethe_webhooks_total{outcome=\"sent\"} 5").await).await;
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 0").await);
    let mut expired: Vec<String> = receiver
        .accepted()
        .iter()
        .filter(|v| v["event"] == "request.expired")
        .map(|v| {
            assert_eq!(v["occurred_at"], T0 + 3600);
            assert_eq!(v["label"], LABEL);
            v["request_id"].as_str().expect("id").to_owned()
        })
        .collect();
    expired.sort();
    let mut expected = vec![pending, fulfilled];
    expected.sort();
    assert_eq!(expired, expected);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_webhooks_nothing_is_queued() {
    let s = TestServer::start(Engine::Redb).await;
    let (id, _) = create(&s).await;
    fulfil(&s, &id).await;
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 0").await);
    s.stop().await;
}

/// One HTTP/1.1 request with a JSON body over a fresh connection to the real binary.
async fn call(addr: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to lethe serve");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn raw_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to lethe serve");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// The real binary on redb, SIGKILLed after the fulfilment was acknowledged and before the receiver
/// accepted its event: the database file holds neither the label nor the request id, and after the
/// restart the event goes out, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_acknowledged_before_a_crash_is_delivered_once_after_restart_and_sealed_meanwhile() {
    use crate::support::daemon::Daemon;
    let receiver = Receiver::start(503).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let secrets = tempfile::tempdir().expect("temporary directory");
    let file = secret_file(secrets.path());
    let url = receiver.url();
    let env = [
        ("LETHE_WEBHOOKS__URL", url.as_str()),
        ("LETHE_WEBHOOKS__SECRET_FILE", file.to_str().expect("path")),
    ];
    let (daemon, addr) = tokio::task::block_in_place(|| Daemon::start_with(dir.path(), &env));

    let (gpg, fpr) = gpg();
    let (status, created) = call(
        &addr,
        "POST",
        "/request",
        &json!({"public_key": gpg.export_public(fpr), "label": LABEL, "expiration": 3600}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let message = gpg.encrypt_to(fpr, b"the provided secret");
    let (status, reply) =
        call(&addr, "POST", &format!("/request/{id}/secret"), &json!({ "message": message })).await;
    assert_eq!(status, 200, "{reply}");
    // The receiver refuses, so the event is still queued when the process dies.
    until("a refused attempt", async || !receiver.got().is_empty()).await;
    tokio::task::block_in_place(|| daemon.kill());
    assert!(receiver.accepted().is_empty());

    let raw = std::fs::read(dir.path().join(lethe::store::REDB_FILE)).expect("the database file");
    for (what, needle) in [("the label", LABEL.as_bytes()), ("the request id", id.as_bytes())] {
        assert!(!raw.windows(needle.len()).any(|w| w == needle), "{what} is in the database file in clear");
    }

    receiver.status.store(200, Ordering::SeqCst);
    let (daemon, addr) = tokio::task::block_in_place(|| Daemon::start_with(dir.path(), &env));
    until("the event accepted", async || !receiver.accepted().is_empty()).await;
    until("the event sent", async || {
        raw_get(&addr, "/metrics").await.lines().any(|l| l == "lethe_webhooks_total{outcome=\"sent\"} 1")
    })
    .await;
    // Only the request's scheduled expiry is left.
    assert!(raw_get(&addr, "/metrics").await.lines().any(|l| l == "lethe_live_records{kind=\"outbox\"} 1"));
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0]["event"], "request.fulfilled");
    assert_eq!(accepted[0]["request_id"], id.as_str());
    assert_eq!(accepted[0]["label"], LABEL);
    let status = tokio::task::block_in_place(|| daemon.terminate());
    assert!(status.success());
}

/// A webhook secret others can read, or a missing one, stops `lethe serve` with the key named.
#[test]
fn a_loose_or_missing_webhook_secret_or_a_bad_ca_file_stops_the_start() {
    use crate::support::daemon::BIN;
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = secret_file(dir.path());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = |env: &[(&str, &str)]| {
        let data = dir.path().join("data");
        std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().expect("path")])
            .env_remove("LETHE_CONFIG")
            .envs(env.iter().copied())
            .output()
            .expect("run lethe serve")
    };
    let out = run(&[
        ("LETHE_WEBHOOKS__URL", "http://127.0.0.1:9/hook"),
        ("LETHE_WEBHOOKS__SECRET_FILE", file.to_str().expect("path")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("webhooks.secret_file")
            && stderr.contains("group or others"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
    let out = run(&[("LETHE_WEBHOOKS__URL", "http://127.0.0.1:9/hook")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("webhooks.secret_file"), "{stderr}");
    // An https receiver's extra CA file must hold certificates.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = run(&[
        ("LETHE_WEBHOOKS__URL", "https://hooks.example/x"),
        ("LETHE_WEBHOOKS__SECRET_FILE", file.to_str().expect("path")),
        ("LETHE_WEBHOOKS__CA_FILE", file.to_str().expect("path")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("webhooks.ca_file"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
}
