//! The `kunjung` binary's reports and interoperability commands on real stores: monthly
//! report, XLSX/CSV export (read back with calamine), FHIR export (validated with the
//! `fhir.resources` R4 models when KUNJUNG_FHIR_VALIDATOR=1), register import and
//! duplicate households.

use std::path::{Path, PathBuf};
use std::process::Command;

use calamine::{open_workbook_auto, Data, DataType, Reader};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kunjung");

struct Env {
    _dir: tempfile::TempDir,
    data: PathBuf,
    root: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let root = dir.path().to_path_buf();
        let e = Env {
            _dir: dir,
            data,
            root,
        };
        e.ok(&["init"]);
        e
    }
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    fn run(&self, args: &[&str]) -> (bool, Value, String) {
        let out = Command::new(BIN)
            .arg("--data")
            .arg(&self.data)
            .args(args)
            .env_remove("KUNJUNG_PIN")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (
            out.status.success(),
            v,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }
    fn ok(&self, args: &[&str]) -> Value {
        let (ok, v, err) = self.run(args);
        assert!(ok, "kunjung {args:?} failed: {err}");
        v
    }
    fn seed(&self, n: usize) {
        self.ok(&[
            "demo-seed",
            "--households",
            &n.to_string(),
            "--today",
            "2026-11-24",
            "--seed",
            "7",
        ]);
    }
}

fn sheet(path: &Path, name: &str) -> Vec<Vec<Data>> {
    let mut wb = open_workbook_auto(path).unwrap();
    let range = wb.worksheet_range(name).unwrap();
    range.rows().map(|r| r.to_vec()).collect()
}

fn col(rows: &[Vec<Data>], header_prefix: &str) -> usize {
    rows[0]
        .iter()
        .position(|h| h.to_string().starts_with(header_prefix))
        .unwrap_or_else(|| panic!("no column {header_prefix}"))
}

