//! The storage layout across versions, on both backends: a database made with the layout
//! before `snapshots` (each household's snapshot inline in `households`, with and without
//! `actors`) is migrated when the server opens it — every household's document comes out
//! of a pull byte for byte as before — and serves syncs afterwards; backups of that layout
//! (made by the old version: `households` rows of 10 or, before `actors`, 9 columns)
//! restore into the current one on either backend. On SQLite the old layout also has
//! `changes.seq` as `BIGINT PRIMARY KEY` (not the rowid), rebuilt on open.

use std::io::{BufRead, Write};

use kunjung_sync_server::db::{Row, Value};

use super::*;

/// What a first sync of `u` returns, per household: its snapshots and its changes.
type Pulled = BTreeMap<Uuid, (Vec<Vec<u8>>, Vec<Vec<u8>>)>;

/// Equal pulls, or a short account of the first difference (not kilobytes of bytes).
fn assert_same(got: &Pulled, want: &Pulled, what: &str) {
    let ids = |p: &Pulled| p.keys().copied().collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want), "{what}: households");
    for (id, w) in want {
        let g = &got[id];
        let lens = |v: &(Vec<Vec<u8>>, Vec<Vec<u8>>)| {
            let l = |x: &Vec<Vec<u8>>| x.iter().map(Vec::len).collect::<Vec<_>>();
            (l(&v.0), l(&v.1))
        };
        assert!(g == w, "{what}: {id}: {:?} != {:?}", lens(g), lens(w));
    }
}

fn pulled(db: &Db, u: &User) -> Pulled {
    let mut out = Pulled::new();
    for p in pull_all(db, u, &mut None, 100) {
        for s in p.snapshots {
            out.entry(s.household_id)
                .or_default()
                .0
                .push(s.bytes.to_vec());
        }
        for g in p.changes {
            let e = out.entry(g.household_id).or_default();
            e.1.extend(g.changes.into_iter().map(|c| c.to_vec()));
        }
    }
    out
}

/// Households: just created, with pending changes, compacted with none or some pending
/// since, moved to desa B; an admin who pushed them all, an admin who pulls (a first
/// sync leaves out households its own device made) and a kader of PSY-A.
fn seed(db: &Db) -> (User, User, User, Vec<(Uuid, HouseholdDoc)>) {
    let admin = user(db, "admin", Role::Admin, &[], &[]);
    let reader = user(db, "reader", Role::Admin, &[], &[]);
    let kader = user(db, "kader", Role::Kader, &["PSY-A"], &[]);
    let mut out = Vec::new();
    for i in 0..5 {
        let (id, mut doc, c0) = household(DESA_A, "PSY-A");
        assert_eq!(push(db, &admin, id, &[c0]).stored, 1);
        for round in 0..i {
            let cs: Vec<Vec<u8>> = (0..7)
                .map(|j| {
                    edit(
                        &mut doc,
                        "household/address",
                        &format!("Jl. {i}.{round}.{j}"),
                    )
                })
                .collect();
            assert_eq!(push(db, &admin, id, &cs).stored, 7);
            if round == 1 {
                assert!(sync::compact_household(db, id).unwrap());
            }
        }
        if i == 3 {
            let mv = move_to_desa_b(&mut doc);
            assert_eq!(push(db, &admin, id, &[mv]).stored, 1);
        }
        out.push((id, doc));
    }
    (admin, reader, kader, out)
}

/// A device's documents after applying pull pages (drops remove).
fn apply(held: &mut BTreeMap<Uuid, automerge::Automerge>, pages: Vec<SyncResponse>) {
    for p in pages {
        for s in p.snapshots {
            let am = held.entry(s.household_id).or_default();
            am.load_incremental(&s.bytes).unwrap();
        }
        for g in p.changes {
            let am = held.entry(g.household_id).or_default();
            for c in g.changes {
                am.load_incremental(&c).unwrap();
            }
        }
        for d in p.drops {
            held.remove(&d);
        }
    }
}

