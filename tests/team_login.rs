//! GPGAuth login against the real server with real gpg keys (`team.md` §3.3–3.7): stages 0, 1 and 2
//! with their exact headers, the challenge's encoding, single-use login tokens, the session cookie,
//! logout, and a disabled user's session ending at once.

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::gpg::Gpg;
use crate::support::{Resp, TestServer};

const NO_USER: &str = "There is no user associated with this key.";

async fn post(s: &TestServer, path: &str, body: &Value, cookie: Option<&str>) -> Resp {
    let mut headers = vec![("content-type", "application/json"), ("accept", "*/*")];
    let jar;
    if let Some(c) = cookie {
        jar = format!("passbolt_session={c}");
        headers.push(("cookie", jar.as_str()));
    }
    s.request(Method::POST, path, &headers, Bytes::from(body.to_string())).await
}

async fn get(s: &TestServer, path: &str, cookie: &str) -> Resp {
    let jar = format!("passbolt_session={cookie}");
    s.request(Method::GET, path, &[("cookie", &jar)], Bytes::new()).await
}

/// What every client does to the stage-1 header: undo the quotemeta backslashes, then URL-decode.
fn decode_challenge(encoded: &str) -> String {
    let mut unescaped = Vec::new();
    let mut bytes = encoded.bytes();
    while let Some(b) = bytes.next() {
        if b == b'\\' {
            unescaped.push(bytes.next().expect("a backslash escapes something"));
        } else {
            unescaped.push(b);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < unescaped.len() {
        match unescaped[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(&unescaped[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn gpgauth_headers(r: &Resp) -> Vec<String> {
    let mut names: Vec<String> = r
        .headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("x-gpgauth-") && !k.ends_with("-url") && k != "x-gpgauth-version")
        .collect();
    names.sort();
    names
}

pub(crate) struct Person {
    pub gpg: Gpg,
    pub fpr: String,
    pub id: String,
}

pub(crate) async fn register(s: &TestServer, name: &str) -> Person {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(&format!("{name} <{name}@example.com>"), "future-default", "never");
    let armored = gpg.export_public(&fpr);
    let new = lethe::domain::team::users::NewUser {
        username: name,
        armored_key: &armored,
        admin: false,
        first_name: None,
        last_name: None,
    };
    let user = s.app.domain.team.add_user(new).await.expect("register");
    Person { gpg, fpr, id: user.id }
}

/// Stage 1: the challenge, decrypted by the person's gpg (which checks the server's signature, as
/// clients that imported the server key do); returns the nonce.
pub(crate) async fn stage1(s: &TestServer, p: &Person) -> String {
    let server = s.get("/auth/verify.json").await.json();
    p.gpg.run(&["--import"], server["body"]["keydata"].as_str().unwrap().as_bytes());
    let r =
        post(s, "/auth/login.json", &json!({"gpg_auth": {"keyid": p.fpr, "user_token_result": null}}), None)
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!((v["header"]["status"].as_str(), v["header"]["code"].as_u64()), (Some("error"), Some(200)));
    assert_eq!(v["header"]["message"], "The authentication failed.");
    assert_eq!(
        gpgauth_headers(&r),
        ["x-gpgauth-authenticated", "x-gpgauth-progress", "x-gpgauth-user-auth-token"]
    );
    assert_eq!(r.header("x-gpgauth-progress"), Some("stage1"));
    let encoded = r.header("x-gpgauth-user-auth-token").unwrap();
    assert!(encoded.starts_with("-----BEGIN\\+PGP\\+MESSAGE-----%0A%0A"), "{encoded}");
    assert!(!encoded.contains([' ', '\r', '\n']));
    let armored = decode_challenge(encoded);
    assert!(!armored.contains("Version:") && !armored.contains("Comment:"), "no armor headers");
    // A binary literal with an empty name inside SEIPD v1 with MDC: what GnuPG 2.2 and PGPy read, and
    // what py-passbolt's `.decode()` needs.
    let packets = String::from_utf8(p.gpg.run(&["--list-packets"], armored.as_bytes())).unwrap();
    assert!(
        packets.contains(":literal data packet:\n\tmode b (62)") && packets.contains("name=\"\""),
        "{packets}"
    );
    assert!(packets.contains(":encrypted data packet:") && packets.contains("mdc_method: 2"), "{packets}");
    assert!(packets.contains(":onepass_sig packet:") && packets.contains(":signature packet:"), "{packets}");
    let nonce = String::from_utf8(p.gpg.decrypt(&armored)).unwrap();
    assert!(
        nonce.starts_with("gpgauthv1.3.0|36|") && nonce.ends_with("|gpgauthv1.3.0") && nonce.len() == 67,
        "{nonce}"
    );
    nonce
}

pub(crate) async fn stage2(s: &TestServer, p: &Person, nonce: &str) -> Resp {
    post(
        s,
        "/auth/login.json",
        &json!({"data": {"gpg_auth": {"keyid": p.fpr.to_lowercase(), "user_token_result": nonce}}}),
        None,
    )
    .await
}

pub(crate) fn session_cookie(r: &Resp) -> String {
    let set = r.header("set-cookie").expect("a session cookie");
    assert!(set.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{set}");
    let value = set.strip_prefix("passbolt_session=").unwrap().split(';').next().unwrap().to_owned();
    assert!(value.len() >= 32);
    value
}

async fn a_user_logs_in_through_the_three_stages_and_the_session_works_until_logout(s: &TestServer) {
    let alice = register(s, "alice").await;

    // Stage 0: the server proves it holds its key by returning the nonce the client encrypted to it.
    let server = s.get("/auth/verify.json").await.json();
    alice.gpg.run(&["--import"], server["body"]["keydata"].as_str().unwrap().as_bytes());
    let server_fpr = server["body"]["fingerprint"].as_str().unwrap();
    let mine = format!("gpgauthv1.3.0|36|{}|gpgauthv1.3.0", "0b7f2c16-4a55-4c2e-9a51-1f3c3c1e9d2a");
    let token = String::from_utf8(
        alice
            .gpg
            .run(&["--armor", "--trust-model", "always", "--encrypt", "-r", server_fpr], mine.as_bytes()),
    )
    .unwrap();
    let r = post(
        s,
        "/auth/verify.json",
        &json!({"gpg_auth": {"keyid": alice.fpr, "server_verify_token": token}}),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["header"]["code"], 200);
    assert_eq!(
        gpgauth_headers(&r),
        ["x-gpgauth-authenticated", "x-gpgauth-progress", "x-gpgauth-verify-response"]
    );
    assert_eq!(r.header("x-gpgauth-verify-response"), Some(mine.as_str()));
    assert_eq!(r.header("x-gpgauth-progress"), Some("stage0"));
    // A plaintext that is not a nonce is never echoed.
    let other = String::from_utf8(
        alice.gpg.run(&["--armor", "--trust-model", "always", "--encrypt", "-r", server_fpr], b"tell me"),
    )
    .unwrap();
    let r = post(
        s,
        "/auth/verify.json",
        &json!({"gpg_auth": {"keyid": alice.fpr, "server_verify_token": other}}),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.header("x-gpgauth-verify-response").is_none() && !r.text().contains("tell me"));
    assert_eq!(r.header("x-gpgauth-error"), Some("true"));

    // Stage 1 and 2; a nonce with a trailing newline changes nothing, the exact one logs in once.
    let nonce = stage1(s, &alice).await;
    let r = stage2(s, &alice, &format!("{nonce}\n")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("x-gpgauth-progress"), Some("stage2"));
    assert!(r.header("set-cookie").is_none());
    let r = stage2(s, &alice, &nonce).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["header"]["status"].as_str(), v["header"]["message"].as_str()),
        (Some("success"), Some("You are successfully logged in."))
    );
    assert_eq!(gpgauth_headers(&r), ["x-gpgauth-authenticated", "x-gpgauth-progress", "x-gpgauth-refer"]);
    assert_eq!(r.header("x-gpgauth-authenticated"), Some("true"));
    assert_eq!(r.header("x-gpgauth-progress"), Some("complete"));
    assert_eq!(v["body"]["id"], alice.id.as_str());
    assert_eq!(v["body"]["gpgkey"]["fingerprint"], alice.fpr.as_str());
    assert_eq!(r.headers.get_all("set-cookie").iter().count(), 1, "no csrfToken cookie at stage 2");
    let cookie = session_cookie(&r);

    // The token was used up.
    let replay = stage2(s, &alice, &nonce).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.header("set-cookie").is_none());

    assert_eq!(get(s, "/auth/is-authenticated.json", &cookie).await.status, StatusCode::OK);
    assert_eq!(get(s, "/auth/checkSession.json?api-version=v2", &cookie).await.status, StatusCode::OK);
    let anonymous = s.get("/auth/is-authenticated.json").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json()["header"]["message"], "Authentication is required to continue");
    assert_eq!(get(s, "/auth/is-authenticated.json", "forged").await.status, StatusCode::UNAUTHORIZED);

    let out = get(s, "/auth/logout.json", &cookie).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.json()["header"]["message"], "You are successfully logged out.");
    assert_eq!(out.header("set-cookie"), Some("passbolt_session=; Path=/; Max-Age=0"));
    assert_eq!(get(s, "/auth/is-authenticated.json", &cookie).await.status, StatusCode::UNAUTHORIZED);
}

async fn unknown_keys_and_other_users_tokens_are_refused(s: &TestServer) {
    let alice = register(s, "alice").await;
    let bob = register(s, "bob").await;
    for body in [
        json!({"gpg_auth": {"keyid": "0123456789ABCDEF0123456789ABCDEF01234567"}}),
        json!({"gpg_auth": {"keyid": "short"}}),
        json!({"nothing": true}),
    ] {
        let r = post(s, "/auth/login.json", &body, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let v = r.json();
        assert_eq!(
            (v["header"]["message"].as_str(), v["header"]["code"].as_u64()),
            (Some(NO_USER), Some(400))
        );
        assert_eq!(r.header("x-gpgauth-error"), Some("true"));
        assert_eq!(r.header("x-gpgauth-progress"), Some("stage0"));
        assert_eq!(r.header("x-gpgauth-debug"), Some(NO_USER));
    }
    let r = s.request(Method::POST, "/auth/login.json", &[], Bytes::from_static(b"[1]")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["header"]["message"], "The request body should be a valid JSON object.");

    // Alice's token presented under Bob's key is used up: Alice cannot use it afterwards.
    let nonce = stage1(s, &alice).await;
    assert_eq!(stage2(s, &bob, &nonce).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(stage2(s, &alice, &nonce).await.status, StatusCode::BAD_REQUEST);
}

async fn an_expired_login_token_is_refused(s: &TestServer) {
    let alice = register(s, "alice").await;
    let nonce = stage1(s, &alice).await;
    s.clock.advance(301);
    assert_eq!(stage2(s, &alice, &nonce).await.status, StatusCode::BAD_REQUEST);
}

async fn disabling_a_user_ends_their_session_and_their_logins(s: &TestServer) {
    let alice = register(s, "alice").await;
    let nonce = stage1(s, &alice).await;
    let cookie = session_cookie(&stage2(s, &alice, &nonce).await);
    assert_eq!(get(s, "/auth/is-authenticated.json", &cookie).await.status, StatusCode::OK);
    s.app.domain.team.set_disabled("alice", true).await.unwrap();
    assert_eq!(get(s, "/auth/is-authenticated.json", &cookie).await.status, StatusCode::UNAUTHORIZED);
    let r = post(s, "/auth/login.json", &json!({"gpg_auth": {"keyid": alice.fpr}}), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["header"]["message"], NO_USER);
    s.app.domain.team.set_disabled("alice", false).await.unwrap();
    assert_eq!(get(s, "/auth/is-authenticated.json", &cookie).await.status, StatusCode::OK, "enabled again");
}

async fn sessions_end_when_idle_and_at_their_maximum_age(s: &TestServer) {
    let alice = register(s, "alice").await;
    let cookie = session_cookie(&stage2(s, &alice, &stage1(s, &alice).await).await);
    s.clock.advance(3599);
    assert_eq!(get(s, "/auth/is-authenticated.json", &cookie).await.status, StatusCode::OK);
    s.clock.advance(3600);
    assert_eq!(get(s, "/auth/is-authenticated.json", &cookie).await.status, StatusCode::UNAUTHORIZED, "idle");

    let cookie = session_cookie(&stage2(s, &alice, &stage1(s, &alice).await).await);
    for _ in 0..24 {
        assert_eq!(get(s, "/auth/is-authenticated.json", &cookie).await.status, StatusCode::OK);
        s.clock.advance(3599);
    }
    s.clock.advance(24);
    assert_eq!(
        get(s, "/auth/is-authenticated.json", &cookie).await.status,
        StatusCode::UNAUTHORIZED,
        "max age"
    );
}

async fn post_logout_with_a_session_needs_the_csrf_token(s: &TestServer) {
    let alice = register(s, "alice").await;
    let cookie = session_cookie(&stage2(s, &alice, &stage1(s, &alice).await).await);
    let r = post(s, "/auth/logout.json", &json!({}), Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(s, "/auth/is-authenticated.json", &cookie).await.status,
        StatusCode::OK,
        "nothing changed"
    );
    assert_eq!(post(s, "/auth/logout.json", &json!({}), None).await.status, StatusCode::OK);
}

crate::per_backend!(
    a_user_logs_in_through_the_three_stages_and_the_session_works_until_logout,
    unknown_keys_and_other_users_tokens_are_refused,
    an_expired_login_token_is_refused,
    disabling_a_user_ends_their_session_and_their_logins,
    sessions_end_when_idle_and_at_their_maximum_age,
    post_logout_with_a_session_needs_the_csrf_token,
);

/// A stage-1 POST for `fpr`: a login POST the limits count.
async fn attempt(s: &TestServer, fpr: &str) -> Resp {
    post(s, "/auth/login.json", &json!({"gpg_auth": {"keyid": fpr}}), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_logins_are_limited_per_client_address_in_the_envelope() {
    let s = TestServer::start_with(lethe::store::Engine::Memory, &|raw: &mut lethe::config::RawConfig| {
        raw.rate_limit.team_logins = 3;
    })
    .await;
    let alice = register(&s, "alice").await;
    let bob = register(&s, "bob").await;
    for fpr in [&alice.fpr, &bob.fpr, &alice.fpr] {
        assert_eq!(attempt(&s, fpr).await.status, StatusCode::OK);
    }
    let r = attempt(&s, &bob.fpr).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    let v = r.json();
    assert_eq!((v["header"]["status"].as_str(), v["header"]["code"].as_u64()), (Some("error"), Some(429)));
    assert!(r.header("retry-after").is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_logins_are_limited_per_key_and_the_trail_never_names_the_key() {
    let s = TestServer::start_with(lethe::store::Engine::Memory, &|raw: &mut lethe::config::RawConfig| {
        raw.rate_limit.team_logins_per_key = 2;
    })
    .await;
    let alice = register(&s, "alice").await;
    let bob = register(&s, "bob").await;
    assert_eq!(attempt(&s, &alice.fpr).await.status, StatusCode::OK);
    assert_eq!(attempt(&s, &alice.fpr.to_lowercase()).await.status, StatusCode::OK);
    assert_eq!(
        attempt(&s, &alice.fpr).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the same key in any case"
    );
    assert_eq!(attempt(&s, &bob.fpr).await.status, StatusCode::OK, "another key has its own budget");
    let lines = s.stop_with_audit().await;
    let refused: Vec<&Value> = lines.iter().filter(|l| l["reason"] == "rate_limited_key").collect();
    assert_eq!(refused.len(), 1, "{lines:?}");
    let text = serde_json::to_string(&lines).unwrap();
    assert!(
        !text.to_uppercase().contains(&alice.fpr) && !text.to_uppercase().contains(&alice.fpr[24..]),
        "{text}"
    );
}