#[test]
fn report_json_csv_xlsx_agree() {
    let e = Env::new();
    e.seed(40);
    let r = e.ok(&["report", "--month", "2026-10", "--by", "desa"]);
    assert_eq!(r["month"], "2026-10");
    let groups = r["groups"].as_array().unwrap();
    assert!(!groups.is_empty());
    // Every indicator carries its numbers and its definition in both languages.
    for g in groups {
        for i in g["indicators"].as_array().unwrap() {
            assert!(i["definition_id"].as_str().unwrap().len() > 10, "{i}");
            assert!(i["definition_en"].as_str().unwrap().len() > 10, "{i}");
        }
    }
    // The demo has balita weighed in October: D/S has a denominator.
    let ds = r["total"]["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "weighing_ds")
        .unwrap()
        .clone();
    let (d, s) = (
        ds["numerator"].as_u64().unwrap(),
        ds["denominator"].as_u64().unwrap(),
    );
    assert!(s > 0 && d <= s, "{ds}");

    let xlsx = e.path("rekap.xlsx");
    e.ok(&[
        "report",
        "--month",
        "2026-10",
        "--by",
        "desa",
        "--format",
        "xlsx",
        "--out",
        xlsx.to_str().unwrap(),
    ]);
    let rows = sheet(&xlsx, "rekap");
    let (gk, ik, num, den) = (
        col(&rows, "Kelompok"),
        col(&rows, "Kode indikator"),
        col(&rows, "Pembilang"),
        col(&rows, "Penyebut"),
    );
    let row = rows
        .iter()
        .find(|r| r[gk] == "TOTAL" && r[ik] == "weighing_ds")
        .unwrap();
    // Numbers are number cells with the same values as the JSON.
    assert_eq!(row[num], Data::Float(d as f64));
    assert_eq!(row[den], Data::Float(s as f64));

    let csv = e.path("rekap.csv");
    e.ok(&[
        "report",
        "--month",
        "2026-10",
        "--by",
        "desa",
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let mut rdr = csv::Reader::from_path(&csv).unwrap();
    let n = rdr
        .records()
        .map(|r| r.unwrap())
        .find(|r| &r[1] == "TOTAL" && &r[3] == "weighing_ds")
        .map(|r| (r[7].to_string(), r[8].to_string()))
        .unwrap();
    assert_eq!(n, (d.to_string(), s.to_string()));

    // A bad month or grouping is a clear error.
    let (ok, _, err) = e.run(&["report", "--month", "2026-13"]);
    assert!(!ok && err.contains("YYYY-MM"), "{err}");
    let (ok, _, err) = e.run(&["report", "--month", "2026-10", "--by", "rt"]);
    assert!(!ok && err.contains("posyandu|desa|area"), "{err}");
}

#[test]
fn xlsx_export_round_trips_typed_values() {
    let e = Env::new();
    e.seed(25);
    let xlsx = e.path("kunjung.xlsx");
    let r = e.ok(&[
        "export",
        "--format",
        "xlsx",
        "--out",
        xlsx.to_str().unwrap(),
        "--month",
        "2026-10",
    ]);
    let info = e.ok(&["store", "info"]);
    let wb: calamine::Sheets<_> = open_workbook_auto(&xlsx).unwrap();
    assert_eq!(
        wb.sheet_names(),
        [
            "ringkasan",
            "rekap",
            "rumah_tangga",
            "anggota",
            "kunjungan",
            "rujukan"
        ]
    );
    let hh = sheet(&xlsx, "rumah_tangga");
    assert_eq!(hh.len() as i64 - 1, info["households"].as_i64().unwrap());
    let members = sheet(&xlsx, "anggota");
    assert_eq!(
        members.len() as i64 - 1,
        info["members"].as_i64().unwrap(),
        "{r}"
    );
    let visits = sheet(&xlsx, "kunjungan");
    assert_eq!(visits.len() as i64 - 1, info["visits"].as_i64().unwrap());

    // Round trip of one household against `household show`.
    let hid = hh[1][0].to_string();
    let show = e.ok(&["household", "show", &hid]);
    let (idc, name, bd, nik) = (
        col(&members, "ID anggota"),
        col(&members, "Nama"),
        col(&members, "Tanggal lahir (birth"),
        col(&members, "NIK"),
    );
    for m in show["members"].as_array().unwrap() {
        let row = members
            .iter()
            .find(|r| r[idc] == m["id"].as_str().unwrap())
            .unwrap();
        assert_eq!(row[name].to_string(), m["name"].as_str().unwrap());
        // Dates are date cells.
        let d = row[bd]
            .as_datetime()
            .expect("birth date is a date cell")
            .date();
        assert_eq!(d.to_string(), m["birth_date"].as_str().unwrap());
        assert!(matches!(row[bd], Data::DateTime(_)));
        assert_eq!(row[nik].to_string(), m["nik"].as_str().unwrap_or_default());
    }
    let (vid, w) = (col(&visits, "ID kunjungan"), col(&visits, "Berat badan"));
    for v in show["visits"].as_array().unwrap() {
        let row = visits
            .iter()
            .find(|r| r[vid] == v["id"].as_str().unwrap())
            .unwrap();
        match v["weight_kg"].as_f64() {
            Some(kg) => assert_eq!(row[w], Data::Float(kg)),
            None => assert_eq!(row[w], Data::Empty),
        }
    }

    // CSV: a directory with one UTF-8 file per table, same row counts.
    let dir = e.path("csv");
    e.ok(&["export", "--format", "csv", "--out", dir.to_str().unwrap()]);
    for (file, rows) in [
        ("anggota.csv", members.len()),
        ("kunjungan.csv", visits.len()),
    ] {
        let n = csv::Reader::from_path(dir.join(file))
            .unwrap()
            .records()
            .count();
        assert_eq!(n + 1, rows, "{file}");
    }
    assert!(dir.join("rekap.csv").exists() && dir.join("rujukan.csv").exists());
}

fn fhir_python() -> Option<PathBuf> {
    if std::env::var("KUNJUNG_FHIR_VALIDATOR").as_deref() != Ok("1") {
        return None;
    }
    let p = std::env::var_os("KUNJUNG_FHIR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fhir-validator/bin/python")
        });
    Some(p)
}

const VALIDATE_PY: &str = r#"
import json, sys
import fhir.resources
from fhir.resources import construct_fhir_element
from fhir.resources.bundle import Bundle
assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__
data = json.load(open(sys.argv[1]))
Bundle.parse_obj(data)
# fhir.resources checks structure, types, cardinality and formats; the codes of the
# required bindings used here are checked too.
REQUIRED = {
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("RelatedPerson", "gender"): {"male", "female", "other", "unknown"},
    ("Encounter", "status"): {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"},
    ("Observation", "status"): {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"},
    ("Immunization", "status"): {"completed", "entered-in-error", "not-done"},
    ("ServiceRequest", "status"): {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"},
    ("ServiceRequest", "intent"): {"proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"},
}
assert data["type"] == "transaction"
counts = {}
for e in data["entry"]:
    r = e["resource"]
    assert e["request"]["method"] == "POST" and e["request"]["url"] == r["resourceType"], e["request"]
    for (rt, field), allowed in REQUIRED.items():
        if r["resourceType"] == rt and field in r:
            assert r[field] in allowed, (rt, field, r[field])
    construct_fhir_element(r["resourceType"], r)
    counts[r["resourceType"]] = counts.get(r["resourceType"], 0) + 1
print(json.dumps(counts))
"#;

#[test]
fn fhir_export_of_demo_data_validates() {
    let e = Env::new();
    e.seed(30);
    let out = e.path("bundle.json");
    let r = e.ok(&["export", "--format", "fhir", "--out", out.to_str().unwrap()]);
    let b: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "transaction");
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len() as u64, r["entries"].as_u64().unwrap());
    let info = e.ok(&["store", "info"]);
    let patients = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Patient")
        .count();
    assert_eq!(patients as i64, info["members"].as_i64().unwrap());
    // NIK identifiers use the SATUSEHAT system.
    assert!(entries
        .iter()
        .any(|e| e["resource"]["identifier"][0]["system"] == "https://fhir.kemkes.go.id/id/nik"));
    // Body weight observations carry LOINC 29463-7 in kg.
    let w = entries
        .iter()
        .find(|e| e["resource"]["code"]["coding"][0]["code"] == "29463-7")
        .unwrap();
    assert_eq!(w["resource"]["valueQuantity"]["code"], "kg");

    let Some(py) = fhir_python() else {
        eprintln!(
            "NOTICE: FHIR validation skipped (set KUNJUNG_FHIR_VALIDATOR=1; `cargo xtask test` installs fhir.resources)"
        );
        assert!(
            std::env::var("KUNJUNG_REQUIRE_FHIR").as_deref() != Ok("1"),
            "KUNJUNG_REQUIRE_FHIR=1 but the validator is not enabled"
        );
        return;
    };
    let script = e.path("validate.py");
    std::fs::write(&script, VALIDATE_PY).unwrap();
    let o = Command::new(&py).arg(&script).arg(&out).output().unwrap();
    assert!(
        o.status.success(),
        "FHIR R4 validation failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let counts: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(counts["Patient"].as_u64().unwrap() as usize, patients);
    assert!(counts["Observation"].as_u64().unwrap() > 0);
}

const REGISTER: &str = "\
Register Keluarga Desa Sukamaju,,,,,,,,,
No. KK,NIK,Nama,Tanggal Lahir,Jenis Kelamin,Hubungan Keluarga,Alamat,RT,RW,Dusun
3214010101090001,3214011203800001,Budi Santoso,12/03/1980,L,Kepala Keluarga,Jl. Mawar 1,3,1,Krajan
3214010101090001,3214015507850002,Siti Rahma,15-07-1985,P,Istri,Jl. Mawar 1,3,1,Krajan
3214010101090001,,Ani Lestari,2019-01-05,P,Anak,Jl. Mawar 1,3,1,Krajan
3214010101090001,,,01/01/2000,L,Anak,Jl. Mawar 1,3,1,Krajan
3214010101090002,3214011102900003,Joko Susilo,31/02/1990,L,Kepala Keluarga,Jl. Melati 2,4,1,Krajan
3214010101090002,3214015205940001,Dewi Anggraini,12/05/1994,P,Istri,Jl. Melati 2,4,1,Krajan
3214010101090002,321401101092000,Rudi Hartono,10/10/1992,L,Saudara,Jl. Melati 2,4,1,Krajan
";

fn counts(e: &Env) -> (i64, i64) {
    let i = e.ok(&["store", "info"]);
    (
        i["households"].as_i64().unwrap(),
        i["members"].as_i64().unwrap(),
    )
}

#[test]
fn csv_import_reports_bad_rows_and_is_idempotent() {
    let e = Env::new();
    // A member already in the store: Dewi, NIK 3214015205940001.
    let h = e.ok(&[
        "household",
        "add",
        "--area",
        "32.14.01.2001",
        "--rt",
        "4",
        "--rw",
        "1",
    ]);
    let hid = h["id"].as_str().unwrap().to_string();
    e.ok(&[
        "member",
        "add",
        "--household",
        &hid,
        "--name",
        "Dewi Anggraini",
        "--sex",
        "F",
        "--birth-date",
        "1994-05-12",
        "--nik",
        "3214015205940001",
    ]);
    let csv = e.path("register.csv");
    std::fs::write(&csv, REGISTER).unwrap();
    let before = counts(&e);
    assert_eq!(before, (1, 1));

    // Dry run: the full report, nothing written.
    let dry = e.ok(&[
        "import",
        csv.to_str().unwrap(),
        "--dry-run",
        "--area",
        "32.14.01.2001",
        "--posyandu",
        "psy-1",
    ]);
    assert_eq!(counts(&e), before, "--dry-run changed the store");
    // Row numbers as the spreadsheet shows them (title row 1, header row 2, data from 3):
    // row 6 has no name, row 7 an impossible date (31 February), row 8 is Dewi again.
    assert_eq!(dry["rejected_rows"], serde_json::json!([6, 7, 8]));
    assert_eq!(dry["rows"], 7);
    assert_eq!(dry["imported_members"], 4);
    let errors = dry["errors"].as_array().unwrap();
    let by_row = |r: u64| -> Vec<&Value> { errors.iter().filter(|x| x["row"] == r).collect() };
    assert_eq!(by_row(6)[0]["column"], "nama");
    assert!(by_row(6)[0]["reason_en"]
        .as_str()
        .unwrap()
        .contains("name is required"));
    assert_eq!(by_row(7)[0]["column"], "tanggal lahir");
    assert!(by_row(7)[0]["reason_id"]
        .as_str()
        .unwrap()
        .contains("31/02/1990"));
    assert_eq!(by_row(8)[0]["column"], "nik");
    let dups = dry["duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0]["row"], 8);
    assert_eq!(dups[0]["against"], "store");
    assert_eq!(dups[0]["household_id"], hid.as_str());
    // The 15-digit NIK (row 9) is imported with a warning.
    let warns = dry["warnings"].as_array().unwrap();
    assert!(
        warns.iter().any(|w| w["row"] == 9 && w["column"] == "nik"),
        "{warns:?}"
    );

    // The real import: the same figures, and the store has them.
    let r = e.ok(&[
        "import",
        csv.to_str().unwrap(),
        "--area",
        "32.14.01.2001",
        "--posyandu",
        "psy-1",
    ]);
    assert_eq!(r["imported_members"], 4);
    assert_eq!(r["rejected_rows"], dry["rejected_rows"]);
    // KK ...0001 → a new household of 3; KK ...0002 → a new household with Rudi only.
    assert_eq!(r["households_created"], 2);
    assert_eq!(counts(&e), (3, 5));
    let found = e.ok(&["search", "Rudi"]);
    assert_eq!(found[0]["nik"], "321401101092000");
    let found = e.ok(&["search", "Joko"]);
    assert_eq!(
        found.as_array().unwrap().len(),
        0,
        "a rejected row was imported"
    );
    let list = e.ok(&["household", "list", "--posyandu", "psy-1"]);
    let budi = list
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["head_name"] == "Budi Santoso")
        .unwrap();
    assert_eq!(budi["member_count"], 3);
    assert_eq!(budi["rt"], "003");

    // Twice: nothing more.
    let again = e.ok(&[
        "import",
        csv.to_str().unwrap(),
        "--area",
        "32.14.01.2001",
        "--posyandu",
        "psy-1",
    ]);
    assert_eq!(again["imported_members"], 0);
    assert_eq!(counts(&e), (3, 5));
    // Every good row is now reported as a duplicate of a stored member.
    let dup_rows: Vec<u64> = again["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["row"].as_u64().unwrap())
        .collect();
    assert_eq!(dup_rows, [3, 4, 5, 8, 9]);
}

#[test]
fn xlsx_register_with_date_cells_imports() {
    use rust_xlsxwriter::{Format, Workbook};
    let e = Env::new();
    let path = e.path("register.xlsx");
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let date = Format::new().set_num_format("dd/mm/yyyy");
    for (c, h) in [
        "Nomor KK",
        "NIK",
        "Nama Lengkap",
        "Tgl. Lahir",
        "L/P",
        "SHDK",
        "RT",
        "RW",
        "Kode Wilayah",
    ]
    .iter()
    .enumerate()
    {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    let rows = [
        (
            "3214010101090009",
            "3214011203800009",
            "Agus",
            (1980, 3, 12),
            "L",
            "Kepala Keluarga",
        ),
        ("3214010101090009", "", "Putri", (2024, 6, 1), "P", "Anak"),
    ];
    for (i, (kk, nik, name, (y, m, d), sex, rel)) in rows.iter().enumerate() {
        let r = i as u32 + 1;
        ws.write_string(r, 0, *kk).unwrap();
        ws.write_string(r, 1, *nik).unwrap();
        ws.write_string(r, 2, *name).unwrap();
        let dt = chrono::NaiveDate::from_ymd_opt(*y, *m, *d).unwrap();
        ws.write_date_with_format(r, 3, dt, &date).unwrap();
        ws.write_string(r, 4, *sex).unwrap();
        ws.write_string(r, 5, *rel).unwrap();
        ws.write_number(r, 6, 2.0).unwrap();
        ws.write_number(r, 7, 5.0).unwrap();
        ws.write_number(r, 8, 3214012001.0).unwrap();
    }
    wb.save(&path).unwrap();
    let r = e.ok(&["import", path.to_str().unwrap()]);
    assert_eq!(r["imported_members"], 2, "{r}");
    assert_eq!(r["errors"], serde_json::json!([]));
    let hh = e.ok(&["household", "list"]);
    let id = hh[0]["id"].as_str().unwrap();
    let show = e.ok(&["household", "show", id]);
    assert_eq!(show["household"]["area_code"], "32.14.01.2001");
    assert_eq!(show["household"]["rw"], "005");
    let putri = show["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Putri")
        .unwrap();
    assert_eq!(putri["birth_date"], "2024-06-01");
    assert_eq!(putri["relation"], "child");
}

#[test]
fn duplicate_households_merge_and_unmerge() {
    let e = Env::new();
    let add_hh = |kk: &str| {
        e.ok(&[
            "household",
            "add",
            "--area",
            "32.14.01.2001",
            "--rt",
            "2",
            "--rw",
            "1",
            "--kk",
            kk,
        ])["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = add_hh("3214010101090001");
    let b = add_hh("3214010101090001");
    let c = add_hh("3214010101090003");
    let member = |h: &str, name: &str, bd: &str| {
        e.ok(&[
            "member",
            "add",
            "--household",
            h,
            "--name",
            name,
            "--sex",
            "F",
            "--birth-date",
            bd,
        ])["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    member(&a, "Siti Aminah", "1994-05-12");
    let siti_b = member(&b, "Siti Aminah", "1994-05-12");
    let ani = member(&b, "Ani", "2024-01-05");
    member(&c, "Rina", "1990-01-01");
    e.ok(&[
        "visit",
        "add",
        "--member",
        &siti_b,
        "--date",
        "2026-01-10",
        "--weight-kg",
        "55",
    ]);
    e.ok(&[
        "visit",
        "add",
        "--member",
        &ani,
        "--date",
        "2026-01-10",
        "--weight-kg",
        "8",
    ]);

    let d = e.ok(&["duplicates"]);
    let d = d.as_array().unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    let pair = [d[0]["a"].as_str().unwrap(), d[0]["b"].as_str().unwrap()];
    assert!(pair.contains(&a.as_str()) && pair.contains(&b.as_str()));
    let reasons: Vec<&str> = d[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "kk 3214010101090001",
            "name+birth_date siti aminah 1994-05-12"
        ]
    );

    let m = e.ok(&["merge", "--from", &b, "--into", &a]);
    assert_eq!(m["summary"]["members_copied"], 1);
    assert_eq!(m["summary"]["members_matched"], 1);
    assert_eq!(m["summary"]["visits_copied"], 2);
    let sa = e.ok(&["household", "show", &a]);
    assert_eq!(sa["members"].as_array().unwrap().len(), 2);
    assert_eq!(sa["visits"].as_array().unwrap().len(), 2);
    let sb = e.ok(&["household", "show", &b]);
    assert_eq!(sb["household"]["status"], "merged");
    assert_eq!(sb["household"]["merged_into"], a.as_str());
    // No longer a duplicate pair; the store stays consistent.
    assert_eq!(e.ok(&["duplicates"]), serde_json::json!([]));
    e.ok(&["store", "check"]);
    // Merged households do not count twice in the report.
    let r = e.ok(&["report", "--month", "2026-01", "--by", "area"]);
    assert_eq!(r["total"]["households"], 2);

    let u = e.ok(&["unmerge", &b]);
    assert_eq!(u["records_undone"], 3);
    let sa = e.ok(&["household", "show", &a]);
    let live = |k: &str| {
        sa[k]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["voided"] != true)
            .count()
    };
    assert_eq!((live("members"), live("visits")), (1, 0));
    let sb = e.ok(&["household", "show", &b]);
    assert_eq!(sb["household"]["status"], "active");
    assert_eq!(sb["household"]["merged_into"], Value::Null);
    assert_eq!(sb["visits"].as_array().unwrap().len(), 2);
    assert_eq!(e.ok(&["duplicates"]).as_array().unwrap().len(), 1);
    e.ok(&["store", "check"]);
    let (ok, _, err) = e.run(&["unmerge", &b]);
    assert!(!ok && err.contains("not merged"), "{err}");
}

/// Babies and children are linked to their mothers in the same KK: by a "NIK Ibu" column,
/// a "Nama Ibu" column, or — for a row whose relation is child — the wife of the household
/// (or the head when there is none); a mother named but absent is a warning. A later file
/// links a new baby to a mother already stored.
#[test]
fn import_links_children_to_their_mothers() {
    let e = Env::new();
    let csv = e.path("register-ibu.csv");
    std::fs::write(
        &csv,
        "No. KK;NIK;Nama;Tanggal Lahir;JK;Hubungan Keluarga;Nama Ibu;NIK Ibu;RT;RW\n\
         3214010000000001;3214011203880001;Budi Santoso;12/03/1988;L;Kepala Keluarga;;;1;2\n\
         3214010000000001;3214015205920002;Siti Aminah;12/05/1992;P;Istri;;;1;2\n\
         3214010000000001;;Ahmad;01/10/2024;L;Anak;;;1;2\n\
         3214010000000001;3214014101600003;Aminah;01/01/1960;P;Orang Tua;;;1;2\n\
         3214010000000002;3214015506900004;Ratna Dewi;15/06/1990;P;Kepala Keluarga;;;1;2\n\
         3214010000000002;;Dina;03/02/2024;P;Anak;;;1;2\n\
         3214010000000003;3214011111700005;Joko;11/11/1970;L;Kepala Keluarga;;;1;2\n\
         3214010000000003;3214014712720006;Rina;07/12/1972;P;Istri;;;1;2\n\
         3214010000000003;3214014403000007;Wati;04/03/2000;P;Anak;;3214014712720006;1;2\n\
         3214010000000003;;Bayi Wati;01/09/2025;P;Cucu;wati;;1;2\n\
         3214010000000003;;Bayi Susi;02/09/2025;L;Cucu;Susi;;1;2\n",
    )
    .unwrap();
    let dry = e.ok(&[
        "import",
        csv.to_str().unwrap(),
        "--dry-run",
        "--area",
        "32.14.01.2001",
    ]);
    // Ahmad → Siti (wife), Dina → Ratna (head, no wife), Wati → Rina (NIK Ibu),
    // Bayi Wati → Wati (Nama Ibu); Bayi Susi's mother is not in the KK.
    assert_eq!(dry["mothers_linked"], 4, "{dry}");
    assert_eq!(dry["rejected_rows"], serde_json::json!([]));
    let warns = dry["warnings"].as_array().unwrap();
    let susi: Vec<&Value> = warns.iter().filter(|w| w["column"] == "ibu").collect();
    assert_eq!(susi.len(), 1, "{warns:?}");
    assert_eq!(susi[0]["row"], 12);
    assert!(susi[0]["reason_en"].as_str().unwrap().contains("not found"));

    let r = e.ok(&["import", csv.to_str().unwrap(), "--area", "32.14.01.2001"]);
    assert_eq!(r["mothers_linked"], 4);
    let mothers = |e: &Env| -> std::collections::BTreeMap<String, Option<String>> {
        let mut out = std::collections::BTreeMap::new();
        for h in e.ok(&["household", "list"]).as_array().unwrap() {
            let show = e.ok(&["household", "show", h["id"].as_str().unwrap()]);
            let members = show["members"].as_array().unwrap();
            let name_of = |id: &Value| {
                members
                    .iter()
                    .find(|m| &m["id"] == id)
                    .map(|m| m["name"].as_str().unwrap().to_string())
            };
            for m in members {
                out.insert(
                    m["name"].as_str().unwrap().to_string(),
                    name_of(&m["mother_id"]),
                );
            }
        }
        out
    };
    let got = mothers(&e);
    let want = |name: &str| got.get(name).cloned().flatten();
    assert_eq!(want("Ahmad").as_deref(), Some("Siti Aminah"));
    assert_eq!(want("Dina").as_deref(), Some("Ratna Dewi"));
    assert_eq!(want("Wati").as_deref(), Some("Rina"));
    assert_eq!(want("Bayi Wati").as_deref(), Some("Wati"));
    assert_eq!(want("Bayi Susi"), None);
    // Nobody else got a mother (not the head, the wife or the grandmother).
    assert_eq!(got.values().filter(|m| m.is_some()).count(), 4, "{got:?}");

    // A later register with a new baby of KK ...0001: linked to Siti, already stored.
    let later = e.path("register-baru.csv");
    std::fs::write(
        &later,
        "No. KK,Nama,Tanggal Lahir,JK,Hubungan Keluarga,RT,RW\n\
         3214010000000001,Bayi Siti,20/08/2025,P,Anak,1,2\n",
    )
    .unwrap();
    let r = e.ok(&["import", later.to_str().unwrap(), "--area", "32.14.01.2001"]);
    assert_eq!(r["households_extended"], 1, "{r}");
    assert_eq!(r["mothers_linked"], 1, "{r}");
    assert_eq!(mothers(&e)["Bayi Siti"].as_deref(), Some("Siti Aminah"));
}
