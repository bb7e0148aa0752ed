//! Indonesian nutritional-status categories of Permenkes No. 2 Tahun 2020 tentang Standar
//! Antropometri Anak (Pasal 3 and Lampiran, "Kategori dan Ambang Batas Status Gizi Anak").
//!
//! Cut-offs (z = z-score):
//!
//! | index | category (Indonesian / English) | z |
//! |---|---|---|
//! | BB/U (0–60 mo) | berat badan sangat kurang / severely underweight | z < −3 |
//! |  | berat badan kurang / underweight | −3 ≤ z < −2 |
//! |  | berat badan normal / normal | −2 ≤ z ≤ +1 |
//! |  | risiko berat badan lebih / risk of overweight | z > +1 |
//! | PB/U, TB/U (0–60 mo) | sangat pendek / severely stunted | z < −3 |
//! |  | pendek / stunted | −3 ≤ z < −2 |
//! |  | normal / normal | −2 ≤ z ≤ +3 |
//! |  | tinggi / tall | z > +3 |
//! | BB/PB, BB/TB and IMT/U (0–60 mo) | gizi buruk / severely wasted | z < −3 |
//! |  | gizi kurang / wasted | −3 ≤ z < −2 |
//! |  | gizi baik / normal | −2 ≤ z ≤ +1 |
//! |  | berisiko gizi lebih / possible risk of overweight | +1 < z ≤ +2 |
//! |  | gizi lebih / overweight | +2 < z ≤ +3 |
//! |  | obesitas / obese | z > +3 |
//! | IMT/U (5–18 y) | gizi buruk / severe thinness | z < −3 |
//! |  | gizi kurang / thinness | −3 ≤ z < −2 |
//! |  | gizi baik / normal | −2 ≤ z ≤ +1 |
//! |  | gizi lebih / overweight | +1 < z ≤ +2 |
//! |  | obesitas / obese | z > +2 |
//!
//! Permenkes 2/2020 categorises only IMT/U beyond 60 months. Where Kunjung still reports
//! BB/U (WHO 2007, to 120 months) or TB/U (WHO 2007, to 228 months) for school-age children,
//! the 0–60 month cut-offs above are reused (they are the WHO cut-offs for those indices).

use serde::Serialize;

use super::{Indicator, WHO2006_MAX_DAYS};

