//! The load generator's HTTP/1.1 client: keep-alive connections to a `--url` or the local server,
//! decoding only the reply fields it checks.

use super::*;

/// A parsed `--url`: where to connect, what to send as `Host`, and the path prefix.
#[derive(Debug)]
pub struct Endpoint {
    pub(super) base: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) authority: String,
    pub(super) prefix: String,
}

impl Endpoint {
    /// Accepts `http://host[:port][/prefix]`; anything else is a one-line error.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: Uri = url.trim().parse().map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(
                    "--url: https is not supported; target the server's plain-HTTP listener (or the \
                            proxy's backend address)"
                        .into(),
                );
            }
            _ => return Err(format!("--url {url:?} must start with http://")),
        }
        let authority = uri.authority().ok_or_else(|| format!("--url {url:?} has no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(format!("--url {url:?} has no host"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let base = format!("http://{}{prefix}", authority.as_str());
        Ok(Endpoint { base, host, port, authority: authority.as_str().to_owned(), prefix })
    }

    pub(super) async fn resolve(&self) -> Result<SocketAddr, String> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        addrs.next().ok_or_else(|| format!("{} has no address", self.host))
    }
}

/// One keep-alive HTTP/1.1 connection, opened on first use and replaced after any error.
pub struct Connection {
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) sender: Option<SendRequest<Full<Bytes>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("base", &self.endpoint.base).finish_non_exhaustive()
    }
}

impl Connection {
    pub fn new(endpoint: Arc<Endpoint>) -> Connection {
        Connection { endpoint, sender: None }
    }

    pub(super) fn reset(&mut self) {
        self.sender = None;
    }

    pub(super) async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let addr = self.endpoint.resolve().await?;
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; either is normal here.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends one request and reads the whole response. `path` is relative to the URL's prefix.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let result = self.try_send(method, path, content_type, body).await;
        if result.is_err() {
            self.reset();
        }
        result
    }

    pub(super) async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint.prefix))
            .header(hyper::header::HOST, &self.endpoint.authority);
        if let Some(content_type) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body)).map_err(|e| format!("request: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body =
            response.into_body().collect().await.map_err(|e| format!("response body: {e}"))?.to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }

    /// Does one unit of work; a create returns the (key, value) it made.
    pub(super) async fn perform(&mut self, work: &Work) -> Result<Option<(String, String)>, String> {
        const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
        const JSON: Option<&str> = Some("application/json");
        match work {
            Work::Health | Work::Done => {
                let (status, body) = self.send(Method::GET, "/health", None, Bytes::new()).await?;
                expect::<IgnoredAny>(status, &body).map(|_| None)
            }
            Work::Create { mix: Mix::Client, value } => {
                let body =
                    serde_json::json!({"message": ARMORED_MESSAGE, "expiration": 3600, "one_time": true});
                let (status, body) =
                    self.send(Method::POST, "/create/secret", JSON, Bytes::from(body.to_string())).await?;
                let reply: Field<'_> = expect(status, &body)?;
                match reply.message {
                    Some(id) => Ok(Some((id.into_owned(), value.clone()))),
                    None => Err("create: no \"message\" id in the reply".into()),
                }
            }
            Work::Create { mix, value } => {
                let mut form = format!("secret={value}&ttl=3600");
                if *mix == Mix::V1Passphrase {
                    form.push_str("&passphrase=");
                    form.push_str(&PASSPHRASE.replace(' ', "+"));
                }
                let (status, body) =
                    self.send(Method::POST, "/api/v1/share", FORM, Bytes::from(form)).await?;
                let reply: Field<'_> = expect(status, &body)?;
                match reply.secret_key {
                    Some(key) => Ok(Some((key.into_owned(), value.clone()))),
                    None => Err("share: no secret_key in the reply".into()),
                }
            }
            Work::Read { mix: Mix::Client, key, .. } => {
                let (status, body) =
                    self.send(Method::GET, &format!("/secret/{key}"), None, Bytes::new()).await?;
                let reply: Field<'_> = expect(status, &body)?;
                match reply.message {
                    Some(message) if message == ARMORED_MESSAGE => Ok(None),
                    _ => Err("read: the reply is not the message that was stored".into()),
                }
            }
            Work::Read { mix, key, value } => {
                let form = match mix {
                    Mix::V1Passphrase => format!("passphrase={}", PASSPHRASE.replace(' ', "+")),
                    _ => String::new(),
                };
                let (status, body) = self
                    .send(Method::POST, &format!("/api/v1/secret/{key}"), FORM, Bytes::from(form))
                    .await?;
                let reply: Field<'_> = expect(status, &body)?;
                match reply.value {
                    Some(v) if v == value.as_str() => Ok(None),
                    _ => Err("reveal: the reply is not the value that was shared".into()),
                }
            }
        }
    }
}

/// The fields of a reply the load generator looks at. Decoding only these, borrowed where the JSON has
/// no escapes, keeps the client's share of the machine small next to the server it measures.
#[derive(Deserialize)]
pub(super) struct Field<'a> {
    #[serde(borrow, default)]
    pub(super) message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) secret_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) value: Option<Cow<'a, str>>,
}

/// A 2xx JSON reply, or an error naming the status and the server's `message` (never the body itself,
/// which may echo a key).
pub(super) fn expect<'a, T: Deserialize<'a>>(status: StatusCode, body: &'a [u8]) -> Result<T, String> {
    if status.is_success() {
        return serde_json::from_slice(body)
            .map_err(|_| format!("HTTP {status} with a body that is not JSON"));
    }
    let message = serde_json::from_slice::<Field<'_>>(body).ok().and_then(|f| f.message);
    let message: String = message.as_deref().unwrap_or("no JSON message").chars().take(120).collect();
    Err(format!("HTTP {}: {message}", status.as_u16()))
}
