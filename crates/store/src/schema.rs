//! Versioned migrations of the local store. `PRAGMA user_version` holds the version; each
//! migration runs in its own transaction. A store written by a newer Kunjung is refused
//! instead of being damaged.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Migrations in order; the index + 1 is the schema version they produce.
const MIGRATIONS: &[&str] = &[
    // 1: documents, change log, projections, full-text search.
    r#"
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);

    -- One Automerge document per household: a snapshot plus the changes after it.
    CREATE TABLE docs(
        household_id TEXT PRIMARY KEY,
        snapshot BLOB NOT NULL,
        heads TEXT NOT NULL,
        pending INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL
    );
    -- Every change made here or received; `synced` once the server acknowledged it,
    -- `in_snapshot` once folded into docs.snapshot (then deleted when also synced).
    CREATE TABLE changes(
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        hash BLOB NOT NULL UNIQUE,
        household_id TEXT NOT NULL,
        bytes BLOB NOT NULL,
        local INTEGER NOT NULL,
        synced INTEGER NOT NULL DEFAULT 0,
        in_snapshot INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX changes_household ON changes(household_id, in_snapshot);
    CREATE INDEX changes_unsynced ON changes(synced) WHERE synced = 0;

    -- Projections (rebuildable from docs).
    CREATE TABLE households(
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        area_code TEXT NOT NULL,
        dusun TEXT, rt TEXT, rw TEXT,
        posyandu_id TEXT,
        address TEXT,
        status TEXT NOT NULL,
        head_name TEXT,
        member_count INTEGER NOT NULL,
        visit_count INTEGER NOT NULL,
        last_visit TEXT,
        open_referrals INTEGER NOT NULL,
        conflict_count INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX households_area ON households(area_code);
    CREATE INDEX households_name ON households(head_name, id);

    CREATE TABLE members(
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        household_id TEXT NOT NULL,
        name TEXT NOT NULL,
        nik TEXT,
        sex TEXT,
        birth_date TEXT,
        relation TEXT,
        mother_id TEXT,
        death_date TEXT,
        moved_out_date TEXT,
        voided INTEGER NOT NULL,
        pregnant_from TEXT,
        pregnant_until TEXT,
        last_delivery TEXT
    );
    CREATE INDEX members_household ON members(household_id);

    CREATE TABLE visits(
        id TEXT PRIMARY KEY,
        household_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        date TEXT NOT NULL,
        stage TEXT,
        cadre TEXT,
        weight_kg REAL, height_cm REAL, measured TEXT, muac_cm REAL,
        danger_signs TEXT,
        referred INTEGER NOT NULL,
        reported INTEGER,
        reviewed INTEGER NOT NULL,
        voided INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX visits_household ON visits(household_id);
    CREATE INDEX visits_member ON visits(member_id, date);

    CREATE TABLE referrals(
        id TEXT PRIMARY KEY,
        household_id TEXT NOT NULL,
        visit_id TEXT,
        member_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT,
        updated_at INTEGER,
        outcome TEXT,
        feedback TEXT
    ) WITHOUT ROWID;
    CREATE INDEX referrals_household ON referrals(household_id);
    CREATE INDEX referrals_status ON referrals(status);

    CREATE TABLE conflicts(
        household_id TEXT NOT NULL,
        path TEXT NOT NULL,
        "values" TEXT NOT NULL,
        PRIMARY KEY(household_id, path)
    ) WITHOUT ROWID;

    -- Search over names, NIK and address. rowid = members.rid, or -households.rid for the
    -- household's own row (so a household with no members is found by address).
    CREATE VIRTUAL TABLE search USING fts5(
        name, nik, address,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '2 3'
    );
    "#,
    // 2: due/overdue/done services per member (schedule engine), computed for `computed_on`.
    r#"
    CREATE TABLE tasks(
        household_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        service TEXT NOT NULL,
        label_id TEXT NOT NULL,
        label_en TEXT NOT NULL,
        due_from TEXT NOT NULL,
        due_until TEXT NOT NULL,
        status TEXT NOT NULL,
        done_on TEXT,
        PRIMARY KEY(member_id, service)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_household ON tasks(household_id);
    CREATE INDEX tasks_status ON tasks(status, due_until);
    ALTER TABLE households ADD COLUMN tasks_on TEXT;
    ALTER TABLE households ADD COLUMN due_tasks INTEGER NOT NULL DEFAULT 0;
    "#,
    // 3: what a pulled change that only adds records is checked against without loading
    // its document (kunjung_core::fastapply), valid while `heads` = docs.heads.
    r#"
    CREATE TABLE fast_index(
        household_id TEXT PRIMARY KEY,
        heads TEXT NOT NULL,
        data TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
];

pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::NewerSchema {
            found: current,
            supported: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
