//! Request bodies of every surface must decode or be refused, never panic: see
//! `lethe::fuzzing::request_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lethe::fuzzing::request_body(data));
