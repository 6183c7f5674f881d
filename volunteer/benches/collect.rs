//! What one report costs a large cluster: the volunteer against a naive collector.
//!
//! Creates a synthetic cluster in a real kube-apiserver (1,000 nodes, 30,000 pods in 300
//! namespaces; `SPARTAKUS_BENCH_SCALE=0.1` for a tenth), then runs, each as a child
//! process through a byte-counting TCP proxy in front of the API server:
//! - the volunteer, once, with `--dry-run`;
//! - a naive collector that lists every node and every pod as full objects, one request
//!   each (this same binary, re-executed with `SPARTAKUS_BENCH_NAIVE`), without and with
//!   gzip (the volunteer asks for gzip; the API server compresses responses over 128 KiB).
//!
//! Prints requests, bytes received, wall time and peak RSS (`/usr/bin/time -v`) of both,
//! and the ratios. Targets: volunteer peak RSS ≤ 64 MiB, bytes ≤ 15 % of naive.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONCURRENT_CREATES: usize = 16;

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(kubeconfig) = std::env::var("SPARTAKUS_BENCH_NAIVE") {
        return rt.block_on(naive(Path::new(&kubeconfig)));
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    rt.block_on(bench())
}

/// The naive collector: every node and every pod as full objects, one request each,
/// decoded as a collector would; with `SPARTAKUS_BENCH_GZIP=1` it asks for gzip.
async fn naive(kubeconfig: &Path) -> Result<(), BoxError> {
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(kubeconfig)?)?;
    let server = config["clusters"][0]["cluster"]["server"]
        .as_str()
        .ok_or("server")?;
    let read = |v: &serde_json::Value| -> Result<Vec<u8>, BoxError> {
        Ok(std::fs::read(v.as_str().ok_or("path")?)?)
    };
    let ca = read(&config["clusters"][0]["cluster"]["certificate-authority"])?;
    let mut identity = read(&config["users"][0]["user"]["client-certificate"])?;
    identity.extend(read(&config["users"][0]["user"]["client-key"])?);
    let gzip = std::env::var("SPARTAKUS_BENCH_GZIP").is_ok_and(|v| v == "1");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .identity(reqwest::Identity::from_pem(&identity)?)
        .gzip(gzip)
        .build()?;
    let nodes: k8s_openapi::List<Node> = http
        .get(format!("{server}/api/v1/nodes"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let pods: k8s_openapi::List<Pod> = http
        .get(format!("{server}/api/v1/pods"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!("{} {}", nodes.items.len(), pods.items.len());
    Ok(())
}

async fn bench() -> Result<(), BoxError> {
    let scale: f64 = std::env::var("SPARTAKUS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n_nodes = ((1000.0 * scale) as usize).max(1);
    let n_pods = ((30000.0 * scale) as usize).max(1);
    let n_namespaces = ((300.0 * scale) as usize).max(1);
    println!("synthetic cluster: {n_nodes} nodes, {n_pods} pods, {n_namespaces} namespaces");

    let kube = testenv::KubeApi::start().await?;
    let admin = kube.client().await?;
    let started = Instant::now();
    populate(&admin, n_nodes, n_pods, n_namespaces).await?;
    println!("created in {:.1?}", started.elapsed());

    let upstream = kube.server_url().trim_start_matches("https://").to_owned();
    let received = Arc::new(AtomicU64::new(0));
    let proxy = counting_proxy(upstream, received.clone()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = proxied_kubeconfig(kube.kubeconfig_path(), &proxy, dir.path())?;

    let volunteer = measure(
        Command::new(env!("CARGO_BIN_EXE_volunteer"))
            .args([
                "--dry-run",
                "--gateway",
                "https://collector.example.org",
                "--log-format",
                "json",
            ])
            .arg("--kubeconfig")
            .arg(&kubeconfig),
        &received,
    )?;
    let report = report::decode(volunteer.stdout.trim_ascii_end())
        .map_err(|e| format!("volunteer report invalid: {e}"))?
        .into_report();
    let pods_counted = report
        .workloads
        .iter()
        .flatten()
        .find(|w| w.kind == report::Kind::Pod)
        .map(|w| w.total);
    assert_eq!(pods_counted, Some(n_pods as u64), "volunteer pod count");
    assert_eq!(report.nodes.as_ref().map(Vec::len), Some(n_nodes));
    let requests = String::from_utf8_lossy(&volunteer.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["fields"]["requests"].as_u64())
        .unwrap_or(0);

    let mut naive = Vec::new();
    for gzip in ["0", "1"] {
        let m = measure(
            Command::new(std::env::current_exe()?)
                .env("SPARTAKUS_BENCH_NAIVE", &kubeconfig)
                .env("SPARTAKUS_BENCH_GZIP", gzip),
            &received,
        )?;
        let out = String::from_utf8_lossy(&m.stdout).trim().to_owned();
        assert_eq!(out, format!("{n_nodes} {n_pods}"), "naive counts");
        naive.push(m);
    }

    let mib = |kb: u64| kb as f64 / 1024.0;
    println!();
    println!(
        "{:<16} {:>9} {:>16} {:>10} {:>14}",
        "", "requests", "bytes received", "wall", "peak RSS"
    );
    let row = |name: &str, requests: u64, m: &Measured| {
        println!(
            "{:<16} {:>9} {:>16} {:>9.2}s {:>10.1} MiB",
            name,
            requests,
            m.bytes,
            m.wall,
            mib(m.rss_kb)
        )
    };
    row("volunteer", requests, &volunteer);
    row("naive", 2, &naive[0]);
    row("naive + gzip", 2, &naive[1]);
    for (name, n) in [("vs naive", &naive[0]), ("vs naive + gzip", &naive[1])] {
        println!(
            "{:<16} {:>9} {:>15.1}% {:>9.1}% {:>13.1}%",
            name,
            "",
            100.0 * volunteer.bytes as f64 / n.bytes as f64,
            100.0 * volunteer.wall / n.wall,
            100.0 * volunteer.rss_kb as f64 / n.rss_kb as f64
        );
    }
    let naive = &naive[0];
    println!(
        "report body: {} bytes",
        volunteer.stdout.trim_ascii_end().len()
    );
    let rss_ok = mib(volunteer.rss_kb) <= 64.0;
    let bytes_ok = (volunteer.bytes as f64) <= 0.15 * naive.bytes as f64;
    println!(
        "targets: peak RSS ≤ 64 MiB: {}; bytes ≤ 15% of naive: {}",
        if rss_ok { "met" } else { "MISSED" },
        if bytes_ok { "met" } else { "MISSED" }
    );
    Ok(())
}

struct Measured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    bytes: u64,
    wall: f64,
    rss_kb: u64,
}

/// Runs `cmd` under `/usr/bin/time -v`, counting the bytes the proxy delivered to it.
fn measure(cmd: &mut Command, received: &AtomicU64) -> Result<Measured, BoxError> {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
        .collect();
    let before = received.load(Ordering::SeqCst);
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(program)
        .args(args)
        .envs(envs)
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!("{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss_kb = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Measured {
        bytes: received.load(Ordering::SeqCst) - before,
        stdout: out.stdout,
        stderr: out.stderr,
        wall,
        rss_kb,
    })
}

/// A TCP proxy to `upstream` counting bytes sent back to clients (TLS passes through:
/// the serving certificate is for 127.0.0.1, which the proxy also listens on).
async fn counting_proxy(upstream: String, received: Arc<AtomicU64>) -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let received = received.clone();
            tokio::spawn(async move {
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                if let Ok((_, to_client)) = tokio::io::copy_bidirectional(&mut down, &mut up).await
                {
                    received.fetch_add(to_client, Ordering::SeqCst);
                }
            });
        }
    });
    Ok(addr)
}

