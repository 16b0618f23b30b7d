//! Resources, secrets and sharing on the wire (`team.md` §6–§7): the JSON the clients send, type-
//! checked into the domain's requests, and the resource, permission and secret objects exactly as the
//! clients read them. Every route keeps the contract's check order: session → CSRF on writes → id
//! syntax → existence and visibility → permission level → body → the change.

use std::collections::HashMap;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::auth::{datetime, read_object, session_of, unauthenticated, user_json};
use super::users::{check_csrf, reply, resource_type_json};
use super::{ApiError, Envelope, Handled};
use crate::App;
use crate::api::AuditFacts;
use crate::audit::{EventName, Outcome};
use crate::domain::team::is_uuid;
use crate::domain::team::resources::{
    Fault, Listed, NewResource, OWNER, Permission, PermissionChange, RESOURCE_TYPE_IDS, Resource,
    ResourceChange, ResourceError, Secret, SecretIn,
};
use crate::domain::team::sessions::Session;
use crate::domain::team::users::User;
use crate::http::Body;
use crate::router::Team;

const BAD_ID: &str = "The resource identifier should be a valid UUID.";
const NO_RESOURCE: &str = "The resource does not exist.";
const INVALID: &str = "Could not validate resource data.";

/// Which optional parts a GET asked for with `contain[X]=1`.
#[derive(Debug, Clone, Copy, Default)]
struct Contains {
    creator: bool,
    modifier: bool,
    favorite: bool,
    permission: bool,
    permissions: bool,
    permissions_user: bool,
    secret: bool,
    resource_type: bool,
}

impl Contains {
    /// What the create and update replies carry.
    fn write_reply() -> Contains {
        Contains {
            creator: true,
            modifier: true,
            favorite: true,
            permission: true,
            secret: true,
            ..Contains::default()
        }
    }

    fn needs_users(&self) -> bool {
        self.creator || self.modifier || self.permissions_user
    }
}

/// `contain[X]` values are `1`/`0`/`true`/`false` in any case; anything else is a 400.
fn contains(query: &[(String, String)]) -> Result<Contains, ()> {
    let mut c = Contains::default();
    for (k, v) in query {
        let Some(name) = k.strip_prefix("contain[").and_then(|n| n.strip_suffix(']')) else { continue };
        let on = match v.to_ascii_lowercase().as_str() {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(()),
        };
        match name {
            "creator" => c.creator = on,
            "modifier" => c.modifier = on,
            "favorite" => c.favorite = on,
            "permission" => c.permission = on,
            "permissions" => c.permissions = on,
            "permissions.user.profile" => c.permissions_user = on,
            "secret" => c.secret = on,
            "resource-type" => c.resource_type = on,
            _ => {}
        }
    }
    Ok(c)
}

fn permission_json(resource_id: &str, p: &Permission) -> Value {
    json!({
        "id": p.id,
        "aco": "Resource",
        "aco_foreign_key": resource_id,
        "aro": "User",
        "aro_foreign_key": p.user_id,
        "type": p.kind,
        "created": datetime(p.created),
        "modified": datetime(p.modified),
    })
}

fn secret_json(s: &Secret) -> Value {
    json!({
        "id": s.id,
        "user_id": s.user_id,
        "resource_id": s.resource_id,
        "data": s.data,
        "created": datetime(s.created),
        "modified": datetime(s.modified),
        "created_by": s.created_by,
        "modified_by": s.modified_by,
    })
}

/// The v4 resource object (`team.md` §7.2) with what `c` asks for.
fn resource_json(
    r: &Resource,
    caller: &User,
    c: &Contains,
    users: &HashMap<String, User>,
    secret: Option<&Secret>,
) -> Value {
    let mut v = json!({
        "id": r.id,
        "name": r.name,
        "username": r.username,
        "uri": r.uri,
        "description": r.description,
        "deleted": false,
        "created": datetime(r.created),
        "modified": datetime(r.modified),
        "created_by": r.created_by,
        "modified_by": r.modified_by,
        "resource_type_id": r.resource_type_id,
        "folder_parent_id": null,
        "personal": r.permissions.len() == 1,
        "expired": null,
    });
    let user = |id: &str| users.get(id).map_or(Value::Null, user_json);
    if c.creator {
        v["creator"] = user(&r.created_by);
    }
    if c.modifier {
        v["modifier"] = user(&r.modified_by);
    }
    if c.favorite {
        v["favorite"] = Value::Null;
    }
    if c.permission {
        v["permission"] = r
            .permissions
            .iter()
            .find(|p| p.user_id == caller.id)
            .map_or(Value::Null, |p| permission_json(&r.id, p));
    }
    if c.permissions || c.permissions_user {
        let list: Vec<Value> = r
            .permissions
            .iter()
            .map(|p| {
                let mut pj = permission_json(&r.id, p);
                if c.permissions_user {
                    pj["user"] = user(&p.user_id);
                }
                pj
            })
            .collect();
        v["permissions"] = Value::Array(list);
    }
    if c.secret {
        v["secrets"] = Value::Array(secret.map(secret_json).into_iter().collect());
    }
    if c.resource_type
        && let Some(t) = super::users::RESOURCE_TYPES.iter().find(|t| t.0 == r.resource_type_id)
    {
        v["resource_type"] = resource_type_json(t, false);
    }
    v
}

