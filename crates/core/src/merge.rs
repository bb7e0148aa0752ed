//! Duplicate households: detection, and a reversible merge.
//!
//! * [`find_duplicates`]: two active households are suspected duplicates when they share a
//!   No. KK (household or member), or a member — the same NIK, or the same name and birth
//!   date.
//! * [`HouseholdDoc::absorb`] merges a source household into this (target) one in **one
//!   change**: every source member not already here (same NIK, or same name + birth date)
//!   is copied with a new id, its pregnancies included; every visit and referral is copied
//!   and pointed at the target's member. Each copy records where it came from in a
//!   `merged_from` field (`<source household>/<source record>`), which the read model
//!   ignores but the document keeps. Absorbing again copies nothing twice.
//!   The source household itself is marked by the caller with `status = merged` and
//!   `merged_into = <target>` (an ordinary [`HouseholdDoc::edit`]); its records stay as
//!   they were.
//! * [`HouseholdDoc::release`] (unmerge) voids the copied members and visits (`voided`,
//!   reason "unmerge") and removes the copied referrals, in one change; the caller sets the
//!   source back to `active`. Voiding rather than deleting keeps any edit made to a copy
//!   in the document's history.

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checklist::AnswerValue;
use crate::doc::{CommitMeta, HouseholdDoc, Written};
use crate::error::{CoreError, Result};
use crate::ids::new_id;
use crate::model::{HouseholdStatus, HouseholdView, Member};

/// Two households that look like the same family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicatePair {
    pub a: Uuid,
    pub b: Uuid,
    /// Why, e.g. `kk 3214…`, `nik 3214…`, `name+birth_date siti aminah 1994-05-12`.
    pub reasons: Vec<String>,
}

/// What [`HouseholdDoc::absorb`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeSummary {
    pub members_copied: usize,
    /// Source members found already in the target (their visits go to that member).
    pub members_matched: usize,
    pub visits_copied: usize,
    pub referrals_copied: usize,
}

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn member_keys(m: &Member) -> Vec<String> {
    let mut k = Vec::new();
    if let Some(n) = m.nik.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        k.push(format!("nik {n}"));
    }
    if let Some(b) = m.birth_date {
        k.push(format!("name+birth_date {} {b}", norm(&m.name)));
    }
    k
}

fn household_keys(v: &HouseholdView) -> BTreeSet<String> {
    let mut k = BTreeSet::new();
    for kk in v
        .household
        .kk
        .iter()
        .chain(
            v.members
                .iter()
                .filter(|m| !m.voided)
                .filter_map(|m| m.kk.as_ref()),
        )
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        k.insert(format!("kk {kk}"));
    }
    for m in v.members.iter().filter(|m| !m.voided) {
        k.extend(member_keys(m));
    }
    k
}

/// Suspected duplicate pairs among the active households (see the module docs), each pair
/// once, ordered.
pub fn find_duplicates(views: &[HouseholdView]) -> Vec<DuplicatePair> {
    let mut by_key: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    for v in views
        .iter()
        .filter(|v| v.household.status == HouseholdStatus::Active)
    {
        for k in household_keys(v) {
            by_key.entry(k).or_default().push(v.household.id);
        }
    }
    let mut pairs: BTreeMap<(Uuid, Uuid), Vec<String>> = BTreeMap::new();
    for (k, ids) in by_key {
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                let key = if a < b { (*a, *b) } else { (*b, *a) };
                pairs.entry(key).or_default().push(k.clone());
            }
        }
    }
    pairs
        .into_iter()
        .map(|((a, b), reasons)| DuplicatePair { a, b, reasons })
        .collect()
}

fn scalar(v: &AnswerValue) -> ScalarValue {
    match v {
        AnswerValue::Bool(b) => ScalarValue::Boolean(*b),
        AnswerValue::Int(i) => ScalarValue::Int(*i),
        AnswerValue::Num(f) => ScalarValue::F64(*f),
        AnswerValue::Text(s) => ScalarValue::Str(s.as_str().into()),
    }
}

fn map_of(doc: &automerge::Automerge, parent: &ObjId, key: &str) -> Result<ObjId> {
    match doc.get(parent, key)? {
        Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(CoreError::CorruptDocument(format!(
            "bagian '{key}' tidak ada (missing '{key}')"
        ))),
    }
}

