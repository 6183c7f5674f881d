//! The metrics: what each one counts, its columns, and the SQL that computes its raw cells.
//!
//! Every metric is a partition of one unit, clusters or nodes: each unit of the window is in
//! exactly one cell (with an explicit `unknown` or `no nodes` cell where reports lack the
//! data), so the cells add up to the window's total. Cluster-unit metrics give each cluster
//! one value (its minor version, the OS family most of its nodes run, the *set* of its
//! architectures, its worst node's skew); node-unit metrics count nodes and publish only node
//! counts.
//!
//! A metric may refine another (`parent`): its first dimensions are the parent's, and
//! `disclose` publishes it consistently with the parent. Each metric says which values it can
//! have ([`Domain`]: closed, open, or what another metric published) and how much of the
//! budget it spends ([`Measure`]). A `grouped` metric is one partition
//! per value of its first dimension (per workload kind). It also says where the dashboard
//! shows it (`Section`, and whether it is drawn over time): [`METRICS`] is the one list of
//! metrics, which the snapshot, the dashboard and the tests all read.
//!
//! The SQL is one file per metric in `sql/metrics/`, portable between SQLite and BigQuery: it
//! reads only the window's tables that each dialect's `window.sql` prepares. Each returns
//! `a, b, c` (the labels, NULL when unused), `clusters`, `nodes`, `max_nodes`.

use crate::normalize::{
    ARCHITECTURES, CLOUD_PROVIDERS, DISTRIBUTION_RULES, FamilyRule, OS_RULES, OTHER, RUNTIME_RULES,
    UNKNOWN,
};

/// What a metric counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Distinct clusters, each in one cell.
    Clusters,
    /// Nodes of the clusters' latest reports, each in one cell.
    Nodes,
}

impl Unit {
    /// The column name of the count.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Unit::Clusters => "clusters",
            Unit::Nodes => "nodes",
        }
    }
}

/// How cells are listed (`other` is always last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Largest count first.
    Count,
    /// By version number, newest first (e.g. 1.37 before 1.9).
    Version,
    /// In the order of these labels (ordered buckets), others after them by count.
    Fixed(&'static [&'static str]),
}

/// One metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Identifier, also the file name of its CSV and JSON.
    pub id: &'static str,
    /// A heading for people.
    pub title: &'static str,
    /// What is counted, for the schema document and the JSON.
    pub(crate) description: &'static str,
    /// Clusters or nodes.
    pub unit: Unit,
    /// Column names of the labels, outermost first.
    pub dimensions: &'static [&'static str],
    /// The first dimension names independent partitions (each counts every unit once).
    pub grouped: bool,
    /// The metric this one refines.
    pub parent: Option<&'static str>,
    /// Listing order of the cells of the last dimension.
    pub(crate) order: Order,
    /// The portable SQL, from `sql/metrics/ID.sql`.
    pub(crate) sql: &'static str,
    /// Which values the metric can have, and so how they are released.
    pub domain: Domain,
    /// How it is measured: with its own noise, or by adding up a finer metric's noisy cells.
    pub measure: Measure,
    /// The part of the dashboard it is shown in.
    pub(crate) section: Section,
    /// What its curve shows, when the dashboard also draws it over time (an adoption curve of
    /// its shares).
    pub over_time: Option<&'static str>,
}

/// The parts of the dashboard, in the page's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// Versions, distributions and skew.
    Kubernetes,
    /// Operating systems and kernels.
    Os,
    /// Container runtimes.
    Runtimes,
    /// Architectures, clouds, sizes and accelerators.
    Machines,
    /// Namespaces and workloads.
    Workloads,
    /// The reports themselves (data quality: schema and volunteer versions).
    Reports,
}

impl Section {
    /// Every section, in the page's order.
    pub(crate) const ALL: [Section; 6] = [
        Section::Kubernetes,
        Section::Os,
        Section::Runtimes,
        Section::Machines,
        Section::Workloads,
        Section::Reports,
    ];

