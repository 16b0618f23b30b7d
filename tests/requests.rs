//! Secret requests end to end, with keys and messages made by real GnuPG: the full lifecycle, every
//! error and its check order, concurrency, expiry, and an audit trail that never holds a secret.

use std::sync::OnceLock;

use hyper::{Method, StatusCode};
use lethe::store::Engine;
use serde_json::{Value, json};

use crate::per_backend;
use crate::support::TestServer;
use crate::support::gpg::Gpg;

/// One keyring for the whole module: generating keys is the slow part.
struct Keys {
    gpg: Gpg,
    /// ed25519 + cv25519, never expires.
    main: String,
    /// A second key, for wrong-recipient and rotation cases.
    other: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let gpg = Gpg::new();
        let main = gpg.gen_key("Requester <req@example.com>", "future-default", "never");
        let other = gpg.gen_key("Someone Else <else@example.com>", "future-default", "never");
        Keys { gpg, main, other }
    })
}

async fn create(s: &TestServer, public_key: &str, expiration: u64) -> Value {
    let r = s
        .post_json(
            "/request",
            &json!({"public_key": public_key, "label": "ticket #4711", "expiration": expiration}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

async fn with_token(
    s: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: &str,
) -> crate::support::Resp {
    s.request(
        method,
        path,
        &[("x-lethe-request-token", token), ("content-type", "application/json")],
        body.to_owned(),
    )
    .await
}

async fn submit(s: &TestServer, id: &str, message: &str) -> crate::support::Resp {
    s.post_json(&format!("/request/{id}/secret"), &json!({"message": message})).await
}

fn message(r: &crate::support::Resp) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_owned()
}

per_backend!(
    a_request_goes_from_created_to_collected_and_then_is_gone,
    keys_are_checked_strictly,
    submissions_must_be_encrypted_to_the_request_key,
    token_routes_check_existence_then_token_then_state,
    revoking_deletes_a_provided_secret,
    the_key_can_be_replaced_only_while_pending,
    concurrent_submissions_and_collections_have_one_winner,
    expired_requests_are_gone,
);

/// `web-ui.md` §5.9: the web app polls its own request's state every 30 s with its token; recorded as
/// `request.viewed` ("a responder opened the link"), those polls would bury the real views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_with_the_request_token_is_audited_as_the_requesters_status_check_memory() {
    the_requesters_status_check_is_audited_as_such(Engine::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_with_the_request_token_is_audited_as_the_requesters_status_check_redb() {
    the_requesters_status_check_is_audited_as_such(Engine::Redb).await;
}

async fn the_requesters_status_check_is_audited_as_such(engine: Engine) {
    let k = keys();
    let s = TestServer::start(engine).await;
    let created = create(&s, &k.gpg.export_public(&k.main), 3600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let path = format!("/request/{id}");
    let polled = with_token(&s, Method::GET, &path, &token, "").await;
    let opened = s.get(&path).await;
    let wrong = with_token(&s, Method::GET, &path, "not-this-requests-token", "").await;
    // The reply does not depend on who asks.
    for r in [&polled, &opened, &wrong] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["state"], "pending");
        assert_eq!(r.json()["fingerprint"], polled.json()["fingerprint"]);
    }
    let lines = s.stop_with_audit().await;
    let views: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["event"].as_str())
        .filter(|e| e.starts_with("request.") && *e != "request.created")
        .collect();
    // One poll by the requester; the token-less open and the wrong token are responders' views.
    assert_eq!(views, ["request.status_checked", "request.viewed", "request.viewed"], "{lines:?}");
    let checked = lines.iter().find(|l| l["event"] == "request.status_checked").unwrap();
    assert_eq!(checked["outcome"], "success");
    assert_eq!(checked["id_hash"].as_str().map(str::len), Some(12));
}

async fn a_request_goes_from_created_to_collected_and_then_is_gone(s: &TestServer) {
    let k = keys();
    let public_key = k.gpg.export_public(&k.main);
    let created = create(s, &public_key, 86_400).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(created["fingerprint"], k.main.to_lowercase());
    assert_eq!(created["expires_at"], crate::support::T0 + 86_400);
    let fp16 = &k.main.to_lowercase()[24..];
    assert_eq!(created["link"], format!("{}/#/r/{id}/{fp16}", s.base));
    assert!(token.len() >= 22, "at least 128 bits");

    let view = s.get(&format!("/request/{id}")).await.json();
    assert_eq!(view["state"], "pending");
    assert_eq!(view["label"], "ticket #4711");
    assert_eq!(view["public_key"], public_key.as_str());
    assert_eq!(view["fingerprint"], k.main.to_lowercase());

    let secret = "the customer's API key: sk_live_42";
    let armored = k.gpg.encrypt_to(&k.main, secret.as_bytes());
    let r = submit(s, &id, &armored).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "secret provided"}));
    assert_eq!(s.get(&format!("/request/{id}")).await.json()["state"], "fulfilled");

    // The older header spelling works too.
    let r = s
        .request(Method::GET, &format!("/request/{id}/secret"), &[("x-yopass-request-token", &token)], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let collected = message(&r);
    assert_eq!(collected, armored);
    assert_eq!(k.gpg.decrypt(&collected), secret.as_bytes());

    for (method, path) in
        [(Method::GET, format!("/request/{id}")), (Method::GET, format!("/request/{id}/secret"))]
    {
        let r = with_token(s, method, &path, &token, "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json(), json!({"message": "Secret request not found"}));
    }
}

async fn keys_are_checked_strictly(s: &TestServer) {
    let k = keys();
    let reason = |r: &crate::support::Resp| {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        let m = message(r);
        assert!(m.starts_with("A valid PGP public key is required"), "{m}");
        m
    };
    let body = |key: &str| json!({"public_key": key, "expiration": 3600});

    let m = reason(&s.post_json("/request", &body(&k.gpg.export_secret(&k.main))).await);
    assert!(m.contains("secret"), "{m}");
    reason(
        &s.post_json(
            "/request",
            &body("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n-----END PGP PUBLIC KEY BLOCK-----\n"),
        )
        .await,
    );
    reason(&s.post_json("/request", &body("")).await);
    let two = k.gpg.export_public_many(&[&k.main, &k.other]);
    reason(&s.post_json("/request", &body(&two)).await);
    // A tampered armor: one base64 character changed in the middle of the key.
    let mut tampered = k.gpg.export_public(&k.main).into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    reason(&s.post_json("/request", &body(&String::from_utf8(tampered).unwrap())).await);
    let huge = format!("{}{}", k.gpg.export_public(&k.main), " ".repeat(17 * 1024));
    let r = s.post_json("/request", &body(&huge)).await;
    assert!(r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::PAYLOAD_TOO_LARGE, "{}", r.status);

    let public_key = k.gpg.export_public(&k.main);
    let r = s.post_json("/request", &json!({"public_key": public_key, "expiration": 1234})).await;
    assert_eq!((r.status, message(&r)), (StatusCode::BAD_REQUEST, "Invalid expiration specified".into()));
    let r = s.post_json("/request", &json!({"public_key": public_key})).await;
    assert_eq!((r.status, message(&r)), (StatusCode::BAD_REQUEST, "Invalid expiration specified".into()));
    let r = s
        .post_json(
            "/request",
            &json!({"public_key": public_key, "expiration": 3600, "label": "x".repeat(101)}),
        )
        .await;
    assert_eq!((r.status, message(&r)), (StatusCode::BAD_REQUEST, "Label is too long".into()));
    let r = s.post_json("/request", &json!({"public_key": public_key, "expiration": "soon"})).await;
    assert_eq!((r.status, message(&r)), (StatusCode::BAD_REQUEST, "Unable to parse json".into()));
    let r = s.request(Method::POST, "/request", &[("content-type", "application/json")], "{not json").await;
    assert_eq!((r.status, message(&r)), (StatusCode::BAD_REQUEST, "Unable to parse json".into()));
    // A label of exactly 100 bytes and unknown fields are fine.
    let r = s
        .post_json(
            "/request",
            &json!({"public_key": public_key, "expiration": 3600, "label": "x".repeat(100), "color": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

async fn submissions_must_be_encrypted_to_the_request_key(s: &TestServer) {
    let k = keys();
    let created = create(s, &k.gpg.export_public(&k.main), 3600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let refuse = |r: crate::support::Resp, expected: &str| {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(message(&r), expected);
    };
    refuse(
        submit(s, &id, &k.gpg.encrypt_to(&k.other, b"x")).await,
        "Message is not encrypted to this request's key",
    );
    refuse(
        submit(s, &id, &k.gpg.encrypt_to_hidden(&k.main, b"x")).await,
        "Message is not encrypted to this request's key",
    );
    refuse(
        submit(s, &id, &k.gpg.encrypt_symmetric("pw", b"x")).await,
        "Message is not encrypted to this request's key",
    );
    refuse(submit(s, &id, &k.gpg.sign(b"x")).await, "Message must be PGP encrypted");
    refuse(submit(s, &id, "hello").await, "Message must be PGP encrypted");
    refuse(submit(s, &id, &k.gpg.export_public(&k.main)).await, "Message must be PGP encrypted");
    let mut tampered = k.gpg.encrypt_to(&k.main, b"x").into_bytes();
    let cut = tampered.len() / 3;
    tampered.truncate(cut);
    refuse(submit(s, &id, &String::from_utf8(tampered).unwrap()).await, "Message must be PGP encrypted");
    let big = k.gpg.encrypt_to(&k.main, &crate::support::noise(8_000));
    refuse(submit(s, &id, &big).await, "The encrypted message is too long");
    let r = s.post_json(&format!("/request/{id}/secret"), &json!({"message": 5})).await;
    assert_eq!((r.status, message(&r)), (StatusCode::BAD_REQUEST, "Unable to parse json".into()));
    // None of that fulfilled it.
    assert_eq!(s.get(&format!("/request/{id}")).await.json()["state"], "pending");
    let r = submit(s, &id, &k.gpg.encrypt_to(&k.main, b"ok")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = submit(s, &id, &k.gpg.encrypt_to(&k.main, b"again")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(message(&r), "A secret has already been provided for this request");
    let unknown = "Z".repeat(32);
    assert_eq!(submit(s, &unknown, &k.gpg.encrypt_to(&k.main, b"x")).await.status, StatusCode::NOT_FOUND);
}

async fn token_routes_check_existence_then_token_then_state(s: &TestServer) {
    let k = keys();
    let created = create(s, &k.gpg.export_public(&k.main), 3600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let unknown = "Z".repeat(32);

    // Unknown: 404 whatever the token.
    let r = with_token(s, Method::GET, &format!("/request/{unknown}/secret"), &token, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Missing or wrong token: 401 before anything about the state.
    let r = s.get(&format!("/request/{id}/secret")).await;
    assert_eq!((r.status, message(&r)), (StatusCode::UNAUTHORIZED, "Invalid request token".into()));
    let r = with_token(s, Method::GET, &format!("/request/{id}/secret"), "wrong", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = with_token(s, Method::DELETE, &format!("/request/{id}"), "wrong", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Key validation happens after the token check: garbage key, wrong token → 401, not 400.
    let r =
        with_token(s, Method::PUT, &format!("/request/{id}/key"), "wrong", "{\"public_key\":\"junk\"}").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = with_token(s, Method::PUT, &format!("/request/{unknown}/key"), "wrong", "junk").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Right token, wrong state: 409.
    let r = with_token(s, Method::GET, &format!("/request/{id}/secret"), &token, "").await;
    assert_eq!((r.status, message(&r)), (StatusCode::CONFLICT, "No secret has been provided yet".into()));
    submit(s, &id, &k.gpg.encrypt_to(&k.main, b"x")).await;
    let key = json!({"public_key": k.gpg.export_public(&k.other)}).to_string();
    let r = with_token(s, Method::PUT, &format!("/request/{id}/key"), "wrong", &key).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = with_token(s, Method::PUT, &format!("/request/{id}/key"), &token, &key).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

async fn revoking_deletes_a_provided_secret(s: &TestServer) {
    let k = keys();
    let created = create(s, &k.gpg.export_public(&k.main), 3600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    submit(s, &id, &k.gpg.encrypt_to(&k.main, b"to be revoked")).await;
    let r = with_token(s, Method::DELETE, &format!("/request/{id}"), &token, "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_eq!(
        with_token(s, Method::GET, &format!("/request/{id}/secret"), &token, "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get(&format!("/request/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        with_token(s, Method::DELETE, &format!("/request/{id}"), &token, "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.app.domain.store().count(lethe::domain::requests::REQUEST).await.unwrap(), 0);
}

async fn the_key_can_be_replaced_only_while_pending(s: &TestServer) {
    let k = keys();
    let created = create(s, &k.gpg.export_public(&k.main), 3600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let put_key = |key: String| {
        let body = json!({"public_key": key}).to_string();
        let (id, token) = (id.clone(), token.clone());
        async move { with_token(s, Method::PUT, &format!("/request/{id}/key"), &token, &body).await }
    };
    let r = put_key(k.gpg.export_secret(&k.other)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = put_key(k.gpg.export_public(&k.other)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"message": "public key updated", "fingerprint": k.other.to_lowercase()}));
    let view = s.get(&format!("/request/{id}")).await.json();
    assert_eq!(view["fingerprint"], k.other.to_lowercase());
    // Messages to the old key no longer fit.
    let r = submit(s, &id, &k.gpg.encrypt_to(&k.main, b"x")).await;
    assert_eq!(message(&r), "Message is not encrypted to this request's key");
    assert_eq!(submit(s, &id, &k.gpg.encrypt_to(&k.other, b"x")).await.status, StatusCode::OK);
    assert_eq!(put_key(k.gpg.export_public(&k.main)).await.status, StatusCode::CONFLICT);
}

async fn concurrent_submissions_and_collections_have_one_winner(s: &TestServer) {
    let k = keys();
    let created = create(s, &k.gpg.export_public(&k.main), 3600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let messages: Vec<String> =
        (0..8).map(|i| k.gpg.encrypt_to(&k.main, format!("answer {i}").as_bytes())).collect();
    let submissions = messages.iter().map(|m| submit(s, &id, m));
    let results = crate::support::join_all(submissions.collect()).await;
    assert_eq!(results.iter().filter(|r| r.status == StatusCode::OK).count(), 1);
    assert_eq!(results.iter().filter(|r| r.status == StatusCode::CONFLICT).count(), 7);

    let path = format!("/request/{id}/secret");
    let collections = (0..20).map(|_| with_token(s, Method::GET, &path, &token, ""));
    let results = crate::support::join_all(collections.collect()).await;
    let winners: Vec<_> = results.iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(winners.len(), 1);
    assert!(results.iter().all(|r| r.status == StatusCode::OK || r.status == StatusCode::NOT_FOUND));
    let plain = String::from_utf8(k.gpg.decrypt(&message(winners[0]))).unwrap();
    assert!(plain.starts_with("answer "), "{plain}");
}

async fn expired_requests_are_gone(s: &TestServer) {
    let k = keys();
    let created = create(s, &k.gpg.export_public(&k.main), 3600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    s.clock.advance(3599);
    assert_eq!(s.get(&format!("/request/{id}")).await.status, StatusCode::OK);
    s.clock.advance(1);
    assert_eq!(s.get(&format!("/request/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(submit(s, &id, &k.gpg.encrypt_to(&k.main, b"late")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_3072_key_from_gnupg_is_accepted() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("RSA Requester <rsa@example.com>", "rsa3072", "never");
    let s = TestServer::start(Engine::Memory).await;
    let created = create(&s, &gpg.export_public(&fpr), 3600).await;
    let id = created["id"].as_str().unwrap();
    let token = created["token"].as_str().unwrap();
    assert_eq!(submit(&s, id, &gpg.encrypt_to(&fpr, b"rsa works")).await.status, StatusCode::OK);
    let r = with_token(&s, Method::GET, &format!("/request/{id}/secret"), token, "").await;
    assert_eq!(gpg.decrypt(&message(&r)), b"rsa works");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_expires_before_the_request_is_refused() {
    let gpg = Gpg::new();
    // Two days of validity from now (wall time); the test clock starts later than that.
    let fpr = gpg.gen_key("Short <short@example.com>", "future-default", "2d");
    let s = TestServer::start(Engine::Memory).await;
    s.clock.set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let key = gpg.export_public(&fpr);
    assert_eq!(create(&s, &key, 86_400).await["fingerprint"], fpr.to_lowercase());
    let r = s.post_json("/request", &json!({"public_key": key, "expiration": 604_800})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(message(&r).contains("expires"), "{}", message(&r));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_audit_line_holds_a_secret_a_token_or_a_raw_id() {
    let k = keys();
    let s = TestServer::start(Engine::Redb).await;
    let created = create(&s, &k.gpg.export_public(&k.main), 3600).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let plaintext = "plaintext-that-must-not-leak";
    let armored = k.gpg.encrypt_to(&k.main, plaintext.as_bytes());
    s.get(&format!("/request/{id}")).await;
    submit(&s, &id, &k.gpg.encrypt_to(&k.other, b"x")).await;
    submit(&s, &id, &armored).await;
    submit(&s, &id, &armored).await;
    with_token(&s, Method::GET, &format!("/request/{id}/secret"), "bad-token-value", "").await;
    with_token(&s, Method::GET, &format!("/request/{id}/secret"), &token, "").await;
    let second = create(&s, &k.gpg.export_public(&k.main), 3600).await;
    let (id2, token2) =
        (second["id"].as_str().unwrap().to_owned(), second["token"].as_str().unwrap().to_owned());
    let key = json!({"public_key": k.gpg.export_public(&k.other)}).to_string();
    with_token(&s, Method::PUT, &format!("/request/{id2}/key"), &token2, &key).await;
    with_token(&s, Method::DELETE, &format!("/request/{id2}"), &token2, "").await;
    // The other surfaces too.
    let m = s.share("secret=v1-plaintext-value&passphrase=pass-phrase-value").await;
    let sk = m["secret_key"].as_str().unwrap().to_owned();
    let mk = m["metadata_key"].as_str().unwrap().to_owned();
    s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=wrong-phrase").await;
    s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=pass-phrase-value").await;

    let lines = s.stop_with_audit().await;
    let text = lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    for forbidden in [
        id.as_str(),
        id2.as_str(),
        token.as_str(),
        token2.as_str(),
        "bad-token-value",
        plaintext,
        "BEGIN PGP",
        "v1-plaintext-value",
        "pass-phrase-value",
        "wrong-phrase",
        sk.as_str(),
        mk.as_str(),
    ] {
        assert!(!text.contains(forbidden), "audit leaked {forbidden:?}:\n{text}");
    }
    let seen =
        |event: &str, outcome: &str| lines.iter().any(|l| l["event"] == event && l["outcome"] == outcome);
    for (event, outcome) in [
        ("request.created", "success"),
        ("request.viewed", "success"),
        ("request.fulfilled", "failure"),
        ("request.fulfilled", "success"),
        ("request.secret_accessed", "denied"),
        ("request.secret_accessed", "success"),
        ("request.key_rotated", "success"),
        ("request.revoked", "success"),
        ("secret.created", "success"),
        ("secret.revealed", "failure"),
        ("secret.revealed", "success"),
    ] {
        assert!(seen(event, outcome), "no {event} {outcome} in\n{text}");
    }
    for line in &lines {
        assert_eq!(line["id_hash"].as_str().map(str::len).unwrap_or(12), 12, "{line}");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(line["client_ip"], "127.0.0.1");
    }
    let denied =
        lines.iter().find(|l| l["event"] == "request.secret_accessed" && l["outcome"] == "denied").unwrap();
    assert_eq!(denied["reason"], "bad_token");
    let wrong =
        lines.iter().find(|l| l["event"] == "request.fulfilled" && l["outcome"] == "failure").unwrap();
    assert_eq!(wrong["reason"], "not_encrypted_to_key");
}
