//! `(method, path, listener mode)` → a typed [`Endpoint`], before any handler runs.
//!
//! The endpoint's [`Endpoint::name`] labels logs and metrics; raw paths never do, since they carry
//! bearer ids. A read-only listener routes creation endpoints to "unknown" in the surface's own
//! dialect, so the public face does not even reveal that they exist.
//!
//! HEAD is routed like GET except on the routes whose GET consumes (a client-encrypted secret or file,
//! a request's collected secret): there a HEAD, which proxies, monitors and link checkers send freely,
//! must never take what nobody will receive.

use std::fmt;

use hyper::Method;

use crate::config::Mode;
use crate::crypto;
use crate::http::Kind;
use crate::ratelimit::Class;

/// Defines a bearer id type: whoever holds the id can act on what it names, so its `Debug` never
/// shows it and it reaches a log line only as a keyed hash (`audit`).
macro_rules! bearer_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(<{} chars>)"), self.0.len())
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        /// Unchecked, for tests that compare routes.
        #[cfg(test)]
        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(s.to_owned())
            }
        }
    };
}

bearer_id!(
    /// A v1 secret or metadata key from a path: a URL-safe segment of at most 128 bytes. Whether it
    /// has the shape of a key the server makes is decided here, once ([`V1Key::is_key_shaped`]); the
    /// surface answers an unshaped one in its dialect without asking the store.
    V1Key
);

bearer_id!(
    /// A client-encrypted secret's or file's id, id-shaped (`crypto::is_id_shaped`) by construction.
    ClientId
);

bearer_id!(
    /// A secret request's id, id-shaped (`crypto::is_id_shaped`) by construction.
    RequestId
);

impl V1Key {
    /// A key from a path segment; `None` when the segment cannot be an id at all.
    fn parse(s: &str) -> Option<V1Key> {
        id_segment(s).map(V1Key)
    }

    pub fn is_key_shaped(&self) -> bool {
        crypto::is_key_shaped(&self.0)
    }
}

impl ClientId {
    fn parse(s: &str) -> Option<ClientId> {
        crypto::is_id_shaped(s).then(|| ClientId(s.to_owned()))
    }
}

impl RequestId {
    fn parse(s: &str) -> Option<RequestId> {
        crypto::is_id_shaped(s).then(|| RequestId(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    V1(V1),
    Client(Client),
    Requests(Requests),
    Web(Web),
    Ui(Ui),
    Ops(Ops),
    Team(Team),
    NotFound,
    /// The path exists but not for this method; carries the `Allow` header value.
    MethodNotAllowed(&'static str),
}

/// The one-time-secret v1 dialect under `/api/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V1 {
    Status,
    Authcheck,
    /// `/share` and its alias `/create`.
    Share,
    Generate,
    Reveal {
        secret_key: V1Key,
    },
    Metadata {
        metadata_key: V1Key,
    },
    Burn {
        metadata_key: V1Key,
    },
    Recent,
    /// Any other path under `/api/v1`, answered in the v1 dialect.
    Unknown,
}

/// Client-encrypted secrets: the server stores ciphertext only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// `POST /create/secret` and the older `POST /secret`.
    Create,
    Read {
        id: ClientId,
    },
    Status {
        id: ClientId,
    },
    Delete {
        id: ClientId,
    },
    CreateFile,
    ReadFile {
        id: ClientId,
    },
    /// `GET /file/{id}/status`: the file page's "is it still there", never consuming.
    FileStatus {
        id: ClientId,
    },
    DeleteFile {
        id: ClientId,
    },
    /// A path of this surface that is not a route here (or not on a read-only listener).
    Unknown,
}

/// Secret requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requests {
    Create,
    View { id: RequestId },
    Submit { id: RequestId },
    Collect { id: RequestId },
    Revoke { id: RequestId },
    RotateKey { id: RequestId },
    Unknown,
}

/// Server-rendered pages for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Web {
    Stylesheet,
    /// The recipient's page with the Reveal button; never consumes.
    SecretPage {
        id: V1Key,
    },
    /// The Reveal button's POST.
    SecretReveal {
        id: V1Key,
    },
    /// The creator's state page.
    PrivatePage {
        metadata_key: V1Key,
    },
    PrivateBurn {
        metadata_key: V1Key,
    },
}

