//! The one-time-secret v1 dialect, route by route, state by state, error by error.

use hyper::{Method, StatusCode};
use lethe::store::{Batch, Engine};
use serde_json::{Value, json};

use crate::per_backend;
use crate::support::{T0, TestServer, key};

per_backend!(
    status_is_nominal_and_authcheck_needs_good_credentials,
    share_returns_the_metadata_object_with_integer_fields,
    parameters_come_from_query_form_json_and_multipart,
    ttl_is_clamped_never_refused,
    a_secret_is_revealed_once_and_metadata_moves_through_its_states,
    wrong_or_missing_passphrase_does_not_consume_and_repeated_failures_lock,
    burn_destroys_unread_and_needs_the_passphrase,
    expired_and_orphaned_secrets_are_reported_as_such,
    generate_makes_a_strong_value_and_the_state_is_viewed,
    recent_lists_only_the_callers_metadata_newest_first,
    size_empty_recipient_and_domain_rules_answer_in_the_dialect,
    fifty_concurrent_reveals_yield_exactly_one_value,
    unknown_routes_and_malformed_keys_answer_not_found,
    rotated_and_removed_accounts_stop_authenticating,
);

fn assert_unknown(r: &crate::support::Resp, key: &str) {
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), json!({"message": "Unknown secret", "secret_key": key}));
    assert_eq!(r.intended(), None, "Unknown secret carries no intended status");
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
}

fn assert_error(r: &crate::support::Resp, intended: u16, message: &str) {
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(r.intended(), Some(intended), "{}", r.text());
    assert_eq!(r.json()["message"], json!(message));
}

async fn status_is_nominal_and_authcheck_needs_good_credentials(s: &TestServer) {
    let r = s.get("/api/v1/status").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "nominal", "locale": "en"}));

    assert_error(&s.get("/api/v1/authcheck").await, 401, "Not authorized");
    let token = s.account("alice@example.com").await;
    let r = s.get_as("/api/v1/authcheck", "alice@example.com", &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "nominal", "locale": "en"}));

    // Present but wrong credentials fail even where anonymous use is allowed.
    assert_error(&s.get_as("/api/v1/status", "alice@example.com", "nope").await, 401, "Not authorized");
    assert_error(&s.get_as("/api/v1/status", "nobody@example.com", &token).await, 401, "Not authorized");
    let r = s.request(Method::GET, "/api/v1/status", &[("authorization", "Basic %%%")], "").await;
    assert_error(&r, 401, "Not authorized");
    let r = s.post_form_as("/api/v1/share", "secret=x", "alice@example.com", "wrong").await;
    assert_error(&r, 401, "Not authorized");
}

async fn share_returns_the_metadata_object_with_integer_fields(s: &TestServer) {
    let r = s.post_form("/api/v1/share", "secret=hello&ttl=3600").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let m = r.json();
    let fields: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "created",
        "custid",
        "metadata_key",
        "metadata_ttl",
        "passphrase_required",
        "recipient",
        "secret_key",
        "secret_ttl",
        "share_domain",
        "state",
        "ttl",
        "updated",
    ];
    expected.sort();
    assert_eq!(fields, expected);
    assert_eq!(m["custid"], "anon");
    assert_eq!(m["ttl"], 3600);
    assert_eq!(m["metadata_ttl"], 7200);
    assert_eq!(m["secret_ttl"], 3600);
    assert_eq!(m["state"], "new");
    assert_eq!(m["created"], T0);
    assert_eq!(m["updated"], T0);
    assert_eq!(m["recipient"], json!([]));
    assert_eq!(m["share_domain"], "");
    assert_eq!(m["passphrase_required"], false);
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    assert_ne!(sk, mk);
    assert_eq!(sk.len(), 31);

    // Missing TTL means seven days; /create is an alias of /share.
    let m = s.post_form("/api/v1/create", "secret=x").await.json();
    assert_eq!(m["ttl"], 604_800);
    assert_eq!(m["metadata_ttl"], 2 * 604_800);
}

