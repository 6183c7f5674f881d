//! The whole pipeline — the gateway, NATS JetStream and the ingester, each a process of its own
//! on loopback — at fixed offered rates and at its maximum.
//!
//! ```text
//! cargo build --release -p gateway -p ingester --bins
//! cargo bench -p systests --bench pipeline
//! ```
//!
//! It starts nats-server by testenv (`sync_interval: always`, what every shipped configuration
//! sets, unless `SPARTAKUS_BENCH_NATS_SYNC=default`; its store in the system's temporary folder), the release gateway (its production
//! defaults, but `--max-uploads-per-ip`: every client here is 127.0.0.1) and the release
//! ingester (`--sink sqlite:<temporary folder>/db.sqlite`, its default batch flags), all with
//! `RUST_LOG=warn`. It pre-generates distinct reports of the realistic population
//! (`systests::population`, each under a fresh clusterID and, where it has one, reportID, so
//! none is a duplicate), gzipped as the volunteer sends them.
//!
//! Then, for each offered rate of `SPARTAKUS_BENCH_RATES` (default `1000,2000,4000,8000`
//! reports/s), for `SPARTAKUS_BENCH_SECONDS` (default 10) each, an open-loop driver: send `i` is
//! due at `i / rate` from the phase's start, whatever happened to earlier ones, over a pool of
//! keep-alive connections, at most `SPARTAKUS_BENCH_IN_FLIGHT` (default 512) at once. Latency is
//! measured from the send's *due* time, so a driver or gateway that falls behind shows as
//! latency (no coordinated omission); a send that started more than 2 ms after its due time is
//! counted as late. Per rate it prints what was accepted and refused, the gateway's latency
//! (p50/p99/max, of accepted reports), the consumer's backlog (`num_pending + num_ack_pending` of
//! the ingester's durable, sampled every 100 ms: max and at the end of the sends), the reports
//! stored (`SELECT count(*) FROM reports`, read-only) when the last 204 came and how long after
//! it the last one was stored, and the CPU (user+sys over wall time, from `/proc/PID/stat`: the
//! accounting getrusage reads) of the driver itself and of each server. Every phase waits for
//! every accepted report to be stored (the drain) before the next starts.
//!
//! Then "max": `SPARTAKUS_BENCH_CLIENTS` (default 64) closed-loop clients for the same time
//! (at most `SPARTAKUS_BENCH_MAX_REPORTS` reports, default 20,000 a second of it): accepted/s,
//! latency, and how the backlog grew. The load average (`/proc/loadavg`) is printed at the start
//! and end of every phase: other work on the machine shows there.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::PullConsumer};
use systests::population;
use testenv::{Launch, Nats, Service};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::BoxError;

/// The ingester's default durable name (`--consumer`).
const DURABLE: &str = "spartakus-ingester";
/// A send that starts later than this after its due time counts as late. Tokio's timer ticks
/// every millisecond, so up to about 1 ms is the timer, not the driver.
const LATE: Duration = Duration::from_millis(2);
/// How often the backlog is sampled during a phase.
const BACKLOG_EVERY: Duration = Duration::from_millis(100);
/// How often the stored count is polled while waiting for the last report.
const COUNT_EVERY: Duration = Duration::from_millis(10);
/// Longest one HTTP request may take (the gateway's own publish timeout is 5 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the requests still in flight when a phase's sends end.
const IN_FLIGHT_DEADLINE: Duration = Duration::from_secs(60);
/// Longest wait for every accepted report to be stored after a fixed-rate phase.
const STORED_DEADLINE: Duration = Duration::from_secs(120);
/// The same after the max phase, whose backlog may be large.
const MAX_DRAIN_DEADLINE: Duration = Duration::from_secs(600);
/// Base clusters of the population; every report is one of them under fresh IDs.
const BASE_CLUSTERS: usize = 2_000;
/// Clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// What to run, from the environment.
struct Settings {
    rates: Vec<u64>,
    phase: Duration,
    clients: usize,
    in_flight: usize,
    max_reports: usize,
}

/// A whole number above zero from `name`, or `default` when unset.
fn positive(name: &str, default: u64) -> Result<u64, BoxError> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{name}: {e}").into()),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={v:?}: must be a whole number above 0").into()),
        },
    }
}

