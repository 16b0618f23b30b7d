//! The entry points of the fuzz targets in `fuzz/`, kept in the library so that the targets and the
//! normal test run (which replays the committed seed corpora) call exactly the same code. Each must
//! return on any input, never panic, and never allocate without bound.

use crate::api;
use crate::crypto::openpgp::{inspect_binary_message, inspect_message, validate_public_key};
use crate::http::body;

/// Armored public keys (`fuzz_targets/public_key.rs`). The input is tried twice: as lossy UTF-8 text
/// (the armor parser), and as packet bytes wrapped in a well-formed armor block, because random bytes
/// seldom get past the armor and the packet, composition and signature checks are where rPGP does most
/// of its work.
pub fn public_key(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = validate_public_key(&text, 1_700_000_000);
    let _ = validate_public_key(&text, u64::MAX);
    let _ = validate_public_key(&armored(data), 1_700_000_000);
}

/// `data` as the body of a PGP PUBLIC KEY BLOCK (without the optional checksum line).
fn armored(data: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::from("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PGP PUBLIC KEY BLOCK-----\n");
    out
}

/// Armored and binary messages (`fuzz_targets/message.rs`).
pub fn message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = inspect_message(&text, 64 * 1024);
    let _ = inspect_binary_message(data, 64 * 1024);
}

/// Request bodies of every surface (`fuzz_targets/request_body.rs`): the JSON bodies of the
/// client-encrypted and request routes, and the v1 dialect's form, JSON and multipart parameters.
pub fn request_body(data: &[u8]) {
    let _ = api::decode_json::<api::client::CreateSecret>(data);
    let _ = api::decode_json::<api::requests::CreateRequest>(data);
    let _ = api::decode_json::<api::requests::SubmitSecret>(data);
    let _ = api::decode_json::<api::requests::RotateKey>(data);
    let text = String::from_utf8_lossy(data);
    let _ = body::parse_form(&text);
    let _ = api::ots_v1::decode_params(data, Some("application/json"));
    let _ = api::ots_v1::decode_params(data, Some("multipart/form-data; boundary=b0undary"));
    let _ = api::ots_v1::decode_params(data, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every committed seed through every entry point, so a seed that once crashed stays fixed
    /// without running the fuzzer.
    #[test]
    fn seed_corpora_never_panic() {
        let mut seen = 0;
        for target in ["public_key", "message", "request_body"] {
            let dir = format!("{}/fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
                let data = std::fs::read(entry.expect("corpus entry").path()).expect("seed");
                public_key(&data);
                message(&data);
                request_body(&data);
                seen += 1;
            }
        }
        assert!(seen >= 15, "only {seen} seeds found");
    }
}
