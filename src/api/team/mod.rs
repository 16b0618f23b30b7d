//! The team surface (`api/team.md`), in Passbolt's dialect so that the existing team clients work
//! unchanged: every reply is the `{header, body}` envelope, carries the `X-GPGAuth-*` discovery
//! headers, and errors are envelopes too, with the HTTP status in `header.code`.
//!
//! It owns the wire shapes and the fixed message texts; the rules (who is a user, which key is the
//! server's) belong to `domain::team`. Served on full listeners only, and not at all when
//! `team.enabled` is false.

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

mod auth;
mod resources;
mod users;

use super::{Handled, SurfaceError};
use crate::domain::team::new_uuid;
use crate::http::{self as h, Body};
use crate::router::Team;
use crate::{App, Ctx};

/// Passbolt names each route's `action` with a UUID v5 of `<Controller>.<action>` in this namespace.
const ACTION_NAMESPACE: [u8; 16] =
    [0xd5, 0x44, 0x7c, 0xa1, 0x95, 0x0f, 0x45, 0x9d, 0x8b, 0x20, 0x86, 0xdd, 0xfd, 0xd0, 0xf9, 0x22];

/// The discovery headers every team reply carries (`team.md` §3.2); `requests-gpgauthlib` refuses a
/// server whose `/auth/verify.json` lacks the version.
const GPGAUTH_HEADERS: [(&str, &str); 6] = [
    ("x-gpgauth-version", "1.3.0"),
    ("x-gpgauth-login-url", "/auth/login"),
    ("x-gpgauth-logout-url", "/auth/logout"),
    ("x-gpgauth-verify-url", "/auth/verify"),
    ("x-gpgauth-pubkey-url", "/auth/verify.json"),
    (
        "access-control-expose-headers",
        "X-GPGAuth-Verify-Response, X-GPGAuth-Progress, X-GPGAuth-User-Auth-Token, X-GPGAuth-Authenticated, \
         X-GPGAuth-Refer, X-GPGAuth-Debug, X-GPGAuth-Error, X-GPGAuth-Pubkey, X-GPGAuth-Logout-Url, \
         X-GPGAuth-Version",
    ),
];

/// A UUID v5 (SHA-1 name-based, RFC 4122 §4.3) of `name` in Passbolt's action namespace.
pub fn action_id(name: &str) -> String {
    let mut input = ACTION_NAMESPACE.to_vec();
    input.extend_from_slice(name.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = crate::crypto::hex(&b);
    format!("{}-{}-{}-{}-{}", &x[0..8], &x[8..12], &x[12..16], &x[16..20], &x[20..32])
}

/// What every reply needs to fill its envelope header: the time, the request as received, the route.
#[derive(Debug, Clone)]
struct Envelope {
    servertime: u64,
    url: String,
    action: &'static str,
}

impl Envelope {
    fn reply(&self, http: StatusCode, status: &str, code: u16, message: &str, body: Value) -> Response<Body> {
        let value = json!({
            "header": {
                "id": new_uuid(),
                "status": status,
                "servertime": self.servertime,
                "action": action_id(self.action),
                "message": message,
                "url": self.url,
                "code": code,
            },
            "body": body,
        });
        let mut resp = h::json(http, &value);
        for (name, value) in GPGAUTH_HEADERS {
            resp.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        resp
    }

    fn success(&self, message: &str, body: Value) -> Response<Body> {
        self.reply(StatusCode::OK, "success", 200, message, body)
    }

    fn error(&self, status: StatusCode, message: &'static str) -> ApiError {
        ApiError {
            envelope: Box::new(self.clone()),
            status,
            message,
            body: Value::Null,
            detail: None,
            headers: Vec::new(),
        }
    }

    fn internal(&self, detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            detail: Some(detail.to_string()),
            ..self.error(StatusCode::INTERNAL_SERVER_ERROR, "An internal error occurred.")
        }
    }
}

/// An error of the team dialect: an envelope with `status: error`, `code` = the HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// Boxed to keep `Result<_, ApiError>` small.
    envelope: Box<Envelope>,
    status: StatusCode,
    message: &'static str,
    /// The error tree of a validation error, else null.
    body: Value,
    /// For 5xx: what went wrong, logged and never sent.
    detail: Option<String>,
    /// Extra headers (the GPGAuth failure headers).
    headers: Vec<(&'static str, String)>,
}

impl SurfaceError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    fn into_response(self) -> Response<Body> {
        let mut resp =
            self.envelope.reply(self.status, "error", self.status.as_u16(), self.message, self.body);
        add_headers(&mut resp, &self.headers);
        resp
    }
}

