//! Exports for the puskesmas data officer: the monthly recap and the register tables
//! (households, members, visits, referrals) as CSV or XLSX.
//!
//! * **XLSX**: one workbook, one sheet per table (`ringkasan`, `rekap`, `rumah_tangga`,
//!   `anggota`, `kunjungan`, `rujukan`), typed cells (dates are Excel dates shown
//!   `dd/mm/yyyy`, numbers are numbers — percentages with one decimal, counts whole —
//!   yes/no are booleans), bold header row frozen with a filter, columns sized to their
//!   content, long text (definitions) wrapped. `ringkasan` is the PWS table a data
//!   officer reads first: one row per posyandu/desa and the total, one column per
//!   indicator, each header carrying the indicator's definition as a cell note; `rekap`
//!   has every figure with its numerator, denominator and definition written out.
//!   Codes are written in Bahasa Indonesia (relation `Kepala Keluarga`, `Istri`, `Anak`…;
//!   life stage, status), as `kunjung import` reads them back.
//! * **CSV**: UTF-8 with a header row, comma separated, RFC 4180 quoting, dates as
//!   `YYYY-MM-DD`. Several tables go into a **directory** (`--out DIR`), one file per table
//!   named like the sheets (`rekap.csv`, `rumah_tangga.csv`, …); a single table (the
//!   report) goes into one file.
//!
//! Headers are Bahasa Indonesia with the English in brackets, e.g. `Tanggal lahir (birth
//! date)`; `kunjung import` understands the member table's headers, so an export can be
//! imported elsewhere.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};
use kunjung_core::lifestage::life_stage;
use kunjung_core::report::{MonthlyRecap, Unit};
use kunjung_core::HouseholdView;
use rust_xlsxwriter::{Format, Workbook};

/// Export errors (Bahasa Indonesia first, English in brackets).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("kesalahan berkas: {0} (file error)")]
    Io(#[from] std::io::Error),
    #[error("kesalahan CSV: {0} (CSV error)")]
    Csv(#[from] csv::Error),
    #[error("kesalahan XLSX: {0} (XLSX error)")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// One typed cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Int(i64),
    Num(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl Cell {
    fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }
    fn opt_text(s: Option<impl Into<String>>) -> Cell {
        s.map(|s| Cell::Text(s.into())).unwrap_or(Cell::Empty)
    }
    fn opt_num(v: Option<f64>) -> Cell {
        v.map(Cell::Num).unwrap_or(Cell::Empty)
    }
    fn opt_int(v: Option<i64>) -> Cell {
        v.map(Cell::Int).unwrap_or(Cell::Empty)
    }
    fn opt_date(v: Option<NaiveDate>) -> Cell {
        v.map(Cell::Date).unwrap_or(Cell::Empty)
    }
    fn opt_bool(v: Option<bool>) -> Cell {
        v.map(Cell::Bool).unwrap_or(Cell::Empty)
    }
    fn ms(v: i64) -> Cell {
        chrono::DateTime::from_timestamp_millis(v)
            .filter(|_| v > 0)
            .map(|t| Cell::DateTime(t.naive_utc()))
            .unwrap_or(Cell::Empty)
    }
    /// The CSV form.
    pub fn to_csv(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Num(f) => f.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Date(d) => d.format("%Y-%m-%d").to_string(),
            Cell::DateTime(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        }
    }
}

/// A table: a sheet name, header labels and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// Cell notes on header cells (column, text), e.g. an indicator's definition.
    pub notes: Vec<(usize, String)>,
}

fn hdr(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

/// The relation as a register writes it (and `kunjung import` reads it).
fn relation_id(r: kunjung_core::Relation, sex: Option<kunjung_core::Sex>) -> &'static str {
    use kunjung_core::{Relation, Sex};
    match (r, sex) {
        (Relation::Head, _) => "Kepala Keluarga",
        (Relation::Spouse, Some(Sex::M)) => "Suami",
        (Relation::Spouse, _) => "Istri",
        (Relation::Child, _) => "Anak",
        (Relation::Parent, _) => "Orang Tua",
        (Relation::Other, _) => "Famili Lain",
    }
}

fn household_status_id(s: kunjung_core::HouseholdStatus) -> &'static str {
    use kunjung_core::HouseholdStatus as S;
    match s {
        S::Active => "aktif",
        S::Moved => "pindah",
        S::Merged => "digabung",
        S::Dissolved => "bubar",
    }
}

