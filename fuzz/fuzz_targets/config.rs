//! The configuration parser, the stack's Config with every crate's variables (harness/config.rs).
//! The same check runs over the committed seeds and under proptest in the normal test run
//! (tests/fuzz_harnesses.rs).
#![no_main]

#[path = "../harness/config.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::check(data));
