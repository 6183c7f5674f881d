//! Shared test plumbing: fixture populations of reports, and the two stores filled with them.
//!
//! - SQLite is filled the way production fills it: envelopes published to a real nats-server
//!   (stream `SPARTAKUS_REPORTS`, created as the gateway creates it) and written by the real
//!   ingester binary. Nothing here writes the ingester's rows itself.
//! - BigQuery (the emulator) is filled the same way by [`BigQueryFixture::ingested`]: the
//!   ingester binary creates the table and view and writes through insertAll. After insertAll,
//!   bigquery-emulator v0.8.1 cannot read a record nested in a record field by field
//!   (`nodes[].capacity[]`, `workloads[].ageHours`, `workloads[].perNamespace[]`): "failed to
//!   scan rows: failed to convert struct from array" (the map: testenv/tests/it/bigquery.rs).
//!   So for the metrics built on those, [`BigQueryFixture::insert`] loads the same reports with
//!   DML `INSERT … VALUES`, generated from the committed schema `stored/schema/bigquery.json`,
//!   which stores them correctly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use gcp_bigquery_client::model::view_definition::ViewDefinition;
use report::{Envelope, ReportId};
use serde_json::{Value, json};
use stats::store::bigquery::{BigQueryStore, Credentials, TableRef};
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(120);

// ---- Populations ----

/// One node's fields as a volunteer sends them.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub os_image: Option<&'static str>,
    pub kernel: Option<&'static str>,
    pub arch: Option<&'static str>,
    pub runtime: Option<&'static str>,
    pub kubelet: Option<&'static str>,
    pub cloud: Option<&'static str>,
    pub cpu: Option<&'static str>,
    pub memory: Option<&'static str>,
    pub gpus: Option<(&'static str, &'static str)>,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec {
            os_image: Some("Ubuntu 24.04.1 LTS"),
            kernel: Some("6.8.0-1015-gke"),
            arch: Some("amd64"),
            runtime: Some("containerd://1.7.22"),
            kubelet: Some("v1.37.2"),
            cloud: Some("gce"),
            cpu: Some("4"),
            memory: Some("16393236Ki"),
            gpus: None,
        }
    }
}

/// (kind, total, median age in hours).
pub type Workload = (&'static str, u64, Option<u64>);

/// One cluster's latest report (and how many earlier ones it sent).
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub id: String,
    pub master: Option<&'static str>,
    /// `(count, node)`: groups of identical nodes.
    pub nodes: Vec<(usize, NodeSpec)>,
    /// v2 fields: namespaces and (kind, total, median age hours).
    pub v2: Option<(Option<u64>, Vec<Workload>)>,
    pub synthetic: bool,
    pub volunteer: &'static str,
    /// Earlier reports of the same cluster in the window (with other nodes: they must not
    /// count).
    pub earlier: usize,
    /// Day of the latest report, as an offset back from the window's last day.
    pub days_ago: i64,
}