    /// Its anchor on the page.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Section::Kubernetes => "kubernetes",
            Section::Os => "os",
            Section::Runtimes => "runtimes",
            Section::Machines => "machines",
            Section::Workloads => "workloads",
            Section::Reports => "reports",
        }
    }

    /// Its heading.
    pub(crate) fn heading(self) -> &'static str {
        match self {
            Section::Kubernetes => "Kubernetes versions",
            Section::Os => "Operating systems and kernels",
            Section::Runtimes => "Container runtimes",
            Section::Machines => "Machines and clouds",
            Section::Workloads => "Namespaces and workloads",
            Section::Reports => "The reports themselves",
        }
    }
}

/// Which values (labels of the last dimension) a metric can have.
// Metrics are compared field by field in tests; two `Closed` functions that list the same
// labels being unequal would only make such a comparison stricter.
#[allow(unpredictable_function_pointer_comparisons)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Known in advance (an allowlist, buckets): every one is measured, zeros included, so
    /// which cells exist says nothing about the data.
    Closed(fn() -> Vec<&'static str>),
    /// Known in advance per value of the middle dimension (grouped metrics: kind, use, value).
    ClosedUnder(&'static [(&'static str, &'static [&'static str])]),
    /// From the data (versions, kernels, sets): a value is released only when its noisy count
    /// clears the selection threshold. The label tuples in `always` are measured whatever the
    /// data, like a closed domain's.
    Open {
        /// Label tuples known in advance (`unknown`, `no nodes`).
        always: &'static [&'static [&'static str]],
    },
    /// The values the cluster metric `from` (same dimensions) published in this snapshot, and
    /// `other` for the rest: closed once `from` is released, so no selection is needed.
    Published {
        /// The cluster metric.
        from: &'static str,
    },
}

/// How a metric's noisy cells are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Its own noise, with this weight in the split of the budget.
    Noise(u32),
    /// The sum of this finer metric's noisy cells over its last dimension (it must refine this
    /// one and have a closed domain): costs nothing.
    SumOf(&'static str),
}

impl Measure {
    /// Its weight in the split of the budget.
    pub fn weight(self) -> u32 {
        match self {
            Measure::Noise(w) => w,
            Measure::SumOf(_) => 0,
        }
    }
}

macro_rules! sql {
    ($id:literal) => {
        include_str!(concat!("../sql/metrics/", $id, ".sql"))
    };
}

/// The window's totals (not a metric: clusters, reports, nodes, clusters with nodes, largest
/// cluster's nodes).
pub(crate) const WINDOW_SQL: &str = sql!("window");

// Bucket labels in order, for `Order::Fixed`; the bucket tables themselves live in `normalize`
// (a test keeps the two in step).
const SKEW_ORDER: &[&str] = &[
    "-4 or less",
    "-3",
    "-2",
    "-1",
    "0",
    "+1 or more",
    "unknown",
    "no nodes",
];
const NODE_COUNT_ORDER: &[&str] = &[
    "0",
    "1",
    "2-3",
    "4-10",
    "11-50",
    "51-100",
    "101-500",
    "501-1000",
    "1001-5000",
    "5001+",
];
const CPU_ORDER: &[&str] = &[
    "1", "2", "3-4", "5-8", "9-16", "17-32", "33-64", "65-128", "129+", "unknown",
];
const MEMORY_ORDER: &[&str] = &[
    "0-2 GiB",
    "2-4 GiB",
    "4-8 GiB",
    "8-16 GiB",
    "16-32 GiB",
    "32-64 GiB",
    "64-128 GiB",
    "128-256 GiB",
    "256-512 GiB",
    "512+ GiB",
    "unknown",
];
const NAMESPACE_ORDER: &[&str] = &[
    "1-5", "6-10", "11-20", "21-50", "51-100", "101-500", "501-1000", "1001+", "unknown", "v1",
];
const OBJECT_ORDER: &[&str] = &[
    "0",
    "1-10",
    "11-100",
    "101-1000",
    "1001-10000",
    "10001+",
    "unknown",
    "v1",
];
const AGE_ORDER: &[&str] = &[
    "under 1 day",
    "1-7 days",
    "7-30 days",
    "30-90 days",
    "90-365 days",
    "1 year+",
    "no objects",
    "unknown",
    "v1",
];
const USES_ORDER: &[&str] = &["yes", "no", "unknown", "v1"];
const SCHEMA_ORDER: &[&str] = &["1", "2"];

