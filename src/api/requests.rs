//! Secret requests over HTTP: `/request`, `/request/{id}`, `/request/{id}/secret`, `/request/{id}/key`.
//! The management token comes in `X-Lethe-Request-Token` (or `X-Yopass-Request-Token`, so existing
//! integrations keep working). Every attempt, allowed or not, leaves an audit line.

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{AuditFacts, Expiration, Handled, JsonError, SurfaceError, read_bytes, read_json, store_error};
use crate::audit::{EventName, Outcome};
use crate::crypto::openpgp::MAX_PUBLIC_KEY_BYTES;
use crate::domain::requests::RequestError;
use crate::http::body;
use crate::http::{self, Body};
use crate::router::Requests;
use crate::{App, AuthRefused, Ctx};

/// `POST /request` body.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    pub public_key: Option<String>,
    pub label: Option<String>,
    #[serde(default)]
    pub expiration: Expiration,
}

/// `POST /request/{id}/secret` body.
#[derive(Debug, Deserialize)]
pub struct SubmitSecret {
    pub message: Option<String>,
}

/// `PUT /request/{id}/key` body.
#[derive(Debug, Deserialize)]
pub struct RotateKey {
    pub public_key: Option<String>,
}

const JSON_OVERHEAD: usize = 4096;

fn request_error(err: RequestError) -> JsonError {
    use StatusCode as S;
    match err {
        RequestError::Disabled => JsonError::new(S::FORBIDDEN, "Secret requests are disabled"),
        RequestError::InvalidExpiration => JsonError::new(S::BAD_REQUEST, "Invalid expiration specified"),
        RequestError::LabelTooLong => JsonError::new(S::BAD_REQUEST, "Label is too long"),
        RequestError::InvalidKey(reason) => {
            JsonError::new(S::BAD_REQUEST, format!("A valid PGP public key is required: {reason}"))
        }
        RequestError::NotEncrypted => JsonError::new(S::BAD_REQUEST, "Message must be PGP encrypted"),
        RequestError::TooLong => JsonError::new(S::BAD_REQUEST, "The encrypted message is too long"),
        RequestError::WrongRecipient => {
            JsonError::new(S::BAD_REQUEST, "Message is not encrypted to this request's key")
        }
        RequestError::NotFound => JsonError::new(S::NOT_FOUND, "Secret request not found"),
        RequestError::BadToken => JsonError::new(S::UNAUTHORIZED, "Invalid request token"),
        RequestError::AlreadyFulfilled => {
            JsonError::new(S::CONFLICT, "A secret has already been provided for this request")
        }
        RequestError::NotYetFulfilled => JsonError::new(S::CONFLICT, "No secret has been provided yet"),
        // A key too busy to change is a passing state, like a store that cannot write for now.
        err @ RequestError::Contention => JsonError::unavailable(err),
        err @ RequestError::Collision => JsonError::internal(err),
        RequestError::Store(err) => store_error(err),
    }
}

/// The audit outcome and reason of a failed call.
fn audit_reason(err: &RequestError) -> (Outcome, &'static str) {
    match err {
        RequestError::BadToken => (Outcome::Denied, "bad_token"),
        RequestError::Disabled => (Outcome::Denied, "disabled"),
        RequestError::NotFound => (Outcome::Failure, "not_found"),
        RequestError::AlreadyFulfilled => (Outcome::Failure, "already_fulfilled"),
        RequestError::NotYetFulfilled => (Outcome::Failure, "not_fulfilled"),
        RequestError::WrongRecipient => (Outcome::Failure, "not_encrypted_to_key"),
        RequestError::NotEncrypted | RequestError::TooLong => (Outcome::Failure, "invalid_message"),
        RequestError::InvalidKey(_) => (Outcome::Failure, "invalid_key"),
        RequestError::InvalidExpiration | RequestError::LabelTooLong => (Outcome::Failure, "invalid_request"),
        RequestError::Contention | RequestError::Collision | RequestError::Store(_) => {
            (Outcome::Failure, "internal")
        }
    }
}

