//! The concrete privacy test, on the real output files of the real binary: one distinctive
//! cluster (its own OS version, a rare runtime version and kernel, Kubernetes minor and
//! accelerator, 5,000 nodes) among 600 ordinary ones: none of its open-domain values (those
//! released only through partition selection) is published, and its 5,000 nodes count as at
//! most `--node-clip`; 200 such clusters show. (Values of closed domains, e.g. the OS family
//! Flatcar, are measured whatever the data, so noise alone can publish them: that says nothing
//! about any cluster, and is not checked here.) Also: no file holds a cluster, node or report
//! ID, an extension value, or a time finer than a day. The attacks (forged reports,
//! differencing) are in `systests/tests/it/attacks.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::*;

/// The distinctive cluster's values in open-domain metrics (and the node metrics that follow
/// them).
const DISTINCTIVE: [&str; 10] = [
    "clusters_by_kernel=5.15",
    "nodes_by_kernel=5.15",
    "clusters_by_kubernetes_minor=1.29",
    "clusters_by_kubernetes_patch=1.29.8",
    "clusters_by_runtime_version=1.31",
    "nodes_by_runtime_version=1.31",
    "clusters_by_os_version=3815",
    "nodes_by_os_version=3815",
    "clusters_by_accelerator=amd",
    "clusters_by_volunteer_version=v9.9.9",
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

fn distinctive(i: usize, nodes: usize) -> ClusterSpec {
    let mut c = ClusterSpec::new(format!("distinctive-{i:03}"));
    c.master = Some("v1.29.8+rke2r1");
    c.volunteer = "v9.9.9";
    c.nodes = vec![(
        nodes,
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
async fn run_stats(db: &Path, out: &Path) -> Vec<(String, String)> {
    let run = testenv::Launch::stats()
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
        .run(std::time::Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run.status.success(),
        "stats --once failed: {}: {}",
        run.status,
        run.stderr
    );
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

fn snapshot(files: &[(String, String)]) -> serde_json::Value {
    serde_json::from_str(
        &files
            .iter()
            .find(|(n, _)| n.ends_with("snapshot.json"))
            .unwrap()
            .1,
    )
    .unwrap()
}

#[tokio::test]
async fn one_distinctive_cluster_leaves_no_trace_and_two_hundred_show() {
    let base: Vec<ClusterSpec> = (0..600).map(ordinary).collect();

    let mut one = base.clone();
    one.push(distinctive(0, 5000));
    let envs = envelopes(&one);
    let db = sqlite_fixture(&envs).await;
    let out = db.dir.path().join("out");
    let files = run_stats(&db.path, &out).await;
    never_in_output(&files, &envs);
    let seen = labels(&files);
    for value in DISTINCTIVE {
        assert!(!seen.contains(value), "one cluster's {value} is published");
    }
    // The ordinary population is published, so the checks above could fail.
    // (Each at least 200 clusters: more than 6 σ above the selection threshold of about 94.)
    for shown in [
        "clusters_by_os=Ubuntu",
        "clusters_by_kubernetes_minor=1.37",
        "clusters_by_runtime=containerd",
        "clusters_by_kernel=6.8",
        "nodes_by_kernel=6.8",
    ] {
        assert!(seen.contains(shown), "{shown} missing from {seen:?}");
    }
    // Its 5,000 nodes count as 20: the published node total stays near the ordinary
    // clusters' 3,900 (σ of its noise about 320), far from 8,900.
    let snapshot = snapshot(&files);
    let nodes = snapshot["totals"]["nodes"].as_u64().unwrap();
    assert!(nodes < 3_900 + 2_500, "node total {nodes}");
    assert_eq!(snapshot["privacy"]["nodeClip"], 20);
    assert!(snapshot["privacy"]["epsilon"].as_f64().unwrap() < 2.0);

    let mut many = base.clone();
    many.extend((0..200).map(|i| distinctive(i, 30)));
    let envs = envelopes(&many);
    let db = sqlite_fixture(&envs).await;
    let out = db.dir.path().join("out");
    let files = run_stats(&db.path, &out).await;
    never_in_output(&files, &envs);
    let seen = labels(&files);
    for shown in [
        "clusters_by_kernel=5.15",
        "clusters_by_kubernetes_minor=1.29",
        "clusters_by_runtime_version=1.31",
        "nodes_by_runtime_version=1.31",
        "clusters_by_accelerator=amd",
        "clusters_by_volunteer_version=v9.9.9",
    ] {
        assert!(
            seen.contains(shown),
            "{shown} missing from two hundred distinctive clusters' output"
        );
    }
}