/// The browser app: its shell and its content-hashed assets (`api::app`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ui {
    /// `/` and `/index.html`; the fragment after `#` picks the view, so there is no catch-all.
    Shell,
    Asset {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ops {
    Config,
    Metrics,
    Health,
    Ready,
    Version,
}

/// The team surface (`api/team.md`): paths ending in `.json`, on full listeners only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Team {
    /// `GET /auth/verify.json`: the server key for the GPGAuth handshake.
    ServerKey,
    /// `POST /auth/login.json`, and the same handler at `POST /auth/verify.json`: GPGAuth stages 0–2.
    Login,
    /// `GET /auth/is-authenticated.json` and `/auth/checkSession.json`.
    IsAuthenticated,
    /// `GET` or `POST /auth/logout.json`.
    Logout,
    /// `GET /users.json`.
    Users,
    /// `GET /users/{id}.json` and `/users/me.json`; the id is checked after the session.
    User { id: String },
    /// `POST /users.json`: an admin registers a user with their key.
    AddUser,
    /// `GET /users/csrf-token.json`.
    CsrfToken,
    /// `GET /roles.json`.
    Roles,
    /// `GET /groups.json`: always `[]` in this version.
    Groups,
    /// `GET /resource-types.json`.
    ResourceTypes,
    /// `GET /resource-types/{id}.json`; the id is checked after the session.
    ResourceType { id: String },
    /// `GET /resources.json`: the caller's resources, with the contract's filters and contains.
    Resources,
    /// `POST /resources.json`.
    AddResource,
    /// `GET /resources/{id}.json`; ids are checked after the session, as every team id.
    Resource { id: String },
    /// `PUT /resources/{id}.json`.
    UpdateResource { id: String },
    /// `DELETE /resources/{id}.json`: a soft delete.
    DeleteResource { id: String },
    /// `GET /secrets/resource/{id}.json`: the caller's own secret of a resource.
    Secret { id: String },
    /// `POST /share/simulate/resource/{id}.json`: who would gain and lose access.
    ShareSimulate { id: String },
    /// `PUT /share/resource/{id}.json`.
    Share { id: String },
    /// A `.json` path that is not a team route here (or any team path on a read-only listener):
    /// 404 in the team's envelope.
    Unknown,
}

/// The id in a `{id}.json` path segment, if short enough to be worth checking later.
fn json_id(file: &str) -> Option<String> {
    file.strip_suffix(".json").filter(|id| id.len() <= 64).map(str::to_owned)
}

/// Routes a `.json` path. Routing is by path and method only (`team.md` §1); another method on a
/// known path is as unknown as an unknown path.
fn route_team(segments: &[&str], method: &Method, full: bool) -> Team {
    if !full {
        return Team::Unknown;
    }
    let get = method == Method::GET || method == Method::HEAD;
    match segments {
        ["auth", "verify.json"] if get => Team::ServerKey,
        ["auth", "verify.json" | "login.json"] if method == Method::POST => Team::Login,
        ["auth", "is-authenticated.json" | "checkSession.json"] if get => Team::IsAuthenticated,
        ["auth", "logout.json"] if get || method == Method::POST => Team::Logout,
        ["users.json"] if get => Team::Users,
        ["users.json"] if method == Method::POST => Team::AddUser,
        ["users", "csrf-token.json"] if get => Team::CsrfToken,
        ["users", file] if get => match file.strip_suffix(".json") {
            Some(id) if id.len() <= 64 => Team::User { id: id.to_owned() },
            _ => Team::Unknown,
        },
        ["roles.json"] if get => Team::Roles,
        ["groups.json"] if get => Team::Groups,
        ["resource-types.json"] if get => Team::ResourceTypes,
        ["resource-types", file] if get => match file.strip_suffix(".json") {
            Some(id) if id.len() <= 64 => Team::ResourceType { id: id.to_owned() },
            _ => Team::Unknown,
        },
        ["resources.json"] if get => Team::Resources,
        ["resources.json"] if method == Method::POST => Team::AddResource,
        ["resources", file] => match json_id(file) {
            Some(id) if get => Team::Resource { id },
            Some(id) if method == Method::PUT => Team::UpdateResource { id },
            Some(id) if method == Method::DELETE => Team::DeleteResource { id },
            _ => Team::Unknown,
        },
        ["secrets", "resource", file] if get => json_id(file).map_or(Team::Unknown, |id| Team::Secret { id }),
        ["share", "simulate", "resource", file] if method == Method::POST => {
            json_id(file).map_or(Team::Unknown, |id| Team::ShareSimulate { id })
        }
        ["share", "resource", file] if method == Method::PUT => {
            json_id(file).map_or(Team::Unknown, |id| Team::Share { id })
        }
        _ => Team::Unknown,
    }
}

