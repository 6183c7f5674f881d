//! What one report costs a cluster, measured: the volunteer against naive collectors, on a
//! synthetic cluster of 5,000 nodes and 150,000 pods by default.
//!
//! Fills a real kube-apiserver + etcd (testenv; etcd's quota raised to 8 GiB) with:
//! - 5,000 nodes whose status looks like a kubelet's: nodeInfo, capacity, allocatable,
//!   12 conditions (kubelet and node-problem-detector), addresses, daemon endpoints and
//!   40 images (the kubelet reports up to 50); node size is what makes a naive list expensive;
//! - 1,500 namespaces;
//! - 15,000 Deployments with their status, each with a ReplicaSet and a headless Service (a
//!   /24 service range holds only ~250 ClusterIPs);
//! - 150,000 pods owned by those ReplicaSets and bound to nodes: a container with env,
//!   probes, resources, security context and mounts (plus a mesh sidecar in one namespace in
//!   ten), the projected service-account volume that admission would add, and a Running
//!   status with conditions and container statuses, set through the `status` subresource as
//!   a kubelet does (a create resets it). About 9.5 KB of JSON each, managedFields included.
//!
//! Every write is raw JSON with `fieldValidation=Strict`, so a field the API server does not
//! know fails the fill instead of being dropped silently; at most `CONCURRENCY` requests are
//! in flight. Then it runs, each as a child process under `/usr/bin/time -v`, through a
//! byte-counting TCP proxy in front of the API server:
//! - the volunteer binary, once, with `--dry-run` (what an operator previews);
//! - a naive collector (this binary again, with `SPARTAKUS_BENCH_NAIVE`) making the requests
//!   `kubectl get nodes,pods,services,deployments,namespaces -A -o json` makes: full objects
//!   as JSON, pages of 500, gzip accepted; each page decoded in full, counted and dropped;
//! - the simplest naive collector (the same binary): every node and every pod as full
//!   objects in one request each, decoded into `k8s_openapi` lists, without and then with
//!   gzip (the API server compresses responses over 128 KiB only when asked). On by default
//!   up to 30,000 pods; above that one response holds every pod, gigabytes to build and
//!   decode, so `SPARTAKUS_BENCH_UNPAGED=1` is needed (`0` skips it at any size);
//! - the volunteer again, so that the order of the runs shows if it matters;
//! - with `SPARTAKUS_BENCH_KUBECTL=1` (or a path), kubectl itself, output to a file. Off by
//!   default: kubectl keeps every object until it prints (1.7 GiB peak RSS at 6,000 pods), so
//!   it cannot list 150,000 pods on a 24 GiB machine. Its bytes match the paged collector's.
//!
//! For each it prints requests, bytes received and sent, wall time, peak RSS and CPU of the
//! client, and the CPU seconds kube-apiserver and etcd consumed meanwhile (utime + stime from
//! `/proc/PID/stat`, before and after), then the volunteer's share of each naive run.
//! Every output is checked against the fill's counts. Targets: volunteer peak RSS ≤ 64 MiB,
//! bytes received ≤ 15 % of naive. It also prints what one node, one pod and one pod's Table
//! row cost on the wire, to show where the bytes go.
//!
//! Sizes and concurrency from the environment (defaults in brackets):
//! `SPARTAKUS_BENCH_SCALE` (1) multiplies the default sizes: `0.2` is 1,000 nodes and 30,000
//! pods, `0.01` (50 nodes, 1,500 pods, 15 namespaces, 150 deployments: a minute or two) is
//! the smallest run worth making, to see that the bench works. Each size can also be set
//! alone: `SPARTAKUS_BENCH_NODES` (5000), `SPARTAKUS_BENCH_PODS` (150000),
//! `SPARTAKUS_BENCH_NAMESPACES` (1500), `SPARTAKUS_BENCH_DEPLOYMENTS` (15000);
//! `SPARTAKUS_BENCH_CONCURRENCY` (16). With `SPARTAKUS_BENCH_HOLD` set it stops after the
//! fill, prints the server's address and kubeconfig, and keeps the cluster up until Ctrl-C (for
//! trying other requests by hand). Not a CI test: at full size the fill takes about half
//! an hour on 2 cores, and the servers need some 12 GiB of memory (see [`GO_MEMORY_LIMIT`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// etcd's default quota (2 GiB) is too small for 150,000 pods written twice; 8 GiB is the
/// largest etcd recommends.
const ETCD_FLAGS: &[&str] = &["--quota-backend-bytes=8589934592"];
/// Room above the fill's concurrency (testenv disables priority and fairness, so these bound
/// what the server accepts at once).
const APISERVER_FLAGS: &[&str] = &[
    "--max-requests-inflight=800",
    "--max-mutating-requests-inflight=400",
];
/// A soft memory limit for kube-apiserver and etcd (GOMEMLIMIT, unless already set). The API
/// server keeps every pod decoded twice (watch cache and an internal informer), about 45 KiB
/// of live heap per pod here, some 7 GiB at 150,000 pods; Go's default GC target would let
/// it grow to twice that. Near the limit Go collects more often instead.
const GO_MEMORY_LIMIT: &str = "10GiB";
/// Images per node: the kubelet reports the 50 largest; a busy node has a few dozen.
const NODE_IMAGES: usize = 40;
/// Attempts per write: a busy 2-core machine sometimes answers 5xx or times out.
const ATTEMPTS: u32 = 5;
/// The measurement window for the servers' idle CPU, before the measured runs.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Up to this many pods the unpaged naive lists run unless `SPARTAKUS_BENCH_UNPAGED=0`.
const UNPAGED_PODS: usize = 30_000;
/// Fixed times in statuses: a kubelet reports when things happened, not "now".
const T0: &str = "2026-11-20T08:00:00Z";
const T1: &str = "2026-11-20T08:00:04Z";
const T2: &str = "2026-11-20T08:00:19Z";

fn main() -> Result<(), BoxError> {
    // The Go servers inherit this process's environment, and `std::env::set_var` is unsafe
    // (forbidden here): so the bench runs itself again with a soft memory limit for them.
    if std::env::var_os("GOMEMLIMIT").is_none() {
        let status = Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env("GOMEMLIMIT", GO_MEMORY_LIMIT)
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(kubeconfig) = std::env::var("SPARTAKUS_BENCH_NAIVE") {
        let lists = std::env::var("SPARTAKUS_BENCH_NAIVE_LISTS").unwrap_or_default();
        let naive = Naive::from_arg(&lists)?;
        return rt.block_on(naive.run(Path::new(&kubeconfig)));
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    rt.block_on(bench())
}

/// What the paged naive collector lists, by kind: what `kubectl get
/// nodes,pods,services,deployments,namespaces -A -o json` lists.
const NAIVE_LISTS: [(&str, &str); 5] = [
    ("Node", "/api/v1/nodes"),
    ("Pod", "/api/v1/pods"),
    ("Service", "/api/v1/services"),
    ("Deployment", "/apis/apps/v1/deployments"),
    ("Namespace", "/api/v1/namespaces"),
];

/// The naive collectors: this binary re-executed with `SPARTAKUS_BENCH_NAIVE` (the
/// kubeconfig) and `SPARTAKUS_BENCH_NAIVE_LISTS` (which one). Each prints its request count
/// and the count per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naive {
    /// kubectl's requests for `get … -A -o json`: full objects in JSON, pages of 500, gzip
    /// accepted, each page decoded in full as kubectl decodes it, counted, then dropped
    /// (kubectl instead keeps every object until it prints).
    Paged,
    /// Every node and every pod as full objects, one request each, decoded as a collector
    /// built on `k8s_openapi` would; gzip asked for or not.
    Unpaged { gzip: bool },
}

impl Naive {
    fn arg(self) -> &'static str {
        match self {
            Naive::Paged => "paged",
            Naive::Unpaged { gzip: false } => "unpaged",
            Naive::Unpaged { gzip: true } => "unpaged-gzip",
        }
    }

    /// Its name in the ratio rows and the targets.
    fn short(self) -> &'static str {
        match self {
            Naive::Paged => "paged",
            Naive::Unpaged { gzip: false } => "unpaged",
            Naive::Unpaged { gzip: true } => "unpaged + gzip",
        }
    }

    fn from_arg(arg: &str) -> Result<Self, BoxError> {
        [
            Naive::Paged,
            Naive::Unpaged { gzip: false },
            Naive::Unpaged { gzip: true },
        ]
        .into_iter()
        .find(|n| n.arg() == arg)
        .ok_or_else(|| {
            format!("SPARTAKUS_BENCH_NAIVE_LISTS={arg}: paged, unpaged or unpaged-gzip").into()
        })
    }

    /// What it lists, by kind: nodes and pods (the first two of [`NAIVE_LISTS`]) unpaged.
    fn lists(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Naive::Paged => &NAIVE_LISTS,
            Naive::Unpaged { .. } => &NAIVE_LISTS[..2],
        }
    }

    async fn run(self, kubeconfig: &Path) -> Result<(), BoxError> {
        let client = Writer::new(kubeconfig)?;
        let counts = match self {
            Naive::Paged => paged_lists(&client).await?,
            Naive::Unpaged { gzip } => unpaged_lists(&client, gzip).await?,
        };
        let requests = client.requests.load(Ordering::Relaxed);
        println!("{}", json!({"requests": requests, "counts": counts}));
        Ok(())
    }
}

