//! Both stores against one fixture: every metric's SQL on SQLite (written by the real ingester)
//! against hand-computed cells, then the BigQuery emulator fed the same reports, which must
//! compute the same cells and the same snapshot documents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use crate::common::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use stats::disclose::{Raw, disclose};
use stats::normalize::{FUNCTIONS, Function, SqlType, Value, bigquery_prelude};
use stats::privacy::Budget;
use stats::snapshot::Snapshot;
use stats::store::sqlite::SqliteStore;
use stats::store::{Query, Store, Window};

const BUDGET: Budget = Budget::DEFAULT;

fn node(f: impl FnOnce(&mut NodeSpec)) -> NodeSpec {
    let mut n = NodeSpec::default();
    f(&mut n);
    n
}

/// Eight clusters in the window with one trait each, plus one synthetic and one too old.
fn fixture() -> Vec<ClusterSpec> {
    let mut clusters: Vec<ClusterSpec> = (1..=4)
        .map(|i| ClusterSpec::new(format!("plain-{i}")))
        .collect();
    // A zero GPU capacity is no accelerator.
    clusters[0].nodes = vec![(3, node(|n| n.gpus = Some(("nvidia.com/gpu", "0"))))];
    let mut gke = ClusterSpec::new("gke");
    gke.master = Some("v1.36.3-gke.100");
    gke.nodes = vec![
        (
            2,
            node(|n| {
                n.os_image = Some("Container-Optimized OS from Google");
                n.kernel = Some("6.6.50+");
                n.arch = Some("arm64");
                n.runtime = Some("cri-o://1.31.1");
                n.kubelet = Some("v1.35.1");
                n.cpu = Some("8");
                n.memory = Some("32Gi");
                n.gpus = Some(("nvidia.com/gpu", "1"));
            }),
        ),
        (1, node(|n| n.os_image = Some("Ubuntu 22.04.5 LTS"))),
    ];
    let mut old = ClusterSpec::new("k3s-v1");
    old.master = Some("v1.20.0+k3s1");
    old.v2 = None;
    old.nodes = vec![(
        1,
        node(|n| {
            n.os_image = Some("Flatcar Container Linux by Kinvolk 3815.2.0 (Oklo)");
            n.kernel = Some("5.15.0-flatcar");
            n.arch = None;
            n.runtime = Some("docker://20.10.7");
            n.kubelet = Some("v1.16.0");
            n.cloud = None;
            n.cpu = Some("3500m");
            n.memory = None;
        }),
    )];
    let mut empty = ClusterSpec::new("no-nodes");
    empty.master = None;
    empty.nodes = vec![];
    empty.v2 = Some((None, vec![]));
    let mut synthetic = ClusterSpec::new("synthetic");
    synthetic.synthetic = true;
    let mut busy = ClusterSpec::new("reports-often");
    busy.earlier = 2;
    // Before the window, and within the ingester's retention.
    let mut gone = ClusterSpec::new("too-old");
    gone.days_ago = 29;
    clusters.extend([gke, old, empty, synthetic, busy, gone]);
    clusters
}

fn query(include_synthetic: bool) -> Query {
    Query {
        window: Window {
            date: day(),
            days: 28,
        },
        include_synthetic,
        node_clip: 20,
        report_clip: 28,
    }
}

/// `metric -> ["a/b/c=clusters[/nodes]"]`, sorted like the store sorts.
fn cells(raw: &Raw) -> BTreeMap<String, Vec<String>> {
    raw.cells
        .iter()
        .map(|(id, cells)| {
            let rows = cells
                .iter()
                .map(|c| {
                    let mut s = format!("{}={}", c.labels.join("/"), c.clusters);
                    if let Some(n) = c.nodes {
                        s.push_str(&format!("/{n}"));
                    }
                    s
                })
                .collect::<Vec<String>>();
            let mut rows = rows;
            rows.sort();
            (id.clone(), rows)
        })
        .collect()
}

