//! The utility bench's population: clusters with the mix a real fleet shows, as a pure function
//! of a seed and the cluster's index (so the first 10,000 clusters of the 100,000 are the
//! 10,000-cluster population).
//!
//! It lives here, not in `systests::population` (which stats cannot depend on): the bench writes
//! SQLite rows directly, and `systests::population` spreads the same value mix over the reports
//! it sends for the quickstart. The mix is meant to look like a fleet, not to suit one metric:
//! managed distributions (GKE, EKS, AKS and smaller clouds) on recent minors, self-managed ones
//! (k3s, RKE2, kubeadm, OpenShift, k0s, Tanzu) with a long tail of old minors down to 1.10 and
//! their old operating systems and Docker; node counts heavy-tailed (three clusters in ten
//! have one to three nodes, one in two hundred more than a thousand); clusters of one to three
//! node pools that may differ in OS version, architecture, kubelet version (skew) and
//! accelerators; v1 reports (no namespaces, no workloads) more common on old versions.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The newest Kubernetes minor (the test servers' kube-apiserver is 1.37).
const NEWEST_MINOR: u32 = 37;

/// One cluster's reports in the window.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    /// The API server's gitVersion (`None`: the report did not say).
    pub(crate) master: Option<String>,
    /// The volunteer's version.
    pub(crate) volunteer: &'static str,
    /// A v2 report (schema version 2, namespaces, workloads), else v1.
    pub(crate) v2: bool,
    /// Namespaces (v2 only; `None` when the volunteer was not allowed to count them).
    pub(crate) namespaces: Option<i64>,
    /// Reports in the 28-day window.
    pub(crate) reports: i64,
    /// Hours between two reports.
    pub(crate) period_hours: i64,
    /// The node pools of the latest report (empty: it carried no nodes).
    pub(crate) pools: Vec<Pool>,
    /// Workload statistics (v2 only; a kind missing was not reported).
    pub(crate) workloads: Vec<Workload>,
}

/// Nodes that look alike.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub(crate) nodes: i64,
    pub(crate) os_image: Option<&'static str>,
    pub(crate) kernel: &'static str,
    pub(crate) architecture: &'static str,
    pub(crate) runtime: String,
    /// The kubelet's version (`None`: not reported).
    pub(crate) kubelet: Option<String>,
    pub(crate) cloud: Option<&'static str>,
    /// CPU and memory capacity as quantities (`None`: not reported).
    pub(crate) capacity: Option<(String, String)>,
    /// An accelerator resource and its capacity.
    pub(crate) accelerator: Option<(&'static str, &'static str)>,
}

/// One workload kind's statistics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    pub(crate) kind: &'static str,
    pub(crate) total: i64,
    pub(crate) age_median_hours: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dist {
    Gke,
    Eks,
    Aks,
    K3s,
    Rke2,
    Kubeadm,
    OpenShift,
    K0s,
    Tanzu,
    Aliyun,
    Tke,
    Kind,
}

impl Dist {
    fn managed(self) -> bool {
        matches!(
            self,
            Dist::Gke | Dist::Eks | Dist::Aks | Dist::Aliyun | Dist::Tke
        )
    }
}

/// An operating system image and the kernels it ships.
#[derive(Debug)]
struct Os {
    image: Option<&'static str>,
    kernels: &'static [(f64, &'static str)],
}

