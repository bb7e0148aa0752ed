//! Import of an existing household register (CSV or XLSX) into the store.
//!
//! * **Columns** are recognised by their header, whatever the case, punctuation or an
//!   English part in brackets: No. KK / nomor kartu keluarga, NIK, nama, tanggal lahir /
//!   tgl lahir, jenis kelamin / JK / L/P, hubungan keluarga / SHDK, alamat, RT, RW, dusun,
//!   kode wilayah / kode desa, posyandu. The header row is the first of the first ten rows
//!   that has a name column (registers often start with a title). CSV is UTF-8 (a BOM is
//!   accepted), separated by `,` or `;` (whichever the header row has more of); XLSX is the
//!   first sheet, where date cells are read as dates.
//! * **Dates** `dd/mm/yyyy`, `dd-mm-yyyy`, `dd.mm.yyyy` or `yyyy-mm-dd`; sex `L`/`P` (also
//!   laki-laki/perempuan, M/F); when the sex is empty it is taken from a valid NIK (day + 40
//!   for women).
//! * **Rejected rows** (nothing of them is imported), each with the row number as the
//!   spreadsheet shows it, the column and the reason in Indonesian and English: missing
//!   name, missing or impossible birth date, missing sex, missing or invalid area code,
//!   invalid RT/RW, and suspected duplicates — the same NIK, or the same name + birth date +
//!   area, as an earlier row of the file or as a member already in the store.
//! * **Warnings** (the row is imported): a malformed NIK (NIK checks are soft, DOMAIN.md),
//!   an unknown relation, a missing No. KK.
//! * **Households**: rows are grouped by No. KK; a KK already in the store gets the new
//!   members in its household; rows without a KK are grouped by area, RT, RW, dusun and
//!   address. `--area` and `--posyandu` give defaults for rows without them.
//! * **Mothers**: a child is linked to its mother (`mother_id`) when she is in the same
//!   household (same KK, or already stored in the household the KK points to) and is
//!   found by, in order: a "NIK ibu" column; a "nama ibu" column (same name, a woman);
//!   or, for a row whose relation is child (anak), the one woman of the household who is
//!   the wife (istri) — or the head when there is no wife — and is 12–55 years older. A
//!   named mother who is not found, or two candidates, leave the child unlinked with a
//!   warning.
//! * `dry_run` reads and checks everything and writes nothing. Importing the same file
//!   again adds nothing: every row then matches a member already in the store.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use calamine::{open_workbook_auto, Data, Reader};
use chrono::{Datelike, NaiveDate};
use kunjung_core::ids::{check_nik, AreaCode};
use kunjung_core::{HouseholdStatus, NewHousehold, NewMember, Relation, Sex};
use kunjung_store::Store;
use serde::Serialize;
use uuid::Uuid;

/// Import errors that stop the whole import (a file that cannot be read at all).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("tidak bisa membaca {0}: {1} (cannot read the file)")]
    Read(String, String),
    #[error("jenis berkas tidak dikenal: {0}; pakai .csv atau .xlsx (unknown file type; use .csv or .xlsx)")]
    FileType(String),
    #[error("baris judul dengan kolom 'nama' tidak ditemukan di 10 baris pertama (no header row with a 'nama' column in the first 10 rows)")]
    NoHeader,
    #[error(transparent)]
    Store(#[from] kunjung_store::StoreError),
}

/// What to do.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub dry_run: bool,
    /// Kode wilayah for rows without one.
    pub area: Option<String>,
    /// Posyandu for rows without one.
    pub posyandu: Option<String>,
}

/// A problem in one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowIssue {
    /// The row number as the spreadsheet shows it (the header row included).
    pub row: usize,
    pub column: String,
    pub reason_id: String,
    pub reason_en: String,
}

/// A suspected duplicate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duplicate {
    pub row: usize,
    /// `nik` or `name_birth_date_area`.
    pub rule: &'static str,
    /// `store` (a member already stored) or `file` (an earlier row).
    pub against: &'static str,
    pub member_id: Option<Uuid>,
    pub household_id: Option<Uuid>,
    pub other_row: Option<usize>,
    pub name: String,
}