/// [`Naive::Paged`]: the objects of each kind in [`NAIVE_LISTS`].
async fn paged_lists(client: &Writer) -> Result<serde_json::Map<String, Value>, BoxError> {
    let mut counts = serde_json::Map::new();
    for &(kind, path) in Naive::Paged.lists() {
        let url = format!("{}{path}", client.server);
        let (mut items, mut token) = (0, String::new());
        loop {
            let mut query = vec![("limit", "500")];
            if !token.is_empty() {
                query.push(("continue", &token));
            }
            let page = client
                .send(|| client.http.get(&url).query(&query))
                .await
                .map_err(|(f, _)| format!("GET {path}: {} {}", fmt_status(f.status), f.message))?;
            let page: Value = serde_json::from_str(&page)?;
            items += page["items"].as_array().map_or(0, Vec::len);
            token = page["metadata"]["continue"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if token.is_empty() {
                break;
            }
        }
        counts.insert(kind.to_owned(), items.into());
    }
    Ok(counts)
}

/// [`Naive::Unpaged`]: nodes and pods in one request each, decoded into typed lists. No
/// retries: one failed request fails the run.
async fn unpaged_lists(
    client: &Writer,
    gzip: bool,
) -> Result<serde_json::Map<String, Value>, BoxError> {
    // `raw` sends no Accept-Encoding, so the API server answers uncompressed.
    let http = if gzip { &client.http } else { &client.raw };
    let get = |path: &str| {
        client.requests.fetch_add(1, Ordering::Relaxed);
        http.get(format!("{}{path}", client.server)).send()
    };
    let [(_, nodes), (_, pods)] = [NAIVE_LISTS[0], NAIVE_LISTS[1]];
    let nodes: k8s_openapi::List<Node> = get(nodes).await?.error_for_status()?.json().await?;
    let pods: k8s_openapi::List<Pod> = get(pods).await?.error_for_status()?.json().await?;
    let mut counts = serde_json::Map::new();
    counts.insert("Node".into(), nodes.items.len().into());
    counts.insert("Pod".into(), pods.items.len().into());
    Ok(counts)
}

/// The synthetic cluster's sizes.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    nodes: usize,
    pods: usize,
    namespaces: usize,
    deployments: usize,
    concurrency: usize,
}

impl Sizes {
    fn from_env() -> Result<Self, BoxError> {
        let scale = match std::env::var("SPARTAKUS_BENCH_SCALE") {
            Err(_) => 1.0,
            Ok(v) => match v.trim().parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => s,
                _ => return Err(format!("SPARTAKUS_BENCH_SCALE={v}: must be a number > 0").into()),
            },
        };
        let get = |name: &str, default: usize| -> Result<usize, BoxError> {
            match std::env::var(name) {
                Err(_) => Ok(((default as f64 * scale).round() as usize).max(1)),
                Ok(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(format!("{name}={v}: must be a whole number ≥ 1").into()),
                },
            }
        };
        Ok(Self {
            nodes: get("SPARTAKUS_BENCH_NODES", 5_000)?,
            pods: get("SPARTAKUS_BENCH_PODS", 150_000)?,
            namespaces: get("SPARTAKUS_BENCH_NAMESPACES", 1_500)?,
            deployments: get("SPARTAKUS_BENCH_DEPLOYMENTS", 15_000)?,
            // Not scaled: it is how hard the fill pushes the server, not a size.
            concurrency: match std::env::var("SPARTAKUS_BENCH_CONCURRENCY") {
                Err(_) => 16,
                Ok(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(format!(
                            "SPARTAKUS_BENCH_CONCURRENCY={v}: must be a whole number ≥ 1"
                        )
                        .into());
                    }
                },
            },
        })
    }

    /// Pod `i` belongs to deployment `i % deployments`, so replicas differ by at most one.
    fn replicas(&self, d: usize) -> usize {
        if d >= self.pods {
            0
        } else {
            (self.pods - d).div_ceil(self.deployments)
        }
    }
}

/// One measured run, as a row of the table.
struct Row {
    name: &'static str,
    requests: u64,
    m: Measured,
    /// A naive collector, whose bytes the volunteer's are compared with.
    naive: Option<Naive>,
}

