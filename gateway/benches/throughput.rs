//! Throughput of the gateway against raw JetStream publishes, same payloads, same concurrency,
//! under both JetStream sync settings.
//!
//! `cargo bench -p gateway --bench throughput` runs, for `sync_interval: always` (what every
//! shipped NATS configuration sets) and then for the server's default (an fsync every 2
//! minutes), a nats-server (its store in the system's temporary folder, which must be on a disk:
//! on tmpfs an fsync costs nothing) and the release gateway binary (both by testenv; the gateway a process of its own,
//! so its peak RSS is its own), then drives `SPARTAKUS_BENCH_CLIENTS` (default 64) concurrent
//! clients over loopback:
//!
//! 1. seed-size reports (~2 KB) through `POST /api/v1`;
//! 2. 500-node reports (~250 KB) likewise;
//! 3. the same two payloads published straight to JetStream (publish, await the PubAck).
//!
//! Every request is a distinct report (a fresh reportID, which is also the `Nats-Msg-Id`): a
//! repeated one would be a duplicate that JetStream drops without writing it, flattering
//! whoever sends it. After each phase the bench checks that the stream holds one message per
//! acknowledged report, then purges it, so that every phase starts from an empty stream.
//! Refused requests (e.g. 503 over the gateway's `--memory-budget`, which the gateway reads
//! from `SPARTAKUS_MEMORY_BUDGET` like its other flags) are counted as failed. Each phase stops
//! after `SPARTAKUS_BENCH_SECONDS` (default 15) or its report count. It prints the gateway/raw
//! ratios for each setting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;
use bytes::Bytes;
use report::ReportId;
use testenv::{Launch, Nats, NatsSync};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The gateway's queue prefix: streams `BENCH_REPORTS`…, subject `bench.reports`.
const QUEUE: &str = "bench";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A report with `nodes` nodes and the placeholder reportID `{ID}`.
fn report_template(nodes: usize) -> String {
    let node = |i: usize| {
        serde_json::json!({
            "id": format!("{i:032x}"),
            "operatingSystem": "linux",
            "osImage": "Ubuntu 24.04.1 LTS",
            "kernelVersion": "6.8.0-1015-gke",
            "architecture": "amd64",
            "containerRuntimeVersion": "containerd://2.0.1",
            "kubeletVersion": "v1.37.2",
            "cloudProvider": "gce",
            "capacity": [
                {"resource": "cpu", "value": "4"},
                {"resource": "memory", "value": "15437428Ki"},
                {"resource": "pods", "value": "110"},
                {"resource": "ephemeral-storage", "value": "101203600Ki"},
                {"resource": "hugepages-2Mi", "value": "0"},
                {"resource": "nvidia.com/gpu", "value": "0"},
            ],
        })
    };
    serde_json::json!({
        "version": "v2.0.0",
        "timestamp": "1767225600",
        "clusterID": "2f9c93d3-156c-47aa-8802-578ffca9b50e",
        "masterVersion": "v1.37.2",
        "reportID": "{ID}",
        "schemaVersion": 2,
        "nodes": (0..nodes).map(node).collect::<Vec<_>>(),
    })
    .to_string()
}

/// Results of one phase.
struct Phase {
    done: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }

    fn print(&self, name: &str, bytes: usize) {
        println!(
            "{name:<34} {:>9.0} reports/s {:>8.1} MB/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ok, {} failed, {:.1}s)",
            self.rate(),
            self.rate() * bytes as f64 / 1e6,
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.done,
            self.failed,
            self.elapsed.as_secs_f64(),
        );
    }
}

