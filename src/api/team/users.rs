//! The user routes (`team.md` §3.6, §4.4): `/users.json` with its filters, one user, the caller's
//! CSRF token, the roles, and `/groups.json` (always empty in this version). Every one needs a
//! session, and every authenticated GET delivers the CSRF cookie when the request lacks it.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::auth::{datetime, session_of, unauthenticated, user_json};
use super::{ApiError, Envelope, add_headers};
use crate::App;
use crate::domain::team::is_uuid;
use crate::domain::team::sessions::Session;
use crate::http::Body;
use crate::router::Team;

const OK: &str = "The operation was successful.";

/// A success reply that also hands the session's CSRF token over as a cookie, unless the request
/// already carries it (`team.md` §3.6: clients read it from this very reply).
fn reply(envelope: &Envelope, req: &Request<Incoming>, session: &Session, body: Value) -> Response<Body> {
    let mut resp = envelope.success(OK, body);
    let has = super::auth::cookie(req, "csrfToken").is_some_and(|v| v == session.csrf_token);
    if !has {
        add_headers(
            &mut resp,
            &[("set-cookie", format!("csrfToken={}; Path=/; SameSite=Lax", session.csrf_token))],
        );
    }
    resp
}

fn role_json(admin: bool) -> Value {
    let name = if admin { "admin" } else { "user" };
    json!({
        "id": super::action_id(&format!("roles.id.{name}")),
        "name": name,
        "description": if admin { "Organization administrator" } else { "Logged in user" },
        "created": datetime(0),
        "modified": datetime(0),
    })
}

pub async fn handle(
    app: &App,
    envelope: &Envelope,
    endpoint: Team,
    req: &Request<Incoming>,
    query: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let Some(session) = session_of(app, envelope, req).await? else {
        return Err(unauthenticated(envelope));
    };
    let team = &app.domain.team;
    let caller = &session.user;
    match endpoint {
        Team::CsrfToken => Ok(reply(envelope, req, &session, json!(session.csrf_token))),
        Team::Roles => Ok(reply(envelope, req, &session, json!([role_json(true), role_json(false)]))),
        Team::Groups => Ok(reply(envelope, req, &session, json!([]))),
        Team::User { id } => {
            if id == "me" {
                return Ok(reply(envelope, req, &session, user_json(caller)));
            }
            if !is_uuid(&id) {
                return Err(envelope.error(
                    StatusCode::BAD_REQUEST,
                    "The user identifier should be a valid UUID or \"me\".",
                ));
            }
            match team.user_by_id(&id).await.map_err(|e| envelope.internal(e))? {
                Some((user, _)) if user.disabled.is_none() || caller.admin => {
                    Ok(reply(envelope, req, &session, user_json(&user)))
                }
                _ => Err(envelope.error(StatusCode::NOT_FOUND, "The user does not exist.")),
            }
        }
        Team::Users => {
            let has_access: Vec<&str> = query
                .iter()
                .filter(|(k, _)| k == "filter[has-access]" || k == "filter[has-access][]")
                .map(|(_, v)| v.as_str())
                .collect();
            if has_access.len() > 1 {
                return Err(
                    envelope.error(StatusCode::BAD_REQUEST, "Multiple has-access filters are not supported.")
                );
            }
            if let Some(resource) = has_access.first() {
                if !is_uuid(resource) {
                    return Err(envelope
                        .error(StatusCode::BAD_REQUEST, "The resource identifier should be a valid UUID."));
                }
                // No resource is served in this version, so the caller has access to none.
                return Err(
                    envelope.error(StatusCode::FORBIDDEN, "This operation is not allowed for this user.")
                );
            }
            let search = query.iter().find(|(k, _)| k == "filter[search]").map(|(_, v)| v.to_lowercase());
            let users = team.list_users().await.map_err(|e| envelope.internal(e))?;
            let list: Vec<Value> = users
                .iter()
                .filter(|u| caller.admin || u.disabled.is_none())
                .filter(|u| {
                    search.as_deref().is_none_or(|s| {
                        [&u.username, &u.first_name, &u.last_name]
                            .iter()
                            .any(|f| f.to_lowercase().contains(s))
                    })
                })
                .map(user_json)
                .collect();
            Ok(reply(envelope, req, &session, Value::Array(list)))
        }
        _ => Err(envelope.error(StatusCode::NOT_FOUND, "Not Found")),
    }
}