/// The import report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub file: String,
    pub dry_run: bool,
    /// Recognised columns: field → header as written.
    pub columns: BTreeMap<String, String>,
    pub rows: usize,
    /// Members imported (or, in a dry run, that would be).
    pub imported_members: usize,
    pub households_created: usize,
    pub households_extended: usize,
    /// Children linked to their mother (`mother_id`).
    pub mothers_linked: usize,
    pub rejected_rows: Vec<usize>,
    pub errors: Vec<RowIssue>,
    pub warnings: Vec<RowIssue>,
    pub duplicates: Vec<Duplicate>,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Text(String),
    Date(NaiveDate),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Text(s) => s.trim().to_string(),
            Val::Date(d) => d.format("%Y-%m-%d").to_string(),
        }
    }
}

const FIELDS: &[(&str, &[&str])] = &[
    (
        "kk",
        &[
            "no kk",
            "nomor kk",
            "kk",
            "no kartu keluarga",
            "nomor kartu keluarga",
            "no kk keluarga",
        ],
    ),
    (
        "nik",
        &[
            "nik",
            "no nik",
            "nomor nik",
            "no ktp",
            "nomor induk kependudukan",
        ],
    ),
    (
        "name",
        &[
            "nama",
            "nama lengkap",
            "nama anggota",
            "nama anggota keluarga",
            "name",
        ],
    ),
    (
        "birth_date",
        &[
            "tanggal lahir",
            "tgl lahir",
            "tgl lhr",
            "tanggal lhr",
            "birth date",
            "tanggal lahir birth date",
        ],
    ),
    ("sex", &["jenis kelamin", "jk", "l p", "kelamin", "sex"]),
    (
        "relation",
        &[
            "hubungan keluarga",
            "hubungan",
            "shdk",
            "status hubungan dalam keluarga",
            "hubungan dengan kepala keluarga",
            "relation",
        ],
    ),
    ("address", &["alamat", "alamat rumah", "address"]),
    ("rt", &["rt"]),
    ("rw", &["rw"]),
    ("dusun", &["dusun", "dusun lingkungan", "lingkungan"]),
    (
        "area",
        &[
            "kode wilayah",
            "kode desa",
            "kode wilayah desa",
            "kode kelurahan",
            "area code",
            "wilayah",
        ],
    ),
    ("posyandu", &["posyandu"]),
    (
        "mother_name",
        &[
            "nama ibu",
            "nama ibu kandung",
            "ibu kandung",
            "nama ibu bayi",
            "mother name",
            "mother s name",
        ],
    ),
    (
        "mother_nik",
        &["nik ibu", "nik ibu kandung", "no nik ibu", "mother nik"],
    ),
];

/// Lower case, bracketed parts removed, punctuation to spaces, spaces collapsed.
fn norm_header(h: &str) -> String {
    let mut s = String::new();
    let mut depth = 0;
    for c in h.trim_start_matches('\u{feff}').chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = (depth - 1).max(0),
            _ if depth > 0 => {}
            c if c.is_alphanumeric() => s.extend(c.to_lowercase()),
            _ => s.push(' '),
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn field_of(header: &str) -> Option<&'static str> {
    let n = norm_header(header);
    FIELDS
        .iter()
        .find(|(_, aliases)| aliases.contains(&n.as_str()))
        .map(|(f, _)| *f)
}

/// Normalised name for duplicate matching.
fn norm_name(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Parses the common register date forms.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    for f in ["%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            if d.year() >= 1000 {
                return Some(d);
            }
        }
    }
    None
}

