//! What lethe leaves on disk. The database file holds none of the bytes a client chose
//! (client-encrypted messages and files, request keys, labels and submitted ciphertexts, a mail's
//! recipient and link), not even as the ciphertext they are, and records written in clear by older
//! builds are still served. Every file is its owner's alone, and a data directory others can reach is
//! refused at start.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use hyper::{Method, StatusCode};
use lethe::crypto::Purpose;
use lethe::store::{Batch, Engine, Keyspace, Outcome, codec};
use serde_json::{Value, json};

use crate::support::TestServer;

use crate::support::gpg::shared_keys as keys;

const LABEL: &str = "payroll export 7f3a9c at rest";

/// Everything a client hands the server that it stores: a message, a file, a request with its key and
/// label, and the ciphertext a responder submits to it.
struct Stored {
    message_id: String,
    message: String,
    file_id: String,
    file: Vec<u8>,
    request_id: String,
    token: String,
    public_key: String,
    submitted: String,
}

async fn store_one_of_each(s: &TestServer) -> Stored {
    let k = keys();
    let message = k.gpg.encrypt_symmetric("link-key", &crate::support::noise(2_000));
    let r = s
        .post_json("/create/secret", &json!({"message": message, "expiration": 3600, "one_time": false}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let message_id = r.json()["message"].as_str().unwrap().to_owned();

    let file = k.gpg.encrypt_to_binary(&k.key, &crate::support::noise(20_000));
    let headers = [("content-type", "application/octet-stream"), ("x-lethe-expiration", "3600")];
    let r = s.request(Method::POST, "/create/file", &headers, file.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let file_id = r.json()["message"].as_str().unwrap().to_owned();

    let public_key = k.gpg.export_public(&k.key);
    let r = s
        .post_json("/request", &json!({"public_key": public_key, "label": LABEL, "expiration": 86_400}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let created = r.json();
    let request_id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let submitted = k.gpg.encrypt_to(&k.key, b"the database password");
    let r = s.post_json(&format!("/request/{request_id}/secret"), &json!({"message": submitted})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    Stored { message_id, message, file_id, file, request_id, token, public_key, submitted }
}

/// A stretch from the middle of an armored block: base64 that occurs nowhere else.
fn armored_middle(armored: &str) -> &[u8] {
    let body = armored.lines().filter(|l| l.len() >= 60).nth(2).expect("an armored body line");
    &body.as_bytes()[..48]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_holds_no_byte_a_client_chose() {
    // Mail to a port where nothing listens: the recipient's mail stays queued in the outbox.
    let s = TestServer::start_with(Engine::Redb, &|raw| {
        raw.mail.url = Some("smtp://127.0.0.1:9?tls=none".into());
        raw.mail.from = Some("lethe@example.com".into());
    })
    .await;
    let stored = store_one_of_each(&s).await;
    let token = s.account("alice@example.com").await;
    let form = "secret=x&recipient=bob.at.rest@example.org";
    let r = s.post_form_as("/api/v1/share", form, "alice@example.com", &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let secret_key = r.json()["secret_key"].as_str().expect("secret_key").to_owned();
    let file = stored.file.len() / 2;
    let needles: [(&str, &[u8]); 7] = [
        ("a mail's recipient", b"bob.at.rest@example.org"),
        ("a mail's link", secret_key.as_bytes()),
        ("the client-encrypted message", armored_middle(&stored.message)),
        ("the client-encrypted file", &stored.file[file..file + 64]),
        ("the request's public key", armored_middle(&stored.public_key)),
        ("the request's label", LABEL.as_bytes()),
        ("the submitted ciphertext", armored_middle(&stored.submitted)),
    ];
    let path = s.app.domain.settings.data_dir.join(lethe::store::REDB_FILE);
    // Committed durably before each answer, so the file holds them now if it holds them at all.
    let raw = std::fs::read(&path).expect("the database file");
    for (what, needle) in needles {
        assert!(!contains(&raw, needle), "{what} is in the database file as the client sent it");
    }
    assert!(!contains(&raw, b"-----BEGIN PGP"), "an armor header is in the database file");
    let outbox = s.get("/metrics").await.text();
    assert!(outbox.lines().any(|l| l == "lethe_live_records{kind=\"outbox\"} 1"), "the mail is queued");
    // And every one of them is still served as it was sent.
    let r = s.get(&format!("/secret/{}", stored.message_id)).await;
    assert_eq!(r.json()["message"], stored.message.as_str());
    assert_eq!(s.get(&format!("/file/{}", stored.file_id)).await.body.as_ref(), stored.file.as_slice());
    let view = s.get(&format!("/request/{}", stored.request_id)).await.json();
    assert_eq!(
        (view["label"].as_str(), view["public_key"].as_str()),
        (Some(LABEL), Some(&*stored.public_key))
    );
    s.stop().await;
}

/// Rewrites a record as builds before sealing wrote it: format version 1 and the same `postcard`
/// body, in clear.
async fn unseal_in_place(s: &TestServer, ks: Keyspace, purpose: Purpose, id: &str) {
    let d = &s.app.domain;
    let hash = d.keys.store_key(id);
    let now = s.clock_now();
    let entry = d.store().get(ks, hash.to_vec(), now).await.unwrap().expect("the record");
    assert_eq!(entry.value[0], codec::SEALED_VERSION, "written sealed");
    let mut clear = vec![codec::FORMAT_VERSION];
    clear.extend(d.keys.open(purpose, id.as_bytes(), &entry.value[1..]).expect("opens under its id"));
    let batch = Batch::new().require_version(ks, hash, entry.version).put(ks, hash, clear, entry.expires_at);
    assert!(matches!(d.store().apply(batch, now).await.unwrap(), Outcome::Applied(_)));
}

async fn records_written_in_clear_by_older_builds_are_still_served(engine: Engine) {
    let s = TestServer::start(engine).await;
    let stored = store_one_of_each(&s).await;
    unseal_in_place(&s, lethe::domain::secrets::SECRET, Purpose::ClientSecret, &stored.message_id).await;
    unseal_in_place(&s, lethe::domain::secrets::SECRET, Purpose::ClientSecret, &stored.file_id).await;
    unseal_in_place(&s, lethe::domain::requests::REQUEST, Purpose::Request, &stored.request_id).await;

    assert_eq!(
        s.get(&format!("/secret/{}/status", stored.message_id)).await.json(),
        json!({"oneTime": false})
    );
    let r = s.get(&format!("/secret/{}", stored.message_id)).await;
    assert_eq!(r.json(), json!({"message": stored.message, "expiration": 3600, "one_time": false}));
    let r = s.get(&format!("/file/{}", stored.file_id)).await;
    assert_eq!((r.status, r.body.as_ref()), (StatusCode::OK, stored.file.as_slice()));
    assert_eq!(s.get(&format!("/file/{}", stored.file_id)).await.status, StatusCode::NOT_FOUND, "one-time");

    let view: Value = s.get(&format!("/request/{}", stored.request_id)).await.json();
    assert_eq!((view["state"].as_str(), view["label"].as_str()), (Some("fulfilled"), Some(LABEL)));
    let headers = [("x-lethe-request-token", stored.token.as_str())];
    let r = s.request(Method::GET, &format!("/request/{}/secret", stored.request_id), &headers, "").await;
    assert_eq!((r.status, r.json()["message"].as_str()), (StatusCode::OK, Some(&*stored.submitted)));
    // Deleting an old-form record works too.
    let r = s.request(Method::DELETE, &format!("/secret/{}", stored.message_id), &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_in_clear_by_older_builds_are_still_served_from_redb() {
    records_written_in_clear_by_older_builds_are_still_served(Engine::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_in_clear_by_older_builds_are_still_served_from_memory() {
    records_written_in_clear_by_older_builds_are_still_served(Engine::Memory).await;
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_every_file_in_it_are_the_owners_alone() {
    let s = TestServer::start(Engine::Redb).await;
    let dir = s.app.domain.settings.data_dir.clone();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(lethe::store::REDB_FILE)), 0o600, "the database");
    assert_eq!(mode(&s.app.domain.settings.master_key_file), 0o600, "the master key");
    s.stop().await;
}

#[test]
fn a_data_directory_open_to_others_is_tightened_at_start_and_the_change_logged() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("made by the operator");
    for loose in [0o755, 0o750, 0o701] {
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(loose)).unwrap();
        let mut child = Command::new(crate::support::daemon::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env_remove("LETHE_STORAGE")
            .env_remove("LETHE_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn lethe serve");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
        // Everything it logged until it was ready (or stopped).
        let lines: Vec<String> = stderr.by_ref().take_while(|l| !l.contains("lethe ready")).collect();
        child.kill().unwrap();
        stderr.for_each(drop);
        child.wait().unwrap();
        assert_eq!(mode(&data), 0o700, "{loose:o} is tightened");
        let warning = lines.iter().find(|l| l.contains("it is 0700 now")).expect("the change is logged");
        assert!(warning.contains(&format!("{loose:04o}")), "with the old mode: {warning}");
        assert!(warning.contains("made by the operator"), "naming the directory: {warning}");
    }
}