fn rule_message(rule: &str) -> &'static str {
    match rule {
        "_required" => "This field is required.",
        "_empty" => "This field cannot be empty.",
        "type" => "This field has the wrong type.",
        "maxLength" => "This field is too long.",
        "uuid" => "This field should be a valid UUID.",
        "inList" => "This value is not allowed.",
        "resource_type_exists" => "The resource type does not exist.",
        "folder_exists" => "The folder does not exist.",
        "hasAtMost" => "Too many items were given.",
        "isOwner" => "The secret should belong to the current user.",
        "isValidOpenPGPMessage" => "The message should be a valid ASCII-armored OpenPGP message.",
        "isEncryptedToUser" => "The message is not encrypted to the key of this user.",
        "secrets_provided" => "The secrets should be exactly one for each user who needs one.",
        "secretsRequired" => "A change of resource type requires the secrets.",
        "exists" => "The permission does not exist.",
        "aro_exists" => "The user does not exist or is disabled.",
        "permission_unique" => "The user already has a permission on this resource.",
        "at_least_one_owner" => "The resource should have at least one owner.",
        _ => "This field is invalid.",
    }
}

/// The error tree: `{field: {rule: message}}`, nested along each fault's path.
fn tree(faults: &[Fault]) -> Value {
    let mut root = Map::new();
    for fault in faults {
        let mut node = &mut root;
        for part in &fault.path {
            let next = node.entry(part.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            let Value::Object(map) = next else { unreachable!("made an object above") };
            node = map;
        }
        node.insert(fault.rule.to_owned(), Value::String(rule_message(fault.rule).to_owned()));
    }
    Value::Object(root)
}

fn invalid(envelope: &Envelope, message: &'static str, faults: &[Fault]) -> ApiError {
    let mut err = envelope.error(StatusCode::BAD_REQUEST, message);
    err.body = tree(faults);
    err
}

fn domain_error(
    envelope: &Envelope,
    err: ResourceError,
    forbidden: &'static str,
    not_found: &'static str,
) -> ApiError {
    match err {
        ResourceError::NotFound => envelope.error(StatusCode::NOT_FOUND, not_found),
        ResourceError::Forbidden => envelope.error(StatusCode::FORBIDDEN, forbidden),
        ResourceError::Invalid(faults) => invalid(envelope, INVALID, &faults),
        ResourceError::Team(crate::domain::team::TeamError::Contention) => envelope.error(
            StatusCode::CONFLICT,
            "The resource was changed by someone else at the same time; try again.",
        ),
        ResourceError::Team(err) => envelope.internal(err),
    }
}

/// An optional text field: absent → `None`, null → `Some(None)`, a string within `max` characters →
/// `Some(Some(..))`; else a fault.
fn optional_text(body: &Value, field: &str, max: usize, faults: &mut Vec<Fault>) -> Option<Option<String>> {
    match body.get(field) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.chars().count() > max => {
            faults.push(Fault::new(&[field], "maxLength"));
            None
        }
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            faults.push(Fault::new(&[field], "type"));
            None
        }
    }
}

