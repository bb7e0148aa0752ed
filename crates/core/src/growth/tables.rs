//! The embedded WHO LMS tables and their look-ups.
//!
//! The CSV files live in `crates/core/data/who/` (see the `README.md` there for the source
//! package, version and licence). Every file has a header line and rows `x,l,m,s` on a
//! regular grid: age in days (WHO 2006 age-based tables, 0..=1856), length/height in cm by
//! 0.1 cm (WHO 2006 weight-for-length 45.0..=110.0, weight-for-height 65.0..=120.0), or age
//! in whole months (WHO 2007 reference, 61..=228, weight-for-age 61..=120).
//!
//! The files are compiled in with `include_str!` and parsed once, lazily, into `Table`s.

use std::sync::OnceLock;

use crate::model::Sex;

/// The three parameters of the LMS method (Cole & Green 1992) at one age or length:
/// L (Box-Cox power), M (median) and S (coefficient of variation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lms {
    pub l: f64,
    pub m: f64,
    pub s: f64,
}

impl Lms {
    /// The plain LMS z-score of measurement `y`: `z = ((y/M)^L − 1) / (L·S)`, or
    /// `ln(y/M) / S` when `L = 0` (WHO 2006, "Methods and development", ch. 7).
    pub fn z(&self, y: f64) -> f64 {
        if self.l.abs() < 1e-12 {
            (y / self.m).ln() / self.s
        } else {
            ((y / self.m).powf(self.l) - 1.0) / (self.l * self.s)
        }
    }

    /// The measurement at z-score `z` (the inverse of [`Lms::z`]):
    /// `M · (1 + L·S·z)^(1/L)`, or `M · e^(S·z)` when `L = 0`.
    pub fn value_at(&self, z: f64) -> f64 {
        if self.l.abs() < 1e-12 {
            self.m * (self.s * z).exp()
        } else {
            self.m * (1.0 + self.l * self.s * z).powf(1.0 / self.l)
        }
    }

    /// WHO's "restricted application of the LMS method" for the weight-based indicators
    /// (WHO 2006, "Methods and development", section 7.1.1, and the WHO Anthro/igrowup
    /// software): inside ±3 SD the plain LMS z; beyond, the distance past the ±3 SD line is
    /// measured in units of the distance between the ±2 and ±3 SD lines, so that the long
    /// right tail of weight does not compress extreme values:
    ///
    /// * `z > 3`:  `z* = 3 + (y − SD3pos) / (SD3pos − SD2pos)`
    /// * `z < −3`: `z* = −3 + (y − SD3neg) / (SD2neg − SD3neg)`
    pub fn z_restricted(&self, y: f64) -> f64 {
        let z = self.z(y);
        if z > 3.0 {
            let sd3 = self.value_at(3.0);
            let sd23 = sd3 - self.value_at(2.0);
            3.0 + (y - sd3) / sd23
        } else if z < -3.0 {
            let sd3 = self.value_at(-3.0);
            let sd23 = self.value_at(-2.0) - sd3;
            -3.0 + (y - sd3) / sd23
        } else {
            z
        }
    }

    fn lerp(a: Lms, b: Lms, t: f64) -> Lms {
        Lms {
            l: a.l + t * (b.l - a.l),
            m: a.m + t * (b.m - a.m),
            s: a.s + t * (b.s - a.s),
        }
    }
}

/// One LMS table on a regular grid. `x` is stored in integer grid units: days, tenths of a
/// centimetre, or months; `first` is the grid value of the first row.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) first: i64,
    pub(crate) rows: Vec<Lms>,
}

