//! Kunjung domain core: the household CRDT document (Automerge), the typed ILP
//! checklist, identifiers and clinical rules.
//!
//! This crate does no I/O: no files, no network, no SQLite, no Tauri. Everything here is
//! a pure function of its inputs so it can be tested (and property tested) in memory.

pub mod checklist;
pub mod danger;
pub mod doc;
pub mod error;
pub mod fastapply;
pub mod growth;
pub mod ids;
pub mod lifestage;
pub mod merge;
pub mod model;
pub mod report;
pub mod schedule;

pub use checklist::AnswerValue;
pub use doc::{ChangeInfo, CommitMeta, Conflict, ConflictValue, FieldEdit, HouseholdDoc};
pub use error::CoreError;
pub use model::*;
