//! Client-encrypted secrets and files: the server keeps OpenPGP ciphertext it cannot read and hands it
//! back once (or until it expires).

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::per_backend;
use crate::support::TestServer;
use crate::support::gpg::Gpg;

use crate::support::gpg::shared_keys as keys;

fn gpg() -> &'static Gpg {
    &keys().gpg
}

fn message(r: &crate::support::Resp) -> Value {
    r.json()["message"].clone()
}

async fn create(s: &TestServer, body: Value) -> crate::support::Resp {
    s.post_json("/create/secret", &body).await
}

per_backend!(
    a_one_time_secret_is_read_once,
    a_reusable_secret_is_read_until_deleted,
    bad_messages_are_refused_with_the_contract_messages,
    files_go_in_as_bytes_and_come_back_once,
    concurrent_reads_of_a_one_time_secret_have_one_winner,
    client_secrets_expire_on_time,
);

async fn a_one_time_secret_is_read_once(s: &TestServer) {
    let armored = gpg().encrypt_symmetric("link-key", b"hello from the browser");
    // `one_time` omitted means one-time.
    let r = create(s, json!({"message": armored, "expiration": 3600})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = message(&r).as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);

    let status = s.get(&format!("/secret/{id}/status")).await;
    assert_eq!(status.json(), json!({"oneTime": true}));
    assert_eq!(s.get(&format!("/secret/{id}/status")).await.status, StatusCode::OK, "status never consumes");

    let r = s.get(&format!("/secret/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.json(), json!({"message": armored, "expiration": 3600, "one_time": true}));
    assert_eq!(
        gpg().run(
            &["--batch", "--pinentry-mode", "loopback", "--passphrase", "link-key", "--decrypt"],
            armored.as_bytes()
        ),
        b"hello from the browser"
    );

    let r = s.get(&format!("/secret/{id}")).await;
    assert_eq!((r.status, message(&r)), (StatusCode::NOT_FOUND, json!("Secret not found")));
    assert_eq!(s.get(&format!("/secret/{id}/status")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.request(Method::DELETE, &format!("/secret/{id}"), &[], "").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn a_reusable_secret_is_read_until_deleted(s: &TestServer) {
    let armored = gpg().encrypt_symmetric("k", b"reusable");
    // The older creation path.
    let r =
        s.post_json("/secret", &json!({"message": armored, "expiration": 86400, "one_time": false})).await;
    let id = message(&r).as_str().unwrap().to_owned();
    assert_eq!(s.get(&format!("/secret/{id}/status")).await.json(), json!({"oneTime": false}));
    for _ in 0..3 {
        let r = s.get(&format!("/secret/{id}")).await;
        assert_eq!(r.json()["expiration"], 86400);
        assert_eq!(r.json()["one_time"], false);
    }
    let r = s.request(Method::DELETE, &format!("/secret/{id}"), &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert_eq!(s.get(&format!("/secret/{id}")).await.status, StatusCode::NOT_FOUND);
}

async fn bad_messages_are_refused_with_the_contract_messages(s: &TestServer) {
    let g = gpg();
    let bad = |r: crate::support::Resp, status: StatusCode, text: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(message(&r), json!(text));
    };
    let ok = g.encrypt_symmetric("k", b"x");
    bad(
        create(s, json!({"message": ok, "expiration": 1234})).await,
        StatusCode::BAD_REQUEST,
        "Invalid expiration specified",
    );
    bad(create(s, json!({"message": ok})).await, StatusCode::BAD_REQUEST, "Invalid expiration specified");
    bad(
        create(s, json!({"message": "plain text", "expiration": 3600})).await,
        StatusCode::BAD_REQUEST,
        "Message must be PGP encrypted",
    );
    bad(
        create(s, json!({"expiration": 3600})).await,
        StatusCode::BAD_REQUEST,
        "Message must be PGP encrypted",
    );
    bad(
        create(s, json!({"message": g.sign(b"signed only"), "expiration": 3600})).await,
        StatusCode::BAD_REQUEST,
        "Message must be PGP encrypted",
    );
    bad(
        create(s, json!({"message": ok, "expiration": "3600"})).await,
        StatusCode::BAD_REQUEST,
        "Unable to parse json",
    );
    bad(
        create(s, json!({"message": ok, "expiration": 3600, "one_time": "yes"})).await,
        StatusCode::BAD_REQUEST,
        "Unable to parse json",
    );
    let long = g.encrypt_symmetric("k", &crate::support::noise(8_000));
    assert!(long.len() > 10_000 && long.len() < 14_000, "{}", long.len());
    bad(
        create(s, json!({"message": long, "expiration": 3600})).await,
        StatusCode::BAD_REQUEST,
        "The encrypted message is too long",
    );
    let huge = "x".repeat(20_000);
    bad(
        create(s, json!({"message": huge, "expiration": 3600})).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request body too large",
    );
    // Unknown fields are ignored.
    assert_eq!(
        create(s, json!({"message": ok, "expiration": 3600, "extra": [1]})).await.status,
        StatusCode::OK
    );
    assert_eq!(s.app.domain.store().count(lethe::domain::secrets::SECRET).await.unwrap(), 1);
}

async fn files_go_in_as_bytes_and_come_back_once(s: &TestServer) {
    let g = gpg();
    let bytes = g.encrypt_to_binary(&keys().key, &crate::support::noise(50_000));
    let headers = [("content-type", "application/octet-stream"), ("x-lethe-expiration", "3600")];
    let r = s.request(Method::POST, "/create/file", &headers, bytes.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = message(&r).as_str().unwrap().to_owned();
    let r = s.get(&format!("/file/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body.as_ref(), bytes.as_slice());
    assert_eq!(s.get(&format!("/file/{id}")).await.status, StatusCode::NOT_FOUND, "one-time by default");
    // A file id is not a message id.
    assert_eq!(s.get(&format!("/secret/{id}")).await.status, StatusCode::NOT_FOUND);

    let headers = [("x-yopass-expiration", "86400"), ("x-yopass-onetime", "false")];
    let id = message(&s.request(Method::POST, "/create/file", &headers, bytes.clone()).await)
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.get(&format!("/file/{id}")).await.status, StatusCode::OK);
    assert_eq!(s.get(&format!("/file/{id}")).await.status, StatusCode::OK);
    assert_eq!(
        s.request(Method::DELETE, &format!("/file/{id}"), &[], "").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.get(&format!("/file/{id}")).await.status, StatusCode::NOT_FOUND);

    let r = s.request(Method::POST, "/create/file", &[], bytes.clone()).await;
    assert_eq!(
        (r.status, message(&r)),
        (StatusCode::BAD_REQUEST, json!("X-Lethe-Expiration header required"))
    );
    let r = s.request(Method::POST, "/create/file", &[("x-lethe-expiration", "3600")], "not openpgp").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.request(Method::POST, "/create/file", &[("x-lethe-expiration", "77")], bytes.clone()).await;
    assert_eq!((r.status, message(&r)), (StatusCode::BAD_REQUEST, json!("Invalid expiration specified")));
    let big = vec![0u8; 1_048_577];
    let r = s.request(Method::POST, "/create/file", &[("x-lethe-expiration", "3600")], big).await;
    assert_eq!((r.status, message(&r)), (StatusCode::PAYLOAD_TOO_LARGE, json!("File too large")));
}

async fn concurrent_reads_of_a_one_time_secret_have_one_winner(s: &TestServer) {
    let armored = gpg().encrypt_symmetric("k", b"race");
    let id = message(&create(s, json!({"message": armored, "expiration": 3600, "one_time": true})).await)
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/secret/{id}");
    let results = crate::support::join_all((0..30).map(|_| s.get(&path)).collect()).await;
    let ok = results.iter().filter(|r| r.status == StatusCode::OK).count();
    let gone = results.iter().filter(|r| r.status == StatusCode::NOT_FOUND).count();
    assert_eq!((ok, gone), (1, 29));
}

async fn client_secrets_expire_on_time(s: &TestServer) {
    let armored = gpg().encrypt_symmetric("k", b"soon gone");
    let id = message(&create(s, json!({"message": armored, "expiration": 3600, "one_time": false})).await)
        .as_str()
        .unwrap()
        .to_owned();
    s.clock.advance(3599);
    assert_eq!(s.get(&format!("/secret/{id}")).await.status, StatusCode::OK);
    s.clock.advance(1);
    assert_eq!(s.get(&format!("/secret/{id}")).await.status, StatusCode::NOT_FOUND);
}
