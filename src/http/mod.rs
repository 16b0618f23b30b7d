//! The HTTP layer: accept loop, connection cap, header read timeout, graceful shutdown, hard body
//! limits, and the security headers every response carries.
//!
//! It owns sockets and bytes, not meaning: each request is routed to a typed [`Endpoint`] and handed to
//! the surface that owns it, which answers in its own dialect.

pub mod body;
pub mod client_ip;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api;
use crate::config::Mode;
use crate::router::{self, Endpoint};
use crate::{App, Ctx};

pub type Body = Full<Bytes>;

/// What a handler needs to know about the connection and listener a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub mode: Mode,
}

/// Serves one listener until `shutdown` resolves, then stops accepting and lets in-flight requests
/// finish for up to `http.shutdown_grace_seconds`.
pub async fn serve(app: Arc<App>, listener: TcpListener, mode: Mode, shutdown: impl Future<Output = ()>) {
    let http = &app.domain.settings.http;
    // Bounds open connections; a connection beyond it waits in the kernel backlog, not in memory.
    let connections = Arc::new(Semaphore::new(http.max_connections));
    let header_timeout = Duration::from_secs(http.header_read_timeout_seconds);
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
        let _ = stream.set_nodelay(true);
        let peer = Peer { addr, mode };
        let app = Arc::clone(&app);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(handle(&app, peer, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; dropping open connections"),
    }
}

/// Routes one request and decorates the response.
pub async fn handle(app: &App, peer: Peer, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let endpoint = router::route(req.method(), req.uri().path(), peer.mode);
    let name = endpoint.name();
    let client_ip = app.domain.settings.trusted_proxies.client_ip(peer.addr.ip(), req.headers());
    let ctx = Ctx { client_ip, mode: peer.mode };
    let mut response = match endpoint {
        Endpoint::V1(ep) => api::ots_v1::handle(app, &ctx, ep, req).await,
        Endpoint::Client(ep) => api::client::handle(app, &ctx, ep, req).await,
        Endpoint::Requests(ep) => api::requests::handle(app, &ctx, ep, req).await,
        Endpoint::Web(ep) => api::web::handle(app, &ctx, ep, req).await,
        Endpoint::Ui(ep) => api::app::handle(ep),
        Endpoint::Ops(ep) => api::ops::handle(app, &ctx, ep).await,
        Endpoint::NotFound => api::ops::not_found(),
        Endpoint::MethodNotAllowed(allow) => api::ops::method_not_allowed(allow),
    };
    let status = response.status().as_u16();
    app.metrics.observe(name, status, started.elapsed().as_secs_f64());
    tracing::debug!(endpoint = name, status, "request");
    security_headers(response.headers_mut());
    response
}

/// Headers on every response. `no-store` and the script-free CSP are the defaults: most responses
/// carry secret material or bearer keys, and only the web app's shell may run scripts. They are added
/// only when the handler set none, so the app's shell keeps its own CSP and its hashed assets their
/// long caching (`api::app`).
fn security_headers(headers: &mut hyper::HeaderMap) {
    const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(CSP));
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
