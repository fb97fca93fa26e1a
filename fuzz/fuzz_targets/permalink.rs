//! Any string as a permalink or product URL.
//! The checks live in `keystead::fuzzing`, shared with the corpus replay in `tests/hostile.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keystead::fuzzing::permalink(data));
