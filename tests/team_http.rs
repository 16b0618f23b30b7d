//! The team surface over HTTP (`team.md` §1–§3.2): the envelope, the GPGAuth discovery headers, the
//! server key at `/auth/verify.json` as GnuPG reads it, and 404 in the envelope for what is not a team
//! route, on a read-only listener, or when `team.enabled` is false.

use hyper::StatusCode;
use serde_json::Value;

use crate::support::gpg::Gpg;
use crate::support::{Resp, TestServer};

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(lethe::domain::team::is_uuid)
}

/// The envelope of `team.md` §2, and the headers every team reply carries (§1, §3.2).
fn assert_envelope(r: &Resp, status: &str, code: u16, url: &str) -> Value {
    let v = r.json();
    let h = &v["header"];
    assert!(is_uuid(&h["id"]), "{v}");
    assert_eq!(h["status"], status, "{v}");
    assert!(h["servertime"].is_u64(), "{v}");
    assert!(is_uuid(&h["action"]), "{v}");
    assert!(h["message"].is_string(), "{v}");
    assert_eq!(h["url"], url, "{v}");
    assert_eq!(h["code"], code, "{v}");
    assert!(h.get("title").is_none() && v.get("pagination").is_none(), "{v}");
    assert_eq!(r.header("x-gpgauth-version"), Some("1.3.0"));
    assert_eq!(r.header("x-gpgauth-login-url"), Some("/auth/login"));
    assert_eq!(r.header("x-gpgauth-logout-url"), Some("/auth/logout"));
    assert_eq!(r.header("x-gpgauth-verify-url"), Some("/auth/verify"));
    assert_eq!(r.header("x-gpgauth-pubkey-url"), Some("/auth/verify.json"));
    assert!(
        r.header("access-control-expose-headers").is_some_and(|h| h.contains("X-GPGAuth-User-Auth-Token"))
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    v
}

async fn the_server_key_is_served_in_the_envelope_and_gnupg_reads_it(s: &TestServer) {
    let r = s.get("/auth/verify.json?api-version=v2").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = assert_envelope(&r, "success", 200, "/auth/verify.json?api-version=v2");
    assert_eq!(v["header"]["message"], "The operation was successful.");
    let fingerprint = v["body"]["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint, s.app.domain.team.server_key().fingerprint());
    // requests-gpgauthlib imports keydata and wants the fingerprint among gpg's own, upper-case.
    let gpg = Gpg::new();
    gpg.run(&["--import"], v["body"]["keydata"].as_str().unwrap().as_bytes());
    let listing = String::from_utf8(gpg.run(&["--with-colons", "--list-keys"], b"")).unwrap();
    assert!(listing.lines().any(|l| l == format!("fpr:::::::::{fingerprint}:")), "{listing}");
    assert!(!v["body"]["keydata"].as_str().unwrap().contains("PRIVATE"), "only the public half");
}

async fn unknown_team_paths_and_other_methods_answer_404_in_the_envelope(s: &TestServer) {
    for (method, path) in [
        (hyper::Method::GET, "/nothing-here.json"),
        (hyper::Method::GET, "/auth/jwt/login.json"),
        (hyper::Method::DELETE, "/auth/verify.json"),
        (hyper::Method::PUT, "/auth/verify.json?x=1"),
    ] {
        let r = s.request(method.clone(), path, &[], hyper::body::Bytes::new()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
        let v = assert_envelope(&r, "error", 404, path);
        assert!(v["body"].is_null(), "{v}");
    }
}

crate::per_backend!(
    the_server_key_is_served_in_the_envelope_and_gnupg_reads_it,
    unknown_team_paths_and_other_methods_answer_404_in_the_envelope,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_listener_serves_no_team_route() {
    let s = TestServer::start_with_mirror(lethe::store::Engine::Memory, &|_| {}).await;
    let mirror = s.mirror.clone().unwrap();
    let r =
        s.request_at(&mirror, hyper::Method::GET, "/auth/verify.json", &[], hyper::body::Bytes::new()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let v = assert_envelope(&r, "error", 404, "/auth/verify.json");
    assert!(v["body"].is_null(), "no key on the public mirror: {v}");
    assert_eq!(s.get("/auth/verify.json").await.status, StatusCode::OK, "the full listener serves it");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_enabled_false_turns_every_team_route_into_404() {
    let s = TestServer::start_with(lethe::store::Engine::Memory, &|raw| raw.team.enabled = false).await;
    let r = s.get("/auth/verify.json").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let v = assert_envelope(&r, "error", 404, "/auth/verify.json");
    assert!(v["body"].is_null(), "{v}");
    s.stop().await;
}
