//! Plain domain types: what a household document holds, as Rust values.
//!
//! These are the read model (`HouseholdDoc::read`) and the inputs of the incremental
//! operations. The Automerge layout they map to is described in `doc.rs`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checklist::{AnswerValue, VisitAnswers};
use crate::lifestage::LifeStage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Sex {
    #[serde(rename = "F")]
    F,
    #[serde(rename = "M")]
    M,
}

impl Sex {
    pub fn code(self) -> &'static str {
        match self {
            Sex::F => "F",
            Sex::M => "M",
        }
    }
    pub fn parse(s: &str) -> Option<Sex> {
        match s.trim() {
            "F" | "f" | "P" | "p" | "perempuan" | "Perempuan" | "PEREMPUAN" => Some(Sex::F),
            "M" | "m" | "L" | "l" | "laki-laki" | "Laki-laki" | "LAKI-LAKI" => Some(Sex::M),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Measured {
    Lying,
    Standing,
}

impl Measured {
    pub fn code(self) -> &'static str {
        match self {
            Measured::Lying => "lying",
            Measured::Standing => "standing",
        }
    }
    pub fn parse(s: &str) -> Option<Measured> {
        match s {
            "lying" | "telentang" => Some(Measured::Lying),
            "standing" | "berdiri" => Some(Measured::Standing),
            _ => None,
        }
    }
}

/// Relation to the head of the household (hubungan keluarga).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Relation {
    Head,
    Spouse,
    Child,
    Parent,
    Other,
}