/// `name`: a string of 1–255 characters; `required` on create, and never null or empty on update.
fn name_field(body: &Value, required: bool, faults: &mut Vec<Fault>) -> Option<String> {
    match body.get("name") {
        None | Some(Value::Null) if required => {
            faults.push(Fault::new(&["name"], "_required"));
            None
        }
        None => None,
        Some(Value::Null) => {
            faults.push(Fault::new(&["name"], "_empty"));
            None
        }
        Some(Value::String(s)) if s.is_empty() => {
            faults.push(Fault::new(&["name"], "_empty"));
            None
        }
        Some(Value::String(s)) if s.chars().count() > 255 => {
            faults.push(Fault::new(&["name"], "maxLength"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            faults.push(Fault::new(&["name"], "type"));
            None
        }
    }
}

fn resource_type_field(body: &Value, faults: &mut Vec<Fault>) -> Option<String> {
    match body.get("resource_type_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_uuid(s) => Some(s.to_ascii_lowercase()),
        Some(_) => {
            faults.push(Fault::new(&["resource_type_id"], "uuid"));
            None
        }
    }
}

/// A list of `{user_id, data}` items under `field`; `default_user` fills an absent `user_id` (create).
fn secrets_field(
    body: &Value,
    field: &str,
    default_user: Option<&str>,
    faults: &mut Vec<Fault>,
) -> Option<Vec<SecretIn>> {
    let items = match body.get(field) {
        None | Some(Value::Null) => return None,
        Some(Value::Array(items)) => items,
        Some(_) => {
            faults.push(Fault::new(&[field], "type"));
            return None;
        }
    };
    if items.len() > crate::domain::team::resources::MAX_PERMISSIONS {
        faults.push(Fault::new(&[field], "hasAtMost"));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = i.to_string();
        let user_id = match item.get("user_id") {
            None | Some(Value::Null) => match default_user {
                Some(u) => Some(u.to_owned()),
                None => {
                    faults.push(Fault::new(&[field, &at, "user_id"], "_required"));
                    None
                }
            },
            Some(Value::String(s)) if is_uuid(s) => Some(s.to_ascii_lowercase()),
            Some(_) => {
                faults.push(Fault::new(&[field, &at, "user_id"], "uuid"));
                None
            }
        };
        let data = match item.get("data") {
            None | Some(Value::Null) => {
                faults.push(Fault::new(&[field, &at, "data"], "_required"));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                faults.push(Fault::new(&[field, &at, "data"], "type"));
                None
            }
        };
        if let (Some(user_id), Some(data)) = (user_id, data) {
            out.push(SecretIn { user_id, data });
        }
    }
    Some(out)
}

/// Every user by id, for the contains that show users; read only when asked for.
async fn users_map(app: &App, envelope: &Envelope, needed: bool) -> Result<HashMap<String, User>, ApiError> {
    if !needed {
        return Ok(HashMap::new());
    }
    let users = app.domain.team.list_users().await.map_err(|e| envelope.internal(e))?;
    Ok(users.into_iter().map(|u| (u.id.clone(), u)).collect())
}

/// What the audit line of a resource route says: the event, its outcome, the resource id (hashed by
/// the sink) and the caller's username.
struct Audit {
    event: EventName,
    account: Option<String>,
    id: Option<String>,
    /// Users who gained and lost access, once a share is made.
    counts: Option<(u64, u64)>,
}

impl Audit {
    fn facts(self, result: &Result<Response<Body>, ApiError>) -> Option<AuditFacts> {
        let (outcome, reason) = match result {
            Ok(_) => (Outcome::Success, None),
            Err(e) => match e.status {
                StatusCode::UNAUTHORIZED => (Outcome::Denied, Some("unauthenticated")),
                StatusCode::FORBIDDEN => (Outcome::Denied, Some("forbidden")),
                StatusCode::NOT_FOUND => (Outcome::Denied, Some("not_found")),
                StatusCode::BAD_REQUEST => (Outcome::Failure, Some("invalid")),
                StatusCode::CONFLICT => (Outcome::Failure, Some("conflict")),
                _ => (Outcome::Failure, None),
            },
        };
        let mut facts = AuditFacts::new(self.event, outcome, reason, self.id.filter(|id| is_uuid(id)));
        facts.account = self.account;
        facts.counts = self.counts;
        Some(facts)
    }
}

/// The resource a route names in its path, as sent.
fn resource_id(endpoint: &Team) -> Option<&str> {
    match endpoint {
        Team::Resource { id }
        | Team::UpdateResource { id }
        | Team::DeleteResource { id }
        | Team::Secret { id }
        | Team::ShareSimulate { id }
        | Team::Share { id } => Some(id),
        _ => None,
    }
}

pub async fn handle(
    app: &App,
    envelope: &Envelope,
    endpoint: Team,
    req: Request<Incoming>,
    query: &[(String, String)],
) -> Handled<ApiError> {
    // Writes and secret reads are written whatever their outcome; views, listings and dry runs only
    // when refused (a listing per client would flood the trail), as the contract's `denied` lines.
    let (event, always) = match &endpoint {
        Team::AddResource => (EventName::TeamResourceCreated, true),
        Team::UpdateResource { .. } => (EventName::TeamResourceUpdated, true),
        Team::DeleteResource { .. } => (EventName::TeamResourceDeleted, true),
        Team::Secret { .. } => (EventName::TeamSecretRead, true),
        Team::Share { .. } => (EventName::TeamShare, true),
        Team::ShareSimulate { .. } => (EventName::TeamShare, false),
        _ => (EventName::TeamResourceRead, false),
    };
    let id = resource_id(&endpoint).map(str::to_ascii_lowercase);
    let denied = |result: &Result<Response<Body>, ApiError>| {
        result.as_ref().is_err_and(|e| {
            matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND)
        })
    };
    let session = match session_of(app, envelope, &req).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            let result = Err(unauthenticated(envelope));
            let audit = Audit { event, account: None, id, counts: None }.facts(&result);
            return Handled { result, audit };
        }
        Err(err) => return Handled::unaudited(Err(err)),
    };
    let account = Some(session.user.username.clone());
    let mut counts = None;
    let result = route(app, envelope, endpoint, req, query, &session, &mut counts).await;
    let audit =
        if always || denied(&result) { Audit { event, account, id, counts }.facts(&result) } else { None };
    Handled { result, audit }
}

