//! The BigQuery sink against the emulator: N distinct seed-size reports preloaded into JetStream,
//! drained by the ingester in process into the BigQuery emulator at a few batch sizes; beside
//! each, the same rows sent by the same client straight to insertAll (the sink's request split:
//! at most 500 rows a request, a batch's requests at once, one batch at a time), without NATS,
//! decoding, tombstone checks or acks, so the ratio shows what the ingester costs over the
//! emulator's own rate.
//!
//! Both go through testenv's `BigQueryProxy`, which records every insertAll: that gives the
//! requests and rows per request; bytes per request are the JSON bodies as the client encodes
//! them before gzip (each row's exact size is known here). One raw run without the proxy shows
//! what the proxy itself costs.
//!
//! `cargo bench -p ingester --bench ingest` (SPARTAKUS_BENCH_BQ_N reports per run, default
//! 3,000; SPARTAKUS_BENCH_BQ_BATCHES, default `100,500,2000`). What the emulator cannot show
//! (BigQuery's latency, quotas, streaming buffer, insertId deduplication) is in
//! docs/collector.md, "BigQuery: batching and limits".
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use clap::Parser;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use ingester::config::Config;
use ingester::row::{Row, from_envelope};
use ingester::sink::bigquery::{BigQuerySink, Limits};
use report::{Envelope, ReportId};
use stored::TableRef;
use stored::bigquery::Credentials;
use testenv::BigQueryProxy;
use tokio_util::sync::CancellationToken;

/// The allocator of the ingester binary, so the pipeline runs here as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: &str = include_str!("../../report/testdata/v1-seed.json");
/// `--bigquery-max-rows`' default, which the raw runs split by too.
const MAX_ROWS: usize = 500;
/// `--bigquery-max-bytes`' default; seed-size rows never reach it (checked below).
const MAX_BYTES: usize = 5_000_000;
/// A request body's own fields, around its rows, as the client encodes it.
const BODY: &str = r#"{"ignoreUnknownValues":false,"rows":[],"skipInvalidRows":true}"#;

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

