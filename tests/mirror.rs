//! One server, two faces: a full listener for staff and a read-only public mirror. Each route's
//! availability per mode, on both backends.

use hyper::{Method, StatusCode};
use lethe::store::Engine;
use serde_json::json;

use crate::support::{TestServer, key};

async fn each_route_is_served_only_where_its_mode_allows(engine: Engine) {
    let s = TestServer::start_with_mirror(engine, &|_| {}).await;
    let mirror = s.mirror.clone().expect("mirror");
    let form = [("content-type", "application/x-www-form-urlencoded")];

    // Creation routes do not exist on the mirror, in each surface's own dialect.
    for path in ["/api/v1/share", "/api/v1/create", "/api/v1/generate"] {
        let r = s.request_at(&mirror, Method::POST, path, &form, "secret=x").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json(), json!({"message": "Not found"}), "{path}");
        assert_eq!(r.intended(), None, "{path}");
    }
    for path in ["/create/secret", "/secret", "/create/file", "/request"] {
        let r = s.request_at(&mirror, Method::POST, path, &[], "{}").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json(), json!({"message": "Not found"}), "{path}");
    }
    let id = "A".repeat(32);
    for (method, path) in [
        (Method::GET, format!("/request/{id}/secret")),
        (Method::DELETE, format!("/request/{id}")),
        (Method::PUT, format!("/request/{id}/key")),
    ] {
        let r = s.request_at(&mirror, method, &path, &[], "").await;
        assert_eq!(r.json(), json!({"message": "Not found"}), "{path}");
    }
    // The responder side of requests stays: an unknown request is "not found" in the request dialect.
    let r = s.request_at(&mirror, Method::GET, &format!("/request/{id}"), &[], "").await;
    assert_eq!(r.json(), json!({"message": "Secret request not found"}));
    let r = s.request_at(&mirror, Method::POST, &format!("/request/{id}/secret"), &[], "{}").await;
    assert_eq!(r.json(), json!({"message": "Secret request not found"}));

    // Made on the full listener, links point at the mirror, where retrieval works.
    let m = s.share("secret=from+staff&passphrase=pw").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    let page = s.get(&format!("/private/{mk}")).await.text();
    assert!(page.contains(&format!("{mirror}/secret/{sk}")), "{page}");
    let r = s.request_at(&mirror, Method::GET, &format!("/api/v1/private/{mk}"), &[], "").await;
    assert_eq!(r.json()["state"], "viewed");
    let r = s.request_at(&mirror, Method::GET, &format!("/secret/{sk}"), &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("Reveal"));
    let r =
        s.request_at(&mirror, Method::POST, &format!("/api/v1/secret/{sk}"), &form, "passphrase=pw").await;
    assert_eq!(r.json()["value"], "from staff");
    assert_eq!(r.json()["share_domain"], mirror.as_str());
    let r = s.request_at(&mirror, Method::GET, "/api/v1/status", &[], "").await;
    assert_eq!(r.json()["status"], "nominal");

    // /config tells the web UI what each face offers.
    let full = s.get("/config").await.json();
    assert_eq!(full["READ_ONLY"], false);
    assert_eq!(full["SECRET_REQUESTS"], true);
    assert_eq!(full["SECRET_REQUEST_RESPONSES"], true);
    assert_eq!(full["PUBLIC_URL"], mirror.as_str());
    let ro = s.request_at(&mirror, Method::GET, "/config", &[], "").await.json();
    assert_eq!(ro["READ_ONLY"], true);
    assert_eq!(ro["SECRET_REQUESTS"], false);
    assert_eq!(ro["SECRET_REQUEST_RESPONSES"], true);
    assert_eq!(ro["EXPIRATIONS"], json!([3600, 86400, 604800]));
    assert_eq!(ro["MAX_LENGTH"], 10000);
    for path in ["/health", "/ready", "/version"] {
        assert_eq!(s.request_at(&mirror, Method::GET, path, &[], "").await.status, StatusCode::OK, "{path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_each_route_is_served_only_where_its_mode_allows() {
    each_route_is_served_only_where_its_mode_allows(Engine::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_each_route_is_served_only_where_its_mode_allows() {
    each_route_is_served_only_where_its_mode_allows(Engine::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_secret_requests_refuse_creation_and_say_so() {
    let s = TestServer::start_with(Engine::Memory, &|raw| raw.disable_secret_requests = true).await;
    let r = s.post_json("/request", &json!({"public_key": "x", "expiration": 3600})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json(), json!({"message": "Secret requests are disabled"}));
    let config = s.get("/config").await.json();
    assert_eq!(config["SECRET_REQUESTS"], false);
    assert_eq!(config["SECRET_REQUEST_RESPONSES"], false);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_endpoint_and_stay_off_the_mirror() {
    let s = TestServer::start_with_mirror(Engine::Redb, &|_| {}).await;
    let m = s.share("secret=counted").await;
    let sk = key(&m, "secret_key");
    s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
    s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = r.text();
    for line in [
        "lethe_http_requests_total{endpoint=\"v1.share\",status=\"200\"} 1",
        "lethe_http_requests_total{endpoint=\"v1.reveal\",status=\"200\"} 1",
        "lethe_http_requests_total{endpoint=\"v1.reveal\",status=\"404\"} 1",
        "lethe_http_request_duration_seconds_count{endpoint=\"v1.reveal\"} 2",
        "lethe_live_records{kind=\"secret\"} 0",
        "lethe_live_records{kind=\"metadata\"} 1",
        "lethe_bcrypt_queue_depth 0",
        "# TYPE lethe_reaper_passes_total counter",
        "# TYPE lethe_store_commit_batches histogram",
        "lethe_store_commit_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains(&sk), "a raw id reached the metrics");
    let mirror = s.mirror.clone().unwrap();
    assert_eq!(s.request_at(&mirror, Method::GET, "/metrics", &[], "").await.status, StatusCode::NOT_FOUND);
    s.stop().await;

    let s = TestServer::start_with(Engine::Memory, &|raw| raw.metrics.enabled = false).await;
    assert_eq!(s.get("/metrics").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_inside_is_answered_on_the_mirror_and_collected_inside() {
    let gpg = crate::support::gpg::Gpg::new();
    let fpr = gpg.gen_key("Staff <staff@example.com>", "future-default", "never");
    let s = TestServer::start_with_mirror(Engine::Redb, &|_| {}).await;
    let mirror = s.mirror.clone().expect("mirror");
    let created =
        s.post_json("/request", &json!({"public_key": gpg.export_public(&fpr), "expiration": 3600})).await;
    let created = created.json();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(created["link"].as_str().unwrap().starts_with(&format!("{mirror}/#/r/{id}/")));

    let view = s.request_at(&mirror, Method::GET, &format!("/request/{id}"), &[], "").await;
    assert_eq!(view.json()["state"], "pending");
    let body = json!({"message": gpg.encrypt_to(&fpr, b"answered publicly")}).to_string();
    let json_type = [("content-type", "application/json")];
    let r = s.request_at(&mirror, Method::POST, &format!("/request/{id}/secret"), &json_type, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Collection is not on the public face, even with the token.
    let auth = [("x-lethe-request-token", token.as_str())];
    let r = s.request_at(&mirror, Method::GET, &format!("/request/{id}/secret"), &auth, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.request(Method::GET, &format!("/request/{id}/secret"), &auth, "").await;
    assert_eq!(gpg.decrypt(r.json()["message"].as_str().unwrap()), b"answered publicly");
    s.stop().await;
}
