//! The user routes over HTTP (`team.md` §3.6, §4.4): the user object the clients need, the CSRF
//! cookie delivered on the first authenticated GET (never at stage 2), filters, visibility of
//! disabled users, roles, groups, api-version, and 401 without a session.

use hyper::body::Bytes;
use hyper::{Method, StatusCode};

use crate::support::{Resp, TestServer};
use crate::team_login::{register, session_cookie, stage1, stage2};

async fn get(s: &TestServer, path: &str, cookies: &str) -> Resp {
    s.request(Method::GET, path, &[("cookie", cookies)], Bytes::new()).await
}

async fn login(s: &TestServer, name: &str) -> (crate::team_login::Person, String) {
    let p = register(s, name).await;
    let nonce = stage1(s, &p).await;
    let cookie = session_cookie(&stage2(s, &p, &nonce).await);
    (p, format!("passbolt_session={cookie}"))
}

async fn users_me_delivers_the_csrf_cookie_and_the_full_user_object(s: &TestServer) {
    let (alice, jar) = login(s, "alice").await;
    let r = get(s, "/users/me.json", &jar).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let set = r.header("set-cookie").expect("the CSRF cookie on the first authenticated GET");
    assert!(
        set.starts_with("csrfToken=") && set.ends_with("; Path=/; SameSite=Lax") && !set.contains("HttpOnly"),
        "{set}"
    );
    let token = set.strip_prefix("csrfToken=").unwrap().split(';').next().unwrap().to_owned();
    assert!(token.len() >= 32);
    let v = r.json();
    let u = &v["body"];
    assert_eq!(u["id"], alice.id.as_str());
    for field in
        ["id", "created", "active", "deleted", "modified", "username", "role_id", "profile", "last_logged_in"]
    {
        assert!(u.get(field).is_some(), "user lacks {field}: {u}");
    }
    for field in [
        "id",
        "armored_key",
        "created",
        "key_created",
        "bits",
        "deleted",
        "modified",
        "key_id",
        "fingerprint",
        "type",
        "expires",
    ] {
        assert!(u["gpgkey"].get(field).is_some(), "gpgkey lacks {field}: {u}");
    }
    assert_eq!(u["gpgkey"]["fingerprint"], alice.fpr.as_str());
    assert_eq!(u["gpgkey"]["key_id"], &alice.fpr[24..]);
    assert_eq!((u["gpgkey"]["type"].as_str(), u["gpgkey"]["bits"].as_u64()), (Some("EdDSA"), Some(256)));
    assert_eq!(u["gpgkey"]["uid"], "alice <alice@example.com>");
    assert_eq!(u["role"]["name"], "user");
    assert_eq!(u["role_id"], u["role"]["id"]);
    assert_eq!(u["groups_users"], serde_json::json!([]));
    assert!(u["created"].as_str().unwrap().ends_with("+00:00"));

    // Carrying the right cookie, no new one; the csrf-token route says the same token.
    let both = format!("{jar}; csrfToken={token}");
    let again = get(s, "/users/csrf-token.json", &both).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.header("set-cookie").is_none());
    assert_eq!(again.json()["body"], token.as_str());
    let stale = get(s, "/users/me.json", &format!("{jar}; csrfToken=old")).await;
    assert!(stale.header("set-cookie").is_some(), "a wrong cookie is replaced");
}

async fn users_json_lists_filters_and_hides_disabled_users_from_non_admins(s: &TestServer) {
    let (_alice, jar) = login(s, "alice").await;
    let bob = register(s, "bob").await;
    let r = get(s, "/users.json?contain%5Bpermission%5D=True&contain[user]=1", &jar).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let names: Vec<String> = r.json()["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let r = get(s, "/users.json?filter%5Bsearch%5D=BO", &jar).await;
    assert_eq!(r.json()["body"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["body"][0]["id"], bob.id.as_str());
    assert_eq!(get(s, &format!("/users/{}.json", bob.id.to_uppercase()), &jar).await.status, StatusCode::OK);

    s.app.domain.team.set_disabled("bob", true).await.unwrap();
    let r = get(s, "/users.json", &jar).await;
    assert_eq!(r.json()["body"].as_array().unwrap().len(), 1, "a non-admin no longer sees bob");
    let r = get(s, &format!("/users/{}.json", bob.id), &jar).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["header"]["message"], "The user does not exist.");

    let r = get(s, "/users/not-an-id.json", &jar).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["header"]["message"], "The user identifier should be a valid UUID or \"me\".");
    let r = get(s, "/users.json?filter[has-access]=a&filter[has-access][]=b", &jar).await;
    assert_eq!(r.json()["header"]["message"], "Multiple has-access filters are not supported.");
    let r = get(s, "/users.json?filter[has-access]=nope", &jar).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(s, "/users.json?filter[has-access]=669f8c64-242a-59fb-92fc-81f660975fd3", &jar).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn roles_groups_and_the_api_version_rule(s: &TestServer) {
    let (_alice, jar) = login(s, "alice").await;
    let r = get(s, "/roles.json", &jar).await;
    let roles: Vec<String> =
        r.json()["body"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(roles, ["admin", "user"]);
    let r = get(s, "/groups.json", &jar).await;
    assert_eq!((r.status, r.json()["body"].clone()), (StatusCode::OK, serde_json::json!([])));
    assert_eq!(get(s, "/groups/x.json", &jar).await.status, StatusCode::NOT_FOUND);
    let r = get(s, "/users/me.json?api-version=v1", &jar).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["header"]["message"], "API v1 support is deprecated in this version.");
    assert_eq!(get(s, "/users/me.json?api-version=2", &jar).await.status, StatusCode::OK);
}

async fn user_routes_need_a_session(s: &TestServer) {
    register(s, "alice").await;
    for path in [
        "/users.json",
        "/users/me.json",
        "/users/not-an-id.json",
        "/roles.json",
        "/groups.json",
        "/users/csrf-token.json",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.json()["header"]["message"], "Authentication is required to continue");
        assert!(r.header("set-cookie").is_none());
    }
}

crate::per_backend!(
    users_me_delivers_the_csrf_cookie_and_the_full_user_object,
    users_json_lists_filters_and_hides_disabled_users_from_non_admins,
    roles_groups_and_the_api_version_rule,
    user_routes_need_a_session,
);
