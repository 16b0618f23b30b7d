//! The client's HTTP: one plain `http://` HTTP/1.1 connection per call through hyper's low-level
//! client, a deadline on the whole exchange and a cap on every response body. It knows the server's
//! paths only as strings handed in; what they mean is the commands' business.
//!
//! `https://` is not spoken here (it would need a TLS stack, a notable dependency): the message that
//! refuses it says how to reach a TLS server anyway (`--url` with a plain address behind the proxy).

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use super::{Exit, Failure};

/// The longest a single exchange (connect, send, receive) may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// The largest response body read: above any server's file limit that a client could be handed.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// A server's base URL, split for the connection.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://host[:port][/prefix]` without a trailing slash: the base of links.
    pub base: String,
    /// `host:port` to connect to.
    connect: String,
    /// The `Host` header.
    authority: String,
    /// The path prefix, `""` or `/prefix`.
    prefix: String,
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
    /// Accepts `http://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Server, Failure> {
        let url = url.trim().trim_end_matches('/');
        if url.starts_with("https://") {
            return Err(Failure::new(
                Exit::Usage,
                "this client speaks plain http:// only; give --url the server's http:// address (for \
                 example the one behind its TLS proxy)",
            ));
        }
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(Failure::new(Exit::Usage, "the server URL must start with http://"));
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
        // A bare host (or an IPv6 literal without a port) gets http's port.
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let connect = if has_port { authority.to_owned() } else { format!("{authority}:80") };
        Ok(Server {
            base: url.to_owned(),
            connect,
            authority: authority.to_owned(),
            prefix: prefix.to_owned(),
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
        let stream = TcpStream::connect(&self.connect).await.map_err(|_| unreachable())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| unreachable())?;
        let driver = tokio::spawn(connection);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_split_into_connection_host_and_prefix() {
        let s = Server::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (s.base.as_str(), s.connect.as_str(), s.prefix.as_str()),
            ("http://127.0.0.1:8080", "127.0.0.1:8080", "")
        );
        let s = Server::parse("http://secrets.example/lethe").unwrap();
        assert_eq!(
            (s.connect.as_str(), s.authority.as_str(), s.prefix.as_str()),
            ("secrets.example:80", "secrets.example", "/lethe")
        );
        let s = Server::parse("http://[::1]").unwrap();
        assert_eq!(s.connect, "[::1]:80");
        for bad in ["https://x.example", "ftp://x", "http://", "http://a@b", "secrets.example", "http://x/?a"]
        {
            let err = Server::parse(bad).unwrap_err();
            assert_eq!(err.exit, Exit::Usage, "{bad}");
        }
    }
}