async fn parameters_come_from_query_form_json_and_multipart(s: &TestServer) {
    let reveal = |sk: String| async move {
        let r = s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
        r.json()["value"].as_str().unwrap().to_owned()
    };
    let m = s.request(Method::POST, "/api/v1/share?secret=from%20query&ttl=120", &[], "").await.json();
    assert_eq!(m["ttl"], 120);
    assert_eq!(reveal(key(&m, "secret_key")).await, "from query");

    // The body wins over the query string.
    let m = s.post_form("/api/v1/share?secret=query&ttl=120", "secret=body+%26+more").await.json();
    assert_eq!(m["ttl"], 120);
    assert_eq!(reveal(key(&m, "secret_key")).await, "body & more");

    let m = s.post_json("/api/v1/share", &json!({"secret": "from json", "ttl": 300})).await.json();
    assert_eq!(m["ttl"], 300);
    assert_eq!(reveal(key(&m, "secret_key")).await, "from json");

    // A body with no content type is read as a form.
    let m = s.request(Method::POST, "/api/v1/share", &[], "secret=untyped").await.json();
    assert_eq!(reveal(key(&m, "secret_key")).await, "untyped");

    let body = "--b0undary\r\nContent-Disposition: form-data; name=\"secret\"\r\n\r\nfrom -F\r\n--b0undary\r\n\
                Content-Disposition: form-data; name=\"ttl\"\r\n\r\n900\r\n--b0undary--\r\n";
    let ct = "multipart/form-data; boundary=b0undary";
    let m = s.request(Method::POST, "/api/v1/share", &[("content-type", ct)], body).await.json();
    assert_eq!(m["ttl"], 900);
    assert_eq!(reveal(key(&m, "secret_key")).await, "from -F");

    // The passphrase on reveal may come from JSON too; unknown parameters are ignored.
    let m = s.share("secret=p&passphrase=pw&color=blue").await;
    let sk = key(&m, "secret_key");
    let r = s.post_json(&format!("/api/v1/secret/{sk}"), &json!({"passphrase": "pw", "extra": [1, 2]})).await;
    assert_eq!(r.json()["value"], "p");

    let r = s.request(Method::POST, "/api/v1/share", &[("content-type", "application/json")], "{oops").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.intended(), Some(400));
}

async fn ttl_is_clamped_never_refused(s: &TestServer) {
    let ttl = |form: &'static str| async move { s.share(form).await["ttl"].as_u64().unwrap() };
    assert_eq!(ttl("secret=x&ttl=10").await, 60);
    assert_eq!(ttl("secret=x&ttl=3600abc").await, 3600);
    assert_eq!(ttl("secret=x&ttl=abc").await, 60);
    assert_eq!(ttl("secret=x&ttl=-5").await, 60);
    assert_eq!(ttl("secret=x&ttl=").await, 604_800);
    assert_eq!(ttl("secret=x&ttl=99999999999999999999999999").await, 604_800);
    let token = s.account("bob@example.com").await;
    let r = s.post_form_as("/api/v1/share", "secret=x&ttl=99999999", "bob@example.com", &token).await;
    assert_eq!(r.json()["ttl"], 2_592_000);
    assert_eq!(r.json()["custid"], "bob@example.com");
}

async fn a_secret_is_revealed_once_and_metadata_moves_through_its_states(s: &TestServer) {
    let m = s.share("secret=s3cr3t+value&ttl=3600").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));

    // The first metadata read shows new and moves the state to viewed.
    s.clock.advance(10);
    let first = s.get(&format!("/api/v1/private/{mk}")).await.json();
    assert_eq!(first["state"], "new");
    assert_eq!(first["secret_key"], sk.as_str());
    assert_eq!(first["secret_ttl"], 3590);
    assert_eq!(first["metadata_ttl"], 7190);
    assert_eq!(first["passphrase_required"], false);
    assert!(first.get("value").is_none());
    let second = s.post_form(&format!("/api/v1/metadata/{mk}"), "").await.json();
    assert_eq!(second["state"], "viewed");
    assert_eq!(second["updated"], T0 + 10);

    s.clock.advance(5);
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let origin = s.base.clone();
    assert_eq!(r.json(), json!({"value": "s3cr3t value", "secret_key": sk, "share_domain": origin}));

    assert_unknown(&s.post_form(&format!("/api/v1/secret/{sk}"), "").await, &sk);

    let m = s.get(&format!("/api/v1/receipt/{mk}")).await.json();
    assert_eq!(m["state"], "received");
    assert_eq!(m["received"], T0 + 15);
    for absent in ["secret_key", "secret_ttl", "passphrase_required", "value"] {
        assert!(m.get(absent).is_none(), "{absent} must be absent once received: {m}");
    }
    // Terminal states are final: a later read still shows received.
    s.clock.advance(100);
    assert_eq!(s.get(&format!("/api/v1/private/{mk}")).await.json()["state"], "received");

    // Unknown metadata echoes the metadata key.
    let ghost = "a".repeat(31);
    assert_unknown(&s.get(&format!("/api/v1/private/{ghost}")).await, &ghost);
}

