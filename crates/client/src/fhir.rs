//! FHIR R4 (4.0.1) export in the style of SATUSEHAT, the national FHIR platform: one
//! `transaction` Bundle with
//!
//! * **Patient** per member: identifiers NIK (`https://fhir.kemkes.go.id/id/nik`), the
//!   mother's NIK for a baby without one (`https://fhir.kemkes.go.id/id/nik-ibu`) and the
//!   family card (`https://fhir.kemkes.go.id/id/kk`); name, gender, birthDate, deceased;
//!   address with the SATUSEHAT `administrativeCode` extension (province, city, district,
//!   village, rt, rw — codes without dots, as in the SATUSEHAT Patient profile);
//! * **RelatedPerson** for the mother of a member recorded with `mother_id`;
//! * **Encounter** per home visit (class `HH` home health, period = the visit date, the
//!   cadre as participant);
//! * **Observation**: body weight (LOINC 29463-7), body height standing (8302-2) or length
//!   lying (8306-3) with the method, MUAC (56072-2), head circumference (9843-4), the blood
//!   pressure panel (85354-9 with 8480-6 / 8462-4), and the WHO z-scores (BB/U, PB/U–TB/U,
//!   BB/PB–BB/TB, IMT/U, Permenkes 2/2020) with their indicator and category;
//! * **Immunization** per dose recorded (earliest date when recorded twice);
//! * **ServiceRequest** per referral to the bidan.
//!
//! References are `urn:uuid:` full URLs made from the record UUIDs, so the same data gives
//! the same Bundle (stable references). Resources derived from one record (the observations
//! of a visit) use that record's UUID with a few low bits flipped per kind.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use kunjung_core::growth::{self, GrowthInput, Indicator, HEIGHT_FROM_DAYS};
use kunjung_core::report::DoseDate;
use kunjung_core::{HouseholdStatus, HouseholdView, Measured, Member, ReferralStatus, Sex, Visit};
use serde_json::{json, Value};
use uuid::Uuid;

pub const NIK_SYSTEM: &str = "https://fhir.kemkes.go.id/id/nik";
pub const NIK_IBU_SYSTEM: &str = "https://fhir.kemkes.go.id/id/nik-ibu";
pub const KK_SYSTEM: &str = "https://fhir.kemkes.go.id/id/kk";
pub const ADMIN_CODE_URL: &str =
    "https://fhir.kemkes.go.id/r4/StructureDefinition/administrativeCode";
/// Kunjung's own code systems (growth indicators, vaccines).
pub const GROWTH_SYSTEM: &str = "https://kunjung.id/fhir/CodeSystem/growth-indicator";
pub const VACCINE_SYSTEM: &str = "https://kunjung.id/fhir/CodeSystem/vaccine";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

fn urn(id: Uuid) -> String {
    format!("urn:uuid:{id}")
}

/// A stable UUID for a resource derived from `base` (flips low bits of the node field,
/// so version and variant stay as they were).
fn derived(base: Uuid, kind: u128) -> Uuid {
    Uuid::from_u128(base.as_u128() ^ kind)
}

fn entry(id: Uuid, resource: Value) -> Value {
    let rt = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    json!({"fullUrl": urn(id), "resource": resource, "request": {"method": "POST", "url": rt}})
}

