//! The one-time-secret v1 dialect (`/api/v1/*`): parameters from the query, a form, multipart or JSON
//! body; HTTP Basic auth; the metadata object; and the dialect's error habit — HTTP 404 with a JSON
//! `message`, plus `X-Lethe-Intended-Status` for everything that is not a true not-found.
//!
//! It decodes and encodes only; every rule lives in `domain::secrets`.

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use super::{AuditFacts, Handled, SurfaceError, reveal_refusal};
use crate::audit::{EventName, Outcome};
use crate::crypto::passphrase::Passphrase;
use crate::domain::accounts::Account;
use crate::domain::secrets::{
    GENERATE_MAX_LENGTH, GENERATE_MIN_LENGTH, MetadataView, SecretError, ShareInput, State,
};
use crate::http::body::{self, BodyError, NotUtf8};
use crate::http::{self, Body};
use crate::router::V1;
use crate::{App, AuthRefused, Ctx};

/// The dialect's errors. Each renders as HTTP 404 with a JSON message.
#[derive(Debug)]
pub enum V1Error {
    /// Unknown, consumed, expired, burned, or a wrong passphrase on reveal; echoes the key from the URL.
    Unknown(String),
    /// Bad or missing credentials where required, or present but wrong anywhere.
    NotAuthorized,
    /// A request the server understood and refuses (intended 400).
    Invalid(String),
    /// Rate limits and passphrase lock-outs (intended 429).
    TooMany(String),
    /// Store or crypto failure (intended 500); the detail is logged, never sent.
    Internal(String),
    /// A path under `/api/v1` that is not a route (or not on this listener): a true not-found.
    NoRoute,
}

impl V1Error {
    fn from_secret(err: SecretError, key: &str) -> V1Error {
        match err {
            SecretError::Unknown | SecretError::WrongPassphrase | SecretError::PassphraseRequired => {
                V1Error::Unknown(key.to_owned())
            }
            SecretError::GuessesExhausted => rate_limited(),
            SecretError::Locked => {
                V1Error::TooMany("Too many incorrect passphrase attempts. Please try again later.".into())
            }
            SecretError::IncorrectPassphrase => V1Error::Invalid("Incorrect passphrase".into()),
            SecretError::Empty => V1Error::Invalid("You did not provide anything to share".into()),
            SecretError::TooLarge(limit) => {
                V1Error::Invalid(format!("Secret value exceeds the maximum size of {limit} bytes"))
            }
            SecretError::PassphraseTooLong => {
                V1Error::Invalid("Passphrase must be no more than 72 bytes".into())
            }
            SecretError::RecipientNeedsAccount => {
                V1Error::Invalid("An account is required to send emails.".into())
            }
            SecretError::InvalidRecipient => {
                V1Error::Invalid("Recipient must be a valid email address".into())
            }
            SecretError::MailUnavailable => V1Error::Invalid(
                "Email delivery is not configured on this server; share the link yourself".into(),
            ),
            SecretError::MailLimited => {
                V1Error::TooMany("Too many emails sent from this account. Please try again later.".into())
            }
            SecretError::UnknownDomain(domain) => V1Error::Invalid(format!("Unknown domain: {domain}")),
            SecretError::InvalidLength => V1Error::Invalid(format!(
                "Generated password length must be between {GENERATE_MIN_LENGTH} and {GENERATE_MAX_LENGTH} characters"
            )),
            err @ (SecretError::Contention
            | SecretError::Collision
            | SecretError::Store(_)
            | SecretError::Crypto(_)
            | SecretError::Passphrase(_)) => V1Error::Internal(err.to_string()),
        }
    }