impl Settings {
    fn from_env() -> Result<Self, BoxError> {
        let rates = match std::env::var("SPARTAKUS_BENCH_RATES") {
            Err(std::env::VarError::NotPresent) => vec![1_000, 2_000, 4_000, 8_000],
            Err(e) => return Err(format!("SPARTAKUS_BENCH_RATES: {e}").into()),
            Ok(v) => v
                .split(',')
                .map(|r| match r.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!(
                        "SPARTAKUS_BENCH_RATES={v:?}: must be reports per second, whole numbers above 0 separated by commas"
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        let phase = Duration::from_secs(positive("SPARTAKUS_BENCH_SECONDS", 10)?);
        let max_default = 20_000 * phase.as_secs();
        Ok(Self {
            rates,
            phase,
            clients: positive("SPARTAKUS_BENCH_CLIENTS", 64)? as usize,
            in_flight: positive("SPARTAKUS_BENCH_IN_FLIGHT", 512)? as usize,
            max_reports: positive("SPARTAKUS_BENCH_MAX_REPORTS", max_default)? as usize,
        })
    }
}

/// The three servers and the handles to watch them.
struct Pipeline {
    nats: Nats,
    gateway: Service,
    ingester: Service,
    consumer: PullConsumer,
    db: PathBuf,
    http: reqwest::Client,
    url: String,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    async fn start(settings: &Settings) -> Result<Self, BoxError> {
        let sync = crate::nats_sync();
        println!("nats-server sync: {sync:?}");
        let nats = Nats::options().sync(sync).start().await?;
        let uploads = settings.in_flight.max(settings.clients);
        let gateway = Launch::gateway(&nats.url())
            // Every client of the bench is 127.0.0.1: the cap on one address's unfinished
            // uploads would refuse what many volunteers behind many addresses would not meet.
            .env("SPARTAKUS_MAX_UPLOADS_PER_IP", uploads.to_string())
            .env("RUST_LOG", "warn")
            .start()
            .await?;
        let dir = tempfile::Builder::new()
            .prefix("spartakus-pipeline-bench-")
            .tempdir()?;
        let db = dir.path().join("db.sqlite");
        let sink = format!("sqlite:{}", db.display());
        let ingester = Launch::named("ingester")
            .args([
                "--nats-url",
                &nats.url(),
                "--sink",
                &sink,
                "--log-format",
                "json",
            ])
            .serving("--listen", "/readyz")
            .env("RUST_LOG", "warn")
            .start()
            .await?;
        let js = jetstream::new(async_nats::connect(nats.url()).await?);
        let topology = report::queue::Topology::default();
        let consumer: PullConsumer = js
            .get_stream(&topology.reports.name)
            .await?
            .get_consumer(DURABLE)
            .await?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(uploads)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let url = format!("{}/api/v1", gateway.url());
        Ok(Self {
            nats,
            gateway,
            ingester,
            consumer,
            db,
            http,
            url,
            _dir: dir,
        })
    }

    /// `num_pending + num_ack_pending` of the ingester's durable.
    async fn backlog(&self) -> Result<u64, BoxError> {
        backlog(&self.consumer).await
    }

    /// Reports in SQLite, read-only.
    async fn stored(&self) -> Result<u64, BoxError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || count_reports(&db)).await?
    }

    /// The CPU time so far of the driver and of each server.
    fn cpu(&self) -> Cpu {
        let pid = |p: Result<u32, testenv::Error>| p.ok().and_then(cpu_seconds);
        Cpu {
            at: Instant::now(),
            driver: cpu_seconds(std::process::id()),
            gateway: pid(self.gateway.pid()),
            nats: pid(self.nats.pid()),
            ingester: pid(self.ingester.pid()),
        }
    }

    /// Fails if a server died.
    fn check_alive(&mut self) -> Result<(), BoxError> {
        if let Some(e) = self.nats.died() {
            return Err(e.into());
        }
        for service in [&mut self.gateway, &mut self.ingester] {
            if !service.is_running() {
                return Err(format!(
                    "{} exited:\n{}",
                    service.log().display(),
                    service.log_tail(30)
                )
                .into());
            }
        }
        Ok(())
    }
}

async fn backlog(consumer: &PullConsumer) -> Result<u64, BoxError> {
    let info = tokio::time::timeout(Duration::from_secs(5), consumer.get_info()).await??;
    Ok(info.num_pending + info.num_ack_pending as u64)
}

fn count_reports(db: &Path) -> Result<u64, BoxError> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let n: i64 = conn.query_row("SELECT count(*) FROM reports", [], |r| r.get(0))?;
    Ok(u64::try_from(n)?)
}

