//! A synthetic population of clusters for demos and the dashboard's tests: weekly reports over
//! several weeks, varied as real fleets are, every one marked `spartakus.dev/synthetic=true`.
//!
//! The population is a pure function of its [`Settings`] (a seed, a size, a number of weeks and
//! the time "now"), so two runs send the same reports (same report IDs: the collector stores
//! each once). Over the weeks clusters upgrade their minor version (so the adoption curves
//! move), leave Docker for containerd when they upgrade past 1.33, some join late and some stop
//! reporting. Distributions are spelled as their version suffixes (`-gke.`, `-eks-`, `+k3s`,
//! `+rke2`, an OpenShift build hash; AKS and kubeadm have none); operating systems, kernels,
//! runtimes, architectures, providers, sizes, accelerators and workload statistics follow the
//! distribution, as they do in the field. Self-managed clusters have a long tail of old minors.
//!
//! The value mix follows the utility bench's population (`stats/benches/utility/population.rs`,
//! which writes SQLite rows directly; stats cannot depend on this crate): the same
//! distributions, OS families, runtimes, architectures and providers, with smaller tails so that
//! a demo stays quick (at most about 900 nodes a cluster) and the attack test's target keeps
//! values no ordinary cluster has.
//!
//! Each report's `timestamp` is the moment it would have been sent; a gateway started with
//! `--backdate-synthetic` (demos only) dates it by that, so the snapshots have a history.

use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use report::vocabulary::SYNTHETIC_EXTENSION;
use serde_json::{Value, json};

/// What population to make.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Clusters (at least one).
    pub clusters: usize,
    /// Weeks of weekly reports, ending now (at least one; at most 17: the gateway backdates
    /// by 120 days at most).
    pub weeks: u32,
    /// Seed of every choice.
    pub seed: u64,
    /// The newest report's time, UNIX seconds.
    pub now: i64,
}

/// One report to send.
#[derive(Debug, Clone)]
pub struct Planned {
    /// When it would have been sent, UNIX seconds.
    pub timestamp: i64,
    /// The JSON body.
    pub body: Vec<u8>,
}

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// The newest minor version in the population (the test servers' kube-apiserver is 1.37).
const NEWEST_MINOR: u32 = 37;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Distribution {
    Gke,
    Eks,
    Aks,
    K3s,
    Rke2,
    Plain,
    OpenShift,
}

#[derive(Debug, Clone)]
struct Cluster {
    id: String,
    distribution: Distribution,
    minor: u32,
    /// Weekly chance of an upgrade by one minor.
    upgrade_rate: f64,
    os: Os,
    /// `nodes[].cloudProvider`, the same on every node.
    cloud: Option<&'static str>,
    runtime_docker: bool,
    cri_o: bool,
    arch: &'static [&'static str],
    nodes: usize,
    cpu: u32,
    gpus: bool,
    /// Nodes whose kubelet is one or two minors behind.
    lagging: usize,
    lag: u32,
    v2: bool,
    namespaces: u64,
    busy: u64,
    first_week: u32,
    last_week: u32,
    /// Seconds before the week's end that it reports.
    offset: i64,
    node_seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Os {
    Cos,
    Ubuntu2004,
    Ubuntu2204,
    Ubuntu2404,
    Bottlerocket,
    AmazonLinux2,
    AmazonLinux,
    AzureLinux,
    Debian12,
    Raspbian,
    Flatcar,
    Talos,
    Rhel9,
    Rhcos,
    CentOs7,
}

