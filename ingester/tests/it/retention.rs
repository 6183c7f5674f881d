//! `--retention`: reports received longer ago are deleted from SQLite in small batches while
//! ingestion goes on, late ones are not stored, old tombstones go with them; BigQuery's tables
//! get the partition expiration. Reports are dated in the past the way the gateway dates them:
//! envelopes with an old `receivedAt`, published straight to JetStream.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use ingester::row::Row;
use ingester::sink::Sink;
use ingester::sink::bigquery::{BigQuerySink, Limits};
use ingester::sink::sqlite::SqliteSink;
use report::erasure::{Erasure, QueuedErasure};
use stored::TableRef;
use stored::bigquery::Credentials;

const DEADLINE: Duration = Duration::from_secs(60);
const DAY: i64 = 86_400;

/// Seed-shaped rows (2 nodes of 4 capacity entries each) received `days` days ago.
fn rows_received(n: usize, days: i64, cluster: &str) -> Vec<Row> {
    let at = jiff::Timestamp::now().as_second() - days * DAY;
    (0..n)
        .map(|i| {
            let mut report: serde_json::Value = serde_json::from_str(SEED).unwrap();
            report["clusterID"] = format!("{cluster}-{i}").into();
            let (_, envelope) = envelope_of(
                &report.to_string(),
                &jiff::Timestamp::from_second(at).unwrap().to_string(),
            );
            ingester::row::from_envelope(report::Envelope::decode(&envelope).unwrap())
        })
        .collect()
}

fn tombstone(cluster: &str, days: i64) -> QueuedErasure {
    QueuedErasure {
        erasure: Erasure {
            cluster_id: cluster.into(),
            erasure_check: "ab".repeat(32),
        },
        requested_at: jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - days * DAY)
            .unwrap(),
    }
}

fn count(db: &Path, sql: &str) -> i64 {
    sqlite_i64(db, sql)
}

#[tokio::test]
async fn old_reports_are_deleted_in_batches_while_new_ones_are_stored_and_late_ones_are_not() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    // What an ingester without retention stored: 250 reports of 40 days ago, 10 of yesterday,
    // and two tombstones.
    {
        let sink = SqliteSink::open(&db).unwrap();
        sink.write(rows_received(250, 40, "old")).await.unwrap();
        sink.write(rows_received(10, 1, "recent")).await.unwrap();
        sink.erase(&tombstone("gone-long-ago", 40)).await.unwrap();
        sink.erase(&tombstone("gone-lately", 1)).await.unwrap();
    }
    assert_eq!(count(&db, "SELECT count(*) FROM reports"), 260);
    // Still in the stream: 5 reports received 45 days ago (a replay), 5 an hour ago.
    let mut queued = Vec::new();
    for (days, name) in [(45, "late"), (0, "fresh")] {
        for i in 0..5 {
            let mut report: serde_json::Value = serde_json::from_str(SEED).unwrap();
            report["clusterID"] = format!("{name}-{i}").into();
            let at = jiff::Timestamp::now().as_second() - days * DAY - 3600;
            queued.push(envelope_of(
                &report.to_string(),
                &jiff::Timestamp::from_second(at).unwrap().to_string(),
            ));
        }
    }
    nats.publish_all(&queued).await;

    let ingester = InProcess::start(config(
        &nats.url(),
        &format!("sqlite:{}", db.display()),
        &["--retention", "30d"],
    ))
    .await;
    let cutoff = jiff::Timestamp::now().as_second() - 30 * DAY;
    eventually(DEADLINE, "only the last 30 days stored", || async {
        count(&db, "SELECT count(*) FROM reports") == 15
    })
    .await;
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM reports WHERE received_at < {cutoff}")
        ),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM reports WHERE cluster_id LIKE 'recent-%' OR cluster_id LIKE 'fresh-%'"
        ),
        15
    );
    // Their child rows went with them, and only theirs.
    assert_eq!(count(&db, "SELECT count(*) FROM nodes"), 15 * 2);
    assert_eq!(count(&db, "SELECT count(*) FROM capacity"), 15 * 2 * 4);
    assert_eq!(count(&db, "SELECT count(*) FROM extensions"), 0);
    // A tombstone older than the retention covers only reports it deleted.
    assert_eq!(
        count(
            &db,
            "SELECT group_concat(cluster_id) = 'gone-lately' FROM tombstones"
        ),
        1
    );

    let deleted = "spartakus_ingester_retention_deleted_reports_total";
    let expired = r#"spartakus_ingester_rows_total{sink="sqlite",result="expired"}"#;
    let written = r#"spartakus_ingester_rows_total{sink="sqlite",result="written"}"#;
    let text = metrics_when(ingester.addr, expired, 5.0).await;
    assert_eq!(
        metric(&text, expired),
        5.0,
        "the replayed old reports, not stored"
    );
    let text = metrics_when(ingester.addr, deleted, 250.0).await;
    assert_eq!(metric(&text, deleted), 250.0, "{text}");
    let text = metrics_when(ingester.addr, written, 5.0).await;
    assert_eq!(metric(&text, written), 5.0);
    ingester.stop().await;
    let info = nats.consumer_info().await;
    assert_eq!(
        (info.num_ack_pending, info.num_pending),
        (0, 0),
        "late reports are acknowledged"
    );
}

