//! Signed cursors: the server signs each cursor it issues (HMAC-SHA256 with a random key
//! kept in `meta`, over the device id and the cursor) and trusts a cursor's `scope` only
//! when the signature holds or the scope is the caller's own. A forged or altered scope
//! (e.g. "everything") is replaced by the empty scope: nothing of it is assumed to be on
//! the device, so the pull resends the caller's own scope as snapshots and drops only
//! households the device itself pushed to — drop instructions never name households
//! outside the scopes the server gave this device.

use kunjung_protocol::{Cursor, Scope};
use sha2::{Digest, Sha256};

use crate::db::{Db, DbError, Sql};

/// Bytes of the HMAC kept in a cursor (128 bits).
const MAC_LEN: usize = 16;

/// Makes the signing key on first use (idempotent; kept by backup and restore).
pub fn init(db: &Db) -> Result<(), DbError> {
    db.tx(false, |t| {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        t.exec(
            "INSERT INTO meta(key, value) VALUES ('cursor_key', $1) ON CONFLICT (key) DO NOTHING",
            &[hex::encode(key).into()],
        )?;
        Ok(())
    })
}

/// The signing key.
pub fn key(t: &mut dyn Sql) -> Result<Vec<u8>, DbError> {
    Ok(
        t.query("SELECT value FROM meta WHERE key = 'cursor_key'", &[])?
            .first()
            .and_then(|r| r[0].text())
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_default(),
    )
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn mac(key: &[u8], device: &str, c: &Cursor) -> String {
    let unsigned = Cursor {
        mac: None,
        ..c.clone()
    };
    // Length-prefixed device id, then the cursor's text: the parts cannot shift.
    let text = unsigned.to_text();
    let mut msg = (device.len() as u64).to_be_bytes().to_vec();
    msg.extend_from_slice(device.as_bytes());
    msg.extend_from_slice(text.as_bytes());
    hex::encode(&hmac(key, &msg)[..MAC_LEN])
}

/// Signs a cursor for `device`.
pub fn sign(key: &[u8], device: &str, c: &mut Cursor) {
    c.mac = Some(mac(key, device, c));
}

/// The scope the pull may take the device to have held at the cursor: the cursor's own
/// if it is the caller's current scope or the server signed it for this device, else the
/// empty scope.
pub fn trusted_scope(key: &[u8], device: &str, c: &Cursor, current: &Scope) -> Scope {
    if &c.scope == current {
        return c.scope.clone();
    }
    let want = mac(key, device, c);
    let ok = !key.is_empty()
        && c.mac.as_ref().is_some_and(|got| {
            got.len() == want.len()
                && got
                    .bytes()
                    .zip(want.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
    if ok {
        c.scope.clone()
    } else {
        Scope::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn only_signed_or_own_scopes_are_trusted() {
        let key = [9u8; 32];
        let own = Scope {
            posyandu: vec!["PSY-A".into()],
            ..Scope::default()
        };
        let other = Scope {
            posyandu: vec!["PSY-B".into()],
            ..Scope::default()
        };
        let all = Scope {
            all: true,
            ..Scope::default()
        };
        let mut c = Cursor {
            seq: 7,
            scope: other.clone(),
            ..Cursor::default()
        };
        // Unsigned, not the caller's: nothing assumed.
        assert_eq!(trusted_scope(&key, "d1", &c, &own), Scope::default());
        sign(&key, "d1", &mut c);
        assert_eq!(trusted_scope(&key, "d1", &c, &own), other);
        // Another device, another key, or any altered field: not trusted.
        assert_eq!(trusted_scope(&key, "d2", &c, &own), Scope::default());
        assert_eq!(trusted_scope(&[8u8; 32], "d1", &c, &own), Scope::default());
        let mut forged = c.clone();
        forged.scope = all;
        assert_eq!(trusted_scope(&key, "d1", &forged, &own), Scope::default());
        let mut moved = c.clone();
        moved.seq = 6;
        assert_eq!(trusted_scope(&key, "d1", &moved, &own), Scope::default());
        // The caller's own scope needs no signature (cursors from before signing).
        let plain = Cursor {
            seq: 7,
            scope: own.clone(),
            ..Cursor::default()
        };
        assert_eq!(trusted_scope(&key, "d1", &plain, &own), own);
    }
}
