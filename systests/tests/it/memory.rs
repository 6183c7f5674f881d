//! Memory bounded in total, measured under the shipped pods' memory limit: the gateway and the
//! ingester each run in a cgroup v1 memory group with the limit their Deployment in `k8s/base`
//! sets (read from the manifest, so the two cannot drift), and the kernel says how much they
//! charged at the peak and whether it OOM-killed them, as it would in the pod.
//!
//! - The gateway takes 128 concurrent gzip bombs and maximal reports (a report at
//!   `--max-decoded-bytes`), three rounds; it is not OOM-killed, and honest reports pass once the
//!   flood ends.
//! - The ingester drains 64 maximal reports queued in JetStream into SQLite without being
//!   OOM-killed.
//!
//! Each prints its peak. The binaries are the debug builds the tests run, which take more memory
//! than the release builds the pods run: the bound holds with room to spare there.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use report::ReportId;
use serde_json::{Value, json};
use testenv::{Launch, MemoryUsage, Nats, Service};

use crate::pipeline::heavy_turn;

const MIB: u64 = 1 << 20;
/// The gateway's default `--max-decoded-bytes`.
const MAX_DECODED: usize = 16 << 20;
/// A maximal report's size: the decoded cap less room for the envelope around it, so that it
/// fits NATS's `max_payload` (16 MiB too) once queued.
const MAXIMAL_SIZE: usize = MAX_DECODED - (4 << 10);
/// Concurrent gzip bombs per round.
const BOMBS: usize = 128;
/// Concurrent maximal reports per round, beside the bombs.
const MAXIMAL: usize = 16;
/// Rounds of the flood.
const ROUNDS: usize = 3;
/// Maximal reports queued for the ingester.
const QUEUED: usize = 64;
/// How long one request of the flood may take.
const REQUEST: Duration = Duration::from_secs(60);
/// How long the ingester may take to store the queued reports (debug build, SQLite).
const DRAIN: Duration = Duration::from_secs(600);

/// The memory limit of `k8s/base/NAME/deployment.yaml`'s container, in bytes.
fn pod_limit(name: &str) -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../k8s/base")
        .join(name)
        .join("deployment.yaml");
    let yaml = std::fs::read_to_string(&path).expect("the Deployment");
    // `limits:` is followed by `memory: 256Mi` in each of our Deployments.
    let after = yaml
        .split_once("limits:")
        .map(|(_, rest)| rest)
        .expect("the Deployment sets resource limits");
    let value = after
        .lines()
        .find_map(|l| l.trim().strip_prefix("memory:"))
        .expect("a memory limit")
        .trim();
    let (digits, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let n: u64 = digits.parse().expect("a whole number");
    n * match unit {
        "Mi" => MIB,
        "Gi" => 1 << 30,
        other => panic!("unit {other:?} in {}", path.display()),
    }
}

/// A capacity list as a big node reports it: the usual resources, then a listed vendor's device
/// counts (which the collector keeps verbatim, so that a maximal report stays maximal as queued).
fn capacity(devices: usize) -> Vec<Value> {
    let mut list = vec![
        json!({"resource": "cpu", "value": "96"}),
        json!({"resource": "memory", "value": "791251388Ki"}),
        json!({"resource": "pods", "value": "110"}),
        json!({"resource": "ephemeral-storage", "value": "1967316388Ki"}),
    ];
    list.extend((0..devices).map(|d| json!({"resource": format!("intel.com/device-{d:02}"), "value": format!("{}", d % 9 + 1)})));
    list
}

/// A v1 report with the most nodes a report may have, each with enough capacity entries that
/// its compact JSON is as close to `size` bytes as whole entries allow, and no larger.
fn maximal_report(cluster: &str, size: usize) -> Vec<u8> {
    let node = |n: usize, devices: usize| {
        json!({
            "id": format!("{n:032x}"),
            "operatingSystem": "linux",
            "osImage": "Ubuntu 24.04.3 LTS",
            "kernelVersion": "6.8.0-1027-gke",
            "architecture": "amd64",
            "containerRuntimeVersion": "containerd://2.1.4",
            "kubeletVersion": "v1.37.2",
            "capacity": capacity(devices),
        })
    };
    let report = |devices: &dyn Fn(usize) -> usize| {
        let nodes: Vec<Value> = (0..report::MAX_NODES)
            .map(|n| node(n, devices(n)))
            .collect();
        serde_json::to_vec(&json!({
            "version": "v1.0.0",
            "timestamp": jiff::Timestamp::now().as_second().to_string(),
            "clusterID": cluster,
            "masterVersion": "v1.37.2",
            "nodes": nodes,
        }))
        .expect("JSON")
    };
    let entry = serde_json::to_vec(&capacity(1)[4]).expect("JSON").len() + 1;
    let base = report(&|_| 0).len();
    let per_node = size.saturating_sub(base) / entry / report::MAX_NODES;
    let extra = (size.saturating_sub(base) - per_node * entry * report::MAX_NODES) / entry;
    let body = report(&|n| per_node + usize::from(n < extra));
    assert!(
        body.len() <= size && body.len() + 2 * entry * 10 > size,
        "{} bytes for {size}",
        body.len()
    );
    body
}