const fn os(image: &'static str, kernels: &'static [(f64, &'static str)]) -> Os {
    Os {
        image: Some(image),
        kernels,
    }
}

static COS: Os = os(
    "Container-Optimized OS from Google",
    &[(5.0, "6.6.56+"), (4.0, "6.1.112+"), (1.0, "5.15.154+")],
);
static UBUNTU_2404: Os = os(
    "Ubuntu 24.04.1 LTS",
    &[(8.0, "6.8.0-49-generic"), (2.0, "6.11.0-1006-gcp")],
);
static UBUNTU_2204: Os = os(
    "Ubuntu 22.04.5 LTS",
    &[
        (6.0, "5.15.0-126-generic"),
        (2.0, "6.5.0-1025-azure"),
        (2.0, "6.8.0-1015-gke"),
    ],
);
static UBUNTU_2004: Os = os(
    "Ubuntu 20.04.6 LTS",
    &[(6.0, "5.4.0-200-generic"), (4.0, "5.15.0-124-generic")],
);
static UBUNTU_1804: Os = os(
    "Ubuntu 18.04.6 LTS",
    &[(6.0, "4.15.0-213-generic"), (4.0, "5.4.0-150-generic")],
);
static DEBIAN_12: Os = os("Debian GNU/Linux 12 (bookworm)", &[(1.0, "6.1.0-27-amd64")]);
static DEBIAN_11: Os = os(
    "Debian GNU/Linux 11 (bullseye)",
    &[(1.0, "5.10.0-33-amd64")],
);
static DEBIAN_10: Os = os("Debian GNU/Linux 10 (buster)", &[(1.0, "4.19.0-27-amd64")]);
static RASPBIAN_12: Os = os(
    "Raspbian GNU/Linux 12 (bookworm)",
    &[(1.0, "6.6.51+rpt-rpi-v8")],
);
static AMAZON_LINUX_2: Os = os(
    "Amazon Linux 2",
    &[
        (7.0, "5.10.227-219.884.amzn2.x86_64"),
        (3.0, "4.14.352-267.564.amzn2.x86_64"),
    ],
);
static AMAZON_LINUX_2023: Os = os(
    "Amazon Linux 2023.6.20241121",
    &[(1.0, "6.1.115-126.197.amzn2023.x86_64")],
);
static BOTTLEROCKET_126: Os = os(
    "Bottlerocket OS 1.26.2 (aws-k8s-1.31)",
    &[(6.0, "6.1.115"), (2.0, "5.15.168")],
);
static BOTTLEROCKET_119: Os = os(
    "Bottlerocket OS 1.19.5 (aws-k8s-1.28)",
    &[(1.0, "5.15.160")],
);
static MARINER: Os = os("CBL-Mariner/Linux", &[(1.0, "5.15.173.1-1.cm2")]);
static AZURE_LINUX_3: Os = os("Microsoft Azure Linux 3.0", &[(1.0, "6.6.64.2-4.azl3")]);
static WINDOWS_2022: Os = os(
    "Windows Server 2022 Datacenter",
    &[(1.0, "10.0.20348.2966")],
);
static WINDOWS_2019: Os = os(
    "Windows Server 2019 Datacenter",
    &[(1.0, "10.0.17763.6532")],
);
static FLATCAR_4081: Os = os(
    "Flatcar Container Linux by Kinvolk 4081.2.0 (Oklo)",
    &[(1.0, "6.6.60-flatcar")],
);
static FLATCAR_3815: Os = os(
    "Flatcar Container Linux by Kinvolk 3815.2.5 (Oklo)",
    &[(1.0, "6.1.96-flatcar")],
);
static TALOS_18: Os = os("Talos (v1.8.3)", &[(1.0, "6.6.60-talos")]);
static TALOS_19: Os = os("Talos (v1.9.1)", &[(1.0, "6.12.6-talos")]);
static RHCOS_416: Os = os(
    "Red Hat Enterprise Linux CoreOS 416.94.202410211619-0",
    &[(1.0, "5.14.0-427.40.1.el9_4.x86_64")],
);
static RHCOS_412: Os = os(
    "Red Hat Enterprise Linux CoreOS 412.86.202402272018-0",
    &[(1.0, "4.18.0-372.91.1.el8_6.x86_64")],
);
static RHEL_9: Os = os(
    "Red Hat Enterprise Linux 9.4 (Plow)",
    &[(1.0, "5.14.0-427.42.1.el9_4.x86_64")],
);
static RHEL_8: Os = os(
    "Red Hat Enterprise Linux 8.10 (Ootpa)",
    &[(1.0, "4.18.0-553.27.1.el8_10.x86_64")],
);
static CENTOS_7: Os = os(
    "CentOS Linux 7 (Core)",
    &[(1.0, "3.10.0-1160.119.1.el7.x86_64")],
);
static CENTOS_STREAM_9: Os = os("CentOS Stream 9", &[(1.0, "5.14.0-522.el9.x86_64")]);
static ROCKY_9: Os = os(
    "Rocky Linux 9.4 (Blue Onyx)",
    &[(1.0, "5.14.0-427.42.1.el9_4.x86_64")],
);
static ROCKY_8: Os = os(
    "Rocky Linux 8.10 (Green Obsidian)",
    &[(1.0, "4.18.0-553.el8_10.x86_64")],
);
static ALMA_9: Os = os(
    "AlmaLinux 9.4 (Seafoam Ocelot)",
    &[(1.0, "5.14.0-427.40.1.el9_4.x86_64")],
);
static ORACLE_8: Os = os(
    "Oracle Linux Server 8.10",
    &[(1.0, "5.15.0-208.159.3.el8uek.x86_64")],
);
static SLES_15_SP5: Os = os(
    "SUSE Linux Enterprise Server 15 SP5",
    &[(1.0, "5.14.21-150500.55.83-default")],
);
static SLE_MICRO_55: Os = os(
    "SUSE Linux Enterprise Micro 5.5",
    &[(1.0, "5.14.21-150500.55.83-default")],
);
static OPENSUSE_156: Os = os("openSUSE Leap 15.6", &[(1.0, "6.4.0-150600.23.25-default")]);
static FEDORA_COREOS: Os = os(
    "Fedora CoreOS 40.20241019.3.0",
    &[(1.0, "6.10.12-200.fc40.x86_64")],
);
static ALPINE_320: Os = os("Alpine Linux v3.20", &[(1.0, "6.6.58-0-lts")]);
static NIXOS: Os = os("NixOS 24.05 (Uakari)", &[(1.0, "6.6.63")]);
static PHOTON_4: Os = os("VMware Photon OS/Linux", &[(1.0, "5.10.226-1.ph4")]);
static GARDEN_LINUX: Os = os("Garden Linux 1592.2", &[(1.0, "6.6.62-cloud-amd64")]);
static ARCH: Os = os("Arch Linux", &[(1.0, "6.11.8-arch1-2")]);
static ALIBABA_LINUX: Os = os(
    "Alibaba Cloud Linux 3.2104 U10 (OpenAnolis Edition)",
    &[(1.0, "5.10.134-17.3.al8.x86_64")],
);
static TENCENT_OS: Os = os(
    "TencentOS Server 3.1 (Final)",
    &[(1.0, "5.4.119-19.0009.44")],
);
/// A node whose osImage the report did not carry.
static NO_IMAGE: Os = Os {
    image: None,
    kernels: &[(1.0, "5.15.0-126-generic")],
};

fn pick<T: Copy>(rng: &mut StdRng, weighted: &[(f64, T)]) -> T {
    let total: f64 = weighted.iter().map(|(w, _)| w).sum();
    let mut x = rng.random_range(0.0..total);
    for (w, v) in weighted {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    weighted[weighted.len() - 1].1
}

/// Log-uniform in `lo..=hi`.
fn log_uniform(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    let (l, h) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
    (rng.random_range(l..h).exp() as i64).clamp(lo, hi)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn distribution(rng: &mut StdRng) -> Dist {
    use Dist::*;
    pick(
        rng,
        &[
            (22.0, Gke),
            (22.0, Eks),
            (12.0, Aks),
            (14.0, K3s),
            (6.0, Rke2),
            (13.0, Kubeadm),
            (4.0, OpenShift),
            (1.5, K0s),
            (1.5, Tanzu),
            (1.0, Aliyun),
            (0.5, Tke),
            (2.5, Kind),
        ],
    )
}

/// Managed offerings support the last few minors; self-managed clusters keep running whatever
/// they were installed with, down to 1.10.
fn pick_minor(rng: &mut StdRng, dist: Dist) -> u32 {
    let n = NEWEST_MINOR;
    if dist == Dist::Kind {
        return pick(rng, &[(6.0, n), (3.0, n - 1), (1.0, n - 2)]);
    }
    if dist.managed() {
        // EKS's extended support keeps a few more behind.
        let tail = if dist == Dist::Eks { 3.0 } else { 0.5 };
        return pick(
            rng,
            &[
                (12.0, n),
                (30.0, n - 1),
                (26.0, n - 2),
                (16.0, n - 3),
                (9.0, n - 4),
                (4.0, n - 5),
                (tail, n - 6),
                (tail / 2.0, n - 7),
                (tail / 3.0, n - 8),
            ],
        );
    }
    let mut weighted: Vec<(f64, u32)> = vec![
        (6.0, n),
        (12.0, n - 1),
        (14.0, n - 2),
        (13.0, n - 3),
        (11.0, n - 4),
        (9.0, n - 5),
        (7.0, n - 6),
        (6.0, n - 7),
        (5.0, n - 8),
    ];
    // The long tail: each older minor a little rarer, down to 1.10.
    let mut w = 4.0;
    for m in (10..n - 8).rev() {
        weighted.push((w, m));
        w *= 0.82;
    }
    pick(rng, &weighted)
}

/// Newer patches are more common; a minor has had about two patches a month since release.
fn pick_patch(rng: &mut StdRng, minor: u32) -> u32 {
    let latest = (2 + 2 * (NEWEST_MINOR - minor)).min(14);
    let weighted: Vec<(f64, u32)> = (0..=latest).map(|p| (f64::from(1 + p), p)).collect();
    pick(rng, &weighted)
}

fn hex(rng: &mut StdRng) -> String {
    format!("{:07x}", rng.random::<u32>() & 0x0fff_ffff)
}

fn version(rng: &mut StdRng, dist: Dist, minor: u32, patch: u32) -> String {
    let v = format!("v1.{minor}.{patch}");
    match dist {
        Dist::Gke => format!(
            "{v}-gke.{}",
            1_000_000 + rng.random_range(0..2_000u32) * 1000
        ),
        Dist::Eks => format!("{v}-eks-{}", hex(rng)),
        Dist::K3s => format!("{v}+k3s{}", rng.random_range(1..=2u32)),
        Dist::Rke2 => format!("{v}+rke2r{}", rng.random_range(1..=2u32)),
        Dist::OpenShift => format!("{v}+{}", hex(rng)),
        Dist::K0s => format!("{v}+k0s"),
        Dist::Tanzu => format!("{v}+vmware.1"),
        Dist::Aliyun => format!("{v}-aliyun.1"),
        Dist::Tke => format!("{v}-tke.{}", rng.random_range(1..=9u32)),
        Dist::Aks | Dist::Kubeadm | Dist::Kind => v,
    }
}

/// The main pool's OS; old minors run old releases.
fn operating_system(rng: &mut StdRng, dist: Dist, minor: u32) -> &'static Os {
    let old = minor <= NEWEST_MINOR - 10;
    match dist {
        Dist::Gke => pick(
            rng,
            &[(8.0, &COS), (1.5, &UBUNTU_2204), (0.5, &UBUNTU_2404)],
        ),
        Dist::Eks if minor <= NEWEST_MINOR - 5 => pick(
            rng,
            &[
                (6.0, &AMAZON_LINUX_2),
                (2.0, &AMAZON_LINUX_2023),
                (2.0, &BOTTLEROCKET_119),
            ],
        ),
        Dist::Eks => pick(
            rng,
            &[
                (1.5, &AMAZON_LINUX_2),
                (5.0, &AMAZON_LINUX_2023),
                (2.5, &BOTTLEROCKET_126),
                (0.5, &BOTTLEROCKET_119),
                (0.5, &UBUNTU_2204),
            ],
        ),
        Dist::Aks => pick(
            rng,
            &[
                (6.0, &UBUNTU_2204),
                (1.0, &UBUNTU_2404),
                (1.5, &MARINER),
                (1.5, &AZURE_LINUX_3),
            ],
        ),
        Dist::K3s if old => pick(
            rng,
            &[
                (5.0, &UBUNTU_2004),
                (2.0, &UBUNTU_1804),
                (2.0, &DEBIAN_10),
                (1.0, &RASPBIAN_12),
            ],
        ),
        Dist::K3s => pick(
            rng,
            &[
                (5.0, &UBUNTU_2204),
                (4.0, &UBUNTU_2404),
                (2.0, &UBUNTU_2004),
                (3.0, &DEBIAN_12),
                (1.0, &DEBIAN_11),
                (1.5, &RASPBIAN_12),
                (0.5, &ALPINE_320),
                (0.5, &OPENSUSE_156),
                (0.5, &SLE_MICRO_55),
                (0.3, &NIXOS),
                (0.3, &ARCH),
            ],
        ),
        Dist::Rke2 => pick(
            rng,
            &[
                (4.0, &UBUNTU_2204),
                (1.5, &UBUNTU_2004),
                (1.0, &UBUNTU_2404),
                (1.5, &RHEL_9),
                (1.0, &RHEL_8),
                (1.0, &ROCKY_9),
                (1.0, &SLES_15_SP5),
                (0.5, &ORACLE_8),
            ],
        ),
        Dist::Kubeadm | Dist::K0s if old => pick(
            rng,
            &[
                (4.0, &UBUNTU_1804),
                (4.0, &UBUNTU_2004),
                (3.0, &CENTOS_7),
                (2.0, &DEBIAN_10),
                (1.0, &RHEL_8),
                (0.5, &NO_IMAGE),
            ],
        ),
        Dist::Kubeadm | Dist::K0s => pick(
            rng,
            &[
                (25.0, &UBUNTU_2204),
                (15.0, &UBUNTU_2404),
                (10.0, &UBUNTU_2004),
                (10.0, &DEBIAN_12),
                (4.0, &DEBIAN_11),
                (3.0, &CENTOS_7),
                (3.0, &ROCKY_9),
                (1.5, &ROCKY_8),
                (2.0, &ALMA_9),
                (2.0, &RHEL_9),
                (3.0, &FLATCAR_4081),
                (1.5, &FLATCAR_3815),
                (3.5, &TALOS_18),
                (1.5, &TALOS_19),
                (1.5, &FEDORA_COREOS),
                (1.0, &CENTOS_STREAM_9),
                (1.0, &ORACLE_8),
                (0.7, &GARDEN_LINUX),
                (0.5, &NIXOS),
                (0.5, &ARCH),
                (0.4, &NO_IMAGE),
            ],
        ),
        Dist::OpenShift if minor >= NEWEST_MINOR - 8 => &RHCOS_416,
        Dist::OpenShift => &RHCOS_412,
        Dist::Tanzu => pick(rng, &[(6.0, &PHOTON_4), (4.0, &UBUNTU_2204)]),
        Dist::Aliyun => &ALIBABA_LINUX,
        Dist::Tke => &TENCENT_OS,
        Dist::Kind => &DEBIAN_12,
    }
}

/// A second pool's OS: mostly the main pool's, sometimes mid-migration or Windows.
fn second_os(rng: &mut StdRng, dist: Dist, main: &'static Os) -> &'static Os {
    let windows = match dist {
        Dist::Aks => 0.08,
        Dist::Eks | Dist::Gke => 0.02,
        _ => 0.005,
    };
    if rng.random_bool(windows) {
        return pick(rng, &[(3.0, &WINDOWS_2022), (1.0, &WINDOWS_2019)]);
    }
    if rng.random_bool(0.15) {
        return match dist {
            Dist::Eks => &AMAZON_LINUX_2023,
            Dist::Aks => &AZURE_LINUX_3,
            Dist::Gke => &UBUNTU_2204,
            _ => pick(
                rng,
                &[(2.0, &UBUNTU_2404), (1.0, &UBUNTU_2204), (1.0, &DEBIAN_12)],
            ),
        };
    }
    main
}

fn runtime(rng: &mut StdRng, dist: Dist, minor: u32, os: &Os) -> String {
    if os.image.is_some_and(|i| i.starts_with("Windows")) {
        return "containerd://1.7.20+azure".into();
    }
    let n = NEWEST_MINOR;
    if dist == Dist::OpenShift || (dist == Dist::Kubeadm && rng.random_bool(0.06)) {
        return format!("cri-o://1.{minor}.{}", rng.random_range(0..8u32));
    }
    if minor <= n - 14 {
        // Before dockershim was removed (1.24 when 1.37 is the newest).
        return pick(
            rng,
            &[
                (5.0, "docker://20.10.21"),
                (2.0, "docker://19.3.15"),
                (1.0, "docker://18.9.7"),
                (2.0, "containerd://1.4.13"),
                (1.0, "containerd://1.5.18"),
            ],
        )
        .into();
    }
    let suffix = match dist {
        Dist::K3s | Dist::Rke2 => "-k3s1",
        Dist::Aks => "-1",
        _ => "",
    };
    let containerd = if minor >= n - 3 {
        pick(rng, &[(6.0, "2.0.1"), (4.0, "1.7.24")])
    } else if minor >= n - 9 {
        pick(rng, &[(8.0, "1.7.24"), (1.0, "1.7.11"), (1.0, "1.6.36")])
    } else {
        pick(rng, &[(6.0, "1.6.36"), (3.0, "1.6.20"), (1.0, "1.5.18")])
    };
    if matches!(dist, Dist::Kubeadm | Dist::Rke2 | Dist::K0s) && rng.random_bool(0.04) {
        // cri-dockerd.
        return pick(rng, &[(3.0, "docker://24.0.7"), (2.0, "docker://20.10.24")]).into();
    }
    format!("containerd://{containerd}{suffix}")
}

fn cloud(rng: &mut StdRng, dist: Dist) -> Option<&'static str> {
    let some = Some;
    match dist {
        Dist::Gke => some("gce"),
        Dist::Eks => some("aws"),
        Dist::Aks => some("azure"),
        Dist::Aliyun => some("alicloud"),
        Dist::Tke => some("tencentcloud"),
        Dist::Tanzu => some("vsphere"),
        Dist::Kind => some("kind"),
        Dist::K3s => pick(
            rng,
            &[
                (55.0, some("k3s")),
                (30.0, None),
                (5.0, some("hcloud")),
                (4.0, some("aws")),
                (3.0, some("other")),
                (3.0, some("oci")),
            ],
        ),
        Dist::OpenShift => pick(
            rng,
            &[
                (35.0, some("aws")),
                (25.0, some("vsphere")),
                (15.0, None),
                (10.0, some("azure")),
                (10.0, some("openstack")),
                (5.0, some("gce")),
            ],
        ),
        Dist::Rke2 | Dist::Kubeadm | Dist::K0s => pick(
            rng,
            &[
                (40.0, None),
                (10.0, some("aws")),
                (8.0, some("hcloud")),
                (8.0, some("openstack")),
                (8.0, some("vsphere")),
                (5.0, some("digitalocean")),
                (4.0, some("linode")),
                (3.0, some("ovhcloud")),
                (2.0, some("equinixmetal")),
                (2.0, some("oci")),
                (2.0, some("scaleway")),
                (2.0, some("vultr")),
                (1.0, some("upcloud")),
                (1.0, some("exoscale")),
                (1.0, some("kubevirt")),
                (3.0, some("other")),
            ],
        ),
    }
}

/// Total nodes, heavy-tailed: a third of the clusters have one to three nodes, one in two
/// hundred more than a thousand.
fn node_count(rng: &mut StdRng, dist: Dist) -> i64 {
    let small = matches!(dist, Dist::K3s | Dist::Kind);
    let bucket = pick(
        rng,
        &[
            (0.5, (0, 0)),
            (if small { 35.0 } else { 12.0 }, (1, 1)),
            (if small { 22.0 } else { 13.0 }, (2, 3)),
            (28.0, (4, 10)),
            (24.0, (11, 50)),
            (7.0, (51, 100)),
            (5.0, (101, 500)),
            (1.0, (501, 1000)),
            (0.4, (1001, 5000)),
            (0.03, (5001, 8000)),
        ],
    );
    match bucket {
        (0, 0) => 0,
        (lo, hi) => log_uniform(rng, lo, hi),
    }
}

/// Architecture sets: mostly amd64, some arm64, a few of both; 32-bit ARM and RISC-V at the
/// edge, s390x and ppc64le under OpenShift.
fn architectures(rng: &mut StdRng, dist: Dist) -> (&'static str, Option<&'static str>) {
    match dist {
        Dist::K3s => pick(
            rng,
            &[
                (58.0, ("amd64", None)),
                (30.0, ("arm64", None)),
                (3.0, ("arm", None)),
                (7.0, ("amd64", Some("arm64"))),
                (2.0, ("arm64", Some("arm"))),
            ],
        ),
        Dist::Eks => pick(
            rng,
            &[
                (72.0, ("amd64", None)),
                (14.0, ("arm64", None)),
                (14.0, ("amd64", Some("arm64"))),
            ],
        ),
        Dist::OpenShift => pick(
            rng,
            &[
                (95.0, ("amd64", None)),
                (2.0, ("s390x", None)),
                (2.0, ("ppc64le", None)),
                (1.0, ("amd64", Some("arm64"))),
            ],
        ),
        Dist::Kubeadm | Dist::K0s => pick(
            rng,
            &[
                (82.0, ("amd64", None)),
                (10.0, ("arm64", None)),
                (6.5, ("amd64", Some("arm64"))),
                (0.7, ("arm", None)),
                (0.3, ("riscv64", None)),
            ],
        ),
        _ => pick(
            rng,
            &[
                (89.0, ("amd64", None)),
                (4.0, ("arm64", None)),
                (7.0, ("amd64", Some("arm64"))),
            ],
        ),
    }
}

fn capacity(rng: &mut StdRng, dist: Dist) -> Option<(String, String)> {
    if rng.random_bool(0.003) {
        return None;
    }
    let cores: u32 = if matches!(dist, Dist::K3s | Dist::Kind) {
        pick(
            rng,
            &[
                (8.0, 1),
                (25.0, 2),
                (35.0, 4),
                (22.0, 8),
                (8.0, 16),
                (2.0, 32),
            ],
        )
    } else {
        pick(
            rng,
            &[
                (1.0, 1),
                (10.0, 2),
                (24.0, 4),
                (28.0, 8),
                (18.0, 16),
                (10.0, 32),
                (2.0, 48),
                (4.0, 64),
                (1.5, 96),
                (1.0, 128),
                (0.5, 192),
            ],
        )
    };
    let gib_per_core: u64 = pick(rng, &[(12.0, 1), (18.0, 2), (50.0, 4), (20.0, 8)]);
    let gib = u64::from(cores) * gib_per_core;
    // The kubelet reports a little less than the machine has; now and then milli-cores.
    let cpu = if rng.random_bool(0.01) {
        format!("{}m", u64::from(cores) * 1000 - 500)
    } else {
        cores.to_string()
    };
    let memory = format!(
        "{}Ki",
        gib * 1024 * 1024 - rng.random_range(100_000..400_000u64).min(gib * 512 * 1024)
    );
    Some((cpu, memory))
}

fn accelerator(rng: &mut StdRng, dist: Dist) -> Option<(&'static str, &'static str)> {
    let chance = match dist {
        Dist::Gke | Dist::Eks | Dist::Aks | Dist::OpenShift => 0.09,
        Dist::Kind => 0.0,
        _ => 0.04,
    };
    if !rng.random_bool(chance) {
        return None;
    }
    let resource = match dist {
        Dist::Gke if rng.random_bool(0.08) => "google.com/tpu",
        Dist::Eks if rng.random_bool(0.08) => "aws.amazon.com/neuroncore",
        _ => pick(
            rng,
            &[
                (88.0, "nvidia.com/gpu"),
                (5.0, "amd.com/gpu"),
                (3.0, "gpu.intel.com/i915"),
                (1.0, "habana.ai/gaudi"),
                (1.0, "xilinx.com/fpga-xilinx_u30_gen3x4_base_2-0"),
            ],
        ),
    };
    // A device plugin without devices reports zero: not an accelerator.
    let value = pick(rng, &[(40.0, "1"), (20.0, "4"), (30.0, "8"), (10.0, "0")]);
    Some((resource, value))
}

/// Kubelet minus API server minor: pools lag behind an upgraded control plane.
fn skew(rng: &mut StdRng) -> i32 {
    pick(
        rng,
        &[
            (78.0, 0),
            (14.0, -1),
            (5.0, -2),
            (1.5, -3),
            (1.0, -5),
            (0.5, 1),
        ],
    )
}

fn workloads(rng: &mut StdRng, namespaces: i64, nodes: i64) -> Vec<Workload> {
    // A cluster's age, days: half a day to four years, log-uniform.
    let age_days = (rng.random_range(-0.7f64..7.3).exp()).max(0.5);
    let age_hours = (age_days * 24.0) as i64;
    let ns = namespaces.max(1) as f64;
    let mut scale = |lo: f64, hi: f64| (ns * rng.random_range(lo..hi)).round() as i64;
    let pods = scale(2.0, 15.0) + nodes * 3;
    let services = scale(0.5, 3.0);
    let deployments = scale(0.5, 3.0);
    let statefulsets = scale(0.0, 0.6);
    let cronjobs = scale(0.0, 0.5);
    let jobs = if rng.random_bool(0.4) {
        0
    } else {
        log_uniform(rng, 1, 20_000)
    };
    let daemonsets = if nodes > 0 {
        2 + rng.random_range(0..10i64)
    } else {
        0
    };
    let forbidden_all = rng.random_bool(0.02);
    let kinds: [(&str, i64, f64, f64); 7] = [
        ("Pod", pods, 0.02, 0.3),
        ("Service", services, 0.3, 0.9),
        ("Deployment", deployments, 0.2, 0.8),
        ("StatefulSet", statefulsets, 0.2, 0.8),
        ("DaemonSet", daemonsets, 0.3, 0.9),
        ("Job", jobs, 0.0005, 0.02),
        ("CronJob", cronjobs, 0.1, 0.7),
    ];
    let mut out = Vec::new();
    for (kind, total, lo, hi) in kinds {
        if forbidden_all || rng.random_bool(0.01) {
            continue;
        }
        let age = (total > 0 && !rng.random_bool(0.01))
            .then(|| ((age_hours as f64 * rng.random_range(lo..hi)) as i64).max(0));
        out.push(Workload {
            kind,
            total,
            age_median_hours: age,
        });
    }
    out
}

/// Cluster `index` of the population seeded with `seed`.
pub(crate) fn cluster(seed: u64, index: u64) -> Cluster {
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let rng = &mut rng;
    let dist = distribution(rng);
    let minor = pick_minor(rng, dist);
    let patch = pick_patch(rng, minor);
    let master = version(rng, dist, minor, patch);
    let old = minor <= NEWEST_MINOR - 12;
    let v2 = rng.random_bool(if old { 0.35 } else { 0.85 });
    let volunteer = if v2 {
        pick(
            rng,
            &[
                (10.0, "v0.1.0"),
                (25.0, "v0.2.0"),
                (40.0, "v0.3.0"),
                (22.0, "v0.3.1"),
                (3.0, "v0.4.0-rc.1"),
            ],
        )
    } else {
        pick(
            rng,
            &[
                (60.0, "v1.0.0"),
                (30.0, "v1.1.0"),
                (10.0, "v1.0.0-14-g3f1a2b7"),
            ],
        )
    };
    let nodes = node_count(rng, dist);
    let namespaces = (v2 && !rng.random_bool(0.06)).then(|| {
        let mu = 8f64.ln() + 0.35 * (1.0 + nodes as f64).ln();
        ((mu + 0.9 * normal(rng)).exp().round() as i64).clamp(4, 5_000)
    });
    // The volunteer's default period is a day; some run weekly, some restart more often than
    // daily, and some clusters joined, left or lived only days within the window.
    let (period_hours, reports) =
        match pick(rng, &[(45.0, 0), (25.0, 1), (15.0, 2), (10.0, 3), (5.0, 4)]) {
            0 => (24, 28),
            1 => (24, rng.random_range(1..28)),
            2 => (168, 4),
            3 => (24, rng.random_range(1..=3)),
            _ => (12, 56),
        };
    let mut pools = Vec::new();
    if nodes > 0 {
        let main_os = operating_system(rng, dist, minor);
        let (arch, other_arch) = architectures(rng, dist);
        let cloud = cloud(rng, dist);
        let count = if nodes < 2 {
            1
        } else if nodes <= 3 {
            pick(rng, &[(8.0, 1), (2.0, 2)])
        } else {
            pick(rng, &[(55.0, 1), (35.0, 2), (10.0, 3)])
        };
        // A cluster of two architectures has a pool of each.
        let count = if other_arch.is_some() && nodes >= 2 {
            count.max(2)
        } else {
            count
        };
        let mut left = nodes;
        for p in 0..count {
            let size = if p + 1 == count {
                left
            } else {
                let share = if p == 0 {
                    rng.random_range(0.5..0.9)
                } else {
                    rng.random_range(0.3..0.7)
                };
                ((left as f64 * share) as i64).clamp(1, left - (count - p - 1) as i64)
            };
            left -= size;
            let os = if p == 0 {
                main_os
            } else {
                second_os(rng, dist, main_os)
            };
            let lag = if p == 0 && rng.random_bool(0.5) {
                0
            } else {
                skew(rng)
            };
            let kubelet_minor = (minor as i32 + lag).max(9) as u32;
            let kubelet_patch = pick_patch(rng, kubelet_minor);
            let kubelet =
                (!rng.random_bool(0.002)).then(|| version(rng, dist, kubelet_minor, kubelet_patch));
            pools.push(Pool {
                nodes: size,
                os_image: os.image,
                kernel: pick(rng, os.kernels),
                architecture: match (p, other_arch) {
                    (1, Some(a)) => a,
                    _ => arch,
                },
                runtime: runtime(rng, dist, minor, os),
                kubelet,
                cloud,
                capacity: capacity(rng, dist),
                accelerator: if p == 0 && count > 1 {
                    None
                } else {
                    accelerator(rng, dist)
                },
            });
        }
    }
    let workloads = if v2 {
        workloads(rng, namespaces.unwrap_or(10), nodes)
    } else {
        Vec::new()
    };
    Cluster {
        master: (!rng.random_bool(0.002)).then_some(master),
        volunteer,
        v2,
        namespaces,
        reports,
        period_hours,
        pools,
        workloads,
    }
}