async fn bench() -> Result<(), BoxError> {
    let sizes = Sizes::from_env()?;
    let kubectl = match std::env::var("SPARTAKUS_BENCH_KUBECTL").as_deref() {
        Err(_) | Ok("" | "0") => None,
        Ok("1") => Some("kubectl".to_owned()),
        Ok(path) => Some(path.to_owned()),
    };
    let unpaged = match std::env::var("SPARTAKUS_BENCH_UNPAGED").as_deref() {
        Err(_) | Ok("") => sizes.pods <= UNPAGED_PODS,
        Ok(v) => v != "0",
    };
    println!(
        "synthetic cluster: {} nodes, {} pods, {} namespaces, {} deployments (+ as many \
         replicasets and headless services); {} writes in flight; GOMEMLIMIT={}",
        sizes.nodes,
        sizes.pods,
        sizes.namespaces,
        sizes.deployments,
        sizes.concurrency,
        std::env::var("GOMEMLIMIT").unwrap_or_default()
    );
    println!("machine: {}", machine());

    let kube = testenv::KubeApi::start_with_flags(ETCD_FLAGS, APISERVER_FLAGS).await?;
    let servers = Servers::find(kube.server_url())?;
    let writer = Writer::new(kube.kubeconfig_path())?;

    let cpu_before = servers.cpu()?;
    let started = Instant::now();
    fill(&writer, &servers, &sizes).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let cpu_fill = servers.cpu()? - cpu_before;
    println!(
        "filled in {fill_secs:.0} s ({:.0} s of kube-apiserver CPU, {:.0} s of etcd CPU); \
         machine: {}",
        cpu_fill.apiserver,
        cpu_fill.etcd,
        machine()
    );
    println!("{}", apiserver_heap(&writer).await?);
    object_sizes(&writer, &servers).await?;
    wire_costs(&writer).await?;
    if std::env::var_os("SPARTAKUS_BENCH_HOLD").is_some() {
        println!(
            "holding the filled cluster until Ctrl-C: server {}, kubeconfig {}",
            kube.server_url(),
            kube.kubeconfig_path().display()
        );
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }

    let upstream = kube.server_url().trim_start_matches("https://").to_owned();
    let counters = Arc::new(Counters::default());
    let proxy = counting_proxy(upstream, counters.clone()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = proxied_kubeconfig(kube.kubeconfig_path(), &proxy, dir.path())?;

    let idle_before = servers.cpu()?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle = servers.cpu()? - idle_before;
    println!(
        "idle over {} s: kube-apiserver {:.2} CPU s, etcd {:.2} CPU s (background, included \
         in the figures below)",
        IDLE_WINDOW.as_secs(),
        idle.apiserver,
        idle.etcd
    );

    // Each run with the count of lists kube-apiserver served meanwhile.
    let run = async |cmd: &mut Command| -> Result<Measured, BoxError> {
        let lists = StorageLists::read(&writer).await?;
        let mut m = measure(cmd, &counters, &servers)?;
        m.lists = StorageLists::read(&writer).await? - lists;
        Ok(m)
    };
    let volunteer_cmd = || {
        let mut cmd = timed(env!("CARGO_BIN_EXE_volunteer"));
        cmd.args([
            "--dry-run",
            "--gateway",
            "https://collector.example.org",
            "--log-format",
            "json",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig);
        cmd
    };
    let naive_cmd = |naive: Naive| -> Result<Command, BoxError> {
        let mut cmd = timed(std::env::current_exe()?);
        cmd.env("SPARTAKUS_BENCH_NAIVE", &kubeconfig)
            .env("SPARTAKUS_BENCH_NAIVE_LISTS", naive.arg());
        Ok(cmd)
    };

    println!("machine before the volunteer: {}", machine());
    let m = run(&mut volunteer_cmd()).await?;
    let mut rows = vec![Row {
        name: "volunteer --dry-run",
        requests: check_volunteer(&m, &sizes)?,
        m,
        naive: None,
    }];

    let mut naives = vec![("naive: paged full lists", Naive::Paged)];
    if unpaged {
        naives.push(("naive: unpaged lists", Naive::Unpaged { gzip: false }));
        naives.push(("naive: unpaged + gzip", Naive::Unpaged { gzip: true }));
    }
    for (name, naive) in naives {
        println!("machine before {name}: {}", machine());
        let m = run(&mut naive_cmd(naive)?).await?;
        rows.push(Row {
            name,
            requests: check_naive(&m, naive, &sizes)?,
            m,
            naive: Some(naive),
        });
    }
    if !unpaged {
        println!(
            "unpaged naive lists skipped (SPARTAKUS_BENCH_UNPAGED=1 runs them): above {UNPAGED_PODS} \
             pods one response holds every pod"
        );
    }

    // Once more after the naive runs, so that the order of the runs shows if it matters.
    println!("machine before the volunteer again: {}", machine());
    let m = run(&mut volunteer_cmd()).await?;
    rows.push(Row {
        name: "volunteer, again",
        requests: check_volunteer(&m, &sizes)?,
        m,
        naive: None,
    });

    match kubectl {
        Some(kubectl) => {
            println!("machine before kubectl: {}", machine());
            let listing = dir.path().join("kubectl.json");
            let m = run(timed(&kubectl)
                .args([
                    "get",
                    "nodes,pods,services,deployments,namespaces",
                    "--all-namespaces",
                    "--output=json",
                    "-v=6",
                ])
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--cache-dir")
                .arg(dir.path().join("kubectl-cache"))
                .stdout(File::create(&listing)?))
            .await?;
            let requests = check_kubectl(&m, &listing, &sizes)?;
            println!(
                "kubectl output: {} bytes",
                std::fs::metadata(&listing)?.len()
            );
            rows.push(Row {
                name: "kubectl get -A -o json",
                requests,
                m,
                naive: None,
            });
        }
        None => println!(
            "kubectl skipped (SPARTAKUS_BENCH_KUBECTL=1 runs it): it keeps every object until \
             it prints, about 280 KiB per pod, so it cannot list 150,000 pods in 24 GiB"
        ),
    }
    println!("machine after: {}", machine());

    println!();
    print_table(&rows, &sizes, fill_secs);
    for row in &rows {
        println!(
            "{}: kube-apiserver served {:.0} lists from its watch cache, {:.0} from etcd",
            row.name, row.m.lists.cache, row.m.lists.etcd
        );
    }
    let volunteer = &rows[0].m;
    println!(
        "report body: {} bytes",
        volunteer.stdout.trim_ascii_end().len()
    );
    println!("{}", apiserver_heap(&writer).await?);
    let (api_rss, api_hwm) = servers.apiserver_memory_kib();
    println!(
        "kube-apiserver memory: {:.0} MiB resident now, {:.0} MiB at its peak",
        api_rss / 1024.0,
        api_hwm / 1024.0
    );
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    let bytes: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let ok = (volunteer.received as f64) <= 0.15 * r.m.received as f64;
            Some(format!("{} {}", r.naive?.short(), met(ok)))
        })
        .collect();
    println!(
        "targets: volunteer peak RSS ≤ 64 MiB: {}; volunteer bytes ≤ 15% of naive: {}",
        met(volunteer.rss_kib as f64 / 1024.0 <= 64.0),
        bytes.join(", ")
    );
    Ok(())
}

fn print_table(rows: &[Row], sizes: &Sizes, fill_secs: f64) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{} nodes, {} pods, {} namespaces, {} deployments, {} services; filled in {:.0} s",
        sizes.nodes,
        sizes.pods,
        sizes.namespaces + 4,
        sizes.deployments,
        sizes.deployments + 1,
        fill_secs
    );
    println!(
        "{:<26} {:>8} {:>15} {:>11} {:>8} {:>12} {:>10} {:>13} {:>9}",
        "",
        "requests",
        "bytes received",
        "bytes sent",
        "wall",
        "peak RSS",
        "client CPU",
        "apiserver CPU",
        "etcd CPU"
    );
    for Row {
        name, requests, m, ..
    } in rows
    {
        println!(
            "{:<26} {:>8} {:>15} {:>11} {:>7.1}s {:>8.1} MiB {:>9.1}s {:>12.1}s {:>8.1}s",
            name,
            requests,
            m.received,
            m.sent,
            m.wall,
            mib(m.rss_kib),
            m.client_cpu,
            m.servers.apiserver,
            m.servers.etcd
        );
    }
    // The first volunteer run as a share of each naive one.
    let Some(Row {
        requests: vr, m: v, ..
    }) = rows.first()
    else {
        return;
    };
    for (row, naive) in rows.iter().filter_map(|r| Some((r, r.naive?))) {
        let (nr, n) = (row.requests, &row.m);
        let pct = |a: f64, b: f64| 100.0 * a / b;
        println!(
            "{:<26} {:>7.1}% {:>14.2}% {:>10.1}% {:>7.1}% {:>11.1}% {:>9.1}% {:>12.1}% {:>8.1}%",
            format!("volunteer / {}", naive.short()),
            pct(*vr as f64, nr as f64),
            pct(v.received as f64, n.received as f64),
            pct(v.sent as f64, n.sent as f64),
            pct(v.wall, n.wall),
            pct(v.rss_kib as f64, n.rss_kib as f64),
            pct(v.client_cpu, n.client_cpu),
            pct(v.servers.apiserver, n.servers.apiserver),
            pct(v.servers.etcd, n.servers.etcd)
        );
    }
}

/// The volunteer's report must count what the fill created; returns its request count.
fn check_volunteer(m: &Measured, sizes: &Sizes) -> Result<u64, BoxError> {
    let report = report::decode(m.stdout.trim_ascii_end())
        .map_err(|e| format!("volunteer report invalid: {e}"))?
        .into_report();
    let total = |kind: report::Kind| {
        report
            .workloads
            .iter()
            .flatten()
            .find(|w| w.kind == kind)
            .map(|w| w.total as usize)
    };
    let counted = [
        ("nodes", report.nodes.as_ref().map(Vec::len), sizes.nodes),
        (
            "namespaces",
            report.namespaces.map(|n| n as usize),
            sizes.namespaces + 4,
        ),
        ("pods", total(report::Kind::Pod), sizes.pods),
        (
            "services",
            total(report::Kind::Service),
            sizes.deployments + 1,
        ),
        (
            "deployments",
            total(report::Kind::Deployment),
            sizes.deployments,
        ),
    ];
    for (what, got, want) in counted {
        if got != Some(want) {
            return Err(format!("volunteer counted {got:?} {what}, the fill made {want}").into());
        }
    }
    String::from_utf8_lossy(&m.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["message"] == "report collected" || v["fields"]["message"] == "report collected"
        })
        .find_map(|v| v["requests"].as_u64().or(v["fields"]["requests"].as_u64()))
        .ok_or_else(|| "the volunteer logged no request count".into())
}

/// kubectl's list must hold every object the fill made; returns its request count (kubectl
/// logs one line per response at `-v=6`).
fn check_kubectl(m: &Measured, listing: &Path, sizes: &Sizes) -> Result<u64, BoxError> {
    #[derive(serde::Deserialize)]
    struct List {
        items: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        kind: String,
    }
    let list: List = serde_json::from_reader(BufReader::new(File::open(listing)?))?;
    let mut kinds = BTreeMap::<String, usize>::new();
    for item in list.items {
        *kinds.entry(item.kind).or_default() += 1;
    }
    for (kind, want) in expected_counts(sizes) {
        let got = kinds.get(kind).copied().unwrap_or(0);
        if got != want {
            return Err(
                format!("kubectl listed {got} of kind {kind}, the fill made {want}").into(),
            );
        }
    }
    Ok(String::from_utf8_lossy(&m.stderr)
        .lines()
        .filter(|l| l.contains("round_trippers") && l.contains("milliseconds"))
        .count() as u64)
}