    /// The status the error stands for; the dialect sends 404 for every one of them.
    fn intended(&self) -> Option<StatusCode> {
        match self {
            V1Error::Unknown(_) | V1Error::NoRoute => None,
            V1Error::NotAuthorized => Some(StatusCode::UNAUTHORIZED),
            V1Error::Invalid(_) => Some(StatusCode::BAD_REQUEST),
            V1Error::TooMany(_) => Some(StatusCode::TOO_MANY_REQUESTS),
            V1Error::Internal(_) => Some(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl SurfaceError for V1Error {
    fn status(&self) -> StatusCode {
        self.intended().unwrap_or(StatusCode::NOT_FOUND)
    }

    fn detail(&self) -> Option<&str> {
        match self {
            V1Error::Internal(detail) => Some(detail),
            V1Error::Unknown(_)
            | V1Error::NoRoute
            | V1Error::NotAuthorized
            | V1Error::Invalid(_)
            | V1Error::TooMany(_) => None,
        }
    }

    fn into_response(self) -> Response<Body> {
        let intended = self.intended();
        let body = match self {
            V1Error::Unknown(key) => json!({"message": "Unknown secret", "secret_key": key}),
            V1Error::NoRoute => json!({"message": "Not found"}),
            V1Error::NotAuthorized => json!({"message": "Not authorized"}),
            V1Error::Invalid(message) | V1Error::TooMany(message) => json!({"message": message}),
            V1Error::Internal(_) => json!({"message": "An unexpected error occurred"}),
        };
        let mut resp = http::json(StatusCode::NOT_FOUND, &body);
        if let Some(status) = intended {
            resp.headers_mut().insert("x-lethe-intended-status", HeaderValue::from(status.as_u16()));
        }
        resp
    }
}

impl From<AuthRefused> for V1Error {
    fn from(err: AuthRefused) -> V1Error {
        match err {
            AuthRefused::BadCredentials => V1Error::NotAuthorized,
            AuthRefused::Limited(_) => rate_limited(),
            AuthRefused::Internal(err) => V1Error::Internal(err.to_string()),
        }
    }
}

/// Parameters merged from the query string and the body; the body wins.
#[derive(Debug, Default)]
struct Params {
    query: Vec<(String, String)>,
    body: Vec<(String, String)>,
}

fn first<'a>(pairs: &'a [(String, String)], wanted: &dyn Fn(&str) -> bool) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| wanted(k)).map(|(_, v)| v.as_str())
}

impl Params {
    fn find(&self, wanted: &dyn Fn(&str) -> bool) -> Option<&str> {
        first(&self.body, wanted).or_else(|| first(&self.query, wanted))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.find(&|k| k == name)
    }

    /// The first of `recipient`, `recipient[]` (only the first recipient counts).
    fn recipient(&self) -> Option<&str> {
        self.find(&|k| k == "recipient" || k == "recipient[]")
    }

    fn passphrase(&self) -> Option<Passphrase> {
        self.get("passphrase").filter(|p| !p.is_empty()).map(|p| Passphrase::new(p.to_owned()))
    }
}

/// Flattens a JSON object body into pairs; arrays become repeated keys, nested objects are ignored.
fn json_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, V1Error> {
    let invalid = || V1Error::Invalid("Request body is not a JSON object".into());
    let Value::Object(map) = serde_json::from_slice::<Value>(bytes).map_err(|_| invalid())? else {
        return Err(invalid());
    };
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(json_number(n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut pairs = Vec::new();
    for (key, value) in map {
        match &value {
            Value::Array(items) => pairs.extend(items.iter().filter_map(scalar).map(|v| (key.clone(), v))),
            other => pairs.extend(scalar(other).map(|v| (key.clone(), v))),
        }
    }
    Ok(pairs)
}

/// A JSON number as the form path would have received it. An integer past 64 bits arrives as a float
/// (`1e30`) whose text would read as the number before its exponent; it is written out in digits, so
/// that a huge `ttl` clamps to the maximum as `ttl=1000…` does in a form.
fn json_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.as_u64().is_none() && n.as_i64().is_none() && f.is_finite() && f.abs() >= 1e18 => {
            format!("{f:.0}")
        }
        _ => n.to_string(),
    }
}

/// What a v1 client is told when a parameter's bytes are not UTF-8.
const NOT_UTF8: &str = "Parameters must be valid UTF-8";

/// Fields of a `multipart/form-data` body (what `curl -F` sends). Files are read as text fields.
fn multipart_pairs(bytes: &[u8], content_type: &str) -> Result<Vec<(String, String)>, V1Error> {
    let invalid = || V1Error::Invalid("Malformed multipart body".into());
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(invalid)?;
    let text = std::str::from_utf8(bytes).map_err(|_| V1Error::Invalid(NOT_UTF8.into()))?;
    let delimiter = format!("--{boundary}");
    let mut pairs = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let (head, value) = part.split_once("\r\n\r\n").ok_or_else(invalid)?;
        let name = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .flat_map(|l| l.split(';'))
            .filter_map(|p| p.trim().strip_prefix("name="))
            .next()
            .map(|n| n.trim_matches('"').to_owned())
            .ok_or_else(invalid)?;
        pairs.push((name, value.strip_suffix("\r\n").unwrap_or(value).to_owned()));
    }
    Ok(pairs)
}

