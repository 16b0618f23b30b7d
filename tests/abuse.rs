//! Hostile load: concurrent passphrase guesses, a flood of rate-limited requests against the audit
//! trail, clients behind proxies and IPv6 subnets, and wrong API tokens.

use hyper::{Method, StatusCode};
use lethe::config::RawConfig;
use lethe::store::Engine;
use serde_json::Value;

use crate::support::{TestServer, basic, join_all, key};

/// Instantiates each listed `async fn(Engine)` once per storage backend, for tests that need their
/// own configuration.
macro_rules! per_engine {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(lethe::store::Engine::Memory).await;
                }
            )*
        }
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(lethe::store::Engine::Redb).await;
                }
            )*
        }
    };
}

per_engine!(
    concurrent_wrong_guesses_cost_at_most_max_failures_checks,
    concurrent_guesses_across_secrets_cost_at_most_the_address_allowance,
    a_reveal_without_a_passphrase_is_not_a_guess,
    the_creator_burns_a_locked_secret_without_its_passphrase,
    plain_links_reveal_for_an_address_out_of_passphrase_guesses,
);

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// bcrypt checks run so far: the hasher's own count, which is what an attacker's guesses cost.
fn checks(s: &TestServer) -> u64 {
    s.app.domain.hasher.checks()
}

async fn concurrent_wrong_guesses_cost_at_most_max_failures_checks(engine: Engine) {
    // A per-address allowance far above the guesses, so only the per-secret limit is at work; a
    // bcrypt cost high enough that the guesses overlap.
    let s = TestServer::start_with(engine, &|raw: &mut RawConfig| {
        raw.rate_limit.failed_passphrases = 1_000;
        raw.passphrase.bcrypt_cost = 6;
    })
    .await;
    let max = u64::from(s.app.domain.settings.passphrase.max_failures);
    let sk = key(&s.share("secret=treasure&passphrase=right").await, "secret_key");
    let path = format!("/api/v1/secret/{sk}");
    let before = checks(&s);
    let guesses = (0..40)
        .map(|i| {
            let (s, path) = (&s, &path);
            async move { s.post_form(path, &format!("passphrase=wrong{i}")).await }
        })
        .collect();
    let answers = join_all(guesses).await;
    let checked = checks(&s) - before;
    assert!((1..=max).contains(&checked), "{checked} bcrypt checks for 40 concurrent guesses");
    // Each guess was either checked (and looks like an unknown secret) or refused by the lock.
    let unknown =
        answers.iter().filter(|r| r.intended().is_none() && r.json()["message"] == "Unknown secret");
    let locked = answers.iter().filter(|r| r.intended() == Some(429));
    assert_eq!(unknown.count() as u64, checked);
    assert_eq!(locked.count() as u64, 40 - checked);

    // While locked even the right passphrase is not checked.
    let r = s.post_form(&path, "passphrase=right").await;
    assert_eq!(r.intended(), Some(429), "{}", r.text());
    assert_eq!(checks(&s) - before, checked);
    let metrics = s.get("/metrics").await.text();
    assert!(metrics.contains(&format!("lethe_passphrase_checks_total {}", checks(&s))), "{metrics}");

    // After the lock window the right passphrase works, once.
    s.clock.advance(s.app.domain.settings.passphrase.lock_seconds);
    let r = s.post_form(&path, "passphrase=right").await;
    assert_eq!(r.json()["value"], "treasure", "{}", r.text());
    assert_eq!(s.post_form(&path, "passphrase=right").await.json()["message"], "Unknown secret");
    s.stop().await;
}

async fn concurrent_guesses_across_secrets_cost_at_most_the_address_allowance(engine: Engine) {
    let s = TestServer::start_with(engine, &|raw: &mut RawConfig| {
        raw.rate_limit.failed_passphrases = 3;
        raw.passphrase.bcrypt_cost = 6;
    })
    .await;
    let mut paths = Vec::new();
    for _ in 0..20 {
        paths.push(format!(
            "/api/v1/secret/{}",
            key(&s.share("secret=x&passphrase=right").await, "secret_key")
        ));
    }
    let before = checks(&s);
    let guesses = paths.iter().map(|path| s.post_form(path, "passphrase=wrong")).collect();
    let answers = join_all(guesses).await;
    let checked = checks(&s) - before;
    assert!((1..=3).contains(&checked), "{checked} bcrypt checks with an allowance of 3");
    assert_eq!(answers.iter().filter(|r| r.intended() == Some(429)).count() as u64, 20 - checked);
    s.stop().await;
}

