//! The ingester against the engines under it, on the same messages, in one run.
//!
//! `N` distinct reports, enveloped as the gateway does, are measured four ways:
//!
//! 1. **raw pull + ack**: an async-nats pull consumer with the ingester's consumer settings
//!    pulls them in batches of the ingester's size and acks each: what JetStream and the client
//!    cost, with nothing done between pull and ack;
//! 2. **decode only**: `Envelope::decode` and `row::from_envelope` of every payload on one
//!    thread, no I/O: what the ingester does to each message before the sink;
//! 3. **SQLite alone**: the decoded rows written by the sink's own `write_batch` in batches of
//!    the ingester's size, through `open_connection_with_cache` (same pragmas, same page cache
//!    (`SPARTAKUS_BENCH_SQLITE_CACHE`, default the ingester's), same schema), no NATS;
//! 4. **ingester**: the ingester (its library's `run`, in this process, as the binary runs it:
//!    the same allocator, its default flags but the sink) draining the same messages from
//!    JetStream into SQLite.
//!
//! 3 and 4 run on an empty database and on one holding `SPARTAKUS_BENCH_BIG` (default
//! 1,000,000) reports, built once with the same rows under fresh report and cluster IDs (a
//! cluster reports weekly, so about a quarter as many clusters as reports) and copied for each
//! of the two, so both start from the same file. The ingester's rate is given for the whole
//! drain (first pull to last commit) and for its steady part (10 % to 90 % of the rows
//! written); the ratio to SQLite alone uses the steady rate, and the drain's tail (90 % to
//! 100 %) is printed so an idle tail shows.
//!
//! `SPARTAKUS_BENCH_MIX` picks the messages: `seed` (default), the original volunteer's
//! report, 11 SQLite rows and about 1 KB, or `population`, the realistic population (about 175
//! rows and 14 KB a report: big clusters weigh). `SPARTAKUS_BENCH_N` (default 50,000) sizes them. The big database takes about
//! 4 GB in the system's temporary folder and some minutes to build.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use ingester::row::{Row, from_envelope};
use ingester::sink::sqlite::{DEFAULT_CACHE, open_connection_with_cache, write_batch};
use report::{Envelope, ReportId};
use tokio_util::sync::CancellationToken;

use crate::{env_usize, rate};

/// The ingester's default `--batch-size`, used by every contender.
const BATCH: usize = 500;

/// The measured rates of one run, reports per second.
pub(crate) struct Figures {
    pub(crate) raw: f64,
    pub(crate) decode: f64,
    pub(crate) empty: Pair,
    pub(crate) big: Option<Pair>,
}

/// SQLite alone and the ingester on the same database.
pub(crate) struct Pair {
    pub(crate) sqlite: f64,
    pub(crate) ingester: Drain,
}

/// How the ingester drained the messages.
pub(crate) struct Drain {
    /// Reports per second from the start to the last commit.
    pub(crate) whole: f64,
    /// Reports per second from 10 % to 90 % of the rows written.
    pub(crate) steady: f64,
    /// From 90 % to 100 % written.
    pub(crate) tail: Duration,
}

/// SQLite's page cache for both SQLite alone and the ingester: `SPARTAKUS_BENCH_SQLITE_CACHE`
/// (e.g. `2MiB`, SQLite's own default), else the ingester's `--sqlite-cache` default.
fn sqlite_cache() -> u64 {
    match std::env::var("SPARTAKUS_BENCH_SQLITE_CACHE") {
        Err(_) => DEFAULT_CACHE,
        Ok(v) => plumbing::cli::parse_bytes(&v)
            .unwrap_or_else(|e| panic!("SPARTAKUS_BENCH_SQLITE_CACHE={v:?}: {e}")),
    }
}

/// The report the original volunteer sent (a 2-node cluster, 11 SQLite rows).
const SEED: &str = include_str!("../../../report/testdata/v1-seed.json");

