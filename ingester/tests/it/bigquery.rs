//! The BigQuery sink against the real emulator, through testenv's fault-injecting
//! `BigQueryProxy`, which records every request and can fail or reject insertAll calls and refuse
//! DML DELETEs on command.
//!
//! What the emulator cannot show, and is therefore injected by the proxy: 429/503 answers
//! (including one sent after the rows were stored, the way a timeout leaves a duplicate),
//! per-row insertErrors (the emulator stores any row), and BigQuery's refusal of a DML DELETE
//! over rows still in its streaming buffer (the emulator has no streaming buffer: it deletes
//! rows inserted a moment ago; it does run DML DELETE and the view's NOT EXISTS over the
//! tombstones, which these tests rely on). What only real BigQuery can show:
//! deduplication by insertId (the emulator stores repeats, which is what lets these tests put
//! duplicates in the table), that partitioning and clustering take effect, that a query without a
//! receivedAt filter is refused (the emulator records requirePartitionFilter in the table's
//! metadata, which is what we check, but runs such queries), and that a receivedAt filter on the
//! view prunes the table's partitions.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use ingester::sink::bigquery::{BigQuerySink, Limits};
use ingester::sink::{Outcome, Sink};
use reqwest::Method;
use stored::TableRef;
use stored::bigquery::Credentials;
use testenv::BigQueryProxy;

const DEADLINE: Duration = Duration::from_secs(90);

/// A proxy in front of the emulator `bq`.
async fn proxy_to(bq: &testenv::BigQuery) -> BigQueryProxy {
    BigQueryProxy::start(&bq.endpoint())
        .await
        .expect("the BigQuery proxy starts")
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

/// Copies per report ID in `table`, or the emulator's error (e.g. before the table exists).
async fn count_by_report(
    bq: &testenv::BigQuery,
    table: &str,
) -> Result<HashMap<String, usize>, String> {
    bq.query(&format!(
        "SELECT reportID, COUNT(*) FROM {table} GROUP BY reportID"
    ))
    .await
    .map(copies)
}

#[tokio::test]
async fn sink_faults_are_retried_with_the_same_insert_id_and_nothing_is_lost() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let proxy = proxy_to(&bq).await;
    // More failures than one write retries (1 + 5 attempts): the batch is nakked, redelivered
    // and then stored.
    proxy.fail_next([503, 429, 503, 503, 429, 503, 503, 429]);
    let nats = Nats::with_stream().await;
    let all = envelopes(30);
    nats.publish_all(&all).await;
    let ingester = InProcess::start(ingester_config(
        &nats,
        "faults/reports",
        &proxy.endpoint(),
        &[],
    ))
    .await;

    eventually(DEADLINE, "30 reports in the emulator", || async {
        count_by_report(&bq, "faults.reports")
            .await
            .is_ok_and(|c| c.len() == 30)
    })
    .await;
    let stored = count_by_report(&bq, "faults.reports").await.unwrap();
    for (id, _) in &all {
        assert_eq!(stored.get(&id.to_string()), Some(&1), "{id} stored once");
    }
    let seen = proxy.inserts();
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
    let proxy = proxy_to(&bq).await;
    proxy.reject_cluster(Some("reject-me"));
    let nats = Nats::with_stream().await;
    let good = envelopes(5);
    nats.publish_all(&good).await;
    let mut bad: serde_json::Value = serde_json::from_str(SEED).unwrap();
    bad["clusterID"] = "reject-me".into();
    let (bad_id, bad_payload) = envelope_of(&bad.to_string(), &days_ago(1));
    nats.publish_raw(&bad_id.to_string(), bad_payload.clone())
        .await;

    let ingester = InProcess::start(ingester_config(
        &nats,
        "rejects/reports",
        &proxy.endpoint(),
        &[],
    ))
    .await;
    let dead = nats.dead_letters(1).await;
    assert_eq!(dead[0], ("rejected".to_owned(), bad_payload));
    eventually(DEADLINE, "5 reports in the emulator", || async {
        count_by_report(&bq, "rejects.reports")
            .await
            .is_ok_and(|c| c.len() == 5)
    })
    .await;
    assert!(
        !count_by_report(&bq, "rejects.reports")
            .await
            .unwrap()
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
    let gateway = Gateway::start(&nats.url()).await;
    let gateway_addr = gateway.addr;
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
        count_by_report(&bq, "e2e.reports")
            .await
            .is_ok_and(|c| c.len() == 2)
    })
    .await;
    // The emulator's TO_JSON_STRING leaves TIMESTAMPs unquoted: read receivedAt separately.
    let sql = "SELECT TO_JSON_STRING(STRUCT(version, timestamp, clusterID, masterVersion, nodes, extensions,
                reportID, schemaVersion, namespaces, workloads, skipped, erasureCheck)),
                UNIX_SECONDS(receivedAt)
         FROM e2e.reports";
    let rows = bq.query(sql).await.unwrap();
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
    // The gateway stores node IDs re-keyed under its key (testenv's).
    let key = report::node_id::NodeIdKey::from_secret(testenv::GATEWAY_NODE_ID_KEY).unwrap();
    for body in [SEED, V2_FULL] {
        let mut want: serde_json::Value = serde_json::from_str(body).unwrap();
        let cluster = want["clusterID"].as_str().unwrap().to_owned();
        for node in want["nodes"].as_array_mut().unwrap() {
            node["id"] = key.rekey(&cluster, node["id"].as_str().unwrap()).into();
        }
        let got = &by_cluster[&cluster];
        assert_subset(&want, got, "");
    }
    // The v2 report keeps its own reportID.
    let v2: serde_json::Value = serde_json::from_str(V2_FULL).unwrap();
    assert_eq!(
        by_cluster[v2["clusterID"].as_str().unwrap()]["reportID"],
        v2["reportID"]
    );
    ingester.stop().await;
    drop(gateway);
}

