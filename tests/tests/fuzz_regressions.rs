//! The fuzz targets on stable Rust, in every test run: each input that ever crashed a
//! target (`fuzz/regressions/<target>/`) and each seed (`fuzz/seeds/<target>/`) is
//! replayed, then a small seeded mutation fuzzer (bit flips, byte insertions and
//! deletions, splices of seeds, truncations) runs `KUNJUNG_FUZZ_ITERS` inputs per target
//! (default 3,000). The coverage-guided runs are `cargo xtask fuzz` (cargo-fuzz).
//!
//! `UPDATE_FUZZ_SEEDS=1` rewrites the generated seeds (a sync request and response, a
//! cursor, changes and documents); the CSV seed is written by hand.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};

use kunjung_core::{CommitMeta, FieldEdit, HouseholdDoc, NewHousehold, NewMember, NewVisit, Sex};
use kunjung_protocol::{
    ByteBuf, Cursor, HouseholdChanges, Rejected, Snapshot, SyncRequest, SyncResponse,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("protocol_decode", targets::protocol_decode),
    ("document_load", targets::document_load),
    ("csv_import", targets::csv_import),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != ".gitkeep"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

/// Deterministic seeds made with the real code.
fn generated_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let meta = CommitMeta {
        user: "kader".into(),
        time_ms: 1_764_000_000_000,
    };
    let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);
    let mut w = HouseholdDoc::create(
        id,
        &NewHousehold {
            area_code: "32.14.01.2001".into(),
            rt: "3".into(),
            rw: "1".into(),
            dusun: Some("Krajan".into()),
            posyandu_id: Some("PSY-A".into()),
            address: Some("Jl. Mawar 1".into()),
            kk: Some("3214010101090001".into()),
        },
        automerge::ActorId::from(&[1u8; 16][..]),
        &meta,
    )
    .unwrap();
    let c0 = w.change.take().unwrap().raw_bytes().to_vec();
    let mut doc = w.result;
    let member = doc
        .add_member(
            &NewMember {
                name: "Siti Rahma".into(),
                sex: Sex::F,
                birth_date: chrono::NaiveDate::from_ymd_opt(1985, 7, 15).unwrap(),
                birth_date_estimated: false,
                nik: Some("3214015507850002".into()),
                kk: None,
                relation: None,
                mother_id: None,
                jkn: None,
            },
            &meta,
        )
        .unwrap();
    let c1 = member.change.unwrap().raw_bytes().to_vec();
    let visit = doc
        .add_visit(
            &NewVisit {
                member_id: member.result,
                date: chrono::NaiveDate::from_ymd_opt(2025, 11, 20).unwrap(),
                weight_kg: Some(55.5),
                notes: Some("sehat".into()),
                ..NewVisit::default()
            },
            &meta,
        )
        .unwrap();
    let c2 = visit.change.unwrap().raw_bytes().to_vec();
    let c3 = doc
        .edit(
            &[FieldEdit {
                path: "household/address".into(),
                value: Some(kunjung_core::AnswerValue::Text("Jl. Melati 2".into())),
            }],
            &meta,
            "edit",
        )
        .unwrap()
        .change
        .unwrap()
        .raw_bytes()
        .to_vec();
    let cursor = Cursor {
        seq: 42,
        target: Some(50),
        after: Some(id),
        scope: kunjung_protocol::Scope {
            all: false,
            posyandu: vec!["PSY-A".into()],
            areas: vec!["32.14.01".into()],
        },
        mac: Some("0123456789abcdef0123456789abcdef".into()),
    };
    let req = SyncRequest {
        cursor: Some(cursor.clone()),
        changes: vec![HouseholdChanges {
            household_id: id,
            changes: vec![ByteBuf::from(c2.clone()), ByteBuf::from(c3.clone())],
        }],
        page_size: Some(100),
    };
    let resp = SyncResponse {
        acked: 2,
        acked_digest: ByteBuf::from(vec![9u8; 32]),
        rejected: vec![Rejected {
            household_id: id,
            hash: None,
            code: "out_of_scope".into(),
            message: "di luar wilayah (out of scope)".into(),
        }],
        snapshots: vec![Snapshot {
            household_id: id,
            bytes: ByteBuf::from(doc.save()),
        }],
        changes: vec![HouseholdChanges {
            household_id: id,
            changes: vec![ByteBuf::from(c1.clone())],
        }],
        drops: vec![Uuid::from_u128(3)],
        more: true,
        next_cursor: cursor.clone(),
        total: 10,
        remaining: 4,
    };
    let mut req_cbor = Vec::new();
    ciborium::into_writer(&req, &mut req_cbor).unwrap();
    let mut multi = c1.clone();
    multi.push(0xff);
    multi.extend_from_slice(&c2);
    vec![
        (
            "protocol_decode",
            "sync_request.zst",
            kunjung_protocol::encode(&req).unwrap(),
        ),
        (
            "protocol_decode",
            "sync_response.zst",
            kunjung_protocol::encode(&resp).unwrap(),
        ),
        ("protocol_decode", "sync_request.cbor", req_cbor),
        (
            "protocol_decode",
            "cursor.txt",
            cursor.to_text().into_bytes(),
        ),
        (
            "protocol_decode",
            "login.json",
            br#"{"username":"kader","password":"kata-sandi","device_id":"0a0b"}"#.to_vec(),
        ),
        ("document_load", "change_create", c0),
        ("document_load", "change_visit", c2),
        ("document_load", "change_edit", c3),
        ("document_load", "changes_split", multi),
        ("document_load", "document", doc.save()),
    ]
}

