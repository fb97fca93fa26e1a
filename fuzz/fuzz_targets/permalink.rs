//! Any string as a permalink or product URL.
//! The checks live in `fuzz/checks.rs`, shared with the corpus replay in `tests/hostile.rs`.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)] // each target runs one of the checks
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::permalink(data));