impl Os {
    fn image(self) -> &'static str {
        match self {
            Os::Cos => "Container-Optimized OS from Google",
            Os::Ubuntu2004 => "Ubuntu 20.04.6 LTS",
            Os::Ubuntu2204 => "Ubuntu 22.04.5 LTS",
            Os::Ubuntu2404 => "Ubuntu 24.04.1 LTS",
            Os::Bottlerocket => "Bottlerocket OS 1.26.2 (aws-k8s-1.36)",
            Os::AmazonLinux2 => "Amazon Linux 2",
            Os::AmazonLinux => "Amazon Linux 2023.6.20241121",
            Os::AzureLinux => "Microsoft Azure Linux 3.0",
            Os::Debian12 => "Debian GNU/Linux 12 (bookworm)",
            Os::Raspbian => "Raspbian GNU/Linux 12 (bookworm)",
            Os::Flatcar => "Flatcar Container Linux by Kinvolk 4081.2.0 (Oklo)",
            Os::Talos => "Talos (v1.8.3)",
            Os::Rhel9 => "Red Hat Enterprise Linux 9.4 (Plow)",
            Os::Rhcos => "Red Hat Enterprise Linux CoreOS 416.94.202410211619-0",
            Os::CentOs7 => "CentOS Linux 7 (Core)",
        }
    }

    fn kernel(self) -> &'static str {
        match self {
            Os::Cos => "6.6.56+",
            Os::Ubuntu2004 => "5.4.0-200-generic",
            Os::Ubuntu2204 => "5.15.0-126-generic",
            Os::Ubuntu2404 => "6.8.0-1015-gke",
            Os::Bottlerocket => "6.1.115",
            Os::AmazonLinux2 => "5.10.227-219.884.amzn2.x86_64",
            Os::AmazonLinux => "6.1.115-126.197.amzn2023.x86_64",
            Os::AzureLinux => "6.6.64.2-4.azl3",
            Os::Debian12 => "6.1.0-27-amd64",
            Os::Raspbian => "6.6.51+rpt-rpi-v8",
            Os::Flatcar => "6.6.60-flatcar",
            Os::Talos => "6.6.60-talos",
            Os::Rhel9 => "5.14.0-427.42.1.el9_4.x86_64",
            Os::Rhcos => "5.14.0-427.40.1.el9_4.x86_64",
            Os::CentOs7 => "3.10.0-1160.119.1.el7.x86_64",
        }
    }
}

fn pick<T: Copy>(rng: &mut StdRng, weighted: &[(u32, T)]) -> T {
    let total: u32 = weighted.iter().map(|(w, _)| w).sum();
    let mut n = rng.random_range(0..total);
    for (w, v) in weighted {
        if n < *w {
            return *v;
        }
        n -= w;
    }
    weighted[weighted.len() - 1].1
}

