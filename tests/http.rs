//! The HTTP layer itself: slow clients are cut off, and a stop lets in-flight requests finish.

use std::time::Duration;

use lethe::store::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestServer;

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let s = TestServer::start_with(Engine::Memory, &|raw| raw.http.header_read_timeout_seconds = 1).await;
    let mut conn = TcpStream::connect(addr(&s)).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // The server closes the connection on its own; the bound only keeps a broken server from hanging
    // the test.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a half-sent request open");
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("healthy"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_an_in_flight_request_finish() {
    let s = TestServer::start(Engine::Redb).await;
    let mut conn = TcpStream::connect(addr(&s)).await.unwrap();
    let body = "secret=in+flight&ttl=600";
    let head = format!(
        "POST /api/v1/share HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..5]).await.unwrap();
    // Make sure the server has the request (its head at least) before it is told to stop.
    let probe = s.get("/health").await;
    assert_eq!(probe.status, hyper::StatusCode::OK);

    let stopping = tokio::spawn(s.stop());
    conn.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"state\":\"new\""), "{response}");
    stopping.await.unwrap();
}
