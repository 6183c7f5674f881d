//! The example queries in `queries/` (also in the README), run against fixtures with known
//! answers: `queries/*.sql` against a SQLite file, `queries/bigquery/*.sql` against the
//! BigQuery emulator, through the deduplicating view of a table that holds some reports twice.
//! Both dialects answer the same questions, so one fixture and one set of answers serve both.
#![allow(clippy::unwrap_used)]

mod common;

use ingester::config::{Credentials, TableRef};
use ingester::row::{Row, from_envelope};
use ingester::sink::bigquery::{BigQuerySink, Limits, SCHEMA_JSON};
use ingester::sink::sqlite::{open_connection, write_batch};
use report::{Envelope, ReportId};
use rusqlite::Connection;
use serde_json::Value;

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
    // Whole seconds: what SQLite stores, and a TIMESTAMP literal BigQuery takes.
    let now = jiff::Timestamp::now().as_second();
    let at = jiff::Timestamp::from_second(now - 24 * 3600 * days_ago).unwrap();
    let env = Envelope::new(ReportId::random(), at, valid);
    from_envelope(Envelope::decode(&env.encode()).unwrap())
}

fn fixture_rows() -> Vec<Row> {
    let ubuntu = "Ubuntu 24.04.1 LTS";
    vec![
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
        // Cluster d: silent for 60 days, so outside every query's 30 days.
        row(
            "d",
            "v1.29.1",
            60,
            &[("Debian GNU/Linux 12 (bookworm)", "amd64", None)],
        ),
    ]
}

fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// The example queries, by file name, with their answers on the fixture.
fn examples() -> Vec<(&'static str, Vec<Vec<String>>)> {
    vec![
        (
            "clusters_per_minor_version.sql",
            table(&[&["1.37", "2"], &["1.36", "1"]]),
        ),
        (
            "nodes_by_os_image.sql",
            table(&[
                &["Ubuntu 24.04.1 LTS", "amd64", "3"],
                &["Bottlerocket OS 1.20.0", "arm64", "1"],
            ]),
        ),
        ("share_of_clusters_with_gpus.sql", table(&[&["33.3"]])),
    ]
}

fn answer(name: &str) -> Vec<Vec<String>> {
    examples()
        .into_iter()
        .find(|(file, _)| *file == name)
        .map(|(_, answer)| answer)
        .unwrap()
}

fn sqlite_query(name: &str) -> &'static str {
    match name {
        "clusters_per_minor_version.sql" => {
            include_str!("../queries/clusters_per_minor_version.sql")
        }
        "nodes_by_os_image.sql" => include_str!("../queries/nodes_by_os_image.sql"),
        "share_of_clusters_with_gpus.sql" => {
            include_str!("../queries/share_of_clusters_with_gpus.sql")
        }
        other => panic!("no SQLite query {other}"),
    }
}

fn bigquery_query(name: &str) -> &'static str {
    match name {
        "clusters_per_minor_version.sql" => {
            include_str!("../queries/bigquery/clusters_per_minor_version.sql")
        }
        "nodes_by_os_image.sql" => include_str!("../queries/bigquery/nodes_by_os_image.sql"),
        "share_of_clusters_with_gpus.sql" => {
            include_str!("../queries/bigquery/share_of_clusters_with_gpus.sql")
        }
        other => panic!("no BigQuery query {other}"),
    }
}

fn sqlite_fixture() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_connection(&dir.path().join("fixture.sqlite")).unwrap();
    write_batch(&mut conn, &fixture_rows()).unwrap();
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

#[test]
fn clusters_per_minor_version_counts_each_recent_cluster_once_by_its_latest_report() {
    let (_dir, conn) = sqlite_fixture();
    let got = run(&conn, sqlite_query("clusters_per_minor_version.sql"));
    assert_eq!(got, answer("clusters_per_minor_version.sql"));
}

#[test]
fn nodes_by_os_image_and_architecture_uses_each_recent_clusters_latest_report() {
    let (_dir, conn) = sqlite_fixture();
    let got = run(&conn, sqlite_query("nodes_by_os_image.sql"));
    assert_eq!(got, answer("nodes_by_os_image.sql"));
}

#[test]
fn share_of_clusters_with_gpus_ignores_zero_capacity() {
    let (_dir, conn) = sqlite_fixture();
    let got = run(&conn, sqlite_query("share_of_clusters_with_gpus.sql"));
    assert_eq!(got, answer("share_of_clusters_with_gpus.sql"));
}

#[test]
fn every_example_query_is_in_the_readme_as_committed() {
    let readme = include_str!("../../README.md");
    for (name, _) in examples() {
        for (dialect, sql) in [
            ("SQLite", sqlite_query(name)),
            ("BigQuery", bigquery_query(name)),
        ] {
            assert!(
                readme.contains(sql.trim()),
                "the README lacks the {dialect} query {name} as committed"
            );
        }
    }
}

