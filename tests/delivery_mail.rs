//! Mail to v1 recipients, against a real SMTP server the test starts (`tests/smtp_sink.py`, on
//! Debian's python3-aiosmtpd): the mail's content and headers, in clear on loopback, over STARTTLS and
//! implicit TLS with a test CA made by the `openssl` CLI; the refusals (anonymous, bad address, no
//! mailer, the per-account allowance) that store nothing; mails dropped when their secret went first;
//! a failing server retried then given up; and a SIGKILL between the acknowledged share and the
//! delivery, after which the mail goes out once.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use hyper::{Method, StatusCode};
use lethe::config::RawConfig;
use lethe::store::Engine;
use serde_json::Value;

use crate::support::tls::Certs;
use crate::support::{T0, TestServer, basic, metric, until};

const PYTHON: &str = "/usr/bin/python3";
const SECRET_VALUE: &str = "correct-horse-MAILTEST-battery";
const SENDER: &str = "alice@example.com";
const RECIPIENT: &str = "bob.recipient@example.org";
const FROM: &str = "lethe@example.com";

/// `tests/smtp_sink.py` on a free loopback port, recording accepted messages in its directory.
struct SmtpSink {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl SmtpSink {
    /// `tls` is `none`, `starttls` or `implicit` (the last two with `certs`); `auth` is a required
    /// `user:password` login.
    fn start(tls: &str, certs: Option<&Certs>, auth: Option<&str>) -> SmtpSink {
        let check = Command::new(PYTHON).args(["-c", "import aiosmtpd"]).output();
        assert!(
            check.is_ok_and(|o| o.status.success()),
            "the mail tests need Debian's python3-aiosmtpd (apt-get install python3-aiosmtpd)"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut command = Command::new(PYTHON);
        command.arg(script).arg(dir.path()).args(["--tls", tls]);
        if let Some(certs) = certs {
            command.arg("--cert").arg(&certs.cert).arg("--key").arg(&certs.key);
        }
        if let Some(auth) = auth {
            command.args(["--auth", auth]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its tracebacks (a refused TLS handshake is one) stay out of the test output.
            .stderr(std::fs::File::create(dir.path().join("sink.log")).expect("the sink's log"))
            .spawn()
            .expect("start the SMTP sink");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("its port");
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the SMTP sink printed {line:?}"));
        SmtpSink { child, dir, port }
    }

    fn plain() -> SmtpSink {
        SmtpSink::start("none", None, None)
    }

    /// How RCPT is answered from now on: `accept`, `defer` (451) or `reject` (554).
    fn set_mode(&self, mode: &str) {
        std::fs::write(self.dir.path().join("mode"), mode).expect("write the mode");
    }

    /// Accepted messages, in arrival order.
    fn messages(&self) -> Vec<Value> {
        let mut found: Vec<(u64, Value)> = std::fs::read_dir(self.dir.path())
            .expect("the sink's directory")
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path.file_name()?.to_str()?.strip_suffix(".json")?.parse().ok()?;
                Some((n, serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?))
            })
            .collect();
        found.sort_by_key(|(n, _)| *n);
        found.into_iter().map(|(_, v)| v).collect()
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mail through `url`; `tweak` adjusts the rest.
async fn server_with(engine: Engine, url: &str, tweak: &dyn Fn(&mut RawConfig)) -> TestServer {
    let url = url.to_owned();
    TestServer::start_with(engine, &move |raw| {
        raw.mail.url = Some(url.clone());
        raw.mail.from = Some(FROM.into());
        raw.mail.give_up_seconds = 60;
        tweak(raw);
    })
    .await
}

async fn server(engine: Engine, sink: &SmtpSink) -> TestServer {
    server_with(engine, &sink.url(), &|_| {}).await
}

fn mails(outcome: &str, n: u64) -> String {
    format!("lethe_mails_total{{outcome=\"{outcome}\"}} {n}")
}

/// The message's text with quoted-printable undone (soft line breaks and `=XX`).
fn decoded(data: &str) -> String {
    let joined = data.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn recipient_form() -> String {
    format!("secret={SECRET_VALUE}&ttl=3600&recipient={RECIPIENT}")
}

macro_rules! on_every_backend {
    ($($name:ident => $body:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$body(lethe::store::Engine::Memory).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redb() {
                    super::$body(lethe::store::Engine::Redb).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$body(lethe::store::Engine::Redis).await;
                }
            }
        )*
    };
}

on_every_backend!(
    a_shared_secret_is_mailed_once_to_its_recipient_with_the_link_and_never_the_secret => mailed_once,
    a_mail_whose_secret_was_revealed_burned_or_expired_before_it_left_is_dropped => dropped,
    a_failing_smtp_server_gets_retries_then_the_mail_is_given_up_and_nothing_else_breaks => failing_server,
);

async fn mailed_once(engine: Engine) {
    let sink = SmtpSink::plain();
    let s = server(engine, &sink).await;
    let token = s.account(SENDER).await;
    let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let created = r.json();
    assert_eq!(created["recipient"], serde_json::json!(["bo*****@e*****.org"]), "{created}");
    let secret_key = created["secret_key"].as_str().expect("secret_key").to_owned();
    let metadata_key = created["metadata_key"].as_str().expect("metadata_key").to_owned();
    // The creator's later view shows the recipient obscured the same way.
    let view = s.post_form_as(&format!("/api/v1/private/{metadata_key}"), "", SENDER, &token).await.json();
    assert_eq!(view["recipient"], serde_json::json!(["bo*****@e*****.org"]), "{view}");

    until("the mail", async || sink.messages().len() == 1).await;
    until("the mail counted", async || metric(&s, &mails("sent", 1)).await).await;
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 0").await);
    let mail = &sink.messages()[0];
    assert_eq!(mail["rcpt_tos"], serde_json::json!([RECIPIENT]));
    assert_eq!(mail["mail_from"], FROM);
    let raw = mail["data"].as_str().expect("data");
    let text = decoded(raw);
    let link = format!("{}/secret/{secret_key}", s.app.domain.settings.public_url);
    assert!(text.contains(&link), "no link in {text}");
    assert!(text.contains(SENDER), "the sender is not named in {text}");
    assert!(text.contains("opened once"), "{text}");
    assert!(text.contains(&lethe::clock::rfc3339(T0 + 3600)[..10]), "no expiry in {text}");
    for header in
        ["Message-ID: <", "Date: ", "Content-Type: multipart/alternative", "text/plain", "text/html"]
    {
        assert!(raw.contains(header), "no {header} in {raw}");
    }
    assert!(!text.contains(SECRET_VALUE), "the secret is in the mail");
    assert!(!text.contains(&metadata_key), "the creator's key is in the mail");

    // The link opens the secret, once.
    let path = link.strip_prefix(&s.app.domain.settings.public_url).expect("a link on this server");
    assert_eq!(s.get(path).await.status, StatusCode::OK);
    let revealed = s.post_form(&format!("/api/v1/secret/{secret_key}"), "").await;
    assert_eq!(revealed.json()["value"], SECRET_VALUE);
    let again = s.post_form(&format!("/api/v1/secret/{secret_key}"), "").await;
    assert_eq!(again.json()["message"], "Unknown secret");

    // Generate mails too, and its generated value stays out of the mail.
    let r = s.post_form_as("/api/v1/generate", &format!("recipient={RECIPIENT}"), SENDER, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let value = r.json()["value"].as_str().expect("generated value").to_owned();
    until("the second mail", async || sink.messages().len() == 2).await;
    assert!(!decoded(sink.messages()[1]["data"].as_str().expect("data")).contains(&value));
    until("both mails counted", async || metric(&s, &mails("sent", 2)).await).await;

    let lines = s.stop_with_audit().await;
    let sent: Vec<&Value> = lines.iter().filter(|l| l["event"] == "mail.sent").collect();
    assert_eq!(sent.len(), 2, "{lines:?}");
    assert_eq!(sent[0]["account"], SENDER);
    assert_eq!(sent[0]["id_hash"].as_str().map(str::len), Some(12));
    for line in &lines {
        let line = line.to_string();
        for leak in [RECIPIENT, &secret_key, &link, SECRET_VALUE] {
            assert!(!line.contains(leak), "{line}");
        }
    }
}

async fn dropped(engine: Engine) {
    let sink = SmtpSink::plain();
    sink.set_mode("defer");
    let s = server(engine, &sink).await;
    let token = s.account(SENDER).await;
    let mut created = Vec::new();
    for ttl in [3600, 3600, 60] {
        let form = format!("secret={SECRET_VALUE}&ttl={ttl}&recipient={RECIPIENT}");
        let r = s.post_form_as("/api/v1/share", &form, SENDER, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        created.push(r.json());
    }
    until("a first attempt at each", async || metric(&s, &mails("retried", 3)).await).await;
    let revealed =
        s.post_form(&format!("/api/v1/secret/{}", created[0]["secret_key"].as_str().unwrap()), "").await;
    assert_eq!(revealed.json()["value"], SECRET_VALUE);
    let burn = format!("/api/v1/private/{}/burn", created[1]["metadata_key"].as_str().unwrap());
    assert_eq!(s.post_form_as(&burn, "", SENDER, &token).await.status, StatusCode::OK);
    // The server would take mail now; the third secret has run out meanwhile.
    sink.set_mode("accept");
    s.clock.advance(61);
    until("three mails dropped", async || metric(&s, &mails("dropped", 3)).await).await;
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 0").await);
    assert!(metric(&s, &mails("sent", 0)).await);
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
    s.stop().await;
}

async fn failing_server(engine: Engine) {
    let sink = SmtpSink::plain();
    sink.set_mode("defer");
    let s = server(engine, &sink).await;
    let token = s.account(SENDER).await;
    let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let secret_key = r.json()["secret_key"].as_str().expect("secret_key").to_owned();
    until("a retry scheduled", async || metric(&s, &mails("retried", 1)).await).await;
    // The next attempt waits for its backoff (2 s on the server's clock, which stands still here).
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 1").await);
    s.clock.advance(2);
    until("a second retry", async || metric(&s, &mails("retried", 2)).await).await;
    // Past mail.give_up_seconds (60) the next failure ends it.
    s.clock.advance(120);
    until("the mail given up", async || metric(&s, &mails("failed", 1)).await).await;
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 0").await);
    assert!(sink.messages().is_empty());

    // A permanent refusal (554) is given up at once, without retries.
    sink.set_mode("reject");
    let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    until("the refused mail given up", async || metric(&s, &mails("failed", 2)).await).await;
    assert!(metric(&s, &mails("retried", 2)).await);

    // Nothing else broke: the secrets are still there for their links, and shares still work.
    let revealed = s.post_form(&format!("/api/v1/secret/{secret_key}"), "").await;
    assert_eq!(revealed.json()["value"], SECRET_VALUE);
    assert_eq!(s.post_form("/api/v1/share", "secret=x").await.status, StatusCode::OK);
    assert!(metric(&s, &mails("sent", 0)).await);
    let lines = s.stop_with_audit().await;
    let failed: Vec<&Value> = lines.iter().filter(|l| l["event"] == "mail.failed").collect();
    assert_eq!(failed.len(), 2, "{lines:?}");
    assert_eq!(
        (failed[0]["outcome"].as_str(), failed[0]["reason"].as_str()),
        (Some("failure"), Some("gave_up"))
    );
    assert_eq!(failed[1]["reason"], "refused");
    assert!(!lines.iter().any(|l| l["event"] == "mail.sent"));
    for line in &lines {
        assert!(!line.to_string().contains(RECIPIENT), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_refuses_connections_gets_retries_and_the_share_stands() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let s = server_with(Engine::Redb, &format!("smtp://127.0.0.1:{port}?tls=none"), &|_| {}).await;
    let token = s.account(SENDER).await;
    let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    until("a retry scheduled", async || metric(&s, &mails("retried", 1)).await).await;
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 1").await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_is_refused_for_anonymous_callers_bad_addresses_and_without_mail_and_nothing_is_stored() {
    let sink = SmtpSink::plain();
    let s = server(Engine::Redb, &sink).await;
    let token = s.account(SENDER).await;
    let refused = |r: &crate::support::Resp, message: &str| {
        assert_eq!((r.status, r.intended()), (StatusCode::NOT_FOUND, Some(400)), "{}", r.text());
        assert_eq!(r.json()["message"], message);
    };
    let anonymous = s.post_form("/api/v1/share", &recipient_form()).await;
    refused(&anonymous, "An account is required to send emails.");
    let long = format!("{}@example.com", "a".repeat(300));
    for bad in
        ["not-an-address", "bob@localhost", "bob@example.org,eve@example.net", "a b@example.org", &long]
    {
        let form = format!("secret=x&recipient={}", bad.replace(' ', "%20"));
        let r = s.post_form_as("/api/v1/share", &form, SENDER, &token).await;
        refused(&r, "Recipient must be a valid email address");
    }
    let r = s.post_form_as("/api/v1/generate", "recipient=nope", SENDER, &token).await;
    refused(&r, "Recipient must be a valid email address");
    assert!(metric(&s, "lethe_live_records{kind=\"secret\"} 0").await);
    assert!(metric(&s, "lethe_live_records{kind=\"outbox\"} 0").await);
    s.stop().await;

    let off = TestServer::start(Engine::Redb).await;
    let token = off.account(SENDER).await;
    let r = off.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
    refused(&r, "Email delivery is not configured on this server; share the link yourself");
    assert!(metric(&off, "lethe_live_records{kind=\"secret\"} 0").await);
    off.stop().await;
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_account_mail_allowance_refuses_the_share_past_it_and_stores_nothing() {
    let sink = SmtpSink::plain();
    let s = server_with(Engine::Redb, &sink.url(), &|raw| raw.mail.per_account_per_hour = 2).await;
    let token = s.account(SENDER).await;
    let other = s.account("carol@example.com").await;
    for _ in 0..2 {
        let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
    assert_eq!((r.status, r.intended()), (StatusCode::NOT_FOUND, Some(429)), "{}", r.text());
    assert_eq!(r.json()["message"], "Too many emails sent from this account. Please try again later.");
    assert!(metric(&s, "lethe_live_records{kind=\"secret\"} 2").await);
    // Shares without a mail, and other accounts' mails, are not held back.
    assert_eq!(s.post_form_as("/api/v1/share", "secret=x", SENDER, &token).await.status, StatusCode::OK);
    let r = s.post_form_as("/api/v1/share", &recipient_form(), "carol@example.com", &other).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    until("three mails", async || sink.messages().len() == 3).await;
    // A refused share gave nothing back to mail: the allowance returns with the next hour.
    s.clock.advance(3600);
    let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    until("four mails", async || sink.messages().len() == 4).await;
    let lines = s.stop_with_audit().await;
    let limited = lines
        .iter()
        .filter(|l| l["event"] == "secret.created" && l["reason"] == "mail_limited" && l["account"] == SENDER)
        .count();
    assert_eq!(limited, 1, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_deliver_with_a_test_ca_and_a_login_and_refuse_an_unknown_ca() {
    let certs = Certs::make("DNS:localhost,IP:127.0.0.1");
    let ca = certs.ca.clone();
    let password = certs.dir.path().join("smtp.password");
    std::fs::write(&password, "s3cret-SMTP\n").expect("write the password");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for (tls, scheme) in [("starttls", "smtp"), ("implicit", "smtps")] {
        let sink = SmtpSink::start(tls, Some(&certs), Some("lethe:s3cret-SMTP"));
        let url = format!("{scheme}://localhost:{}", sink.port);
        let s = server_with(Engine::Memory, &url, &|raw| {
            raw.mail.ca_file = Some(ca.clone());
            raw.mail.username = Some("lethe".into());
            raw.mail.password_file = Some(password.clone());
        })
        .await;
        let token = s.account(SENDER).await;
        let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        until("the mail over TLS", async || sink.messages().len() == 1).await;
        let mail = &sink.messages()[0];
        assert_eq!((&mail["tls"], &mail["login"]), (&Value::Bool(true), &Value::from("lethe")), "{tls}");
        s.stop().await;

        // The same server without the test CA: the certificate is not trusted, nothing is sent.
        let s = server_with(Engine::Memory, &url, &|_| {}).await;
        let token = s.account(SENDER).await;
        let r = s.post_form_as("/api/v1/share", &recipient_form(), SENDER, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        until("a refused attempt", async || metric(&s, &mails("retried", 1)).await).await;
        assert_eq!(sink.messages().len(), 1, "{tls}: a mail went to an untrusted server");
        s.stop().await;
    }
}

/// One HTTP/1.1 request over a fresh connection to the real binary; the status and the body.
async fn call(addr: &str, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to lethe serve");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    (status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

async fn daemon_metric(addr: &str, line: &str) -> bool {
    call(addr, Method::GET, "/metrics", &[], "").await.1.lines().any(|l| l == line)
}

/// The real binary on redb, SIGKILLed after the share was acknowledged and before the SMTP server took
/// its mail: the database file holds neither the address nor the link, and after the restart the mail
/// goes out, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_acknowledged_before_a_crash_is_sent_once_after_restart_and_sealed_meanwhile() {
    use crate::support::daemon::{BIN, Daemon};
    let sink = SmtpSink::plain();
    sink.set_mode("defer");
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().to_str().expect("UTF-8 path");
    let added = Command::new(BIN)
        .args(["account", "add", SENDER, "--data-dir", data])
        .env_remove("LETHE_CONFIG")
        .env_remove("LETHE_STORAGE")
        .output()
        .expect("lethe account add");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let token = String::from_utf8(added.stdout).expect("UTF-8").trim().to_owned();
    let url = sink.url();
    let env = [("LETHE_MAIL__URL", url.as_str()), ("LETHE_MAIL__FROM", FROM)];
    let (daemon, addr) = tokio::task::block_in_place(|| Daemon::start_with(dir.path(), &env));

    let auth = basic(SENDER, &token);
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let (status, body) = call(&addr, Method::POST, "/api/v1/share", &headers, &recipient_form()).await;
    assert_eq!(status, 200, "{body}");
    let created: Value = serde_json::from_str(&body).expect("JSON");
    let secret_key = created["secret_key"].as_str().expect("secret_key").to_owned();
    // The server defers, so the mail is still queued when the process dies.
    until("a deferred attempt", async || daemon_metric(&addr, &mails("retried", 1)).await).await;
    tokio::task::block_in_place(|| daemon.kill());
    assert!(sink.messages().is_empty());

    let raw = std::fs::read(dir.path().join(lethe::store::REDB_FILE)).expect("the database file");
    for (what, needle) in [
        ("the address", RECIPIENT.as_bytes()),
        ("the secret key (the link)", secret_key.as_bytes()),
        ("the secret", SECRET_VALUE.as_bytes()),
    ] {
        assert!(!raw.windows(needle.len()).any(|w| w == needle), "{what} is in the database file in clear");
    }

    sink.set_mode("accept");
    let (daemon, addr) = tokio::task::block_in_place(|| Daemon::start_with(dir.path(), &env));
    until("the mail sent", async || daemon_metric(&addr, &mails("sent", 1)).await).await;
    assert!(daemon_metric(&addr, "lethe_live_records{kind=\"outbox\"} 0").await);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(decoded(messages[0]["data"].as_str().expect("data")).contains(&format!("/secret/{secret_key}")));
    let status = tokio::task::block_in_place(|| daemon.terminate());
    assert!(status.success());
    assert_eq!(sink.messages().len(), 1);
}

/// A password file others can read, a CA file without a certificate, or a mail URL that would send in
/// clear over a network stops `lethe serve` with the key named.
#[test]
fn bad_mail_settings_stop_the_start_with_the_key_named() {
    use crate::support::daemon::BIN;
    let dir = tempfile::tempdir().expect("temporary directory");
    let password = dir.path().join("smtp.password");
    std::fs::write(&password, "hunter2-SMTP\n").expect("write");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "no certificate here").expect("write");
    let run = |env: &[(&str, &str)]| {
        let data = dir.path().join("data");
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().expect("path")])
            .env_remove("LETHE_CONFIG")
            .envs(env.iter().copied())
            .output()
            .expect("run lethe serve");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let url = ("LETHE_MAIL__URL", "smtp://127.0.0.1:25?tls=none");
    let from = ("LETHE_MAIL__FROM", FROM);
    let password_file = password.to_str().expect("path");
    let stderr =
        run(&[url, from, ("LETHE_MAIL__USERNAME", "lethe"), ("LETHE_MAIL__PASSWORD_FILE", password_file)]);
    assert!(stderr.contains("mail.password_file") && stderr.contains("group or others"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let stderr = run(&[
        ("LETHE_MAIL__URL", "smtp://localhost:2525"),
        from,
        ("LETHE_MAIL__CA_FILE", ca.to_str().expect("path")),
    ]);
    assert!(stderr.contains("mail.ca_file"), "{stderr}");
    let stderr = run(&[("LETHE_MAIL__URL", "smtp://mail.example.com?tls=none"), from]);
    assert!(stderr.contains("mail.url") && stderr.contains("loopback"), "{stderr}");
    let stderr = run(&[url]);
    assert!(stderr.contains("mail.from"), "{stderr}");
}
