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
pub(super) fn reply(
    envelope: &Envelope,
    req: &Request<Incoming>,
    session: &Session,
    body: Value,
) -> Response<Body> {
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

/// The two resource types (`team.md` §5), with Passbolt's well-known ids: (id, slug, name).
pub(super) const RESOURCE_TYPES: [(&str, &str, &str); 2] = [
    ("669f8c64-242a-59fb-92fc-81f660975fd3", "password-string", "Simple password"),
    ("a28a04cd-6f53-518a-967c-9963bf9cec51", "password-and-description", "Password with description"),
];

/// A resource type; the single view carries `definition` as a JSON string, which passbolt-python-api
/// `json.loads` (Passbolt's inconsistency, kept).
pub(super) fn resource_type_json(t: &(&str, &str, &str), definition_as_string: bool) -> Value {
    let (id, slug, name) = *t;
    let string = |max: u32| json!({"type": "string", "maxLength": max});
    let nullable = |max: u32| json!({"anyOf": [{"type": "string", "maxLength": max}, {"type": "null"}]});
    let mut resource = json!({
        "type": "object",
        "required": ["name"],
        "properties": {"name": string(255), "username": nullable(255), "uri": nullable(1024)},
    });
    let secret = if slug == "password-string" {
        resource["properties"]["description"] = nullable(10000);
        json!({"type": "string", "maxLength": 4096})
    } else {
        json!({
            "type": "object",
            "required": ["password"],
            "properties": {"password": string(4096), "description": nullable(10000)},
        })
    };
    let definition = json!({"resource": resource, "secret": secret});
    json!({
        "id": id,
        "slug": slug,
        "name": name,
        "description": if slug == "password-string" {
            "The original passbolt resource type, where the secret is a non empty string."
        } else {
            "A resource with the password and the description encrypted."
        },
        "definition": if definition_as_string { Value::String(definition.to_string()) } else { definition },
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
        Team::ResourceTypes => {
            let list: Vec<Value> = RESOURCE_TYPES.iter().map(|t| resource_type_json(t, false)).collect();
            Ok(reply(envelope, req, &session, Value::Array(list)))
        }
        Team::ResourceType { id } => {
            if !is_uuid(&id) {
                return Err(envelope
                    .error(StatusCode::BAD_REQUEST, "The resource type identifier should be a valid UUID."));
            }
            match RESOURCE_TYPES.iter().find(|t| t.0.eq_ignore_ascii_case(&id)) {
                Some(t) => Ok(reply(envelope, req, &session, resource_type_json(t, true))),
                None => Err(envelope.error(StatusCode::NOT_FOUND, "The resource type does not exist.")),
            }
        }
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
                return match team.users_with_access(caller, resource).await {
                    Ok(users) => Ok(reply(envelope, req, &session, users.iter().map(user_json).collect())),
                    Err(crate::domain::team::resources::ResourceError::Team(err)) => {
                        Err(envelope.internal(err))
                    }
                    Err(_) => {
                        Err(envelope
                            .error(StatusCode::FORBIDDEN, "This operation is not allowed for this user."))
                    }
                };
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

/// Checks the `X-CSRF-Token` header of a write against the session's token, in constant time.
pub fn check_csrf(envelope: &Envelope, req: &Request<Incoming>, session: &Session) -> Result<(), ApiError> {
    let presented = req.headers().get("x-csrf-token").map(|v| v.as_bytes()).unwrap_or_default();
    let expected = session.csrf_token.as_bytes();
    if crate::crypto::digests_equal(&crate::crypto::sha256(presented), &crate::crypto::sha256(expected)) {
        Ok(())
    } else {
        Err(envelope.error(
            StatusCode::FORBIDDEN,
            "CSRF token from either the request body or request headers did not match or is missing.",
        ))
    }
}

/// A validation error: 400 with the error tree as the body.
fn invalid(envelope: &Envelope, message: &'static str, tree: Value) -> ApiError {
    let mut err = envelope.error(StatusCode::BAD_REQUEST, message);
    err.body = tree;
    err
}

/// `POST /users.json`: session → CSRF → admin → body → the registration.
pub async fn add(app: &App, envelope: &Envelope, req: Request<Incoming>) -> super::Handled<ApiError> {
    let result = add_user(app, envelope, req).await;
    let audit = result.as_ref().ok().map(|(_, creator, created)| {
        let mut facts = crate::api::AuditFacts::new(
            crate::audit::EventName::TeamUserCreated,
            crate::audit::Outcome::Success,
            None,
            Some(created.clone()),
        );
        facts.account = Some(creator.clone());
        facts
    });
    super::Handled { result: result.map(|(resp, _, _)| resp), audit }
}

async fn add_user(
    app: &App,
    envelope: &Envelope,
    req: Request<Incoming>,
) -> Result<(Response<Body>, String, String), ApiError> {
    use crate::domain::team::TeamError;
    use crate::domain::team::users::NewUser;

    let Some(session) = session_of(app, envelope, &req).await? else {
        return Err(unauthenticated(envelope));
    };
    check_csrf(envelope, &req, &session)?;
    if !session.user.admin {
        return Err(envelope.error(StatusCode::FORBIDDEN, "You are not authorized to access that location."));
    }
    let body = super::auth::read_object(app, envelope, req).await?;
    let mut tree = serde_json::Map::new();
    let username = match body.get("username") {
        None | Some(Value::Null) => {
            tree.insert("username".into(), json!({"_required": "A username is required."}));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            tree.insert("username".into(), json!({"type": "The username should be a string."}));
            None
        }
    };
    let admin = match body.get("role_id") {
        None | Some(Value::Null) => false,
        Some(v) if *v == json!(super::action_id("roles.id.admin")) => true,
        Some(v) if *v == json!(super::action_id("roles.id.user")) => false,
        Some(_) => {
            tree.insert("role_id".into(), json!({"inList": "The role does not exist."}));
            false
        }
    };
    let armored = match body.get("gpgkey").and_then(|g| g.get("armored_key")) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => {
            tree.insert("gpgkey".into(), json!({"armored_key": {"_required": "A public key is required."}}));
            None
        }
    };
    let profile = body.get("profile");
    let name_field = |f: &str| profile.and_then(|p| p.get(f)).and_then(Value::as_str).map(str::to_owned);
    let (first, last) = (name_field("first_name"), name_field("last_name"));
    let (Some(username), Some(armored), true) = (username, armored, tree.is_empty()) else {
        return Err(invalid(envelope, "Could not validate user data.", Value::Object(tree)));
    };
    let new = NewUser {
        username: &username,
        armored_key: &armored,
        admin,
        first_name: first.as_deref(),
        last_name: last.as_deref(),
    };
    let refused = |field: Value| Err(invalid(envelope, "Could not validate user data.", field));
    match app.domain.team.add_user(new).await {
        Ok(user) => {
            let resp = envelope.success("The user has been added successfully.", user_json(&user));
            Ok((resp, session.user.username.clone(), user.id))
        }
        Err(TeamError::InvalidName) => refused(
            json!({"username": {"isValidUsername": "The username should be 1 to 255 characters without spaces."}}),
        ),
        Err(TeamError::NameTaken) => {
            refused(json!({"username": {"uniqueUsername": "The username is already in use."}}))
        }
        Err(TeamError::KeyTaken) => {
            refused(json!({"gpgkey": {"armored_key": {"uniqueFingerprint": "The key is already in use."}}}))
        }
        Err(err @ (TeamError::Key(_) | TeamError::KeyVersion)) => refused(
            json!({"gpgkey": {"armored_key": {"isValidPublicKey": format!("A valid public key is required: {err}")}}}),
        ),
        Err(err) => Err(envelope.internal(err)),
    }
}