/// Objects per cluster under each use: a kind in use has a non-zero bucket; the others have
/// exactly one value, equal to their parent cell.
const OBJECTS_UNDER: &[(&str, &[&str])] = &[
    (
        "yes",
        &["1-10", "11-100", "101-1000", "1001-10000", "10001+"],
    ),
    ("no", &["0"]),
    ("unknown", &["unknown"]),
    ("v1", &["v1"]),
];
/// Median ages under each use.
const AGES_UNDER: &[(&str, &[&str])] = &[
    (
        "yes",
        &[
            "under 1 day",
            "1-7 days",
            "7-30 days",
            "30-90 days",
            "90-365 days",
            "1 year+",
            "unknown",
        ],
    ),
    ("no", &["no objects"]),
    ("unknown", &["unknown"]),
    ("v1", &["v1"]),
];

fn schema_labels() -> Vec<&'static str> {
    let mut labels = SCHEMA_ORDER.to_vec();
    labels.push(OTHER);
    labels
}

/// A family table's families (in table order, once each), `other` and `unknown`.
fn family_labels(rules: &[FamilyRule]) -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = Vec::new();
    for r in rules {
        if !labels.contains(&r.family) {
            labels.push(r.family);
        }
    }
    labels.extend([OTHER, UNKNOWN]);
    labels
}

fn distribution_labels() -> Vec<&'static str> {
    family_labels(DISTRIBUTION_RULES)
}