fn referral_status_id(s: kunjung_core::ReferralStatus) -> &'static str {
    use kunjung_core::ReferralStatus as S;
    match s {
        S::Open => "terbuka",
        S::Received => "diterima",
        S::Examined => "diperiksa",
        S::Closed => "ditutup",
    }
}

fn unit_id(u: Unit) -> &'static str {
    match u {
        Unit::Percent => "%",
        Unit::Count => "jumlah (count)",
        Unit::Days => "hari (days)",
    }
}

/// The recap as the PWS table: one row per group (the total last), one column per
/// indicator value; each indicator header has its definition as a note.
pub fn summary_table(r: &MonthlyRecap) -> Table {
    let mut headers = hdr(&[
        "Kelompok (group)",
        "Nama kelompok (group name)",
        "Rumah tangga (households)",
        "Anggota (members)",
    ]);
    let fixed = headers.len();
    let mut notes = Vec::new();
    for (i, ind) in r.total.indicators.iter().enumerate() {
        let unit = match ind.unit {
            Unit::Percent => "%",
            Unit::Count => "n",
            Unit::Days => "hari",
        };
        headers.push(format!("{} ({unit})", ind.label_id));
        notes.push((
            fixed + i,
            format!(
                "{}\n\n{}\n\n{}",
                ind.definition_id, ind.definition_en, ind.source
            ),
        ));
    }
    let mut rows = Vec::new();
    for g in r.groups.iter().chain(std::iter::once(&r.total)) {
        let mut row = vec![
            Cell::text(&g.key),
            Cell::text(&g.label),
            Cell::Int(g.households as i64),
            Cell::Int(g.members as i64),
        ];
        for ind in &r.total.indicators {
            let v = g.indicator(&ind.id).and_then(|i| i.value);
            row.push(match (ind.unit, v) {
                (_, None) => Cell::Empty,
                (Unit::Count, Some(v)) => Cell::Int(v as i64),
                (_, Some(v)) => Cell::Num(v),
            });
        }
        rows.push(row);
    }
    Table {
        name: "ringkasan",
        headers,
        rows,
        notes,
    }
}

/// The recap as a table: one row per group and indicator (the total last).
pub fn recap_table(r: &MonthlyRecap) -> Table {
    let headers = hdr(&[
        "Bulan (month)",
        "Kelompok (group)",
        "Nama kelompok (group name)",
        "Kode indikator (indicator code)",
        "Bagian (section)",
        "Indikator",
        "Indicator",
        "Pembilang (numerator)",
        "Penyebut (denominator)",
        "Nilai (value)",
        "Satuan (unit)",
        "Definisi",
        "Definition",
        "Sumber (source)",
    ]);
    let mut rows = Vec::new();
    for g in r.groups.iter().chain(std::iter::once(&r.total)) {
        for i in &g.indicators {
            rows.push(vec![
                Cell::text(&r.month),
                Cell::text(&g.key),
                Cell::text(&g.label),
                Cell::text(&i.id),
                Cell::text(&i.section),
                Cell::text(&i.label_id),
                Cell::text(&i.label_en),
                Cell::Int(i.numerator as i64),
                Cell::opt_int(i.denominator.map(|d| d as i64)),
                match (i.unit, i.value) {
                    (Unit::Count, Some(v)) => Cell::Int(v as i64),
                    (_, v) => Cell::opt_num(v),
                },
                Cell::text(unit_id(i.unit)),
                Cell::text(&i.definition_id),
                Cell::text(&i.definition_en),
                Cell::text(&i.source),
            ]);
        }
    }
    Table {
        name: "rekap",
        headers,
        rows,
        notes: Vec::new(),
    }
}