impl Table {
    /// Parses `x,l,m,s` CSV text. `scale` turns `x` into grid units (1 for days and months,
    /// 10 for centimetres). The embedded files are checked by the unit tests, so a malformed
    /// file is a build defect: it panics with the file name.
    fn parse(name: &str, text: &str, scale: f64) -> Table {
        let mut first = None;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let f: Vec<f64> = line
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1))
                })
                .collect();
            assert_eq!(f.len(), 4, "{name}:{}: expected 4 columns", i + 1);
            let x = (f[0] * scale).round() as i64;
            let start = *first.get_or_insert(x);
            assert_eq!(
                x,
                start + rows.len() as i64,
                "{name}:{}: row off the regular grid",
                i + 1
            );
            rows.push(Lms {
                l: f[1],
                m: f[2],
                s: f[3],
            });
        }
        Table {
            first: first.unwrap_or_else(|| panic!("{name}: empty table")),
            rows,
        }
    }

    /// The grid value of the last row.
    pub(crate) fn last(&self) -> i64 {
        self.first + self.rows.len() as i64 - 1
    }

    /// The row at an exact grid value.
    pub(crate) fn at(&self, x: i64) -> Option<Lms> {
        if x < self.first {
            return None;
        }
        self.rows.get((x - self.first) as usize).copied()
    }

    /// L, M and S at a grid position that may fall between rows: linear interpolation of
    /// each parameter between the two neighbouring rows (as WHO Anthro does for lengths
    /// with more than one decimal, and WHO AnthroPlus for fractional months). Positions
    /// within 1e-6 of a row use that row; positions outside the table give `None`.
    pub(crate) fn interpolate(&self, x: f64) -> Option<Lms> {
        if !x.is_finite() {
            return None;
        }
        let nearest = x.round();
        if (x - nearest).abs() < 1e-6 {
            return self.at(nearest as i64);
        }
        let lo = x.floor() as i64;
        let (a, b) = (self.at(lo)?, self.at(lo + 1)?);
        Some(Lms::lerp(a, b, x - lo as f64))
    }
}

/// The tables of one sex.
#[derive(Debug)]
pub(crate) struct SexTables {
    /// WHO 2006 weight-for-age by day, 0..=1856.
    pub(crate) wfa: Table,
    /// WHO 2006 length-for-age (days 0..=730) and height-for-age (731..=1856) by day.
    pub(crate) lhfa: Table,
    /// WHO 2006 BMI-for-age by day (length-based below 731 days, height-based from 731).
    pub(crate) bfa: Table,
    /// WHO 2006 weight-for-length, 45.0..=110.0 cm by 0.1 cm (grid unit: mm).
    pub(crate) wfl: Table,
    /// WHO 2006 weight-for-height, 65.0..=120.0 cm by 0.1 cm (grid unit: mm).
    pub(crate) wfh: Table,
    /// WHO 2007 weight-for-age by month, 61..=120.
    pub(crate) wfa_2007: Table,
    /// WHO 2007 height-for-age by month, 61..=228.
    pub(crate) hfa_2007: Table,
    /// WHO 2007 BMI-for-age by month, 61..=228.
    pub(crate) bfa_2007: Table,
}

#[derive(Debug)]
pub(crate) struct Tables {
    boys: SexTables,
    girls: SexTables,
}

impl Tables {
    pub(crate) fn for_sex(&self, sex: Sex) -> &SexTables {
        match sex {
            Sex::M => &self.boys,
            Sex::F => &self.girls,
        }
    }
}

macro_rules! who_table {
    ($file:literal, $scale:expr) => {
        Table::parse(
            $file,
            include_str!(concat!("../../data/who/", $file)),
            $scale,
        )
    };
}

/// The parsed tables, built on first use.
pub(crate) fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| Tables {
        boys: SexTables {
            wfa: who_table!("wfa_boys.csv", 1.0),
            lhfa: who_table!("lhfa_boys.csv", 1.0),
            bfa: who_table!("bfa_boys.csv", 1.0),
            wfl: who_table!("wfl_boys.csv", 10.0),
            wfh: who_table!("wfh_boys.csv", 10.0),
            wfa_2007: who_table!("wfa_2007_boys.csv", 1.0),
            hfa_2007: who_table!("hfa_2007_boys.csv", 1.0),
            bfa_2007: who_table!("bfa_2007_boys.csv", 1.0),
        },
        girls: SexTables {
            wfa: who_table!("wfa_girls.csv", 1.0),
            lhfa: who_table!("lhfa_girls.csv", 1.0),
            bfa: who_table!("bfa_girls.csv", 1.0),
            wfl: who_table!("wfl_girls.csv", 10.0),
            wfh: who_table!("wfh_girls.csv", 10.0),
            wfa_2007: who_table!("wfa_2007_girls.csv", 1.0),
            hfa_2007: who_table!("hfa_2007_girls.csv", 1.0),
            bfa_2007: who_table!("bfa_2007_girls.csv", 1.0),
        },
    })
}
