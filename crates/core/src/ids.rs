//! Identifiers: UUIDv7 record ids, Kemendagri area codes, RT/RW, and the soft NIK check
//! described in DOMAIN.md ("validate softly: warn, never block").

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{CoreError, Result};

thread_local! {
    static SEEDED: std::cell::RefCell<Option<SeededIds>> = const { std::cell::RefCell::new(None) };
}

/// Deterministic id source for demo data and tests (splitmix64 + a fixed clock).
struct SeededIds {
    state: u64,
    ms: u64,
}

impl SeededIds {
    fn next(&mut self) -> Uuid {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        self.ms += 1;
        let mut b = [0u8; 16];
        b[0..6].copy_from_slice(&self.ms.to_be_bytes()[2..8]);
        let r = z.rotate_left(17);
        b[6] = 0x70 | ((r >> 8) as u8 & 0x0f); // version 7
        b[7] = r as u8;
        b[8..16].copy_from_slice(&z.to_le_bytes());
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        Uuid::from_bytes(b)
    }
}

/// A new time-ordered record id (UUIDv7), so ids sort by creation time.
pub fn new_id() -> Uuid {
    SEEDED.with(|s| match s.borrow_mut().as_mut() {
        Some(g) => g.next(),
        None => Uuid::now_v7(),
    })
}

/// Runs `f` with deterministic ids (same `seed` and `base_ms` give the same ids), for
/// reproducible demo data. Ids outside `f` are random as usual.
pub fn with_seeded_ids<T>(seed: u64, base_ms: u64, f: impl FnOnce() -> T) -> T {
    SEEDED.with(|s| {
        *s.borrow_mut() = Some(SeededIds {
            state: seed,
            ms: base_ms,
        })
    });
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SEEDED.with(|s| *s.borrow_mut() = None);
        }
    }
    let _reset = Reset;
    f()
}

/// Kode wilayah desa/kelurahan `PP.KK.CC.DDDD` (Kemendagri). Prefixes (`PP`, `PP.KK`,
/// `PP.KK.CC`) name the province, kabupaten/kota and kecamatan and are used as scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AreaCode(String);

impl AreaCode {
    /// Parses a full desa code `PP.KK.CC.DDDD`.
    pub fn parse_desa(s: &str) -> Result<Self> {
        let s = s.trim();
        let parts: Vec<&str> = s.split('.').collect();
        let ok = parts.len() == 4
            && [2usize, 2, 2, 4]
                .iter()
                .zip(&parts)
                .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            Ok(AreaCode(s.to_string()))
        } else {
            Err(CoreError::Invalid(format!(
                "kode wilayah '{s}' harus berbentuk PP.KK.CC.DDDD, mis. 32.14.01.2001 \
                 (area code must look like PP.KK.CC.DDDD)"
            )))
        }
    }

    /// Parses a full code or any prefix of it (province, kabupaten, kecamatan, desa).
    pub fn parse_prefix(s: &str) -> Result<String> {
        let s = s.trim();
        let parts: Vec<&str> = s.split('.').collect();
        let lens = [2usize, 2, 2, 4];
        let ok = !parts.is_empty()
            && parts.len() <= 4
            && parts
                .iter()
                .zip(lens)
                .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            Ok(s.to_string())
        } else {
            Err(CoreError::Invalid(format!(
                "kode wilayah '{s}' tidak valid; contoh: 32, 32.14, 32.14.01 atau 32.14.01.2001 \
                 (invalid area code)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when this desa code lies inside `prefix` (a code or a code prefix).
    pub fn within(&self, prefix: &str) -> bool {
        area_within(&self.0, prefix)
    }
}

/// True when `code` equals `prefix` or starts with `prefix.`.
pub fn area_within(code: &str, prefix: &str) -> bool {
    code == prefix
        || (code.len() > prefix.len()
            && code.starts_with(prefix)
            && code.as_bytes()[prefix.len()] == b'.')
}

impl TryFrom<String> for AreaCode {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self> {
        AreaCode::parse_desa(&s)
    }
}
impl From<AreaCode> for String {
    fn from(a: AreaCode) -> String {
        a.0
    }
}
impl std::fmt::Display for AreaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// RT and RW are stored as three-digit text ("003"); "3" is accepted and padded.
pub fn normalize_rt_rw(s: &str, what: &str) -> Result<String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 3 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CoreError::Invalid(format!(
            "{what} '{s}' harus angka 1–3 digit, mis. 003 ({what} must be 1–3 digits)"
        )));
    }
    Ok(format!("{:0>3}", t))
}