impl ClusterSpec {
    pub fn new(id: impl Into<String>) -> Self {
        ClusterSpec {
            id: id.into(),
            master: Some("v1.37.2"),
            nodes: vec![(3, NodeSpec::default())],
            v2: Some((
                Some(12),
                vec![
                    ("Pod", 40, Some(30)),
                    ("Service", 10, Some(500)),
                    ("Deployment", 8, Some(500)),
                    ("StatefulSet", 0, None),
                    ("DaemonSet", 3, Some(2000)),
                    ("Job", 0, None),
                    ("CronJob", 0, None),
                ],
            )),
            synthetic: false,
            volunteer: "v0.1.0",
            earlier: 0,
            days_ago: 1,
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.iter().map(|(n, _)| n).sum()
    }
}

/// The last day of the windows the fixtures are made for: yesterday (UTC), so the reports are
/// recent enough for the ingester to keep them (it deletes reports older than its retention).
pub fn day() -> jiff::civil::Date {
    stats::run::last_complete_day(jiff::Timestamp::now())
}

/// A report's JSON for `c` (the latest one when `stale` is false).
pub fn report_json(c: &ClusterSpec, stale: bool) -> Value {
    let mut nodes = Vec::new();
    let groups: Vec<(usize, NodeSpec)> = if stale {
        // An earlier report: different nodes, which the latest one replaces.
        vec![(
            2,
            NodeSpec {
                os_image: Some("Debian GNU/Linux 11 (bullseye)"),
                ..NodeSpec::default()
            },
        )]
    } else {
        c.nodes.clone()
    };
    for (n, spec) in &groups {
        for _ in 0..*n {
            let i = nodes.len();
            let mut node = json!({"id": format!("{:032x}", i + 1)});
            let mut set = |k: &str, v: Option<&str>| {
                if let Some(v) = v {
                    node[k] = v.into();
                }
            };
            set("osImage", spec.os_image);
            set("kernelVersion", spec.kernel);
            set("architecture", spec.arch);
            set("containerRuntimeVersion", spec.runtime);
            set("kubeletVersion", spec.kubelet);
            set("cloudProvider", spec.cloud);
            set("operatingSystem", Some("linux"));
            let mut capacity = Vec::new();
            if let Some(cpu) = spec.cpu {
                capacity.push(json!({"resource": "cpu", "value": cpu}));
            }
            if let Some(memory) = spec.memory {
                capacity.push(json!({"resource": "memory", "value": memory}));
            }
            capacity.push(json!({"resource": "pods", "value": "110"}));
            if let Some((resource, value)) = spec.gpus {
                capacity.push(json!({"resource": resource, "value": value}));
            }
            node["capacity"] = capacity.into();
            nodes.push(node);
        }
    }
    let mut r = json!({
        "version": c.volunteer,
        "timestamp": "1764000000",
        "clusterID": c.id,
        "nodes": nodes,
    });
    if let Some(master) = c.master {
        r["masterVersion"] = master.into();
    }
    let mut extensions = vec![json!({"name": "example.com/owner", "value": "team-secret-value"})];
    if c.synthetic {
        extensions.push(json!({"name": "spartakus.dev/synthetic", "value": "true"}));
    }
    r["extensions"] = extensions.into();
    if let Some((namespaces, workloads)) = &c.v2 {
        r["schemaVersion"] = 2.into();
        if let Some(ns) = namespaces {
            r["namespaces"] = (*ns).into();
        }
        let wl: Vec<Value> = workloads
            .iter()
            .map(|(kind, total, median)| {
                let mut w = json!({"kind": kind, "total": total, "perNamespace": per_namespace(*total, namespaces.unwrap_or(0))});
                if let Some(m) = median {
                    w["ageHours"] = json!({"median": m, "p90": m * 2});
                }
                w
            })
            .collect();
        r["workloads"] = wl.into();
        if namespaces.is_none() {
            r["skipped"] = json!([{"section": "namespaces", "reason": "forbidden"}]);
        }
    }
    r
}

/// A histogram consistent with `total` objects in `namespaces` namespaces (all in one).
fn per_namespace(total: u64, namespaces: u64) -> Vec<Value> {
    let mut counts = [0u64; 8];
    if namespaces > 0 {
        let i = report::bucket_index(total);
        counts[i] += 1;
        counts[0] += namespaces - 1;
    }
    report::BUCKETS
        .iter()
        .zip(counts)
        .map(|((min, max), n)| {
            let mut b = json!({"min": min, "namespaces": n});
            if let Some(max) = max {
                b["max"] = (*max).into();
            }
            b
        })
        .collect()
}

/// An envelope: (report ID, receivedAt, the envelope's JSON bytes, the report's JSON).
#[derive(Debug, Clone)]
pub struct Env {
    pub id: ReportId,
    pub received_at: jiff::Timestamp,
    pub bytes: Vec<u8>,
    pub report: Value,
}

/// Every report of a population: each cluster's earlier reports, then its latest.
pub fn envelopes(clusters: &[ClusterSpec]) -> Vec<Env> {
    let mut out = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        for e in 0..=c.earlier {
            let stale = e < c.earlier;
            let days_ago = c.days_ago + (c.earlier - e) as i64;
            let json = report_json(c, stale);
            let valid = report::decode(json.to_string().as_bytes())
                .unwrap_or_else(|err| panic!("fixture report {}: {err}", c.id));
            let id = ReportId::random();
            let at = day()
                .checked_sub(jiff::Span::new().days(days_ago))
                .unwrap()
                .at(12, (i % 60) as i8, (e % 60) as i8, 0)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .unwrap()
                .timestamp();
            out.push(Env {
                id,
                received_at: at,
                bytes: Envelope::new(id, at, valid).encode(),
                report: json,
            });
        }
    }
    out
}

