//! Strict input: what a client sends is taken as sent or refused in the surface's dialect, never
//! silently altered (issue 12, point 8).

use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::per_backend;
use crate::support::TestServer;

per_backend!(
    v1_parameters_that_are_not_utf8_are_refused_and_store_nothing,
    a_json_ttl_past_64_bits_clamps_to_the_maximum,
    a_negative_or_non_numeric_expiration_is_an_invalid_expiration,
    a_public_key_block_with_a_message_packet_is_refused,
);

const NOT_UTF8: &str = "Parameters must be valid UTF-8";

fn refused_as_not_utf8(r: &crate::support::Resp) {
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(r.intended(), Some(400), "{}", r.text());
    assert_eq!(r.json()["message"], NOT_UTF8);
}

async fn v1_parameters_that_are_not_utf8_are_refused_and_store_nothing(s: &TestServer) {
    let token = s.account("utf8@example.com").await;
    let share = |form: &'static str| s.post_form_as("/api/v1/share", form, "utf8@example.com", &token);
    refused_as_not_utf8(&share("secret=%ff%fe").await);
    refused_as_not_utf8(&share("secret=ok&passphrase=%C3").await);
    // Raw bytes, not percent-encoded, in a form body.
    let auth = crate::support::basic("utf8@example.com", &token);
    let raw = s
        .request(
            Method::POST,
            "/api/v1/share",
            &[("content-type", "application/x-www-form-urlencoded"), ("authorization", &auth)],
            b"secret=caf\xe9".to_vec(),
        )
        .await;
    refused_as_not_utf8(&raw);
    // The query string and a multipart body are held to the same rule.
    let query =
        s.request(Method::POST, "/api/v1/share?secret=%80", &[("authorization", &auth)], Vec::new()).await;
    refused_as_not_utf8(&query);
    let mut multipart = b"--b0undary\r\nContent-Disposition: form-data; name=\"secret\"\r\n\r\n".to_vec();
    multipart.extend_from_slice(b"\xff\xfe\r\n--b0undary--\r\n");
    let ct = "multipart/form-data; boundary=b0undary";
    let r = s
        .request(Method::POST, "/api/v1/share", &[("content-type", ct), ("authorization", &auth)], multipart)
        .await;
    refused_as_not_utf8(&r);
    // Nothing of the above was stored: the account's list is empty.
    let recent = s.get_as("/api/v1/private/recent", "utf8@example.com", &token).await;
    assert_eq!(recent.status, StatusCode::OK, "{}", recent.text());
    assert_eq!(recent.json(), json!([]));

    // Two different invalid passphrases used to decode to the same replacement characters and match;
    // now the guess is refused before it is compared, and the right one still opens the secret.
    let created = s.share("secret=guarded&passphrase=%E2%9C%93%E2%9C%93").await;
    let sk = crate::support::key(&created, "secret_key");
    refused_as_not_utf8(&s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=%ff%ff%ff%ff%ff%ff").await);
    let r = s.post_form(&format!("/api/v1/secret/{sk}"), "passphrase=%E2%9C%93%E2%9C%93").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["value"], "guarded");
}

async fn a_json_ttl_past_64_bits_clamps_to_the_maximum(s: &TestServer) {
    let max = s.app.domain.settings.ttl.max_anonymous;
    for ttl in [json!(1e30), json!(99_999_999_999_999_999_999.0), json!(18_446_744_073_709_551_615u64)] {
        let r = s.post_json("/api/v1/share", &json!({"secret": "x", "ttl": ttl})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["ttl"], max, "ttl {ttl}");
    }
    // The form path, for comparison, and a small JSON ttl that stays as given.
    let r = s.post_form("/api/v1/share", "secret=x&ttl=100000000000000000000000000000").await;
    assert_eq!(r.json()["ttl"], max);
    let r = s.post_json("/api/v1/share", &json!({"secret": "x", "ttl": 3600})).await;
    assert_eq!(r.json()["ttl"], 3600);
}

async fn a_negative_or_non_numeric_expiration_is_an_invalid_expiration(s: &TestServer) {
    let message = "-----BEGIN PGP MESSAGE-----\n\nwy4ECQMI\n-----END PGP MESSAGE-----\n";
    for expiration in [json!(-1), json!(1.5), json!(-1e30), json!(null)] {
        let r = s.post_json("/create/secret", &json!({"message": message, "expiration": expiration})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{expiration}: {}", r.text());
        assert_eq!(r.json()["message"], "Invalid expiration specified", "{expiration}");
        let r = s.post_json("/request", &json!({"public_key": "k", "expiration": expiration})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{expiration}: {}", r.text());
        assert_eq!(r.json()["message"], "Invalid expiration specified", "{expiration}");
    }
    // A string is not a number at all: the body has the wrong shape, as before.
    let r = s.post_json("/create/secret", &json!({"message": message, "expiration": "3600"})).await;
    assert_eq!(r.json()["message"], "Unable to parse json");
}

/// OpenPGP's CRC-24, for re-armoring a block the test has changed.
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00b7_04ce;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4cfb;
            }
        }
    }
    crc & 0x00ff_ffff
}

fn armor_public_key(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.encode(bytes);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let crc = crc24(bytes).to_be_bytes();
    format!(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{}\n={}\n-----END PGP PUBLIC KEY BLOCK-----\n",
        lines.join("\n"),
        b64.encode(&crc[1..])
    )
}

async fn a_public_key_block_with_a_message_packet_is_refused(s: &TestServer) {
    let keys = crate::support::gpg::shared_keys();
    let key = keys.gpg.run(&["--export", &keys.key], b"");
    // The untouched key, re-armored by this test, is accepted: the refusal below is the packet's.
    let r = s.post_json("/request", &json!({"public_key": armor_public_key(&key), "expiration": 3600})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // A literal data packet (tag 11, new format) after the key: "binary, no name, time 0, hi".
    let mut with_literal = key.clone();
    with_literal.extend_from_slice(&[0xc0 | 11, 8, b'b', 0, 0, 0, 0, 0, b'h', b'i']);
    let r = s
        .post_json("/request", &json!({"public_key": armor_public_key(&with_literal), "expiration": 3600}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let m: Value = r.json()["message"].clone();
    assert!(m.as_str().unwrap_or_default().starts_with("A valid PGP public key is required"), "{m}");

    // The key replacement route holds the same rule.
    let created =
        s.post_json("/request", &json!({"public_key": armor_public_key(&key), "expiration": 3600})).await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let token = created.json()["token"].as_str().unwrap().to_owned();
    let body = json!({"public_key": armor_public_key(&with_literal)}).to_string();
    let headers = [("x-lethe-request-token", token.as_str()), ("content-type", "application/json")];
    let r = s.request(Method::PUT, &format!("/request/{id}/key"), &headers, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
}
