//! `(method, path, listener mode)` → a typed [`Endpoint`], before any handler runs.
//!
//! The endpoint's [`Endpoint::name`] labels logs and metrics; raw paths never do, since they carry
//! bearer ids. A read-only listener routes creation endpoints to "unknown" in the surface's own
//! dialect, so the public face does not even reveal that they exist.

use hyper::Method;

use crate::config::Mode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    V1(V1),
    Web(Web),
    Ops(Ops),
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
        secret_key: String,
    },
    Metadata {
        metadata_key: String,
    },
    Burn {
        metadata_key: String,
    },
    Recent,
    /// Any other path under `/api/v1`, answered in the v1 dialect.
    Unknown,
}

/// Server-rendered pages for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Web {
    Home,
    Stylesheet,
    /// The recipient's page with the Reveal button; never consumes.
    SecretPage {
        id: String,
    },
    /// The Reveal button's POST.
    SecretReveal {
        id: String,
    },
    /// The creator's state page.
    PrivatePage {
        metadata_key: String,
    },
    PrivateBurn {
        metadata_key: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ops {
    Health,
    Ready,
    Version,
}

impl Endpoint {
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
            Endpoint::Web(web) => match web {
                Web::Home => "web.home",
                Web::Stylesheet => "web.stylesheet",
                Web::SecretPage { .. } => "web.secret_page",
                Web::SecretReveal { .. } => "web.secret_reveal",
                Web::PrivatePage { .. } => "web.private_page",
                Web::PrivateBurn { .. } => "web.private_burn",
            },
            Endpoint::Ops(ops) => match ops {
                Ops::Health => "ops.health",
                Ops::Ready => "ops.ready",
                Ops::Version => "ops.version",
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

pub fn route(method: &Method, path: &str, mode: Mode) -> Endpoint {
    let full = mode == Mode::Full;
    let trimmed = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let (get, post) = (method == Method::GET || method == Method::HEAD, method == Method::POST);

    if let ["api", "v1", rest @ ..] = segments.as_slice() {
        return Endpoint::V1(route_v1(rest, get, post, full));
    }
    match segments.as_slice() {
        [""] if get => Endpoint::Web(Web::Home),
        [""] => Endpoint::MethodNotAllowed("GET, HEAD"),
        ["static", "lethe.css"] if get => Endpoint::Web(Web::Stylesheet),
        ["secret", id] => match id_segment(id) {
            Some(id) if get => Endpoint::Web(Web::SecretPage { id }),
            Some(id) if post => Endpoint::Web(Web::SecretReveal { id }),
            Some(_) => Endpoint::MethodNotAllowed("GET, HEAD, POST"),
            None => Endpoint::NotFound,
        },
        ["private", key] => match id_segment(key) {
            Some(metadata_key) if get => Endpoint::Web(Web::PrivatePage { metadata_key }),
            Some(_) => Endpoint::MethodNotAllowed("GET, HEAD"),
            None => Endpoint::NotFound,
        },
        ["private", key, "burn"] => match id_segment(key) {
            Some(metadata_key) if post => Endpoint::Web(Web::PrivateBurn { metadata_key }),
            Some(_) => Endpoint::MethodNotAllowed("POST"),
            None => Endpoint::NotFound,
        },
        ["health"] if get => Endpoint::Ops(Ops::Health),
        ["ready"] if get => Endpoint::Ops(Ops::Ready),
        ["version"] if get => Endpoint::Ops(Ops::Version),
        ["health" | "ready" | "version"] => Endpoint::MethodNotAllowed("GET, HEAD"),
        _ => Endpoint::NotFound,
    }
}

fn route_v1(rest: &[&str], get: bool, post: bool, full: bool) -> V1 {
    match rest {
        ["status"] if get || post => V1::Status,
        ["authcheck"] if get || post => V1::Authcheck,
        ["share" | "create"] if post && full => V1::Share,
        ["generate"] if post && full => V1::Generate,
        ["secret", key] if post => {
            id_segment(key).map_or(V1::Unknown, |secret_key| V1::Reveal { secret_key })
        }
        // `recent` is a fixed word, so it must win over a metadata key of that spelling.
        ["private" | "metadata" | "receipt", "recent"] if get || post => V1::Recent,
        ["private" | "metadata" | "receipt", key] if get || post => {
            id_segment(key).map_or(V1::Unknown, |metadata_key| V1::Metadata { metadata_key })
        }
        ["private" | "metadata" | "receipt", key, "burn"] if post => {
            id_segment(key).map_or(V1::Unknown, |metadata_key| V1::Burn { metadata_key })
        }
        _ => V1::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str) -> Endpoint {
        route(&method, path, Mode::Full)
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
        assert_eq!(r(Method::GET, "/"), Endpoint::Web(Web::Home));
        assert_eq!(r(Method::GET, "/nothing/here"), Endpoint::NotFound);
        assert_eq!(r(Method::GET, "/secret/"), Endpoint::NotFound);
    }

    #[test]
    fn names_never_carry_ids() {
        let e = r(Method::POST, "/api/v1/secret/supersecretid");
        assert!(!e.name().contains("supersecretid"));
    }
}
