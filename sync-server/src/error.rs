//! The server's one error type: each variant maps to an HTTP status and a stable
//! machine-readable code, and is answered as a JSON [`ErrorBody`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kunjung_protocol::{ErrorBody, ProtocolError, MIN_PROTOCOL_VERSION};

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("permintaan tidak valid: {0} (bad request)")]
    BadRequest(String),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("versi aplikasi terlalu lama (protokol {got}, minimal {MIN_PROTOCOL_VERSION}); perbarui Kunjung (client too old: update Kunjung)")]
    ClientTooOld { got: u32 },
    #[error("belum masuk atau token tidak berlaku lagi; silakan masuk kembali (not logged in, or the token expired or was revoked)")]
    Unauthorized,
    #[error("nama pengguna atau kata sandi salah (wrong username or password)")]
    InvalidCredentials,
    #[error("akun ini dinonaktifkan (this account is disabled)")]
    AccountDisabled,
    #[error("terlalu banyak percobaan masuk; coba lagi dalam {0} detik (too many login attempts; retry in {0} s)")]
    RateLimited(u64),
    #[error("tidak diizinkan: {0} (forbidden)")]
    Forbidden(String),
    #[error("rumah tangga di luar wilayah Anda (household outside your scope)")]
    OutOfScope,
    #[error("tidak ditemukan: {0} (not found)")]
    NotFound(String),
    #[error("sudah ada: {0} (already exists)")]
    Conflict(String),
    #[error("isi permintaan terlalu besar (request body too large)")]
    TooLarge,
    #[error("jenis isi harus {0} (unsupported content type)")]
    UnsupportedMedia(&'static str),
    #[error("server terlalu lama menjawab; coba lagi (request timed out; retry)")]
    Timeout,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("kesalahan server: {0} (internal error)")]
    Internal(String),
}

/// True when the database failed because its disk is full (SQLite `SQLITE_FULL`,
/// PostgreSQL `53100 disk_full`): answered as 507 `storage_full`, which a client may retry
/// later; the failed transaction stored nothing.
fn disk_full(e: &DbError) -> bool {
    match e {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::DiskFull
        }
        DbError::Postgres(p) => p.code() == Some(&postgres::error::SqlState::DISK_FULL),
        _ => false,
    }
}

const STORAGE_FULL: &str = "penyimpanan server penuh; data yang sudah diterima tetap aman, coba lagi nanti (server storage full; nothing stored was lost, retry later)";

impl ServerError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest(_) | ServerError::Protocol(_) => StatusCode::BAD_REQUEST,
            ServerError::ClientTooOld { .. } => StatusCode::UPGRADE_REQUIRED,
            ServerError::Unauthorized | ServerError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ServerError::AccountDisabled | ServerError::Forbidden(_) | ServerError::OutOfScope => {
                StatusCode::FORBIDDEN
            }
            ServerError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServerError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Db(e) if disk_full(e) => StatusCode::INSUFFICIENT_STORAGE,
            ServerError::Db(_) | ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ServerError::BadRequest(_) => "bad_request",
            ServerError::Protocol(e) => e.code(),
            ServerError::ClientTooOld { .. } => "client_too_old",
            ServerError::Unauthorized => "unauthorized",
            ServerError::InvalidCredentials => "invalid_credentials",
            ServerError::AccountDisabled => "account_disabled",
            ServerError::RateLimited(_) => "rate_limited",
            ServerError::Forbidden(_) => "forbidden",
            ServerError::OutOfScope => "out_of_scope",
            ServerError::NotFound(_) => "not_found",
            ServerError::Conflict(_) => "conflict",
            ServerError::TooLarge => "too_large",
            ServerError::UnsupportedMedia(_) => "unsupported_media_type",
            ServerError::Timeout => "timeout",
            ServerError::Db(e) if disk_full(e) => "storage_full",
            ServerError::Db(_) => "database",
            ServerError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ServerError::Db(e) if disk_full(e) => STORAGE_FULL.to_string(),
            _ => self.to_string(),
        };
        ErrorBody {
            code: self.code().to_string(),
            message,
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        }
        let mut resp = (status, axum::Json(self.body())).into_response();
        if let ServerError::RateLimited(secs) = &self {
            if let Ok(v) = secs.to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}