async fn wrong_or_missing_passphrase_does_not_consume_and_repeated_failures_lock(s: &TestServer) {
    let m = s.share("secret=guarded&passphrase=correct+horse").await;
    assert_eq!(m["passphrase_required"], true);
    let sk = key(&m, "secret_key");
    let path = format!("/api/v1/secret/{sk}");

    assert_unknown(&s.post_form(&path, "").await, &sk);
    assert_unknown(&s.post_form(&path, "passphrase=wrong").await, &sk);
    assert_unknown(&s.post_form(&path, "passphrase=wrong").await, &sk);
    assert_unknown(&s.post_form(&path, "passphrase=wrong").await, &sk);
    assert_unknown(&s.post_form(&path, "passphrase=wrong").await, &sk);
    // Fifth failure within the window locks the secret (asking without a passphrase is no guess).
    assert_unknown(&s.post_form(&path, "passphrase=wrong").await, &sk);
    let r = s.post_form(&path, "passphrase=correct+horse").await;
    assert_error(&r, 429, "Too many incorrect passphrase attempts. Please try again later.");

    // The lock lasts 20 minutes; the secret was never consumed.
    s.clock.advance(1201);
    let r = s.post_form(&path, "passphrase=correct+horse").await;
    assert_eq!(r.json()["value"], "guarded");

    let long = "p".repeat(73);
    let r = s.post_form("/api/v1/share", &format!("secret=x&passphrase={long}")).await;
    assert_error(&r, 400, "Passphrase must be no more than 72 bytes");
    let ok = "p".repeat(72);
    assert_eq!(s.share(&format!("secret=x&passphrase={ok}")).await["passphrase_required"], true);
}