fn workload_rows() -> Vec<(&'static str, Vec<&'static str>)> {
    let kinds = [
        ("Pod", "yes", "11-100", "1-7 days"),
        ("Service", "yes", "1-10", "7-30 days"),
        ("Deployment", "yes", "1-10", "7-30 days"),
        ("StatefulSet", "no", "0", "no objects"),
        ("DaemonSet", "yes", "1-10", "30-90 days"),
        ("Job", "no", "0", "no objects"),
        ("CronJob", "no", "0", "no objects"),
    ];
    let mut uses = Vec::new();
    let mut objects = Vec::new();
    let mut ages = Vec::new();
    for (kind, used, bucket, age) in kinds {
        uses.push(format!("{kind}/{used}=6"));
        uses.push(format!("{kind}/unknown=1"));
        uses.push(format!("{kind}/v1=1"));
        objects.push(format!("{kind}/{used}/{bucket}=6"));
        objects.push(format!("{kind}/unknown/unknown=1"));
        objects.push(format!("{kind}/v1/v1=1"));
        ages.push(format!("{kind}/{used}/{age}=6"));
        ages.push(format!("{kind}/unknown/unknown=1"));
        ages.push(format!("{kind}/v1/v1=1"));
    }
    let leak = |v: Vec<String>| -> Vec<&'static str> {
        let mut v: Vec<&'static str> = v.into_iter().map(|s| &*s.leak()).collect();
        v.sort();
        v
    };
    vec![
        ("clusters_using_workload_kind", leak(uses)),
        ("clusters_by_workload_objects", leak(objects)),
        ("clusters_by_workload_age", leak(ages)),
    ]
}

fn expected() -> BTreeMap<String, Vec<String>> {
    let mut e: Vec<(&str, Vec<&str>)> = vec![
        ("clusters_by_schema_version", vec!["1=1", "2=7"]),
        ("clusters_by_volunteer_version", vec!["v0.1.0=8"]),
        (
            "clusters_by_kubernetes_minor",
            vec!["1.20=1", "1.36=1", "1.37=5", "unknown=1"],
        ),
        (
            "clusters_by_kubernetes_patch",
            vec![
                "1.20/1.20.0=1",
                "1.36/1.36.3=1",
                "1.37/1.37.2=5",
                "unknown/unknown=1",
            ],
        ),
        (
            "clusters_by_distribution",
            vec!["gke=1", "k3s=1", "no suffix=5", "unknown=1"],
        ),
        (
            "clusters_by_version_skew",
            vec!["+1 or more=1", "-4 or less=1", "0=5", "no nodes=1"],
        ),
        (
            "nodes_by_version_skew",
            vec!["+1 or more=1/1", "-1=1/2", "-4 or less=1/1", "0=5/15"],
        ),
        (
            "clusters_by_os",
            vec!["COS=1", "Flatcar=1", "Ubuntu=5", "no nodes=1"],
        ),
        (
            "clusters_by_os_version",
            vec![
                "COS/unknown=1",
                "Flatcar/3815=1",
                "Ubuntu/24.04=5",
                "no nodes/no nodes=1",
            ],
        ),
        ("nodes_by_os", vec!["COS=1/2", "Flatcar=1/1", "Ubuntu=6/16"]),
        (
            "nodes_by_os_version",
            vec![
                "COS/unknown=1/2",
                "Flatcar/3815=1/1",
                "Ubuntu/22.04=1/1",
                "Ubuntu/24.04=5/15",
            ],
        ),
        (
            "clusters_by_kernel",
            vec!["5.15=1", "6.6=1", "6.8=5", "no nodes=1"],
        ),
        ("nodes_by_kernel", vec!["5.15=1/1", "6.6=1/2", "6.8=6/16"]),
        (
            "clusters_by_runtime",
            vec!["containerd=5", "cri-o=1", "docker=1", "no nodes=1"],
        ),
        (
            "clusters_by_runtime_version",
            vec![
                "containerd/1.7=5",
                "cri-o/1.31=1",
                "docker/20.10=1",
                "no nodes/no nodes=1",
            ],
        ),
        (
            "nodes_by_runtime",
            vec!["containerd=6/16", "cri-o=1/2", "docker=1/1"],
        ),
        (
            "nodes_by_runtime_version",
            vec!["containerd/1.7=6/16", "cri-o/1.31=1/2", "docker/20.10=1/1"],
        ),
        (
            "clusters_by_architecture",
            vec!["amd64+arm64=1", "amd64=5", "no nodes=1", "unknown=1"],
        ),
        (
            "nodes_by_architecture",
            vec!["amd64=6/16", "arm64=1/2", "unknown=1/1"],
        ),
        (
            "clusters_by_cloud_provider",
            vec!["gce=6", "no nodes=1", "unknown=1"],
        ),
        ("nodes_by_cloud_provider", vec!["gce=6/18", "unknown=1/1"]),
        ("clusters_by_node_count", vec!["0=1", "1=1", "2-3=6"]),
        ("nodes_by_cpu", vec!["3-4=7/17", "5-8=1/2"]),
        (
            "nodes_by_memory",
            vec!["16-32 GiB=1/2", "8-16 GiB=6/16", "unknown=1/1"],
        ),
        (
            "clusters_by_accelerator",
            vec!["no nodes=1", "none=6", "nvidia=1"],
        ),
        (
            "clusters_by_namespaces",
            vec!["11-20=6", "unknown=1", "v1=1"],
        ),
    ];
    e.extend(workload_rows());
    e.into_iter()
        .map(|(k, v)| {
            let mut v: Vec<String> = v.into_iter().map(str::to_owned).collect();
            v.sort();
            (k.to_owned(), v)
        })
        .collect()
}

