//! Server reports (`GET /v1/reports/monthly`, `GET /v1/reports/duplicates`) on both
//! backends: the same figures as the device's recap over the same documents, scope by
//! role and area (in and out), projections refreshed after changes and moves, and the
//! duplicate rules — over real HTTP.

use chrono::NaiveDate;
use kunjung_core::report::{monthly_recap, Grouping, MonthlyRecap, RecapOptions};
use kunjung_core::{NewMember, NewVisit, Sex};
use kunjung_sync_server::report;

use super::*;

const DESA_A2: &str = "32.14.01.2002";

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// A household with a toddler weighed on `weighed` (and a mother with `nik`); returns the
/// id, the document and all its changes.
fn family(
    area: &str,
    posyandu: &str,
    nik: &str,
    weighed: &[(&str, f64)],
) -> (Uuid, HouseholdDoc, Vec<Vec<u8>>) {
    let (id, mut doc, first) = household(area, posyandu);
    let mut changes = vec![first];
    let mut member = |doc: &mut HouseholdDoc, name: &str, sex, birth: &str, nik: Option<&str>| {
        let w = doc
            .add_member(
                &NewMember {
                    name: name.into(),
                    sex,
                    birth_date: day(birth),
                    birth_date_estimated: false,
                    nik: nik.map(String::from),
                    kk: None,
                    relation: None,
                    mother_id: None,
                    jkn: None,
                },
                &meta(),
            )
            .unwrap();
        changes.push(w.change.unwrap().raw_bytes().to_vec());
        w.result
    };
    // Names carry the NIK's serial, so only households of the same mother look alike.
    let serial = &nik[12..];
    member(
        &mut doc,
        &format!("Ibu {serial}"),
        Sex::F,
        "1994-05-12",
        Some(nik),
    );
    let child = member(
        &mut doc,
        &format!("Anak {serial}"),
        Sex::M,
        "2024-03-01",
        None,
    );
    for (date, kg) in weighed {
        changes.push(weigh(&mut doc, child, date, *kg));
    }
    (id, doc, changes)
}

fn weigh(doc: &mut HouseholdDoc, member: Uuid, date: &str, kg: f64) -> Vec<u8> {
    doc.add_visit(
        &NewVisit {
            member_id: member,
            date: day(date),
            weight_kg: Some(kg),
            ..Default::default()
        },
        &meta(),
    )
    .unwrap()
    .change
    .unwrap()
    .raw_bytes()
    .to_vec()
}

fn child_of(doc: &HouseholdDoc) -> Uuid {
    doc.read()
        .unwrap()
        .members
        .iter()
        .find(|m| m.name.starts_with("Anak"))
        .unwrap()
        .id
}

/// (numerator, denominator) of an indicator of a group.
fn fig(r: &MonthlyRecap, key: &str, id: &str) -> (u64, Option<u64>) {
    let g = if key == "TOTAL" {
        &r.total
    } else {
        r.groups
            .iter()
            .find(|g| g.key == key)
            .unwrap_or_else(|| panic!("no group {key}"))
    };
    let i = g.indicator(id).unwrap();
    (i.numerator, i.denominator)
}

struct Http {
    base: String,
    c: reqwest::blocking::Client,
    _rt: tokio::runtime::Runtime,
}

