//! The Kunjung sync server (SPEC §4, §6): accounts and tokens ([`auth`]), the storage
//! trait and its SQLite and PostgreSQL implementations ([`db`]), the sync logic
//! ([`sync`]), reports over a scope ([`report`]), the HTTP interface ([`http`]), the
//! administration commands ([`admin`]), the audit log ([`audit`]), per-household erasure
//! ([`erase`]), signed cursors ([`cursor`]) and group commit across requests ([`group`]).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cursor;
pub mod db;
pub mod erase;
pub mod error;
pub mod group;
pub mod http;
pub mod report;
pub mod sync;

pub use db::Db;
pub use error::ServerError;
