//! How household snapshots are kept in `docs.snapshot`: the document saved without
//! Automerge's own column compression, then zstd-compressed as a whole (level 3). That is
//! smaller than Automerge's compressed save (about 2.7 kB against 3.0 kB per village
//! household, and 10.4 kB as the server sends it) and quicker to write and read.
//!
//! Stores written before this hold plain Automerge bytes; both are read (a zstd frame and
//! an Automerge document start with different magic bytes), and `compact` rewrites a
//! household's snapshot in the new form whenever it folds changes into it.
//!
//! Once a store holds [`TRAIN_AFTER`] households, a zstd dictionary is trained on a sample
//! of its own snapshots and kept in the table `zdicts` (encrypted with the rest in an
//! encrypted store); every snapshot is then compressed with it (about 1.9 kB instead of
//! 2.7 kB per village household). A frame names the dictionary it needs (zstd's dictionary
//! id in its header), so snapshots written before or with another dictionary stay readable.

use std::collections::HashMap;
use std::sync::Arc;

use kunjung_core::{CoreError, HouseholdDoc};

use crate::{Result, StoreError};

/// Households a store holds before a dictionary is trained on their snapshots.
pub const TRAIN_AFTER: usize = 100;
/// Snapshots the dictionary is trained on, at most.
pub const TRAIN_SAMPLES: usize = 200;
const DICT_SIZE: usize = 64 * 1024;

/// A dictionary of a store; prepared for compressing or decompressing when first used
/// (preparing costs a little, and opening the store should not).
pub struct Dict {
    id: u32,
    bytes: Vec<u8>,
    enc: std::sync::OnceLock<zstd::dict::EncoderDictionary<'static>>,
    dec: std::sync::OnceLock<zstd::dict::DecoderDictionary<'static>>,
}

impl std::fmt::Debug for Dict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dict({})", self.id)
    }
}

impl Dict {
    /// A dictionary from its stored bytes (None when they are not a zstd dictionary).
    pub fn new(bytes: &[u8]) -> Option<Dict> {
        let id = zstd::zstd_safe::get_dict_id(bytes)?.get();
        Some(Dict {
            id,
            bytes: bytes.to_vec(),
            enc: std::sync::OnceLock::new(),
            dec: std::sync::OnceLock::new(),
        })
    }

    fn enc(&self) -> &zstd::dict::EncoderDictionary<'static> {
        self.enc
            .get_or_init(|| zstd::dict::EncoderDictionary::copy(&self.bytes, LEVEL))
    }

    fn dec(&self) -> &zstd::dict::DecoderDictionary<'static> {
        self.dec
            .get_or_init(|| zstd::dict::DecoderDictionary::copy(&self.bytes))
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The dictionaries of a store by id.
pub type Dicts = HashMap<u32, Arc<Dict>>;

/// Trains a dictionary on sample documents (their Automerge bytes); None when zstd finds
/// too little to learn from.
pub fn train(samples: &[Vec<u8>]) -> Option<Vec<u8>> {
    let dict = zstd::dict::from_samples(samples, DICT_SIZE).ok()?;
    zstd::zstd_safe::get_dict_id(&dict).map(|_| dict)
}

/// The dictionary a stored snapshot was compressed with (None: none, or not compressed).
pub fn dict_id(stored: &[u8]) -> Option<u32> {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return None;
    }
    zstd::zstd_safe::get_dict_id_from_frame(stored).map(|n| n.get())
}

/// zstd's frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const LEVEL: i32 = 3;
/// A stored snapshot larger than this when decompressed is refused as corrupt.
const MAX_DOC: usize = 256 * 1024 * 1024;

/// The stored form of a document (with the store's dictionary, when it has one).
pub fn encode_doc(doc: &HouseholdDoc, dict: Option<&Dict>) -> Vec<u8> {
    compress(&doc.automerge().save_nocompress(), dict)
}

/// The stored form of a saved document's bytes (compressed or not by Automerge), as they
/// came from the server or a bundle.
pub fn encode_saved(bytes: &[u8], dict: Option<&Dict>) -> Vec<u8> {
    if bytes.starts_with(&ZSTD_MAGIC) {
        return bytes.to_vec();
    }
    compress(bytes, dict)
}

