//! Wire types of the Kunjung sync protocol (SPEC §4), shared by the client and the server.
//!
//! - Every request to `/v1/...` carries the header [`VERSION_HEADER`] with
//!   [`PROTOCOL_VERSION`]; a client older than [`MIN_PROTOCOL_VERSION`] gets HTTP 426 and an
//!   [`ErrorBody`] with code `client_too_old`.
//! - Errors are JSON [`ErrorBody`] everywhere: `{"code": "...", "message": "Bahasa Indonesia
//!   (English)"}`.
//! - `POST /v1/login` takes and returns JSON ([`LoginRequest`], [`LoginResponse`]).
//! - `POST /v1/sync` takes a [`SyncRequest`] and returns a [`SyncResponse`], both CBOR
//!   compressed with zstd (`Content-Type: application/cbor`, `Content-Encoding: zstd`); see
//!   [`encode`] and [`decode`]. Change bytes and snapshots travel as CBOR byte strings, and
//!   zstd runs over the whole body, so a page of many snapshots compresses as one stream.
//!
//! Sample messages are committed under `fixtures/` and decoded by the tests.

use std::io::Read;

pub use serde_bytes::ByteBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest client version the server still accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// The request header that carries the client's protocol version.
pub const VERSION_HEADER: &str = "Kunjung-Protocol";
/// Content type of binary bodies.
pub const CONTENT_TYPE_CBOR: &str = "application/cbor";
/// Content encoding of binary bodies.
pub const ENCODING_ZSTD: &str = "zstd";
/// Largest body accepted once decompressed (a zstd bomb guard).
pub const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

/// Errors of encoding or decoding a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("pesan tidak dapat dibaca: {0} (undecodable message)")]
    Decode(String),
    #[error("pesan tidak dapat ditulis: {0} (unencodable message)")]
    Encode(String),
    #[error("pesan terlalu besar (message too large)")]
    TooLarge,
}

impl ProtocolError {
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::Decode(_) => "bad_message",
            ProtocolError::Encode(_) => "encode_failed",
            ProtocolError::TooLarge => "too_large",
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unauthorized`, `out_of_scope`.
    pub code: String,
    /// Bahasa Indonesia first, English in brackets.
    pub message: String,
}

/// A user's role; it decides the scope (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Kader,
    Bidan,
    Puskesmas,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Kader => "kader",
            Role::Bidan => "bidan",
            Role::Puskesmas => "puskesmas",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "kader" => Some(Role::Kader),
            "bidan" => Some(Role::Bidan),
            "puskesmas" => Some(Role::Puskesmas),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The households a user may read and write: all (admin), those of some posyandu (kader),
/// or those whose area code lies within some prefix (bidan, puskesmas).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub posyandu: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub areas: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Scope {
    /// The scope of a role with its posyandu ids and area prefixes.
    pub fn for_role(role: Role, posyandu: &[String], areas: &[String]) -> Scope {
        match role {
            Role::Admin => Scope {
                all: true,
                ..Scope::default()
            },
            Role::Kader => Scope {
                posyandu: posyandu.to_vec(),
                ..Scope::default()
            },
            Role::Bidan | Role::Puskesmas => Scope {
                areas: areas.to_vec(),
                ..Scope::default()
            },
        }
    }

    /// Whether a household at this area code and posyandu is in the scope.
    pub fn contains(&self, area_code: &str, posyandu_id: Option<&str>) -> bool {
        self.all
            || posyandu_id.is_some_and(|p| self.posyandu.iter().any(|q| q == p))
            || self
                .areas
                .iter()
                .any(|a| kunjung_core::ids::area_within(area_code, a))
    }
}

/// `POST /v1/login` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The device (its Automerge actor id, hex); the token is bound to it.
    pub device_id: String,
}

/// Answer to a successful login (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer …`.
    pub token: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    pub username: String,
    pub role: Role,
    pub scope: Scope,
    /// Identifies the server's database: a device's cursor is only valid for the server
    /// that issued it, whatever its address.
    #[serde(default)]
    pub server_id: String,
}

/// `GET /v1/health` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub protocol: u32,
    pub min_protocol: u32,
    pub version: String,
    pub backend: String,
}

