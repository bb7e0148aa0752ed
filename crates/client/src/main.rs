//! `kunjung`: the command-line tool over the local store. Output is JSON on stdout; errors
//! are a clear message on stderr (Bahasa Indonesia, then English) with a non-zero exit.
//! This interface is relied on by operators and scripts: keep it stable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use kunjung_core::checklist::{AnswerValue, VisitAnswers};
use kunjung_core::{
    FieldEdit, Measured, NewHousehold, NewMember, NewVisit, Pregnancy, Relation, Sex,
};
use kunjung_store::{ListFilter, Store, StoreError};
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "kunjung",
    version,
    about = "Kunjung: catatan kunjungan rumah ILP (ILP home-visit records)"
)]
struct Cli {
    /// Data directory (default: $KUNJUNG_DATA, else ~/.local/share/kunjung).
    #[arg(long, global = true, env = "KUNJUNG_DATA")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a new store (encrypted with the PIN in KUNJUNG_PIN when --encrypt).
    Init {
        #[arg(long)]
        encrypt: bool,
        /// Name of the user of this device (recorded with every change).
        #[arg(long, env = "KUNJUNG_USER", default_value = "kader")]
        user: String,
    },
    #[command(subcommand)]
    Household(HouseholdCmd),
    #[command(subcommand)]
    Member(MemberCmd),
    #[command(subcommand)]
    Pregnancy(PregnancyCmd),
    #[command(subcommand)]
    Visit(VisitCmd),
    #[command(subcommand)]
    Referral(ReferralCmd),
    /// A bidan's acknowledgement of a visit.
    Review {
        #[arg(long)]
        visit: Uuid,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Visits waiting for the bidan's review.
    ReviewQueue {
        #[arg(long)]
        area: Option<String>,
        #[arg(long, default_value_t = 200)]
        limit: usize,
    },
    /// Search names, NIK and addresses.
    Search {
        text: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Changes of a household (who, which device, when, what); --field for one field.
    History {
        household: Uuid,
        #[arg(long)]
        field: Option<String>,
    },
    /// Conflicting values to resolve.
    Conflicts {
        #[arg(long)]
        household: Option<Uuid>,
    },
    /// Resolve a conflict by choosing a value.
    Resolve {
        #[arg(long)]
        household: Uuid,
        #[arg(long)]
        path: String,
        /// The chosen value (JSON, or plain text).
        #[arg(long)]
        value: String,
    },
    /// WHO growth z-scores and Permenkes 2/2020 categories.
    Growth(GrowthArgs),
    /// Due, overdue and done services (ANC, KN/KF, immunisation, vitamin A, weighing, …).
    Tasks {
        /// The day to compute for (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
        #[arg(long)]
        area: Option<String>,
        /// Only due and overdue tasks.
        #[arg(long)]
        open: bool,
    },
    /// Deterministic realistic demo data.
    DemoSeed {
        #[arg(long)]
        households: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Average visits per household.
        #[arg(long, default_value_t = 20)]
        visits: usize,
        /// Last day of the history (default today).
        #[arg(long)]
        today: Option<NaiveDate>,
    },
    /// Sync with the server: push local changes, pull the user's scope (password in
    /// KUNJUNG_PASSWORD). Progress on stderr; JSON summary on stdout.
    Sync {
        #[arg(long, env = "KUNJUNG_SERVER")]
        server: String,
        #[arg(long)]
        user: String,
        /// Households per page.
        #[arg(long)]
        page_size: Option<u32>,
    },
    #[command(subcommand)]
    Store(StoreCmd),
    /// App settings kept in the store (language, server, account): `setting set KEY VALUE`,
    /// `setting get KEY`.
    Setting {
        /// get | set
        action: String,
        key: String,
        value: Option<String>,
    },
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Monthly recap (PWS) per posyandu, desa or area: JSON, CSV or XLSX.
    Report {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Kode wilayah or prefix (e.g. a kecamatan 32.14.01); default everything.
        #[arg(long)]
        area: Option<String>,
        /// posyandu | desa | area.
        #[arg(long, default_value = "posyandu")]
        by: String,
        /// json | csv | xlsx.
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Export the register: xlsx (one sheet per table + recap), csv (a directory of files)
    /// or fhir (FHIR R4 transaction Bundle, SATUSEHAT style).
    Export {
        #[arg(long)]
        format: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        area: Option<String>,
        /// Month of the recap sheet (default: this month).
        #[arg(long)]
        month: Option<String>,
    },
    /// Import a household register (CSV or XLSX): rows checked, errors and suspected
    /// duplicates reported per row; --dry-run writes nothing.
    Import {
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
        /// Kode wilayah for rows without one.
        #[arg(long)]
        area: Option<String>,
        /// Posyandu for rows without one.
        #[arg(long)]
        posyandu: Option<String>,
    },
    /// Suspected duplicate households (same No. KK, or a shared member by NIK or name +
    /// birth date).
    Duplicates {
        #[arg(long)]
        area: Option<String>,
    },
    /// Merge a duplicate household into another (reversible with `unmerge`).
    Merge {
        #[arg(long)]
        from: Uuid,
        #[arg(long)]
        into: Uuid,
    },
    /// Undo the merge of a household.
    Unmerge { id: Uuid },
    /// Test hook for the crash tests: writes visits, members and edits in a loop and prints
    /// each one after it is committed ("acknowledged").
    #[command(hide = true)]
    DebugWriteLoop {
        #[arg(long)]
        household: Uuid,
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
    },
}

#[derive(Subcommand)]
enum HouseholdCmd {
    /// Register a household.
    Add {
        #[arg(long)]
        area: String,
        #[arg(long)]
        rt: String,
        #[arg(long)]
        rw: String,
        #[arg(long)]
        dusun: Option<String>,
        #[arg(long)]
        posyandu: Option<String>,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        kk: Option<String>,
    },
    /// A household with members, visits, referrals and conflicts.
    Show { id: Uuid },
    /// Households (filters: area prefix, dusun, RT, RW, posyandu, life stage).
    List {
        #[arg(long)]
        area: Option<String>,
        #[arg(long)]
        dusun: Option<String>,
        #[arg(long)]
        rt: Option<String>,
        #[arg(long)]
        rw: Option<String>,
        #[arg(long)]
        posyandu: Option<String>,
        #[arg(long)]
        stage: Option<String>,
        #[arg(long)]
        conflicts: bool,
        /// Only households with due or overdue tasks.
        #[arg(long)]
        due: bool,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Set a household field (area_code, dusun, rt, rw, posyandu_id, address, kk, status, …)
    /// or a household checklist item (checklist.clean_water=true).
    Set {
        id: Uuid,
        /// FIELD=VALUE pairs.
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Move the household to another area.
    Move {
        id: Uuid,
        #[arg(long)]
        area: String,
        #[arg(long)]
        rt: String,
        #[arg(long)]
        rw: String,
        #[arg(long)]
        posyandu: Option<String>,
        #[arg(long)]
        date: Option<NaiveDate>,
    },
}

#[derive(Subcommand)]
enum MemberCmd {
    /// Add a member to a household.
    Add {
        #[arg(long)]
        household: Uuid,
        #[arg(long)]
        name: String,
        #[arg(long)]
        sex: String,
        #[arg(long)]
        birth_date: NaiveDate,
        /// The birth date is an estimate.
        #[arg(long)]
        estimated: bool,
        #[arg(long)]
        nik: Option<String>,
        #[arg(long)]
        kk: Option<String>,
        #[arg(long)]
        relation: Option<String>,
        #[arg(long)]
        mother: Option<Uuid>,
        #[arg(long)]
        jkn: Option<bool>,
    },
    /// Set member fields (name, nik, sex, birth_date, relation, death_date, moved_out_date, voided, …).
    Set {
        id: Uuid,
        #[arg(required = true)]
        values: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PregnancyCmd {
    /// Record a pregnancy (HPHT and/or HPL).
    Add {
        #[arg(long)]
        member: Uuid,
        #[arg(long)]
        hpht: Option<NaiveDate>,
        #[arg(long)]
        hpl: Option<NaiveDate>,
        #[arg(long)]
        gravida: Option<i64>,
        #[arg(long)]
        para: Option<i64>,
        #[arg(long)]
        delivery_date: Option<NaiveDate>,
    },
}

#[derive(Subcommand)]
enum VisitCmd {
    /// Record a home visit.
    Add {
        #[arg(long)]
        member: Uuid,
        #[arg(long)]
        date: NaiveDate,
        #[arg(long)]
        weight_kg: Option<f64>,
        #[arg(long)]
        height_cm: Option<f64>,
        #[arg(long)]
        measured: Option<String>,
        #[arg(long)]
        muac_cm: Option<f64>,
        #[arg(long)]
        head_cm: Option<f64>,
        #[arg(long)]
        bp: Option<String>,
        /// Checklist answers, a JSON object file {"buku_kia": true, …}.
        #[arg(long)]
        answers: Option<PathBuf>,
        /// Danger sign code (repeatable).
        #[arg(long)]
        danger: Vec<String>,
        /// Refer to the bidan with this reason.
        #[arg(long)]
        refer: Option<String>,
        #[arg(long)]
        reported: Option<bool>,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Void a visit (kept, marked void with a reason).
    Void {
        id: Uuid,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum ReferralCmd {
    /// Referrals (open first).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        area: Option<String>,
    },
    /// The bidan's answer: status received|examined|closed, outcome, feedback to the cadre.
    Update {
        id: Uuid,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        feedback: Option<String>,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Rebuild all projections from the documents.
    Rebuild,
    /// Fold changes into snapshots, drop change bytes no longer needed.
    Compact,
    /// Check projections against documents and SQLite integrity.
    Check,
    /// Counts and sizes.
    Info,
}

#[derive(Subcommand)]
enum BundleCmd {
    /// Save all households (or one) into a file for another device.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        household: Option<Uuid>,
    },
    /// Merge a bundle file from another device.
    Import { file: PathBuf },
}

#[derive(Args)]
struct GrowthArgs {
    #[arg(long)]
    sex: String,
    #[arg(long)]
    birth_date: NaiveDate,
    #[arg(long)]
    date: NaiveDate,
    #[arg(long)]
    weight_kg: Option<f64>,
    #[arg(long)]
    length_cm: Option<f64>,
    #[arg(long)]
    measured: Option<String>,
}

/// A CLI error: a message for stderr.
struct Failure(String);

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(e.to_string())
    }
}
impl From<kunjung_core::CoreError> for Failure {
    fn from(e: kunjung_core::CoreError) -> Self {
        Failure(e.to_string())
    }
}
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(format!("kesalahan berkas: {e} (file error)"))
    }
}

type Res<T = Value> = Result<T, Failure>;

fn pin() -> Option<String> {
    std::env::var("KUNJUNG_PIN").ok().filter(|p| !p.is_empty())
}

fn open(data: &std::path::Path) -> Res<Store> {
    Ok(Store::open(data, pin().as_deref())?)
}

fn parse_sex(s: &str) -> Res<Sex> {
    Sex::parse(s).ok_or_else(|| {
        Failure(format!(
            "jenis kelamin '{s}' harus F atau M (sex must be F or M)"
        ))
    })
}

fn parse_relation(s: &str) -> Res<Relation> {
    Relation::parse(s).ok_or_else(|| {
        Failure(format!(
            "hubungan '{s}' harus head|spouse|child|parent|other (unknown relation)"
        ))
    })
}

fn parse_measured(s: &str) -> Res<Measured> {
    Measured::parse(s).ok_or_else(|| {
        Failure(format!(
            "cara ukur '{s}' harus lying atau standing (measured must be lying or standing)"
        ))
    })
}

/// `FIELD=VALUE`: the value is JSON when it parses as a JSON scalar, text otherwise;
/// an empty value clears the field.
fn parse_assignments(prefix: &str, values: &[String]) -> Res<Vec<FieldEdit>> {
    values
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Failure(format!(
                    "'{kv}' harus berbentuk KOLOM=NILAI (expected FIELD=VALUE)"
                ))
            })?;
            let path = format!("{prefix}/{}", k.trim().replace('.', "/"));
            let value = if v.is_empty() { None } else { Some(scalar(v)?) };
            Ok(FieldEdit { path, value })
        })
        .collect()
}

fn scalar(v: &str) -> Res<AnswerValue> {
    match serde_json::from_str::<Value>(v) {
        Ok(j @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => {
            AnswerValue::from_json("value", &j).map_err(Failure::from)
        }
        _ => Ok(AnswerValue::Text(v.to_string())),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn run(cli: Cli) -> Res {
    let data = cli
        .data
        .clone()
        .unwrap_or_else(kunjung_client::default_data_dir);
    match cli.cmd {
        Cmd::Init { encrypt, user } => {
            let p = if encrypt {
                Some(pin().ok_or_else(|| {
                    Failure(
                        "--encrypt butuh PIN di KUNJUNG_PIN (--encrypt needs a PIN in KUNJUNG_PIN)"
                            .into(),
                    )
                })?)
            } else {
                None
            };
            let s = Store::init(&data, p.as_deref(), &user)?;
            Ok(json!({"data": data, "encrypted": encrypt, "device": s.device_id(), "user": user}))
        }
        Cmd::Household(c) => household(&data, c),
        Cmd::Member(c) => member(&data, c),
        Cmd::Pregnancy(PregnancyCmd::Add {
            member,
            hpht,
            hpl,
            gravida,
            para,
            delivery_date,
        }) => {
            let mut s = open(&data)?;
            let p = Pregnancy {
                hpht,
                hpl,
                gravida,
                para,
                delivery_date,
                ..Default::default()
            };
            Ok(json!({"id": s.add_pregnancy(member, &p)?}))
        }
        Cmd::Visit(c) => visit(&data, c),
        Cmd::Referral(ReferralCmd::List { status, area }) => {
            let s = open(&data)?;
            Ok(to_json(
                &s.list_referrals(status.as_deref(), area.as_deref())?,
            ))
        }
        Cmd::Referral(ReferralCmd::Update {
            id,
            status,
            outcome,
            feedback,
        }) => {
            let mut s = open(&data)?;
            let hid = s.household_of_referral(id)?;
            let mut edits = Vec::new();
            if let Some(st) = status {
                edits.push(FieldEdit {
                    path: format!("referrals/{id}/status"),
                    value: Some(AnswerValue::Text(st)),
                });
            }
            for (k, v) in [("outcome", outcome), ("feedback", feedback)] {
                if let Some(v) = v {
                    edits.push(FieldEdit {
                        path: format!("referrals/{id}/{k}"),
                        value: Some(AnswerValue::Text(v)),
                    });
                }
            }
            if edits.is_empty() {
                return Err(Failure("tidak ada yang diubah: beri --status, --outcome atau --feedback (nothing to update)".into()));
            }
            let user = s.user().to_string();
            edits.push(FieldEdit {
                path: format!("referrals/{id}/handled_by"),
                value: Some(AnswerValue::Text(user)),
            });
            edits.push(FieldEdit {
                path: format!("referrals/{id}/updated_at"),
                value: Some(AnswerValue::Int(chrono::Utc::now().timestamp_millis())),
            });
            s.edit(hid, &edits, &format!("referral.update {id}"))?;
            Ok(json!({"id": id, "household_id": hid}))
        }
        Cmd::Review { visit, comment } => {
            let mut s = open(&data)?;
            Ok(json!({"id": s.add_review(visit, comment.as_deref())?}))
        }
        Cmd::ReviewQueue { area, limit } => {
            let s = open(&data)?;
            Ok(to_json(&s.list_visits(area.as_deref(), true, limit)?))
        }
        Cmd::Search { text, limit } => {
            let s = open(&data)?;
            Ok(to_json(&s.search(&text, limit)?))
        }
        Cmd::History { household, field } => {
            let mut s = open(&data)?;
            let doc = s.doc(household)?;
            match field {
                Some(f) => Ok(to_json(&doc.field_history(&f)?)),
                None => Ok(to_json(&doc.history())),
            }
        }
        Cmd::Conflicts { household } => {
            let mut s = open(&data)?;
            let ids = match household {
                Some(h) => vec![h],
                None => s
                    .list_households(&ListFilter {
                        has_conflicts: true,
                        limit: Some(10_000),
                        ..Default::default()
                    })?
                    .into_iter()
                    .filter_map(|h| Uuid::parse_str(&h.id).ok())
                    .collect(),
            };
            let mut out = Vec::new();
            for id in ids {
                for c in s.doc(id)?.conflicts() {
                    out.push(json!({"household_id": id, "path": c.path, "values": c.values}));
                }
            }
            Ok(Value::Array(out))
        }
        Cmd::Resolve {
            household,
            path,
            value,
        } => {
            let mut s = open(&data)?;
            let v = scalar(&value)?;
            s.edit(
                household,
                &[FieldEdit {
                    path: path.clone(),
                    value: Some(v),
                }],
                &format!("conflict.resolve {path}"),
            )?;
            Ok(
                json!({"household_id": household, "path": path, "conflicts_left": s.doc(household)?.conflicts().len()}),
            )
        }
        Cmd::Growth(g) => {
            let input = kunjung_core::growth::GrowthInput {
                sex: parse_sex(&g.sex)?,
                birth_date: g.birth_date,
                date: g.date,
                weight_kg: g.weight_kg,
                length_cm: g.length_cm,
                measured: g.measured.as_deref().map(parse_measured).transpose()?,
            };
            let r = kunjung_core::growth::compute(&input).map_err(|e| Failure(e.to_string()))?;
            Ok(to_json(&r))
        }
        Cmd::Tasks {
            on,
            area,
            open: only_open,
        } => {
            let mut s = open(&data)?;
            let mut tasks = s.tasks(on, area.as_deref())?;
            if only_open {
                tasks.retain(|t| t.status != "done");
            }
            Ok(to_json(&tasks))
        }
        Cmd::DemoSeed {
            households,
            seed,
            visits,
            today,
        } => {
            let mut s = open(&data)?;
            let today = today.unwrap_or_else(|| chrono::Local::now().date_naive());
            let start = s.household_count()? as usize;
            let mut done = 0;
            let (mut members, mut visit_count) = (0usize, 0usize);
            while done < households {
                let n = (households - done).min(2000);
                let opts = kunjung_client::seed::SeedOptions {
                    households: n,
                    seed,
                    today,
                    visits_per_household: visits,
                    first: start + done,
                };
                let docs = kunjung_client::seed::generate_parallel(&opts)?;
                for d in &docs {
                    let v = d.read()?;
                    members += v.members.len();
                    visit_count += v.visits.len();
                }
                s.insert_documents(&docs, false)?;
                done += n;
                eprintln!("demo-seed: {done}/{households}");
            }
            Ok(
                json!({"households": households, "members": members, "visits": visit_count, "seed": seed, "today": today}),
            )
        }
        Cmd::Sync {
            server,
            user,
            page_size,
        } => {
            let mut s = open(&data)?;
            let password = std::env::var("KUNJUNG_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty());
            let mut o = kunjung_client::sync::SyncOptions::new(&server, &user, password);
            o.page_size = page_size;
            let r = kunjung_client::sync::sync(&mut s, &o, &mut |p| eprintln!("{}", p.line()))
                .map_err(|e| Failure(e.to_string()))?;
            if r.verified {
                return Ok(to_json(&r));
            }
            // The summary still goes to stdout; the exit status says it is not verified.
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            let why = r
                .rejected
                .first()
                .map(|x| format!("; {}: {}", x.code, x.message))
                .unwrap_or_default();
            Err(Failure(format!(
                "sinkronisasi belum terverifikasi: {n} perubahan belum diterima server{why} (sync not verified: {n} changes not acknowledged by the server)",
                n = r.unsynced
            )))
        }
        Cmd::Store(c) => {
            let mut s = open(&data)?;
            match c {
                StoreCmd::Rebuild => Ok(json!({"rebuilt_households": s.rebuild()?})),
                StoreCmd::Compact => Ok(json!({"compacted_households": s.compact()?})),
                StoreCmd::Check => {
                    let problems = s.check_consistency()?;
                    if problems.is_empty() {
                        Ok(json!({"ok": true}))
                    } else {
                        Err(Failure(format!(
                            "penyimpanan tidak konsisten (store inconsistent): {}",
                            problems.join("; ")
                        )))
                    }
                }
                StoreCmd::Info => {
                    let q = |sql: &str| -> Res<i64> {
                        s.connection()
                            .query_row(sql, [], |r| r.get(0))
                            .map_err(|e| Failure(e.to_string()))
                    };
                    Ok(json!({
                        "device": s.device_id(),
                        "user": s.user(),
                        "households": q("SELECT count(*) FROM households")?,
                        "members": q("SELECT count(*) FROM members")?,
                        "visits": q("SELECT count(*) FROM visits")?,
                        "open_referrals": q("SELECT count(*) FROM referrals WHERE status != 'closed'")?,
                        "conflicts": q("SELECT count(*) FROM conflicts")?,
                        "unsynced_changes": s.unsynced_count()?,
                        "encrypted": Store::config(&data)?.map(|c| c.encrypted).unwrap_or(false),
                    }))
                }
            }
        }
        Cmd::Bundle(BundleCmd::Export { out, household }) => {
            let mut s = open(&data)?;
            let b = s.export_bundle(household)?;
            std::fs::write(&out, &b)?;
            Ok(json!({"out": out, "bytes": b.len()}))
        }
        Cmd::Report {
            month,
            area,
            by,
            format,
            out,
        } => {
            let today = chrono::Local::now().date_naive();
            kunjung_client::export::run_report(
                &mut open(&data)?,
                &month,
                area.as_deref(),
                &by,
                &format,
                out.as_deref(),
                today,
            )
            .map_err(Failure)
        }
        Cmd::Export {
            format,
            out,
            area,
            month,
        } => {
            let today = chrono::Local::now().date_naive();
            kunjung_client::export::run_export(
                &mut open(&data)?,
                &format,
                &out,
                area.as_deref(),
                month.as_deref(),
                today,
            )
            .map_err(Failure)
        }
        Cmd::Import {
            file,
            dry_run,
            area,
            posyandu,
        } => {
            let opts = kunjung_client::import::ImportOptions {
                dry_run,
                area,
                posyandu,
            };
            let today = chrono::Local::now().date_naive();
            kunjung_client::import::import_file(&mut open(&data)?, &file, &opts, today)
                .map(|r| to_json(&r))
                .map_err(|e| Failure(e.to_string()))
        }
        Cmd::Duplicates { area } => Ok(to_json(
            &open(&data)?.duplicate_households(area.as_deref())?,
        )),
        Cmd::Merge { from, into } => {
            let r = open(&data)?.merge_households(from, into)?;
            Ok(json!({"from": from, "into": into, "summary": r}))
        }
        Cmd::Unmerge { id } => {
            let (target, n) = open(&data)?.unmerge_household(id)?;
            Ok(json!({"id": id, "from": target, "records_undone": n}))
        }
        Cmd::Setting { action, key, value } => {
            const KEYS: &[&str] = &["language", "server", "account", "role", "area"];
            if !KEYS.contains(&key.as_str()) {
                return Err(Failure(format!(
                    "pengaturan '{key}' tidak dikenal; pilih {} (unknown setting)",
                    KEYS.join(", ")
                )));
            }
            let s = open(&data)?;
            match (action.as_str(), value) {
                ("get", None) => Ok(json!({ key.clone(): s.meta(&format!("setting:{key}"))? })),
                ("set", Some(v)) => {
                    s.set_meta(&format!("setting:{key}"), v.trim())?;
                    Ok(json!({ key: v.trim() }))
                }
                _ => Err(Failure(
                    "pakai `setting get KEY` atau `setting set KEY VALUE` (usage)".into(),
                )),
            }
        }
        Cmd::DebugWriteLoop { household, count } => {
            use std::io::Write;
            let mut s = open(&data)?;
            let mut out = std::io::stdout().lock();
            let mut member: Option<Uuid> = None;
            for i in 0..count {
                let line = match (i % 10, member) {
                    (0, _) | (_, None) => {
                        let m = NewMember {
                            name: format!("Anggota {i}"),
                            sex: Sex::F,
                            birth_date: NaiveDate::from_ymd_opt(1990, 1, 1).unwrap_or_default(),
                            birth_date_estimated: false,
                            nik: Some(format!("{:016}", 3214014101900000u64 + i as u64)),
                            kk: None,
                            relation: Some(Relation::Other),
                            mother_id: None,
                            jkn: None,
                        };
                        let id = s.add_member(household, &m)?.id;
                        member = Some(id);
                        format!("member {id}")
                    }
                    (5, Some(m)) => {
                        s.edit(
                            household,
                            &[FieldEdit {
                                path: format!("members/{m}/name"),
                                value: Some(AnswerValue::Text(format!("Ubah {i}"))),
                            }],
                            "member.edit",
                        )?;
                        format!("edit {m} Ubah {i}")
                    }
                    (_, Some(m)) => {
                        let v = NewVisit {
                            member_id: m,
                            date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
                            weight_kg: Some(50.0 + i as f64 / 100.0),
                            ..Default::default()
                        };
                        format!("visit {}", s.add_visit(&v)?.id)
                    }
                };
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            Ok(json!({"written": count}))
        }
        Cmd::Bundle(BundleCmd::Import { file }) => {
            let mut s = open(&data)?;
            let b = std::fs::read(&file)?;
            let ids = s.import_bundle(&b)?;
            Ok(json!({"households": ids.len()}))
        }
    }
}

fn household(data: &std::path::Path, c: HouseholdCmd) -> Res {
    let mut s = open(data)?;
    match c {
        HouseholdCmd::Add {
            area,
            rt,
            rw,
            dusun,
            posyandu,
            address,
            kk,
        } => {
            let id = s.create_household(&NewHousehold {
                area_code: area,
                rt,
                rw,
                dusun,
                posyandu_id: posyandu,
                address,
                kk,
            })?;
            Ok(json!({"id": id}))
        }
        HouseholdCmd::Show { id } => Ok(to_json(&s.household_detail(id)?)),
        HouseholdCmd::List {
            area,
            dusun,
            rt,
            rw,
            posyandu,
            stage,
            conflicts,
            due,
            limit,
            offset,
        } => {
            if due {
                s.refresh_tasks()?;
            }
            let f = ListFilter {
                area,
                dusun,
                rt,
                rw,
                posyandu_id: posyandu,
                stage,
                has_conflicts: conflicts,
                has_due_tasks: due,
                limit: Some(limit),
                offset: Some(offset),
            };
            Ok(to_json(&s.list_households(&f)?))
        }
        HouseholdCmd::Set { id, values } => {
            let edits = parse_assignments("household", &values)?;
            s.edit(id, &edits, "household.edit")?;
            Ok(json!({"id": id}))
        }
        HouseholdCmd::Move {
            id,
            area,
            rt,
            rw,
            posyandu,
            date,
        } => {
            let date = date.unwrap_or_else(|| chrono::Local::now().date_naive());
            s.move_household(id, &area, &rt, &rw, posyandu.as_deref(), date)?;
            Ok(json!({"id": id, "area_code": area}))
        }
    }
}

fn member(data: &std::path::Path, c: MemberCmd) -> Res {
    let mut s = open(data)?;
    match c {
        MemberCmd::Add {
            household,
            name,
            sex,
            birth_date,
            estimated,
            nik,
            kk,
            relation,
            mother,
            jkn,
        } => {
            let m = NewMember {
                name,
                sex: parse_sex(&sex)?,
                birth_date,
                birth_date_estimated: estimated,
                nik,
                kk,
                relation: relation.as_deref().map(parse_relation).transpose()?,
                mother_id: mother,
                jkn,
            };
            let r = s.add_member(household, &m)?;
            for w in &r.warnings {
                eprintln!("peringatan (warning): {}", w.message);
            }
            Ok(json!({"id": r.id, "warnings": r.warnings}))
        }
        MemberCmd::Set { id, values } => {
            let hid = s.household_of_member(id)?;
            let edits = parse_assignments(&format!("members/{id}"), &values)?;
            s.edit(hid, &edits, &format!("member.edit {id}"))?;
            Ok(json!({"id": id}))
        }
    }
}

fn visit(data: &std::path::Path, c: VisitCmd) -> Res {
    let mut s = open(data)?;
    match c {
        VisitCmd::Add {
            member,
            date,
            weight_kg,
            height_cm,
            measured,
            muac_cm,
            head_cm,
            bp,
            answers,
            danger,
            refer,
            reported,
            notes,
        } => {
            let answers = match answers {
                Some(f) => {
                    let text = std::fs::read_to_string(&f).map_err(|e| {
                        Failure(format!(
                            "tidak bisa membaca {}: {e} (cannot read answers file)",
                            f.display()
                        ))
                    })?;
                    let j: Value = serde_json::from_str(&text).map_err(|e| {
                        Failure(format!(
                            "{} bukan JSON yang sah: {e} (answers file is not valid JSON)",
                            f.display()
                        ))
                    })?;
                    VisitAnswers::from_json(&j)?
                }
                None => VisitAnswers::default(),
            };
            let (bp_systolic, bp_diastolic) = match bp {
                Some(b) => {
                    let (a, d) = b
                        .split_once('/')
                        .and_then(|(a, d)| Some((a.trim().parse().ok()?, d.trim().parse().ok()?)))
                        .ok_or_else(|| Failure(format!("tekanan darah '{b}' harus seperti 120/80 (blood pressure must look like 120/80)")))?;
                    (Some(a), Some(d))
                }
                None => (None, None),
            };
            let v = NewVisit {
                member_id: member,
                date,
                stage: None,
                weight_kg,
                height_cm,
                measured: measured.as_deref().map(parse_measured).transpose()?,
                muac_cm,
                head_cm,
                bp_systolic,
                bp_diastolic,
                answers,
                danger_signs: danger,
                education: BTreeMap::new(),
                reported_to_nakes: reported,
                notes,
                refer_reason: refer,
            };
            let r = s.add_visit(&v)?;
            Ok(json!({"id": r.id, "household_id": r.household_id, "referral_id": r.referral_id}))
        }
        VisitCmd::Void { id, reason } => {
            let hid = s.household_of_visit(id)?;
            s.edit(
                hid,
                &[
                    FieldEdit {
                        path: format!("visits/{id}/voided"),
                        value: Some(AnswerValue::Bool(true)),
                    },
                    FieldEdit {
                        path: format!("visits/{id}/void_reason"),
                        value: Some(AnswerValue::Text(reason)),
                    },
                ],
                &format!("visit.void {id}"),
            )?;
            Ok(json!({"id": id}))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(Failure(msg)) => {
            eprintln!("kunjung: {msg}");
            ExitCode::FAILURE
        }
    }
}
