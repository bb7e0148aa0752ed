//! The dependency rules of docs/ARCHITECTURE.md, checked against `cargo metadata`: each
//! crate's direct (normal) dependencies must avoid what it must not depend on.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// (package, dependencies it must not have).
    const RULES: &[(&str, &[&str])] = &[
        (
            "kunjung-core",
            &[
                "rusqlite",
                "reqwest",
                "axum",
                "tokio",
                "tauri",
                "postgres",
                "kunjung-protocol",
                "kunjung-store",
                "kunjung-client",
            ],
        ),
        (
            "kunjung-protocol",
            &[
                "rusqlite",
                "reqwest",
                "axum",
                "tokio",
                "tauri",
                "postgres",
                "kunjung-store",
                "kunjung-client",
            ],
        ),
        (
            "kunjung-store",
            &[
                "reqwest",
                "axum",
                "tokio",
                "tauri",
                "postgres",
                "kunjung-client",
                "kunjung-sync-server",
            ],
        ),
        (
            "kunjung-client",
            &["axum", "tauri", "postgres", "kunjung-sync-server"],
        ),
        (
            "kunjung-sync-server",
            &["kunjung-store", "kunjung-client", "tauri", "reqwest"],
        ),
        (
            "kunjung-app",
            &[
                "rusqlite",
                "automerge",
                "axum",
                "postgres",
                "kunjung-sync-server",
            ],
        ),
    ];

    #[test]
    fn dependency_directions_hold() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(crate::sh::root())
            .output()
            .expect("cargo metadata");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
        let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in meta["packages"].as_array().expect("packages") {
            let normal = p["dependencies"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str().map(String::from))
                .collect();
            deps.insert(p["name"].as_str().unwrap_or_default().to_string(), normal);
        }
        for (pkg, forbidden) in RULES {
            let Some(have) = deps.get(*pkg) else {
                panic!("package {pkg} is missing from the workspace");
            };
            for f in *forbidden {
                assert!(
                    !have.iter().any(|d| d == f),
                    "{pkg} must not depend on {f} (docs/ARCHITECTURE.md)"
                );
            }
        }
        // And the directions that must exist.
        assert!(deps["kunjung-store"].contains(&"kunjung-core".to_string()));
        assert!(deps["kunjung-client"].contains(&"kunjung-store".to_string()));
        assert!(deps["kunjung-sync-server"].contains(&"kunjung-protocol".to_string()));
    }
}
