//! The BigQuery sink against the real emulator, through a small fault-injecting proxy of our own
//! that records every insertAll and can fail or reject on demand.
//!
//! What the emulator cannot show, and is therefore injected by the proxy: 429/503 answers, and
//! per-row insertErrors (the emulator stores any row). What only real BigQuery can show:
//! deduplication by insertId (the emulator stores repeats), and that partitioning and clustering
//! take effect (the emulator records them in the table's metadata, which is what we check).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::*;
use ingester::config::{Credentials, TableRef};
use ingester::sink::bigquery::{BigQuerySink, Limits};

const DEADLINE: Duration = Duration::from_secs(90);

/// One insertAll request as the proxy saw it: (insertId, the row's reportID) per row, and the
/// status the proxy answered.
#[derive(Debug, Clone)]
struct Seen {
    rows: Vec<(Option<String>, Option<String>)>,
    status: u16,
}

#[derive(Default)]
struct Faults {
    /// Statuses to answer the next insertAll requests with, instead of forwarding them.
    fail_next: VecDeque<u16>,
    /// Rows with this clusterID are removed from the request and reported as invalid.
    reject_cluster: Option<String>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    faults: Arc<Mutex<Faults>>,
}

impl Proxy {
    async fn start(upstream: String) -> (SocketAddr, Arc<Mutex<Faults>>) {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let proxy = Proxy {
            upstream,
            http: reqwest::Client::new(),
            faults: faults.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, faults)
    }
}

async fn forward(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let mut body = body.to_vec();
    let mut content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let mut rejected: Vec<usize> = Vec::new();
    if path.contains("/insertAll") {
        if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut plain)
                .unwrap();
            body = plain;
            content_type = "application/json".into();
        }
        let mut request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let rows: Vec<(Option<String>, Option<String>)> = request["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["insertId"].as_str().map(str::to_owned),
                    r["json"]["reportID"].as_str().map(str::to_owned),
                )
            })
            .collect();
        let mut faults = proxy.faults.lock().unwrap();
        if let Some(status) = faults.fail_next.pop_front() {
            faults.seen.push(Seen { rows, status });
            let error = serde_json::json!({"error": {"code": status, "message": "injected by the test proxy",
                "errors": [{"reason": "backendError", "message": "injected"}], "status": "UNAVAILABLE"}});
            return (StatusCode::from_u16(status).unwrap(), axum::Json(error)).into_response();
        }
        faults.seen.push(Seen { rows, status: 200 });
        if let Some(marker) = faults.reject_cluster.clone() {
            let all = request["rows"].as_array().unwrap().clone();
            let kept: Vec<serde_json::Value> = all
                .iter()
                .enumerate()
                .filter(|(i, r)| {
                    let bad = r["json"]["clusterID"] == marker.as_str();
                    if bad {
                        rejected.push(*i);
                    }
                    !bad
                })
                .map(|(_, r)| r.clone())
                .collect();
            request["rows"] = kept.into();
            body = serde_json::to_vec(&request).unwrap();
        }
    }
    let response = proxy
        .http
        .request(method, format!("{}{path}", proxy.upstream))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let mut bytes = response.bytes().await.unwrap().to_vec();
    if !rejected.is_empty() && status.is_success() {
        // As BigQuery answers with skipInvalidRows: the invalid rows by their index in the request.
        let errors: Vec<serde_json::Value> = rejected
            .iter()
            .map(|i| serde_json::json!({"index": i, "errors": [{"reason": "invalid", "location": "clusterID",
                "message": "injected: no such field"}]}))
            .collect();
        bytes = serde_json::to_vec(
            &serde_json::json!({"kind": "bigquery#tableDataInsertAllResponse",
            "insertErrors": errors}),
        )
        .unwrap();
    }
    (
        StatusCode::from_u16(status.as_u16()).unwrap(),
        [("content-type", "application/json")],
        bytes,
    )
        .into_response()
}