impl V1 {
    /// The rate-limit class a call of this endpoint counts against, if any.
    pub fn rate_class(&self) -> Option<Class> {
        match self {
            V1::Share | V1::Generate => Some(Class::Creates),
            V1::Reveal { .. } => Some(Class::Reveals),
            V1::Status | V1::Authcheck | V1::Metadata { .. } | V1::Burn { .. } | V1::Recent | V1::Unknown => {
                None
            }
        }
    }
}

impl Client {
    /// The rate-limit class a call of this endpoint counts against, if any.
    pub fn rate_class(&self) -> Option<Class> {
        match self {
            Client::Create | Client::CreateFile => Some(Class::Creates),
            Client::Read { .. } | Client::ReadFile { .. } => Some(Class::Reveals),
            Client::Status { .. }
            | Client::Delete { .. }
            | Client::FileStatus { .. }
            | Client::DeleteFile { .. }
            | Client::Unknown => None,
        }
    }
}

impl Requests {
    /// The rate-limit class a call of this endpoint counts against, if any.
    pub fn rate_class(&self) -> Option<Class> {
        match self {
            Requests::Create => Some(Class::Creates),
            Requests::Submit { .. } => Some(Class::Submissions),
            Requests::View { .. }
            | Requests::Collect { .. }
            | Requests::Revoke { .. }
            | Requests::RotateKey { .. }
            | Requests::Unknown => None,
        }
    }
}

impl Web {
    /// The rate-limit class a call of this endpoint counts against, if any.
    pub fn rate_class(&self) -> Option<Class> {
        match self {
            Web::SecretReveal { .. } => Some(Class::Reveals),
            Web::Stylesheet | Web::SecretPage { .. } | Web::PrivatePage { .. } | Web::PrivateBurn { .. } => {
                None
            }
        }
    }
}

impl Endpoint {
    /// Which header policy the endpoint's responses get.
    pub fn kind(&self) -> Kind {
        match self {
            Endpoint::Web(_) => Kind::Page,
            Endpoint::Ui(Ui::Shell) => Kind::AppShell,
            Endpoint::Ui(Ui::Asset { .. }) => Kind::Asset,
            Endpoint::V1(_)
            | Endpoint::Client(_)
            | Endpoint::Requests(_)
            | Endpoint::Ops(_)
            | Endpoint::Team(_)
            | Endpoint::NotFound
            | Endpoint::MethodNotAllowed(_) => Kind::Api,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::V1(v1) => match v1 {
                V1::Status => "v1.status",
                V1::Authcheck => "v1.authcheck",
                V1::Share => "v1.share",
                V1::Generate => "v1.generate",
                V1::Reveal { .. } => "v1.reveal",
                V1::Metadata { .. } => "v1.metadata",
                V1::Burn { .. } => "v1.burn",
                V1::Recent => "v1.recent",
                V1::Unknown => "v1.unknown",
            },
            Endpoint::Client(c) => match c {
                Client::Create => "client.create",
                Client::Read { .. } => "client.read",
                Client::Status { .. } => "client.status",
                Client::Delete { .. } => "client.delete",
                Client::CreateFile => "client.create_file",
                Client::ReadFile { .. } => "client.read_file",
                Client::FileStatus { .. } => "client.file_status",
                Client::DeleteFile { .. } => "client.delete_file",
                Client::Unknown => "client.unknown",
            },
            Endpoint::Requests(r) => match r {
                Requests::Create => "requests.create",
                Requests::View { .. } => "requests.view",
                Requests::Submit { .. } => "requests.submit",
                Requests::Collect { .. } => "requests.collect",
                Requests::Revoke { .. } => "requests.revoke",
                Requests::RotateKey { .. } => "requests.rotate_key",
                Requests::Unknown => "requests.unknown",
            },
            Endpoint::Web(web) => match web {
                Web::Stylesheet => "web.stylesheet",
                Web::SecretPage { .. } => "web.secret_page",
                Web::SecretReveal { .. } => "web.secret_reveal",
                Web::PrivatePage { .. } => "web.private_page",
                Web::PrivateBurn { .. } => "web.private_burn",
            },
            Endpoint::Ui(ui) => match ui {
                Ui::Shell => "app.shell",
                Ui::Asset { .. } => "app.asset",
            },
            Endpoint::Ops(ops) => match ops {
                Ops::Config => "ops.config",
                Ops::Metrics => "ops.metrics",
                Ops::Health => "ops.health",
                Ops::Ready => "ops.ready",
                Ops::Version => "ops.version",
            },
            Endpoint::Team(team) => match team {
                Team::ServerKey => "team.server_key",
                Team::Login => "team.login",
                Team::IsAuthenticated => "team.is_authenticated",
                Team::Logout => "team.logout",
                Team::Users => "team.users",
                Team::AddUser => "team.add_user",
                Team::User { .. } => "team.user",
                Team::CsrfToken => "team.csrf_token",
                Team::Roles => "team.roles",
                Team::Groups => "team.groups",
                Team::ResourceTypes => "team.resource_types",
                Team::ResourceType { .. } => "team.resource_type",
                Team::Resources => "team.resources",
                Team::AddResource => "team.add_resource",
                Team::Resource { .. } => "team.resource",
                Team::UpdateResource { .. } => "team.update_resource",
                Team::DeleteResource { .. } => "team.delete_resource",
                Team::Secret { .. } => "team.secret",
                Team::ShareSimulate { .. } => "team.share_simulate",
                Team::Share { .. } => "team.share",
                Team::Unknown => "team.unknown",
            },
            Endpoint::NotFound => "not_found",
            Endpoint::MethodNotAllowed(_) => "method_not_allowed",
        }
    }
}

