//! The one error type of the commands. It reaches the UI as `{code, message}`: the UI shows
//! its own translation of `code` in the user's language, and `message` (Indonesian, then
//! English) only for codes it does not know.

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("aplikasi terkunci: buka dengan PIN (locked: unlock with the PIN)")]
    Locked,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] kunjung_store::StoreError),
    #[error(transparent)]
    Core(#[from] kunjung_core::CoreError),
    #[error("server tidak dapat dihubungi: {0} (server unreachable)")]
    Sync(String),
    #[error("gagal masuk ke server: {0} (sign-in failed)")]
    SignIn(String),
}

impl AppError {
    /// Stable machine-readable code (the store's codes, plus the app's own).
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Locked => "locked",
            AppError::Invalid(_) => "invalid",
            AppError::Store(e) => e.code(),
            AppError::Core(e) => e.code(),
            AppError::Sync(_) => "sync",
            AppError::SignIn(_) => "sign_in",
        }
    }
}

/// What the UI receives when a command fails.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl Serialize for AppError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ErrorBody {
            code: self.code().to_string(),
            message: self.to_string(),
        }
        .serialize(s)
    }
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialize_as_code_and_message() {
        let v = serde_json::to_value(AppError::Store(kunjung_store::StoreError::WrongPin)).unwrap();
        assert_eq!(v["code"], "wrong_pin");
        assert!(v["message"].as_str().unwrap().contains("PIN"));
        let v = serde_json::to_value(AppError::Locked).unwrap();
        assert_eq!(v["code"], "locked");
    }
}
