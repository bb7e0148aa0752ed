//! What the app's background sync needs besides `sync::sync`: a quick reachability probe
//! made without holding the store (so the app never waits on a dead network with its
//! store locked), and the time of the last verified sync.

use std::time::Duration;

use kunjung_store::{Store, StoreError};

/// Meta key the sync engine writes when the server acknowledged every local change.
const META_VERIFIED_AT: &str = "sync.verified_at_ms";

/// Whether the server answers `GET /v1/health` within `timeout`.
pub fn reachable(server: &str, timeout: Duration) -> bool {
    let Ok(client) = reqwest::blocking::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
    else {
        return false;
    };
    let url = format!("{}/v1/health", server.trim_end_matches('/'));
    client
        .get(url)
        .send()
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

/// When the last sync was verified (ms since the epoch), if ever.
pub fn verified_at(store: &Store) -> Result<Option<i64>, StoreError> {
    Ok(store
        .meta(META_VERIFIED_AT)?
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_unreachable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(!reachable(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_millis(500)
        ));
    }
}
