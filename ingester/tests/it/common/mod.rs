//! Shared test plumbing: a NATS server with the reports stream, envelopes, the ingester in
//! process or as a child process, waiting on conditions with deadlines.
#![allow(clippy::unwrap_used)]
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use clap::Parser;
use ingester::config::Config;
use report::{Envelope, ReportId};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The queue the ingester reads by default (its `--queue`), as the gateway names it.
pub fn queue() -> report::queue::Topology {
    report::queue::Topology::default()
}
pub const SEED: &str = include_str!("../../../../report/testdata/v1-seed.json");
pub const V2_FULL: &str = include_str!("../../../../report/testdata/v2-full.json");

pub use testenv::eventually;

/// A NATS server and a JetStream context, with or without the reports stream.
pub struct Nats {
    pub server: testenv::Nats,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Nats {
    pub async fn start() -> Self {
        let server = testenv::Nats::start().await.expect("nats-server");
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        Nats { server, client, js }
    }

    /// Starts the server and creates the reports stream as the gateway does.
    pub async fn with_stream() -> Self {
        let nats = Self::start().await;
        nats.create_stream().await;
        nats
    }

    pub async fn create_stream(&self) {
        self.js
            .get_or_create_stream(stream::Config {
                name: queue().reports.name,
                subjects: vec![queue().reports.subject],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(7200),
                ..Default::default()
            })
            .await
            .expect("create stream");
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Publishes raw bytes as the gateway would, waiting for JetStream's ack.
    pub async fn publish_raw(&self, msg_id: &str, payload: Vec<u8>) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        self.js
            .publish_with_headers(queue().reports.subject, headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }

    /// Publishes many envelopes, pipelining the acks.
    pub async fn publish_all(&self, envelopes: &[(ReportId, Vec<u8>)]) {
        for chunk in envelopes.chunks(500) {
            let mut acks = Vec::with_capacity(chunk.len());
            for (id, payload) in chunk {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", id.to_string().as_str());
                acks.push(
                    self.js
                        .publish_with_headers(
                            queue().reports.subject,
                            headers,
                            payload.clone().into(),
                        )
                        .await
                        .expect("publish"),
                );
            }
            for ack in acks {
                ack.await.expect("publish ack");
            }
        }
    }

    /// The dead-letter messages (reason header, payload), once `n` are there.
    pub async fn dead_letters(&self, n: usize) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        eventually(Duration::from_secs(20), "dead letters", || async {
            match self.js.get_stream(queue().dead_letters.name).await {
                Ok(mut s) => s
                    .info()
                    .await
                    .map(|i| i.state.messages as usize >= n)
                    .unwrap_or(false),
                Err(_) => false,
            }
        })
        .await;
        let stream = self.js.get_stream(queue().dead_letters.name).await.unwrap();
        for seq in 1..=n as u64 {
            let m = stream.get_raw_message(seq).await.unwrap();
            let reason = m
                .headers
                .get(report::queue::DEAD_LETTER_REASON_HEADER)
                .map(|v| v.to_string())
                .unwrap_or_default();
            out.push((reason, m.payload.to_vec()));
        }
        out
    }

    /// The durable consumer's info.
    pub async fn consumer_info(&self) -> async_nats::jetstream::consumer::Info {
        let stream = self.js.get_stream(queue().reports.name).await.unwrap();
        let mut consumer: jetstream::consumer::PullConsumer =
            stream.get_consumer("spartakus-ingester").await.unwrap();
        consumer.info().await.unwrap().clone()
    }
}

/// A receipt time `days` days before now, in whole seconds (what SQLite keeps), RFC 3339.
/// Reports are received recently unless a test says otherwise: the default `--retention`
/// acknowledges older ones without storing them.
pub fn days_ago(days: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(now - days * 86_400)
        .unwrap()
        .to_string()
}

/// A seed-shaped report with its own cluster and report ID, as an envelope received an hour ago.
pub fn envelope(i: usize) -> (ReportId, Vec<u8>) {
    let mut report: serde_json::Value = serde_json::from_str(SEED).unwrap();
    report["clusterID"] = format!("cluster-{i:06}").into();
    let valid = report::decode(report.to_string().as_bytes()).unwrap();
    let id = ReportId::random();
    let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 3600).unwrap();
    (id, Envelope::new(id, at, valid).encode())
}

/// An envelope of the given report JSON.
pub fn envelope_of(json: &str, received_at: &str) -> (ReportId, Vec<u8>) {
    let valid = report::decode(json.as_bytes()).unwrap();
    let id = valid.report_id().unwrap_or_else(ReportId::random);
    (
        id,
        Envelope::new(id, received_at.parse().unwrap(), valid).encode(),
    )
}

pub fn envelopes(n: usize) -> Vec<(ReportId, Vec<u8>)> {
    (0..n).map(envelope).collect()
}

/// The flags for an ingester on `nats` writing to `sink`, plus `extra`.
pub fn config(nats_url: &str, sink: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "ingester".to_owned(),
        "--nats-url".into(),
        nats_url.into(),
        "--sink".into(),
        sink.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--batch-wait".into(),
        "50ms".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_from(args).expect("flags")
}

