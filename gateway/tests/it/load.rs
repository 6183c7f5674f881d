//! The overload harness shared by `tests/it/overload.rs` (CI size) and `benches/overload.rs`
//! (long run): measure what the gateway accepts per second, then offer a multiple of that, open
//! loop, and record every answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testenv::Service;
use tokio::task::JoinSet;

/// The seed README's example payload.
const SEED: &str = include_str!("../../../report/testdata/v1-seed.json");
const SEED_TIMESTAMP: &str = "\"867530909031976\"";

/// Bytes as MiB, for printing.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// How a run is shaped.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// How long the capacity is measured.
    pub(crate) measure_for: Duration,
    /// Concurrent closed-loop clients while measuring (the gateway's `--max-in-flight`).
    pub(crate) measure_clients: usize,
    /// How long the overload lasts.
    pub(crate) overload_for: Duration,
    /// Offered rate as a multiple of the measured capacity.
    pub(crate) factor: f64,
    /// Most requests offered during the overload, whatever the rate.
    pub(crate) max_requests: u64,
    /// Most requests outstanding at the client; beyond it the client skips a send (counted).
    pub(crate) max_outstanding: usize,
    /// How long the gateway has to accept a report again once the load is gone.
    pub(crate) recovery_deadline: Duration,
}

/// What one overload run measured.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    /// Reports accepted per second by closed-loop clients.
    pub(crate) capacity: f64,
    /// Rate the overload aimed at.
    pub(crate) target_rate: f64,
    /// Requests sent during the overload, and the rate that was.
    pub(crate) offered: u64,
    pub(crate) offered_rate: f64,
    /// Sends skipped because `max_outstanding` requests were already waiting.
    pub(crate) skipped: u64,
    /// 2xx answers, and per second of the overload.
    pub(crate) accepted: u64,
    pub(crate) accepted_rate: f64,
    /// 503 and 429 answers with a Retry-After header.
    pub(crate) shed: u64,
    /// Any other answer: status, or the transport error, with how many times.
    pub(crate) unexpected: Vec<(String, u64)>,
    /// Latency of accepted requests.
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
    /// Latency of shed requests (p99).
    pub(crate) shed_p99: Duration,
    /// The gateway's peak resident set (VmHWM) after the run.
    pub(crate) peak_rss: u64,
    /// How long after the load a report was accepted again.
    pub(crate) recovered_after: Option<Duration>,
}

impl Figures {
    pub(crate) fn print(&self) {
        println!(
            "capacity {:.0} reports/s; offered {} requests at {:.0}/s (target {:.0}/s, {} sends skipped); \
             accepted {} ({:.0}/s), shed {} (503/429 + Retry-After), unexpected {:?}; \
             accepted latency p50 {:?} p99 {:?} max {:?}; shed p99 {:?}; gateway peak RSS {:.1} MiB; \
             recovered after {:?}",
            self.capacity,
            self.offered,
            self.offered_rate,
            self.target_rate,
            self.skipped,
            self.accepted,
            self.accepted_rate,
            self.shed,
            self.unexpected,
            self.p50,
            self.p99,
            self.max,
            self.shed_p99,
            mib(self.peak_rss),
            self.recovered_after,
        );
    }
}

/// A distinct valid report each call (its own timestamp, hence its own derived reportID).
fn next_report(counter: &AtomicU64) -> String {
    let n = 1_000_000_000 + counter.fetch_add(1, Ordering::Relaxed);
    SEED.replacen(SEED_TIMESTAMP, &format!("\"{n}\""), 1)
}

/// One answer: the status and whether it carried Retry-After, or the transport error.
type Outcome = Result<(u16, bool), String>;

async fn post(http: &reqwest::Client, url: &str, body: String) -> (Outcome, Duration) {
    let started = Instant::now();
    let outcome = match http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            // Read the (small) body so the connection can be reused.
            match response.bytes().await {
                Ok(_) => Ok((status, retry_after)),
                Err(e) => Err(format!("reading the answer: {e}")),
            }
        }
        Err(e) => Err(format!("{e}")),
    };
    (outcome, started.elapsed())
}