/// Where a device stands in the server's change sequence. Opaque to clients: they store
/// the last `next_cursor` they fully applied and send it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Every change of the scope with sequence ≤ `seq` is on the device.
    #[serde(rename = "s")]
    pub seq: u64,
    /// While paging: the window end; households ≤ `after` are synced up to `target`.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
    #[serde(
        rename = "a",
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_uuid_bytes"
    )]
    pub after: Option<Uuid>,
    /// The scope the device held at `seq`.
    #[serde(rename = "c", default)]
    pub scope: Scope,
    /// The server's signature over the cursor and the device (hex); a scope other than
    /// the caller's own is trusted only with it.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Cursor {
    /// Text form for storing on the device.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    pub fn from_text(s: &str) -> Result<Cursor, ProtocolError> {
        serde_json::from_str(s).map_err(|e| ProtocolError::Decode(e.to_string()))
    }
}

/// Automerge changes of one household, each one change chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdChanges {
    #[serde(rename = "h", with = "uuid_bytes")]
    pub household_id: Uuid,
    #[serde(rename = "c")]
    pub changes: Vec<serde_bytes::ByteBuf>,
}

/// A whole household document (compacted; `save_nocompress`, since zstd over the page
/// compresses it far better than Automerge's own DEFLATE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "h", with = "uuid_bytes")]
    pub household_id: Uuid,
    #[serde(rename = "b")]
    pub bytes: serde_bytes::ByteBuf,
}

/// `POST /v1/sync` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
///
/// Keys on the wire are one letter (an end-of-day sync is a few kilobytes, so names would
/// cost several percent): `k` cursor, `c` changes, `p` page size.
pub struct SyncRequest {
    /// None on a device's first sync.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// The device's unsynced changes, grouped by household, oldest first.
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<HouseholdChanges>,
    /// How many households the device wants per page (the server caps it).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
}

/// A pushed change (or a whole household's push) the server did not store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    #[serde(with = "uuid_bytes")]
    pub household_id: Uuid,
    /// The change, or none when every change of the household was rejected.
    #[serde(default)]
    pub hash: Option<serde_bytes::ByteBuf>,
    pub code: String,
    pub message: String,
}

/// `POST /v1/sync` response: one page. One-letter keys on the wire: `n` acked, `d` digest,
/// `r` rejected, `c` changes, `s` snapshots, `x` drops, `k` next cursor, `m` more,
/// `t` total, `l` remaining (left).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// How many pushed changes the server now holds.
    #[serde(rename = "n", default)]
    pub acked: u32,
    /// [`ack_digest`] of the hashes of those changes: the pushed hashes minus the rejected
    /// ones. The client marks its changes synced only when its own digest matches, so a
    /// receipt is verified change by change while costing 32 bytes.
    #[serde(rename = "d")]
    pub acked_digest: serde_bytes::ByteBuf,
    #[serde(rename = "r", default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
    /// New changes of households the device holds (or receives in this page).
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<HouseholdChanges>,
    /// Households new to the device; applied before `changes`.
    #[serde(rename = "s", default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<Snapshot>,
    /// Households that left the device's scope: delete them.
    #[serde(
        rename = "x",
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "vec_uuid_bytes"
    )]
    pub drops: Vec<Uuid>,
    /// Store this after the page is applied; send it with the next request.
    #[serde(rename = "k")]
    pub next_cursor: Cursor,
    /// More pages follow: call again with `next_cursor`.
    #[serde(rename = "m", default)]
    pub more: bool,
    /// Households in this pull (for a progress bar) and how many remain after this page.
    #[serde(rename = "t", default)]
    pub total: u64,
    #[serde(rename = "l", default)]
    pub remaining: u64,
}

/// The digest acknowledging a set of change hashes: SHA-256 over the sorted, deduplicated
/// hashes.
pub fn ack_digest<'a>(hashes: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut v: Vec<&[u8]> = hashes.into_iter().collect();
    v.sort();
    v.dedup();
    let mut h = Sha256::new();
    for x in v {
        h.update(x);
    }
    h.finalize().into()
}

/// Encodes a message as zstd-compressed CBOR.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let mut cbor = Vec::new();
    ciborium::into_writer(msg, &mut cbor).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    // Small bodies (end-of-day syncs) get the strongest level, which costs little at that
    // size; large pages (first sync) a level that keeps the server fast.
    let level = if cbor.len() < 128 * 1024 { 19 } else { 9 };
    compress(&cbor, level)
}