/// The register tables of the given households: households, members, visits, referrals.
/// Life stages and referral ages are taken on `today`.
pub fn register_tables(views: &[HouseholdView], today: NaiveDate) -> Vec<Table> {
    let mut hh = Table {
        name: "rumah_tangga",
        notes: Vec::new(),
        headers: hdr(&[
            "ID rumah tangga (household id)",
            "Kode wilayah (area code)",
            "Dusun",
            "RT",
            "RW",
            "Posyandu",
            "Alamat (address)",
            "No. KK",
            "Status",
            "Digabung ke (merged into)",
            "Lintang (latitude)",
            "Bujur (longitude)",
            "Kepala keluarga (head)",
            "Jumlah anggota (members)",
            "Jumlah kunjungan (visits)",
            "Dibuat (created)",
        ]),
        rows: vec![],
    };
    let mut members = Table {
        name: "anggota",
        notes: Vec::new(),
        headers: hdr(&[
            "ID anggota (member id)",
            "ID rumah tangga (household id)",
            "Nama (name)",
            "NIK",
            "No. KK",
            "Jenis kelamin (sex)",
            "Tanggal lahir (birth date)",
            "Tanggal lahir perkiraan (estimated)",
            "Hubungan keluarga (relation)",
            "ID ibu (mother id)",
            "JKN",
            "Tanggal meninggal (death date)",
            "Tanggal pindah (moved out)",
            "Dibatalkan (voided)",
            "Tahap kehidupan (life stage)",
            "Kode wilayah (area code)",
            "Dusun",
            "RT",
            "RW",
            "Alamat (address)",
            "Posyandu",
        ]),
        rows: vec![],
    };
    let mut visits = Table {
        name: "kunjungan",
        notes: Vec::new(),
        headers: hdr(&[
            "ID kunjungan (visit id)",
            "ID rumah tangga (household id)",
            "ID anggota (member id)",
            "Nama (name)",
            "Tanggal (date)",
            "Tahap kehidupan (life stage)",
            "Kader (cadre)",
            "Berat badan kg (weight kg)",
            "Panjang/tinggi cm (length/height cm)",
            "Cara ukur (measured)",
            "LiLA cm (MUAC cm)",
            "Lingkar kepala cm (head cm)",
            "Sistolik (systolic)",
            "Diastolik (diastolic)",
            "Tanda bahaya (danger signs)",
            "Dirujuk (referred)",
            "Lapor nakes (reported)",
            "Dibatalkan (voided)",
            "Catatan (notes)",
            "Jawaban ceklis (checklist answers, JSON)",
        ]),
        rows: vec![],
    };
    let mut referrals = Table {
        name: "rujukan",
        notes: Vec::new(),
        headers: hdr(&[
            "ID rujukan (referral id)",
            "ID rumah tangga (household id)",
            "ID anggota (member id)",
            "Nama (name)",
            "ID kunjungan (visit id)",
            "Alasan (reason)",
            "Tanda bahaya (danger signs)",
            "Dibuat (created)",
            "Oleh (by)",
            "Status",
            "Diperbarui (updated)",
            "Hasil (outcome)",
            "Umpan balik (feedback)",
            "Ditangani oleh (handled by)",
            "Umur hari (age days)",
        ]),
        rows: vec![],
    };
    for v in views {
        let h = &v.household;
        let hid = h.id.to_string();
        hh.rows.push(vec![
            Cell::text(&hid),
            Cell::text(&h.area_code),
            Cell::opt_text(h.dusun.clone()),
            Cell::text(&h.rt),
            Cell::text(&h.rw),
            Cell::opt_text(h.posyandu_id.clone()),
            Cell::opt_text(h.address.clone()),
            Cell::opt_text(h.kk.clone()),
            Cell::text(household_status_id(h.status)),
            Cell::opt_text(h.merged_into.map(|u| u.to_string())),
            Cell::opt_num(h.lat),
            Cell::opt_num(h.lon),
            Cell::opt_text(v.head_name()),
            Cell::Int(v.members.iter().filter(|m| !m.voided).count() as i64),
            Cell::Int(v.visits.iter().filter(|x| !x.voided).count() as i64),
            Cell::ms(h.created_at),
        ]);
        for m in &v.members {
            members.rows.push(vec![
                Cell::text(m.id.to_string()),
                Cell::text(&hid),
                Cell::text(&m.name),
                Cell::opt_text(m.nik.clone()),
                Cell::opt_text(m.kk.clone().or_else(|| h.kk.clone())),
                Cell::opt_text(m.sex.map(|s| if s.code() == "F" { "P" } else { "L" })),
                Cell::opt_date(m.birth_date),
                Cell::Bool(m.birth_date_estimated),
                Cell::opt_text(m.relation.map(|r| relation_id(r, m.sex))),
                Cell::opt_text(m.mother_id.map(|u| u.to_string())),
                Cell::opt_bool(m.jkn),
                Cell::opt_date(m.death_date),
                Cell::opt_date(m.moved_out_date),
                Cell::Bool(m.voided),
                Cell::opt_text(life_stage(m, today).map(|s| s.label_id())),
                Cell::text(&h.area_code),
                Cell::opt_text(h.dusun.clone()),
                Cell::text(&h.rt),
                Cell::text(&h.rw),
                Cell::opt_text(h.address.clone()),
                Cell::opt_text(h.posyandu_id.clone()),
            ]);
        }
        for x in &v.visits {
            let name = v.member(x.member_id).map(|m| m.name.clone());
            visits.rows.push(vec![
                Cell::text(x.id.to_string()),
                Cell::text(&hid),
                Cell::text(x.member_id.to_string()),
                Cell::opt_text(name),
                Cell::Date(x.date),
                Cell::opt_text(x.stage.map(|s| s.label_id())),
                Cell::opt_text(x.cadre.clone()),
                Cell::opt_num(x.weight_kg),
                Cell::opt_num(x.height_cm),
                Cell::opt_text(x.measured.map(|m| m.code())),
                Cell::opt_num(x.muac_cm),
                Cell::opt_num(x.head_cm),
                Cell::opt_int(x.bp_systolic),
                Cell::opt_int(x.bp_diastolic),
                Cell::text(x.danger_signs.join(",")),
                Cell::Bool(x.referred),
                Cell::opt_bool(x.reported_to_nakes),
                Cell::Bool(x.voided),
                Cell::opt_text(x.notes.clone()),
                Cell::text(serde_json::to_string(&x.answers).unwrap_or_default()),
            ]);
        }
        for r in &v.referrals {
            let name = v.member(r.member_id).map(|m| m.name.clone());
            let age = chrono::DateTime::from_timestamp_millis(r.created_at)
                .map(|t| (today - t.date_naive()).num_days());
            referrals.rows.push(vec![
                Cell::text(r.id.to_string()),
                Cell::text(&hid),
                Cell::text(r.member_id.to_string()),
                Cell::opt_text(name),
                Cell::opt_text(r.visit_id.map(|u| u.to_string())),
                Cell::text(&r.reason),
                Cell::text(r.danger_signs.join(",")),
                Cell::ms(r.created_at),
                Cell::opt_text(r.created_by.clone()),
                Cell::text(referral_status_id(r.status)),
                r.updated_at.map(Cell::ms).unwrap_or(Cell::Empty),
                Cell::opt_text(r.outcome.clone()),
                Cell::opt_text(r.feedback.clone()),
                Cell::opt_text(r.handled_by.clone()),
                Cell::opt_int(age),
            ]);
        }
    }
    vec![hh, members, visits, referrals]
}

