//! Per-IP rate limits: the v1 dialect answers in its own way, the JSON surfaces with 429 and
//! Retry-After; X-Forwarded-For counts only from trusted proxies.

use hyper::{Method, StatusCode};
use lethe::config::RateLimit;
use lethe::store::Engine;
use serde_json::json;

use crate::support::{TestServer, key};

fn limits(creates: u32, failed: u32) -> impl Fn(&mut lethe::config::RawConfig) {
    move |raw| {
        raw.rate_limit =
            RateLimit { creates, failed_passphrases: failed, window_seconds: 60, ..RateLimit::default() }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_creates_over_the_limit_answer_in_the_dialect_until_the_window_ends() {
    let s = TestServer::start_with(Engine::Memory, &limits(2, 20)).await;
    s.share("secret=a").await;
    s.share("secret=b").await;
    let r = s.post_form("/api/v1/share", "secret=c").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.intended(), Some(429));
    assert_eq!(r.json(), json!({"message": "Rate limit exceeded. Please try again later."}));
    let r = s.post_form("/api/v1/generate", "").await;
    assert_eq!(r.intended(), Some(429));
    s.clock.advance(60);
    s.share("secret=d").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_passphrases_are_limited_per_client_across_secrets() {
    let s = TestServer::start_with(Engine::Memory, &limits(100, 2)).await;
    let one = s.share("secret=one&passphrase=pw").await;
    let two = s.share("secret=two&passphrase=pw").await;
    let sk1 = key(&one, "secret_key");
    let sk2 = key(&two, "secret_key");
    for _ in 0..2 {
        let r = s.post_form(&format!("/api/v1/secret/{sk1}"), "passphrase=guess").await;
        assert_eq!(r.json()["message"], "Unknown secret");
    }
    // The client is now limited, even on another secret and with the right passphrase.
    let r = s.post_form(&format!("/api/v1/secret/{sk2}"), "passphrase=pw").await;
    assert_eq!(r.intended(), Some(429));
    s.clock.advance(60);
    let r = s.post_form(&format!("/api/v1/secret/{sk2}"), "passphrase=pw").await;
    assert_eq!(r.json()["value"], "two");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_surfaces_answer_429_with_retry_after() {
    let s = TestServer::start_with(Engine::Memory, &limits(1, 20)).await;
    let body = json!({"message": "not pgp", "expiration": 3600});
    assert_eq!(s.post_json("/create/secret", &body).await.status, StatusCode::BAD_REQUEST);
    s.clock.advance(15);
    let r = s.post_json("/create/secret", &body).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("45"));
    assert_eq!(r.json(), json!({"message": "Rate limit exceeded. Please try again later."}));
    let r = s.post_json("/request", &json!({"public_key": "x", "expiration": 3600})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_separates_clients_only_behind_a_trusted_proxy() {
    let trusted = |raw: &mut lethe::config::RawConfig| {
        limits(1, 20)(raw);
        raw.trusted_proxies = vec!["127.0.0.1".into()];
    };
    let s = TestServer::start_with(Engine::Memory, &trusted).await;
    let share = |ip: &'static str| {
        let s = &s;
        async move {
            let headers = [("x-forwarded-for", ip), ("content-type", "application/x-www-form-urlencoded")];
            s.request(Method::POST, "/api/v1/share", &headers, "secret=x").await
        }
    };
    assert_eq!(share("203.0.113.1").await.status, StatusCode::OK);
    assert_eq!(share("203.0.113.2").await.status, StatusCode::OK);
    assert_eq!(share("203.0.113.1").await.intended(), Some(429));
    s.stop().await;

    // Without trust the header is ignored: every request counts against the peer itself.
    let s = TestServer::start_with(Engine::Memory, &limits(1, 20)).await;
    let headers = [("x-forwarded-for", "203.0.113.1"), ("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(s.request(Method::POST, "/api/v1/share", &headers, "secret=x").await.status, StatusCode::OK);
    let headers = [("x-forwarded-for", "203.0.113.2"), ("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(s.request(Method::POST, "/api/v1/share", &headers, "secret=x").await.intended(), Some(429));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_can_be_turned_off() {
    let off = |raw: &mut lethe::config::RawConfig| {
        limits(1, 1)(raw);
        raw.rate_limit.enabled = false;
    };
    let s = TestServer::start_with(Engine::Memory, &off).await;
    for _ in 0..5 {
        s.share("secret=x").await;
    }
    s.stop().await;
}