fn reference(id: Uuid, display: Option<&str>) -> Value {
    match display {
        Some(d) => json!({"reference": urn(id), "display": d}),
        None => json!({"reference": urn(id)}),
    }
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn instant(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .filter(|_| ms > 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn digits(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_digit()).collect()
}

/// The SATUSEHAT address of a household, with the administrative codes down to RT/RW.
fn address(hh: &kunjung_core::Household) -> Value {
    // Kode wilayah PP.KK.CC.DDDD → province PP, city PPKK, district PPKKCC, village all.
    let parts: Vec<&str> = hh.area_code.split('.').collect();
    let mut codes = Vec::new();
    for (i, name) in ["province", "city", "district", "village"]
        .iter()
        .enumerate()
    {
        if parts.len() > i {
            codes.push(json!({"url": name, "valueCode": parts[..=i].concat()}));
        }
    }
    for (name, v) in [("rt", &hh.rt), ("rw", &hh.rw)] {
        if !v.is_empty() {
            codes.push(json!({"url": name, "valueCode": v}));
        }
    }
    let mut line = Vec::new();
    if let Some(a) = &hh.address {
        line.push(a.clone());
    }
    if let Some(d) = &hh.dusun {
        line.push(format!("Dusun {d}"));
    }
    line.push(format!("RT {} RW {}", hh.rt, hh.rw));
    json!({
        "use": "home",
        "type": "physical",
        "line": line,
        "country": "ID",
        "extension": [{"url": ADMIN_CODE_URL, "extension": codes}],
    })
}

fn gender(s: Option<Sex>) -> &'static str {
    match s {
        Some(Sex::F) => "female",
        Some(Sex::M) => "male",
        None => "unknown",
    }
}

fn patient(view: &HouseholdView, m: &Member) -> Value {
    let mut ids = Vec::new();
    if let Some(n) = m.nik.as_deref().filter(|n| !n.trim().is_empty()) {
        ids.push(json!({"use": "official", "system": NIK_SYSTEM, "value": n.trim()}));
    } else if let Some(mother_nik) = m
        .mother_id
        .and_then(|id| view.member(id))
        .and_then(|mo| mo.nik.as_deref())
        .filter(|n| !n.trim().is_empty())
    {
        ids.push(json!({"use": "official", "system": NIK_IBU_SYSTEM, "value": mother_nik.trim()}));
    }
    if let Some(kk) =
        m.kk.as_deref()
            .or(view.household.kk.as_deref())
            .filter(|k| !k.trim().is_empty())
    {
        ids.push(json!({"use": "secondary", "system": KK_SYSTEM, "value": kk.trim()}));
    }
    ids.push(json!({"system": "urn:ietf:rfc:3986", "value": urn(m.id)}));
    let mut p = json!({
        "resourceType": "Patient",
        "identifier": ids,
        "active": !m.voided,
        "name": [{"use": "official", "text": m.name}],
        "gender": gender(m.sex),
        "address": [address(&view.household)],
    });
    if let Some(b) = m.birth_date {
        p["birthDate"] = date(b).into();
    }
    match m.death_date {
        Some(d) => p["deceasedDateTime"] = date(d).into(),
        None => p["deceasedBoolean"] = false.into(),
    }
    p
}

fn quantity(value: f64, unit: &str, code: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": code})
}

fn vital(
    code: &str,
    display: &str,
    patient: &Value,
    encounter: &Value,
    when: &str,
    value: Value,
) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": patient,
        "encounter": encounter,
        "effectiveDateTime": when,
        "valueQuantity": value,
    })
}

fn indicator_code(i: Indicator) -> (&'static str, &'static str) {
    match i {
        Indicator::WeightForAge => ("weight-for-age", "Weight-for-age z-score"),
        Indicator::LengthHeightForAge => ("length-height-for-age", "Length/height-for-age z-score"),
        Indicator::WeightForLengthHeight => (
            "weight-for-length-height",
            "Weight-for-length/height z-score",
        ),
        Indicator::BmiForAge => ("bmi-for-age", "BMI-for-age z-score"),
    }
}