/// `merged_from` of every record in the root map `root` (record id → value).
fn provenance(doc: &automerge::Automerge, root: &str) -> Result<BTreeMap<Uuid, String>> {
    let recs = map_of(doc, &ROOT, root)?;
    let mut out = BTreeMap::new();
    for item in doc.map_range(&recs, ..) {
        let Ok(id) = Uuid::parse_str(&item.key) else {
            continue;
        };
        if let Some((automerge::Value::Scalar(s), _)) = doc.get(item.id(), "merged_from")? {
            if let ScalarValue::Str(v) = s.as_ref() {
                out.insert(id, v.to_string());
            }
        }
    }
    Ok(out)
}

fn date(d: chrono::NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

impl HouseholdDoc {
    /// Runs one raw transaction on a copy of the document and takes it when it succeeds.
    fn raw_change<O>(
        &mut self,
        meta: &CommitMeta,
        what: &str,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<O>,
    ) -> Result<Written<O>> {
        let mut am = self.automerge().clone();
        let msg = serde_json::json!({"user": meta.user, "what": what}).to_string();
        let before = am.get_heads();
        let ok = am
            .transact_with(
                |_| {
                    CommitOptions::default()
                        .with_message(msg.clone())
                        .with_time(meta.time_ms)
                },
                f,
            )
            .map_err(|f| f.error)?;
        let change = match ok.hash {
            Some(h) if !before.contains(&h) => am.get_change_by_hash(&h),
            _ => None,
        };
        *self = HouseholdDoc::from_automerge(am)?;
        Ok(Written {
            result: ok.result,
            change,
        })
    }

    /// Merges `source` (another household's view) into this household; see the module docs.
    pub fn absorb(
        &mut self,
        source: &HouseholdView,
        meta: &CommitMeta,
    ) -> Result<Written<MergeSummary>> {
        let me = self.read()?;
        let src = source.household.id;
        if src == me.household.id {
            return Err(CoreError::Invalid(
                "rumah tangga tidak bisa digabung ke dirinya sendiri (cannot merge a household into itself)".into(),
            ));
        }
        let doc = self.automerge();
        let (members_obj, visits_obj, refs_obj) = (
            map_of(doc, &ROOT, "members")?,
            map_of(doc, &ROOT, "visits")?,
            map_of(doc, &ROOT, "referrals")?,
        );
        // What was copied before (not voided by an unmerge).
        let tag = |id: Uuid| format!("{src}/{id}");
        let copied_members: BTreeMap<String, Uuid> = provenance(doc, "members")?
            .into_iter()
            .filter(|(id, _)| me.member(*id).is_some_and(|m| !m.voided))
            .map(|(id, from)| (from, id))
            .collect();
        let copied_visits: BTreeSet<String> = provenance(doc, "visits")?
            .into_iter()
            .filter(|(id, _)| me.visits.iter().any(|v| v.id == *id && !v.voided))
            .map(|(_, from)| from)
            .collect();
        let copied_refs: BTreeSet<String> = provenance(doc, "referrals")?.into_values().collect();

        // Source member → target member: already copied, the same person, or a new copy.
        let mut keys: BTreeMap<String, Uuid> = BTreeMap::new();
        for m in me.members.iter().filter(|m| !m.voided) {
            for k in member_keys(m) {
                keys.entry(k).or_insert(m.id);
            }
        }
        let mut summary = MergeSummary::default();
        let mut map: BTreeMap<Uuid, Uuid> = BTreeMap::new();
        let mut to_copy: Vec<(&Member, Uuid)> = Vec::new();
        for m in source.members.iter().filter(|m| !m.voided) {
            if let Some(t) = copied_members.get(&tag(m.id)) {
                map.insert(m.id, *t);
            } else if let Some(t) = member_keys(m).iter().find_map(|k| keys.get(k)) {
                map.insert(m.id, *t);
                summary.members_matched += 1;
            } else {
                let id = new_id();
                map.insert(m.id, id);
                to_copy.push((m, id));
            }
        }
        let visits: Vec<_> = source
            .visits
            .iter()
            .filter(|v| !copied_visits.contains(&tag(v.id)) && map.contains_key(&v.member_id))
            .map(|v| (v, new_id()))
            .collect();
        let visit_map: BTreeMap<Uuid, Uuid> = visits.iter().map(|(v, n)| (v.id, *n)).collect();
        let refs: Vec<_> = source
            .referrals
            .iter()
            .filter(|r| !copied_refs.contains(&tag(r.id)) && map.contains_key(&r.member_id))
            .map(|r| (r, new_id()))
            .collect();
        summary.members_copied = to_copy.len();
        summary.visits_copied = visits.len();
        summary.referrals_copied = refs.len();

        self.raw_change(meta, &format!("household.absorb {src}"), |tx| {
            for (m, id) in &to_copy {
                let o = tx.put_object(&members_obj, id.to_string(), ObjType::Map)?;
                tx.put(&o, "name", m.name.as_str())?;
                if let Some(s) = m.sex {
                    tx.put(&o, "sex", s.code())?;
                }
                if let Some(b) = m.birth_date {
                    tx.put(&o, "birth_date", date(b))?;
                }
                if m.birth_date_estimated {
                    tx.put(&o, "birth_date_estimated", true)?;
                }
                for (k, v) in [
                    ("nik", m.nik.clone()),
                    ("kk", m.kk.clone()),
                    ("relation", m.relation.map(|r| r.code().to_string())),
                    (
                        "mother_id",
                        m.mother_id.and_then(|x| map.get(&x)).map(|u| u.to_string()),
                    ),
                    ("death_date", m.death_date.map(date)),
                    ("moved_out_date", m.moved_out_date.map(date)),
                    ("moved_out_note", m.moved_out_note.clone()),
                ] {
                    if let Some(v) = v {
                        tx.put(&o, k, v)?;
                    }
                }
                if let Some(j) = m.jkn {
                    tx.put(&o, "jkn", j)?;
                }
                tx.put(&o, "merged_from", tag(m.id))?;
                let pregs = tx.put_object(&o, "pregnancies", ObjType::Map)?;
                for p in &m.pregnancies {
                    let po = tx.put_object(&pregs, new_id().to_string(), ObjType::Map)?;
                    for (k, v) in [
                        ("hpht", p.hpht.map(date)),
                        ("hpl", p.hpl.map(date)),
                        ("delivery_date", p.delivery_date.map(date)),
                        ("delivery_place", p.delivery_place.clone()),
                        ("ended", p.ended.map(date)),
                    ] {
                        if let Some(v) = v {
                            tx.put(&po, k, v)?;
                        }
                    }
                    for (k, v) in [
                        ("gravida", p.gravida),
                        ("para", p.para),
                        ("abortus", p.abortus),
                    ] {
                        if let Some(v) = v {
                            tx.put(&po, k, v)?;
                        }
                    }
                }
            }
            for (v, id) in &visits {
                let o = tx.put_object(&visits_obj, id.to_string(), ObjType::Map)?;
                tx.put(&o, "member_id", map[&v.member_id].to_string())?;
                tx.put(&o, "date", date(v.date))?;
                for (k, val) in [
                    ("stage", v.stage.map(|s| s.code().to_string())),
                    ("cadre", v.cadre.clone()),
                    ("measured", v.measured.map(|m| m.code().to_string())),
                    ("notes", v.notes.clone()),
                    ("void_reason", v.void_reason.clone()),
                ] {
                    if let Some(val) = val {
                        tx.put(&o, k, val)?;
                    }
                }
                for (k, val) in [
                    ("weight_kg", v.weight_kg),
                    ("height_cm", v.height_cm),
                    ("muac_cm", v.muac_cm),
                    ("head_cm", v.head_cm),
                ] {
                    if let Some(val) = val {
                        tx.put(&o, k, val)?;
                    }
                }
                for (k, val) in [
                    ("bp_systolic", v.bp_systolic),
                    ("bp_diastolic", v.bp_diastolic),
                ] {
                    if let Some(val) = val {
                        tx.put(&o, k, val)?;
                    }
                }
                if let Some(r) = v.reported_to_nakes {
                    tx.put(&o, "reported_to_nakes", r)?;
                }
                tx.put(&o, "referred", v.referred)?;
                if v.voided {
                    tx.put(&o, "voided", true)?;
                }
                tx.put(&o, "created_at", ScalarValue::Timestamp(v.created_at))?;
                tx.put(&o, "merged_from", tag(v.id))?;
                let a = tx.put_object(&o, "answers", ObjType::Map)?;
                for (k, val) in v.answers.to_map() {
                    tx.put(&a, k.as_str(), scalar(&val))?;
                }
                if !v.danger_signs.is_empty() {
                    let d = tx.put_object(&o, "danger_signs", ObjType::Map)?;
                    for c in &v.danger_signs {
                        tx.put(&d, c.as_str(), true)?;
                    }
                }
                if !v.education.is_empty() {
                    let e = tx.put_object(&o, "education", ObjType::Map)?;
                    for (t, d) in &v.education {
                        tx.put(&e, t.as_str(), d.as_str())?;
                    }
                }
            }
            for (r, id) in &refs {
                let o = tx.put_object(&refs_obj, id.to_string(), ObjType::Map)?;
                tx.put(&o, "member_id", map[&r.member_id].to_string())?;
                if let Some(vid) = r.visit_id.and_then(|x| visit_map.get(&x)) {
                    tx.put(&o, "visit_id", vid.to_string())?;
                }
                tx.put(&o, "reason", r.reason.as_str())?;
                tx.put(&o, "danger_signs", r.danger_signs.join(","))?;
                tx.put(&o, "created_at", ScalarValue::Timestamp(r.created_at))?;
                tx.put(&o, "status", r.status.code())?;
                for (k, val) in [
                    ("created_by", r.created_by.clone()),
                    ("outcome", r.outcome.clone()),
                    ("feedback", r.feedback.clone()),
                    ("handled_by", r.handled_by.clone()),
                ] {
                    if let Some(val) = val {
                        tx.put(&o, k, val)?;
                    }
                }
                if let Some(u) = r.updated_at {
                    tx.put(&o, "updated_at", u)?;
                }
                tx.put(&o, "merged_from", tag(r.id))?;
            }
            Ok(summary.clone())
        })
    }

    /// Undoes [`absorb`](Self::absorb) of `source`: voids the copied members and visits and
    /// removes the copied referrals (one change). Returns how many records were touched.
    pub fn release(&mut self, source: Uuid, meta: &CommitMeta) -> Result<Written<usize>> {
        let doc = self.automerge();
        let prefix = format!("{source}/");
        let mut targets: Vec<(ObjId, Uuid)> = Vec::new();
        let mut doomed: Vec<Uuid> = Vec::new();
        for root in ["members", "visits"] {
            let obj = map_of(doc, &ROOT, root)?;
            for (id, from) in provenance(doc, root)? {
                if from.starts_with(&prefix) {
                    targets.push((map_of(doc, &obj, &id.to_string())?, id));
                }
            }
        }
        for (id, from) in provenance(doc, "referrals")? {
            if from.starts_with(&prefix) {
                doomed.push(id);
            }
        }
        let refs = map_of(doc, &ROOT, "referrals")?;
        let n = targets.len() + doomed.len();
        if n == 0 {
            return Err(CoreError::NotFound(format!(
                "tidak ada data dari rumah tangga {source} di sini (nothing merged from it here)"
            )));
        }
        self.raw_change(meta, &format!("household.release {source}"), |tx| {
            for (o, _) in &targets {
                tx.put(o, "voided", true)?;
                tx.put(
                    o,
                    "void_reason",
                    "unmerge: dikembalikan ke rumah tangga asal",
                )?;
            }
            for id in &doomed {
                tx.delete(&refs, id.to_string())?;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewHousehold, NewMember, NewVisit, Sex};
    use automerge::ActorId;

    fn meta(t: i64) -> CommitMeta {
        CommitMeta {
            user: "bidan".into(),
            time_ms: 1_790_000_000_000 + t,
        }
    }

    fn household(kk: Option<&str>) -> HouseholdDoc {
        HouseholdDoc::create(
            new_id(),
            &NewHousehold {
                area_code: "32.14.01.2001".into(),
                rt: "1".into(),
                rw: "1".into(),
                dusun: None,
                posyandu_id: None,
                address: None,
                kk: kk.map(String::from),
            },
            ActorId::random(),
            &meta(0),
        )
        .unwrap()
        .result
    }

    fn member(name: &str, nik: Option<&str>, birth: &str) -> NewMember {
        NewMember {
            name: name.into(),
            sex: Sex::F,
            birth_date: birth.parse().unwrap(),
            birth_date_estimated: false,
            nik: nik.map(String::from),
            kk: None,
            relation: None,
            mother_id: None,
            jkn: None,
        }
    }

    #[test]
    fn detect_merge_and_unmerge() {
        let mut a = household(Some("3214010101090001"));
        let siti_a = a
            .add_member(
                &member("Siti Aminah", Some("3214015205940001"), "1994-05-12"),
                &meta(1),
            )
            .unwrap()
            .result;
        let mut b = household(None);
        let siti_b = b
            .add_member(&member("Siti  aminah", None, "1994-05-12"), &meta(2))
            .unwrap()
            .result;
        let ani = b
            .add_member(&member("Ani", None, "2024-01-05"), &meta(3))
            .unwrap()
            .result;
        b.add_visit(
            &NewVisit {
                member_id: siti_b,
                date: "2026-01-10".parse().unwrap(),
                weight_kg: Some(55.0),
                ..Default::default()
            },
            &meta(4),
        )
        .unwrap();
        b.add_visit(
            &NewVisit {
                member_id: ani,
                date: "2026-01-10".parse().unwrap(),
                weight_kg: Some(8.0),
                refer_reason: Some("BB tidak naik".into()),
                ..Default::default()
            },
            &meta(5),
        )
        .unwrap();
        let c = household(None);
        let (va, vb, vc) = (a.read().unwrap(), b.read().unwrap(), c.read().unwrap());
        // Same name (spacing/case ignored) and birth date: a pair; c is alone.
        let d = find_duplicates(&[va.clone(), vb.clone(), vc]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reasons, ["name+birth_date siti aminah 1994-05-12"]);

        let w = a.absorb(&vb, &meta(10)).unwrap();
        assert!(w.change.is_some());
        assert_eq!(
            w.result,
            MergeSummary {
                members_copied: 1,
                members_matched: 1,
                visits_copied: 2,
                referrals_copied: 1
            }
        );
        let v = a.read().unwrap();
        assert_eq!(v.members.len(), 2);
        // Siti's visit now belongs to the Siti already in A; Ani's to Ani's copy.
        let siti_visit = v.visits.iter().find(|x| x.weight_kg == Some(55.0)).unwrap();
        assert_eq!(siti_visit.member_id, siti_a);
        let ani_copy = v.members.iter().find(|m| m.name == "Ani").unwrap();
        assert_eq!(v.referrals[0].member_id, ani_copy.id);
        assert_eq!(
            v.referrals[0].visit_id,
            v.visits
                .iter()
                .find(|x| x.weight_kg == Some(8.0))
                .map(|x| x.id)
        );
        // Again: nothing copied twice.
        let again = a.absorb(&vb, &meta(11)).unwrap().result;
        assert_eq!(
            (
                again.members_copied,
                again.visits_copied,
                again.referrals_copied
            ),
            (0, 0, 0)
        );
        assert_eq!(a.read().unwrap().visits.len(), 2);
        // The copy survives a save/load round trip with its provenance.
        let mut a = HouseholdDoc::load(&a.save()).unwrap();

        // Unmerge: the copies are voided, the copied referral removed.
        let n = a.release(vb.household.id, &meta(12)).unwrap().result;
        assert_eq!(n, 1 + 2 + 1);
        let v = a.read().unwrap();
        assert_eq!(v.members.iter().filter(|m| !m.voided).count(), 1);
        assert!(v.visits.iter().all(|x| x.voided));
        assert!(v.referrals.is_empty());
        assert_eq!(
            v.members.iter().find(|m| m.id == siti_a).map(|m| m.voided),
            Some(false)
        );
        // Merging again after an unmerge copies afresh.
        let w = a.absorb(&vb, &meta(13)).unwrap().result;
        assert_eq!(w.visits_copied, 2);
        assert!(a.absorb(&va, &meta(14)).is_err(), "into itself");
    }
}
