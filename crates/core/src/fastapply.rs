//! Changes that only add new visits and referrals to a household, read without loading
//! its document (the device's fast path for pulled changes, `kunjung_store`).
//!
//! A [`FastIndex`] is what such a change is checked against: the object ids of the
//! household's `visits` and `referrals` maps, the document's highest op counter and each
//! actor's highest sequence number, and the few keys of those maps that `read` does not
//! list. [`new_records`] accepts a change only when it provably does nothing but create
//! records under fresh keys, as `HouseholdDoc::add_visit` does:
//!
//! * no author, sequence number = the actor's last one + 1, first op counter = the
//!   document's highest + 1 (so Automerge will accept it exactly as written);
//! * every op is a `put` of a map object at a key of `visits` or `referrals` that the
//!   index does not list as taken, or a `put` of a scalar or a map at a key of an object
//!   created earlier in the same change;
//! * no op has a predecessor, inserts, deletes, increments, marks, lists, text or
//!   counters, and no key is written twice in one object (that would be a conflict).
//!
//! The caller also checks that the change depends on exactly the document's heads (so it
//! is new and causally after everything), and that the new keys are not visits or
//! referrals it already lists. The records are then built by the same functions `read`
//! uses, so they are the values the document would show.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Change, ObjId, ObjType, ReadDoc, ScalarValue, ValueRef};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::doc::{fields, read_referral, read_visit, FieldSource, Fields, HouseholdDoc, Val};
use crate::error::Result;
use crate::model::{Referral, Visit};

/// What a record-creating change is checked against, kept beside the document it
/// describes (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastIndex {
    /// Object id (`counter@actor`) of the `visits` map.
    pub visits: String,
    /// Object id of the `referrals` map.
    pub referrals: String,
    /// The highest op counter in the document.
    pub max_op: u64,
    /// The highest change sequence number of each actor (hex) in the document.
    pub clock: BTreeMap<String, u64>,
    /// Keys of `visits` and `referrals` that `read` does not list (malformed records):
    /// taken, although no visit or referral row shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlisted: Vec<String>,
    /// Visit ids named by reviews whose visit `read` does not list (yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewed: Vec<String>,
}

/// The records one accepted change creates.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecords {
    /// New visits, each with whether a review already names it.
    pub visits: Vec<(Visit, bool)>,
    pub referrals: Vec<Referral>,
    /// Every key the change takes in `visits` and in `referrals` (listed or not).
    pub visit_keys: Vec<String>,
    pub referral_keys: Vec<String>,
}

impl HouseholdDoc {
    /// The fast index of this document. `listed_visits` / `listed_referrals`: the ids
    /// `read` lists (the caller has them as projection rows).
    pub fn fast_index(
        &self,
        listed_visits: &BTreeSet<String>,
        listed_referrals: &BTreeSet<String>,
    ) -> Result<FastIndex> {
        let doc = self.automerge();
        let visits = self.root_map("visits")?;
        let referrals = self.root_map("referrals")?;
        let mut clock = BTreeMap::new();
        let mut max_op = 0;
        for m in doc.get_changes_meta(&[]) {
            max_op = max_op.max(m.max_op);
            let e = clock.entry(m.actor.to_hex_string()).or_insert(0);
            *e = (*e).max(m.seq);
        }
        let mut unlisted = Vec::new();
        for (map, listed) in [(&visits, listed_visits), (&referrals, listed_referrals)] {
            for item in doc.map_range(map, ..) {
                let k = item.key.to_string();
                if !listed.contains(&k) {
                    unlisted.push(k);
                }
            }
        }
        let mut reviewed = BTreeSet::new();
        for item in doc.map_range(&self.root_map("reviews")?, ..) {
            if let ValueRef::Object(ObjType::Map) = item.value {
                let f = fields(doc, &item.id());
                if let Some(v) = f.get("visit_id").uuid().map(|u| u.to_string()) {
                    if !listed_visits.contains(&v) {
                        reviewed.insert(v);
                    }
                }
            }
        }
        Ok(FastIndex {
            visits: visits.to_string(),
            referrals: referrals.to_string(),
            max_op,
            clock,
            unlisted,
            reviewed: reviewed.into_iter().collect(),
        })
    }
}

/// The objects a change creates, read like a document's.
struct Created(HashMap<ObjId, Fields>);

impl FieldSource for Created {
    fn fields(&self, obj: &ObjId) -> Fields {
        Fields(self.0.get(obj).map(|f| f.0.clone()).unwrap_or_default())
    }
}

fn scalar(v: &ScalarValue) -> Option<Val> {
    Some(match v {
        ScalarValue::Str(s) => Val::Str(s.to_string()),
        ScalarValue::Int(i) => Val::Int(*i),
        ScalarValue::Uint(u) => Val::Int(*u as i64),
        ScalarValue::F64(f) => Val::F64(*f),
        ScalarValue::Timestamp(t) => Val::Int(*t),
        ScalarValue::Boolean(b) => Val::Bool(*b),
        ScalarValue::Null => Val::Null,
        // Counters read as their current value, bytes as nothing: not worth the risk.
        _ => return None,
    })
}

