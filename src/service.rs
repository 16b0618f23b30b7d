//! The one server loop above the transport: [`Service`] is the [`http::Handler`] of a listener. For
//! each request it routes once to a typed [`Endpoint`] (whose name then labels everything), hands it
//! to the surface that owns it, and turns the surface's [`Handled`] into a response in one place:
//! errors rendered in the surface's dialect and logged once (5xx at warn, 4xx at debug), the audit
//! line recorded, the request counted and timed, and the endpoint kind's security headers added.
//!
//! It knows the surfaces and the transport; neither knows it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header;
use hyper::{Request, Response};

use crate::api::{self, Handled, SurfaceError};
use crate::config::Mode;
use crate::http::{self, Body, body};
use crate::router::{self, Endpoint};
use crate::{App, Ctx};

/// One listener's handler: the shared [`App`] and the listener's mode.
#[derive(Debug)]
pub struct Service {
    app: Arc<App>,
    mode: Mode,
}

impl Service {
    pub fn new(app: Arc<App>, mode: Mode) -> Service {
        Service { app, mode }
    }
}

impl http::Handler for Service {
    async fn handle(&self, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
        let app = &*self.app;
        let started = Instant::now();
        // The head is in; the body has until the deadline, however slowly it comes.
        let deadline = tokio::time::Instant::from_std(started)
            + Duration::from_secs(app.domain.settings.http.request_timeout_seconds);
        let expects_continue = req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let endpoint = router::route(req.method(), req.uri().path(), self.mode);
        let name = endpoint.name();
        let kind = endpoint.kind();
        let client_ip = app.domain.settings.trusted_proxies.client_ip(peer.ip(), req.headers());
        let ctx = Ctx { client_ip, mode: self.mode };
        let dispatch = async {
            match endpoint {
                Endpoint::V1(ep) => finish(app, &ctx, name, api::ots_v1::handle(app, &ctx, ep, req).await),
                Endpoint::Client(ep) => {
                    finish(app, &ctx, name, api::client::handle(app, &ctx, ep, req).await)
                }
                Endpoint::Requests(ep) => {
                    finish(app, &ctx, name, api::requests::handle(app, &ctx, ep, req).await)
                }
                Endpoint::Web(ep) => finish(app, &ctx, name, api::web::handle(app, &ctx, ep, req).await),
                Endpoint::Ui(ep) => finish(app, &ctx, name, api::app::handle(ep)),
                Endpoint::Ops(ep) => finish(app, &ctx, name, api::ops::handle(app, &ctx, ep).await),
                Endpoint::Team(ep) => finish(app, &ctx, name, api::team::handle(app, &ctx, ep, req).await),
                Endpoint::NotFound => {
                    finish(app, &ctx, name, Handled::unaudited(Err(api::JsonError::not_found())))
                }
                Endpoint::MethodNotAllowed(allow) => {
                    let refused = api::JsonError::method_not_allowed(allow);
                    finish(app, &ctx, name, Handled::unaudited(Err(refused)))
                }
            }
        };
        let (mut response, timed_out) = body::scoped(deadline, expects_continue, dispatch).await;
        if timed_out {
            // Whatever the surface made of the cut-off body, the client is told the plain truth in no
            // surface's dialect: its request never arrived whole.
            response = http::request_timeout();
        }
        let status = response.status();
        app.metrics.observe(name, status.as_u16(), started.elapsed().as_secs_f64());
        tracing::debug!(endpoint = name, status = status.as_u16(), "request");
        http::security_headers(kind, status, response.headers_mut());
        response
    }
}

/// The one place a surface's answer becomes a response: its audit line is recorded, and an error is
/// logged and rendered in the surface's dialect.
fn finish<E: SurfaceError>(
    app: &App,
    ctx: &Ctx,
    endpoint: &'static str,
    handled: Handled<E>,
) -> Response<Body> {
    if let Some(facts) = handled.audit {
        app.audit_facts(ctx, &facts);
    }
    match handled.result {
        Ok(response) => response,
        Err(err) => {
            let status = err.status();
            match err.detail() {
                Some(detail) if status.is_server_error() => {
                    tracing::warn!(endpoint, status = status.as_u16(), error = %detail, "request failed")
                }
                _ if status.is_server_error() => {
                    tracing::warn!(endpoint, status = status.as_u16(), "request failed")
                }
                _ => tracing::debug!(endpoint, status = status.as_u16(), "request refused"),
            }
            err.into_response()
        }
    }
}
