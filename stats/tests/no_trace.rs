//! The concrete privacy test, on the real output files of the real binary: one distinctive
//! cluster (its own OS, a rare runtime and kernel, 5,000 nodes, its own distribution, provider
//! and accelerator) among 300 ordinary ones leaves no trace in any file; 20 such clusters
//! show. (Folding a small cell can take the next-smallest one with it, so the ordinary
//! population has several values of each attribute.) Also: no file holds a cluster, node or report ID, an extension value, or a time finer
//! than a day.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;

const DISTINCTIVE: [&str; 8] = [
    "Flatcar",
    "cri-o",
    "5.15",
    "rke2",
    "1.29",
    "hcloud",
    "amd",
    "1001-5000",
];

fn ordinary(i: usize) -> ClusterSpec {
    let mut c = ClusterSpec::new(format!("ordinary-{i:03}"));
    let pick = |options: &[&'static str]| options[i % options.len()];
    c.master = Some(pick(&["v1.37.2", "v1.36.4", "v1.35.1-gke.100"]));
    let node = NodeSpec {
        os_image: Some(pick(&[
            "Ubuntu 24.04.1 LTS",
            "Ubuntu 22.04.5 LTS",
            "Container-Optimized OS from Google",
        ])),
        kernel: Some(pick(&["6.8.0-1015-gke", "6.1.100+"])),
        runtime: Some(pick(&[
            "containerd://1.7.22",
            "containerd://2.0.1",
            "docker://24.0.7",
            "containerd://1.6.30",
        ])),
        kubelet: c.master,
        ..NodeSpec::default()
    };
    c.nodes = vec![(3 + i % 8, node)];
    c
}

fn distinctive(i: usize) -> ClusterSpec {
    let mut c = ClusterSpec::new(format!("distinctive-{i:02}"));
    c.master = Some("v1.29.8+rke2r1");
    c.nodes = vec![(
        5000,
        NodeSpec {
            os_image: Some("Flatcar Container Linux by Kinvolk 3815.2.0 (Oklo)"),
            kernel: Some("5.15.0-flatcar"),
            arch: Some("amd64"),
            runtime: Some("cri-o://1.31.1"),
            kubelet: Some("v1.29.8+rke2r1"),
            cloud: Some("hcloud"),
            cpu: Some("64"),
            memory: Some("256Gi"),
            gpus: Some(("amd.com/gpu", "8")),
        },
    )];
    c
}

/// Runs `stats --once` for the fixtures' Sunday and returns the output folder's files.
fn run_stats(db: &Path, out: &Path) -> Vec<(String, String)> {
    let status = Command::new(env!("CARGO_BIN_EXE_stats"))
        .args([
            "--once",
            "--new-ledger",
            "--store",
            &format!("sqlite:{}", db.display()),
            "--out",
            out.to_str().unwrap(),
            "--date",
            &day().to_string(),
        ])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success(), "stats --once failed: {status}");
    let mut files = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(out).unwrap().display().to_string();
                files.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// Every label of every published cell, from the metrics' JSON files.
fn labels(files: &[(String, String)]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, text) in files {
        if !name.starts_with("snapshots/")
            || name.ends_with("snapshot.json")
            || !name.ends_with(".json")
        {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let metric = &doc["metric"];
        let dims = metric["dimensions"].as_array().unwrap().len();
        for row in metric["rows"].as_array().unwrap() {
            for label in &row.as_array().unwrap()[..dims] {
                out.insert(format!(
                    "{}={}",
                    metric["id"].as_str().unwrap(),
                    label.as_str().unwrap()
                ));
            }
        }
    }
    out
}

fn never_in_output(files: &[(String, String)], envs: &[Env]) {
    let time = regex::Regex::new(r"\d\d:\d\d").unwrap();
    for (name, text) in files {
        for env in envs {
            assert!(
                !text.contains(&env.id.to_string()),
                "{name} holds a report ID"
            );
            assert!(
                !text.contains(env.report["clusterID"].as_str().unwrap()),
                "{name} holds a cluster ID"
            );
        }
        assert!(
            !text.contains("00000000000000000000000000000001"),
            "{name} holds a node ID"
        );
        assert!(
            !text.contains("team-secret-value"),
            "{name} holds an extension value"
        );
        assert!(
            !text.contains("example.com/owner"),
            "{name} holds an extension name"
        );
        // Dates only: no clock time anywhere.
        assert!(!time.is_match(text), "{name} holds a time of day");
    }
}

#[tokio::test]
async fn one_distinctive_cluster_leaves_no_trace_and_twenty_show() {
    let base: Vec<ClusterSpec> = (0..300).map(ordinary).collect();

    let mut one = base.clone();
    one.push(distinctive(0));
    let envs = envelopes(&one);
    let db = sqlite_fixture(&envs).await;
    let out = db.dir.path().join("out");
    let files = run_stats(&db.path, &out);
    never_in_output(&files, &envs);
    let seen = labels(&files);
    for value in DISTINCTIVE {
        let hits: Vec<&String> = seen
            .iter()
            .filter(|l| l.ends_with(&format!("={value}")))
            .collect();
        assert!(
            hits.is_empty(),
            "one cluster's {value} is published: {hits:?}"
        );
    }
    // The ordinary population is published, so the checks above could fail.
    for shown in [
        "clusters_by_os=Ubuntu",
        "clusters_by_kubernetes_minor=1.37",
        "clusters_by_runtime=containerd",
        "clusters_by_runtime_version=2.0",
        "clusters_by_node_count=4-10",
    ] {
        assert!(seen.contains(shown), "{shown} missing from {seen:?}");
    }
    // Its 5,000 nodes are more than half of all nodes: every node count is withheld.
    let snapshot: serde_json::Value = serde_json::from_str(
        &files
            .iter()
            .find(|(n, _)| n.ends_with("snapshot.json"))
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(snapshot["totals"]["clusters"], 301);
    assert_eq!(snapshot["totals"]["nodes"], serde_json::Value::Null);
    for m in snapshot["metrics"].as_array().unwrap() {
        if m["unit"] == "nodes" {
            assert_eq!(m["status"], "withheld", "{}", m["id"]);
        }
    }

    let mut twenty = base.clone();
    twenty.extend((0..20).map(distinctive));
    let envs = envelopes(&twenty);
    let db = sqlite_fixture(&envs).await;
    let out = db.dir.path().join("out");
    let files = run_stats(&db.path, &out);
    never_in_output(&files, &envs);
    let seen = labels(&files);
    for shown in [
        "clusters_by_os=Flatcar",
        "nodes_by_os=Flatcar",
        "clusters_by_runtime=cri-o",
        "nodes_by_runtime_version=1.31",
        "clusters_by_kernel=5.15",
        "clusters_by_distribution=rke2",
        "clusters_by_kubernetes_minor=1.29",
        "clusters_by_cloud_provider=hcloud",
        "clusters_by_accelerator=amd",
        "clusters_by_node_count=1001-5000",
    ] {
        assert!(
            seen.contains(shown),
            "{shown} missing from twenty distinctive clusters' output"
        );
    }
    let nodes_by_os: serde_json::Value = serde_json::from_str(
        &files
            .iter()
            .find(|(n, _)| n.starts_with("snapshots/") && n.ends_with("/nodes_by_os.json"))
            .unwrap()
            .1,
    )
    .unwrap();
    let flatcar = nodes_by_os["metric"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == "Flatcar")
        .unwrap();
    assert_eq!(flatcar[1], 100_000);
}
