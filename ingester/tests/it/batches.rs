//! Batches are bounded by bytes as well as by count: large reports are pulled a few at a time,
//! and a report larger than the whole budget is still written, alone. A batch never waits to
//! fill: the last reports of a burst, and a lone report on an idle stream, are stored at once,
//! not when `--batch-wait` ends the pull.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clap::Parser;

use report::{Envelope, ReportId};

use crate::common::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// An envelope of a seed-shaped report with `nodes` nodes (about 330 bytes each), received an
/// hour ago.
fn envelope_with_nodes(cluster: usize, nodes: usize) -> (ReportId, Vec<u8>) {
    let mut report: serde_json::Value = serde_json::from_str(SEED).unwrap();
    report["clusterID"] = format!("cluster-{cluster:06}").into();
    let node = report["nodes"][0].clone();
    report["nodes"] = (0..nodes)
        .map(|n| {
            let mut node = node.clone();
            node["id"] = format!("{:032x}", cluster * 100_000 + n).into();
            node
        })
        .collect();
    let valid = report::decode(report.to_string().as_bytes()).unwrap();
    let id = ReportId::random();
    let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 3600).unwrap();
    (id, Envelope::new(id, at, valid).encode())
}

#[tokio::test]
async fn large_reports_are_pulled_a_few_at_a_time_and_one_over_the_budget_alone() {
    let nats = Nats::with_stream().await;
    // 24 reports of about 100 KB, then one of about 650 KB, all queued before the ingester
    // starts: counted by messages, the first pull would take every one of them.
    let mut queued: Vec<_> = (0..24).map(|i| envelope_with_nodes(i, 300)).collect();
    queued.push(envelope_with_nodes(99, 2_000));
    let sizes: Vec<usize> = queued.iter().map(|(_, m)| m.len()).collect();
    assert!(
        sizes[..24].iter().all(|&s| (80_000..130_000).contains(&s)),
        "{sizes:?}"
    );
    assert!(sizes[24] > 256 << 10, "{sizes:?}");
    nats.publish_all(&queued).await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let ingester = InProcess::start(config(
        &nats.url(),
        &format!("sqlite:{}", db.display()),
        &["--batch-max-bytes", "256KiB", "--batch-size", "500"],
    ))
    .await;
    eventually(DEADLINE, "25 reports in SQLite", || async {
        sqlite_i64(&db, "SELECT count(*) FROM reports") >= 25
    })
    .await;

    // At most two 100 KB reports fit in 256 KiB: at least 12 batches for them, and the large
    // one on its own.
    let batches = "spartakus_ingester_batches_total{result=\"ok\"}";
    let text = metrics_when(ingester.addr, batches, 13.0).await;
    assert!(metric(&text, batches) >= 13.0, "{text}");
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM reports"), 25);
    assert_eq!(
        sqlite_i64(&db, "SELECT count(*) FROM nodes"),
        24 * 300 + 2_000
    );
    // Nothing was refused, nakked or dead-lettered on the way.
    assert_eq!(
        metric(&text, "spartakus_ingester_redeliveries_total"),
        0.0,
        "{text}"
    );
    let mut dead = nats.js.get_stream(queue().dead_letters.name).await.unwrap();
    assert_eq!(dead.info().await.unwrap().state.messages, 0);
    let info = nats.consumer_info().await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
    ingester.stop().await;
}

/// An ingester on `nats` writing to `db` whose pulls wait up to 30 s for a report: far longer
/// than any test below waits for one to be stored.
async fn patient_ingester(nats: &Nats, db: &std::path::Path) -> InProcess {
    let sink = format!("sqlite:{}", db.display());
    let config = ingester::config::Config::try_parse_from([
        "ingester",
        "--nats-url",
        &nats.url(),
        "--sink",
        &sink,
        "--listen",
        "127.0.0.1:0",
        "--batch-wait",
        "30s",
    ])
    .unwrap();
    InProcess::start(config).await
}

/// Well under `--batch-wait` (30 s): a report waiting for a pull to expire is not stored in it.
const PROMPT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_last_reports_of_a_burst_are_stored_without_waiting_for_the_batch_wait() {
    let nats = Nats::with_stream().await;
    // Two full batches of 500 and three left over, all queued before the ingester starts.
    let queued = envelopes(1_003);
    nats.publish_all(&queued).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let ingester = patient_ingester(&nats, &db).await;
    eventually(PROMPT, "all 1,003 reports in SQLite", || async {
        sqlite_i64(&db, "SELECT count(*) FROM reports") == 1_003
    })
    .await;
    // Acked after the commit: every ack reaches JetStream soon after.
    eventually(PROMPT, "nothing pending or unacked", || async {
        let info = nats.consumer_info().await;
        (info.num_pending, info.num_ack_pending) == (0, 0)
    })
    .await;
    ingester.stop().await;
}

#[tokio::test]
async fn a_lone_report_on_an_idle_stream_is_stored_without_waiting_for_the_batch_wait() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let ingester = patient_ingester(&nats, &db).await;
    // Bound and pulling: its pull request waits for a report.
    eventually(PROMPT, "the ingester ready", || async {
        ingester.get("/readyz").await.0 == 200
    })
    .await;
    for (i, one) in envelopes(3).into_iter().enumerate() {
        nats.publish_all(std::slice::from_ref(&one)).await;
        eventually(PROMPT, "the lone report in SQLite", || async {
            sqlite_i64(&db, "SELECT count(*) FROM reports") == i as i64 + 1
        })
        .await;
    }
    ingester.stop().await;
}