/// A naive collector must have listed every object of its kinds the fill made; returns its
/// request count.
fn check_naive(m: &Measured, naive: Naive, sizes: &Sizes) -> Result<u64, BoxError> {
    let out: Value = serde_json::from_slice(m.stdout.trim_ascii_end())?;
    for (kind, want) in expected_counts(sizes) {
        if !naive.lists().iter().any(|(k, _)| *k == kind) {
            continue;
        }
        let got = out["counts"][kind].as_u64().unwrap_or(0) as usize;
        if got != want {
            return Err(format!(
                "the naive lists ({}) held {got} of kind {kind}, the fill made {want}",
                naive.arg()
            )
            .into());
        }
    }
    out["requests"]
        .as_u64()
        .ok_or_else(|| "the naive collector printed no request count".into())
}

/// How many objects of each kind the cluster holds after the fill (the API server adds 4
/// namespaces and the Service default/kubernetes).
fn expected_counts(sizes: &Sizes) -> [(&'static str, usize); 5] {
    [
        ("Node", sizes.nodes),
        ("Pod", sizes.pods),
        ("Namespace", sizes.namespaces + 4),
        ("Service", sizes.deployments + 1),
        ("Deployment", sizes.deployments),
    ]
}

/// Load average, available memory and cores, to judge how busy the machine was.
fn machine() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let available = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "load average {}, {:.1} GiB available, {cores} cores",
        load.join(" "),
        available / 1024.0 / 1024.0
    )
}

// ---- The servers' processes ----

/// kube-apiserver's and etcd's PIDs, found by their command lines (testenv runs each under a
/// watchdog shell, whose own command line also holds the server's flags: argv[0] tells them
/// apart).
struct Servers {
    apiserver: u32,
    etcd: u32,
    etcd_url: String,
    ticks: f64,
}

#[derive(Debug, Clone, Copy)]
struct ServerCpu {
    apiserver: f64,
    etcd: f64,
}

impl std::ops::Sub for ServerCpu {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self {
            apiserver: self.apiserver - rhs.apiserver,
            etcd: self.etcd - rhs.etcd,
        }
    }
}

impl Servers {
    fn find(server_url: &str) -> Result<Self, BoxError> {
        let port = server_url.rsplit(':').next().ok_or("server URL")?;
        let (apiserver, args) = find_process("kube-apiserver", &format!("--secure-port={port}"))?;
        let etcd_url = args
            .iter()
            .find_map(|a| a.strip_prefix("--etcd-servers="))
            .ok_or("kube-apiserver has no --etcd-servers")?
            .to_owned();
        let (etcd, _) = find_process("etcd", &format!("--listen-client-urls={etcd_url}"))?;
        let ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        Ok(Self {
            apiserver,
            etcd,
            etcd_url,
            ticks,
        })
    }

    fn cpu(&self) -> Result<ServerCpu, BoxError> {
        Ok(ServerCpu {
            apiserver: cpu_seconds(self.apiserver, self.ticks)?,
            etcd: cpu_seconds(self.etcd, self.ticks)?,
        })
    }

    /// The servers' resident memory, for the log.
    fn memory(&self) -> String {
        let kib = |pid: u32, field: &str| memory_kib(pid, field) / 1024.0;
        format!(
            "kube-apiserver {:.0} MiB resident (peak {:.0}), etcd {:.0} MiB",
            kib(self.apiserver, "VmRSS:"),
            kib(self.apiserver, "VmHWM:"),
            kib(self.etcd, "VmRSS:")
        )
    }

    /// kube-apiserver's VmRSS and VmHWM, in KiB.
    fn apiserver_memory_kib(&self) -> (f64, f64) {
        (
            memory_kib(self.apiserver, "VmRSS:"),
            memory_kib(self.apiserver, "VmHWM:"),
        )
    }
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of `pid`, in KiB; 0 if unreadable.
fn memory_kib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// The process whose argv[0] is named `binary` and which has the argument `arg`.
fn find_process(binary: &str, arg: &str) -> Result<(u32, Vec<String>), BoxError> {
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // Processes come and go while we look: an unreadable one is not ours.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let named = args
            .first()
            .is_some_and(|a0| Path::new(a0).file_name().is_some_and(|f| f == binary));
        if named && args.iter().any(|a| a == arg) {
            return Ok((pid, args));
        }
    }
    Err(format!("no {binary} process with {arg}").into())
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces; fields 3… follow.
    let rest = stat.rsplit_once(") ").ok_or("unreadable /proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<f64, BoxError> {
        Ok(fields.get(n - 3).ok_or("short /proc/PID/stat")?.parse()?)
    };
    Ok((field(14)? + field(15)?) / ticks)
}

/// A few facts about the filled cluster: the mean size of a node and of a pod as a client
/// reads them (the first page of each, in JSON), and etcd's database size.
async fn object_sizes(writer: &Writer, servers: &Servers) -> Result<(), BoxError> {
    let mean = |list: &str| -> Result<(f64, f64), BoxError> {
        let list: Value = serde_json::from_str(list)?;
        let items = list["items"].as_array().ok_or("a list without items")?;
        let (mut all, mut managed) = (0, 0);
        for item in items {
            all += serde_json::to_vec(item)?.len();
            managed += serde_json::to_vec(&item["metadata"]["managedFields"])?.len();
        }
        let n = items.len().max(1) as f64;
        Ok((all as f64 / n, managed as f64 / n))
    };
    let (node, _) = mean(&writer.get("/api/v1/nodes?limit=100").await?)?;
    let (pod, managed) = mean(&writer.get("/api/v1/pods?limit=500").await?)?;
    let metrics = writer
        .http
        .get(format!("{}/metrics", servers.etcd_url))
        .send()
        .await?
        .text()
        .await?;
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!(
        "a node is {node:.0} bytes of JSON on average, a pod {pod:.0} (of which managedFields \
         {managed:.0}); etcd database {:.0} MiB ({:.0} MiB in use)",
        metric("etcd_mvcc_db_total_size_in_bytes") / 1048576.0,
        metric("etcd_mvcc_db_total_size_in_use_in_bytes") / 1048576.0
    );
    Ok(())
}

/// What one object costs on the wire, gzip-compressed as the API server sends it to a
/// client that accepts gzip (which both the volunteer and kubectl do): a node in full (the
/// volunteer reads nodes in full), a pod as metadata (how the volunteer reads workloads), and
/// a pod in full (what a naive list reads). Also what a metadata page would cost without
/// managedFields, which no list parameter can leave out. From one page of each.
async fn wire_costs(writer: &Writer) -> Result<(), BoxError> {
    const METADATA: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let page = |path: String, accept: &'static str| async move {
        let resp = writer
            .raw
            .get(format!("{}{path}", writer.server))
            .header("accept", accept)
            .header("accept-encoding", "gzip")
            .send()
            .await?
            .error_for_status()?;
        let gzipped = resp
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        let body = resp.bytes().await?.to_vec();
        let json = if gzipped {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)?;
            out
        } else {
            body.clone()
        };
        let list: Value = serde_json::from_slice(&json)?;
        // A list has items, a Table rows.
        let items = list["items"]
            .as_array()
            .or(list["rows"].as_array())
            .map_or(0, Vec::len)
            .max(1) as f64;
        Ok::<_, BoxError>((
            body.len() as f64 / items,
            json.len() as f64 / items,
            list,
            gzipped,
        ))
    };
    let gzip = |bytes: &[u8]| -> Result<usize, BoxError> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, bytes)?;
        Ok(enc.finish()?.len())
    };
    let (node, node_json, _, node_gz) =
        page("/api/v1/nodes?limit=100".into(), "application/json").await?;
    let (meta, meta_json, mut list, meta_gz) =
        page("/api/v1/pods?limit=500".into(), METADATA).await?;
    let (pod, pod_json, _, pod_gz) =
        page("/api/v1/pods?limit=500".into(), "application/json").await?;
    let (key, value) = volunteer::table::NO_OBJECTS;
    let (row, row_json, _, row_gz) = page(
        format!(
            "/api/v1/pods?limit={}&{key}={value}",
            volunteer::collect::TABLE_PAGE
        ),
        volunteer::table::ACCEPT,
    )
    .await?;
    let n = list["items"].as_array().map_or(0, Vec::len).max(1) as f64;
    for item in list["items"].as_array_mut().into_iter().flatten() {
        if let Some(m) = item["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    }
    let stripped = gzip(&serde_json::to_vec(&list)?)? as f64 / n;
    let z = |gz: bool| {
        if gz {
            "gzip"
        } else {
            "uncompressed: page under 128 KiB"
        }
    };
    println!(
        "on the wire per object: a node in full {node:.0} bytes ({}; {node_json:.0} as JSON), \
         a pod as metadata {meta:.0} ({}; {meta_json:.0} as JSON; {stripped:.0} gzipped without \
         managedFields), a pod in full {pod:.0} ({}; {pod_json:.0} as JSON), a pod as a Table \
         row without its object {row:.1} ({}; {row_json:.0} as JSON)",
        z(node_gz),
        z(meta_gz),
        z(pod_gz),
        z(row_gz)
    );
    Ok(())
}

/// How many lists kube-apiserver served from its watch cache and from etcd
/// (`apiserver_storage_list_total`, all resources).
#[derive(Debug, Clone, Copy, Default)]
struct StorageLists {
    cache: f64,
    etcd: f64,
}

impl StorageLists {
    async fn read(writer: &Writer) -> Result<Self, BoxError> {
        let metrics = writer.get("/metrics").await?;
        let mut lists = Self::default();
        for line in metrics.lines() {
            let Some(rest) = line.strip_prefix("apiserver_storage_list_total{") else {
                continue;
            };
            let value: f64 = rest
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            if rest.contains(r#"storage="watchcache""#) {
                lists.cache += value;
            } else if rest.contains(r#"storage="etcd""#) {
                lists.etcd += value;
            }
        }
        Ok(lists)
    }
}

impl std::ops::Sub for StorageLists {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self {
            cache: self.cache - rhs.cache,
            etcd: self.etcd - rhs.etcd,
        }
    }
}

