//! The rules stats takes from the wire contract (`report::version`, `report::quantity`) answer
//! alike wherever they run: in Rust (the rule itself), in SQLite (the registered functions the
//! store calls) and in BigQuery (the generated temp functions, on the emulator), and through
//! both stores' windows end to end.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use report::version::GitVersion;
use stats::normalize::{Function, Value, bigquery_prelude};
use stats::store::sqlite::SqliteStore;
use stats::store::{Query, Store, Window};

use crate::common::*;

/// Version strings where parsers tend to disagree.
const VERSIONS: &[&str] = &[
    "v2.0.1",
    "v1.37.2-gke.1",
    "1.29",
    "v1.28+k3s1",
    "v1",
    "v01.2",
    "garbage",
    "v1.37.2",
    "v1.30.4-eks-a737599",
    "v1.27.6+b49f9d1",
    "v0.21.4",
    "v1.999.9999",
    "v1.1000.0",
    "v1.2.10000",
    "v1.02.3",
    "v1.37.2.1",
    "v1.37.2foo",
    "v1.37.",
    "V1.2.3",
    "",
];

/// Capacity values, `1e9` first: a valid quantity the old pattern called `unknown`.
const QUANTITIES: &[&str] = &[
    "1e9",
    "16e9",
    "1E3",
    "7E",
    "7Ei",
    "4",
    "3500m",
    "100n",
    "15437428Ki",
    "16Gi",
    "1.5e+10",
    ".5",
    "5.",
    "+2",
    "-1",
    "-0",
    "1e999",
    "1e",
    "1Ki ",
    "sixteen",
    "",
];

/// What the report's rule says each version function returns.
fn by_the_rule(function: &str, input: &str) -> Value {
    let v = GitVersion::parse(input);
    let label = |s: Option<String>| Value::Text(s.unwrap_or_else(|| "other".to_owned()));
    match function {
        "kube_minor" => label(v.map(|v| v.minor().to_string())),
        "kube_patch" => label(v.filter(|v| v.patch.is_some()).map(|v| v.to_string())),
        "kube_major" => v.map_or(Value::Null, |v| Value::Integer(v.major.into())),
        "kube_minor_number" => v.map_or(Value::Null, |v| Value::Integer(v.minor.into())),
        other => panic!("no rule for {other}"),
    }
}

/// `f(x)` for every input, in BigQuery.
async fn in_bigquery(bq: &BigQueryFixture, sql_of: &str, inputs: &[&str]) -> Vec<Value> {
    let rows: Vec<String> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| format!("SELECT {i} AS i, '{s}' AS x"))
        .collect();
    let sql = format!(
        "{}\nSELECT i, {sql_of} AS y FROM ({}) ORDER BY i",
        bigquery_prelude(),
        rows.join(" UNION ALL ")
    );
    let response = bq.query(&sql).await;
    let rows = response.rows.unwrap_or_default();
    assert_eq!(rows.len(), inputs.len());
    rows.iter()
        .map(|row| {
            let cell = &row.columns.as_ref().unwrap()[1];
            match cell.value.as_ref().unwrap_or(&serde_json::Value::Null) {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::String(s) => Value::Text(s.clone()),
                other => panic!("unexpected {other}"),
            }
        })
        .collect()
}

/// A BigQuery result as the type the function returns (the API sends every value as text).
fn typed(v: Value, like: &Value) -> Value {
    match (v, like) {
        (Value::Text(s), Value::Integer(_)) => Value::Integer(s.parse().unwrap()),
        (Value::Text(s), Value::Real(_)) => Value::Real(s.parse().unwrap()),
        (v, _) => v,
    }
}

#[tokio::test]
async fn the_version_rule_answers_alike_in_rust_sqlite_and_bigquery() {
    let bq = BigQueryFixture::start().await;
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    stats::store::sqlite::register(&conn).unwrap();
    for name in [
        "kube_minor",
        "kube_patch",
        "kube_major",
        "kube_minor_number",
    ] {
        let f = Function::named(name).unwrap();
        let bigquery = in_bigquery(&bq, &format!("{name}(x)"), VERSIONS).await;
        for (input, bigquery) in VERSIONS.iter().zip(bigquery) {
            let rule = by_the_rule(name, input);
            let text = Value::Text((*input).to_owned());
            let sqlite = stats::store::sqlite::eval_in_sqlite(&conn, f, &text);
            assert_eq!(sqlite, rule, "{name}({input:?}) in SQLite");
            assert_eq!(
                typed(bigquery, &rule),
                rule,
                "{name}({input:?}) in BigQuery"
            );
        }
    }
    // The decision the rule documents: a future major is counted as itself.
    assert_eq!(
        by_the_rule("kube_minor", "v2.0.1"),
        Value::Text("2.0".into())
    );
}

