//! The redb backend must agree with the memory model on every program of store operations: see
//! `lethe::fuzzing::store`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lethe::fuzzing::store(data));