/// `3214012001` or `32.14.01.2001` → the dotted desa code.
fn area_code(s: &str) -> Option<String> {
    let t = s.trim();
    let dotted = if t.len() == 10 && t.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}.{}.{}.{}", &t[0..2], &t[2..4], &t[4..6], &t[6..10])
    } else {
        t.to_string()
    };
    AreaCode::parse_desa(&dotted)
        .ok()
        .map(|a| a.as_str().to_string())
}

fn parse_sex(s: &str) -> Option<Sex> {
    match s.trim().to_lowercase().as_str() {
        "l" | "lk" | "laki-laki" | "laki laki" | "pria" | "m" | "male" => Some(Sex::M),
        "p" | "pr" | "perempuan" | "wanita" | "f" | "female" => Some(Sex::F),
        _ => None,
    }
}

/// Sex from a 16-digit NIK (day of birth + 40 for women), if plausible.
fn sex_from_nik(nik: &str) -> Option<Sex> {
    if nik.len() != 16 || !nik.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day: u32 = nik[6..8].parse().ok()?;
    match day {
        1..=31 => Some(Sex::M),
        41..=71 => Some(Sex::F),
        _ => None,
    }
}

fn parse_relation(s: &str) -> Option<Relation> {
    let t = s.trim().to_lowercase();
    Relation::parse(&t).or(match t.as_str() {
        "kepala rumah tangga" | "kk" | "kepala" => Some(Relation::Head),
        "anak kandung" | "anak tiri" | "anak angkat" => Some(Relation::Child),
        "ayah" | "ibu" | "bapak" | "orang tua" | "mertua" => Some(Relation::Parent),
        "suami" | "istri" | "isteri" => Some(Relation::Spouse),
        "menantu" | "cucu" | "famili lain" | "famili" | "lainnya" | "pembantu" | "saudara" => {
            Some(Relation::Other)
        }
        _ => None,
    })
}

/// Rows as (row number, cells).
fn read_rows(path: &Path) -> Result<Vec<(usize, Vec<Val>)>, ImportError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_lowercase();
    let err = |e: String| ImportError::Read(path.display().to_string(), e);
    match ext.as_str() {
        "csv" | "txt" => {
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                err("bukan UTF-8; simpan ulang sebagai CSV UTF-8 (not UTF-8)".into())
            })?;
            let text = text.trim_start_matches('\u{feff}');
            let first = text.lines().next().unwrap_or_default();
            let delim = if first.matches(';').count() > first.matches(',').count() {
                b';'
            } else {
                b','
            };
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(delim)
                .from_reader(text.as_bytes());
            let mut out = Vec::new();
            for rec in rdr.records() {
                let rec = rec.map_err(|e| err(e.to_string()))?;
                let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
                out.push((line, rec.iter().map(|c| Val::Text(c.to_string())).collect()));
            }
            Ok(out)
        }
        "xlsx" | "xlsm" | "xls" | "ods" => {
            let mut wb = open_workbook_auto(path).map_err(|e| err(e.to_string()))?;
            let name = wb
                .sheet_names()
                .first()
                .cloned()
                .ok_or_else(|| err("tidak ada lembar (no sheet)".into()))?;
            let range = wb.worksheet_range(&name).map_err(|e| err(e.to_string()))?;
            let start = range.start().map(|(r, _)| r as usize).unwrap_or(0);
            let mut out = Vec::new();
            for (i, row) in range.rows().enumerate() {
                let cells = row
                    .iter()
                    .map(|c| match c {
                        Data::DateTime(dt) => dt
                            .as_datetime()
                            .map(|t| Val::Date(t.date()))
                            .unwrap_or(Val::Text(String::new())),
                        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => {
                            Val::Text(format!("{}", *f as i64))
                        }
                        Data::Int(i) => Val::Text(i.to_string()),
                        Data::Empty => Val::Text(String::new()),
                        other => Val::Text(other.to_string()),
                    })
                    .collect();
                out.push((start + i + 1, cells));
            }
            Ok(out)
        }
        other => Err(ImportError::FileType(other.to_string())),
    }
}