/// The parameters of a v1 body by its `Content-Type` (the whole header value): JSON object, multipart,
/// or a form (also when there is no type). `Err` carries the message for the client.
pub fn decode_params(bytes: &[u8], content_type: Option<&str>) -> Result<Vec<(String, String)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let media = content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let pairs = match media.as_deref() {
        Some(ct) if ct == "application/json" || ct.ends_with("+json") => json_pairs(bytes),
        Some("multipart/form-data") => multipart_pairs(bytes, content_type.unwrap_or_default()),
        _ => body::parse_form(bytes).map_err(|NotUtf8| V1Error::Invalid(NOT_UTF8.into())),
    };
    pairs.map_err(|err| match err {
        V1Error::Invalid(message) => message,
        other => format!("{other:?}"),
    })
}

async fn read_params(app: &App, req: Request<Incoming>) -> Result<(HeaderMap, Params), V1Error> {
    let query = body::parse_form(req.uri().query().unwrap_or_default().as_bytes())
        .map_err(|NotUtf8| V1Error::Invalid(NOT_UTF8.into()))?;
    let (parts, incoming) = req.into_parts();
    let max_secret = app.domain.settings.limits.max_secret_bytes;
    // Generous enough for a maximum-size secret percent-encoded (three bytes per byte) plus the other
    // parameters; the size rule itself is applied to the decoded value.
    let limit = (max_secret * 3 + 4096).max(64 * 1024);
    let bytes = match body::read(incoming, limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return Err(V1Error::Invalid(format!(
                "Secret value exceeds the maximum size of {max_secret} bytes"
            )));
        }
        Err(BodyError::Read(err)) => {
            return Err(V1Error::Invalid(format!("Could not read the request body: {err}")));
        }
    };
    let raw_type = parts.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = decode_params(&bytes, raw_type).map_err(V1Error::Invalid)?;
    Ok((parts.headers, Params { query, body }))
}

/// The caller's account: `None` for anonymous; credentials that are present but wrong fail, and
/// count against the client's `failed_tokens` allowance.
async fn caller(app: &App, ctx: &Ctx, headers: &HeaderMap) -> Result<Option<Account>, V1Error> {
    match body::basic_auth(headers) {
        None => Ok(None),
        Some(Err(())) => Err(V1Error::NotAuthorized),
        Some(Ok((name, token))) => Ok(Some(app.authenticate(ctx, &name, &token).await?)),
    }
}

/// `3600` → 3600, `3600abc` → 3600, empty → default (`None`), no leading digits → the minimum.
fn parse_ttl(raw: Option<&str>) -> Option<u64> {
    let raw = raw?.trim();
    if raw.is_empty() {
        return None;
    }
    let digits: String = raw.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return Some(0);
    }
    Some(digits.parse::<u64>().unwrap_or(u64::MAX))
}

/// The metadata object of the v1 dialect, in the shape its clients read.
#[derive(Serialize)]
struct MetadataJson<'a> {
    custid: &'a str,
    metadata_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key: Option<&'a str>,
    ttl: u64,
    metadata_ttl: u64,
    /// Present (possibly `null`) until the secret is received.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_ttl: Option<Option<u64>>,
    state: &'static str,
    created: u64,
    updated: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<u64>,
    recipient: &'a [String],
    share_domain: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    passphrase_required: Option<bool>,
    /// A generated secret's value, on the reply that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
}

/// The metadata object. `recent` entries leave out `secret_key` and `passphrase_required`.
fn metadata_json(view: &MetadataView, recent: bool) -> MetadataJson<'_> {
    let received = view.state == State::Received;
    let secret_key = (!recent && !received)
        .then(|| if view.state.is_terminal() { "" } else { view.secret_key.as_deref().unwrap_or_default() });
    MetadataJson {
        custid: &view.custid,
        metadata_key: &view.metadata_key,
        secret_key,
        ttl: view.ttl,
        metadata_ttl: view.metadata_ttl,
        secret_ttl: (!received).then_some(view.secret_ttl),
        state: view.state.as_str(),
        created: view.created,
        updated: view.updated,
        received: if received { view.received } else { None },
        recipient: &view.recipients,
        share_domain: &view.share_domain,
        passphrase_required: (!recent && view.secret_ttl.is_some()).then_some(view.passphrase_required),
        value: None,
    }
}