async fn create_stream(js: &jetstream::Context) {
    let queue = report::queue::Topology::default();
    js.get_or_create_stream(stream::Config {
        name: queue.reports.name,
        subjects: vec![queue.reports.subject],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(7200),
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn publish(js: &jetstream::Context, all: &[(ReportId, Vec<u8>)]) {
    let subject = report::queue::Topology::default().reports.subject;
    for chunk in all.chunks(1000) {
        let mut acks = Vec::new();
        for (id, payload) in chunk {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.to_string().as_str());
            acks.push(
                js.publish_with_headers(subject.clone(), headers, payload.clone().into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
}

/// Rows written, from the ingester's metrics (0 until it serves them).
async fn written(http: &reqwest::Client, addr: std::net::SocketAddr) -> usize {
    let text = match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|l| {
            l.strip_prefix(r#"spartakus_ingester_rows_total{sink="bigquery",result="written"} "#)
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as usize
}

/// How a run went: the rows timed and how long they took.
struct Timed {
    rows: usize,
    took: Duration,
    /// From the ingester's start to /readyz answering 200 (table checks, the tombstone read,
    /// the consumer bound).
    startup: Duration,
}

/// Runs the ingester in process with `--batch-size batch` on an empty stream; once it is ready,
/// publishes `all` and waits until its metrics say they were written. Timed from the first
/// publish (JetStream takes them far faster than the emulator stores them), so its start is not
/// counted as throughput.
async fn pipeline(
    js: &jetstream::Context,
    nats_url: &str,
    all: &[(ReportId, Vec<u8>)],
    sink: &str,
    endpoint: &str,
    batch: usize,
) -> Timed {
    let batch = batch.to_string();
    let args = [
        "ingester",
        "--nats-url",
        nats_url,
        "--sink",
        sink,
        "--bigquery-endpoint",
        endpoint,
        "--bigquery-credentials",
        "none",
        "--listen",
        "127.0.0.1:0",
        "--batch-size",
        &batch,
        "--batch-wait",
        "100ms",
        "--max-ack-pending",
        "20000",
    ];
    let config = Config::try_parse_from(args).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(ingester::run(config, listener, shutdown.clone()));
    let http = reqwest::Client::new();
    let deadline = started + Duration::from_secs(600);
    loop {
        let ready = http.get(format!("http://{addr}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the ingester never got ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let startup = started.elapsed();
    let t0 = Instant::now();
    publish(js, all).await;
    loop {
        let done = written(&http, addr).await;
        if done >= all.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {} written in time",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let timed = Timed {
        rows: all.len(),
        took: t0.elapsed(),
        startup,
    };
    shutdown.cancel();
    task.await.unwrap().unwrap();
    timed
}

/// The same rows straight to insertAll with the same client and split as the sink: batches of
/// `batch`, each in requests of at most `MAX_ROWS` rows sent at once, one batch at a time.
async fn raw(client: &Client, table: &TableRef, rows: &[Row], batch: usize) -> Timed {
    let started = Instant::now();
    for batch in rows.chunks(batch) {
        let requests = batch.chunks(MAX_ROWS).map(|chunk| {
            let rows: Vec<TableDataInsertAllRequestRows> = chunk
                .iter()
                .map(|r| TableDataInsertAllRequestRows {
                    insert_id: Some(r.report_id.to_string()),
                    json: serde_json::to_value(r).unwrap(),
                })
                .collect();
            let mut request = TableDataInsertAllRequest::new();
            request.skip_invalid_rows();
            request.add_rows(rows).unwrap();
            client
                .tabledata()
                .insert_all(&table.project, &table.dataset, &table.table, request)
        });
        for response in futures::future::join_all(requests).await {
            let response = response.unwrap();
            assert!(response.insert_errors.unwrap_or_default().is_empty());
        }
    }
    Timed {
        rows: rows.len(),
        took: started.elapsed(),
        startup: Duration::ZERO,
    }
}

/// The insertAll requests the proxy saw since `from`: (rows, body bytes) each.
fn requests(
    proxy: &BigQueryProxy,
    from: usize,
    sizes: &HashMap<String, usize>,
) -> Vec<(usize, usize)> {
    proxy.inserts()[from..]
        .iter()
        .map(|s| {
            assert_eq!(s.status, 200);
            let rows: usize = s
                .rows
                .iter()
                .map(|(id, _)| sizes[id.as_ref().unwrap()] + 1)
                .sum();
            (s.rows.len(), BODY.len() + rows - 1)
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// One result line.
fn line(what: &str, timed: &Timed, requests: &[(usize, usize)]) -> f64 {
    let reports_per_s = rate(timed.rows, timed.took);
    let (reqs, bytes) = (requests.len(), requests.iter().map(|r| r.1).sum::<usize>());
    println!(
        "{what:<34} {:>8.0} reports/s (= rows/s) {:>7.1} requests/s {:>6.0} rows/request {:>9.0} bytes/request  max {:>8} bytes  ({} rows in {:.2?}{})",
        reports_per_s,
        reqs as f64 / timed.took.as_secs_f64(),
        requests.iter().map(|r| r.0).sum::<usize>() as f64 / reqs as f64,
        bytes as f64 / reqs as f64,
        requests.iter().map(|r| r.1).max().unwrap_or(0),
        timed.rows,
        timed.took,
        if timed.startup.is_zero() {
            String::new()
        } else {
            format!(", ready after {:.2?}", timed.startup)
        }
    );
    reports_per_s
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: both run it.
    let n = env_usize("SPARTAKUS_BENCH_BQ_N", 3_000);
    let batches: Vec<usize> = std::env::var("SPARTAKUS_BENCH_BQ_BATCHES")
        .unwrap_or_else(|_| "100,500,2000".into())
        .split(',')
        .map(|b| b.trim().parse().unwrap())
        .collect();
    let all = envelopes(n);
    let rows: Vec<Row> = all
        .iter()
        .map(|(_, e)| from_envelope(Envelope::decode(e).unwrap()))
        .collect();
    // Each row as it appears in a request body.
    let sizes: HashMap<String, usize> = rows
        .iter()
        .map(|r| {
            let id = r.report_id.to_string();
            let row = serde_json::json!({"insertId": id, "json": r});
            (id, serde_json::to_vec(&row).unwrap().len())
        })
        .collect();
    let row_bytes = sizes.values().sum::<usize>() / n;
    assert!(
        BODY.len() + MAX_ROWS * (row_bytes + 1) < MAX_BYTES,
        "rows split by count only"
    );
    let nodes = serde_json::to_value(&rows[0]).unwrap()["nodes"]
        .as_array()
        .map_or(0, Vec::len);

    let bq = testenv::BigQuery::start().await.unwrap();
    let proxy = BigQueryProxy::start(&bq.endpoint()).await.unwrap();
    let endpoint = format!("{}/bigquery/v2", proxy.endpoint());
    let client = BigQuerySink::client(Some(&endpoint), Some(&Credentials::None))
        .await
        .unwrap();
    let table = |dataset: String| TableRef {
        project: bq.project().into(),
        dataset,
        table: "reports".into(),
    };
    let limits = Limits {
        max_rows: MAX_ROWS,
        max_bytes: MAX_BYTES,
    };

    println!(
        "{n} distinct seed-size reports: {} bytes stored in JetStream, one BigQuery row each of {row_bytes} bytes in a request ({nodes} nested node records); --bigquery-max-rows {MAX_ROWS}, --bigquery-max-bytes {MAX_BYTES}",
        all[0].1.len()
    );
    let mut stored = Vec::new();
    for &batch in &batches {
        println!("--batch-size {batch}:");
        let nats = testenv::Nats::start().await.unwrap();
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        create_stream(&js).await;
        let dataset = format!("bench_ingester_{batch}");
        let sink = format!("bigquery://{}/{dataset}/reports", bq.project());
        let from = proxy.inserts().len();
        let piped = pipeline(&js, &nats.url(), &all, &sink, &endpoint, batch).await;
        let piped_rate = line(
            "  ingester (JetStream → emulator)",
            &piped,
            &requests(&proxy, from, &sizes),
        );
        stored.push(dataset);

        let dataset = format!("bench_raw_{batch}");
        let raw_table = table(dataset.clone());
        BigQuerySink::new(client.clone(), raw_table.clone(), limits)
            .ensure_table()
            .await
            .unwrap();
        let from = proxy.inserts().len();
        let bare = raw(&client, &raw_table, &rows, batch).await;
        let bare_rate = line(
            "  raw insertAll, same client",
            &bare,
            &requests(&proxy, from, &sizes),
        );
        stored.push(dataset);
        println!("  ratio ingester / raw: {:.2}", piped_rate / bare_rate);
    }

    // What the proxy costs: one raw run straight to the emulator.
    let direct = BigQuerySink::client(
        Some(&format!("{}/bigquery/v2", bq.endpoint())),
        Some(&Credentials::None),
    )
    .await
    .unwrap();
    let direct_table = table("bench_direct".into());
    BigQuerySink::new(direct.clone(), direct_table.clone(), limits)
        .ensure_table()
        .await
        .unwrap();
    let batch = batches
        .iter()
        .copied()
        .find(|b| *b == 500)
        .unwrap_or(batches[0]);
    let bare = raw(&direct, &direct_table, &rows, batch).await;
    println!(
        "raw insertAll, --batch-size {batch}, no proxy: {:.0} reports/s ({} rows in {:.2?})",
        rate(bare.rows, bare.took),
        bare.rows,
        bare.took
    );
    stored.push("bench_direct".into());

    // Everything was stored (each run's own table).
    for dataset in stored {
        let count = bq
            .query(&format!(
                "SELECT COUNT(DISTINCT reportID) FROM {dataset}.reports"
            ))
            .await
            .unwrap();
        assert_eq!(
            count[0][0].as_str(),
            Some(n.to_string().as_str()),
            "{dataset}"
        );
    }
    println!("every run stored all {n} reports");
}