/// User + system CPU seconds of process `pid` so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain. utime and stime are
    // fields 14 and 15, so the 12th and 13th after the name's ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

/// CPU seconds of each process at one moment.
#[derive(Clone, Copy)]
struct Cpu {
    at: Instant,
    driver: Option<f64>,
    gateway: Option<f64>,
    nats: Option<f64>,
    ingester: Option<f64>,
}

impl Cpu {
    /// Cores used by each process since `earlier`.
    fn since(&self, earlier: &Cpu) -> String {
        let wall = (self.at - earlier.at).as_secs_f64().max(1e-9);
        let cores = |now: Option<f64>, then: Option<f64>| match (now, then) {
            (Some(a), Some(b)) => format!("{:.2}", (a - b) / wall),
            _ => "?".into(),
        };
        format!(
            "driver {} (user+sys {:.1} s over {wall:.1} s), gateway {}, nats-server {}, ingester {}",
            cores(self.driver, earlier.driver),
            self.driver.zip(earlier.driver).map_or(0.0, |(a, b)| a - b),
            cores(self.gateway, earlier.gateway),
            cores(self.nats, earlier.nats),
            cores(self.ingester, earlier.ingester),
        )
    }
}

/// The load average, and the share of time some task waited for the disk (`/proc/pressure/io`,
/// over 10 s): fsyncs are on every report's path, so other work's disk traffic is noise too.
fn loadavg() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("? ({e})"));
    let io = std::fs::read_to_string("/proc/pressure/io")
        .ok()
        .and_then(|p| {
            let some = p.lines().next()?;
            Some(
                some.split_whitespace()
                    .nth(1)?
                    .trim_start_matches("avg10=")
                    .to_owned(),
            )
        })
        .unwrap_or_else(|| "?".into());
    format!("{load}; io pressure (some, avg10) {io} %")
}

/// The median and worst of 100 writes of 4 KiB each followed by an fsync, in the system's
/// temporary folder where NATS and SQLite keep their files: what every commit waits for.
fn fsync_probe() -> Result<String, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("probe"))?;
    let mut took = Vec::with_capacity(100);
    for _ in 0..100 {
        let t = std::time::Instant::now();
        file.write_all(&[0u8; 4096])?;
        file.sync_data()?;
        took.push(t.elapsed());
    }
    took.sort_unstable();
    Ok(format!(
        "4 KiB write + fsync in {}: p50 {}, max {}",
        std::env::temp_dir().display(),
        ms(took[50]),
        ms(took[99])
    ))
}

