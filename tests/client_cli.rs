//! The command-line client (`lethe send`, `receive`, `request …`): the real `lethe` binary as the
//! client, against the real server on `127.0.0.1:0`, with GnuPG and openpgp.js as the other tools a
//! secret moves through. Every client gets its own request directory and working directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::per_backend;
use crate::support::daemon::BIN;
use crate::support::gpg::Gpg;
use crate::support::tls::Certs;
use crate::support::{TestServer, noise};

/// A client on one machine: its server, its request directory and its current directory.
struct Client {
    url: Option<String>,
    home: tempfile::TempDir,
    /// More `LETHE_*` settings for every run.
    env: Vec<(&'static str, String)>,
}

impl Client {
    fn new(s: &TestServer) -> Client {
        Client::at(Some(s.base.clone()))
    }

    /// A client with no configured server: links carry their own.
    fn without_url() -> Client {
        Client::at(None)
    }

    fn at(url: Option<String>) -> Client {
        Client { url, home: tempfile::tempdir().expect("temp dir"), env: Vec::new() }
    }

    fn requests(&self) -> PathBuf {
        self.home.path().join("requests")
    }

    fn cwd(&self) -> PathBuf {
        let dir = self.home.path().join("cwd");
        std::fs::create_dir_all(&dir).expect("cwd");
        dir
    }

    /// Runs `lethe ARGS` with `stdin` piped in and a clean `LETHE_*` environment.
    async fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(self.cwd());
        for (k, _) in std::env::vars() {
            if k.starts_with("LETHE_") || k.starts_with("XDG_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", self.home.path()).env("LETHE_CLIENT__REQUESTS_DIR", self.requests());
        if let Some(url) = &self.url {
            cmd.env("LETHE_CLIENT__URL", url);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let stdin = stdin.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run lethe");
            // The client may exit before reading (a refused link): a broken pipe is not a failure here.
            if let Some(mut input) = child.stdin.take() {
                let _ = std::io::Write::write_all(&mut input, &stdin);
            }
            child.wait_with_output().expect("wait for lethe")
        })
        .await
        .expect("the client thread")
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", out(o), err(o));
}

/// The link's id and key, checking its shape: `<base>/#/<kind>/<id>/<22 characters of [A-Za-z0-9]>`.
#[track_caller]
fn parse_link(stdout: &str, base: &str, kind: &str) -> (String, String) {
    assert!(stdout.ends_with('\n') && stdout.lines().count() == 1, "one line: {stdout:?}");
    let rest = stdout
        .trim_end()
        .strip_prefix(&format!("{base}/#/{kind}/"))
        .unwrap_or_else(|| panic!("not a {kind} link on {base}: {stdout}"));
    let (id, key) = rest.split_once('/').expect("id/key");
    assert_eq!(key.len(), 22, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    (id.to_owned(), key.to_owned())
}

/// A request link's id and fp16.
#[track_caller]
fn parse_request_link(stdout: &str, base: &str) -> (String, String) {
    let rest = stdout.trim_end().strip_prefix(&format!("{base}/#/r/")).unwrap_or_else(|| panic!("{stdout}"));
    let (id, fp16) = rest.split_once('/').expect("id/fp16");
    assert!(fp16.len() == 16 && fp16.bytes().all(|b| b.is_ascii_hexdigit()), "{fp16}");
    (id.to_owned(), fp16.to_owned())
}

async fn request_state(s: &TestServer, id: &str) -> Option<String> {
    let r = s.get(&format!("/request/{id}")).await;
    (r.status == 200).then(|| r.json()["state"].as_str().expect("state").to_owned())
}

async fn text_round_trip(s: &TestServer) {
    let c = Client::new(s);
    let secret = "line one\nline two ünïcödé\n";
    let sent = c.run(&["send", "--expiration", "1h"], secret.as_bytes()).await;
    assert_exit(&sent, 0);
    let (id, key) = parse_link(&out(&sent), &s.base, "s");
    assert!(!err(&sent).contains(&key) && !err(&sent).contains("line one"), "{}", err(&sent));
    let status = s.get(&format!("/secret/{id}/status")).await;
    assert_eq!(status.json(), json!({"oneTime": true}));

    let link = out(&sent);
    let got = Client::without_url().run(&["receive", link.trim_end()], b"").await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), secret);
    assert!(err(&got).contains("deleted from the server"), "{}", err(&got));