/// An allowlist, `other` and `unknown`.
fn allow_labels(list: &[&'static str]) -> Vec<&'static str> {
    let mut labels = list.to_vec();
    labels.extend([OTHER, UNKNOWN]);
    labels
}

/// A node value's labels as a cluster metric's: plus `no nodes`.
fn cluster_labels(mut labels: Vec<&'static str>) -> Vec<&'static str> {
    labels.push(NO_NODES);
    labels
}

fn node_skew_labels() -> Vec<&'static str> {
    SKEW_ORDER
        .iter()
        .copied()
        .filter(|l| *l != NO_NODES)
        .collect()
}

/// The label of a cluster without nodes, in every cluster metric of node values.
pub(crate) const NO_NODES: &str = "no nodes";

/// Every published metric, parents before the metrics that refine them.
pub const METRICS: &[Metric] = &[
    Metric {
        id: "clusters_by_schema_version",
        title: "Report schema version",
        description: "Clusters by the schema version of their latest report (1: the original format; 2: with workload statistics).",
        unit: Unit::Clusters,
        dimensions: &["schema_version"],
        grouped: false,
        parent: None,
        order: Order::Fixed(SCHEMA_ORDER),
        sql: sql!("clusters_by_schema_version"),
        domain: Domain::Closed(schema_labels),
        section: Section::Reports,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_volunteer_version",
        title: "Volunteer version",
        description: "Clusters by the version of the volunteer that sent their latest report, when it has the shape vX.Y.Z; else other.",
        unit: Unit::Clusters,
        dimensions: &["volunteer_version"],
        grouped: false,
        parent: None,
        order: Order::Version,
        sql: sql!("clusters_by_volunteer_version"),
        domain: Domain::Open { always: &[] },
        section: Section::Reports,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_kubernetes_minor",
        title: "Kubernetes minor version",
        description: "Clusters by the minor version of their API server (masterVersion).",
        unit: Unit::Clusters,
        dimensions: &["minor"],
        grouped: false,
        parent: None,
        order: Order::Version,
        sql: sql!("clusters_by_kubernetes_minor"),
        domain: Domain::Open {
            always: &[&["unknown"]],
        },
        section: Section::Kubernetes,
        over_time: Some("Kubernetes minor versions: share of clusters"),
        measure: Measure::Noise(2),
    },
    Metric {
        id: "clusters_by_kubernetes_patch",
        title: "Kubernetes patch version",
        description: "Clusters by the minor and patch version of their API server; refines clusters_by_kubernetes_minor.",
        unit: Unit::Clusters,
        dimensions: &["minor", "patch"],
        grouped: false,
        parent: Some("clusters_by_kubernetes_minor"),
        order: Order::Version,
        sql: sql!("clusters_by_kubernetes_patch"),
        domain: Domain::Open {
            always: &[&["unknown", "unknown"]],
        },
        section: Section::Kubernetes,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "clusters_by_distribution",
        title: "Distribution",
        description: "Clusters by distribution flavor, recognised from an allowlist of suffixes of the API server's version (e.g. -gke., -eks-, +k3s, +rke2); `no suffix` for a plain vX.Y.Z; else other.",
        unit: Unit::Clusters,
        dimensions: &["distribution"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("clusters_by_distribution"),
        domain: Domain::Closed(distribution_labels),
        section: Section::Kubernetes,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "clusters_by_version_skew",
        title: "Version skew (worst node per cluster)",
        description: "Clusters by the version skew of their worst node: kubelet minor minus API server minor, the value farthest from 0 (the positive one on a tie).",
        unit: Unit::Clusters,
        dimensions: &["skew"],
        grouped: false,
        parent: None,
        order: Order::Fixed(SKEW_ORDER),
        sql: sql!("clusters_by_version_skew"),
        domain: Domain::Closed(|| SKEW_ORDER.to_vec()),
        section: Section::Kubernetes,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "nodes_by_version_skew",
        title: "Version skew (nodes)",
        description: "Nodes by version skew: kubelet minor minus API server minor.",
        unit: Unit::Nodes,
        dimensions: &["skew"],
        grouped: false,
        parent: None,
        order: Order::Fixed(SKEW_ORDER),
        sql: sql!("nodes_by_version_skew"),
        domain: Domain::Closed(node_skew_labels),
        section: Section::Kubernetes,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_os",
        title: "Operating system (clusters)",
        description: "Clusters by the OS family most of their nodes run, normalized from osImage.",
        unit: Unit::Clusters,
        dimensions: &["os"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("clusters_by_os"),
        domain: Domain::Closed(|| cluster_labels(family_labels(OS_RULES))),
        section: Section::Os,
        over_time: Some("Operating system families: share of clusters"),
        measure: Measure::Noise(2),
    },
    Metric {
        id: "clusters_by_os_version",
        title: "Operating system and version (clusters)",
        description: "Clusters by the OS family most of their nodes run and the version most of those nodes run; refines clusters_by_os.",
        unit: Unit::Clusters,
        dimensions: &["os", "version"],
        grouped: false,
        parent: Some("clusters_by_os"),
        order: Order::Version,
        sql: sql!("clusters_by_os_version"),
        domain: Domain::Open {
            always: &[&["unknown", "unknown"], &["no nodes", "no nodes"]],
        },
        section: Section::Os,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "nodes_by_os",
        title: "Operating system (nodes)",
        description: "Nodes by OS family, normalized from osImage.",
        unit: Unit::Nodes,
        dimensions: &["os"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("nodes_by_os"),
        domain: Domain::Closed(|| family_labels(OS_RULES)),
        section: Section::Os,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "nodes_by_os_version",
        title: "Operating system and version (nodes)",
        description: "Nodes by OS family and version; refines nodes_by_os.",
        unit: Unit::Nodes,
        dimensions: &["os", "version"],
        grouped: false,
        parent: Some("nodes_by_os"),
        order: Order::Version,
        sql: sql!("nodes_by_os_version"),
        domain: Domain::Published {
            from: "clusters_by_os_version",
        },
        section: Section::Os,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_kernel",
        title: "Kernel (clusters)",
        description: "Clusters by the kernel major.minor most of their nodes run.",
        unit: Unit::Clusters,
        dimensions: &["kernel"],
        grouped: false,
        parent: None,
        order: Order::Version,
        sql: sql!("clusters_by_kernel"),
        domain: Domain::Open {
            always: &[&["unknown"], &["no nodes"]],
        },
        section: Section::Os,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "nodes_by_kernel",
        title: "Kernel (nodes)",
        description: "Nodes by kernel major.minor.",
        unit: Unit::Nodes,
        dimensions: &["kernel"],
        grouped: false,
        parent: None,
        order: Order::Version,
        sql: sql!("nodes_by_kernel"),
        domain: Domain::Published {
            from: "clusters_by_kernel",
        },
        section: Section::Os,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_runtime",
        title: "Container runtime (clusters)",
        description: "Clusters by the container runtime most of their nodes run.",
        unit: Unit::Clusters,
        dimensions: &["runtime"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("clusters_by_runtime"),
        domain: Domain::Closed(|| cluster_labels(family_labels(RUNTIME_RULES))),
        section: Section::Runtimes,
        over_time: Some("Container runtimes: share of clusters"),
        measure: Measure::Noise(2),
    },
    Metric {
        id: "clusters_by_runtime_version",
        title: "Container runtime and version (clusters)",
        description: "Clusters by the container runtime most of their nodes run and the minor version most of those nodes run; refines clusters_by_runtime.",
        unit: Unit::Clusters,
        dimensions: &["runtime", "version"],
        grouped: false,
        parent: Some("clusters_by_runtime"),
        order: Order::Version,
        sql: sql!("clusters_by_runtime_version"),
        domain: Domain::Open {
            always: &[&["unknown", "unknown"], &["no nodes", "no nodes"]],
        },
        section: Section::Runtimes,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "nodes_by_runtime",
        title: "Container runtime (nodes)",
        description: "Nodes by container runtime.",
        unit: Unit::Nodes,
        dimensions: &["runtime"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("nodes_by_runtime"),
        domain: Domain::Closed(|| family_labels(RUNTIME_RULES)),
        section: Section::Runtimes,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "nodes_by_runtime_version",
        title: "Container runtime and version (nodes)",
        description: "Nodes by container runtime and its minor version; refines nodes_by_runtime.",
        unit: Unit::Nodes,
        dimensions: &["runtime", "version"],
        grouped: false,
        parent: Some("nodes_by_runtime"),
        order: Order::Version,
        sql: sql!("nodes_by_runtime_version"),
        domain: Domain::Published {
            from: "clusters_by_runtime_version",
        },
        section: Section::Runtimes,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_architecture",
        title: "Architectures (clusters)",
        description: "Clusters by the set of architectures of their nodes, e.g. amd64+arm64.",
        unit: Unit::Clusters,
        dimensions: &["architectures"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("clusters_by_architecture"),
        domain: Domain::Open {
            always: &[&["unknown"], &["no nodes"]],
        },
        section: Section::Machines,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "nodes_by_architecture",
        title: "Architecture (nodes)",
        description: "Nodes by architecture.",
        unit: Unit::Nodes,
        dimensions: &["architecture"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("nodes_by_architecture"),
        domain: Domain::Closed(|| allow_labels(ARCHITECTURES)),
        section: Section::Machines,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_cloud_provider",
        title: "Cloud provider (clusters)",
        description: "Clusters by the cloud provider most of their nodes name.",
        unit: Unit::Clusters,
        dimensions: &["cloud_provider"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("clusters_by_cloud_provider"),
        domain: Domain::Closed(|| cluster_labels(allow_labels(CLOUD_PROVIDERS))),
        section: Section::Machines,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "nodes_by_cloud_provider",
        title: "Cloud provider (nodes)",
        description: "Nodes by cloud provider.",
        unit: Unit::Nodes,
        dimensions: &["cloud_provider"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("nodes_by_cloud_provider"),
        domain: Domain::Closed(|| allow_labels(CLOUD_PROVIDERS)),
        section: Section::Machines,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_node_count",
        title: "Nodes per cluster",
        description: "Clusters by their number of nodes.",
        unit: Unit::Clusters,
        dimensions: &["nodes"],
        grouped: false,
        parent: None,
        order: Order::Fixed(NODE_COUNT_ORDER),
        sql: sql!("clusters_by_node_count"),
        domain: Domain::Closed(|| NODE_COUNT_ORDER.to_vec()),
        section: Section::Machines,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "nodes_by_cpu",
        title: "CPU per node",
        description: "Nodes by CPU capacity in cores (a bucket holds values up to its upper bound).",
        unit: Unit::Nodes,
        dimensions: &["cores"],
        grouped: false,
        parent: None,
        order: Order::Fixed(CPU_ORDER),
        sql: sql!("nodes_by_cpu"),
        domain: Domain::Closed(|| CPU_ORDER.to_vec()),
        section: Section::Machines,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "nodes_by_memory",
        title: "Memory per node",
        description: "Nodes by memory capacity (a bucket holds values above its lower and up to its upper bound).",
        unit: Unit::Nodes,
        dimensions: &["memory"],
        grouped: false,
        parent: None,
        order: Order::Fixed(MEMORY_ORDER),
        sql: sql!("nodes_by_memory"),
        domain: Domain::Closed(|| MEMORY_ORDER.to_vec()),
        section: Section::Machines,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_by_accelerator",
        title: "Accelerators",
        description: "Clusters by the set of accelerator vendors with a non-zero capacity on their nodes (none: no accelerator).",
        unit: Unit::Clusters,
        dimensions: &["accelerators"],
        grouped: false,
        parent: None,
        order: Order::Count,
        sql: sql!("clusters_by_accelerator"),
        domain: Domain::Open {
            always: &[&["none"], &["no nodes"]],
        },
        section: Section::Machines,
        over_time: None,
        measure: Measure::Noise(2),
    },
    Metric {
        id: "clusters_by_namespaces",
        title: "Namespaces per cluster",
        description: "Clusters by their number of namespaces (v1: a v1 report, whose schema has none; unknown: a v2 report whose volunteer was not allowed to count them).",
        unit: Unit::Clusters,
        dimensions: &["namespaces"],
        grouped: false,
        parent: None,
        order: Order::Fixed(NAMESPACE_ORDER),
        sql: sql!("clusters_by_namespaces"),
        domain: Domain::Closed(|| NAMESPACE_ORDER.to_vec()),
        section: Section::Workloads,
        over_time: None,
        measure: Measure::Noise(1),
    },
    Metric {
        id: "clusters_using_workload_kind",
        title: "Workload kinds in use",
        description: "Per workload kind, clusters that have objects of it (yes), have none (no), sent a v1 report (v1), or did not report it (unknown).",
        unit: Unit::Clusters,
        dimensions: &["kind", "uses"],
        grouped: true,
        parent: None,
        order: Order::Fixed(USES_ORDER),
        sql: sql!("clusters_using_workload_kind"),
        domain: Domain::Closed(|| USES_ORDER.to_vec()),
        section: Section::Workloads,
        over_time: None,
        measure: Measure::SumOf("clusters_by_workload_objects"),
    },
    Metric {
        id: "clusters_by_workload_objects",
        title: "Objects per cluster, by workload kind",
        description: "Per workload kind, clusters by their number of objects of it; refines clusters_using_workload_kind.",
        unit: Unit::Clusters,
        dimensions: &["kind", "uses", "objects"],
        grouped: true,
        parent: Some("clusters_using_workload_kind"),
        order: Order::Fixed(OBJECT_ORDER),
        sql: sql!("clusters_by_workload_objects"),
        domain: Domain::ClosedUnder(OBJECTS_UNDER),
        section: Section::Workloads,
        over_time: None,
        measure: Measure::Noise(4),
    },
    Metric {
        id: "clusters_by_workload_age",
        title: "Median object age, by workload kind",
        description: "Per workload kind, clusters by the median age of their objects of it; refines clusters_using_workload_kind.",
        unit: Unit::Clusters,
        dimensions: &["kind", "uses", "median_age"],
        grouped: true,
        parent: Some("clusters_using_workload_kind"),
        order: Order::Fixed(AGE_ORDER),
        sql: sql!("clusters_by_workload_age"),
        domain: Domain::ClosedUnder(AGES_UNDER),
        section: Section::Workloads,
        over_time: None,
        measure: Measure::Noise(4),
    },
];

/// The metric with this id.
pub fn metric(id: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.id == id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::normalize::*;

    #[test]
    fn parents_come_first_and_share_their_dimensions() {
        for (i, m) in METRICS.iter().enumerate() {
            assert_eq!(
                METRICS.iter().filter(|o| o.id == m.id).count(),
                1,
                "{}",
                m.id
            );
            if let Some(parent) = m.parent {
                let p = METRICS.iter().position(|o| o.id == parent).unwrap();
                assert!(p < i, "{} before {}", parent, m.id);
                let p = &METRICS[p];
                assert_eq!(p.unit, m.unit);
                assert_eq!(p.grouped, m.grouped);
                assert_eq!(&m.dimensions[..p.dimensions.len()], p.dimensions);
                assert_eq!(m.dimensions.len(), p.dimensions.len() + 1);
            }
            assert!(m.dimensions.len() <= 3, "{}: a, b, c", m.id);
        }
    }

    #[test]
    fn derived_metrics_add_up_a_closed_refinement_and_published_domains_come_from_earlier_metrics()
    {
        for (i, m) in METRICS.iter().enumerate() {
            if let Measure::SumOf(child) = m.measure {
                let c = metric(child).unwrap();
                assert_eq!(c.parent, Some(m.id), "{child} refines {}", m.id);
                assert!(matches!(c.domain, Domain::ClosedUnder(_)), "{child}");
                assert!(matches!(c.measure, Measure::Noise(_)), "{child}");
            }
            if let Domain::Published { from } = m.domain {
                let f = METRICS.iter().position(|o| o.id == from).unwrap();
                assert!(f < i, "{from} before {}", m.id);
                assert_eq!(METRICS[f].dimensions, m.dimensions);
                assert_eq!(METRICS[f].unit, Unit::Clusters);
            }
            if let Domain::Open { always } = m.domain {
                assert!(
                    always.iter().all(|l| l.len() == m.dimensions.len()),
                    "{}",
                    m.id
                );
            }
            if let Domain::ClosedUnder(under) = m.domain {
                let parent = metric(m.parent.unwrap()).unwrap();
                let Domain::Closed(labels) = parent.domain else {
                    panic!("{}: a closed parent", m.id)
                };
                let middles: Vec<&str> = under.iter().map(|(u, _)| *u).collect();
                assert_eq!(middles, labels(), "{}", m.id);
            }
        }
    }

    #[test]
    fn a_metric_drawn_over_time_has_one_dimension_of_clusters() {
        // The dashboard's curves read `date, label, count, share` and are shares of clusters.
        for m in METRICS.iter().filter(|m| m.over_time.is_some()) {
            assert_eq!(m.dimensions.len(), 1, "{}", m.id);
            assert!(!m.grouped, "{}", m.id);
            assert_eq!(m.unit, Unit::Clusters, "{}", m.id);
        }
    }

    #[test]
    fn the_values_under_each_use_are_the_buckets_in_their_order() {
        let kept = |order: &[&'static str], out: &[&str]| -> Vec<&'static str> {
            order.iter().copied().filter(|l| !out.contains(l)).collect()
        };
        let yes = |under: &[(&str, &'static [&'static str])]| under[0].1.to_vec();
        assert_eq!(
            yes(OBJECTS_UNDER),
            kept(OBJECT_ORDER, &["0", "unknown", "v1"])
        );
        assert_eq!(yes(AGES_UNDER), kept(AGE_ORDER, &["no objects", "v1"]));
    }

    #[test]
    fn fixed_orders_list_every_bucket_label() {
        for (buckets, order) in [
            (CPU_BUCKETS, CPU_ORDER),
            (MEMORY_BUCKETS, MEMORY_ORDER),
            (NAMESPACE_BUCKETS, NAMESPACE_ORDER),
            (OBJECT_BUCKETS, OBJECT_ORDER),
        ] {
            let order: Vec<&str> = order.iter().copied().filter(|l| *l != "v1").collect();
            assert_eq!(buckets.labels(), order);
        }
        let mut nodes = NODE_COUNT_BUCKETS.labels();
        nodes.pop();
        assert_eq!(nodes, NODE_COUNT_ORDER.to_vec());
        for label in SKEW_BUCKETS.labels() {
            assert!(SKEW_ORDER.contains(&label));
        }
        for label in AGE_BUCKETS.labels() {
            assert!(AGE_ORDER.contains(&label));
        }
    }

    #[test]
    fn every_sql_file_selects_the_common_columns() {
        for sql in METRICS.iter().map(|m| m.sql).chain([WINDOW_SQL]) {
            for column in [" AS a", " AS b", " AS c", " AS clusters", " AS nodes"] {
                assert!(sql.contains(column), "{column} in\n{sql}");
            }
            assert!(!sql.contains(';'), "one statement:\n{sql}");
        }
    }
}
