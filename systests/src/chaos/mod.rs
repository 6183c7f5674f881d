//! The chaos run (issue 7): the whole pipeline on loopback — a 3-node JetStream cluster with a
//! 3-replica stream, 2 gateways, 2 ingesters on one durable consumer writing to one sink —
//! while a load generator behaves like many volunteers and, at seeded moments, one NATS node,
//! one gateway, one ingester, and once everything at once are killed with SIGKILL and brought
//! back. Afterwards every acknowledged report must be in the sink exactly once.
//!
//! Shared by the integration test (`tests/it/chaos.rs`, CI size) and the bench
//! (`benches/chaos.rs`, longer). Both need the gateway and ingester binaries built first, in
//! the same profile. The gateways and ingesters are testenv [`Service`]s: killed with SIGKILL
//! and relaunched on the same port with the same flags and log.
//!
//! - `load`: the volunteers, sending with [`volunteer::send::send`].
//! - `faults`: the seeded kill schedule.
//! - `reconcile`: what the sink holds against what was acknowledged.
//!
//! Durability of an acknowledged report when all three NATS nodes die at once: the gateway
//! answers 204 after the PubAck, which an R3 stream sends once a quorum has appended the
//! message to its Raft log — with a `write(2)`, but without `fsync` (nats-server's default
//! `sync_interval` is 2 min). SIGKILL kills processes, not the kernel: written pages reach the
//! disk anyway, so killing every node at once must lose nothing, and this run checks that
//! with testenv's default configuration. Surviving a power cut of every node at once would
//! need `sync_interval: always`, which no process-level test can show.

#![allow(dead_code, unreachable_pub)]

mod faults;
pub mod load;
pub mod reconcile;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use tempfile::TempDir;
use testenv::{Launch, Service};
use tokio::time::Instant;

pub use load::LoadSettings;
pub use reconcile::Stored;
use volunteer::send::Policy;

const CONSUMER: &str = "spartakus-ingester";
const BIGQUERY_DATASET: &str = "chaos";
const BIGQUERY_TABLE: &str = "reports";
/// How long processes may take to be ready at the start.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the ingesters may take to drain the stream after the load.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// Redelivery timeout of the consumer: how long a batch in the hands of a killed ingester
/// waits before another one gets it.
const ACK_WAIT: &str = "10s";

/// Which sink the ingesters write to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// One SQLite file shared by both ingesters: exactly once by `report_id`.
    Sqlite,
    /// bigquery-emulator: every acknowledged report ID present; raw duplicate rows are counted
    /// apart (BigQuery's insertId dedupe is best-effort; the emulator has none).
    BigQuery,
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SinkKind::Sqlite => "SQLite",
            SinkKind::BigQuery => "BigQuery (emulator)",
        })
    }
}

/// One chaos run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub sink: SinkKind,
    pub load: LoadSettings,
    /// Inject the faults (off: the same load on a calm pipeline, for comparison).
    pub faults: bool,
    pub nats_nodes: usize,
    pub gateways: usize,
    pub ingesters: usize,
}

impl Scenario {
    /// `reports` reports over `duration`, 16 at a time, 5 % sent twice, every fault.
    pub fn new(sink: SinkKind, reports: usize, duration: Duration, seed: u64) -> Self {
        Scenario {
            sink,
            load: LoadSettings {
                reports,
                concurrency: 16,
                duration,
                duplicate_percent: 5,
                seed,
                // The volunteer's policy at test scale: 100 ms doubling to 2 s, instead of
                // 1 s to 5 min; 25 s per gateway, then the other gateway, 4 rounds.
                policy: Policy {
                    deadline: Duration::from_secs(25),
                    min_delay: Duration::from_millis(100),
                    max_delay: Duration::from_secs(2),
                },
                rounds: 4,
            },
            faults: true,
            nats_nodes: 3,
            gateways: 2,
            ingesters: 2,
        }
    }
}