/// Every household's document as the heads of what the pull returned.
fn assert_holds(got: &Pulled, docs: &[(Uuid, HouseholdDoc)], what: &str) {
    assert_eq!(got.len(), docs.len(), "{what}");
    for (id, doc) in docs {
        let (snaps, changes) = &got[id];
        let mut am = automerge::Automerge::new();
        for b in snaps.iter().chain(changes) {
            am.load_incremental(b).unwrap();
        }
        assert_eq!(am.get_heads(), doc.heads(), "{what}: {id}");
    }
}

/// Rewrites the current layout into the one before `snapshots` (exactly its DDL, in
/// portable SQL), optionally also from before `households.actors`.
fn to_old_layout(db: &Db, actors: bool) {
    let blob = if db.backend() == "postgres" {
        "BYTEA"
    } else {
        "BLOB"
    };
    let (col, sel) = if actors {
        (",\n    actors TEXT", ", h.actors")
    } else {
        ("", "")
    };
    db.tx(true, |t| -> Result<(), ServerError> {
        t.exec(
            &format!(
                "CREATE TABLE households_v1(
    id TEXT PRIMARY KEY, area_code TEXT NOT NULL, posyandu_id TEXT,
    created_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, move_seq BIGINT NOT NULL,
    snapshot {blob} NOT NULL, snapshot_seq BIGINT NOT NULL, pending BIGINT NOT NULL{col})"
            ),
            &[],
        )?;
        t.exec(
            &format!(
                "INSERT INTO households_v1 SELECT h.id, h.area_code, h.posyandu_id, h.created_seq,
                 h.last_seq, h.move_seq, s.bytes, h.snapshot_seq, h.pending{sel}
                 FROM households h JOIN snapshots s ON s.household_id = h.id"
            ),
            &[],
        )?;
        t.exec("DROP TABLE households", &[])?;
        t.exec("DROP TABLE snapshots", &[])?;
        t.exec("ALTER TABLE households_v1 RENAME TO households", &[])?;
        t.exec("CREATE INDEX households_last ON households(last_seq)", &[])?;
        if blob == "BLOB" {
            // SQLite before layout 3: `seq BIGINT PRIMARY KEY`, not the rowid.
            t.exec(
                "CREATE TABLE changes_v1(
    seq BIGINT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, household_id TEXT NOT NULL,
    device TEXT NOT NULL, username TEXT NOT NULL, bytes BLOB NOT NULL, received_at BIGINT NOT NULL)",
                &[],
            )?;
            t.exec("INSERT INTO changes_v1 SELECT * FROM changes", &[])?;
            t.exec("DROP TABLE changes", &[])?;
            t.exec("ALTER TABLE changes_v1 RENAME TO changes", &[])?;
            t.exec(
                "CREATE INDEX changes_household ON changes(household_id, seq)",
                &[],
            )?;
        }
        t.exec("UPDATE meta SET value = '1' WHERE key = 'schema'", &[])?;
        Ok(())
    })
    .unwrap();
}

/// The current layout: a small index row (9 columns, no blob), one snapshot per
/// household, on SQLite `changes.seq` as the rowid; layout version 3.
fn assert_current_layout(db: &Db, households: usize, what: &str) {
    let (rows, snaps, version) = db
        .tx(false, |t| -> Result<_, ServerError> {
            Ok((
                t.query("SELECT * FROM households", &[])?,
                t.query("SELECT count(*) FROM snapshots", &[])?[0][0].int(),
                t.query("SELECT value FROM meta WHERE key = 'schema'", &[])?,
            ))
        })
        .unwrap();
    assert_eq!(rows.len(), households, "{what}");
    for r in &rows {
        assert_eq!(r.len(), 9, "{what}: {r:?}");
        assert!(r.iter().all(|v| !matches!(v, Value::Blob(_))), "{what}");
    }
    assert_eq!(snaps, households as i64, "{what}");
    assert_eq!(version[0][0], Value::from("3"), "{what}");
    if db.backend() == "sqlite" {
        let ty = db
            .tx(false, |t| {
                t.query(
                    "SELECT type FROM pragma_table_info('changes') WHERE name = 'seq'",
                    &[],
                )
            })
            .unwrap();
        assert_eq!(ty[0][0], Value::from("INTEGER"), "{what}");
    }
}

