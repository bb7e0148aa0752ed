//! The audit log on both backends: a sync's events come back exactly as they were made,
//! one row per request; a database (and a backup) of the old one-row-per-event layout
//! still answers every query after it is opened (or restored), and the login limiter
//! still rebuilds its lockouts from it.

use kunjung_sync_server::audit::{self, Event};
use kunjung_sync_server::auth::LoginLimiter;
use kunjung_sync_server::db::Row;

use super::*;

/// A fresh database URL of each backend (PostgreSQL: a schema of its own).
fn urls(test: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut v = vec![(
        "sqlite".to_string(),
        format!("sqlite:{}", dir.join(format!("{test}.db")).display()),
    )];
    if let Ok(url) = std::env::var("KUNJUNG_TEST_POSTGRES") {
        if !url.is_empty() {
            let schema = format!("t_{}_{}_{}", test, std::process::id(), rand_suffix());
            let sep = if url.contains('?') { '&' } else { '?' };
            v.push(("postgres".into(), format!("{url}{sep}schema={schema}")));
        }
    }
    v
}

fn count(db: &Db, table: &str) -> i64 {
    db.tx(false, |t| {
        t.query(&format!("SELECT count(*) FROM {table}"), &[])
    })
    .unwrap()[0][0]
        .int()
}

#[test]
fn audit_sync_events_come_back_exactly_as_made() {
    for (backend, db) in backends("audit_sync") {
        let k1 = user(&db, "kader1", Role::Kader, &["PSY-A"], &[]);
        let k2 = user(&db, "kader2", Role::Kader, &["PSY-A"], &[]);
        let (h1, mut d1, c1) = household(DESA_A, "PSY-A");
        let c1b = edit(&mut d1, "household/address", "Jl. Melati");
        let (h2, _, c2) = household(DESA_A, "PSY-A");
        // Another posyandu's household: refused.
        let (hx, _, cx) = household(DESA_A, "PSY-B");
        let group = |id, c: Vec<Vec<u8>>| HouseholdChanges {
            household_id: id,
            changes: c.into_iter().map(ByteBuf::from).collect(),
        };
        let req = SyncRequest {
            cursor: None,
            changes: vec![
                group(h1, vec![c1, c1b]),
                group(h2, vec![c2]),
                group(hx, vec![cx]),
            ],
            page_size: None,
        };
        let (resp, _, _) = sync::sync(&db, &k1, &req).unwrap();
        let made1 = audit::sync_events(&k1, &req, &resp);
        let kinds: Vec<&str> = made1.iter().map(|e| e.action.as_str()).collect();
        assert!(
            kinds.contains(&"rejected") && kinds.contains(&"write"),
            "{kinds:?}"
        );
        audit::record_grouped(&db, made1.clone());
        // A second device pulls both households.
        let req2 = SyncRequest::default();
        let (resp2, _, _) = sync::sync(&db, &k2, &req2).unwrap();
        let made2 = audit::sync_events(&k2, &req2, &resp2);
        assert!(made2.iter().any(|e| e.action == "read"), "{made2:?}");
        audit::record_grouped(&db, made2.clone());

        // One row per request; one household entry per distinct household of a bucket
        // (both requests are in the first).
        assert_eq!(count(&db, "audit_log"), 2, "{backend}");
        let distinct: BTreeSet<Uuid> = made1
            .iter()
            .chain(&made2)
            .filter_map(|e| e.household_id)
            .collect();
        assert_eq!(count(&db, "audit_households"), distinct.len() as i64);
        // By user: exactly the events made, newest first.
        let mut got = audit::query(&db, Some("kader1"), None, None, 1000).unwrap();
        got.reverse();
        assert_eq!(got, made1, "{backend}");
        let mut got = audit::query(&db, Some("kader2"), None, None, 1000).unwrap();
        got.reverse();
        assert_eq!(got, made2, "{backend}");
        // By household: that household's events of both requests, and nothing else.
        let got = audit::query(&db, None, Some(h1), None, 1000).unwrap();
        let mut want: Vec<Event> = made1
            .iter()
            .chain(&made2)
            .filter(|e| e.household_id == Some(h1))
            .cloned()
            .collect();
        want.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
        assert_eq!(got.len(), want.len());
        assert!(got.iter().all(|e| want.contains(e)));
        assert!(got.windows(2).all(|w| w[0].at_ms >= w[1].at_ms));
        let got = audit::query(&db, Some("kader1"), Some(hx), None, 1000).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action, "rejected");
        // A limit takes the newest.
        let all = audit::query(&db, None, None, None, 1000).unwrap();
        assert_eq!(all.len(), made1.len() + made2.len());
        assert_eq!(audit::query(&db, None, None, None, 2).unwrap(), all[..2]);
    }
}