const LIMITS: Limits = Limits {
    max_rows: 500,
    max_bytes: 5_000_000,
};

/// A sink for `DATASET.reports` reached at `endpoint` (the emulator, or the proxy before it).
async fn sink_at(endpoint: &str, project: &str, dataset: &str) -> BigQuerySink {
    let table = TableRef {
        project: project.into(),
        dataset: dataset.into(),
        table: "reports".into(),
    };
    let client = BigQuerySink::client(
        Some(&format!("{endpoint}/bigquery/v2")),
        Some(&Credentials::None),
    )
    .await
    .unwrap();
    BigQuerySink::new(client, table, LIMITS)
}

/// A table's (or view's) metadata, as tables.get answers.
async fn metadata(bq: &testenv::BigQuery, dataset: &str, table: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!(
            "{}/bigquery/v2/projects/{}/datasets/{dataset}/tables/{table}",
            bq.endpoint(),
            bq.project()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Copies per report ID in `sql`'s result (two columns: reportID, count).
fn copies(rows: Vec<Vec<serde_json::Value>>) -> HashMap<String, usize> {
    rows.into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn test_rows(n: usize) -> Vec<ingester::row::Row> {
    envelopes(n)
        .into_iter()
        .map(|(_, e)| ingester::row::from_envelope(report::Envelope::decode(&e).unwrap()))
        .collect()
}

#[tokio::test]
async fn a_request_stored_but_answered_with_an_error_duplicates_rows_in_the_table_and_the_view_shows_each_report_once()
 {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let proxy = proxy_to(&bq).await;
    let sink = sink_at(&proxy.endpoint(), bq.project(), "dedupe").await;
    sink.ensure_table().await.unwrap();

    // The first insertAll is stored, then answered 503 (as a timeout after the commit would
    // leave it): the sink sends the same rows again and they are stored twice. A redelivered
    // batch (the ack lost) is written again as a whole.
    proxy.fail_after_storing([503]);
    let rows = test_rows(10);
    let outcomes = sink.write(rows.clone()).await.unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Written)),
        "{outcomes:?}"
    );
    let outcomes = sink.write(rows[..4].to_vec()).await.unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Written)),
        "{outcomes:?}"
    );
    let seen = proxy.inserts();
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [503, 200, 200],
        "stored, retried, redelivered"
    );

    let window = "receivedAt >= TIMESTAMP '2026-01-01'";
    let in_table = copies(
        bq.query(&format!(
            "SELECT reportID, COUNT(*) FROM dedupe.reports WHERE {window} GROUP BY reportID"
        ))
        .await
        .unwrap(),
    );
    let in_view = copies(
        bq.query(
            &format!("SELECT reportID, COUNT(*) FROM dedupe.reports_deduplicated WHERE {window} GROUP BY reportID"),
        )
        .await
        .unwrap(),
    );
    for (i, row) in rows.iter().enumerate() {
        let want = if i < 4 { 3 } else { 2 };
        assert_eq!(
            in_table.get(&row.report_id.to_string()),
            Some(&want),
            "copies in the table"
        );
        assert_eq!(
            in_view.get(&row.report_id.to_string()),
            Some(&1),
            "once in the view"
        );
    }
    assert_eq!(in_view.len(), 10);
    // The view has the table's columns, no more.
    let columns = |m: &serde_json::Value| -> Vec<String> {
        m["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        columns(&metadata(&bq, "dedupe", "reports_deduplicated").await),
        columns(&metadata(&bq, "dedupe", "reports").await)
    );
}