impl Http {
    fn start(db: Db) -> Http {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = kunjung_sync_server::http::router(AppState::new(db).unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        Http {
            base: format!("http://{addr}"),
            c: reqwest::blocking::Client::new(),
            _rt: rt,
        }
    }
    fn login(&self, user: &str) -> String {
        let v: serde_json::Value = self
            .c
            .post(format!("{}/v1/login", self.base))
            .header(VERSION_HEADER, "1")
            .json(&serde_json::json!({"username": user, "password": "kata-sandi-1", "device_id": format!("web-{user}")}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["token"].as_str().unwrap().to_string()
    }
    /// (status, error code or "", body).
    fn get(&self, token: &str, path: &str) -> (u16, String, serde_json::Value) {
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .header(VERSION_HEADER, "1")
            .bearer_auth(token)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().unwrap();
        let code = body["code"].as_str().unwrap_or_default().to_string();
        (status, code, body)
    }
}

#[test]
fn monthly_report_by_role_and_scope_matches_the_device_recap() {
    for (backend, url) in backend_urls("reports_monthly") {
        let db = &Db::open(&url).unwrap();
        let admin = user(db, "admin", Role::Admin, &[], &[]);
        user(db, "pkm", Role::Puskesmas, &[], &["32.14.01"]);
        user(db, "bidan", Role::Bidan, &[], &[DESA_A]);
        user(db, "kader", Role::Kader, &["psy-a"], &[]);
        // Three desa: A and A2 in the puskesmas' kecamatan, B outside. The toddler of
        // A is weighed twice in August (gaining), A2's once, B's not in August.
        let (ha, mut da, ca) = family(
            DESA_A,
            "psy-a",
            "3214015205940001",
            &[("2025-07-10", 8.0), ("2025-08-10", 8.6)],
        );
        let (ha2, da2, ca2) = family(DESA_A2, "psy-c", "3214015205940002", &[("2025-08-12", 9.0)]);
        let (hb, db_, cb) = family(DESA_B, "psy-b", "3214015205940003", &[("2025-07-02", 9.5)]);
        for (id, ch) in [(ha, &ca), (ha2, &ca2), (hb, &cb)] {
            let out = push(db, &admin, id, ch);
            assert!(out.rejected.is_empty(), "{backend}: {:?}", out.rejected);
        }
        let as_of = day("2025-08-31");
        let q = |area: Option<&str>, by| report::MonthlyQuery {
            month: "2025-08".parse().unwrap(),
            area: area.map(String::from),
            grouping: by,
        };
        let device = |docs: &[&HouseholdDoc], by| {
            let views: Vec<_> = docs.iter().map(|d| d.read().unwrap()).collect();
            monthly_recap(
                &views,
                &RecapOptions {
                    month: "2025-08".parse().unwrap(),
                    grouping: by,
                    as_of: Some(as_of),
                },
            )
        };

        // Admin: everything, and exactly the recap the device computes from the same
        // documents. First pass builds every projection; the second reuses them.
        let (r, stats) = report::monthly(db, &admin, &q(None, Grouping::Desa), as_of).unwrap();
        assert_eq!(r, device(&[&da, &da2, &db_], Grouping::Desa), "{backend}");
        assert_eq!((stats.households, stats.refreshed), (3, 3), "{backend}");
        // Worked out: S = 3 toddlers, D = 2 weighed in August (A, A2); N = A only.
        assert_eq!(fig(&r, "TOTAL", "weighing_ds"), (2, Some(3)), "{backend}");
        assert_eq!(fig(&r, DESA_A, "weighing_nd"), (1, Some(1)), "{backend}");
        assert_eq!(fig(&r, DESA_B, "weighing_ds"), (0, Some(1)), "{backend}");
        let (again, stats) = report::monthly(db, &admin, &q(None, Grouping::Desa), as_of).unwrap();
        assert_eq!(again, r);
        assert_eq!((stats.households, stats.refreshed), (3, 0), "{backend}");

        // Over HTTP (a server on its own handle of the same database), role × scope.
        let http = Http::start(Db::open(&url).unwrap());
        let t = |u: &str| http.login(u);
        let (pkm, bidan, kader, adm) = (t("pkm"), t("bidan"), t("kader"), t("admin"));
        let path = "/v1/reports/monthly?month=2025-08";
        let (s, _, body) = http.get(&pkm, path);
        assert_eq!(s, 200, "{backend}: {body}");
        let r: MonthlyRecap = serde_json::from_value(body).unwrap();
        assert_eq!(r, device(&[&da, &da2], Grouping::Desa), "{backend}");
        let keys: Vec<&str> = r.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, [DESA_A, DESA_A2], "{backend}");
        // Narrowed to one desa of the puskesmas, grouped by posyandu.
        let (s, _, body) = http.get(&pkm, &format!("{path}&area={DESA_A2}&by=posyandu"));
        assert_eq!(s, 200, "{backend}: {body}");
        let r: MonthlyRecap = serde_json::from_value(body).unwrap();
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].key, "psy-c");
        // The bidan: her desa only; the kader: refused; outside the scope: refused.
        let (s, _, body) = http.get(&bidan, path);
        assert_eq!(s, 200, "{backend}: {body}");
        let r: MonthlyRecap = serde_json::from_value(body).unwrap();
        assert_eq!(r, device(&[&da], Grouping::Desa), "{backend}");
        for (token, area, code) in [
            (&kader, "", "forbidden"),
            (&kader, DESA_A, "forbidden"),
            (&pkm, DESA_B, "out_of_scope"),
            (&pkm, "32.14", "out_of_scope"),
            (&bidan, DESA_A2, "out_of_scope"),
            (&bidan, "32.14.01", "out_of_scope"),
        ] {
            let p = if area.is_empty() {
                path.to_string()
            } else {
                format!("{path}&area={area}")
            };
            let (s, c, body) = http.get(token, &p);
            assert_eq!((s, c.as_str()), (403, code), "{backend} {p}: {body}");
            assert!(body["message"].as_str().unwrap().contains('('), "{body}");
        }
        // Admin narrowed to desa B; bad parameters are 400 with a code.
        let (s, _, body) = http.get(&adm, &format!("{path}&area={DESA_B}"));
        assert_eq!(s, 200);
        let r: MonthlyRecap = serde_json::from_value(body).unwrap();
        assert_eq!(r, device(&[&db_], Grouping::Desa), "{backend}");
        for bad in [
            "/v1/reports/monthly",
            "/v1/reports/monthly?month=2026-13",
            "/v1/reports/monthly?month=2025-08&by=kabupaten",
            "/v1/reports/monthly?month=2025-08&area=32-14",
        ] {
            let (s, c, _) = http.get(&adm, bad);
            assert_eq!((s, c.as_str()), (400, "bad_request"), "{backend} {bad}");
        }
        let (s, c, _) = http.get("forged", path);
        assert_eq!((s, c.as_str()), (401, "unauthorized"));

        // A new visit, then a move out of the puskesmas: the projections follow.
        let child = child_of(&da2);
        let mut da2 = da2;
        let ch = weigh(&mut da2, child, "2025-08-28", 9.3);
        assert!(push(db, &admin, ha2, &[ch]).rejected.is_empty());
        let moved = da
            .move_household(DESA_B, "1", "1", Some("psy-b"), day("2025-08-20"), &meta())
            .unwrap()
            .change
            .unwrap()
            .raw_bytes()
            .to_vec();
        assert!(push(db, &admin, ha, &[moved]).rejected.is_empty());
        let (s, _, body) = http.get(&pkm, path);
        assert_eq!(s, 200);
        let r: MonthlyRecap = serde_json::from_value(body).unwrap();
        assert_eq!(r, device(&[&da2], Grouping::Desa), "{backend}");
        assert_eq!(r.total.households, 1);
        let pkm_user = auth_user(db, &pkm);
        let (_, stats) = report::monthly(db, &pkm_user, &q(None, Grouping::Desa), as_of).unwrap();
        assert_eq!((stats.households, stats.refreshed), (1, 0), "{backend}");
        let (r, stats) = report::monthly(db, &admin, &q(None, Grouping::Area), as_of).unwrap();
        assert_eq!(r, device(&[&da, &da2, &db_], Grouping::Area), "{backend}");
        // The puskesmas' request rebuilt A2's view; A moved out of its scope, so its view
        // is rebuilt by the first report that covers it (this one).
        assert_eq!(stats.refreshed, 1, "{backend}");
    }
}

