//! cargo-fuzz entry point for [`kunjung_fuzz::document_load`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kunjung_fuzz::document_load(data));
