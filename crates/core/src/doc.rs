//! The household document: one Automerge document per household (SPEC §3).
//!
//! Layout (all records are maps keyed by UUID, all fields scalars):
//!
//! ```text
//! { schema: 1,
//!   household: { id, area_code, dusun, rt, rw, posyandu_id, address, kk, lat, lon, status,
//!                merged_into, created_at, checklist: {key: scalar}, moves: {id: {from_area, to_area, date}} },
//!   members:   { <uuid>: { name, nik, kk, sex, birth_date, birth_date_estimated, relation,
//!                          mother_id, jkn, death_date, moved_out_date, moved_out_note, voided,
//!                          void_reason, pregnancies: { <uuid>: { hpht, hpl, gravida, para, … } } } },
//!   visits:    { <uuid>: { member_id, date, stage, cadre, weight_kg, height_cm, measured, muac_cm,
//!                          head_cm, bp_systolic, bp_diastolic, reported_to_nakes, referred, notes,
//!                          voided, void_reason, created_at, answers: {key: scalar},
//!                          danger_signs: {code: true}, education: {topic: date} } },
//!   referrals: { <uuid>: { visit_id, member_id, reason, danger_signs, created_at, created_by,
//!                          status, updated_at, outcome, feedback, handled_by } },
//!   reviews:   { <uuid>: { visit_id, reviewer, at, comment } } }
//! ```
//!
//! Every change carries the device (Automerge actor), the user and the time (commit message
//! `{"user":…, "what":…}`, commit time in milliseconds). Adding a record is one targeted
//! transaction (a handful of `put`s), never a whole-document reconcile. Strings are read
//! whether stored as scalar strings or as Automerge Text (the JavaScript default).

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, ScalarValueRef,
    ValueRef, ROOT,
};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checklist::{AnswerValue, VisitAnswers};
use crate::error::{CoreError, Result};
use crate::ids::{new_id, normalize_rt_rw, AreaCode};
use crate::lifestage::LifeStage;
use crate::model::*;

/// Current layout version, stored as `schema`.
pub const SCHEMA_VERSION: i64 = 1;

/// Who makes a change and when (the device is the document's actor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMeta {
    pub user: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
}

impl CommitMeta {
    pub fn now(user: impl Into<String>) -> Self {
        CommitMeta {
            user: user.into(),
            time_ms: chrono::Utc::now().timestamp_millis(),
        }
    }
}

/// One change of the document, for the history view.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeInfo {
    pub hash: String,
    /// The device (Automerge actor id, hex).
    pub actor: String,
    pub user: Option<String>,
    pub time_ms: i64,
    pub time: String,
    pub what: Option<String>,
}

/// One of the concurrent values of a conflicting field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConflictValue {
    pub value: serde_json::Value,
    pub actor: String,
    pub user: Option<String>,
    pub time_ms: i64,
}

/// A field with concurrent values from different devices, kept for the bidan to resolve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Conflict {
    /// Path such as `members/<id>/name`.
    pub path: String,
    pub values: Vec<ConflictValue>,
}

/// A version of a field in its history.
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldVersion {
    pub change: ChangeInfo,
    /// The field's values right after this change (more than one when concurrent).
    pub values: Vec<serde_json::Value>,
}

/// A field edit: `path` names the field (e.g. `members/<id>/name`,
/// `household/checklist/clean_water`, `visits/<id>/answers/buku_kia`); `None` clears it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FieldEdit {
    pub path: String,
    pub value: Option<AnswerValue>,
}

/// The result of writing: the new change (to store and sync) and its hash.
#[derive(Debug, Clone)]
pub struct Written<T> {
    pub result: T,
    pub change: Option<Change>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Date,
    Number,
    Int,
    Bool,
    Id,
    Enum(&'static [&'static str]),
    /// Any scalar (checklist answers; checked against the checklist types elsewhere).
    Any,
}

const STATUS: &[&str] = &["active", "moved", "merged", "dissolved"];
const SEX: &[&str] = &["F", "M"];
const RELATION: &[&str] = &["head", "spouse", "child", "parent", "other"];
const MEASURED: &[&str] = &["lying", "standing"];
const REF_STATUS: &[&str] = &["open", "received", "examined", "closed"];
const STAGES: &[&str] = &[
    "pregnancy",
    "postpartum",
    "infant",
    "toddler",
    "school_adolescent",
    "adult",
    "elderly",
];

const HOUSEHOLD_FIELDS: &[(&str, Kind)] = &[
    ("area_code", Kind::Text),
    ("dusun", Kind::Text),
    ("rt", Kind::Text),
    ("rw", Kind::Text),
    ("posyandu_id", Kind::Text),
    ("address", Kind::Text),
    ("kk", Kind::Text),
    ("lat", Kind::Number),
    ("lon", Kind::Number),
    ("status", Kind::Enum(STATUS)),
    ("merged_into", Kind::Id),
];
const MEMBER_FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Text),
    ("nik", Kind::Text),
    ("kk", Kind::Text),
    ("sex", Kind::Enum(SEX)),
    ("birth_date", Kind::Date),
    ("birth_date_estimated", Kind::Bool),
    ("relation", Kind::Enum(RELATION)),
    ("mother_id", Kind::Id),
    ("jkn", Kind::Bool),
    ("death_date", Kind::Date),
    ("moved_out_date", Kind::Date),
    ("moved_out_note", Kind::Text),
    ("voided", Kind::Bool),
    ("void_reason", Kind::Text),
];
const PREGNANCY_FIELDS: &[(&str, Kind)] = &[
    ("hpht", Kind::Date),
    ("hpl", Kind::Date),
    ("gravida", Kind::Int),
    ("para", Kind::Int),
    ("abortus", Kind::Int),
    ("delivery_date", Kind::Date),
    ("delivery_place", Kind::Text),
    ("ended", Kind::Date),
];
const VISIT_FIELDS: &[(&str, Kind)] = &[
    ("date", Kind::Date),
    ("stage", Kind::Enum(STAGES)),
    ("weight_kg", Kind::Number),
    ("height_cm", Kind::Number),
    ("measured", Kind::Enum(MEASURED)),
    ("muac_cm", Kind::Number),
    ("head_cm", Kind::Number),
    ("bp_systolic", Kind::Int),
    ("bp_diastolic", Kind::Int),
    ("reported_to_nakes", Kind::Bool),
    ("notes", Kind::Text),
    ("voided", Kind::Bool),
    ("void_reason", Kind::Text),
];
const REFERRAL_FIELDS: &[(&str, Kind)] = &[
    ("status", Kind::Enum(REF_STATUS)),
    ("updated_at", Kind::Int),
    ("outcome", Kind::Text),
    ("feedback", Kind::Text),
    ("handled_by", Kind::Text),
];

fn to_scalar(v: &AnswerValue) -> ScalarValue {
    match v {
        AnswerValue::Bool(b) => ScalarValue::Boolean(*b),
        AnswerValue::Int(i) => ScalarValue::Int(*i),
        AnswerValue::Num(f) => ScalarValue::F64(*f),
        AnswerValue::Text(s) => ScalarValue::Str(s.as_str().into()),
    }
}

