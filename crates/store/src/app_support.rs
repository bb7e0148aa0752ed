//! What the app (src-tauri) needs beyond the plain store operations, kept here so the
//! Tauri shell stays a thin layer of one-line commands: the household page with life
//! stages, referral updates by the bidan, the conflict list, growth chart data, the visit
//! form catalogue per life stage, and form drafts (kept in the encrypted store, so a draft
//! survives a crash or the app being closed and is never left readable on the device).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use kunjung_core::checklist::{catalogue, ItemKind};
use kunjung_core::growth::{self, GrowthInput, Indicator};
use kunjung_core::lifestage::{life_stage, LifeStage};
use kunjung_core::schedule::{self, YearMonth};
use kunjung_core::{AnswerValue, Conflict, FieldEdit, Sex};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{HouseholdDetail, ListFilter, Result, Store, StoreError};

/// A household with the life stage of each member today.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HouseholdPage {
    pub detail: HouseholdDetail,
    /// Member id → life stage at `today` (absent when unknown, e.g. no birth date).
    pub stages: BTreeMap<String, LifeStage>,
    pub today: NaiveDate,
}

/// The bidan's answer to a referral; `None` fields are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReferralUpdate {
    /// `received`, `examined` or `closed`.
    pub status: Option<String>,
    pub outcome: Option<String>,
    pub feedback: Option<String>,
}

/// The conflicts of one household, for the bidan's review queue.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HouseholdConflicts {
    pub household_id: String,
    pub head_name: Option<String>,
    pub conflicts: Vec<Conflict>,
}

/// One checklist item of the visit form.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FormItem {
    pub key: String,
    /// `bool`, `int`, `number`, `date` or `text`.
    pub kind: String,
    pub label_id: String,
    pub label_en: String,
}

/// A section of the visit form (ILP checklist section or danger signs).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FormSection {
    pub code: String,
    pub label_id: String,
    pub label_en: String,
    pub items: Vec<FormItem>,
}

/// The visit form of a life stage: checklist sections, then the danger signs.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct VisitForm {
    pub stage: Option<LifeStage>,
    pub sections: Vec<FormSection>,
    /// Danger signs of the stage (items of kind `bool`, key = danger sign code).
    pub danger_signs: Vec<FormItem>,
}

/// One WHO reference curve: x (age in days) and the values at −3…+3 SD.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Curve {
    pub x: Vec<f64>,
    /// `sd[i]` is the curve at z = i − 3, one value per x.
    pub sd: Vec<Vec<f64>>,
}

/// One measurement of the child, with its z-scores.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct GrowthPoint {
    pub date: NaiveDate,
    pub age_days: f64,
    pub weight_kg: Option<f64>,
    pub length_cm: Option<f64>,
    pub weight_for_age_z: Option<f64>,
    pub weight_for_age_label_id: Option<String>,
    pub weight_for_age_label_en: Option<String>,
    pub length_for_age_z: Option<f64>,
    pub length_for_age_label_id: Option<String>,
    pub length_for_age_label_en: Option<String>,
}

/// Growth chart data of a child: weight-for-age and length/height-for-age curves up to
/// the child's age (at least a year) and the child's measurements.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct GrowthChart {
    pub member_id: String,
    pub name: String,
    pub sex: Sex,
    pub birth_date: NaiveDate,
    pub weight_for_age: Curve,
    pub length_for_age: Curve,
    pub points: Vec<GrowthPoint>,
    /// The weighing referral suggestion (2T in a row, or weight-for-age < −3 SD) for the
    /// month of the latest weighing, in Bahasa Indonesia; `None` when neither applies.
    pub referral_suggestion: Option<String>,
    /// `YYYY-MM` of that weighing.
    pub suggestion_month: Option<String>,
}

const DRAFT_PREFIX: &str = "draft:";

fn kind_code(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Bool => "bool",
        ItemKind::Int => "int",
        ItemKind::Number => "number",
        ItemKind::Date => "date",
        ItemKind::Text => "text",
    }
}

