//! Monthly recap (rekapitulasi bulanan) for area monitoring (PWS, Pemantauan Wilayah
//! Setempat) per posyandu, desa or the whole puskesmas area.
//!
//! [`monthly_recap`] is a pure function of the household documents' views and a month;
//! it reads no clock and no store, so the same figures come out on a device and on the
//! server. Every [`Indicator`] carries its numerator, denominator, value and the text of its
//! definition (Bahasa Indonesia and English) and source, so a data officer can check each
//! figure against the register.
//!
//! # Who is counted
//!
//! * Households with status `active` only (a `merged` household's members were copied into
//!   the household it was merged into; `moved` / `dissolved` ones are no longer here).
//! * A member counts in a cohort when not voided, born, alive and not moved out on the
//!   date the cohort is taken (see [`crate::schedule::member_is_active`]).
//! * Only visits that are not voided count; a date answer counts only when it is on or
//!   before the last day of the month (so a past month gives the picture of that month).
//!
//! # Sources
//!
//! * PWS KIA: Kemenkes, *Pedoman Pemantauan Wilayah Setempat Kesehatan Ibu dan Anak (PWS
//!   KIA)*, 2010; contacts K1–K6, KF1–KF4 and KN1–KN3 as in Permenkes 21/2021 (pelayanan
//!   kesehatan masa hamil, persalinan, nifas), with the windows used by the task engine
//!   ([`crate::schedule`]).
//! * Immunisation: Buku KIA 2024 (jadwal imunisasi rutin), Permenkes 12/2017
//!   (penyelenggaraan imunisasi: HB0 0–7 days, imunisasi dasar lengkap before 12 months).
//! * Vitamin A: Kemenkes, *Panduan Manajemen Suplementasi Vitamin A*, 2016 (February and
//!   August rounds, sweeping in March / September).
//! * Weighing D/S and N/D: SKDN (Kemenkes, *Pedoman Pemantauan Pertumbuhan*; Permenkes
//!   155/2010 KMS), statuses from [`crate::schedule::weighing_status`].
//! * Stunting, wasting, underweight: Permenkes 2/2020 (Standar Antropometri Anak) with the
//!   WHO Child Growth Standards ([`crate::growth`]); prevalence among children measured,
//!   as in SSGI / e-PPGBM reporting (z < −2 SD).
//!
//! Where these sources define coverage against a yearly population target (sasaran), this
//! recap uses the people registered in the household documents instead: the definitions
//! below say which cohort each denominator is.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checklist::ImmunisationAnswers;
use crate::growth::{self, GrowthInput};
use crate::lifestage::{life_stage, months_between, LifeStage, MAX_PREGNANCY_DAYS};
use crate::model::{HouseholdStatus, HouseholdView, Member, ReferralStatus, Visit};
use crate::schedule::dates::{plus_days, plus_months};
use crate::schedule::{member_is_active, weighing_status, WeighingStatus, YearMonth};

/// How households are grouped.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One group per posyandu (`posyandu_id`; households without one form their own group).
    Posyandu,
    /// One group per desa (kode wilayah `area_code`).
    Desa,
    /// One group: everything given (the puskesmas area).
    Area,
}

impl Grouping {
    pub fn code(self) -> &'static str {
        match self {
            Grouping::Posyandu => "posyandu",
            Grouping::Desa => "desa",
            Grouping::Area => "area",
        }
    }
    pub fn parse(s: &str) -> Option<Grouping> {
        Some(match s.trim() {
            "posyandu" => Grouping::Posyandu,
            "desa" | "village" => Grouping::Desa,
            "area" | "puskesmas" | "all" => Grouping::Area,
            _ => return None,
        })
    }
}

/// What the recap is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecapOptions {
    pub month: YearMonth,
    pub grouping: Grouping,
    /// The day the ages of open referrals are measured on (default: the last day of the
    /// month; pass today when the month is not over yet). Clamped to the month.
    pub as_of: Option<NaiveDate>,
}

/// The kind of number an indicator is.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// `value` = numerator / denominator × 100, one decimal.
    Percent,
    /// `value` = numerator (no denominator).
    Count,
    /// `value` = a number of days (median age of open referrals).
    Days,
}

/// One figure of the recap, with its definition next to it.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    /// Stable code (`anc_k1`, `weighing_ds`, …).
    pub id: String,
    /// Section code (`visits`, `anc`, `neonatal`, `postpartum`, `immunisation`, `vitamin_a`,
    /// `weighing`, `nutrition`, `referrals`).
    pub section: String,
    pub label_id: String,
    pub label_en: String,
    pub unit: Unit,
    pub numerator: u64,
    /// `None` for counts; `Some(0)` when nobody is in the cohort (then `value` is `None`).
    pub denominator: Option<u64>,
    pub value: Option<f64>,
    pub definition_id: String,
    pub definition_en: String,
    pub source: String,
}

