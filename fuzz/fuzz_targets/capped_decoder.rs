//! The capped request decoders (harness/capped_decoder.rs).
//! The same check runs over the committed seeds and under proptest in the normal test run
//! (tests/fuzz_harnesses.rs).
#![no_main]

#[path = "../harness/capped_decoder.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::check(data));