async fn burn_destroys_unread_and_needs_the_passphrase(s: &TestServer) {
    let m = s.share("secret=burn+me").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    s.clock.advance(3);
    let r = s.post_form(&format!("/api/v1/private/{mk}/burn"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["secret_shortkey"], &sk[..8]);
    let state = &body["state"];
    assert_eq!(state["state"], "burned");
    assert_eq!(state["secret_key"], "");
    assert_eq!(state["secret_ttl"], Value::Null);
    assert_eq!(state["updated"], T0 + 3);
    assert!(state.get("passphrase_required").is_none());

    assert_unknown(&s.post_form(&format!("/api/v1/secret/{sk}"), "").await, &sk);
    // Burning what is gone answers Unknown secret, and the metadata keeps its terminal state.
    assert_unknown(&s.post_form(&format!("/api/v1/private/{mk}/burn"), "").await, &mk);
    let meta = s.get(&format!("/api/v1/private/{mk}")).await.json();
    assert_eq!(meta["state"], "burned");
    assert_eq!(meta["secret_key"], "");

    let m = s.share("secret=guarded&passphrase=pw").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    let r = s.post_form(&format!("/api/v1/private/{mk}/burn"), "").await;
    assert_error(&r, 400, "Incorrect passphrase");
    let r = s.post_form(&format!("/api/v1/private/{mk}/burn"), "passphrase=nope").await;
    assert_error(&r, 400, "Incorrect passphrase");
    let r = s.post_form(&format!("/api/v1/private/{mk}/burn"), "passphrase=pw").await;
    assert_eq!(r.json()["state"]["state"], "burned");
    assert_unknown(&s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=pw").await, &sk);

    // Revealed secrets cannot be burned.
    let m = s.share("secret=x").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
    assert_unknown(&s.post_form(&format!("/api/v1/private/{mk}/burn"), "").await, &mk);
    assert_eq!(s.get(&format!("/api/v1/private/{mk}")).await.json()["state"], "received");
}

async fn expired_and_orphaned_secrets_are_reported_as_such(s: &TestServer) {
    let m = s.share("secret=short&ttl=60").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    s.clock.advance(59);
    assert_eq!(s.get(&format!("/api/v1/private/{mk}")).await.json()["secret_ttl"], 1);
    s.clock.advance(1);
    // Expiry is enforced on read, whether or not the reaper has run.
    assert_unknown(&s.post_form(&format!("/api/v1/secret/{sk}"), "").await, &sk);
    let meta = s.get(&format!("/api/v1/private/{mk}")).await.json();
    assert_eq!(meta["state"], "expired");
    assert_eq!(meta["secret_key"], "");
    assert_eq!(meta["secret_ttl"], Value::Null);
    assert_eq!(meta["metadata_ttl"], 60);
    // Metadata lives twice the secret's TTL.
    s.clock.advance(60);
    assert_unknown(&s.get(&format!("/api/v1/private/{mk}")).await, &mk);

    // A secret that vanished before its time leaves an orphan.
    let m = s.share("secret=lost&ttl=600").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    let now = s.clock_now();
    s.app
        .domain
        .store()
        .apply(Batch::new().delete(lethe::domain::secrets::SECRET, s.app.domain.keys.store_key(&sk)), now)
        .await
        .unwrap();
    let meta = s.get(&format!("/api/v1/private/{mk}")).await.json();
    assert_eq!(meta["state"], "orphaned");
    assert_eq!(meta["secret_key"], "");
}

async fn generate_makes_a_strong_value_and_the_state_is_viewed(s: &TestServer) {
    let r = s.post_form("/api/v1/generate", "ttl=600").await;
    let m = r.json();
    let value = m["value"].as_str().unwrap().to_owned();
    assert_eq!(value.len(), 12);
    assert!(value.chars().any(|c| c.is_ascii_uppercase()));
    assert!(value.chars().any(|c| c.is_ascii_lowercase()));
    assert!(value.chars().any(|c| c.is_ascii_digit()));
    assert!(value.chars().any(|c| !c.is_ascii_alphanumeric()));
    assert!(!value.contains(['i', 'l', 'o', '1', 'I', 'O', '0']));
    assert_eq!(m["state"], "new");
    assert_eq!(m["ttl"], 600);
    let meta = s.get(&format!("/api/v1/private/{}", key(&m, "metadata_key"))).await.json();
    assert_eq!(meta["state"], "viewed");
    let r = s.post_form(&format!("/api/v1/secret/{}", key(&m, "secret_key")), "").await;
    assert_eq!(r.json()["value"], value.as_str());

    assert_eq!(s.post_form("/api/v1/generate", "length=6").await.json()["value"].as_str().unwrap().len(), 6);
    assert_eq!(
        s.post_form("/api/v1/generate", "length=128").await.json()["value"].as_str().unwrap().len(),
        128
    );
    for bad in ["5", "129", "abc"] {
        let r = s.post_form("/api/v1/generate", &format!("length={bad}")).await;
        assert_error(&r, 400, "Generated password length must be between 6 and 128 characters");
    }
}

async fn recent_lists_only_the_callers_metadata_newest_first(s: &TestServer) {
    assert_error(&s.get("/api/v1/private/recent").await, 401, "Not authorized");
    let alice = s.account("alice@example.com").await;
    let bob = s.account("bob@example.com").await;
    let first = s.post_form_as("/api/v1/share", "secret=one", "alice@example.com", &alice).await.json();
    s.clock.advance(1);
    let second = s.post_form_as("/api/v1/share", "secret=two", "alice@example.com", &alice).await.json();
    s.post_form_as("/api/v1/share", "secret=bobs", "bob@example.com", &bob).await;
    s.share("secret=anonymous").await;

    let r = s.get_as("/api/v1/private/recent", "alice@example.com", &alice).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["metadata_key"], second["metadata_key"]);
    assert_eq!(list[1]["metadata_key"], first["metadata_key"]);
    for entry in list {
        assert_eq!(entry["custid"], "alice@example.com");
        assert!(entry.get("secret_key").is_none());
        assert!(entry.get("passphrase_required").is_none());
    }
    // Aliases reach the same list.
    let r = s.get_as("/api/v1/metadata/recent", "bob@example.com", &bob).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
}

async fn size_empty_recipient_and_domain_rules_answer_in_the_dialect(s: &TestServer) {
    let exact = "x".repeat(10_000);
    assert_eq!(s.share(&format!("secret={exact}")).await["state"], "new");
    let over = "x".repeat(10_001);
    let r = s.post_form("/api/v1/share", &format!("secret={over}")).await;
    assert_error(&r, 400, "Secret value exceeds the maximum size of 10000 bytes");
    // The limit counts decoded bytes: 10,000 bytes percent-encoded as 30,000 still fit.
    let encoded = "%41".repeat(10_000);
    assert_eq!(s.share(&format!("secret={encoded}")).await["state"], "new");
    let huge = "x".repeat(200_000);
    let r = s.post_form("/api/v1/share", &format!("secret={huge}")).await;
    assert_error(&r, 400, "Secret value exceeds the maximum size of 10000 bytes");

    assert_error(
        &s.post_form("/api/v1/share", "secret=").await,
        400,
        "You did not provide anything to share",
    );
    assert_error(&s.post_form("/api/v1/share", "ttl=60").await, 400, "You did not provide anything to share");

    let r = s.post_form("/api/v1/share", "secret=x&recipient=tom@example.com").await;
    assert_error(&r, 400, "An account is required to send emails.");
    let r =
        s.post_form("/api/v1/share", "secret=x&recipient[]=tom@example.com&recipient[]=b@example.com").await;
    assert_error(&r, 400, "An account is required to send emails.");
    let token = s.account("carol@example.com").await;
    let r = s
        .post_form_as("/api/v1/share", "secret=x&recipient=tom@example.com", "carol@example.com", &token)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.intended(), Some(400));
    assert!(r.json()["message"].as_str().unwrap().contains("Email delivery is not configured"));
    let r =
        s.post_form_as("/api/v1/share", "secret=x&recipient=not-an-email", "carol@example.com", &token).await;
    assert_error(&r, 400, "Recipient must be a valid email address");
    // An empty recipient is no recipient.
    assert_eq!(s.share("secret=x&recipient=").await["recipient"], json!([]));

    let r = s.post_form("/api/v1/share", "secret=x&share_domain=evil.example").await;
    assert_error(&r, 400, "Unknown domain: evil.example");
    assert_eq!(s.share("secret=x&share_domain=").await["share_domain"], "");

    // Nothing above stored a secret it refused.
    let live = s.app.domain.store().count(lethe::domain::secrets::SECRET).await.unwrap();
    assert_eq!(live, 4);
}

