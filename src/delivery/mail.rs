//! Mail to v1 recipients over SMTP (`lettre`): the transport as `mail.*` configures it, and the
//! message — who shared, the link, its expiry, that it opens once; never the secret.
//!
//! Nothing an attempt reports carries the recipient's address or the link: SMTP replies often quote
//! the address, so failures are described by their kind and reply code only.

use std::fmt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{self, MailTls};
use crate::crypto::{hex, random_bytes};
use crate::domain::outbox::MailDelivery;
use crate::store::Timestamp;

/// One SMTP command waits at most this long; a whole attempt at most [`ATTEMPT_TIMEOUT`].
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Where and as whom mails are sent.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer").finish_non_exhaustive()
    }
}

/// Why an attempt failed: `permanent` when the server refused for good (a 5xx reply), so that trying
/// again cannot help. The description names a kind and a reply code, never an address.
#[derive(Debug)]
pub struct SendError {
    pub permanent: bool,
    pub description: String,
}

impl Mailer {
    /// From validated `mail.*` settings; reads the password and CA files. Errors name the key.
    pub fn open(settings: &config::Mail) -> Result<Mailer, String> {
        let url = settings.url.as_deref().ok_or("mail.url: not set")?;
        let url = config::parse_mail_url(url).map_err(|e| format!("mail.url: {e}"))?;
        let from: Mailbox = settings
            .from
            .as_deref()
            .unwrap_or_default()
            .trim()
            .parse()
            .map_err(|_| "mail.from: not a mail address".to_owned())?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.as_str())
            .port(url.port)
            .timeout(Some(COMMAND_TIMEOUT))
            .hello_name(ClientId::Domain(from.email.domain().to_owned()));
        if url.tls != MailTls::None {
            let mut params =
                TlsParameters::builder(url.host.clone()).certificate_store(CertificateStore::WebpkiRoots);
            if let Some(path) = &settings.ca_file {
                for cert in read_ca(path).map_err(|e| format!("mail.ca_file: {e}"))? {
                    params = params.add_root_certificate(cert);
                }
            }
            let params = params.build_rustls().map_err(|e| format!("mail.url: TLS set-up failed: {e}"))?;
            builder = builder.tls(match url.tls {
                MailTls::Implicit => Tls::Wrapper(params),
                // Required, never opportunistic: a server that does not offer STARTTLS gets nothing.
                MailTls::StartTls | MailTls::None => Tls::Required(params),
            });
        }
        if let (Some(user), Some(path)) = (&settings.username, &settings.password_file) {
            let password =
                super::webhook::read_secret(path).map_err(|e| format!("mail.password_file: {e}"))?;
            let password =
                String::from_utf8(password).map_err(|_| "mail.password_file: not UTF-8".to_owned())?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer { transport: builder.build(), from })
    }

    /// One attempt at handing `mail` to the SMTP server.
    pub async fn send(&self, mail: &MailDelivery, now: Timestamp) -> Result<(), SendError> {
        let message = self.message(mail, now).map_err(|e| SendError { permanent: true, description: e })?;
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(describe(&err)),
            Err(_) => Err(SendError { permanent: false, description: "timed out".into() }),
        }
    }

    /// The message for `mail`: a plain-text part and a simple HTML one, with Message-ID and Date.
    pub fn message(&self, mail: &MailDelivery, now: Timestamp) -> Result<Message, String> {
        let to: lettre::Address =
            mail.to.parse().map_err(|_| "the stored address does not parse".to_owned())?;
        let expires = clock_text(mail.expires_at);
        let sender = mail.sender.as_str();
        let link = mail.link.as_str();
        let text = format!(
            "{sender} has shared a secret with you.\n\n\
             Open it here:\n{link}\n\n\
             The link can be opened once: after that the secret is deleted and the link stops \
             working. It expires on {expires} if nobody opens it before.\n\n\
             This mail does not contain the secret itself. If you did not expect it, ignore it.\n"
        );
        let (sender_html, link_html) = (crate::html::escape(sender), crate::html::escape(link));
        let html = format!(
            "<!DOCTYPE html><html><body>\
             <p>{sender_html} has shared a secret with you.</p>\
             <p><a href=\"{link_html}\">Open the secret</a><br>{link_html}</p>\
             <p>The link can be opened once: after that the secret is deleted and the link stops working. \
             It expires on {expires} if nobody opens it before.</p>\
             <p>This mail does not contain the secret itself. If you did not expect it, ignore it.</p>\
             </body></html>"
        );
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(format!("{sender} has shared a secret with you"))
            .message_id(Some(format!("<{}@{}>", hex(&random_bytes::<16>()), self.from.email.domain())))
            .date(UNIX_EPOCH + Duration::from_secs(now))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| format!("message: {e}"))
    }
}

/// `2027-01-15 08:00 UTC`.
fn clock_text(ts: Timestamp) -> String {
    let stamp = crate::clock::rfc3339(ts);
    format!("{} {} UTC", &stamp[..10], &stamp[11..16])
}

fn describe(err: &lettre::transport::smtp::Error) -> SendError {
    let code = err.status().map(|c| c.to_string());
    let kind = if err.is_permanent() {
        "refused"
    } else if err.is_transient() {
        "deferred"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_tls() {
        "TLS failed"
    } else if err.is_response() {
        "bad reply"
    } else {
        "connection failed"
    };
    let description = match code {
        Some(code) => format!("{kind} ({code})"),
        None => kind.to_owned(),
    };
    SendError { permanent: err.is_permanent(), description }
}

/// The PEM certificates in `path`, at least one; other PEM blocks (keys) are refused.
fn read_ca(path: &Path) -> Result<Vec<Certificate>, String> {
    let certs = crate::tls::read_ca_certs(path)?;
    certs
        .iter()
        .map(|der| Certificate::from_der(der.to_vec()).map_err(|e| format!("not a certificate: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_sender_link_and_expiry_with_headers_and_no_stray_markup() {
        let settings = config::Mail {
            url: Some("smtp://127.0.0.1:25?tls=none".into()),
            from: Some("lethe <lethe@example.com>".into()),
            ..config::Mail::default()
        };
        let mailer = Mailer::open(&settings).expect("mailer");
        let mail = MailDelivery {
            to: "bob@example.org".into(),
            sender: "alice<b>@example.com".into(),
            link: "https://s.example/secret/abc".into(),
            secret_key: "abc".into(),
            expires_at: 1_800_003_600,
        };
        let raw = String::from_utf8(mailer.message(&mail, 1_800_000_000).expect("message").formatted())
            .expect("UTF-8");
        assert!(raw.contains("Message-ID: <") && raw.contains("@example.com>"), "{raw}");
        assert!(raw.contains("Date: Fri, 15 Jan 2027"), "{raw}");
        assert!(raw.contains("To: bob@example.org"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"), "{raw}");
        assert!(raw.contains("https://s.example/secret/abc"), "{raw}");
        assert!(raw.contains("2027-01-15 09:00 UTC"), "{raw}");
        assert!(raw.contains("alice&lt;b&gt;@example.com"), "{raw}");
        let html = raw.split("text/html").nth(1).expect("an HTML part");
        assert!(!html.contains("<b>"), "{raw}");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        assert!(read_ca(&path).unwrap_err().contains("no PEM certificate"));
        assert!(read_ca(&dir.path().join("absent.pem")).is_err());
    }
}