fn ok(value: &impl Serialize) -> Response<Body> {
    http::json(StatusCode::OK, value)
}

pub async fn handle(app: &App, ctx: &Ctx, endpoint: V1, req: Request<Incoming>) -> Handled<V1Error> {
    let (event, key) = match &endpoint {
        V1::Share | V1::Generate => (Some(EventName::SecretCreated), None),
        V1::Reveal { secret_key } => (Some(EventName::SecretRevealed), Some(secret_key.as_str().to_owned())),
        V1::Burn { metadata_key } => (Some(EventName::SecretBurned), Some(metadata_key.as_str().to_owned())),
        V1::Status | V1::Authcheck | V1::Metadata { .. } | V1::Recent | V1::Unknown => (None, None),
    };
    let mut audited = Audited { key, account: None, reason: None };
    let result = dispatch(app, ctx, endpoint, req, &mut audited).await;
    let audit = event.map(|event| {
        let (outcome, reason) = match &result {
            Ok(_) => (Outcome::Success, None),
            Err(V1Error::Unknown(_)) => (Outcome::Failure, Some(audited.reason.unwrap_or("not_found"))),
            Err(V1Error::NotAuthorized) => (Outcome::Denied, Some("bad_credentials")),
            Err(V1Error::TooMany(_)) => (Outcome::Denied, Some(audited.reason.unwrap_or("locked"))),
            Err(V1Error::Invalid(_) | V1Error::NoRoute) => (Outcome::Failure, Some("invalid")),
            Err(V1Error::Internal(_)) => (Outcome::Failure, Some("internal")),
        };
        AuditFacts { event, outcome, reason, id: audited.key, account: audited.account, counts: None }
    });
    Handled { result, audit }
}

/// What the audit line of a call needs to know from inside it.
struct Audited {
    /// The key the event is about (hashed before it is written).
    key: Option<String>,
    account: Option<String>,
    /// A more precise reason than the error shows on the wire (a wrong passphrase looks unknown).
    reason: Option<&'static str>,
}

fn rate_limited() -> V1Error {
    V1Error::TooMany("Rate limit exceeded. Please try again later.".into())
}