#[test]
fn old_layout_is_migrated_on_open_and_keeps_every_document() {
    for (backend, url) in backend_urls("layout") {
        for actors in [true, false] {
            let what = format!("{backend}, actors kept: {actors}");
            let url = if backend == "sqlite" {
                url.replace("server.db", &format!("server-{actors}.db"))
            } else {
                url.replace("schema=", &format!("schema=a{}", u8::from(actors)))
            };
            let db = Db::open(&url).unwrap();
            let (admin, reader, kader, mut docs) = seed(&db);
            let before = pulled(&db, &reader);
            assert_holds(&before, &docs, &what);
            let mut cursor = None;
            let mut held = BTreeMap::new();
            apply(&mut held, pull_all(&db, &kader, &mut cursor, 100));
            assert_eq!(held.len(), 4, "{what}: PSY-A");
            to_old_layout(&db, actors);
            drop(db);

            // Opened by the new version: migrated, every document as before.
            let db = Db::open(&url).unwrap();
            assert_current_layout(&db, docs.len(), &what);
            assert_same(
                &pulled(&db, &reader),
                &before,
                &format!("{what}: byte for byte"),
            );
            drop(db);
            // Opening again changes nothing.
            let db = Db::open(&url).unwrap();
            assert_current_layout(&db, docs.len(), &what);
            assert_same(&pulled(&db, &reader), &before, &format!("{what}: again"));

            // And it serves syncs: edits to every household (fast path; slow where
            // `actors` is missing), one moved out with enough changes to be folded after
            // the push (slow path, document cache), a new household, the compactor's
            // fold and the admin command's.
            let cache = sync::DocCache::new(64);
            for (i, (id, doc)) in docs.iter_mut().enumerate() {
                let mut cs: Vec<ByteBuf> = (0..if i == 0 { 16 } else { 2 })
                    .map(|j| ByteBuf::from(edit(doc, "household/address", &format!("Baru {j}"))))
                    .collect();
                if i == 0 {
                    cs.push(ByteBuf::from(move_to_desa_b(doc)));
                }
                let n = cs.len();
                let req = SyncRequest {
                    changes: vec![HouseholdChanges {
                        household_id: *id,
                        changes: cs,
                    }],
                    cursor: None,
                    page_size: Some(1),
                };
                let (_, out, _) = sync::sync_cached(&db, &cache, &admin, &req).unwrap();
                assert_eq!((out.stored, out.rejected.len()), (n, 0), "{what}");
            }
            let (id, doc, c0) = household(DESA_A, "PSY-A");
            assert_eq!(push(&db, &admin, id, &[c0]).stored, 1, "{what}");
            docs.push((id, doc));
            let folded = |db: &Db, id: Uuid| {
                db.tx(false, |t| {
                    t.query(
                        "SELECT snapshot_seq = last_seq FROM households WHERE id = $1",
                        &[id.to_string().into()],
                    )
                })
                .unwrap()[0][0]
                    .int()
            };
            assert_eq!(folded(&db, docs[0].0), 1, "{what}: folded after the push");
            assert!(sync::compact_household(&db, docs[1].0).unwrap(), "{what}");
            assert_eq!(folded(&db, docs[1].0), 1, "{what}: folded by the compactor");
            assert_holds(&pulled(&db, &reader), &docs, &what);
            admin::compact(&db).unwrap();
            assert_current_layout(&db, docs.len(), &what);
            assert_holds(&pulled(&db, &reader), &docs, &what);

            // The kader's device catches up from its cursor of before the migration: the
            // moved household dropped, the new one added, every other one up to date.
            apply(&mut held, pull_all(&db, &kader, &mut cursor, 100));
            let want: BTreeSet<Uuid> = [1, 2, 4, 5].iter().map(|&i| docs[i].0).collect();
            assert_eq!(
                held.keys().copied().collect::<BTreeSet<_>>(),
                want,
                "{what}"
            );
            for &i in &[1, 2, 4, 5] {
                let (id, doc) = &docs[i];
                assert_eq!(held[id].get_heads(), doc.heads(), "{what}: {i}");
            }
            let v = db
                .read(|t| sync::household_json(t, &admin, docs[1].0))
                .unwrap();
            assert_eq!(v["household"]["address"], "Baru 1", "{what}");
        }
    }
}