fn token(headers: &HeaderMap) -> Option<String> {
    ["x-lethe-request-token", "x-yopass-request-token"]
        .iter()
        .find_map(|n| headers.get(*n))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// An error before the domain was reached: a body that could not be read or decoded.
enum Failed {
    Wire(JsonError),
    Domain(RequestError),
}

impl From<JsonError> for Failed {
    fn from(err: JsonError) -> Failed {
        Failed::Wire(err)
    }
}

impl From<RequestError> for Failed {
    fn from(err: RequestError) -> Failed {
        Failed::Domain(err)
    }
}

pub async fn handle(app: &App, ctx: &Ctx, endpoint: Requests, req: Request<Incoming>) -> Handled<JsonError> {
    let (event, id) = match &endpoint {
        Requests::Create => (EventName::RequestCreated, None),
        Requests::View { id } => (EventName::RequestViewed, Some(id.as_str().to_owned())),
        Requests::Submit { id } => (EventName::RequestFulfilled, Some(id.as_str().to_owned())),
        Requests::Collect { id } => (EventName::RequestSecretAccessed, Some(id.as_str().to_owned())),
        Requests::Revoke { id } => (EventName::RequestRevoked, Some(id.as_str().to_owned())),
        Requests::RotateKey { id } => (EventName::RequestKeyRotated, Some(id.as_str().to_owned())),
        Requests::Unknown => return Handled::unaudited(Err(JsonError::not_found())),
    };
    if let Some(class) = endpoint.rate_class()
        && let Err(retry_after) = app.rate(ctx, class)
    {
        let audit = AuditFacts::new(event, Outcome::Denied, Some("rate_limited"), id);
        return Handled { result: Err(JsonError::rate_limited(retry_after)), audit: Some(audit) };
    }
    let (result, account) = dispatch(app, ctx, endpoint, req).await;
    let (result, audit) = match result {
        Ok((resp, created)) => {
            // The requester's own state poll proves itself with the token; it is not a responder
            // opening the link, and recording it as one would fill the trail with false views.
            let (event, id) = match created {
                Some(Created::StatusChecked) => (EventName::RequestStatusChecked, id),
                Some(Created::Id(created)) => (event, Some(created)),
                None => (event, id),
            };
            (Ok(resp), AuditFacts::new(event, Outcome::Success, None, id))
        }
        Err(Failed::Domain(err)) => {
            let (outcome, reason) = audit_reason(&err);
            (Err(request_error(err)), AuditFacts::new(event, outcome, Some(reason), id))
        }
        Err(Failed::Wire(err)) => {
            let outcome =
                if err.status() == StatusCode::UNAUTHORIZED { Outcome::Denied } else { Outcome::Failure };
            // Rate-limited refusals are summarised by the limiter, not written one by one.
            let reason = if err.status() == StatusCode::TOO_MANY_REQUESTS {
                "rate_limited"
            } else {
                "invalid_request"
            };
            (Err(err), AuditFacts::new(event, outcome, Some(reason), id))
        }
    };
    Handled { result, audit: Some(AuditFacts { account, ..audit }) }
}

/// What a successful call tells its audit line beyond the endpoint.
enum Created {
    /// The id of the request it created.
    Id(String),
    /// A view by the requester (it presented the request's token).
    StatusChecked,
}

type Dispatched = (Result<(Response<Body>, Option<Created>), Failed>, Option<String>);

async fn dispatch(app: &App, ctx: &Ctx, endpoint: Requests, req: Request<Incoming>) -> Dispatched {
    let d = &app.domain;
    let message_limit = d.settings.limits.max_message_bytes + JSON_OVERHEAD;
    let key_limit = MAX_PUBLIC_KEY_BYTES + JSON_OVERHEAD;
    let token = token(req.headers());
    match endpoint {
        Requests::Create => {
            // An account is optional; credentials that are present must be right.
            let account = match body::basic_auth(req.headers()) {
                None => None,
                Some(Ok((name, secret))) => match app.authenticate(ctx, &name, &secret).await {
                    Ok(account) => Some(account.name),
                    Err(AuthRefused::Limited(retry_after)) => {
                        return (Err(JsonError::rate_limited(retry_after).into()), None);
                    }
                    Err(AuthRefused::BadCredentials) => {
                        return (
                            Err(JsonError::new(StatusCode::UNAUTHORIZED, "Invalid credentials").into()),
                            None,
                        );
                    }
                    Err(AuthRefused::Internal(other)) => {
                        return (Err(JsonError::internal(other).into()), None);
                    }
                },
                Some(Err(())) => {
                    return (
                        Err(JsonError::new(StatusCode::UNAUTHORIZED, "Invalid credentials").into()),
                        None,
                    );
                }
            };
            let result = async {
                let body: CreateRequest = read_json(req.into_body(), key_limit + 512).await?;
                let Some(expiration) = body.expiration.seconds() else {
                    return Err(RequestError::InvalidExpiration.into());
                };
                let public_key = body.public_key.unwrap_or_default();
                let created = d.requests.create(&public_key, body.label, expiration, account.clone()).await?;
                let reply = json!({
                    "id": created.id,
                    "token": created.token,
                    "expires_at": created.expires_at,
                    "fingerprint": created.fingerprint,
                    "link": created.link,
                });
                Ok((http::json(StatusCode::OK, &reply), Some(Created::Id(created.id))))
            }
            .await;
            (result, account)
        }
        Requests::View { id } => {
            let result = d.requests.view(&id, token.as_deref()).await.map_err(Failed::from).map(|v| {
                let reply = json!({
                    "public_key": v.public_key,
                    "label": v.label,
                    "state": v.state.as_str(),
                    "expires_at": v.expires_at,
                    "fingerprint": v.fingerprint,
                });
                (http::json(StatusCode::OK, &reply), v.by_requester.then_some(Created::StatusChecked))
            });
            (result, None)
        }
        Requests::Submit { id } => {
            let result = async {
                let body: SubmitSecret = read_json(req.into_body(), message_limit).await?;
                d.requests.submit(&id, &body.message.unwrap_or_default()).await?;
                Ok((http::json(StatusCode::OK, &json!({"message": "secret provided"})), None))
            }
            .await;
            (result, None)
        }
        Requests::Collect { id } => {
            let result = d
                .requests
                .collect(&id, token.as_deref())
                .await
                .map(|message| (http::json(StatusCode::OK, &json!({"message": message})), None))
                .map_err(Failed::from);
            (result, None)
        }
        Requests::Revoke { id } => {
            let result = d
                .requests
                .revoke(&id, token.as_deref())
                .await
                .map(|()| (http::no_content(), None))
                .map_err(Failed::from);
            (result, None)
        }
        Requests::RotateKey { id } => {
            let result = async {
                // Read the bytes first (an unread body resets the connection under the answer), but
                // check existence, token and state before even parsing them, so an anonymous caller
                // learns nothing from key validation errors.
                let bytes = read_bytes(req.into_body(), key_limit).await?;
                d.requests.check_pending(&id, token.as_deref()).await?;
                let body: RotateKey = super::decode_json(&bytes)?;
                let fingerprint = d
                    .requests
                    .rotate_key(&id, token.as_deref(), &body.public_key.unwrap_or_default())
                    .await?;
                let reply = json!({"message": "public key updated", "fingerprint": fingerprint});
                Ok((http::json(StatusCode::OK, &reply), None))
            }
            .await;
            (result, None)
        }
        Requests::Unknown => (Err(JsonError::not_found().into()), None),
    }
}