/// `n` distinct reports as the gateway publishes them, (report ID, envelope): copies of the
/// seed report under their own cluster IDs (`SPARTAKUS_BENCH_MIX=seed`, the default) or the
/// realistic population (`population`).
fn messages(n: usize) -> Vec<(ReportId, Vec<u8>)> {
    match std::env::var("SPARTAKUS_BENCH_MIX").as_deref() {
        Err(_) | Ok("seed") => seed_messages(n),
        Ok("population") => population_messages(n),
        Ok(other) => panic!("SPARTAKUS_BENCH_MIX={other:?}: seed or population"),
    }
}

fn seed_messages(n: usize) -> Vec<(ReportId, Vec<u8>)> {
    let mut report: serde_json::Value = serde_json::from_str(SEED).expect("the seed is JSON");
    let at = jiff::Timestamp::now();
    (0..n)
        .map(|_| {
            report["clusterID"] = uuid::Uuid::new_v4().to_string().into();
            let valid = report::decode(report.to_string().as_bytes()).expect("the seed is valid");
            let id = ReportId::random();
            (id, Envelope::new(id, at, valid).encode())
        })
        .collect()
}

fn population_messages(n: usize) -> Vec<(ReportId, Vec<u8>)> {
    let plan = systests::population::plan(&systests::population::Settings {
        // Some clusters join late or stop: more than n / 4 clusters make n reports.
        clusters: n.div_ceil(2),
        weeks: 4,
        seed: 25,
        now: jiff::Timestamp::now().as_second(),
    });
    let at = jiff::Timestamp::now();
    assert!(
        plan.len() >= n,
        "{} reports planned, {n} wanted",
        plan.len()
    );
    plan.into_iter()
        .take(n)
        .map(|p| {
            let valid = report::decode(&p.body).expect("the population is valid");
            let id = valid.report_id().unwrap_or_else(ReportId::random);
            (id, Envelope::new(id, at, valid).encode())
        })
        .collect()
}