fn auth_user(db: &Db, token: &str) -> User {
    db.tx(false, |t| auth::authenticate(t, token)).unwrap()
}

/// Database URLs of each backend for one test (as `backends`, but reopenable, so an HTTP
/// server and the test can each hold a handle).
fn backend_urls(test: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut v = vec![(
        "sqlite".to_string(),
        format!("sqlite:{}", dir.join("server.db").display()),
    )];
    if let Ok(url) = std::env::var("KUNJUNG_TEST_POSTGRES") {
        if !url.is_empty() {
            let schema = format!("t_{}_{}_{}", test, std::process::id(), rand_suffix());
            let sep = if url.contains('?') { '&' } else { '?' };
            v.push(("postgres".into(), format!("{url}{sep}schema={schema}")));
        }
    }
    if v.len() == 1 {
        // Same rule as `backends`: a notice, or a failure when PostgreSQL is required.
        let _ = backends(test);
    }
    v
}

#[test]
fn duplicates_over_the_scope_follow_the_device_rules() {
    for (backend, url) in backend_urls("reports_duplicates") {
        let db = &Db::open(&url).unwrap();
        let admin = user(db, "admin", Role::Admin, &[], &[]);
        let pkm = user(db, "pkm", Role::Puskesmas, &[], &["32.14.01"]);
        let kader = user(db, "kader", Role::Kader, &["psy-a"], &[]);
        // The same mother (NIK) registered twice in desa A and once in desa B; a
        // different family in A2.
        let (h1, d1, c1) = family(DESA_A, "psy-a", "3214015205940001", &[]);
        let (h2, d2, c2) = family(DESA_A, "psy-a", "3214015205940001", &[]);
        let (h3, d3, c3) = family(DESA_B, "psy-b", "3214015205940001", &[]);
        let (h4, d4, c4) = family(DESA_A2, "psy-c", "3214015205949999", &[]);
        for (id, ch) in [(h1, &c1), (h2, &c2), (h3, &c3), (h4, &c4)] {
            assert!(push(db, &admin, id, ch).rejected.is_empty());
        }
        let device = |docs: &[&HouseholdDoc]| {
            let views: Vec<_> = docs.iter().map(|d| d.read().unwrap()).collect();
            kunjung_core::merge::find_duplicates(&views)
        };
        let (all, _) = report::duplicates(db, &admin, None).unwrap();
        assert_eq!(all, device(&[&d1, &d2, &d3, &d4]), "{backend}");
        // Pairs h1–h2, h1–h3, h2–h3 (NIK; the children match by name + birth date too).
        assert_eq!(all.len(), 3, "{backend}: {all:?}");
        assert!(all[0].reasons.iter().any(|r| r.starts_with("nik ")));
        // The puskesmas sees only the pair inside its area; narrowing to A2 finds none.
        let (mine, _) = report::duplicates(db, &pkm, None).unwrap();
        let pair = if h1 < h2 { (h1, h2) } else { (h2, h1) };
        assert_eq!(
            mine.iter().map(|p| (p.a, p.b)).collect::<Vec<_>>(),
            [pair],
            "{backend}"
        );
        assert!(report::duplicates(db, &pkm, Some(DESA_A2))
            .unwrap()
            .0
            .is_empty());
        assert!(matches!(
            report::duplicates(db, &pkm, Some(DESA_B)),
            Err(ServerError::OutOfScope)
        ));
        assert!(matches!(
            report::duplicates(db, &kader, None),
            Err(ServerError::Forbidden(_))
        ));

        // Over HTTP.
        let http = Http::start(Db::open(&url).unwrap());
        let token = http.login("pkm");
        let (s, _, body) = http.get(&token, "/v1/reports/duplicates");
        assert_eq!(s, 200, "{backend}: {body}");
        let got: Vec<report::DuplicatePair> = serde_json::from_value(body).unwrap();
        assert_eq!(got, mine);
        let (s, c, _) = http.get(&token, &format!("/v1/reports/duplicates?area={DESA_B}"));
        assert_eq!((s, c.as_str()), (403, "out_of_scope"));
        let (s, c, _) = http.get(&http.login("kader"), "/v1/reports/duplicates");
        assert_eq!((s, c.as_str()), (403, "forbidden"));
        let (s, c, _) = http.get(&token, "/v1/reports/duplicates?month=2025-08");
        assert_eq!((s, c.as_str()), (400, "bad_request"));
    }
}
