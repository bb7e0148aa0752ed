//! Child growth z-scores and Indonesian nutritional-status categories.
//!
//! # Standards
//!
//! * **0–60 months (age 0..=1856 days): WHO Child Growth Standards 2006**, LMS parameters by
//!   age in days (weight-for-age, length/height-for-age, BMI-for-age) and by 0.1 cm of
//!   length (weight-for-length 45–110 cm) or height (weight-for-height 65–120 cm).
//!   WHO Multicentre Growth Reference Study Group, *WHO Child Growth Standards:
//!   Length/height-for-age, weight-for-age, weight-for-length, weight-for-height and body
//!   mass index-for-age: Methods and development*. Geneva: WHO, 2006.
//! * **61–228 months: WHO Reference 2007** for school-age children and adolescents, LMS by
//!   whole month (height-for-age and BMI-for-age 61–228 months, weight-for-age 61–120
//!   months; there is no weight-for-height). de Onis M, Onyango AW, Borghi E, Siyam A,
//!   Nishida C, Siekmann J. *Development of a WHO growth reference for school-aged children
//!   and adolescents.* Bull World Health Organ 2007;85:660–7.
//! * **Categories: Peraturan Menteri Kesehatan No. 2 Tahun 2020 tentang Standar Antropometri
//!   Anak** (see [`Category`] and `category.rs` for the cut-off table).
//!
//! The tables are embedded from `crates/core/data/who/*.csv` (source, version and licence in
//! the `README.md` there) and parsed once, on first use.
//!
//! # Method
//!
//! * Age is `date − birth_date` in whole days. Up to 1856 days the day tables are read at
//!   that day. From 1857 days the age in months is `days / 30.4375` (365.25 / 12) and L, M
//!   and S are interpolated linearly between the two neighbouring whole months, as WHO
//!   AnthroPlus does; 1857 days is 61.01 months, so the two references join without a gap.
//! * `z = ((X/M)^L − 1) / (L·S)` (`ln(X/M)/S` if `L = 0`).
//! * The weight-based indicators (weight-for-age, weight-for-length/height, BMI-for-age)
//!   use WHO's restricted computation beyond ±3 SD ([`Lms::z_restricted`]): past +3,
//!   `3 + (X − SD3pos)/(SD3pos − SD2pos)`; below −3, `−3 + (X − SD3neg)/(SD2neg − SD3neg)`.
//!   Length/height-for-age uses the plain formula (L = 1, a normal distribution).
//! * Length vs height: below 731 days children are measured lying (length), from 731 days
//!   standing (height). A child under 731 days measured standing gets +0.7 cm; a child of
//!   731 days or more measured lying gets −0.7 cm. With `measured: None` the expected
//!   position for the age is assumed (no correction). The corrected value is used for
//!   length/height-for-age, weight-for-length/height and BMI.
//! * Length/height-for-age reads the length rows (< 731 days) or the height rows
//!   (≥ 731 days) of the WHO table; weight-for-length is used below 731 days (45–110 cm),
//!   weight-for-height from 731 to 1856 days (65–120 cm). Lengths between the 0.1 cm rows
//!   interpolate L, M and S linearly, as WHO Anthro does.
//! * BMI = weight (kg) / (corrected length (m))².
//! * Anything outside a table (age beyond 228 months, or 120 months for weight-for-age;
//!   weight-for-length/height after 60 months or with a length outside the table) gives
//!   `None` for that indicator, not an error.
//!
//! # Rounding and categories
//!
//! [`IndicatorResult::z`] is rounded to two decimals, and **the category is taken from that
//! rounded z**, so the number a cadre sees and the category next to it always agree (a
//! displayed −2.00 is never "kurang"). WHO Anthro categorises the unrounded z; the two can
//! only differ when the unrounded z lies within 0.005 of a cut-off. The unrounded value is
//! available from [`z_score`].
//!
//! # Impossible input
//!
//! [`compute`] rejects, with a [`GrowthError`]: a measurement date before the birth date;
//! a weight that is not a finite number in (0, 250] kg; a length/height that is not a
//! finite number in (20, 250] cm. 20 cm is well below any live birth that is measured
//! (the WHO tables start at 45 cm) and 250 cm above any human height, so the bounds only
//! catch typing and unit errors (grams for kilograms, millimetres for centimetres);
//! plausible-but-extreme values still get a z-score, which the UI can flag.