/// The running pipeline.
pub struct Env {
    // Field order: processes die before their folder goes.
    /// `gateway-0`, `gateway-1`… by index.
    pub gateways: Vec<Service>,
    /// `ingester-0`, `ingester-1`… by index.
    pub ingesters: Vec<Service>,
    pub nats: testenv::NatsCluster,
    bigquery: Option<testenv::BigQuery>,
    sqlite: Option<PathBuf>,
    dir: TempDir,
}

impl Env {
    async fn start(scenario: &Scenario) -> Result<Self, String> {
        let dir = TempDir::with_prefix("spartakus-chaos-").map_err(|e| e.to_string())?;
        let nats = testenv::NatsCluster::start(scenario.nats_nodes)
            .await
            .map_err(|e| format!("NATS cluster: {e}"))?;
        let urls = nats.urls().join(",");

        let mut gateways = Vec::new();
        for i in 0..scenario.gateways {
            let gateway = Launch::gateway(&urls)
                .args(["--stream-replicas", &scenario.nats_nodes.min(3).to_string()])
                .ready_within(START_TIMEOUT)
                .start()
                .await
                .map_err(|e| format!("gateway-{i}: {e}"))?;
            gateways.push(gateway);
        }

        let (sink_flags, bigquery, sqlite) = match scenario.sink {
            SinkKind::Sqlite => {
                let path = dir.path().join("spartakus.sqlite");
                (
                    strings(&["--sink", &format!("sqlite:{}", path.display())]),
                    None,
                    Some(path),
                )
            }
            SinkKind::BigQuery => {
                let bq = testenv::BigQuery::start()
                    .await
                    .map_err(|e| format!("bigquery-emulator: {e}"))?;
                let flags = strings(&[
                    "--sink",
                    &format!(
                        "bigquery://{}/{BIGQUERY_DATASET}/{BIGQUERY_TABLE}",
                        bq.project()
                    ),
                    "--bigquery-endpoint",
                    &format!("{}/bigquery/v2", bq.endpoint()),
                    "--bigquery-credentials",
                    "none",
                ]);
                (flags, Some(bq), None)
            }
        };
        let mut ingesters = Vec::new();
        for i in 0..scenario.ingesters {
            // Named rather than `Launch::ingester`, whose batches fill within 50 ms: this run's
            // batches wait up to 100 ms.
            let ingester = Launch::named("ingester")
                .args(["--nats-url", &urls, "--ack-wait", ACK_WAIT])
                .args(["--batch-wait", "100ms", "--log-format", "json"])
                .args(&sink_flags)
                .serving("--listen", "/readyz")
                .ready_within(START_TIMEOUT)
                // One after the other: the first creates the consumer (and the table).
                .start()
                .await
                .map_err(|e| format!("ingester-{i}: {e}"))?;
            ingesters.push(ingester);
        }
        Ok(Env {
            gateways,
            ingesters,
            nats,
            bigquery,
            sqlite,
            dir,
        })
    }