async fn dispatch(
    app: &App,
    ctx: &Ctx,
    endpoint: V1,
    req: Request<Incoming>,
    audited: &mut Audited,
) -> Result<Response<Body>, V1Error> {
    if endpoint == V1::Unknown {
        return Err(V1Error::NoRoute);
    }
    let (headers, params) = read_params(app, req).await?;
    let account = match caller(app, ctx, &headers).await {
        Ok(account) => account,
        Err(err) => {
            if matches!(err, V1Error::TooMany(_)) {
                audited.reason = Some("rate_limited");
            }
            return Err(err);
        }
    };
    audited.account = account.as_ref().map(|a| a.name.clone());
    let d = &app.domain;
    let class = endpoint.rate_class();
    match endpoint {
        V1::Status => Ok(ok(&json!({"status": "nominal", "locale": "en"}))),
        V1::Authcheck => match account {
            Some(_) => Ok(ok(&json!({"status": "nominal", "locale": "en"}))),
            None => Err(V1Error::NotAuthorized),
        },
        V1::Share | V1::Generate => {
            if app.rate_for(ctx, class).is_err() {
                audited.reason = Some("rate_limited");
                return Err(rate_limited());
            }
            let generate = endpoint == V1::Generate;
            let generate_length = match (generate, params.get("length").map(str::trim)) {
                (true, Some(raw)) if !raw.is_empty() => Some(raw.parse::<usize>().unwrap_or(0)),
                _ => None,
            };
            let input = ShareInput {
                secret: if generate {
                    None
                } else {
                    Some(params.get("secret").unwrap_or("").as_bytes().to_vec())
                },
                passphrase: params.passphrase(),
                ttl: parse_ttl(params.get("ttl")),
                recipient: params.recipient().map(str::to_owned),
                share_domain: params.get("share_domain").map(str::to_owned),
                generate_length,
            };
            let created = match d.secrets.share(input, account.as_ref()).await {
                Ok(created) => created,
                Err(err) => {
                    // Its own reason: unlike the per-client limits, no window summary reports it later.
                    if let SecretError::MailLimited = err {
                        audited.reason = Some("mail_limited");
                    }
                    return Err(V1Error::from_secret(err, ""));
                }
            };
            audited.key = created.metadata.secret_key.clone();
            let mut body = metadata_json(&created.metadata, false);
            body.value = created.value.as_deref();
            Ok(ok(&body))
        }
        V1::Reveal { secret_key } => {
            if !secret_key.is_key_shaped() {
                return Err(V1Error::Unknown(secret_key.into_string()));
            }
            if app.rate_for(ctx, class).is_err() {
                audited.reason = Some("rate_limited");
                return Err(rate_limited());
            }
            let passphrase = params.passphrase();
            let guesses = app.passphrase_guesses(ctx);
            let revealed = match d.secrets.reveal(&secret_key, passphrase.as_ref(), &guesses).await {
                Ok(revealed) => revealed,
                Err(err) => {
                    audited.reason = Some(reveal_refusal(&err).1);
                    return Err(V1Error::from_secret(err, &secret_key));
                }
            };
            #[derive(Serialize)]
            struct Revealed<'a> {
                value: &'a str,
                secret_key: &'a str,
                share_domain: &'a str,
            }
            Ok(ok(&Revealed {
                value: &String::from_utf8_lossy(&revealed.value),
                secret_key: &secret_key,
                share_domain: &revealed.share_domain,
            }))
        }
        V1::Metadata { metadata_key } => {
            if !metadata_key.is_key_shaped() {
                return Err(V1Error::Unknown(metadata_key.into_string()));
            }
            let view = d
                .secrets
                .metadata(&metadata_key, true)
                .await
                .map_err(|e| V1Error::from_secret(e, &metadata_key))?;
            Ok(ok(&metadata_json(&view, false)))
        }
        V1::Burn { metadata_key } => {
            if !metadata_key.is_key_shaped() {
                return Err(V1Error::Unknown(metadata_key.into_string()));
            }
            let passphrase = params.passphrase();
            let guesses = app.passphrase_guesses(ctx);
            let (view, secret_key) = match d.secrets.burn(&metadata_key, passphrase.as_ref(), &guesses).await
            {
                Ok(burned) => burned,
                Err(err) => {
                    if let SecretError::GuessesExhausted = err {
                        audited.reason = Some("rate_limited");
                    }
                    return Err(V1Error::from_secret(err, &metadata_key));
                }
            };
            let short: String = secret_key.chars().take(8).collect();
            Ok(ok(&json!({"state": metadata_json(&view, false), "secret_shortkey": short})))
        }
        V1::Recent => {
            let Some(account) = account else { return Err(V1Error::NotAuthorized) };
            let views = d.secrets.recent(&account).await.map_err(|e| V1Error::from_secret(e, ""))?;
            Ok(ok(&views.iter().map(|v| metadata_json(v, true)).collect::<Vec<_>>()))
        }
        V1::Unknown => Err(V1Error::NoRoute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing_follows_the_dialect() {
        assert_eq!(parse_ttl(None), None);
        assert_eq!(parse_ttl(Some("")), None);
        assert_eq!(parse_ttl(Some("3600")), Some(3600));
        assert_eq!(parse_ttl(Some("3600abc")), Some(3600));
        assert_eq!(parse_ttl(Some("abc")), Some(0));
        assert_eq!(parse_ttl(Some("-5")), Some(0));
        assert_eq!(parse_ttl(Some("99999999999999999999999")), Some(u64::MAX));
    }

    #[test]
    fn json_bodies_flatten_to_parameters() {
        let pairs =
            json_pairs(br#"{"secret":"s","ttl":3600,"recipient":["a@b.c","d@e.f"],"x":{"y":1}}"#).unwrap();
        assert!(pairs.contains(&("ttl".into(), "3600".into())));
        assert_eq!(pairs.iter().filter(|(k, _)| k == "recipient").count(), 2);
        assert!(json_pairs(b"[1,2]").is_err());
        assert!(json_pairs(b"{not json").is_err());
    }

    #[test]
    fn multipart_bodies_give_their_fields() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"secret\"\r\n\r\nhello\r\nworld\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"ttl\"\r\n\r\n60\r\n--XyZ--\r\n";
        let pairs = multipart_pairs(body.as_bytes(), "multipart/form-data; boundary=XyZ").unwrap();
        assert_eq!(pairs, vec![("secret".into(), "hello\r\nworld".into()), ("ttl".into(), "60".into())]);
        assert!(multipart_pairs(b"junk", "multipart/form-data").is_err());
    }
}
