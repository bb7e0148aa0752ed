//! Administration: importing Kemendagri area codes, logical backup and restore (which also
//! moves a server between SQLite and PostgreSQL), and compaction of stored snapshots.

use std::io::{BufRead, Write};
use std::path::Path;

use crate::db::{Db, Row, Value, TABLES};
use crate::error::ServerError;

const BACKUP_MAGIC: &str = "kunjung-server-backup-1";

/// Imports a wilayah CSV: `code,name` per line (e.g. `32.14.01.2001,Sukamaju`); a header
/// line and lines whose first field is not an area code are skipped and counted.
pub fn import_areas(db: &Db, csv: &Path) -> Result<(usize, usize), ServerError> {
    let f = std::fs::File::open(csv)
        .map_err(|e| ServerError::BadRequest(format!("{}: {e}", csv.display())))?;
    let mut rows = Vec::new();
    let mut skipped = 0;
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|e| ServerError::BadRequest(e.to_string()))?;
        let line = line.trim_start_matches('\u{feff}');
        let mut parts = line.splitn(2, [',', ';']);
        let code = parts.next().unwrap_or_default().trim().trim_matches('"');
        let name = parts.next().unwrap_or_default().trim().trim_matches('"');
        match kunjung_core::ids::AreaCode::parse_prefix(code) {
            Ok(c) if !name.is_empty() => rows.push((c, name.to_string())),
            _ => skipped += 1,
        }
    }
    let n = rows.len();
    db.tx(true, |t| {
        for (code, name) in &rows {
            t.exec(
                "INSERT INTO areas(code, name) VALUES ($1, $2) ON CONFLICT (code) DO UPDATE SET name = excluded.name",
                &[code.as_str().into(), name.as_str().into()],
            )?;
        }
        Ok::<_, ServerError>(())
    })?;
    Ok((n, skipped))
}

/// Writes every table to `out` (zstd-compressed CBOR records). Returns rows written.
pub fn backup(db: &Db, out: &Path) -> Result<usize, ServerError> {
    let tmp = out.with_extension("partial");
    let f = std::fs::File::create(&tmp)
        .map_err(|e| ServerError::BadRequest(format!("{}: {e}", out.display())))?;
    let mut z = zstd_writer(f)?;
    let io = |e: std::io::Error| ServerError::Internal(e.to_string());
    let mut n = 0;
    let enc = |w: &mut dyn Write, v: &(String, Row)| {
        ciborium::into_writer(v, w).map_err(|e| ServerError::Internal(e.to_string()))
    };
    enc(&mut z, &(BACKUP_MAGIC.to_string(), Vec::new()))?;
    // One read transaction: a consistent copy.
    db.tx(true, |t| {
        for table in TABLES {
            for row in t.query(&format!("SELECT * FROM {table}"), &[])? {
                enc(&mut z, &(table.to_string(), row))?;
                n += 1;
            }
        }
        Ok::<_, ServerError>(())
    })?;
    z.finish().map_err(io)?.sync_all().map_err(io)?;
    std::fs::rename(&tmp, out).map_err(io)?;
    Ok(n)
}

fn zstd_writer(f: std::fs::File) -> Result<zstd::Encoder<'static, std::fs::File>, ServerError> {
    zstd::Encoder::new(f, 3).map_err(|e| ServerError::Internal(e.to_string()))
}

/// Restores a backup into an empty database (no users, no changes).
pub fn restore(db: &Db, from: &Path) -> Result<usize, ServerError> {
    let f = std::fs::File::open(from)
        .map_err(|e| ServerError::BadRequest(format!("{}: {e}", from.display())))?;
    let mut z = std::io::BufReader::new(
        zstd::Decoder::new(f).map_err(|e| ServerError::BadRequest(e.to_string()))?,
    );
    let bad = || ServerError::BadRequest("berkas cadangan rusak (corrupt backup file)".into());
    let (magic, _): (String, Row) = ciborium::from_reader(&mut z).map_err(|_| bad())?;
    if magic != BACKUP_MAGIC {
        return Err(bad());
    }
    db.tx(true, |t| {
        let users = t.query("SELECT count(*) FROM users", &[])?[0][0].int();
        let changes = t.query("SELECT count(*) FROM changes", &[])?[0][0].int();
        if users > 0 || changes > 0 {
            return Err(ServerError::Conflict(
                "basis data tujuan tidak kosong; pulihkan ke basis data baru (target database is not empty)".into(),
            ));
        }
        t.exec("DELETE FROM meta", &[])?;
        t.exec("DELETE FROM counters", &[])?;
        let mut n = 0;
        // Audit rows of a backup made before `audit_log` (the old one-row-per-event table).
        let mut old_audit = Vec::new();
        loop {
            if z.fill_buf().map_err(|_| bad())?.is_empty() {
                break;
            }
            let (table, row): (String, Row) = ciborium::from_reader(&mut z).map_err(|_| bad())?;
            if table == "audit" {
                old_audit.push(row);
                n += 1;
                continue;
            }
            if !TABLES.contains(&table.as_str()) || row.is_empty() {
                return Err(bad());
            }
            let mut row = row;
            if table == "households" {
                old_household_row(t, &mut row)?;
            }
            let ph: Vec<String> = (1..=row.len()).map(|i| format!("${i}")).collect();
            t.exec(
                &format!("INSERT INTO {table} VALUES ({})", ph.join(", ")),
                &row,
            )?;
            n += 1;
        }
        // A backup of an older layout carries its version; the rows are now the current one.
        t.exec(
            "INSERT INTO meta(key, value) VALUES ('schema', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[crate::db::SCHEMA_VERSION.into()],
        )?;
        crate::audit::restore_legacy(t, db.backend() == "postgres", old_audit)?;
        Ok(n)
    })
}

