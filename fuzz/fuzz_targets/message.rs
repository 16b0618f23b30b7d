//! Armored and binary messages must be inspected or refused, never panic: see
//! `lethe::fuzzing::message`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lethe::fuzzing::message(data));