/// Ages of the open referrals of a group.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferralAges {
    pub open: u64,
    pub median_days: Option<f64>,
    pub max_days: Option<i64>,
    pub over_7_days: u64,
    pub over_30_days: u64,
}

/// The recap of one group.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecap {
    /// Posyandu id, area code, or `all`; `TOTAL` for the total row.
    pub key: String,
    pub label: String,
    pub area_codes: Vec<String>,
    pub posyandu_ids: Vec<String>,
    pub households: u64,
    /// Members active on the last day of the month.
    pub members: u64,
    pub indicators: Vec<Indicator>,
    pub open_referrals: ReferralAges,
}

impl GroupRecap {
    pub fn indicator(&self, id: &str) -> Option<&Indicator> {
        self.indicators.iter().find(|i| i.id == id)
    }
}

/// The monthly recap.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthlyRecap {
    /// `YYYY-MM`.
    pub month: String,
    pub month_label_id: String,
    pub month_label_en: String,
    pub grouping: Grouping,
    pub as_of: NaiveDate,
    pub groups: Vec<GroupRecap>,
    /// All groups together.
    pub total: GroupRecap,
}

/// Reads the date of one dose from a visit's immunisation answers.
pub type DoseDate = fn(&ImmunisationAnswers) -> Option<NaiveDate>;

/// The doses of "imunisasi dasar lengkap": every dose the Buku KIA 2024 schedules before
/// 12 months (JE only in endemic areas, so not required).
pub const IDL_DOSES: &[(&str, DoseDate)] = &[
    ("imm_hb0", |a| a.imm_hb0),
    ("imm_bcg", |a| a.imm_bcg),
    ("imm_polio1", |a| a.imm_polio1),
    ("imm_polio2", |a| a.imm_polio2),
    ("imm_polio3", |a| a.imm_polio3),
    ("imm_polio4", |a| a.imm_polio4),
    ("imm_dpt_hb_hib1", |a| a.imm_dpt_hb_hib1),
    ("imm_dpt_hb_hib2", |a| a.imm_dpt_hb_hib2),
    ("imm_dpt_hb_hib3", |a| a.imm_dpt_hb_hib3),
    ("imm_pcv1", |a| a.imm_pcv1),
    ("imm_pcv2", |a| a.imm_pcv2),
    ("imm_rv1", |a| a.imm_rv1),
    ("imm_rv2", |a| a.imm_rv2),
    ("imm_rv3", |a| a.imm_rv3),
    ("imm_ipv1", |a| a.imm_ipv1),
    ("imm_ipv2", |a| a.imm_ipv2),
    ("imm_mr1", |a| a.imm_mr1),
];

/// HB0 counts when given on day 0..=7 (Permenkes 12/2017: HB0 0–7 days; < 24 h ideal).
pub const HB0_LAST_DAY: i64 = 7;
/// KN windows in days after birth (Permenkes 21/2021; KN1 6–48 h = day 0..=2).
pub const KN_WINDOWS: [(i64, i64); 3] = [(0, 2), (3, 7), (8, 28)];
/// KF windows in days after delivery (Permenkes 21/2021).
pub const KF_WINDOWS: [(i64, i64); 4] = [(0, 2), (3, 7), (8, 28), (29, 42)];

/// A static definition: (id, section, unit, label id, label en, definition id, definition
/// en, source). The numbers are computed in [`Counts`].
struct Def {
    id: &'static str,
    section: &'static str,
    unit: Unit,
    label_id: &'static str,
    label_en: &'static str,
    def_id: &'static str,
    def_en: &'static str,
    source: &'static str,
}

const PWS_KIA: &str = "Pedoman PWS KIA (Kemenkes 2010); Permenkes 21/2021";
const IMM: &str = "Buku KIA 2024; Permenkes 12/2017";
const SKDN: &str = "SKDN, Pedoman Pemantauan Pertumbuhan (Kemenkes); Permenkes 155/2010";
const ANTHRO: &str = "Permenkes 2/2020; WHO Child Growth Standards 2006";

macro_rules! def {
    ($id:literal, $sec:literal, $unit:ident, $lid:literal, $len:literal, $did:literal, $den:literal, $src:expr) => {
        Def {
            id: $id,
            section: $sec,
            unit: Unit::$unit,
            label_id: $lid,
            label_en: $len,
            def_id: $did,
            def_en: $den,
            source: $src,
        }
    };
}