/// `envs` with every node's `capacity` and every workload's `ageHours` left out (both are
/// optional on the wire), under the same report IDs and receipt times: reports whose rows hold
/// no record nested in a record, which the BigQuery emulator reads back after insertAll.
pub fn without_nested_records(envs: &[Env]) -> Vec<Env> {
    envs.iter()
        .map(|e| {
            let mut report = e.report.clone();
            for (list, field) in [("nodes", "capacity"), ("workloads", "ageHours")] {
                for item in report[list].as_array_mut().into_iter().flatten() {
                    item.as_object_mut().unwrap().remove(field);
                }
            }
            let valid = report::decode(report.to_string().as_bytes()).unwrap();
            Env {
                bytes: Envelope::new(e.id, e.received_at, valid).encode(),
                report,
                ..e.clone()
            }
        })
        .collect()
}

// ---- SQLite, through NATS and the real ingester ----

/// A SQLite file the real ingester wrote; the folder is removed on drop.
pub struct SqliteFixture {
    pub dir: TempDir,
    pub path: PathBuf,
}

/// Publishes `envs` to a fresh nats-server and lets the ingester binary write them to SQLite.
pub async fn sqlite_fixture(envs: &[Env]) -> SqliteFixture {
    let dir = TempDir::with_prefix("spartakus-stats-").unwrap();
    let path = dir.path().join("spartakus.sqlite");
    let sink = format!("sqlite:{}", path.display());
    ingest(envs, &sink, &[], "SQLite", || {
        let path = path.clone();
        async move { count_reports(&path) }
    })
    .await;
    SqliteFixture { dir, path }
}

