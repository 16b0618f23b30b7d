//! Server-rendered pages for people: the recipient's page (a Reveal button, and a passphrase field
//! when needed) and the creator's state page. They work without JavaScript.
//!
//! A GET never consumes: link-preview bots and mail scanners fetch links, so only the button's POST
//! reveals. Every value shown is HTML-escaped.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::{AuditFacts, Handled, SurfaceError, reveal_refusal};
use crate::audit::{EventName, Outcome};
use crate::crypto::passphrase::Passphrase;
use crate::domain::secrets::{SecretError, State};
use crate::html::escape;
use crate::http::body::{self, BodyError};
use crate::http::{self, Body};
use crate::router::{V1Key, Web};
use crate::{App, Ctx};

const STYLESHEET: &str = include_str!("lethe.css");

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

/// The pages' errors, each a page of its own.
#[derive(Debug)]
pub enum PageError {
    /// Unknown, consumed, expired or burned (or a wrong passphrase, which must look the same).
    Gone,
    /// The secret's passphrase attempts are spent for now.
    Locked,
    /// The client's allowance (reveals, passphrase guesses) is spent.
    TooMany,
    /// A form body that could not be read.
    BadForm,
    /// The creator's burn form with a wrong passphrase.
    IncorrectPassphrase,
    /// Store or crypto failure; the detail is logged, never shown.
    Internal(String),
}

impl From<SecretError> for PageError {
    fn from(err: SecretError) -> PageError {
        match err {
            SecretError::Locked => PageError::Locked,
            SecretError::GuessesExhausted => PageError::TooMany,
            SecretError::Unknown | SecretError::WrongPassphrase | SecretError::PassphraseRequired => {
                PageError::Gone
            }
            SecretError::IncorrectPassphrase => PageError::IncorrectPassphrase,
            other @ (SecretError::Empty
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
            | SecretError::Passphrase(_)) => PageError::Internal(other.to_string()),
        }
    }
}