fn cluster(rng: &mut StdRng, weeks: u32) -> Cluster {
    use Distribution::*;
    let distribution = pick(
        rng,
        &[
            (26, Gke),
            (22, Eks),
            (12, Aks),
            (14, K3s),
            (7, Rke2),
            (15, Plain),
            (4, OpenShift),
        ],
    );
    let managed = matches!(distribution, Gke | Eks | Aks);
    // Managed clusters run newer versions; self-managed ones lag, some far behind.
    let minor = match distribution {
        Gke | Eks | Aks => pick(rng, &[(8, 33), (20, 34), (32, 35), (28, 36), (12, 37)]),
        _ => pick(
            rng,
            &[
                (1, 24),
                (1, 25),
                (1, 26),
                (2, 27),
                (2, 28),
                (4, 29),
                (6, 30),
                (8, 31),
                (10, 32),
                (14, 33),
                (18, 34),
                (20, 35),
                (16, 36),
                (8, 37),
            ],
        ),
    };
    let os = match distribution {
        Gke => pick(rng, &[(7, Os::Cos), (3, Os::Ubuntu2404)]),
        Eks => pick(
            rng,
            &[
                (4, Os::Bottlerocket),
                (5, Os::AmazonLinux),
                (2, Os::AmazonLinux2),
            ],
        ),
        Aks => pick(rng, &[(7, Os::Ubuntu2204), (3, Os::AzureLinux)]),
        K3s => pick(
            rng,
            &[
                (5, Os::Ubuntu2404),
                (3, Os::Ubuntu2204),
                (1, Os::Ubuntu2004),
                (2, Os::Debian12),
                (1, Os::Raspbian),
            ],
        ),
        Rke2 => pick(
            rng,
            &[(4, Os::Ubuntu2204), (3, Os::Rhel9), (2, Os::Ubuntu2404)],
        ),
        Plain if minor <= 28 => pick(
            rng,
            &[(4, Os::Ubuntu2004), (3, Os::CentOs7), (2, Os::Ubuntu2204)],
        ),
        Plain => pick(
            rng,
            &[
                (5, Os::Ubuntu2204),
                (4, Os::Ubuntu2404),
                (2, Os::Ubuntu2004),
                (3, Os::Debian12),
                (2, Os::Flatcar),
                (2, Os::Talos),
                (2, Os::Rhel9),
                (1, Os::CentOs7),
            ],
        ),
        OpenShift => Os::Rhcos,
    };
    let cloud = match distribution {
        Gke => Some("gce"),
        Eks => Some("aws"),
        Aks => Some("azure"),
        // k3s names itself in the providerID.
        K3s => pick(rng, &[(6, Some("k3s")), (3, None), (1, Some("hcloud"))]),
        Rke2 => pick(rng, &[(5, Some("vsphere")), (3, None), (2, Some("aws"))]),
        OpenShift => pick(rng, &[(4, Some("aws")), (3, Some("vsphere")), (3, None)]),
        Plain if os == Os::Talos => Some("hcloud"),
        Plain => pick(
            rng,
            &[
                (10, None),
                (2, Some("aws")),
                (2, Some("hcloud")),
                (2, Some("openstack")),
                (1, Some("digitalocean")),
                (1, Some("vsphere")),
                (1, Some("other")),
            ],
        ),
    };
    let self_managed = matches!(distribution, Plain | Rke2);
    let nodes = pick(
        rng,
        &[
            (10, 1usize),
            (18, 2),
            (34, 6),
            (24, 25),
            (8, 70),
            (5, 160),
            (1, 400),
        ],
    );
    // The heavy tail: now and then a fleet's big cluster.
    let nodes = if rng.random_bool(0.004) { 700 } else { nodes };
    // A cluster of one node is often a single machine: k3s at the edge, a developer's.
    let nodes = match nodes {
        1 | 2 => nodes,
        n => rng.random_range(n * 2 / 3..=n * 4 / 3),
    };
    let late = rng.random_bool(0.15);
    let stops = rng.random_bool(0.06);
    Cluster {
        id: format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rng.random::<u32>(),
            rng.random::<u16>(),
            rng.random::<u16>() & 0xfff,
            rng.random::<u16>() & 0xfff,
            rng.random::<u64>() & 0xffff_ffff_ffff,
        ),
        distribution,
        minor,
        upgrade_rate: if managed { 0.09 } else { 0.05 },
        os,
        cloud,
        runtime_docker: self_managed && minor <= 32 && rng.random_bool(0.5),
        cri_o: distribution == OpenShift
            || distribution == Plain && os == Os::Rhel9
            || rng.random_bool(0.03),
        arch: match os {
            Os::Raspbian => pick(rng, &[(3, &["arm64"][..]), (1, &["arm"][..])]),
            _ => pick(
                rng,
                &[
                    (82, &["amd64"][..]),
                    (11, &["arm64"][..]),
                    (7, &["amd64", "arm64"][..]),
                ],
            ),
        },
        nodes,
        cpu: pick(rng, &[(8, 2), (28, 4), (34, 8), (18, 16), (9, 32), (3, 64)]),
        gpus: rng.random_bool(0.06),
        lagging: if nodes > 3 && rng.random_bool(0.25) {
            rng.random_range(1..=nodes / 3)
        } else {
            0
        },
        lag: pick(rng, &[(8, 1), (2, 2)]),
        v2: rng.random_bool(0.85),
        namespaces: pick(
            rng,
            &[(20, 4), (35, 9), (25, 18), (12, 40), (6, 90), (2, 300)],
        ),
        busy: pick(rng, &[(30, 1), (40, 3), (20, 10), (10, 40)]),
        first_week: if late {
            rng.random_range(1..weeks.max(2))
        } else {
            0
        },
        last_week: if stops {
            rng.random_range(weeks / 2..weeks.max(1))
        } else {
            weeks - 1
        },
        offset: rng.random_range(0..WEEK),
        node_seed: rng.random(),
    }
}

impl Cluster {
    fn master_version(&self, patch: u32) -> String {
        let v = format!("v1.{}.{patch}", self.minor);
        match self.distribution {
            Distribution::Gke => format!("{v}-gke.{}", 1_000_000 + patch * 1013),
            Distribution::Eks => format!("{v}-eks-{:07x}", 0xa73_7599 + patch),
            Distribution::K3s => format!("{v}+k3s1"),
            Distribution::Rke2 => format!("{v}+rke2r1"),
            Distribution::OpenShift => format!("{v}+{:07x}", 0x6ab_e8a1 + patch),
            Distribution::Aks | Distribution::Plain => v,
        }
    }

    fn runtime(&self) -> String {
        if self.runtime_docker {
            "docker://20.10.24".into()
        } else if self.cri_o {
            format!("cri-o://1.{}.2", self.minor)
        } else if self.minor >= 35 {
            "containerd://2.0.1".into()
        } else {
            "containerd://1.7.22".into()
        }
    }

