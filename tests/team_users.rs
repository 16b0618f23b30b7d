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
    an_admin_adds_a_user_over_the_api_with_csrf_and_validation,
    resource_types_have_passbolts_ids_and_definitions,
);

/// Logs in and fetches the CSRF token as the clients do (`GET /users/me.json`).
async fn login_with_csrf(s: &TestServer, name: &str, admin: bool) -> (String, String) {
    let gpg = crate::support::gpg::Gpg::new();
    let fpr = gpg.gen_key(&format!("{name} <{name}@example.com>"), "future-default", "never");
    let armored = gpg.export_public(&fpr);
    let new = lethe::domain::team::users::NewUser {
        username: name,
        armored_key: &armored,
        admin,
        first_name: None,
        last_name: None,
    };
    let user = s.app.domain.team.add_user(new).await.unwrap();
    let p = crate::team_login::Person { gpg, fpr, id: user.id };
    let nonce = stage1(s, &p).await;
    let jar = format!("passbolt_session={}", session_cookie(&stage2(s, &p, &nonce).await));
    let me = get(s, "/users/me.json", &jar).await;
    let token = me
        .header("set-cookie")
        .unwrap()
        .strip_prefix("csrfToken=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (jar, token)
}

async fn post_json(
    s: &TestServer,
    path: &str,
    jar: &str,
    csrf: Option<&str>,
    body: &serde_json::Value,
) -> Resp {
    let mut headers = vec![("cookie", jar), ("content-type", "application/json")];
    if let Some(t) = csrf {
        headers.push(("x-csrf-token", t));
    }
    s.request(Method::POST, path, &headers, Bytes::from(body.to_string())).await
}

async fn an_admin_adds_a_user_over_the_api_with_csrf_and_validation(s: &TestServer) {
    let (jar, csrf) = login_with_csrf(s, "root", true).await;
    let gpg = crate::support::gpg::Gpg::new();
    let fpr = gpg.gen_key("Carol <carol@example.com>", "rsa3072", "never");
    let key = gpg.export_public(&fpr);
    let good = serde_json::json!({"username": "carol", "profile": {"first_name": "Carol", "last_name": "C"}, "gpgkey": {"armored_key": key}});

    let r = post_json(s, "/users.json", &jar, None, &good).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF header");
    let r = post_json(s, "/users.json", &jar, Some("wrong"), &good).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["header"]["message"],
        "CSRF token from either the request body or request headers did not match or is missing."
    );
    assert!(s.app.domain.team.user_by_name("carol").await.unwrap().is_none(), "nothing changed");
    let r = s.request(Method::POST, "/users.json", &[], Bytes::from(good.to_string())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "401 before CSRF");

    let r = post_json(s, "/users.json", &jar, Some(&csrf), &serde_json::json!({"gpgkey": {}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert!(v["body"]["username"]["_required"].is_string(), "{v}");
    assert!(v["body"]["gpgkey"]["armored_key"]["_required"].is_string(), "{v}");
    let r = post_json(
        s,
        "/users.json",
        &jar,
        Some(&csrf),
        &serde_json::json!({"username": "x", "gpgkey": {"armored_key": gpg.export_secret(&fpr)}}),
    )
    .await;
    assert!(r.json()["body"]["gpgkey"]["armored_key"]["isValidPublicKey"].is_string(), "{}", r.text());
    assert!(!r.text().contains("PRIVATE KEY BLOCK"));
    let r = post_json(
        s,
        "/users.json",
        &jar,
        Some(&csrf),
        &serde_json::json!({"username": "ROOT", "gpgkey": {"armored_key": key}}),
    )
    .await;
    assert!(r.json()["body"]["username"]["uniqueUsername"].is_string(), "{}", r.text());
    let r = post_json(
        s,
        "/users.json",
        &jar,
        Some(&csrf),
        &serde_json::json!({"username": "c", "role_id": "nope", "gpgkey": {"armored_key": key}}),
    )
    .await;
    assert!(r.json()["body"]["role_id"]["inList"].is_string(), "{}", r.text());

    let r = post_json(s, "/users.json", &jar, Some(&csrf), &good).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["header"]["message"], "The user has been added successfully.");
    assert_eq!(v["body"]["profile"]["first_name"], "Carol");
    assert_eq!(
        (v["body"]["gpgkey"]["type"].as_str(), v["body"]["gpgkey"]["bits"].as_u64()),
        (Some("RSA"), Some(3072))
    );
    let r = post_json(
        s,
        "/users.json",
        &jar,
        Some(&csrf),
        &serde_json::json!({"username": "carol2", "gpgkey": {"armored_key": key}}),
    )
    .await;
    assert!(r.json()["body"]["gpgkey"]["armored_key"]["uniqueFingerprint"].is_string(), "{}", r.text());
    assert!(s.app.domain.team.user_by_name("carol").await.unwrap().is_some());

    let (user_jar, user_csrf) = login_with_csrf(s, "dave", false).await;
    let r = post_json(
        s,
        "/users.json",
        &user_jar,
        Some(&user_csrf),
        &serde_json::json!({"username": "eve", "gpgkey": {"armored_key": key}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["header"]["message"], "You are not authorized to access that location.");
}

async fn resource_types_have_passbolts_ids_and_definitions(s: &TestServer) {
    let (_alice, jar) = login(s, "alice").await;
    assert_eq!(s.get("/resource-types.json").await.status, StatusCode::UNAUTHORIZED);
    let r = get(s, "/resource-types.json", &jar).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json()["body"].as_array().unwrap().clone();
    let ids: Vec<(&str, &str)> =
        list.iter().map(|t| (t["id"].as_str().unwrap(), t["slug"].as_str().unwrap())).collect();
    assert_eq!(
        ids,
        [
            ("669f8c64-242a-59fb-92fc-81f660975fd3", "password-string"),
            ("a28a04cd-6f53-518a-967c-9963bf9cec51", "password-and-description"),
        ]
    );
    assert!(list[0]["definition"].is_object(), "an object in the list");
    let r = get(s, "/resource-types/A28A04CD-6F53-518A-967C-9963BF9CEC51.json", &jar).await;
    let one = r.json()["body"].clone();
    let definition: serde_json::Value =
        serde_json::from_str(one["definition"].as_str().expect("a string in the single view")).unwrap();
    let keys: Vec<&String> = definition["secret"]["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["description", "password"]);
    assert_eq!(get(s, "/resource-types/nope.json", &jar).await.status, StatusCode::BAD_REQUEST);
    let r = get(s, "/resource-types/00000000-0000-4000-8000-000000000000.json", &jar).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["header"]["message"], "The resource type does not exist.");
}