fn bigquery_flags(endpoint: &str) -> Vec<String> {
    vec![
        "--bigquery-endpoint".into(),
        format!("{endpoint}/bigquery/v2"),
        "--bigquery-credentials".into(),
        "none".into(),
    ]
}

fn ingester_config(
    nats: &Nats,
    table: &str,
    endpoint: &str,
    extra: &[&str],
) -> ingester::config::Config {
    let mut args: Vec<String> = bigquery_flags(endpoint);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    config(
        &nats.url(),
        &format!("bigquery://{}/{table}", testenv_project()),
        &args,
    )
}

fn testenv_project() -> &'static str {
    "spartakus-test"
}

async fn count_by_report(bq: &testenv::BigQuery, table: &str) -> HashMap<String, usize> {
    bigquery_query(
        &bq.endpoint(),
        bq.project(),
        &format!("SELECT reportID, COUNT(*) FROM {table} GROUP BY reportID"),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].as_str().unwrap_or_default().to_owned(),
            r[1].as_str().unwrap().parse().unwrap(),
        )
    })
    .collect()
}

#[tokio::test]
async fn sink_faults_are_retried_with_the_same_insert_id_and_nothing_is_lost() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let (proxy, faults) = Proxy::start(bq.endpoint()).await;
    // More failures than one write retries (1 + 5 attempts): the batch is nakked, redelivered
    // and then stored.
    faults.lock().unwrap().fail_next = [503, 429, 503, 503, 429, 503, 503, 429].into();
    let nats = Nats::with_stream().await;
    let all = envelopes(30);
    nats.publish_all(&all).await;
    let ingester = InProcess::start(ingester_config(
        &nats,
        "faults/reports",
        &format!("http://{proxy}"),
        &[],
    ))
    .await;

    eventually(DEADLINE, "30 reports in the emulator", || async {
        count_by_report(&bq, "faults.reports").await.len() == 30
    })
    .await;
    let stored = count_by_report(&bq, "faults.reports").await;
    for (id, _) in &all {
        assert_eq!(stored.get(&id.to_string()), Some(&1), "{id} stored once");
    }
    let seen = faults.lock().unwrap().seen.clone();
    assert!(
        seen.iter().filter(|s| s.status != 200).count() == 8,
        "every fault was hit"
    );
    // Every row of every attempt carried its reportID as insertId, and every report that met a
    // fault was sent again with that same insertId.
    let mut attempts: HashMap<String, usize> = HashMap::new();
    for s in &seen {
        for (insert_id, report_id) in &s.rows {
            assert_eq!(insert_id, report_id, "insertId is the reportID");
            *attempts.entry(insert_id.clone().unwrap()).or_default() += 1;
        }
    }
    for s in seen.iter().filter(|s| s.status != 200) {
        for (insert_id, _) in &s.rows {
            assert!(attempts[insert_id.as_ref().unwrap()] >= 2, "retried");
        }
    }
    let written = r#"spartakus_ingester_rows_total{sink="bigquery",result="written"}"#;
    let metrics = metrics_when(ingester.addr, written, 30.0).await;
    assert!(
        metric(&metrics, "spartakus_ingester_redeliveries_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, written), 30.0);
    ingester.stop().await;
    assert_eq!(nats.consumer_info().await.num_ack_pending, 0);
}

#[tokio::test]
async fn a_row_bigquery_rejects_is_dead_lettered_and_the_rest_are_stored() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let (proxy, faults) = Proxy::start(bq.endpoint()).await;
    faults.lock().unwrap().reject_cluster = Some("reject-me".into());
    let nats = Nats::with_stream().await;
    let good = envelopes(5);
    nats.publish_all(&good).await;
    let mut bad: serde_json::Value = serde_json::from_str(SEED).unwrap();
    bad["clusterID"] = "reject-me".into();
    let (bad_id, bad_payload) = envelope_of(&bad.to_string(), "2026-05-01T12:00:00Z");
    nats.publish_raw(&bad_id.to_string(), bad_payload.clone())
        .await;

    let ingester = InProcess::start(ingester_config(
        &nats,
        "rejects/reports",
        &format!("http://{proxy}"),
        &[],
    ))
    .await;
    let dead = nats.dead_letters(1).await;
    assert_eq!(dead[0], ("rejected".to_owned(), bad_payload));
    eventually(DEADLINE, "5 reports in the emulator", || async {
        count_by_report(&bq, "rejects.reports").await.len() == 5
    })
    .await;
    assert!(
        !count_by_report(&bq, "rejects.reports")
            .await
            .contains_key(&bad_id.to_string())
    );
    ingester.stop().await;
    let info = nats.consumer_info().await;
    assert_eq!((info.num_ack_pending, info.num_redelivered), (0, 0));
}