/// A warning from the soft NIK check. The NIK is still stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NikWarning {
    pub code: &'static str,
    pub message: String,
}

/// Soft validation of a NIK (DOMAIN.md): 16 digits — province (2), kabupaten (2),
/// kecamatan (2), birth date DDMMYY with 40 added to the day for women, serial (4).
/// Returns warnings; never rejects (many records lack or mistype the NIK).
pub fn check_nik(
    nik: &str,
    sex: Option<crate::model::Sex>,
    birth_date: Option<NaiveDate>,
) -> Vec<NikWarning> {
    let mut w = Vec::new();
    let digits = nik.bytes().all(|b| b.is_ascii_digit());
    if nik.len() != 16 || !digits {
        w.push(NikWarning {
            code: "nik_format",
            message: format!(
                "NIK sebaiknya 16 angka, yang tertulis {} karakter (NIK should be 16 digits)",
                nik.chars().count()
            ),
        });
        return w;
    }
    let day: u32 = nik[6..8].parse().unwrap_or(0);
    let month: u32 = nik[8..10].parse().unwrap_or(0);
    let yy: i32 = nik[10..12].parse().unwrap_or(0);
    let (real_day, female) = if day > 40 {
        (day - 40, true)
    } else {
        (day, false)
    };
    if !(1..=31).contains(&real_day) || !(1..=12).contains(&month) {
        w.push(NikWarning {
            code: "nik_birth_date",
            message:
                "tanggal lahir di dalam NIK tidak valid (the birth date inside the NIK is invalid)"
                    .into(),
        });
        return w;
    }
    if let Some(sex) = sex {
        if female != (sex == crate::model::Sex::F) {
            w.push(NikWarning {
                code: "nik_sex",
                message: "jenis kelamin tidak cocok dengan NIK (sex does not match the NIK)".into(),
            });
        }
    }
    if let Some(bd) = birth_date {
        use chrono::Datelike;
        if bd.day() != real_day || bd.month() != month || bd.year().rem_euclid(100) != yy {
            w.push(NikWarning {
                code: "nik_birth_date_mismatch",
                message: "tanggal lahir tidak cocok dengan NIK (birth date does not match the NIK)"
                    .into(),
            });
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sex;

    #[test]
    fn seeded_ids_repeat() {
        let a: Vec<Uuid> =
            with_seeded_ids(7, 1_700_000_000_000, || (0..3).map(|_| new_id()).collect());
        let b: Vec<Uuid> =
            with_seeded_ids(7, 1_700_000_000_000, || (0..3).map(|_| new_id()).collect());
        assert_eq!(a, b);
        assert_eq!(a[0].get_version_num(), 7);
        assert!(a[0] < a[1]);
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn area_codes() {
        assert!(AreaCode::parse_desa("32.14.01.2001").is_ok());
        assert!(AreaCode::parse_desa("32.14.01").is_err());
        assert!(AreaCode::parse_desa("32.14.01.20a1").is_err());
        assert!(AreaCode::parse_prefix("32.14").is_ok());
        assert!(AreaCode::parse_prefix("32.1").is_err());
        let a = AreaCode::parse_desa("32.14.01.2001").unwrap();
        assert!(a.within("32.14"));
        assert!(a.within("32.14.01.2001"));
        assert!(!a.within("32.1"));
        assert!(!a.within("32.14.02"));
    }

    #[test]
    fn rt_rw_padding() {
        assert_eq!(normalize_rt_rw("3", "RT").unwrap(), "003");
        assert!(normalize_rt_rw("1234", "RT").is_err());
        assert!(normalize_rt_rw("", "RW").is_err());
    }

    #[test]
    fn nik_soft_checks() {
        let bd = NaiveDate::from_ymd_opt(1990, 5, 12).unwrap();
        // woman born 12-05-1990: day 12 + 40 = 52
        assert!(check_nik("3214015205900001", Some(Sex::F), Some(bd)).is_empty());
        let w = check_nik("3214015205900001", Some(Sex::M), Some(bd));
        assert_eq!(w[0].code, "nik_sex");
        assert_eq!(
            check_nik("321401520590001", None, None)[0].code,
            "nik_format"
        );
        assert_eq!(
            check_nik("3214019913900001", None, None)[0].code,
            "nik_birth_date"
        );
    }
}