/// Closed loop: `clients` clients post as fast as they are answered, for `duration`.
async fn measure_capacity(
    http: &reqwest::Client,
    url: &str,
    counter: &Arc<AtomicU64>,
    clients: usize,
    duration: Duration,
) -> f64 {
    let until = Instant::now() + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (http, url, counter) = (http.clone(), url.to_owned(), counter.clone());
        tasks.spawn(async move {
            let mut accepted = 0u64;
            while Instant::now() < until {
                if let (Ok((200..=299, _)), _) = post(&http, &url, next_report(&counter)).await {
                    accepted += 1;
                }
            }
            accepted
        });
    }
    let mut accepted = 0;
    while let Some(result) = tasks.join_next().await {
        accepted += result.expect("a capacity client panicked");
    }
    accepted as f64 / duration.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Measures capacity, offers `settings.factor` times it open loop, then checks recovery.
pub(crate) async fn run(gateway: &Service, settings: &Settings) -> Figures {
    let url = format!("{}/api/v1", gateway.url());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.max_outstanding)
        .build()
        .expect("HTTP client");
    let counter = Arc::new(AtomicU64::new(0));
    let mut figures = Figures {
        capacity: measure_capacity(
            &http,
            &url,
            &counter,
            settings.measure_clients,
            settings.measure_for,
        )
        .await,
        ..Figures::default()
    };
    assert!(
        figures.capacity > 0.0,
        "the gateway accepted nothing while measuring"
    );

    // Open loop: request i leaves at start + i / rate, whether or not earlier ones were answered.
    figures.target_rate = figures.capacity * settings.factor;
    let total = ((figures.target_rate * settings.overload_for.as_secs_f64()) as u64)
        .min(settings.max_requests);
    let gap = Duration::from_secs_f64(1.0 / figures.target_rate);
    let mut tasks: JoinSet<(Outcome, Duration)> = JoinSet::new();
    let mut results = Vec::with_capacity(total as usize);
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + gap.mul_f64(i as f64)).await;
        while let Some(done) = tasks.try_join_next() {
            results.push(done.expect("a request task panicked"));
        }
        if tasks.len() >= settings.max_outstanding {
            figures.skipped += 1;
            continue;
        }
        let (http, url, body) = (http.clone(), url.clone(), next_report(&counter));
        tasks.spawn(async move { post(&http, &url, body).await });
        figures.offered += 1;
    }
    let offering_took = start.elapsed();
    while let Some(done) = tasks.join_next().await {
        results.push(done.expect("a request task panicked"));
    }
    let overload_took = start.elapsed();
    figures.offered_rate = figures.offered as f64 / offering_took.as_secs_f64();

    let mut accepted_latency = Vec::new();
    let mut shed_latency = Vec::new();
    let mut unexpected = std::collections::BTreeMap::<String, u64>::new();
    for (outcome, latency) in results {
        match outcome {
            Ok((200..=299, _)) => accepted_latency.push(latency),
            Ok((503 | 429, true)) => shed_latency.push(latency),
            Ok((status, retry_after)) => {
                *unexpected
                    .entry(format!("{status} (retry-after: {retry_after})"))
                    .or_default() += 1
            }
            Err(e) => *unexpected.entry(e).or_default() += 1,
        }
    }
    accepted_latency.sort();
    shed_latency.sort();
    figures.accepted = accepted_latency.len() as u64;
    figures.accepted_rate = figures.accepted as f64 / overload_took.as_secs_f64();
    figures.shed = shed_latency.len() as u64;
    figures.unexpected = unexpected.into_iter().collect();
    figures.p50 = percentile(&accepted_latency, 0.50);
    figures.p99 = percentile(&accepted_latency, 0.99);
    figures.max = accepted_latency.last().copied().unwrap_or_default();
    figures.shed_p99 = percentile(&shed_latency, 0.99);
    figures.peak_rss = gateway.memory().expect("the gateway's memory").0;

    // The load is gone: a report must be accepted again without restarting anything.
    let load_ended = Instant::now();
    while load_ended.elapsed() < settings.recovery_deadline {
        if let (Ok((200..=299, _)), _) = post(&http, &url, next_report(&counter)).await {
            figures.recovered_after = Some(load_ended.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    figures
}