/// A row that passed the checks.
#[derive(Debug, Clone)]
struct Candidate {
    row: usize,
    name: String,
    nik: Option<String>,
    kk: Option<String>,
    sex: Sex,
    birth: NaiveDate,
    relation: Option<Relation>,
    address: Option<String>,
    rt: String,
    rw: String,
    dusun: Option<String>,
    area: String,
    posyandu: Option<String>,
    mother_name: Option<String>,
    mother_nik: Option<String>,
}

fn issue(row: usize, column: &str, id: impl Into<String>, en: impl Into<String>) -> RowIssue {
    RowIssue {
        row,
        column: column.into(),
        reason_id: id.into(),
        reason_en: en.into(),
    }
}

/// Existing members and households of the store, for duplicate and KK matching.
struct Known {
    by_nik: HashMap<String, (Uuid, Uuid, String)>,
    by_name: HashMap<(String, NaiveDate, String), (Uuid, Uuid, String)>,
    kk_household: HashMap<String, Uuid>,
    /// The living women of each stored household (possible mothers).
    women: HashMap<Uuid, Vec<Woman>>,
}

/// A woman who may be a child's mother: stored (`id`) or a row of this file (`row`).
#[derive(Debug, Clone)]
struct Woman {
    id: Option<Uuid>,
    row: Option<usize>,
    name: String,
    nik: Option<String>,
    birth: Option<NaiveDate>,
    relation: Option<Relation>,
}

fn known(store: &mut Store) -> Result<Known, ImportError> {
    let mut k = Known {
        by_nik: HashMap::new(),
        by_name: HashMap::new(),
        kk_household: HashMap::new(),
        women: HashMap::new(),
    };
    for v in store.household_views(None)? {
        if v.household.status != HouseholdStatus::Active {
            continue;
        }
        let hid = v.household.id;
        if let Some(kk) = v.household.kk.as_deref().filter(|s| !s.trim().is_empty()) {
            k.kk_household.entry(kk.trim().to_string()).or_insert(hid);
        }
        for m in v.members.iter().filter(|m| !m.voided) {
            if m.sex == Some(Sex::F) && m.death_date.is_none() {
                k.women.entry(hid).or_default().push(Woman {
                    id: Some(m.id),
                    row: None,
                    name: norm_name(&m.name),
                    nik: m.nik.as_deref().map(|n| n.trim().to_string()),
                    birth: m.birth_date,
                    relation: m.relation,
                });
            }
            let rec = (m.id, hid, m.name.clone());
            if let Some(n) = m.nik.as_deref().filter(|s| !s.trim().is_empty()) {
                k.by_nik.entry(n.trim().to_string()).or_insert(rec.clone());
            }
            if let Some(kk) = m.kk.as_deref().filter(|s| !s.trim().is_empty()) {
                k.kk_household.entry(kk.trim().to_string()).or_insert(hid);
            }
            if let Some(b) = m.birth_date {
                k.by_name
                    .entry((norm_name(&m.name), b, v.household.area_code.clone()))
                    .or_insert(rec);
            }
        }
    }
    Ok(k)
}