async fn route(
    app: &App,
    envelope: &Envelope,
    endpoint: Team,
    req: Request<Incoming>,
    query: &[(String, String)],
    session: &Session,
    counts: &mut Option<(u64, u64)>,
) -> Result<Response<Body>, ApiError> {
    let team = &app.domain.team;
    let caller = &session.user;
    let writes = !matches!(endpoint, Team::Resources | Team::Resource { .. } | Team::Secret { .. });
    if writes {
        check_csrf(envelope, &req, session)?;
    }
    let id = match resource_id(&endpoint) {
        Some(id) if !is_uuid(id) => return Err(envelope.error(StatusCode::BAD_REQUEST, BAD_ID)),
        Some(id) => id.to_ascii_lowercase(),
        None => String::new(),
    };
    match endpoint {
        Team::Resources => {
            let c = contains(query).map_err(|()| {
                envelope.error(StatusCode::BAD_REQUEST, "The contain values should be booleans.")
            })?;
            let has_ids: Vec<String> = query
                .iter()
                .filter(|(k, _)| k == "filter[has-id][]" || k == "filter[has-id]")
                .map(|(_, v)| v.to_ascii_lowercase())
                .collect();
            let flag = |name: &str| {
                query
                    .iter()
                    .any(|(k, v)| k == name && matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
            };
            let (owned, shared) = (flag("filter[is-owned-by-me]"), flag("filter[is-shared-with-me]"));
            let listed = team.list_resources(caller, c.secret).await.map_err(|e| envelope.internal(e))?;
            let users = users_map(app, envelope, c.needs_users()).await?;
            let list: Vec<Value> = listed
                .iter()
                .filter(|l| has_ids.is_empty() || has_ids.contains(&l.resource.id))
                .filter(|l| !owned || l.resource.access(&caller.id) == Some(OWNER))
                .filter(|l| !shared || l.resource.created_by != caller.id)
                .map(|Listed { resource, secret }| {
                    resource_json(resource, caller, &c, &users, secret.as_ref())
                })
                .collect();
            Ok(reply(envelope, &req, session, Value::Array(list)))
        }
        Team::Resource { .. } => {
            let c = contains(query).map_err(|()| {
                envelope.error(StatusCode::BAD_REQUEST, "The contain values should be booleans.")
            })?;
            let not_found = |e| domain_error(envelope, e, NO_RESOURCE, NO_RESOURCE);
            let (resource, _) = team.resource_for(caller, &id, 1).await.map_err(not_found)?;
            let secret =
                if c.secret { Some(team.own_secret(caller, &id).await.map_err(not_found)?) } else { None };
            let users = users_map(app, envelope, c.needs_users()).await?;
            Ok(reply(envelope, &req, session, resource_json(&resource, caller, &c, &users, secret.as_ref())))
        }
        Team::Secret { .. } => {
            let secret = team.own_secret(caller, &id).await.map_err(|e| {
                domain_error(envelope, e, "The secret does not exist.", "The secret does not exist.")
            })?;
            Ok(reply(envelope, &req, session, secret_json(&secret)))
        }
        Team::AddResource => {
            let body = read_object(app, envelope, req).await?;
            let mut faults = Vec::new();
            let name = name_field(&body, true, &mut faults);
            let username = optional_text(&body, "username", 255, &mut faults).flatten();
            let uri = optional_text(&body, "uri", 1024, &mut faults).flatten();
            let description = optional_text(&body, "description", 10_000, &mut faults).flatten();
            let resource_type_id = resource_type_field(&body, &mut faults);
            if body.get("folder_parent_id").is_some_and(|v| !v.is_null()) {
                faults.push(Fault::new(&["folder_parent_id"], "folder_exists"));
            }
            let secrets = match secrets_field(&body, "secrets", Some(&caller.id), &mut faults) {
                None if !faults.iter().any(|f| f.path[0] == "secrets") => {
                    faults.push(Fault::new(&["secrets"], "_required"));
                    None
                }
                Some(list) if list.is_empty() && body["secrets"].as_array().is_some_and(Vec::is_empty) => {
                    faults.push(Fault::new(&["secrets"], "_empty"));
                    None
                }
                Some(list) if list.len() > 1 => {
                    faults.push(Fault::new(&["secrets"], "hasAtMost"));
                    None
                }
                other => other,
            };
            let (Some(name), Some(secret), true) =
                (name, secrets.and_then(|mut s| s.pop()), faults.is_empty())
            else {
                return Err(invalid(envelope, INVALID, &faults));
            };
            let new = NewResource {
                name,
                username,
                uri,
                description,
                resource_type_id: resource_type_id.unwrap_or_else(|| RESOURCE_TYPE_IDS[0].to_owned()),
                secret,
            };
            let resource = team
                .create_resource(caller, new)
                .await
                .map_err(|e| domain_error(envelope, e, NO_RESOURCE, NO_RESOURCE))?;
            write_reply(app, envelope, caller, &resource, "The resource has been added successfully.").await
        }
        Team::UpdateResource { .. } => {
            let forbidden = "You are not allowed to update this resource.";
            team.resource_for(caller, &id, 7)
                .await
                .map_err(|e| domain_error(envelope, e, forbidden, NO_RESOURCE))?;
            let body = read_object(app, envelope, req).await?;
            let mut faults = Vec::new();
            let change = ResourceChange {
                name: name_field(&body, false, &mut faults),
                username: optional_text(&body, "username", 255, &mut faults),
                uri: optional_text(&body, "uri", 1024, &mut faults),
                description: optional_text(&body, "description", 10_000, &mut faults),
                resource_type_id: resource_type_field(&body, &mut faults),
                secrets: secrets_field(&body, "secrets", None, &mut faults),
            };
            if !faults.is_empty() {
                return Err(invalid(envelope, INVALID, &faults));
            }
            let resource = team
                .update_resource(caller, &id, change)
                .await
                .map_err(|e| domain_error(envelope, e, forbidden, NO_RESOURCE))?;
            write_reply(app, envelope, caller, &resource, "The resource has been updated successfully.").await
        }
        Team::DeleteResource { .. } => {
            let forbidden = "You do not have the permission to delete this resource.";
            team.delete_resource(caller, &id)
                .await
                .map_err(|e| domain_error(envelope, e, forbidden, NO_RESOURCE))?;
            Ok(envelope.success("The resource has been deleted successfully.", Value::Null))
        }
        Team::ShareSimulate { .. } | Team::Share { .. } => {
            let dry_run = matches!(endpoint, Team::ShareSimulate { .. });
            let forbidden = "You are not authorized to share this resource.";
            team.resource_for(caller, &id, OWNER)
                .await
                .map_err(|e| domain_error(envelope, e, forbidden, NO_RESOURCE))?;
            let body = read_object(app, envelope, req).await?;
            let mut faults = Vec::new();
            let changes = permission_changes(&body, &mut faults);
            let secrets = if dry_run {
                Vec::new()
            } else {
                secrets_field(&body, "secrets", None, &mut faults).unwrap_or_default()
            };
            if !faults.is_empty() {
                return Err(invalid(envelope, "Could not validate the share.", &faults));
            }
            let outcome = team
                .share(caller, &id, &changes, &secrets, dry_run)
                .await
                .map_err(|e| domain_error(envelope, e, forbidden, NO_RESOURCE))?;
            if dry_run {
                let users = |ids: &[String]| -> Vec<Value> {
                    ids.iter().map(|u| json!({"User": {"id": u}})).collect()
                };
                Ok(envelope.success(
                    "The operation was successful.",
                    json!({"changes": {"added": users(&outcome.added), "removed": users(&outcome.removed)}}),
                ))
            } else {
                *counts = Some((outcome.added.len() as u64, outcome.removed.len() as u64));
                Ok(envelope.success("The operation was successful.", Value::Null))
            }
        }
        _ => Err(envelope.error(StatusCode::NOT_FOUND, "Not Found")),
    }
}

/// The reply of a create or update: the resource with its creator, modifier, favorite, the caller's
/// permission and secret.
async fn write_reply(
    app: &App,
    envelope: &Envelope,
    caller: &User,
    resource: &Resource,
    message: &str,
) -> Result<Response<Body>, ApiError> {
    let team = &app.domain.team;
    let secret = team
        .own_secret(caller, &resource.id)
        .await
        .map_err(|e| domain_error(envelope, e, NO_RESOURCE, NO_RESOURCE))?;
    let users = users_map(app, envelope, true).await?;
    let c = Contains::write_reply();
    Ok(envelope.success(message, resource_json(resource, caller, &c, &users, Some(&secret))))
}

/// The `permissions` list of a share (`team.md` §7.4), type-checked into changes.
fn permission_changes(body: &Value, faults: &mut Vec<Fault>) -> Vec<PermissionChange> {
    let items = match body.get("permissions") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            faults.push(Fault::new(&["permissions"], "type"));
            return Vec::new();
        }
    };
    if items.len() > crate::domain::team::resources::MAX_PERMISSIONS {
        faults.push(Fault::new(&["permissions"], "hasAtMost"));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = i.to_string();
        let kind = match item.get("type") {
            Some(Value::Number(n)) if matches!(n.as_u64(), Some(1 | 7 | 15)) => n.as_u64().map(|k| k as u8),
            _ => None,
        };
        let existing = item.get("id").filter(|v| !v.is_null());
        if let Some(pid) = existing {
            let Some(pid) = pid.as_str().filter(|p| is_uuid(p)) else {
                faults.push(Fault::new(&["permissions", &at, "id"], "uuid"));
                continue;
            };
            if item.get("delete") == Some(&Value::Bool(true)) {
                out.push(PermissionChange::Delete { id: pid.to_ascii_lowercase() });
            } else if let Some(kind) = kind {
                out.push(PermissionChange::Update { id: pid.to_ascii_lowercase(), kind });
            } else {
                faults.push(Fault::new(&["permissions", &at, "type"], "inList"));
            }
            continue;
        }
        if item.get("aro").and_then(Value::as_str) != Some("User") {
            faults.push(Fault::new(&["permissions", &at, "aro"], "inList"));
        }
        let user_id = match item.get("aro_foreign_key").and_then(Value::as_str) {
            Some(u) if is_uuid(u) => Some(u.to_ascii_lowercase()),
            _ => {
                faults.push(Fault::new(&["permissions", &at, "aro_foreign_key"], "uuid"));
                None
            }
        };
        if kind.is_none() {
            faults.push(Fault::new(&["permissions", &at, "type"], "inList"));
        }
        if let (Some(user_id), Some(kind)) = (user_id, kind) {
            out.push(PermissionChange::Add { user_id, kind });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_nest_into_the_contracts_error_tree() {
        let t = tree(&[
            Fault::new(&["secrets", "0", "data"], "isEncryptedToUser"),
            Fault::new(&["secrets"], "secrets_provided"),
            Fault::new(&["name"], "_empty"),
        ]);
        assert!(t["secrets"]["0"]["data"]["isEncryptedToUser"].is_string(), "{t}");
        assert!(t["secrets"]["secrets_provided"].is_string(), "{t}");
        assert!(t["name"]["_empty"].is_string(), "{t}");
    }

    #[test]
    fn contain_values_are_booleans_in_any_case() {
        let q = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert!(contains(&q("contain[secret]", "TRUE")).unwrap().secret);
        assert!(!contains(&q("contain[secret]", "0")).unwrap().secret);
        assert!(contains(&q("contain[secret]", "yes")).is_err());
        assert!(contains(&q("contain[whatever]", "1")).is_ok());
    }
}