/// The checklist sections asked at a visit of a member in `stage` (DOMAIN.md: the stage's
/// own section, immunisation for children, the common items and TB screening for all).
pub fn sections_for_stage(stage: Option<LifeStage>) -> Vec<&'static str> {
    let own: &[&str] = match stage {
        Some(LifeStage::Pregnancy) => &["pregnancy"],
        Some(LifeStage::Postpartum) => &["postpartum"],
        Some(LifeStage::Infant) => &["infant", "immunisation"],
        Some(LifeStage::Toddler) => &["toddler", "immunisation"],
        Some(LifeStage::SchoolAdolescent) => &["school_adolescent"],
        Some(LifeStage::Adult) => &["adult"],
        Some(LifeStage::Elderly) => &["elderly"],
        None => &[],
    };
    own.iter().copied().chain(["common", "tb"]).collect()
}

/// The visit form for a life stage (or the household checklist with `household`).
pub fn visit_form(stage: Option<LifeStage>) -> VisitForm {
    let wanted = sections_for_stage(stage);
    let all = catalogue();
    let sections = wanted
        .iter()
        .filter_map(|code| all.iter().find(|s| s.0 == *code))
        .map(|(code, id, en, items)| FormSection {
            code: code.to_string(),
            label_id: id.to_string(),
            label_en: en.to_string(),
            items: items
                .iter()
                .map(|i| FormItem {
                    key: i.key.into(),
                    kind: kind_code(i.kind).into(),
                    label_id: i.label_id.into(),
                    label_en: i.label_en.into(),
                })
                .collect(),
        })
        .collect();
    let danger_signs = stage
        .map(kunjung_core::danger::for_stage)
        .unwrap_or_default()
        .into_iter()
        .map(|d| FormItem {
            key: d.code.into(),
            kind: "bool".into(),
            label_id: d.label_id.into(),
            label_en: d.label_en.into(),
        })
        .collect();
    VisitForm {
        stage,
        sections,
        danger_signs,
    }
}

fn curve(indicator: Indicator, sex: Sex, max_days: i64) -> Curve {
    let pts = growth::chart(indicator, sex, max_days);
    Curve {
        x: pts.iter().map(|p| p.x).collect(),
        sd: (0..7)
            .map(|i| pts.iter().map(|p| p.sd[i]).collect())
            .collect(),
    }
}

impl Store {
    /// A household with its members' life stages at `today`.
    pub fn household_page(&mut self, id: Uuid, today: NaiveDate) -> Result<HouseholdPage> {
        let detail = self.household_detail(id)?;
        let stages = detail
            .view
            .members
            .iter()
            .filter_map(|m| life_stage(m, today).map(|s| (m.id.to_string(), s)))
            .collect();
        Ok(HouseholdPage {
            detail,
            stages,
            today,
        })
    }