/// A path segment that can be an id: non-empty, bounded, URL-safe. Anything else is not routed to a
/// handler at all.
fn id_segment(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| s.to_owned())
}

/// An asset file name: an id segment that may hold dots (`app-C2TVYZRN.js`), never `..` or a slash.
fn id_segment_dotted(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| s.to_owned())
}

pub fn route(method: &Method, path: &str, mode: Mode) -> Endpoint {
    let (get, post) = (method == Method::GET || method == Method::HEAD, method == Method::POST);
    let head = method == Method::HEAD;
    let full = mode == Mode::Full;
    if mode == Mode::Metrics {
        return match (get, path) {
            (true, "/metrics") => Endpoint::Ops(Ops::Metrics),
            _ => Endpoint::NotFound,
        };
    }
    let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let delete = method == Method::DELETE;
    let client_id = ClientId::parse;

    if let ["api", "v1", rest @ ..] = segments.as_slice() {
        return Endpoint::V1(route_v1(rest, get, post, full));
    }
    if path.ends_with(".json") {
        return Endpoint::Team(route_team(&segments, method, full));
    }
    match segments.as_slice() {
        [""] | ["index.html"] if get => Endpoint::Ui(Ui::Shell),
        [""] | ["index.html"] => Endpoint::MethodNotAllowed("GET, HEAD"),
        ["assets", name] => match id_segment_dotted(name) {
            Some(name) if get => Endpoint::Ui(Ui::Asset { name }),
            Some(_) => Endpoint::MethodNotAllowed("GET, HEAD"),
            None => Endpoint::NotFound,
        },
        ["static", "lethe.css"] if get => Endpoint::Web(Web::Stylesheet),
        ["create", "secret"] | ["secret"] if post => {
            Endpoint::Client(if full { Client::Create } else { Client::Unknown })
        }
        ["create", "file"] if post => {
            Endpoint::Client(if full { Client::CreateFile } else { Client::Unknown })
        }
        // A client-encrypted id and a v1 key differ in shape, so the path alone picks the dialect.
        ["secret", id] if crypto::is_id_shaped(id) => match client_id(id) {
            // Answered as the status route: 200 while the secret is there, 404 once it is gone.
            Some(id) if head => Endpoint::Client(Client::Status { id }),
            Some(id) if get => Endpoint::Client(Client::Read { id }),
            Some(id) if delete => Endpoint::Client(Client::Delete { id }),
            _ => Endpoint::MethodNotAllowed("GET, HEAD, DELETE"),
        },
        ["secret", id] => match V1Key::parse(id) {
            Some(id) if get => Endpoint::Web(Web::SecretPage { id }),
            Some(id) if post => Endpoint::Web(Web::SecretReveal { id }),
            // DELETE never burns a v1 secret: burning needs the metadata key.
            Some(_) if delete => Endpoint::Client(Client::Unknown),
            Some(_) => Endpoint::MethodNotAllowed("GET, HEAD, POST"),
            None => Endpoint::NotFound,
        },
        ["secret", id, "status"] => match client_id(id) {
            Some(id) if get => Endpoint::Client(Client::Status { id }),
            Some(_) => Endpoint::MethodNotAllowed("GET, HEAD"),
            None => Endpoint::Client(Client::Unknown),
        },
        ["file", id, "status"] => match client_id(id) {
            Some(id) if get => Endpoint::Client(Client::FileStatus { id }),
            Some(_) => Endpoint::MethodNotAllowed("GET, HEAD"),
            None => Endpoint::Client(Client::Unknown),
        },
        ["file", id] => match client_id(id) {
            // Files have no status route to answer as.
            Some(_) if head => Endpoint::MethodNotAllowed("GET, DELETE"),
            Some(id) if get => Endpoint::Client(Client::ReadFile { id }),
            Some(id) if delete => Endpoint::Client(Client::DeleteFile { id }),
            Some(_) => Endpoint::MethodNotAllowed("GET, DELETE"),
            None => Endpoint::Client(Client::Unknown),
        },
        ["request"] if post => Endpoint::Requests(if full { Requests::Create } else { Requests::Unknown }),
        // The requester's collect has no status route to answer as (the request's own view is a
        // different resource), so a HEAD there is refused; a read-only listener keeps not knowing it.
        ["request", raw, "secret"] if head && full && crypto::is_id_shaped(raw) => {
            Endpoint::MethodNotAllowed("GET, POST")
        }
        ["request", rest @ ..] => Endpoint::Requests(route_requests(rest, method, full)),
        ["private", key] => match V1Key::parse(key) {
            Some(metadata_key) if get => Endpoint::Web(Web::PrivatePage { metadata_key }),
            Some(_) => Endpoint::MethodNotAllowed("GET, HEAD"),
            None => Endpoint::NotFound,
        },
        ["private", key, "burn"] => match V1Key::parse(key) {
            Some(metadata_key) if post => Endpoint::Web(Web::PrivateBurn { metadata_key }),
            Some(_) => Endpoint::MethodNotAllowed("POST"),
            None => Endpoint::NotFound,
        },
        ["config"] if get => Endpoint::Ops(Ops::Config),
        // Metrics stay off the public read-only face.
        ["metrics"] if get && full => Endpoint::Ops(Ops::Metrics),
        ["health"] if get => Endpoint::Ops(Ops::Health),
        ["ready"] if get => Endpoint::Ops(Ops::Ready),
        ["version"] if get => Endpoint::Ops(Ops::Version),
        ["config" | "health" | "ready" | "version"] => Endpoint::MethodNotAllowed("GET, HEAD"),
        _ => Endpoint::NotFound,
    }
}