/// An ingester running in this process.
pub struct InProcess {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), ingester::Error>>,
}

impl InProcess {
    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(ingester::run(config, listener, shutdown.clone()));
        InProcess {
            addr,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("ingester stops within its deadline")
            .expect("no panic")
            .expect("clean exit");
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        get(self.addr, path).await
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    match reqwest::get(format!("http://{addr}{path}")).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// A metric's value from a `/metrics` text, 0 when absent.
/// The metrics text of `addr` once `name_and_labels` is at least `at_least`, or after 10 s (the
/// caller's assertion then shows the value). Counters are raised just after the work they count,
/// so a test that saw the work done may read them a moment early.
#[allow(dead_code)] // not every test binary that includes this module reads metrics
pub async fn metrics_when(addr: SocketAddr, name_and_labels: &str, at_least: f64) -> String {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = get(addr, "/metrics").await;
        if metric(&text, name_and_labels) >= at_least || tokio::time::Instant::now() >= end {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The ingester binary as a child process (through testenv); killed on drop.
pub struct Process {
    pub service: testenv::Service,
    pub addr: SocketAddr,
}

impl Process {
    /// Starts the binary with `extra` flags; returns once it serves `/healthz` (its sink and
    /// NATS may still be away: [`Process::wait_ready`] waits for `/readyz`).
    pub async fn spawn(nats_url: &str, sink: &str, extra: &[&str]) -> Self {
        let service = testenv::Launch::ingester(nats_url, sink)
            .args(extra)
            .ready_at("/healthz")
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Process {
            addr: service.addr(),
            service,
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        self.service.kill();
    }

    pub async fn wait_ready(&self) {
        let addr = self.addr;
        eventually(Duration::from_secs(30), "ingester /readyz", || async move {
            get(addr, "/readyz").await.0 == 200
        })
        .await;
    }
}

/// Counts from a SQLite file opened read-only alongside the writer.
pub fn sqlite_i64(path: &Path, sql: &str) -> i64 {
    // Before the ingester created the file (or its tables), there is nothing to count.
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

/// The gateway binary (through testenv) in front of `nats_url`; killed on drop.
pub struct Gateway {
    pub service: testenv::Service,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl Gateway {
    /// Starts it and waits until `/readyz` says both of its streams exist.
    pub async fn start(nats_url: &str) -> Self {
        Self::start_with(nats_url, &[]).await
    }

    /// As [`Gateway::start`], with more flags.
    pub async fn start_with(nats_url: &str, extra: &[&str]) -> Self {
        let service = testenv::Launch::gateway(nats_url)
            .args(extra)
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Gateway {
            addr: service.addr(),
            service,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /api/v2/reports` with `report`; its status.
    pub async fn report(&self, report: &serde_json::Value) -> u16 {
        self.post("/api/v2/reports", report.to_string()).await
    }

    /// `POST /api/v1` with `report` (the original contract); its status.
    pub async fn report_v1(&self, report: &serde_json::Value) -> u16 {
        self.post("/api/v1", report.to_string()).await
    }

    /// `POST /api/v2/erasure` for `cluster` with `secret`; its status and body.
    pub async fn erase(&self, cluster: &str, secret: &str) -> (u16, String) {
        let response = self
            .http
            .post(format!("http://{}/api/v2/erasure", self.addr))
            .header("content-type", "application/json")
            .body(serde_json::json!({"clusterID": cluster, "secret": secret}).to_string())
            .send()
            .await
            .expect("POST /api/v2/erasure");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    async fn post(&self, path: &str, body: String) -> u16 {
        self.http
            .post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
            .status()
            .as_u16()
    }
}

/// An erasure secret (32 bytes, all `n`) as the volunteer sends it, and its check as the
/// cluster's reports carry it.
pub fn secret_and_check(n: u8) -> (String, String) {
    let secret = [n; 32];
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    (hex, report::erasure::check_of(&secret))
}

/// The full v2 report as `cluster` sends it with a fresh reportID and `check` (none: left out).
pub fn v2_report(cluster: &str, check: Option<&str>) -> serde_json::Value {
    let mut report: serde_json::Value = serde_json::from_str(V2_FULL).unwrap();
    report["clusterID"] = cluster.into();
    report["reportID"] = ReportId::random().to_string().into();
    match check {
        Some(check) => report["erasureCheck"] = check.into(),
        None => {
            report.as_object_mut().unwrap().remove("erasureCheck");
        }
    }
    report
}

/// The seed (v1) report as `cluster` sends it, with its own timestamp so that its derived
/// reportID is its own.
pub fn v1_report(cluster: &str) -> serde_json::Value {
    let mut report: serde_json::Value = serde_json::from_str(SEED).unwrap();
    report["clusterID"] = cluster.into();
    report["timestamp"] = jiff::Timestamp::now().as_nanosecond().to_string().into();
    report
}

/// Waits until the wall clock is past the second of `t`: a report received from then on is
/// received after a request made at `t` (the rule is to the second).
pub async fn after_the_second_of(t: jiff::Timestamp) {
    eventually(Duration::from_secs(3), "the next second", || async move {
        jiff::Timestamp::now().as_second() > t.as_second()
    })
    .await;
}