/// Reads, checks and (unless `dry_run`) imports a register file.
pub fn import_file(
    store: &mut Store,
    path: &Path,
    opts: &ImportOptions,
    today: NaiveDate,
) -> Result<ImportReport, ImportError> {
    let rows = read_rows(path)?;
    let mut report = ImportReport {
        file: path.display().to_string(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // The header row.
    let (hpos, cols) = rows
        .iter()
        .take(10)
        .enumerate()
        .find_map(|(i, (_, cells))| {
            let map: BTreeMap<&'static str, usize> = cells
                .iter()
                .enumerate()
                .filter_map(|(c, v)| field_of(&v.text()).map(|f| (f, c)))
                .rev()
                .collect();
            map.contains_key("name").then_some((i, map))
        })
        .ok_or(ImportError::NoHeader)?;
    for (f, c) in &cols {
        report
            .columns
            .insert(f.to_string(), rows[hpos].1[*c].text());
    }
    let default_area = match &opts.area {
        Some(a) => Some(area_code(a).ok_or_else(|| {
            ImportError::Read(
                "--area".into(),
                format!("kode wilayah '{a}' tidak sah (invalid area code)"),
            )
        })?),
        None => None,
    };
    let known = known(store)?;
    let mut seen_nik: HashMap<String, usize> = HashMap::new();
    let mut seen_name: HashMap<(String, NaiveDate, String), usize> = HashMap::new();
    let mut accepted: Vec<Candidate> = Vec::new();

    for (row, cells) in rows.iter().skip(hpos + 1) {
        let row = *row;
        let get = |f: &str| -> Option<Val> {
            cols.get(f)
                .and_then(|c| cells.get(*c))
                .filter(|v| !v.text().is_empty())
                .cloned()
        };
        if cells.iter().all(|v| v.text().is_empty()) {
            continue;
        }
        report.rows += 1;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let name = get("name").map(|v| v.text()).unwrap_or_default();
        if name.is_empty() {
            errors.push(issue(row, "nama", "nama wajib diisi", "name is required"));
        }
        let nik = get("nik").map(|v| v.text().replace([' ', '\''], ""));
        let birth = match get("birth_date") {
            None => {
                errors.push(issue(
                    row,
                    "tanggal lahir",
                    "tanggal lahir wajib diisi",
                    "birth date is required",
                ));
                None
            }
            Some(Val::Date(d)) => Some(d),
            Some(Val::Text(t)) => match parse_date(&t) {
                Some(d) => Some(d),
                None => {
                    errors.push(issue(
                        row,
                        "tanggal lahir",
                        format!("tanggal lahir '{t}' tidak mungkin atau tidak dikenali (pakai dd/mm/yyyy, dd-mm-yyyy atau yyyy-mm-dd)"),
                        format!("birth date '{t}' is impossible or not recognised (use dd/mm/yyyy, dd-mm-yyyy or yyyy-mm-dd)"),
                    ));
                    None
                }
            },
        };
        let birth = birth.and_then(|d| {
            let min = NaiveDate::from_ymd_opt(1890, 1, 1).unwrap_or(NaiveDate::MIN);
            if d > today || d < min {
                errors.push(issue(
                    row,
                    "tanggal lahir",
                    format!("tanggal lahir {d} tidak masuk akal (di masa depan atau sebelum 1890)"),
                    format!("birth date {d} is impossible (in the future or before 1890)"),
                ));
                None
            } else {
                Some(d)
            }
        });
        let sex = match get("sex") {
            Some(v) => {
                let t = v.text();
                let s = parse_sex(&t);
                if s.is_none() {
                    errors.push(issue(
                        row,
                        "jenis kelamin",
                        format!("jenis kelamin '{t}' harus L atau P"),
                        format!("sex '{t}' must be L or P"),
                    ));
                }
                s
            }
            None => {
                let s = nik.as_deref().and_then(sex_from_nik);
                if s.is_none() {
                    errors.push(issue(
                        row,
                        "jenis kelamin",
                        "jenis kelamin wajib diisi (L/P)",
                        "sex is required (L/P)",
                    ));
                }
                s
            }
        };
        let area = match get("area") {
            Some(v) => {
                let t = v.text();
                let a = area_code(&t);
                if a.is_none() {
                    errors.push(issue(
                        row,
                        "kode wilayah",
                        format!("kode wilayah '{t}' tidak sah (PP.KK.CC.DDDD)"),
                        format!("area code '{t}' is invalid (PP.KK.CC.DDDD)"),
                    ));
                }
                a
            }
            None => {
                if default_area.is_none() {
                    errors.push(issue(
                        row,
                        "kode wilayah",
                        "kode wilayah kosong: isi kolomnya atau beri --area",
                        "no area code: fill the column or pass --area",
                    ));
                }
                default_area.clone()
            }
        };
        let mut rtrw = |f: &str, label: &str| -> String {
            let t = get(f).map(|v| v.text()).unwrap_or_default();
            match kunjung_core::ids::normalize_rt_rw(&t, label) {
                Ok(x) => x,
                Err(_) => {
                    errors.push(issue(
                        row,
                        &label.to_lowercase(),
                        format!("{label} '{t}' harus angka 1–3 digit"),
                        format!("{label} '{t}' must be 1–3 digits"),
                    ));
                    String::new()
                }
            }
        };
        let rt = rtrw("rt", "RT");
        let rw = rtrw("rw", "RW");
        let relation = get("relation").and_then(|v| {
            let t = v.text();
            let r = parse_relation(&t);
            if r.is_none() {
                warnings.push(issue(
                    row,
                    "hubungan keluarga",
                    format!("hubungan '{t}' tidak dikenal; dikosongkan"),
                    format!("relation '{t}' unknown; left empty"),
                ));
            }
            r
        });
        let kk = get("kk").map(|v| v.text().replace([' ', '\''], ""));
        if kk.is_none() {
            warnings.push(issue(
                row,
                "no. kk",
                "No. KK kosong: dikelompokkan menurut alamat",
                "no family card number: grouped by address",
            ));
        }
        if let Some(n) = &nik {
            for w in check_nik(n, sex, birth) {
                warnings.push(issue(row, "nik", w.message.clone(), w.code));
            }
        }
        // Duplicates: against the store, then earlier rows of the file.
        if errors.is_empty() {
            let (birth, area) = (birth.unwrap_or_default(), area.clone().unwrap_or_default());
            let name_key = (norm_name(&name), birth, area);
            let mut dup = None;
            if let Some(n) = &nik {
                if let Some((mid, hid, nm)) = known.by_nik.get(n) {
                    dup = Some(Duplicate {
                        row,
                        rule: "nik",
                        against: "store",
                        member_id: Some(*mid),
                        household_id: Some(*hid),
                        other_row: None,
                        name: nm.clone(),
                    });
                } else if let Some(r) = seen_nik.get(n) {
                    dup = Some(Duplicate {
                        row,
                        rule: "nik",
                        against: "file",
                        member_id: None,
                        household_id: None,
                        other_row: Some(*r),
                        name: name.clone(),
                    });
                }
            }
            if dup.is_none() {
                if let Some((mid, hid, nm)) = known.by_name.get(&name_key) {
                    dup = Some(Duplicate {
                        row,
                        rule: "name_birth_date_area",
                        against: "store",
                        member_id: Some(*mid),
                        household_id: Some(*hid),
                        other_row: None,
                        name: nm.clone(),
                    });
                } else if let Some(r) = seen_name.get(&name_key) {
                    dup = Some(Duplicate {
                        row,
                        rule: "name_birth_date_area",
                        against: "file",
                        member_id: None,
                        household_id: None,
                        other_row: Some(*r),
                        name: name.clone(),
                    });
                }
            }
            if let Some(d) = dup {
                let col = if d.rule == "nik" { "nik" } else { "nama" };
                let (id, en) = match d.against {
                    "store" => (
                        format!(
                            "diduga duplikat anggota yang sudah ada: {} ({})",
                            d.name,
                            d.member_id.map(|u| u.to_string()).unwrap_or_default()
                        ),
                        "suspected duplicate of a member already stored".to_string(),
                    ),
                    _ => (
                        format!("diduga duplikat baris {}", d.other_row.unwrap_or(0)),
                        format!("suspected duplicate of row {}", d.other_row.unwrap_or(0)),
                    ),
                };
                errors.push(issue(row, col, id, en));
                report.duplicates.push(d);
            } else {
                if let Some(n) = &nik {
                    seen_nik.insert(n.clone(), row);
                }
                seen_name.insert(name_key, row);
            }
        }
        report.warnings.extend(warnings);
        if !errors.is_empty() {
            report.rejected_rows.push(row);
            report.errors.extend(errors);
            continue;
        }
        let (Some(sex), Some(birth), Some(area)) = (sex, birth, area) else {
            continue;
        };
        accepted.push(Candidate {
            row,
            name,
            nik,
            kk,
            sex,
            birth,
            relation,
            address: get("address").map(|v| v.text()),
            rt,
            rw,
            dusun: get("dusun").map(|v| v.text()),
            area,
            posyandu: get("posyandu")
                .map(|v| v.text())
                .or_else(|| opts.posyandu.clone()),
            mother_name: get("mother_name").map(|v| v.text()),
            mother_nik: get("mother_nik").map(|v| v.text().replace([' ', '\''], "")),
        });
    }

    // Households: by KK, else by address.
    let mut groups: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for c in accepted {
        let key = match &c.kk {
            Some(kk) => format!("kk:{kk}"),
            None => format!(
                "addr:{}|{}|{}|{}|{}",
                c.area,
                c.rt,
                c.rw,
                c.dusun.as_deref().unwrap_or_default().to_lowercase(),
                c.address.as_deref().unwrap_or_default().to_lowercase()
            ),
        };
        groups.entry(key).or_default().push(c);
    }
    for (_, mut members) in groups {
        // Oldest first, so a mother is always added before her children.
        members.sort_by_key(|c| (c.birth, c.row));
        let first = &members[0];
        let existing = first
            .kk
            .as_ref()
            .and_then(|kk| known.kk_household.get(kk))
            .copied();
        match existing {
            Some(_) => report.households_extended += 1,
            None => report.households_created += 1,
        }
        report.imported_members += members.len();
        let stored_women = existing
            .and_then(|h| known.women.get(&h))
            .cloned()
            .unwrap_or_default();
        let mothers = link_mothers(&members, &stored_women, &mut report.warnings);
        report.mothers_linked += mothers.iter().filter(|m| m.is_some()).count();
        if opts.dry_run {
            continue;
        }
        let hid = match existing {
            Some(h) => h,
            None => store.create_household(&NewHousehold {
                area_code: first.area.clone(),
                rt: first.rt.clone(),
                rw: first.rw.clone(),
                dusun: first.dusun.clone(),
                posyandu_id: first.posyandu.clone(),
                address: first.address.clone(),
                kk: first.kk.clone(),
            })?,
        };
        let mut ids: HashMap<usize, Uuid> = HashMap::new();
        for (c, mother) in members.iter().zip(&mothers) {
            let mother_id = match mother {
                Some(Mother::Stored(id)) => Some(*id),
                Some(Mother::Row(r)) => ids.get(r).copied(),
                None => None,
            };
            let id = store
                .add_member(
                    hid,
                    &NewMember {
                        name: c.name.clone(),
                        sex: c.sex,
                        birth_date: c.birth,
                        birth_date_estimated: false,
                        nik: c.nik.clone(),
                        kk: c.kk.clone(),
                        relation: c.relation,
                        mother_id,
                        jkn: None,
                    },
                )
                .map_err(|e| ImportError::Read(format!("baris {} (row)", c.row), e.to_string()))?
                .id;
            ids.insert(c.row, id);
        }
    }
    Ok(report)
}

/// A child's mother: a member already stored, or another row of the file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mother {
    Stored(Uuid),
    Row(usize),
}

/// Mother's age at the child's birth for the relation-only rule, in years.
const MOTHER_AGE: std::ops::RangeInclusive<i32> = 12..=55;

/// The mother of each row of one household (see the module docs); warnings for the
/// named mothers not found or not unique.
fn link_mothers(
    rows: &[Candidate],
    stored: &[Woman],
    warnings: &mut Vec<RowIssue>,
) -> Vec<Option<Mother>> {
    let mut women: Vec<Woman> = stored.to_vec();
    women.extend(rows.iter().filter(|c| c.sex == Sex::F).map(|c| Woman {
        id: None,
        row: Some(c.row),
        name: norm_name(&c.name),
        nik: c.nik.clone(),
        birth: Some(c.birth),
        relation: c.relation,
    }));
    let pick = |w: &Woman| match (w.id, w.row) {
        (Some(id), _) => Some(Mother::Stored(id)),
        (None, Some(r)) => Some(Mother::Row(r)),
        _ => None,
    };
    let older = |w: &Woman, child: &Candidate| {
        w.birth.is_some_and(|b| {
            let years = child.birth.year() - b.year();
            b < child.birth && MOTHER_AGE.contains(&years)
        })
    };
    rows.iter()
        .map(|c| {
            let not_self = |w: &&Woman| w.row != Some(c.row);
            let found: Vec<&Woman> = if let Some(nik) = &c.mother_nik {
                women
                    .iter()
                    .filter(not_self)
                    .filter(|w| w.nik.as_deref() == Some(nik.as_str()))
                    .collect()
            } else if let Some(name) = &c.mother_name {
                let name = norm_name(name);
                women
                    .iter()
                    .filter(not_self)
                    .filter(|w| w.name == name && older(w, c))
                    .collect()
            } else if c.relation == Some(Relation::Child) {
                let by = |rel: Relation| -> Vec<&Woman> {
                    women
                        .iter()
                        .filter(not_self)
                        .filter(|w| w.relation == Some(rel) && older(w, c))
                        .collect()
                };
                let wives = by(Relation::Spouse);
                if wives.is_empty() {
                    by(Relation::Head)
                } else {
                    wives
                }
            } else {
                return None;
            };
            let named = c.mother_nik.as_ref().or(c.mother_name.as_ref());
            match (found.as_slice(), named) {
                ([w], _) => pick(w),
                ([], Some(n)) => {
                    warnings.push(issue(
                        c.row,
                        "ibu",
                        format!("ibu '{n}' tidak ditemukan di KK yang sama; anak tidak ditautkan"),
                        format!("mother '{n}' not found in the same household; child not linked"),
                    ));
                    None
                }
                ([_, _, ..], Some(n)) => {
                    warnings.push(issue(
                        c.row,
                        "ibu",
                        format!(
                            "ibu '{n}' cocok dengan lebih dari satu anggota; anak tidak ditautkan"
                        ),
                        format!("mother '{n}' matches more than one member; child not linked"),
                    ));
                    None
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_dates_and_codes() {
        assert_eq!(field_of("No. KK"), Some("kk"));
        assert_eq!(field_of("Nomor Kartu Keluarga"), Some("kk"));
        assert_eq!(field_of("\u{feff}NIK"), Some("nik"));
        assert_eq!(field_of("Tgl. Lahir"), Some("birth_date"));
        assert_eq!(field_of("Tanggal lahir (birth date)"), Some("birth_date"));
        assert_eq!(field_of("L/P"), Some("sex"));
        assert_eq!(field_of("SHDK"), Some("relation"));
        assert_eq!(field_of("Kode Wilayah"), Some("area"));
        assert_eq!(field_of("Umur"), None);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        assert_eq!(parse_date("05/01/2019"), d("2019-01-05"));
        assert_eq!(parse_date("05-01-2019"), d("2019-01-05"));
        assert_eq!(parse_date("2019-01-05"), d("2019-01-05"));
        assert_eq!(parse_date("31/02/2019"), None);
        assert_eq!(parse_date("5/1/19"), None);
        assert_eq!(area_code("3214012001").as_deref(), Some("32.14.01.2001"));
        assert_eq!(area_code("32.14.01.2001").as_deref(), Some("32.14.01.2001"));
        assert_eq!(area_code("32.14"), None);
        assert_eq!(sex_from_nik("3214015205940001"), Some(Sex::F));
        assert_eq!(sex_from_nik("3214011205940001"), Some(Sex::M));
        assert_eq!(parse_relation("Kepala Keluarga"), Some(Relation::Head));
        assert_eq!(parse_relation("Anak Kandung"), Some(Relation::Child));
    }
}
