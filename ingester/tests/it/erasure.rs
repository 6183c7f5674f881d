//! Erasure on the real path into SQLite: reports and erasure requests POSTed to the gateway
//! binary, queued by JetStream (a real nats-server), carried out by the ingester; then the
//! `stats` binary over the same file. (The same path into BigQuery is in tests/bigquery.rs,
//! beside its fault-injecting proxy.)
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use report::Envelope;

const DEADLINE: Duration = Duration::from_secs(60);

fn sink_arg(db: &Path) -> String {
    format!("sqlite:{}", db.display())
}

async fn metric_at_least(addr: std::net::SocketAddr, name: &str, n: f64) {
    eventually(DEADLINE, &format!("{name} >= {n}"), || async move {
        metric(&get(addr, "/metrics").await.1, name) >= n
    })
    .await;
}

const DONE: &str = r#"spartakus_ingester_erasures_total{result="done"}"#;
const ERASED_ON_ARRIVAL: &str = r#"spartakus_ingester_rows_total{sink="sqlite",result="erased"}"#;
const ERASED_REPORTS: &str = "spartakus_ingester_erased_reports_total";

/// The stored reports' IDs of `cluster`.
fn reports_of(db: &Path, cluster: &str) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT report_id FROM reports WHERE cluster_id = ?1 ORDER BY report_id")
        .unwrap();
    stmt.query_map([cluster], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Rows of every child table that belong to the report `id`.
fn child_rows(db: &Path, id: &str) -> i64 {
    [
        "nodes",
        "capacity",
        "extensions",
        "workloads",
        "workload_buckets",
        "skipped",
    ]
    .iter()
    .map(|t| {
        sqlite_i64(
            db,
            &format!(
                "SELECT count(*) FROM {t} WHERE report = (SELECT id FROM reports WHERE report_id = '{id}')"
            ),
        )
    })
    .sum()
}

fn id_of(report: &serde_json::Value) -> String {
    report["reportID"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_right_secret_erases_exactly_the_clusters_reports_with_its_check_and_a_wrong_one_nothing()
 {
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let gateway = Gateway::start(&nats.url()).await;
    let ingester = InProcess::start(config(&nats.url(), &sink_arg(&db), &[])).await;

    let (secret_a, check_a) = secret_and_check(0xa1);
    let (secret_b, check_b) = secret_and_check(0xb2);
    let (_, rotated) = secret_and_check(0xa9);
    let a1 = v2_report("cluster-a", Some(&check_a));
    let a2 = v2_report("cluster-a", Some(&check_a));
    let a_rotated = v2_report("cluster-a", Some(&rotated));
    let b1 = v2_report("cluster-b", Some(&check_b));
    for report in [&a1, &a2, &a_rotated, &b1] {
        assert_eq!(gateway.report(report).await, 202);
    }
    assert_eq!(gateway.report_v1(&v1_report("cluster-a")).await, 204);
    wait_rows(&db, 5).await;
    let children = child_rows(&db, &id_of(&a1));
    assert!(children > 0, "the full report has child rows");

    // A wrong secret, and another cluster's secret: each carried out, nothing erased.
    let (status, body) = gateway.erase("cluster-a", &"ee".repeat(32)).await;
    assert_eq!((status, body.as_str()), (202, r#"{"queued":true}"#));
    assert_eq!(gateway.erase("cluster-a", &secret_b).await.0, 202);
    metric_at_least(ingester.addr, DONE, 2.0).await;
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM reports"), 5);
    assert_eq!(child_rows(&db, &id_of(&a1)), children);

    // The right one: the same answer; A's reports with its check go, with their child rows.
    let (status, right_body) = gateway.erase("cluster-a", &secret_a).await;
    assert_eq!((status, right_body), (202, body));
    metric_at_least(ingester.addr, DONE, 3.0).await;
    let a_left = reports_of(&db, "cluster-a");
    assert_eq!(
        a_left.len(),
        2,
        "the rotated key's report and the v1 report: {a_left:?}"
    );
    assert!(a_left.contains(&id_of(&a_rotated)));
    assert!(!a_left.contains(&id_of(&a1)) && !a_left.contains(&id_of(&a2)));
    assert_eq!(reports_of(&db, "cluster-b"), [id_of(&b1)]);
    for report in [&a1, &a2] {
        assert_eq!(child_rows(&db, &id_of(report)), 0);
        let orphans = sqlite_i64(
            &db,
            "SELECT (SELECT count(*) FROM nodes WHERE report NOT IN (SELECT id FROM reports))
                  + (SELECT count(*) FROM capacity WHERE report NOT IN (SELECT id FROM reports))
                  + (SELECT count(*) FROM workloads WHERE report NOT IN (SELECT id FROM reports))",
        );
        assert_eq!(orphans, 0, "no child row outlives its report");
    }
    let text = metrics_when(ingester.addr, ERASED_REPORTS, 2.0).await;
    assert_eq!(metric(&text, ERASED_REPORTS), 2.0);
    // The tombstone holds the check and the time, never the secret.
    let tombstone = sqlite_i64(
        &db,
        &format!(
            "SELECT count(*) FROM tombstones WHERE cluster_id = 'cluster-a' AND erasure_check = '{check_a}'"
        ),
    );
    assert_eq!(tombstone, 1);

    // What the cluster sends after the request is new data it chose to send: kept.
    after_the_second_of(jiff::Timestamp::now()).await;
    let a3 = v2_report("cluster-a", Some(&check_a));
    assert_eq!(gateway.report(&a3).await, 202);
    wait_rows(&db, 4).await;
    assert!(reports_of(&db, "cluster-a").contains(&id_of(&a3)));
    ingester.stop().await;
}

/// One `--queue` on both binaries renames every stream, the erasures stream included: before
/// `report::queue`, the gateway's erasure stream was a constant and the ingester's a flag, so a
/// renamed pair never became ready and erasure requests were never carried out.
#[tokio::test]
async fn a_renamed_queue_pairs_the_gateway_and_the_ingester_for_reports_and_erasures() {
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let gateway = Gateway::start_with(&nats.url(), &["--queue", "staging"]).await;
    let ingester = testenv::Launch::ingester(&nats.url(), &sink_arg(&db))
        .args(["--queue", "staging"])
        .start()
        .await
        .unwrap_or_else(|e| panic!("the ingester never became ready on a renamed queue: {e}"));
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let queue = report::queue::Topology::new("staging").unwrap();
    for stream in [&queue.reports, &queue.erasures, &queue.dead_letters] {
        let info = js
            .get_stream(&stream.name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(info.config.subjects, std::slice::from_ref(&stream.subject));
    }
    let default = report::queue::Topology::default();
    assert!(
        js.get_stream(&default.reports.name).await.is_err(),
        "nothing on the default names"
    );

    let (secret, check) = secret_and_check(0x3e);
    let report = v2_report("cluster-r", Some(&check));
    assert_eq!(gateway.report(&report).await, 202);
    wait_rows(&db, 1).await;
    assert_eq!(gateway.erase("cluster-r", &secret).await.0, 202);
    metric_at_least(ingester.addr(), DONE, 1.0).await;
    assert!(reports_of(&db, "cluster-r").is_empty());
}

#[tokio::test]
async fn reports_still_queued_behind_the_request_are_never_stored() {
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let gateway = Gateway::start(&nats.url()).await;
    let (secret, check) = secret_and_check(0x5c);

    // No ingester yet: the reports, the request, and a report after it wait in the streams.
    let before: Vec<serde_json::Value> = (0..3)
        .map(|_| v2_report("cluster-q", Some(&check)))
        .collect();
    for report in &before {
        assert_eq!(gateway.report(report).await, 202);
    }
    let other = v2_report("cluster-other", Some(&check));
    assert_eq!(gateway.report(&other).await, 202);
    assert_eq!(gateway.erase("cluster-q", &secret).await.0, 202);
    after_the_second_of(jiff::Timestamp::now()).await;
    let after = v2_report("cluster-q", Some(&check));
    assert_eq!(gateway.report(&after).await, 202);

    let ingester = InProcess::start(config(&nats.url(), &sink_arg(&db), &[])).await;
    metric_at_least(ingester.addr, DONE, 1.0).await;
    wait_rows(&db, 2).await;
    eventually(DEADLINE, "every report settled", || async {
        nats.consumer_info().await.num_pending == 0
            && nats.consumer_info().await.num_ack_pending == 0
    })
    .await;
    assert_eq!(reports_of(&db, "cluster-q"), [id_of(&after)]);
    assert_eq!(reports_of(&db, "cluster-other"), [id_of(&other)]);
    // Whichever consumer went first, the three are gone: dropped on arrival past the
    // tombstone, or stored and then deleted by the erasure.
    let text = get(ingester.addr, "/metrics").await.1;
    assert_eq!(
        metric(&text, ERASED_ON_ARRIVAL) + metric(&text, ERASED_REPORTS),
        3.0,
        "{text}"
    );

    // A covered report that arrives later still (a redelivery, a replay) is dropped too.
    let mut late: serde_json::Value = v2_report("cluster-q", Some(&check));
    late["reportID"] = report::ReportId::random().to_string().into();
    let (id, payload) = envelope_of(&late.to_string(), &days_ago(1));
    let dropped_before = metric(&text, ERASED_ON_ARRIVAL);
    nats.publish_raw(&id.to_string(), payload).await;
    metric_at_least(ingester.addr, ERASED_ON_ARRIVAL, dropped_before + 1.0).await;
    assert_eq!(reports_of(&db, "cluster-q"), [id_of(&after)]);
    ingester.stop().await;
    assert_eq!(
        nats.consumer_info().await.num_ack_pending,
        0,
        "dropped means acknowledged"
    );
}

/// What the statistics job counts for the window ending on `date`: distinct clusters and reports
/// received in its 28 UTC days, from the stored table it reads (`reports`). The published
/// snapshot cannot show this exactly: its numbers are differentially private, noisy by design.
fn window_totals(db: &Path, date: &str) -> (i64, i64) {
    let last: jiff::civil::Date = date.parse().unwrap();
    let end = last
        .tomorrow()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second();
    let start = end - 28 * 86_400;
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(
        "SELECT COUNT(DISTINCT cluster_id), COUNT(*) FROM reports
         WHERE received_at >= ?1 AND received_at < ?2",
        [start, end],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[tokio::test]
async fn the_statistics_window_no_longer_counts_an_erased_cluster() {
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let gateway = Gateway::start(&nats.url()).await;
    let ingester = InProcess::start(config(&nats.url(), &sink_arg(&db), &[])).await;

    // Three clusters that reported yesterday (the snapshot of a day covers days already over),
    // queued as the gateway queues them.
    let yesterday = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .yesterday()
        .unwrap();
    let noon = yesterday
        .at(12, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    let (secret, check) = secret_and_check(0x77);
    for cluster in ["stats-a", "stats-b", "stats-c"] {
        let report = v2_report(cluster, Some(&check));
        let valid = report::decode(report.to_string().as_bytes()).unwrap();
        let id = valid.report_id().unwrap();
        nats.publish_raw(&id.to_string(), Envelope::new(id, noon, valid).encode())
            .await;
    }
    wait_rows(&db, 3).await;
    let date = yesterday.to_string();
    assert_eq!(window_totals(&db, &date), (3, 3));

    assert_eq!(gateway.erase("stats-b", &secret).await.0, 202);
    metric_at_least(ingester.addr, DONE, 1.0).await;
    assert_eq!(
        window_totals(&db, &date),
        (2, 2),
        "the erased cluster is not counted"
    );
    ingester.stop().await;
}

async fn wait_rows(db: &Path, n: i64) {
    eventually(DEADLINE, &format!("{n} reports in SQLite"), || async move {
        sqlite_i64(db, "SELECT count(*) FROM reports") == n
    })
    .await;
}
