//! `validate_public_key` must return, never panic, on any text. The input is taken as lossy UTF-8 so
//! that every byte string is explored. Keep in step with `fuzz_public_key` in
//! `src/crypto/openpgp.rs`, which replays the seed corpus in the normal test run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lethe::crypto::openpgp::validate_public_key;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = validate_public_key(&text, 1_700_000_000);
    let _ = validate_public_key(&text, u64::MAX);
});
