//! The body-limit state machine of StreamBodyLayer (harness/body_limits.rs).
//! The same check runs over the committed seeds and under proptest in the normal test run
//! (tests/fuzz_harnesses.rs).
#![no_main]

#[path = "../harness/body_limits.rs"]
mod harness;
#[path = "../harness/paused_runtime.rs"]
mod paused_runtime;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::check(data));
