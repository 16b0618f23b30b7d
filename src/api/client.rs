//! Client-encrypted secrets: `/create/secret` (and the older `/secret`), `/secret/{id}`,
//! `/secret/{id}/status`, `/create/file`, `/file/{id}`, `/file/{id}/status`. The client encrypts; the
//! server checks that it was handed OpenPGP ciphertext within limits and hands it back, once when asked
//! to.

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{AuditFacts, Expiration, Handled, JsonError, SurfaceError, read_json, store_error};
use crate::audit::{EventName, Outcome};
use crate::domain::secrets::{ClientError, Payload};
use crate::http::body::{self, BodyError};
use crate::http::{self, Body};
use crate::router::Client;
use crate::{App, Ctx};

/// `POST /create/secret` body. `one_time` omitted means one-time: the safer default.
#[derive(Debug, Deserialize)]
pub struct CreateSecret {
    pub message: Option<String>,
    #[serde(default)]
    pub expiration: Expiration,
    pub one_time: Option<bool>,
}

/// Room for the JSON around a maximum-size message.
const JSON_OVERHEAD: usize = 4096;

fn client_error(err: ClientError, payload: Payload) -> JsonError {
    match err {
        ClientError::InvalidExpiration => {
            JsonError::new(StatusCode::BAD_REQUEST, "Invalid expiration specified")
        }
        ClientError::TooLong => match payload {
            Payload::Message => JsonError::new(StatusCode::BAD_REQUEST, "The encrypted message is too long"),
            Payload::File => JsonError::new(StatusCode::PAYLOAD_TOO_LARGE, "File too large"),
        },
        ClientError::NotEncrypted => match payload {
            Payload::Message => JsonError::new(StatusCode::BAD_REQUEST, "Message must be PGP encrypted"),
            Payload::File => {
                JsonError::new(StatusCode::BAD_REQUEST, "File must be an OpenPGP encrypted message")
            }
        },
        ClientError::NotFound => JsonError::new(StatusCode::NOT_FOUND, "Secret not found"),
        // A key too busy to change is a passing state, like a store that cannot write for now.
        err @ ClientError::Contention => JsonError::unavailable(err),
        err @ ClientError::Collision => JsonError::internal(err),
        ClientError::Store(err) => store_error(err),
    }
}

fn reason(err: &JsonError) -> &'static str {
    match err.status() {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        _ => "internal",
    }
}

fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| headers.get(*n)).and_then(|v| v.to_str().ok()).map(str::trim)
}

pub async fn handle(app: &App, ctx: &Ctx, endpoint: Client, req: Request<Incoming>) -> Handled<JsonError> {
    let (event, id) = match &endpoint {
        Client::Create | Client::CreateFile => (Some(EventName::SecretCreated), None),
        Client::Read { id } | Client::ReadFile { id } => {
            (Some(EventName::SecretRevealed), Some(id.as_str().to_owned()))
        }
        Client::Delete { id } | Client::DeleteFile { id } => {
            (Some(EventName::SecretDeleted), Some(id.as_str().to_owned()))
        }
        Client::Status { .. } | Client::FileStatus { .. } | Client::Unknown => (None, None),
    };
    let limited = match endpoint.rate_class() {
        Some(class) => app.rate(ctx, class),
        None => Ok(()),
    };
    let result = match limited {
        Ok(()) => dispatch(app, endpoint, req).await,
        Err(retry_after) => Err(JsonError::rate_limited(retry_after)),
    };
    let (result, created) = match result {
        Ok((resp, created)) => (Ok(resp), created),
        Err(err) => (Err(err), None),
    };
    let audit = event.map(|event| match &result {
        Ok(_) => AuditFacts::new(event, Outcome::Success, None, created.or(id)),
        Err(err) => AuditFacts::new(event, Outcome::Failure, Some(reason(err)), id),
    });
    Handled { result, audit }
}