const OLD_SCHEMA: &[&str] = &[
    "CREATE TABLE audit(
        at BIGINT NOT NULL, username TEXT NOT NULL, device TEXT NOT NULL,
        action TEXT NOT NULL, household_id TEXT, detail TEXT NOT NULL)",
    "CREATE INDEX audit_at ON audit(at)",
    "CREATE INDEX audit_household ON audit(household_id, at)",
    "CREATE INDEX audit_user ON audit(username, at)",
];

/// Old-layout rows: a sync of kader1, a read and an erasure by others, failed logins of
/// a moment ago (a lockout to rebuild), each at a distinct time.
fn old_events(h1: Uuid, h2: Uuid) -> Vec<Event> {
    let now = auth::now_ms();
    let e =
        |at: i64, user: &str, device: &str, action: &str, h: Option<Uuid>, detail: &str| Event {
            at_ms: at,
            username: user.into(),
            device: device.into(),
            action: action.into(),
            household_id: h,
            detail: detail.into(),
        };
    let mut v = vec![
        e(1_000, "kader1", "hp-1", "login", None, ""),
        e(1_010, "kader1", "hp-1", "write", Some(h1), "3 changes"),
        e(1_011, "kader1", "hp-1", "read", Some(h2), "snapshot"),
        e(1_012, "kader1", "hp-1", "drop", Some(h2), ""),
        e(5_000, "bidan", "tab-2", "read", Some(h1), "GET"),
        e(
            9_000,
            "admin",
            "admin-cli",
            "erase",
            Some(h2),
            "surat 7/2026",
        ),
    ];
    for i in 0..5 {
        v.push(e(
            now - 1_000 + i,
            "nobody",
            "x",
            "login_failed",
            None,
            "invalid_credentials from 10.9.8.7",
        ));
    }
    v
}

fn old_row(e: &Event) -> Row {
    vec![
        e.at_ms.into(),
        e.username.as_str().into(),
        e.device.as_str().into(),
        e.action.as_str().into(),
        e.household_id.map(|h| h.to_string()).into(),
        e.detail.as_str().into(),
    ]
}

/// Every query a reader makes gives the old rows' events.
fn answers_like_before(db: &Db, events: &[Event], h1: Uuid, backend: &str) {
    let newest_first = |f: &dyn Fn(&Event) -> bool| -> Vec<Event> {
        let mut v: Vec<Event> = events.iter().filter(|e| f(e)).cloned().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.at_ms));
        v
    };
    assert_eq!(
        audit::query(db, None, None, None, 1000).unwrap(),
        newest_first(&|_| true),
        "{backend}"
    );
    assert_eq!(
        audit::query(db, Some("kader1"), None, None, 1000).unwrap(),
        newest_first(&|e| e.username == "kader1"),
        "{backend}"
    );
    assert_eq!(
        audit::query(db, None, Some(h1), None, 1000).unwrap(),
        newest_first(&|e| e.household_id == Some(h1)),
        "{backend}"
    );
    assert_eq!(
        audit::query(db, None, None, Some(1_011), 1000).unwrap(),
        newest_first(&|e| e.at_ms >= 1_011),
        "{backend}"
    );
    assert_eq!(
        audit::query(db, Some("kader1"), Some(h1), Some(1_010), 1).unwrap(),
        newest_first(&|e| e.username == "kader1" && e.household_id == Some(h1)),
        "{backend}"
    );
    // The lockout of `nobody` is rebuilt from them.
    let limiter = LoginLimiter::default();
    assert_eq!(db.read(|t| limiter.restore(t)).unwrap(), 5, "{backend}");
    assert!(limiter.check("nobody", None).is_err());
    assert!(limiter.check("kader1", None).is_ok());
}

