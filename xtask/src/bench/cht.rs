//! The peer's data: Kunjung's demo households as CHT models them — a place document per
//! household (`type: "clinic"`, CHT's household level), a person document per member and a
//! `data_record` report per visit (and per referral and review) — with the same fields and
//! values as Kunjung's documents, as JSON. Written as JSON lines for `bench/peer/peer.js`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use kunjung_core::{Household, HouseholdDoc, HouseholdView, Visit};
use serde_json::{json, Map, Value};

/// CHT's hierarchy stub: `{_id, parent: {...}}` up to the desa.
fn lineage(hh: &Household) -> Value {
    json!({
        "_id": hh.id.to_string(),
        "parent": {
            "_id": hh.posyandu_id.clone().unwrap_or_default(),
            "parent": { "_id": hh.area_code }
        }
    })
}

fn merge(mut base: Value, fields: Value) -> Value {
    if let (Some(b), Value::Object(f)) = (base.as_object_mut(), fields) {
        for (k, v) in f {
            if k != "id" && !v.is_null() {
                b.insert(k, v);
            }
        }
    }
    base
}

/// One report document for a visit.
pub fn visit_doc(hh: &Household, v: &Visit) -> Value {
    let mut fields = match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    fields.retain(|k, val| k != "id" && !val.is_null());
    fields.insert("patient_uuid".into(), json!(v.member_id.to_string()));
    fields.insert("patient_id".into(), json!(v.member_id.to_string()));
    json!({
        "_id": v.id.to_string(),
        "type": "data_record",
        "form": "kunjungan",
        "content_type": "xml",
        "reported_date": v.created_at,
        "contact": { "_id": v.cadre.clone().unwrap_or_default(), "parent": lineage(hh) },
        "fields": fields,
    })
}

/// All documents of one household.
pub fn docs(view: &HouseholdView) -> Vec<Value> {
    let hh = &view.household;
    let lin = lineage(hh);
    let head = view
        .members
        .iter()
        .find(|m| m.relation == Some(kunjung_core::Relation::Head))
        .or(view.members.first());
    let mut out = Vec::with_capacity(1 + view.members.len() + view.visits.len());
    out.push(merge(
        json!({
            "_id": hh.id.to_string(),
            "type": "clinic",
            "name": view.head_name().unwrap_or_default(),
            "parent": lin["parent"],
            "contact": { "_id": head.map(|m| m.id.to_string()).unwrap_or_default() },
            "reported_date": hh.created_at,
        }),
        serde_json::to_value(hh).unwrap_or(Value::Null),
    ));
    for m in &view.members {
        out.push(merge(
            json!({
                "_id": m.id.to_string(),
                "type": "person",
                "parent": lin,
                "date_of_birth": m.birth_date,
                "reported_date": hh.created_at,
            }),
            serde_json::to_value(m).unwrap_or(Value::Null),
        ));
    }
    for v in &view.visits {
        out.push(visit_doc(hh, v));
    }
    for r in &view.referrals {
        out.push(merge(
            json!({
                "_id": r.id.to_string(),
                "type": "data_record",
                "form": "rujukan",
                "reported_date": r.created_at,
                "fields": { "patient_uuid": r.member_id.to_string() },
            }),
            serde_json::to_value(r).unwrap_or(Value::Null),
        ));
    }
    for r in &view.reviews {
        out.push(merge(
            json!({
                "_id": r.id.to_string(),
                "type": "data_record",
                "form": "telaah",
                "reported_date": r.at,
            }),
            serde_json::to_value(r).unwrap_or(Value::Null),
        ));
    }
    out
}

/// What was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub docs: u64,
    pub bytes: u64,
    pub visits: u64,
}

/// Appends the households' documents to `path` as JSON lines.
pub fn write(path: &Path, households: &[HouseholdDoc], append: bool) -> Result<Written> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    let mut w = std::io::BufWriter::new(f);
    let mut n = Written::default();
    for d in households {
        let view = d.read()?;
        n.visits += view.visits.len() as u64;
        for doc in docs(&view) {
            let line = serde_json::to_vec(&doc)?;
            n.bytes += line.len() as u64;
            n.docs += 1;
            w.write_all(&line)?;
            w.write_all(b"\n")?;
        }
    }
    w.flush()?;
    Ok(n)
}