    let again = Client::without_url().run(&["receive", link.trim_end()], b"").await;
    assert_exit(&again, 3);
    assert!(out(&again).is_empty());
    assert!(err(&again).contains("Secret not available"), "{}", err(&again));

    // The link may come on stdin instead of argv; a reusable secret opens more than once.
    let sent = c.run(&["send", "--reusable"], b"reusable").await;
    assert_exit(&sent, 0);
    for _ in 0..2 {
        let got = Client::without_url().run(&["receive"], out(&sent).as_bytes()).await;
        assert_exit(&got, 0);
        assert_eq!(out(&got), "reusable");
    }
    // A link without its key: the key comes on stdin, after the link when that comes there too.
    let (id, key) = parse_link(&out(&sent), &s.base, "s");
    let bare = format!("{}/#/s/{id}", s.base);
    let got = Client::without_url().run(&["receive", &bare], format!("{key}\n").as_bytes()).await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "reusable");
    let got = Client::without_url().run(&["receive", "-"], format!("{bare}\n{key}\n").as_bytes()).await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "reusable");
}

async fn file_round_trip(s: &TestServer) {
    let c = Client::new(s);
    let bytes = noise(50_000);
    let src = c.home.path().join("report.bin");
    std::fs::write(&src, &bytes).unwrap();
    let sent = c.run(&["send", "--file", src.to_str().unwrap(), "--reusable"], b"").await;
    assert_exit(&sent, 0);
    let link = out(&sent).trim_end().to_owned();
    parse_link(&out(&sent), &s.base, "f");

    // Into the current directory under its own name; a second copy never replaces the first.
    let r = Client::without_url();
    for expected in ["report.bin", "report (1).bin"] {
        let got = r.run(&["receive", &link], b"").await;
        assert_exit(&got, 0);
        let saved = r.cwd().join(expected);
        assert_eq!(std::fs::read(&saved).expect("saved file"), bytes, "{expected}");
        assert_eq!(std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(out(&got).is_empty(), "a file never goes to stdout");
    }

    // --force replaces the file of that name.
    let got = r.run(&["receive", &link, "--force"], b"").await;
    assert_exit(&got, 0);
    assert!(!r.cwd().join("report (2).bin").exists());

    // --out that exists is refused before anything is fetched: a one-time file stays on the server.
    let sent = c.run(&["send", "--file", src.to_str().unwrap()], b"").await;
    let (id, _) = parse_link(&out(&sent), &s.base, "f");
    let link = out(&sent).trim_end().to_owned();
    let target = r.home.path().join("existing");
    std::fs::write(&target, b"keep me").unwrap();
    let refused = r.run(&["receive", &link, "--out", target.to_str().unwrap()], b"").await;
    assert_exit(&refused, 2);
    assert!(err(&refused).contains("--force"), "{}", err(&refused));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert_eq!(s.get(&format!("/file/{id}/status")).await.status, 200, "nothing was consumed");
    let forced = r.run(&["receive", &link, "--out", target.to_str().unwrap(), "--force"], b"").await;
    assert_exit(&forced, 0);
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    assert_eq!(s.get(&format!("/file/{id}/status")).await.status, 404, "one-time: gone after the reveal");
}

async fn request_new_respond_collect(s: &TestServer) {
    let requester = Client::new(s);
    let made = requester.run(&["request", "new", "--label", "Prod API key", "--expiration", "1h"], b"").await;
    assert_exit(&made, 0);
    let (id, fp16) = parse_request_link(&out(&made), &s.base);

    // Stored in the web UI's export format, private to its owner.
    let file = requester.requests().join(format!("lethe-request-{id}.json"));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(requester.requests()).unwrap().permissions().mode() & 0o777, 0o700);
    let entry: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(entry["format"], "lethe-secret-request");
    assert_eq!(entry["version"], 1);
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["label"], "Prod API key");
    assert_eq!(entry["state"], "pending");
    assert!(entry["privateKey"].as_str().unwrap().starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    assert!(entry["fingerprint"].as_str().unwrap().ends_with(&fp16));
    assert!(entry["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(entry["expiresAt"], s.clock_now() + 3600);

    let early = requester.run(&["request", "collect", &id], b"").await;
    assert_exit(&early, 4);
    assert!(err(&early).contains("No secret has been provided yet"), "{}", err(&early));

    let list = requester.run(&["request", "list"], b"").await;
    assert_exit(&list, 0);
    assert!(out(&list).starts_with(&format!("{id}\tpending\t")), "{}", out(&list));
    assert!(out(&list).trim_end().ends_with("\tProd API key"), "{}", out(&list));

    let responder = Client::without_url();
    let sent = responder.run(&["request", "respond", out(&made).trim_end()], b"the api key\n").await;
    assert_exit(&sent, 0);
    assert!(err(&sent).contains("Label: Prod API key"), "{}", err(&sent));
    assert!(err(&sent).contains(&format!("Key fingerprint: {fp16} (verified against this link)")));
    assert_eq!(request_state(s, &id).await.as_deref(), Some("fulfilled"));
    let twice = responder.run(&["request", "respond", out(&made).trim_end()], b"another").await;
    assert_exit(&twice, 3);
    assert!(err(&twice).contains("Secret already provided"), "{}", err(&twice));

    let list = requester.run(&["request", "list"], b"").await;
    assert!(out(&list).starts_with(&format!("{id}\tfulfilled\t")), "{}", out(&list));
    let got = requester.run(&["request", "collect", &id], b"").await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "the api key\n");
    assert_eq!(request_state(s, &id).await, None, "collected: deleted on the server");
    let list = requester.run(&["request", "list"], b"").await;
    assert!(out(&list).starts_with(&format!("{id}\tcollected\t")), "{}", out(&list));
    let again = requester.run(&["request", "collect", &id], b"").await;
    assert_exit(&again, 3);
}

per_backend!(text_round_trip, file_round_trip, request_new_respond_collect);

async fn memory() -> TestServer {
    TestServer::start(lethe::store::Engine::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpg_decrypts_what_the_client_sends_with_the_links_key() {
    let s = memory().await;
    let c = Client::new(&s);
    let secret = "from the cli\nto gpg\n";
    let sent = c.run(&["send"], secret.as_bytes()).await;
    assert_exit(&sent, 0);
    let (id, key) = parse_link(&out(&sent), &s.base, "s");
    let message = s.get(&format!("/secret/{id}")).await.json()["message"].as_str().unwrap().to_owned();
    let gpg = Gpg::new();
    assert_eq!(gpg.run(&["--decrypt", "--passphrase", &key], message.as_bytes()), secret.as_bytes());

    let src = c.home.path().join("a file.txt");
    let bytes = noise(3000);
    std::fs::write(&src, &bytes).unwrap();
    let sent = c.run(&["send", "--file", src.to_str().unwrap()], b"").await;
    let (id, key) = parse_link(&out(&sent), &s.base, "f");
    let message = s.get(&format!("/file/{id}")).await.body.to_vec();
    assert_eq!(gpg.run(&["--decrypt", "--passphrase", &key], &message), bytes);
    // The name travels inside the ciphertext only, as the literal packet's.
    let listed = gpg.run(&["--list-packets", "--passphrase", &key], &message);
    assert!(
        String::from_utf8_lossy(&listed).contains("name=\"a file.txt\""),
        "{}",
        String::from_utf8_lossy(&listed)
    );
    s.stop().await;
}

/// Messages made by openpgp.js (the web app's version) with AEAD (SEIPD v2), as Yopass's UI makes them.
fn openpgp_js_aead(text: &str, file: &[u8], key: &str) -> (String, Vec<u8>) {
    use base64::Engine as _;
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        web.join("node_modules/openpgp").exists(),
        "this test needs web/node_modules (cd web && npm ci --ignore-scripts) and node"
    );
    let script = r#"
        import * as openpgp from 'openpgp';
        const { TEXT, FILE, KEY } = process.env;
        const config = { aeadProtect: true, preferredAEADAlgorithm: openpgp.enums.aead.gcm };
        const text = await openpgp.encrypt({ message: await openpgp.createMessage({ text: TEXT }), passwords: [KEY], config });
        const bytes = Buffer.from(FILE, 'base64');
        const file = await openpgp.encrypt({
            message: await openpgp.createMessage({ binary: new Uint8Array(bytes), filename: 'aead.bin', format: 'binary' }),
            passwords: [KEY], format: 'binary', config });
        for (const m of [await openpgp.readMessage({ armoredMessage: text }), await openpgp.readMessage({ binaryMessage: file })]) {
            const p = m.packets.findPacket(openpgp.enums.packet.aeadEncryptedData)
                ?? m.packets.findPacket(openpgp.enums.packet.symEncryptedIntegrityProtectedData);
            if (!p || p.version !== 2) throw new Error('not SEIPD v2');
        }
        process.stdout.write(JSON.stringify({ text, file: Buffer.from(file).toString('base64') }));
    "#;
    let o = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .current_dir(&web)
        .env("TEXT", text)
        .env("FILE", base64::engine::general_purpose::STANDARD.encode(file))
        .env("KEY", key)
        .output()
        .expect("this test needs node (apt-get install nodejs)");
    assert!(o.status.success(), "node: {}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = base64::engine::general_purpose::STANDARD.decode(v["file"].as_str().unwrap()).unwrap();
    (v["text"].as_str().unwrap().to_owned(), file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_opens_aead_messages_made_by_openpgp_js() {
    let s = memory().await;
    let key = "YopassStyleKey0123456A";
    let file_bytes = noise(2000);
    let (text, file) = tokio::task::spawn_blocking({
        let file_bytes = file_bytes.clone();
        move || openpgp_js_aead("made in openpgp.js\n", &file_bytes, key)
    })
    .await
    .unwrap();
    let r =
        s.post_json("/create/secret", &json!({"message": text, "expiration": 3600, "one_time": true})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["message"].as_str().unwrap().to_owned();
    let c = Client::without_url();
    let got = c.run(&["receive", &format!("{}/#/s/{id}/{key}", s.base)], b"").await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "made in openpgp.js\n");

    let r = s
        .request(
            hyper::Method::POST,
            "/create/file",
            &[
                ("content-type", "application/octet-stream"),
                ("x-lethe-expiration", "3600"),
                ("x-lethe-onetime", "true"),
            ],
            file,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["message"].as_str().unwrap().to_owned();
    let got = c.run(&["receive", &format!("{}/#/f/{id}/{key}", s.base)], b"").await;
    assert_exit(&got, 0);
    assert_eq!(std::fs::read(c.cwd().join("aead.bin")).unwrap(), file_bytes);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_link_is_refused() {
    let s = memory().await;
    let c = Client::new(&s);
    let sent = c.run(&["send", "--reusable"], b"tamper with me").await;
    let (id, key) = parse_link(&out(&sent), &s.base, "s");
    let r = Client::without_url();

    // Another key: refused as a verification failure, nothing printed.
    let mut other = key.clone().into_bytes();
    other[21] = if other[21] == b'A' { b'B' } else { b'A' };
    let other = String::from_utf8(other).unwrap();
    let got = r.run(&["receive", &format!("{}/#/s/{id}/{other}", s.base)], b"").await;
    assert_exit(&got, 2);
    assert!(out(&got).is_empty());
    assert!(err(&got).contains("Wrong decryption key"), "{}", err(&got));
    assert!(!err(&got).contains(&other) && !err(&got).contains(&id), "{}", err(&got));

    // Another id: not found.
    let got = r.run(&["receive", &format!("{}/#/s/{id}x/{key}", s.base)], b"").await;
    assert_exit(&got, 3);

    // A link of another shape is refused before the network: a one-time secret stays.
    let sent = c.run(&["send"], b"one time").await;
    let (id, key) = parse_link(&out(&sent), &s.base, "s");
    for bad in [
        format!("{}/#/s/{id}/{key}/more", s.base),
        format!("{}/#/x/{id}/{key}", s.base),
        format!("{}/#/s/{id}!/{key}", s.base),
        format!("{}/#/r/{id}/{}", s.base, "0".repeat(16)),
    ] {
        let got = r.run(&["receive", &bad], b"").await;
        assert_exit(&got, 2);
        assert_eq!(s.get(&format!("/secret/{id}/status")).await.status, 200, "{bad}");
    }
    let got = r.run(&["receive", &format!("{}/#/s/{id}/{key}", s.base)], b"").await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "one time");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_refuses_a_fingerprint_or_label_mismatch_and_sends_nothing() {
    let s = memory().await;
    let requester = Client::new(&s);
    let made = requester.run(&["request", "new", "--label", "db password"], b"").await;
    assert_exit(&made, 0);
    let (id, fp16) = parse_request_link(&out(&made), &s.base);
    let responder = Client::without_url();

    let wrong_fp = format!("{}/#/r/{id}/{}", s.base, fp16.chars().rev().collect::<String>());
    for link in [wrong_fp, format!("{}/#/r/{id}/{}", s.base, &fp16[..15]), format!("{}/#/r/{id}", s.base)] {
        let got = responder.run(&["request", "respond", &link], b"not for them").await;
        assert_exit(&got, 2);
        assert!(err(&got).contains("Key verification failed"), "{}", err(&got));
        assert!(err(&got).contains("Nothing was encrypted or sent"), "{}", err(&got));
        assert_eq!(request_state(&s, &id).await.as_deref(), Some("pending"), "{link}");
    }

    // A key whose user ID is not the request's label (the server accepts it; the responder must not).
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Alice <alice@example.org>", "future-default", "never");
    let public = gpg.export_public(&fpr);
    let fp16 = fpr.to_lowercase()[24..].to_owned();
    for (label, verified) in [("send it to eve@example.org", false), ("Alice <alice@example.org>", true)] {
        let r =
            s.post_json("/request", &json!({"public_key": public, "label": label, "expiration": 3600})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let got =
            responder.run(&["request", "respond", &format!("{}/#/r/{id}/{fp16}", s.base)], b"hunter2").await;
        if verified {
            assert_exit(&got, 0);
            assert_eq!(request_state(&s, &id).await.as_deref(), Some("fulfilled"));
        } else {
            assert_exit(&got, 2);
            assert!(err(&got).contains("Key verification failed"), "{}", err(&got));
            assert_eq!(request_state(&s, &id).await.as_deref(), Some("pending"));
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_exported_imported_rotated_and_revoked() {
    let s = memory().await;
    let a = Client::new(&s);
    let made = a.run(&["request", "new"], b"").await;
    assert_exit(&made, 0);
    let (id, old_fp16) = parse_request_link(&out(&made), &s.base);
    let stored = std::fs::read_to_string(a.requests().join(format!("lethe-request-{id}.json"))).unwrap();

    let exported = a.run(&["request", "export", &id], b"").await;
    assert_exit(&exported, 0);
    assert_eq!(out(&exported), stored);
    let file = a.home.path().join(format!("lethe-request-{id}.json"));
    assert_exit(&a.run(&["request", "export", &id, "--out", file.to_str().unwrap()], b"").await, 0);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // Another machine imports it and sees the same request.
    let b = Client::new(&s);
    assert_exit(&b.run(&["request", "import", file.to_str().unwrap()], b"").await, 0);
    let list = b.run(&["request", "list"], b"").await;
    assert!(out(&list).starts_with(&format!("{id}\tpending\t")), "{}", out(&list));
    assert!(out(&list).ends_with("\t\n"), "no label: {}", out(&list));

    // Exports that are not, or whose keys do not match their fingerprint, are refused.
    let bad = a.home.path().join("bad.json");
    std::fs::write(&bad, r#"{"yopassSecretRequest": 1}"#).unwrap();
    let got = b.run(&["request", "import", bad.to_str().unwrap()], b"").await;
    assert_exit(&got, 2);
    assert!(err(&got).contains("Not a lethe request export"), "{}", err(&got));
    let mut entry: Value = serde_json::from_str(&stored).unwrap();
    let other = a.run(&["request", "new"], b"").await;
    let (other_id, _) = parse_request_link(&out(&other), &s.base);
    let other_entry: Value = serde_json::from_str(
        &std::fs::read_to_string(a.requests().join(format!("lethe-request-{other_id}.json"))).unwrap(),
    )
    .unwrap();
    entry["privateKey"] = other_entry["privateKey"].clone();
    std::fs::write(&bad, entry.to_string()).unwrap();
    let got = b.run(&["request", "import", bad.to_str().unwrap()], b"").await;
    assert_exit(&got, 2);
    assert!(err(&got).contains("privateKey has another fingerprint"), "{}", err(&got));

    // Rotation: a new link; the old one no longer verifies, so nothing is sent to it.
    let rotated = a.run(&["request", "rotate", &id], b"").await;
    assert_exit(&rotated, 0);
    let (same_id, new_fp16) = parse_request_link(&out(&rotated), &s.base);
    assert_eq!(same_id, id);
    assert_ne!(new_fp16, old_fp16);
    let responder = Client::without_url();
    let got = responder.run(&["request", "respond", out(&made).trim_end()], b"to the old key").await;
    assert_exit(&got, 2);
    assert_eq!(request_state(&s, &id).await.as_deref(), Some("pending"));
    let got = responder.run(&["request", "respond", out(&rotated).trim_end()], b"to the new key").await;
    assert_exit(&got, 0);
    // The imported copy kept the old private key: it cannot read it, and says so without losing it.
    let got = b.run(&["request", "collect", &id], b"").await;
    assert_exit(&got, 1);
    assert!(out(&got).starts_with("-----BEGIN PGP MESSAGE-----"), "{}", out(&got));
    assert_eq!(request_state(&s, &id).await, None);

    // Revocation.
    let other_link = out(&other);
    assert_exit(&a.run(&["request", "revoke", &other_id], b"").await, 0);
    assert_eq!(request_state(&s, &other_id).await, None);
    let list = a.run(&["request", "list"], b"").await;
    assert!(out(&list).contains(&format!("{other_id}\trevoked\t")), "{}", out(&list));
    let got = responder.run(&["request", "respond", other_link.trim_end()], b"too late").await;
    assert_exit(&got, 3);
    assert!(err(&got).contains("Request not available"), "{}", err(&got));

    // Only a request that can no longer hold a secret is removed, with its key and token.
    let file = a.requests().join(format!("lethe-request-{other_id}.json"));
    let pending = a.run(&["request", "new"], b"").await;
    let (pending_id, _) = parse_request_link(&out(&pending), &s.base);
    assert_exit(&a.run(&["request", "remove", &pending_id], b"").await, 2);
    assert_eq!(request_state(&s, &pending_id).await.as_deref(), Some("pending"));
    assert!(a.requests().join(format!("lethe-request-{pending_id}.json")).exists());
    assert!(file.exists());
    assert_exit(&a.run(&["request", "remove", &other_id], b"").await, 0);
    assert!(!file.exists());
    assert!(!out(&a.run(&["request", "list"], b"").await).contains(&other_id));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_comes_from_url_or_client_url_and_secrets_never_from_argv() {
    let s = memory().await;
    let nowhere = Client::without_url();
    let got = nowhere.run(&["send"], b"x").await;
    assert_exit(&got, 2);
    assert!(err(&got).contains("client.url"), "{}", err(&got));
    let got = nowhere.run(&["send", "--url", &s.base], b"by flag").await;
    assert_exit(&got, 0);
    parse_link(&out(&got), &s.base, "s");
    let got = nowhere.run(&["send", "--url", "ftp://secrets.example"], b"x").await;
    assert_exit(&got, 2);
    assert!(err(&got).contains("http:// or https://"), "{}", err(&got));
    // There is no way to put the secret on the command line.
    let got = nowhere.run(&["send", "--url", &s.base, "hunter2"], b"").await;
    assert_exit(&got, 2);
    let got = Client::new(&s).run(&["send"], b"").await;
    assert_exit(&got, 2);
    assert!(err(&got).contains("empty"), "{}", err(&got));
    // A read-only listener creates nothing; the client says so before it encrypts anything.
    let m = TestServer::start_with_mirror(lethe::store::Engine::Memory, &|_| {}).await;
    let mirror = m.mirror.clone().expect("a mirror");
    let got = nowhere.run(&["send", "--url", &mirror], b"x").await;
    assert_exit(&got, 1);
    assert!(err(&got).contains("only opens links"), "{}", err(&got));
    let got = nowhere.run(&["request", "new", "--url", &mirror], b"").await;
    assert_exit(&got, 1);
    assert!(err(&got).contains("not available on this server"), "{}", err(&got));
    // Made on the full listener, links point at the mirror (PUBLIC_URL), which opens and answers them.
    let full = Client::at(Some(m.base.clone()));
    let sent = full.run(&["send"], b"via the mirror").await;
    assert_exit(&sent, 0);
    parse_link(&out(&sent), &mirror, "s");
    let got = nowhere.run(&["receive", out(&sent).trim_end()], b"").await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "via the mirror");
    let made = full.run(&["request", "new"], b"").await;
    let (id, _) = parse_request_link(&out(&made), &mirror);
    assert_exit(&nowhere.run(&["request", "respond", out(&made).trim_end()], b"answered").await, 0);
    let got = full.run(&["request", "collect", &id], b"").await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "answered");
    m.stop().await;
    // An unreachable server is a failure of its own kind.
    let got = nowhere.run(&["send", "--url", "http://127.0.0.1:9"], b"x").await;
    assert_exit(&got, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_command_explains_its_flags_and_exit_codes() {
    let c = Client::without_url();
    for args in [
        &["send", "--help"][..],
        &["receive", "--help"],
        &["request", "--help"],
        &["request", "new", "--help"],
        &["request", "respond", "--help"],
        &["request", "collect", "--help"],
    ] {
        let o = c.run(args, b"").await;
        assert_exit(&o, 0);
        assert!(out(&o).contains("--url"), "{args:?}: {}", out(&o));
    }
    for args in [&["send", "--help"][..], &["receive", "--help"], &["request", "--help"]] {
        let help = out(&c.run(args, b"").await);
        assert!(
            help.contains("Exit codes: 0 done; 1 failed") && help.contains("3 gone or not found"),
            "{help}"
        );
    }
}

/// `lethe send` on a terminal (a pseudo-terminal made by util-linux `script`): the prompt shows, and
/// what is typed after it is not echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_secret_is_read_without_echo() {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let s = memory().await;
    let command = format!("{BIN} send --url {}", s.base);
    let transcript = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("script");
        for (k, _) in std::env::vars() {
            if k.starts_with("LETHE_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script (util-linux)");
        let mut output = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = output.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("Secret: ") {
            let left = deadline.saturating_duration_since(Instant::now());
            seen.extend(rx.recv_timeout(left).expect("the prompt within 20 s"));
        }
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(b"typed on a terminal\n").expect("type");
        // The reader ends at the end of the output; the deadline bounds a hang.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no end of output: {}", String::from_utf8_lossy(&seen))
                }
            }
        }
        drop(input);
        child.wait().expect("wait for script");
        String::from_utf8_lossy(&seen).into_owned()
    })
    .await
    .unwrap();
    assert!(!transcript.contains("typed on a terminal"), "echoed: {transcript}");
    let link =
        transcript.lines().find(|l| l.contains("/#/s/")).unwrap_or_else(|| panic!("{transcript}")).trim();
    let got = Client::without_url().run(&["receive", link], b"").await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "typed on a terminal");
    s.stop().await;
}

/// Runs `lethe` with exactly the given environment (and PATH).
async fn lethe_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || cmd.stdin(Stdio::null()).output().expect("run lethe")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_live_in_the_xdg_data_directory_unless_configured_and_a_bad_client_url_is_named() {
    let s = memory().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap();
    let xdg = home.path().join("xdg");
    let x = xdg.to_str().unwrap();
    let made = lethe_env(&["request", "new"], &[("HOME", h), ("LETHE_CLIENT__URL", &s.base)]).await;
    assert_exit(&made, 0);
    let (id, _) = parse_request_link(&out(&made), &s.base);
    assert!(home.path().join(format!(".local/share/lethe/requests/lethe-request-{id}.json")).exists());
    let made =
        lethe_env(&["request", "new"], &[("HOME", h), ("XDG_DATA_HOME", x), ("LETHE_CLIENT__URL", &s.base)])
            .await;
    let (id, _) = parse_request_link(&out(&made), &s.base);
    assert!(xdg.join(format!("lethe/requests/lethe-request-{id}.json")).exists());

    // The configuration file's [client] section works like the environment.
    let config = home.path().join("lethe.toml");
    let dir = home.path().join("from-file");
    std::fs::write(
        &config,
        format!("[client]\nurl = \"{}\"\nrequests_dir = \"{}\"\n", s.base, dir.display()),
    )
    .unwrap();
    let made = lethe_env(&["request", "new", "--config", config.to_str().unwrap()], &[("HOME", h)]).await;
    assert_exit(&made, 0);
    let (id, _) = parse_request_link(&out(&made), &s.base);
    assert!(dir.join(format!("lethe-request-{id}.json")).exists());

    let bad = lethe_env(&["send"], &[("HOME", h), ("LETHE_CLIENT__URL", "ftp://x.example")]).await;
    assert_exit(&bad, 2);
    assert!(err(&bad).contains("client.url"), "{}", err(&bad));
    s.stop().await;
}

/// A TLS terminator, as an operator's proxy would be: its `https://` base, and where to set the plain
/// `http://` server it forwards to (known only once that has started with the base as PUBLIC_URL).
async fn tls_proxy(cert: &Path, key: &Path) -> (String, std::sync::Arc<std::sync::OnceLock<String>>) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let upstream = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let target = upstream.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, target) = (acceptor.clone(), target.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let upstream = target.get().and_then(|base| base.strip_prefix("http://")).expect("upstream");
                if let Ok(mut inner) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut inner).await;
                }
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_servers_are_verified_against_the_built_in_roots_or_client_ca_file() {
    // For 127.0.0.1, not for `localhost`.
    let certs = Certs::make("IP:127.0.0.1");
    let (ca, key) = (&certs.ca, &certs.key);
    let (https, upstream) = tls_proxy(&certs.cert, key).await;
    let public = https.clone();
    let s =
        TestServer::start_with(lethe::store::Engine::Memory, &|raw| raw.public_url = Some(public.clone()))
            .await;
    upstream.set(s.base.clone()).unwrap();

    // Trusting the test CA: the whole round trip runs over TLS and the link carries the https base.
    let mut c = Client::at(Some(https.clone()));
    c.env.push(("LETHE_CLIENT__CA_FILE", ca.display().to_string()));
    let sent = c.run(&["send"], b"over tls").await;
    assert_exit(&sent, 0);
    let (id, _) = parse_link(&out(&sent), &https, "s");

    // Without it, the certificate is refused before anything is asked: the secret is still there.
    let stranger = Client::without_url().run(&["receive", out(&sent).trim_end()], b"").await;
    assert_exit(&stranger, 1);
    assert!(err(&stranger).contains("TLS") && err(&stranger).contains("certificate"), "{}", err(&stranger));
    assert_eq!(s.get(&format!("/secret/{id}/status")).await.status, 200);

    let mut r = Client::without_url();
    r.env.push(("LETHE_CLIENT__CA_FILE", ca.display().to_string()));
    let got = r.run(&["receive", out(&sent).trim_end()], b"").await;
    assert_exit(&got, 0);
    assert_eq!(out(&got), "over tls");

    // A certificate for another name is refused too, trusted CA or not.
    let mut wrong = Client::at(Some(https.replace("127.0.0.1", "localhost")));
    wrong.env.push(("LETHE_CLIENT__CA_FILE", ca.display().to_string()));
    let o = wrong.run(&["request", "new"], b"").await;
    assert_exit(&o, 1);
    assert!(err(&o).contains("certificate"), "{}", err(&o));

    // A CA file that holds no certificate is a usage error naming the setting.
    let mut bad = Client::at(Some(https.clone()));
    bad.env.push(("LETHE_CLIENT__CA_FILE", key.display().to_string()));
    let o = bad.run(&["send"], b"x").await;
    assert_exit(&o, 2);
    assert!(err(&o).contains("client.ca_file"), "{}", err(&o));
    s.stop().await;
}