const DEFS: &[Def] = &[
    def!("visits_total", "visits", Count, "Kunjungan rumah", "Home visits",
        "Jumlah kunjungan rumah (tidak dibatalkan) bertanggal dalam bulan ini.",
        "Number of home visits (not voided) dated in the month.", "ILP, KMK HK.01.07/MENKES/2015/2023"),
    def!("members_visited", "visits", Count, "Orang dikunjungi", "People visited",
        "Jumlah anggota berbeda yang dikunjungi dalam bulan ini.",
        "Number of distinct members visited in the month.", "ILP, KMK HK.01.07/MENKES/2015/2023"),
    // visits_<stage> are generated from LifeStage::ALL, see `stage_def`.
    def!("anc_k1", "anc", Percent, "Cakupan K1", "ANC K1 coverage",
        "Pembilang: ibu hamil dengan ≥1 kontak ANC (tanggal K1–K6 tercatat, dari HPHT s.d. akhir bulan). Penyebut: ibu hamil terdaftar, yaitu kehamilan yang berlangsung pada suatu hari dalam bulan ini.",
        "Numerator: pregnant women with ≥1 ANC contact (recorded K1–K6 dates, from LMP to the end of the month). Denominator: registered pregnant women, i.e. pregnancies ongoing on some day of the month.", PWS_KIA),
    def!("anc_k4", "anc", Percent, "Cakupan K4", "ANC K4 coverage",
        "Pembilang: ibu hamil dengan ≥4 kontak ANC pada tanggal berbeda s.d. akhir bulan. Penyebut: ibu hamil terdaftar (kehamilan berlangsung dalam bulan ini).",
        "Numerator: pregnant women with ≥4 ANC contacts on distinct dates by the end of the month. Denominator: registered pregnant women (pregnancy ongoing in the month).", PWS_KIA),
    def!("anc_k6", "anc", Percent, "Cakupan K6", "ANC K6 coverage",
        "Pembilang: ibu hamil dengan ≥6 kontak ANC pada tanggal berbeda s.d. akhir bulan. Penyebut: ibu hamil terdaftar (kehamilan berlangsung dalam bulan ini).",
        "Numerator: pregnant women with ≥6 ANC contacts on distinct dates by the end of the month. Denominator: registered pregnant women (pregnancy ongoing in the month).", PWS_KIA),
    def!("kn_lengkap", "neonatal", Percent, "Cakupan KN lengkap", "Complete neonatal visits (KN lengkap)",
        "Pembilang: bayi dengan kontak KN1 (hari 0–2), KN2 (hari 3–7) dan KN3 (hari 8–28), masing-masing dalam jendelanya. Penyebut: bayi yang genap 28 hari dalam bulan ini (masa neonatal selesai), hidup pada hari ke-28.",
        "Numerator: babies with a KN1 (day 0–2), KN2 (day 3–7) and KN3 (day 8–28) contact, each inside its window. Denominator: babies whose 28th day of life falls in the month (neonatal period over), alive on day 28.", PWS_KIA),
    def!("kf_lengkap", "postpartum", Percent, "Cakupan KF lengkap", "Complete postpartum visits (KF lengkap)",
        "Pembilang: ibu nifas dengan kontak KF1 (hari 0–2), KF2 (3–7), KF3 (8–28) dan KF4 (29–42) setelah persalinan, masing-masing dalam jendelanya. Penyebut: ibu yang hari ke-42 setelah persalinannya jatuh dalam bulan ini.",
        "Numerator: mothers with a KF1 (day 0–2), KF2 (3–7), KF3 (8–28) and KF4 (29–42) contact after delivery, each inside its window. Denominator: mothers whose 42nd day after delivery falls in the month.", PWS_KIA),
    def!("imm_hb0", "immunisation", Percent, "Imunisasi HB0 (0–7 hari)", "HB0 immunisation (day 0–7)",
        "Pembilang: bayi dengan HB0 tercatat pada hari 0–7 setelah lahir. Penyebut: bayi yang hari ke-7 setelah lahirnya jatuh dalam bulan ini.",
        "Numerator: babies with HB0 recorded on day 0–7 after birth. Denominator: babies whose 7th day after birth falls in the month.", IMM),
    def!("imm_bcg", "immunisation", Percent, "Imunisasi BCG", "BCG immunisation",
        "Pembilang: anak dengan BCG sebelum umur 12 bulan. Penyebut: anak yang genap 12 bulan dalam bulan ini.",
        "Numerator: children given BCG before 12 months of age. Denominator: children turning 12 months in the month.", IMM),
    def!("imm_idl", "immunisation", Percent, "Imunisasi dasar lengkap (IDL)", "Basic immunisation complete",
        "Pembilang: anak yang menerima semua dosis dasar sebelum umur 12 bulan: HB0, BCG, polio 1–4, DPT-HB-Hib 1–3, PCV 1–2, rotavirus 1–3, IPV 1–2, MR 1. Penyebut: anak yang genap 12 bulan dalam bulan ini.",
        "Numerator: children given every basic dose before 12 months: HB0, BCG, polio 1–4, DPT-HB-Hib 1–3, PCV 1–2, rotavirus 1–3, IPV 1–2, MR 1. Denominator: children turning 12 months in the month.", IMM),
    def!("imm_mr1", "immunisation", Percent, "Imunisasi MR 1", "MR dose 1",
        "Pembilang: anak dengan MR 1 sebelum umur 12 bulan. Penyebut: anak yang genap 12 bulan dalam bulan ini.",
        "Numerator: children given MR 1 before 12 months. Denominator: children turning 12 months in the month.", IMM),
    def!("imm_mr2", "immunisation", Percent, "Imunisasi MR 2 (lanjutan)", "MR dose 2 (booster)",
        "Pembilang: anak dengan MR 2 sebelum umur 24 bulan. Penyebut: anak yang genap 24 bulan dalam bulan ini.",
        "Numerator: children given MR 2 before 24 months. Denominator: children turning 24 months in the month.", IMM),
    def!("vit_a", "vitamin_a", Percent, "Vitamin A balita (Februari/Agustus)", "Vitamin A for children (February/August)",
        "Hanya untuk bulan Februari/Agustus dan bulan sweeping Maret/September. Pembilang: anak dengan kapsul vitamin A tercatat dari awal bulan putaran (Feb/Agu) s.d. akhir bulan ini. Penyebut: anak sasaran putaran (umur ≥6 bulan pada akhir bulan putaran dan ≤59 bulan pada awalnya), aktif pada akhir bulan ini. Bulan lain: penyebut 0.",
        "Only for February/August and the sweeping months March/September. Numerator: children with a vitamin A capsule recorded from the start of the round month (Feb/Aug) to the end of this month. Denominator: children in the round (≥6 months on the last day of the round month and ≤59 months on its first day), active at the end of this month. Other months: denominator 0.",
        "Panduan Manajemen Suplementasi Vitamin A (Kemenkes 2016)"),
    def!("weighing_ds", "weighing", Percent, "Partisipasi penimbangan D/S", "Weighing participation D/S",
        "D: balita yang ditimbang (berat tercatat) dalam bulan ini. S: balita (0–59 bulan) terdaftar dan aktif pada akhir bulan.",
        "D: children under five weighed (weight recorded) in the month. S: registered children aged 0–59 months active at the end of the month.", SKDN),
    def!("weighing_nd", "weighing", Percent, "Berat badan naik N/D", "Weight gained N/D",
        "N: balita dengan status N (naik ≥ KBM sejak penimbangan bulan lalu). D: balita yang ditimbang dalam bulan ini (termasuk B dan O).",
        "N: children with status N (gained at least the minimum since last month's weighing). D: children weighed in the month (B and O included).", SKDN),
    def!("weighing_t", "weighing", Count, "Tidak naik (T)", "Did not gain (T)",
        "Balita ditimbang dengan status T (kenaikan kurang dari KBM).",
        "Children weighed with status T (gain below the minimum).", SKDN),
    def!("weighing_o", "weighing", Count, "Tidak ditimbang bulan lalu (O)", "Not weighed last month (O)",
        "Balita ditimbang bulan ini tetapi tidak bulan lalu.",
        "Children weighed this month but not the month before.", SKDN),
    def!("weighing_b", "weighing", Count, "Baru (B)", "New (B)",
        "Balita yang ditimbang untuk pertama kali.", "Children weighed for the first time.", SKDN),
    def!("stunting", "nutrition", Percent, "Prevalensi stunting (PB/U, TB/U < −2 SD)", "Stunting prevalence (length/height-for-age < −2 SD)",
        "Pembilang: balita dengan z PB/U atau TB/U < −2 (pendek dan sangat pendek) pada pengukuran panjang/tinggi terakhir bulan ini. Penyebut: balita yang diukur panjang/tingginya dalam bulan ini.",
        "Numerator: children under five with length/height-for-age z < −2 (stunted and severely stunted) at their last length/height measurement of the month. Denominator: children under five whose length/height was measured in the month.", ANTHRO),
    def!("wasting", "nutrition", Percent, "Prevalensi wasting (BB/PB, BB/TB < −2 SD)", "Wasting prevalence (weight-for-length/height < −2 SD)",
        "Pembilang: balita dengan z BB/PB atau BB/TB < −2 (gizi kurang dan gizi buruk) pada pengukuran berat dan panjang/tinggi terakhir bulan ini. Penyebut: balita yang diukur berat dan panjang/tingginya pada kunjungan yang sama dalam bulan ini.",
        "Numerator: children under five with weight-for-length/height z < −2 (wasted and severely wasted) at their last weight-and-length measurement of the month. Denominator: children under five with weight and length/height measured at the same visit in the month.", ANTHRO),
    def!("underweight", "nutrition", Percent, "Prevalensi underweight (BB/U < −2 SD)", "Underweight prevalence (weight-for-age < −2 SD)",
        "Pembilang: balita dengan z BB/U < −2 (berat badan kurang dan sangat kurang) pada penimbangan terakhir bulan ini. Penyebut: balita yang ditimbang dalam bulan ini.",
        "Numerator: children under five with weight-for-age z < −2 (underweight and severely underweight) at their last weighing of the month. Denominator: children under five weighed in the month.", ANTHRO),
    def!("referrals_new", "referrals", Count, "Rujukan baru", "New referrals",
        "Rujukan yang dibuat dalam bulan ini.", "Referrals created in the month.", "ILP, Kartu Ceklis Kunjungan Rumah"),
    def!("referrals_open", "referrals", Count, "Rujukan terbuka", "Open referrals",
        "Rujukan yang dibuat s.d. tanggal acuan dan belum ditutup (status open, received atau examined) pada tanggal acuan.",
        "Referrals created by the reference date and not closed (open, received or examined) on it.", "ILP, Kartu Ceklis Kunjungan Rumah"),
    def!("referrals_open_median_days", "referrals", Days, "Median umur rujukan terbuka (hari)", "Median age of open referrals (days)",
        "Median selisih hari antara tanggal rujukan dibuat dan tanggal acuan, di antara rujukan terbuka.",
        "Median number of days from creation to the reference date, among open referrals.", "ILP, Kartu Ceklis Kunjungan Rumah"),
    def!("referrals_open_over_7d", "referrals", Percent, "Rujukan terbuka > 7 hari", "Open referrals older than 7 days",
        "Pembilang: rujukan terbuka yang berumur lebih dari 7 hari. Penyebut: semua rujukan terbuka.",
        "Numerator: open referrals older than 7 days. Denominator: all open referrals.", "ILP, Kartu Ceklis Kunjungan Rumah"),
    def!("referrals_open_over_30d", "referrals", Percent, "Rujukan terbuka > 30 hari", "Open referrals older than 30 days",
        "Pembilang: rujukan terbuka yang berumur lebih dari 30 hari. Penyebut: semua rujukan terbuka.",
        "Numerator: open referrals older than 30 days. Denominator: all open referrals.", "ILP, Kartu Ceklis Kunjungan Rumah"),
];

