//! The HTTP layer under hostile clients, over raw sockets: stalled and dripping uploads are cut off by
//! the request deadline, one address cannot fill a listener, a client that stops reading gives its
//! place back, an oversized `Expect: 100-continue` is refused before `100 Continue`; and a HEAD on a
//! consuming route takes nothing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hyper::{Method, StatusCode};
use lethe::store::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::per_backend;
use crate::support::TestServer;

/// Only keeps a broken server from hanging the test; no test measures time with it.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// The addresses the tests' clients come from; Linux loopback answers for all of 127/8.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Kept apart from the test client's own pooled connections, which come from 127.0.0.1.
const NON_READER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// A complete head and the first byte of a body that never follows.
const STALLED_UPLOAD: &[u8] = b"POST /api/v1/share HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ns";

fn addr(s: &TestServer) -> SocketAddr {
    s.base.trim_start_matches("http://").parse().expect("listener address")
}

/// A connection to `target` from the loopback address `source`.
async fn connect_from(source: IpAddr, target: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind a loopback source address");
    socket.connect(target).await.expect("connect")
}

/// Everything the server sends until it closes the connection; a reset counts as a close.
async fn until_closed(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept the connection open: {}", String::from_utf8_lossy(&buf));
    String::from_utf8_lossy(&buf).into_owned()
}