#[tokio::test]
async fn a_new_table_is_partitioned_clustered_requires_a_partition_filter_and_has_the_view_beside_it()
 {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let sink = sink_at(&bq.endpoint(), bq.project(), "fresh").await;
    sink.ensure_table().await.unwrap();
    let table = metadata(&bq, "fresh", "reports").await;
    assert_eq!(table["timePartitioning"]["type"], "DAY");
    assert_eq!(table["timePartitioning"]["field"], "receivedAt");
    assert_eq!(table["requirePartitionFilter"], true);
    assert_eq!(
        table["clustering"]["fields"],
        serde_json::json!(["clusterID"])
    );
    let committed: serde_json::Value = serde_json::from_str(stored::bigquery::SCHEMA_JSON).unwrap();
    assert_eq!(names(&table["schema"]["fields"]), names(&committed));

    let view = metadata(&bq, "fresh", "reports_deduplicated").await;
    assert_eq!(view["type"], "VIEW");
    let reports = TableRef {
        project: bq.project().into(),
        dataset: "fresh".into(),
        table: "reports".into(),
    };
    let query_text = stored::bigquery::view_query(&reports);
    assert_eq!(view["view"]["query"], query_text.as_str());
    assert!(
        query_text.contains(&format!("FROM `{}.fresh.reports`", bq.project()))
            && !query_text.contains("--"),
        "{query_text}"
    );

    // The emulator records the requirement but does not enforce it: real BigQuery refuses this
    // query ("Cannot query over table … without a filter over column(s) 'receivedAt' that can be
    // used for partition elimination"). Pinned, so that this test says so on the day an
    // emulator upgrade enforces it, and the refusal can be asserted instead.
    let unfiltered = bq
        .query("SELECT COUNT(*) FROM fresh.reports_deduplicated")
        .await;
    assert!(
        unfiltered.is_ok(),
        "the emulator now refuses a query without a partition filter ({unfiltered:?}): assert \
         that refusal here, for the table and for the view"
    );

    // A second start reads and changes nothing.
    let proxy = proxy_to(&bq).await;
    sink_at(&proxy.endpoint(), bq.project(), "fresh")
        .await
        .ensure_table()
        .await
        .unwrap();
    assert_only_reads(&proxy);
}