/// Runs `clients` loops of `send` until `count` sends or `time` has passed.
async fn drive<F, Fut>(clients: usize, count: usize, time: Duration, send: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let send = Arc::new(send);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + time;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let send = send.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || Instant::now() >= deadline {
                        break;
                    }
                    let t = Instant::now();
                    if send(i).await {
                        ok += 1;
                        latencies.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    let mut phase = Phase {
        done: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let Ok((ok, failed, latencies)) = task.await else {
            continue;
        };
        phase.done += ok;
        phase.failed += failed;
        phase.latencies.extend(latencies);
    }
    phase.elapsed = started.elapsed();
    phase.latencies.sort_unstable();
    phase
}

fn with_id(template: &str, id: ReportId) -> String {
    template.replacen("{ID}", &id.to_string(), 1)
}

/// The settings of one run.
struct Run {
    clients: usize,
    time: Duration,
    small_count: usize,
    large_count: usize,
}

/// Gateway/raw ratios for seed-size and 500-node reports.
struct Ratios {
    small: f64,
    large: f64,
}

/// Messages in the reports stream.
async fn stream_messages(js: &jetstream::Context, name: &str) -> Result<u64, BoxError> {
    Ok(js.get_stream(name).await?.info().await?.state.messages)
}

/// Checks that a phase wrote one message per acknowledged report into the stream it found
/// empty, then empties it, so that every phase starts from an empty stream.
async fn check_written(js: &jetstream::Context, name: &str, phase: &Phase) -> Result<(), BoxError> {
    let written = stream_messages(js, name).await?;
    if written != phase.done as u64 {
        return Err(format!(
            "{} reports acknowledged but {written} in the stream: not every request was a new report",
            phase.done,
        )
        .into());
    }
    js.get_stream(name).await?.purge().await?;
    Ok(())
}

async fn run(sync: NatsSync, settings: &Run) -> Result<Ratios, BoxError> {
    let Run {
        clients,
        time,
        small_count,
        large_count,
    } = *settings;
    let nats = Nats::options().sync(sync).start().await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let gateway = Launch::gateway(&nats.url())
        .args(["--queue", QUEUE])
        // The clients stand for as many volunteers, but all come from 127.0.0.1: the cap on
        // one address's unfinished uploads would refuse most large reports.
        .env("SPARTAKUS_MAX_UPLOADS_PER_IP", clients.to_string())
        .env("RUST_LOG", "warn")
        .start()
        .await?;
    let pid = gateway.pid()?;
    let setting = match sync {
        NatsSync::Always => "sync_interval: always",
        NatsSync::ServerDefault => "server default sync (every 2 min)",
    };
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let topology = report::queue::Topology::new(QUEUE)?;
    let (stream, subject) = (topology.reports.name, topology.reports.subject);

    let small = Arc::new(report_template(4));
    let large = Arc::new(report_template(500));
    let small_len = with_id(&small, ReportId::random()).len();
    let large_len = with_id(&large, ReportId::random()).len();
    println!(
        "\n{setting}: gateway pid {pid}, {clients} clients, payloads {small_len} B and {large_len} B, at most {}s a phase",
        time.as_secs()
    );

    let post = |template: Arc<String>| {
        let http = http.clone();
        let url = format!("{}/api/v1", gateway.url());
        move |_i: usize| {
            let body = with_id(&template, ReportId::random());
            let request = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send();
            async move { request.await.is_ok_and(|r| r.status() == 204) }
        }
    };
    let gw_small = drive(clients, small_count, time, post(small.clone())).await;
    gw_small.print("gateway, seed-size", small_len);
    check_written(&js, &stream, &gw_small).await?;
    let gw_large = drive(clients, large_count, time, post(large.clone())).await;
    gw_large.print("gateway, 500 nodes", large_len);
    check_written(&js, &stream, &gw_large).await?;
    let (gateway_peak, _) = gateway.memory()?;

    let publish = |template: Arc<String>| {
        let js = js.clone();
        let subject = subject.clone();
        move |_i: usize| {
            let id = ReportId::random();
            let payload = Bytes::from(with_id(&template, id));
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, id.to_string().as_str());
            let (js, subject) = (js.clone(), subject.clone());
            async move {
                match js.publish_with_headers(subject, headers, payload).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                }
            }
        }
    };
    let raw_small = drive(clients, small_count, time, publish(small.clone())).await;
    raw_small.print("raw JetStream, seed-size", small_len);
    check_written(&js, &stream, &raw_small).await?;
    let raw_large = drive(clients, large_count, time, publish(large.clone())).await;
    raw_large.print("raw JetStream, 500 nodes", large_len);
    check_written(&js, &stream, &raw_large).await?;

    println!(
        "gateway peak RSS (VmHWM): {:.1} MiB",
        gateway_peak as f64 / (1024.0 * 1024.0)
    );
    let ratios = Ratios {
        small: gw_small.rate() / raw_small.rate(),
        large: gw_large.rate() / raw_large.rate(),
    };
    println!(
        "ratio gateway/raw ({setting}): seed-size {:.2}, 500 nodes {:.2}",
        ratios.small, ratios.large
    );
    Ok(ratios)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let settings = Run {
        clients: env_or("SPARTAKUS_BENCH_CLIENTS", 64) as usize,
        time: Duration::from_secs(env_or("SPARTAKUS_BENCH_SECONDS", 15)),
        small_count: env_or("SPARTAKUS_BENCH_SMALL", 200_000) as usize,
        large_count: env_or("SPARTAKUS_BENCH_LARGE", 5_000) as usize,
    };
    let always = run(NatsSync::Always, &settings).await?;
    let default = run(NatsSync::ServerDefault, &settings).await?;
    println!(
        "\nsummary, ratio gateway/raw: sync_interval always: seed-size {:.2}, 500 nodes {:.2}; \
         server default: seed-size {:.2}, 500 nodes {:.2}",
        always.small, always.large, default.small, default.large
    );
    Ok(())
}