impl Relation {
    pub fn code(self) -> &'static str {
        match self {
            Relation::Head => "head",
            Relation::Spouse => "spouse",
            Relation::Child => "child",
            Relation::Parent => "parent",
            Relation::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Relation> {
        Some(match s.trim().to_lowercase().as_str() {
            "head" | "kepala keluarga" | "kepala" => Relation::Head,
            "spouse" | "istri" | "suami" | "isteri" => Relation::Spouse,
            "child" | "anak" => Relation::Child,
            "parent" | "orang tua" | "mertua" => Relation::Parent,
            "other" | "lainnya" | "famili lain" | "cucu" => Relation::Other,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum HouseholdStatus {
    #[default]
    Active,
    Moved,
    Merged,
    Dissolved,
}

impl HouseholdStatus {
    pub fn code(self) -> &'static str {
        match self {
            HouseholdStatus::Active => "active",
            HouseholdStatus::Moved => "moved",
            HouseholdStatus::Merged => "merged",
            HouseholdStatus::Dissolved => "dissolved",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "moved" => Self::Moved,
            "merged" => Self::Merged,
            "dissolved" => Self::Dissolved,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ReferralStatus {
    #[default]
    Open,
    Received,
    Examined,
    Closed,
}

impl ReferralStatus {
    pub fn code(self) -> &'static str {
        match self {
            ReferralStatus::Open => "open",
            ReferralStatus::Received => "received",
            ReferralStatus::Examined => "examined",
            ReferralStatus::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "received" => Self::Received,
            "examined" => Self::Examined,
            "closed" => Self::Closed,
            _ => return None,
        })
    }
}

/// Input for a new household.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NewHousehold {
    pub area_code: String,
    pub rt: String,
    pub rw: String,
    pub dusun: Option<String>,
    pub posyandu_id: Option<String>,
    pub address: Option<String>,
    pub kk: Option<String>,
}

/// Input for a new member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NewMember {
    pub name: String,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub birth_date_estimated: bool,
    pub nik: Option<String>,
    pub kk: Option<String>,
    pub relation: Option<Relation>,
    pub mother_id: Option<Uuid>,
    pub jkn: Option<bool>,
}

/// A pregnancy record of a member (HPHT/LMP, HPL/EDD, gravida/para, outcome).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Pregnancy {
    pub id: Uuid,
    pub hpht: Option<NaiveDate>,
    pub hpl: Option<NaiveDate>,
    pub gravida: Option<i64>,
    pub para: Option<i64>,
    pub abortus: Option<i64>,
    pub delivery_date: Option<NaiveDate>,
    pub delivery_place: Option<String>,
    /// Ended without delivery (miscarriage) or otherwise closed.
    pub ended: Option<NaiveDate>,
}

/// Input for a new visit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NewVisit {
    pub member_id: Uuid,
    pub date: NaiveDate,
    pub stage: Option<LifeStage>,
    pub weight_kg: Option<f64>,
    pub height_cm: Option<f64>,
    pub measured: Option<Measured>,
    pub muac_cm: Option<f64>,
    pub head_cm: Option<f64>,
    pub bp_systolic: Option<i64>,
    pub bp_diastolic: Option<i64>,
    #[cfg_attr(feature = "ts", ts(as = "BTreeMap<String, AnswerValue>"))]
    pub answers: VisitAnswers,
    pub danger_signs: Vec<String>,
    pub education: BTreeMap<String, String>,
    pub reported_to_nakes: Option<bool>,
    pub notes: Option<String>,
    /// Free-text reason to refer to the bidan (besides danger signs).
    pub refer_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Household {
    pub id: Uuid,
    pub area_code: String,
    pub dusun: Option<String>,
    pub rt: String,
    pub rw: String,
    pub posyandu_id: Option<String>,
    pub address: Option<String>,
    pub kk: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub status: HouseholdStatus,
    pub merged_into: Option<Uuid>,
    pub created_at: i64,
    /// Household-level checklist (JKN, clean water, latrine…), see `checklist::HOUSEHOLD_ITEMS`.
    pub checklist: BTreeMap<String, AnswerValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Member {
    pub id: Uuid,
    pub name: String,
    pub nik: Option<String>,
    pub kk: Option<String>,
    pub sex: Option<Sex>,
    pub birth_date: Option<NaiveDate>,
    pub birth_date_estimated: bool,
    pub relation: Option<Relation>,
    pub mother_id: Option<Uuid>,
    pub jkn: Option<bool>,
    pub death_date: Option<NaiveDate>,
    pub moved_out_date: Option<NaiveDate>,
    pub moved_out_note: Option<String>,
    pub voided: bool,
    pub void_reason: Option<String>,
    pub pregnancies: Vec<Pregnancy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Visit {
    pub id: Uuid,
    pub member_id: Uuid,
    pub date: NaiveDate,
    pub stage: Option<LifeStage>,
    pub cadre: Option<String>,
    pub weight_kg: Option<f64>,
    pub height_cm: Option<f64>,
    pub measured: Option<Measured>,
    pub muac_cm: Option<f64>,
    pub head_cm: Option<f64>,
    pub bp_systolic: Option<i64>,
    pub bp_diastolic: Option<i64>,
    #[cfg_attr(feature = "ts", ts(as = "BTreeMap<String, AnswerValue>"))]
    pub answers: VisitAnswers,
    pub danger_signs: Vec<String>,
    pub education: BTreeMap<String, String>,
    pub reported_to_nakes: Option<bool>,
    pub referred: bool,
    pub notes: Option<String>,
    pub voided: bool,
    pub void_reason: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Referral {
    pub id: Uuid,
    pub visit_id: Option<Uuid>,
    pub member_id: Uuid,
    pub reason: String,
    pub danger_signs: Vec<String>,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub status: ReferralStatus,
    pub updated_at: Option<i64>,
    pub outcome: Option<String>,
    pub feedback: Option<String>,
    pub handled_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Review {
    pub id: Uuid,
    pub visit_id: Uuid,
    pub reviewer: String,
    pub at: i64,
    pub comment: Option<String>,
}

/// The whole household as read from its document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HouseholdView {
    pub household: Household,
    pub members: Vec<Member>,
    pub visits: Vec<Visit>,
    pub referrals: Vec<Referral>,
    pub reviews: Vec<Review>,
}

impl HouseholdView {
    pub fn member(&self, id: Uuid) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
    /// Name of the head of household (or the first living member) for lists.
    pub fn head_name(&self) -> Option<&str> {
        let live = || self.members.iter().filter(|m| !m.voided);
        live()
            .find(|m| m.relation == Some(Relation::Head))
            .or_else(|| live().next())
            .map(|m| m.name.as_str())
    }
}