    fn report(&self, week: u32, timestamp: i64, seed: u64) -> Value {
        let patch = (week + self.minor) % 5;
        let master = self.master_version(patch);
        let mut nodes = Vec::with_capacity(self.nodes);
        let mut rng = StdRng::seed_from_u64(self.node_seed);
        for n in 0..self.nodes {
            let arch = self.arch[n % self.arch.len()];
            let kubelet_minor = if n < self.lagging {
                self.minor.saturating_sub(self.lag)
            } else {
                self.minor
            };
            let memory_gib = u64::from(self.cpu) * 4;
            let mut capacity = vec![
                json!({"resource": "cpu", "value": self.cpu.to_string()}),
                json!({"resource": "memory", "value": format!("{}Ki", memory_gib * 1024 * 1024 - 250_000)}),
                json!({"resource": "pods", "value": "110"}),
            ];
            if self.gpus && n % 4 == 0 {
                capacity.push(json!({"resource": "nvidia.com/gpu", "value": "1"}));
            }
            let mut node = json!({
                "id": format!("{:016x}{:016x}", rng.random::<u64>(), n as u64),
                "operatingSystem": "linux",
                "osImage": self.os.image(),
                "kernelVersion": self.os.kernel(),
                "architecture": arch,
                "containerRuntimeVersion": self.runtime(),
                "kubeletVersion": format!("v1.{kubelet_minor}.{patch}"),
                "capacity": capacity,
            });
            if let Some(cloud) = self.cloud {
                node["cloudProvider"] = cloud.into();
            }
            nodes.push(node);
        }
        let (name, value) = SYNTHETIC_EXTENSION;
        let mut r = json!({
            "version": if self.v2 { "v0.1.0" } else { "v1.0.0" },
            "timestamp": timestamp.to_string(),
            "clusterID": self.id,
            "masterVersion": master,
            "nodes": nodes,
            "extensions": [{"name": name, "value": value}],
        });
        if self.v2 {
            let id =
                StdRng::seed_from_u64(seed ^ self.node_seed ^ u64::from(week)).random::<u128>();
            r["reportID"] = uuid::Builder::from_random_bytes(id.to_be_bytes())
                .into_uuid()
                .to_string()
                .into();
            r["schemaVersion"] = 2.into();
            r["namespaces"] = self.namespaces.into();
            r["workloads"] = self.workloads().into();
        }
        r
    }

    fn workloads(&self) -> Vec<Value> {
        let ns = self.namespaces;
        let b = self.busy;
        let n = self.nodes as u64;
        let kinds: [(&str, u64, Option<u64>); 7] = [
            ("Pod", ns * 6 * b + n * 3, Some(90 + 24 * b)),
            ("Service", ns * 2 * b, Some(2_000)),
            ("Deployment", ns * 2 * b, Some(1_500)),
            ("StatefulSet", if b > 1 { ns / 3 } else { 0 }, Some(3_000)),
            ("DaemonSet", 3 + b, Some(4_000)),
            ("Job", if b >= 3 { ns * b / 2 } else { 0 }, Some(20)),
            ("CronJob", if b >= 3 { ns / 4 + 1 } else { 0 }, Some(2_500)),
        ];
        kinds
            .iter()
            .map(|(kind, total, age)| {
                let mut w = json!({
                    "kind": kind,
                    "total": total,
                    "perNamespace": per_namespace(*total, ns),
                });
                if *total > 0
                    && let Some(a) = age
                {
                    w["ageHours"] = json!({"median": a, "p90": a * 3});
                }
                w
            })
            .collect()
    }
}

/// A histogram of `total` objects spread evenly over `namespaces` namespaces.
fn per_namespace(total: u64, namespaces: u64) -> Vec<Value> {
    let mut counts = [0u64; 8];
    if namespaces > 0 {
        let holding = total.min(namespaces);
        if holding > 0 {
            counts[report::bucket_index(total.div_ceil(holding))] += holding;
        }
        counts[0] += namespaces - holding;
    }
    report::BUCKETS
        .iter()
        .zip(counts)
        .map(|((min, max), n)| {
            let mut b = json!({"min": min, "namespaces": n});
            if let Some(max) = max {
                b["max"] = (*max).into();
            }
            b
        })
        .collect()
}