/// Encodes a server answer: zstd 19 only for small bodies (an acknowledgement, a quiet
/// pull), a fast level for medium ones (an end-of-day pull of other devices' visits,
/// where level 19 would cost the server ~10 ms of CPU per answer) and level 9 for large
/// first-sync pages, where bytes on the wire matter most.
pub fn encode_answer<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let mut cbor = Vec::with_capacity(4096);
    ciborium::into_writer(msg, &mut cbor).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    let level = match cbor.len() {
        0..=4096 => 19,
        4097..=262_144 => 1,
        _ => 9,
    };
    compress(&cbor, level)
}

/// Encodes a message as zstd-compressed CBOR at a given zstd level (any level decodes
/// the same; the load generator uses a fast one to keep its CPU off the server's).
pub fn encode_level<T: Serialize>(msg: &T, level: i32) -> Result<Vec<u8>, ProtocolError> {
    let mut cbor = Vec::new();
    ciborium::into_writer(msg, &mut cbor).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    compress(&cbor, level)
}

thread_local! {
    /// Each thread's zstd contexts, kept between messages: making a new one per message
    /// (allocating and clearing its tables) cost a sync's sender more than compressing.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd at `level` with this thread's context (one frame, with its content size).
fn compress(data: &[u8], level: i32) -> Result<Vec<u8>, ProtocolError> {
    let err = |e: std::io::Error| ProtocolError::Encode(e.to_string());
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let z = match c.as_mut() {
            Some(z) => {
                z.set_compression_level(level).map_err(err)?;
                z
            }
            None => c.insert(zstd::bulk::Compressor::new(level).map_err(err)?),
        };
        z.compress(data).map_err(err)
    })
}

/// Bodies whose frame header declares at most this many bytes are inflated in one call
/// into a buffer of that size; others (and any the one call refuses) go through the
/// streaming decoder and its limit.
const ONE_CALL_MAX: u64 = 16 * 1024 * 1024;

/// Inflates a body whose (first) frame declares its size, in one call with this thread's
/// context; `None` when that does not apply or fails (the caller streams instead).
fn decompress_declared(body: &[u8]) -> Option<Vec<u8>> {
    let size = zstd::zstd_safe::get_frame_content_size(body).ok()??;
    if size > ONE_CALL_MAX {
        return None;
    }
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let z = match d.as_mut() {
            Some(z) => z,
            None => d.insert(zstd::bulk::Decompressor::new().ok()?),
        };
        z.decompress(body, size as usize).ok()
    })
}

/// Decodes a zstd-compressed CBOR message, refusing to inflate past [`MAX_DECODED_BYTES`].
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProtocolError> {
    if let Some(cbor) = decompress_declared(body) {
        return ciborium::from_reader(cbor.as_slice())
            .map_err(|e| ProtocolError::Decode(e.to_string()));
    }
    let dec =
        zstd::stream::read::Decoder::new(body).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    let mut cbor = Vec::new();
    dec.take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut cbor)
        .map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if cbor.len() as u64 > MAX_DECODED_BYTES {
        return Err(ProtocolError::TooLarge);
    }
    ciborium::from_reader(cbor.as_slice()).map_err(|e| ProtocolError::Decode(e.to_string()))
}

/// UUIDs as 16-byte CBOR byte strings (not 36-character text).
mod uuid_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(u: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(u.as_bytes())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?;
        Uuid::from_slice(&b).map_err(serde::de::Error::custom)
    }
}

