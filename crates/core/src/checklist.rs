//! The ILP home-visit checklist (Kartu Ceklis Kunjungan Rumah, DOMAIN.md): a typed
//! structure per section, and the household block.
//!
//! In the document the answers of a visit are one flat map `key -> scalar`. Reading sorts
//! the known keys into typed sections and keeps every unknown key (written by a newer app
//! version) in `extra`, so a round trip never drops an answer. Keys are unique across
//! sections. Each section also carries its item catalogue (key, type, Indonesian and English
//! labels) for forms.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// A scalar answer as stored in the document. Dates are `YYYY-MM-DD` text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum AnswerValue {
    Bool(bool),
    Int(i64),
    Num(f64),
    Text(String),
}

impl AnswerValue {
    /// From a JSON value (answers files, the app). Arrays and objects are rejected.
    pub fn from_json(key: &str, v: &serde_json::Value) -> Result<Self> {
        Ok(match v {
            serde_json::Value::Bool(b) => AnswerValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => AnswerValue::Int(i),
                None => AnswerValue::Num(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => AnswerValue::Text(s.clone()),
            _ => {
                return Err(CoreError::Invalid(format!(
                    "jawaban '{key}' harus berupa ya/tidak, angka, tanggal atau teks \
                     (answer '{key}' must be a boolean, number, date or text)"
                )))
            }
        })
    }
}

/// The kind of input an item takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Bool,
    Int,
    Number,
    Date,
    Text,
}

/// One checklist item: for forms and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Item {
    pub key: &'static str,
    pub kind: ItemKind,
    pub label_id: &'static str,
    pub label_en: &'static str,
}

/// A Rust type an answer can have.
pub trait AnswerType: Sized {
    const KIND: ItemKind;
    fn from_answer(v: &AnswerValue) -> Option<Self>;
    fn to_answer(&self) -> AnswerValue;
}