/// The admin kubeconfig (JSON) with the server replaced by the proxy.
fn proxied_kubeconfig(admin: &Path, proxy: &str, dir: &Path) -> Result<PathBuf, BoxError> {
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(admin)?)?;
    config["clusters"][0]["cluster"]["server"] = format!("https://{proxy}").into();
    let path = dir.join("proxied.kubeconfig");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

async fn populate(
    client: &kube::Client,
    n_nodes: usize,
    n_pods: usize,
    n_namespaces: usize,
) -> Result<(), BoxError> {
    let pp = PostParams::default();
    let namespaces: Vec<String> = (0..n_namespaces).map(|i| format!("team-{i:03}")).collect();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(namespaces.iter().map(|name| {
        let ns_api = ns_api.clone();
        let pp = pp.clone();
        async move {
            let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
            ns_api.create(&pp, &ns).await?;
            Ok::<_, BoxError>(())
        }
    }))
    .buffer_unordered(CONCURRENT_CREATES)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;

    let node_api: Api<Node> = Api::all(client.clone());
    futures::stream::iter((0..n_nodes).map(|i| {
        let node_api = node_api.clone();
        let pp = pp.clone();
        async move {
            let (node, status) = synthetic_node(i);
            let name = node.metadata.name.clone().unwrap_or_default();
            node_api.create(&pp, &node).await?;
            node_api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await?;
            Ok::<_, BoxError>(())
        }
    }))
    .buffer_unordered(CONCURRENT_CREATES)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;

    futures::stream::iter((0..n_pods).map(|i| {
        let ns = namespaces[i % namespaces.len()].clone();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pp = pp.clone();
        async move {
            api.create(&pp, &synthetic_pod(i, &ns, n_nodes)?).await?;
            Ok::<_, BoxError>(())
        }
    }))
    .buffer_unordered(CONCURRENT_CREATES)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// A node like a cloud provider's: labels, annotations, addresses, images, capacity.
fn synthetic_node(i: usize) -> (Node, serde_json::Value) {
    let name = format!("gke-bench-default-pool-{i:08x}");
    let node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "cloud.google.com/gke-nodepool": "default-pool", "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
            "node.kubernetes.io/instance-type": "e2-standard-8",
            "topology.kubernetes.io/region": "us-central1", "topology.kubernetes.io/zone": "us-central1-b"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": format!("10.{}.{}.0/24", 64 + i / 256, i % 256),
                 "providerID": format!("gce://bench-project/us-central1-b/{name}")},
    }))
    .unwrap_or_default();
    let images: Vec<serde_json::Value> = (0..12)
        .map(|k| json!({"names": [
            format!("registry.example.org/team-{k}/service@sha256:{:064x}", i * 31 + k),
            format!("registry.example.org/team-{k}/service:1.{k}.{i}")], "sizeBytes": 100_000_000 + k}))
        .collect();
    let status = json!({
        "addresses": [{"type": "InternalIP", "address": format!("10.128.{}.{}", i / 256, i % 256)},
                      {"type": "Hostname", "address": name}],
        "capacity": {"cpu": "8", "ephemeral-storage": "98831908Ki", "hugepages-1Gi": "0",
                     "hugepages-2Mi": "0", "memory": "32880956Ki", "pods": "110"},
        "allocatable": {"cpu": "7910m", "ephemeral-storage": "47060071478", "memory": "29094716Ki", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "nodeInfo": {"machineID": format!("{i:032x}"), "systemUUID": format!("{i:08x}-0000-4000-8000-000000000000"),
                     "bootID": format!("{i:08x}-1111-4000-8000-000000000000"), "kernelVersion": "6.1.100+",
                     "osImage": "Container-Optimized OS from Google", "containerRuntimeVersion": "containerd://1.7.22",
                     "kubeletVersion": "v1.37.2-gke.1000", "kubeProxyVersion": "", "operatingSystem": "linux",
                     "architecture": "amd64"},
        "images": images,
    });
    (node, status)
}

/// A pod like a Deployment's: labels, annotations, two containers with env, probes,
/// resources and a volume.
fn synthetic_pod(i: usize, ns: &str, n_nodes: usize) -> Result<Pod, serde_json::Error> {
    let app = format!("{ns}-web");
    serde_json::from_value(json!({
        "metadata": {"name": format!("{app}-7d9f8b6c5d-{i:06}"),
            "labels": {"app": app, "pod-template-hash": "7d9f8b6c5d", "team": ns},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}},
        "spec": {
            "nodeName": format!("gke-bench-default-pool-{:08x}", i % n_nodes),
            "containers": [
                {"name": "app", "image": format!("registry.example.org/{ns}/web:1.2.{}", i % 7),
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "DB_HOST", "value": format!("db.{ns}.svc")},
                         {"name": "FEATURE_FLAGS", "value": "a,b,c"}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}]},
                {"name": "proxy", "image": "registry.example.org/platform/envoy:1.31.0",
                 "args": ["--config-path", "/etc/envoy/envoy.yaml"],
                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
            ],
            "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config")}}],
        },
    }))
}
