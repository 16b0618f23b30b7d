//! The client's HTTP: one HTTP/1.1 connection per call (`http://`, or `https://` over rustls) through
//! hyper's low-level client, a deadline on the whole exchange and a cap on every response body. It
//! knows the server's paths only as strings handed in; what they mean is the commands' business.
//!
//! An `https://` server's certificate must chain to Mozilla's roots (compiled in, so the client acts
//! the same on every machine) or to a CA from `client.ca_file`, for servers on a private CA.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Exit, Failure};

/// The longest a single exchange (connect, send, receive) may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// The largest response body read: above any server's file limit that a client could be handed.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// What an `https://` server must prove: the roots its certificate chains to.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Mozilla's roots, plus every certificate in `ca_file` (PEM) when given.
    pub fn new(ca_file: Option<&Path>) -> Result<Tls, Failure> {
        let config = crate::tls::client_config(ca_file).map_err(|e| {
            let file = ca_file.map_or(String::new(), |p| format!(" ({})", p.display()));
            Failure::new(Exit::Usage, format!("client.ca_file{file}: {e}"))
        })?;
        Ok(Tls { config })
    }
}

/// A server's base URL, split for the connection.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http(s)://host[:port][/prefix]` without a trailing slash: the base of links.
    pub base: String,
    /// `host:port` to connect to.
    connect: String,
    /// The `Host` header.
    authority: String,
    /// The path prefix, `""` or `/prefix`.
    prefix: String,
    /// For `https://`: the roots and the name the certificate must carry.
    tls: Option<(Tls, ServerName<'static>)>,
}

/// A response: its status and its body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    /// The body as JSON of type `T`; a body of another shape is a server failure.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body)
            .map_err(|_| Failure::new(Exit::Failed, "the server's answer is not what lethe sends"))
    }

    /// The server's `{"message": …}`, stripped of control characters so a hostile server cannot
    /// write to the terminal, and cut short.
    pub fn message(&self) -> String {
        let text = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {}", self.status));
        text.chars().filter(|c| !c.is_control()).take(300).collect()
    }
}

impl Server {
    /// Accepts `http(s)://host[:port][/prefix]`; `tls` is what an `https://` server must prove.
    pub fn parse(url: &str, tls: &Tls) -> Result<Server, Failure> {
        let url = url.trim().trim_end_matches('/');
        let (rest, secure) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (rest, true),
            (None, Some(rest)) => (rest, false),
            (None, None) => {
                return Err(Failure::new(Exit::Usage, "the server URL must start with http:// or https://"));
            }
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let valid = !authority.is_empty()
            && !authority.contains(['@', '?', '#', ' '])
            && !prefix.contains(['?', '#', ' '])
            && authority.parse::<hyper::http::uri::Authority>().is_ok();
        if !valid {
            return Err(Failure::new(Exit::Usage, "the server URL has no valid host"));
        }
        // A bare host (or an IPv6 literal without a port) gets the scheme's port.
        let port_at = authority.rfind(':').filter(|&i| !authority[i..].contains(']'));
        let connect = match port_at {
            Some(_) => authority.to_owned(),
            None if secure => format!("{authority}:443"),
            None => format!("{authority}:80"),
        };
        let tls = if secure {
            let host = port_at.map_or(authority, |i| &authority[..i]);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| Failure::new(Exit::Usage, "the server URL's host is not a valid TLS name"))?;
            Some((tls.clone(), name))
        } else {
            None
        };
        Ok(Server {
            base: url.to_owned(),
            connect,
            authority: authority.to_owned(),
            prefix: prefix.to_owned(),
            tls,
        })
    }

    /// One exchange. `headers` are extra request headers; the body is sent as given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, Failure> {
        match tokio::time::timeout(DEADLINE, self.exchange(method, path, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(Exit::Failed, "the server did not answer in time")),
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Response, Failure> {
        self.call(Method::GET, path, headers, Vec::new()).await
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<Response, Failure> {
        let bytes =
            serde_json::to_vec(body).map_err(|_| Failure::new(Exit::Failed, "cannot encode the request"))?;
        self.call(Method::POST, path, &[("content-type", "application/json")], bytes).await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, Failure> {
        let unreachable = || Failure::new(Exit::Failed, "cannot reach the server");
        let uri: Uri = format!("{}{path}", self.prefix)
            .parse()
            .map_err(|_| Failure::new(Exit::Usage, "the server URL's path is not valid"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::USER_AGENT, concat!("lethe/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| Failure::new(Exit::Failed, "cannot build the request"))?;
        let stream = TcpStream::connect(&self.connect).await.map_err(|_| unreachable())?;
        match &self.tls {
            None => send(TokioIo::new(stream), request).await,
            Some((tls, name)) => {
                // rustls's reason (an unknown issuer, a name mismatch) is what the user must fix.
                let stream = TlsConnector::from(tls.config.clone())
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| Failure::new(Exit::Failed, format!("TLS with the server failed: {e}")))?;
                send(TokioIo::new(stream), request).await
            }
        }
    }
}

/// Sends `request` over a fresh connection and reads the whole answer.
async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Response, Failure>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let unreachable = || Failure::new(Exit::Failed, "cannot reach the server");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|_| unreachable())?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender.send_request(request).await.map_err(|_| unreachable())?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| Failure::new(Exit::Failed, "the server's answer broke off or is too large"))?
            .to_bytes();
        Ok(Response { status, body })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_split_into_connection_host_and_prefix() {
        let tls = Tls::new(None).unwrap();
        let s = Server::parse("http://127.0.0.1:8080/", &tls).unwrap();
        assert_eq!(
            (s.base.as_str(), s.connect.as_str(), s.prefix.as_str()),
            ("http://127.0.0.1:8080", "127.0.0.1:8080", "")
        );
        let s = Server::parse("http://secrets.example/lethe", &tls).unwrap();
        assert_eq!(
            (s.connect.as_str(), s.authority.as_str(), s.prefix.as_str()),
            ("secrets.example:80", "secrets.example", "/lethe")
        );
        let s = Server::parse("http://[::1]", &tls).unwrap();
        assert_eq!(s.connect, "[::1]:80");
        assert!(s.tls.is_none());
        let s = Server::parse("https://secrets.example/lethe/", &tls).unwrap();
        assert_eq!(
            (s.base.as_str(), s.connect.as_str()),
            ("https://secrets.example/lethe", "secrets.example:443")
        );
        assert_eq!(
            s.tls.as_ref().map(|(_, name)| name.to_str().into_owned()).as_deref(),
            Some("secrets.example")
        );
        let s = Server::parse("https://[::1]:8443", &tls).unwrap();
        assert_eq!(s.connect, "[::1]:8443");
        assert_eq!(s.tls.as_ref().map(|(_, name)| name.to_str().into_owned()).as_deref(), Some("::1"));
        for bad in ["ftp://x", "http://", "https://", "http://a@b", "secrets.example", "http://x/?a"] {
            let err = Server::parse(bad, &tls).unwrap_err();
            assert_eq!(err.exit, Exit::Usage, "{bad}");
        }
    }
}

#[test]
fn a_ca_file_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.pem");
    assert_eq!(Tls::new(Some(&missing)).unwrap_err().exit, Exit::Usage);
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = Tls::new(Some(&empty)).unwrap_err();
    assert!(err.message.contains("client.ca_file"), "{}", err.message);
}