#[tokio::test]
async fn one_retention_step_deletes_at_most_its_batch_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let sink = SqliteSink::open(&db).unwrap();
    sink.write(rows_received(250, 40, "old")).await.unwrap();
    sink.write(rows_received(3, 1, "recent")).await.unwrap();
    let before =
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 30 * DAY).unwrap();
    let mut steps = Vec::new();
    loop {
        let n = sink.expire(before, 100).await.unwrap();
        steps.push(n);
        if n < 100 {
            break;
        }
    }
    assert_eq!(steps, [100, 100, 50]);
    assert_eq!(count(&db, "SELECT count(*) FROM reports"), 3);
    assert_eq!(count(&db, "SELECT count(*) FROM nodes"), 3 * 2);
}

async fn metadata(bq: &testenv::BigQuery, dataset: &str, table: &str) -> serde_json::Value {
    reqwest::get(format!(
        "{}/bigquery/v2/projects/{}/datasets/{dataset}/tables/{table}",
        bq.endpoint(),
        bq.project()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

fn expiration_days(table: &serde_json::Value) -> Option<i64> {
    table["timePartitioning"]["expirationMs"]
        .as_str()
        .map(|ms| ms.parse::<i64>().unwrap() / (DAY * 1000))
}

#[tokio::test]
async fn bigquery_tables_expire_their_partitions_after_the_retention_and_follow_a_change() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let nats = Nats::with_stream().await;
    let endpoint = format!("{}/bigquery/v2", bq.endpoint());
    // The binary's flag reaches the table it creates.
    let ingester = InProcess::start(config(
        &nats.url(),
        &format!("bigquery://{}/kept/reports", bq.project()),
        &[
            "--bigquery-endpoint",
            &endpoint,
            "--bigquery-credentials",
            "none",
            "--retention",
            "30d",
        ],
    ))
    .await;
    let addr = ingester.addr;
    eventually(DEADLINE, "ingester ready", || async move {
        get(addr, "/readyz").await.0 == 200
    })
    .await;
    ingester.stop().await;
    assert_eq!(
        expiration_days(&metadata(&bq, "kept", "reports").await),
        Some(30)
    );
    assert_eq!(
        expiration_days(&metadata(&bq, "kept", "reports_tombstones").await),
        Some(30)
    );

    // Another retention at the next start: both tables follow, nothing else changes.
    bq_sink(&bq, Some(Duration::from_secs(40 * DAY as u64)))
        .await
        .ensure_table()
        .await
        .unwrap();
    let table = metadata(&bq, "kept", "reports").await;
    assert_eq!(expiration_days(&table), Some(40));
    assert_eq!(table["timePartitioning"]["field"], "receivedAt");
    assert_eq!(table["requirePartitionFilter"], true);
    assert_eq!(
        expiration_days(&metadata(&bq, "kept", "reports_tombstones").await),
        Some(40)
    );

    // `none` removes the expiration, with DDL (this client cannot send a null in a patch).
    // Pinned: the emulator accepts `ALTER TABLE … SET OPTIONS (partition_expiration_days =
    // NULL)` and changes nothing; real BigQuery removes the expiration. This fails, and says
    // so, on the day an emulator upgrade applies it.
    bq_sink(&bq, None).await.ensure_table().await.unwrap();
    assert_eq!(
        expiration_days(&metadata(&bq, "kept", "reports").await),
        Some(40),
        "the emulator now applies ALTER TABLE SET OPTIONS: assert that the expiration is gone"
    );
}

async fn bq_sink(bq: &testenv::BigQuery, retention: Option<Duration>) -> BigQuerySink {
    let endpoint = format!("{}/bigquery/v2", bq.endpoint());
    let client = BigQuerySink::client(Some(&endpoint), Some(&Credentials::None))
        .await
        .unwrap();
    let table = TableRef {
        project: bq.project().into(),
        dataset: "kept".into(),
        table: "reports".into(),
    };
    let limits = Limits {
        max_rows: 500,
        max_bytes: 5_000_000,
    };
    BigQuerySink::new(client, table, limits).with_retention(retention)
}