/// A BigQuery literal of `value` as a value of `field` (a column of the committed schema), with
/// its type spelled out wherever the value alone does not give it (NULL, an empty array).
fn literal(field: &Value, value: &Value, element: bool) -> String {
    if field["mode"] == "REPEATED" && !element {
        let items = value.as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return format!("CAST([] AS {})", sql_type(field, false));
        }
        let items: Vec<String> = items.iter().map(|v| literal(field, v, true)).collect();
        return format!("[{}]", items.join(", "));
    }
    if value.is_null() {
        return format!("CAST(NULL AS {})", sql_type(field, true));
    }
    match field["type"].as_str().unwrap() {
        "RECORD" => {
            let parts: Vec<String> = field["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let name = f["name"].as_str().unwrap();
                    format!(
                        "{} AS {name}",
                        literal(f, value.get(name).unwrap_or(&Value::Null), false)
                    )
                })
                .collect();
            format!("STRUCT({})", parts.join(", "))
        }
        // A JSON string is a valid BigQuery string literal (the same escapes).
        "STRING" => value.to_string(),
        "TIMESTAMP" => format!("TIMESTAMP {value}"),
        "INTEGER" | "BOOLEAN" => value.to_string(),
        other => panic!("no literal for {other}"),
    }
}

fn sql_type(field: &Value, element: bool) -> String {
    let scalar = match field["type"].as_str().unwrap() {
        "RECORD" => {
            let fields: Vec<String> = field["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| format!("{} {}", f["name"].as_str().unwrap(), sql_type(f, false)))
                .collect();
            format!("STRUCT<{}>", fields.join(", "))
        }
        "STRING" => "STRING".into(),
        "TIMESTAMP" => "TIMESTAMP".into(),
        "INTEGER" => "INT64".into(),
        "BOOLEAN" => "BOOL".into(),
        other => panic!("no type for {other}"),
    };
    if field["mode"] == "REPEATED" && !element {
        format!("ARRAY<{scalar}>")
    } else {
        scalar
    }
}

/// A DML INSERT of `rows` into `table`, every column of the committed schema. The emulator
/// stores `nodes[].capacity[]` correctly only this way, not through insertAll (see
/// testenv/tests/bigquery.rs).
fn insert_statement(table: &str, rows: &[Row]) -> String {
    let schema: Value = serde_json::from_str(SCHEMA_JSON).unwrap();
    let fields = schema.as_array().unwrap();
    let columns: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    let values: Vec<String> = rows
        .iter()
        .map(|row| {
            let json = serde_json::to_value(row).unwrap();
            let cells: Vec<String> = fields
                .iter()
                .map(|f| {
                    let name = f["name"].as_str().unwrap();
                    literal(f, json.get(name).unwrap_or(&Value::Null), false)
                })
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO `{table}` ({}) VALUES {}",
        columns.join(", "),
        values.join(",\n")
    )
}

/// Runs `sql` on the emulator: its rows as strings, or the error it answered.
async fn query(bq: &testenv::BigQuery, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let response: Value = reqwest::Client::new()
        .post(format!(
            "{}/bigquery/v2/projects/{}/queries",
            bq.endpoint(),
            bq.project()
        ))
        .json(&serde_json::json!({"query": sql, "useLegacySql": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if let Some(error) = response.get("error") {
        return Err(error.to_string());
    }
    Ok(response["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r["f"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["v"].as_str().unwrap_or("NULL").to_owned())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn the_bigquery_queries_read_the_view_and_answer_as_the_sqlite_ones_despite_duplicate_rows() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let reports = TableRef {
        project: bq.project().into(),
        dataset: "queries".into(),
        table: "reports".into(),
    };
    let endpoint = format!("{}/bigquery/v2", bq.endpoint());
    let client = BigQuerySink::client(Some(&endpoint), Some(&Credentials::None))
        .await
        .unwrap();
    let limits = Limits {
        max_rows: 500,
        max_bytes: 5_000_000,
    };
    BigQuerySink::new(client, reports.clone(), limits)
        .ensure_table()
        .await
        .unwrap();

    // Every report once, and the recent ones again, as insertAll retries leave them.
    let rows = fixture_rows();
    let mut stored = rows.clone();
    stored.extend(rows[1..4].iter().cloned());
    let name = format!("{}.{}.{}", reports.project, reports.dataset, reports.table);
    query(&bq, &insert_statement(&name, &stored)).await.unwrap();
    let copies = query(&bq, &format!("SELECT COUNT(*) FROM `{name}`"))
        .await
        .unwrap();
    assert_eq!(copies, table(&[&["8"]]), "the duplicates are in the table");

    for (file, answer) in examples() {
        let sql = bigquery_query(file).replace("PROJECT.DATASET.TABLE", &name);
        assert!(
            sql.contains(&format!("`{name}_deduplicated`")) && sql.contains("WHERE receivedAt >="),
            "{file} reads the view, filtered on receivedAt"
        );
        let got = query(&bq, &sql)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(got, answer, "{file}");
    }
}