fn compress(bytes: &[u8], dict: Option<&Dict>) -> Vec<u8> {
    // Compressing a byte slice in memory cannot fail short of running out of memory;
    // the uncompressed bytes are a valid stored form too.
    let out = match dict {
        Some(d) => zstd::bulk::Compressor::with_prepared_dictionary(d.enc())
            .and_then(|mut c| c.compress(bytes)),
        None => zstd::bulk::compress(bytes, LEVEL),
    };
    out.unwrap_or_else(|_| bytes.to_vec())
}

/// Automerge bytes of a stored snapshot (any form), with the store's dictionaries.
pub fn decode<'a>(stored: &'a [u8], dicts: &Dicts) -> Result<std::borrow::Cow<'a, [u8]>> {
    if !stored.starts_with(&ZSTD_MAGIC) {
        return Ok(std::borrow::Cow::Borrowed(stored));
    }
    let corrupt = |e: String| {
        StoreError::Core(CoreError::CorruptDocument(format!(
            "cuplikan tersimpan rusak: {e} (stored snapshot is corrupt)"
        )))
    };
    let size = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .unwrap_or(0) as usize;
    let out = match dict_id(stored) {
        Some(id) => {
            let d = dicts.get(&id).ok_or_else(|| {
                corrupt(format!("kamus {id} tidak ada (dictionary {id} missing)"))
            })?;
            if size == 0 || size > MAX_DOC {
                return Err(corrupt("ukuran (size)".into()));
            }
            zstd::bulk::Decompressor::with_prepared_dictionary(d.dec())
                .and_then(|mut x| x.decompress(stored, size))
        }
        None if size > 0 && size <= MAX_DOC => zstd::bulk::decompress(stored, size),
        None => zstd::stream::decode_all(stored),
    };
    out.map(std::borrow::Cow::Owned)
        .map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_automerge_bytes_are_read_as_they_are() {
        let plain = [0x85, 0x6f, 0x4a, 0x83, 1, 2, 3];
        assert_eq!(&*decode(&plain, &Dicts::new()).unwrap(), &plain);
    }

    #[test]
    fn a_trained_dictionary_compresses_better_and_is_needed_to_read() {
        // Samples sharing a vocabulary with little repetition inside each, as household
        // documents share their keys and values.
        let word = |k: u64| format!("{k:x}-{}", "kunjungan rumah ".repeat(1 + (k % 3) as usize));
        let sample = |i: u64| -> Vec<u8> {
            (0..40u64)
                .flat_map(|j| word((i * 7919 + j * 104_729) % 300).into_bytes())
                .collect()
        };
        let samples: Vec<Vec<u8>> = (0..300).map(sample).collect();
        let d = Dict::new(&train(&samples).unwrap()).unwrap();
        let doc = sample(1000);
        let (plain, with) = (encode_saved(&doc, None), encode_saved(&doc, Some(&d)));
        assert!(
            with.len() < plain.len(),
            "{} >= {}",
            with.len(),
            plain.len()
        );
        assert_eq!(dict_id(&with), Some(d.id()));
        assert_eq!(dict_id(&plain), None);
        let mut dicts = Dicts::new();
        assert!(decode(&with, &dicts).is_err(), "no dictionary, no document");
        assert_eq!(&*decode(&plain, &dicts).unwrap(), doc.as_slice());
        dicts.insert(d.id(), Arc::new(d));
        assert_eq!(&*decode(&with, &dicts).unwrap(), doc.as_slice());
    }

    #[test]
    fn compressed_bytes_round_trip_and_corruption_is_an_error() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        let stored = encode_saved(&bytes, None);
        assert!(stored.len() < bytes.len() / 10);
        assert_eq!(&*decode(&stored, &Dicts::new()).unwrap(), bytes.as_slice());
        // Already compressed: kept as it is.
        assert_eq!(encode_saved(&stored, None), stored);
        let mut bad = stored.clone();
        bad.truncate(stored.len() / 2);
        assert!(decode(&bad, &Dicts::new()).is_err());
    }
}