mod category;
mod tables;

#[cfg(test)]
mod tests;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{Measured, Sex};

pub use category::{categorize, Category};
pub use tables::Lms;

/// The last day of the WHO 2006 day tables (60 months).
pub const WHO2006_MAX_DAYS: i64 = 1856;
/// From this age in days children are measured standing (height) rather than lying (24 months).
pub const HEIGHT_FROM_DAYS: i64 = 731;
/// Days per month for converting ages (365.25 / 12), as WHO does.
pub const DAYS_PER_MONTH: f64 = 30.4375;
/// The first month of the WHO 2007 reference.
pub const WHO2007_MIN_MONTHS: f64 = 61.0;
/// The last month of the WHO 2007 height-for-age and BMI-for-age tables (19 years).
pub const WHO2007_MAX_MONTHS: f64 = 228.0;
/// The last month of the WHO 2007 weight-for-age table (10 years).
pub const WHO2007_WFA_MAX_MONTHS: f64 = 120.0;
/// Lying length exceeds standing height by this much on average (WHO 2006).
pub const LYING_STANDING_DIFF_CM: f64 = 0.7;
/// Weights above this are rejected as impossible (kg). Weights must also be > 0.
pub const MAX_WEIGHT_KG: f64 = 250.0;
/// Lengths at or below this are rejected as impossible (cm).
pub const MIN_LENGTH_CM: f64 = 20.0;
/// Lengths above this are rejected as impossible (cm).
pub const MAX_LENGTH_CM: f64 = 250.0;

/// One anthropometric measurement of a child.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GrowthInput {
    pub sex: Sex,
    pub birth_date: NaiveDate,
    /// The date of the measurement.
    pub date: NaiveDate,
    pub weight_kg: Option<f64>,
    /// Length (lying) or height (standing) as measured, before the 0.7 cm correction.
    pub length_cm: Option<f64>,
    /// How the length was measured; `None` means the standard position for the age.
    pub measured: Option<Measured>,
}

/// The z-scores and categories of one measurement. An indicator is `None` when its inputs
/// are missing or the age/length is outside the WHO tables.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GrowthResult {
    pub age_days: i64,
    /// BB/U.
    pub weight_for_age: Option<IndicatorResult>,
    /// PB/U (under 731 days) or TB/U.
    pub length_height_for_age: Option<IndicatorResult>,
    /// BB/PB (under 731 days) or BB/TB (731–1856 days).
    pub weight_for_length_height: Option<IndicatorResult>,
    /// IMT/U.
    pub bmi_for_age: Option<IndicatorResult>,
}

/// One indicator's z-score and Permenkes 2/2020 category.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IndicatorResult {
    /// The z-score rounded to two decimals.
    pub z: f64,
    /// The category of the rounded z; serialises as a snake_case code.
    pub category: Category,
    pub label_id: &'static str,
    pub label_en: &'static str,
}

impl IndicatorResult {
    /// Rounds `z` to two decimals and categorises the rounded value.
    pub fn new(indicator: Indicator, age_days: i64, z: f64) -> IndicatorResult {
        let z = round2(z);
        let category = categorize(indicator, age_days, z);
        IndicatorResult {
            z,
            category,
            label_id: category.label_id(),
            label_en: category.label_en(),
        }
    }
}

/// The four anthropometric indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// BB/U.
    WeightForAge,
    /// PB/U or TB/U.
    LengthHeightForAge,
    /// BB/PB or BB/TB.
    WeightForLengthHeight,
    /// IMT/U.
    BmiForAge,
}

