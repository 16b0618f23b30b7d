//! A store that cannot write (a full disk, a failing device): every surface answers with its own
//! error, nothing is half-done, and nothing is consumed that was not handed out.

use hyper::StatusCode;
use serde_json::json;

use crate::per_backend;
use crate::support::{TestServer, key};

per_backend!(
    a_failing_write_refuses_creation_in_each_dialect,
    a_reveal_whose_delete_fails_keeps_the_secret_for_later,
    readiness_reports_a_store_that_cannot_read,
    readiness_reports_a_store_that_cannot_write_until_it_can_again,
);

async fn a_failing_write_refuses_creation_in_each_dialect(s: &TestServer) {
    s.faults.writes(true);
    let r = s.post_form("/api/v1/share", "secret=lost").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.intended(), Some(500));
    assert_eq!(r.json(), json!({"message": "An unexpected error occurred"}));
    assert!(!r.text().contains("No space"), "internal detail leaked: {}", r.text());

    let r = s.post_json("/request", &json!({"public_key": "x", "expiration": 3600})).await;
    assert!(
        r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        r.status
    );

    s.faults.writes(false);
    // Nothing was stored by the failed attempts.
    assert_eq!(s.app.domain.store().count(lethe::domain::secrets::SECRET).await.unwrap(), 0);
    assert_eq!(s.app.domain.store().count(lethe::domain::secrets::METADATA).await.unwrap(), 0);
    assert_eq!(s.app.domain.store().count(lethe::domain::requests::REQUEST).await.unwrap(), 0);
}

async fn a_reveal_whose_delete_fails_keeps_the_secret_for_later(s: &TestServer) {
    let m = s.share("secret=still+here").await;
    let (sk, mk) = (key(&m, "secret_key"), key(&m, "metadata_key"));
    s.faults.writes(true);
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
    assert_eq!(r.intended(), Some(500));
    assert!(r.json().get("value").is_none(), "the value is only handed out once the delete is committed");
    let page = s.post_form(&format!("/secret/{sk}"), "").await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!page.text().contains("still here"));
    s.faults.writes(false);

    let meta = s.get(&format!("/api/v1/private/{mk}")).await.json();
    assert_eq!(meta["state"], "new", "the failed reads changed nothing");
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "").await;
    assert_eq!(r.json()["value"], "still here");
    assert_eq!(s.post_form(&format!("/api/v1/secret/{sk}"), "").await.json()["message"], "Unknown secret");
}

async fn readiness_reports_a_store_that_cannot_read(s: &TestServer) {
    assert_eq!(s.get("/ready").await.status, StatusCode::OK);
    s.faults.reads(true);
    let r = s.get("/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "not ready");
    assert_eq!(s.get("/health").await.status, StatusCode::OK, "health is the process, not the store");
    let r = s.get(&format!("/secret/{}", "A".repeat(32))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    s.faults.reads(false);
    assert_eq!(s.get("/ready").await.status, StatusCode::OK);
}

/// A store that reads but cannot commit (a full disk) cannot serve a create or a reveal: a load
/// balancer must hear it from `/ready`, and hear that it is back once it is.
async fn readiness_reports_a_store_that_cannot_write_until_it_can_again(s: &TestServer) {
    let m = s.share("secret=kept").await;
    assert_eq!(s.get("/ready").await.status, StatusCode::OK);
    s.faults.writes(true);
    let r = s.get("/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "not ready");
    assert!(!r.text().contains("No space"), "internal detail leaked: {}", r.text());
    assert_eq!(s.post_form("/api/v1/share", "secret=refused").await.intended(), Some(500));
    assert_eq!(s.get("/health").await.status, StatusCode::OK, "health is the process, not the store");
    s.faults.writes(false);
    assert_eq!(s.get("/ready").await.status, StatusCode::OK);
    let r = s.post_form(&format!("/api/v1/secret/{}", key(&m, "secret_key")), "").await;
    assert_eq!(r.json()["value"], "kept", "what was acknowledged before is still there");
}