#[test]
fn audit_old_layout_databases_and_backups_still_answer() {
    for (backend, url) in urls("audit_old") {
        let (h1, h2) = (Uuid::new_v4(), Uuid::new_v4());
        let events = old_events(h1, h2);
        {
            let db = Db::open(&url).unwrap();
            db.tx(true, |t| -> Result<(), kunjung_sync_server::db::DbError> {
                for s in OLD_SCHEMA {
                    t.exec(s, &[])?;
                }
                for e in &events {
                    t.exec(
                        "INSERT INTO audit VALUES ($1, $2, $3, $4, $5, $6)",
                        &old_row(e),
                    )?;
                }
                Ok(())
            })
            .unwrap();
        }
        // Opening migrates the old table into the new layout and drops it.
        let db = Db::open(&url).unwrap();
        assert!(db
            .tx(false, |t| t.query("SELECT count(*) FROM audit", &[]))
            .is_err());
        // kader1's login and sync (one device, within a second) make one row.
        assert!(count(&db, "audit_log") < events.len() as i64, "{backend}");
        answers_like_before(&db, &events, h1, &backend);
        drop(db);
        let db = Db::open(&url).unwrap();
        answers_like_before(&db, &events, h1, &backend);

        // A backup of the new layout restores onto the same backend, and the restored
        // log takes new events (PostgreSQL's id sequence moved past the restored rows).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.kjb");
        admin::backup(&db, &file).unwrap();
        let (_, fresh_url) = urls("audit_restored")
            .into_iter()
            .find(|(b, _)| *b == backend)
            .unwrap();
        let fresh = Db::open(&fresh_url).unwrap();
        admin::restore(&fresh, &file).unwrap();
        answers_like_before(&fresh, &events, h1, &backend);
        let later = Event::new("kader9", "hp-9", "login", None, "");
        audit::record(&fresh, std::slice::from_ref(&later));
        assert_eq!(
            audit::query(&fresh, Some("kader9"), None, None, 10).unwrap(),
            vec![later]
        );

        // A backup made by the old version: its `audit` rows, the rest as it was.
        let old_file = dir.path().join("old.kjb");
        rewrite_as_old_backup(&file, &old_file, &events);
        let (_, old_url) = urls("audit_old_backup")
            .into_iter()
            .find(|(b, _)| *b == backend)
            .unwrap();
        let restored = Db::open(&old_url).unwrap();
        admin::restore(&restored, &old_file).unwrap();
        answers_like_before(&restored, &events, h1, &backend);
    }
}

/// `from` (a backup of this version) with its audit tables replaced by old-layout
/// `audit` rows, as the version before wrote them.
fn rewrite_as_old_backup(from: &std::path::Path, to: &std::path::Path, events: &[Event]) {
    let mut z =
        std::io::BufReader::new(zstd::Decoder::new(std::fs::File::open(from).unwrap()).unwrap());
    let mut records: Vec<(String, Row)> = Vec::new();
    use std::io::BufRead;
    while !z.fill_buf().unwrap().is_empty() {
        records.push(ciborium::from_reader(&mut z).unwrap());
    }
    records.retain(|(t, _)| !t.starts_with("audit"));
    records.extend(events.iter().map(|e| ("audit".to_string(), old_row(e))));
    let mut w = zstd::Encoder::new(std::fs::File::create(to).unwrap(), 3).unwrap();
    for r in &records {
        ciborium::into_writer(r, &mut w).unwrap();
    }
    w.finish().unwrap();
}
