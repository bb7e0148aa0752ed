//! Deterministic, realistic demo data: Indonesian names and areas, households with members
//! of every life stage, months of visit history (growth-curve weights, ANC, immunisation,
//! the odd danger sign). The same seed and `today` always give the same data (ids included).
//! Used by `kunjung demo-seed`, the demo, tests and benchmarks.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime};
use kunjung_core::checklist::VisitAnswers;
use kunjung_core::doc::CommitMeta;
use kunjung_core::growth::{lms_for_age, Indicator};
use kunjung_core::lifestage::{stage_by_age, LifeStage};
use kunjung_core::{
    HouseholdDoc, Measured, NewHousehold, NewMember, NewVisit, Pregnancy, Relation, Sex,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A demo desa with its posyandu.
#[derive(Debug, Clone, Copy)]
pub struct DemoDesa {
    pub code: &'static str,
    pub name: &'static str,
    pub posyandu: [&'static str; 2],
    pub dusun: [&'static str; 3],
}

/// The demo area: four desa in two kecamatan of Kabupaten Purwakarta (32.14).
pub const DEMO_AREA: [DemoDesa; 4] = [
    DemoDesa {
        code: "32.14.01.2001",
        name: "Sukamaju",
        posyandu: ["psy-sukamaju-mawar", "psy-sukamaju-melati"],
        dusun: ["Krajan", "Sukasari", "Cilimus"],
    },
    DemoDesa {
        code: "32.14.01.2002",
        name: "Cibening",
        posyandu: ["psy-cibening-anggrek", "psy-cibening-dahlia"],
        dusun: ["Cibening Hilir", "Babakan", "Pasir Angin"],
    },
    DemoDesa {
        code: "32.14.02.2001",
        name: "Margasari",
        posyandu: ["psy-margasari-kenanga", "psy-margasari-teratai"],
        dusun: ["Margasari", "Cikadu", "Legok"],
    },
    DemoDesa {
        code: "32.14.02.2002",
        name: "Wanayasa",
        posyandu: ["psy-wanayasa-cempaka", "psy-wanayasa-flamboyan"],
        dusun: ["Wanayasa", "Nangerang", "Raharja"],
    },
];

const MALE: &[&str] = &[
    "Agus", "Budi", "Dedi", "Eko", "Hendra", "Iwan", "Joko", "Rudi", "Slamet", "Wahyu", "Asep",
    "Dadang", "Ujang", "Yusuf", "Ahmad", "Rizki", "Fajar", "Dimas", "Bayu", "Andi", "Cecep",
    "Deden", "Engkus", "Hasan", "Ilham",
];
const FEMALE: &[&str] = &[
    "Siti", "Sri", "Dewi", "Ani", "Rina", "Yuni", "Nur", "Lestari", "Wati", "Euis", "Neng", "Iis",
    "Ratna", "Fitri", "Intan", "Putri", "Ayu", "Nining", "Tuti", "Nia", "Ai", "Cucu", "Enok",
    "Imas", "Lilis",
];
const SECOND: &[&str] = &[
    "Hidayat",
    "Santoso",
    "Saputra",
    "Wijaya",
    "Kurniawan",
    "Setiawan",
    "Rahmawati",
    "Suryani",
    "Aminah",
    "Maulana",
    "Nurhayati",
    "Permata",
    "Pratama",
    "Ramadhan",
    "Sulastri",
    "Kusuma",
    "Susanti",
    "Handayani",
    "Firmansyah",
    "Sopian",
    "Mulyani",
    "Rohmah",
    "Gunawan",
    "Supriatna",
    "Nurjanah",
];
const STREETS: &[&str] = &[
    "Jl. Raya",
    "Jl. Melati",
    "Jl. Mawar",
    "Gg. Masjid",
    "Jl. Pasar",
    "Gg. Sawah",
    "Jl. Sekolah",
];

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub households: usize,
    pub seed: u64,
    /// The last day of history (visits are never after it).
    pub today: NaiveDate,
    /// Average visits per household (history goes back as far as needed, up to 5 years).
    pub visits_per_household: usize,
    /// Index of the first household (to generate a large set in chunks).
    pub first: usize,
}

impl SeedOptions {
    pub fn new(households: usize, seed: u64, today: NaiveDate) -> Self {
        SeedOptions {
            households,
            seed,
            today,
            visits_per_household: 20,
            first: 0,
        }
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list[rng.gen_range(0..list.len())]
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.gen_range(1e-9..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn name(rng: &mut ChaCha8Rng, sex: Sex) -> String {
    let first = pick(rng, if sex == Sex::F { FEMALE } else { MALE });
    format!("{first} {}", pick(rng, SECOND))
}

fn nik(rng: &mut ChaCha8Rng, area: &str, sex: Sex, bd: NaiveDate) -> Option<String> {
    let roll: f64 = rng.gen();
    if roll < 0.10 {
        return None; // many records lack a NIK
    }
    let digits: String = area
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(6)
        .collect();
    let day = bd.day() + if sex == Sex::F { 40 } else { 0 };
    let mut n = format!(
        "{digits}{day:02}{:02}{:02}{:04}",
        bd.month(),
        bd.year() % 100,
        rng.gen_range(1..9999)
    );
    if roll < 0.13 {
        n.pop(); // a mistyped NIK (15 digits): stored, with a warning
    }
    Some(n)
}

fn years_before(today: NaiveDate, years: f64) -> NaiveDate {
    today - Duration::days((years * 365.25) as i64)
}

fn at(date: NaiveDate, rng: &mut ChaCha8Rng) -> i64 {
    let t =
        NaiveTime::from_hms_opt(rng.gen_range(8..15), rng.gen_range(0..60), 0).unwrap_or_default();
    date.and_time(t).and_utc().timestamp_millis() - 7 * 3600 * 1000 // WIB
}

struct Person {
    id: uuid::Uuid,
    sex: Sex,
    birth: NaiveDate,
    /// Growth z offsets for children.
    zw: f64,
    zh: f64,
    pregnancy: Option<NaiveDate>,
    /// Delivery date of a recent birth (the mother is `nifas` for 42 days after it).
    delivered: Option<NaiveDate>,
    /// Dated services received (checklist key, date): immunisation doses, KN and KF
    /// contacts. Each is written on the person's first visit on or after its date.
    services: Vec<(&'static str, NaiveDate)>,
}

/// Basic and follow-up immunisation (Buku KIA 2024): checklist key and the age in days
/// the dose is due.
const DOSES: &[(&str, i64)] = &[
    ("imm_hb0", 0),
    ("imm_bcg", 30),
    ("imm_polio1", 30),
    ("imm_dpt_hb_hib1", 60),
    ("imm_pcv1", 60),
    ("imm_polio2", 60),
    ("imm_rv1", 60),
    ("imm_dpt_hb_hib2", 90),
    ("imm_pcv2", 90),
    ("imm_polio3", 90),
    ("imm_rv2", 90),
    ("imm_dpt_hb_hib3", 120),
    ("imm_polio4", 120),
    ("imm_ipv1", 120),
    ("imm_rv3", 120),
    ("imm_ipv2", 270),
    ("imm_mr1", 270),
    ("imm_pcv3", 365),
    ("imm_mr2", 540),
    ("imm_dpt_hb_hib4", 540),
];

/// A child's doses: most children follow the schedule (a few days late), some miss
/// doses. Only doses given on or before `today`.
fn immunisations(
    rng: &mut ChaCha8Rng,
    birth: NaiveDate,
    today: NaiveDate,
) -> Vec<(&'static str, NaiveDate)> {
    let p = if rng.gen_bool(0.8) { 0.97 } else { 0.6 };
    let mut out = Vec::new();
    for (key, due) in DOSES {
        if !rng.gen_bool(p) {
            continue;
        }
        let late = if *due == 0 {
            if rng.gen_bool(0.85) {
                rng.gen_range(0..=1)
            } else {
                rng.gen_range(2..=12)
            }
        } else {
            rng.gen_range(0..=14)
        };
        let d = birth + Duration::days(due + late);
        if d <= today {
            out.push((*key, d));
        }
    }
    out
}

/// Contacts inside day windows after `from` (KN1–KN3 or KF1–KF4), each made with
/// probability `p`; only those on or before `today`.
fn contacts(
    rng: &mut ChaCha8Rng,
    keys: &[(&'static str, i64, i64)],
    from: NaiveDate,
    today: NaiveDate,
    p: f64,
) -> Vec<(&'static str, NaiveDate)> {
    keys.iter()
        .filter_map(|(k, a, b)| {
            let hit = rng.gen_bool(p);
            let d = from + Duration::days(rng.gen_range(*a..=*b));
            (hit && d <= today).then_some((*k, d))
        })
        .collect()
}

const KN: &[(&str, i64, i64)] = &[("kn1", 0, 2), ("kn2", 3, 7), ("kn3", 8, 28)];
const KF: &[(&str, i64, i64)] = &[
    ("kf1", 0, 2),
    ("kf2", 3, 7),
    ("kf3", 8, 28),
    ("kf4", 29, 42),
];

/// Generates household `i` (0-based, global index) of the demo set.
pub fn household(opts: &SeedOptions, i: usize) -> kunjung_core::error::Result<HouseholdDoc> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(opts.seed.wrapping_mul(0x9E37_79B9).wrapping_add(i as u64));
    let desa = DEMO_AREA[i % DEMO_AREA.len()];
    let posyandu = desa.posyandu[(i / DEMO_AREA.len()) % 2];
    let user = format!("kader-{posyandu}");
    let mut actor_bytes = [0u8; 16];
    actor_bytes[..8].copy_from_slice(&opts.seed.to_le_bytes());
    actor_bytes[8] = (i % DEMO_AREA.len()) as u8;
    actor_bytes[9] = ((i / DEMO_AREA.len()) % 2) as u8;
    actor_bytes[15] = 0x4b;
    let actor = automerge::ActorId::from(actor_bytes.to_vec());
    let history_days = 30 * 60;
    let start = opts.today - Duration::days(history_days);
    let base_ms = at(start, &mut rng) as u64;
    kunjung_core::ids::with_seeded_ids(opts.seed ^ ((i as u64) << 20), base_ms, || {
        let meta = |rng: &mut ChaCha8Rng, d: NaiveDate| CommitMeta {
            user: user.clone(),
            time_ms: at(d, rng),
        };
        let h = NewHousehold {
            area_code: desa.code.into(),
            rt: format!("{:03}", rng.gen_range(1..=8)),
            rw: format!("{:03}", rng.gen_range(1..=4)),
            dusun: Some(pick(&mut rng, &desa.dusun).to_string()),
            posyandu_id: Some(posyandu.to_string()),
            address: Some(format!(
                "{} No. {}",
                pick(&mut rng, STREETS),
                rng.gen_range(1..200)
            )),
            kk: Some(format!(
                "{}{:010}",
                desa.code.replace('.', "").get(..6).unwrap_or("321401"),
                rng.gen_range(0..9_999_999_999u64)
            )),
        };
        let created = start - Duration::days(rng.gen_range(0..30));
        let m0 = meta(&mut rng, created);
        let mut doc =
            HouseholdDoc::create(kunjung_core::ids::new_id(), &h, actor.clone(), &m0)?.result;
        let mut people: Vec<Person> = Vec::new();
        let add = |doc: &mut HouseholdDoc,
                   rng: &mut ChaCha8Rng,
                   sex: Sex,
                   birth: NaiveDate,
                   rel: Relation,
                   mother: Option<uuid::Uuid>| {
            let m = NewMember {
                name: name(rng, sex),
                sex,
                birth_date: birth,
                birth_date_estimated: birth.year() < 1960 && rng.gen_bool(0.5),
                nik: nik(rng, desa.code, sex, birth),
                kk: None,
                relation: Some(rel),
                mother_id: mother,
                jkn: Some(rng.gen_bool(0.8)),
            };
            let mm = meta(rng, created.max(birth));
            let id = doc.add_member(&m, &mm).map(|w| w.result);
            let (zw, zh) = (normal(rng) * 1.1 - 0.5, normal(rng) * 1.1 - 0.9);
            let mut services = Vec::new();
            if (opts.today - birth).num_days() < 6 * 365 {
                services = immunisations(rng, birth, opts.today);
                if birth >= start {
                    services.extend(contacts(rng, KN, birth, opts.today, 0.88));
                }
            }
            id.map(|id| Person {
                id,
                sex,
                birth,
                zw,
                zh,
                pregnancy: None,
                delivered: None,
                services,
            })
        };
        let head_age = rng.gen_range(22.0..62.0);
        let head = add(
            &mut doc,
            &mut rng,
            Sex::M,
            years_before(opts.today, head_age),
            Relation::Head,
            None,
        )?;
        people.push(head);
        let wife_age: f64 = (head_age - rng.gen_range(0.0..7.0)).max(19.0);
        let wife = add(
            &mut doc,
            &mut rng,
            Sex::F,
            years_before(opts.today, wife_age),
            Relation::Spouse,
            None,
        )?;
        let wife_id = wife.id;
        people.push(wife);
        let n_children = if wife_age > 45.0 {
            rng.gen_range(0..3)
        } else {
            rng.gen_range(1..4)
        };
        for _ in 0..n_children {
            let max_age = (wife_age - 18.0).clamp(0.1, 17.9);
            let age = rng.gen_range(0.0..max_age).powf(1.3) / max_age.powf(0.3);
            let sex = if rng.gen_bool(0.5) { Sex::F } else { Sex::M };
            let c = add(
                &mut doc,
                &mut rng,
                sex,
                years_before(opts.today, age),
                Relation::Child,
                Some(wife_id),
            )?;
            if age < 1.0 {
                let p = Pregnancy {
                    hpht: Some(c.birth - Duration::days(276)),
                    delivery_date: Some(c.birth),
                    delivery_place: Some("Puskesmas".into()),
                    gravida: Some(2),
                    para: Some(1),
                    ..Default::default()
                };
                doc.add_pregnancy(wife_id, &p, &meta(&mut rng, c.birth))?;
                let kf = contacts(&mut rng, KF, c.birth, opts.today, 0.85);
                if let Some(w) = people.iter_mut().find(|p| p.id == wife_id) {
                    w.delivered = Some(c.birth);
                    w.services.extend(kf);
                }
            }
            people.push(c);
        }
        if rng.gen_bool(0.25) {
            let sex = if rng.gen_bool(0.6) { Sex::F } else { Sex::M };
            let birth = years_before(opts.today, rng.gen_range(60.0..85.0));
            let p = add(&mut doc, &mut rng, sex, birth, Relation::Parent, None)?;
            people.push(p);
        }
        // A current pregnancy for some young mothers.
        if wife_age < 40.0 && rng.gen_bool(0.15) {
            let hpht = opts.today - Duration::days(rng.gen_range(30..250));
            let p = Pregnancy {
                hpht: Some(hpht),
                hpl: Some(hpht + Duration::days(280)),
                gravida: Some(n_children as i64 + 1),
                para: Some(n_children as i64),
                ..Default::default()
            };
            doc.add_pregnancy(wife_id, &p, &meta(&mut rng, hpht + Duration::days(20)))?;
            if let Some(w) = people.iter_mut().find(|p| p.id == wife_id) {
                w.pregnancy = Some(hpht);
            }
        }

        // Visits, month by month backwards from today until the target count is reached.
        let target = if opts.visits_per_household == 0 {
            0
        } else {
            rng.gen_range(opts.visits_per_household / 2..=opts.visits_per_household * 3 / 2)
                .max(1)
        };
        let mut planned: Vec<(NaiveDate, usize, LifeStage)> = Vec::new();
        let mut month = 0;
        while planned.len() < target && month < 60 {
            let day = opts.today - Duration::days(30 * month + rng.gen_range(0..25));
            for (pi, p) in people.iter().enumerate() {
                if day < p.birth {
                    continue;
                }
                let nifas = p
                    .delivered
                    .is_some_and(|d| day >= d && (day - d).num_days() <= 42);
                let stage = match p.pregnancy {
                    Some(h) if day >= h + Duration::days(20) => LifeStage::Pregnancy,
                    _ if nifas => LifeStage::Postpartum,
                    _ => match stage_by_age(p.birth, day) {
                        Some(s) => s,
                        None => continue,
                    },
                };
                let prob = match stage {
                    LifeStage::Infant
                    | LifeStage::Toddler
                    | LifeStage::Pregnancy
                    | LifeStage::Postpartum => 0.9,
                    LifeStage::Elderly => 0.4,
                    _ => 0.15,
                };
                if rng.gen_bool(prob) {
                    planned.push((day, pi, stage));
                }
            }
            month += 1;
        }
        if planned.len() > target {
            // Keep the most recent ones.
            planned.sort_by_key(|p| std::cmp::Reverse(p.0));
            planned.truncate(target);
        }
        // The kader visits a newborn and its mother in the first week and again after the
        // first month (where the history reaches that far).
        let newborns: Vec<(usize, NaiveDate)> = people
            .iter()
            .enumerate()
            .filter(|(_, p)| p.birth >= start)
            .map(|(i, p)| (i, p.birth))
            .collect();
        for (ci, birth) in newborns {
            let mother = people.iter().position(|p| p.delivered == Some(birth));
            for (a, b) in [(3, 7), (30, 44)] {
                let day = birth + Duration::days(rng.gen_range(a..=b));
                if day > opts.today {
                    continue;
                }
                planned.push((day, ci, LifeStage::Infant));
                if let Some(mi) = mother {
                    planned.push((day, mi, LifeStage::Postpartum));
                }
            }
        }
        planned.sort_by_key(|p| (p.0, p.1));
        planned.dedup_by_key(|p| (p.0, p.1));
        let mut recorded: std::collections::HashSet<(usize, &'static str)> =
            std::collections::HashSet::new();
        let mut anc_done = 0;
        for (day, pi, stage) in planned {
            let p = &people[pi];
            let age_days = (day - p.birth).num_days();
            let mut v = NewVisit {
                member_id: p.id,
                date: day,
                stage: Some(stage),
                ..Default::default()
            };
            let mut answers = serde_json::Map::new();
            match stage {
                LifeStage::Infant | LifeStage::Toddler => {
                    let wt = lms_for_age(Indicator::WeightForAge, p.sex, age_days)
                        .map(|l| l.value_at(p.zw + normal(&mut rng) * 0.15));
                    let ht = lms_for_age(Indicator::LengthHeightForAge, p.sex, age_days)
                        .map(|l| l.value_at(p.zh + normal(&mut rng) * 0.1));
                    v.weight_kg = wt.map(|w| (w * 10.0).round() / 10.0);
                    v.height_cm = ht.map(|h| (h * 10.0).round() / 10.0);
                    v.measured = v.height_cm.map(|_| {
                        if age_days < 731 {
                            Measured::Lying
                        } else {
                            Measured::Standing
                        }
                    });
                    answers.insert("weighed_monthly".into(), true.into());
                    if matches!(day.month(), 2 | 8) && age_days >= 182 {
                        answers.insert("vit_a".into(), day.format("%Y-%m-%d").to_string().into());
                        answers.insert(
                            "vit_a_capsule".into(),
                            (if age_days < 365 { "biru" } else { "merah" }).into(),
                        );
                    }
                    if stage == LifeStage::Infant {
                        answers.insert("exclusive_breastfeeding".into(), rng.gen_bool(0.7).into());
                    }
                    if rng.gen_bool(0.01) {
                        v.danger_signs.push(
                            pick(
                                &mut rng,
                                &["inf_fast_breathing", "inf_diarrhoea", "inf_fever_cold"],
                            )
                            .to_string(),
                        );
                    }
                }
                LifeStage::Pregnancy => {
                    v.muac_cm = Some(((22.0 + rng.gen_range(0.0..7.0)) * 10.0f64).round() / 10.0);
                    v.bp_systolic = Some(rng.gen_range(100..145));
                    v.bp_diastolic = Some(rng.gen_range(60..95));
                    answers.insert("buku_kia".into(), true.into());
                    answers.insert("ttd_received".into(), rng.gen_bool(0.85).into());
                    anc_done += 1;
                    if anc_done <= 6 {
                        answers.insert(
                            format!("anc_k{anc_done}"),
                            day.format("%Y-%m-%d").to_string().into(),
                        );
                    }
                    if rng.gen_bool(0.04) {
                        v.danger_signs.push(
                            pick(
                                &mut rng,
                                &[
                                    "preg_bleeding",
                                    "preg_headache_vision",
                                    "preg_swelling",
                                    "preg_reduced_movement",
                                ],
                            )
                            .to_string(),
                        );
                    }
                }
                LifeStage::Postpartum => {
                    v.bp_systolic = Some(rng.gen_range(100..140));
                    v.bp_diastolic = Some(rng.gen_range(60..90));
                    answers.insert("delivery_at_facility".into(), true.into());
                    answers.insert("vit_a_postpartum".into(), rng.gen_bool(0.8).into());
                }
                LifeStage::Elderly => {
                    v.bp_systolic = Some(rng.gen_range(110..175));
                    v.bp_diastolic = Some(rng.gen_range(70..100));
                    v.weight_kg =
                        Some(((45.0 + rng.gen_range(0.0..25.0)) * 10.0f64).round() / 10.0);
                    answers.insert("aks_score".into(), rng.gen_range(12..=20).into());
                    if rng.gen_bool(0.2) {
                        answers.insert("skilas".into(), day.format("%Y-%m-%d").to_string().into());
                    }
                }
                _ => {
                    answers.insert("tb_cough_2w".into(), rng.gen_bool(0.02).into());
                    if p.sex == Sex::M && rng.gen_bool(0.5) {
                        answers.insert("smoking".into(), true.into());
                    }
                }
            }
            // Services received since the last visit (recorded once, on the first visit
            // on or after their date).
            for (key, date) in &p.services {
                if *date <= day && recorded.insert((pi, *key)) {
                    answers.insert((*key).into(), date.format("%Y-%m-%d").to_string().into());
                }
            }
            v.reported_to_nakes = Some(!v.danger_signs.is_empty() || rng.gen_bool(0.3));
            v.answers = VisitAnswers::from_json(&serde_json::Value::Object(answers))?;
            let mm = meta(&mut rng, day);
            doc.add_visit(&v, &mm)?;
        }
        Ok(doc)
    })
}

/// Generates households `opts.first .. opts.first + opts.households`.
pub fn generate(opts: &SeedOptions) -> kunjung_core::error::Result<Vec<HouseholdDoc>> {
    (opts.first..opts.first + opts.households)
        .map(|i| household(opts, i))
        .collect()
}

/// Generates on all cores (same output as `generate`).
pub fn generate_parallel(opts: &SeedOptions) -> kunjung_core::error::Result<Vec<HouseholdDoc>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let n = opts.households;
    let chunk = n.div_ceil(threads).max(1);
    let parts: Vec<kunjung_core::error::Result<Vec<HouseholdDoc>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let o = opts.clone();
                s.spawn(move || {
                    let lo = o.first + (t * chunk).min(n);
                    let hi = o.first + ((t + 1) * chunk).min(n);
                    (lo..hi).map(|i| household(&o, i)).collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Ok(Vec::new())))
            .collect()
    });
    let mut out = Vec::with_capacity(n);
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}
