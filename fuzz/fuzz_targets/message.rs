//! `inspect_message` (armored) and `inspect_binary_message` (raw upload) must return, never panic.
//! Keep in step with `fuzz_message` in `src/crypto/openpgp.rs`, which replays the seed corpus in the
//! normal test run.
#![no_main]

use lethe::crypto::openpgp::{inspect_binary_message, inspect_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = inspect_message(&text, 64 * 1024);
    let _ = inspect_binary_message(data, 64 * 1024);
});