/// The first response head the server sends (an interim `100 Continue` included).
async fn first_head(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, async {
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) => buf.push(byte[0]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response head: {}", String::from_utf8_lossy(&buf));
    String::from_utf8_lossy(&buf).into_owned()
}

/// `GET /health` from `source` on a fresh connection.
async fn health_from(source: IpAddr, target: SocketAddr) -> String {
    let mut conn = connect_from(source, target).await;
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("send");
    until_closed(&mut conn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_from_one_address_leave_the_listener_to_others_and_are_cut_off() {
    const PER_CLIENT: usize = 3;
    let s = TestServer::start_with(Engine::Memory, &|raw| {
        raw.http.max_connections = 8;
        raw.http.max_connections_per_client = PER_CLIENT;
        raw.http.request_timeout_seconds = 3;
    })
    .await;
    let target = addr(&s);
    // More stalled uploads than the whole listener holds: without a per-client cap and a deadline they
    // would take every place for good, and the bystander below would wait in the backlog forever.
    let mut stalled = Vec::new();
    for _ in 0..12 {
        let mut conn = connect_from(ATTACKER, target).await;
        // A connection refused at accept may already be reset; that is its expected fate.
        let _ = conn.write_all(STALLED_UPLOAD).await;
        stalled.push(conn);
    }
    // Accepted after the stalled ones (the kernel queues connections in order), answered all the same.
    let health = health_from(BYSTANDER, target).await;
    assert!(health.starts_with("HTTP/1.1 200") && health.contains("healthy"), "{health}");

    let mut cut_off = 0;
    for conn in &mut stalled {
        let answer = until_closed(conn).await;
        if answer.is_empty() {
            continue; // Over the address's share: closed unanswered at accept.
        }
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("Request timeout"), "{answer}");
        cut_off += 1;
    }
    assert_eq!(cut_off, PER_CLIENT, "the address held exactly its share until the deadline");
    // The deadline gave the places back: the same address is served again.
    let health = health_from(ATTACKER, target).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert_eq!(s.app.domain.store().count(lethe::domain::secrets::SECRET).await.unwrap(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_upload_is_cut_off_at_the_deadline() {
    let s = TestServer::start_with(Engine::Memory, &|raw| raw.http.request_timeout_seconds = 2).await;
    let conn = connect_from(ATTACKER, addr(&s)).await;
    let (mut rx, mut tx) = conn.into_split();
    tx.write_all(&STALLED_UPLOAD[..STALLED_UPLOAD.len() - 1]).await.expect("send head");
    // One byte of the 1000 every 100 ms: always progressing, never finishing before the deadline.
    let dripper = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..1000 {
            ticks.tick().await;
            if tx.write_all(b"s").await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(HANG_GUARD, rx.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a dripping upload open");
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    dripper.abort();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = TestServer::start_with(Engine::Memory, &|raw| raw.http.header_read_timeout_seconds = 1).await;
    let mut conn = connect_from(ATTACKER, addr(&s)).await;
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    // The answer, then nothing more from the client: the server must not keep the place forever.
    let answer = until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("healthy"), "{answer}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_responses_gives_its_place_back() {
    let s = TestServer::start_with(Engine::Memory, &|raw| {
        raw.http.max_connections_per_client = 1;
        raw.http.request_timeout_seconds = 2;
    })
    .await;
    let k = keys();
    let bytes = k.gpg.encrypt_to_binary(&k.key, &crate::support::noise(50_000));
    let headers = [("x-lethe-expiration", "3600"), ("x-lethe-onetime", "false")];
    let r = s.request(Method::POST, "/create/file", &headers, bytes).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = message(&r).as_str().unwrap().to_owned();

    // Far more response than the socket buffers hold, asked for by a client that reads none of it.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    socket.bind(SocketAddr::new(NON_READER, 0)).expect("bind");
    let mut stuck = socket.connect(addr(&s)).await.expect("connect");
    let pipelined = format!("GET /file/{id} HTTP/1.1\r\nHost: x\r\n\r\n").repeat(400);
    stuck.write_all(pipelined.as_bytes()).await.expect("send requests");

    // The address's one place comes back only when the server gives up on the stalled writes.
    let served = tokio::time::timeout(HANG_GUARD, async {
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            if health_from(NON_READER, addr(&s)).await.starts_with("HTTP/1.1 200") {
                break;
            }
        }
    })
    .await;
    assert!(served.is_ok(), "a client that stopped reading kept its place");
    drop(stuck);
    s.stop().await;
}

/// Sends a head that waits for `100 Continue` and returns the first head the server answers with
/// (which must be a refusal), and everything after it until the server closes.
async fn expecting_continue(s: &TestServer, head: &str, refusal: &str) -> (String, String) {
    let mut conn = connect_from(ATTACKER, addr(s)).await;
    conn.write_all(head.as_bytes()).await.expect("send head");
    let first = first_head(&mut conn).await;
    assert!(first.starts_with(refusal), "{first}");
    let rest = until_closed(&mut conn).await;
    (first, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_that_waits_for_continue_is_refused_without_it() {
    let s = TestServer::start(Engine::Memory).await;
    // The file limit is 1 MiB; one byte more is declared and never sent.
    let (_, rest) = expecting_continue(
        &s,
        "POST /create/file HTTP/1.1\r\nHost: x\r\nX-Lethe-Expiration: 3600\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1048577\r\nExpect: 100-continue\r\n\r\n",
        "HTTP/1.1 413",
    )
    .await;
    assert!(rest.contains("File too large") && !rest.contains("100 Continue"), "{rest}");

    let (_, rest) = expecting_continue(
        &s,
        "POST /create/secret HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 20000\r\nExpect: 100-continue\r\n\r\n",
        "HTTP/1.1 413",
    )
    .await;
    assert!(rest.contains("Request body too large"), "{rest}");

    // The v1 dialect refuses in its own way: 404, intended 400.
    let (first, _) = expecting_continue(
        &s,
        "POST /api/v1/share HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n",
        "HTTP/1.1 404",
    )
    .await;
    assert!(first.to_ascii_lowercase().contains("x-lethe-intended-status: 400"), "{first}");
    assert_eq!(s.app.domain.store().count(lethe::domain::secrets::SECRET).await.unwrap(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_within_the_limit_still_gets_its_continue() {
    let s = TestServer::start(Engine::Memory).await;
    let mut conn = connect_from(ATTACKER, addr(&s)).await;
    let body = "secret=fits&ttl=600";
    let head = format!(
        "POST /api/v1/share HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("send head");
    let first = first_head(&mut conn).await;
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    conn.write_all(body.as_bytes()).await.expect("send body");
    let answer = until_closed(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"state\":\"new\""), "{answer}");
    s.stop().await;
}

use crate::support::gpg::shared_keys as keys;

fn message(r: &crate::support::Resp) -> Value {
    r.json()["message"].clone()
}

async fn head(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> crate::support::Resp {
    s.request(Method::HEAD, path, headers, "").await
}

per_backend!(
    a_head_on_a_client_encrypted_secret_reads_its_status_only,
    a_head_on_a_client_encrypted_file_is_refused_and_takes_nothing,
    a_head_on_a_request_secret_is_refused_and_collects_nothing,
);

async fn a_head_on_a_client_encrypted_secret_reads_its_status_only(s: &TestServer) {
    let armored = keys().gpg.encrypt_symmetric("k", b"seen once");
    let body = json!({"message": armored, "expiration": 3600, "one_time": true});
    let r = s.post_json("/create/secret", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = message(&r).as_str().unwrap().to_owned();
    for _ in 0..3 {
        let r = head(s, &format!("/secret/{id}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_empty());
    }
    let r = s.get(&format!("/secret/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(message(&r), json!(armored), "the secret was still there after the HEADs");
    assert_eq!(head(s, &format!("/secret/{id}"), &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/secret/{id}")).await.status, StatusCode::NOT_FOUND);
}

async fn a_head_on_a_client_encrypted_file_is_refused_and_takes_nothing(s: &TestServer) {
    let k = keys();
    let bytes = k.gpg.encrypt_to_binary(&k.key, b"a file seen once");
    let headers = [("content-type", "application/octet-stream"), ("x-lethe-expiration", "3600")];
    let r = s.request(Method::POST, "/create/file", &headers, bytes.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = message(&r).as_str().unwrap().to_owned();
    let r = head(s, &format!("/file/{id}"), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET, DELETE"));
    let r = s.get(&format!("/file/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_ref(), bytes.as_slice(), "the file was still there after the HEAD");
    assert_eq!(s.get(&format!("/file/{id}")).await.status, StatusCode::NOT_FOUND);
}

async fn a_head_on_a_request_secret_is_refused_and_collects_nothing(s: &TestServer) {
    let k = keys();
    let body = json!({"public_key": k.gpg.export_public(&k.key), "expiration": 3600});
    let r = s.post_json("/request", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let armored = k.gpg.encrypt_to(&k.key, b"collected once");
    let r = s.post_json(&format!("/request/{id}/secret"), &json!({"message": armored})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let path = format!("/request/{id}/secret");
    let r = head(s, &path, &[("x-lethe-request-token", &token)]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    assert_eq!(s.get(&format!("/request/{id}")).await.json()["state"], "fulfilled");
    let r = s.request(Method::GET, &path, &[("x-lethe-request-token", &token)], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(message(&r), json!(armored), "the secret was still there after the HEAD");
}