/// Writes one table as a CSV file (UTF-8, header row).
pub fn write_csv(table: &Table, path: &Path) -> Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(&table.headers)?;
    for row in &table.rows {
        w.write_record(row.iter().map(Cell::to_csv))?;
    }
    w.flush()?;
    Ok(())
}

/// Writes several tables as CSV files `<name>.csv` in the directory `dir` (created).
/// Returns the files written.
pub fn write_csv_dir(tables: &[Table], dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for t in tables {
        let p = dir.join(format!("{}.csv", t.name));
        write_csv(t, &p)?;
        out.push(p);
    }
    Ok(out)
}

/// Writes the tables as one XLSX workbook, one sheet each, typed cells, header frozen.
pub fn write_xlsx(tables: &[Table], path: &Path) -> Result<()> {
    let mut wb = Workbook::new();
    let header = Format::new()
        .set_bold()
        .set_background_color("#DDEBF7")
        .set_text_wrap()
        .set_align(rust_xlsxwriter::FormatAlign::Top);
    let date = Format::new().set_num_format("dd/mm/yyyy");
    let datetime = Format::new().set_num_format("dd/mm/yyyy hh:mm");
    let one_decimal = Format::new().set_num_format("0.0");
    let wrap = Format::new()
        .set_text_wrap()
        .set_align(rust_xlsxwriter::FormatAlign::Top);
    for t in tables {
        let ws = wb.add_worksheet();
        ws.set_name(t.name)?;
        let long_text = |h: &str| h.starts_with("Defini") || h.starts_with("Jawaban");
        for (c, h) in t.headers.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, h, &header)?;
        }
        for (r, row) in t.rows.iter().enumerate() {
            let r = r as u32 + 1;
            for (c, cell) in row.iter().enumerate() {
                let c = c as u16;
                match cell {
                    Cell::Empty => {}
                    Cell::Text(s) if long_text(&t.headers[c as usize]) => {
                        ws.write_string_with_format(r, c, s, &wrap)?;
                    }
                    Cell::Text(s) => {
                        ws.write_string(r, c, s)?;
                    }
                    Cell::Int(i) => {
                        ws.write_number(r, c, *i as f64)?;
                    }
                    Cell::Num(f) if t.name == "rekap" || t.name == "ringkasan" => {
                        ws.write_number_with_format(r, c, *f, &one_decimal)?;
                    }
                    Cell::Num(f) => {
                        ws.write_number(r, c, *f)?;
                    }
                    Cell::Bool(b) => {
                        ws.write_boolean(r, c, *b)?;
                    }
                    Cell::Date(d) => {
                        ws.write_date_with_format(r, c, d, &date)?;
                    }
                    Cell::DateTime(d) => {
                        ws.write_datetime_with_format(r, c, d, &datetime)?;
                    }
                }
            }
        }
        // The summary keeps its group names in view while scrolling right.
        let frozen_cols = if t.name == "ringkasan" { 2 } else { 0 };
        ws.set_freeze_panes(1, frozen_cols)?;
        if !t.rows.is_empty() {
            let last_col = t.headers.len().saturating_sub(1) as u16;
            ws.autofilter(0, 0, t.rows.len() as u32, last_col)?;
        }
        ws.autofit();
        for (c, h) in t.headers.iter().enumerate() {
            let c = c as u16;
            if long_text(h) {
                // Long text (definitions, answers) wraps in a wide column.
                ws.set_column_width(c, 70)?;
            } else if t.name == "ringkasan" && c >= 2 {
                // Indicator names wrap in the header; the numbers are short.
                ws.set_column_width(c, 14)?;
            } else if t.name == "rekap"
                && (h.starts_with("Indikator") || h.starts_with("Indicator"))
            {
                ws.set_column_width(c, 40)?;
            }
        }
        if t.name == "ringkasan" {
            ws.set_row_height(0, 75)?;
        }
        for (c, text) in &t.notes {
            let note = rust_xlsxwriter::Note::new(text)
                .set_width(420)
                .set_height(220)
                .add_author_prefix(false);
            ws.insert_note(0, *c as u16, &note)?;
        }
    }
    wb.save(path)?;
    Ok(())
}