async fn fifty_concurrent_reveals_yield_exactly_one_value(s: &TestServer) {
    let m = s.share("secret=only+once").await;
    let sk = key(&m, "secret_key");
    let path = format!("/api/v1/secret/{sk}");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let req = s.post_form(&path, "");
        tasks.push(req);
    }
    let results = crate::support::join_all(tasks).await;
    let values: Vec<_> = results.iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(values.len(), 1, "exactly one reveal wins");
    assert_eq!(values[0].json()["value"], "only once");
    for r in results.iter().filter(|r| r.status != StatusCode::OK) {
        assert_unknown(r, &sk);
    }
}

async fn unknown_routes_and_malformed_keys_answer_not_found(s: &TestServer) {
    let r = s.get("/api/v1/does-not-exist").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), json!({"message": "Not found"}));
    let r = s.get("/api/v1/share").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for weird in ["short", "UPPERCASE0000000000000000000000", &"z".repeat(128)] {
        assert_unknown(&s.post_form(&format!("/api/v1/secret/{weird}"), "").await, weird);
        assert_unknown(&s.get(&format!("/api/v1/private/{weird}")).await, weird);
    }
    let r = s.post_form("/api/v1/secret/%00%ff", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn rotated_and_removed_accounts_stop_authenticating(s: &TestServer) {
    let old = s.account("dave@example.com").await;
    let d = &s.app.domain;
    let new = d.accounts.rotate_token("dave@example.com").await.unwrap();
    assert_error(&s.get_as("/api/v1/authcheck", "dave@example.com", &old).await, 401, "Not authorized");
    assert_eq!(s.get_as("/api/v1/authcheck", "dave@example.com", &new).await.status, StatusCode::OK);
    d.accounts.remove("dave@example.com").await.unwrap();
    assert_error(&s.get_as("/api/v1/authcheck", "dave@example.com", &new).await, 401, "Not authorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_share_domains_shape_the_links() {
    let s =
        TestServer::start_with(Engine::Memory, &|raw| raw.share_domains = vec!["secrets.example.org".into()])
            .await;
    let m = s.share("secret=x&share_domain=Secrets.Example.org").await;
    assert_eq!(m["share_domain"], "secrets.example.org");
    let r = s.post_form(&format!("/api/v1/secret/{}", key(&m, "secret_key")), "").await;
    assert_eq!(r.json()["share_domain"], "https://secrets.example.org");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_keeps_created_secrets_and_forgets_revealed_ones_across_restarts() {
    let s = TestServer::start(Engine::Redb).await;
    let kept = s.share("secret=survivor").await;
    let taken = s.share("secret=gone").await;
    let r = s.post_form(&format!("/api/v1/secret/{}", key(&taken, "secret_key")), "").await;
    assert_eq!(r.json()["value"], "gone");

    let s = s.restart().await;
    let r = s.post_form(&format!("/api/v1/secret/{}", key(&kept, "secret_key")), "").await;
    assert_eq!(r.json()["value"], "survivor");
    let sk = key(&taken, "secret_key");
    assert_unknown(&s.post_form(&format!("/api/v1/secret/{sk}"), "").await, &sk);
    let meta = s.get(&format!("/api/v1/private/{}", key(&taken, "metadata_key"))).await.json();
    assert_eq!(meta["state"], "received");

    let s = s.restart().await;
    let sk = key(&kept, "secret_key");
    assert_unknown(&s.post_form(&format!("/api/v1/secret/{sk}"), "").await, &sk);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_holds_no_key_or_value_in_clear() {
    let s = TestServer::start(Engine::Redb).await;
    let m = s.share("secret=needle-in-the-file&passphrase=pw").await;
    let token = s.account("erin@example.com").await;
    let dir = s.stop().await.expect("temp dir");
    let bytes = std::fs::read(dir.path().join(lethe::store::REDB_FILE)).unwrap();
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains("needle-in-the-file"));
    assert!(!contains(&key(&m, "secret_key")));
    assert!(!contains(&key(&m, "metadata_key")));
    assert!(!contains(&token));
    // The account name is not secret and is stored as it is; this proves the scan can find text.
    assert!(contains("erin@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_events_are_audited_without_keys_values_or_passphrases() {
    let s = TestServer::start(Engine::Memory).await;
    let token = s.account("frank@example.com").await;
    let m = s
        .post_form_as(
            "/api/v1/share",
            "secret=audited-value&passphrase=audited-pass",
            "frank@example.com",
            &token,
        )
        .await
        .json();
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=nope").await;
    s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=audited-pass").await;
    s.post_form(&format!("/api/v1/private/{mk}/burn"), "").await;
    let lines = s.stop_with_audit().await;
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    for forbidden in [sk.as_str(), mk.as_str(), token.as_str(), "audited-value", "audited-pass", "nope"] {
        assert!(!text.contains(forbidden), "audit leaked {forbidden:?}:\n{text}");
    }
    let find = |event: &str, outcome: &str| {
        lines
            .iter()
            .find(|l| l["event"] == event && l["outcome"] == outcome)
            .unwrap_or_else(|| panic!("{event} {outcome}: {text}"))
    };
    assert_eq!(find("secret.created", "success")["account"], "frank@example.com");
    assert_eq!(find("secret.revealed", "failure")["reason"], "wrong_passphrase");
    let revealed = find("secret.revealed", "success");
    assert_eq!(revealed["id_hash"].as_str().unwrap().len(), 12);
    assert_eq!(find("secret.burned", "failure")["reason"], "not_found");
    // The created and revealed events name the same secret by the same keyed hash.
    assert_eq!(find("secret.created", "success")["id_hash"], revealed["id_hash"]);
}