type Records = Vec<(String, Row)>;

fn read_backup(file: &std::path::Path) -> Records {
    let mut z =
        std::io::BufReader::new(zstd::Decoder::new(std::fs::File::open(file).unwrap()).unwrap());
    let mut out = Vec::new();
    while !z.fill_buf().unwrap().is_empty() {
        out.push(ciborium::from_reader(&mut z).unwrap());
    }
    out
}

fn write_backup(file: &std::path::Path, records: &Records) {
    let mut z = zstd::Encoder::new(std::fs::File::create(file).unwrap(), 3).unwrap();
    for r in records {
        ciborium::into_writer(r, &mut z).unwrap();
    }
    z.finish().unwrap().flush().unwrap();
}

/// A backup as the version before `snapshots` wrote it: each `households` row with its
/// snapshot as the seventh column, no `snapshots` rows, layout 1; without `actors`, the
/// rows from before that column (9 columns, as many as a current row).
fn old_backup(records: &Records, actors: bool) -> Records {
    let snaps: BTreeMap<String, Value> = records
        .iter()
        .filter(|(t, _)| t == "snapshots")
        .map(|(_, r)| (r[0].text().unwrap().to_string(), r[1].clone()))
        .collect();
    records
        .iter()
        .filter(|(t, _)| t != "snapshots")
        .map(|(t, r)| {
            let mut r = r.clone();
            if t == "households" {
                r.insert(6, snaps[r[0].text().unwrap()].clone());
                if !actors {
                    r.pop();
                }
            }
            if t == "meta" && r[0] == Value::from("schema") {
                r[1] = "1".into();
            }
            (t.clone(), r)
        })
        .collect()
}

#[test]
fn backups_of_the_old_layout_restore_into_the_new_one() {
    for (backend, db) in backends("oldbackup") {
        let (_, reader, _, mut docs) = seed(&db);
        // One more edit, pushed after each restore.
        let (id, doc) = &mut docs[2];
        let (id, later) = (*id, edit(doc, "household/address", "Setelah pulih"));
        let before = pulled(&db, &reader);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("new.kjb");
        let rows = admin::backup(&db, &file).unwrap();
        let records = read_backup(&file);
        assert_eq!(
            records.len(),
            rows + 1,
            "{backend}: the header and every row"
        );
        assert_eq!(
            records.iter().filter(|(t, _)| t == "snapshots").count(),
            docs.len(),
            "{backend}: new backups carry the snapshots"
        );
        let mut files = vec![("current", file, rows)];
        for (name, actors) in [("old, 10 columns", true), ("old, 9 columns", false)] {
            let old = old_backup(&records, actors);
            let f = dir.path().join(format!("{actors}.kjb"));
            write_backup(&f, &old);
            files.push((name, f, old.len() - 1));
        }
        for (name, file, rows) in &files {
            for (into, fresh) in backends("oldbackup_into") {
                let what = format!("{backend} backup ({name}) into {into}");
                assert_eq!(admin::restore(&fresh, file).unwrap(), *rows, "{what}");
                assert_current_layout(&fresh, docs.len(), &what);
                let (token, _, _) = fresh
                    .tx(false, |t| auth::login(t, "reader", "kata-sandi-1", "d"))
                    .unwrap();
                let u = fresh.tx(false, |t| auth::authenticate(t, &token)).unwrap();
                assert_same(
                    &pulled(&fresh, &u),
                    &before,
                    &format!("{what}: byte for byte"),
                );
                // And it takes pushes (the slow path rebuilds a missing `actors`).
                let pushed = push(&fresh, &u, id, std::slice::from_ref(&later));
                assert_eq!(pushed.stored, 1, "{what}");
                let v = fresh.read(|t| sync::household_json(t, &u, id)).unwrap();
                assert_eq!(v["household"]["address"], "Setelah pulih", "{what}");
            }
        }
    }
}