/// The observations of one visit: (uuid, resource).
fn visit_observations(
    m: &Member,
    v: &Visit,
    patient: &Value,
    encounter: &Value,
) -> Vec<(Uuid, Value)> {
    let when = date(v.date);
    let mut out = Vec::new();
    let age_days = m.birth_date.map(|b| growth::age_days(b, v.date));
    if let Some(w) = v.weight_kg {
        let o = vital(
            "29463-7",
            "Body weight",
            patient,
            encounter,
            &when,
            quantity(w, "kg", "kg"),
        );
        out.push((derived(v.id, 1), o));
    }
    if let Some(h) = v.height_cm {
        // Lying length (8306-3) under 24 months unless measured standing; else height.
        let lying = match v.measured {
            Some(Measured::Lying) => true,
            Some(Measured::Standing) => false,
            None => age_days.is_some_and(|a| a < HEIGHT_FROM_DAYS),
        };
        let (code, display, method) = if lying {
            (
                "8306-3",
                "Body height --lying",
                "Telentang (lying, recumbent length)",
            )
        } else {
            ("8302-2", "Body height", "Berdiri (standing height)")
        };
        let mut o = vital(
            code,
            display,
            patient,
            encounter,
            &when,
            quantity(h, "cm", "cm"),
        );
        o["method"] = json!({"text": method});
        out.push((derived(v.id, 2), o));
    }
    if let Some(x) = v.muac_cm {
        let o = vital(
            "56072-2",
            "Circumference Mid upper arm",
            patient,
            encounter,
            &when,
            quantity(x, "cm", "cm"),
        );
        out.push((derived(v.id, 3), o));
    }
    if let Some(x) = v.head_cm {
        let o = vital(
            "9843-4",
            "Head Occipital-frontal circumference",
            patient,
            encounter,
            &when,
            quantity(x, "cm", "cm"),
        );
        out.push((derived(v.id, 4), o));
    }
    if let (Some(s), Some(d)) = (v.bp_systolic, v.bp_diastolic) {
        let mut o = vital(
            "85354-9",
            "Blood pressure panel with all children optional",
            patient,
            encounter,
            &when,
            Value::Null,
        );
        o.as_object_mut().map(|m| m.remove("valueQuantity"));
        o["component"] = json!([
            {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
             "valueQuantity": quantity(s as f64, "mm[Hg]", "mm[Hg]")},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
             "valueQuantity": quantity(d as f64, "mm[Hg]", "mm[Hg]")},
        ]);
        out.push((derived(v.id, 5), o));
    }
    // WHO z-scores of children with a weight or a length.
    if let (Some(birth), Some(sex), true) = (
        m.birth_date,
        m.sex,
        v.weight_kg.is_some() || v.height_cm.is_some(),
    ) {
        let input = GrowthInput {
            sex,
            birth_date: birth,
            date: v.date,
            weight_kg: v.weight_kg,
            length_cm: v.height_cm,
            measured: v.measured,
        };
        if let Ok(r) = growth::compute(&input) {
            let derived_from: Vec<Value> = out
                .iter()
                .filter(|(_, o)| {
                    matches!(
                        o["code"]["coding"][0]["code"].as_str(),
                        Some("29463-7" | "8306-3" | "8302-2")
                    )
                })
                .map(|(id, _)| reference(*id, None))
                .collect();
            for (k, (ind, res)) in [
                (Indicator::WeightForAge, r.weight_for_age),
                (Indicator::LengthHeightForAge, r.length_height_for_age),
                (Indicator::WeightForLengthHeight, r.weight_for_length_height),
                (Indicator::BmiForAge, r.bmi_for_age),
            ]
            .into_iter()
            .enumerate()
            {
                let Some(res) = res else { continue };
                let (code, display) = indicator_code(ind);
                let short = ind.short_id(r.age_days);
                let o = json!({
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "exam", "display": "Exam"}]}],
                    "code": {
                        "coding": [{"system": GROWTH_SYSTEM, "code": code, "display": display}],
                        "text": format!("{short} z-score (WHO Child Growth Standards, Permenkes 2/2020)"),
                    },
                    "subject": patient,
                    "encounter": encounter,
                    "effectiveDateTime": when,
                    "valueQuantity": {"value": res.z, "unit": "SD", "system": UCUM, "code": "{SD}"},
                    "interpretation": [{"text": format!("{} ({})", res.label_id, res.label_en)}],
                    "derivedFrom": derived_from,
                });
                out.push((derived(v.id, 16 + k as u128), o));
            }
        }
    }
    out
}

