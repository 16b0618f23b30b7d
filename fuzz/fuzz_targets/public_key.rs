//! Armored public keys must be validated or refused, never panic: see `lethe::fuzzing::public_key`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lethe::fuzzing::public_key(data));