/// A JSON body that inflates to `decoded` bytes (spaces inside a report), gzipped.
fn gzip_bomb(decoded: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(br#"{"version":"v1.0.0","clusterID":"bomb","nodes":["#)
        .expect("gzip in memory");
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..decoded.div_ceil(1 << 20) {
        gz.write_all(&spaces).expect("gzip in memory");
    }
    gz.write_all(b"]}").expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

/// An honest small report (the seed's shape) from its own cluster.
fn honest(n: usize) -> Vec<u8> {
    json!({
        "version": "v1.0.0",
        "timestamp": (jiff::Timestamp::now().as_second() + n as i64).to_string(),
        "clusterID": format!("honest-{n}"),
        "masterVersion": "v1.37.2",
        "nodes": [{
            "id": "c8863d09ecc5be8d9791f72acd275fc2",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "kubeletVersion": "v1.37.2",
            "capacity": [{"resource": "cpu", "value": "4"}],
        }],
    })
    .to_string()
    .into_bytes()
}

/// POSTs `body` to `/api/v1`, gzipped if `gzipped`; the status, or 0 when the connection failed
/// (a gateway refusing a body early may close it before the client finished sending).
async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>, gzipped: bool) -> u16 {
    let mut request = http
        .post(format!("{url}/api/v1"))
        .header("content-type", "application/json")
        .timeout(REQUEST)
        .body(body);
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    match request.send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// What the kernel counted for a service started with a memory limit, and its VmHWM.
fn measured(service: &Service) -> (MemoryUsage, Option<u64>) {
    let usage = service
        .memory_usage()
        .expect("started with a memory limit")
        .expect("the cgroup's figures");
    let hwm = service.memory().ok().map(|(hwm, _)| hwm);
    (usage, hwm)
}

fn report_figures(what: &str, usage: &MemoryUsage, hwm: Option<u64>) {
    println!(
        "{what}: cgroup peak {:.1} MiB of a {} MiB limit (rss now {:.1} MiB, cache now {:.1} MiB), \
         VmHWM {}, limit hit {} times, OOM kills {}",
        usage.peak as f64 / MIB as f64,
        usage.limit / MIB,
        usage.rss as f64 / MIB as f64,
        usage.cache as f64 / MIB as f64,
        hwm.map_or("gone".to_owned(), |h| format!(
            "{:.1} MiB",
            h as f64 / MIB as f64
        )),
        usage.failcnt,
        usage.oom_kills,
    );
}

#[tokio::test]
async fn the_gateway_outlives_bombs_and_maximal_reports_within_its_pod_limit() {
    let _turn = heavy_turn().await;
    let limit = pod_limit("gateway");
    let nats = Nats::start().await.expect("nats-server starts");
    let mut gateway = Launch::gateway(&nats.url())
        .memory_limit(limit)
        .start()
        .await
        .expect("the gateway is ready");
    let url = gateway.url();
    // Each attacking request comes from an address of its own, as from a botnet, so that the
    // per-address caps do not stop it first; the honest client has another.
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("an HTTP client")
    };
    let attackers: Vec<reqwest::Client> = (0..BOMBS + MAXIMAL)
        .map(|i| from([127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8]))
        .collect();
    let http = from([127, 0, 0, 3]);
    assert_eq!(
        post(&http, &url, honest(0), false).await,
        204,
        "{}",
        gateway.log_tail(20)
    );

    let bomb = gzip_bomb(32 << 20);
    let maximal = gzip(&maximal_report("maximal", MAXIMAL_SIZE));
    println!(
        "attack: {ROUNDS} rounds of {BOMBS} gzip bombs ({} KiB inflating to 32 MiB) and {MAXIMAL} \
         maximal reports ({} KiB gzipped, {:.1} MiB decoded) at once",
        bomb.len() >> 10,
        maximal.len() >> 10,
        MAXIMAL_SIZE as f64 / MIB as f64
    );
    let mut outcomes = std::collections::BTreeMap::<(&str, u16), usize>::new();
    let mut honest_during = Vec::new();
    for round in 0..ROUNDS {
        let flood = futures::stream::iter(
            (0..BOMBS)
                .map(|_| ("bomb", bomb.clone()))
                .chain((0..MAXIMAL).map(|_| ("maximal", maximal.clone())))
                .zip(&attackers),
        )
        .map(|((kind, body), http)| {
            let url = url.clone();
            async move { (kind, post(http, &url, body, true).await) }
        })
        .buffer_unordered(BOMBS + MAXIMAL)
        .collect::<Vec<_>>();
        // An honest cluster reports while the flood is on.
        let honest_one = post(&http, &url, honest(round + 1), false);
        let (answers, status) = tokio::join!(flood, honest_one);
        honest_during.push(status);
        for answer in answers {
            *outcomes.entry(answer).or_default() += 1;
        }
        assert!(
            gateway.is_running(),
            "the gateway died in round {round}:\n{}",
            gateway.log_tail(20)
        );
    }
    println!("flood answers (kind, status): {outcomes:?}; honest during it: {honest_during:?}");

    let (usage, hwm) = measured(&gateway);
    report_figures("gateway under attack", &usage, hwm);
    assert!(
        gateway.is_running(),
        "the gateway died:\n{}",
        gateway.log_tail(20)
    );
    assert_eq!(usage.oom_kills, 0, "{usage:?}");
    assert!(
        !outcomes
            .keys()
            .any(|(_, status)| *status >= 500 && *status != 503),
        "a 5xx other than 503: {outcomes:?}"
    );

    // Once the flood ends, honest reports pass again.
    let mut n = 100;
    testenv::eventually(
        Duration::from_secs(30),
        "an honest report accepted after the flood",
        || {
            n += 1;
            let (http, url) = (http.clone(), url.clone());
            async move { post(&http, &url, honest(n), false).await == 204 }
        },
    )
    .await;
    for i in 0..10 {
        assert_eq!(post(&http, &url, honest(1_000 + i), false).await, 204);
    }
    let (usage, _) = measured(&gateway);
    assert_eq!(usage.oom_kills, 0, "{usage:?}");
}

#[tokio::test]
async fn the_ingester_drains_maximal_reports_within_its_pod_limit() {
    let _turn = heavy_turn().await;
    let limit = pod_limit("ingester");
    let nats = Nats::start().await.expect("nats-server starts");
    // The gateway creates the streams, as in production; the reports go straight to JetStream.
    let gateway = Launch::gateway(&nats.url())
        .start()
        .await
        .expect("the gateway is ready");
    let queue = report::queue::Topology::default();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);

    let body = maximal_report("maximal", MAXIMAL_SIZE);
    let valid = report::decode(&body).expect("a valid report");
    let id = ReportId::random();
    let envelope = report::Envelope::new(id, jiff::Timestamp::now(), valid).encode();
    let template = String::from_utf8(envelope).expect("JSON is UTF-8");
    let template_id = id.to_string();
    println!(
        "{QUEUED} maximal reports queued: {:.1} MiB decoded, {:.1} MiB each as queued",
        body.len() as f64 / MIB as f64,
        template.len() as f64 / MIB as f64
    );
    drop(body);
    for _ in 0..QUEUED {
        // The same report under another ID: JetStream and SQLite each keep it once per ID.
        let id = ReportId::random().to_string();
        let payload = template.replacen(&template_id, &id, 1);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        js.publish_with_headers(queue.reports.subject.clone(), headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored in the stream");
    }
    drop(gateway);

    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = dir.path().join("spartakus.sqlite");
    let mut ingester = Launch::ingester(&nats.url(), &format!("sqlite:{}", db.display()))
        .args(["--retention", "none"])
        .memory_limit(limit)
        .start()
        .await
        .expect("the ingester is ready");
    let stored = || {
        crate::pipeline::read_only(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM reports", [], |r| r.get::<_, i64>(0)))
            .map_or(0, |n| n as usize)
    };
    let drained = testenv::try_eventually(DRAIN, || {
        let running = ingester.is_running();
        let n = stored();
        async move { n >= QUEUED || !running }
    })
    .await;
    let (usage, hwm) = measured(&ingester);
    report_figures("ingester draining", &usage, hwm);
    assert!(
        ingester.is_running(),
        "the ingester died:\n{}",
        ingester.log_tail(20)
    );
    assert_eq!(usage.oom_kills, 0, "{usage:?}");
    assert!(
        drained.is_ok(),
        "{} of {QUEUED} stored in {DRAIN:?}:\n{}",
        stored(),
        ingester.log_tail(20)
    );
    assert_eq!(stored(), QUEUED);
}