fn check_kind(path: &str, kind: Kind, v: &AnswerValue) -> Result<()> {
    let bad = |what: &str| {
        Err(CoreError::Invalid(format!(
            "nilai untuk '{path}' harus {what} (value for '{path}' must be {what})"
        )))
    };
    match (kind, v) {
        (Kind::Any, _) => Ok(()),
        (Kind::Text, AnswerValue::Text(_)) => Ok(()),
        (Kind::Id, AnswerValue::Text(s)) => Uuid::parse_str(s).map(|_| ()).or_else(|_| bad("UUID")),
        (Kind::Date, AnswerValue::Text(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(|_| ())
            .or_else(|_| bad("tanggal YYYY-MM-DD")),
        (Kind::Number, AnswerValue::Num(f)) if f.is_finite() => Ok(()),
        (Kind::Number, AnswerValue::Int(_)) => Ok(()),
        (Kind::Int, AnswerValue::Int(_)) => Ok(()),
        (Kind::Bool, AnswerValue::Bool(_)) => Ok(()),
        (Kind::Enum(opts), AnswerValue::Text(s)) if opts.contains(&s.as_str()) => Ok(()),
        (Kind::Enum(opts), _) => bad(&opts.join("|")),
        _ => bad(match kind {
            Kind::Text => "teks",
            Kind::Number => "angka",
            Kind::Int => "bilangan bulat",
            Kind::Bool => "true/false",
            _ => "nilai yang sah",
        }),
    }
}

/// A scalar read from the document, with Text objects already turned into strings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    F64(f64),
    Bool(bool),
    Null,
    Obj(ObjId, ObjType),
    Other,
}

impl Val {
    fn str(&self) -> Option<String> {
        match self {
            Val::Str(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }
    fn f64(&self) -> Option<f64> {
        match self {
            Val::F64(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            Val::Str(s) => s.parse().ok(),
            _ => None,
        }
    }
    fn i64(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::F64(f) if f.fract() == 0.0 => Some(*f as i64),
            Val::Str(s) => s.parse().ok(),
            _ => None,
        }
    }
    fn bool(&self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(*b),
            Val::Str(s) => match s.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }
    fn date(&self) -> Option<NaiveDate> {
        self.str()
            .and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
    }
    pub(crate) fn uuid(&self) -> Option<Uuid> {
        self.str().and_then(|s| Uuid::parse_str(&s).ok())
    }
    fn answer(&self) -> Option<AnswerValue> {
        Some(match self {
            Val::Str(s) => AnswerValue::Text(s.clone()),
            Val::Int(i) => AnswerValue::Int(*i),
            Val::F64(f) => AnswerValue::Num(*f),
            Val::Bool(b) => AnswerValue::Bool(*b),
            _ => return None,
        })
    }
    fn json(&self) -> serde_json::Value {
        match self {
            Val::Str(s) => serde_json::Value::String(s.clone()),
            Val::Int(i) => (*i).into(),
            Val::F64(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Val::Bool(b) => (*b).into(),
            Val::Null | Val::Other => serde_json::Value::Null,
            Val::Obj(_, _) => serde_json::Value::String("<object>".into()),
        }
    }
}

/// Fields of one map object.
pub(crate) struct Fields(pub(crate) BTreeMap<String, Val>);

impl Fields {
    pub(crate) fn get(&self, k: &str) -> &Val {
        self.0.get(k).unwrap_or(&Val::Null)
    }
    fn obj(&self, k: &str) -> Option<&ObjId> {
        match self.0.get(k) {
            Some(Val::Obj(id, ObjType::Map)) => Some(id),
            _ => None,
        }
    }
}

/// Parses one change chunk and verifies its checksum (bytes 4..8 of a chunk are the first
/// four bytes of the change hash), which `Change::from_bytes` alone does not check.
pub fn parse_change(bytes: &[u8]) -> Result<Change> {
    let c = Change::from_bytes(bytes.to_vec())
        .map_err(|e| CoreError::CorruptDocument(e.to_string()))?;
    if bytes.len() < 8 || bytes[4..8] != c.hash().0[..4] {
        return Err(CoreError::CorruptDocument(
            "checksum perubahan tidak cocok (change checksum mismatch)".into(),
        ));
    }
    Ok(c)
}

fn read_member(src: &Src<'_>, id: Uuid, obj: &ObjId) -> Member {
    let f = src.fields(obj);
    let mut pregnancies = Vec::new();
    if let Some(p) = f.obj("pregnancies") {
        for (pk, pv) in src.fields(p).0 {
            let (Val::Obj(po, ObjType::Map), Ok(pid)) = (pv, Uuid::parse_str(&pk)) else {
                continue;
            };
            let pf = src.fields(&po);
            pregnancies.push(Pregnancy {
                id: pid,
                hpht: pf.get("hpht").date(),
                hpl: pf.get("hpl").date(),
                gravida: pf.get("gravida").i64(),
                para: pf.get("para").i64(),
                abortus: pf.get("abortus").i64(),
                delivery_date: pf.get("delivery_date").date(),
                delivery_place: pf.get("delivery_place").str(),
                ended: pf.get("ended").date(),
            });
        }
    }
    Member {
        id,
        name: f.get("name").str().unwrap_or_default(),
        nik: f.get("nik").str(),
        kk: f.get("kk").str(),
        sex: f.get("sex").str().and_then(|s| Sex::parse(&s)),
        birth_date: f.get("birth_date").date(),
        birth_date_estimated: f.get("birth_date_estimated").bool().unwrap_or(false),
        relation: f.get("relation").str().and_then(|s| Relation::parse(&s)),
        mother_id: f.get("mother_id").uuid(),
        jkn: f.get("jkn").bool(),
        death_date: f.get("death_date").date(),
        moved_out_date: f.get("moved_out_date").date(),
        moved_out_note: f.get("moved_out_note").str(),
        voided: f.get("voided").bool().unwrap_or(false),
        void_reason: f.get("void_reason").str(),
        pregnancies,
    }
}

/// Where record reading gets a map's fields: the document ([`Src`]) or the objects a
/// change creates (`crate::fastapply`).
pub(crate) trait FieldSource {
    fn fields(&self, obj: &ObjId) -> Fields;
}

impl FieldSource for Src<'_> {
    fn fields(&self, obj: &ObjId) -> Fields {
        Src::fields(self, obj)
    }
}

/// A visit record (None when it lacks a member or a date, as `read` skips it).
pub(crate) fn read_visit(src: &impl FieldSource, id: Uuid, obj: &ObjId) -> Option<Visit> {
    let f = src.fields(obj);
    let (Some(member_id), Some(date)) = (f.get("member_id").uuid(), f.get("date").date()) else {
        return None;
    };
    let mut answers = BTreeMap::new();
    if let Some(a) = f.obj("answers") {
        for (k, v) in src.fields(a).0 {
            if let Some(a) = v.answer() {
                answers.insert(k, a);
            }
        }
    }
    let danger_signs = f
        .obj("danger_signs")
        .map(|o| {
            src.fields(o)
                .0
                .into_iter()
                .filter(|(_, v)| v.bool() != Some(false))
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    let education = f
        .obj("education")
        .map(|o| {
            src.fields(o)
                .0
                .into_iter()
                .map(|(k, v)| (k, v.str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Some(Visit {
        id,
        member_id,
        date,
        stage: f.get("stage").str().and_then(|s| LifeStage::parse(&s)),
        cadre: f.get("cadre").str(),
        weight_kg: f.get("weight_kg").f64(),
        height_cm: f.get("height_cm").f64(),
        measured: f.get("measured").str().and_then(|s| Measured::parse(&s)),
        muac_cm: f.get("muac_cm").f64(),
        head_cm: f.get("head_cm").f64(),
        bp_systolic: f.get("bp_systolic").i64(),
        bp_diastolic: f.get("bp_diastolic").i64(),
        answers: VisitAnswers::from_map_lenient(answers),
        danger_signs,
        education,
        reported_to_nakes: f.get("reported_to_nakes").bool(),
        referred: f.get("referred").bool().unwrap_or(false),
        notes: f.get("notes").str(),
        voided: f.get("voided").bool().unwrap_or(false),
        void_reason: f.get("void_reason").str(),
        created_at: f.get("created_at").i64().unwrap_or(0),
    })
}

/// A referral record (None when it lacks a member, as `read` skips it).
pub(crate) fn read_referral(src: &impl FieldSource, id: Uuid, obj: &ObjId) -> Option<Referral> {
    let f = src.fields(obj);
    let member_id = f.get("member_id").uuid()?;
    Some(Referral {
        id,
        visit_id: f.get("visit_id").uuid(),
        member_id,
        reason: f.get("reason").str().unwrap_or_default(),
        danger_signs: f
            .get("danger_signs")
            .str()
            .map(|s| s.split(',').map(String::from).collect())
            .unwrap_or_default(),
        created_at: f.get("created_at").i64().unwrap_or(0),
        created_by: f.get("created_by").str(),
        status: f
            .get("status")
            .str()
            .and_then(|s| ReferralStatus::parse(&s))
            .unwrap_or_default(),
        updated_at: f.get("updated_at").i64(),
        outcome: f.get("outcome").str(),
        feedback: f.get("feedback").str(),
        handled_by: f.get("handled_by").str(),
    })
}

/// A household document.
#[derive(Debug, Clone)]
pub struct HouseholdDoc {
    doc: Automerge,
}

fn read_value(doc: &Automerge, value: ValueRef<'_>, id: ObjId) -> Val {
    match value {
        ValueRef::Object(ObjType::Text) => doc.text(&id).map(Val::Str).unwrap_or(Val::Other),
        ValueRef::Object(t) => Val::Obj(id, t),
        ValueRef::Scalar(s) => match s {
            ScalarValueRef::Str(s) => Val::Str(s.into_owned()),
            ScalarValueRef::Int(i) => Val::Int(i),
            ScalarValueRef::Uint(u) => Val::Int(u as i64),
            ScalarValueRef::F64(f) => Val::F64(f),
            ScalarValueRef::Counter(c) => Val::Int(c),
            ScalarValueRef::Timestamp(t) => Val::Int(t),
            ScalarValueRef::Boolean(b) => Val::Bool(b),
            ScalarValueRef::Null => Val::Null,
            _ => Val::Other,
        },
    }
}

/// Where `read` gets a map's fields: from the document, or from those a conflict scan
/// already collected (`read_with_conflicts`), so that each map is walked only once.
struct Src<'a> {
    doc: &'a Automerge,
    seen: std::cell::RefCell<std::collections::HashMap<ObjId, Fields>>,
}

impl<'a> Src<'a> {
    fn new(doc: &'a Automerge) -> Src<'a> {
        Src {
            doc,
            seen: Default::default(),
        }
    }

    fn fields(&self, obj: &ObjId) -> Fields {
        match self.seen.borrow_mut().remove(obj) {
            Some(f) => f,
            None => fields(self.doc, obj),
        }
    }
}

pub(crate) fn fields(doc: &Automerge, obj: &ObjId) -> Fields {
    let mut out = BTreeMap::new();
    for item in doc.map_range(obj, ..) {
        let id = item.id();
        let key = item.key.to_string();
        let v = read_value(doc, item.value, id);
        out.insert(key, v);
    }
    Fields(out)
}

fn commit_opts(meta: &CommitMeta, what: &str) -> CommitOptions {
    let msg = serde_json::json!({"user": meta.user, "what": what}).to_string();
    CommitOptions::default()
        .with_message(msg)
        .with_time(meta.time_ms)
}

fn parse_message(msg: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(msg) = msg else { return (None, None) };
    match serde_json::from_str::<serde_json::Value>(msg) {
        Ok(v) => (
            v.get("user").and_then(|u| u.as_str()).map(String::from),
            v.get("what").and_then(|u| u.as_str()).map(String::from),
        ),
        Err(_) => (None, Some(msg.to_string())),
    }
}

fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn put_opt<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    v: Option<impl Into<ScalarValue>>,
) -> Result<()> {
    if let Some(v) = v {
        tx.put(obj, key, v)?;
    }
    Ok(())
}

fn date_str(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn check_text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.chars().count() > max {
        return Err(CoreError::Invalid(format!(
            "{what} terlalu panjang (maks. {max} karakter) ({what} is too long, max {max})"
        )));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(CoreError::Invalid(format!(
            "{what} berisi karakter kendali ({what} contains control characters)"
        )));
    }
    Ok(())
}

fn check_measure(what: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<()> {
    if let Some(x) = v {
        if !x.is_finite() || x <= lo || x > hi {
            return Err(CoreError::Invalid(format!(
                "{what} {x} di luar rentang yang mungkin ({lo}–{hi}) (value out of the possible range)"
            )));
        }
    }
    Ok(())
}

impl HouseholdDoc {
    /// Creates a household document; the first change creates every top-level map so
    /// that later concurrent adds on other devices never collide.
    pub fn create(
        id: Uuid,
        h: &NewHousehold,
        actor: ActorId,
        meta: &CommitMeta,
    ) -> Result<Written<HouseholdDoc>> {
        let area = AreaCode::parse_desa(&h.area_code)?;
        let rt = normalize_rt_rw(&h.rt, "RT")?;
        let rw = normalize_rt_rw(&h.rw, "RW")?;
        for (what, v) in [
            ("dusun", &h.dusun),
            ("alamat", &h.address),
            ("posyandu", &h.posyandu_id),
            ("No. KK", &h.kk),
        ] {
            if let Some(v) = v {
                check_text(what, v, 500)?;
            }
        }
        let mut doc = Automerge::new().with_actor(actor);
        doc.transact_with(
            |_| commit_opts(meta, "household.create"),
            |tx| -> Result<()> {
                tx.put(ROOT, "schema", SCHEMA_VERSION)?;
                let hh = tx.put_object(ROOT, "household", ObjType::Map)?;
                tx.put(&hh, "id", id.to_string())?;
                tx.put(&hh, "area_code", area.as_str())?;
                tx.put(&hh, "rt", rt.as_str())?;
                tx.put(&hh, "rw", rw.as_str())?;
                put_opt(tx, &hh, "dusun", h.dusun.as_deref())?;
                put_opt(tx, &hh, "posyandu_id", h.posyandu_id.as_deref())?;
                put_opt(tx, &hh, "address", h.address.as_deref())?;
                put_opt(tx, &hh, "kk", h.kk.as_deref())?;
                tx.put(&hh, "status", "active")?;
                tx.put(&hh, "created_at", ScalarValue::Timestamp(meta.time_ms))?;
                tx.put_object(&hh, "checklist", ObjType::Map)?;
                tx.put_object(&hh, "moves", ObjType::Map)?;
                for m in ["members", "visits", "referrals", "reviews"] {
                    tx.put_object(ROOT, m, ObjType::Map)?;
                }
                Ok(())
            },
        )
        .map_err(|f| f.error)?;
        let change = doc.get_last_local_change();
        Ok(Written {
            result: HouseholdDoc { doc },
            change,
        })
    }

    /// Loads a saved document or a concatenation of changes. Checks it is a household.
    pub fn load(bytes: &[u8]) -> Result<HouseholdDoc> {
        let doc = Automerge::load(bytes).map_err(|e| CoreError::CorruptDocument(e.to_string()))?;
        let d = HouseholdDoc { doc };
        d.id()?;
        Ok(d)
    }

    /// Loads a snapshot, then the changes made after it.
    pub fn load_with_changes<'a>(
        snapshot: &[u8],
        changes: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<HouseholdDoc> {
        let mut doc =
            Automerge::load(snapshot).map_err(|e| CoreError::CorruptDocument(e.to_string()))?;
        for c in changes {
            doc.load_incremental(c)
                .map_err(|e| CoreError::CorruptDocument(e.to_string()))?;
        }
        let d = HouseholdDoc { doc };
        d.id()?;
        Ok(d)
    }

    pub fn from_automerge(doc: Automerge) -> Result<HouseholdDoc> {
        let d = HouseholdDoc { doc };
        d.id()?;
        Ok(d)
    }

    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    pub fn set_actor(&mut self, actor: ActorId) {
        self.doc.set_actor(actor);
    }

    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub(crate) fn root_map(&self, key: &str) -> Result<ObjId> {
        match self.doc.get(ROOT, key)? {
            Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(CoreError::CorruptDocument(format!(
                "bagian '{key}' tidak ada (missing '{key}')"
            ))),
        }
    }

    fn child_map(&self, parent: &ObjId, key: &str) -> Result<Option<ObjId>> {
        match self.doc.get(parent, key)? {
            Some((automerge::Value::Object(ObjType::Map), id)) => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// The household id.
    pub fn id(&self) -> Result<Uuid> {
        let hh = self.root_map("household")?;
        let f = fields(&self.doc, &hh);
        f.get("id").uuid().ok_or_else(|| {
            CoreError::CorruptDocument("id rumah tangga tidak ada (missing household id)".into())
        })
    }

    /// Where the household is: (area code, posyandu id), read without the rest of it.
    pub fn location(&self) -> Result<(String, Option<String>)> {
        let hh = self.root_map("household")?;
        let f = fields(&self.doc, &hh);
        Ok((
            f.get("area_code").str().unwrap_or_default(),
            f.get("posyandu_id").str(),
        ))
    }

    fn member_obj(&self, id: Uuid) -> Result<ObjId> {
        let members = self.root_map("members")?;
        self.child_map(&members, &id.to_string())?
            .ok_or_else(|| CoreError::NotFound(format!("anggota {id} (member)")))
    }

    fn commit<O>(
        &mut self,
        meta: &CommitMeta,
        what: &str,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<O>,
    ) -> Result<Written<O>> {
        let before = self.doc.get_heads();
        let ok = self
            .doc
            .transact_with(|_| commit_opts(meta, what), f)
            .map_err(|f| f.error)?;
        let change = match ok.hash {
            Some(h) if !before.contains(&h) => self.doc.get_change_by_hash(&h),
            _ => None,
        };
        Ok(Written {
            result: ok.result,
            change,
        })
    }

    /// Reads one member (without reading the rest of the household).
    pub fn member(&self, id: Uuid) -> Result<Member> {
        let obj = self.member_obj(id)?;
        Ok(read_member(&Src::new(&self.doc), id, &obj))
    }

    /// Adds a member (one targeted transaction).
    pub fn add_member(&mut self, m: &NewMember, meta: &CommitMeta) -> Result<Written<Uuid>> {
        let name = m.name.trim();
        if name.is_empty() {
            return Err(CoreError::Invalid(
                "nama wajib diisi (name is required)".into(),
            ));
        }
        check_text("nama", name, 200)?;
        for (what, v) in [("NIK", &m.nik), ("No. KK", &m.kk)] {
            if let Some(v) = v {
                check_text(what, v, 32)?;
            }
        }
        let today = chrono::DateTime::from_timestamp_millis(meta.time_ms)
            .map(|t| t.date_naive())
            .unwrap_or(NaiveDate::MAX);
        if m.birth_date > today + chrono::Duration::days(1) {
            return Err(CoreError::Invalid(
                "tanggal lahir tidak boleh di masa depan (birth date cannot be in the future)"
                    .into(),
            ));
        }
        if m.birth_date < NaiveDate::from_ymd_opt(1890, 1, 1).unwrap_or(NaiveDate::MIN) {
            return Err(CoreError::Invalid(
                "tanggal lahir tidak masuk akal (impossible birth date)".into(),
            ));
        }
        if let Some(mid) = m.mother_id {
            self.member_obj(mid)?;
        }
        let members = self.root_map("members")?;
        let id = new_id();
        let w = self.commit(meta, &format!("member.add {id}"), |tx| {
            let o = tx.put_object(&members, id.to_string(), ObjType::Map)?;
            tx.put(&o, "name", name)?;
            tx.put(&o, "sex", m.sex.code())?;
            tx.put(&o, "birth_date", date_str(m.birth_date))?;
            if m.birth_date_estimated {
                tx.put(&o, "birth_date_estimated", true)?;
            }
            put_opt(tx, &o, "nik", m.nik.as_deref().map(str::trim))?;
            put_opt(tx, &o, "kk", m.kk.as_deref().map(str::trim))?;
            put_opt(tx, &o, "relation", m.relation.map(|r| r.code()))?;
            put_opt(tx, &o, "mother_id", m.mother_id.map(|u| u.to_string()))?;
            put_opt(tx, &o, "jkn", m.jkn)?;
            tx.put_object(&o, "pregnancies", ObjType::Map)?;
            Ok(())
        })?;
        Ok(Written {
            result: id,
            change: w.change,
        })
    }

    /// Records a pregnancy of a member.
    pub fn add_pregnancy(
        &mut self,
        member_id: Uuid,
        p: &Pregnancy,
        meta: &CommitMeta,
    ) -> Result<Written<Uuid>> {
        let m = self.member_obj(member_id)?;
        let pregs = match self.child_map(&m, "pregnancies")? {
            Some(p) => p,
            None => {
                // Written by an older layout: create the map in this change.
                let w = self.commit(meta, "member.pregnancies", |tx| {
                    Ok(tx.put_object(&m, "pregnancies", ObjType::Map)?)
                })?;
                w.result
            }
        };
        if p.hpht.is_none() && p.hpl.is_none() {
            return Err(CoreError::Invalid(
                "HPHT atau HPL wajib diisi (LMP or EDD is required)".into(),
            ));
        }
        let id = if p.id.is_nil() { new_id() } else { p.id };
        let w = self.commit(meta, &format!("pregnancy.add {id}"), |tx| {
            let o = tx.put_object(&pregs, id.to_string(), ObjType::Map)?;
            put_opt(tx, &o, "hpht", p.hpht.map(date_str))?;
            put_opt(tx, &o, "hpl", p.hpl.map(date_str))?;
            put_opt(tx, &o, "gravida", p.gravida)?;
            put_opt(tx, &o, "para", p.para)?;
            put_opt(tx, &o, "abortus", p.abortus)?;
            put_opt(tx, &o, "delivery_date", p.delivery_date.map(date_str))?;
            put_opt(tx, &o, "delivery_place", p.delivery_place.as_deref())?;
            put_opt(tx, &o, "ended", p.ended.map(date_str))?;
            Ok(())
        })?;
        Ok(Written {
            result: id,
            change: w.change,
        })
    }

    /// Adds a visit, and a referral when it has danger signs or a referral reason — all in
    /// one change. Returns (visit id, referral id).
    pub fn add_visit(
        &mut self,
        v: &NewVisit,
        meta: &CommitMeta,
    ) -> Result<Written<(Uuid, Option<Uuid>)>> {
        let member = self.member_obj(v.member_id)?;
        let mf = fields(&self.doc, &member);
        if mf.get("voided").bool() == Some(true) {
            return Err(CoreError::Invalid(
                "anggota ini sudah dibatalkan (this member was voided)".into(),
            ));
        }
        if let Some(bd) = mf.get("birth_date").date() {
            if v.date < bd {
                return Err(CoreError::Invalid(
                    "tanggal kunjungan sebelum tanggal lahir (visit date is before the birth date)"
                        .into(),
                ));
            }
        }
        let today = chrono::DateTime::from_timestamp_millis(meta.time_ms)
            .map(|t| t.date_naive())
            .unwrap_or(NaiveDate::MAX);
        if v.date > today + chrono::Duration::days(1) {
            return Err(CoreError::Invalid(
                "tanggal kunjungan tidak boleh di masa depan (visit date cannot be in the future)"
                    .into(),
            ));
        }
        check_measure("berat badan (kg)", v.weight_kg, 0.0, 300.0)?;
        check_measure("panjang/tinggi badan (cm)", v.height_cm, 20.0, 250.0)?;
        check_measure("LiLA (cm)", v.muac_cm, 5.0, 70.0)?;
        check_measure("lingkar kepala (cm)", v.head_cm, 15.0, 80.0)?;
        for (what, b) in [("sistolik", v.bp_systolic), ("diastolik", v.bp_diastolic)] {
            if let Some(b) = b {
                if !(30..=300).contains(&b) {
                    return Err(CoreError::Invalid(format!(
                        "tekanan darah {what} {b} tidak mungkin (impossible blood pressure)"
                    )));
                }
            }
        }
        if v.measured.is_some() && v.height_cm.is_none() {
            return Err(CoreError::Invalid(
                "cara ukur tanpa panjang/tinggi badan (measured given without a length/height)"
                    .into(),
            ));
        }
        for code in &v.danger_signs {
            if crate::danger::lookup(code).is_none() {
                return Err(CoreError::Invalid(format!(
                    "kode tanda bahaya tidak dikenal: '{code}' (unknown danger sign code)"
                )));
            }
        }
        if let Some(n) = &v.notes {
            check_text("catatan", n, 4000)?;
        }
        if let Some(r) = &v.refer_reason {
            check_text("alasan rujukan", r, 1000)?;
        }
        let visits = self.root_map("visits")?;
        let referrals = self.root_map("referrals")?;
        let id = new_id();
        let refer = !v.danger_signs.is_empty() || v.refer_reason.is_some();
        let ref_id = refer.then(new_id);
        let w = self.commit(meta, &format!("visit.add {id}"), |tx| {
            let o = tx.put_object(&visits, id.to_string(), ObjType::Map)?;
            tx.put(&o, "member_id", v.member_id.to_string())?;
            tx.put(&o, "date", date_str(v.date))?;
            put_opt(tx, &o, "stage", v.stage.map(|s| s.code()))?;
            tx.put(&o, "cadre", meta.user.as_str())?;
            put_opt(tx, &o, "weight_kg", v.weight_kg)?;
            put_opt(tx, &o, "height_cm", v.height_cm)?;
            put_opt(tx, &o, "measured", v.measured.map(|m| m.code()))?;
            put_opt(tx, &o, "muac_cm", v.muac_cm)?;
            put_opt(tx, &o, "head_cm", v.head_cm)?;
            put_opt(tx, &o, "bp_systolic", v.bp_systolic)?;
            put_opt(tx, &o, "bp_diastolic", v.bp_diastolic)?;
            put_opt(tx, &o, "reported_to_nakes", v.reported_to_nakes)?;
            put_opt(tx, &o, "notes", v.notes.as_deref())?;
            tx.put(&o, "referred", refer)?;
            tx.put(&o, "created_at", ScalarValue::Timestamp(meta.time_ms))?;
            let answers = v.answers.to_map();
            let a = tx.put_object(&o, "answers", ObjType::Map)?;
            for (k, val) in &answers {
                tx.put(&a, k.as_str(), to_scalar(val))?;
            }
            if !v.danger_signs.is_empty() {
                let d = tx.put_object(&o, "danger_signs", ObjType::Map)?;
                for c in &v.danger_signs {
                    tx.put(&d, c.as_str(), true)?;
                }
            }
            if !v.education.is_empty() {
                let e = tx.put_object(&o, "education", ObjType::Map)?;
                for (topic, date) in &v.education {
                    tx.put(&e, topic.as_str(), date.as_str())?;
                }
            }
            if let Some(rid) = ref_id {
                let r = tx.put_object(&referrals, rid.to_string(), ObjType::Map)?;
                let mut reason = Vec::new();
                if !v.danger_signs.is_empty() {
                    reason.push(crate::danger::referral_reason(&v.danger_signs));
                }
                if let Some(x) = &v.refer_reason {
                    reason.push(x.clone());
                }
                tx.put(&r, "visit_id", id.to_string())?;
                tx.put(&r, "member_id", v.member_id.to_string())?;
                tx.put(&r, "reason", reason.join("; "))?;
                tx.put(&r, "danger_signs", v.danger_signs.join(","))?;
                tx.put(&r, "created_at", ScalarValue::Timestamp(meta.time_ms))?;
                tx.put(&r, "created_by", meta.user.as_str())?;
                tx.put(&r, "status", "open")?;
            }
            Ok(())
        })?;
        Ok(Written {
            result: (id, ref_id),
            change: w.change,
        })
    }

    /// Adds a bidan's review (acknowledgement) of a visit.
    pub fn add_review(
        &mut self,
        visit_id: Uuid,
        comment: Option<&str>,
        meta: &CommitMeta,
    ) -> Result<Written<Uuid>> {
        let visits = self.root_map("visits")?;
        if self.child_map(&visits, &visit_id.to_string())?.is_none() {
            return Err(CoreError::NotFound(format!("kunjungan {visit_id} (visit)")));
        }
        if let Some(c) = comment {
            check_text("komentar", c, 2000)?;
        }
        let reviews = self.root_map("reviews")?;
        let id = new_id();
        let w = self.commit(meta, &format!("review.add {id}"), |tx| {
            let o = tx.put_object(&reviews, id.to_string(), ObjType::Map)?;
            tx.put(&o, "visit_id", visit_id.to_string())?;
            tx.put(&o, "reviewer", meta.user.as_str())?;
            tx.put(&o, "at", ScalarValue::Timestamp(meta.time_ms))?;
            put_opt(tx, &o, "comment", comment)?;
            Ok(())
        })?;
        Ok(Written {
            result: id,
            change: w.change,
        })
    }

    /// Moves the household to another area (recorded in `household/moves`).
    pub fn move_household(
        &mut self,
        to_area: &str,
        rt: &str,
        rw: &str,
        posyandu_id: Option<&str>,
        date: NaiveDate,
        meta: &CommitMeta,
    ) -> Result<Written<()>> {
        let area = AreaCode::parse_desa(to_area)?;
        let rt = normalize_rt_rw(rt, "RT")?;
        let rw = normalize_rt_rw(rw, "RW")?;
        let hh = self.root_map("household")?;
        let from = fields(&self.doc, &hh)
            .get("area_code")
            .str()
            .unwrap_or_default();
        let moves = self.child_map(&hh, "moves")?;
        self.commit(meta, &format!("household.move {to_area}"), |tx| {
            let moves = match moves {
                Some(m) => m,
                None => tx.put_object(&hh, "moves", ObjType::Map)?,
            };
            let m = tx.put_object(&moves, new_id().to_string(), ObjType::Map)?;
            tx.put(&m, "from_area", from.as_str())?;
            tx.put(&m, "to_area", area.as_str())?;
            tx.put(&m, "date", date_str(date))?;
            tx.put(&hh, "area_code", area.as_str())?;
            tx.put(&hh, "rt", rt.as_str())?;
            tx.put(&hh, "rw", rw.as_str())?;
            match posyandu_id {
                Some(p) => tx.put(&hh, "posyandu_id", p)?,
                None => tx.delete(&hh, "posyandu_id")?,
            }
            Ok(())
        })
    }

    /// Resolves a path to (object, key, kind).
    fn resolve_path(&self, path: &str) -> Result<(ObjId, String, Kind)> {
        let parts: Vec<&str> = path.split('/').collect();
        let bad = || {
            CoreError::Invalid(format!(
                "kolom '{path}' tidak dikenal atau tidak boleh diubah (unknown or read-only field)"
            ))
        };
        let field =
            |list: &[(&str, Kind)], k: &str| list.iter().find(|(n, _)| *n == k).map(|(_, kd)| *kd);
        let record = |root: &str, id: &str| -> Result<ObjId> {
            Uuid::parse_str(id).map_err(|_| bad())?;
            let r = self.root_map(root)?;
            self.child_map(&r, id)?
                .ok_or_else(|| CoreError::NotFound(format!("{root}/{id}")))
        };
        match parts.as_slice() {
            ["household", "checklist", k] => {
                let hh = self.root_map("household")?;
                let cl = self.child_map(&hh, "checklist")?.ok_or_else(bad)?;
                let kind = crate::checklist::HouseholdChecklist::ITEMS
                    .iter()
                    .find(|i| i.key == *k)
                    .map(|_| Kind::Bool)
                    .unwrap_or(Kind::Any);
                Ok((cl, k.to_string(), kind))
            }
            ["household", k] => Ok((
                self.root_map("household")?,
                k.to_string(),
                field(HOUSEHOLD_FIELDS, k).ok_or_else(bad)?,
            )),
            ["members", id, "pregnancies", pid, k] => {
                let m = record("members", id)?;
                let p = self.child_map(&m, "pregnancies")?.ok_or_else(bad)?;
                let p = self
                    .child_map(&p, pid)?
                    .ok_or_else(|| CoreError::NotFound(format!("kehamilan {pid} (pregnancy)")))?;
                Ok((
                    p,
                    k.to_string(),
                    field(PREGNANCY_FIELDS, k).ok_or_else(bad)?,
                ))
            }
            ["members", id, k] => Ok((
                record("members", id)?,
                k.to_string(),
                field(MEMBER_FIELDS, k).ok_or_else(bad)?,
            )),
            ["visits", id, "answers", k] => {
                let v = record("visits", id)?;
                let a = self.child_map(&v, "answers")?.ok_or_else(bad)?;
                Ok((a, k.to_string(), Kind::Any))
            }
            ["visits", id, k] => Ok((
                record("visits", id)?,
                k.to_string(),
                field(VISIT_FIELDS, k).ok_or_else(bad)?,
            )),
            ["referrals", id, k] => Ok((
                record("referrals", id)?,
                k.to_string(),
                field(REFERRAL_FIELDS, k).ok_or_else(bad)?,
            )),
            _ => Err(bad()),
        }
    }

    /// Applies field edits as one change. Values are checked against the field's type;
    /// answers are checked against the checklist types. Writing a field that is in
    /// conflict resolves the conflict (the new value supersedes all concurrent ones).
    pub fn edit(
        &mut self,
        edits: &[FieldEdit],
        meta: &CommitMeta,
        what: &str,
    ) -> Result<Written<()>> {
        let mut resolved = Vec::with_capacity(edits.len());
        for e in edits {
            let (obj, key, kind) = self.resolve_path(&e.path)?;
            if let Some(v) = &e.value {
                check_kind(&e.path, kind, v)?;
                if let AnswerValue::Text(s) = v {
                    check_text(&e.path, s, 4000)?;
                }
                if kind == Kind::Any {
                    let mut m = BTreeMap::new();
                    m.insert(key.clone(), v.clone());
                    VisitAnswers::from_map(m)?;
                }
                if e.path == "household/area_code" {
                    AreaCode::parse_desa(match v {
                        AnswerValue::Text(s) => s,
                        _ => "",
                    })?;
                }
            }
            resolved.push((obj, key, e.value.clone()));
        }
        self.commit(meta, what, |tx| {
            for (obj, key, v) in &resolved {
                match v {
                    Some(v) => tx.put(obj, key.as_str(), to_scalar(v))?,
                    None => tx.delete(obj, key.as_str())?,
                }
            }
            Ok(())
        })
    }

    /// Merges a saved document or a concatenation of changes received from elsewhere (a
    /// bundle, a snapshot from the server). Parsing is strict: corrupt input is an error
    /// and nothing is applied. Returns the hashes of the changes new to this document.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<Vec<ChangeHash>> {
        let mut other =
            Automerge::load(bytes).map_err(|e| CoreError::CorruptDocument(e.to_string()))?;
        let before = self.doc.get_heads();
        let mut fork = self.doc.clone();
        fork.merge(&mut other)
            .map_err(|e| CoreError::CorruptDocument(e.to_string()))?;
        self.accept(fork, &before)
    }

    /// Applies individual changes (each one Automerge change chunk), strictly parsed.
    /// Changes whose dependencies are missing wait inside Automerge until they arrive.
    pub fn apply_changes<B: AsRef<[u8]>>(&mut self, changes: &[B]) -> Result<Vec<ChangeHash>> {
        let mut parsed = Vec::with_capacity(changes.len());
        for c in changes {
            parsed.push(parse_change(c.as_ref())?);
        }
        let before = self.doc.get_heads();
        let mut fork = self.doc.clone();
        fork.apply_changes(parsed)
            .map_err(|e| CoreError::CorruptDocument(e.to_string()))?;
        self.accept(fork, &before)
    }

    /// Like [`HouseholdDoc::apply_changes`] but without a working copy: the changes go
    /// straight into this document, which is cheaper for a large one. On an error the
    /// document may hold part of them and must be thrown away (the sync server loads a
    /// fresh copy for every push, so it can).
    pub fn apply_parsed_in_place(&mut self, changes: Vec<Change>) -> Result<()> {
        let my_id = self.id()?;
        self.doc
            .apply_changes(changes)
            .map_err(|e| CoreError::CorruptDocument(e.to_string()))?;
        for key in ["household", "members", "visits", "referrals", "reviews"] {
            if self.doc.get_all(ROOT, key)?.len() > 1 {
                return Err(CoreError::Invalid(
                    "perubahan berasal dari rumah tangga lain (changes belong to another household)"
                        .into(),
                ));
            }
        }
        let their_id = self.id()?;
        if my_id != their_id {
            return Err(CoreError::Invalid(format!(
                "perubahan untuk rumah tangga lain ({their_id}) (changes belong to another household)"
            )));
        }
        Ok(())
    }

    /// Takes a merged copy if it is still this household, intact.
    fn accept(&mut self, fork: Automerge, before: &[ChangeHash]) -> Result<Vec<ChangeHash>> {
        let my_id = self.id()?;
        let candidate = HouseholdDoc { doc: fork };
        for key in ["household", "members", "visits", "referrals", "reviews"] {
            if candidate.doc.get_all(ROOT, key)?.len() > 1 {
                return Err(CoreError::Invalid(
                    "perubahan berasal dari rumah tangga lain (changes belong to another household)"
                        .into(),
                ));
            }
        }
        let their_id = candidate.id()?;
        if my_id != their_id {
            return Err(CoreError::Invalid(format!(
                "perubahan untuk rumah tangga lain ({their_id}) (changes belong to another household)"
            )));
        }
        self.doc = candidate.doc;
        Ok(self
            .doc
            .get_changes(before)
            .iter()
            .map(|c| c.hash())
            .collect())
    }

    /// Merges another copy of the same household.
    pub fn merge(&mut self, other: &HouseholdDoc) -> Result<Vec<ChangeHash>> {
        self.apply(&other.save())
    }

    /// Changes not reachable from `heads` (what a peer at `heads` is missing).
    pub fn changes_since(&self, heads: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(heads)
    }

    /// Reads the whole household as plain values.
    pub fn read(&self) -> Result<HouseholdView> {
        self.read_from(&Src::new(&self.doc))
    }

    /// [`HouseholdDoc::read`] and [`HouseholdDoc::conflicts`] together, walking the
    /// document once.
    pub fn read_with_conflicts(&self) -> Result<(HouseholdView, Vec<Conflict>)> {
        let mut seen = std::collections::HashMap::new();
        let conflicts = self.scan_conflicts(Some(&mut seen));
        let src = Src {
            doc: &self.doc,
            seen: std::cell::RefCell::new(seen),
        };
        Ok((self.read_from(&src)?, conflicts))
    }

    fn read_from(&self, src: &Src<'_>) -> Result<HouseholdView> {
        let hh_obj = self.root_map("household")?;
        let hf = src.fields(&hh_obj);
        let mut checklist = BTreeMap::new();
        if let Some(cl) = hf.obj("checklist") {
            for (k, v) in src.fields(cl).0 {
                if let Some(a) = v.answer() {
                    checklist.insert(k, a);
                }
            }
        }
        let household = Household {
            id: hf
                .get("id")
                .uuid()
                .ok_or_else(|| CoreError::CorruptDocument("id".into()))?,
            area_code: hf.get("area_code").str().unwrap_or_default(),
            dusun: hf.get("dusun").str(),
            rt: hf.get("rt").str().unwrap_or_default(),
            rw: hf.get("rw").str().unwrap_or_default(),
            posyandu_id: hf.get("posyandu_id").str(),
            address: hf.get("address").str(),
            kk: hf.get("kk").str(),
            lat: hf.get("lat").f64(),
            lon: hf.get("lon").f64(),
            status: hf
                .get("status")
                .str()
                .and_then(|s| HouseholdStatus::parse(&s))
                .unwrap_or_default(),
            merged_into: hf.get("merged_into").uuid(),
            created_at: hf.get("created_at").i64().unwrap_or(0),
            checklist,
        };

        let mut members = Vec::new();
        for (key, v) in src.fields(&self.root_map("members")?).0 {
            let (Val::Obj(obj, ObjType::Map), Ok(id)) = (v, Uuid::parse_str(&key)) else {
                continue;
            };
            members.push(read_member(src, id, &obj));
        }

        let mut visits = Vec::new();
        for (key, v) in src.fields(&self.root_map("visits")?).0 {
            let (Val::Obj(obj, ObjType::Map), Ok(id)) = (v, Uuid::parse_str(&key)) else {
                continue;
            };
            if let Some(visit) = read_visit(src, id, &obj) {
                visits.push(visit);
            }
        }
        visits.sort_by_key(|v| (v.date, v.id));

        let mut referrals = Vec::new();
        for (key, v) in src.fields(&self.root_map("referrals")?).0 {
            let (Val::Obj(obj, ObjType::Map), Ok(id)) = (v, Uuid::parse_str(&key)) else {
                continue;
            };
            if let Some(r) = read_referral(src, id, &obj) {
                referrals.push(r);
            }
        }

        let mut reviews = Vec::new();
        for (key, v) in src.fields(&self.root_map("reviews")?).0 {
            let (Val::Obj(obj, ObjType::Map), Ok(id)) = (v, Uuid::parse_str(&key)) else {
                continue;
            };
            let f = src.fields(&obj);
            let Some(visit_id) = f.get("visit_id").uuid() else {
                continue;
            };
            reviews.push(Review {
                id,
                visit_id,
                reviewer: f.get("reviewer").str().unwrap_or_default(),
                at: f.get("at").i64().unwrap_or(0),
                comment: f.get("comment").str(),
            });
        }
        Ok(HouseholdView {
            household,
            members,
            visits,
            referrals,
            reviews,
        })
    }

    fn change_info_for(&self, hash: &ChangeHash) -> Option<ChangeInfo> {
        let m = self.doc.get_change_meta_by_hash(hash)?;
        let (user, what) = parse_message(m.message.as_deref());
        Some(ChangeInfo {
            hash: hash.to_string(),
            actor: m.actor.to_hex_string(),
            user,
            time_ms: m.timestamp,
            time: time_text(m.timestamp),
            what,
        })
    }

    /// Every change of the document (who, which device, when, what), oldest first.
    pub fn history(&self) -> Vec<ChangeInfo> {
        self.doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| {
                let (user, what) = parse_message(m.message.as_deref());
                ChangeInfo {
                    hash: m.hash.to_string(),
                    actor: m.actor.to_hex_string(),
                    user,
                    time_ms: m.timestamp,
                    time: time_text(m.timestamp),
                    what,
                }
            })
            .collect()
    }

    /// The history of one field (`path` as in [`FieldEdit`]): every change that set it.
    pub fn field_history(&self, path: &str) -> Result<Vec<FieldVersion>> {
        let (obj, key, _) = self.resolve_path(path)?;
        let vals = |heads: &[ChangeHash]| -> Vec<serde_json::Value> {
            self.doc
                .get_all_at(&obj, key.as_str(), heads)
                .unwrap_or_default()
                .into_iter()
                .map(|(v, id)| {
                    let v = match v {
                        automerge::Value::Object(ObjType::Text) => {
                            self.doc.text(&id).map(Val::Str).unwrap_or(Val::Other)
                        }
                        automerge::Value::Object(t) => Val::Obj(id, t),
                        automerge::Value::Scalar(s) => match s.as_ref() {
                            ScalarValue::Str(s) => Val::Str(s.to_string()),
                            ScalarValue::Int(i) => Val::Int(*i),
                            ScalarValue::F64(f) => Val::F64(*f),
                            ScalarValue::Boolean(b) => Val::Bool(*b),
                            ScalarValue::Timestamp(t) => Val::Int(*t),
                            _ => Val::Other,
                        },
                    };
                    v.json()
                })
                .collect()
        };
        let mut out = Vec::new();
        for m in self.doc.get_changes_meta(&[]) {
            let after = vals(&[m.hash]);
            let before = vals(&m.deps);
            if after != before {
                if let Some(info) = self.change_info_for(&m.hash) {
                    out.push(FieldVersion {
                        change: info,
                        values: after,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Fields that hold concurrent values from different devices.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.scan_conflicts(None)
    }

    /// Walks every map of the document for conflicts; with `collect`, also keeps each
    /// map's fields (for `read_from`).
    fn scan_conflicts(
        &self,
        mut collect: Option<&mut std::collections::HashMap<ObjId, Fields>>,
    ) -> Vec<Conflict> {
        let mut out = Vec::new();
        let mut stack: Vec<(ObjId, String)> = vec![(ROOT, String::new())];
        while let Some((obj, prefix)) = stack.pop() {
            let mut kept = collect.as_ref().map(|_| BTreeMap::new());
            for item in self.doc.map_range(&obj, ..) {
                let key = item.key.to_string();
                let is_map = matches!(item.value, ValueRef::Object(ObjType::Map));
                let item_id = item.id();
                if let Some(kept) = kept.as_mut() {
                    kept.insert(
                        key.clone(),
                        read_value(&self.doc, item.value.clone(), item_id.clone()),
                    );
                }
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}/{key}")
                };
                if item.conflict {
                    let mut values = Vec::new();
                    for (v, id) in self.doc.get_all(&obj, key.as_str()).unwrap_or_default() {
                        let val = match v {
                            automerge::Value::Object(ObjType::Text) => {
                                self.doc.text(&id).map(Val::Str).unwrap_or(Val::Other)
                            }
                            automerge::Value::Object(t) => Val::Obj(id.clone(), t),
                            automerge::Value::Scalar(s) => match s.as_ref() {
                                ScalarValue::Str(s) => Val::Str(s.to_string()),
                                ScalarValue::Int(i) => Val::Int(*i),
                                ScalarValue::F64(f) => Val::F64(*f),
                                ScalarValue::Boolean(b) => Val::Bool(*b),
                                ScalarValue::Timestamp(t) => Val::Int(*t),
                                _ => Val::Other,
                            },
                        };
                        let info = self
                            .doc
                            .hash_for_opid(&id)
                            .and_then(|h| self.change_info_for(&h));
                        values.push(ConflictValue {
                            value: val.json(),
                            actor: info.as_ref().map(|i| i.actor.clone()).unwrap_or_default(),
                            user: info.as_ref().and_then(|i| i.user.clone()),
                            time_ms: info.as_ref().map(|i| i.time_ms).unwrap_or(0),
                        });
                    }
                    out.push(Conflict {
                        path: path.clone(),
                        values,
                    });
                } else if is_map {
                    stack.push((item_id, path));
                }
            }
            if let (Some(c), Some(kept)) = (collect.as_mut(), kept) {
                c.insert(obj, Fields(kept));
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checklist::VisitAnswers;

    fn meta(user: &str, t: i64) -> CommitMeta {
        CommitMeta {
            user: user.into(),
            time_ms: 1_790_000_000_000 + t,
        }
    }
    fn actor(n: u8) -> ActorId {
        ActorId::from(vec![n; 16])
    }
    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn new_household() -> HouseholdDoc {
        let h = NewHousehold {
            area_code: "32.14.01.2001".into(),
            rt: "3".into(),
            rw: "1".into(),
            dusun: Some("Krajan".into()),
            posyandu_id: Some("psy-1".into()),
            address: Some("Jl. Melati 5".into()),
            kk: None,
        };
        HouseholdDoc::create(new_id(), &h, actor(1), &meta("kader1", 0))
            .unwrap()
            .result
    }
    fn new_member(name: &str) -> NewMember {
        NewMember {
            name: name.into(),
            sex: Sex::F,
            birth_date: d("1994-05-12"),
            birth_date_estimated: false,
            nik: Some("3214015205940001".into()),
            kk: None,
            relation: Some(Relation::Spouse),
            mother_id: None,
            jkn: Some(true),
        }
    }

    #[test]
    fn create_add_and_read_back() {
        let mut doc = new_household();
        let mid = doc
            .add_member(&new_member("Siti Aminah"), &meta("kader1", 1))
            .unwrap()
            .result;
        let answers = VisitAnswers::from_json(&serde_json::json!({
            "buku_kia": true, "anc_k1": "2026-01-10", "new_item_from_v2": 7
        }))
        .unwrap();
        let w = doc
            .add_visit(
                &NewVisit {
                    member_id: mid,
                    date: d("2026-02-01"),
                    stage: Some(LifeStage::Pregnancy),
                    muac_cm: Some(22.0),
                    answers,
                    danger_signs: vec!["preg_bleeding".into()],
                    ..Default::default()
                },
                &meta("kader1", 2),
            )
            .unwrap();
        let (vid, rid) = w.result;
        assert!(w.change.is_some());
        let view = doc.read().unwrap();
        assert_eq!(view.household.rt, "003");
        assert_eq!(view.members[0].name, "Siti Aminah");
        assert_eq!(view.visits[0].id, vid);
        assert_eq!(
            view.visits[0].answers.extra.get("new_item_from_v2"),
            Some(&AnswerValue::Int(7))
        );
        assert_eq!(
            view.visits[0].danger_signs,
            vec!["preg_bleeding".to_string()]
        );
        assert_eq!(view.referrals[0].id, rid.unwrap());
        assert!(view.referrals[0].reason.contains("Perdarahan"));
        // The saved document loads back to the same view.
        let again = HouseholdDoc::load(&doc.save()).unwrap();
        assert_eq!(again.read().unwrap(), view);
    }

    #[test]
    fn adding_a_visit_is_a_small_change() {
        let mut doc = new_household();
        let mid = doc
            .add_member(&new_member("Siti"), &meta("k", 1))
            .unwrap()
            .result;
        for i in 0..30 {
            doc.add_visit(
                &NewVisit {
                    member_id: mid,
                    date: d("2026-01-01"),
                    weight_kg: Some(50.0 + i as f64),
                    ..Default::default()
                },
                &meta("k", 2 + i),
            )
            .unwrap();
        }
        let w = doc
            .add_visit(
                &NewVisit {
                    member_id: mid,
                    date: d("2026-01-02"),
                    weight_kg: Some(51.0),
                    ..Default::default()
                },
                &meta("k", 99),
            )
            .unwrap();
        let bytes = w.change.unwrap().raw_bytes().len();
        assert!(bytes < 600, "one visit change is {bytes} bytes");
    }

    #[test]
    fn rejects_bad_input() {
        let mut doc = new_household();
        let mid = doc
            .add_member(&new_member("Siti"), &meta("k", 1))
            .unwrap()
            .result;
        let mut m = new_member("  ");
        assert!(doc.add_member(&m, &meta("k", 2)).is_err());
        m.name = "Ani".into();
        m.birth_date = d("2999-01-01");
        assert!(doc.add_member(&m, &meta("k", 2)).is_err());
        let bad = NewVisit {
            member_id: mid,
            date: d("2026-01-01"),
            weight_kg: Some(0.0),
            ..Default::default()
        };
        let e = doc.add_visit(&bad, &meta("k", 3)).unwrap_err().to_string();
        assert!(e.contains("berat badan"), "{e}");
        let bad = NewVisit {
            member_id: mid,
            date: d("2026-01-01"),
            danger_signs: vec!["nope".into()],
            ..Default::default()
        };
        assert!(doc.add_visit(&bad, &meta("k", 3)).is_err());
        let unknown = NewVisit {
            member_id: new_id(),
            date: d("2026-01-01"),
            ..Default::default()
        };
        assert!(matches!(
            doc.add_visit(&unknown, &meta("k", 3)),
            Err(CoreError::NotFound(_))
        ));
        let e = doc
            .edit(
                &[FieldEdit {
                    path: format!("members/{mid}/sex"),
                    value: Some(AnswerValue::Text("X".into())),
                }],
                &meta("k", 4),
                "edit",
            )
            .unwrap_err();
        assert!(e.to_string().contains("F|M"));
        assert!(doc
            .edit(
                &[FieldEdit {
                    path: "members/x/name".into(),
                    value: None
                }],
                &meta("k", 4),
                "edit"
            )
            .is_err());
        assert!(doc
            .edit(
                &[FieldEdit {
                    path: "household/id".into(),
                    value: None
                }],
                &meta("k", 4),
                "edit"
            )
            .is_err());
        // Nothing of the failed writes is in the document.
        let v = doc.read().unwrap();
        assert_eq!(v.members.len(), 1);
        assert!(v.visits.is_empty());
    }

    #[test]
    fn concurrent_edits_merge_and_conflicts_are_listed() {
        let mut a = new_household();
        let mid = a
            .add_member(&new_member("Siti"), &meta("kader1", 1))
            .unwrap()
            .result;
        let mut b = HouseholdDoc::load(&a.save()).unwrap();
        b.set_actor(actor(2));
        // Same field on both sides, different fields, and adds on both sides.
        a.edit(
            &[FieldEdit {
                path: format!("members/{mid}/name"),
                value: Some(AnswerValue::Text("Siti Aminah".into())),
            }],
            &meta("kader1", 10),
            "member.edit",
        )
        .unwrap();
        b.edit(
            &[FieldEdit {
                path: format!("members/{mid}/name"),
                value: Some(AnswerValue::Text("Sity Aminah".into())),
            }],
            &meta("kader2", 11),
            "member.edit",
        )
        .unwrap();
        b.edit(
            &[FieldEdit {
                path: "household/address".into(),
                value: Some(AnswerValue::Text("Jl. Mawar 1".into())),
            }],
            &meta("kader2", 12),
            "hh.edit",
        )
        .unwrap();
        a.add_visit(
            &NewVisit {
                member_id: mid,
                date: d("2026-03-01"),
                ..Default::default()
            },
            &meta("kader1", 13),
        )
        .unwrap();
        b.add_visit(
            &NewVisit {
                member_id: mid,
                date: d("2026-03-02"),
                ..Default::default()
            },
            &meta("kader2", 14),
        )
        .unwrap();

        let new_in_a = a.merge(&b).unwrap();
        assert_eq!(new_in_a.len(), 3);
        b.merge(&a).unwrap();
        assert_eq!(a.read().unwrap(), b.read().unwrap());
        let view = a.read().unwrap();
        assert_eq!(view.visits.len(), 2);
        assert_eq!(view.household.address.as_deref(), Some("Jl. Mawar 1"));
        let conflicts = a.conflicts();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].path, format!("members/{mid}/name"));
        let mut vals: Vec<_> = conflicts[0]
            .values
            .iter()
            .map(|v| v.value.as_str().unwrap().to_string())
            .collect();
        vals.sort();
        assert_eq!(vals, ["Siti Aminah", "Sity Aminah"]);
        let users: Vec<_> = conflicts[0]
            .values
            .iter()
            .filter_map(|v| v.user.clone())
            .collect();
        assert!(users.contains(&"kader1".to_string()) && users.contains(&"kader2".to_string()));
        assert_eq!(b.conflicts(), conflicts);

        // The bidan resolves it: one value supersedes both.
        a.edit(
            &[FieldEdit {
                path: format!("members/{mid}/name"),
                value: Some(AnswerValue::Text("Siti Aminah".into())),
            }],
            &meta("bidan", 20),
            "conflict.resolve",
        )
        .unwrap();
        assert!(a.conflicts().is_empty());
        let hist = a.field_history(&format!("members/{mid}/name")).unwrap();
        let users: Vec<_> = hist
            .iter()
            .map(|h| h.change.user.clone().unwrap())
            .collect();
        assert_eq!(users.len(), 4, "{hist:?}");
        assert_eq!(users.last().unwrap(), "bidan");
        assert_eq!(
            hist.last().unwrap().values,
            vec![serde_json::json!("Siti Aminah")]
        );
    }

    #[test]
    fn void_against_edit_keeps_both_facts() {
        let mut a = new_household();
        let mid = a
            .add_member(&new_member("Siti"), &meta("k1", 1))
            .unwrap()
            .result;
        let vid = a
            .add_visit(
                &NewVisit {
                    member_id: mid,
                    date: d("2026-03-01"),
                    weight_kg: Some(50.0),
                    ..Default::default()
                },
                &meta("k1", 2),
            )
            .unwrap()
            .result
            .0;
        let mut b = HouseholdDoc::load(&a.save()).unwrap();
        b.set_actor(actor(2));
        a.edit(
            &[
                FieldEdit {
                    path: format!("visits/{vid}/voided"),
                    value: Some(AnswerValue::Bool(true)),
                },
                FieldEdit {
                    path: format!("visits/{vid}/void_reason"),
                    value: Some(AnswerValue::Text("salah orang".into())),
                },
            ],
            &meta("k1", 3),
            "visit.void",
        )
        .unwrap();
        b.edit(
            &[FieldEdit {
                path: format!("visits/{vid}/weight_kg"),
                value: Some(AnswerValue::Num(51.5)),
            }],
            &meta("k2", 4),
            "visit.edit",
        )
        .unwrap();
        a.merge(&b).unwrap();
        let v = &a.read().unwrap().visits[0];
        assert!(v.voided);
        assert_eq!(v.weight_kg, Some(51.5));
    }

    #[test]
    fn reads_strings_written_as_text() {
        // Build a household the way the JavaScript implementation would: strings as Text.
        let id = new_id();
        let mut am = Automerge::new();
        am.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "schema", 1)?;
            let hh = tx.put_object(ROOT, "household", ObjType::Map)?;
            let t = tx.put_object(&hh, "id", ObjType::Text)?;
            tx.splice_text(&t, 0, 0, &id.to_string())?;
            let t = tx.put_object(&hh, "area_code", ObjType::Text)?;
            tx.splice_text(&t, 0, 0, "32.14.01.2001")?;
            let members = tx.put_object(ROOT, "members", ObjType::Map)?;
            for k in ["visits", "referrals", "reviews"] {
                tx.put_object(ROOT, k, ObjType::Map)?;
            }
            let m = tx.put_object(&members, new_id().to_string(), ObjType::Map)?;
            let t = tx.put_object(&m, "name", ObjType::Text)?;
            tx.splice_text(&t, 0, 0, "Dewi Lestari")?;
            let t = tx.put_object(&m, "birth_date", ObjType::Text)?;
            tx.splice_text(&t, 0, 0, "2020-01-02")?;
            Ok(())
        })
        .unwrap();
        let doc = HouseholdDoc::load(&am.save()).unwrap();
        let v = doc.read().unwrap();
        assert_eq!(v.household.id, id);
        assert_eq!(v.household.area_code, "32.14.01.2001");
        assert_eq!(v.members[0].name, "Dewi Lestari");
        assert_eq!(v.members[0].birth_date, Some(d("2020-01-02")));
    }

    #[test]
    fn corrupt_or_foreign_bytes_change_nothing() {
        let mut a = new_household();
        a.add_member(&new_member("Siti"), &meta("k", 1)).unwrap();
        let before = a.read().unwrap();
        let mut bytes = a.save();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        assert!(a.apply(&bytes).is_err());
        assert!(a.apply(b"not automerge at all").is_err());
        let other = new_household();
        assert!(a.apply(&other.save()).is_err());
        assert_eq!(a.read().unwrap(), before);
        assert!(HouseholdDoc::load(b"\x85\x6f\x4a\x83garbage").is_err());
    }

    #[test]
    fn history_names_user_device_and_time() {
        let mut a = new_household();
        a.add_member(&new_member("Siti"), &meta("kader1", 1))
            .unwrap();
        let h = a.history();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].what.as_deref(), Some("household.create"));
        assert!(h[1].what.as_deref().unwrap().starts_with("member.add"));
        assert_eq!(h[1].user.as_deref(), Some("kader1"));
        assert_eq!(h[1].actor, hex_of(&actor(1)));
        assert_eq!(h[1].time_ms, 1_790_000_000_001);
    }

    fn hex_of(a: &ActorId) -> String {
        a.to_hex_string()
    }

    #[test]
    fn moves_are_recorded() {
        let mut a = new_household();
        a.move_household(
            "32.14.02.2005",
            "1",
            "2",
            Some("psy-9"),
            d("2026-04-01"),
            &meta("k", 5),
        )
        .unwrap();
        let v = a.read().unwrap();
        assert_eq!(v.household.area_code, "32.14.02.2005");
        assert_eq!(v.household.posyandu_id.as_deref(), Some("psy-9"));
        assert!(a
            .history()
            .iter()
            .any(|c| c.what.as_deref() == Some("household.move 32.14.02.2005")));
    }
}

#[cfg(test)]
mod apply_tests {
    use super::*;

    #[test]
    fn apply_individual_changes_strictly() {
        let h = NewHousehold {
            area_code: "32.14.01.2001".into(),
            rt: "1".into(),
            rw: "1".into(),
            dusun: None,
            posyandu_id: None,
            address: None,
            kk: None,
        };
        let meta = CommitMeta {
            user: "k".into(),
            time_ms: 1_790_000_000_000,
        };
        let w = HouseholdDoc::create(new_id(), &h, ActorId::random(), &meta).unwrap();
        let mut a = w.result;
        let mut b = HouseholdDoc::load(&a.save()).unwrap();
        let m = NewMember {
            name: "Ani".into(),
            sex: Sex::F,
            birth_date: "2000-01-01".parse().unwrap(),
            birth_date_estimated: true,
            nik: None,
            kk: None,
            relation: None,
            mother_id: None,
            jkn: None,
        };
        let c = a.add_member(&m, &meta).unwrap().change.unwrap();
        let mut bytes = c.raw_bytes().to_vec();
        let good = bytes.clone();
        let n = bytes.len();
        bytes[n - 3] ^= 0x55;
        assert!(b.apply_changes(&[bytes]).is_err());
        assert!(b.read().unwrap().members.is_empty());
        let new = b.apply_changes(std::slice::from_ref(&good)).unwrap();
        assert_eq!(new, vec![c.hash()]);
        // Idempotent.
        assert!(b.apply_changes(&[good]).unwrap().is_empty());
        assert_eq!(b.read().unwrap().members[0].name, "Ani");
        // The first change of another household is refused.
        let other = HouseholdDoc::create(new_id(), &h, ActorId::random(), &meta).unwrap();
        let first = other.change.unwrap().raw_bytes().to_vec();
        assert!(b.apply_changes(&[first]).is_err());
        assert_eq!(b.read().unwrap().members.len(), 1);
    }
}
