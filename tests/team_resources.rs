//! Resources, secrets and sharing over HTTP (`team.md` §6–§7) with real gpg keys and messages: the
//! resource object the clients read, the strict check of every secret with the contract's error
//! tree, the permission levels, shares that carry exactly the secrets of who gains access, the
//! invariant under 20 concurrent changes of one resource, and sealing at rest.

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Resp, TestServer, join_all};
use crate::team_login::{Person, register, session_cookie, stage1, stage2};

pub(crate) struct Member {
    pub p: Person,
    pub jar: String,
    pub csrf: String,
}

impl Member {
    pub fn encrypt(&self, plaintext: &str) -> String {
        self.p.gpg.encrypt_to(&self.p.fpr, plaintext.as_bytes())
    }

    pub fn id(&self) -> &str {
        &self.p.id
    }
}

/// Registers, logs in and picks up the CSRF token from `/users/me.json`, as the clients do.
pub(crate) async fn member(s: &TestServer, name: &str) -> Member {
    let p = register(s, name).await;
    let nonce = stage1(s, &p).await;
    let jar = format!("passbolt_session={}", session_cookie(&stage2(s, &p, &nonce).await));
    let me = s.request(Method::GET, "/users/me.json", &[("cookie", &jar)], Bytes::new()).await;
    let set = me.header("set-cookie").expect("the CSRF cookie");
    let csrf = set.strip_prefix("csrfToken=").unwrap().split(';').next().unwrap().to_owned();
    Member { p, jar, csrf }
}