/// Every request the proxy saw was a GET, and there was one.
fn assert_only_reads(proxy: &BigQueryProxy) {
    let requests = proxy.requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|(method, _)| method == Method::GET),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_table_an_earlier_ingester_created_keeps_its_partition_filter_setting_and_gains_the_view()
{
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let http = reqwest::Client::new();
    let base = format!("{}/bigquery/v2/projects/{}", bq.endpoint(), bq.project());
    let committed: serde_json::Value = serde_json::from_str(stored::bigquery::SCHEMA_JSON).unwrap();
    // As the ingester created it before the partition filter and the view.
    http.post(format!("{base}/datasets"))
        .json(&serde_json::json!({"datasetReference": {"projectId": bq.project(), "datasetId": "earlier"}}))
        .send()
        .await
        .unwrap();
    let created = http
        .post(format!("{base}/datasets/earlier/tables"))
        .json(&serde_json::json!({"tableReference": {"projectId": bq.project(), "datasetId": "earlier", "tableId": "reports"},
            "schema": {"fields": committed}, "timePartitioning": {"type": "DAY", "field": "receivedAt"},
            "clustering": {"fields": ["clusterID"]}}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());

    let proxy = proxy_to(&bq).await;
    let through_proxy = proxy.endpoint();
    sink_at(&through_proxy, bq.project(), "earlier")
        .await
        .ensure_table()
        .await
        .unwrap();
    let requests = proxy.requests();
    let writes: Vec<&(Method, String)> = requests
        .iter()
        .filter(|(method, _)| method != Method::GET)
        .collect();
    assert!(
        writes.len() == 2
            && writes.iter().all(|(method, path)| method == Method::POST
                && path.ends_with("/datasets/earlier/tables")),
        "only the tombstones table and the view are created, the table is left alone: {requests:?}"
    );
    assert_eq!(
        metadata(&bq, "earlier", "reports_tombstones").await["type"],
        "TABLE"
    );
    assert_ne!(
        metadata(&bq, "earlier", "reports").await["requirePartitionFilter"],
        true,
        "an existing table's readers keep their unfiltered queries"
    );
    let view = metadata(&bq, "earlier", "reports_deduplicated").await;
    assert_eq!(view["type"], "VIEW");
    assert_eq!(names(&view["schema"]["fields"]), names(&committed));

    // A second start reads and changes nothing.
    proxy.clear_requests();
    sink_at(&through_proxy, bq.project(), "earlier")
        .await
        .ensure_table()
        .await
        .unwrap();
    assert_only_reads(&proxy);
}

fn names(fields: &serde_json::Value) -> Vec<String> {
    fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_original_table_only_gains_columns_and_keeps_its_partition_filter_setting() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let http = reqwest::Client::new();
    let base = format!("{}/bigquery/v2/projects/{}", bq.endpoint(), bq.project());
    let committed: serde_json::Value = serde_json::from_str(stored::bigquery::SCHEMA_JSON).unwrap();

    // An existing table with the original 2016 schema, not partitioned, no filter required.
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
    let proxy = proxy_to(&bq).await;
    let through_proxy = proxy.endpoint();
    let prepared = sink_at(&through_proxy, bq.project(), "legacy")
        .await
        .ensure_table()
        .await;
    let table = metadata(&bq, "legacy", "reports").await;
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
    assert_ne!(
        table["requirePartitionFilter"], true,
        "an existing table's readers keep their unfiltered queries"
    );
    // The emulator records added columns in the table's metadata but its SQL engine never
    // learns them, so the view over reportID, receivedAt and erasureCheck cannot be created
    // here; real BigQuery creates it (the test above shows the view beside a table that has the
    // columns). Pinned, so that this test says so on the day an emulator upgrade applies added
    // columns.
    let err = prepared.unwrap_err().to_string();
    assert!(
        err.contains("Name erasureCheck not found inside r")
            || err.contains("Unrecognized name: reportID"),
        "the emulator now applies added columns to queries ({err}): assert here that the view \
         is created and that a second start only reads"
    );

    // A second start does not change the table again.
    proxy.clear_requests();
    let _ = sink_at(&through_proxy, bq.project(), "legacy")
        .await
        .ensure_table()
        .await;
    let requests = proxy.requests();
    assert!(
        !requests
            .iter()
            .any(|(method, path)| method != Method::GET && path.contains("/tables/reports")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_view_with_other_sql_is_replaced_and_a_table_in_the_views_place_is_refused() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let http = reqwest::Client::new();
    let base = format!("{}/bigquery/v2/projects/{}", bq.endpoint(), bq.project());
    let sink = sink_at(&bq.endpoint(), bq.project(), "views").await;
    sink.ensure_table().await.unwrap();

    // An earlier ingester's view (here: one that does not deduplicate).
    let stale = format!("SELECT * FROM `{}.views.reports`", bq.project());
    let patched = http
        .patch(format!("{base}/datasets/views/tables/reports_deduplicated"))
        .json(&serde_json::json!({"tableReference": {"projectId": bq.project(), "datasetId": "views", "tableId": "reports_deduplicated"},
            "view": {"query": stale, "useLegacySql": false}}))
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success());
    assert_eq!(
        metadata(&bq, "views", "reports_deduplicated").await["view"]["query"],
        stale.as_str()
    );
    sink.ensure_table().await.unwrap();
    let reports = TableRef {
        project: bq.project().into(),
        dataset: "views".into(),
        table: "reports".into(),
    };
    assert_eq!(
        metadata(&bq, "views", "reports_deduplicated").await["view"]["query"],
        stored::bigquery::view_query(&reports).as_str()
    );

    // A table where the view belongs is someone's data: refused with a reason, not replaced.
    let other = sink_at(&bq.endpoint(), bq.project(), "taken").await;
    http.post(format!("{base}/datasets"))
        .json(&serde_json::json!({"datasetReference": {"projectId": bq.project(), "datasetId": "taken"}}))
        .send()
        .await
        .unwrap();
    let created = http
        .post(format!("{base}/datasets/taken/tables"))
        .json(&serde_json::json!({"tableReference": {"projectId": bq.project(), "datasetId": "taken", "tableId": "reports_deduplicated"},
            "schema": {"fields": [{"name": "x", "type": "STRING"}]}}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let err = other.ensure_table().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("taken.reports_deduplicated exists and is not a view"),
        "{err}"
    );
    assert_eq!(
        metadata(&bq, "taken", "reports_deduplicated").await["type"],
        "TABLE"
    );
}

/// The report IDs of `cluster` in `relation` (the table or its view), filtered on receivedAt as
/// every query must be.
async fn ids_of(bq: &testenv::BigQuery, relation: &str, cluster: &str) -> Vec<String> {
    let sql = format!(
        "SELECT reportID FROM {relation} WHERE receivedAt >= TIMESTAMP '2020-01-01' \
         AND clusterID = '{cluster}' ORDER BY reportID"
    );
    let mut ids: Vec<String> = bq
        .query(&sql)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn an_erasure_through_the_gateway_hides_the_cluster_at_once_and_deletes_it_once_bigquery_allows()
 {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let proxy = proxy_to(&bq).await;
    let nats = Nats::start().await;
    let gateway = Gateway::start(&nats.url()).await;
    let ingester = InProcess::start(ingester_config(
        &nats,
        "erase/reports",
        &proxy.endpoint(),
        &[],
    ))
    .await;
    let (secret_a, check_a) = secret_and_check(0xa1);
    let (_, check_b) = secret_and_check(0xb2);
    let a1 = v2_report("cluster-a", Some(&check_a));
    let a2 = v2_report("cluster-a", Some(&check_a));
    let b1 = v2_report("cluster-b", Some(&check_b));
    for report in [&a1, &a2, &b1] {
        assert_eq!(gateway.report(report).await, 202);
    }
    let v1 = v1_report("cluster-a");
    assert_eq!(gateway.report_v1(&v1).await, 204);
    eventually(DEADLINE, "4 reports in the emulator", || async {
        count_by_report(&bq, "erase.reports")
            .await
            .is_ok_and(|c| c.len() == 4)
    })
    .await;
    let all_a = ids_of(&bq, "erase.reports", "cluster-a").await;
    assert_eq!(all_a.len(), 3);
    let id = |r: &serde_json::Value| r["reportID"].as_str().unwrap().to_owned();
    let v1_id: Vec<String> = all_a
        .iter()
        .filter(|i| **i != id(&a1) && **i != id(&a2))
        .cloned()
        .collect();

    // A wrong secret: its DELETE runs and erases nothing.
    let pending = r#"spartakus_ingester_erasures_total{result="pending"}"#;
    assert_eq!(gateway.erase("cluster-a", &"ee".repeat(32)).await.0, 202);
    let text = metrics_when(ingester.addr, pending, 1.0).await;
    assert!(metric(&text, pending) >= 1.0, "{text}");
    assert_eq!(ids_of(&bq, "erase.reports", "cluster-a").await, all_a);
    assert_eq!(
        ids_of(&bq, "erase.reports_deduplicated", "cluster-a").await,
        all_a
    );

    // The right secret while BigQuery still refuses DML on the rows: the tombstone hides them
    // from the view at once, and the DELETE is tried again.
    proxy.refuse_deletes(true);
    assert_eq!(gateway.erase("cluster-a", &secret_a).await.0, 202);
    eventually(DEADLINE, "two refused DELETEs", || async {
        proxy.deletes().iter().filter(|refused| **refused).count() >= 2
    })
    .await;
    assert_eq!(
        ids_of(&bq, "erase.reports", "cluster-a").await,
        all_a,
        "still in the table"
    );
    assert_eq!(
        ids_of(&bq, "erase.reports_deduplicated", "cluster-a").await,
        v1_id,
        "hidden from the view, but for the v1 report, which carries no check"
    );
    assert_eq!(
        ids_of(&bq, "erase.reports_deduplicated", "cluster-b").await,
        [id(&b1)]
    );
    proxy.refuse_deletes(false);
    eventually(DEADLINE, "the covered rows deleted", || async {
        ids_of(&bq, "erase.reports", "cluster-a").await == v1_id
    })
    .await;
    assert_eq!(ids_of(&bq, "erase.reports", "cluster-b").await, [id(&b1)]);
    let tombstones = bq
        .query(&format!(
            "SELECT COUNT(*) FROM erase.reports_tombstones WHERE clusterID = 'cluster-a' \
             AND erasureCheck = '{check_a}'"
        ))
        .await
        .unwrap();
    assert_eq!(tombstones[0][0], "1");

    // A covered report that arrives late is not written; one sent after the request is.
    let late = v2_report("cluster-a", Some(&check_a));
    let (late_id, payload) = envelope_of(&late.to_string(), &days_ago(1));
    nats.publish_raw(&late_id.to_string(), payload).await;
    let erased = r#"spartakus_ingester_rows_total{sink="bigquery",result="erased"}"#;
    let text = metrics_when(ingester.addr, erased, 1.0).await;
    assert_eq!(metric(&text, erased), 1.0, "{text}");
    after_the_second_of(jiff::Timestamp::now()).await;
    let a3 = v2_report("cluster-a", Some(&check_a));
    assert_eq!(gateway.report(&a3).await, 202);
    let want = sorted([v1_id.clone(), vec![id(&a3)]].concat());
    eventually(
        DEADLINE,
        "the report after the request in the view",
        || async { ids_of(&bq, "erase.reports_deduplicated", "cluster-a").await == want },
    )
    .await;
    assert!(
        !ids_of(&bq, "erase.reports", "cluster-a")
            .await
            .contains(&late_id.to_string())
    );
    ingester.stop().await;
}

#[tokio::test]
async fn an_erasure_is_done_only_after_a_delete_past_the_grace() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let sink = sink_at(&bq.endpoint(), bq.project(), "grace")
        .await
        .with_erasure_grace(Duration::from_secs(3600));
    sink.prepare().await.unwrap();
    let (_, check) = secret_and_check(0x42);
    let mut rows = test_rows(3);
    for row in &mut rows {
        row.cluster_id = "graceful".into();
        row.erasure_check = Some(check.clone());
    }
    sink.write(rows).await.unwrap();
    let erasure = report::erasure::QueuedErasure {
        erasure: report::erasure::Erasure {
            cluster_id: "graceful".into(),
            erasure_check: check.clone(),
        },
        requested_at: jiff::Timestamp::now(),
    };
    // Deleted at once, but another replica may still be writing a batch it checked against
    // older tombstones: pending until a DELETE an hour on.
    match sink.erase(&erasure).await.unwrap() {
        ingester::sink::Erased::Pending { not_before, .. } => {
            assert!(not_before > Duration::from_secs(3000), "{not_before:?}")
        }
        done => panic!("expected pending, got {done:?}"),
    }
    assert!(ids_of(&bq, "grace.reports", "graceful").await.is_empty());
    let done = sink_at(&bq.endpoint(), bq.project(), "grace")
        .await
        .with_erasure_grace(Duration::ZERO)
        .erase(&erasure)
        .await
        .unwrap();
    assert!(
        matches!(done, ingester::sink::Erased::Done { .. }),
        "{done:?}"
    );
}

/// A batch's rows as the proxy saw them arrive: per request, its rows' report IDs, after
/// checking every request was answered 200.
fn requests_of(proxy: &BigQueryProxy) -> Vec<Vec<String>> {
    proxy
        .inserts()
        .into_iter()
        .map(|s| {
            assert_eq!(s.status, 200, "every request stored");
            s.rows.into_iter().map(|(id, _)| id.unwrap()).collect()
        })
        .collect()
}

#[tokio::test]
async fn a_batch_over_a_request_limit_is_stored_completely_in_several_requests_each_within_it() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let proxy = proxy_to(&bq).await;
    let table = TableRef {
        project: bq.project().into(),
        dataset: "split".into(),
        table: "reports".into(),
    };
    let client = BigQuerySink::client(
        Some(&format!("{}/bigquery/v2", proxy.endpoint())),
        Some(&Credentials::None),
    )
    .await
    .unwrap();
    let sink = |limits| BigQuerySink::new(client.clone(), table.clone(), limits);
    sink(LIMITS).ensure_table().await.unwrap();
    let rows = test_rows(60);
    // Each row as it appears in a request body (compact JSON, as the client encodes it), and
    // the body's own fields: `{"ignoreUnknownValues":false,"rows":[…],"skipInvalidRows":true}`.
    let encoded: HashMap<String, usize> = rows
        .iter()
        .map(|r| {
            let id = r.report_id.to_string();
            let row = serde_json::json!({"insertId": id, "json": r});
            (id, serde_json::to_vec(&row).unwrap().len())
        })
        .collect();
    let envelope = r#"{"ignoreUnknownValues":false,"rows":[],"skipInvalidRows":true}"#.len();
    let total: usize = encoded.values().sum();

    // By bytes: a limit of about a tenth of the batch.
    let max_bytes = total / 10;
    let outcomes = sink(Limits {
        max_rows: 500,
        max_bytes,
    })
    .write(rows[..30].to_vec())
    .await
    .unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Written)),
        "{outcomes:?}"
    );
    let by_bytes = requests_of(&proxy);
    assert!(by_bytes.len() >= 5, "{} requests", by_bytes.len());
    for request in &by_bytes {
        let body = envelope + request.iter().map(|id| encoded[id] + 1).sum::<usize>() - 1;
        assert!(
            body <= max_bytes,
            "a request of {body} bytes over {max_bytes}"
        );
    }

    // By rows: 7 at most.
    let before = proxy.inserts().len();
    let outcomes = sink(Limits {
        max_rows: 7,
        max_bytes: 5_000_000,
    })
    .write(rows[30..].to_vec())
    .await
    .unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Written)),
        "{outcomes:?}"
    );
    let by_rows = requests_of(&proxy).split_off(before);
    // In the order answered: the requests of a batch are sent at once.
    let mut sizes: Vec<usize> = by_rows.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 7, 7, 7, 7]);

    // Every row sent in exactly one request, and stored once.
    let sent: Vec<String> = by_bytes.iter().chain(&by_rows).flatten().cloned().collect();
    let want: Vec<String> = rows.iter().map(|r| r.report_id.to_string()).collect();
    let mut sorted_sent = sent.clone();
    sorted_sent.sort();
    let mut sorted_want = want.clone();
    sorted_want.sort();
    assert_eq!(sorted_sent, sorted_want, "each row in exactly one request");
    let stored = count_by_report(&bq, "split.reports").await.unwrap();
    assert_eq!(stored.len(), 60);
    for id in &want {
        assert_eq!(stored.get(id), Some(&1), "{id} stored once");
    }
}