fn mutate(rng: &mut ChaCha8Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..6) {
        match rng.gen_range(0..7) {
            0 if !input.is_empty() => {
                let i = rng.gen_range(0..input.len());
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !input.is_empty() => {
                let i = rng.gen_range(0..input.len());
                input[i] = [0, 0xff, 0x7f, 0x80, b',', b'"', b'\n'][rng.gen_range(0..7)];
            }
            2 => {
                let i = rng.gen_range(0..=input.len());
                let n = rng.gen_range(1..16);
                for _ in 0..n {
                    input.insert(i, rng.gen());
                }
            }
            3 if !input.is_empty() => {
                let i = rng.gen_range(0..input.len());
                let n = rng.gen_range(1..=(input.len() - i).min(32));
                input.drain(i..i + n);
            }
            4 if !input.is_empty() => input.truncate(rng.gen_range(0..input.len())),
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.gen_range(0..seeds.len())];
                if !other.is_empty() {
                    let a = rng.gen_range(0..other.len());
                    let b = rng.gen_range(a..=other.len());
                    let at = rng.gen_range(0..=input.len());
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
            _ if input.len() >= 2 => {
                // Repeat a slice (duplicated fields, nested structures).
                let a = rng.gen_range(0..input.len() - 1);
                let b = rng.gen_range(a + 1..input.len().min(a + 64));
                let chunk: Vec<u8> = input[a..b].to_vec();
                input.splice(b..b, chunk);
            }
            _ => {}
        }
    }
}

#[test]
fn fuzz_regressions_seeds_and_a_short_stable_run() {
    let dir = fuzz_dir();
    if std::env::var("UPDATE_FUZZ_SEEDS").as_deref() == Ok("1") {
        for (t, name, bytes) in generated_seeds() {
            let d = dir.join("seeds").join(t);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(name), bytes).unwrap();
        }
    }
    let iters: usize = std::env::var("KUNJUNG_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    for (name, target) in TARGETS {
        let regressions = files(&dir.join("regressions").join(name));
        for (p, bytes) in &regressions {
            eprintln!("regression {}", p.display());
            target(bytes);
        }
        let seeds: Vec<Vec<u8>> = files(&dir.join("seeds").join(name))
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        assert!(!seeds.is_empty(), "{name}: no seeds in fuzz/seeds/{name}");
        for s in &seeds {
            target(s);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        let start = std::time::Instant::now();
        for i in 0..iters {
            let mut input = seeds[i % seeds.len()].clone();
            mutate(&mut rng, &seeds, &mut input);
            if let Err(e) = std::panic::catch_unwind(|| target(&input)) {
                let out = dir.join("regressions").join(name);
                std::fs::create_dir_all(&out).unwrap();
                let f = out.join(format!("stable-{i}"));
                std::fs::write(&f, &input).unwrap();
                panic!("{name} panicked on {} (saved): {e:?}", f.display());
            }
        }
        eprintln!(
            "{name}: {} regressions, {} seeds, {iters} mutated inputs in {:.1} s",
            regressions.len(),
            seeds.len(),
            start.elapsed().as_secs_f64()
        );
    }
}