/// The `action` name of each route, as Passbolt's controllers are called.
fn action(endpoint: &Team) -> &'static str {
    match endpoint {
        Team::ServerKey => "AuthVerify.get",
        Team::Login => "AuthLogin.loginPost",
        Team::IsAuthenticated => "AuthIsAuthenticated.isAuthenticated",
        Team::Logout => "AuthLogout.logout",
        Team::Users => "UsersIndex.index",
        Team::AddUser => "UsersAdd.addPost",
        Team::User { .. } => "UsersView.view",
        Team::CsrfToken => "UsersCsrfToken.get",
        Team::Roles => "RolesIndex.index",
        Team::Groups => "GroupsIndex.index",
        Team::ResourceTypes => "ResourceTypesIndex.index",
        Team::ResourceType { .. } => "ResourceTypesView.view",
        Team::Resources => "ResourcesIndex.index",
        Team::AddResource => "ResourcesAdd.add",
        Team::Resource { .. } => "ResourcesView.view",
        Team::UpdateResource { .. } => "ResourcesUpdate.update",
        Team::DeleteResource { .. } => "ResourcesDelete.delete",
        Team::Secret { .. } => "SecretsView.view",
        Team::ShareSimulate { .. } => "ShareSimulate.simulate",
        Team::Share { .. } => "Share.update",
        Team::Unknown => "Error.notFound",
    }
}

/// The query's `(name, value)` pairs, percent-decoded (`filter%5Bsearch%5D` is `filter[search]`).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Adds headers whose values are ours (never raw client input), skipping any that could not be one.
fn add_headers(resp: &mut Response<Body>, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            resp.headers_mut().append(HeaderName::from_static(name), value);
        }
    }
}

pub async fn handle(app: &App, ctx: &Ctx, endpoint: Team, req: Request<Incoming>) -> Handled<ApiError> {
    let url =
        req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let envelope = Envelope { servertime: app.domain.now(), url, action: action(&endpoint) };
    let team = &app.domain.team;
    if !app.domain.settings.team.enabled {
        return Handled::unaudited(Err(envelope.error(StatusCode::NOT_FOUND, "Not Found")));
    }
    let query = query_pairs(req.uri().query().unwrap_or_default());
    if query.iter().any(|(k, v)| k == "api-version" && (v == "v1" || v == "1")) {
        return Handled::unaudited(Err(
            envelope.error(StatusCode::BAD_REQUEST, "API v1 support is deprecated in this version.")
        ));
    }
    let result = match endpoint {
        Team::Users
        | Team::User { .. }
        | Team::CsrfToken
        | Team::Roles
        | Team::Groups
        | Team::ResourceTypes
        | Team::ResourceType { .. } => users::handle(app, &envelope, endpoint, &req, &query).await,
        Team::ServerKey => {
            let key = team.server_key();
            Ok(envelope.success(
                "The operation was successful.",
                json!({"fingerprint": key.fingerprint(), "keydata": key.public_armored()}),
            ))
        }
        Team::Login => return auth::login(app, ctx, &envelope, req).await,
        Team::AddUser => return users::add(app, &envelope, req).await,
        Team::Resources
        | Team::AddResource
        | Team::Resource { .. }
        | Team::UpdateResource { .. }
        | Team::DeleteResource { .. }
        | Team::Secret { .. }
        | Team::ShareSimulate { .. }
        | Team::Share { .. } => return resources::handle(app, &envelope, endpoint, req, &query).await,
        Team::IsAuthenticated => match auth::session_of(app, &envelope, &req).await {
            Ok(Some(_)) => Ok(envelope.success("The operation was successful.", Value::Null)),
            Ok(None) => Err(auth::unauthenticated(&envelope)),
            Err(err) => Err(err),
        },
        Team::Logout => return auth::logout(app, &envelope, &req).await,
        Team::Unknown => Err(envelope.error(StatusCode::NOT_FOUND, "Not Found")),
    };
    Handled::unaudited(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_are_passbolts_uuid_v5_names() {
        // The action of Passbolt's own secret-view reply in its documentation (the seed page).
        assert_eq!(action_id("SecretsView.view"), "ad71952e-7842-599e-a19e-3a82e6974b23");
        assert_eq!(action_id("ResourcesIndex.index"), "c506210f-7866-5691-8fc1-58772e8f49f1");
    }
}
