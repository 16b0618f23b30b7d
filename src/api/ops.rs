//! Operations routes for load balancers, monitoring and the web app: `/config`, `/health`, `/ready`,
//! `/version`, `/metrics`.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::{Handled, JsonError};
use crate::config::Mode;
use crate::http::{self, Body};
use crate::metrics::Gauges;
use crate::router::Ops;
use crate::{App, Ctx};

pub async fn handle(app: &App, ctx: &Ctx, endpoint: Ops) -> Handled<JsonError> {
    Handled::unaudited(reply(app, ctx, endpoint).await)
}

async fn reply(app: &App, ctx: &Ctx, endpoint: Ops) -> Result<Response<Body>, JsonError> {
    Ok(match endpoint {
        Ops::Config => {
            let s = &app.domain.settings;
            let read_only = ctx.mode == Mode::ReadOnly;
            let default_expiry = if s.expirations.contains(&3600) { 3600 } else { s.expirations[0] };
            let mut config = json!({
                "SECRET_REQUESTS": s.secret_requests && !read_only,
                "SECRET_REQUEST_RESPONSES": s.secret_requests,
                "READ_ONLY": read_only,
                "DISABLE_UPLOAD": read_only,
                "DEFAULT_EXPIRY": default_expiry,
                "MAX_LENGTH": s.limits.max_message_bytes,
                "MAX_FILE_SIZE": s.limits.max_file_bytes,
                "EXPIRATIONS": s.expirations,
            });
            config["PUBLIC_URL"] = json!(s.public_url);
            http::json(StatusCode::OK, &config)
        }
        Ops::Metrics => {
            let m = &app.domain.settings.metrics;
            // On a full listener only when no separate metrics address is configured.
            if !m.enabled || (m.listen.is_some() && ctx.mode != Mode::Metrics) {
                return Err(JsonError::not_found());
            }
            let text = app.metrics.render(&gauges(app).await);
            http::response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        Ops::Health => http::json(StatusCode::OK, &json!({"status": "healthy"})),
        Ops::Ready => match app.domain.store().check().await {
            // A store that reads but cannot commit (recovering from a full disk) is not ready either:
            // creates and reveals would fail.
            Ok(()) if !app.domain.store().healthy() => {
                tracing::warn!("readiness check failed: the store cannot commit writes yet");
                http::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"status": "not ready", "error": "the store cannot commit writes"}),
                )
            }
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
    })
}

/// The store's and the hasher's side of `/metrics`.
async fn gauges(app: &App) -> Gauges {
    let d = &app.domain;
    let mut live_records = Vec::with_capacity(3);
    for (kind, ks) in crate::domain::COUNTED {
        match d.store().count(ks).await {
            Ok(n) => live_records.push((kind, n)),
            Err(err) => tracing::warn!(error = %err, "cannot count records for metrics"),
        }
    }
    Gauges {
        live_records,
        commits: d.store().capabilities().commit_metrics.clone(),
        bcrypt_queue_depth: d.hasher.queue_depth(),
        passphrase_checks: d.hasher.checks(),
    }
}