fn obj_text(o: &ObjectId) -> Option<String> {
    match o {
        ObjectId::Id(id) => Some(format!("{}@{}", id.0, id.1)),
        ObjectId::Root => None,
    }
}

/// The records `change` creates when it is only that (see the module docs), with the
/// index updated to include it; `None` when it must go through the document.
pub fn new_records(change: &Change, index: &FastIndex) -> Option<(NewRecords, FastIndex)> {
    if change.author().is_some() || change.is_empty() {
        return None;
    }
    let actor = change.actor_id().to_hex_string();
    let last_seq = index.clock.get(&actor).copied().unwrap_or(0);
    if change.seq() != last_seq + 1 || change.start_op().get() != index.max_op + 1 {
        return None;
    }
    let start = change.start_op().get();
    let decoded = change.decode();
    if decoded.operations.len() != change.len() {
        return None;
    }
    // Objects created so far in this change: id text → (ObjId, fields).
    let mut created: HashMap<String, (ObjId, BTreeMap<String, Val>)> = HashMap::new();
    // Record keys taken in `visits` and `referrals`, with the object each one got.
    let mut visit_keys: Vec<(String, ObjId)> = Vec::new();
    let mut referral_keys: Vec<(String, ObjId)> = Vec::new();
    let taken: BTreeSet<&str> = index.unlisted.iter().map(String::as_str).collect();
    for (i, op) in decoded.operations.iter().enumerate() {
        if !op.pred.is_empty() || op.insert {
            return None;
        }
        let Key::Map(key) = &op.key else { return None };
        let obj = obj_text(&op.obj)?;
        let counter = start + i as u64;
        let id = ObjId::Id(counter, change.actor_id().clone(), 0);
        let val = match &op.action {
            OpType::Make(ObjType::Map) => Val::Obj(id.clone(), ObjType::Map),
            OpType::Put(v) => scalar(v)?,
            _ => return None,
        };
        let is_map = matches!(val, Val::Obj(..));
        if obj == index.visits || obj == index.referrals {
            // A record: a new map at a key not taken.
            if !is_map || taken.contains(key.as_str()) {
                return None;
            }
            let keys = if obj == index.visits {
                &mut visit_keys
            } else {
                &mut referral_keys
            };
            if keys.iter().any(|(k, _)| k == key.as_str()) {
                return None;
            }
            keys.push((key.to_string(), id.clone()));
        } else {
            let (_, f) = created.get_mut(&obj)?;
            if f.insert(key.to_string(), val).is_some() {
                return None;
            }
        }
        if is_map {
            created.insert(
                format!("{counter}@{}", change.actor_id()),
                (id, BTreeMap::new()),
            );
        }
    }
    let src = Created(
        created
            .into_values()
            .map(|(id, f)| (id, Fields(f)))
            .collect(),
    );
    let mut next = index.clone();
    let mut visits = Vec::new();
    for (k, obj) in &visit_keys {
        match Uuid::parse_str(k)
            .ok()
            .and_then(|id| read_visit(&src, id, obj))
        {
            Some(v) => {
                let reviewed = next.reviewed.iter().any(|r| r == k);
                next.reviewed.retain(|r| r != k);
                visits.push((v, reviewed));
            }
            None => next.unlisted.push(k.clone()),
        }
    }
    let mut referrals = Vec::new();
    for (k, obj) in &referral_keys {
        match Uuid::parse_str(k)
            .ok()
            .and_then(|id| read_referral(&src, id, obj))
        {
            Some(r) => referrals.push(r),
            None => next.unlisted.push(k.clone()),
        }
    }
    next.max_op = change.max_op();
    next.clock.insert(actor, change.seq());
    Some((
        NewRecords {
            visits,
            referrals,
            visit_keys: visit_keys.into_iter().map(|(k, _)| k).collect(),
            referral_keys: referral_keys.into_iter().map(|(k, _)| k).collect(),
        },
        next,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checklist::{AnswerValue, VisitAnswers};
    use crate::doc::CommitMeta;
    use crate::model::{NewHousehold, NewMember, NewVisit, Relation, Sex};
    use automerge::ActorId;
    use chrono::NaiveDate;

    fn meta(t: i64) -> CommitMeta {
        CommitMeta {
            user: "kader1".into(),
            time_ms: 1_790_000_000_000 + t,
        }
    }
    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// A household with a member and a visit, as another device holds it.
    fn household() -> (HouseholdDoc, Uuid) {
        let h = NewHousehold {
            area_code: "32.14.01.2001".into(),
            rt: "3".into(),
            rw: "1".into(),
            dusun: None,
            posyandu_id: Some("psy-1".into()),
            address: None,
            kk: None,
        };
        let mut doc = HouseholdDoc::create(Uuid::now_v7(), &h, ActorId::random(), &meta(0))
            .unwrap()
            .result;
        let m = NewMember {
            name: "Siti".into(),
            sex: Sex::F,
            birth_date: d("1994-05-12"),
            birth_date_estimated: false,
            nik: None,
            kk: None,
            relation: Some(Relation::Head),
            mother_id: None,
            jkn: None,
        };
        let mid = doc.add_member(&m, &meta(1)).unwrap().result;
        doc.add_visit(&visit(mid, false), &meta(2)).unwrap();
        (doc, mid)
    }

    fn visit(member_id: Uuid, danger: bool) -> NewVisit {
        let mut answers = BTreeMap::new();
        answers.insert("weighed_this_month".to_string(), AnswerValue::Bool(true));
        NewVisit {
            member_id,
            date: d("2026-09-20"),
            weight_kg: Some(55.5),
            bp_systolic: Some(120),
            answers: VisitAnswers::from_map(answers).unwrap(),
            danger_signs: if danger {
                vec!["preg_bleeding".into()]
            } else {
                Vec::new()
            },
            education: [("gizi".to_string(), "2026-09-20".to_string())].into(),
            notes: Some("baik".into()),
            ..Default::default()
        }
    }

    fn index_of(doc: &HouseholdDoc) -> FastIndex {
        let v = doc.read().unwrap();
        doc.fast_index(
            &v.visits.iter().map(|x| x.id.to_string()).collect(),
            &v.referrals.iter().map(|x| x.id.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn a_new_visit_with_its_referral_reads_as_the_document_shows_it() {
        let (mut doc, mid) = household();
        let index = index_of(&doc);
        let w = doc.add_visit(&visit(mid, true), &meta(3)).unwrap();
        let (vid, rid) = w.result;
        let (rec, next) = new_records(&w.change.unwrap(), &index).expect("fast");
        let view = doc.read().unwrap();
        let want = view.visits.iter().find(|v| v.id == vid).unwrap();
        assert_eq!(rec.visits, vec![(want.clone(), false)]);
        let want = view.referrals.iter().find(|r| Some(r.id) == rid).unwrap();
        assert_eq!(rec.referrals, vec![want.clone()]);
        assert_eq!(rec.visit_keys, vec![vid.to_string()]);
        // The updated index is the one the document gives.
        assert_eq!(next, index_of(&doc));
    }

    #[test]
    fn anything_but_new_records_at_free_keys_needs_the_document() {
        let (mut doc, mid) = household();
        let index = index_of(&doc);
        let mut fork = doc.clone();
        let c = fork
            .add_visit(&visit(mid, false), &meta(3))
            .unwrap()
            .change
            .unwrap();
        assert!(new_records(&c, &index).is_some());
        let vid = fork.read().unwrap().visits[1].id.to_string();
        // The key is taken by a record `read` does not list.
        let mut taken = index.clone();
        taken.unlisted.push(vid);
        assert!(new_records(&c, &taken).is_none());
        // Sequence number or op counter not the next ones: Automerge would refuse it or
        // it is not causally right after the document.
        let mut seq = index.clone();
        seq.clock.insert(c.actor_id().to_hex_string(), c.seq());
        assert!(new_records(&c, &seq).is_none());
        let mut ops = index.clone();
        ops.max_op += 1;
        assert!(new_records(&c, &ops).is_none());
        // An edit of an existing visit (a predecessor), a member, a review, a household
        // field: all need the document.
        let first = doc.read().unwrap().visits[0].id;
        let before = index_of(&doc);
        let edit = doc
            .edit(
                &[crate::doc::FieldEdit {
                    path: format!("visits/{first}/weight_kg"),
                    value: Some(AnswerValue::Num(60.0)),
                }],
                &meta(4),
                "edit",
            )
            .unwrap()
            .change
            .unwrap();
        let mut fork = doc.clone();
        let index = index_of(&fork);
        assert!(new_records(&edit, &before).is_none());
        let review = fork
            .add_review(first, None, &meta(5))
            .unwrap()
            .change
            .unwrap();
        assert!(new_records(&review, &index).is_none());
        let mut fork = doc.clone();
        let m = fork.member(mid).unwrap();
        let member = fork
            .add_member(
                &NewMember {
                    name: "Budi".into(),
                    sex: Sex::M,
                    birth_date: d("2020-01-01"),
                    birth_date_estimated: false,
                    nik: None,
                    kk: None,
                    relation: Some(Relation::Child),
                    mother_id: Some(m.id),
                    jkn: None,
                },
                &meta(6),
            )
            .unwrap()
            .change
            .unwrap();
        assert!(new_records(&member, &index).is_none());
        let moved = doc
            .edit(
                &[crate::doc::FieldEdit {
                    path: "household/address".into(),
                    value: Some(AnswerValue::Text("Jl. Baru".into())),
                }],
                &meta(7),
                "edit",
            )
            .unwrap()
            .change
            .unwrap();
        assert!(new_records(&moved, &index).is_none());
    }
}