/// kube-apiserver's Go heap, from its `/metrics`.
async fn apiserver_heap(writer: &Writer) -> Result<String, BoxError> {
    let metrics = writer.get("/metrics").await?;
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mib = 1048576.0;
    Ok(format!(
        "kube-apiserver heap: {:.0} MiB allocated, {:.0} MiB in use, next GC at {:.0} MiB",
        metric("go_memstats_heap_alloc_bytes") / mib,
        metric("go_memstats_heap_inuse_bytes") / mib,
        metric("go_memstats_next_gc_bytes") / mib,
    ))
}

// ---- Measuring a client ----

struct Measured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    received: u64,
    sent: u64,
    wall: f64,
    rss_kib: u64,
    client_cpu: f64,
    servers: ServerCpu,
    lists: StorageLists,
}

/// `/usr/bin/time -v program`: add the program's arguments and stdout, then [`measure`].
fn timed(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v").arg(program);
    cmd
}

/// Runs `cmd` (from [`timed`]), counting the bytes the proxy carried meanwhile and the
/// servers' CPU. The program's stdout is kept unless the caller redirected it.
fn measure(
    cmd: &mut Command,
    counters: &Counters,
    servers: &Servers,
) -> Result<Measured, BoxError> {
    let (received, sent) = counters.read();
    let cpu = servers.cpu()?;
    let started = Instant::now();
    let out = cmd.stderr(Stdio::piped()).output()?;
    let wall = started.elapsed().as_secs_f64();
    let servers_cpu = servers.cpu()? - cpu;
    let (received_after, sent_after) = counters.read();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{cmd:?} failed ({}):\n{}", out.status, tail.join("\n")).into());
    }
    let time_field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(Measured {
        received: received_after - received,
        sent: sent_after - sent,
        wall,
        rss_kib: time_field("Maximum resident set size (kbytes):") as u64,
        client_cpu: time_field("User time (seconds):") + time_field("System time (seconds):"),
        servers: servers_cpu,
        lists: StorageLists::default(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

// ---- The byte-counting proxy ----

#[derive(Debug, Default)]
struct Counters {
    to_client: AtomicU64,
    to_server: AtomicU64,
}

impl Counters {
    fn read(&self) -> (u64, u64) {
        (
            self.to_client.load(Ordering::SeqCst),
            self.to_server.load(Ordering::SeqCst),
        )
    }
}

/// A TCP proxy to `upstream` counting bytes each way as they pass (TLS passes through: the
/// serving certificate is for 127.0.0.1, which the proxy also listens on). Bytes are counted
/// before they are forwarded, so when a client exits, everything it read is counted.
async fn counting_proxy(upstream: String, counters: Arc<Counters>) -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                let Ok(up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (down_read, down_write) = down.into_split();
                let (up_read, up_write) = up.into_split();
                let _ = tokio::join!(
                    pump(up_read, down_write, &counters.to_client),
                    pump(down_read, up_write, &counters.to_server),
                );
            });
        }
    });
    Ok(addr)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        counter.fetch_add(n as u64, Ordering::SeqCst);
        to.write_all(&buf[..n]).await?;
    }
}