/// Publishes `envs` to a fresh nats-server (the reports stream as the gateway creates it, on
/// the ingester's default queue) and runs the ingester binary into `sink` with `args` until
/// `stored()` counts every report; the ingester stops when this returns.
async fn ingest<F, Fut>(envs: &[Env], sink: &str, args: &[&str], what: &str, stored: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let nats = testenv::Nats::start().await.expect("nats-server starts");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let queue = report::queue::Topology::default();
    js.get_or_create_stream(stream::Config {
        name: queue.reports.name.clone(),
        subjects: vec![queue.reports.subject.clone()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(7200),
        max_message_size: 16 * 1024 * 1024,
        ..Default::default()
    })
    .await
    .unwrap();
    let ingester = testenv::Launch::ingester(&nats.url(), sink)
        .args(args)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for chunk in envs.chunks(200) {
        let mut acks = Vec::new();
        for e in chunk {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", e.id.to_string().as_str());
            acks.push(
                js.publish_with_headers(
                    queue.reports.subject.clone(),
                    headers,
                    e.bytes.clone().into(),
                )
                .await
                .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let n = envs.len() as i64;
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let count = stored().await;
        assert!(count <= n, "{count} reports stored, {n} sent");
        if count == n {
            break;
        }
        if tokio::time::Instant::now() > end {
            panic!(
                "timed out after {DEADLINE:?}: {count} of {n} reports in {what}; ingester log:\n{}",
                ingester.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count_reports(path: &Path) -> i64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM reports", [], |r| r.get(0))
        .unwrap_or(0)
}

// ---- BigQuery, the emulator, filled with DML ----

pub const DATASET: &str = "spartakus";
pub const TABLE: &str = "reports";

/// The committed table schema.
pub fn schema_fields() -> Vec<TableFieldSchema> {
    stored::bigquery::schema().unwrap()
}

/// An emulator with the dataset, the partitioned table and its deduplicating view.
pub struct BigQueryFixture {
    pub emulator: testenv::BigQuery,
    pub client: Client,
}

impl BigQueryFixture {
    pub async fn start() -> Self {
        let emulator = testenv::BigQuery::start()
            .await
            .expect("bigquery-emulator starts");
        let client = stored::bigquery::client(
            Some(&emulator.endpoint()),
            &stored::bigquery::Credentials::None,
            stored::bigquery::REQUEST_TIMEOUT,
        )
        .await
        .unwrap();
        let project = emulator.project().to_owned();
        client
            .dataset()
            .create(Dataset::new(&project, DATASET))
            .await
            .unwrap();
        let table_ref = stored::TableRef::parse(&format!("{project}/{DATASET}/{TABLE}")).unwrap();
        let table = Table::new(&project, DATASET, TABLE, TableSchema::new(schema_fields()))
            .time_partitioning(TimePartitioning::per_day().field("receivedAt"))
            .require_partition_filter(true);
        client.table().create(table).await.unwrap();
        // The view may read a table of erasure tombstones beside the reports.
        {
            let fields = stored::bigquery::tombstones_schema().unwrap();
            client
                .table()
                .create(Table::new(
                    &project,
                    DATASET,
                    &table_ref.tombstones_id(),
                    TableSchema::new(fields),
                ))
                .await
                .unwrap();
        }
        let view = Table::new(
            &project,
            DATASET,
            &table_ref.view_id(),
            TableSchema::new(vec![]),
        )
        .view(ViewDefinition {
            query: stored::bigquery::view_query(&table_ref),
            use_legacy_sql: Some(false),
            user_defined_function_resources: None,
        });
        client.table().create(view).await.unwrap();
        BigQueryFixture { emulator, client }
    }

    /// An emulator whose dataset, table, view and tombstones the ingester binary created, and
    /// whose rows it wrote through insertAll: `envs` published to a fresh nats-server and
    /// consumed by the ingester, as in production. Its rows hold what the emulator mangles
    /// (see testenv/tests/it/bigquery.rs): read them only as far as that test says it can.
    pub async fn ingested(envs: &[Env]) -> Self {
        let emulator = testenv::BigQuery::start()
            .await
            .expect("bigquery-emulator starts");
        let client = stored::bigquery::client(
            Some(&emulator.endpoint()),
            &stored::bigquery::Credentials::None,
            stored::bigquery::REQUEST_TIMEOUT,
        )
        .await
        .unwrap();
        let project = emulator.project().to_owned();
        let sink = format!("bigquery://{project}/{DATASET}/{TABLE}");
        let endpoint = format!("{}/bigquery/v2", emulator.endpoint());
        let args = [
            "--bigquery-endpoint",
            &endpoint,
            "--bigquery-credentials",
            "none",
        ];
        let count = format!("SELECT COUNT(DISTINCT reportID) FROM `{project}.{DATASET}.{TABLE}`");
        ingest(envs, &sink, &args, "BigQuery", || {
            let (emulator, count) = (&emulator, &count);
            async move {
                // Before the ingester created the table, the emulator refuses the query.
                match emulator.query(count).await {
                    Ok(rows) => rows[0][0].as_str().unwrap().parse().unwrap(),
                    Err(_) => 0,
                }
            }
        })
        .await;
        BigQueryFixture { emulator, client }
    }

    pub async fn query(
        &self,
        sql: &str,
    ) -> gcp_bigquery_client::model::query_response::QueryResponse {
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        self.client
            .job()
            .query(self.emulator.project(), request)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\n{}\n{}",
                    &sql[..sql.len().min(2000)],
                    self.emulator.log_tail(20)
                )
            })
    }

    /// Inserts the reports with DML, a batch per statement.
    pub async fn insert(&self, envs: &[Env]) {
        let fields = schema_fields();
        let columns: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        for chunk in envs.chunks(20) {
            let rows: Vec<String> = chunk.iter().map(|e| row_literal(e, &fields)).collect();
            let sql = format!(
                "INSERT INTO `{}.{DATASET}.{TABLE}` ({}) VALUES {}",
                self.emulator.project(),
                columns.join(", "),
                rows.join(",\n")
            );
            self.query(&sql).await;
        }
    }

    pub async fn store(&self) -> BigQueryStore {
        let table =
            TableRef::parse(&format!("{}/{DATASET}/{TABLE}", self.emulator.project())).unwrap();
        BigQueryStore::connect(table, Some(&self.emulator.endpoint()), &Credentials::None)
            .await
            .unwrap()
    }
}

fn row_literal(e: &Env, fields: &[TableFieldSchema]) -> String {
    let mut row = e.report.clone();
    row["reportID"] = e.id.to_string().into();
    row["receivedAt"] = e.received_at.to_string().into();
    let values: Vec<String> = fields
        .iter()
        .map(|f| literal(row.get(&f.name), f))
        .collect();
    format!("({})", values.join(", "))
}

fn sql_type(f: &TableFieldSchema) -> String {
    let scalar = match serde_json::to_value(&f.r#type).unwrap().as_str().unwrap() {
        "RECORD" | "STRUCT" => {
            let inner: Vec<String> = f
                .fields
                .as_ref()
                .unwrap()
                .iter()
                .map(|g| format!("{} {}", g.name, sql_type(g)))
                .collect();
            format!("STRUCT<{}>", inner.join(", "))
        }
        "INTEGER" | "INT64" => "INT64".into(),
        other => other.to_owned(),
    };
    if f.mode.as_deref() == Some("REPEATED") {
        format!("ARRAY<{scalar}>")
    } else {
        scalar
    }
}

fn literal(v: Option<&Value>, f: &TableFieldSchema) -> String {
    let ty = serde_json::to_value(&f.r#type).unwrap();
    let ty = ty.as_str().unwrap();
    if f.mode.as_deref() == Some("REPEATED") {
        let items: Vec<String> = v
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| scalar_literal(Some(x), f, ty)).collect())
            .unwrap_or_default();
        return format!("CAST([{}] AS {})", items.join(", "), sql_type(f));
    }
    scalar_literal(v, f, ty)
}

fn scalar_literal(v: Option<&Value>, f: &TableFieldSchema, ty: &str) -> String {
    let v = v.filter(|v| !v.is_null());
    match ty {
        "RECORD" | "STRUCT" => {
            let Some(obj) = v else {
                let mut one = f.clone();
                one.mode = None;
                return format!("CAST(NULL AS {})", sql_type(&one));
            };
            let parts: Vec<String> = f
                .fields
                .as_ref()
                .unwrap()
                .iter()
                .map(|g| format!("{} AS {}", literal(obj.get(&g.name), g), g.name))
                .collect();
            format!("STRUCT({})", parts.join(", "))
        }
        "STRING" => match v {
            Some(Value::String(s)) => {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
            _ => "CAST(NULL AS STRING)".into(),
        },
        "INTEGER" | "INT64" => match v {
            Some(n) => n.to_string(),
            None => "CAST(NULL AS INT64)".into(),
        },
        "TIMESTAMP" => match v {
            Some(Value::String(s)) => format!("TIMESTAMP '{s}'"),
            _ => "CAST(NULL AS TIMESTAMP)".into(),
        },
        other => panic!("no literal for {other}"),
    }
}
