//! The ingester against a real nats-server and a real SQLite file.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::*;
use ingester::sink::Sink;
use ingester::sink::sqlite::SqliteSink;
use rusqlite::Connection;

const DEADLINE: Duration = Duration::from_secs(60);

fn sink_arg(path: &std::path::Path) -> String {
    format!("sqlite:{}", path.display())
}

async fn wait_rows(db: &std::path::Path, n: i64) {
    eventually(DEADLINE, &format!("{n} reports in SQLite"), || async {
        sqlite_i64(db, "SELECT count(*) FROM reports") >= n
    })
    .await;
}

/// A node ID stored as it was sent: a report published to the stream directly.
pub(crate) fn as_sent(id: &str) -> String {
    id.to_owned()
}

/// A node ID of the seed report as a gateway of testenv stores it: re-keyed under its key.
pub(crate) fn re_keyed(id: &str) -> String {
    report::node_id::NodeIdKey::from_secret(testenv::GATEWAY_NODE_ID_KEY)
        .unwrap()
        .rekey("2f9c93d3-156c-47aa-8802-578ffca9b50e", id)
}

/// Checks the seed report's rows field by field; `stored_id` maps a node ID as sent to the one
/// stored ([`as_sent`], or [`re_keyed`] for a report that came through a gateway).
pub(crate) fn assert_seed_rows(
    db: &std::path::Path,
    report_id: &str,
    stored_id: impl Fn(&str) -> String,
) {
    let conn = Connection::open(db).unwrap();
    let (version, timestamp, cluster, master, minor, received): (
        String,
        String,
        String,
        String,
        String,
        i64,
    ) = conn
        .query_row(
            "SELECT version, timestamp, cluster_id, master_version, master_minor, received_at
             FROM reports WHERE report_id = ?1",
            [report_id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        (
            version.as_str(),
            timestamp.as_str(),
            cluster.as_str(),
            master.as_str(),
            minor.as_str()
        ),
        (
            "v1.0.0",
            "867530909031976",
            "2f9c93d3-156c-47aa-8802-578ffca9b50e",
            "v1.3.5",
            "1.3"
        )
    );
    assert!(
        received > 1_600_000_000,
        "received_at is UNIX seconds: {received}"
    );
    let mut nodes = conn
        .prepare(
            "SELECT n.node_id, n.operating_system, n.os_image, n.kernel_version, n.architecture,
                    n.container_runtime_version, n.kubelet_version, n.cloud_provider
             FROM nodes n JOIN reports r ON r.id = n.report WHERE r.report_id = ?1 ORDER BY n.idx",
        )
        .unwrap();
    let nodes: Vec<Vec<Option<String>>> = nodes
        .query_map([report_id], |r| (0..8).map(|i| r.get(i)).collect())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        nodes,
        vec![
            vec![
                Some(stored_id("c8863d09ecc5be8d9791f72acd275fc2")),
                s("linux"),
                s("Debian GNU/Linux 7 (wheezy)"),
                s("3.16.0-4-amd64"),
                s("amd64"),
                s("docker://1.11.2"),
                s("v1.3.2"),
                None
            ],
            vec![
                Some(stored_id("5b919a15947b0680277acddf68d4b7aa")),
                s("linux"),
                s("Debian GNU/Linux 7 (wheezy)"),
                s("3.16.0-4-amd64"),
                s("amd64"),
                s("docker://1.11.2"),
                s("v1.3.2"),
                None
            ],
        ]
    );
    let capacity: Vec<(i64, String, String)> = conn
        .prepare(
            "SELECT c.node, c.resource, c.value FROM capacity c JOIN reports r ON r.id = c.report
             WHERE r.report_id = ?1 ORDER BY c.node, c.idx",
        )
        .unwrap()
        .query_map([report_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let per_node = [
        ("alpha.kubernetes.io/nvidia-gpu", "0"),
        ("cpu", "4"),
        ("memory", "15437428Ki"),
        ("pods", "110"),
    ];
    let want: Vec<(i64, String, String)> = (0..2)
        .flat_map(|n| {
            per_node
                .iter()
                .map(move |(r, v)| (n, r.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(capacity, want);
    let extensions: i64 = conn
        .query_row(
            "SELECT count(*) FROM extensions e JOIN reports r ON r.id = e.report WHERE r.report_id = ?1",
            [report_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(extensions, 0);
}

/// Checks the v2 statistics of `report/testdata/v2-full.json` field by field.
pub(crate) fn assert_v2_rows(db: &std::path::Path, report_id: &str) {
    let conn = Connection::open(db).unwrap();
    let report: serde_json::Value = serde_json::from_str(V2_FULL).unwrap();
    let (schema_version, namespaces, id): (i64, i64, i64) = conn
        .query_row(
            "SELECT schema_version, namespaces, id FROM reports WHERE report_id = ?1",
            [report_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(schema_version, report["schemaVersion"].as_i64().unwrap());
    assert_eq!(namespaces, report["namespaces"].as_i64().unwrap());
    let extensions: Vec<(String, String)> = conn
        .prepare("SELECT name, value FROM extensions WHERE report = ?1 ORDER BY idx")
        .unwrap()
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<(String, String)> = report["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(extensions, want);
    for (i, w) in report["workloads"].as_array().unwrap().iter().enumerate() {
        let (kind, total, median, p90, sampled): (
            String,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        ) = conn
            .query_row(
                "SELECT kind, total, age_median_hours, age_p90_hours, namespaces_sampled
                 FROM workloads WHERE report = ?1 AND idx = ?2",
                [id, i as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(kind, w["kind"].as_str().unwrap());
        assert_eq!(total, w["total"].as_i64().unwrap());
        assert_eq!(sampled, w["namespacesSampled"].as_i64());
        assert_eq!(median, w["ageHours"]["median"].as_i64());
        assert_eq!(p90, w["ageHours"]["p90"].as_i64());
        let buckets: Vec<(i64, Option<i64>, i64)> = conn
            .prepare("SELECT min, max, namespaces FROM workload_buckets WHERE report = ?1 AND workload = ?2 ORDER BY idx")
            .unwrap()
            .query_map([id, i as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want: Vec<(i64, Option<i64>, i64)> = w["perNamespace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["min"].as_i64().unwrap(),
                    b["max"].as_i64(),
                    b["namespaces"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(buckets, want, "buckets of workload {i}");
    }
    let skipped: Vec<(String, String)> = conn
        .prepare("SELECT section, reason FROM skipped WHERE report = ?1 ORDER BY idx")
        .unwrap()
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<(String, String)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["section"].as_str().unwrap().into(),
                s["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(skipped, want);
    let gpu: String = conn
        .query_row(
            "SELECT value FROM capacity WHERE report = ?1 AND resource = 'nvidia.com/gpu'",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(gpu, "1");
}

#[tokio::test]
async fn published_reports_land_in_sqlite_field_by_field() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let (seed_id, seed) = envelope_of(SEED, &days_ago(1));
    let (v2_id, v2) = envelope_of(V2_FULL, &days_ago(1));
    nats.publish_raw(&seed_id.to_string(), seed).await;
    nats.publish_raw(&v2_id.to_string(), v2).await;
    nats.publish_all(&envelopes(100)).await;

    let ingester = InProcess::start(config(&nats.url(), &sink_arg(&db), &[])).await;
    wait_rows(&db, 102).await;
    assert_seed_rows(&db, &seed_id.to_string(), as_sent);
    assert_v2_rows(&db, &v2_id.to_string());
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM nodes"), 2 * 101 + 2);

    let written = r#"spartakus_ingester_rows_total{sink="sqlite",result="written"}"#;
    let metrics = metrics_when(ingester.addr, written, 102.0).await;
    assert_eq!(metric(&metrics, written), 102.0);
    ingester.stop().await;
    let info = nats.consumer_info().await;
    assert_eq!(info.num_ack_pending, 0, "every report acknowledged");
    assert_eq!(info.num_pending, 0);
}

#[tokio::test]
async fn a_report_redelivered_after_a_crash_between_write_and_ack_is_stored_once() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let batch = envelopes(50);
    // A previous ingester wrote these rows and died before acknowledging them.
    let sink = SqliteSink::open(&db).unwrap();
    let rows: Vec<_> = batch
        .iter()
        .map(|(_, e)| ingester::row::from_envelope(report::Envelope::decode(e).unwrap()))
        .collect();
    let outcomes = sink.write(rows).await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ingester::sink::Outcome::Written))
    );
    drop(sink);
    nats.publish_all(&batch).await;
    // The same report once more under another message ID: JetStream's dedupe cannot catch it.
    let (id, payload) = &batch[0];
    nats.publish_raw(&format!("{id}-again"), payload.clone())
        .await;

    let ingester = InProcess::start(config(&nats.url(), &sink_arg(&db), &[])).await;
    let addr = ingester.addr;
    eventually(DEADLINE, "51 duplicates counted", || async move {
        let (_, m) = get(addr, "/metrics").await;
        metric(
            &m,
            r#"spartakus_ingester_rows_total{sink="sqlite",result="duplicate"}"#,
        ) == 51.0
    })
    .await;
    ingester.stop().await;
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM reports"), 50);
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM nodes"), 100);
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM capacity"), 400);
    assert_eq!(nats.consumer_info().await.num_ack_pending, 0);
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_with_a_reason_and_do_not_block_the_rest() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    nats.publish_all(&envelopes(10)).await;
    nats.publish_raw("poison-1", b"not json at all".to_vec())
        .await;
    let mut invalid: serde_json::Value = serde_json::from_slice(&envelope(99).1).unwrap();
    invalid["report"]["clusterID"] = "has spaces, not allowed".into();
    nats.publish_raw("poison-2", invalid.to_string().into_bytes())
        .await;
    let more: Vec<_> = (100..110).map(envelope).collect();
    nats.publish_all(&more).await;

    let ingester =
        InProcess::start(config(&nats.url(), &sink_arg(&db), &["--batch-size", "4"])).await;
    wait_rows(&db, 20).await;
    let dead = nats.dead_letters(2).await;
    assert_eq!(dead[0], ("syntax".to_owned(), b"not json at all".to_vec()));
    assert_eq!(dead[1].0, "invalid");
    assert_eq!(dead[1].1, invalid.to_string().into_bytes());
    let syntax = r#"spartakus_ingester_dead_lettered_total{reason="syntax"}"#;
    let invalid = r#"spartakus_ingester_dead_lettered_total{reason="invalid"}"#;
    metrics_when(ingester.addr, syntax, 1.0).await;
    let metrics = metrics_when(ingester.addr, invalid, 1.0).await;
    assert_eq!(metric(&metrics, syntax), 1.0);
    assert_eq!(metric(&metrics, invalid), 1.0);
    ingester.stop().await;
    let info = nats.consumer_info().await;
    assert_eq!(info.num_ack_pending, 0, "poison terminated, not pending");
    assert_eq!(info.num_redelivered, 0, "poison never retried");
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM reports"), 20);
}

#[tokio::test]
async fn readyz_waits_for_the_stream_the_gateway_creates() {
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let ingester = InProcess::start(config(&nats.url(), &sink_arg(&db), &[])).await;
    let addr = ingester.addr;
    eventually(DEADLINE, "/healthz", || async move {
        get(addr, "/healthz").await.0 == 200
    })
    .await;
    let (status, body) = ingester.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("consumer not bound"), "{body}");

    nats.create_stream().await;
    eventually(DEADLINE, "/readyz 200", || async move {
        get(addr, "/readyz").await.0 == 200
    })
    .await;
    nats.publish_all(&envelopes(3)).await;
    wait_rows(&db, 3).await;
    ingester.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_the_batch_in_hand_and_leaves_nothing_unacknowledged() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let all = envelopes(3000);
    nats.publish_all(&all).await;
    let ingester = InProcess::start(config(
        &nats.url(),
        &sink_arg(&db),
        &["--batch-size", "50", "--shutdown-timeout", "10s"],
    ))
    .await;
    wait_rows(&db, 1).await;
    let started = Instant::now();
    ingester.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped within the deadline"
    );
    let stored = sqlite_i64(&db, "SELECT count(*) FROM reports");
    let info = nats.consumer_info().await;
    assert_eq!(
        info.num_ack_pending, 0,
        "the batch in hand was acked, the rest handed back"
    );
    assert!(
        info.ack_floor.stream_sequence as i64 >= stored,
        "everything stored was acknowledged ({stored} stored, ack floor {})",
        info.ack_floor.stream_sequence
    );

    // A second run picks up exactly where the first stopped.
    let ingester = InProcess::start(config(&nats.url(), &sink_arg(&db), &[])).await;
    wait_rows(&db, 3000).await;
    ingester.stop().await;
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM reports"), 3000);
    assert_eq!(
        sqlite_i64(&db, "SELECT count(DISTINCT cluster_id) FROM reports"),
        3000
    );
}

#[tokio::test]
async fn kill_9_mid_stream_then_restart_stores_every_report_exactly_once() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let n = 8000;
    nats.publish_all(&envelopes(n)).await;
    let sink = sink_arg(&db);
    let mut first = Process::spawn(&nats.url(), &sink, &["--batch-size", "100"]).await;
    eventually(DEADLINE, "the first rows", || async {
        sqlite_i64(&db, "SELECT count(*) FROM reports") > 0
    })
    .await;
    first.kill();
    let at_kill = sqlite_i64(&db, "SELECT count(*) FROM reports");
    assert!(
        at_kill < n as i64,
        "killed mid-stream ({at_kill} of {n} stored)"
    );

    // Restart quickly with a short ack wait so the unacked batch comes back fast.
    let second = Process::spawn(
        &nats.url(),
        &sink,
        &["--batch-size", "100", "--ack-wait", "2s"],
    )
    .await;
    wait_rows(&db, n as i64).await;
    let addr = second.addr;
    eventually(DEADLINE, "all acknowledged", || async {
        nats.consumer_info().await.num_ack_pending == 0 && get(addr, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM reports"), n as i64);
    assert_eq!(
        sqlite_i64(&db, "SELECT count(DISTINCT report_id) FROM reports"),
        n as i64
    );
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM nodes"), 2 * n as i64);
    assert_eq!(
        sqlite_i64(&db, "SELECT count(*) FROM capacity"),
        8 * n as i64
    );
}

#[tokio::test]
async fn two_replicas_on_one_consumer_split_the_work_and_store_each_report_once() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let sink = sink_arg(&db);
    let a = Process::spawn(&nats.url(), &sink, &["--batch-size", "50"]).await;
    let b = Process::spawn(&nats.url(), &sink, &["--batch-size", "50"]).await;
    a.wait_ready().await;
    b.wait_ready().await;
    let n = 6000;
    nats.publish_all(&envelopes(n)).await;
    wait_rows(&db, n as i64).await;
    let written = |text: &str| {
        metric(
            text,
            r#"spartakus_ingester_rows_total{sink="sqlite",result="written"}"#,
        )
    };
    // A replica counts its rows just after its commit: wait for both counters to catch up with
    // the rows already visible (they once read 5,950 of 6,000), then check the split.
    let total = || async {
        let (_, ma) = get(a.addr, "/metrics").await;
        let (_, mb) = get(b.addr, "/metrics").await;
        written(&ma) + written(&mb)
    };
    eventually(DEADLINE, "both replicas counted their rows", || async {
        total().await >= n as f64
    })
    .await;
    let (_, ma) = get(a.addr, "/metrics").await;
    let (_, mb) = get(b.addr, "/metrics").await;
    assert!(
        written(&ma) > 0.0 && written(&mb) > 0.0,
        "both replicas wrote: {} / {}",
        written(&ma),
        written(&mb)
    );
    assert_eq!(written(&ma) + written(&mb), n as f64);
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM reports"), n as i64);
    assert_eq!(
        sqlite_i64(&db, "SELECT count(DISTINCT report_id) FROM reports"),
        n as i64
    );
}

#[tokio::test]
async fn reports_posted_to_the_real_gateway_land_in_sqlite_field_by_field() {
    let nats = Nats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let gateway = Gateway::start(&nats.url()).await;
    let ingester = InProcess::start(config(&nats.url(), &sink_arg(&db), &[])).await;

    let http = reqwest::Client::new();
    for body in [SEED, V2_FULL] {
        // The gateway answers 503 until its stream exists; a volunteer retries, so do we.
        eventually(DEADLINE, "204 from the gateway", || {
            let request = http
                .post(format!("http://{}/api/v1", gateway.addr))
                .header("Content-Type", "application/json")
                .body(body);
            async move { matches!(request.send().await, Ok(r) if r.status().as_u16() == 204) }
        })
        .await;
    }
    wait_rows(&db, 2).await;
    // The seed carries no reportID: the gateway derived one. Find it by cluster.
    let conn = Connection::open(&db).unwrap();
    let seed_id: String = conn
        .query_row(
            "SELECT report_id FROM reports WHERE cluster_id = '2f9c93d3-156c-47aa-8802-578ffca9b50e'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_seed_rows(&db, &seed_id, re_keyed);
    let v2: serde_json::Value = serde_json::from_str(V2_FULL).unwrap();
    assert_v2_rows(&db, v2["reportID"].as_str().unwrap());
    let received: i64 = conn
        .query_row(
            "SELECT received_at FROM reports WHERE report_id = ?1",
            [&seed_id],
            |r| r.get(0),
        )
        .unwrap();
    let now = jiff::Timestamp::now().as_second();
    assert!(
        (now - received).abs() < 300,
        "receivedAt is the gateway's clock"
    );
    ingester.stop().await;
}