impl Indicator {
    pub const ALL: [Indicator; 4] = [
        Indicator::WeightForAge,
        Indicator::LengthHeightForAge,
        Indicator::WeightForLengthHeight,
        Indicator::BmiForAge,
    ];

    /// Whether WHO's restricted computation beyond ±3 SD applies.
    pub fn is_weight_based(self) -> bool {
        !matches!(self, Indicator::LengthHeightForAge)
    }

    /// The Indonesian abbreviation used in Permenkes 2/2020 and the KIA book, which depends
    /// on the age for the length/height indices.
    pub fn short_id(self, age_days: i64) -> &'static str {
        let lying = age_days < HEIGHT_FROM_DAYS;
        match self {
            Indicator::WeightForAge => "BB/U",
            Indicator::LengthHeightForAge if lying => "PB/U",
            Indicator::LengthHeightForAge => "TB/U",
            Indicator::WeightForLengthHeight if lying => "BB/PB",
            Indicator::WeightForLengthHeight => "BB/TB",
            Indicator::BmiForAge => "IMT/U",
        }
    }
}

/// Impossible measurements. Messages are in Bahasa Indonesia first, English in brackets.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GrowthError {
    #[error("tanggal pengukuran {date} sebelum tanggal lahir {birth_date} (measurement date before birth date)")]
    DateBeforeBirth {
        birth_date: NaiveDate,
        date: NaiveDate,
    },
    #[error("berat badan tidak mungkin: {0} kg (impossible weight)")]
    ImpossibleWeight(f64),
    #[error("panjang/tinggi badan tidak mungkin: {0} cm (impossible length/height)")]
    ImpossibleLength(f64),
}

impl GrowthError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GrowthError::DateBeforeBirth { .. } => "date_before_birth",
            GrowthError::ImpossibleWeight(_) => "impossible_weight",
            GrowthError::ImpossibleLength(_) => "impossible_length",
        }
    }
}

/// One point of the WHO reference curves for a chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Age in days (age-based indices) or length/height in cm (weight-for-length/height).
    pub x: f64,
    /// The measurement at z = −3, −2, −1, 0, +1, +2, +3 (kg, cm or kg/m²).
    pub sd: [f64; 7],
}

/// The z-scores of [`CurvePoint::sd`], in order.
pub const CHART_Z: [f64; 7] = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0];

