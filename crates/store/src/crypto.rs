//! Encryption at rest: SQLCipher with a raw 256-bit key derived from the user's PIN or
//! passphrase by Argon2id. The salt and parameters live in `kunjung.json` beside the
//! database; the key itself is never stored.

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// KDF parameters, stored so they can be raised later without breaking old stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub alg: String,
    /// Memory in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: String,
}

impl KdfParams {
    /// OWASP's Argon2id minimum (19 MiB, 2 passes, 1 lane): affordable on a cheap phone.
    pub fn new_random() -> Self {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        KdfParams {
            alg: "argon2id".into(),
            m_cost: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
            salt: hex::encode(salt),
        }
    }

    pub fn derive(&self, pin: &str) -> Result<[u8; 32]> {
        if self.alg != "argon2id" {
            return Err(StoreError::Invalid(format!(
                "KDF tidak dikenal: {} (unknown KDF)",
                self.alg
            )));
        }
        let salt = hex::decode(&self.salt).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut key = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(pin.as_bytes(), &salt, &mut key)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(key)
    }
}

/// Checks a new PIN is acceptable.
pub fn check_new_pin(pin: &str) -> Result<()> {
    if pin.chars().count() < 6 {
        return Err(StoreError::Invalid(
            "PIN minimal 6 angka/karakter (PIN must have at least 6 characters)".into(),
        ));
    }
    Ok(())
}
