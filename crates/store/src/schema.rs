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
    // 3: smaller projections (a device's storage, issue 9). Member and visit ids as 16-byte
    // blobs; rows refer to their household and member by rowid (`hh` = households.rid,
    // `member` = members.rid) instead of repeating 36-character ids; dates of visits and
    // tasks as days since 1970-01-01; repeated short texts (stage, cadre, task service and
    // labels) once in `strings`; no index on visit ids or members' visits (nothing looks
    // them up often: `household_of_visit` scans); FTS5 without a copy of its text and
    // without positions (queries are word prefixes, never phrases). Existing rows are
    // converted as they are; nothing is recomputed.
    r#"
    CREATE TABLE strings(id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE);
    -- zstd dictionaries the snapshots are compressed with (`snapshot.rs`), by zstd's id.
    CREATE TABLE zdicts(id INTEGER PRIMARY KEY, dict BLOB NOT NULL, created_at INTEGER NOT NULL);

    CREATE TABLE members_v3(
        rid INTEGER PRIMARY KEY,
        id BLOB NOT NULL UNIQUE,
        hh INTEGER NOT NULL,
        name TEXT NOT NULL,
        nik TEXT,
        sex TEXT,
        birth_date TEXT,
        relation TEXT,
        mother_id BLOB,
        death_date TEXT,
        moved_out_date TEXT,
        voided INTEGER NOT NULL,
        pregnant_from TEXT,
        pregnant_until TEXT,
        last_delivery TEXT
    );
    INSERT INTO members_v3 SELECT m.rid, unhex(replace(m.id, '-', '')), h.rid, m.name, m.nik, m.sex,
        m.birth_date, m.relation, unhex(replace(m.mother_id, '-', '')), m.death_date, m.moved_out_date,
        m.voided, m.pregnant_from, m.pregnant_until, m.last_delivery
        FROM members m JOIN households h ON h.id = m.household_id;
    DROP TABLE members;
    ALTER TABLE members_v3 RENAME TO members;
    CREATE INDEX members_household ON members(hh);

    -- `member_uuid` only when the visit's member is not among its household's members.
    CREATE TABLE visits_v3(
        hh INTEGER NOT NULL,
        id BLOB NOT NULL,
        member INTEGER,
        member_uuid BLOB,
        date INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        stage INTEGER,
        cadre INTEGER,
        danger_signs TEXT,
        referred INTEGER NOT NULL,
        reviewed INTEGER NOT NULL,
        voided INTEGER NOT NULL,
        PRIMARY KEY(hh, id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO strings(value)
        SELECT stage FROM visits WHERE stage IS NOT NULL
        UNION SELECT cadre FROM visits WHERE cadre IS NOT NULL;
    INSERT INTO visits_v3 SELECT h.rid, unhex(replace(v.id, '-', '')), m.rid,
        CASE WHEN m.rid IS NULL THEN unhex(replace(v.member_id, '-', '')) END,
        CAST(julianday(v.date) - 2440587.5 AS INTEGER), v.created_at,
        (SELECT id FROM strings WHERE value = v.stage), (SELECT id FROM strings WHERE value = v.cadre),
        v.danger_signs, v.referred, v.reviewed, v.voided
        FROM visits v JOIN households h ON h.id = v.household_id
        LEFT JOIN members m ON m.id = unhex(replace(v.member_id, '-', '')) AND m.hh = h.rid;
    DROP TABLE visits;
    ALTER TABLE visits_v3 RENAME TO visits;

    CREATE TABLE tasks_v3(
        member INTEGER NOT NULL,
        service INTEGER NOT NULL,
        label_id INTEGER NOT NULL,
        label_en INTEGER NOT NULL,
        due_from INTEGER NOT NULL,
        due_until INTEGER NOT NULL,
        status TEXT NOT NULL,
        done_on INTEGER,
        PRIMARY KEY(member, service)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO strings(value)
        SELECT service FROM tasks UNION SELECT label_id FROM tasks UNION SELECT label_en FROM tasks;
    INSERT INTO tasks_v3 SELECT m.rid, (SELECT id FROM strings WHERE value = t.service),
        (SELECT id FROM strings WHERE value = t.label_id), (SELECT id FROM strings WHERE value = t.label_en),
        CAST(julianday(t.due_from) - 2440587.5 AS INTEGER), CAST(julianday(t.due_until) - 2440587.5 AS INTEGER),
        t.status, CAST(julianday(t.done_on) - 2440587.5 AS INTEGER)
        FROM tasks t JOIN members m ON m.id = unhex(replace(t.member_id, '-', ''));
    DROP TABLE tasks;
    ALTER TABLE tasks_v3 RENAME TO tasks;

    CREATE TEMP TABLE search_v2 AS SELECT rowid AS r, name, nik, address FROM search;
    DROP TABLE search;
    CREATE VIRTUAL TABLE search USING fts5(
        name, nik, address,
        content = '', contentless_delete = 1, detail = none,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '2 3'
    );
    INSERT INTO search(rowid, name, nik, address) SELECT r, name, nik, address FROM search_v2;
    DROP TABLE search_v2;
    "#,
    // 4: what a pulled change that only adds records is checked against without loading
    // its document (kunjung_core::fastapply), beside it in `docs`: `fast`, valid while
    // `fast_heads` is the digest of `heads` (store/src/fastapply.rs `index_bytes`,
    // `heads_digest`).
    r#"
    ALTER TABLE docs ADD COLUMN fast_heads BLOB;
    ALTER TABLE docs ADD COLUMN fast BLOB;
    "#,
];

pub const LATEST: i64 = MIGRATIONS.len() as i64;
/// A store older than this is vacuumed once migrated (its projections were rewritten).
pub const COMPACT_FROM: i64 = 3;

/// Brings the store to [`LATEST`]; returns the version it had before.
pub fn migrate(conn: &mut Connection) -> Result<i64> {
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
    Ok(current)
}
