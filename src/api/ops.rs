//! Operations routes for load balancers and monitoring: `/health`, `/ready`, `/version`, and the plain
//! JSON answers for paths no surface owns.

use hyper::header::{ALLOW, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::App;
use crate::http::{self, Body};
use crate::router::Ops;

pub async fn handle(app: &App, endpoint: Ops) -> Response<Body> {
    match endpoint {
        Ops::Health => http::json(StatusCode::OK, &json!({"status": "healthy"})),
        Ops::Ready => match app.domain.store.check().await {
            Ok(()) => http::json(StatusCode::OK, &json!({"status": "ready"})),
            Err(err) => {
                tracing::warn!(error = %err, "readiness check failed");
                http::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"status": "not ready", "error": "the store cannot serve"}),
                )
            }
        },
        Ops::Version => http::json(StatusCode::OK, &json!({"version": env!("CARGO_PKG_VERSION")})),
    }
}

pub fn not_found() -> Response<Body> {
    http::json(StatusCode::NOT_FOUND, &json!({"message": "Not found"}))
}

pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = http::json(StatusCode::METHOD_NOT_ALLOWED, &json!({"message": "Method not allowed"}));
    resp.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    resp
}
