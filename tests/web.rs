//! The pages people use: a GET never consumes; only the Reveal button's POST does.

use hyper::{Method, StatusCode};

use crate::per_backend;
use crate::support::{TestServer, key};

per_backend!(
    opening_a_link_shows_a_button_and_consumes_nothing,
    the_reveal_button_shows_the_value_once_and_escapes_it,
    a_protected_secret_asks_for_its_passphrase_again_when_wrong,
    the_creator_page_shows_state_and_burns,
    every_response_carries_the_security_headers,
    operations_routes_answer,
);

async fn opening_a_link_shows_a_button_and_consumes_nothing(s: &TestServer) {
    let m = s.share("secret=peekaboo").await;
    let sk = key(&m, "secret_key");
    for accept in ["text/html", "application/json", "*/*"] {
        let r = s.request(Method::GET, &format!("/secret/{sk}"), &[("accept", accept)], "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let html = r.text();
        assert!(html.contains(&format!("action=\"/secret/{sk}\"")), "{html}");
        assert!(html.contains("<button"));
        assert!(!html.contains("peekaboo"));
        assert!(!html.contains("name=\"passphrase\""));
    }
    let r = s.request(Method::HEAD, &format!("/secret/{sk}"), &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    // Still there after every GET.
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
    assert_eq!(r.json()["value"], "peekaboo");
    let r = s.get(&format!("/secret/{sk}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("does not exist"));
    // DELETE never burns a v1 secret.
    let m = s.share("secret=stay").await;
    let r = s.request(Method::DELETE, &format!("/secret/{}", key(&m, "secret_key")), &[], "").await;
    assert_ne!(r.status, StatusCode::OK);
    assert_eq!(
        s.post_form(&format!("/api/v1/secret/{}", key(&m, "secret_key")), "").await.json()["value"],
        "stay"
    );
}

async fn the_reveal_button_shows_the_value_once_and_escapes_it(s: &TestServer) {
    let m = s.share("secret=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    let sk = key(&m, "secret_key");
    let r = s.post_form(&format!("/secret/{sk}"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let html = r.text();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<script>"));
    let r = s.post_form(&format!("/secret/{sk}"), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let meta = s.get(&format!("/api/v1/private/{}", key(&m, "metadata_key"))).await.json();
    assert_eq!(meta["state"], "received");
}

async fn a_protected_secret_asks_for_its_passphrase_again_when_wrong(s: &TestServer) {
    let m = s.share("secret=behind+a+word&passphrase=open").await;
    let sk = key(&m, "secret_key");
    let html = s.get(&format!("/secret/{sk}")).await.text();
    assert!(html.contains("name=\"passphrase\""));
    let r = s.post_form(&format!("/secret/{sk}"), "passphrase=shut").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("not right"));
    let r = s.post_form(&format!("/secret/{sk}"), "passphrase=open").await;
    assert!(r.text().contains("behind a word"));
}

async fn the_creator_page_shows_state_and_burns(s: &TestServer) {
    let m = s.share("secret=mine").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    let html = s.get(&format!("/private/{mk}")).await.text();
    assert!(html.contains("<strong>new</strong>"), "{html}");
    assert!(html.contains(&format!("{}/secret/{sk}", s.base)));
    assert!(!html.contains("mine"));
    let html = s.get(&format!("/private/{mk}")).await.text();
    assert!(html.contains("<strong>viewed</strong>"));
    let r = s.post_form(&format!("/private/{mk}/burn"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    let html = s.get(&format!("/private/{mk}")).await.text();
    assert!(html.contains("<strong>burned</strong>"));
    assert!(!html.contains(&sk));
    assert_eq!(s.get(&format!("/private/{}", "b".repeat(31))).await.status, StatusCode::NOT_FOUND);
}

async fn every_response_carries_the_security_headers(s: &TestServer) {
    let m = s.share("secret=x").await;
    let paths = [
        (Method::GET, "/".to_owned()),
        (Method::GET, "/api/v1/status".to_owned()),
        (Method::GET, format!("/secret/{}", key(&m, "secret_key"))),
        (Method::GET, "/nope".to_owned()),
        (Method::POST, "/api/v1/secret/unknown".to_owned()),
        (Method::GET, "/static/lethe.css".to_owned()),
    ];
    for (method, path) in paths {
        let r = s.request(method, &path, &[], "").await;
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
            "{path}: {csp}"
        );
    }
}

async fn operations_routes_answer(s: &TestServer) {
    assert_eq!(s.get("/health").await.json(), serde_json::json!({"status": "healthy"}));
    assert_eq!(s.get("/ready").await.json(), serde_json::json!({"status": "ready"}));
    assert_eq!(s.get("/version").await.json()["version"], env!("CARGO_PKG_VERSION"));
    let r = s.request(Method::DELETE, "/health", &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}
