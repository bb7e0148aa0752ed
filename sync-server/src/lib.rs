//! The Kunjung sync server (SPEC §4, §6): accounts and tokens ([`auth`]), the storage
//! trait and its SQLite and PostgreSQL implementations ([`db`]), the sync logic
//! ([`sync`]), reports over a scope ([`report`]), the HTTP interface ([`http`]) and the
//! administration commands ([`admin`]).

pub mod admin;
pub mod auth;
pub mod db;
pub mod error;
pub mod http;
pub mod report;
pub mod sync;

pub use db::Db;
pub use error::ServerError;