#[tokio::test]
async fn the_sqlite_store_computes_every_metric_of_the_fixture() {
    let envs = envelopes(&fixture());
    let db = sqlite_fixture(&envs).await;
    let store = SqliteStore::new(&db.path);
    let computed = store.compute(query(false)).await.unwrap();
    let raw = computed.raw;
    assert_eq!(raw.totals.clusters, 8);
    assert_eq!(
        raw.totals.reports, 10,
        "2 earlier reports of one cluster count as reports"
    );
    assert_eq!(raw.totals.nodes, 19);
    // Bounded contributions: one cluster counts at most `report_clip` reports and `node_clip`
    // nodes (a larger cluster's cells scaled down, rounding toward zero).
    let clipped = store
        .compute(Query {
            report_clip: 2,
            node_clip: 1,
            ..query(false)
        })
        .await
        .unwrap()
        .raw;
    assert_eq!(
        clipped.totals.reports, 9,
        "the cluster with 3 reports counts 2"
    );
    assert_eq!(
        clipped.totals.nodes, 7,
        "each of the 7 clusters with nodes counts 1"
    );
    for (id, cells) in &clipped.cells {
        if id.starts_with("nodes_") {
            let sum: u64 = cells.iter().filter_map(|c| c.nodes).sum();
            assert!(sum <= 7, "{id}: {sum}");
        }
    }
    let got = cells(&raw);
    let want = expected();
    for (metric, rows) in &want {
        assert_eq!(got.get(metric), Some(rows), "{metric}");
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "every metric has a fixture expectation"
    );
    // Every cluster-unit metric adds up to the window's clusters (per group).
    for m in stats::metrics::METRICS {
        if m.unit == stats::metrics::Unit::Clusters && !m.grouped {
            let sum: u64 = raw.cells[m.id].iter().map(|c| c.clusters).sum();
            assert_eq!(sum, 8, "{}", m.id);
        }
    }

    let with = store.compute(query(true)).await.unwrap().raw;
    assert_eq!(
        with.totals.clusters, 9,
        "the synthetic cluster counts when asked"
    );
}

/// The metrics that read a record nested in a record: `nodes[].capacity[]` (cpu, memory,
/// accelerators) and `workloads[].ageHours`.
const NESTED_METRICS: [&str; 4] = [
    "clusters_by_accelerator",
    "clusters_by_workload_age",
    "nodes_by_cpu",
    "nodes_by_memory",
];

/// The BigQuery store on the emulator, from rows loaded by SQL `INSERT`, for the metrics
/// ingester-written rows cannot give. The ingester writes through insertAll, after which the
/// emulator cannot read `nodes[].capacity[]` or `workloads[].ageHours` field by field: any query
/// that does fails with "failed to scan rows: failed to convert struct from array" (the map and
/// its root cause: testenv/tests/it/bigquery.rs, `insert_all_read_back_map`), and so does
/// stats' whole job, which reads them in one scan. Every other metric, the totals and the
/// snapshots are compared on ingester-written rows below.
#[tokio::test]
async fn bigquery_computes_the_nested_record_metrics_as_sqlite_from_sql_loaded_rows() {
    let envs = envelopes(&fixture());
    let db = sqlite_fixture(&envs).await;
    let sqlite = SqliteStore::new(&db.path);
    let bq = BigQueryFixture::start().await;
    bq.insert(&envs).await;
    // A copy of every report, as insertAll's best-effort deduplication can leave: the view
    // removes it.
    bq.insert(&envs[..3]).await;
    let bigquery = bq.store().await;
    let clipped = Query {
        node_clip: 1,
        report_clip: 2,
        ..query(false)
    };
    for q in [clipped, query(false), query(true)] {
        let a = sqlite.compute(q).await.unwrap();
        let b = bigquery
            .compute(q)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", bq.emulator.log_tail(30)));
        eprintln!("bigquery-emulator: bytes processed {:?}", b.bytes_processed);
        assert_eq!(a.raw.totals, b.raw.totals, "totals ({q:?})");
        let (a, b) = (cells(&a.raw), cells(&b.raw));
        for id in NESTED_METRICS {
            assert_eq!(a.get(id), b.get(id), "{id} ({q:?})");
        }
    }
}

