//! One sync attempt with the sync engine of `kunjung-client`, and the state it leads to.

use super::*;
use kunjung_client::app_support::{reachable, verified_at};
use kunjung_client::sync::{SyncError, SyncOptions};

fn state(phase: &str, pending: i64, verified_at: Option<i64>) -> SyncState {
    SyncState {
        phase: phase.into(),
        pending,
        verified_at,
        ..Default::default()
    }
}

/// Options for the server and account in the settings; `tries` stays low because the
/// worker does its own backoff.
pub fn options(server: &str, account: &str, password: Option<String>) -> SyncOptions {
    let mut o = SyncOptions::new(server, account, password);
    o.tries = 2;
    o
}

/// The state after a sync result.
pub fn outcome(
    r: std::result::Result<kunjung_client::sync::SyncSummary, SyncError>,
    pending: i64,
    verified: Option<i64>,
) -> SyncState {
    match r {
        // Not verified only because something was written during the sync: the
        // worker's next round pushes it; refused changes are an error.
        Ok(sum) => SyncState {
            acknowledged: sum.pushed as i64,
            pulled: sum.pulled as i64,
            ..state(
                if sum.verified || sum.rejected.is_empty() {
                    "verified"
                } else {
                    "error"
                },
                pending,
                verified,
            )
        },
        Err(SyncError::Network { .. }) => state("offline", pending, verified),
        Err(SyncError::PasswordRequired) => state("signed_out", pending, verified),
        Err(e)
            if matches!(
                e.code(),
                "unauthorized" | "invalid_credentials" | "account_disabled"
            ) =>
        {
            SyncState {
                message: Some(e.to_string()),
                ..state("signed_out", pending, verified)
            }
        }
        Err(e) => SyncState {
            message: Some(e.to_string()),
            ..state("error", pending, verified)
        },
    }
}

pub fn step(store: &SharedStore, _before: &SyncState, publish: &dyn Fn(SyncState)) -> SyncState {
    let read = with_store(store, |s| {
        Ok((
            s.unsynced_count()?,
            s.meta("setting:server")?.unwrap_or_default(),
            s.meta("setting:account")?.unwrap_or_default(),
            verified_at(s)?,
        ))
    });
    let Ok((pending, server, account, verified)) = read else {
        return state("locked", 0, None);
    };
    if server.is_empty() || account.is_empty() {
        return state("no_server", pending, verified);
    }
    // Probe without the store: a dead network never keeps the UI waiting.
    if !reachable(&server, Duration::from_secs(5)) {
        return state("offline", pending, verified);
    }
    publish(SyncState {
        progress: Some(0.0),
        ..state("syncing", pending, verified)
    });
    let opts = options(&server, &account, None);
    // The store is taken only between round trips, one household at a time.
    let r = store.sync(&opts, &mut |p| {
        let done = p.total.saturating_sub(p.remaining) as f64;
        publish(SyncState {
            progress: Some(if p.total == 0 {
                1.0
            } else {
                done / p.total as f64
            }),
            ..state("syncing", pending, verified)
        });
    });
    let after = with_store(store, |s| Ok((verified_at(s)?, s.unsynced_count()?)));
    let Ok((verified, pending)) = after else {
        return state("locked", 0, None);
    };
    outcome(r, pending, verified)
}
