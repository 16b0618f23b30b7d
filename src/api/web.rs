//! Server-rendered pages for people: the recipient's page (a Reveal button, and a passphrase field
//! when needed) and the creator's state page. They work without JavaScript.
//!
//! A GET never consumes: link-preview bots and mail scanners fetch links, so only the button's POST
//! reveals. Every value shown is HTML-escaped.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::audit::{EventName, Outcome};
use crate::crypto::is_key_shaped;
use crate::crypto::passphrase::Passphrase;
use crate::domain::secrets::{SecretError, State};
use crate::http::body::{self, BodyError};
use crate::http::{self, Body};
use crate::ratelimit::Class;
use crate::router::Web;
use crate::{App, Ctx};

const STYLESHEET: &str = include_str!("lethe.css");

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex, nofollow\">\
         <title>{title} · lethe</title><link rel=\"stylesheet\" href=\"/static/lethe.css\"></head>\
         <body><main><h1>{title}</h1>\n{body}\n</main></body></html>\n",
        title = escape(title),
    );
    http::response(status, http::HTML, html)
}

fn gone_page() -> Response<Body> {
    page(
        StatusCode::NOT_FOUND,
        "Secret not available",
        "<p>This secret does not exist. It may have been viewed already, burned, or it expired.</p>",
    )
}

fn error_page(err: &SecretError) -> Response<Body> {
    match err {
        SecretError::Locked => page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "<p>Too many incorrect passphrase attempts. Please try again later.</p>",
        ),
        SecretError::GuessesExhausted => too_many(),
        SecretError::Unknown | SecretError::WrongPassphrase | SecretError::PassphraseRequired => gone_page(),
        other => {
            tracing::warn!(error = %other, "page request failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "<p>An unexpected error occurred.</p>",
            )
        }
    }
}

fn reveal_form(id: &str, passphrase_required: bool, note: &str) -> String {
    let field = if passphrase_required {
        "<p><label for=\"passphrase\">Passphrase</label>\
         <input id=\"passphrase\" name=\"passphrase\" type=\"password\" autocomplete=\"off\" required></p>"
    } else {
        ""
    };
    format!(
        "{note}<p>Someone shared a secret with you. It can be viewed <strong>once</strong>; after that it is gone.</p>\
         <form method=\"post\" action=\"/secret/{id}\">{field}<p><button type=\"submit\">Reveal secret</button></p></form>",
        id = escape(id),
    )
}

/// The passphrase from a small form body; `None` when absent or empty.
async fn form_passphrase(req: Request<Incoming>) -> Result<Option<Passphrase>, BodyError> {
    let bytes = body::read(req.into_body(), 16 * 1024).await?;
    let pairs = body::parse_form(&bytes).map_err(|_| BodyError::Read("the form is not UTF-8".into()))?;
    Ok(pairs
        .into_iter()
        .find(|(k, _)| k == "passphrase")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
        .map(Passphrase::new))
}

fn bad_form() -> Response<Body> {
    page(StatusCode::BAD_REQUEST, "Bad request", "<p>The form could not be read.</p>")
}

fn too_many() -> Response<Body> {
    page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "<p>Rate limit exceeded. Please try again later.</p>",
    )
}