mod opt_uuid_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(u: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        match u {
            Some(u) => s.serialize_some(&serde_bytes::Bytes::new(u.as_bytes())),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
        let b = Option::<serde_bytes::ByteBuf>::deserialize(d)?;
        b.map(|b| Uuid::from_slice(&b).map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod vec_uuid_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(v: &[Uuid], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|u| serde_bytes::Bytes::new(u.as_bytes())))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Uuid>, D::Error> {
        let v = Vec::<serde_bytes::ByteBuf>::deserialize(d)?;
        v.iter()
            .map(|b| Uuid::from_slice(b).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        let k = Scope::for_role(Role::Kader, &["PSY-A".into()], &["32".into()]);
        assert!(k.contains("32.14.01.2001", Some("PSY-A")));
        assert!(!k.contains("32.14.01.2001", Some("PSY-B")));
        assert!(!k.contains("32.14.01.2001", None));
        let b = Scope::for_role(Role::Bidan, &[], &["32.14.01".into()]);
        assert!(b.contains("32.14.01.2001", None));
        assert!(!b.contains("32.14.011.2001", None));
        assert!(!b.contains("32.14.02.2001", Some("PSY-A")));
        let a = Scope::for_role(Role::Admin, &[], &[]);
        assert!(a.contains("11.01.01.2001", None));
    }

    #[test]
    fn digest_ignores_order_and_duplicates() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_eq!(
            ack_digest([&a[..], &b[..]]),
            ack_digest([&b[..], &a[..], &b[..]])
        );
        assert_ne!(ack_digest([&a[..]]), ack_digest([&b[..]]));
    }

    #[test]
    fn round_trip_and_compact_ids() {
        let id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
        let resp = SyncResponse {
            acked: 1,
            acked_digest: serde_bytes::ByteBuf::from(vec![7; 32]),
            drops: vec![id],
            next_cursor: Cursor {
                seq: 5,
                target: Some(9),
                after: Some(id),
                scope: Scope::for_role(Role::Kader, &["P".into()], &[]),
                mac: Some("00ff".into()),
            },
            more: true,
            total: 3,
            remaining: 2,
            ..SyncResponse::default()
        };
        let bytes = encode(&resp).unwrap();
        let back: SyncResponse = decode(&bytes).unwrap();
        assert_eq!(back, resp);
        // A UUID travels as 16 bytes, not as 36 characters of text.
        let mut cbor = Vec::new();
        ciborium::into_writer(&resp.drops_as_changes(), &mut cbor).unwrap();
        assert!(cbor.len() < 30, "{}", cbor.len());
        let c = Cursor::from_text(&resp.next_cursor.to_text()).unwrap();
        assert_eq!(c, resp.next_cursor);
    }

    impl SyncResponse {
        fn drops_as_changes(&self) -> HouseholdChanges {
            HouseholdChanges {
                household_id: self.drops[0],
                changes: vec![],
            }
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(
            decode::<SyncRequest>(b"not zstd"),
            Err(ProtocolError::Decode(_))
        ));
        let not_cbor = zstd::bulk::compress(b"\xff\xff\xff", 3).unwrap();
        assert!(decode::<SyncRequest>(&not_cbor).is_err());
    }

    /// Bodies the one-call path does not take (a streamed frame without its size, two
    /// frames, a frame cut short) still decode, or fail with a clear error.
    #[test]
    fn every_zstd_framing_decodes() {
        use std::io::Write;
        let req = SyncRequest {
            cursor: None,
            changes: vec![HouseholdChanges {
                household_id: Uuid::from_u128(7),
                changes: vec![
                    ByteBuf::from(vec![1u8; 5000]),
                    ByteBuf::from(vec![2u8; 300]),
                ],
            }],
            page_size: Some(9),
        };
        let mut cbor = Vec::new();
        ciborium::into_writer(&req, &mut cbor).unwrap();
        let same = |body: &[u8]| {
            let back: SyncRequest = decode(body).unwrap();
            assert_eq!(back.changes[0].changes, req.changes[0].changes);
            assert_eq!(back.page_size, Some(9));
        };
        // One frame with its size (what every encoder here writes), twice on one thread.
        let one = encode_level(&req, 3).unwrap();
        assert!(zstd::zstd_safe::get_frame_content_size(&one)
            .unwrap()
            .is_some());
        same(&one);
        same(&one);
        // A streamed frame: no size in its header.
        let mut w = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        w.write_all(&cbor).unwrap();
        let streamed = w.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&streamed).unwrap(),
            None
        );
        same(&streamed);
        // Two frames, the first declaring only its own part.
        let (a, b) = cbor.split_at(100);
        let mut two = zstd::bulk::compress(a, 3).unwrap();
        two.extend(zstd::bulk::compress(b, 3).unwrap());
        same(&two);
        // Cut short: an error, not a panic.
        assert!(decode::<SyncRequest>(&one[..one.len() - 4]).is_err());
    }
}
