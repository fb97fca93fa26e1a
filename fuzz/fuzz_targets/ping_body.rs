//! A ping body: a first line naming the Content-Type (empty for none), then the body bytes.
//! The checks live in `keystead::fuzzing`, shared with the corpus replay in `tests/hostile.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keystead::fuzzing::ping_body(data));