/// Routes under `/request/`. The responder side (view, submit) stays on read-only listeners, so request
/// links can point at a public mirror; the requester side does not.
fn route_requests(rest: &[&str], method: &Method, full: bool) -> Requests {
    let get = method == Method::GET || method == Method::HEAD;
    let id = RequestId::parse;
    match rest {
        [raw] => match id(raw) {
            Some(id) if get => Requests::View { id },
            Some(id) if method == Method::DELETE && full => Requests::Revoke { id },
            _ => Requests::Unknown,
        },
        [raw, "secret"] => match id(raw) {
            Some(id) if method == Method::POST => Requests::Submit { id },
            Some(id) if method == Method::GET && full => Requests::Collect { id },
            _ => Requests::Unknown,
        },
        [raw, "key"] => match id(raw) {
            Some(id) if method == Method::PUT && full => Requests::RotateKey { id },
            _ => Requests::Unknown,
        },
        _ => Requests::Unknown,
    }
}

fn route_v1(rest: &[&str], get: bool, post: bool, full: bool) -> V1 {
    match rest {
        ["status"] if get || post => V1::Status,
        ["authcheck"] if get || post => V1::Authcheck,
        ["share" | "create"] if post && full => V1::Share,
        ["generate"] if post && full => V1::Generate,
        ["secret", key] if post => {
            V1Key::parse(key).map_or(V1::Unknown, |secret_key| V1::Reveal { secret_key })
        }
        // `recent` is a fixed word, so it must win over a metadata key of that spelling.
        ["private" | "metadata" | "receipt", "recent"] if get || post => V1::Recent,
        ["private" | "metadata" | "receipt", key] if get || post => {
            V1Key::parse(key).map_or(V1::Unknown, |metadata_key| V1::Metadata { metadata_key })
        }
        ["private" | "metadata" | "receipt", key, "burn"] if post => {
            V1Key::parse(key).map_or(V1::Unknown, |metadata_key| V1::Burn { metadata_key })
        }
        _ => V1::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bearer_id_reaches_a_debug_line() {
        let id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let key = "abcdefghijklmnopqrstuvwxyz01234";
        let routed = [
            route(&Method::GET, &format!("/secret/{id}"), Mode::Full),
            route(&Method::GET, &format!("/request/{id}"), Mode::Full),
            route(&Method::POST, &format!("/api/v1/secret/{key}"), Mode::Full),
            route(&Method::POST, &format!("/private/{key}/burn"), Mode::Full),
            route(&Method::GET, &format!("/secret/{key}"), Mode::Full),
        ];
        for endpoint in routed {
            let debug = format!("{endpoint:?}");
            assert!(!debug.contains(id) && !debug.contains(key), "{debug}");
            assert!(debug.contains("chars>"), "{debug}");
        }
    }

    fn r(method: Method, path: &str) -> Endpoint {
        route(&method, path, Mode::Full)
    }

    #[test]
    fn team_resource_routes_by_path_and_method() {
        let id = || "669F8C64-242A-49FB-92FC-81F660975FD3".to_owned();
        let t = |method: Method, path: &str| r(method, path);
        assert_eq!(t(Method::GET, "/resources.json"), Endpoint::Team(Team::Resources));
        assert_eq!(t(Method::POST, "/resources.json"), Endpoint::Team(Team::AddResource));
        let one = format!("/resources/{}.json", id());
        assert_eq!(t(Method::GET, &one), Endpoint::Team(Team::Resource { id: id() }));
        assert_eq!(t(Method::PUT, &one), Endpoint::Team(Team::UpdateResource { id: id() }));
        assert_eq!(t(Method::DELETE, &one), Endpoint::Team(Team::DeleteResource { id: id() }));
        assert_eq!(t(Method::POST, &one), Endpoint::Team(Team::Unknown));
        let secret = format!("/secrets/resource/{}.json", id());
        assert_eq!(t(Method::GET, &secret), Endpoint::Team(Team::Secret { id: id() }));
        let simulate = format!("/share/simulate/resource/{}.json", id());
        assert_eq!(t(Method::POST, &simulate), Endpoint::Team(Team::ShareSimulate { id: id() }));
        let share = format!("/share/resource/{}.json", id());
        assert_eq!(t(Method::PUT, &share), Endpoint::Team(Team::Share { id: id() }));
        assert_eq!(t(Method::POST, &share), Endpoint::Team(Team::Unknown));
        assert_eq!(
            t(Method::GET, &format!("/resources/{}.json", "a".repeat(65))),
            Endpoint::Team(Team::Unknown)
        );
        assert_eq!(route(&Method::GET, "/resources.json", Mode::ReadOnly), Endpoint::Team(Team::Unknown));
    }

    #[test]
    fn v1_routes_and_aliases() {
        assert_eq!(r(Method::GET, "/api/v1/status"), Endpoint::V1(V1::Status));
        assert_eq!(r(Method::GET, "/api/v1/authcheck"), Endpoint::V1(V1::Authcheck));
        assert_eq!(r(Method::POST, "/api/v1/share"), Endpoint::V1(V1::Share));
        assert_eq!(r(Method::POST, "/api/v1/create"), Endpoint::V1(V1::Share));
        assert_eq!(r(Method::POST, "/api/v1/generate"), Endpoint::V1(V1::Generate));
        assert_eq!(
            r(Method::POST, "/api/v1/secret/abc"),
            Endpoint::V1(V1::Reveal { secret_key: "abc".into() })
        );
        for alias in ["private", "metadata", "receipt"] {
            assert_eq!(
                r(Method::GET, &format!("/api/v1/{alias}/abc")),
                Endpoint::V1(V1::Metadata { metadata_key: "abc".into() })
            );
            assert_eq!(
                r(Method::POST, &format!("/api/v1/{alias}/abc/burn")),
                Endpoint::V1(V1::Burn { metadata_key: "abc".into() })
            );
            assert_eq!(r(Method::GET, &format!("/api/v1/{alias}/recent")), Endpoint::V1(V1::Recent));
        }
        assert_eq!(r(Method::GET, "/api/v1/share"), Endpoint::V1(V1::Unknown));
        assert_eq!(r(Method::GET, "/api/v1/secret/abc"), Endpoint::V1(V1::Unknown));
        assert_eq!(r(Method::POST, "/api/v1/secret/a%2Fb"), Endpoint::V1(V1::Unknown));
        assert_eq!(r(Method::GET, "/api/v1/nope"), Endpoint::V1(V1::Unknown));
    }

    #[test]
    fn read_only_listeners_do_not_route_creation() {
        let ro = |m: Method, p: &str| route(&m, p, Mode::ReadOnly);
        assert_eq!(ro(Method::POST, "/api/v1/share"), Endpoint::V1(V1::Unknown));
        assert_eq!(ro(Method::POST, "/api/v1/generate"), Endpoint::V1(V1::Unknown));
        assert_eq!(
            ro(Method::POST, "/api/v1/secret/abc"),
            Endpoint::V1(V1::Reveal { secret_key: "abc".into() })
        );
        assert_eq!(ro(Method::GET, "/secret/abc"), Endpoint::Web(Web::SecretPage { id: "abc".into() }));
    }

    #[test]
    fn pages_and_operations() {
        assert_eq!(r(Method::GET, "/secret/abc"), Endpoint::Web(Web::SecretPage { id: "abc".into() }));
        assert_eq!(r(Method::POST, "/secret/abc"), Endpoint::Web(Web::SecretReveal { id: "abc".into() }));
        assert_eq!(
            r(Method::GET, "/private/abc"),
            Endpoint::Web(Web::PrivatePage { metadata_key: "abc".into() })
        );
        assert_eq!(
            r(Method::POST, "/private/abc/burn"),
            Endpoint::Web(Web::PrivateBurn { metadata_key: "abc".into() })
        );
        assert_eq!(r(Method::GET, "/health"), Endpoint::Ops(Ops::Health));
        assert_eq!(r(Method::GET, "/health/"), Endpoint::Ops(Ops::Health));
        assert_eq!(r(Method::DELETE, "/health"), Endpoint::MethodNotAllowed("GET, HEAD"));
        assert_eq!(r(Method::GET, "/"), Endpoint::Ui(Ui::Shell));
        assert_eq!(r(Method::GET, "/index.html"), Endpoint::Ui(Ui::Shell));
        assert_eq!(r(Method::POST, "/"), Endpoint::MethodNotAllowed("GET, HEAD"));
        assert_eq!(
            r(Method::GET, "/assets/app-ABCDEFGH.js"),
            Endpoint::Ui(Ui::Asset { name: "app-ABCDEFGH.js".into() })
        );
        assert_eq!(r(Method::GET, "/assets/..%2Fx"), Endpoint::NotFound);
        assert_eq!(r(Method::GET, "/assets/.hidden"), Endpoint::NotFound);
        assert_eq!(r(Method::GET, "/assets/a/b.js"), Endpoint::NotFound);
        assert_eq!(r(Method::GET, "/favicon.ico"), Endpoint::NotFound);
        assert_eq!(r(Method::GET, "/some/app/route"), Endpoint::NotFound);
        let ro = route(&Method::GET, "/", Mode::ReadOnly);
        assert_eq!(ro, Endpoint::Ui(Ui::Shell));
        assert_eq!(r(Method::GET, "/nothing/here"), Endpoint::NotFound);
        assert_eq!(r(Method::GET, "/secret/"), Endpoint::NotFound);
    }

    #[test]
    fn client_encrypted_and_request_routes() {
        let id = "A".repeat(32);
        assert_eq!(r(Method::POST, "/create/secret"), Endpoint::Client(Client::Create));
        assert_eq!(r(Method::POST, "/secret"), Endpoint::Client(Client::Create));
        assert_eq!(
            r(Method::GET, &format!("/secret/{id}")),
            Endpoint::Client(Client::Read { id: id.as_str().into() })
        );
        assert_eq!(
            r(Method::DELETE, &format!("/secret/{id}")),
            Endpoint::Client(Client::Delete { id: id.as_str().into() })
        );
        assert_eq!(
            r(Method::GET, &format!("/secret/{id}/status")),
            Endpoint::Client(Client::Status { id: id.as_str().into() })
        );
        assert_eq!(r(Method::POST, "/create/file"), Endpoint::Client(Client::CreateFile));
        assert_eq!(
            r(Method::GET, &format!("/file/{id}/status")),
            Endpoint::Client(Client::FileStatus { id: id.as_str().into() })
        );
        assert_eq!(
            route(&Method::GET, &format!("/file/{id}/status"), Mode::ReadOnly),
            Endpoint::Client(Client::FileStatus { id: id.as_str().into() })
        );
        assert_eq!(
            r(Method::GET, &format!("/file/{id}")),
            Endpoint::Client(Client::ReadFile { id: id.as_str().into() })
        );
        // A v1 key on the same paths: the page for GET, nothing for DELETE.
        let v1 = "a".repeat(31);
        assert_eq!(
            r(Method::GET, &format!("/secret/{v1}")),
            Endpoint::Web(Web::SecretPage { id: v1.as_str().into() })
        );
        assert_eq!(r(Method::DELETE, &format!("/secret/{v1}")), Endpoint::Client(Client::Unknown));

        assert_eq!(r(Method::POST, "/request"), Endpoint::Requests(Requests::Create));
        assert_eq!(
            r(Method::GET, &format!("/request/{id}")),
            Endpoint::Requests(Requests::View { id: id.as_str().into() })
        );
        assert_eq!(
            r(Method::DELETE, &format!("/request/{id}")),
            Endpoint::Requests(Requests::Revoke { id: id.as_str().into() })
        );
        assert_eq!(
            r(Method::POST, &format!("/request/{id}/secret")),
            Endpoint::Requests(Requests::Submit { id: id.as_str().into() })
        );
        assert_eq!(
            r(Method::GET, &format!("/request/{id}/secret")),
            Endpoint::Requests(Requests::Collect { id: id.as_str().into() })
        );
        assert_eq!(
            r(Method::PUT, &format!("/request/{id}/key")),
            Endpoint::Requests(Requests::RotateKey { id: id.as_str().into() })
        );
        assert_eq!(r(Method::GET, "/request/short"), Endpoint::Requests(Requests::Unknown));
        assert_eq!(r(Method::GET, "/config"), Endpoint::Ops(Ops::Config));

        let ro = |m: Method, p: &str| route(&m, p, Mode::ReadOnly);
        assert_eq!(ro(Method::POST, "/create/secret"), Endpoint::Client(Client::Unknown));
        assert_eq!(ro(Method::POST, "/create/file"), Endpoint::Client(Client::Unknown));
        assert_eq!(ro(Method::POST, "/request"), Endpoint::Requests(Requests::Unknown));
        assert_eq!(ro(Method::GET, &format!("/request/{id}/secret")), Endpoint::Requests(Requests::Unknown));
        assert_eq!(ro(Method::DELETE, &format!("/request/{id}")), Endpoint::Requests(Requests::Unknown));
        assert_eq!(ro(Method::PUT, &format!("/request/{id}/key")), Endpoint::Requests(Requests::Unknown));
        assert_eq!(
            ro(Method::GET, &format!("/request/{id}")),
            Endpoint::Requests(Requests::View { id: id.as_str().into() })
        );
        assert_eq!(
            ro(Method::POST, &format!("/request/{id}/secret")),
            Endpoint::Requests(Requests::Submit { id: id.as_str().into() })
        );
        assert_eq!(
            ro(Method::GET, &format!("/secret/{id}")),
            Endpoint::Client(Client::Read { id: id.as_str().into() })
        );
    }

    #[test]
    fn a_head_never_reaches_a_consuming_route() {
        let id = "A".repeat(32);
        let consuming = |e: &Endpoint| {
            matches!(
                e,
                Endpoint::Client(Client::Read { .. } | Client::ReadFile { .. })
                    | Endpoint::Requests(Requests::Collect { .. })
                    | Endpoint::V1(V1::Reveal { .. })
                    | Endpoint::Web(Web::SecretReveal { .. })
            )
        };
        for mode in [Mode::Full, Mode::ReadOnly] {
            for path in [
                format!("/secret/{id}"),
                format!("/file/{id}"),
                format!("/request/{id}/secret"),
                format!("/secret/{}", "a".repeat(31)),
                "/api/v1/secret/abc".to_owned(),
            ] {
                let e = route(&Method::HEAD, &path, mode);
                assert!(!consuming(&e), "HEAD {path} on {mode:?} routes to {e:?}");
            }
        }
        assert_eq!(
            r(Method::HEAD, &format!("/secret/{id}")),
            Endpoint::Client(Client::Status { id: id.as_str().into() })
        );
        assert_eq!(r(Method::HEAD, &format!("/file/{id}")), Endpoint::MethodNotAllowed("GET, DELETE"));
        assert_eq!(r(Method::POST, &format!("/file/{id}")), Endpoint::MethodNotAllowed("GET, DELETE"));
        assert_eq!(
            r(Method::HEAD, &format!("/request/{id}/secret")),
            Endpoint::MethodNotAllowed("GET, POST")
        );
        let ro = |m: Method, p: &str| route(&m, p, Mode::ReadOnly);
        assert_eq!(ro(Method::HEAD, &format!("/request/{id}/secret")), Endpoint::Requests(Requests::Unknown));
        // Non-consuming routes still answer HEAD as GET.
        assert_eq!(
            r(Method::HEAD, &format!("/secret/{id}/status")),
            Endpoint::Client(Client::Status { id: id.as_str().into() })
        );
        assert_eq!(
            r(Method::HEAD, &format!("/request/{id}")),
            Endpoint::Requests(Requests::View { id: id.as_str().into() })
        );
        assert_eq!(r(Method::HEAD, "/health"), Endpoint::Ops(Ops::Health));
        assert_eq!(r(Method::HEAD, "/secret/abc"), Endpoint::Web(Web::SecretPage { id: "abc".into() }));
    }

    #[test]
    fn names_never_carry_ids() {
        let e = r(Method::POST, "/api/v1/secret/supersecretid");
        assert!(!e.name().contains("supersecretid"));
    }
}