/// A nutritional-status category. Serialises as its snake_case code (see [`Category::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    // BB/U (weight-for-age)
    SeverelyUnderweight,
    Underweight,
    NormalWeight,
    RiskOfOverweight,
    // PB/U or TB/U (length/height-for-age)
    SeverelyStunted,
    Stunted,
    NormalHeight,
    Tall,
    // BB/PB, BB/TB, IMT/U 0–60 months (and IMT/U 5–18 years for the shared ones)
    SeverelyWasted,
    Wasted,
    NormalNutrition,
    PossibleRiskOfOverweight,
    Overweight,
    Obese,
    // IMT/U 5–18 years
    SeverelyThin,
    Thin,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 16] = [
        Category::SeverelyUnderweight,
        Category::Underweight,
        Category::NormalWeight,
        Category::RiskOfOverweight,
        Category::SeverelyStunted,
        Category::Stunted,
        Category::NormalHeight,
        Category::Tall,
        Category::SeverelyWasted,
        Category::Wasted,
        Category::NormalNutrition,
        Category::PossibleRiskOfOverweight,
        Category::Overweight,
        Category::Obese,
        Category::SeverelyThin,
        Category::Thin,
    ];

    /// The stable snake_case code (the same string the serialiser writes).
    pub fn code(self) -> &'static str {
        match self {
            Category::SeverelyUnderweight => "severely_underweight",
            Category::Underweight => "underweight",
            Category::NormalWeight => "normal_weight",
            Category::RiskOfOverweight => "risk_of_overweight",
            Category::SeverelyStunted => "severely_stunted",
            Category::Stunted => "stunted",
            Category::NormalHeight => "normal_height",
            Category::Tall => "tall",
            Category::SeverelyWasted => "severely_wasted",
            Category::Wasted => "wasted",
            Category::NormalNutrition => "normal_nutrition",
            Category::PossibleRiskOfOverweight => "possible_risk_of_overweight",
            Category::Overweight => "overweight",
            Category::Obese => "obese",
            Category::SeverelyThin => "severely_thin",
            Category::Thin => "thin",
        }
    }

    /// The Indonesian label as worded in Permenkes 2/2020.
    pub fn label_id(self) -> &'static str {
        match self {
            Category::SeverelyUnderweight => "Berat badan sangat kurang",
            Category::Underweight => "Berat badan kurang",
            Category::NormalWeight => "Berat badan normal",
            Category::RiskOfOverweight => "Risiko berat badan lebih",
            Category::SeverelyStunted => "Sangat pendek",
            Category::Stunted => "Pendek",
            Category::NormalHeight => "Normal",
            Category::Tall => "Tinggi",
            Category::SeverelyWasted | Category::SeverelyThin => "Gizi buruk",
            Category::Wasted | Category::Thin => "Gizi kurang",
            Category::NormalNutrition => "Gizi baik",
            Category::PossibleRiskOfOverweight => "Berisiko gizi lebih",
            Category::Overweight => "Gizi lebih",
            Category::Obese => "Obesitas",
        }
    }

    /// The English label: the WHO term that Permenkes 2/2020 gives in brackets where it gives
    /// one, else a plain translation.
    pub fn label_en(self) -> &'static str {
        match self {
            Category::SeverelyUnderweight => "Severely underweight",
            Category::Underweight => "Underweight",
            Category::NormalWeight => "Normal weight",
            Category::RiskOfOverweight => "Risk of overweight",
            Category::SeverelyStunted => "Severely stunted",
            Category::Stunted => "Stunted",
            Category::NormalHeight => "Normal height",
            Category::Tall => "Tall",
            Category::SeverelyWasted => "Severely wasted",
            Category::Wasted => "Wasted",
            Category::NormalNutrition => "Normal",
            Category::PossibleRiskOfOverweight => "Possible risk of overweight",
            Category::Overweight => "Overweight",
            Category::Obese => "Obese",
            Category::SeverelyThin => "Severe thinness",
            Category::Thin => "Thinness",
        }
    }
}

/// The Permenkes 2/2020 category of z-score `z` for `indicator` at `age_days`. The bounds
/// are applied to `z` exactly as given; [`super::compute`] passes the z rounded to two
/// decimals (see the module documentation for why).
pub fn categorize(indicator: Indicator, age_days: i64, z: f64) -> Category {
    use Category::*;
    match indicator {
        Indicator::WeightForAge => {
            if z < -3.0 {
                SeverelyUnderweight
            } else if z < -2.0 {
                Underweight
            } else if z <= 1.0 {
                NormalWeight
            } else {
                RiskOfOverweight
            }
        }
        Indicator::LengthHeightForAge => {
            if z < -3.0 {
                SeverelyStunted
            } else if z < -2.0 {
                Stunted
            } else if z <= 3.0 {
                NormalHeight
            } else {
                Tall
            }
        }
        Indicator::BmiForAge if age_days > WHO2006_MAX_DAYS => {
            if z < -3.0 {
                SeverelyThin
            } else if z < -2.0 {
                Thin
            } else if z <= 1.0 {
                NormalNutrition
            } else if z <= 2.0 {
                Overweight
            } else {
                Obese
            }
        }
        Indicator::WeightForLengthHeight | Indicator::BmiForAge => {
            if z < -3.0 {
                SeverelyWasted
            } else if z < -2.0 {
                Wasted
            } else if z <= 1.0 {
                NormalNutrition
            } else if z <= 2.0 {
                PossibleRiskOfOverweight
            } else if z <= 3.0 {
                Overweight
            } else {
                Obese
            }
        }
    }
}