/// The reports stream as the gateway makes it (work-queue retention), with `all` published.
async fn preload(js: &jetstream::Context, all: &[(ReportId, Vec<u8>)]) {
    let topology = report::queue::Topology::default();
    js.get_or_create_stream(stream::Config {
        name: topology.reports.name.clone(),
        subjects: vec![topology.reports.subject.clone()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("reports stream");
    for chunk in all.chunks(1000) {
        let mut acks = Vec::with_capacity(chunk.len());
        // Without the gateway's Nats-Msg-Id: each phase publishes the same reports again,
        // within any duplicate window, and what is measured is their consumption.
        for (_, payload) in chunk {
            let ack = js
                .publish(topology.reports.subject.clone(), payload.clone().into())
                .await
                .expect("publish");
            acks.push(ack);
        }
        for ack in acks {
            ack.await.expect("publish ack");
        }
    }
    let mut s = js.get_stream(&topology.reports.name).await.expect("stream");
    let held = s.info().await.expect("stream info").state.messages;
    assert_eq!(held as usize, all.len(), "every report preloaded");
}

/// Pulls every message with the ingester's consumer settings and acks it, nothing between.
async fn raw_pull_ack(js: &jetstream::Context, n: usize) -> Duration {
    let topology = report::queue::Topology::default();
    let stream = js.get_stream(&topology.reports.name).await.expect("stream");
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .expect("raw consumer");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut acked = 0;
    while acked < n {
        assert!(Instant::now() < deadline, "raw consumer: {acked} of {n}");
        let mut batch = consumer
            .batch()
            .max_messages(BATCH)
            .expires(Duration::from_millis(100))
            .messages()
            .await
            .expect("pull");
        while let Some(message) = batch.next().await {
            message.expect("message").ack().await.expect("ack");
            acked += 1;
        }
    }
    // An ack is sent without waiting for JetStream: done once the stream let every one go.
    let mut stream = stream;
    loop {
        let left = stream.info().await.expect("stream info").state.messages;
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "raw consumer: {left} not acked");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    stream
        .delete_consumer("raw")
        .await
        .expect("delete consumer");
    took
}

/// Decodes every payload as the ingester does; the rows, and how long it took.
fn decode(all: &[(ReportId, Vec<u8>)]) -> (Vec<Row>, Duration) {
    let started = Instant::now();
    let rows: Vec<Row> = all
        .iter()
        .map(|(_, e)| from_envelope(Envelope::decode(e).expect("decodes")))
        .collect();
    (rows, started.elapsed())
}

/// Writes `rows` into the database at `path` with the sink's own batches.
fn sqlite_alone(path: &Path, rows: &[Row]) -> Duration {
    let mut conn = open_connection_with_cache(path, sqlite_cache()).expect("open");
    let started = Instant::now();
    for chunk in rows.chunks(BATCH) {
        write_batch(&mut conn, chunk).expect("write");
    }
    started.elapsed()
}

fn reports_in(path: &Path) -> usize {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.query_row("SELECT count(*) FROM reports", [], |r| r.get::<_, i64>(0))
        .expect("count") as usize
}

/// The rows written so far, from the ingester's metrics.
async fn written(http: &reqwest::Client, addr: std::net::SocketAddr) -> usize {
    let text = match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|l| {
            l.strip_prefix(r#"spartakus_ingester_rows_total{sink="sqlite",result="written"} "#)
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as usize)
}

/// Runs the ingester in this process into `db` until `n` more reports are written.
async fn ingester(nats_url: &str, db: &Path, n: usize) -> Drain {
    let sink = format!("sqlite:{}", db.display());
    let config = <ingester::config::Config as clap::Parser>::try_parse_from([
        "ingester",
        "--nats-url",
        nats_url,
        "--sink",
        &sink,
        "--sqlite-cache",
        &sqlite_cache().to_string(),
    ])
    .expect("flags");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(ingester::run(config, listener, shutdown.clone()));
    let deadline = started + Duration::from_secs(900);
    let http = reqwest::Client::new();
    let (mut at10, mut at90) = (None, None);
    loop {
        let done = written(&http, addr).await;
        let now = Instant::now();
        if at10.is_none() && done * 10 >= n {
            at10 = Some((now, done));
        }
        if at90.is_none() && done * 10 >= n * 9 {
            at90 = Some((now, done));
        }
        if done >= n {
            break;
        }
        assert!(now < deadline, "the ingester wrote {done} of {n} in time");
        // A bench's poll, not a test's synchronization.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let end = Instant::now();
    shutdown.cancel();
    task.await.expect("ingester task").expect("ingester run");
    let (t10, w10) = at10.expect("10 %");
    let (t90, w90) = at90.expect("90 %");
    Drain {
        whole: rate(n as f64, end - started),
        steady: rate((w90 - w10) as f64, t90 - t10),
        tail: end - t90,
    }
}

/// A database holding `big` reports: `rows` again and again under fresh report IDs, and cluster
/// IDs drawn from a quarter as many.
fn big_database(path: &Path, rows: &[Row], big: usize) {
    let mut conn = open_connection_with_cache(path, sqlite_cache()).expect("open");
    let clusters: Vec<String> = (0..big.div_ceil(4))
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..big {
        let mut row = rows[i % rows.len()].clone();
        row.report_id = ReportId::random();
        row.cluster_id = clusters[(i * 7919) % clusters.len()].clone();
        batch.push(row);
        if batch.len() == BATCH || i + 1 == big {
            write_batch(&mut conn, &batch).expect("fill");
            batch.clear();
        }
        if (i + 1) % 200_000 == 0 {
            eprintln!(
                "  big database: {} reports ({:.0?})",
                i + 1,
                started.elapsed()
            );
        }
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
}

/// One pair on a copy of `template` (or a fresh file): SQLite alone, then the ingester.
async fn pair(
    dir: &Path,
    template: Option<&Path>,
    label: &str,
    js: &jetstream::Context,
    nats_url: &str,
    all: &[(ReportId, Vec<u8>)],
    rows: &[Row],
) -> Pair {
    let alone = dir.join(format!("{label}-alone.sqlite"));
    let piped = dir.join(format!("{label}-ingester.sqlite"));
    let before = match template {
        Some(t) => {
            std::fs::copy(t, &alone).expect("copy");
            std::fs::copy(t, &piped).expect("copy");
            reports_in(t)
        }
        None => 0,
    };
    let took = sqlite_alone(&alone, rows);
    assert_eq!(reports_in(&alone), before + rows.len());
    std::fs::remove_file(&alone).ok();
    preload(js, all).await;
    let drain = ingester(nats_url, &piped, all.len()).await;
    assert_eq!(
        reports_in(&piped),
        before + all.len(),
        "every report stored"
    );
    std::fs::remove_file(&piped).ok();
    Pair {
        sqlite: rate(rows.len() as f64, took),
        ingester: drain,
    }
}

/// Runs the four contenders on an empty and on a big database and prints the figures.
pub(crate) async fn run() -> Figures {
    let n = env_usize("SPARTAKUS_BENCH_N", 50_000);
    let big = env_usize("SPARTAKUS_BENCH_BIG", 1_000_000);
    let mix = std::env::var("SPARTAKUS_BENCH_MIX").unwrap_or_else(|_| "seed".into());
    println!("== the ingester against its baselines: {n} reports ({mix}), batches of {BATCH}");
    let all = messages(n);
    let bytes: usize = all.iter().map(|(_, e)| e.len()).sum();
    let dir = tempfile::tempdir().expect("temporary folder");
    let sync = crate::nats_sync();
    println!(
        "nats-server sync: {sync:?}; SQLite page cache: {} KiB",
        sqlite_cache() / 1024
    );
    let nats = testenv::Nats::options()
        .sync(sync)
        .start()
        .await
        .expect("nats-server");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);

    preload(&js, &all).await;
    let raw = rate(n as f64, raw_pull_ack(&js, n).await);
    let (rows, took) = decode(&all);
    let decode = rate(n as f64, took);
    let row_count: usize = rows.iter().map(row_count).sum();
    println!(
        "messages: {} bytes each on average, {:.1} SQLite rows each",
        bytes / n,
        row_count as f64 / n as f64
    );
    println!("raw async-nats pull + ack: {raw:>9.0} reports/s");
    println!("decode only (one thread):  {decode:>9.0} reports/s");

    let empty = pair(dir.path(), None, "empty", &js, &nats.url(), &all, &rows).await;
    print_pair("empty database", &empty);
    let big_pair = if big > 0 {
        let template = dir.path().join("big.sqlite");
        let started = Instant::now();
        big_database(&template, &rows, big);
        println!(
            "built a database of {big} reports in {:.0?} ({} MB)",
            started.elapsed(),
            std::fs::metadata(&template).map_or(0, |m| m.len() / 1_000_000)
        );
        let p = pair(
            dir.path(),
            Some(&template),
            "big",
            &js,
            &nats.url(),
            &all,
            &rows,
        )
        .await;
        print_pair(&format!("database of {big} reports"), &p);
        Some(p)
    } else {
        None
    };
    Figures {
        raw,
        decode,
        empty,
        big: big_pair,
    }
}

fn print_pair(label: &str, p: &Pair) {
    println!("{label}:");
    println!("  SQLite alone (write_batch):  {:>9.0} reports/s", p.sqlite);
    println!(
        "  ingester, steady (10-90 %):  {:>9.0} reports/s   ingester / SQLite alone: {:.2}",
        p.ingester.steady,
        p.ingester.steady / p.sqlite
    );
    println!(
        "  ingester, whole drain:       {:>9.0} reports/s   (last 10 % took {:.0?})",
        p.ingester.whole, p.ingester.tail
    );
}

/// The SQLite rows a report becomes.
fn row_count(r: &Row) -> usize {
    1 + r.nodes.len()
        + r.nodes
            .iter()
            .map(|n| n.capacity.iter().flatten().count())
            .sum::<usize>()
        + r.extensions.len()
        + r.workloads.len()
        + r.workloads
            .iter()
            .map(|w| w.per_namespace.len())
            .sum::<usize>()
        + r.skipped.len()
}
