//! cargo-fuzz target: see harness.rs (`api_request`) for what it feeds and checks.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::api_request(data));
