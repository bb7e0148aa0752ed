//! Accounts and tokens: Argon2id password hashes, random bearer tokens stored only as
//! SHA-256 hashes, expiring and revocable; a disabled account's tokens stop at once
//! because every check reads the account. Login attempts are rate-limited per username
//! and per client address; the counters live in memory and are rebuilt from the audit log
//! when the server starts, so a restart does not lift a lockout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use kunjung_protocol::{Role, Scope};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::{Sql, Value};
use crate::error::ServerError;

/// How long a token lives.
pub const TOKEN_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;
/// Failed logins allowed per username within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES: u32 = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(300);

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A signed-in user, as every request sees it.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub role: Role,
    pub posyandu: Vec<String>,
    pub areas: Vec<String>,
    pub device: String,
}

impl User {
    pub fn scope(&self) -> Scope {
        Scope::for_role(self.role, &self.posyandu, &self.areas)
    }
}

/// An account as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Account {
    pub username: String,
    pub role: Role,
    pub posyandu: Vec<String>,
    pub areas: Vec<String>,
    pub disabled: bool,
}

pub fn hash_password(password: &str) -> Result<String, ServerError> {
    if password.chars().count() < 8 {
        return Err(ServerError::BadRequest(
            "kata sandi minimal 8 karakter (password must have at least 8 characters)".into(),
        ));
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Internal(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn list(v: &Value) -> Vec<String> {
    v.text()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

fn account_from_row(r: &[Value]) -> Account {
    Account {
        username: r[0].text().unwrap_or_default().to_string(),
        role: r[1].text().and_then(Role::parse).unwrap_or(Role::Kader),
        posyandu: list(&r[2]),
        areas: list(&r[3]),
        disabled: r[4].int() != 0,
    }
}

pub fn add_user(
    t: &mut dyn Sql,
    username: &str,
    role: Role,
    posyandu: &[String],
    areas: &[String],
    password: &str,
) -> Result<(), ServerError> {
    let username = username.trim();
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(ServerError::BadRequest(
            "nama pengguna hanya huruf, angka, . _ - @ (username: letters, digits, . _ - @)".into(),
        ));
    }
    for a in areas {
        kunjung_core::ids::AreaCode::parse_prefix(a)
            .map_err(|e| ServerError::BadRequest(e.to_string()))?;
    }
    match role {
        Role::Kader if posyandu.is_empty() => {
            return Err(ServerError::BadRequest(
                "kader perlu --posyandu (a kader needs --posyandu)".into(),
            ))
        }
        Role::Bidan | Role::Puskesmas if areas.is_empty() => {
            return Err(ServerError::BadRequest(
                "bidan dan puskesmas perlu --area (bidan and puskesmas need --area)".into(),
            ))
        }
        _ => {}
    }
    let known_areas = t.query("SELECT count(*) FROM areas", &[])?[0][0].int();
    if known_areas > 0 {
        for a in areas {
            if t.query("SELECT 1 FROM areas WHERE code = $1", &[a.as_str().into()])?
                .is_empty()
            {
                return Err(ServerError::BadRequest(format!(
                    "kode wilayah {a} tidak ada di daftar wilayah (area code not in the imported list)"
                )));
            }
        }
    }
    let hash = hash_password(password)?;
    let n = t.exec(
        "INSERT INTO users(username, role, password_hash, posyandu, areas, disabled, created_at)
         VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (username) DO NOTHING",
        &[
            username.into(),
            role.as_str().into(),
            hash.into(),
            serde_json::to_string(posyandu).unwrap_or_default().into(),
            serde_json::to_string(areas).unwrap_or_default().into(),
            now_ms().into(),
        ],
    )?;
    if n == 0 {
        return Err(ServerError::Conflict(format!("pengguna {username} (user)")));
    }
    Ok(())
}

pub fn get_account(t: &mut dyn Sql, username: &str) -> Result<Account, ServerError> {
    t.query(
        "SELECT username, role, posyandu, areas, disabled FROM users WHERE username = $1",
        &[username.into()],
    )?
    .first()
    .map(|r| account_from_row(r))
    .ok_or_else(|| ServerError::NotFound(format!("pengguna {username} (user)")))
}

pub fn list_accounts(t: &mut dyn Sql) -> Result<Vec<Account>, ServerError> {
    Ok(t.query(
        "SELECT username, role, posyandu, areas, disabled FROM users ORDER BY username",
        &[],
    )?
    .iter()
    .map(|r| account_from_row(r))
    .collect())
}

/// Disables (or enables) an account; disabling revokes its tokens.
pub fn set_disabled(t: &mut dyn Sql, username: &str, disabled: bool) -> Result<(), ServerError> {
    get_account(t, username)?;
    t.exec(
        "UPDATE users SET disabled = $2 WHERE username = $1",
        &[username.into(), (disabled as i64).into()],
    )?;
    if disabled {
        revoke_all(t, username)?;
    }
    Ok(())
}

pub fn reset_password(t: &mut dyn Sql, username: &str, password: &str) -> Result<(), ServerError> {
    get_account(t, username)?;
    let hash = hash_password(password)?;
    t.exec(
        "UPDATE users SET password_hash = $2 WHERE username = $1",
        &[username.into(), hash.into()],
    )?;
    revoke_all(t, username)
}

pub fn revoke_all(t: &mut dyn Sql, username: &str) -> Result<(), ServerError> {
    t.exec(
        "UPDATE tokens SET revoked = 1 WHERE username = $1",
        &[username.into()],
    )?;
    Ok(())
}

pub fn revoke_token(t: &mut dyn Sql, token: &str) -> Result<(), ServerError> {
    t.exec(
        "UPDATE tokens SET revoked = 1 WHERE hash = $1",
        &[token_hash(token).into()],
    )?;
    Ok(())
}

/// Checks the password and issues a token bound to the device.
pub fn login(
    t: &mut dyn Sql,
    username: &str,
    password: &str,
    device: &str,
) -> Result<(String, i64, Account), ServerError> {
    let rows = t.query(
        "SELECT username, role, posyandu, areas, disabled, password_hash FROM users WHERE username = $1",
        &[username.into()],
    )?;
    let Some(r) = rows.first() else {
        // Spend the same time as a real check, so usernames cannot be probed by timing.
        verify_password(password, DUMMY_HASH);
        return Err(ServerError::InvalidCredentials);
    };
    if !verify_password(password, r[5].text().unwrap_or_default()) {
        return Err(ServerError::InvalidCredentials);
    }
    let account = account_from_row(r);
    if account.disabled {
        return Err(ServerError::AccountDisabled);
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let now = now_ms();
    let expires = now + TOKEN_LIFETIME_MS;
    t.exec(
        "INSERT INTO tokens(hash, username, device, created_at, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, 0)",
        &[
            token_hash(&token).into(),
            account.username.as_str().into(),
            device.into(),
            now.into(),
            expires.into(),
        ],
    )?;
    Ok((token, expires, account))
}

const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Q4G4zBqAcY1yT6x8m2qkzS6kRkH0m2bq5H8bqv6Y3k";

/// The user behind a bearer token, if it is valid now.
pub fn authenticate(t: &mut dyn Sql, token: &str) -> Result<User, ServerError> {
    let rows = t.query(
        "SELECT u.username, u.role, u.posyandu, u.areas, u.disabled, t.device, t.expires_at
         FROM tokens t JOIN users u ON u.username = t.username
         WHERE t.hash = $1 AND t.revoked = 0",
        &[token_hash(token).into()],
    )?;
    let r = rows.first().ok_or(ServerError::Unauthorized)?;
    let a = account_from_row(r);
    if a.disabled || r[6].int() <= now_ms() {
        return Err(ServerError::Unauthorized);
    }
    Ok(User {
        username: a.username,
        role: a.role,
        posyandu: a.posyandu,
        areas: a.areas,
        device: r[5].text().unwrap_or_default().to_string(),
    })
}

/// Failed logins allowed per client address within [`LOGIN_WINDOW`] (over all usernames,
/// so one address cannot try passwords across many accounts).
pub const LOGIN_FAILURES_PER_ADDRESS: u32 = 20;

/// Failed-login counters per username and per client address. Past the limit, logins of
/// that username (or from that address) are refused with 429 until the window from the
/// first failure has passed — even with the right password. A success clears the
/// username's counter, not the address's.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The name a login attempt is counted (and audited) under: its first 64 characters. No
/// account has a longer name, and the audit log keeps only that much, so the counters
/// rebuilt from it after a restart are the same as before it.
pub fn username_key(username: &str) -> String {
    username.chars().take(64).collect()
}

fn address_key(addr: std::net::IpAddr) -> String {
    format!("\u{0}addr:{addr}")
}

impl LoginLimiter {
    fn locked(
        map: &HashMap<String, (u32, Instant)>,
        key: &str,
        limit: u32,
    ) -> Result<(), ServerError> {
        if let Some((n, since)) = map.get(key) {
            let elapsed = since.elapsed();
            if *n >= limit && elapsed < LOGIN_WINDOW {
                return Err(ServerError::RateLimited(
                    (LOGIN_WINDOW - elapsed).as_secs().max(1),
                ));
            }
        }
        Ok(())
    }

    /// Err when the username or the address is locked out for now.
    pub fn check(&self, username: &str, addr: Option<std::net::IpAddr>) -> Result<(), ServerError> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::locked(&map, &username_key(username), LOGIN_FAILURES)?;
        if let Some(a) = addr {
            Self::locked(&map, &address_key(a), LOGIN_FAILURES_PER_ADDRESS)?;
        }
        Ok(())
    }

    pub fn failed(&self, username: &str, addr: Option<std::net::IpAddr>) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, t)| t.elapsed() < LOGIN_WINDOW);
        }
        let keys = std::iter::once(username_key(username)).chain(addr.map(address_key));
        for k in keys {
            Self::failed_at(&mut map, k, Instant::now());
        }
    }

    /// Counts one failure at `when` (replayed from the audit log by [`Self::restore`]).
    fn failed_at(map: &mut HashMap<String, (u32, Instant)>, key: String, when: Instant) {
        let e = map.entry(key).or_insert((0, when));
        if when.saturating_duration_since(e.1) >= LOGIN_WINDOW {
            *e = (0, when);
        }
        e.0 += 1;
    }

    /// Rebuilds the counters after a restart from the audit log's `login` and
    /// `login_failed` rows of the last [`LOGIN_WINDOW`] (a failure's detail names the
    /// address: `invalid_credentials from ADDR`), so restarting the server does not reset
    /// a lockout. Returns how many failures were replayed.
    pub fn restore(&self, t: &mut dyn Sql) -> Result<usize, crate::db::DbError> {
        let now = now_ms();
        let since = now - LOGIN_WINDOW.as_millis() as i64;
        let events = crate::audit::logins_since(t, since)?;
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for e in events {
            let age = Duration::from_millis((now - e.at_ms).max(0) as u64);
            // Before the process's clock began: counted from now (a longer lockout).
            let when = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            let user = e.username;
            match e.action.as_str() {
                "login" => {
                    map.remove(&user);
                }
                "login_failed" => {
                    let addr = e
                        .detail
                        .split_once(" from ")
                        .and_then(|(_, a)| a.trim().parse::<std::net::IpAddr>().ok());
                    Self::failed_at(&mut map, user, when);
                    if let Some(a) = addr {
                        Self::failed_at(&mut map, address_key(a), when);
                    }
                    n += 1;
                }
                _ => {}
            }
        }
        Ok(n)
    }

    pub fn succeeded(&self, username: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&username_key(username));
    }
}