/// `count` distinct gzipped report bodies of the realistic population.
fn reports(count: usize) -> Result<Vec<Vec<u8>>, BoxError> {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    let plan = population::plan(&population::Settings {
        clusters: BASE_CLUSTERS,
        weeks: 1,
        seed: 25,
        now,
    });
    // Each base report as a template whose IDs are placeholders, filled in per report.
    let templates: Vec<String> = plan
        .iter()
        .map(|p| {
            let mut v: serde_json::Value = serde_json::from_slice(&p.body)?;
            v["clusterID"] = "{CLUSTER}".into();
            if v.get("reportID").is_some() {
                v["reportID"] = "{REPORT}".into();
            }
            Ok(v.to_string())
        })
        .collect::<Result<_, serde_json::Error>>()?;
    if templates.is_empty() {
        return Err("the population planned no report".into());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = count.div_ceil(threads);
    let chunks: Vec<Result<Vec<Vec<u8>>, std::io::Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let templates = &templates;
                scope.spawn(move || {
                    let range = (t * per_thread)..((t + 1) * per_thread).min(count);
                    range
                        .map(|k| {
                            let body = templates[k % templates.len()]
                                .replacen("{CLUSTER}", &uuid::Uuid::new_v4().to_string(), 1)
                                .replacen("{REPORT}", &uuid::Uuid::new_v4().to_string(), 1);
                            let mut gz = flate2::write::GzEncoder::new(
                                Vec::with_capacity(body.len() / 4),
                                flate2::Compression::default(),
                            );
                            gz.write_all(body.as_bytes())?;
                            gz.finish()
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a generator thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(count);
    for chunk in chunks {
        all.extend(chunk?);
    }
    Ok(all)
}

/// How one request ended.
enum Outcome {
    Accepted,
    /// The status and the problem's type (its last path segment), e.g. `503 overloaded`.
    Refused(String),
    Failed,
}

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Outcome {
    let sent = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::CONTENT_ENCODING, "gzip")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Outcome::Accepted,
        Ok(r) => {
            let status = r.status().as_u16();
            // Reading the problem body also lets the connection be used again.
            let problem: Option<serde_json::Value> = r.json().await.ok();
            let kind = problem
                .as_ref()
                .and_then(|p| p["type"].as_str())
                .and_then(|t| t.rsplit('/').next())
                .unwrap_or("?");
            Outcome::Refused(format!("{status} {kind}"))
        }
        Err(_) => Outcome::Failed,
    }
}

/// One finished request.
struct Sample {
    outcome: Outcome,
    latency: Duration,
    done: Instant,
}

/// What the requests of one phase did.
#[derive(Default)]
struct Requests {
    sent: usize,
    accepted: usize,
    refused: BTreeMap<String, usize>,
    failed: usize,
    /// Requests still unanswered at the deadline.
    unfinished: usize,
    /// Latencies of accepted requests, sorted.
    latencies: Vec<Duration>,
    last_accepted: Option<Instant>,
}

impl Requests {
    fn add(&mut self, s: Sample) {
        match s.outcome {
            Outcome::Accepted => {
                self.accepted += 1;
                self.latencies.push(s.latency);
                self.last_accepted = self.last_accepted.max(Some(s.done));
            }
            Outcome::Refused(status) => *self.refused.entry(status).or_default() += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }

    fn refused(&self) -> usize {
        self.refused.values().sum()
    }
}

/// The driver's own timeliness in an open-loop phase.
#[derive(Default)]
struct Timeliness {
    late: usize,
    waited_for_slot: usize,
    max_lag: Duration,
}

/// Samples the backlog every [`BACKLOG_EVERY`] until stopped.
struct BacklogSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<u64>, usize)>,
}

impl BacklogSampler {
    fn start(consumer: PullConsumer) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut samples, mut errors) = (Vec::new(), 0);
            let mut tick = tokio::time::interval(BACKLOG_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                match backlog(&consumer).await {
                    Ok(b) => samples.push(b),
                    Err(_) => errors += 1,
                }
            }
            (samples, errors)
        });
        Self { stop, task }
    }

    /// The samples and the number of failed reads.
    async fn finish(self) -> (Vec<u64>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// One phase's figures, for the summary table.
struct Row {
    name: String,
    accepted_per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    backlog_max: u64,
    backlog_end: u64,
    last_stored: String,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Sends `bodies` open loop at `rate` a second.
async fn open_loop(
    p: &Pipeline,
    rate: u64,
    bodies: Vec<Vec<u8>>,
    in_flight: usize,
) -> Result<(Requests, Timeliness, Instant), BoxError> {
    let slots = Arc::new(Semaphore::new(in_flight));
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let mut timeliness = Timeliness::default();
    let count = bodies.len();
    // A little lead so that the first sends are not late by the set-up itself.
    let start = Instant::now() + Duration::from_millis(20);
    for (i, body) in bodies.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                timeliness.waited_for_slot += 1;
                // Bounded: each request in flight ends within REQUEST_TIMEOUT.
                slots.clone().acquire_owned().await?
            }
        };
        let lag = Instant::now().saturating_duration_since(due);
        if lag > LATE {
            timeliness.late += 1;
        }
        timeliness.max_lag = timeliness.max_lag.max(lag);
        let (http, url, tx) = (p.http.clone(), p.url.clone(), tx.clone());
        tokio::spawn(async move {
            let outcome = post(&http, &url, body).await;
            let done = Instant::now();
            let _ = tx.send(Sample {
                outcome,
                latency: done - due,
                done,
            });
            drop(permit);
        });
    }
    drop(tx);
    let all_back = tokio::time::timeout(
        IN_FLIGHT_DEADLINE,
        slots.acquire_many(u32::try_from(in_flight)?),
    )
    .await;
    let mut requests = Requests {
        sent: count,
        ..Requests::default()
    };
    while let Ok(sample) = rx.try_recv() {
        requests.add(sample);
    }
    if all_back.is_err() {
        requests.unfinished = count - requests.accepted - requests.refused() - requests.failed;
    }
    requests.latencies.sort_unstable();
    Ok((requests, timeliness, start))
}

