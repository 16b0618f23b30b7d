//! The HTTP layer: accept loop, connection caps (per listener and per client address), header read
//! and request body deadlines, graceful shutdown, hard body limits, and the security headers every
//! response carries.
//!
//! It owns sockets and bytes, not meaning: each request goes to a [`Handler`] (`service::Service`,
//! which routes it and hands it to the surface that owns it). The security headers of each kind of
//! response are defined here, applied by the handler, which knows the kind.

pub mod body;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::config::Http;

pub type Body = Full<Bytes>;

/// What the transport serves: one request in, one response out. Routing, meaning, logging and metrics
/// are the handler's; the transport knows only the peer's address.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, peer: SocketAddr, req: Request<Incoming>)
    -> impl Future<Output = Response<Body>> + Send;
}

/// Open connections per client address on one listener. A client over its share is turned away at
/// accept, before it can hold a place under `http.max_connections`.
struct ClientSlots {
    per_client: usize,
    /// Open connections by client key; an entry lives only while its count is positive, so the map
    /// never holds more entries than the listener holds connections.
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place in [`ClientSlots`], given back when the connection ends.
struct ClientSlot {
    slots: Arc<ClientSlots>,
    key: IpAddr,
}

impl ClientSlots {
    fn new(per_client: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots { per_client, open: Mutex::new(HashMap::new()) })
    }

    /// A place for one more connection from `peer`, or `None` when it already holds its share.
    fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Option<ClientSlot> {
        let key = client_key(peer);
        // A poisoned lock only means another connection's bookkeeping panicked; the counts are intact.
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.per_client {
            return None;
        }
        *count += 1;
        Some(ClientSlot { slots: Arc::clone(self), key })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The address a connection counts against: IPv4 as it is (also when it arrives IPv4-mapped on a
/// dual-stack socket), IPv6 by its /64, since one host is routinely handed a whole /64.
fn client_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// A connection whose writes must make progress. hyper has no write timeout, so a client that stops
/// reading its responses would otherwise hold its connection, and its places under the caps, forever.
struct StallGuard<T> {
    inner: T,
    stall: Duration,
    /// Armed when a write first finds the socket full, disarmed by any progress.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    fn new(inner: T, stall: Duration) -> StallGuard<T> {
        StallGuard { inner, stall, timer: None }
    }

    /// Passes a write's outcome through, failing it once it has been pending for `stall`.
    fn watch<R>(&mut self, cx: &mut Context<'_>, outcome: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if outcome.is_ready() {
            self.timer = None;
            return outcome;
        }
        let stall = self.stall;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, outcome)
    }
}

/// Serves one listener until `shutdown` resolves, then stops accepting and lets in-flight requests
/// finish for up to `http.shutdown_grace_seconds`.
pub async fn serve<H: Handler>(
    handler: Arc<H>,
    listener: TcpListener,
    http: &Http,
    shutdown: impl Future<Output = ()>,
) {
    // Bounds open connections; a connection beyond it waits in the kernel backlog, not in memory.
    let connections = Arc::new(Semaphore::new(http.max_connections));
    let clients = ClientSlots::new(http.max_connections_per_client);
    // hyper starts this timer whenever it waits for a request head, so it also closes an idle
    // keep-alive connection; with the body deadline, no connection holds its place without traffic.
    let header_timeout = Duration::from_secs(http.header_read_timeout_seconds);
    // A response that makes no progress for as long as a body may take is abandoned too.
    let stall = Duration::from_secs(http.request_timeout_seconds);
    let grace = Duration::from_secs(http.shutdown_grace_seconds);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = clients.try_acquire(addr.ip()) else {
            // Closed unanswered: writing a reply could block on a client that does not read. The
            // address is not logged (it identifies a person), and the line is debug since a flood
            // of refusals must not become a flood of log lines.
            tracing::debug!("connection refused: the client holds its share of this listener");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let service = service_fn(move |req| {
            let handler = Arc::clone(&handler);
            async move { Ok::<_, Infallible>(handler.handle(addr, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(StallGuard::new(stream, stall)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; dropping open connections"),
    }
}

/// Which header policy a response gets: each kind of endpoint has its own CSP and cache policy.
/// Headers the handler set itself are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// JSON and plain-text replies: nothing to render, so nothing may load; never cached, since most
    /// carry secret material or bearer keys.
    Api,
    /// Server-rendered HTML pages (and their stylesheet): styles and forms from this origin, no
    /// script; never cached.
    Page,
    /// The web app's shell, the only response allowed to run scripts; never cached.
    AppShell,
    /// A content-hashed file of the web app: its name changes whenever its bytes do, so a successful
    /// answer may be cached for good.
    Asset,
}

const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                        frame-ancestors 'none'; base-uri 'none'";
/// The shell's policy: scripts and connections from this origin only, and Trusted Types required so
/// that no string can become markup through an HTML sink. One line on the wire.
pub const SHELL_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                             base-uri 'none'; require-trusted-types-for 'script'";
/// Hashed names never change content, so a year and `immutable` is safe.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// Adds the security headers of `kind` to a response with `status`. `Cache-Control` and the CSP are
/// added only when the handler set none; the others always.
pub fn security_headers(kind: Kind, status: StatusCode, headers: &mut hyper::HeaderMap) {
    let (csp, cache) = match kind {
        Kind::Api => (API_CSP, "no-store"),
        Kind::Page => (PAGE_CSP, "no-store"),
        Kind::AppShell => (SHELL_CSP, "no-store"),
        // A missing asset is an error reply, which nobody may keep.
        Kind::Asset if status.is_success() => (API_CSP, ASSET_CACHE),
        Kind::Asset => (API_CSP, "no-store"),
    };
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static(cache));
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(csp));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A response with a body and content type.
pub fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// 408 for a body that missed its deadline; the connection closes after it, since the rest of the
/// body may still be on its way. It is in no surface's dialect: the request never arrived whole.
pub fn request_timeout() -> Response<Body> {
    let mut resp = json(StatusCode::REQUEST_TIMEOUT, &serde_json::json!({"message": "Request timeout"}));
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// 204 with no body.
pub fn no_content() -> Response<Body> {
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

pub const JSON: &str = "application/json; charset=utf-8";
pub const HTML: &str = "text/html; charset=utf-8";

/// A JSON response.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => response(status, JSON, body),
        // Only a map with non-string keys fails to serialize, and no reply has one.
        Err(_) => response(StatusCode::INTERNAL_SERVER_ERROR, JSON, r#"{"message":"Internal error"}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let slots = ClientSlots::new(2);
        let a = slots.try_acquire(ip("192.0.2.1")).unwrap();
        let _b = slots.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(slots.try_acquire(ip("192.0.2.1")).is_none());
        // The same client arriving IPv4-mapped on a dual-stack listener is the same client.
        assert!(slots.try_acquire(ip("::ffff:192.0.2.1")).is_none());
        let other = slots.try_acquire(ip("192.0.2.2")).unwrap();
        drop(a);
        assert!(slots.try_acquire(ip("192.0.2.1")).is_some());
        drop(other);
        // Entries go with their last connection, so the table is bounded by the open connections.
        assert_eq!(slots.open.lock().unwrap().len(), 1);
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("2001:db8:1:2:ffff::9")), client_key(ip("2001:db8:1:2::1")));
        assert_ne!(client_key(ip("2001:db8:1:3::1")), client_key(ip("2001:db8:1:2::1")));
        assert_eq!(client_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }
}
