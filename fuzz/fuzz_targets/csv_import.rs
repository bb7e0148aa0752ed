//! cargo-fuzz entry point for [`kunjung_fuzz::csv_import`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kunjung_fuzz::csv_import(data));