/// Every non-null field of `want` is in `got` with the same value (arrays element by element).
fn assert_subset(want: &serde_json::Value, got: &serde_json::Value, path: &str) {
    match (want, got) {
        (serde_json::Value::Object(w), serde_json::Value::Object(g)) => {
            for (k, v) in w.iter().filter(|(_, v)| !v.is_null()) {
                assert_subset(
                    v,
                    g.get(k).unwrap_or(&serde_json::Value::Null),
                    &format!("{path}.{k}"),
                );
            }
        }
        (serde_json::Value::Array(w), serde_json::Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{path}: length");
            for (i, (w, g)) in w.iter().zip(g).enumerate() {
                assert_subset(w, g, &format!("{path}[{i}]"));
            }
        }
        // The emulator's TO_JSON_STRING renders a record nested in a repeated record as an
        // array of one-field objects: merge them back.
        (serde_json::Value::Object(_), serde_json::Value::Array(parts)) => {
            let merged: serde_json::Map<String, serde_json::Value> = parts
                .iter()
                .filter_map(|p| p.as_object())
                .flat_map(|o| o.clone())
                .collect();
            assert_subset(want, &serde_json::Value::Object(merged), path);
        }
        _ => assert_eq!(want, got, "{path}"),
    }
}

#[tokio::test]
async fn reports_posted_to_the_real_gateway_land_in_the_emulator_field_by_field() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gateway_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut gateway = std::process::Command::new(workspace_binary("gateway"))
        .args([
            "--listen",
            &gateway_addr.to_string(),
            "--nats-url",
            &nats.url(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("gateway.log")).unwrap())
        .spawn()
        .expect("spawn gateway");
    eventually(DEADLINE, "gateway /healthz", || async {
        get(gateway_addr, "/healthz").await.0 == 200
    })
    .await;
    let ingester =
        InProcess::start(ingester_config(&nats, "e2e/reports", &bq.endpoint(), &[])).await;

    let http = reqwest::Client::new();
    for body in [SEED, V2_FULL] {
        eventually(DEADLINE, "204 from the gateway", || {
            let request = http
                .post(format!("http://{gateway_addr}/api/v1"))
                .header("Content-Type", "application/json")
                .body(body);
            async move { matches!(request.send().await, Ok(r) if r.status().as_u16() == 204) }
        })
        .await;
    }
    eventually(DEADLINE, "2 reports in the emulator", || async {
        count_by_report(&bq, "e2e.reports").await.len() == 2
    })
    .await;
    // The emulator's TO_JSON_STRING leaves TIMESTAMPs unquoted: read receivedAt separately.
    let rows = bigquery_query(
        &bq.endpoint(),
        bq.project(),
        "SELECT TO_JSON_STRING(STRUCT(version, timestamp, clusterID, masterVersion, nodes, extensions,
                reportID, schemaVersion, namespaces, workloads, skipped)), UNIX_SECONDS(receivedAt)
         FROM e2e.reports",
    )
    .await;
    let now = jiff::Timestamp::now().as_second();
    let mut by_cluster = HashMap::new();
    for r in rows {
        let row: serde_json::Value = serde_json::from_str(r[0].as_str().unwrap()).unwrap();
        let received: i64 = r[1].as_str().unwrap().parse().unwrap();
        assert!(
            (now - received).abs() < 300,
            "receivedAt is the gateway's clock"
        );
        assert!(report::ReportId::parse(row["reportID"].as_str().unwrap()).is_some());
        by_cluster.insert(row["clusterID"].as_str().unwrap().to_owned(), row);
    }
    for body in [SEED, V2_FULL] {
        let want: serde_json::Value = serde_json::from_str(body).unwrap();
        let got = &by_cluster[want["clusterID"].as_str().unwrap()];
        assert_subset(&want, got, "");
    }
    // The v2 report keeps its own reportID.
    let v2: serde_json::Value = serde_json::from_str(V2_FULL).unwrap();
    assert_eq!(
        by_cluster[v2["clusterID"].as_str().unwrap()]["reportID"],
        v2["reportID"]
    );
    ingester.stop().await;
    let _ = gateway.kill();
    let _ = gateway.wait();
}