/// Rounds to two decimals (half away from zero), without a negative zero.
pub fn round2(z: f64) -> f64 {
    let r = (z * 100.0).round() / 100.0;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Age in whole days at `date` (negative if `date` is before `birth_date`).
pub fn age_days(birth_date: NaiveDate, date: NaiveDate) -> i64 {
    (date - birth_date).num_days()
}

/// The length/height to look up, after the 0.7 cm lying/standing correction: +0.7 cm for a
/// child under 731 days measured standing, −0.7 cm for a child of 731 days or more measured
/// lying; `measured: None` means the standard position for the age (no correction).
pub fn corrected_length_cm(age_days: i64, length_cm: f64, measured: Option<Measured>) -> f64 {
    match (age_days < HEIGHT_FROM_DAYS, measured) {
        (true, Some(Measured::Standing)) => length_cm + LYING_STANDING_DIFF_CM,
        (false, Some(Measured::Lying)) => length_cm - LYING_STANDING_DIFF_CM,
        _ => length_cm,
    }
}

/// L, M and S of an age-based indicator (weight-, length/height- or BMI-for-age) at
/// `age_days`: WHO 2006 by day up to 1856 days, then WHO 2007 interpolated by month.
/// `None` for [`Indicator::WeightForLengthHeight`] (see [`lms_for_length`]) and outside
/// the tables.
pub fn lms_for_age(indicator: Indicator, sex: Sex, age_days: i64) -> Option<Lms> {
    if age_days < 0 {
        return None;
    }
    if age_days <= WHO2006_MAX_DAYS {
        let t = tables::tables().for_sex(sex);
        let table = match indicator {
            Indicator::WeightForAge => &t.wfa,
            Indicator::LengthHeightForAge => &t.lhfa,
            Indicator::BmiForAge => &t.bfa,
            Indicator::WeightForLengthHeight => return None,
        };
        table.at(age_days)
    } else {
        lms_2007(indicator, sex, age_days as f64 / DAYS_PER_MONTH)
    }
}

/// WHO 2007 L, M, S at a (fractional) age in months, interpolated between whole months.
fn lms_2007(indicator: Indicator, sex: Sex, months: f64) -> Option<Lms> {
    let t = tables::tables().for_sex(sex);
    let (table, max) = match indicator {
        Indicator::WeightForAge => (&t.wfa_2007, WHO2007_WFA_MAX_MONTHS),
        Indicator::LengthHeightForAge => (&t.hfa_2007, WHO2007_MAX_MONTHS),
        Indicator::BmiForAge => (&t.bfa_2007, WHO2007_MAX_MONTHS),
        Indicator::WeightForLengthHeight => return None,
    };
    if !(WHO2007_MIN_MONTHS..=max).contains(&months) {
        return None;
    }
    table.interpolate(months)
}

/// L, M and S of weight-for-length (age under 731 days, 45–110 cm) or weight-for-height
/// (731–1856 days, 65–120 cm) at an already corrected `length_cm`, interpolated between the
/// 0.1 cm rows. `None` outside those ranges.
pub fn lms_for_length(sex: Sex, age_days: i64, length_cm: f64) -> Option<Lms> {
    if !(0..=WHO2006_MAX_DAYS).contains(&age_days) || !length_cm.is_finite() {
        return None;
    }
    let t = tables::tables().for_sex(sex);
    let table = if age_days < HEIGHT_FROM_DAYS {
        &t.wfl
    } else {
        &t.wfh
    };
    table.interpolate(length_cm * 10.0)
}

/// The unrounded z-score of `measure` for `indicator`, or `None` outside the tables.
///
/// `measure` is the weight in kg (weight-for-age, weight-for-length/height), the corrected
/// length/height in cm (length/height-for-age) or the BMI in kg/m² (BMI-for-age).
/// `length_cm` is the corrected length/height, used only by weight-for-length/height
/// (where it is required). No 0.7 cm correction is applied here (see
/// [`corrected_length_cm`]); the restricted computation is applied to weight-based indices.
pub fn z_score(
    indicator: Indicator,
    sex: Sex,
    age_days: i64,
    measure: f64,
    length_cm: Option<f64>,
) -> Option<f64> {
    if !measure.is_finite() || measure <= 0.0 {
        return None;
    }
    let lms = match indicator {
        Indicator::WeightForLengthHeight => lms_for_length(sex, age_days, length_cm?)?,
        _ => lms_for_age(indicator, sex, age_days)?,
    };
    Some(if indicator.is_weight_based() {
        lms.z_restricted(measure)
    } else {
        lms.z(measure)
    })
}

/// BMI in kg/m² from weight in kg and length/height in cm.
pub fn bmi(weight_kg: f64, length_cm: f64) -> f64 {
    let m = length_cm / 100.0;
    weight_kg / (m * m)
}

/// Computes every indicator the input allows. See the module documentation for the rules.
pub fn compute(input: &GrowthInput) -> Result<GrowthResult, GrowthError> {
    if let Some(w) = input.weight_kg {
        if !w.is_finite() || w <= 0.0 || w > MAX_WEIGHT_KG {
            return Err(GrowthError::ImpossibleWeight(w));
        }
    }
    if let Some(l) = input.length_cm {
        if !l.is_finite() || l <= MIN_LENGTH_CM || l > MAX_LENGTH_CM {
            return Err(GrowthError::ImpossibleLength(l));
        }
    }
    if input.date < input.birth_date {
        return Err(GrowthError::DateBeforeBirth {
            birth_date: input.birth_date,
            date: input.date,
        });
    }
    let age = age_days(input.birth_date, input.date);
    let sex = input.sex;
    let weight = input.weight_kg;
    let length = input
        .length_cm
        .map(|l| corrected_length_cm(age, l, input.measured));
    let result =
        |indicator: Indicator, z: Option<f64>| z.map(|z| IndicatorResult::new(indicator, age, z));

    let wfa = weight.and_then(|w| z_score(Indicator::WeightForAge, sex, age, w, None));
    let lhfa = length.and_then(|l| z_score(Indicator::LengthHeightForAge, sex, age, l, None));
    let wflh = weight
        .zip(length)
        .and_then(|(w, l)| z_score(Indicator::WeightForLengthHeight, sex, age, w, Some(l)));
    let bfa = weight
        .zip(length)
        .and_then(|(w, l)| z_score(Indicator::BmiForAge, sex, age, bmi(w, l), None));

    Ok(GrowthResult {
        age_days: age,
        weight_for_age: result(Indicator::WeightForAge, wfa),
        length_height_for_age: result(Indicator::LengthHeightForAge, lhfa),
        weight_for_length_height: result(Indicator::WeightForLengthHeight, wflh),
        bmi_for_age: result(Indicator::BmiForAge, bfa),
    })
}

/// The WHO curves at z = −3..+3 ([`CHART_Z`]) for drawing a chart.
///
/// Age-based indices: `x` is the age in days from 0 to `max_age_days` (clipped to the end
/// of the reference: 228 months, or 120 months for weight-for-age), sampled weekly for the
/// first 13 weeks, then at every whole month (month `m` at day `round(m × 30.4375)` while
/// the WHO 2006 day tables apply, at `m × 30.4375` for WHO 2007), plus day 730 (the last
/// length row before the step to height at 731) and `max_age_days` itself.
///
/// Weight-for-length/height: `x` is the length/height in cm every 0.5 cm; the table is
/// weight-for-length (45–110 cm) when `max_age_days` < 731 and weight-for-height
/// (65–120 cm) up to 1856 days. After 1856 days there is no such reference: empty.
/// A negative `max_age_days` gives an empty chart.
pub fn chart(indicator: Indicator, sex: Sex, max_age_days: i64) -> Vec<CurvePoint> {
    if max_age_days < 0 {
        return Vec::new();
    }
    if indicator == Indicator::WeightForLengthHeight {
        if max_age_days > WHO2006_MAX_DAYS {
            return Vec::new();
        }
        let t = tables::tables().for_sex(sex);
        let table = if max_age_days < HEIGHT_FROM_DAYS {
            &t.wfl
        } else {
            &t.wfh
        };
        return (table.first..=table.last())
            .step_by(5)
            .filter_map(|mm| table.at(mm).map(|lms| curve_point(mm as f64 / 10.0, lms)))
            .collect();
    }

    let max_months = if indicator == Indicator::WeightForAge {
        WHO2007_WFA_MAX_MONTHS as i64
    } else {
        WHO2007_MAX_MONTHS as i64
    };
    let mut xs: Vec<f64> = (0..=91).step_by(7).map(|d| d as f64).collect();
    for m in 3..=60 {
        if m == 24 {
            xs.push((HEIGHT_FROM_DAYS - 1) as f64);
        }
        xs.push((m as f64 * DAYS_PER_MONTH).round());
    }
    xs.extend((61..=max_months).map(|m| m as f64 * DAYS_PER_MONTH));
    xs.dedup();
    let end = max_age_days as f64;
    xs.retain(|&x| x <= end);
    if xs.last() != Some(&end) {
        xs.push(end);
    }
    xs.into_iter()
        .filter_map(|x| {
            let lms = if x <= WHO2006_MAX_DAYS as f64 {
                lms_for_age(indicator, sex, x as i64)
            } else {
                lms_2007(indicator, sex, x / DAYS_PER_MONTH)
            };
            lms.map(|lms| curve_point(x, lms))
        })
        .collect()
}

fn curve_point(x: f64, lms: Lms) -> CurvePoint {
    CurvePoint {
        x,
        sd: CHART_Z.map(|z| lms.value_at(z)),
    }
}
