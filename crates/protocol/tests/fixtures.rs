//! Sample wire messages committed under `fixtures/`: they must keep decoding, so a change
//! of the wire format that breaks deployed clients fails here. Regenerate with
//! `KUNJUNG_BLESS=1 cargo test -p kunjung-protocol --test fixtures` (only for a new
//! protocol version).

use std::path::PathBuf;

use automerge::ActorId;
use kunjung_core::{CommitMeta, HouseholdDoc, NewHousehold};
use kunjung_protocol::*;
use serde_bytes::ByteBuf;
use uuid::Uuid;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn household() -> (Uuid, HouseholdDoc, Vec<u8>) {
    let id = Uuid::from_u128(0x0193_5f00_0000_7000_8000_0000_0000_0001);
    let h = NewHousehold {
        area_code: "32.14.01.2001".into(),
        rt: "001".into(),
        rw: "002".into(),
        posyandu_id: Some("PSY-MAWAR".into()),
        address: Some("Kp. Sukamaju".into()),
        dusun: None,
        kk: None,
    };
    let meta = CommitMeta {
        user: "siti".into(),
        time_ms: 1_795_000_000_000,
    };
    let w = HouseholdDoc::create(id, &h, ActorId::from(vec![0xab; 16]), &meta).unwrap();
    let change = w.change.unwrap().raw_bytes().to_vec();
    (id, w.result, change)
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let (id, doc, change) = household();
    let hash = kunjung_core::doc::parse_change(&change)
        .unwrap()
        .hash()
        .0
        .to_vec();
    let scope = Scope::for_role(Role::Kader, &["PSY-MAWAR".into()], &[]);
    let req = SyncRequest {
        cursor: Some(Cursor {
            seq: 41,
            target: None,
            after: None,
            scope: scope.clone(),
            mac: None,
        }),
        changes: vec![HouseholdChanges {
            household_id: id,
            changes: vec![ByteBuf::from(change.clone())],
        }],
        page_size: Some(500),
    };
    let resp = SyncResponse {
        acked: 1,
        acked_digest: ByteBuf::from(ack_digest([hash.as_slice()]).to_vec()),
        rejected: vec![Rejected {
            household_id: Uuid::from_u128(2),
            hash: None,
            code: "out_of_scope".into(),
            message: "rumah tangga di luar wilayah Anda (household outside your scope)".into(),
        }],
        changes: vec![],
        snapshots: vec![Snapshot {
            household_id: id,
            bytes: ByteBuf::from(doc.automerge().save_nocompress()),
        }],
        drops: vec![Uuid::from_u128(3)],
        next_cursor: Cursor {
            seq: 42,
            target: None,
            after: None,
            scope,
            mac: None,
        },
        more: false,
        total: 2,
        remaining: 0,
    };
    let login = LoginRequest {
        username: "siti".into(),
        password: "rahasia-sekali".into(),
        device_id: "abababababababababababababababab".into(),
    };
    let error = ErrorBody {
        code: "client_too_old".into(),
        message: "versi aplikasi terlalu lama; perbarui Kunjung (client too old: update Kunjung)"
            .into(),
    };
    vec![
        ("sync_request_v1.cbor.zst", encode(&req).unwrap()),
        ("sync_response_v1.cbor.zst", encode(&resp).unwrap()),
        (
            "login_request_v1.json",
            serde_json::to_vec_pretty(&login).unwrap(),
        ),
        ("error_v1.json", serde_json::to_vec_pretty(&error).unwrap()),
    ]
}

#[test]
fn committed_samples_decode() {
    if std::env::var_os("KUNJUNG_BLESS").is_some() {
        for (name, bytes) in samples() {
            std::fs::write(dir().join(name), bytes).unwrap();
        }
    }
    let read = |n: &str| std::fs::read(dir().join(n)).unwrap();
    let req: SyncRequest = decode(&read("sync_request_v1.cbor.zst")).unwrap();
    let resp: SyncResponse = decode(&read("sync_response_v1.cbor.zst")).unwrap();
    let login: LoginRequest = serde_json::from_slice(&read("login_request_v1.json")).unwrap();
    let error: ErrorBody = serde_json::from_slice(&read("error_v1.json")).unwrap();

    // Same content as what this build produces.
    let fresh = samples();
    assert_eq!(req, decode::<SyncRequest>(&fresh[0].1).unwrap());
    assert_eq!(resp, decode::<SyncResponse>(&fresh[1].1).unwrap());
    assert_eq!(login.username, "siti");
    assert_eq!(error.code, "client_too_old");

    // The payloads inside are real household data.
    let (id, _, _) = household();
    let change = &req.changes[0].changes[0];
    let parsed = kunjung_core::doc::parse_change(change).unwrap();
    assert_eq!(req.changes[0].household_id, id);
    let doc = HouseholdDoc::load(&resp.snapshots[0].bytes).unwrap();
    assert_eq!(doc.id().unwrap(), id);
    assert_eq!(doc.heads(), vec![parsed.hash()]);
    assert_eq!(
        resp.acked_digest.as_slice(),
        ack_digest([parsed.hash().0.as_slice()])
    );
    assert_eq!(req.cursor.unwrap().seq, 41);
    assert_eq!(resp.drops, vec![Uuid::from_u128(3)]);
}