/// The numbers of one group, by indicator id: (numerator, denominator).
#[derive(Debug, Default)]
struct Counts {
    n: BTreeMap<String, (u64, Option<u64>)>,
    households: u64,
    members: u64,
    referral_ages: Vec<i64>,
    visited: BTreeSet<Uuid>,
    areas: BTreeSet<String>,
    posyandu: BTreeSet<String>,
}

impl Counts {
    fn add(&mut self, id: &str, num: u64, den: Option<u64>) {
        let e = self.n.entry(id.to_string()).or_insert((0, den.map(|_| 0)));
        e.0 += num;
        if let Some(d) = den {
            e.1 = Some(e.1.unwrap_or(0) + d);
        }
    }
    /// One member of a cohort: adds 1 to the denominator and `hit` to the numerator.
    fn cohort(&mut self, id: &str, hit: bool) {
        self.add(id, hit as u64, Some(1));
    }
    fn merge(&mut self, o: &Counts) {
        for (k, (n, d)) in &o.n {
            self.add(k, *n, *d);
        }
        self.households += o.households;
        self.members += o.members;
        self.referral_ages.extend(&o.referral_ages);
        self.visited.extend(o.visited.iter().copied());
        self.areas.extend(o.areas.iter().cloned());
        self.posyandu.extend(o.posyandu.iter().cloned());
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn ms_date(ms: i64) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.date_naive())
}

