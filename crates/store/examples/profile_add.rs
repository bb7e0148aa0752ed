//! Where does the time of "add a visit" go? Run against a bench store:
//! `cargo run --release -p kunjung-store --example profile_add -- target/bench/store-2000`
use std::time::Instant;

use kunjung_core::doc::CommitMeta;
use kunjung_core::NewVisit;
use kunjung_store::Store;

fn main() {
    let dir = std::env::args().nth(1).expect("store dir");
    let mut s = Store::open(std::path::Path::new(&dir), None).unwrap();
    let ids: Vec<(String, String)> = {
        let mut st = s
            .connection()
            .prepare("SELECT h.id, lower(hex(m.id)) FROM members m JOIN households h ON h.rid = m.hh WHERE m.birth_date < '2020-01-01' ORDER BY random() LIMIT 200")
            .unwrap();
        let v = st
            .query_map([], |r| Ok((r.get(0).unwrap(), r.get(1).unwrap())))
            .unwrap()
            .map(|x| x.unwrap())
            .collect();
        v
    };
    let (mut load, mut read, mut conf, mut tasks, mut op, mut save, mut total) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let cfg = kunjung_core::schedule::ScheduleConfig::default();
    let today = chrono::Local::now().date_naive();
    for (h, m) in &ids {
        let h: uuid::Uuid = h.parse().unwrap();
        let m: uuid::Uuid = m.parse().unwrap();
        let t = Instant::now();
        let mut d = s.doc(h).unwrap();
        load += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let v = d.read().unwrap();
        read += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = d.conflicts();
        conf += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = kunjung_core::schedule::tasks_for_household(&v, today, &cfg);
        tasks += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let meta = CommitMeta::now("x");
        d.add_visit(
            &NewVisit {
                member_id: m,
                date: today,
                weight_kg: Some(60.0),
                ..Default::default()
            },
            &meta,
        )
        .unwrap();
        op += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = d.save();
        save += t.elapsed().as_secs_f64();
        let t = Instant::now();
        s.add_visit(&NewVisit {
            member_id: m,
            date: today,
            weight_kg: Some(61.0),
            ..Default::default()
        })
        .unwrap();
        total += t.elapsed().as_secs_f64();
    }
    let n = ids.len() as f64 / 1000.0;
    println!("per op (ms): load {:.3} read {:.3} conflicts {:.3} tasks {:.3} add_visit {:.3} save {:.3} | store.add_visit (cached doc) {:.3}",
        load / n, read / n, conf / n, tasks / n, op / n, save / n, total / n);
}