/// A `households` row of a backup made before layout 2 (`id, area_code, posyandu_id,
/// created_seq, last_seq, move_seq, snapshot, snapshot_seq, pending[, actors]`; told
/// apart by the blob in the seventh column, since a row from before `actors` has as many
/// columns as a current one): its snapshot goes to `snapshots` and the row takes the
/// current layout. A row from before `actors` gets none (filled in by the next push).
fn old_household_row(t: &mut dyn crate::db::Sql, row: &mut Row) -> Result<(), ServerError> {
    if !matches!(row.get(6), Some(Value::Blob(_))) {
        return Ok(());
    }
    if !(9..=10).contains(&row.len()) {
        return Err(ServerError::BadRequest(
            "berkas cadangan rusak: baris households (corrupt backup file: a households row)"
                .into(),
        ));
    }
    let snap = row.remove(6).into_blob();
    let id = row[0].text().unwrap_or_default().to_string();
    crate::sync::store_snapshot(t, &id, &snap)?;
    if row.len() == 8 {
        row.push(Value::Null);
    }
    Ok(())
}

/// Folds pending changes into every household's stored snapshot.
pub fn compact(db: &Db) -> Result<usize, ServerError> {
    db.tx(true, |t| {
        let ids: Vec<String> = t
            .query("SELECT id FROM households WHERE pending > 0", &[])?
            .into_iter()
            .filter_map(|r| r[0].text().map(String::from))
            .collect();
        for id in &ids {
            let sseq = t.query(
                "SELECT snapshot_seq FROM households WHERE id = $1",
                &[id.as_str().into()],
            )?[0][0]
                .int();
            let snap = t
                .query(
                    "SELECT bytes FROM snapshots WHERE household_id = $1",
                    &[id.as_str().into()],
                )?
                .pop()
                .and_then(|mut r| r.pop())
                .map(Value::into_blob)
                .unwrap_or_default();
            let changes: Vec<Vec<u8>> = t
                .query(
                    "SELECT bytes FROM changes WHERE household_id = $1 AND seq > $2 ORDER BY seq",
                    &[id.as_str().into(), sseq.into()],
                )?
                .into_iter()
                .map(|mut r| std::mem::replace(&mut r[0], Value::Null).into_blob())
                .collect();
            let doc = kunjung_core::HouseholdDoc::load_with_changes(
                &snap,
                changes.iter().map(|c| c.as_slice()),
            )
            .map_err(|e| ServerError::Internal(e.to_string()))?;
            t.exec(
                "UPDATE households SET snapshot_seq = last_seq, pending = 0 WHERE id = $1",
                &[id.as_str().into()],
            )?;
            crate::sync::store_snapshot(t, id, &doc.automerge().save_nocompress())?;
        }
        Ok(ids.len())
    })
}

/// Reads a password from the environment for the command line.
/// Frees the bytes of changes already folded into their household's snapshot and older
/// than `older_than_days`; their hashes stay, so a re-push is still acknowledged once.
/// A device that was away longer and still lacks some of them gets the snapshot instead
/// (see `sync::state_at`). Returns (changes pruned, bytes freed).
pub fn prune(db: &Db, older_than_days: u32) -> Result<(u64, u64), ServerError> {
    let cutoff = crate::auth::now_ms() - i64::from(older_than_days) * 24 * 3600 * 1000;
    db.tx(true, |t| {
        let cond = "length(bytes) > 0 AND received_at <= $1
             AND seq <= (SELECT h.snapshot_seq FROM households h WHERE h.id = changes.household_id)";
        let r = t.query(
            &format!("SELECT count(*), coalesce(sum(length(bytes)), 0) FROM changes WHERE {cond}"),
            &[cutoff.into()],
        )?;
        let (n, bytes) = (r[0][0].int() as u64, r[0][1].int() as u64);
        t.exec(
            &format!("UPDATE changes SET bytes = $2 WHERE {cond}"),
            &[cutoff.into(), Vec::<u8>::new().into()],
        )?;
        Ok((n, bytes))
    })
}

pub fn password_from_env() -> Result<String, ServerError> {
    let p = std::env::var("KUNJUNG_PASSWORD").unwrap_or_default();
    if p.is_empty() {
        return Err(ServerError::BadRequest(
            "isi kata sandi lewat KUNJUNG_PASSWORD (set the password in KUNJUNG_PASSWORD)".into(),
        ));
    }
    Ok(p)
}
