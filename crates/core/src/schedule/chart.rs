//! Growth chart data for the UI: the WHO reference curves at −3…+3 SD
//! ([`crate::growth::chart`]) and the child's own measurements with their z-scores.
//!
//! * Points come from the member's visits that are not voided, dated on or after the birth
//!   date, with the measurements the indicator needs; each goes through
//!   [`crate::growth::compute`] (same validation, 0.7 cm lying/standing correction and
//!   rounding as everywhere else), and measurements it rejects as impossible are left out.
//! * `x` is the age in days for the age-based indices, and the corrected length/height in
//!   cm for weight-for-length/height. `value` is the weight (kg), the corrected
//!   length/height (cm) or the BMI (kg/m²).
//! * The curves span the KMS chart of the child's latest point: 0–24 months (to day 730)
//!   if under 731 days, 0–60 months (to day 1856) if under 5 years, otherwise up to the next
//!   whole year of age. Weight-for-length is used if the latest point is under 731 days,
//!   weight-for-height up to 1856 days; points measured in the other table's age band are
//!   left out so that points and curves match.
//! * Without a sex or birth date there is nothing to compute: empty curves and points.

use chrono::NaiveDate;
use serde::Serialize;

use crate::growth::{self, CurvePoint, GrowthInput, Indicator, HEIGHT_FROM_DAYS, WHO2006_MAX_DAYS};
use crate::model::{Member, Visit};

/// One measurement of the child on the chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChartPoint {
    pub date: NaiveDate,
    pub age_days: i64,
    /// Age in days, or corrected length/height in cm for weight-for-length/height.
    pub x: f64,
    /// kg, cm or kg/m², as the indicator measures.
    pub value: f64,
    /// z-score rounded to two decimals.
    pub z: f64,
}

/// Curves and points of one indicator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartData {
    pub indicator: Indicator,
    pub curves: Vec<CurvePoint>,
    pub points: Vec<ChartPoint>,
}

/// The span in days of the age-based chart for a child whose latest point is `last_age`.
fn span_days(last_age: i64) -> i64 {
    if last_age < HEIGHT_FROM_DAYS {
        HEIGHT_FROM_DAYS - 1
    } else if last_age <= WHO2006_MAX_DAYS {
        WHO2006_MAX_DAYS
    } else {
        ((last_age as f64 / 365.25).ceil() * 365.25).round() as i64
    }
}

/// Growth chart data of `indicator` for a member (see the module docs).
pub fn growth_chart(member: &Member, visits: &[Visit], indicator: Indicator) -> ChartData {
    let empty = ChartData {
        indicator,
        curves: Vec::new(),
        points: Vec::new(),
    };
    let (Some(sex), Some(birth)) = (member.sex, member.birth_date) else {
        return empty;
    };
    let mut vs: Vec<&Visit> = visits
        .iter()
        .filter(|v| v.member_id == member.id && !v.voided && v.date >= birth)
        .collect();
    vs.sort_by_key(|v| (v.date, v.created_at));

    let mut points = Vec::new();
    for v in vs {
        let input = GrowthInput {
            sex,
            birth_date: birth,
            date: v.date,
            weight_kg: v.weight_kg,
            length_cm: v.height_cm,
            measured: v.measured,
        };
        let Ok(r) = growth::compute(&input) else {
            continue;
        };
        let age = r.age_days;
        let length = v
            .height_cm
            .map(|l| growth::corrected_length_cm(age, l, v.measured));
        let (res, x, value) = match indicator {
            Indicator::WeightForAge => (r.weight_for_age, Some(age as f64), v.weight_kg),
            Indicator::LengthHeightForAge => (r.length_height_for_age, Some(age as f64), length),
            Indicator::WeightForLengthHeight => (r.weight_for_length_height, length, v.weight_kg),
            Indicator::BmiForAge => (
                r.bmi_for_age,
                Some(age as f64),
                v.weight_kg.zip(length).map(|(w, l)| growth::bmi(w, l)),
            ),
        };
        if let (Some(res), Some(x), Some(value)) = (res, x, value) {
            points.push(ChartPoint {
                date: v.date,
                age_days: age,
                x,
                value,
                z: res.z,
            });
        }
    }
    let last_age = points.last().map(|p| p.age_days).unwrap_or(0);
    let curves = if indicator == Indicator::WeightForLengthHeight {
        let lying = last_age < HEIGHT_FROM_DAYS;
        points.retain(|p| (p.age_days < HEIGHT_FROM_DAYS) == lying);
        growth::chart(indicator, sex, last_age)
    } else {
        growth::chart(indicator, sex, span_days(last_age))
    };
    ChartData {
        indicator,
        curves,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::model::Measured;

    fn measure(m: &Member, date: &str, kg: Option<f64>, cm: Option<f64>) -> Visit {
        let mut v = visit(m.id, date);
        v.weight_kg = kg;
        v.height_cm = cm;
        v
    }

    #[test]
    fn weight_for_age_points_and_curves() {
        let c = child("2026-01-01");
        let v = [
            measure(&c, "2026-03-02", Some(5.5), Some(58.0)),
            measure(&c, "2026-01-31", Some(4.4), None),
            measure(&c, "2026-04-01", Some(0.0), None), // impossible: left out
            measure(&c, "2025-12-01", Some(3.0), None), // before birth: left out
        ];
        let ch = growth_chart(&c, &v, Indicator::WeightForAge);
        assert_eq!(ch.points.len(), 2);
        assert_eq!(ch.points[0].date, d("2026-01-31"));
        assert_eq!(
            (ch.points[0].age_days, ch.points[0].x, ch.points[0].value),
            (30, 30.0, 4.4)
        );
        let z =
            growth::z_score(Indicator::WeightForAge, crate::model::Sex::M, 60, 5.5, None).unwrap();
        assert_eq!(ch.points[1].z, growth::round2(z));
        // 0–24 month chart: the curves end at day 730 and the median at 0 is WHO's 3.3464 kg.
        assert_eq!(ch.curves.last().unwrap().x, 730.0);
        assert_eq!(ch.curves[0].x, 0.0);
        assert!(
            (ch.curves[0].sd[3] - 3.3464).abs() < 1e-4,
            "{:?}",
            ch.curves[0]
        );
    }

    #[test]
    fn length_points_are_corrected_and_span_grows_with_age() {
        let c = child("2023-01-01");
        // 3 years old measured lying: −0.7 cm.
        let mut v = measure(&c, "2026-01-01", Some(14.0), Some(96.0));
        v.measured = Some(Measured::Lying);
        let ch = growth_chart(&c, &[v.clone()], Indicator::LengthHeightForAge);
        assert!((ch.points[0].value - 95.3).abs() < 1e-9);
        assert_eq!(ch.curves.last().unwrap().x, 1856.0);
        // Weight-for-height: x is the corrected height.
        let ch = growth_chart(&c, &[v.clone()], Indicator::WeightForLengthHeight);
        assert!((ch.points[0].x - 95.3).abs() < 1e-9 && ch.points[0].value == 14.0);
        // The WHO weight-for-height table starts at 65 cm.
        assert_eq!(ch.curves.first().unwrap().x, 65.0);
        // BMI = 14 / 0.953².
        let ch = growth_chart(&c, &[v], Indicator::BmiForAge);
        assert!((ch.points[0].value - 14.0 / (0.953 * 0.953)).abs() < 1e-9);
        // Without a sex: empty.
        let mut nosex = c.clone();
        nosex.sex = None;
        let ch = growth_chart(&nosex, &[], Indicator::WeightForAge);
        assert!(ch.curves.is_empty() && ch.points.is_empty());
    }
}
