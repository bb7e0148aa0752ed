//! Danger signs per life stage (DOMAIN.md, Kartu Ceklis Kunjungan Rumah; Buku KIA 2024
//! "tanda bahaya"). Any danger sign recorded at a visit creates a referral to the bidan.

use serde::Serialize;

use crate::lifestage::LifeStage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DangerSign {
    pub code: &'static str,
    pub label_id: &'static str,
    pub label_en: &'static str,
}

const fn ds(code: &'static str, label_id: &'static str, label_en: &'static str) -> DangerSign {
    DangerSign {
        code,
        label_id,
        label_en,
    }
}

/// Ibu hamil (Buku KIA: tanda bahaya kehamilan).
pub const PREGNANCY: &[DangerSign] = &[
    ds("preg_bleeding", "Perdarahan", "Bleeding"),
    ds(
        "preg_headache_vision",
        "Sakit kepala hebat / pandangan kabur",
        "Severe headache / blurred vision",
    ),
    ds("preg_convulsions", "Kejang", "Convulsions"),
    ds("preg_high_fever", "Demam tinggi", "High fever"),
    ds(
        "preg_amniotic_leak",
        "Air ketuban keluar sebelum waktunya",
        "Leaking amniotic fluid",
    ),
    ds(
        "preg_reduced_movement",
        "Gerakan janin berkurang",
        "Reduced fetal movement",
    ),
    ds(
        "preg_severe_vomiting",
        "Muntah terus dan tidak mau makan",
        "Severe vomiting",
    ),
    ds(
        "preg_swelling",
        "Bengkak di muka, tangan atau kaki",
        "Swelling of face, hands or feet",
    ),
    ds("preg_breathless", "Sesak napas", "Shortness of breath"),
];

/// Ibu bersalin dan nifas.
pub const POSTPARTUM: &[DangerSign] = &[
    ds("pp_heavy_bleeding", "Perdarahan banyak", "Heavy bleeding"),
    ds(
        "pp_foul_discharge",
        "Keluar cairan berbau dari jalan lahir",
        "Foul-smelling discharge",
    ),
    ds("pp_fever", "Demam", "Fever"),
    ds(
        "pp_breast_pain",
        "Payudara bengkak, merah dan sakit",
        "Swollen, painful breasts",
    ),
    ds("pp_convulsions", "Kejang", "Convulsions"),
    ds("pp_depression", "Sedih berlebihan / depresi", "Depression"),
];

/// Bayi (neonatus and infants).
pub const INFANT: &[DangerSign] = &[
    ds("inf_not_feeding", "Tidak mau menyusu", "Not feeding"),
    ds("inf_convulsions", "Kejang", "Convulsions"),
    ds(
        "inf_fast_breathing",
        "Napas cepat / sesak",
        "Fast or difficult breathing",
    ),
    ds(
        "inf_fever_cold",
        "Demam atau tubuh dingin",
        "Fever or cold body",
    ),
    ds("inf_jaundice", "Kulit dan mata kuning", "Jaundice"),
    ds(
        "inf_umbilical",
        "Tali pusat kemerahan / bernanah",
        "Red or pus-filled umbilicus",
    ),
    ds("inf_diarrhoea", "Diare", "Diarrhoea"),
];

/// Balita: the infant signs plus malnutrition signs.
pub const CHILD_EXTRA: &[DangerSign] = &[
    ds(
        "child_severe_wasting",
        "Sangat kurus / tampak gizi buruk",
        "Visible severe wasting",
    ),
    ds(
        "child_oedema",
        "Bengkak kedua kaki (edema)",
        "Oedema of both feet",
    ),
    ds(
        "child_lethargic",
        "Lemas / tidak sadar",
        "Lethargic or unconscious",
    ),
];

/// Any age: TB suspicion and acute emergencies reported by the cadre.
pub const GENERAL: &[DangerSign] = &[
    ds(
        "tb_presumptive",
        "Terduga TBC (batuk ≥ 2 minggu dengan gejala lain)",
        "Presumptive TB",
    ),
    ds(
        "bp_very_high",
        "Tekanan darah sangat tinggi (≥ 180/110)",
        "Very high blood pressure (≥ 180/110)",
    ),
    ds("suicidal", "Pikiran bunuh diri", "Suicidal thoughts"),
];

/// The danger signs that apply at a life stage.
pub fn for_stage(stage: LifeStage) -> Vec<DangerSign> {
    let mut v: Vec<DangerSign> = match stage {
        LifeStage::Pregnancy => PREGNANCY.to_vec(),
        LifeStage::Postpartum => POSTPARTUM.to_vec(),
        LifeStage::Infant => INFANT.to_vec(),
        LifeStage::Toddler => INFANT.iter().chain(CHILD_EXTRA).copied().collect(),
        _ => Vec::new(),
    };
    v.extend_from_slice(GENERAL);
    v
}

/// Looks a danger sign up by code, in every list.
pub fn lookup(code: &str) -> Option<DangerSign> {
    [PREGNANCY, POSTPARTUM, INFANT, CHILD_EXTRA, GENERAL]
        .iter()
        .flat_map(|l| l.iter())
        .find(|d| d.code == code)
        .copied()
}

/// The referral reason text for a set of danger signs (Indonesian labels).
pub fn referral_reason(codes: &[String]) -> String {
    let labels: Vec<&str> = codes
        .iter()
        .map(|c| lookup(c).map(|d| d.label_id).unwrap_or(c.as_str()))
        .collect();
    format!("Tanda bahaya: {}", labels.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_unique_and_found() {
        let all: Vec<_> = [PREGNANCY, POSTPARTUM, INFANT, CHILD_EXTRA, GENERAL].concat();
        let mut codes: Vec<_> = all.iter().map(|d| d.code).collect();
        codes.sort();
        let n = codes.len();
        codes.dedup();
        assert_eq!(n, codes.len());
        assert!(lookup("preg_bleeding").is_some());
        assert!(for_stage(LifeStage::Toddler)
            .iter()
            .any(|d| d.code == "inf_convulsions"));
        assert!(!for_stage(LifeStage::Adult)
            .iter()
            .any(|d| d.code == "preg_bleeding"));
        assert_eq!(
            referral_reason(&["preg_bleeding".into(), "x".into()]),
            "Tanda bahaya: Perdarahan, x"
        );
    }
}
