//! Shared by the integration tests: a gateway in-process on 127.0.0.1:0 in front of a real
//! nats-server from testenv, and helpers to read what reached the stream.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use flate2::Compression;
use flate2::write::GzEncoder;
use gateway::{Config, RunError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The seed README's example payload, as existing volunteers send it.
pub const SEED: &str = include_str!("../../../report/testdata/v1-seed.json");

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A gateway running in this process.
pub struct Gateway {
    pub url: String,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), RunError>>,
    pub http: reqwest::Client,
}

impl Gateway {
    /// Starts a gateway with `config` and waits until `/healthz` answers.
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway::run(config, listener, shutdown.clone()));
        let gateway = Gateway {
            url,
            shutdown,
            task,
            http: reqwest::Client::new(),
        };
        gateway.wait_for_status("/healthz", 200).await;
        gateway
    }

    /// Starts a gateway for `nats` with the stream named `stream`, and waits until it is ready.
    pub async fn ready(nats_url: &str, stream: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_nats(nats_url);
        config.queue = queue(stream);
        tweak(&mut config);
        let gateway = Gateway::start(config).await;
        gateway.wait_for_status("/readyz", 200).await;
        gateway
    }

    /// Polls `GET path` until it answers `status`, failing after [`DEADLINE`].
    pub async fn wait_for_status(&self, path: &str, status: u16) {
        let url = format!("{}{path}", self.url);
        let start = Instant::now();
        loop {
            let got = self
                .http
                .get(&url)
                .send()
                .await
                .map(|r| r.status().as_u16());
            if got.as_ref().ok() == Some(&status) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "GET {path} never answered {status} (last: {got:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the metrics until `line` appears.
    pub async fn wait_for_metric(&self, line: &str) {
        let start = Instant::now();
        loop {
            let text = self.get_text("/metrics").await;
            if text.lines().any(|l| l == line) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "metric line {line:?} never appeared:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    }

    /// `POST /api/v1` with the original volunteer's headers.
    pub async fn post_v1(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /api/v1")
    }

    /// Cancels the gateway and waits until `run` returns.
    pub async fn stop(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("gateway stops")
            .expect("gateway task")
    }
}

/// A JetStream context on `url`.
pub async fn jetstream(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("connect to NATS"))
}

/// Every message in `stream`, in order.
/// The queue of a test named `name` (`SEED` → streams `SEED_REPORTS`, `SEED_ERASURES`), so that
/// tests sharing a NATS server never share a stream.
pub fn queue(name: &str) -> report::queue::Topology {
    report::queue::Topology::new(&name.to_lowercase().replace('_', "-"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The reports queued by the gateway of the test named `name`.
pub async fn messages(
    js: &jetstream::Context,
    name: &str,
) -> Vec<jetstream::message::StreamMessage> {
    stored(js, &queue(name).reports.name).await
}

/// The erasure requests queued by the gateway of the test named `name`.
pub async fn erasures(
    js: &jetstream::Context,
    name: &str,
) -> Vec<jetstream::message::StreamMessage> {
    stored(js, &queue(name).erasures.name).await
}

async fn stored(js: &jetstream::Context, stream: &str) -> Vec<jetstream::message::StreamMessage> {
    let mut handle = js.get_stream(stream).await.expect("stream exists");
    let state = handle.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(message) = handle.get_raw_message(seq).await {
            out.push(message);
        }
    }
    out
}

/// The seed report with another `timestamp`, so that it gets another derived reportID.
pub fn seed_at(timestamp: u64) -> String {
    let mut value: serde_json::Value = serde_json::from_str(SEED).expect("seed is JSON");
    value["timestamp"] = serde_json::Value::String(timestamp.to_string());
    value.to_string()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The problem body of a refused request.
pub async fn problem(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    response.json().await.expect("problem JSON")
}