    /// Records the bidan's answer to a referral (status, outcome, feedback to the cadre),
    /// with who handled it and when. Returns the household id.
    pub fn update_referral(&mut self, id: Uuid, u: &ReferralUpdate) -> Result<Uuid> {
        let hid = self.household_of_referral(id)?;
        let mut edits = Vec::new();
        let fields = [
            ("status", &u.status),
            ("outcome", &u.outcome),
            ("feedback", &u.feedback),
        ];
        for (k, v) in fields {
            if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                edits.push(FieldEdit {
                    path: format!("referrals/{id}/{k}"),
                    value: Some(AnswerValue::Text(v.to_string())),
                });
            }
        }
        if edits.is_empty() {
            return Err(StoreError::Invalid(
                "tidak ada yang diubah (nothing to update)".into(),
            ));
        }
        edits.push(FieldEdit {
            path: format!("referrals/{id}/handled_by"),
            value: Some(AnswerValue::Text(self.user().to_string())),
        });
        edits.push(FieldEdit {
            path: format!("referrals/{id}/updated_at"),
            value: Some(AnswerValue::Int(chrono::Utc::now().timestamp_millis())),
        });
        self.edit(hid, &edits, &format!("referral.update {id}"))?;
        Ok(hid)
    }

    /// Every household with conflicting values, with its conflicts.
    pub fn all_conflicts(&mut self) -> Result<Vec<HouseholdConflicts>> {
        let rows = self.list_households(&ListFilter {
            has_conflicts: true,
            limit: Some(1000),
            ..Default::default()
        })?;
        let mut out = Vec::new();
        for r in rows {
            let id = Uuid::parse_str(&r.id).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let conflicts = self.doc(id)?.conflicts();
            if !conflicts.is_empty() {
                out.push(HouseholdConflicts {
                    household_id: r.id,
                    head_name: r.head_name,
                    conflicts,
                });
            }
        }
        Ok(out)
    }

    /// Growth chart data of a child from the measurements of its visits.
    pub fn growth_chart(&mut self, member_id: Uuid, today: NaiveDate) -> Result<GrowthChart> {
        let hid = self.household_of_member(member_id)?;
        let view = self.doc(hid)?.read()?;
        let m = view
            .member(member_id)
            .ok_or_else(|| StoreError::NotFound(format!("anggota {member_id} (member)")))?;
        let (Some(sex), Some(birth)) = (m.sex, m.birth_date) else {
            return Err(StoreError::Invalid(
                "jenis kelamin dan tanggal lahir diperlukan (sex and birth date needed)".into(),
            ));
        };
        let mut visits: Vec<_> = view
            .visits
            .iter()
            .filter(|v| v.member_id == member_id && !v.voided)
            .filter(|v| v.weight_kg.is_some() || v.height_cm.is_some())
            .collect();
        visits.sort_by_key(|v| v.date);
        let suggestion_month = visits
            .iter()
            .rev()
            .find(|v| v.weight_kg.is_some())
            .map(|v| YearMonth::of(v.date));
        let referral_suggestion =
            suggestion_month.and_then(|ym| schedule::referral_suggestion(m, &view.visits, ym));
        let mut points = Vec::new();
        for v in visits {
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
            let (wz, lz) = (r.weight_for_age, r.length_height_for_age);
            points.push(GrowthPoint {
                date: v.date,
                age_days: r.age_days as f64,
                weight_kg: v.weight_kg,
                length_cm: v
                    .height_cm
                    .map(|h| growth::corrected_length_cm(r.age_days, h, v.measured)),
                weight_for_age_z: wz.map(|z| z.z),
                weight_for_age_label_id: wz.map(|z| z.label_id.to_string()),
                weight_for_age_label_en: wz.map(|z| z.label_en.to_string()),
                length_for_age_z: lz.map(|z| z.z),
                length_for_age_label_id: lz.map(|z| z.label_id.to_string()),
                length_for_age_label_en: lz.map(|z| z.label_en.to_string()),
            });
        }
        let last = points.iter().map(|p| p.age_days as i64).max().unwrap_or(0);
        let age_now = growth::age_days(birth, today).max(last);
        let max_days = (age_now + 90).clamp(365, 1856);
        Ok(GrowthChart {
            member_id: member_id.to_string(),
            name: m.name.clone(),
            sex,
            birth_date: birth,
            weight_for_age: curve(Indicator::WeightForAge, sex, max_days),
            length_for_age: curve(Indicator::LengthHeightForAge, sex, max_days),
            points,
            suggestion_month: referral_suggestion
                .as_ref()
                .and(suggestion_month)
                .map(|m| m.to_string()),
            referral_suggestion,
        })
    }

    /// A form draft (JSON text) saved under `key`, if any.
    pub fn draft(&self, key: &str) -> Result<Option<String>> {
        self.meta(&format!("{DRAFT_PREFIX}{key}"))
    }

    /// Saves a form draft; it stays until `clear_draft`.
    pub fn save_draft(&self, key: &str, json: &str) -> Result<()> {
        if json.len() > 256 * 1024 {
            return Err(StoreError::Invalid(
                "draf terlalu besar (draft too large)".into(),
            ));
        }
        self.set_meta(&format!("{DRAFT_PREFIX}{key}"), json)
    }

    pub fn clear_draft(&self, key: &str) -> Result<()> {
        self.connection().execute(
            "DELETE FROM meta WHERE key = ?1",
            params![format!("{DRAFT_PREFIX}{key}")],
        )?;
        Ok(())
    }

    /// Keys of the saved drafts (to offer "continue where you left off").
    pub fn draft_keys(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .connection()
            .prepare("SELECT substr(key, ?1) FROM meta WHERE key LIKE 'draft:%' ORDER BY key")?;
        let keys = stmt
            .query_map([DRAFT_PREFIX.len() as i64 + 1], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kunjung_core::{NewHousehold, NewMember, NewVisit};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::init(dir.path(), None, "kader-1").unwrap();
        (dir, s)
    }

    #[test]
    fn pregnancy_form_has_its_section_and_danger_signs() {
        let f = visit_form(Some(LifeStage::Pregnancy));
        let codes: Vec<_> = f.sections.iter().map(|s| s.code.as_str()).collect();
        assert_eq!(codes, ["pregnancy", "common", "tb"]);
        assert!(f.danger_signs.iter().any(|d| d.key == "preg_bleeding"));
        let infant = visit_form(Some(LifeStage::Infant));
        assert!(infant.sections.iter().any(|s| s.code == "immunisation"));
    }

    #[test]
    fn referral_update_drafts_and_growth() {
        let (_d, mut s) = store();
        let today: NaiveDate = "2026-11-24".parse().unwrap();
        let h = s
            .create_household(&NewHousehold {
                area_code: "32.14.01.2001".into(),
                rt: "3".into(),
                rw: "1".into(),
                dusun: None,
                posyandu_id: None,
                address: None,
                kk: None,
            })
            .unwrap();
        let child = s
            .add_member(
                h,
                &NewMember {
                    name: "Budi".into(),
                    sex: Sex::M,
                    birth_date: "2026-01-10".parse().unwrap(),
                    birth_date_estimated: false,
                    nik: None,
                    kk: None,
                    relation: None,
                    mother_id: None,
                    jkn: None,
                },
            )
            .unwrap()
            .id;
        let v = s
            .add_visit(&NewVisit {
                member_id: child,
                date: "2026-11-01".parse().unwrap(),
                weight_kg: Some(8.4),
                height_cm: Some(71.0),
                danger_signs: vec!["inf_convulsions".into()],
                ..Default::default()
            })
            .unwrap();
        let page = s.household_page(h, today).unwrap();
        assert_eq!(page.stages[&child.to_string()], LifeStage::Toddler);
        let g = s.growth_chart(child, today).unwrap();
        assert_eq!(g.points.len(), 1);
        assert!(g.points[0].weight_for_age_z.is_some());
        assert_eq!(g.weight_for_age.sd.len(), 7);
        assert_eq!(g.weight_for_age.sd[3].len(), g.weight_for_age.x.len());
        let rid = v.referral_id.expect("danger sign refers");
        assert!(s.update_referral(rid, &ReferralUpdate::default()).is_err());
        s.update_referral(
            rid,
            &ReferralUpdate {
                status: Some("examined".into()),
                outcome: None,
                feedback: Some("Sudah diperiksa".into()),
            },
        )
        .unwrap();
        let r = &s.list_referrals(None, None).unwrap()[0];
        assert_eq!(r.status, "examined");
        assert_eq!(r.feedback.as_deref(), Some("Sudah diperiksa"));
        s.save_draft("visit:x", "{\"a\":1}").unwrap();
        assert_eq!(s.draft_keys().unwrap(), ["visit:x"]);
        assert_eq!(s.draft("visit:x").unwrap().as_deref(), Some("{\"a\":1}"));
        s.clear_draft("visit:x").unwrap();
        assert_eq!(s.draft("visit:x").unwrap(), None);
        assert!(s.all_conflicts().unwrap().is_empty());
    }
}