    /// Waits until the ingesters have settled every message of the stream.
    async fn drain(&mut self) -> Result<Drained, String> {
        for (name, service) in named(&mut self.gateways, &mut self.ingesters) {
            // Each must still be alive and ready after the faults.
            service
                .wait_ready(START_TIMEOUT)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let client = async_nats::connect(self.nats.urls())
            .await
            .map_err(|e| format!("connecting to NATS: {e}"))?;
        let js = jetstream::new(client);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let last = match consumer_state(&js).await {
                Ok((0, 0, stream_messages)) => {
                    let dead_lettered = match js
                        .get_stream(report::queue::Topology::default().dead_letters.name)
                        .await
                    {
                        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
                        Err(_) => 0,
                    };
                    return Ok(Drained {
                        stream_messages,
                        dead_lettered,
                    });
                }
                Ok((pending, ack_pending, _)) => {
                    format!("{pending} pending, {ack_pending} awaiting ack")
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let tails: Vec<String> = self
                    .ingesters
                    .iter()
                    .enumerate()
                    .map(|(i, ingester)| format!("ingester-{i}:\n{}", ingester.log_tail(20)))
                    .collect();
                return Err(format!(
                    "the consumer did not drain within {DRAIN_TIMEOUT:?} ({last})\n{}",
                    tails.join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn stored(&self) -> Result<std::collections::HashMap<String, Vec<Stored>>, String> {
        match (&self.sqlite, &self.bigquery) {
            (Some(path), _) => reconcile::sqlite(path),
            (None, Some(bq)) => {
                reconcile::bigquery(
                    &bq.endpoint(),
                    bq.project(),
                    BIGQUERY_DATASET,
                    BIGQUERY_TABLE,
                )
                .await
            }
            (None, None) => Err("no sink".into()),
        }
    }
}

/// (pending, ack pending, messages in the stream).
async fn consumer_state(js: &jetstream::Context) -> Result<(u64, usize, u64), String> {
    let mut stream = js
        .get_stream(report::queue::Topology::default().reports.name)
        .await
        .map_err(|e| e.to_string())?;
    let messages = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .messages;
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_consumer(CONSUMER)
        .await
        .map_err(|e| e.to_string())?;
    let info = consumer.info().await.map_err(|e| e.to_string())?;
    Ok((info.num_pending, info.num_ack_pending, messages))
}

struct Drained {
    stream_messages: u64,
    dead_lettered: u64,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Every gateway and ingester with its name (`gateway-0`, `ingester-1`…).
pub(crate) fn named<'a>(
    gateways: &'a mut [Service],
    ingesters: &'a mut [Service],
) -> impl Iterator<Item = (String, &'a mut Service)> {
    let gateways = gateways
        .iter_mut()
        .enumerate()
        .map(|(i, s)| (format!("gateway-{i}"), s));
    let ingesters = ingesters
        .iter_mut()
        .enumerate()
        .map(|(i, s)| (format!("ingester-{i}"), s));
    gateways.chain(ingesters)
}

/// Log lines at ERROR level (the binaries log JSON: `"level":"ERROR"`), over every run.
fn errors_logged(service: &Service) -> Vec<String> {
    let text = std::fs::read_to_string(service.log()).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(r#""level":"ERROR""#))
        .map(str::to_owned)
        .collect()
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Accounting {
    pub sink: SinkKind,
    pub seed: u64,
    pub sent: usize,
    pub acknowledged: usize,
    pub gave_up: Vec<(String, String)>,
    pub duplicate_sends: usize,
    pub duplicate_sends_failed: usize,
    pub attempts: u64,
    /// Distinct report IDs of this run found in the sink.
    pub stored: usize,
    /// Rows beyond the first for a report ID.
    pub duplicates: usize,
    /// Acknowledged but not in the sink.
    pub lost: Vec<String>,
    /// In the sink with other content than sent.
    pub mismatched: Vec<String>,
    /// In the sink but never sent.
    pub unexpected: Vec<String>,
    /// Given up by the volunteer, yet stored (the gateway died between PubAck and 204): fine.
    pub gave_up_but_stored: usize,
    pub stream_messages: u64,
    pub dead_lettered: u64,
    pub events: Vec<String>,
    /// ERROR lines in the gateways' and ingesters' logs, by process: for the reader, not a
    /// failure (a killed peer is worth an ERROR to an operator).
    pub errors_logged: Vec<(String, Vec<String>)>,
    pub load_time: Duration,
    pub total_time: Duration,
}

impl Accounting {
    /// What breaks the promise; empty when the run is clean.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.lost.is_empty() {
            out.push(format!(
                "{} acknowledged reports lost: {:?}",
                self.lost.len(),
                first(&self.lost)
            ));
        }
        if self.sink == SinkKind::Sqlite && self.duplicates > 0 {
            out.push(format!("{} duplicate rows", self.duplicates));
        }
        if !self.mismatched.is_empty() {
            out.push(format!(
                "{} reports stored with other content: {:?}",
                self.mismatched.len(),
                first(&self.mismatched)
            ));
        }
        if !self.unexpected.is_empty() {
            out.push(format!(
                "{} unknown report IDs stored: {:?}",
                self.unexpected.len(),
                first(&self.unexpected)
            ));
        }
        if self.dead_lettered > 0 {
            out.push(format!("{} reports dead-lettered", self.dead_lettered));
        }
        // The volunteers retry for minutes: most must get through, or the run proved nothing.
        if self.acknowledged * 10 < self.sent * 9 {
            out.push(format!(
                "only {} of {} reports acknowledged",
                self.acknowledged, self.sent
            ));
        }
        out
    }
}

fn first(v: &[String]) -> &[String] {
    &v[..v.len().min(5)]
}

impl fmt::Display for Accounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chaos run, {} sink, seed {}", self.sink, self.seed)?;
        for event in &self.events {
            writeln!(f, "  {event}")?;
        }
        writeln!(
            f,
            "  sent {} | acknowledged {} | stored {} | duplicates {} | lost {} | gave up {}",
            self.sent,
            self.acknowledged,
            self.stored,
            self.duplicates,
            self.lost.len(),
            self.gave_up.len()
        )?;
        writeln!(
            f,
            "  attempts {} | deliberate duplicate sends {} ({} failed) | mismatched {} | unknown {} | gave up but stored {} | in stream {} | dead-lettered {}",
            self.attempts,
            self.duplicate_sends,
            self.duplicate_sends_failed,
            self.mismatched.len(),
            self.unexpected.len(),
            self.gave_up_but_stored,
            self.stream_messages,
            self.dead_lettered
        )?;
        writeln!(
            f,
            "  load {:.1}s, whole run {:.1}s",
            self.load_time.as_secs_f64(),
            self.total_time.as_secs_f64()
        )?;
        if self.sink == SinkKind::BigQuery && self.duplicates > 0 {
            writeln!(
                f,
                "  ({} raw duplicate rows: redeliveries after a kill; BigQuery drops a repeated insertId best-effort, the emulator not at all; distinct IDs are what count)",
                self.duplicates
            )?;
        }
        for (id, error) in &self.gave_up {
            writeln!(f, "  gave up on {id}: {error}")?;
        }
        for (name, lines) in &self.errors_logged {
            writeln!(
                f,
                "  {name} logged {} ERROR lines, e.g. {}",
                lines.len(),
                lines[0]
            )?;
        }
        Ok(())
    }
}

/// Runs `scenario` from start to reconciliation.
pub async fn run(scenario: &Scenario) -> Result<Accounting, String> {
    let began = Instant::now();
    let mut env = Env::start(scenario).await?;
    let schedule = if scenario.faults {
        faults::plan(
            scenario.load.seed,
            scenario.load.duration,
            scenario.nats_nodes,
            scenario.gateways,
            scenario.ingesters,
        )
    } else {
        Vec::new()
    };
    let gateway_urls = env
        .gateways
        .iter()
        .map(|g| reqwest::Url::parse(&g.url()).map_err(|e| format!("{}: {e}", g.url())))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let load = tokio::spawn(load::run(scenario.load.clone(), gateway_urls));
    let events = match faults::inject(&mut env, &schedule, start, scenario.load.seed).await {
        Ok(events) => events,
        Err(e) => {
            load.abort();
            return Err(e);
        }
    };
    let sent = load.await.map_err(|e| format!("load generator: {e}"))?;
    let load_time = start.elapsed();
    let drained = env.drain().await?;
    let stored = env.stored().await?;
    let errors_logged = named(&mut env.gateways, &mut env.ingesters)
        .map(|(name, service)| (name, errors_logged(service)))
        .filter(|(_, lines)| !lines.is_empty())
        .collect();
    let mut accounting = reconcile::account(
        scenario,
        sent,
        &stored,
        drained.stream_messages,
        drained.dead_lettered,
        events,
        load_time,
        began.elapsed(),
    );
    accounting.errors_logged = errors_logged;
    Ok(accounting)
}
