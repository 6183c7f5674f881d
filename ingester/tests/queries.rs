//! The example queries in `queries/*.sql` (also in the README), run against a fixture database
//! with known answers.
#![allow(clippy::unwrap_used)]

use ingester::row::{Row, from_envelope};
use ingester::sink::sqlite::{open_connection, write_batch};
use report::{Envelope, ReportId};
use rusqlite::Connection;

/// A node: OS image, architecture, and an optional extended resource (name, value).
type NodeSpec<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

fn row(cluster: &str, master: &str, days_ago: i64, nodes: &[NodeSpec<'_>]) -> Row {
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, (os, arch, gpu))| {
            let mut capacity = vec![serde_json::json!({"resource": "cpu", "value": "4"})];
            if let Some((resource, value)) = gpu {
                capacity.push(serde_json::json!({"resource": resource, "value": value}));
            }
            serde_json::json!({"id": format!("node{i}"), "osImage": os, "architecture": arch, "capacity": capacity})
        })
        .collect();
    let report = serde_json::json!({"version": "v2.0.0", "clusterID": cluster, "masterVersion": master, "nodes": nodes});
    let valid = report::decode(report.to_string().as_bytes()).unwrap();
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days_ago);
    let env = Envelope::new(ReportId::random(), at, valid);
    from_envelope(Envelope::decode(&env.encode()).unwrap())
}

fn fixture() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("fixture.sqlite")).unwrap();
    let ubuntu = "Ubuntu 24.04.1 LTS";
    let rows = vec![
        // Cluster a: upgraded from 1.30 (40 days ago) to 1.37 (yesterday); one GPU node now.
        row("a", "v1.30.4", 40, &[(ubuntu, "amd64", None)]),
        row(
            "a",
            "v1.37.2",
            1,
            &[
                (ubuntu, "amd64", Some(("nvidia.com/gpu", "1"))),
                (ubuntu, "amd64", None),
            ],
        ),
        // Cluster b: 1.37, an ARM node whose legacy GPU resource is zero.
        row(
            "b",
            "v1.37.1-eks-a737599",
            2,
            &[(
                "Bottlerocket OS 1.20.0",
                "arm64",
                Some(("alpha.kubernetes.io/nvidia-gpu", "0")),
            )],
        ),
        // Cluster c: 1.36.
        row("c", "v1.36.0", 10, &[(ubuntu, "amd64", None)]),
        // Cluster d: silent for 60 days.
        row(
            "d",
            "v1.29.1",
            60,
            &[("Debian GNU/Linux 12 (bookworm)", "amd64", None)],
        ),
    ];
    write_batch(&mut conn, &rows).unwrap();
    (dir, conn)
}

fn run(conn: &Connection, sql: &str) -> Vec<Vec<String>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let columns = stmt.column_count();
    stmt.query_map([], |r| {
        (0..columns)
            .map(|i| {
                r.get_ref(i).map(|v| match v {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                    rusqlite::types::ValueRef::Real(f) => f.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(_) => "<blob>".to_owned(),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[test]
fn clusters_per_minor_version_counts_each_recent_cluster_once_by_its_latest_report() {
    let (_dir, conn) = fixture();
    let got = run(
        &conn,
        include_str!("../queries/clusters_per_minor_version.sql"),
    );
    assert_eq!(got, table(&[&["1.37", "2"], &["1.36", "1"]]));
}

#[test]
fn nodes_by_os_image_and_architecture_uses_each_clusters_latest_report() {
    let (_dir, conn) = fixture();
    let got = run(&conn, include_str!("../queries/nodes_by_os_image.sql"));
    assert_eq!(
        got,
        table(&[
            &["Ubuntu 24.04.1 LTS", "amd64", "3"],
            &["Bottlerocket OS 1.20.0", "arm64", "1"],
            &["Debian GNU/Linux 12 (bookworm)", "amd64", "1"],
        ])
    );
}

#[test]
fn share_of_clusters_with_gpus_ignores_zero_capacity() {
    let (_dir, conn) = fixture();
    let got = run(
        &conn,
        include_str!("../queries/share_of_clusters_with_gpus.sql"),
    );
    assert_eq!(got, table(&[&["25"]]));
}