/// The recap for `opts.month` of the given households (see the module docs).
pub fn monthly_recap(households: &[HouseholdView], opts: &RecapOptions) -> MonthlyRecap {
    let mut b = RecapBuilder::new(opts);
    for hh in households {
        b.add(hh);
    }
    b.finish()
}

/// The recap built one household at a time, so a caller holding many households (the
/// server over a puskesmas area) never needs them all in memory at once. Adding the same
/// households in any order gives the same recap as [`monthly_recap`].
#[derive(Debug)]
pub struct RecapBuilder {
    month: YearMonth,
    grouping: Grouping,
    as_of: NaiveDate,
    groups: BTreeMap<String, Counts>,
}

impl RecapBuilder {
    pub fn new(opts: &RecapOptions) -> RecapBuilder {
        let month = opts.month;
        let end = month.last_day();
        let as_of = opts.as_of.unwrap_or(end).clamp(month.first_day(), end);
        let mut groups = BTreeMap::new();
        if opts.grouping == Grouping::Area {
            groups.insert("all".to_string(), Counts::default());
        }
        RecapBuilder {
            month,
            grouping: opts.grouping,
            as_of,
            groups,
        }
    }

    /// Counts one household (ignored unless its status is `active`).
    pub fn add(&mut self, hh: &HouseholdView) {
        if hh.household.status != HouseholdStatus::Active {
            return;
        }
        let key = match self.grouping {
            Grouping::Posyandu => hh
                .household
                .posyandu_id
                .clone()
                .unwrap_or_else(|| "-".into()),
            Grouping::Desa => hh.household.area_code.clone(),
            Grouping::Area => "all".into(),
        };
        let c = self.groups.entry(key).or_default();
        count_household(c, hh, self.month, self.as_of);
    }