/// The response, and the id of a secret it created (for the audit line).
async fn dispatch(
    app: &App,
    endpoint: Client,
    req: Request<Incoming>,
) -> Result<(Response<Body>, Option<String>), JsonError> {
    let d = &app.domain;
    let limits = &d.settings.limits;
    match endpoint {
        Client::Create => {
            let body: CreateSecret =
                read_json(req.into_body(), limits.max_message_bytes + JSON_OVERHEAD).await?;
            let message = body.message.unwrap_or_default();
            let Some(expiration) = body.expiration.seconds() else {
                return Err(client_error(ClientError::InvalidExpiration, Payload::Message));
            };
            let id = d
                .client
                .create(Payload::Message, message.into_bytes(), expiration, body.one_time.unwrap_or(true))
                .await
                .map_err(|e| client_error(e, Payload::Message))?;
            Ok((http::json(StatusCode::OK, &json!({"message": id})), Some(id)))
        }
        Client::CreateFile => {
            // The body is read before the headers are judged: answering first and closing on an
            // unread upload resets the connection under the client, which then never sees the answer.
            let (parts, incoming) = req.into_parts();
            let bytes = match body::read(incoming, limits.max_file_bytes).await {
                Ok(bytes) => bytes,
                Err(BodyError::TooLarge) => return Err(client_error(ClientError::TooLong, Payload::File)),
                Err(BodyError::Read(err)) => {
                    let message = format!("Could not read the request body: {err}");
                    return Err(JsonError::new(StatusCode::BAD_REQUEST, message));
                }
            };
            let headers = &parts.headers;
            let Some(expiration) = header(headers, &["x-lethe-expiration", "x-yopass-expiration"]) else {
                return Err(JsonError::new(StatusCode::BAD_REQUEST, "X-Lethe-Expiration header required"));
            };
            let expiration: u64 = expiration
                .parse()
                .map_err(|_| client_error(ClientError::InvalidExpiration, Payload::File))?;
            let one_time = match header(headers, &["x-lethe-onetime", "x-yopass-onetime"]) {
                None => true,
                Some(v) if v.eq_ignore_ascii_case("true") => true,
                Some(v) if v.eq_ignore_ascii_case("false") => false,
                Some(_) => {
                    return Err(JsonError::new(
                        StatusCode::BAD_REQUEST,
                        "X-Lethe-OneTime must be true or false",
                    ));
                }
            };
            let id = d
                .client
                .create(Payload::File, bytes.to_vec(), expiration, one_time)
                .await
                .map_err(|e| client_error(e, Payload::File))?;
            Ok((http::json(StatusCode::OK, &json!({"message": id})), Some(id)))
        }
        Client::Read { id } => {
            let opened =
                d.client.read(&id, Payload::Message).await.map_err(|e| client_error(e, Payload::Message))?;
            let message = String::from_utf8_lossy(&opened.data);
            let body =
                json!({"message": message, "expiration": opened.expiration, "one_time": opened.one_time});
            Ok((http::json(StatusCode::OK, &body), None))
        }
        Client::ReadFile { id } => {
            let opened =
                d.client.read(&id, Payload::File).await.map_err(|e| client_error(e, Payload::File))?;
            let mut resp = Response::new(Full::new(opened.data.into()));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            resp.headers_mut().insert("x-lethe-expiration", HeaderValue::from(opened.expiration));
            resp.headers_mut().insert(
                "x-lethe-onetime",
                HeaderValue::from_static(if opened.one_time { "true" } else { "false" }),
            );
            Ok((resp, None))
        }
        Client::Status { id } => {
            let one_time = d
                .client
                .status(&id, Payload::Message)
                .await
                .map_err(|e| client_error(e, Payload::Message))?;
            Ok((http::json(StatusCode::OK, &json!({"oneTime": one_time})), None))
        }
        Client::FileStatus { id } => {
            let one_time =
                d.client.status(&id, Payload::File).await.map_err(|e| client_error(e, Payload::File))?;
            Ok((http::json(StatusCode::OK, &json!({"oneTime": one_time})), None))
        }
        Client::Delete { id } => {
            d.client.delete(&id, Payload::Message).await.map_err(|e| client_error(e, Payload::Message))?;
            Ok((http::no_content(), None))
        }
        Client::DeleteFile { id } => {
            d.client.delete(&id, Payload::File).await.map_err(|e| client_error(e, Payload::File))?;
            Ok((http::no_content(), None))
        }
        Client::Unknown => Err(JsonError::not_found()),
    }
}