/// The output formats of `kunjung report` / `kunjung export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Json,
    Csv,
    Xlsx,
    Fhir,
}

impl OutFormat {
    pub fn parse(s: &str) -> std::result::Result<OutFormat, String> {
        Ok(match s.trim().to_lowercase().as_str() {
            "json" => OutFormat::Json,
            "csv" => OutFormat::Csv,
            "xlsx" | "excel" => OutFormat::Xlsx,
            "fhir" => OutFormat::Fhir,
            _ => {
                return Err(format!(
                    "format '{s}' tidak dikenal: json|csv|xlsx|fhir (unknown format)"
                ))
            }
        })
    }
}

fn need_out(out: Option<&Path>) -> std::result::Result<&Path, String> {
    out.ok_or_else(|| "format ini butuh --out PATH (this format needs --out PATH)".to_string())
}

/// `kunjung report`: the monthly recap as JSON (returned, or written to `out`), CSV (one
/// file) or XLSX (sheet `rekap`).
pub fn run_report(
    store: &mut kunjung_store::Store,
    month: &str,
    area: Option<&str>,
    by: &str,
    format: &str,
    out: Option<&Path>,
    today: NaiveDate,
) -> std::result::Result<serde_json::Value, String> {
    let month: kunjung_core::schedule::YearMonth = month.parse()?;
    let grouping = kunjung_core::report::Grouping::parse(by).ok_or_else(|| {
        format!("--by '{by}' harus posyandu|desa|area (must be posyandu, desa or area)")
    })?;
    let recap = store
        .monthly_report(month, area, grouping, Some(today))
        .map_err(|e| e.to_string())?;
    let e = |e: ExportError| e.to_string();
    match OutFormat::parse(format)? {
        OutFormat::Json => {
            let v = serde_json::to_value(&recap).map_err(|e| e.to_string())?;
            match out {
                Some(p) => {
                    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
                    std::fs::write(p, text).map_err(|x| e(x.into()))?;
                    Ok(serde_json::json!({"out": p, "groups": recap.groups.len()}))
                }
                None => Ok(v),
            }
        }
        OutFormat::Csv => {
            let p = need_out(out)?;
            write_csv(&recap_table(&recap), p).map_err(e)?;
            Ok(serde_json::json!({"out": p, "format": "csv", "groups": recap.groups.len()}))
        }
        OutFormat::Xlsx => {
            let p = need_out(out)?;
            write_xlsx(&[summary_table(&recap), recap_table(&recap)], p).map_err(e)?;
            Ok(serde_json::json!({"out": p, "format": "xlsx", "groups": recap.groups.len()}))
        }
        OutFormat::Fhir => Err("laporan tidak tersedia sebagai FHIR; pakai `kunjung export --format fhir` (the report has no FHIR form)".into()),
    }
}

