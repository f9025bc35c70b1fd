//! The stack's HTTP framing paths over an in-memory connection (harness/framing.rs).
//! The same check runs over the committed seeds and under proptest in the normal test run
//! (tests/fuzz_harnesses.rs).
#![no_main]

#[path = "../harness/framing.rs"]
mod harness;
#[path = "../harness/paused_runtime.rs"]
mod paused_runtime;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::check(data));
