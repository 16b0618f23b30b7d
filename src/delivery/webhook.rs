//! Signed webhooks: one JSON object per event POSTed to `webhooks.url`, the only URL ever called, over
//! `http://` or `https://` (verified against the built-in roots and `webhooks.ca_file`).
//!
//! `X-Lethe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` lets a receiver
//! check both origin and freshness (reject a `t` far from its own clock to stop replays).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ring::hmac;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::crypto::hex;
use crate::store::Timestamp;

/// A whole attempt (connect, send, read the status) is cut off after this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest secret file read.
const MAX_SECRET_BYTES: u64 = 4096;
/// The most of a receiver's reply that is read (and thrown away) before the connection closes.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Where and how events are sent.
pub struct Webhook {
    host: String,
    port: u16,
    authority: String,
    path: String,
    key: hmac::Key,
    /// For `https://`: the roots and the name the receiver's certificate must carry.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

impl Webhook {
    /// From a validated `webhooks.url` (`http(s)://…`), the secret file, which must be readable by its
    /// owner only and not empty, and extra CA certificates for an `https://` receiver. Errors name the
    /// key and never the secret.
    pub fn open(url: &str, secret_file: &Path, ca_file: Option<&Path>) -> Result<Webhook, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| "webhooks.url: not a URL".to_owned())?;
        let authority = uri.authority().ok_or("webhooks.url: no host")?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let secure = uri.scheme_str() == Some("https");
        let port = authority.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure {
            let config = crate::tls::client_config(ca_file).map_err(|e| format!("webhooks.ca_file: {e}"))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|_| "webhooks.url: the host is not a valid TLS name".to_owned())?;
            Some((config, name))
        } else {
            None
        };
        let path = uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
        let key = read_secret(secret_file).map_err(|e| format!("webhooks.secret_file: {e}"))?;
        Ok(Webhook {
            host,
            port,
            authority: authority.as_str().to_owned(),
            path,
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            tls,
        })
    }

    /// The signature header's value for `body` sent at `t`.
    pub fn signature(&self, t: Timestamp, body: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(t.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("t={t},v1={}", hex(ctx.sign().as_ref()))
    }

    /// One attempt; `Ok` only on a 2xx reply.
    pub async fn post(&self, body: &[u8], now: Timestamp) -> Result<(), String> {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(body, now)).await {
            Ok(result) => result,
            Err(_) => Err("timed out".into()),
        }
    }

    async fn attempt(&self, body: &[u8], now: Timestamp) -> Result<(), String> {
        let request = Request::post(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, concat!("lethe/", env!("CARGO_PKG_VERSION")))
            .header("x-lethe-signature", self.signature(now, body))
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| format!("request: {e}"))?;
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &self.tls {
            None => send(TokioIo::new(stream), request).await,
            Some((config, name)) => {
                let stream = TlsConnector::from(config.clone())
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                send(TokioIo::new(stream), request).await
            }
        }
    }
}

/// Sends `request` over a fresh connection; `Ok` only on a 2xx reply.
async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<(), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    // Read a bounded part of the reply so the connection closes cleanly; its content is not used.
    let _ = Limited::new(response.into_body(), MAX_REPLY_BYTES).collect().await;
    conn.abort();
    if status.is_success() { Ok(()) } else { Err(format!("receiver answered {}", status.as_u16())) }
}

/// The JSON body: `{event, request_id, label, occurred_at}` — never a ciphertext or a token.
pub fn payload(event: &str, request_id: &str, label: Option<&str>, occurred_at: Timestamp) -> Vec<u8> {
    let value = serde_json::json!({
        "event": event,
        "request_id": request_id,
        "label": label,
        "occurred_at": occurred_at,
    });
    value.to_string().into_bytes()
}

/// A secret from a file readable by its owner only (the webhook key, the SMTP password).
pub(super) fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::other("readable by group or others; chmod 600 it"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1).read_to_end(&mut bytes)?;
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() || bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(io::Error::other("must hold between 1 and 4096 bytes"));
    }
    Ok(trimmed.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let hook = Webhook::open("http://127.0.0.1:9/hook", &path, None).expect("open");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret");
        let expected = hex(hmac::sign(&key, b"1700000000.{}").as_ref());
        assert_eq!(hook.signature(1_700_000_000, b"{}"), format!("t=1700000000,v1={expected}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(
            Webhook::open("http://127.0.0.1:9/hook", &path, None).unwrap_err().contains("group or others")
        );
    }
}