/// The admin kubeconfig (JSON) with the server replaced by the proxy.
fn proxied_kubeconfig(admin: &Path, proxy: &str, dir: &Path) -> Result<PathBuf, BoxError> {
    let mut config: Value = serde_json::from_slice(&std::fs::read(admin)?)?;
    config["clusters"][0]["cluster"]["server"] = format!("https://{proxy}").into();
    let path = dir.join("proxied.kubeconfig");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

// ---- Writing to the API server ----

/// Raw JSON requests with the admin certificate, counted, retried on 429, 5xx and transport
/// errors (a timed-out create that did succeed is then answered 409 and read back).
#[derive(Clone)]
struct Writer {
    http: reqwest::Client,
    /// Hands bodies over as sent, still compressed, for the wire costs.
    raw: reqwest::Client,
    server: String,
    requests: Arc<AtomicU64>,
}

/// Why a request failed, and whether another attempt may succeed.
#[derive(Debug)]
struct Failure {
    status: Option<u16>,
    message: String,
}

impl Failure {
    fn retryable(&self) -> bool {
        self.status.is_none_or(|s| s == 429 || s >= 500)
    }
}

impl Writer {
    fn new(kubeconfig: &Path) -> Result<Self, BoxError> {
        let config: Value = serde_json::from_slice(&std::fs::read(kubeconfig)?)?;
        let read = |v: &Value| -> Result<Vec<u8>, BoxError> {
            Ok(std::fs::read(v.as_str().ok_or("kubeconfig path")?)?)
        };
        let cluster = &config["clusters"][0]["cluster"];
        let user = &config["users"][0]["user"];
        let mut identity = read(&user["client-certificate"])?;
        identity.extend(read(&user["client-key"])?);
        let ca = reqwest::Certificate::from_pem(&read(&cluster["certificate-authority"])?)?;
        let identity = reqwest::Identity::from_pem(&identity)?;
        let builder = || {
            reqwest::Client::builder()
                .add_root_certificate(ca.clone())
                .identity(identity.clone())
                .timeout(Duration::from_secs(60))
        };
        Ok(Self {
            http: builder().build()?,
            raw: builder().no_gzip().build()?,
            server: cluster["server"].as_str().ok_or("server")?.to_owned(),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sends the request `build` makes, retrying; the body of the first 2xx answer. The flag
    /// says whether an earlier attempt was made.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<String, (Failure, bool)> {
        let mut attempt = 1;
        loop {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let failure = match build().send().await {
                Ok(resp) if resp.status().is_success() => match resp.text().await {
                    Ok(text) => return Ok(text),
                    Err(e) => Failure {
                        status: None,
                        message: e.to_string(),
                    },
                },
                Ok(resp) => Failure {
                    status: Some(resp.status().as_u16()),
                    message: resp.text().await.unwrap_or_default(),
                },
                Err(e) => Failure {
                    status: None,
                    message: e.to_string(),
                },
            };
            if attempt >= ATTEMPTS || !failure.retryable() {
                return Err((failure, attempt > 1));
            }
            // A pause before trying again, growing with each attempt: backoff, not a wait
            // for a condition.
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            attempt += 1;
        }
    }

    async fn get(&self, path: &str) -> Result<String, BoxError> {
        let url = format!("{}{path}", self.server);
        self.send(|| self.http.get(&url))
            .await
            .map_err(|(f, _)| format!("GET {path}: {} {}", fmt_status(f.status), f.message).into())
    }

    /// Creates `body` (named `name`) in `collection` as `manager`; the created object's JSON.
    async fn create(
        &self,
        collection: &str,
        name: &str,
        manager: &str,
        body: &Value,
    ) -> Result<String, BoxError> {
        let url = format!(
            "{}{collection}?fieldManager={manager}&fieldValidation=Strict",
            self.server
        );
        let body = serde_json::to_vec(body)?;
        let sent = self
            .send(|| {
                self.http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await;
        match sent {
            Ok(created) => Ok(created),
            // An earlier attempt timed out after the object was stored.
            Err((f, true)) if f.status == Some(409) => {
                self.get(&format!("{collection}/{name}")).await
            }
            Err((f, _)) => Err(format!(
                "POST {collection} ({name}): {} {}",
                fmt_status(f.status),
                f.message
            )
            .into()),
        }
    }

    /// Merge-patches `object`'s status subresource as `manager`.
    async fn patch_status(
        &self,
        object: &str,
        manager: &str,
        status: &Value,
    ) -> Result<(), BoxError> {
        let url = format!(
            "{}{object}/status?fieldManager={manager}&fieldValidation=Strict",
            self.server
        );
        let body = serde_json::to_vec(&json!({ "status": status }))?;
        self.send(|| {
            self.http
                .patch(&url)
                .header("content-type", "application/merge-patch+json")
                .body(body.clone())
        })
        .await
        .map(drop)
        .map_err(|(f, _)| {
            format!(
                "PATCH {object}/status: {} {}",
                fmt_status(f.status),
                f.message
            )
            .into()
        })
    }
}

fn fmt_status(status: Option<u16>) -> String {
    status.map_or_else(|| "transport error:".to_owned(), |s| s.to_string())
}

fn uid(created: &str) -> Result<String, BoxError> {
    let object: Value = serde_json::from_str(created)?;
    Ok(object["metadata"]["uid"]
        .as_str()
        .ok_or("created object has no uid")?
        .to_owned())
}

// ---- Filling the cluster ----

/// Runs `jobs` with at most `concurrency` in flight, printing progress every tenth; their
/// results, or the first error.
async fn run_phase<F, T>(
    name: &str,
    writer: &Writer,
    servers: &Servers,
    concurrency: usize,
    total: usize,
    jobs: impl Iterator<Item = F>,
) -> Result<Vec<T>, BoxError>
where
    F: Future<Output = Result<T, BoxError>>,
{
    let started = Instant::now();
    let requests_before = writer.requests.load(Ordering::Relaxed);
    let step = total.div_ceil(10).max(1);
    let mut out = Vec::with_capacity(total);
    let mut results = futures::stream::iter(jobs).buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        out.push(result?);
        if out.len() % step == 0 && out.len() < total {
            println!(
                "  {name}: {}/{total} after {:.0} s",
                out.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let requests = writer.requests.load(Ordering::Relaxed) - requests_before;
    println!(
        "{name}: {total} in {secs:.1} s ({requests} requests, {:.0} requests/s); {}",
        requests as f64 / secs.max(1e-9),
        servers.memory()
    );
    Ok(out)
}

async fn fill(writer: &Writer, servers: &Servers, sizes: &Sizes) -> Result<(), BoxError> {
    let c = sizes.concurrency;
    run_phase(
        "namespaces",
        writer,
        servers,
        c,
        sizes.namespaces,
        (0..sizes.namespaces).map(|n| async move {
            let name = namespace_name(n);
            writer
                .create("/api/v1/namespaces", &name, "helm", &namespace(n))
                .await
                .map(drop)
        }),
    )
    .await?;

    run_phase(
        "nodes",
        writer,
        servers,
        c,
        sizes.nodes,
        (0..sizes.nodes).map(|i| async move {
            let (node, status) = node(i);
            let name = node_name(i);
            writer
                .create("/api/v1/nodes", &name, "kubelet", &node)
                .await?;
            writer
                .patch_status(&format!("/api/v1/nodes/{name}"), "kubelet", &status)
                .await
        }),
    )
    .await?;

    // Each deployment's ReplicaSet UID, for its pods' ownerReferences.
    let mut replicasets = vec![String::new(); sizes.deployments];
    let created = run_phase(
        "deployments (each with a replicaset and a service)",
        writer,
        servers,
        c,
        sizes.deployments,
        (0..sizes.deployments).map(|d| async move {
            deployment_with_replicaset_and_service(writer, sizes, d)
                .await
                .map(|uid| (d, uid))
        }),
    )
    .await?;
    for (d, uid) in created {
        replicasets[d] = uid;
    }

    let replicasets = &replicasets;
    run_phase(
        "pods",
        writer,
        servers,
        c,
        sizes.pods,
        (0..sizes.pods).map(|i| async move {
            let d = i % sizes.deployments;
            let ns = namespace_name(d % sizes.namespaces);
            let (pod, status) = pod(i, d, sizes, &replicasets[d]);
            let name = pod_name(i, d, sizes);
            writer
                .create(
                    &format!("/api/v1/namespaces/{ns}/pods"),
                    &name,
                    "kube-controller-manager",
                    &pod,
                )
                .await?;
            writer
                .patch_status(
                    &format!("/api/v1/namespaces/{ns}/pods/{name}"),
                    "kubelet",
                    &status,
                )
                .await
        }),
    )
    .await?;
    println!(
        "{} write requests in all",
        writer.requests.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A deployment (with its status), its ReplicaSet and its headless Service; the
/// ReplicaSet's UID.
async fn deployment_with_replicaset_and_service(
    writer: &Writer,
    sizes: &Sizes,
    d: usize,
) -> Result<String, BoxError> {
    let ns = namespace_name(d % sizes.namespaces);
    let app = app_name(d, sizes);
    let replicas = sizes.replicas(d);
    let (deployment, status) = deployment(d, sizes);
    let created = writer
        .create(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            &app,
            "helm",
            &deployment,
        )
        .await?;
    let deployment_uid = uid(&created)?;
    writer
        .patch_status(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments/{app}"),
            "kube-controller-manager",
            &status,
        )
        .await?;
    let rs_name = format!("{app}-{}", template_hash(d));
    let created = writer
        .create(
            &format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
            &rs_name,
            "kube-controller-manager",
            &replicaset(d, sizes, &deployment_uid, replicas),
        )
        .await?;
    writer
        .create(
            &format!("/api/v1/namespaces/{ns}/services"),
            &app,
            "helm",
            &service(d, sizes),
        )
        .await?;
    uid(&created)
}

// ---- The synthetic objects ----

/// A cheap deterministic mix (splitmix64), for digests, IDs and addresses.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64 hex digits derived from `seed`, like a sha256 digest or a container ID.
fn hex64(seed: u64) -> String {
    (0..4)
        .map(|k| format!("{:016x}", mix(seed.wrapping_mul(4).wrapping_add(k))))
        .collect()
}

/// `len` characters of the alphabet Kubernetes uses for generated names.
fn suffix(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = mix(seed);
    (0..len)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

const TEAMS: &[&str] = &[
    "payments",
    "search",
    "checkout",
    "identity",
    "catalog",
    "media",
    "ads",
    "fraud",
    "ledger",
    "growth",
    "mobile-bff",
    "ml-serving",
    "notifications",
    "inventory",
    "shipping",
];
const SERVICES: &[&str] = &[
    "api",
    "web",
    "worker",
    "consumer",
    "scheduler",
    "gateway",
    "cache-warmer",
    "exporter",
    "indexer",
    "renderer",
];

/// One namespace in ten runs a service mesh, whose sidecar makes a pod about half again as
/// large.
fn meshed(n: usize) -> bool {
    n.is_multiple_of(10)
}

fn namespace_name(n: usize) -> String {
    format!("{}-{n:04}", TEAMS[n % TEAMS.len()])
}

fn namespace(n: usize) -> Value {
    let name = namespace_name(n);
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "team": TEAMS[n % TEAMS.len()],
                "environment": if n.is_multiple_of(3) { "staging" } else { "production" },
                "istio-injection": if meshed(n) { "enabled" } else { "disabled" },
                "pod-security.kubernetes.io/enforce": "baseline",
            },
            "annotations": {
                "meta.helm.sh/release-name": format!("{name}-platform"),
                "meta.helm.sh/release-namespace": "platform-system",
            },
        },
    })
}

fn node_name(i: usize) -> String {
    let pool = node_pool(i);
    format!(
        "gke-prod-{pool}-{:08x}-{}",
        mix(i as u64 / 100) as u32,
        suffix(i as u64, 4)
    )
}

/// Every tenth node is in the GPU pool.
fn node_pool(i: usize) -> &'static str {
    match i % 10 {
        9 => "gpu-pool",
        0..=5 => "default-pool",
        _ => "highmem-pool",
    }
}

/// A GKE-like node (labels, annotations, spec) and the status a kubelet would report.
fn node(i: usize) -> (Value, Value) {
    let name = node_name(i);
    let pool = node_pool(i);
    let gpu = pool == "gpu-pool";
    let zone = ["us-central1-a", "us-central1-b", "us-central1-c"][i % 3];
    let (machine, cpu, memory) = match pool {
        "gpu-pool" => ("a2-highgpu-4g", "48", "350640088Ki"),
        "highmem-pool" => ("n2-highmem-16", "16", "131911928Ki"),
        _ => ("e2-standard-16", "16", "65851340Ki"),
    };
    // A cluster half-way through an upgrade.
    let kubelet = if i.is_multiple_of(2) {
        "v1.37.2-gke.1000"
    } else {
        "v1.36.5-gke.1200"
    };
    let internal_ip = format!("10.128.{}.{}", i / 250, 2 + i % 250);
    let labels = json!({
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": machine,
        "beta.kubernetes.io/os": "linux", "cloud.google.com/gke-boot-disk": "pd-balanced",
        "cloud.google.com/gke-container-runtime": "containerd",
        "cloud.google.com/gke-cpu-scaling-level": cpu, "cloud.google.com/gke-logging-variant": "DEFAULT",
        "cloud.google.com/gke-max-pods-per-node": "110", "cloud.google.com/gke-nodepool": pool,
        "cloud.google.com/gke-os-distribution": "cos", "cloud.google.com/gke-provisioning": "standard",
        "cloud.google.com/gke-stack-type": "IPV4", "cloud.google.com/machine-family": &machine[..2],
        "cloud.google.com/private-node": "true", "failure-domain.beta.kubernetes.io/region": "us-central1",
        "failure-domain.beta.kubernetes.io/zone": zone, "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": machine, "topology.gke.io/zone": zone,
        "topology.kubernetes.io/region": "us-central1", "topology.kubernetes.io/zone": zone,
    });
    let last_applied: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("cloud.google.com/"))
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    let mut spec = json!({
        "podCIDR": format!("10.{}.{}.0/24", 64 + i / 256, i % 256),
        "podCIDRs": [format!("10.{}.{}.0/24", 64 + i / 256, i % 256)],
        "providerID": format!("gce://prod-project-4711/{zone}/{name}"),
    });
    if gpu {
        spec["taints"] =
            json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]);
    }
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "container.googleapis.com/instance_id": format!("{}", mix(i as u64) % 10_000_000_000_000_000_000),
                "csi.volume.kubernetes.io/nodeid": format!(
                    "{{\"pd.csi.storage.gke.io\":\"projects/prod-project-4711/zones/{zone}/instances/{name}\"}}"),
                "node.alpha.kubernetes.io/ttl": "0",
                "node.gke.io/last-applied-node-labels": last_applied.join(","),
                "node.gke.io/last-applied-node-taints": if gpu { "nvidia.com/gpu=present:NoSchedule" } else { "" },
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
    });

    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": "2026-12-01T23:59:12Z", "lastTransitionTime": T0})
    };
    let conditions = json!([
        condition(
            "FrequentContainerdRestart",
            "False",
            "NoFrequentContainerdRestart",
            "containerd is functioning properly"
        ),
        condition(
            "KernelDeadlock",
            "False",
            "KernelHasNoDeadlock",
            "kernel has no deadlock"
        ),
        condition(
            "ReadonlyFilesystem",
            "False",
            "FilesystemIsNotReadOnly",
            "Filesystem is not read-only"
        ),
        condition(
            "CorruptDockerOverlay2",
            "False",
            "NoCorruptDockerOverlay2",
            "docker overlay2 is functioning properly"
        ),
        condition(
            "FrequentUnregisterNetDevice",
            "False",
            "NoFrequentUnregisterNetDevice",
            "node is functioning properly"
        ),
        condition(
            "FrequentKubeletRestart",
            "False",
            "NoFrequentKubeletRestart",
            "kubelet is functioning properly"
        ),
        condition(
            "FrequentDockerRestart",
            "False",
            "NoFrequentDockerRestart",
            "docker is functioning properly"
        ),
        condition(
            "NetworkUnavailable",
            "False",
            "RouteCreated",
            "NodeController create implicit route"
        ),
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ]);
    let images: Vec<Value> = (0..NODE_IMAGES)
        .map(|k| {
            let (repo, tag) = match k {
                0 => (
                    "gke.gcr.io/gke-metrics-agent".to_owned(),
                    "1.13.4-gke.5".to_owned(),
                ),
                1 => (
                    "gke.gcr.io/fluent-bit".to_owned(),
                    "v1.8.12-gke.33".to_owned(),
                ),
                2 => ("gke.gcr.io/kube-proxy-amd64".to_owned(), kubelet.to_owned()),
                3 => (
                    "gke.gcr.io/pd-csi-driver".to_owned(),
                    "v1.15.4-gke.0".to_owned(),
                ),
                4 => ("gke.gcr.io/netd".to_owned(), "v0.8.7-gke.4".to_owned()),
                5 => ("registry.k8s.io/pause".to_owned(), "3.10".to_owned()),
                6 => ("docker.io/istio/proxyv2".to_owned(), "1.24.1".to_owned()),
                _ => {
                    // The rest are the teams' images that ran on this node.
                    let d = mix((i * NODE_IMAGES + k) as u64) % 15_000;
                    (
                        format!(
                            "europe-docker.pkg.dev/prod-project-4711/{}/{}",
                            TEAMS[d as usize % TEAMS.len()],
                            SERVICES[d as usize % SERVICES.len()]
                        ),
                        format!("1.{}.{}", d % 40, d % 7),
                    )
                }
            };
            let digest = hex64(k as u64 * 1_000_003 + (mix(i as u64) % 3));
            json!({"names": [format!("{repo}@sha256:{digest}"), format!("{repo}:{tag}")],
                   "sizeBytes": 20_000_000 + mix(k as u64 + 7) % 900_000_000})
        })
        .collect();
    let mut capacity = json!({"cpu": cpu, "ephemeral-storage": "98831908Ki", "hugepages-1Gi": "0",
                              "hugepages-2Mi": "0", "memory": memory, "pods": "110"});
    let mut allocatable = json!({"cpu": format!("{}m", cpu.parse::<u32>().unwrap_or(16) * 1000 - 440),
                                 "ephemeral-storage": "47060071478", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                                 "memory": memory, "pods": "110"});
    if gpu {
        capacity["nvidia.com/gpu"] = "4".into();
        allocatable["nvidia.com/gpu"] = "4".into();
    }
    let status = json!({
        "addresses": [{"type": "InternalIP", "address": internal_ip},
                      {"type": "ExternalIP", "address": format!("34.{}.{}.{}", 60 + i / 65536, (i / 256) % 256, i % 256)},
                      {"type": "InternalDNS", "address": format!("{name}.us-central1-b.c.prod-project-4711.internal")},
                      {"type": "Hostname", "address": format!("{name}.us-central1-b.c.prod-project-4711.internal")}],
        "allocatable": allocatable,
        "capacity": capacity,
        "conditions": conditions,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "images": images,
        "nodeInfo": {
            "architecture": "amd64", "bootID": format!("{:08x}-4c1e-4b8e-9f3a-{:012x}", mix(i as u64 + 1) as u32, mix(i as u64 + 2) >> 16),
            "containerRuntimeVersion": "containerd://1.7.24", "kernelVersion": "6.6.56+",
            "kubeProxyVersion": "", "kubeletVersion": kubelet,
            "machineID": format!("{:016x}{:016x}", mix(i as u64 + 3), mix(i as u64 + 4)),
            "operatingSystem": "linux", "osImage": "Container-Optimized OS from Google",
            "systemUUID": format!("{:08x}-2f1c-7d4e-a1b2-{:012x}", mix(i as u64 + 5) as u32, mix(i as u64 + 6) >> 16),
        },
        "runtimeHandlers": [
            {"name": "runc", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
            {"name": "", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
        ],
        "features": {"supplementalGroupsPolicy": true},
    });
    (node, status)
}

fn app_name(d: usize, sizes: &Sizes) -> String {
    let k = d / sizes.namespaces;
    format!("{}-{k}", SERVICES[k % SERVICES.len()])
}

/// The pod-template-hash of deployment `d`'s one ReplicaSet.
fn template_hash(d: usize) -> String {
    suffix(d as u64 ^ 0x5eed, 10)
}

fn pod_name(i: usize, d: usize, sizes: &Sizes) -> String {
    format!(
        "{}-{}-{}",
        app_name(d, sizes),
        template_hash(d),
        suffix(i as u64, 5)
    )
}

fn image(d: usize, sizes: &Sizes) -> String {
    let team = TEAMS[(d % sizes.namespaces) % TEAMS.len()];
    format!(
        "europe-docker.pkg.dev/prod-project-4711/{team}/{}:1.{}.{}",
        SERVICES[(d / sizes.namespaces) % SERVICES.len()],
        d % 40,
        d % 7
    )
}

const PROXY_IMAGE: &str = "docker.io/istio/proxyv2:1.24.1";

/// Deployment `d`'s pod template spec; `access` names the projected service-account volume
/// that admission adds to a pod (absent from a template).
fn pod_spec(d: usize, sizes: &Sizes, access: Option<&str>) -> Value {
    let ns = namespace_name(d % sizes.namespaces);
    let app = app_name(d, sizes);
    let mesh = meshed(d % sizes.namespaces);
    let mut app_mounts = vec![
        json!({"name": "config", "mountPath": "/etc/app", "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let mut proxy_mounts = vec![
        json!({"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}),
        json!({"name": "istio-data", "mountPath": "/var/lib/istio/data"}),
    ];
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": format!("{app}-config"), "defaultMode": 420}}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}),
    ];
    if mesh {
        volumes.push(json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}));
        volumes.push(json!({"name": "istio-data", "emptyDir": {}}));
    }
    if let Some(access) = access {
        let mount = json!({"name": access, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true});
        app_mounts.push(mount.clone());
        proxy_mounts.push(mount);
        volumes.push(json!({"name": access, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}));
    }
    let field_env = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}});
    let probe = |path: &str| {
        json!({"httpGet": {"path": path, "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 5,
               "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3})
    };
    let mut containers = vec![json!({
        "name": "app",
        "image": image(d, sizes),
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "DB_HOST", "value": format!("postgres.{ns}.svc.cluster.local")},
            {"name": "CACHE_URL", "value": format!("redis://redis.{ns}.svc.cluster.local:6379/0")},
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_IP", "status.podIP"),
        ],
        "envFrom": [{"configMapRef": {"name": format!("{app}-env")}}],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "livenessProbe": probe("/healthz"),
        "readinessProbe": probe("/readyz"),
        "volumeMounts": app_mounts,
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "runAsUser": 10001, "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    })];
    if mesh {
        containers.push(json!({
        "name": "istio-proxy",
        "image": PROXY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["proxy", "sidecar", "--domain", format!("{ns}.svc.cluster.local"),
                 "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
        "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
        "env": [
            {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
            {"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"},
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("INSTANCE_IP", "status.podIP"),
            field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            {"name": "ISTIO_META_APP_CONTAINERS", "value": "app"},
            {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": app},
            {"name": "ISTIO_META_OWNER", "value": format!("kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{app}")},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                           "periodSeconds": 15, "timeoutSeconds": 3, "successThreshold": 1, "failureThreshold": 4},
        "volumeMounts": proxy_mounts,
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "runAsUser": 1337, "runAsGroup": 1337, "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }));
    }
    json!({
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "securityContext": {"fsGroup": 10001, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": app}}}],
        "containers": containers,
        "volumes": volumes,
    })
}

fn pod_labels(d: usize, sizes: &Sizes) -> Value {
    let app = app_name(d, sizes);
    let mut labels = json!({"app": app, "app.kubernetes.io/name": app, "app.kubernetes.io/part-of": TEAMS[(d % sizes.namespaces) % TEAMS.len()],
                            "version": format!("1.{}.{}", d % 40, d % 7), "pod-template-hash": template_hash(d)});
    if meshed(d % sizes.namespaces) {
        labels["security.istio.io/tlsMode"] = "istio".into();
        labels["service.istio.io/canonical-name"] = app.into();
    }
    labels
}

fn deployment(d: usize, sizes: &Sizes) -> (Value, Value) {
    let ns = namespace_name(d % sizes.namespaces);
    let app = app_name(d, sizes);
    let replicas = sizes.replicas(d);
    let mut labels = pod_labels(d, sizes);
    if let Some(labels) = labels.as_object_mut() {
        labels.remove("pod-template-hash");
    }
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns,
            "labels": {"app": app, "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": format!("{app}-4.2.0")},
            "annotations": {"meta.helm.sh/release-name": app, "meta.helm.sh/release-namespace": ns,
                            "deployment.kubernetes.io/revision": "1"}},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": app}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}},
                "spec": pod_spec(d, sizes, None),
            },
        },
    });
    let status = json!({
        "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": replicas, "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": T2, "lastTransitionTime": T2},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": format!("ReplicaSet \"{app}-{}\" has successfully progressed.", template_hash(d)),
             "lastUpdateTime": T2, "lastTransitionTime": T0},
        ],
    });
    (deployment, status)
}

fn replicaset(d: usize, sizes: &Sizes, deployment_uid: &str, replicas: usize) -> Value {
    let ns = namespace_name(d % sizes.namespaces);
    let app = app_name(d, sizes);
    let hash = template_hash(d);
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{app}-{hash}"), "namespace": ns, "labels": pod_labels(d, sizes),
            "annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                            "deployment.kubernetes.io/max-replicas": (replicas + replicas.div_ceil(4)).to_string(),
                            "deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": app,
                                 "uid": deployment_uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app, "pod-template-hash": hash}},
            "template": {
                "metadata": {"labels": pod_labels(d, sizes),
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}},
                "spec": pod_spec(d, sizes, None),
            },
        },
    })
}