/// Sends from `pool` with `clients` closed loops until `time` has passed or the pool is empty.
async fn closed_loop(
    p: &Pipeline,
    clients: usize,
    time: Duration,
    pool: Vec<Vec<u8>>,
) -> (Requests, bool) {
    let pool = Arc::new(Mutex::new(pool));
    let deadline = Instant::now() + time;
    let exhausted = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, pool, exhausted) = (
                p.http.clone(),
                p.url.clone(),
                pool.clone(),
                exhausted.clone(),
            );
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let body = pool.lock().ok().and_then(|mut p| p.pop());
                    let Some(body) = body else {
                        exhausted.store(true, Ordering::Relaxed);
                        break;
                    };
                    let t = Instant::now();
                    let outcome = post(&http, &url, body).await;
                    let done = Instant::now();
                    samples.push(Sample {
                        outcome,
                        latency: done - t,
                        done,
                    });
                }
                samples
            })
        })
        .collect();
    let mut requests = Requests::default();
    for task in tasks {
        // Bounded: each client stops at the deadline, its last request within REQUEST_TIMEOUT.
        for s in task.await.unwrap_or_default() {
            requests.sent += 1;
            requests.add(s);
        }
    }
    requests.latencies.sort_unstable();
    (requests, exhausted.load(Ordering::Relaxed))
}

/// Waits until `total` reports are stored; when that was, or an error past `deadline`.
async fn wait_stored(
    p: &Pipeline,
    total: u64,
    deadline: Duration,
) -> Result<(Instant, bool), BoxError> {
    let until = Instant::now() + deadline;
    let mut first = true;
    loop {
        let stored = p.stored().await?;
        if stored >= total {
            if stored > total {
                return Err(format!(
                    "{stored} reports stored but only {total} accepted: duplicates"
                )
                .into());
            }
            return Ok((Instant::now(), first));
        }
        if Instant::now() >= until {
            return Err(
                format!("{stored} of {total} accepted reports stored after {deadline:?}").into(),
            );
        }
        first = false;
        tokio::time::sleep(COUNT_EVERY).await;
    }
}

/// Waits until the consumer has nothing pending or unacknowledged.
async fn wait_caught_up(p: &Pipeline, deadline: Duration) -> Result<(), BoxError> {
    let until = Instant::now() + deadline;
    loop {
        let b = p.backlog().await?;
        if b == 0 {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(format!("backlog still {b} after {deadline:?}").into());
        }
        tokio::time::sleep(COUNT_EVERY).await;
    }
}

fn print_requests(r: &Requests, seconds: f64) {
    println!(
        "  sent {}: accepted {} ({:.0}/s), refused {} {:?}, failed {}, unanswered at the deadline {}",
        r.sent,
        r.accepted,
        r.accepted as f64 / seconds,
        r.refused(),
        r.refused,
        r.failed,
        r.unfinished,
    );
    println!(
        "  gateway latency of accepted reports: p50 {}, p99 {}, max {}",
        ms(r.percentile(0.50)),
        ms(r.percentile(0.99)),
        ms(r.latencies.last().copied().unwrap_or_default()),
    );
}

