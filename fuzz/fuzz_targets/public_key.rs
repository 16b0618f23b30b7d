//! `validate_public_key` must return, never panic, on any text. The input is tried twice: as lossy
//! UTF-8 text (the armor parser), and as packet bytes wrapped in a well-formed armor block, because
//! random bytes seldom get past the armor and the packet, composition and signature checks are
//! where rPGP does most of its work. Keep in step with `fuzz_public_key` in
//! `src/crypto/openpgp.rs`, which replays the seed corpus in the normal test run.
#![no_main]

use lethe::crypto::openpgp::validate_public_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = validate_public_key(&text, 1_700_000_000);
    let _ = validate_public_key(&text, u64::MAX);
    let _ = validate_public_key(&armor(data), 1_700_000_000);
});

/// `data` as the body of a PGP PUBLIC KEY BLOCK (no checksum line, which is optional).
fn armor(data: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut body = String::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                body.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                body.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END PGP PUBLIC KEY BLOCK-----\n");
    out
}