async fn a_reveal_without_a_passphrase_is_not_a_guess(engine: Engine) {
    let s =
        TestServer::start_with(engine, &|raw: &mut RawConfig| raw.rate_limit.failed_passphrases = 2).await;
    let sk = key(&s.share("secret=kept&passphrase=right").await, "secret_key");
    let path = format!("/api/v1/secret/{sk}");
    let before = checks(&s);
    // More asks than the secret's lock and the address's allowance would take, had they counted.
    for _ in 0..10 {
        let r = s.post_form(&path, "").await;
        assert_eq!(r.json()["message"], "Unknown secret", "{}", r.text());
        assert_eq!(r.intended(), None);
        let page = s.request(Method::POST, &format!("/secret/{sk}"), &[FORM], "").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text().contains("needs its passphrase"), "{}", page.text());
    }
    assert_eq!(checks(&s), before, "no bcrypt without a passphrase");
    let r = s.post_form(&path, "passphrase=right").await;
    assert_eq!(r.json()["value"], "kept", "{}", r.text());
    let audit = s.stop_with_audit().await;
    let asked = audit.iter().filter(|l| l["reason"] == "passphrase_required").count();
    assert_eq!(asked, 20);
}

async fn the_creator_burns_a_locked_secret_without_its_passphrase(engine: Engine) {
    let s = TestServer::start(engine).await;
    let meta = s.share("secret=doomed&passphrase=right").await;
    let (sk, mk) = (key(&meta, "secret_key"), key(&meta, "metadata_key"));
    let burn = format!("/api/v1/private/{mk}/burn");
    // Outside a lock, burning asks for the passphrase.
    let r = s.post_form(&burn, "").await;
    assert_eq!((r.intended(), r.json()["message"].clone()), (Some(400), Value::from("Incorrect passphrase")));
    let r = s.post_form(&burn, "passphrase=wrong").await;
    assert_eq!(r.intended(), Some(400));
    // A stranger with the link locks the secret...
    for _ in 1..s.app.domain.settings.passphrase.max_failures {
        s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=wrong").await;
    }
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=right").await;
    assert_eq!(r.intended(), Some(429), "locked: {}", r.text());
    // ...and the creator still burns it with the metadata key alone.
    let before = checks(&s);
    let r = s.post_form(&burn, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["state"]["state"], "burned");
    assert_eq!(checks(&s), before);
    assert_eq!(s.get(&format!("/api/v1/private/{mk}")).await.json()["state"], "burned");
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=right").await;
    assert_eq!(r.json()["message"], "Unknown secret");

    // The same on the creator's page.
    let meta = s.share("secret=doomed&passphrase=right").await;
    let (sk, mk) = (key(&meta, "secret_key"), key(&meta, "metadata_key"));
    let page = s.request(Method::POST, &format!("/private/{mk}/burn"), &[FORM], "").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    for _ in 0..s.app.domain.settings.passphrase.max_failures {
        s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=wrong").await;
    }
    let page = s.request(Method::POST, &format!("/private/{mk}/burn"), &[FORM], "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("Secret burned"));
    s.stop().await;
}

async fn plain_links_reveal_for_an_address_out_of_passphrase_guesses(engine: Engine) {
    let s =
        TestServer::start_with(engine, &|raw: &mut RawConfig| raw.rate_limit.failed_passphrases = 2).await;
    let guarded = key(&s.share("secret=g&passphrase=right").await, "secret_key");
    for _ in 0..2 {
        let r = s.post_form(&format!("/api/v1/secret/{guarded}"), "passphrase=typo").await;
        assert_eq!(r.json()["message"], "Unknown secret");
    }
    // The address's guesses are spent: a passphrase check is refused...
    let r = s.post_form(&format!("/api/v1/secret/{guarded}"), "passphrase=right").await;
    assert_eq!(r.intended(), Some(429));
    // ...but plain links still open, through the API and the page.
    let plain = key(&s.share("secret=plain1").await, "secret_key");
    let r = s.post_form(&format!("/api/v1/secret/{plain}"), "").await;
    assert_eq!(r.json()["value"], "plain1", "{}", r.text());
    let plain = key(&s.share("secret=plain2").await, "secret_key");
    let page = s.request(Method::POST, &format!("/secret/{plain}"), &[FORM], "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("plain2"), "{}", page.text());
    // A passphrase sent along with a plain link is not checked, so it is not refused either.
    let plain = key(&s.share("secret=plain3").await, "secret_key");
    let r = s.post_form(&format!("/api/v1/secret/{plain}"), "passphrase=whatever").await;
    assert_eq!(r.json()["value"], "plain3", "{}", r.text());
    s.stop().await;
}

/// Audit lines about rate-limit refusals.
fn refusal_lines(audit: &[Value]) -> Vec<&Value> {
    audit.iter().filter(|l| l["event"] == "rate_limit.refused").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_requests_writes_a_bounded_audit_trail() {
    let s = TestServer::start_with(Engine::Memory, &|raw: &mut RawConfig| {
        raw.rate_limit.creates = 2;
        raw.rate_limit.window_seconds = 60;
    })
    .await;
    let flood = |n: usize| {
        let s = &s;
        async move {
            let mut refused = 0;
            for _ in 0..n {
                let r = s.post_form("/api/v1/share", "secret=x").await;
                if r.intended() == Some(429) {
                    refused += 1;
                }
                let r = s
                    .post_json("/create/secret", &serde_json::json!({"message": "x", "expiration": 3600}))
                    .await;
                if r.status == StatusCode::TOO_MANY_REQUESTS {
                    refused += 1;
                }
            }
            refused
        }
    };
    let first = flood(150).await;
    s.clock.advance(60);
    let second = flood(150).await;
    assert_eq!(first + second, 2 * (300 - 2));
    let metrics = s.get("/metrics").await.text();
    assert!(metrics.contains("lethe_audit_dropped_total 0"), "{metrics}");
    let audit = s.stop_with_audit().await;
    // No line per refused request...
    assert!(audit.iter().all(|l| l["reason"] != "rate_limited"));
    let refusals = refusal_lines(&audit);
    // ...but per window and class one line at the first refusal and one summary: two windows here.
    assert!(refusals.len() <= 4, "{refusals:#?}");
    let total: u64 = refusals.iter().map(|l| l["count"].as_u64().expect("a count")).sum();
    assert_eq!(total, first + second);
    for line in &refusals {
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["reason"], "creates");
        assert_eq!(line["outcome"], "denied");
    }
    assert!(audit.len() < 20, "{} audit lines for 600 requests", audit.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_of_one_64_share_a_limit_behind_a_trusted_proxy() {
    let s = TestServer::start_with(Engine::Memory, &|raw: &mut RawConfig| {
        raw.rate_limit.creates = 1;
        raw.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let share = |xff: &'static str| {
        let s = &s;
        async move {
            s.request(Method::POST, "/api/v1/share", &[FORM, ("x-forwarded-for", xff)], "secret=x").await
        }
    };
    assert_eq!(share("2001:db8:1:2::1").await.status, StatusCode::OK);
    // Another host of the same /64, with a port as some proxies write it: the same client.
    assert_eq!(share("[2001:db8:1:2:aaaa::7]:51234").await.intended(), Some(429));
    // Another /64 is another client.
    assert_eq!(share("203.0.113.5, 2001:db8:1:3::1").await.status, StatusCode::OK);
    // An entry that does not parse ends the walk: the client-written address left of it is not
    // believed, and the trusted hop (the proxy itself) is the client.
    assert_eq!(share("2001:db8:9:9::1, garbage").await.status, StatusCode::OK);
    assert_eq!(share("2001:db8:9:9::2, garbage").await.intended(), Some(429));
    let audit = s.stop_with_audit().await;
    let nets: Vec<_> = refusal_lines(&audit).iter().map(|l| l["client_ip"].clone()).collect();
    assert!(nets.contains(&Value::from("2001:db8:1:2::/64")), "{nets:?}");
    assert!(nets.contains(&Value::from("127.0.0.1")), "{nets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_token_attempts_are_limited_and_audited() {
    let s = TestServer::start_with(Engine::Memory, &|raw: &mut RawConfig| {
        raw.rate_limit.failed_tokens = 3;
        raw.rate_limit.window_seconds = 60;
    })
    .await;
    let token = s.account("alice@example.com").await;
    // A right token is counted only while it is checked: it never uses up the allowance.
    for _ in 0..5 {
        assert_eq!(s.get_as("/api/v1/authcheck", "alice@example.com", &token).await.status, StatusCode::OK);
    }
    for _ in 0..3 {
        let r = s.get_as("/api/v1/authcheck", "alice@example.com", "wrong").await;
        assert_eq!(r.intended(), Some(401), "{}", r.text());
    }
    // The allowance is spent: further tokens, even the right one, are not checked.
    let r = s.get_as("/api/v1/authcheck", "alice@example.com", "wrong").await;
    assert_eq!(r.intended(), Some(429), "{}", r.text());
    let r = s.post_form_as("/api/v1/share", "secret=x", "alice@example.com", &token).await;
    assert_eq!(r.intended(), Some(429), "{}", r.text());
    let auth = basic("alice@example.com", "wrong");
    let r = s
        .request(
            Method::POST,
            "/request",
            &[("authorization", &auth), ("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    // Until the window ends.
    s.clock.advance(60);
    assert_eq!(s.get_as("/api/v1/authcheck", "alice@example.com", &token).await.status, StatusCode::OK);
    let audit = s.stop_with_audit().await;
    let failed = audit.iter().filter(|l| l["event"] == "account.authenticated" && l["reason"] == "bad_token");
    assert_eq!(failed.count(), 3);
    let refusals = refusal_lines(&audit);
    assert_eq!(refusals.iter().filter(|l| l["reason"] == "failed_tokens").count(), 2, "{refusals:#?}");
    let total: u64 = refusals.iter().map(|l| l["count"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 3);
    // Neither the token nor the name presented reaches the trail.
    let text = serde_json::to_string(&audit).unwrap_or_default();
    assert!(!text.contains("wrong") && !text.contains(&token));
}
