//! TypeScript bindings of the command inputs and outputs, generated with ts-rs into
//! `ui/src/lib/bindings/`. This test fails when the committed files are stale; run it with
//! `UPDATE_BINDINGS=1` to rewrite them:
//! `UPDATE_BINDINGS=1 cargo test -p kunjung-app bindings`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ts_rs::TS;

fn export_all(dir: &Path) {
    macro_rules! export {
        ($($t:ty),* $(,)?) => {
            $(<$t as TS>::export_all_to(dir).expect(stringify!($t));)*
        };
    }
    use kunjung_core::*;
    use kunjung_store::app_support::*;
    use kunjung_store::app_views::*;
    use kunjung_store::*;
    export!(
        crate::session::AppStatus,
        crate::session::SetupInput,
        crate::ErrorBody,
        crate::sync::SyncState,
        ListFilter,
        HouseholdRow,
        SearchHit,
        HouseholdPage,
        NewHousehold,
        FieldEdit,
        NewMember,
        MemberAdded,
        ids::NikWarning,
        Pregnancy,
        VisitForm,
        NewVisit,
        VisitAdded,
        ReferralRow,
        ReferralUpdate,
        VisitRow,
        TaskRow,
        HouseholdConflicts,
        AnswerValue,
        GrowthChart,
        Sex,
        lifestage::LifeStage,
        Relation,
        Measured,
        ReferralStatus,
        crate::reports::ExportDone,
        Dashboard,
        ChangeInfo,
        doc::FieldVersion,
    );
}

/// The generated files, name → text. serde_json writes i64 as a JSON number (timestamps
/// in ms and counts, far below 2^53), so ts-rs's `bigint` becomes `number`.
fn generated() -> BTreeMap<String, String> {
    let tmp = std::env::temp_dir().join(format!("kunjung-bindings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    export_all(&tmp);
    let out = read_dir(&tmp)
        .into_iter()
        .map(|(k, v)| (k, v.replace("bigint", "number")))
        .collect();
    let _ = std::fs::remove_dir_all(&tmp);
    out
}

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    read_into(dir, "", &mut out);
    out
}

/// Every `.ts` file under `dir`, keyed by its path relative to `dir` (`serde_json/JsonValue.ts`).
fn read_into(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = format!("{prefix}{}", p.file_name().unwrap().to_string_lossy());
        if p.is_dir() {
            read_into(&p, &format!("{name}/"), out);
        } else if p.extension().is_some_and(|x| x == "ts") {
            out.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
}

#[test]
fn bindings_are_fresh() {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/src/lib/bindings");
    let fresh = generated();
    assert!(fresh.contains_key("HouseholdPage.ts") && fresh.contains_key("LifeStage.ts"));
    if std::env::var_os("UPDATE_BINDINGS").is_some() {
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(&target).unwrap();
        for (name, text) in &fresh {
            let path = target.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        return;
    }
    let committed = read_dir(&target);
    let stale: Vec<&String> = fresh
        .iter()
        .filter(|(k, v)| committed.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(committed.keys().filter(|k| !fresh.contains_key(*k)))
        .collect();
    assert!(
        stale.is_empty(),
        "ui/src/lib/bindings is stale ({stale:?}): run `UPDATE_BINDINGS=1 cargo test -p kunjung-app bindings`"
    );
}