impl SurfaceError for PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::Gone => StatusCode::NOT_FOUND,
            PageError::Locked | PageError::TooMany => StatusCode::TOO_MANY_REQUESTS,
            PageError::BadForm | PageError::IncorrectPassphrase => StatusCode::BAD_REQUEST,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> Option<&str> {
        match self {
            PageError::Internal(detail) => Some(detail),
            PageError::Gone
            | PageError::Locked
            | PageError::TooMany
            | PageError::BadForm
            | PageError::IncorrectPassphrase => None,
        }
    }

    fn into_response(self) -> Response<Body> {
        let status = self.status();
        let (title, text) = match self {
            PageError::Gone => (
                "Secret not available",
                "<p>This secret does not exist. It may have been viewed already, burned, or it expired.</p>",
            ),
            PageError::Locked => (
                "Too many attempts",
                "<p>Too many incorrect passphrase attempts. Please try again later.</p>",
            ),
            PageError::TooMany => {
                ("Too many requests", "<p>Rate limit exceeded. Please try again later.</p>")
            }
            PageError::BadForm => ("Bad request", "<p>The form could not be read.</p>"),
            PageError::IncorrectPassphrase => {
                ("Incorrect passphrase", "<p>That passphrase is not right.</p>")
            }
            PageError::Internal(_) => ("Something went wrong", "<p>An unexpected error occurred.</p>"),
        };
        page(status, title, text)
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

pub async fn handle(app: &App, ctx: &Ctx, endpoint: Web, req: Request<Incoming>) -> Handled<PageError> {
    let class = endpoint.rate_class();
    match endpoint {
        Web::Stylesheet => {
            Handled::unaudited(Ok(http::response(StatusCode::OK, "text/css; charset=utf-8", STYLESHEET)))
        }
        Web::SecretPage { id } => Handled::unaudited(secret_page(app, &id, "").await),
        Web::SecretReveal { id } => {
            if !id.is_key_shaped() {
                return Handled::unaudited(Err(PageError::Gone));
            }
            if app.rate_for(ctx, class).is_err() {
                return Handled::unaudited(Err(PageError::TooMany));
            }
            let passphrase = match form_passphrase(req).await {
                Ok(p) => p,
                Err(_) => return Handled::unaudited(Err(PageError::BadForm)),
            };
            let result =
                app.domain.secrets.reveal(&id, passphrase.as_ref(), &app.passphrase_guesses(ctx)).await;
            let (outcome, reason) = match &result {
                Ok(_) => (Outcome::Success, None),
                Err(err) => {
                    let (outcome, reason) = reveal_refusal(err);
                    (outcome, Some(reason))
                }
            };
            let result = match result {
                Ok(revealed) => {
                    let value = String::from_utf8_lossy(&revealed.value);
                    Ok(page(
                        StatusCode::OK,
                        "Your secret",
                        &format!(
                            "<p>Copy it now: it has been deleted from the server and this page cannot be shown again.</p>\
                             <textarea readonly rows=\"8\" aria-label=\"Secret\">{}</textarea>",
                            escape(&value)
                        ),
                    ))
                }
                // A wrong or missing passphrase looks like an unknown secret in the API; a person gets
                // the form again if the secret is still there.
                Err(SecretError::WrongPassphrase) => {
                    secret_page(app, &id, "<p class=\"error\">That passphrase is not right.</p>").await
                }
                Err(SecretError::PassphraseRequired) => {
                    secret_page(app, &id, "<p class=\"error\">This secret needs its passphrase.</p>").await
                }
                Err(err) => Err(PageError::from(err)),
            };
            let audit = AuditFacts::new(EventName::SecretRevealed, outcome, reason, Some(id.into_string()));
            Handled { result, audit: Some(audit) }
        }
        Web::PrivatePage { metadata_key } => Handled::unaudited(private_page(app, &metadata_key).await),
        Web::PrivateBurn { metadata_key } => {
            if !metadata_key.is_key_shaped() {
                return Handled::unaudited(Err(PageError::Gone));
            }
            let passphrase = match form_passphrase(req).await {
                Ok(p) => p,
                Err(_) => return Handled::unaudited(Err(PageError::BadForm)),
            };
            let result = app
                .domain
                .secrets
                .burn(&metadata_key, passphrase.as_ref(), &app.passphrase_guesses(ctx))
                .await;
            let (outcome, reason) = match &result {
                Ok(_) => (Outcome::Success, None),
                Err(SecretError::IncorrectPassphrase) => (Outcome::Failure, Some("wrong_passphrase")),
                Err(SecretError::GuessesExhausted) => (Outcome::Denied, Some("rate_limited")),
                Err(_) => (Outcome::Failure, None),
            };
            let result = match result {
                Ok(_) => Ok(page(StatusCode::OK, "Secret burned", "<p>The secret was destroyed unread.</p>")),
                Err(err) => Err(PageError::from(err)),
            };
            let audit =
                AuditFacts::new(EventName::SecretBurned, outcome, reason, Some(metadata_key.into_string()));
            Handled { result, audit: Some(audit) }
        }
    }
}

/// The recipient's page: the Reveal button (and a passphrase field when needed), after `note`.
async fn secret_page(app: &App, id: &V1Key, note: &str) -> Result<Response<Body>, PageError> {
    if !id.is_key_shaped() {
        return Err(PageError::Gone);
    }
    match app.domain.secrets.peek(id).await? {
        Some(peek) => {
            Ok(page(StatusCode::OK, "A secret for you", &reveal_form(id, peek.passphrase_required, note)))
        }
        None => Err(PageError::Gone),
    }
}

/// The creator's state page.
async fn private_page(app: &App, metadata_key: &V1Key) -> Result<Response<Body>, PageError> {
    if !metadata_key.is_key_shaped() {
        return Err(PageError::Gone);
    }
    let d = &app.domain;
    let view = d.secrets.metadata(metadata_key, true).await?;
    let mut body = format!(
        "<p>State: <strong>{}</strong></p><p>Created: {} (Unix time); the secret lived up to {} seconds.</p>",
        view.state.as_str(),
        view.created,
        view.ttl
    );
    if let (Some(secret_key), Some(left)) = (&view.secret_key, view.secret_ttl) {
        let link = d.secrets.secret_link(&view.share_domain, secret_key);
        body.push_str(&format!(
            "<p>Share this link; it works once and expires in {left} seconds:</p>\
             <p><input readonly value=\"{link}\" aria-label=\"Link\"></p>\
             <form method=\"post\" action=\"/private/{mk}/burn\">{field}\
             <p><button type=\"submit\">Burn this secret</button></p></form>",
            link = escape(&link),
            mk = escape(metadata_key),
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
    Ok(page(StatusCode::OK, "Your secret's state", &body))
}