/// Every report of the population, oldest first.
pub fn plan(settings: &Settings) -> Vec<Planned> {
    let weeks = settings.weeks.clamp(1, 17);
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut clusters: Vec<Cluster> = (0..settings.clusters.max(1))
        .map(|_| cluster(&mut rng, weeks))
        .collect();
    let mut out = Vec::new();
    for week in 0..weeks {
        let week_end = settings.now - i64::from(weeks - 1 - week) * WEEK;
        for c in clusters.iter_mut() {
            if week > 0 && c.minor < NEWEST_MINOR && rng.random_bool(c.upgrade_rate) {
                c.minor += 1;
                // Docker (through cri-dockerd) is left behind on upgrade.
                c.runtime_docker = false;
            }
            if week < c.first_week || week > c.last_week {
                continue;
            }
            let timestamp = (week_end - c.offset).min(settings.now);
            let body = c
                .report(week, timestamp, settings.seed)
                .to_string()
                .into_bytes();
            out.push(Planned { timestamp, body });
        }
    }
    out.sort_by_key(|p| p.timestamp);
    out
}

/// What [`send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Reports the gateway accepted.
    pub reports: usize,
    /// The oldest report's time, UNIX seconds.
    pub first: i64,
    /// The newest report's time, UNIX seconds.
    pub last: i64,
}

/// Sends every planned report to `gateway` through the volunteer's own sender (gzip,
/// `POST /api/v1`, retries), `concurrency` at a time. The first failure is the error.
pub async fn send(
    gateway: &reqwest::Url,
    planned: &[Planned],
    concurrency: usize,
) -> Result<Sent, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let policy = volunteer::send::Policy {
        deadline: Duration::from_secs(60),
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    };
    let results: Vec<Result<(), String>> = futures::stream::iter(planned)
        .map(|p| {
            let client = &client;
            let policy = &policy;
            async move {
                volunteer::send::send(client, gateway, &p.body, policy)
                    .await
                    .map(drop)
                    .map_err(|e| plumbing::Chain(&e).to_string())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }
    Ok(Sent {
        reports: planned.len(),
        first: planned.iter().map(|p| p.timestamp).min().unwrap_or(0),
        last: planned.iter().map(|p| p.timestamp).max().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings() -> Settings {
        Settings {
            clusters: 300,
            weeks: 12,
            seed: 7,
            now: 1_764_547_200,
        }
    }

    #[test]
    fn every_report_is_valid_synthetic_and_dated_within_the_weeks() {
        let s = settings();
        let planned = plan(&s);
        assert!(planned.len() > 300 * 10, "{}", planned.len());
        for p in &planned {
            let valid = report::decode(&p.body).unwrap();
            assert!(valid.is_synthetic());
            assert!(p.timestamp <= s.now && p.timestamp > s.now - 12 * WEEK);
            assert_eq!(valid.report().timestamp, Some(p.timestamp.to_string()));
        }
    }

    #[test]
    fn the_population_is_the_same_for_the_same_seed_and_varied() {
        let a = plan(&settings());
        let b = plan(&settings());
        assert_eq!(
            a.iter().map(|p| &p.body).collect::<Vec<_>>(),
            b.iter().map(|p| &p.body).collect::<Vec<_>>()
        );
        let text: String = a
            .iter()
            .map(|p| String::from_utf8_lossy(&p.body).into_owned())
            .collect();
        for needle in [
            "-gke.",
            "-eks-",
            "+k3s",
            "+rke2",
            "\"azure\"",
            "CoreOS",
            "Bottlerocket",
            "Container-Optimized OS",
            "Ubuntu 22.04",
            "docker://",
            "cri-o://",
            "containerd://2.0",
            "arm64",
            "nvidia.com/gpu",
            "\"v1.30.",
            "\"v1.37.",
            "StatefulSet",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
    }

    #[test]
    fn clusters_upgrade_over_the_weeks() {
        let planned = plan(&settings());
        let newest = |from: usize, to: usize| {
            planned[from..to]
                .iter()
                .filter(|p| String::from_utf8_lossy(&p.body).contains("\"masterVersion\":\"v1.37."))
                .count() as f64
                / (to - from) as f64
        };
        let n = planned.len();
        assert!(newest(n - n / 12, n) > newest(0, n / 12) + 0.1);
    }
}