/// Inputs for the normalization functions: the fixture's strings and edge cases.
fn corpus() -> Vec<Value> {
    let texts = [
        "Ubuntu 24.04.1 LTS",
        "Ubuntu",
        "Container-Optimized OS from Google",
        "Bottlerocket OS 1.20.0 (aws-k8s-1.29)",
        "Flatcar Container Linux by Kinvolk 3815.2.0 (Oklo)",
        "Talos (v1.8.0)",
        "SUSE Linux Enterprise Server 15 SP5",
        "Windows Server 2022 Datacenter",
        "CBL-Mariner/Linux",
        "Something Else 1.0",
        "containerd://1.7.22",
        "containerd://abc",
        "cri-o://1.31.1",
        "docker://20.10.7",
        "6.8.0-1015-gke",
        "10.0.20348.2700",
        "v1.37.2",
        "v1.30.5-gke.1014001",
        "v1.31.1+k3s1",
        "v1.27.6+b49f9d1",
        "v2.0.0",
        "v1.0.0-dirty",
        "amd64",
        "sparc",
        "gce",
        "unknown",
        "nvidia.com/gpu",
        "alpha.kubernetes.io/nvidia-gpu",
        "gpu.intel.com/i915",
        "cpu",
        "4",
        "3500m",
        "15437428Ki",
        "16Gi",
        "1e3",
        "",
    ];
    let mut v: Vec<Value> = texts.iter().map(|s| Value::Text((*s).into())).collect();
    v.push(Value::Null);
    v
}

fn numbers() -> Vec<Value> {
    vec![
        Value::Null,
        Value::Real(0.0),
        Value::Real(0.5),
        Value::Real(1.0),
        Value::Real(3.5),
        Value::Real(4.0),
        Value::Real(200.0),
        Value::Real(-7.0),
        Value::Real(-1.0),
        Value::Real(5000.0),
        Value::Real(5001.0),
        Value::Real(15437428.0 * 1024.0),
        Value::Real(34359738368.0),
    ]
}

fn bq_literal(v: &Value, ty: SqlType) -> String {
    match (v, ty) {
        (Value::Null, SqlType::Text) => "CAST(NULL AS STRING)".into(),
        (Value::Null, _) => "CAST(NULL AS FLOAT64)".into(),
        (Value::Text(s), _) => format!("'{s}'"),
        (Value::Real(r), _) => format!("CAST({r:?} AS FLOAT64)"),
        (Value::Integer(i), _) => i.to_string(),
    }
}