impl AnswerType for bool {
    const KIND: ItemKind = ItemKind::Bool;
    fn from_answer(v: &AnswerValue) -> Option<Self> {
        match v {
            AnswerValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn to_answer(&self) -> AnswerValue {
        AnswerValue::Bool(*self)
    }
}
impl AnswerType for i64 {
    const KIND: ItemKind = ItemKind::Int;
    fn from_answer(v: &AnswerValue) -> Option<Self> {
        match v {
            AnswerValue::Int(i) => Some(*i),
            AnswerValue::Num(f) if f.fract() == 0.0 && f.is_finite() => Some(*f as i64),
            _ => None,
        }
    }
    fn to_answer(&self) -> AnswerValue {
        AnswerValue::Int(*self)
    }
}
impl AnswerType for f64 {
    const KIND: ItemKind = ItemKind::Number;
    fn from_answer(v: &AnswerValue) -> Option<Self> {
        match v {
            AnswerValue::Num(f) if f.is_finite() => Some(*f),
            AnswerValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    fn to_answer(&self) -> AnswerValue {
        AnswerValue::Num(*self)
    }
}
impl AnswerType for NaiveDate {
    const KIND: ItemKind = ItemKind::Date;
    fn from_answer(v: &AnswerValue) -> Option<Self> {
        match v {
            AnswerValue::Text(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
            _ => None,
        }
    }
    fn to_answer(&self) -> AnswerValue {
        AnswerValue::Text(self.format("%Y-%m-%d").to_string())
    }
}
impl AnswerType for String {
    const KIND: ItemKind = ItemKind::Text;
    fn from_answer(v: &AnswerValue) -> Option<Self> {
        match v {
            AnswerValue::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
    fn to_answer(&self) -> AnswerValue {
        AnswerValue::Text(self.clone())
    }
}

fn kind_hint(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Bool => "ya/tidak (true/false)",
        ItemKind::Int => "bilangan bulat (integer)",
        ItemKind::Number => "angka (number)",
        ItemKind::Date => "tanggal YYYY-MM-DD (date)",
        ItemKind::Text => "teks (text)",
    }
}

macro_rules! section {
    ($(#[$meta:meta])* $name:ident, $code:literal, $label_id:literal, $label_en:literal {
        $($field:ident : $ty:ty => $id:literal, $en:literal;)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $(#[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>,)*
        }

        impl $name {
            pub const CODE: &'static str = $code;
            pub const LABEL_ID: &'static str = $label_id;
            pub const LABEL_EN: &'static str = $label_en;
            pub const ITEMS: &'static [Item] = &[
                $(Item { key: stringify!($field), kind: <$ty as AnswerType>::KIND, label_id: $id, label_en: $en },)*
            ];

            /// Moves this section's keys out of `map`; a known key of the wrong type is an error.
            pub fn take_from(map: &mut BTreeMap<String, AnswerValue>) -> Result<Self> {
                let mut out = Self::default();
                $(
                    if let Some(v) = map.remove(stringify!($field)) {
                        out.$field = Some(<$ty as AnswerType>::from_answer(&v).ok_or_else(|| {
                            CoreError::Invalid(format!(
                                "jawaban '{}' harus {} (answer '{}' has the wrong type)",
                                stringify!($field), kind_hint(<$ty as AnswerType>::KIND), stringify!($field)
                            ))
                        })?);
                    }
                )*
                Ok(out)
            }

            /// Like `take_from` but keeps mistyped values in `map` instead of failing
            /// (reading documents must never lose data).
            pub fn take_lenient(map: &mut BTreeMap<String, AnswerValue>) -> Self {
                let mut out = Self::default();
                $(
                    if let Some(v) = map.get(stringify!($field)) {
                        if let Some(t) = <$ty as AnswerType>::from_answer(v) {
                            out.$field = Some(t);
                            map.remove(stringify!($field));
                        }
                    }
                )*
                out
            }

            pub fn put_into(&self, map: &mut BTreeMap<String, AnswerValue>) {
                $(
                    if let Some(v) = &self.$field {
                        map.insert(stringify!($field).to_string(), v.to_answer());
                    }
                )*
            }

            pub fn is_empty(&self) -> bool {
                true $(&& self.$field.is_none())*
            }
        }
    };
}

section!(
    /// Household block, once per household (DOMAIN.md "Household block").
    HouseholdChecklist, "household", "Rumah tangga", "Household" {
        jkn_all: bool => "Semua anggota keluarga memiliki JKN", "All members have JKN health insurance";
        clean_water: bool => "Sumber air bersih", "Clean water source";
        healthy_latrine: bool => "Jamban sehat", "Healthy latrine";
        ventilation_lighting: bool => "Ventilasi dan pencahayaan cukup", "Adequate ventilation and lighting";
        member_mental_disorder: bool => "Ada anggota dengan gangguan jiwa", "A member with a mental disorder";
        member_tb_symptoms: bool => "Ada anggota dengan gejala TBC", "A member with TB symptoms";
        member_hypertension: bool => "Ada anggota dengan hipertensi", "A member with hypertension";
        member_diabetes: bool => "Ada anggota dengan diabetes", "A member with diabetes";
        smoking_in_house: bool => "Ada yang merokok di dalam rumah", "Someone smokes inside the house";
    }
);

section!(
    /// Items every section ends with, and items shared by several sections.
    CommonAnswers, "common", "Umum", "Common" {
        buku_kia: bool => "Memiliki Buku KIA", "Owns the Buku KIA (MCH handbook)";
        next_service: String => "Pengingat layanan berikutnya", "Reminder of the next service";
        next_service_date: NaiveDate => "Tanggal layanan berikutnya", "Date of the next service";
        reported_date: NaiveDate => "Tanggal melapor ke nakes", "Date reported to the health worker";
        smoking: bool => "Merokok", "Smokes";
        mental_health_screened: bool => "Skrining kesehatan jiwa", "Mental health screening";
        blood_sugar_mg_dl: f64 => "Gula darah (mg/dL)", "Blood sugar (mg/dL)";
        kb_method: String => "Metode KB", "Family planning method";
    }
);

section!(
    /// 1. Ibu hamil.
    PregnancyAnswers, "pregnancy", "Ibu hamil", "Pregnancy" {
        anc_k1: NaiveDate => "ANC K1 (tanggal)", "ANC K1 (date)";
        anc_k2: NaiveDate => "ANC K2 (tanggal)", "ANC K2 (date)";
        anc_k3: NaiveDate => "ANC K3 (tanggal)", "ANC K3 (date)";
        anc_k4: NaiveDate => "ANC K4 (tanggal)", "ANC K4 (date)";
        anc_k5: NaiveDate => "ANC K5 (tanggal)", "ANC K5 (date)";
        anc_k6: NaiveDate => "ANC K6 (tanggal)", "ANC K6 (date)";
        anc_last_place: String => "Tempat ANC terakhir", "Place of the last ANC";
        anc_last_by: String => "ANC terakhir oleh (dokter/bidan)", "Last ANC by (doctor/midwife)";
        ttd_received: bool => "Menerima TTD/MMS", "Received iron tablets (TTD/MMS)";
        ttd_tablets_taken: i64 => "Jumlah TTD/MMS diminum", "Iron tablets taken";
        kelas_ibu_hamil: bool => "Mengikuti kelas ibu hamil", "Attends the pregnancy class";
    }
);

section!(
    /// 2. Ibu bersalin dan nifas.
    PostpartumAnswers, "postpartum", "Ibu bersalin dan nifas", "Birth and postpartum" {
        delivery_at_facility: bool => "Bersalin di fasilitas kesehatan", "Delivered at a health facility";
        delivery_by_nakes: bool => "Ditolong tenaga kesehatan", "Assisted by a health worker";
        kf1: NaiveDate => "KF1 (6–48 jam)", "KF1 (6–48 hours)";
        kf2: NaiveDate => "KF2 (3–7 hari)", "KF2 (3–7 days)";
        kf3: NaiveDate => "KF3 (8–28 hari)", "KF3 (8–28 days)";
        kf4: NaiveDate => "KF4 (29–42 hari)", "KF4 (29–42 days)";
        vit_a_postpartum: bool => "Vitamin A ibu nifas (2 kapsul merah)", "Postpartum vitamin A (2 red capsules)";
        kb_postpartum: bool => "KB pasca persalinan", "Postpartum family planning";
    }
);

section!(
    /// 3. Bayi 0–6 bulan.
    InfantAnswers, "infant", "Bayi 0–6 bulan", "Infant 0–6 months" {
        kn1: NaiveDate => "KN1 (6–48 jam)", "KN1 (6–48 hours)";
        kn2: NaiveDate => "KN2 (3–7 hari)", "KN2 (3–7 days)";
        kn3: NaiveDate => "KN3 (8–28 hari)", "KN3 (8–28 days)";
        imd: bool => "Inisiasi menyusu dini", "Early initiation of breastfeeding";
        exclusive_breastfeeding: bool => "ASI eksklusif", "Exclusive breastfeeding";
        weighed_this_month: bool => "Ditimbang bulan ini", "Weighed this month";
    }
);

section!(
    /// Immunisation record (Buku KIA 2024 schedule), for infants and children: dates given.
    ImmunisationAnswers, "immunisation", "Imunisasi", "Immunisation" {
        imm_hb0: NaiveDate => "HB0", "HB0";
        imm_bcg: NaiveDate => "BCG", "BCG";
        imm_polio1: NaiveDate => "Polio 1", "Polio 1";
        imm_polio2: NaiveDate => "Polio 2", "Polio 2";
        imm_polio3: NaiveDate => "Polio 3", "Polio 3";
        imm_polio4: NaiveDate => "Polio 4", "Polio 4";
        imm_dpt_hb_hib1: NaiveDate => "DPT-HB-Hib 1", "DPT-HB-Hib 1";
        imm_dpt_hb_hib2: NaiveDate => "DPT-HB-Hib 2", "DPT-HB-Hib 2";
        imm_dpt_hb_hib3: NaiveDate => "DPT-HB-Hib 3", "DPT-HB-Hib 3";
        imm_dpt_hb_hib4: NaiveDate => "DPT-HB-Hib lanjutan", "DPT-HB-Hib booster";
        imm_pcv1: NaiveDate => "PCV 1", "PCV 1";
        imm_pcv2: NaiveDate => "PCV 2", "PCV 2";
        imm_pcv3: NaiveDate => "PCV 3", "PCV 3";
        imm_rv1: NaiveDate => "Rotavirus 1", "Rotavirus 1";
        imm_rv2: NaiveDate => "Rotavirus 2", "Rotavirus 2";
        imm_rv3: NaiveDate => "Rotavirus 3", "Rotavirus 3";
        imm_ipv1: NaiveDate => "IPV 1", "IPV 1";
        imm_ipv2: NaiveDate => "IPV 2", "IPV 2";
        imm_mr1: NaiveDate => "MR 1", "MR 1";
        imm_mr2: NaiveDate => "MR 2", "MR 2";
        imm_je: NaiveDate => "JE (daerah endemis)", "JE (endemic areas)";
    }
);

section!(
    /// 4. Balita dan anak prasekolah 6–71 bulan.
    ToddlerAnswers, "toddler", "Balita dan anak prasekolah", "Toddler and preschool" {
        weighed_monthly: bool => "Ditimbang tiap bulan", "Weighed every month";
        vit_a: NaiveDate => "Vitamin A (tanggal kapsul terakhir)", "Vitamin A (date of last capsule)";
        vit_a_capsule: String => "Kapsul vitamin A (biru/merah)", "Vitamin A capsule (blue/red)";
        mp_asi: bool => "MP-ASI sesuai umur", "Age-appropriate complementary feeding";
        kpsp_done: bool => "Pemeriksaan perkembangan (KPSP)", "Development check (KPSP)";
        kpsp_result: String => "Hasil KPSP", "KPSP result";
        deworming: NaiveDate => "Obat cacing (tanggal)", "Deworming (date)";
    }
);

section!(
    /// 5. Usia sekolah dan remaja.
    SchoolAnswers, "school_adolescent", "Usia sekolah dan remaja", "School age and adolescent" {
        ttd_weekly: bool => "TTD mingguan (remaja putri)", "Weekly iron tablet (adolescent girls)";
        anaemia_screened: bool => "Skrining anemia", "Anaemia screening";
        hb_g_dl: f64 => "Hemoglobin (g/dL)", "Haemoglobin (g/dL)";
        bias_immunisation: bool => "Imunisasi BIAS", "School immunisation (BIAS)";
        hpv: bool => "Imunisasi HPV", "HPV immunisation";
        drugs: bool => "Penyalahgunaan NAPZA", "Drug use";
    }
);

section!(
    /// 6. Usia dewasa.
    AdultAnswers, "adult", "Usia dewasa", "Adult" {
        hypertension_screened: bool => "Skrining hipertensi", "Hypertension screening";
        diabetes_screened: bool => "Skrining diabetes", "Diabetes screening";
        obesity_screened: bool => "Skrining obesitas", "Obesity screening";
        waist_cm: f64 => "Lingkar perut (cm)", "Waist circumference (cm)";
        cervical_screened: bool => "Skrining kanker leher rahim", "Cervical cancer screening";
        breast_screened: bool => "Skrining kanker payudara", "Breast cancer screening";
        kb_active: bool => "Peserta KB aktif", "Uses family planning";
    }
);

section!(
    /// 7. Lansia.
    ElderlyAnswers, "elderly", "Lansia", "Elderly" {
        aks_score: i64 => "Skor AKS/Barthel (0–20)", "ADL/Barthel score (0–20)";
        skilas: NaiveDate => "Skrining SKILAS (tanggal)", "SKILAS screening (date)";
        cognition_problem: bool => "Gangguan kognitif", "Cognitive impairment";
        depression_problem: bool => "Gejala depresi", "Signs of depression";
        falls: bool => "Pernah jatuh", "Has fallen";
        hypertension_treated: bool => "Minum obat hipertensi", "On hypertension treatment";
    }
);

section!(
    /// 8. Skrining TBC, for any member.
    TbAnswers, "tb", "Skrining TBC", "TB screening" {
        tb_cough_2w: bool => "Batuk ≥ 2 minggu", "Cough ≥ 2 weeks";
        tb_blood_sputum: bool => "Dahak bercampur darah", "Blood in sputum";
        tb_fever: bool => "Demam", "Fever";
        tb_night_sweats: bool => "Berkeringat malam tanpa aktivitas", "Night sweats";
        tb_weight_loss: bool => "Berat badan turun", "Weight loss";
        tb_contact: bool => "Kontak dengan pasien TBC", "Contact with a TB patient";
        tb_on_treatment: bool => "Sedang berobat TBC", "On TB treatment";
        tb_adherent: bool => "Minum obat TBC teratur", "Takes TB medicine regularly";
    }
);

/// All answers of one visit, by section, plus unknown keys kept as they were.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VisitAnswers {
    pub common: CommonAnswers,
    pub pregnancy: PregnancyAnswers,
    pub postpartum: PostpartumAnswers,
    pub infant: InfantAnswers,
    pub immunisation: ImmunisationAnswers,
    pub toddler: ToddlerAnswers,
    pub school: SchoolAnswers,
    pub adult: AdultAnswers,
    pub elderly: ElderlyAnswers,
    pub tb: TbAnswers,
    /// Answers this version does not know (from a newer app); kept, never dropped.
    pub extra: BTreeMap<String, AnswerValue>,
}

impl VisitAnswers {
    /// Strict parse: a known key with a wrong type is an error (input validation).
    pub fn from_map(mut map: BTreeMap<String, AnswerValue>) -> Result<Self> {
        Ok(VisitAnswers {
            common: CommonAnswers::take_from(&mut map)?,
            pregnancy: PregnancyAnswers::take_from(&mut map)?,
            postpartum: PostpartumAnswers::take_from(&mut map)?,
            infant: InfantAnswers::take_from(&mut map)?,
            immunisation: ImmunisationAnswers::take_from(&mut map)?,
            toddler: ToddlerAnswers::take_from(&mut map)?,
            school: SchoolAnswers::take_from(&mut map)?,
            adult: AdultAnswers::take_from(&mut map)?,
            elderly: ElderlyAnswers::take_from(&mut map)?,
            tb: TbAnswers::take_from(&mut map)?,
            extra: map,
        })
    }

    /// Lenient parse for reading documents: mistyped values are kept in `extra`.
    pub fn from_map_lenient(mut map: BTreeMap<String, AnswerValue>) -> Self {
        VisitAnswers {
            common: CommonAnswers::take_lenient(&mut map),
            pregnancy: PregnancyAnswers::take_lenient(&mut map),
            postpartum: PostpartumAnswers::take_lenient(&mut map),
            infant: InfantAnswers::take_lenient(&mut map),
            immunisation: ImmunisationAnswers::take_lenient(&mut map),
            toddler: ToddlerAnswers::take_lenient(&mut map),
            school: SchoolAnswers::take_lenient(&mut map),
            adult: AdultAnswers::take_lenient(&mut map),
            elderly: ElderlyAnswers::take_lenient(&mut map),
            tb: TbAnswers::take_lenient(&mut map),
            extra: map,
        }
    }

    /// Parses a JSON object (e.g. `--answers FILE.json`).
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| {
            CoreError::Invalid(
                "berkas jawaban harus berupa objek JSON {\"kunci\": nilai} \
                 (answers must be a JSON object)"
                    .into(),
            )
        })?;
        let mut map = BTreeMap::new();
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            map.insert(k.clone(), AnswerValue::from_json(k, v)?);
        }
        Self::from_map(map)
    }

    pub fn to_map(&self) -> BTreeMap<String, AnswerValue> {
        let mut map = self.extra.clone();
        self.common.put_into(&mut map);
        self.pregnancy.put_into(&mut map);
        self.postpartum.put_into(&mut map);
        self.infant.put_into(&mut map);
        self.immunisation.put_into(&mut map);
        self.toddler.put_into(&mut map);
        self.school.put_into(&mut map);
        self.adult.put_into(&mut map);
        self.elderly.put_into(&mut map);
        self.tb.put_into(&mut map);
        map
    }

    pub fn is_empty(&self) -> bool {
        self.to_map().is_empty()
    }
}

impl Serialize for VisitAnswers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for VisitAnswers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = BTreeMap::<String, AnswerValue>::deserialize(d)?;
        Ok(VisitAnswers::from_map_lenient(map))
    }
}