#[tokio::test]
async fn capacities_are_read_by_the_report_grammar_alike_in_rust_sqlite_and_bigquery() {
    let bq = BigQueryFixture::start().await;
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    stats::store::sqlite::register(&conn).unwrap();
    let quantity = Function::named("quantity").unwrap();
    let memory = Function::named("memory_bucket").unwrap();
    let values = in_bigquery(&bq, "quantity(x)", QUANTITIES).await;
    let buckets = in_bigquery(&bq, "memory_bucket(quantity(x))", QUANTITIES).await;
    for ((input, value), bucket) in QUANTITIES.iter().zip(values).zip(buckets) {
        let text = Value::Text((*input).to_owned());
        // The report's grammar, less what a capacity cannot be (negative, beyond an f64).
        let rule = report::quantity::value(input)
            .filter(|v| v.is_finite() && !input.starts_with('-'))
            .map_or(Value::Null, Value::Real);
        assert_eq!(quantity.eval(&text), rule, "quantity({input:?}) in Rust");
        let sqlite = stats::store::sqlite::eval_in_sqlite(&conn, quantity, &text);
        assert_eq!(sqlite, rule, "quantity({input:?}) in SQLite");
        assert_eq!(
            typed(value, &Value::Real(0.0)),
            rule,
            "quantity({input:?}) in BigQuery"
        );
        let rust_bucket = memory.eval(&rule);
        assert_eq!(bucket, rust_bucket, "memory_bucket({input:?}) in BigQuery");
    }
    assert_eq!(
        memory.eval(&quantity.eval(&Value::Text("1e9".into()))),
        Value::Text("0-2 GiB".into()),
        "1e9 bytes of memory are bucketed by their value"
    );
}

/// `metric -> ["labels=clusters[/nodes]"]` for the metrics named.
fn some_cells(raw: &stats::disclose::Raw, metrics: &[&str]) -> BTreeMap<String, Vec<String>> {
    metrics
        .iter()
        .map(|id| {
            let mut rows: Vec<String> = raw.cells[*id]
                .iter()
                .map(|c| {
                    let mut s = format!("{}={}", c.labels.join("/"), c.clusters);
                    if let Some(n) = c.nodes {
                        s.push_str(&format!("/{n}"));
                    }
                    s
                })
                .collect();
            rows.sort();
            ((*id).to_owned(), rows)
        })
        .collect()
}

#[tokio::test]
async fn both_stores_count_a_future_major_and_an_exponent_by_the_rules() {
    let mut future = ClusterSpec::new("future-major");
    future.master = Some("v2.0.1");
    future.nodes = vec![
        (
            1,
            NodeSpec {
                kubelet: Some("v2.0.1"),
                memory: Some("1e9"),
                ..NodeSpec::default()
            },
        ),
        (
            1,
            NodeSpec {
                kubelet: Some("v1.37.2"),
                memory: Some("16e9"),
                ..NodeSpec::default()
            },
        ),
    ];
    let mut leading_zero = ClusterSpec::new("leading-zero");
    leading_zero.master = Some("v01.37.2");
    let envs = envelopes(&[future, leading_zero]);
    let db = sqlite_fixture(&envs).await;
    let bq = BigQueryFixture::start().await;
    bq.insert(&envs).await;
    let query = Query {
        window: Window {
            date: day(),
            days: 28,
        },
        include_synthetic: false,
        node_clip: 20,
        report_clip: 28,
    };
    let metrics = [
        "clusters_by_kubernetes_minor",
        "clusters_by_version_skew",
        "nodes_by_version_skew",
        "nodes_by_memory",
    ];
    let sqlite = SqliteStore::new(&db.path).compute(query).await.unwrap();
    let got = some_cells(&sqlite.raw, &metrics);
    let want: BTreeMap<String, Vec<String>> = [
        ("clusters_by_kubernetes_minor", vec!["2.0=1", "other=1"]),
        // The v2 cluster's v1 kubelet has no skew in minors; its v2 kubelet has 0, the
        // worst node. The other cluster's API server follows no rule: unknown.
        ("clusters_by_version_skew", vec!["0=1", "unknown=1"]),
        ("nodes_by_version_skew", vec!["0=1/1", "unknown=2/4"]),
        // 1e9 bytes is under 2 GiB, 16e9 and 16393236Ki (the default) between 8 and 16.
        ("nodes_by_memory", vec!["0-2 GiB=1/1", "8-16 GiB=2/4"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(got, want);
    let bigquery = bq.store().await.compute(query).await.unwrap();
    assert_eq!(some_cells(&bigquery.raw, &metrics), want, "BigQuery");
    assert_eq!(sqlite.raw, bigquery.raw, "every cell alike");
}