/// The doses of the immunisation section, with their labels.
const VACCINES: &[(&str, &str, DoseDate)] = &[
    ("imm_hb0", "Hepatitis B (HB0)", |a| a.imm_hb0),
    ("imm_bcg", "BCG", |a| a.imm_bcg),
    ("imm_polio1", "Polio 1", |a| a.imm_polio1),
    ("imm_polio2", "Polio 2", |a| a.imm_polio2),
    ("imm_polio3", "Polio 3", |a| a.imm_polio3),
    ("imm_polio4", "Polio 4", |a| a.imm_polio4),
    ("imm_dpt_hb_hib1", "DPT-HB-Hib 1", |a| a.imm_dpt_hb_hib1),
    ("imm_dpt_hb_hib2", "DPT-HB-Hib 2", |a| a.imm_dpt_hb_hib2),
    ("imm_dpt_hb_hib3", "DPT-HB-Hib 3", |a| a.imm_dpt_hb_hib3),
    ("imm_dpt_hb_hib4", "DPT-HB-Hib lanjutan (booster)", |a| {
        a.imm_dpt_hb_hib4
    }),
    ("imm_pcv1", "PCV 1", |a| a.imm_pcv1),
    ("imm_pcv2", "PCV 2", |a| a.imm_pcv2),
    ("imm_pcv3", "PCV 3", |a| a.imm_pcv3),
    ("imm_rv1", "Rotavirus 1", |a| a.imm_rv1),
    ("imm_rv2", "Rotavirus 2", |a| a.imm_rv2),
    ("imm_rv3", "Rotavirus 3", |a| a.imm_rv3),
    ("imm_ipv1", "IPV 1", |a| a.imm_ipv1),
    ("imm_ipv2", "IPV 2", |a| a.imm_ipv2),
    ("imm_mr1", "MR 1", |a| a.imm_mr1),
    ("imm_mr2", "MR 2", |a| a.imm_mr2),
    ("imm_je", "Japanese encephalitis", |a| a.imm_je),
];

/// The transaction Bundle of the given households (see the module docs). `today` is the
/// Bundle's timestamp date. Merged households are left out (their records were copied).
pub fn bundle(views: &[HouseholdView], today: NaiveDate) -> Value {
    let mut entries = Vec::new();
    for view in views {
        if view.household.status == HouseholdStatus::Merged {
            continue;
        }
        let mut pref: BTreeMap<Uuid, Value> = BTreeMap::new();
        for m in view.members.iter().filter(|m| !m.voided) {
            let mut e = entry(m.id, patient(view, m));
            if let Some(nik) = m.nik.as_deref().filter(|n| !n.trim().is_empty()) {
                // SATUSEHAT style conditional create: no second Patient for a known NIK.
                e["request"]["ifNoneExist"] =
                    format!("identifier={NIK_SYSTEM}|{}", nik.trim()).into();
            }
            entries.push(e);
            pref.insert(m.id, reference(m.id, Some(&m.name)));
        }
        // Mothers as RelatedPerson of their children.
        for m in view.members.iter().filter(|m| !m.voided) {
            let Some(mother) = m.mother_id.and_then(|id| view.member(id)) else {
                continue;
            };
            let mut r = json!({
                "resourceType": "RelatedPerson",
                "active": !mother.voided,
                "patient": pref[&m.id],
                "relationship": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                    "code": "MTH", "display": "mother"}], "text": "Ibu (mother)"}],
                "name": [{"use": "official", "text": mother.name}],
                "gender": "female",
                "address": [address(&view.household)],
            });
            if let Some(n) = mother.nik.as_deref().filter(|n| !n.trim().is_empty()) {
                r["identifier"] =
                    json!([{"use": "official", "system": NIK_SYSTEM, "value": n.trim()}]);
            }
            if let Some(b) = mother.birth_date {
                r["birthDate"] = date(b).into();
            }
            entries.push(entry(derived(m.id, 0x200), r));
        }
        let mut doses: BTreeMap<(Uuid, &str), (NaiveDate, Uuid)> = BTreeMap::new();
        for v in view.visits.iter().filter(|v| !v.voided) {
            let (Some(m), Some(p)) = (view.member(v.member_id), pref.get(&v.member_id)) else {
                continue;
            };
            let mut enc = json!({
                "resourceType": "Encounter",
                "identifier": [{"system": "urn:ietf:rfc:3986", "value": urn(v.id)}],
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "HH", "display": "home health"},
                "type": [{"text": "Kunjungan rumah ILP (ILP home visit)"}],
                "subject": p,
                "period": {"start": date(v.date), "end": date(v.date)},
            });
            if let Some(c) = &v.cadre {
                enc["participant"] = json!([{
                    "type": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "ATND", "display": "attender"}]}],
                    "individual": {"display": format!("Kader {c}")},
                }]);
            }
            if let Some(s) = v.stage {
                enc["serviceType"] =
                    json!({"text": format!("{} ({})", s.label_id(), s.label_en())});
            }
            entries.push(entry(v.id, enc));
            let eref = reference(v.id, None);
            for (id, o) in visit_observations(m, v, p, &eref) {
                entries.push(entry(id, o));
            }
            for (k, _, get) in VACCINES {
                if let Some(d) = get(&v.answers.immunisation) {
                    let e = doses.entry((m.id, k)).or_insert((d, v.id));
                    if d < e.0 {
                        *e = (d, v.id);
                    }
                }
            }
        }
        for ((mid, code), (d, vid)) in &doses {
            let Some((i, (_, label, _))) = VACCINES.iter().enumerate().find(|(_, x)| x.0 == *code)
            else {
                continue;
            };
            let imm = json!({
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": {"coding": [{"system": VACCINE_SYSTEM, "code": code, "display": label}], "text": label},
                "patient": pref[mid],
                "encounter": reference(*vid, None),
                "occurrenceDateTime": date(*d),
                "primarySource": false,
                "reportOrigin": {"text": "Buku KIA / laporan kader (MCH handbook / cadre report)"},
            });
            entries.push(entry(derived(*vid, 0x100 + i as u128), imm));
        }
        for r in &view.referrals {
            let Some(p) = pref.get(&r.member_id) else {
                continue;
            };
            let mut s = json!({
                "resourceType": "ServiceRequest",
                "identifier": [{"system": "urn:ietf:rfc:3986", "value": urn(r.id)}],
                "status": if r.status == ReferralStatus::Closed { "completed" } else { "active" },
                "intent": "order",
                "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005",
                                          "display": "Patient referral"}]}],
                "code": {"text": "Rujukan ke bidan (referral to the midwife)"},
                "subject": p,
                "reasonCode": [{"text": r.reason}],
            });
            if let Some(t) = instant(r.created_at) {
                s["authoredOn"] = t.into();
            }
            if let Some(b) = &r.created_by {
                s["requester"] = json!({"display": format!("Kader {b}")});
            }
            if let Some(vid) = r
                .visit_id
                .filter(|id| view.visits.iter().any(|v| v.id == *id && !v.voided))
            {
                s["encounter"] = reference(vid, None);
            }
            let notes: Vec<Value> = [
                ("Status", Some(r.status.code().to_string())),
                ("Hasil (outcome)", r.outcome.clone()),
                ("Umpan balik (feedback)", r.feedback.clone()),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| json!({"text": format!("{k}: {v}")})))
            .collect();
            s["note"] = notes.into();
            entries.push(entry(r.id, s));
        }
    }
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": format!("{}T00:00:00Z", date(today)),
        "entry": entries,
    })
}