fn from_json(v: &serde_json::Value, ty: SqlType) -> Value {
    match (v, ty) {
        (serde_json::Value::Null, _) => Value::Null,
        (serde_json::Value::String(s), SqlType::Text) => Value::Text(s.clone()),
        (serde_json::Value::String(s), SqlType::Integer) => Value::Integer(s.parse().unwrap()),
        (serde_json::Value::String(s), SqlType::Real) => Value::Real(s.parse().unwrap()),
        (other, _) => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn every_normalization_function_answers_alike_in_rust_sqlite_and_bigquery() {
    let bq = BigQueryFixture::start().await;
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    stats::store::sqlite::register(&conn).unwrap();
    // One query for every function: one column per function, one row per input.
    let text_fns: Vec<&Function> = FUNCTIONS
        .iter()
        .filter(|f| f.input() == SqlType::Text)
        .collect();
    let num_fns: Vec<&Function> = FUNCTIONS
        .iter()
        .filter(|f| f.input() == SqlType::Real)
        .collect();
    for (fns, inputs, ty) in [
        (text_fns, corpus(), SqlType::Text),
        (num_fns, numbers(), SqlType::Real),
    ] {
        let rows: Vec<String> = inputs
            .iter()
            .enumerate()
            .map(|(i, v)| format!("SELECT {i} AS i, {} AS x", bq_literal(v, ty)))
            .collect();
        let columns: Vec<String> = fns
            .iter()
            .map(|f| format!("{}(x) AS {}", f.name, f.name))
            .collect();
        let sql = format!(
            "{}\nSELECT i, {} FROM ({}) ORDER BY i",
            bigquery_prelude(),
            columns.join(", "),
            rows.join(" UNION ALL ")
        );
        let response = bq.query(&sql).await;
        let result_rows = response.rows.unwrap_or_default();
        assert_eq!(result_rows.len(), inputs.len());
        for (row, input) in result_rows.iter().zip(&inputs) {
            let cols = row.columns.as_ref().unwrap();
            for (f, cell) in fns.iter().zip(&cols[1..]) {
                let got = from_json(
                    cell.value.as_ref().unwrap_or(&serde_json::Value::Null),
                    f.output(),
                );
                let rust = f.eval(input);
                assert_eq!(got, rust, "{}({input:?}) in BigQuery vs Rust", f.name);
                let sqlite = stats::store::sqlite::eval_in_sqlite(&conn, f, input);
                assert_eq!(sqlite, rust, "{}({input:?}) in SQLite vs Rust", f.name);
            }
        }
    }
}

// ---- Ingester-written rows (insertAll) ----

/// The whole job's SQL (`query_sql`, stats' own text) with only the `UNION ALL` branches of
/// `keep` (and `window`, the totals): the CTEs of the others stay defined but unread.
fn subset_sql(full: &str, keep: &[&str]) -> String {
    let first = "\nSELECT 'window' AS metric,";
    let at = full
        .find(first)
        .expect("the job's SQL ends with one branch per query, window first");
    let (ctes, branches) = full.split_at(at + 1);
    let kept: Vec<&str> = branches
        .split("\nUNION ALL\n")
        .filter(|b| {
            let id = b
                .strip_prefix("SELECT '")
                .and_then(|b| b.split('\'').next())
                .expect("a branch starts with its metric");
            id == "window" || keep.contains(&id)
        })
        .collect();
    format!("{ctes}{}", kept.join("\nUNION ALL\n"))
}

/// Runs `sql` on the emulator and assembles its rows as the store does, or the emulator's
/// error.
async fn run_job(bq: &BigQueryFixture, sql: &str) -> Result<Raw, String> {
    let mut request = gcp_bigquery_client::model::query_request::QueryRequest::new(sql);
    request.use_legacy_sql = false;
    let response = bq
        .client
        .job()
        .query(bq.emulator.project(), request)
        .await
        .map_err(|e| e.to_string())?;
    let rows = response
        .rows
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            let cells: Vec<serde_json::Value> = row
                .columns
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.value.unwrap_or(serde_json::Value::Null))
                .collect();
            let text = |i: usize| cells[i].as_str().map(str::to_owned);
            let int = |i: usize| cells[i].as_str().map(|s| s.parse::<i64>().unwrap());
            stats::store::Row {
                metric: text(0).unwrap(),
                labels: [text(1), text(2), text(3)],
                clusters: int(4),
                nodes: int(5),
                max_nodes: int(6),
            }
        })
        .collect();
    stats::store::assemble(rows).map_err(|e| e.to_string())
}

/// Every metric, the totals and the snapshots, computed by stats' whole BigQuery job through the
/// view, from rows the ingester binary wrote through insertAll, equal SQLite's from the same
/// reports (the ingester again). The reports leave out nodes' capacity and workloads' ages
/// (optional on the wire): the emulator cannot read those back after insertAll (see
/// `bigquery_computes_the_nested_record_metrics_as_sqlite_from_sql_loaded_rows`), so here the
/// four metrics built on them count every node and workload as unknown, and are checked with
/// values only on SQL-loaded rows.
#[tokio::test]
async fn ingester_written_rows_without_nested_records_give_every_metric_as_sqlite() {
    let envs = without_nested_records(&envelopes(&fixture()));
    let (db, bq) = tokio::join!(sqlite_fixture(&envs), BigQueryFixture::ingested(&envs));
    let sqlite = SqliteStore::new(&db.path);
    let bigquery = bq.store().await;
    let clipped = Query {
        node_clip: 1,
        report_clip: 2,
        ..query(false)
    };
    let a = sqlite.compute(clipped).await.unwrap();
    let b = bigquery.compute(clipped).await.unwrap();
    assert_eq!(a.raw.totals, b.raw.totals, "clipped totals");
    assert_eq!(cells(&a.raw), cells(&b.raw), "clipped cells");
    for synthetic in [false, true] {
        let a = sqlite.compute(query(synthetic)).await.unwrap();
        let b = bigquery
            .compute(query(synthetic))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", bq.emulator.log_tail(30)));
        assert_eq!(a.raw.totals, b.raw.totals, "totals (synthetic {synthetic})");
        assert_eq!(
            cells(&a.raw),
            cells(&b.raw),
            "cells (synthetic {synthetic})"
        );
        if !synthetic {
            // The fixture's own figures, but for the four metrics the left-out fields feed.
            let got = cells(&b.raw);
            for (id, want) in expected() {
                if NESTED_METRICS.contains(&id.as_str()) {
                    assert_ne!(got.get(&id), Some(&want), "{id} reads the left-out fields");
                } else {
                    assert_eq!(got.get(&id), Some(&want), "{id}");
                }
            }
        }
        // The same noise (a fixed test seed) on the same cells: the same bytes.
        for (k, seed) in [(2, 1), (3, 2), (10, 3)] {
            let budget = Budget {
                min_clusters: k,
                ..BUDGET
            };
            let window = query(synthetic).window;
            let da = disclose(&a.raw, &budget, &mut StdRng::seed_from_u64(seed));
            let db = disclose(&b.raw, &budget, &mut StdRng::seed_from_u64(seed));
            let sa = Snapshot::new(window, synthetic, &da);
            let sb = Snapshot::new(window, synthetic, &db);
            assert_eq!(sa.to_json(), sb.to_json(), "snapshot k={k}");
        }
    }
}

