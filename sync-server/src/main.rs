//! `kunjung-server`: the sync server's command line.
fn main() {}
