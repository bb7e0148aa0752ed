//! How household snapshots are kept in `docs.snapshot`: the document saved without
//! Automerge's own column compression, then zstd-compressed as a whole (level 3). That is
//! smaller than Automerge's compressed save (about 2.7 kB against 3.0 kB per village
//! household, and 10.4 kB as the server sends it) and quicker to write and read.
//!
//! Stores written before this hold plain Automerge bytes; both are read (a zstd frame and
//! an Automerge document start with different magic bytes), and `compact` rewrites a
//! household's snapshot in the new form whenever it folds changes into it.

use kunjung_core::{CoreError, HouseholdDoc};

use crate::{Result, StoreError};

/// zstd's frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const LEVEL: i32 = 3;
/// A stored snapshot larger than this when decompressed is refused as corrupt.
const MAX_DOC: usize = 256 * 1024 * 1024;

/// The stored form of a document.
pub fn encode_doc(doc: &HouseholdDoc) -> Vec<u8> {
    compress(&doc.automerge().save_nocompress())
}

/// The stored form of a saved document's bytes (compressed or not by Automerge), as they
/// came from the server or a bundle.
pub fn encode_saved(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&ZSTD_MAGIC) {
        return bytes.to_vec();
    }
    compress(bytes)
}

fn compress(bytes: &[u8]) -> Vec<u8> {
    // Compressing a byte slice in memory cannot fail short of running out of memory;
    // the uncompressed bytes are a valid stored form too.
    zstd::bulk::compress(bytes, LEVEL).unwrap_or_else(|_| bytes.to_vec())
}

/// Automerge bytes of a stored snapshot (either form).
pub fn decode(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return Ok(std::borrow::Cow::Borrowed(stored));
    }
    let size = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .unwrap_or(0) as usize;
    let out = if size > 0 && size <= MAX_DOC {
        zstd::bulk::decompress(stored, size)
    } else {
        zstd::stream::decode_all(stored)
    };
    out.map(std::borrow::Cow::Owned).map_err(|e| {
        StoreError::Core(CoreError::CorruptDocument(format!(
            "cuplikan tersimpan rusak: {e} (stored snapshot is corrupt)"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_automerge_bytes_are_read_as_they_are() {
        let plain = [0x85, 0x6f, 0x4a, 0x83, 1, 2, 3];
        assert_eq!(&*decode(&plain).unwrap(), &plain);
    }

    #[test]
    fn compressed_bytes_round_trip_and_corruption_is_an_error() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        let stored = encode_saved(&bytes);
        assert!(stored.len() < bytes.len() / 10);
        assert_eq!(&*decode(&stored).unwrap(), bytes.as_slice());
        // Already compressed: kept as it is.
        assert_eq!(encode_saved(&stored), stored);
        let mut bad = stored.clone();
        bad.truncate(stored.len() / 2);
        assert!(decode(&bad).is_err());
    }
}