    pub fn finish(self) -> MonthlyRecap {
        let mut total = Counts::default();
        let mut out = Vec::new();
        for (key, c) in &self.groups {
            total.merge(c);
            let label = match (self.grouping, key.as_str()) {
                (Grouping::Posyandu, "-") => "Tanpa posyandu (no posyandu)".to_string(),
                (Grouping::Posyandu, k) => format!("Posyandu {k}"),
                (Grouping::Desa, k) => format!("Desa {k}"),
                (Grouping::Area, _) => "Seluruh wilayah (whole area)".to_string(),
            };
            out.push(finish(key, &label, c));
        }
        let total = finish("TOTAL", "Jumlah (total)", &total);
        MonthlyRecap {
            month: self.month.to_string(),
            month_label_id: self.month.label_id(),
            month_label_en: self.month.label_en(),
            grouping: self.grouping,
            as_of: self.as_of,
            groups: out,
            total,
        }
    }
}

fn stage_label(s: LifeStage) -> (String, String) {
    (
        format!("Kunjungan: {}", s.label_id()),
        format!("Visits: {}", s.label_en()),
    )
}

fn finish(key: &str, label: &str, c: &Counts) -> GroupRecap {
    let mut indicators = Vec::new();
    let mk = |d: &Def, num: u64, den: Option<u64>| -> Indicator {
        let value = match d.unit {
            Unit::Percent => den
                .filter(|d| *d > 0)
                .map(|den| round1(num as f64 * 100.0 / den as f64)),
            _ => Some(num as f64),
        };
        Indicator {
            id: d.id.into(),
            section: d.section.into(),
            label_id: d.label_id.into(),
            label_en: d.label_en.into(),
            unit: d.unit,
            numerator: num,
            denominator: den,
            value,
            definition_id: d.def_id.into(),
            definition_en: d.def_en.into(),
            source: d.source.into(),
        }
    };
    let get = |id: &str, pct: bool| -> (u64, Option<u64>) {
        c.n.get(id)
            .copied()
            .unwrap_or((0, if pct { Some(0) } else { None }))
    };
    for d in DEFS {
        if d.id == "members_visited" {
            indicators.push(mk(d, c.visited.len() as u64, None));
            // Per life stage, right after the totals.
            for s in LifeStage::ALL {
                let id = format!("visits_{}", s.code());
                let (num, _) = get(&id, false);
                let (lid, len) = stage_label(s);
                let mut i = mk(d, num, None);
                i.id = id;
                i.label_id = lid;
                i.label_en = len;
                i.definition_id = format!(
                    "Jumlah kunjungan dalam bulan ini dengan tahap kehidupan '{}' (tahap tercatat pada kunjungan, atau dihitung dari tanggal lahir dan kehamilan).",
                    s.label_id()
                );
                i.definition_en = format!(
                    "Visits in the month in the life stage '{}' (as recorded on the visit, else derived from birth date and pregnancy).",
                    s.label_en()
                );
                indicators.push(i);
            }
            continue;
        }
        if d.id == "referrals_open_median_days" {
            let mut ages = c.referral_ages.clone();
            ages.sort_unstable();
            let median = median(&ages);
            let mut i = mk(d, 0, None);
            i.numerator = ages.len() as u64;
            i.value = median;
            indicators.push(i);
            continue;
        }
        let (num, den) = get(d.id, d.unit == Unit::Percent);
        indicators.push(mk(d, num, den));
    }
    let mut ages = c.referral_ages.clone();
    ages.sort_unstable();
    GroupRecap {
        key: key.into(),
        label: label.into(),
        area_codes: c.areas.iter().cloned().collect(),
        posyandu_ids: c.posyandu.iter().cloned().collect(),
        households: c.households,
        members: c.members,
        indicators,
        open_referrals: ReferralAges {
            open: ages.len() as u64,
            median_days: median(&ages),
            max_days: ages.last().copied(),
            over_7_days: ages.iter().filter(|a| **a > 7).count() as u64,
            over_30_days: ages.iter().filter(|a| **a > 30).count() as u64,
        },
    }
}

