//! The server's part of the web app (web-ui.md §5): the shell at `/` with its own script-allowing CSP
//! and `no-store`, content-hashed assets cached for a year, no catch-all page, the script-free CSP
//! everywhere else, and `GET /file/{id}/status`, which never consumes.

use hyper::{Method, StatusCode};
use lethe::store::Engine;
use serde_json::json;

use crate::per_backend;
use crate::support::gpg::Gpg;
use crate::support::{Resp, TestServer, key};

const SHELL_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
                         require-trusted-types-for 'script'";

per_backend!(the_file_status_route_answers_without_consuming, the_status_routes_keep_files_and_texts_apart);

fn assert_common_headers(r: &Resp, what: &str) {
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
}

/// The `/assets/…` paths the shell references.
fn asset_paths(html: &str) -> Vec<String> {
    html.split("\"/assets/").skip(1).map(|p| format!("/assets/{}", p.split('"').next().unwrap())).collect()
}

#[tokio::test]
async fn the_shell_runs_only_its_own_scripts_and_is_never_cached() {
    let s = TestServer::start(Engine::Memory).await;
    for (method, path) in [(Method::GET, "/"), (Method::HEAD, "/"), (Method::GET, "/index.html")] {
        let r = s.request(method.clone(), path, &[], "").await;
        let what = format!("{method} {path}");
        assert_eq!(r.status, StatusCode::OK, "{what}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{what}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        assert_eq!(r.header("content-security-policy"), Some(SHELL_CSP), "{what}");
        assert_common_headers(&r, &what);
    }
    let html = s.get("/").await.text();
    assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"), "{html}");
    assert!(html.contains("<nav aria-label=\"Main\">"), "{html}");
    assert!(html.contains("<main>"), "{html}");
    assert!(html.contains("needs JavaScript"), "the noscript text: {html}");
    // No inline script or handler, no <base>: every script has a same-origin src.
    assert!(!html.contains("<script>") && !html.contains(" onload=") && !html.contains("<base"), "{html}");
    assert!(html.contains("<script type=\"module\" src=\"/assets/app-"), "{html}");
    assert!(html.contains("rel=\"icon\" type=\"image/svg+xml\" href=\"/assets/icon-"), "{html}");
    assert_eq!(asset_paths(&html).len(), 3, "{html}");
    s.stop().await;
}

#[tokio::test]
async fn the_assets_are_immutable_and_typed() {
    let s = TestServer::start(Engine::Memory).await;
    let html = s.get("/").await.text();
    let mut seen = Vec::new();
    for path in asset_paths(&html) {
        for method in [Method::GET, Method::HEAD] {
            let r = s.request(method.clone(), &path, &[], "").await;
            assert_eq!(r.status, StatusCode::OK, "{method} {path}");
            assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"), "{path}");
            assert_common_headers(&r, &path);
            let expected = match path.rsplit_once('.').map(|(_, ext)| ext) {
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("svg") => "image/svg+xml",
                other => panic!("unexpected asset {path} ({other:?})"),
            };
            assert_eq!(r.header("content-type"), Some(expected), "{path}");
            if method == Method::GET {
                assert!(!r.body.is_empty(), "{path}");
                seen.push(expected);
            }
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, ["image/svg+xml", "text/css; charset=utf-8", "text/javascript; charset=utf-8"]);
    let app = asset_paths(&html).into_iter().find(|p| p.ends_with(".js")).unwrap();
    let js = s.get(&app).await.text();
    // The bundle carries openpgp and the app's own routes, not a placeholder.
    assert!(js.contains("Share a secret") && js.contains("lethe-requests"), "the app bundle");
    assert!(!js.contains("innerHTML"), "no HTML sink in the bundle");

    // A name that was never built is a plain 404, not cacheable and not the shell.
    for path in ["/assets/app-AAAAAAAA.js", "/assets/index.html", "/assets/", "/assets/x/../index.html"] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(r.json(), json!({"message": "Not found"}), "{path}");
    }
    let r = s.request(Method::POST, &app, &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await;
}

#[tokio::test]
async fn there_is_no_catch_all_page() {
    let s = TestServer::start(Engine::Memory).await;
    for path in ["/favicon.ico", "/requests", "/s/abc", "/share", "/index.htm", "/app.js"] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"), "{path}");
    }
    let r = s.request(Method::POST, "/", &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    s.stop().await;
}

#[tokio::test]
async fn only_the_shell_may_run_scripts() {
    let s = TestServer::start(Engine::Memory).await;
    let m = s.share("secret=v1+page").await;
    let paths = [
        format!("/secret/{}", key(&m, "secret_key")),
        format!("/private/{}", key(&m, "metadata_key")),
        "/static/lethe.css".to_owned(),
        "/config".to_owned(),
        "/api/v1/status".to_owned(),
        "/nope".to_owned(),
    ];
    for path in paths {
        let r = s.get(&path).await;
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'none'") && !csp.contains("script-src"), "{path}: {csp}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_read_only_listener_serves_the_app_and_file_status() {
    let s = TestServer::start_with_mirror(Engine::Memory, &|_| {}).await;
    let mirror = s.mirror.clone().expect("mirror");
    let r = s.request_at(&mirror, Method::GET, "/", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-security-policy"), Some(SHELL_CSP));
    for path in asset_paths(&r.text()) {
        assert_eq!(s.request_at(&mirror, Method::GET, &path, &[], "").await.status, StatusCode::OK, "{path}");
    }
    let id = create_file(&s, true).await;
    let r = s.request_at(&mirror, Method::GET, &format!("/file/{id}/status"), &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"oneTime": true}));
    s.stop().await;
}

fn binary_message() -> Vec<u8> {
    Gpg::new().run(&["--passphrase", "file-key", "--symmetric"], b"file bytes")
}

async fn create_file(s: &TestServer, one_time: bool) -> String {
    let r = s
        .request(
            Method::POST,
            "/create/file",
            &[
                ("content-type", "application/octet-stream"),
                ("x-lethe-expiration", "3600"),
                ("x-lethe-onetime", if one_time { "true" } else { "false" }),
            ],
            binary_message(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["message"].as_str().expect("an id").to_owned()
}

async fn the_file_status_route_answers_without_consuming(s: &TestServer) {
    let id = create_file(s, true).await;
    for _ in 0..3 {
        let r = s.get(&format!("/file/{id}/status")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json(), json!({"oneTime": true}));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let r = s.get(&format!("/file/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "the status checks consumed nothing");
    let r = s.get(&format!("/file/{id}/status")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), json!({"message": "Secret not found"}));

    let id = create_file(s, false).await;
    assert_eq!(s.get(&format!("/file/{id}/status")).await.json(), json!({"oneTime": false}));
    let r = s.request(Method::DELETE, &format!("/file/{id}/status"), &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(s.get(&format!("/file/{}/status", "Z".repeat(32))).await.status, StatusCode::NOT_FOUND);
}

async fn the_status_routes_keep_files_and_texts_apart(s: &TestServer) {
    let file = create_file(s, true).await;
    let armored = Gpg::new().encrypt_symmetric("text-key", b"text");
    let r = s.post_json("/create/secret", &json!({"message": armored, "expiration": 3600})).await;
    let text = r.json()["message"].as_str().expect("an id").to_owned();
    // Each status route knows only its own kind, like the read routes.
    assert_eq!(s.get(&format!("/secret/{file}/status")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/file/{text}/status")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/secret/{text}/status")).await.status, StatusCode::OK);
    assert_eq!(s.get(&format!("/file/{file}/status")).await.status, StatusCode::OK);
}

/// Issue 13: each kind of endpoint has its own policy. Replies that render nothing (JSON, plain text)
/// may load nothing at all; only server-rendered pages may load their stylesheet and post their forms.
#[tokio::test]
async fn api_replies_may_load_nothing_and_pages_only_their_styles_and_forms() {
    let s = TestServer::start(Engine::Memory).await;
    let m = s.share("secret=kinds").await;
    for path in ["/api/v1/status", "/config", "/health", "/nope", "/api/v1/secret/unknown"] {
        let r = s.get(path).await;
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
            "{path}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert_common_headers(&r, path);
    }
    for path in
        [format!("/secret/{}", key(&m, "secret_key")), format!("/private/{}", key(&m, "metadata_key"))]
    {
        let r = s.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("style-src 'self'") && csp.contains("form-action 'self'"), "{path}: {csp}");
        assert!(!csp.contains("script-src"), "{path}: {csp}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }
    s.stop().await;
}
