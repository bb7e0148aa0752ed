//! The fuzz targets' bodies, shared by the cargo-fuzz entry points (`fuzz_targets/`) and
//! by the regression test in the main workspace (`tests/tests/fuzz_regressions.rs`, which
//! includes this file and replays `fuzz/regressions/*` and the seed corpora on stable
//! Rust). Each body must never panic on any input: an input that makes it panic is a bug.
//!
//! - [`protocol_decode`]: what the server and the client decode from the network — sync
//!   requests and responses (zstd + CBOR, also with the input taken as raw CBOR so the
//!   fuzzer reaches the CBOR decoder), cursors as text, login JSON; a decoded message
//!   re-encodes to the same message.
//! - [`document_load`]: what arrives as Automerge bytes — a change (strictly parsed) applied
//!   to a household, a whole document (a snapshot, a bundle), read back in full.
//! - [`csv_import`]: a register file through the importer (dry run).

use std::io::Write;

use kunjung_core::HouseholdDoc;
use kunjung_protocol::{Cursor, LoginRequest, SyncRequest, SyncResponse};

fn roundtrip<T>(msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = kunjung_protocol::encode(msg).expect("a decoded message encodes");
    let back: T = kunjung_protocol::decode(&bytes).expect("an encoded message decodes");
    assert_eq!(&back, msg, "re-encoding changes the message");
}

/// Network decoders.
pub fn protocol_decode(data: &[u8]) {
    if let Ok(m) = kunjung_protocol::decode::<SyncRequest>(data) {
        roundtrip(&m);
    }
    if let Ok(m) = kunjung_protocol::decode::<SyncResponse>(data) {
        roundtrip(&m);
    }
    // The same bytes as the CBOR inside the compression.
    if let Ok(z) = zstd::bulk::compress(data, 1) {
        if let Ok(m) = kunjung_protocol::decode::<SyncRequest>(&z) {
            roundtrip(&m);
        }
        let _ = kunjung_protocol::decode::<SyncResponse>(&z);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = Cursor::from_text(s) {
            let again = Cursor::from_text(&c.to_text()).expect("a cursor's text parses");
            assert_eq!(again, c);
        }
    }
    let _ = serde_json::from_slice::<LoginRequest>(data);
}

fn base_household() -> HouseholdDoc {
    let id = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
    let meta = kunjung_core::CommitMeta {
        user: "fuzz".into(),
        time_ms: 1_764_000_000_000,
    };
    HouseholdDoc::create(
        id,
        &kunjung_core::NewHousehold {
            area_code: "32.14.01.2001".into(),
            rt: "1".into(),
            rw: "2".into(),
            dusun: None,
            posyandu_id: Some("PSY-A".into()),
            address: None,
            kk: None,
        },
        automerge::ActorId::from(&[7u8; 16][..]),
        &meta,
    )
    .expect("the base household")
    .result
}

fn read_all(d: &HouseholdDoc) {
    let _ = d.read();
    let _ = d.conflicts();
    let _ = d.history();
    let _ = d.id();
}

/// Automerge bytes from elsewhere.
pub fn document_load(data: &[u8]) {
    // One change, strictly parsed, then applied to a household.
    if kunjung_core::doc::parse_change(data).is_ok() {
        let mut d = base_household();
        if d.apply_changes(&[data]).is_ok() {
            read_all(&d);
        }
    }
    // Several changes: the input split on a marker.
    let parts: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
    if parts.len() > 1 {
        let mut d = base_household();
        if d.apply_changes(&parts).is_ok() {
            read_all(&d);
        }
    }
    // A whole document (a snapshot from the server, a bundle), and merged into ours.
    if let Ok(d) = HouseholdDoc::load(data) {
        read_all(&d);
        let mut mine = base_household();
        if mine.merge(&d).is_ok() {
            read_all(&mine);
        }
    }
    // The server's materialised form: a snapshot plus changes.
    let mut snap = base_household().save();
    if let Ok(d) = HouseholdDoc::load_with_changes(&snap, [data]) {
        read_all(&d);
    }
    snap.extend_from_slice(data);
    if let Ok(d) = HouseholdDoc::load(&snap) {
        read_all(&d);
    }
}

struct ImportStore {
    _dir: tempfile::TempDir,
    store: kunjung_store::Store,
    file: std::path::PathBuf,
}

thread_local! {
    static STORE: std::cell::RefCell<Option<ImportStore>> = const { std::cell::RefCell::new(None) };
}

/// A register file through the importer, as a dry run (nothing is written, so every
/// input starts from the same store).
pub fn csv_import(data: &[u8]) {
    STORE.with(|s| {
        let mut s = s.borrow_mut();
        let st = s.get_or_insert_with(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = kunjung_store::Store::init(dir.path(), None, "fuzz").expect("store");
            let file = dir.path().join("register.csv");
            ImportStore {
                _dir: dir,
                store,
                file,
            }
        });
        let mut f = std::fs::File::create(&st.file).expect("write the input");
        f.write_all(data).expect("write the input");
        drop(f);
        let opts = kunjung_client::import::ImportOptions {
            dry_run: true,
            area: Some("32.14.01.2001".into()),
            posyandu: None,
        };
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        let _ = kunjung_client::import::import_file(&mut st.store, &st.file, &opts, today);
    });
}
