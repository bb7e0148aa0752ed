//! Errors of the domain core. Messages are in Bahasa Indonesia first, English in brackets,
//! because they reach cadres through the CLI and the app.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("dokumen rusak atau tidak dapat dibaca: {0} (corrupt or unreadable document)")]
    CorruptDocument(String),
    #[error("data tidak valid: {0} (invalid data)")]
    Invalid(String),
    #[error("tidak ditemukan: {0} (not found)")]
    NotFound(String),
    #[error("kesalahan automerge: {0} (automerge error)")]
    Automerge(#[from] automerge::AutomergeError),
}

impl CoreError {
    /// A stable, machine-readable code (used by the CLI, the app and the server).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::CorruptDocument(_) => "corrupt_document",
            CoreError::Invalid(_) => "invalid",
            CoreError::NotFound(_) => "not_found",
            CoreError::Automerge(_) => "document_error",
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