fn median(sorted: &[i64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0),
    }
}

fn visits_of<'a>(hh: &'a HouseholdView, m: &Member, until: NaiveDate) -> Vec<&'a Visit> {
    hh.visits
        .iter()
        .filter(|v| v.member_id == m.id && !v.voided && v.date <= until)
        .collect()
}

/// Dates answered on the member's visits (on or before `until`), sorted, deduplicated.
fn answer_dates(
    visits: &[&Visit],
    until: NaiveDate,
    get: impl Fn(&Visit) -> Vec<Option<NaiveDate>>,
) -> Vec<NaiveDate> {
    let mut out: Vec<NaiveDate> = visits
        .iter()
        .flat_map(|v| get(v))
        .flatten()
        .filter(|d| *d <= until)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether every window (days after `from`) holds at least one of `dates`.
fn all_windows(dates: &[NaiveDate], from: NaiveDate, windows: &[(i64, i64)]) -> bool {
    windows.iter().all(|(a, b)| {
        let (a, b) = (plus_days(from, *a), plus_days(from, *b));
        dates.iter().any(|d| a <= *d && *d <= b)
    })
}

/// Alive, not voided and not moved out on `on` (birth not required).
fn present(m: &Member, on: NaiveDate) -> bool {
    !m.voided && m.death_date.is_none_or(|d| d > on) && m.moved_out_date.is_none_or(|d| d > on)
}

fn count_household(c: &mut Counts, hh: &HouseholdView, month: YearMonth, as_of: NaiveDate) {
    let start = month.first_day();
    let end = month.last_day();
    c.households += 1;
    c.areas.insert(hh.household.area_code.clone());
    if let Some(p) = &hh.household.posyandu_id {
        c.posyandu.insert(p.clone());
    }

    // Visits by life stage.
    for v in hh
        .visits
        .iter()
        .filter(|v| !v.voided && month.contains(v.date))
    {
        let Some(m) = hh.member(v.member_id) else {
            continue;
        };
        c.add("visits_total", 1, None);
        c.visited.insert(m.id);
        if let Some(s) = v.stage.or_else(|| life_stage(m, v.date)) {
            c.add(&format!("visits_{}", s.code()), 1, None);
        }
    }

    for m in &hh.members {
        if member_is_active(m, end) {
            c.members += 1;
        }
        let visits = visits_of(hh, m, end);

        // ANC: pregnancies ongoing on some day of the month.
        for p in &m.pregnancies {
            let Some(pstart) = p.hpht.or_else(|| p.hpl.map(|h| plus_days(h, -280))) else {
                continue;
            };
            let pend = p
                .delivery_date
                .or(p.ended)
                .unwrap_or(plus_days(pstart, MAX_PREGNANCY_DAYS));
            if m.voided
                || m.death_date.is_some_and(|d| d < start)
                || !(pstart <= end && pend > start)
            {
                continue;
            }
            let until = end.min(pend);
            let contacts: Vec<NaiveDate> = answer_dates(&visits, until, |v| {
                let a = &v.answers.pregnancy;
                vec![a.anc_k1, a.anc_k2, a.anc_k3, a.anc_k4, a.anc_k5, a.anc_k6]
            })
            .into_iter()
            .filter(|d| *d >= pstart)
            .collect();
            c.cohort("anc_k1", !contacts.is_empty());
            c.cohort("anc_k4", contacts.len() >= 4);
            c.cohort("anc_k6", contacts.len() >= 6);
        }

        // KF lengkap: the 42nd day after delivery falls in the month.
        for p in &m.pregnancies {
            let Some(dd) = p.delivery_date else { continue };
            let day42 = plus_days(dd, 42);
            if !month.contains(day42) || m.voided || m.death_date.is_some_and(|d| d <= day42) {
                continue;
            }
            let kf = answer_dates(&visits, end, |v| {
                let a = &v.answers.postpartum;
                vec![a.kf1, a.kf2, a.kf3, a.kf4]
            });
            c.cohort("kf_lengkap", all_windows(&kf, dd, &KF_WINDOWS));
        }

        let (Some(birth), false) = (m.birth_date, m.voided) else {
            continue;
        };
        let imm = |get: fn(&ImmunisationAnswers) -> Option<NaiveDate>| -> Option<NaiveDate> {
            visits
                .iter()
                .filter_map(|v| get(&v.answers.immunisation))
                .filter(|d| *d >= birth && *d <= end)
                .min()
        };

        // KN lengkap: day 28 of life in the month, alive then.
        let day28 = plus_days(birth, 28);
        if month.contains(day28) && present(m, day28) {
            let kn = answer_dates(&visits, end, |v| {
                let a = &v.answers.infant;
                vec![a.kn1, a.kn2, a.kn3]
            });
            c.cohort("kn_lengkap", all_windows(&kn, birth, &KN_WINDOWS));
        }

        // HB0: day 7 of life in the month.
        let day7 = plus_days(birth, HB0_LAST_DAY);
        if month.contains(day7) && present(m, day7) {
            let hit = imm(|a| a.imm_hb0).is_some_and(|d| d <= day7);
            c.cohort("imm_hb0", hit);
        }

        // BCG, IDL, MR1: the first birthday in the month.
        let first = plus_months(birth, 12);
        if month.contains(first) && present(m, first) {
            let before = |get| imm(get).is_some_and(|d| d < first);
            c.cohort("imm_bcg", before(|a: &ImmunisationAnswers| a.imm_bcg));
            c.cohort("imm_mr1", before(|a: &ImmunisationAnswers| a.imm_mr1));
            c.cohort("imm_idl", IDL_DOSES.iter().all(|(_, g)| before(*g)));
        }
        let second = plus_months(birth, 24);
        if month.contains(second) && present(m, second) {
            let hit = imm(|a| a.imm_mr2).is_some_and(|d| d < second);
            c.cohort("imm_mr2", hit);
        }

        // Balita active at the end of the month.
        let balita = member_is_active(m, end) && months_between(birth, end) < 60;

        // Vitamin A rounds (February, August) and their sweeping months.
        let round = match month.month {
            2 | 3 => YearMonth::new(month.year, 2),
            8 | 9 => YearMonth::new(month.year, 8),
            _ => None,
        };
        if let Some(r) = round {
            let in_round = member_is_active(m, end)
                && months_between(birth, r.last_day()) >= 6
                && months_between(birth, r.first_day()) <= 59;
            if in_round {
                let hit = visits.iter().any(|v| {
                    v.answers
                        .toddler
                        .vit_a
                        .is_some_and(|d| d >= r.first_day() && d <= end)
                });
                c.cohort("vit_a", hit);
            }
        }

        if !balita {
            continue;
        }
        // Weighing D/S, N/D.
        let status = weighing_status(m, &hh.visits, month);
        c.cohort("weighing_ds", status.is_some());
        if let Some(s) = status {
            c.cohort("weighing_nd", s == WeighingStatus::N);
            match s {
                WeighingStatus::T => c.add("weighing_t", 1, None),
                WeighingStatus::O => c.add("weighing_o", 1, None),
                WeighingStatus::B => c.add("weighing_b", 1, None),
                WeighingStatus::N => {}
            }
        }

        // Nutrition status at the last measurement of the month.
        if let Some(sex) = m.sex {
            let in_month: Vec<&&Visit> = {
                let mut v: Vec<&&Visit> = visits
                    .iter()
                    .filter(|v| v.date >= start && v.date >= birth)
                    .collect();
                v.sort_by_key(|v| (v.date, v.created_at));
                v
            };
            let z = |v: &Visit, weight: bool, length: bool| {
                growth::compute(&GrowthInput {
                    sex,
                    birth_date: birth,
                    date: v.date,
                    weight_kg: v.weight_kg.filter(|_| weight),
                    length_cm: v.height_cm.filter(|_| length),
                    measured: v.measured,
                })
                .ok()
            };
            if let Some(v) = in_month.iter().rev().find(|v| v.weight_kg.is_some()) {
                if let Some(r) = z(v, true, false).and_then(|r| r.weight_for_age) {
                    c.cohort("underweight", r.z < -2.0);
                }
            }
            if let Some(v) = in_month.iter().rev().find(|v| v.height_cm.is_some()) {
                if let Some(r) = z(v, false, true).and_then(|r| r.length_height_for_age) {
                    c.cohort("stunting", r.z < -2.0);
                }
            }
            if let Some(v) = in_month
                .iter()
                .rev()
                .find(|v| v.height_cm.is_some() && v.weight_kg.is_some())
            {
                if let Some(r) = z(v, true, true).and_then(|r| r.weight_for_length_height) {
                    c.cohort("wasting", r.z < -2.0);
                }
            }
        }
    }

    // Referrals: new in the month; open on the reference date, with their age.
    for r in &hh.referrals {
        let Some(created) = ms_date(r.created_at) else {
            continue;
        };
        if month.contains(created) {
            c.add("referrals_new", 1, None);
        }
        if created > as_of {
            continue;
        }
        let closed_by_then = r.status == ReferralStatus::Closed
            && r.updated_at.and_then(ms_date).is_none_or(|u| u <= as_of);
        if closed_by_then {
            continue;
        }
        let age = (as_of - created).num_days();
        c.add("referrals_open", 1, None);
        c.cohort("referrals_open_over_7d", age > 7);
        c.cohort("referrals_open_over_30d", age > 30);
        c.referral_ages.push(age);
    }
}