/// Digits of a kode wilayah (`32.14.01.2001` → `3214012001`).
pub fn area_digits(code: &str) -> String {
    digits(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_reference_resolves_and_ids_are_stable() {
        let opts = crate::seed::SeedOptions {
            households: 40,
            seed: 3,
            today: "2026-11-24".parse().unwrap(),
            visits_per_household: 15,
            first: 0,
        };
        let docs = crate::seed::generate_parallel(&opts).unwrap();
        let views: Vec<HouseholdView> = docs.iter().map(|d| d.read().unwrap()).collect();
        let today = "2026-11-24".parse().unwrap();
        let b = bundle(&views, today);
        assert_eq!(b, bundle(&views, today), "same data, same bundle");
        let entries = b["entry"].as_array().unwrap();
        let urls: BTreeSet<&str> = entries
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        assert_eq!(urls.len(), entries.len(), "fullUrls are unique");
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        match (k.as_str(), x) {
                            ("reference", Value::String(s)) => out.push(s),
                            _ => refs(x, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&b, &mut all);
        assert!(!all.is_empty());
        for r in all {
            assert!(urls.contains(r), "dangling reference {r}");
        }
        let kinds: BTreeSet<&str> = entries
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        for k in ["Patient", "Encounter", "Observation", "Immunization"] {
            assert!(kinds.contains(k), "no {k} in {kinds:?}");
        }
        // The address carries the administrative codes down to RT/RW.
        let p = entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Patient")
            .unwrap();
        let ext = &p["resource"]["address"][0]["extension"][0];
        assert_eq!(ext["url"], ADMIN_CODE_URL);
        let codes: Vec<&str> = ext["extension"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            ["province", "city", "district", "village", "rt", "rw"]
        );
        let village = ext["extension"][3]["valueCode"].as_str().unwrap();
        assert_eq!(village.len(), 10, "{village}");
    }
}