/// The last report's delay from the last 204, with `≤` when it was already stored at the first
/// look.
fn stored_delay(last_accepted: Option<Instant>, stored_at: Instant, at_first_look: bool) -> String {
    match last_accepted {
        Some(last) => {
            let d = stored_at.saturating_duration_since(last);
            if at_first_look {
                format!("<= {}", ms(d))
            } else {
                ms(d)
            }
        }
        None => "-".into(),
    }
}

/// Runs the fixed rates and the max phase and prints their figures and a summary table.
pub(crate) async fn run() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    let bin = testenv::bin_dir().join("nats-server");
    let version = std::process::Command::new(&bin).arg("--version").output();
    println!("\n== the whole pipeline: gateway + NATS + ingester, fixed offered rates and max");
    match version {
        Ok(out) => println!(
            "{}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Err(e) => println!("{}: --version failed: {e}", bin.display()),
    }
    for name in ["gateway", "ingester"] {
        let path = testenv::workspace_bin(name)?;
        let built = std::fs::metadata(&path)?.modified()?;
        let built = jiff::Timestamp::try_from(built)?;
        println!("{name}: {} (built {built:.0})", path.display());
    }
    println!(
        "{} CPUs; phases of {} s; in flight at most {}; max phase: {} clients",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.phase.as_secs(),
        settings.in_flight,
        settings.clients
    );

    let per_rate: Vec<usize> = settings
        .rates
        .iter()
        .map(|r| (r * settings.phase.as_secs()) as usize)
        .collect();
    let warmup = 500;
    let needed = warmup + per_rate.iter().sum::<usize>() + settings.max_reports;
    let started = std::time::Instant::now();
    let mut bodies = tokio::task::spawn_blocking(move || reports(needed)).await??;
    let gz: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "generated {needed} distinct reports in {:.1} s, {} B gzipped on average",
        started.elapsed().as_secs_f64(),
        gz / needed.max(1)
    );

    println!("{}", fsync_probe()?);
    let mut p = Pipeline::start(&settings).await?;
    println!(
        "gateway pid {}, nats-server pid {}, ingester pid {}, database {}",
        p.gateway.pid()?,
        p.nats.pid()?,
        p.ingester.pid()?,
        p.db.display()
    );

    // Warm-up: opens connections and lets every process reach its steady state; not reported.
    let rest = bodies.split_off(warmup);
    let (w, _, _) = open_loop(&p, 500, bodies, settings.in_flight).await?;
    let mut accepted_total = w.accepted as u64;
    wait_stored(&p, accepted_total, STORED_DEADLINE).await?;
    wait_caught_up(&p, STORED_DEADLINE).await?;
    println!("warm-up: {} of {} accepted and stored", w.accepted, w.sent);
    bodies = rest;

    let mut rows = Vec::new();
    for (&rate, &n) in settings.rates.iter().zip(&per_rate) {
        let rest = bodies.split_off(n.min(bodies.len()));
        let phase_bodies = std::mem::replace(&mut bodies, rest);
        println!(
            "\n-- {rate} reports/s offered for {} s ({n} reports), open loop",
            settings.phase.as_secs()
        );
        println!("  load average at start: {}", loadavg());
        let stored_before = p.stored().await?;
        let sampler = BacklogSampler::start(p.consumer.clone());
        let cpu0 = p.cpu();
        let (r, timely, start) = open_loop(&p, rate, phase_bodies, settings.in_flight).await?;
        let cpu1 = p.cpu();
        let (samples, sample_errors) = sampler.finish().await;
        let backlog_end = p.backlog().await?;
        let stored_at_end = p.stored().await?;
        accepted_total += r.accepted as u64;
        let (stored_at, first) = wait_stored(&p, accepted_total, STORED_DEADLINE).await?;
        wait_caught_up(&p, STORED_DEADLINE).await?;
        p.check_alive()?;
        let window = r
            .last_accepted
            .map_or(settings.phase, |l| l.saturating_duration_since(start))
            .max(Duration::from_millis(1));
        print_requests(&r, window.as_secs_f64());
        println!(
            "  driver: {} sends started more than {} after their due time ({} waited for one of the {} slots), latest by {}",
            timely.late,
            ms(LATE),
            timely.waited_for_slot,
            settings.in_flight,
            ms(timely.max_lag)
        );
        println!("  CPU in cores: {}", cpu1.since(&cpu0));
        let backlog_max = samples.iter().copied().max().unwrap_or(0);
        println!(
            "  backlog (num_pending + num_ack_pending, {} samples every {} ms{}): max {backlog_max}, at the end of the sends {backlog_end}",
            samples.len(),
            BACKLOG_EVERY.as_millis(),
            if sample_errors > 0 {
                format!(", {sample_errors} failed reads")
            } else {
                String::new()
            },
        );
        let delay = stored_delay(r.last_accepted, stored_at, first);
        println!(
            "  stored: {} of this phase's {} when its last 204 came; all stored {delay} after it (count polled every {} ms)",
            stored_at_end.saturating_sub(stored_before),
            r.accepted,
            COUNT_EVERY.as_millis()
        );
        println!("  load average at end: {}", loadavg());
        rows.push(Row {
            name: format!("{rate}/s"),
            accepted_per_second: r.accepted as f64 / window.as_secs_f64(),
            p50: r.percentile(0.50),
            p99: r.percentile(0.99),
            max: r.latencies.last().copied().unwrap_or_default(),
            backlog_max,
            backlog_end,
            last_stored: delay,
        });
    }

    println!(
        "\n-- max: {} closed-loop clients for {} s (at most {} reports)",
        settings.clients,
        settings.phase.as_secs(),
        bodies.len()
    );
    println!("  load average at start: {}", loadavg());
    let backlog_start = p.backlog().await?;
    let sampler = BacklogSampler::start(p.consumer.clone());
    let cpu0 = p.cpu();
    let t0 = Instant::now();
    let (r, exhausted) = closed_loop(&p, settings.clients, settings.phase, bodies).await;
    let took = t0.elapsed();
    let cpu1 = p.cpu();
    let (samples, _) = sampler.finish().await;
    let backlog_end = p.backlog().await?;
    accepted_total += r.accepted as u64;
    print_requests(&r, took.as_secs_f64());
    if exhausted {
        println!("  the pool of pre-generated reports ran out: raise SPARTAKUS_BENCH_MAX_REPORTS");
    }
    println!("  CPU in cores: {}", cpu1.since(&cpu0));
    let backlog_max = samples.iter().copied().max().unwrap_or(0);
    println!(
        "  backlog: {backlog_start} at the start, max {backlog_max}, {backlog_end} at the end: grew {:+.0} reports/s",
        (backlog_end as f64 - backlog_start as f64) / took.as_secs_f64()
    );
    // The consumer's count first: polling SQLite's count through a long drain would take CPU
    // from the ingester it measures.
    wait_caught_up(&p, MAX_DRAIN_DEADLINE).await?;
    let (stored_at, first) = wait_stored(&p, accepted_total, STORED_DEADLINE).await?;
    let delay = stored_delay(r.last_accepted, stored_at, first);
    println!("  every accepted report stored {delay} after the last 204");
    println!("  load average at end: {}", loadavg());
    p.check_alive()?;
    rows.push(Row {
        name: format!("max ({})", settings.clients),
        accepted_per_second: r.accepted as f64 / took.as_secs_f64(),
        p50: r.percentile(0.50),
        p99: r.percentile(0.99),
        max: r.latencies.last().copied().unwrap_or_default(),
        backlog_max,
        backlog_end,
        last_stored: delay,
    });

    println!("{}", fsync_probe()?);
    println!("\nsummary, the whole pipeline ({accepted_total} reports accepted, all stored once):");
    println!(
        "| {:<10} | {:>10} | {:>9} | {:>9} | {:>9} | {:>11} | {:>11} | {:>17} |",
        "rate",
        "accepted/s",
        "p50",
        "p99",
        "max",
        "backlog max",
        "backlog end",
        "last-stored delay"
    );
    println!("|{}|", ["-"; 8].map(|_| "---").join("|"));
    for row in &rows {
        println!(
            "| {:<10} | {:>10.0} | {:>9} | {:>9} | {:>9} | {:>11} | {:>11} | {:>17} |",
            row.name,
            row.accepted_per_second,
            ms(row.p50),
            ms(row.p99),
            ms(row.max),
            row.backlog_max,
            row.backlog_end,
            row.last_stored
        );
    }
    Ok(())
}