pub(crate) async fn call(
    s: &TestServer,
    m: &Member,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Resp {
    let headers = [
        ("cookie", m.jar.as_str()),
        ("x-csrf-token", m.csrf.as_str()),
        ("content-type", "application/json"),
        ("accept", "*/*"),
    ];
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    s.request(method, path, &headers, body).await
}

async fn create(s: &TestServer, m: &Member, name: &str, password: &str) -> Value {
    let body = json!({
        "name": name, "username": "root", "uri": "https://db.example.com", "description": "",
        "secrets": [{"data": m.encrypt(password)}],
    });
    let r = call(s, m, Method::POST, "/resources.json", Some(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["body"].clone()
}

fn message(r: &Resp) -> String {
    r.json()["header"]["message"].as_str().unwrap_or_default().to_owned()
}

async fn resources_are_created_listed_viewed_updated_and_soft_deleted(s: &TestServer) {
    let alice = member(s, "alice").await;
    let bob = member(s, "bob").await;
    let body = json!({
        "name": "db", "username": "root", "uri": "https://db.example.com", "description": "",
        "is_new": true, "permissions": [{"aro": "User", "aro_foreign_key": bob.id(), "type": 15}],
        "secrets": [{"data": alice.encrypt("s3cret"), "user_id": alice.id()}],
    });
    let r = call(s, &alice, Method::POST, "/resources.json", Some(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(message(&r), "The resource has been added successfully.");
    let res = r.json()["body"].clone();
    let id = res["id"].as_str().unwrap().to_owned();
    for field in [
        "id",
        "created",
        "created_by",
        "deleted",
        "description",
        "modified",
        "modified_by",
        "name",
        "uri",
        "username",
        "resource_type_id",
        "folder_parent_id",
        "personal",
        "expired",
        "creator",
        "modifier",
        "favorite",
        "permission",
        "secrets",
    ] {
        assert!(res.get(field).is_some(), "the resource lacks {field}: {res}");
    }
    assert_eq!(res["description"], "", "\"\" stays \"\"");
    assert_eq!(res["resource_type_id"], "669f8c64-242a-59fb-92fc-81f660975fd3");
    assert_eq!((res["personal"].as_bool(), res["deleted"].as_bool()), (Some(true), Some(false)));
    assert_eq!(res["permission"]["type"], 15);
    assert_eq!(res["creator"]["id"], alice.id());
    assert!(res["created"].as_str().unwrap().ends_with("+00:00"));
    let data = res["secrets"][0]["data"].as_str().unwrap();
    assert_eq!(alice.p.gpg.decrypt(data), b"s3cret");

    // The `permissions` field of a create is ignored: bob sees nothing.
    let r = call(s, &bob, Method::GET, "/resources.json", None).await;
    assert_eq!(r.json()["body"], json!([]));
    let r = call(s, &bob, Method::GET, &format!("/resources/{id}.json"), None).await;
    assert_eq!((r.status, message(&r)), (StatusCode::NOT_FOUND, "The resource does not exist.".into()));

    create(s, &alice, "another", "pw2").await;
    let r = call(
        s,
        &alice,
        Method::GET,
        "/resources.json?contain[secret]=1&contain[permissions.user.profile]=1",
        None,
    )
    .await;
    let list = r.json()["body"].as_array().unwrap().clone();
    let names: Vec<&str> = list.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["another", "db"]);
    assert_eq!(list[1]["secrets"][0]["user_id"], alice.id());
    assert_eq!(list[1]["permissions"][0]["user"]["username"], "alice");
    let r = call(
        s,
        &alice,
        Method::GET,
        &format!("/resources.json?filter[has-id][]={}", id.to_uppercase()),
        None,
    )
    .await;
    assert_eq!(r.json()["body"].as_array().unwrap().len(), 1);
    let r = call(s, &alice, Method::GET, "/resources.json?filter[is-shared-with-me]=1", None).await;
    assert_eq!(r.json()["body"], json!([]));
    let r = call(s, &alice, Method::GET, "/resources.json?filter[is-owned-by-me]=1", None).await;
    assert_eq!(r.json()["body"].as_array().unwrap().len(), 2);
    let r = call(s, &alice, Method::GET, "/resources.json?contain[secret]=maybe", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // One resource, with the resource type decoded; upper-case ids find it.
    let r = call(
        s,
        &alice,
        Method::GET,
        &format!("/resources/{}.json?contain[resource-type]=1", id.to_uppercase()),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["body"]["resource_type"]["slug"], "password-string");
    let r = call(s, &alice, Method::GET, "/resources/nope.json", None).await;
    assert_eq!(
        (r.status, message(&r)),
        (StatusCode::BAD_REQUEST, "The resource identifier should be a valid UUID.".into())
    );

    // Update: absent fields keep their value, null clears an optional one, "" is no name.
    let path = format!("/resources/{id}.json");
    let r = call(s, &alice, Method::PUT, &path, Some(&json!({"name": "db2", "uri": null}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(message(&r), "The resource has been updated successfully.");
    let v = r.json()["body"].clone();
    assert_eq!(
        (v["name"].as_str(), v["uri"].is_null(), v["username"].as_str()),
        (Some("db2"), true, Some("root"))
    );
    let r = call(s, &alice, Method::PUT, &path, Some(&json!({"name": ""}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["body"]["name"]["_empty"].is_string(), "{}", r.text());
    let other_type = json!({"resource_type_id": "a28a04cd-6f53-518a-967c-9963bf9cec51"});
    let r = call(s, &alice, Method::PUT, &path, Some(&other_type)).await;
    assert!(r.json()["body"]["resource_type_id"]["secretsRequired"].is_string(), "{}", r.text());
    let r = call(
        s,
        &alice,
        Method::PUT,
        &path,
        Some(&json!({"secrets": [{"user_id": alice.id(), "data": alice.encrypt("new")}]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(s, &alice, Method::GET, &format!("/secrets/resource/{id}.json"), None).await;
    assert_eq!(alice.p.gpg.decrypt(r.json()["body"]["data"].as_str().unwrap()), b"new");

    // Soft delete: gone for every route, twice is 404.
    let r = call(s, &alice, Method::DELETE, &path, None).await;
    assert_eq!(
        (r.status, message(&r)),
        (StatusCode::OK, "The resource has been deleted successfully.".into())
    );
    assert_eq!(r.json()["body"], Value::Null);
    for (method, p) in [
        (Method::GET, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::GET, format!("/secrets/resource/{id}.json")),
    ] {
        assert_eq!(call(s, &alice, method, &p, None).await.status, StatusCode::NOT_FOUND, "{p}");
    }
    let r = call(s, &alice, Method::GET, "/resources.json", None).await;
    assert_eq!(r.json()["body"].as_array().unwrap().len(), 1);
}

async fn resource_routes_refuse_in_the_contracts_order(s: &TestServer) {
    let alice = member(s, "alice").await;
    let res = create(s, &alice, "db", "pw").await;
    let path = format!("/resources/{}.json", res["id"].as_str().unwrap());
    assert_eq!(s.get("/resources.json").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get(&path).await.status, StatusCode::UNAUTHORIZED);
    let no_csrf = s.request(Method::DELETE, &path, &[("cookie", alice.jar.as_str())], Bytes::new()).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let r = call(s, &alice, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "the refused delete changed nothing");
    let r = call(
        s,
        &alice,
        Method::POST,
        "/resources.json",
        Some(&json!({"name": 5, "username": [], "secrets": {}, "folder_parent_id": "x"})),
    )
    .await;
    assert_eq!(
        (r.status, message(&r)),
        (StatusCode::BAD_REQUEST, "Could not validate resource data.".into())
    );
    let tree = r.json()["body"].clone();
    assert!(tree["name"]["type"].is_string() && tree["username"]["type"].is_string(), "{tree}");
    assert!(
        tree["secrets"]["type"].is_string() && tree["folder_parent_id"]["folder_exists"].is_string(),
        "{tree}"
    );
    let r =
        call(s, &alice, Method::POST, "/resources.json", Some(&json!({"name": "x", "secrets": []}))).await;
    assert!(r.json()["body"]["secrets"]["_empty"].is_string(), "{}", r.text());
    let r = call(s, &alice, Method::POST, "/resources.json", Some(&json!({"name": "x"}))).await;
    assert!(r.json()["body"]["secrets"]["_required"].is_string(), "{}", r.text());
    let two = json!({"name": "x", "secrets": [{"data": alice.encrypt("a")}, {"data": alice.encrypt("b")}]});
    let r = call(s, &alice, Method::POST, "/resources.json", Some(&two)).await;
    assert!(r.json()["body"]["secrets"]["hasAtMost"].is_string(), "{}", r.text());
    let bad_type = json!({"name": "x", "resource_type_id": "00000000-0000-4000-8000-000000000000", "secrets": [{"data": alice.encrypt("a")}]});
    let r = call(s, &alice, Method::POST, "/resources.json", Some(&bad_type)).await;
    assert!(r.json()["body"]["resource_type_id"]["resource_type_exists"].is_string(), "{}", r.text());
    let long = json!({"name": "n".repeat(256), "secrets": [{"data": alice.encrypt("a")}]});
    let r = call(s, &alice, Method::POST, "/resources.json", Some(&long)).await;
    assert!(r.json()["body"]["name"]["maxLength"].is_string(), "{}", r.text());
    let r = call(s, &alice, Method::POST, "/resources.json", Some(&json!([1]))).await;
    assert_eq!(message(&r), "The request body should be a valid JSON object.");
    let r = call(s, &alice, Method::GET, "/resources.json", None).await;
    assert_eq!(r.json()["body"].as_array().unwrap().len(), 1, "no refused create made a resource");
}

async fn every_secret_is_checked_to_be_a_message_to_the_key_of_its_user(s: &TestServer) {
    let alice = member(s, "alice").await;
    let bob = member(s, "bob").await;
    let signed = alice.p.gpg.sign(b"pw");
    let cases: Vec<(String, &str)> = vec![
        ("not armored at all".into(), "isValidOpenPGPMessage"),
        (alice.p.gpg.encrypt_symmetric("pass", b"pw"), "isValidOpenPGPMessage"),
        (signed, "isValidOpenPGPMessage"),
        (alice.p.gpg.export_public(&alice.p.fpr), "isValidOpenPGPMessage"),
        (alice.encrypt("pw").replace('\n', "\n\u{e9}"), "isValidOpenPGPMessage"),
        (format!("{}{}", alice.encrypt("a"), alice.encrypt("b")), "isValidOpenPGPMessage"),
        (bob.encrypt("pw"), "isEncryptedToUser"),
        (alice.p.gpg.encrypt_to_hidden(&alice.p.fpr, b"pw"), "isEncryptedToUser"),
        (String::new(), "_empty"),
        (format!("{}{}", alice.encrypt("pw"), " ".repeat(70_000)), "maxLength"),
    ];
    for (data, rule) in cases {
        let r = call(
            s,
            &alice,
            Method::POST,
            "/resources.json",
            Some(&json!({"name": "x", "secrets": [{"data": data}]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{rule}: {}", r.text());
        assert!(r.json()["body"]["secrets"]["0"]["data"][rule].is_string(), "{rule}: {}", r.text());
    }
    let r = call(
        s,
        &alice,
        Method::POST,
        "/resources.json",
        Some(&json!({"name": "x", "secrets": [{"data": 5}]})),
    )
    .await;
    assert!(r.json()["body"]["secrets"]["0"]["data"]["type"].is_string(), "{}", r.text());
    let r = call(
        s,
        &alice,
        Method::POST,
        "/resources.json",
        Some(&json!({"name": "x", "secrets": [{"data": bob.encrypt("pw"), "user_id": bob.id()}]})),
    )
    .await;
    assert!(r.json()["body"]["secrets"]["0"]["user_id"]["isOwner"].is_string(), "{}", r.text());
    // A message to several keys, one of them the user's (gpg's encrypt-to), is fine; CRLF too.
    alice.p.gpg.run(&["--import"], bob.p.gpg.export_public(&bob.p.fpr).as_bytes());
    let both = alice.p.gpg.run(
        &["--trust-model", "always", "--armor", "--encrypt", "-r", &bob.p.fpr, "-r", &alice.p.fpr],
        b"pw",
    );
    let crlf = String::from_utf8(both).unwrap().replace('\n', "\r\n");
    let r = call(
        s,
        &alice,
        Method::POST,
        "/resources.json",
        Some(&json!({"name": "x", "secrets": [{"data": crlf}]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = r.json()["body"]["id"].as_str().unwrap().to_owned();
    let r = call(s, &alice, Method::GET, &format!("/secrets/resource/{id}.json"), None).await;
    let secret = r.json()["body"].clone();
    assert_eq!(secret["data"], crlf.as_str(), "returned byte for byte");
    for field in ["id", "user_id", "resource_id", "data", "created", "modified"] {
        assert!(secret.get(field).is_some(), "{field}");
    }
    let r = call(s, &bob, Method::GET, &format!("/secrets/resource/{id}.json"), None).await;
    assert_eq!((r.status, message(&r)), (StatusCode::NOT_FOUND, "The secret does not exist.".into()));
    let r = call(s, &alice, Method::GET, "/secrets/resource/00000000-0000-4000-8000-000000000000.json", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(s, &alice, Method::GET, "/resources.json", None).await;
    assert_eq!(r.json()["body"].as_array().unwrap().len(), 1, "no refused secret made a resource");
}

fn add(user: &Member, kind: u8) -> Value {
    json!({"aro": "User", "aro_foreign_key": user.id(), "type": kind, "is_new": true})
}

async fn shares_carry_exactly_the_secrets_of_the_users_who_gain_access(s: &TestServer) {
    let alice = member(s, "alice").await;
    let bob = member(s, "bob").await;
    let carol = member(s, "carol").await;
    let res = create(s, &alice, "db", "pw").await;
    let id = res["id"].as_str().unwrap().to_owned();
    let (share, simulate) =
        (format!("/share/resource/{id}.json"), format!("/share/simulate/resource/{id}.json"));

    let r = call(s, &alice, Method::POST, &simulate, Some(&json!({"permissions": [add(&bob, 1)]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["body"], json!({"changes": {"added": [{"User": {"id": bob.id()}}], "removed": []}}));
    assert_eq!(
        call(s, &bob, Method::GET, &format!("/resources/{id}.json"), None).await.status,
        StatusCode::NOT_FOUND,
        "a dry run changes nothing"
    );

    // Missing, extra (a user who already has access) and wrongly encrypted secrets are refused whole.
    let refusals = [
        json!({"permissions": [add(&bob, 1)]}),
        json!({"permissions": [add(&bob, 1)], "secrets": [{"user_id": bob.id(), "data": bob.encrypt("pw")}, {"user_id": alice.id(), "data": alice.encrypt("pw")}]}),
        json!({"permissions": [add(&bob, 1)], "secrets": [{"user_id": bob.id(), "data": bob.encrypt("pw")}, {"user_id": bob.id(), "data": bob.encrypt("pw")}]}),
    ];
    for body in &refusals {
        let r = call(s, &alice, Method::PUT, &share, Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert!(r.json()["body"]["secrets"]["secrets_provided"].is_string(), "{}", r.text());
    }
    let wrong = json!({"permissions": [add(&bob, 1)], "secrets": [{"user_id": bob.id(), "data": alice.encrypt("pw")}]});
    let r = call(s, &alice, Method::PUT, &share, Some(&wrong)).await;
    assert!(r.json()["body"]["secrets"]["0"]["data"]["isEncryptedToUser"].is_string(), "{}", r.text());
    let bad = json!({"permissions": [
        {"aro": "Group", "aro_foreign_key": bob.id(), "type": 1},
        {"aro": "User", "aro_foreign_key": "nope", "type": 1},
        {"aro": "User", "aro_foreign_key": bob.id(), "type": "15"},
        {"id": "00000000-0000-4000-8000-000000000000", "type": 7},
    ]});
    let r = call(s, &alice, Method::PUT, &share, Some(&bad)).await;
    let t = r.json()["body"]["permissions"].clone();
    assert!(t["0"]["aro"]["inList"].is_string() && t["1"]["aro_foreign_key"]["uuid"].is_string(), "{t}");
    assert!(t["2"]["type"]["inList"].is_string(), "{t}");
    let r = call(s, &alice, Method::PUT, &share, Some(&json!({"permissions": [{"aro": "User", "aro_foreign_key": "00000000-0000-4000-8000-000000000000", "type": 1}]}))).await;
    assert!(
        r.json()["body"]["permissions"]["0"]["aro_foreign_key"]["aro_exists"].is_string(),
        "{}",
        r.text()
    );
    assert_eq!(
        call(s, &bob, Method::GET, &format!("/secrets/resource/{id}.json"), None).await.status,
        StatusCode::NOT_FOUND
    );

    let ok =
        json!({"permissions": [add(&bob, 1)], "secrets": [{"user_id": bob.id(), "data": bob.encrypt("pw")}]});
    let r = call(s, &alice, Method::PUT, &share, Some(&ok)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(s, &bob, Method::GET, &format!("/secrets/resource/{id}.json"), None).await;
    assert_eq!(bob.p.gpg.decrypt(r.json()["body"]["data"].as_str().unwrap()), b"pw");
    let r =
        call(s, &bob, Method::GET, "/resources.json?filter[is-shared-with-me]=1&contain[permission]=1", None)
            .await;
    assert_eq!(r.json()["body"][0]["permission"]["type"], 1);
    assert_eq!(r.json()["body"][0]["personal"], false);
    let r = call(s, &alice, Method::PUT, &share, Some(&json!({"permissions": [add(&bob, 7)]}))).await;
    assert!(
        r.json()["body"]["permissions"]["0"]["aro_foreign_key"]["permission_unique"].is_string(),
        "{}",
        r.text()
    );

    // A reader may not update, delete or share.
    let r = call(s, &bob, Method::PUT, &format!("/resources/{id}.json"), Some(&json!({"name": "x"}))).await;
    assert_eq!(
        (r.status, message(&r)),
        (StatusCode::FORBIDDEN, "You are not allowed to update this resource.".into())
    );
    let r = call(s, &bob, Method::DELETE, &format!("/resources/{id}.json"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(s, &bob, Method::POST, &simulate, Some(&json!({"permissions": []}))).await;
    assert_eq!(
        (r.status, message(&r)),
        (StatusCode::FORBIDDEN, "You are not authorized to share this resource.".into())
    );
    assert_eq!(call(s, &carol, Method::PUT, &share, Some(&json!({}))).await.status, StatusCode::NOT_FOUND);

    // has-access lists both; an update must carry exactly their two secrets.
    let r = call(s, &alice, Method::GET, &format!("/users.json?filter[has-access]={id}"), None).await;
    let users = r.json()["body"].clone();
    let names: Vec<&str> =
        users.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob"]);
    let only_alice = json!({"secrets": [{"user_id": alice.id(), "data": alice.encrypt("pw2")}]});
    let r = call(s, &alice, Method::PUT, &format!("/resources/{id}.json"), Some(&only_alice)).await;
    assert!(r.json()["body"]["secrets"]["secrets_provided"].is_string(), "{}", r.text());
    let both = json!({"secrets": [{"user_id": alice.id(), "data": alice.encrypt("pw2")}, {"user_id": bob.id(), "data": bob.encrypt("pw2")}]});
    let r = call(s, &alice, Method::PUT, &format!("/resources/{id}.json"), Some(&both)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(s, &bob, Method::GET, &format!("/secrets/resource/{id}.json"), None).await;
    assert_eq!(bob.p.gpg.decrypt(r.json()["body"]["data"].as_str().unwrap()), b"pw2");

    // Removing bob needs no secret and takes his; the last owner cannot leave.
    let perms = call(s, &alice, Method::GET, &format!("/resources/{id}.json?contain[permissions]=1"), None)
        .await
        .json()["body"]["permissions"]
        .clone();
    let perm_of = |user: &Member| {
        perms.as_array().unwrap().iter().find(|p| p["aro_foreign_key"] == user.id()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let r = call(
        s,
        &alice,
        Method::POST,
        &simulate,
        Some(&json!({"permissions": [{"id": perm_of(&bob), "delete": true}]})),
    )
    .await;
    assert_eq!(r.json()["body"]["changes"]["removed"], json!([{"User": {"id": bob.id()}}]));
    let r = call(
        s,
        &alice,
        Method::PUT,
        &share,
        Some(&json!({"permissions": [{"id": perm_of(&alice), "type": 1}]})),
    )
    .await;
    assert!(r.json()["body"]["permissions"]["at_least_one_owner"].is_string(), "{}", r.text());
    let r = call(
        s,
        &alice,
        Method::PUT,
        &share,
        Some(&json!({"permissions": [{"id": perm_of(&bob), "delete": true}]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        call(s, &bob, Method::GET, &format!("/secrets/resource/{id}.json"), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(call(s, &bob, Method::GET, "/resources.json", None).await.json()["body"], json!([]));
}

/// The invariant as the users see it: whoever has a permission reads a secret that opens with their
/// key, whoever has none reads nothing, and someone owns it.
async fn assert_invariant(s: &TestServer, owner: &Member, all: &[&Member], id: &str) {
    let r = call(s, owner, Method::GET, &format!("/resources/{id}.json?contain[permissions]=1"), None).await;
    let perms = r.json()["body"]["permissions"].as_array().unwrap().clone();
    assert!(perms.iter().any(|p| p["type"] == 15), "an owner remains");
    for m in all {
        let has = perms.iter().any(|p| p["aro_foreign_key"] == m.id());
        let r = call(s, m, Method::GET, &format!("/secrets/resource/{id}.json"), None).await;
        assert_eq!(r.status == StatusCode::OK, has, "{}: permission {has}, secret {}", m.id(), r.status);
        if has {
            m.p.gpg.decrypt(r.json()["body"]["data"].as_str().unwrap());
        }
    }
}

async fn concurrent_shares_and_updates_of_one_resource_keep_the_invariant(s: &TestServer) {
    let alice = member(s, "alice").await;
    let mut others = Vec::new();
    for i in 0..10 {
        others.push(member(s, &format!("user{i}")).await);
    }
    let id = create(s, &alice, "db", "pw").await["id"].as_str().unwrap().to_owned();
    let share = format!("/share/resource/{id}.json");
    let update = format!("/resources/{id}.json");
    let mut requests = Vec::new();
    for (i, m) in others.iter().enumerate() {
        let body =
            json!({"permissions": [add(m, 1)], "secrets": [{"user_id": m.id(), "data": m.encrypt("pw")}]});
        requests.push((Method::PUT, share.clone(), body, true));
        let body = if i % 2 == 0 {
            json!({"name": format!("db{i}")})
        } else {
            json!({"secrets": [{"user_id": alice.id(), "data": alice.encrypt("pw")}]})
        };
        requests.push((Method::PUT, update.clone(), body, i % 2 == 0));
    }
    let replies =
        join_all(requests.iter().map(|(m, p, b, _)| call(s, &alice, m.clone(), p, Some(b))).collect()).await;
    let mut shared = 0;
    for ((_, path, _, always_valid), r) in requests.iter().zip(&replies) {
        let v = r.json();
        let clean = match r.status {
            StatusCode::OK => true,
            StatusCode::CONFLICT => true,
            // An alice-only secret update is refused once someone else has access.
            StatusCode::BAD_REQUEST => !always_valid && v["body"]["secrets"]["secrets_provided"].is_string(),
            _ => false,
        };
        assert!(clean, "{path}: {} {}", r.status, r.text());
        if path == &share && r.status == StatusCode::OK {
            shared += 1;
        }
    }
    assert!(shared > 0, "some share went through");
    let all: Vec<&Member> = std::iter::once(&alice).chain(others.iter()).collect();
    assert_invariant(s, &alice, &all, &id).await;
    let r = call(s, &alice, Method::GET, &format!("/users.json?filter[has-access]={id}"), None).await;
    assert_eq!(r.json()["body"].as_array().unwrap().len(), shared + 1);
}

crate::per_backend!(
    resources_are_created_listed_viewed_updated_and_soft_deleted,
    resource_routes_refuse_in_the_contracts_order,
    every_secret_is_checked_to_be_a_message_to_the_key_of_its_user,
    shares_carry_exactly_the_secrets_of_the_users_who_gain_access,
    concurrent_shares_and_updates_of_one_resource_keep_the_invariant,
);

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_their_secrets_are_sealed_in_the_database_file() {
    let s = TestServer::start(lethe::store::Engine::Redb).await;
    let alice = member(&s, "alice").await;
    let data = alice.encrypt("pw");
    let body = json!({"name": "payroll-db-7f3a", "username": "svc-payroll-9c1e", "uri": "https://payroll-5d2b.example", "description": "desc-e81f", "secrets": [{"data": data}]});
    let r = call(&s, &alice, Method::POST, "/resources.json", Some(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let middle =
        data.lines().filter(|l| l.len() >= 60).nth(1).expect("a body line").as_bytes()[..40].to_vec();
    let raw = std::fs::read(s.app.domain.settings.data_dir.join(lethe::store::REDB_FILE)).unwrap();
    for needle in [
        &b"payroll-db-7f3a"[..],
        b"svc-payroll-9c1e",
        b"payroll-5d2b",
        b"desc-e81f",
        &middle,
        b"-----BEGIN PGP",
    ] {
        assert!(!holds(&raw, needle), "{} is in the database file", String::from_utf8_lossy(needle));
    }
    let r = call(&s, &alice, Method::GET, "/resources.json?contain[secret]=1", None).await;
    assert_eq!(r.json()["body"][0]["name"], "payroll-db-7f3a");
    assert_eq!(r.json()["body"][0]["secrets"][0]["data"], data.as_str());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_changes_and_refusals_are_audited_without_ids_names_or_data() {
    let s = TestServer::start(lethe::store::Engine::Memory).await;
    let alice = member(&s, "alice").await;
    let bob = member(&s, "bob").await;
    let res = create(&s, &alice, "payroll-db-7f3a", "pw").await;
    let id = res["id"].as_str().unwrap().to_owned();
    let data = bob.encrypt("pw");
    let share = json!({"permissions": [add(&bob, 1)], "secrets": [{"user_id": bob.id(), "data": data}]});
    assert_eq!(
        call(&s, &alice, Method::PUT, &format!("/share/resource/{id}.json"), Some(&share)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, &bob, Method::GET, &format!("/secrets/resource/{id}.json"), None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, &bob, Method::DELETE, &format!("/resources/{id}.json"), None).await.status,
        StatusCode::FORBIDDEN
    );
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        call(&s, &bob, Method::GET, &format!("/resources/{missing}.json"), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get("/resources.json").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&s, &alice, Method::GET, "/resources.json", None).await.status, StatusCode::OK);
    assert_eq!(
        call(
            &s,
            &alice,
            Method::PUT,
            &format!("/resources/{id}.json"),
            Some(&json!({"name": "renamed-4b1c"}))
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, &alice, Method::DELETE, &format!("/resources/{id}.json"), None).await.status,
        StatusCode::OK
    );
    let lines = s.stop_with_audit().await;
    let seen: Vec<(String, String, String)> = lines
        .iter()
        .filter(|l| l["event"].as_str().is_some_and(|e| e.starts_with("team.") && e != "team.login"))
        .map(|l| {
            let field = |f: &str| l[f].as_str().unwrap_or("-").to_owned();
            (field("event"), field("outcome"), field("account"))
        })
        .collect();
    let expected = [
        ("team.resource.created", "success", "alice"),
        ("team.share", "success", "alice"),
        ("team.secret.read", "success", "bob"),
        ("team.resource.deleted", "denied", "bob"),
        ("team.resource.read", "denied", "bob"),
        ("team.resource.read", "denied", "-"),
        ("team.resource.updated", "success", "alice"),
        ("team.resource.deleted", "success", "alice"),
    ];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned())).collect();
    assert_eq!(seen, expected);
    // The share says how many users gained and lost access (bob gained; nobody lost).
    let share = lines.iter().find(|l| l["event"] == "team.share").expect("the share's line");
    assert_eq!((share["added"].as_u64(), share["removed"].as_u64()), (Some(1), Some(0)), "{share}");
    let text = serde_json::to_string(&lines).unwrap();
    for needle in [id.as_str(), "payroll-db-7f3a", "renamed-4b1c", &data[40..80], bob.id()] {
        assert!(!text.contains(needle), "{needle} is in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_bodies_and_secrets_over_their_configured_limits_are_refused() {
    let s = TestServer::start_with(lethe::store::Engine::Memory, &|raw: &mut lethe::config::RawConfig| {
        raw.limits.max_team_body_bytes = 4096;
        raw.limits.max_team_secret_bytes = 200;
    })
    .await;
    let alice = member(&s, "alice").await;
    let big =
        json!({"name": "x", "description": "d".repeat(5000), "secrets": [{"data": alice.encrypt("pw")}]});
    let r = call(&s, &alice, Method::POST, "/resources.json", Some(&big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(r.json()["header"]["code"], 413);
    let data = alice.encrypt(&"p".repeat(300));
    let r = call(
        &s,
        &alice,
        Method::POST,
        "/resources.json",
        Some(&json!({"name": "x", "secrets": [{"data": data}]})),
    )
    .await;
    assert!(r.json()["body"]["secrets"]["0"]["data"]["maxLength"].is_string(), "{}", r.text());
    assert_eq!(call(&s, &alice, Method::GET, "/resources.json", None).await.json()["body"], json!([]));
    s.stop().await;
}