#[tokio::test]
async fn a_new_table_is_partitioned_and_clustered_and_an_original_table_only_gains_columns() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let endpoint = format!("{}/bigquery/v2", bq.endpoint());
    let http = reqwest::Client::new();
    let base = format!("{endpoint}/projects/{}", bq.project());
    let limits = Limits {
        max_rows: 500,
        max_bytes: 5_000_000,
    };
    let sink = |dataset: &str| {
        let table = TableRef {
            project: bq.project().into(),
            dataset: dataset.into(),
            table: "reports".into(),
        };
        let endpoint = endpoint.clone();
        async move {
            let client = BigQuerySink::client(Some(&endpoint), Some(&Credentials::None))
                .await
                .unwrap();
            BigQuerySink::new(client, table, limits)
        }
    };

    // A new table: created with the committed schema, partitioned and clustered.
    sink("fresh").await.ensure_table().await.unwrap();
    let table: serde_json::Value = http
        .get(format!("{base}/datasets/fresh/tables/reports"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(table["timePartitioning"]["type"], "DAY");
    assert_eq!(table["timePartitioning"]["field"], "receivedAt");
    assert_eq!(
        table["clustering"]["fields"],
        serde_json::json!(["clusterID"])
    );
    let committed: serde_json::Value =
        serde_json::from_str(ingester::sink::bigquery::SCHEMA_JSON).unwrap();
    let names = |fields: &serde_json::Value| -> Vec<String> {
        fields
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&table["schema"]["fields"]), names(&committed));

    // An existing table with the original 2016 schema: only the new columns are added.
    http.post(format!("{base}/datasets"))
        .json(&serde_json::json!({"datasetReference": {"projectId": bq.project(), "datasetId": "legacy"}}))
        .send()
        .await
        .unwrap();
    let original: Vec<serde_json::Value> = committed.as_array().unwrap()[..6].to_vec();
    let created = http
        .post(format!("{base}/datasets/legacy/tables"))
        .json(&serde_json::json!({"tableReference": {"projectId": bq.project(), "datasetId": "legacy", "tableId": "reports"},
            "schema": {"fields": original}}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    sink("legacy").await.ensure_table().await.unwrap();
    let table: serde_json::Value = http
        .get(format!("{base}/datasets/legacy/tables/reports"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fields = table["schema"]["fields"].as_array().unwrap();
    assert_eq!(names(&table["schema"]["fields"]), names(&committed));
    for (old, now) in original.iter().zip(fields) {
        assert_eq!(old["name"], now["name"]);
        assert_eq!(old["type"], now["type"]);
        assert_eq!(old["mode"], now["mode"]);
    }
    for new in &fields[6..] {
        assert_ne!(new["mode"], "REQUIRED", "{new}");
    }
    // A second start changes nothing.
    sink("legacy").await.ensure_table().await.unwrap();
}
