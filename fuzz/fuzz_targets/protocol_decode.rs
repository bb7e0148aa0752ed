//! cargo-fuzz entry point for [`kunjung_fuzz::protocol_decode`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kunjung_fuzz::protocol_decode(data));