pub async fn handle(app: &App, ctx: &Ctx, endpoint: Web, req: Request<Incoming>) -> Response<Body> {
    let d = &app.domain;
    match endpoint {
        Web::Stylesheet => http::response(StatusCode::OK, "text/css; charset=utf-8", STYLESHEET),
        Web::SecretPage { id } => {
            if !is_key_shaped(&id) {
                return gone_page();
            }
            match d.peek(&id).await {
                Ok(Some(peek)) => {
                    page(StatusCode::OK, "A secret for you", &reveal_form(&id, peek.passphrase_required, ""))
                }
                Ok(None) => gone_page(),
                Err(err) => error_page(&err),
            }
        }
        Web::SecretReveal { id } => {
            if !is_key_shaped(&id) {
                return gone_page();
            }
            if app.rate(ctx, Class::Reveals).is_err() {
                return too_many();
            }
            let passphrase = match form_passphrase(req).await {
                Ok(p) => p,
                Err(_) => return bad_form(),
            };
            let result = d.reveal(&id, passphrase.as_ref(), &app.passphrase_guesses(ctx)).await;
            let (outcome, reason) = match &result {
                Ok(_) => (Outcome::Success, None),
                Err(SecretError::WrongPassphrase) => (Outcome::Failure, Some("wrong_passphrase")),
                Err(SecretError::PassphraseRequired) => (Outcome::Failure, Some("passphrase_required")),
                Err(SecretError::GuessesExhausted) => (Outcome::Denied, Some("rate_limited")),
                Err(SecretError::Locked) => (Outcome::Denied, Some("locked")),
                Err(SecretError::Unknown) => (Outcome::Failure, Some("not_found")),
                Err(_) => (Outcome::Failure, Some("internal")),
            };
            app.audit(ctx, EventName::SecretRevealed, outcome, reason, Some(&id), None);
            match result {
                Ok(revealed) => {
                    let value = String::from_utf8_lossy(&revealed.value);
                    page(
                        StatusCode::OK,
                        "Your secret",
                        &format!(
                            "<p>Copy it now: it has been deleted from the server and this page cannot be shown again.</p>\
                             <textarea readonly rows=\"8\" aria-label=\"Secret\">{}</textarea>",
                            escape(&value)
                        ),
                    )
                }
                // A wrong or missing passphrase looks like an unknown secret in the API; a person gets
                // the form again if the secret is still there.
                Err(err @ (SecretError::WrongPassphrase | SecretError::PassphraseRequired)) => {
                    let note = if matches!(err, SecretError::WrongPassphrase) {
                        "<p class=\"error\">That passphrase is not right.</p>"
                    } else {
                        "<p class=\"error\">This secret needs its passphrase.</p>"
                    };
                    match d.peek(&id).await {
                        Ok(Some(peek)) => page(
                            StatusCode::OK,
                            "A secret for you",
                            &reveal_form(&id, peek.passphrase_required, note),
                        ),
                        Ok(None) => gone_page(),
                        Err(err) => error_page(&err),
                    }
                }
                Err(err) => error_page(&err),
            }
        }
        Web::PrivatePage { metadata_key } => {
            if !is_key_shaped(&metadata_key) {
                return gone_page();
            }
            match d.metadata(&metadata_key, true).await {
                Ok(view) => {
                    let mut body = format!(
                        "<p>State: <strong>{}</strong></p><p>Created: {} (Unix time); the secret lived up to {} seconds.</p>",
                        view.state.as_str(),
                        view.created,
                        view.ttl
                    );
                    if let (Some(secret_key), Some(left)) = (&view.secret_key, view.secret_ttl) {
                        let link = d.secret_link(&view.share_domain, secret_key);
                        body.push_str(&format!(
                            "<p>Share this link; it works once and expires in {left} seconds:</p>\
                             <p><input readonly value=\"{link}\" aria-label=\"Link\"></p>\
                             <form method=\"post\" action=\"/private/{mk}/burn\">{field}\
                             <p><button type=\"submit\">Burn this secret</button></p></form>",
                            link = escape(&link),
                            mk = escape(&metadata_key),
                            field = if view.passphrase_required {
                                "<p><label for=\"passphrase\">Passphrase</label><input id=\"passphrase\" \
                                 name=\"passphrase\" type=\"password\" autocomplete=\"off\" required></p>"
                            } else {
                                ""
                            },
                        ));
                    } else if view.state == State::Received {
                        body.push_str("<p>The secret was viewed and is gone from the server.</p>");
                    }
                    page(StatusCode::OK, "Your secret's state", &body)
                }
                Err(err) => error_page(&err),
            }
        }
        Web::PrivateBurn { metadata_key } => {
            if !is_key_shaped(&metadata_key) {
                return gone_page();
            }
            let passphrase = match form_passphrase(req).await {
                Ok(p) => p,
                Err(_) => return bad_form(),
            };
            let result = d.burn(&metadata_key, passphrase.as_ref(), &app.passphrase_guesses(ctx)).await;
            let (outcome, reason) = match &result {
                Ok(_) => (Outcome::Success, None),
                Err(SecretError::IncorrectPassphrase) => (Outcome::Failure, Some("wrong_passphrase")),
                Err(SecretError::GuessesExhausted) => (Outcome::Denied, Some("rate_limited")),
                Err(_) => (Outcome::Failure, None),
            };
            app.audit(ctx, EventName::SecretBurned, outcome, reason, Some(&metadata_key), None);
            match result {
                Ok(_) => page(StatusCode::OK, "Secret burned", "<p>The secret was destroyed unread.</p>"),
                Err(SecretError::IncorrectPassphrase) => page(
                    StatusCode::BAD_REQUEST,
                    "Incorrect passphrase",
                    "<p>That passphrase is not right.</p>",
                ),
                Err(err) => error_page(&err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
