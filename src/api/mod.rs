//! The surfaces, one module each. Each owns its wire types and its error dialect and calls only the
//! domain layer; no surface calls another. The client-encrypted and secret-request surfaces share one
//! dialect — `{"message": …}` with a real HTTP status — defined here.
//!
//! The contract every surface keeps: its handler returns a [`Handled`] — its reply or its own error
//! type (a [`SurfaceError`]), plus the [`AuditFacts`] of the call — and `service` renders, logs and
//! audits it in one place. A surface never logs its errors or writes an audit line itself.

pub mod app;
pub mod client;
pub mod ops;
pub mod ots_v1;
pub mod requests;
pub mod team;
pub mod web;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::audit::{EventName, Outcome};
use crate::domain::secrets::SecretError;
use crate::http::body::{self, BodyError};
use crate::http::{self as h, Body};

/// What a surface made of one request.
#[derive(Debug)]
pub struct Handled<E> {
    pub result: Result<Response<Body>, E>,
    /// `None` for endpoints the trail does not follow (status checks, static files).
    pub audit: Option<AuditFacts>,
}

impl<E> Handled<E> {
    /// A call the audit trail does not follow.
    pub fn unaudited(result: Result<Response<Body>, E>) -> Handled<E> {
        Handled { result, audit: None }
    }
}

/// What the audit line of a call says. The id is hashed with the server's key before it is written.
#[derive(Debug)]
pub struct AuditFacts {
    pub event: EventName,
    pub outcome: Outcome,
    pub reason: Option<&'static str>,
    pub id: Option<String>,
    pub account: Option<String>,
    /// Users who gained and lost access, on a share.
    pub counts: Option<(u64, u64)>,
}

impl AuditFacts {
    pub fn new(
        event: EventName,
        outcome: Outcome,
        reason: Option<&'static str>,
        id: Option<String>,
    ) -> AuditFacts {
        AuditFacts { event, outcome, reason, id, account: None, counts: None }
    }
}

/// The audit outcome and reason of a refused reveal, the same whichever surface (the v1 dialect or the
/// recipient's page) asked: the reveal guard's one account of why.
pub fn reveal_refusal(err: &SecretError) -> (Outcome, &'static str) {
    match err {
        SecretError::WrongPassphrase => (Outcome::Failure, "wrong_passphrase"),
        SecretError::PassphraseRequired => (Outcome::Failure, "passphrase_required"),
        SecretError::GuessesExhausted => (Outcome::Denied, "rate_limited"),
        SecretError::Locked => (Outcome::Denied, "locked"),
        SecretError::Unknown => (Outcome::Failure, "not_found"),
        SecretError::IncorrectPassphrase
        | SecretError::Empty
        | SecretError::TooLarge(_)
        | SecretError::PassphraseTooLong
        | SecretError::RecipientNeedsAccount
        | SecretError::InvalidRecipient
        | SecretError::MailUnavailable
        | SecretError::MailLimited
        | SecretError::UnknownDomain(_)
        | SecretError::InvalidLength
        | SecretError::Contention
        | SecretError::Collision
        | SecretError::Store(_)
        | SecretError::Crypto(_)
        | SecretError::Passphrase(_) => (Outcome::Failure, "internal"),
    }
}

/// A surface's error type: how it is logged and how it is rendered in the surface's dialect.
pub trait SurfaceError {
    /// What the error means in HTTP terms, for the log line (the v1 dialect sends 404 for all).
    fn status(&self) -> StatusCode;
    /// For 5xx: what went wrong, logged and never sent.
    fn detail(&self) -> Option<&str>;
    /// The response in the surface's dialect; it logs nothing.
    fn into_response(self) -> Response<Body>;
}

/// An error of the JSON dialect.
#[derive(Debug)]
pub struct JsonError {
    status: StatusCode,
    message: String,
    /// For 5xx: what went wrong, logged and never sent.
    detail: Option<String>,
    /// Seconds to put in `Retry-After`.
    retry_after: Option<u64>,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
}

impl JsonError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> JsonError {
        JsonError { status, message: message.into(), detail: None, retry_after: None, allow: None }
    }

    pub fn internal(detail: impl std::fmt::Display) -> JsonError {
        JsonError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "An unexpected error occurred".into(),
            detail: Some(detail.to_string()),
            retry_after: None,
            allow: None,
        }
    }

    pub fn unavailable(detail: impl std::fmt::Display) -> JsonError {
        JsonError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "The service is temporarily unavailable".into(),
            detail: Some(detail.to_string()),
            retry_after: None,
            allow: None,
        }
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after: u64) -> JsonError {
        JsonError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "Rate limit exceeded. Please try again later.".into(),
            detail: None,
            retry_after: Some(retry_after),
            allow: None,
        }
    }

    /// 404 for a path no route of the surface serves.
    pub fn not_found() -> JsonError {
        JsonError::new(StatusCode::NOT_FOUND, "Not found")
    }

    /// 405 with the methods the path does serve.
    pub fn method_not_allowed(allow: &'static str) -> JsonError {
        JsonError {
            allow: Some(allow),
            ..JsonError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
    }
}

impl SurfaceError for JsonError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    fn into_response(self) -> Response<Body> {
        let mut resp = h::json(self.status, &json!({"message": self.message}));
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static(allow));
        }
        resp
    }
}

/// A store failure: unavailable (503) rather than a bug (500), since the store being unable to write
/// (a full disk) is an operational state.
pub fn store_error(err: crate::store::StoreError) -> JsonError {
    JsonError::unavailable(err)
}

/// Reads a JSON body into `T` through a hard limit: 413 over it, 400 `Unable to parse json` when it is
/// not JSON or a field has the wrong type; unknown fields are ignored.
pub async fn read_json<T: DeserializeOwned>(incoming: Incoming, limit: usize) -> Result<T, JsonError> {
    decode_json(&read_bytes(incoming, limit).await?)
}

/// Reads a body through a hard limit in this dialect: 413 over it.
pub async fn read_bytes(incoming: Incoming, limit: usize) -> Result<hyper::body::Bytes, JsonError> {
    body::read(incoming, limit).await.map_err(|err| match err {
        BodyError::TooLarge => JsonError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
        BodyError::Read(err) => {
            JsonError::new(StatusCode::BAD_REQUEST, format!("Could not read the request body: {err}"))
        }
    })
}

/// An `expiration` field as the client sent it: any JSON number, so that `-1` or `1.5` get the
/// surface's "Invalid expiration specified" as other numbers outside the allowed list do (a string is
/// still not JSON of the right shape). [`Expiration::seconds`] is the only reading of it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Expiration(Option<serde_json::Number>);

impl Expiration {
    /// A whole, non-negative number of seconds; `None` for anything else, including absence.
    pub fn seconds(&self) -> Option<u64> {
        self.0.as_ref().and_then(serde_json::Number::as_u64)
    }
}

/// The decoding half of [`read_json`], separate so it can be fuzzed without a socket.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    serde_json::from_slice(bytes).map_err(|_| JsonError::new(StatusCode::BAD_REQUEST, "Unable to parse json"))
}
