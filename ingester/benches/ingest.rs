//! Ingest rate: N seed-size reports preloaded into JetStream, consumed by the ingester into a
//! fresh SQLite file; in the same run, the same rows inserted bare (batched transactions, same
//! schema, no NATS) for comparison; then the BigQuery emulator rate for a smaller N.
//!
//! `cargo bench -p ingester --bench ingest` (SPARTAKUS_BENCH_N, default 100,000: runs of a
//! second or less varied by ±20%; SPARTAKUS_BENCH_BQ_N to resize the emulator run).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use clap::Parser;
use ingester::config::Config;
use ingester::row::{Row, from_envelope};
use ingester::sink::sqlite::{open_connection, write_batch};
use report::{Envelope, ReportId};
use tokio_util::sync::CancellationToken;

/// The allocator of the ingester binary, so the pipeline runs here as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: &str = include_str!("../../report/testdata/v1-seed.json");
const BATCH: usize = 500;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn envelopes(n: usize) -> Vec<(ReportId, Vec<u8>)> {
    let mut report: serde_json::Value = serde_json::from_str(SEED).unwrap();
    let at = jiff::Timestamp::now();
    (0..n)
        .map(|i| {
            report["clusterID"] = format!("cluster-{i:08}").into();
            let valid = report::decode(report.to_string().as_bytes()).unwrap();
            let id = ReportId::random();
            (id, Envelope::new(id, at, valid).encode())
        })
        .collect()
}

async fn preload(js: &jetstream::Context, all: &[(ReportId, Vec<u8>)]) {
    js.get_or_create_stream(stream::Config {
        name: report::queue::Topology::default().reports.name,
        subjects: vec![report::queue::Topology::default().reports.subject],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(7200),
        ..Default::default()
    })
    .await
    .unwrap();
    for chunk in all.chunks(1000) {
        let mut acks = Vec::new();
        for (id, payload) in chunk {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.to_string().as_str());
            acks.push(
                js.publish_with_headers(
                    report::queue::Topology::default().reports.subject,
                    headers,
                    payload.clone().into(),
                )
                .await
                .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
}

/// Runs the ingester in process until its metrics say `n` rows were written; the elapsed time.
async fn pipeline(nats_url: &str, sink: &str, n: usize, extra: &[&str]) -> Duration {
    let mut args = vec![
        "ingester",
        "--nats-url",
        nats_url,
        "--sink",
        sink,
        "--listen",
        "127.0.0.1:0",
        "--batch-size",
        "500",
        "--batch-wait",
        "100ms",
        "--max-ack-pending",
        "20000",
    ];
    args.extend_from_slice(extra);
    let config = Config::try_parse_from(args).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(ingester::run(config, listener, shutdown.clone()));
    let deadline = started + Duration::from_secs(240);
    let http = reqwest::Client::new();
    loop {
        let text = match http.get(format!("http://{addr}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let written: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(r#"spartakus_ingester_rows_total{sink=""#))
            .and_then(|l| l.split_once("result=\"written\"} "))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0.0);
        if written as usize >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {written} of {n} written in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    elapsed
}

fn sqlite_rows(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    [
        "reports",
        "nodes",
        "capacity",
        "extensions",
        "workloads",
        "workload_buckets",
        "skipped",
    ]
    .iter()
    .map(|t| {
        conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
    })
    .sum()
}

fn rate(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: both run it.
    let n = env_usize("SPARTAKUS_BENCH_N", 100_000);
    let bq_n = env_usize("SPARTAKUS_BENCH_BQ_N", 2_000);
    let all = envelopes(n);
    let dir = tempfile::tempdir().unwrap();

    // 1. The pipeline: JetStream → ingester → SQLite.
    let nats = testenv::Nats::start().await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    preload(&js, &all).await;
    let db = dir.path().join("pipeline.sqlite");
    let piped = pipeline(&nats.url(), &format!("sqlite:{}", db.display()), n, &[]).await;
    let rows = sqlite_rows(&db);
    assert_eq!(
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM reports", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        n as i64
    );

    // 2. Bare: the same rows, same schema, batched transactions of the same size.
    let decoded: Vec<Row> = all
        .iter()
        .map(|(_, e)| from_envelope(Envelope::decode(e).unwrap()))
        .collect();
    let bare_db = dir.path().join("bare.sqlite");
    let mut conn = open_connection(&bare_db).unwrap();
    let started = Instant::now();
    for chunk in decoded.chunks(BATCH) {
        write_batch(&mut conn, chunk).unwrap();
    }
    let bare = started.elapsed();
    drop(conn);
    assert_eq!(sqlite_rows(&bare_db), rows);

    let (piped_rate, bare_rate) = (rate(n as f64, piped), rate(n as f64, bare));
    println!(
        "reports: {n} (seed size: {} bytes each), {} SQLite rows",
        all[0].1.len(),
        rows
    );
    println!(
        "pipeline  JetStream → ingester → SQLite: {:>9.0} reports/s {:>10.0} rows/s ({:.2?})",
        piped_rate,
        rate(rows as f64, piped),
        piped
    );
    println!(
        "bare      batched INSERTs into SQLite:  {:>9.0} reports/s {:>10.0} rows/s ({:.2?})",
        bare_rate,
        rate(rows as f64, bare),
        bare
    );
    println!("ratio pipeline / bare: {:.2}", piped_rate / bare_rate);

    // 3. The BigQuery emulator, for information.
    match testenv::BigQuery::start().await {
        Ok(bq) => {
            let nats = testenv::Nats::start().await.unwrap();
            let client = async_nats::connect(nats.url()).await.unwrap();
            preload(&jetstream::new(client), &all[..bq_n.min(n)]).await;
            let endpoint = format!("{}/bigquery/v2", bq.endpoint());
            let sink = format!("bigquery://{}/bench/reports", bq.project());
            let took = pipeline(
                &nats.url(),
                &sink,
                bq_n.min(n),
                &[
                    "--bigquery-endpoint",
                    &endpoint,
                    "--bigquery-credentials",
                    "none",
                ],
            )
            .await;
            println!(
                "pipeline  JetStream → ingester → BigQuery emulator: {:.0} reports/s ({} reports, {:.2?})",
                rate(bq_n.min(n) as f64, took),
                bq_n.min(n),
                took
            );
        }
        Err(e) => println!("BigQuery emulator not available: {e}"),
    }
}