fn service(d: usize, sizes: &Sizes) -> Value {
    let ns = namespace_name(d % sizes.namespaces);
    let app = app_name(d, sizes);
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app, "namespace": ns,
            "labels": {"app": app, "app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": app, "meta.helm.sh/release-namespace": ns}},
        // Headless: the /24 service range holds only ~250 ClusterIPs.
        "spec": {"clusterIP": "None", "selector": {"app": app},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                           {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]},
    })
}

/// Pod `i` of deployment `d` as its ReplicaSet would create it (bound to a node, as the
/// scheduler would), and the status its kubelet would then report.
fn pod(i: usize, d: usize, sizes: &Sizes, replicaset_uid: &str) -> (Value, Value) {
    let ns = namespace_name(d % sizes.namespaces);
    let app = app_name(d, sizes);
    let hash = template_hash(d);
    let n = mix(i as u64 ^ 0xabcd) as usize % sizes.nodes;
    let access = format!("kube-api-access-{}", suffix(i as u64 ^ 0x77, 5));
    let mesh = meshed(d % sizes.namespaces);
    let mut spec = pod_spec(d, sizes, Some(&access));
    let mut annotations = json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                                 "kubectl.kubernetes.io/default-container": "app"});
    if mesh {
        annotations["istio.io/rev"] = "default".into();
        annotations["sidecar.istio.io/status"] = r#"{"initContainers":null,"containers":["istio-proxy"],"volumes":["istio-envoy","istio-data"],"revision":"default"}"#.into();
    }
    spec["nodeName"] = node_name(n).into();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name(i, d, sizes),
            "generateName": format!("{app}-{hash}-"),
            "namespace": ns,
            "labels": pod_labels(d, sizes),
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-{hash}"),
                                 "uid": replicaset_uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
    });
    let host_ip = format!("10.128.{}.{}", n / 250, 2 + n % 250);
    let pod_ip = format!("10.{}.{}.{}", 64 + n / 256, n % 256, 2 + i % 250);
    let condition =
        |kind: &str, at: &str| json!({"type": kind, "status": "True", "lastTransitionTime": at});
    let mounts = |spec: &Value, c: usize| -> Value {
        spec["containers"][c]["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let mut m = m.clone();
                if m["readOnly"] == json!(true) {
                    m["recursiveReadOnly"] = "Disabled".into();
                }
                m
            })
            .collect()
    };
    let container = |c: usize, name: &str, image: &str| {
        let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
        json!({
            "name": name, "image": image,
            "imageID": format!("{repo}@sha256:{}", hex64(d as u64 * 2 + c as u64)),
            "containerID": format!("containerd://{}", hex64(i as u64 * 2 + c as u64 + (1 << 40))),
            "ready": true, "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": T1}}, "lastState": {},
            "volumeMounts": mounts(&pod["spec"], c),
            "resources": pod["spec"]["containers"][c]["resources"].clone(),
        })
    };
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", T1), condition("Initialized", T0),
            condition("Ready", T2), condition("ContainersReady", T2), condition("PodScheduled", T0),
        ],
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": T0,
    });
    let mut statuses = vec![container(0, "app", &image(d, sizes))];
    if mesh {
        statuses.push(container(1, "istio-proxy", PROXY_IMAGE));
    }
    status["containerStatuses"] = statuses.into();
    (pod, status)
}