/// The item catalogue of every section, for forms: (section code, labels, items).
pub fn catalogue() -> Vec<(&'static str, &'static str, &'static str, &'static [Item])> {
    vec![
        (
            HouseholdChecklist::CODE,
            HouseholdChecklist::LABEL_ID,
            HouseholdChecklist::LABEL_EN,
            HouseholdChecklist::ITEMS,
        ),
        (
            CommonAnswers::CODE,
            CommonAnswers::LABEL_ID,
            CommonAnswers::LABEL_EN,
            CommonAnswers::ITEMS,
        ),
        (
            PregnancyAnswers::CODE,
            PregnancyAnswers::LABEL_ID,
            PregnancyAnswers::LABEL_EN,
            PregnancyAnswers::ITEMS,
        ),
        (
            PostpartumAnswers::CODE,
            PostpartumAnswers::LABEL_ID,
            PostpartumAnswers::LABEL_EN,
            PostpartumAnswers::ITEMS,
        ),
        (
            InfantAnswers::CODE,
            InfantAnswers::LABEL_ID,
            InfantAnswers::LABEL_EN,
            InfantAnswers::ITEMS,
        ),
        (
            ImmunisationAnswers::CODE,
            ImmunisationAnswers::LABEL_ID,
            ImmunisationAnswers::LABEL_EN,
            ImmunisationAnswers::ITEMS,
        ),
        (
            ToddlerAnswers::CODE,
            ToddlerAnswers::LABEL_ID,
            ToddlerAnswers::LABEL_EN,
            ToddlerAnswers::ITEMS,
        ),
        (
            SchoolAnswers::CODE,
            SchoolAnswers::LABEL_ID,
            SchoolAnswers::LABEL_EN,
            SchoolAnswers::ITEMS,
        ),
        (
            AdultAnswers::CODE,
            AdultAnswers::LABEL_ID,
            AdultAnswers::LABEL_EN,
            AdultAnswers::ITEMS,
        ),
        (
            ElderlyAnswers::CODE,
            ElderlyAnswers::LABEL_ID,
            ElderlyAnswers::LABEL_EN,
            ElderlyAnswers::ITEMS,
        ),
        (
            TbAnswers::CODE,
            TbAnswers::LABEL_ID,
            TbAnswers::LABEL_EN,
            TbAnswers::ITEMS,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_unique_across_sections() {
        let mut seen = HashSet::new();
        for (_, _, _, items) in catalogue() {
            for it in items {
                assert!(seen.insert(it.key), "duplicate checklist key {}", it.key);
            }
        }
        assert!(seen.len() > 80);
    }

    #[test]
    fn unknown_answers_are_kept() {
        let json = serde_json::json!({
            "buku_kia": true, "anc_k1": "2026-01-05", "ttd_tablets_taken": 30,
            "future_item_v9": "ya", "tb_cough_2w": false
        });
        let a = VisitAnswers::from_json(&json).unwrap();
        assert_eq!(a.common.buku_kia, Some(true));
        assert_eq!(a.pregnancy.anc_k1, Some("2026-01-05".parse().unwrap()));
        assert_eq!(a.pregnancy.ttd_tablets_taken, Some(30));
        assert_eq!(a.tb.tb_cough_2w, Some(false));
        assert_eq!(
            a.extra.get("future_item_v9"),
            Some(&AnswerValue::Text("ya".into()))
        );
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn wrong_type_is_a_clear_error_strict_but_kept_lenient() {
        let json = serde_json::json!({"buku_kia": "maybe"});
        let e = VisitAnswers::from_json(&json).unwrap_err().to_string();
        assert!(e.contains("buku_kia") && e.contains("ya/tidak"), "{e}");
        let mut m = BTreeMap::new();
        m.insert("buku_kia".to_string(), AnswerValue::Text("maybe".into()));
        let a = VisitAnswers::from_map_lenient(m);
        assert_eq!(a.common.buku_kia, None);
        assert_eq!(a.extra.len(), 1);
        let e = VisitAnswers::from_json(&serde_json::json!({"anc_k1": "05/01/2026"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
        assert!(VisitAnswers::from_json(&serde_json::json!([1])).is_err());
    }
}
