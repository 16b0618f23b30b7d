//! GPGAuth login, sessions and logout on the wire (`team.md` §3.3–3.7): which stage a body asks
//! for, the exact `X-GPGAuth-*` headers of each reply, the challenge's header encoding, and the
//! `passbolt_session` cookie.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use serde_json::{Value, json};

use super::{ApiError, Envelope, add_headers};
use crate::api::{AuditFacts, Handled};
use crate::audit::{EventName, Outcome};
use crate::clock::rfc3339;
use crate::domain::team::sessions::LoginRefusal;
use crate::domain::team::users::User;
use crate::http::Body;
use crate::{App, Ctx};

/// Largest stage-0 plaintext looked at: a nonce is 66 bytes.
const MAX_NONCE_BYTES: usize = 256;

const NO_USER: &str = "There is no user associated with this key.";
const AUTH_FAILED: &str = "The authentication failed.";

/// Datetimes as the team clients parse them: UTC with an explicit `+00:00`.
pub fn datetime(ts: u64) -> String {
    let text = rfc3339(ts);
    match text.strip_suffix('Z') {
        Some(head) => format!("{head}+00:00"),
        None => text,
    }
}

/// PHP's `urlencode` then `quotemeta`, which every client undoes (`team.md` §3.5).
pub fn encode_challenge(armored: &str) -> String {
    let mut out = String::with_capacity(armored.len() * 2);
    for b in armored.bytes() {
        let piece = match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        };
        for c in piece.chars() {
            if matches!(c, '.' | '\\' | '+' | '*' | '?' | '[' | '^' | ']' | '$' | '(' | ')') {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

pub fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

pub fn unauthenticated(envelope: &Envelope) -> ApiError {
    envelope.error(StatusCode::UNAUTHORIZED, "Authentication is required to continue")
}

/// The live session the request's `passbolt_session` cookie names, if any.
pub async fn session_of(
    app: &App,
    envelope: &Envelope,
    req: &Request<Incoming>,
) -> Result<Option<crate::domain::team::sessions::Session>, ApiError> {
    let Some(value) = cookie(req, "passbolt_session").filter(|v| !v.is_empty() && v.len() <= 128) else {
        return Ok(None);
    };
    app.domain.team.session(value).await.map_err(|err| envelope.internal(err))
}

/// The user object of `team.md` §4.3, as far as this version fills it.
pub fn user_json(user: &User) -> Value {
    let role = if user.admin { "admin" } else { "user" };
    let role_id = super::action_id(&format!("roles.id.{role}"));
    let key_id = user.fingerprint.get(24..).unwrap_or_default();
    json!({
        "id": user.id,
        "username": user.username,
        "role_id": role_id,
        "active": true,
        "deleted": false,
        "disabled": user.disabled.map(datetime),
        "created": datetime(user.created),
        "modified": datetime(user.modified),
        "last_logged_in": user.last_logged_in.map(datetime),
        "is_mfa_enabled": false,
        "profile": {
            "id": super::action_id(&format!("profiles.id.{}", user.id)),
            "user_id": user.id,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "created": datetime(user.created),
            "modified": datetime(user.modified),
        },
        "gpgkey": {
            "id": super::action_id(&format!("gpgkeys.id.{}", user.id)),
            "user_id": user.id,
            "armored_key": user.armored_key,
            "key_id": key_id,
            "fingerprint": user.fingerprint,
            "bits": user.key_facts.bits,
            "type": user.key_facts.kind,
            "uid": user.key_facts.uid,
            "key_created": datetime(user.key_facts.created),
            "expires": user.key_expires.map(datetime),
            "deleted": false,
            "created": datetime(user.created),
            "modified": datetime(user.modified),
        },
        "role": {
            "id": role_id,
            "name": role,
            "description": if user.admin { "Organization administrator" } else { "Logged in user" },
            "created": datetime(0),
            "modified": datetime(0),
        },
        "groups_users": [],
    })
}

/// A login failure: the GPGAuth error headers, the progress it stopped at, and its debug line.
fn login_failure(envelope: &Envelope, progress: &'static str, message: &'static str) -> ApiError {
    let mut err = envelope.error(StatusCode::BAD_REQUEST, message);
    err.headers = vec![
        ("x-gpgauth-authenticated", "false".into()),
        ("x-gpgauth-progress", progress.into()),
        ("x-gpgauth-error", "true".into()),
        ("x-gpgauth-debug", message.into()),
    ];
    err
}

fn audit(outcome: Outcome, reason: Option<&'static str>, account: Option<&User>) -> Option<AuditFacts> {
    let mut facts = AuditFacts::new(EventName::TeamLogin, outcome, reason, None);
    facts.account = account.map(|u| u.username.clone());
    Some(facts)
}

/// The partial steps' reply: HTTP 200 with `status: error` and `code: 200`, which clients test for.
fn partial(envelope: &Envelope, headers: &[(&'static str, String)]) -> Response<Body> {
    let mut resp = envelope.reply(StatusCode::OK, "error", 200, AUTH_FAILED, Value::Null);
    add_headers(&mut resp, headers);
    resp
}

/// A team request body: a JSON object whatever the `Content-Type`, empty meaning `{}`, through the
/// size limit (`team.md` §1).
pub async fn read_object(app: &App, envelope: &Envelope, req: Request<Incoming>) -> Result<Value, ApiError> {
    let limit = app.domain.settings.limits.max_team_body_bytes;
    let bytes = match crate::http::body::read(req.into_body(), limit).await {
        Ok(bytes) => bytes,
        Err(crate::http::body::BodyError::TooLarge) => {
            return Err(envelope.error(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large."));
        }
        Err(crate::http::body::BodyError::Read(_)) => {
            return Err(envelope.error(StatusCode::BAD_REQUEST, "The request body could not be read."));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(envelope.error(StatusCode::BAD_REQUEST, "The request body should be a valid JSON object.")),
    }
}

/// 429 in the envelope, with when to try again.
fn too_many(envelope: &Envelope, retry_after: u64) -> ApiError {
    let mut err = envelope.error(StatusCode::TOO_MANY_REQUESTS, "Too many login attempts; try again later.");
    err.headers = vec![("retry-after", retry_after.to_string())];
    err
}

pub async fn login(app: &App, ctx: &Ctx, envelope: &Envelope, req: Request<Incoming>) -> Handled<ApiError> {
    // Counted before anything is read or decrypted: each stage costs the server public-key work.
    if let Err(retry_after) = app.rate(ctx, crate::ratelimit::Class::TeamLogins) {
        return Handled::unaudited(Err(too_many(envelope, retry_after)));
    }
    let body = match read_object(app, envelope, req).await {
        Ok(body) => body,
        Err(err) => return Handled::unaudited(Err(err)),
    };
    let auth = body.get("gpg_auth").or_else(|| body.get("data").and_then(|d| d.get("gpg_auth")));
    let field = |name: &str| auth.and_then(|a| a.get(name)).filter(|v| !v.is_null());
    let keyid = field("keyid")
        .and_then(Value::as_str)
        .filter(|k| k.len() == 40 && k.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(fpr) = keyid {
        // Per key as well, so that many addresses cannot share out the guesses at one user's login;
        // the window is named by a keyed hash, never the fingerprint.
        let hashed = crate::crypto::sha256(app.domain.keys.id_hash(&fpr.to_ascii_uppercase()).as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&hashed[..16]);
        let class = crate::ratelimit::Class::TeamLoginsPerKey;
        if let Err(refused) = app.limiter.hit_key(class, key, app.domain.now()) {
            // The first refusal of a window is a line; the rest are summarised when it ends.
            let audit =
                if refused.first { audit(Outcome::Denied, Some("rate_limited_key"), None) } else { None };
            return Handled { result: Err(too_many(envelope, refused.retry_after)), audit };
        }
    }
    let team = &app.domain.team;
    let user = match keyid {
        Some(fpr) => match team.user_by_fingerprint(fpr).await {
            Ok(found) => found.map(|(u, _)| u),
            Err(err) => return Handled { result: Err(envelope.internal(err)), audit: None },
        },
        None => None,
    };
    let now = app.domain.now();
    let Some(user) = user.filter(|u| u.disabled.is_none() && u.key_expires.is_none_or(|at| at > now)) else {
        return Handled {
            result: Err(login_failure(envelope, "stage0", NO_USER)),
            audit: audit(Outcome::Denied, Some("unknown_key"), None),
        };
    };
    if let Some(token) = field("server_verify_token") {
        // Stage 0: prove the server holds its key by decrypting the client's nonce.
        let plain = token.as_str().and_then(|t| team.server_key().decrypt(t, MAX_NONCE_BYTES));
        let nonce = plain.as_deref().and_then(|p| crate::domain::team::sessions::nonce_token(p).map(|_| p));
        return match nonce.and_then(|n| std::str::from_utf8(n).ok()) {
            Some(nonce) => Handled::unaudited(Ok(partial(
                envelope,
                &[
                    ("x-gpgauth-authenticated", "false".into()),
                    ("x-gpgauth-progress", "stage0".into()),
                    ("x-gpgauth-verify-response", nonce.to_owned()),
                ],
            ))),
            None => Handled::unaudited(Err(login_failure(envelope, "stage0", AUTH_FAILED))),
        };
    }
    let Some(result) = field("user_token_result") else {
        // Stage 1: a fresh challenge only this user's key opens.
        let nonce = match team.issue_login_token(&user).await {
            Ok(nonce) => nonce,
            Err(err) => return Handled::unaudited(Err(envelope.internal(err))),
        };
        let Some(challenge) = team.server_key().challenge(&nonce, &user.armored_key) else {
            let mut err = envelope.internal("cannot encrypt a challenge to the user's key");
            err.headers =
                vec![("x-gpgauth-progress", "stage1".into()), ("x-gpgauth-authenticated", "false".into())];
            return Handled::unaudited(Err(err));
        };
        return Handled::unaudited(Ok(partial(
            envelope,
            &[
                ("x-gpgauth-authenticated", "false".into()),
                ("x-gpgauth-progress", "stage1".into()),
                ("x-gpgauth-user-auth-token", encode_challenge(&challenge)),
            ],
        )));
    };
    // Stage 2.
    let presented = result.as_str().unwrap_or_default().as_bytes();
    match team.redeem(&user, presented).await {
        Ok(Ok(session)) => {
            let secure = if app.domain.settings.public_url.starts_with("https://") { "; Secure" } else { "" };
            let mut resp = envelope.success("You are successfully logged in.", user_json(&user));
            add_headers(
                &mut resp,
                &[
                    ("x-gpgauth-authenticated", "true".into()),
                    ("x-gpgauth-progress", "complete".into()),
                    ("x-gpgauth-refer", "/".into()),
                    (
                        "set-cookie",
                        format!(
                            "passbolt_session={}; Path=/; HttpOnly; SameSite=Lax{secure}",
                            session.cookie
                        ),
                    ),
                ],
            );
            Handled { result: Ok(resp), audit: audit(Outcome::Success, None, Some(&user)) }
        }
        Ok(Err(refusal)) => {
            let reason = match refusal {
                LoginRefusal::BadNonce => "bad_nonce",
                LoginRefusal::UnknownToken => "expired_or_replayed",
                LoginRefusal::OtherUser => "other_user",
            };
            Handled {
                result: Err(login_failure(envelope, "stage2", AUTH_FAILED)),
                audit: audit(Outcome::Denied, Some(reason), Some(&user)),
            }
        }
        Err(err) => Handled::unaudited(Err(envelope.internal(err))),
    }
}

pub async fn logout(app: &App, envelope: &Envelope, req: &Request<Incoming>) -> Handled<ApiError> {
    let session = match session_of(app, envelope, req).await {
        Ok(session) => session,
        Err(err) => return Handled::unaudited(Err(err)),
    };
    if let Some(session) = &session {
        if req.method() == hyper::Method::POST {
            let presented = req.headers().get("x-csrf-token").map(|v| v.as_bytes()).unwrap_or_default();
            let expected = session.csrf_token.as_bytes();
            if !crate::crypto::digests_equal(
                &crate::crypto::sha256(presented),
                &crate::crypto::sha256(expected),
            ) {
                return Handled::unaudited(Err(envelope.error(
                    StatusCode::FORBIDDEN,
                    "CSRF token from either the request body or request headers did not match or is missing.",
                )));
            }
        }
        if let Some(value) = cookie(req, "passbolt_session")
            && let Err(err) = app.domain.team.logout(value).await
        {
            return Handled::unaudited(Err(envelope.internal(err)));
        }
    }
    let mut resp = envelope.success("You are successfully logged out.", Value::Null);
    add_headers(&mut resp, &[("set-cookie", "passbolt_session=; Path=/; Max-Age=0".into())]);
    let audit = session.map(|s| {
        let mut facts = AuditFacts::new(EventName::TeamLogout, Outcome::Success, None, None);
        facts.account = Some(s.user.username);
        facts
    });
    Handled { result: Ok(resp), audit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_encoding_is_urlencode_then_quotemeta() {
        let armored = "-----BEGIN PGP MESSAGE-----\n\nwcBM+/=\n=ab.c\n-----END PGP MESSAGE-----\n";
        let encoded = encode_challenge(armored);
        assert_eq!(
            encoded,
            "-----BEGIN\\+PGP\\+MESSAGE-----%0A%0AwcBM%2B%2F%3D%0A%3Dab\\.c%0A-----END\\+PGP\\+MESSAGE-----%0A"
        );
    }

    #[test]
    fn datetimes_carry_an_explicit_utc_offset() {
        assert_eq!(datetime(0), "1970-01-01T00:00:00+00:00");
    }
}