/// `kunjung export`: the register of `area` (all when `None`) with the recap of `month`
/// (default: the month of `today`) as an XLSX workbook, a directory of CSV files, or a
/// FHIR R4 transaction Bundle (JSON).
pub fn run_export(
    store: &mut kunjung_store::Store,
    format: &str,
    out: &Path,
    area: Option<&str>,
    month: Option<&str>,
    today: NaiveDate,
) -> std::result::Result<serde_json::Value, String> {
    let format = OutFormat::parse(format)?;
    let views = store.household_views(area).map_err(|e| e.to_string())?;
    let e = |e: ExportError| e.to_string();
    if format == OutFormat::Fhir {
        let bundle = crate::fhir::bundle(&views, today);
        let n = bundle["entry"].as_array().map(|a| a.len()).unwrap_or(0);
        let text = serde_json::to_string_pretty(&bundle).map_err(|e| e.to_string())?;
        std::fs::write(out, text).map_err(|x| e(x.into()))?;
        return Ok(serde_json::json!({"out": out, "format": "fhir", "entries": n}));
    }
    let month: kunjung_core::schedule::YearMonth = match month {
        Some(m) => m.parse()?,
        None => kunjung_core::schedule::YearMonth::of(today),
    };
    let recap = kunjung_core::report::monthly_recap(
        &views,
        &kunjung_core::report::RecapOptions {
            month,
            grouping: kunjung_core::report::Grouping::Posyandu,
            as_of: Some(today),
        },
    );
    let mut tables = vec![summary_table(&recap), recap_table(&recap)];
    tables.extend(register_tables(&views, today));
    let counts: serde_json::Map<String, serde_json::Value> = tables
        .iter()
        .map(|t| (t.name.to_string(), t.rows.len().into()))
        .collect();
    match format {
        OutFormat::Xlsx => write_xlsx(&tables, out).map_err(e)?,
        OutFormat::Csv | OutFormat::Json => {
            if format == OutFormat::Json {
                return Err(
                    "export mendukung csv|xlsx|fhir (export supports csv, xlsx or fhir)".into(),
                );
            }
            write_csv_dir(&tables, out).map_err(e)?;
        }
        OutFormat::Fhir => {}
    }
    Ok(serde_json::json!({"out": out, "format": format_name(format), "rows": counts}))
}

fn format_name(f: OutFormat) -> &'static str {
    match f {
        OutFormat::Json => "json",
        OutFormat::Csv => "csv",
        OutFormat::Xlsx => "xlsx",
        OutFormat::Fhir => "fhir",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_types() {
        let t = Table {
            name: "t",
            headers: hdr(&["Nama (name)", "Tanggal (date)", "N"]),
            notes: Vec::new(),
            rows: vec![vec![
                Cell::text("Siti, \"Ani\""),
                Cell::Date(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()),
                Cell::Num(1.5),
            ]],
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        write_csv(&t, &p).unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            s,
            "Nama (name),Tanggal (date),N\n\"Siti, \"\"Ani\"\"\",2026-01-02,1.5\n"
        );
    }
}