/// What the emulator can compute from the fixture's full reports as the ingester wrote them:
/// stats' whole job fails (it reads `nodes[].capacity[]` and `workloads[].ageHours`, which the
/// emulator cannot read back after insertAll), and so does every metric built on the window's
/// nodes or workloads, since the emulator's SQLite computes each of those tables whole; the
/// totals and the metrics of report-level columns, queried by stats' own SQL with only their
/// `UNION ALL` branches, give the fixture's figures.
#[tokio::test]
async fn ingester_written_rows_give_the_report_level_metrics_and_nothing_built_on_nested_records() {
    const MANGLED: &str = "failed to scan rows: failed to convert struct from array";
    let envs = envelopes(&fixture());
    let bq = BigQueryFixture::ingested(&envs).await;
    let store = bq.store().await;
    let job = store.sql(query(false));

    // Metrics that read only win_reports (report-level columns and ARRAY_LENGTH(nodes)).
    let nested_tables = ["win_nodes", "win_workloads", "win_accel", "win_cluster_"];
    let report_level: Vec<&str> = stats::store::queries(&query(false))
        .filter(|(id, sql)| *id != "window" && !nested_tables.iter().any(|t| sql.contains(t)))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        report_level,
        [
            "clusters_by_schema_version",
            "clusters_by_volunteer_version",
            "clusters_by_kubernetes_minor",
            "clusters_by_kubernetes_patch",
            "clusters_by_distribution",
            "clusters_by_node_count",
            "clusters_by_namespaces",
        ]
    );
    let raw = run_job(&bq, &subset_sql(&job, &report_level))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", bq.emulator.log_tail(30)));
    assert_eq!(
        (raw.totals.clusters, raw.totals.reports, raw.totals.nodes),
        (8, 10, 19)
    );
    let got = cells(&raw);
    let want = expected();
    assert_eq!(got.keys().collect::<Vec<_>>(), {
        let mut ids = report_level.clone();
        ids.sort();
        ids
    });
    for id in &report_level {
        assert_eq!(got.get(*id), want.get(*id), "{id}");
    }

    // Each of these fails, though neither reads a nested record itself: the whole job, a node
    // metric and a workload metric.
    let whole = store.compute(query(false)).await;
    let node_metric = run_job(&bq, &subset_sql(&job, &["nodes_by_os"])).await;
    let workload_metric = run_job(&bq, &subset_sql(&job, &["clusters_using_workload_kind"])).await;
    let fixed = "the emulator now computes it from ingester-written rows: an upgrade fixed \
                 insertAll of nested records (testenv's insert_all_read_back_map says which); \
                 compare it here with the fixture's figures";
    assert!(
        whole
            .as_ref()
            .is_err_and(|e| e.to_string().contains(MANGLED)),
        "stats' whole job: {fixed}: {:?}",
        whole.map(|c| c.raw.totals)
    );
    assert!(
        node_metric.as_ref().is_err_and(|e| e.contains(MANGLED)),
        "nodes_by_os: {fixed}: {node_metric:?}"
    );
    assert!(
        workload_metric.as_ref().is_err_and(|e| e.contains(MANGLED)),
        "clusters_using_workload_kind: {fixed}: {workload_metric:?}"
    );
}
