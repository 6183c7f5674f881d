//! The published formats are contracts: golden files in `stats/testdata/golden/`, regenerated
//! with `SPARTAKUS_BLESS=1`. The input is a fixed set of raw cells (two snapshots a week apart),
//! so the files change only when the format or the rules do.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use stats::disclose::{Raw, RawCell, RawTotals, disclose};
use stats::output::Output;
use stats::privacy::Budget;
use stats::snapshot::Snapshot;
use stats::store::Window;

fn cell(labels: &[&str], clusters: u64, nodes: Option<(u64, u64)>) -> RawCell {
    RawCell {
        labels: labels.iter().map(|s| s.to_string()).collect(),
        clusters,
        nodes: nodes.map(|n| n.0),
    }
}

fn raw(week: u64) -> Raw {
    let mut raw = Raw {
        totals: RawTotals {
            clusters: 40 + week,
            reports: 900 + week,
            nodes: 400,
        },
        ..Raw::default()
    };
    let mut put = |id: &str, cells: Vec<RawCell>| {
        raw.cells.insert(id.into(), cells);
    };
    put(
        "clusters_by_kubernetes_minor",
        vec![
            cell(&["1.37"], 20 + week, None),
            cell(&["1.36"], 15, None),
            cell(&["1.20"], 3, None),
            cell(&["unknown"], 2, None),
        ],
    );
    put(
        "clusters_by_kubernetes_patch",
        vec![
            cell(&["1.37", "1.37.2"], 12 + week, None),
            cell(&["1.37", "1.37.1"], 6, None),
            cell(&["1.37", "1.37.0"], 2, None),
            cell(&["1.36", "1.36.4"], 15, None),
            cell(&["1.20", "1.20.0"], 3, None),
            cell(&["unknown", "unknown"], 2, None),
        ],
    );
    put(
        "nodes_by_os",
        vec![
            cell(&["Ubuntu"], 30, Some((300, 20))),
            cell(&["COS"], 8, Some((60, 10))),
            cell(&["Flatcar"], 2, Some((40, 40))),
        ],
    );
    put(
        "clusters_using_workload_kind",
        vec![
            cell(&["Pod", "yes"], 30 + week, None),
            cell(&["Pod", "unknown"], 10, None),
            cell(&["Job", "yes"], 12, None),
            cell(&["Job", "no"], 18 + week, None),
            cell(&["Job", "unknown"], 10, None),
        ],
    );
    raw
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden")
}

#[test]
fn the_published_files_match_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = Output::new(dir.path());
    let budget = Budget {
        min_clusters: 5,
        ..Budget::DEFAULT
    };
    for (week, date) in [(0, "2026-11-22"), (1, "2026-11-29")] {
        let window = Window {
            date: date.parse().unwrap(),
            days: 28,
        };
        // A fixed test seed: the noise, and so the files, are the same on every run.
        let d = disclose(&raw(week), &budget, &mut StdRng::seed_from_u64(week));
        let snapshot = Snapshot::new(window, false, &d);
        out.publish(&snapshot).unwrap();
    }
    let files = [
        "latest.json",
        "index.json",
        "snapshots/2026-11-29/snapshot.json",
        "snapshots/2026-11-29/clusters_by_kubernetes_patch.csv",
        "snapshots/2026-11-29/clusters_by_kubernetes_patch.json",
        "snapshots/2026-11-29/nodes_by_os.csv",
        "snapshots/2026-11-29/clusters_using_workload_kind.csv",
        "snapshots/2026-11-29/clusters_by_os.csv",
        "series/clusters_by_kubernetes_minor.csv",
        "series/clusters_by_kubernetes_minor.json",
        "series/totals.csv",
    ];
    let bless = std::env::var_os("SPARTAKUS_BLESS").is_some();
    let mut stale = Vec::new();
    for rel in files {
        let got = std::fs::read_to_string(dir.path().join(rel)).unwrap();
        let golden = golden_dir().join(rel.replace('/', "__"));
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&golden, &got).unwrap();
        } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(got.as_str()) {
            stale.push(rel);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from stats/testdata/golden; run with SPARTAKUS_BLESS=1 and review the diff"
    );
    // The schema document travels with the data.
    assert!(dir.path().join("SCHEMA.md").is_file());
}

#[test]
fn the_schema_document_describes_every_metric_and_column() {
    let schema = stats::output::SCHEMA_MD;
    for m in stats::metrics::METRICS {
        assert!(
            schema.contains(&format!("`{}`", m.id)),
            "SCHEMA.md lacks {}",
            m.id
        );
        for d in m.dimensions {
            assert!(
                schema.contains(&format!("`{d}`")),
                "SCHEMA.md lacks column {d} of {}",
                m.id
            );
        }
    }
    // Every key of the published documents is described: taken from the golden snapshot and a
    // real ledger, so a new field cannot go undocumented.
    let snapshot: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(golden_dir().join("snapshots__2026-11-29__snapshot.json"))
            .unwrap(),
    )
    .unwrap();
    let mut ledger = stats::ledger::Ledger::new();
    ledger.record(
        "2026-11-29".parse().unwrap(),
        "2026-12-01T00:00:00Z".parse().unwrap(),
        &stats::privacy::Guarantee::of(0.05, 1e-7),
    );
    let ledger = serde_json::to_value(&ledger).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    fn collect(v: &serde_json::Value, keys: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    keys.insert(k.clone());
                    collect(v, keys);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| collect(i, keys)),
            _ => {}
        }
    }
    collect(&snapshot, &mut keys);
    collect(&ledger, &mut keys);
    assert!(
        keys.contains("epsilon") && keys.contains("releasedOn"),
        "{keys:?}"
    );
    for key in &keys {
        assert!(
            schema.contains(&format!("`{key}`")) || schema.contains(&format!("\"{key}\"")),
            "SCHEMA.md lacks {key}"
        );
    }
    for file in [
        "latest.json",
        "index.json",
        "ledger.json",
        "LICENSE.txt",
        "series/totals.csv",
        "withheld",
    ] {
        assert!(schema.contains(file), "SCHEMA.md lacks {file}");
    }
}
