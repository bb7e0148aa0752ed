//! Unit and property tests of the growth module.

use chrono::{Duration, NaiveDate};
use proptest::prelude::*;

use super::tables::{tables, SexTables, Table};
use super::*;
use crate::model::{Measured, Sex};

const SEXES: [Sex; 2] = [Sex::M, Sex::F];

fn birth() -> NaiveDate {
    NaiveDate::from_ymd_opt(2020, 1, 1).unwrap()
}

fn input(sex: Sex, age_days: i64, weight_kg: Option<f64>, length_cm: Option<f64>) -> GrowthInput {
    GrowthInput {
        sex,
        birth_date: birth(),
        date: birth() + Duration::days(age_days),
        weight_kg,
        length_cm,
        measured: None,
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Every table of one sex with its name, grid range (in grid units) and whether the
/// restricted computation applies.
fn all_tables(t: &SexTables) -> Vec<(&'static str, &Table, i64, i64, bool)> {
    vec![
        ("wfa", &t.wfa, 0, 1856, true),
        ("lhfa", &t.lhfa, 0, 1856, false),
        ("bfa", &t.bfa, 0, 1856, true),
        ("wfl", &t.wfl, 450, 1100, true),
        ("wfh", &t.wfh, 650, 1200, true),
        ("wfa_2007", &t.wfa_2007, 61, 120, true),
        ("hfa_2007", &t.hfa_2007, 61, 228, false),
        ("bfa_2007", &t.bfa_2007, 61, 228, true),
    ]
}

// ---------------------------------------------------------------------------------------
// Tables: completeness and sanity
// ---------------------------------------------------------------------------------------

#[test]
fn tables_are_complete() {
    for sex in SEXES {
        for (name, table, first, last, _) in all_tables(tables().for_sex(sex)) {
            assert_eq!(table.first, first, "{name} {sex:?} first row");
            assert_eq!(table.last(), last, "{name} {sex:?} last row");
            assert_eq!(
                table.rows.len() as i64,
                last - first + 1,
                "{name} {sex:?} row count"
            );
            // The parser already refuses rows off the grid; check every step is present.
            for x in first..=last {
                assert!(table.at(x).is_some(), "{name} {sex:?} missing {x}");
            }
            assert!(table.at(first - 1).is_none() && table.at(last + 1).is_none());
        }
    }
}

#[test]
fn every_day_length_and_month_is_reachable_through_the_api() {
    for sex in SEXES {
        for day in 0..=WHO2006_MAX_DAYS {
            for ind in [
                Indicator::WeightForAge,
                Indicator::LengthHeightForAge,
                Indicator::BmiForAge,
            ] {
                assert!(
                    lms_for_age(ind, sex, day).is_some(),
                    "{ind:?} {sex:?} {day}"
                );
            }
        }
        for mm in 450..=1100 {
            assert!(
                lms_for_length(sex, 0, mm as f64 / 10.0).is_some(),
                "wfl {mm}"
            );
        }
        for mm in 650..=1200 {
            assert!(
                lms_for_length(sex, 731, mm as f64 / 10.0).is_some(),
                "wfh {mm}"
            );
        }
        for month in 61..=228 {
            let m = month as f64;
            assert!(lms_2007(Indicator::LengthHeightForAge, sex, m).is_some());
            assert!(lms_2007(Indicator::BmiForAge, sex, m).is_some());
            assert_eq!(
                lms_2007(Indicator::WeightForAge, sex, m).is_some(),
                month <= 120
            );
        }
    }
}

#[test]
fn table_values_are_sane() {
    for sex in SEXES {
        for (name, table, ..) in all_tables(tables().for_sex(sex)) {
            for (i, r) in table.rows.iter().enumerate() {
                assert!(r.l.is_finite() && r.l.abs() < 3.0, "{name} {i} L");
                assert!(r.m > 1.0 && r.m < 200.0, "{name} {i} M");
                assert!(r.s > 0.0 && r.s < 0.3, "{name} {i} S");
            }
            if name.starts_with("lhfa") || name.starts_with("hfa") {
                assert!(table.rows.iter().all(|r| r.l == 1.0), "{name}: L = 1");
            }
        }
    }
}

#[test]
fn length_rows_then_height_rows_at_731_days() {
    // WHO's length/height-for-age table switches from length to height at 731 days:
    // the median drops by about 0.7 cm.
    let t = &tables().for_sex(Sex::M).lhfa;
    let (a, b) = (t.at(730).unwrap(), t.at(731).unwrap());
    assert_eq!(a.m, 87.8018);
    assert_eq!(b.m, 87.1303);
}

#[test]
fn data_files_are_small() {
    let sizes = [
        include_str!("../../data/who/wfa_boys.csv").len(),
        include_str!("../../data/who/wfa_girls.csv").len(),
        include_str!("../../data/who/lhfa_boys.csv").len(),
        include_str!("../../data/who/lhfa_girls.csv").len(),
        include_str!("../../data/who/bfa_boys.csv").len(),
        include_str!("../../data/who/bfa_girls.csv").len(),
        include_str!("../../data/who/wfl_boys.csv").len(),
        include_str!("../../data/who/wfl_girls.csv").len(),
        include_str!("../../data/who/wfh_boys.csv").len(),
        include_str!("../../data/who/wfh_girls.csv").len(),
        include_str!("../../data/who/wfa_2007_boys.csv").len(),
        include_str!("../../data/who/wfa_2007_girls.csv").len(),
        include_str!("../../data/who/hfa_2007_boys.csv").len(),
        include_str!("../../data/who/hfa_2007_girls.csv").len(),
        include_str!("../../data/who/bfa_2007_boys.csv").len(),
        include_str!("../../data/who/bfa_2007_girls.csv").len(),
    ];
    assert!(sizes.iter().sum::<usize>() < 1_000_000);
}

// ---------------------------------------------------------------------------------------
// The tables' own median and SD lines give z = 0, ±1, ±2, ±3
// ---------------------------------------------------------------------------------------

#[test]
fn sd_lines_of_every_row_give_integer_z() {
    for sex in SEXES {
        for (name, table, _, _, restricted) in all_tables(tables().for_sex(sex)) {
            for (i, lms) in table.rows.iter().enumerate() {
                for z in CHART_Z {
                    let y = lms.value_at(z);
                    assert!(close(lms.z(y), z, 1e-6), "{name} {sex:?} row {i} z {z}");
                    if restricted {
                        // At ±3 SD the restricted formula joins the plain one.
                        let zr = lms.z_restricted(y);
                        assert!(close(zr, z, 1e-6), "{name} {sex:?} row {i} z* {z}");
                    }
                }
            }
        }
    }
}

#[test]
fn sd_lines_through_the_public_z_score() {
    for sex in SEXES {
        for day in (0..=WHO2006_MAX_DAYS).step_by(37).chain([730, 731, 1856]) {
            for ind in [
                Indicator::WeightForAge,
                Indicator::LengthHeightForAge,
                Indicator::BmiForAge,
            ] {
                let lms = lms_for_age(ind, sex, day).unwrap();
                for z in CHART_Z {
                    let got = z_score(ind, sex, day, lms.value_at(z), None).unwrap();
                    assert!(close(got, z, 1e-6), "{ind:?} {sex:?} day {day} z {z}");
                }
            }
        }
        for (day, lo, hi) in [(100, 450, 1100), (1000, 650, 1200)] {
            for mm in (lo..=hi).step_by(7) {
                let cm = mm as f64 / 10.0;
                let lms = lms_for_length(sex, day, cm).unwrap();
                for z in CHART_Z {
                    let w = lms.value_at(z);
                    let got = z_score(Indicator::WeightForLengthHeight, sex, day, w, Some(cm));
                    assert!(close(got.unwrap(), z, 1e-6), "wflh {sex:?} {cm} z {z}");
                }
            }
        }
        // WHO 2007 at whole months: month m is day m × 30.4375, a whole day when m % 16 == 0.
        for month in [64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224] {
            let day = (month as f64 * DAYS_PER_MONTH) as i64;
            for ind in [Indicator::LengthHeightForAge, Indicator::BmiForAge]
                .into_iter()
                .chain((month <= 120).then_some(Indicator::WeightForAge))
            {
                let lms = lms_2007(ind, sex, month as f64).unwrap();
                assert_eq!(lms_for_age(ind, sex, day), Some(lms));
                for z in CHART_Z {
                    let got = z_score(ind, sex, day, lms.value_at(z), None).unwrap();
                    assert!(close(got, z, 1e-6), "{ind:?} {sex:?} month {month} z {z}");
                }
            }
        }
    }
}

/// SD columns as printed in WHO's expanded z-score tables (three decimals), checked against
/// the curves computed from our LMS rows: the values agree to the printed precision, and
/// the printed values score within 0.01 of their z.
#[test]
fn matches_who_published_sd_columns() {
    type Case = (Sex, Indicator, i64, Option<f64>, [f64; 7]);
    let cases: [Case; 6] = [
        // wfa-boys-zscore-expanded-table, day 0
        (
            Sex::M,
            Indicator::WeightForAge,
            0,
            None,
            [2.080, 2.459, 2.881, 3.346, 3.859, 4.419, 5.031],
        ),
        // wfa-girls-zscore-expanded-table, day 1856
        (
            Sex::F,
            Indicator::WeightForAge,
            1856,
            None,
            [12.145, 13.854, 15.905, 18.389, 21.429, 25.190, 29.903],
        ),
        // lhfa-boys-zscore-expanded-table, day 1000
        (
            Sex::M,
            Indicator::LengthHeightForAge,
            1000,
            None,
            [83.306, 86.861, 90.416, 93.971, 97.526, 101.080, 104.635],
        ),
        // wfl-boys-zscore-expanded-table, 70.0 cm
        (
            Sex::M,
            Indicator::WeightForLengthHeight,
            100,
            Some(70.0),
            [6.647, 7.177, 7.766, 8.423, 9.156, 9.979, 10.905],
        ),
        // wfh-girls-zscore-expanded-table, 100.0 cm
        (
            Sex::F,
            Indicator::WeightForLengthHeight,
            1000,
            Some(100.0),
            [11.747, 12.771, 13.924, 15.225, 16.700, 18.381, 20.305],
        ),
        // hfa_girls_z_WHO2007_exp, month 96 (= day 2922)
        (
            Sex::F,
            Indicator::LengthHeightForAge,
            2922,
            None,
            [
                109.163, 114.961, 120.758, 126.556, 132.353, 138.151, 143.948,
            ],
        ),
    ];
    for (sex, ind, day, length, sds) in cases {
        let lms = match length {
            Some(cm) => lms_for_length(sex, day, cm).unwrap(),
            None => lms_for_age(ind, sex, day).unwrap(),
        };
        for (z, printed) in CHART_Z.into_iter().zip(sds) {
            assert!(
                close(lms.value_at(z), printed, 0.0005 + 1e-9),
                "{ind:?} {sex:?} {day} z {z}: {} vs {printed}",
                lms.value_at(z)
            );
            let got = z_score(ind, sex, day, printed, length).unwrap();
            assert!(close(got, z, 0.01), "{ind:?} {sex:?} {day} z {z}: {got}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hand-computed cases
// ---------------------------------------------------------------------------------------

#[test]
fn hand_weight_for_age_boy_at_birth() {
    // wfa_boys day 0: L = 0.3487, M = 3.3464, S = 0.14602.
    // 4.0 kg: 4.0 / 3.3464 = 1.195314; ^0.3487 = 1.064187; − 1 = 0.064187;
    // L·S = 0.3487 × 0.14602 = 0.050917; z = 0.064187 / 0.050917 = 1.2606 → 1.26 (> +1).
    let r = compute(&input(Sex::M, 0, Some(4.0), None)).unwrap();
    let wfa = r.weight_for_age.unwrap();
    assert_eq!(r.age_days, 0);
    assert_eq!(wfa.z, 1.26);
    assert_eq!(wfa.category, Category::RiskOfOverweight);
    assert_eq!(wfa.label_id, "Risiko berat badan lebih");
    let raw = z_score(Indicator::WeightForAge, Sex::M, 0, 4.0, None).unwrap();
    assert!(close(raw, 1.260619, 1e-5), "{raw}");
    assert!(r.length_height_for_age.is_none() && r.bmi_for_age.is_none());
    // The median itself is z = 0.
    assert_eq!(
        z_score(Indicator::WeightForAge, Sex::M, 0, 3.3464, None),
        Some(0.0)
    );
}

#[test]
fn hand_length_for_age_girl_one_year() {
    // lhfa_girls day 365: L = 1, M = 74.0049, S = 0.03479.
    // 70 cm lying: z = (70 / 74.0049 − 1) / 0.03479 = −0.054117 / 0.03479 = −1.5555 → −1.56.
    let r = compute(&input(Sex::F, 365, None, Some(70.0))).unwrap();
    let h = r.length_height_for_age.unwrap();
    assert_eq!(h.z, -1.56);
    assert_eq!(h.category, Category::NormalHeight);
    assert!(r.weight_for_age.is_none() && r.weight_for_length_height.is_none());
}

#[test]
fn hand_weight_for_length_interpolated() {
    // wfl_boys 70.0 cm: L = −0.3521, M = 8.4227, S = 0.08229; 70.1 cm: M = 8.4454, S = 0.0823.
    // 70.05 cm is halfway: L = −0.3521, M = 8.43405, S = 0.082295.
    // 8.5 kg: 8.5 / 8.43405 = 1.0078195; ^−0.3521 = 0.9972612; − 1 = −0.0027388;
    // L·S = −0.028976; z = 0.094519 → 0.09.
    let lms = lms_for_length(Sex::M, 200, 70.05).unwrap();
    assert!(close(lms.m, 8.43405, 1e-9) && close(lms.s, 0.082295, 1e-9));
    let r = compute(&input(Sex::M, 200, Some(8.5), Some(70.05))).unwrap();
    let w = r.weight_for_length_height.unwrap();
    assert_eq!(w.z, 0.09);
    assert_eq!(w.category, Category::NormalNutrition);
    let raw = z_score(
        Indicator::WeightForLengthHeight,
        Sex::M,
        200,
        8.5,
        Some(70.05),
    )
    .unwrap();
    assert!(close(raw, 0.094519, 1e-5), "{raw}");
}

#[test]
fn hand_bmi_for_age_girl() {
    // 10 kg, 80 cm lying at 400 days: BMI = 10 / 0.8² = 15.625.
    // bfa_girls day 400: L = −0.3968, M = 16.2138, S = 0.08764.
    // 15.625 / 16.2138 = 0.963685; ^−0.3968 = 1.014786; − 1 = 0.014786;
    // L·S = −0.034776; z = −0.42519 → −0.43.
    let r = compute(&input(Sex::F, 400, Some(10.0), Some(80.0))).unwrap();
    let b = r.bmi_for_age.unwrap();
    assert_eq!(b.z, -0.43);
    assert_eq!(b.category, Category::NormalNutrition);
    assert!(close(bmi(10.0, 80.0), 15.625, 1e-12));
}

#[test]
fn hand_height_for_age_2007() {
    // 96 months = 96 × 30.4375 = 2922 days exactly. hfa_2007_girls month 96:
    // L = 1, M = 126.5558, S = 0.04581. 125 cm standing:
    // z = (125 − 126.5558) / (126.5558 × 0.04581) = −1.5558 / 5.797521 = −0.26836 → −0.27.
    let r = compute(&input(Sex::F, 2922, Some(25.0), Some(125.0))).unwrap();
    let h = r.length_height_for_age.unwrap();
    assert_eq!(h.z, -0.27);
    assert_eq!(h.category, Category::NormalHeight);
    assert!(
        r.weight_for_length_height.is_none(),
        "no wfh after 60 months"
    );
    assert!(r.weight_for_age.is_some(), "wfa to 120 months");
}

#[test]
fn hand_bmi_for_age_2007_fractional_month() {
    // 4400 days = 4400 / 30.4375 = 144.558522 months, between rows
    // 144 (L −1.7751, M 17.5334, S 0.11522) and 145 (L −1.7719, M 17.5877, S 0.11556);
    // t = 0.558522: L = −1.773313, M = 17.563728, S = 0.115410.
    // BMI 25: 25 / 17.563728 = 1.423383; ^−1.773313 = 0.534700; − 1 = −0.465300;
    // L·S = −0.204658; z = 2.27355 → 2.27: "obesitas" on the 5–18 year list (> +2).
    let lms = lms_for_age(Indicator::BmiForAge, Sex::M, 4400).unwrap();
    assert!(close(lms.l, -1.773313, 1e-6), "{lms:?}");
    assert!(close(lms.m, 17.563728, 1e-6), "{lms:?}");
    assert!(close(lms.s, 0.115410, 1e-6), "{lms:?}");
    let z = z_score(Indicator::BmiForAge, Sex::M, 4400, 25.0, None).unwrap();
    assert!(close(z, 2.27355, 1e-4), "{z}");
    let r = IndicatorResult::new(Indicator::BmiForAge, 4400, z);
    assert_eq!((r.z, r.category), (2.27, Category::Obese));
    // The same z at 60 months would only be "gizi lebih" (+2 < z ≤ +3 on the 0–60 list).
    let young = IndicatorResult::new(Indicator::BmiForAge, 1800, z);
    assert_eq!(young.category, Category::Overweight);
}

// ---------------------------------------------------------------------------------------
// Restricted computation beyond ±3 SD
// ---------------------------------------------------------------------------------------

#[test]
fn restricted_above_plus_three() {
    // wfa_boys day 0: L·S = 0.050917.
    // SD3pos = 3.3464 × (1 + 3 × 0.050917)^(1/0.3487) = 5.030639
    // SD2pos = 3.3464 × (1 + 2 × 0.050917)^(1/0.3487) = 4.419354
    // 6.0 kg: z* = 3 + (6.0 − 5.030639) / (5.030639 − 4.419354) = 3 + 0.969361 / 0.611285
    //       = 4.585774 → 4.59 (the plain LMS formula would give 4.4347).
    let lms = lms_for_age(Indicator::WeightForAge, Sex::M, 0).unwrap();
    assert!(close(lms.value_at(3.0), 5.030639, 1e-6));
    assert!(close(lms.value_at(2.0), 4.419354, 1e-6));
    assert!(close(lms.z(6.0), 4.434732, 1e-6));
    let z = z_score(Indicator::WeightForAge, Sex::M, 0, 6.0, None).unwrap();
    assert!(close(z, 4.585774, 1e-6), "{z}");
    let r = compute(&input(Sex::M, 0, Some(6.0), None)).unwrap();
    assert_eq!(r.weight_for_age.unwrap().z, 4.59);
}

#[test]
fn restricted_below_minus_three() {
    // SD3neg = 3.3464 × (1 − 3 × 0.050917)^(1/0.3487) = 2.080308
    // SD2neg = 3.3464 × (1 − 2 × 0.050917)^(1/0.3487) = 2.459312
    // 1.8 kg: z* = −3 + (1.8 − 2.080308) / (2.459312 − 2.080308) = −3 − 0.280308 / 0.379004
    //       = −3.739589 → −3.74 (plain: −3.8189).
    let z = z_score(Indicator::WeightForAge, Sex::M, 0, 1.8, None).unwrap();
    assert!(close(z, -3.739589, 1e-6), "{z}");
    let r = compute(&input(Sex::M, 0, Some(1.8), None)).unwrap();
    let wfa = r.weight_for_age.unwrap();
    assert_eq!(wfa.z, -3.74);
    assert_eq!(wfa.category, Category::SeverelyUnderweight);
}

#[test]
fn restricted_applies_to_every_weight_based_index_and_not_to_length() {
    // Far past +3 SD the restricted z is linear in the measurement: equal steps in y give
    // equal steps in z. The plain LMS z is not (L ≠ 1).
    let linear = |f: &dyn Fn(f64) -> f64, y: f64, dy: f64| {
        let (a, b, c) = (f(y), f(y + dy), f(y + 2.0 * dy));
        assert!(a > 3.0);
        close(b - a, c - b, 1e-9)
    };
    let wfa = |w: f64| z_score(Indicator::WeightForAge, Sex::F, 500, w, None).unwrap();
    assert!(linear(&wfa, 18.0, 1.0));
    let wfh = |w: f64| {
        z_score(
            Indicator::WeightForLengthHeight,
            Sex::F,
            1000,
            w,
            Some(90.0),
        )
        .unwrap()
    };
    assert!(linear(&wfh, 20.0, 1.0));
    let bfa = |b: f64| z_score(Indicator::BmiForAge, Sex::M, 3000, b, None).unwrap();
    assert!(linear(&bfa, 30.0, 1.0));
    // Length-for-age: plain formula (L = 1 is linear anyway): z = (y − M)/(M·S) exactly.
    let lms = lms_for_age(Indicator::LengthHeightForAge, Sex::M, 400).unwrap();
    let z = z_score(Indicator::LengthHeightForAge, Sex::M, 400, 95.0, None).unwrap();
    assert!(close(z, (95.0 - lms.m) / (lms.m * lms.s), 1e-9) && z > 3.0);
    assert_eq!(
        compute(&input(Sex::M, 400, None, Some(95.0)))
            .unwrap()
            .length_height_for_age
            .unwrap()
            .category,
        Category::Tall
    );
}

#[test]
fn obese_weight_for_height() {
    // Far above +3 SD on weight-for-height: obesitas.
    let r = compute(&input(Sex::F, 1000, Some(25.0), Some(90.0))).unwrap();
    let w = r.weight_for_length_height.unwrap();
    assert!(w.z > 3.0);
    assert_eq!(w.category, Category::Obese);
    assert_eq!(w.label_id, "Obesitas");
}

// ---------------------------------------------------------------------------------------
// The 0.7 cm lying/standing correction
// ---------------------------------------------------------------------------------------

#[test]
fn standing_under_two_years_adds_0_7_cm() {
    // lhfa_boys day 400: M = 77.0812, S = 0.03157. 75.0 cm standing → 75.7 cm:
    // z = (75.7 − 77.0812) / (77.0812 × 0.03157) = −1.3812 / 2.433453 = −0.5676 → −0.57
    // (lying, no correction: (75.0 − 77.0812) / 2.433453 = −0.8552 → −0.86).
    let mut i = input(Sex::M, 400, None, Some(75.0));
    i.measured = Some(Measured::Standing);
    assert_eq!(compute(&i).unwrap().length_height_for_age.unwrap().z, -0.57);
    i.measured = Some(Measured::Lying);
    assert_eq!(compute(&i).unwrap().length_height_for_age.unwrap().z, -0.86);
    i.measured = None; // default under 731 days: lying
    assert_eq!(compute(&i).unwrap().length_height_for_age.unwrap().z, -0.86);
    assert!(close(
        corrected_length_cm(730, 75.0, Some(Measured::Standing)),
        75.7,
        1e-12
    ));
}

#[test]
fn lying_from_two_years_subtracts_0_7_cm() {
    // lhfa_boys day 1000: M = 93.9706, S = 0.03783. 90.0 cm lying → 89.3 cm:
    // z = (89.3 − 93.9706) / (93.9706 × 0.03783) = −4.6706 / 3.554908 = −1.3138 → −1.31
    // (standing: (90.0 − 93.9706) / 3.554908 = −1.1169 → −1.12).
    let mut i = input(Sex::M, 1000, None, Some(90.0));
    i.measured = Some(Measured::Lying);
    assert_eq!(compute(&i).unwrap().length_height_for_age.unwrap().z, -1.31);
    i.measured = Some(Measured::Standing);
    assert_eq!(compute(&i).unwrap().length_height_for_age.unwrap().z, -1.12);
    i.measured = None; // default from 731 days: standing
    assert_eq!(compute(&i).unwrap().length_height_for_age.unwrap().z, -1.12);
    assert!(close(
        corrected_length_cm(731, 90.0, Some(Measured::Lying)),
        89.3,
        1e-12
    ));
}

#[test]
fn correction_also_feeds_weight_for_length_and_bmi() {
    // At 731 days, 10 kg, 65.5 cm lying → 64.8 cm: below the weight-for-height table.
    let mut i = input(Sex::F, 731, Some(10.0), Some(65.5));
    i.measured = Some(Measured::Lying);
    let r = compute(&i).unwrap();
    assert!(r.weight_for_length_height.is_none());
    let expect = z_score(Indicator::BmiForAge, Sex::F, 731, bmi(10.0, 64.8), None).unwrap();
    assert_eq!(r.bmi_for_age.unwrap().z, round2(expect));
    i.measured = Some(Measured::Standing);
    let r = compute(&i).unwrap();
    let expect = z_score(
        Indicator::WeightForLengthHeight,
        Sex::F,
        731,
        10.0,
        Some(65.5),
    )
    .unwrap();
    assert_eq!(r.weight_for_length_height.unwrap().z, round2(expect));
}

#[test]
fn weight_for_length_below_731_days_weight_for_height_from_731() {
    let t = tables().for_sex(Sex::M);
    assert_eq!(
        lms_for_length(Sex::M, 730, 80.0),
        t.wfl.at(800),
        "730 days: weight-for-length"
    );
    assert_eq!(
        lms_for_length(Sex::M, 731, 80.0),
        t.wfh.at(800),
        "731 days: weight-for-height"
    );
    assert!(lms_for_length(Sex::M, 730, 50.0).is_some());
    assert!(
        lms_for_length(Sex::M, 731, 50.0).is_none(),
        "wfh starts at 65 cm"
    );
    assert!(
        lms_for_length(Sex::M, 730, 115.0).is_none(),
        "wfl ends at 110 cm"
    );
    assert!(lms_for_length(Sex::M, 731, 115.0).is_some());
    assert!(lms_for_length(Sex::M, 100, 44.9).is_none());
    assert!(lms_for_length(Sex::M, 100, 110.05).is_none());
    assert!(lms_for_length(Sex::M, 1000, 120.1).is_none());
    assert!(
        lms_for_length(Sex::M, 1857, 100.0).is_none(),
        "no wfh after 60 months"
    );
    assert!(lms_for_length(Sex::M, -1, 100.0).is_none());
}

// ---------------------------------------------------------------------------------------
// Categories (Permenkes 2/2020): every boundary
// ---------------------------------------------------------------------------------------

fn cat(ind: Indicator, age: i64, z: f64) -> Category {
    categorize(ind, age, z)
}

#[test]
fn categories_weight_for_age() {
    use Category::*;
    let w = |z| cat(Indicator::WeightForAge, 100, z);
    assert_eq!(w(-3.01), SeverelyUnderweight);
    assert_eq!(w(-3.0), Underweight);
    assert_eq!(w(-2.01), Underweight);
    assert_eq!(w(-2.0), NormalWeight);
    assert_eq!(w(1.0), NormalWeight);
    assert_eq!(w(1.01), RiskOfOverweight);
    assert_eq!(w(5.0), RiskOfOverweight);
    // School age (WHO 2007, to 120 months): same cut-offs.
    assert_eq!(cat(Indicator::WeightForAge, 3000, -2.0), NormalWeight);
}

#[test]
fn categories_length_height_for_age() {
    use Category::*;
    for age in [100, 1000, 5000] {
        let h = |z| cat(Indicator::LengthHeightForAge, age, z);
        assert_eq!(h(-3.01), SeverelyStunted);
        assert_eq!(h(-3.0), Stunted);
        assert_eq!(h(-2.01), Stunted);
        assert_eq!(h(-2.0), NormalHeight);
        assert_eq!(h(3.0), NormalHeight);
        assert_eq!(h(3.01), Tall);
    }
}

#[test]
fn categories_weight_for_length_and_bmi_under_five() {
    use Category::*;
    for (ind, age) in [
        (Indicator::WeightForLengthHeight, 100),
        (Indicator::WeightForLengthHeight, 1856),
        (Indicator::BmiForAge, 0),
        (Indicator::BmiForAge, 1856),
    ] {
        let c = |z| cat(ind, age, z);
        assert_eq!(c(-3.01), SeverelyWasted);
        assert_eq!(c(-3.0), Wasted);
        assert_eq!(c(-2.01), Wasted);
        assert_eq!(c(-2.0), NormalNutrition);
        assert_eq!(c(1.0), NormalNutrition);
        assert_eq!(c(1.01), PossibleRiskOfOverweight);
        assert_eq!(c(2.0), PossibleRiskOfOverweight);
        assert_eq!(c(2.01), Overweight);
        assert_eq!(c(3.0), Overweight);
        assert_eq!(c(3.01), Obese);
    }
}

#[test]
fn categories_bmi_five_to_eighteen_years() {
    use Category::*;
    for age in [1857, 4000, 6939] {
        let c = |z| cat(Indicator::BmiForAge, age, z);
        assert_eq!(c(-3.01), SeverelyThin);
        assert_eq!(c(-3.0), Thin);
        assert_eq!(c(-2.01), Thin);
        assert_eq!(c(-2.0), NormalNutrition);
        assert_eq!(c(1.0), NormalNutrition);
        assert_eq!(c(1.01), Overweight);
        assert_eq!(c(2.0), Overweight);
        assert_eq!(c(2.01), Obese);
    }
}

#[test]
fn category_labels_and_codes() {
    for c in Category::ALL {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", c.code()));
        assert!(!c.label_id().is_empty() && !c.label_en().is_empty());
    }
    assert_eq!(Category::SeverelyWasted.label_id(), "Gizi buruk");
    assert_eq!(Category::SeverelyThin.label_id(), "Gizi buruk");
    assert_eq!(Category::Stunted.label_id(), "Pendek");
    assert_eq!(Category::Stunted.label_en(), "Stunted");
    assert_eq!(
        Category::PossibleRiskOfOverweight.label_id(),
        "Berisiko gizi lebih"
    );
}

#[test]
fn the_rounded_z_decides_the_category() {
    // A weight whose unrounded z is −2.004 shows as −2.00 and is "normal"; WHO Anthro's
    // unrounded rule would say "kurang". At −2.006 it shows −2.01: "kurang".
    let lms = lms_for_age(Indicator::WeightForAge, Sex::F, 300).unwrap();
    let at = |z: f64| compute(&input(Sex::F, 300, Some(lms.value_at(z)), None)).unwrap();
    let r = at(-2.004).weight_for_age.unwrap();
    assert_eq!((r.z, r.category), (-2.0, Category::NormalWeight));
    assert_eq!(
        categorize(Indicator::WeightForAge, 300, -2.004),
        Category::Underweight
    );
    let r = at(-2.006).weight_for_age.unwrap();
    assert_eq!((r.z, r.category), (-2.01, Category::Underweight));
    // And at +1: 1.004 shows 1.00 (normal), 1.006 shows 1.01 (risiko lebih).
    let r = at(1.004).weight_for_age.unwrap();
    assert_eq!((r.z, r.category), (1.0, Category::NormalWeight));
    let r = at(1.006).weight_for_age.unwrap();
    assert_eq!((r.z, r.category), (1.01, Category::RiskOfOverweight));
}

#[test]
fn round2_has_no_negative_zero() {
    assert_eq!(round2(-0.001).to_string(), "0");
    assert_eq!(round2(1.234), 1.23);
    assert_eq!(round2(-1.236), -1.24);
}

// ---------------------------------------------------------------------------------------
// Impossible input and out-of-range ages
// ---------------------------------------------------------------------------------------

#[test]
fn impossible_weights_are_errors() {
    for w in [0.0, -1.0, 250.01, 3000.0, f64::NAN, f64::INFINITY] {
        let e = compute(&input(Sex::M, 100, Some(w), Some(60.0))).unwrap_err();
        assert!(matches!(e, GrowthError::ImpossibleWeight(_)), "{w}");
        assert_eq!(e.code(), "impossible_weight");
    }
    let e = compute(&input(Sex::M, 100, Some(0.0), None)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "berat badan tidak mungkin: 0 kg (impossible weight)"
    );
    assert!(compute(&input(Sex::M, 100, Some(250.0), None)).is_ok());
    assert!(compute(&input(Sex::M, 100, Some(0.01), None)).is_ok());
}

#[test]
fn impossible_lengths_are_errors() {
    for l in [0.0, -5.0, 20.0, 250.5, f64::NAN, f64::NEG_INFINITY] {
        let e = compute(&input(Sex::F, 100, None, Some(l))).unwrap_err();
        assert!(matches!(e, GrowthError::ImpossibleLength(_)), "{l}");
        assert_eq!(e.code(), "impossible_length");
    }
    let e = compute(&input(Sex::F, 100, None, Some(500.0))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "panjang/tinggi badan tidak mungkin: 500 cm (impossible length/height)"
    );
    // Possible but off the tables: no error, just no z-score.
    let r = compute(&input(Sex::F, 100, Some(1.0), Some(20.5))).unwrap();
    assert!(
        r.length_height_for_age.is_some(),
        "plain LMS has no lower limit"
    );
    assert!(r.weight_for_length_height.is_none());
    assert!(compute(&input(Sex::F, 6000, None, Some(250.0))).is_ok());
}

#[test]
fn date_before_birth_is_an_error() {
    let mut i = input(Sex::M, 0, Some(3.0), None);
    i.date = birth() - Duration::days(1);
    let e = compute(&i).unwrap_err();
    assert_eq!(
        e,
        GrowthError::DateBeforeBirth {
            birth_date: birth(),
            date: i.date
        }
    );
    assert_eq!(e.code(), "date_before_birth");
    assert_eq!(
        e.to_string(),
        "tanggal pengukuran 2019-12-31 sebelum tanggal lahir 2020-01-01 \
         (measurement date before birth date)"
    );
}

#[test]
fn out_of_range_ages_give_none() {
    // After 228 months (6939.75 days): nothing.
    let r = compute(&input(Sex::M, 6940, Some(70.0), Some(175.0))).unwrap();
    assert_eq!(r.age_days, 6940);
    assert!(r.weight_for_age.is_none());
    assert!(r.length_height_for_age.is_none());
    assert!(r.weight_for_length_height.is_none());
    assert!(r.bmi_for_age.is_none());
    // 228 months itself is still covered.
    let r = compute(&input(Sex::M, 6939, Some(70.0), Some(175.0))).unwrap();
    assert!(r.length_height_for_age.is_some() && r.bmi_for_age.is_some());
    assert!(
        r.weight_for_age.is_none(),
        "weight-for-age ends at 120 months"
    );
    // Weight-for-age: 120 months = 3652.5 days.
    assert!(z_score(Indicator::WeightForAge, Sex::F, 3652, 30.0, None).is_some());
    assert!(z_score(Indicator::WeightForAge, Sex::F, 3653, 30.0, None).is_none());
    // Weight-for-length/height only to 60 months.
    let r = compute(&input(Sex::F, 1857, Some(18.0), Some(110.0))).unwrap();
    assert!(r.weight_for_length_height.is_none());
    assert!(r.weight_for_age.is_some() && r.bmi_for_age.is_some());
    // Negative ages never reach the tables.
    for ind in Indicator::ALL {
        assert!(z_score(ind, Sex::M, -1, 10.0, Some(80.0)).is_none());
    }
    // Non-positive measures have no z.
    assert!(z_score(Indicator::WeightForAge, Sex::M, 10, 0.0, None).is_none());
    assert!(z_score(Indicator::WeightForLengthHeight, Sex::M, 10, 5.0, None).is_none());
}

#[test]
fn who_2006_hands_over_to_who_2007_without_a_gap() {
    for sex in SEXES {
        for ind in [
            Indicator::WeightForAge,
            Indicator::LengthHeightForAge,
            Indicator::BmiForAge,
        ] {
            let a = lms_for_age(ind, sex, 1856).unwrap();
            let b = lms_for_age(ind, sex, 1857).unwrap();
            // 1857 days = 61.0103 months: the WHO 2007 row of month 61, nearly.
            let m61 = lms_2007(ind, sex, 61.0).unwrap();
            assert!(close(b.m, m61.m, 0.01), "{ind:?}");
            // The two references meet closely (within 1% of the median).
            assert!((a.m - b.m).abs() / a.m < 0.01, "{ind:?} {sex:?}");
        }
    }
}

#[test]
fn result_serializes_with_codes() {
    let r = compute(&input(Sex::F, 400, Some(10.0), Some(80.0))).unwrap();
    let v = serde_json::to_value(r).unwrap();
    assert_eq!(v["age_days"], 400);
    assert_eq!(v["bmi_for_age"]["z"], -0.43);
    assert_eq!(v["bmi_for_age"]["category"], "normal_nutrition");
    assert_eq!(v["bmi_for_age"]["label_id"], "Gizi baik");
    assert_eq!(v["length_height_for_age"]["category"], "normal_height");
    let r = compute(&input(Sex::F, 400, Some(10.0), None)).unwrap();
    let v = serde_json::to_value(r).unwrap();
    assert!(v["bmi_for_age"].is_null());
    let i: GrowthInput = serde_json::from_value(serde_json::json!({
        "sex": "F", "birth_date": "2020-01-01", "date": "2021-02-04",
        "weight_kg": 10.0, "length_cm": 80.0, "measured": "lying"
    }))
    .unwrap();
    assert_eq!(compute(&i).unwrap().age_days, 400);
}

#[test]
fn indicator_short_ids() {
    assert_eq!(Indicator::LengthHeightForAge.short_id(730), "PB/U");
    assert_eq!(Indicator::LengthHeightForAge.short_id(731), "TB/U");
    assert_eq!(Indicator::WeightForLengthHeight.short_id(100), "BB/PB");
    assert_eq!(Indicator::WeightForLengthHeight.short_id(1000), "BB/TB");
    assert_eq!(Indicator::BmiForAge.short_id(5000), "IMT/U");
    assert_eq!(Indicator::WeightForAge.short_id(0), "BB/U");
    assert!(Indicator::WeightForAge.is_weight_based());
    assert!(!Indicator::LengthHeightForAge.is_weight_based());
}

// ---------------------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------------------

fn check_curve(points: &[CurvePoint]) {
    for p in points {
        assert!(p.sd.windows(2).all(|w| w[0] < w[1]), "{p:?}");
    }
    assert!(points.windows(2).all(|w| w[0].x < w[1].x));
}

#[test]
fn chart_age_based() {
    for sex in SEXES {
        let c = chart(Indicator::WeightForAge, sex, 1856);
        check_curve(&c);
        assert_eq!(c[0].x, 0.0);
        assert_eq!(c.last().unwrap().x, 1856.0);
        let birth_lms = lms_for_age(Indicator::WeightForAge, sex, 0).unwrap();
        assert_eq!(c[0].sd[3], birth_lms.m);
        // weekly to 13 weeks (14 points), months 4..=60 (57), day 730, and the end point.
        assert_eq!(c.len(), 14 + 57 + 1 + 1);
        assert!(c.iter().any(|p| p.x == 730.0) && c.iter().any(|p| p.x == 731.0));

        // The length/height chart steps down at 731 days, as WHO's does.
        let h = chart(Indicator::LengthHeightForAge, sex, 1000);
        check_curve(&h);
        let at = |x: f64| h.iter().find(|p| p.x == x).unwrap().sd[3];
        assert!(at(731.0) < at(730.0));
        assert_eq!(h.last().unwrap().x, 1000.0);

        // Whole school-age range.
        let b = chart(Indicator::BmiForAge, sex, 10_000);
        check_curve(&b);
        assert!(close(b.last().unwrap().x, 228.0 * DAYS_PER_MONTH, 1e-9));
        let w = chart(Indicator::WeightForAge, sex, 10_000);
        assert!(close(w.last().unwrap().x, 120.0 * DAYS_PER_MONTH, 1e-9));
        let h = chart(Indicator::LengthHeightForAge, sex, 4000);
        assert_eq!(h.last().unwrap().x, 4000.0);
        assert_eq!(
            h.last().unwrap().sd[3],
            lms_for_age(Indicator::LengthHeightForAge, sex, 4000)
                .unwrap()
                .m
        );
    }
    assert!(chart(Indicator::WeightForAge, Sex::M, -1).is_empty());
    assert_eq!(chart(Indicator::WeightForAge, Sex::M, 0).len(), 1);
}

#[test]
fn chart_weight_for_length_height() {
    let wfl = chart(Indicator::WeightForLengthHeight, Sex::F, 300);
    check_curve(&wfl);
    assert_eq!(wfl.first().unwrap().x, 45.0);
    assert_eq!(wfl.last().unwrap().x, 110.0);
    assert_eq!(wfl.len(), 131);
    let wfh = chart(Indicator::WeightForLengthHeight, Sex::F, 731);
    check_curve(&wfh);
    assert_eq!(wfh.first().unwrap().x, 65.0);
    assert_eq!(wfh.last().unwrap().x, 120.0);
    assert!(chart(Indicator::WeightForLengthHeight, Sex::F, 1857).is_empty());
    // The chart's lines are the SD lines z_score scores as −3..+3.
    let p = wfh[20];
    for (z, w) in CHART_Z.into_iter().zip(p.sd) {
        let got = z_score(Indicator::WeightForLengthHeight, Sex::F, 731, w, Some(p.x));
        assert!(close(got.unwrap(), z, 1e-6));
    }
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

fn any_sex() -> impl Strategy<Value = Sex> {
    prop_oneof![Just(Sex::M), Just(Sex::F)]
}

proptest! {
    #[test]
    fn heavier_means_higher_weight_for_age(
        sex in any_sex(),
        age in 0i64..=3652,
        w in 0.5f64..120.0,
        dw in 0.01f64..20.0,
    ) {
        let a = z_score(Indicator::WeightForAge, sex, age, w, None).unwrap();
        let b = z_score(Indicator::WeightForAge, sex, age, w + dw, None).unwrap();
        prop_assert!(b > a, "{a} !< {b}");
        let ra = compute(&input(sex, age, Some(w), None)).unwrap().weight_for_age.unwrap();
        let rb = compute(&input(sex, age, Some(w + dw), None)).unwrap().weight_for_age.unwrap();
        prop_assert!(rb.z >= ra.z);
    }

    #[test]
    fn longer_means_higher_length_for_age(
        sex in any_sex(),
        age in 0i64..=6939,
        l in 30.0f64..200.0,
        dl in 0.01f64..30.0,
    ) {
        let a = z_score(Indicator::LengthHeightForAge, sex, age, l, None).unwrap();
        let b = z_score(Indicator::LengthHeightForAge, sex, age, l + dl, None).unwrap();
        prop_assert!(b > a, "{a} !< {b}");
        let ra = compute(&input(sex, age, None, Some(l))).unwrap();
        let rb = compute(&input(sex, age, None, Some(l + dl))).unwrap();
        prop_assert!(rb.length_height_for_age.unwrap().z >= ra.length_height_for_age.unwrap().z);
    }

    #[test]
    fn heavier_means_higher_weight_for_length(
        sex in any_sex(),
        age in 0i64..=1856,
        l in 45.0f64..110.0,
        w in 1.0f64..40.0,
        dw in 0.01f64..10.0,
    ) {
        if let Some(a) = z_score(Indicator::WeightForLengthHeight, sex, age, w, Some(l)) {
            let b = z_score(Indicator::WeightForLengthHeight, sex, age, w + dw, Some(l)).unwrap();
            prop_assert!(b > a);
        }
    }

    #[test]
    fn compute_never_panics_and_scores_are_finite(
        sex in any_sex(),
        age in 0i64..8000,
        w in proptest::option::of(0.1f64..250.0),
        l in proptest::option::of(20.1f64..250.0),
        standing in proptest::option::of(any::<bool>()),
    ) {
        let mut i = input(sex, age, w, l);
        i.measured = standing.map(|s| if s { Measured::Standing } else { Measured::Lying });
        let r = compute(&i).unwrap();
        for x in [r.weight_for_age, r.length_height_for_age, r.weight_for_length_height, r.bmi_for_age]
            .into_iter()
            .flatten()
        {
            prop_assert!(x.z.is_finite());
            prop_assert_eq!(x.label_id, x.category.label_id());
        }
        prop_assert_eq!(r.weight_for_age.is_some(), w.is_some() && age <= 3652);
        prop_assert_eq!(r.length_height_for_age.is_some(), l.is_some() && age <= 6939);
    }
}
