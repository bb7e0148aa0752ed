//! The Kunjung sync server (SPEC §4, §6).
