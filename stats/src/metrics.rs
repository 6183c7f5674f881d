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
//! `disclose` publishes it consistently with the parent. A `grouped` metric is one partition
//! per value of its first dimension (per workload kind).
//!
//! The SQL is one file per metric in `sql/metrics/`, portable between SQLite and BigQuery: it
//! reads only the window's tables that each dialect's `window.sql` prepares. Each returns
//! `a, b, c` (the labels, NULL when unused), `clusters`, `nodes`, `max_nodes`.

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
    pub fn column(self) -> &'static str {
        match self {
            Unit::Clusters => "clusters",
            Unit::Nodes => "nodes",
        }
    }
}

/// How cells are listed (`other` is always last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
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
    pub description: &'static str,
    /// Clusters or nodes.
    pub unit: Unit,
    /// Column names of the labels, outermost first.
    pub dimensions: &'static [&'static str],
    /// The first dimension names independent partitions (each counts every unit once).
    pub grouped: bool,
    /// The metric this one refines.
    pub parent: Option<&'static str>,
    /// Listing order of the cells of the last dimension.
    pub order: Order,
    /// The portable SQL, from `sql/metrics/ID.sql`.
    pub sql: &'static str,
}

macro_rules! sql {
    ($id:literal) => {
        include_str!(concat!("../sql/metrics/", $id, ".sql"))
    };
}

/// The window's totals (not a metric: clusters, reports, nodes, clusters with nodes, largest
/// cluster's nodes).
pub const WINDOW_SQL: &str = sql!("window");

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
    },
];

/// Cells that count the same units in different metrics, by construction or nearly always
/// (e.g. clusters without a master version are `unknown` in the minor, patch and distribution
/// metrics; v1 reports are `1` in the schema metric and `v1` in the namespace and workload
/// metrics, kept apart from v2's `unknown` so that no published cell is a subset of another). `disclose` folds each such cell in every metric as soon as it is folded in one:
/// otherwise a cell published in one metric could be subtracted from another metric's
/// `other` and reveal the small cells folded with it.
pub const LINKED: &[&[(&str, &[&str])]] = &[
    &[
        ("clusters_by_kubernetes_minor", &["unknown"]),
        ("clusters_by_kubernetes_patch", &["unknown", "unknown"]),
        ("clusters_by_distribution", &["unknown"]),
    ],
    &[
        ("clusters_by_node_count", &["0"]),
        ("clusters_by_version_skew", &["no nodes"]),
        ("clusters_by_os", &["no nodes"]),
        ("clusters_by_os_version", &["no nodes", "no nodes"]),
        ("clusters_by_kernel", &["no nodes"]),
        ("clusters_by_runtime", &["no nodes"]),
        ("clusters_by_runtime_version", &["no nodes", "no nodes"]),
        ("clusters_by_architecture", &["no nodes"]),
        ("clusters_by_cloud_provider", &["no nodes"]),
        ("clusters_by_accelerator", &["no nodes"]),
    ],
    &[
        ("nodes_by_cpu", &["unknown"]),
        ("nodes_by_memory", &["unknown"]),
    ],
    &[
        ("clusters_by_schema_version", &["1"]),
        ("clusters_by_namespaces", &["v1"]),
        ("clusters_using_workload_kind", &["Pod", "v1"]),
        ("clusters_using_workload_kind", &["Service", "v1"]),
        ("clusters_using_workload_kind", &["Deployment", "v1"]),
        ("clusters_using_workload_kind", &["StatefulSet", "v1"]),
        ("clusters_using_workload_kind", &["DaemonSet", "v1"]),
        ("clusters_using_workload_kind", &["Job", "v1"]),
        ("clusters_using_workload_kind", &["CronJob", "v1"]),
    ],
    &[
        ("clusters_by_namespaces", &["unknown"]),
        ("clusters_using_workload_kind", &["Pod", "unknown"]),
        ("clusters_using_workload_kind", &["Service", "unknown"]),
        ("clusters_using_workload_kind", &["Deployment", "unknown"]),
        ("clusters_using_workload_kind", &["StatefulSet", "unknown"]),
        ("clusters_using_workload_kind", &["DaemonSet", "unknown"]),
        ("clusters_using_workload_kind", &["Job", "unknown"]),
        ("clusters_using_workload_kind", &["CronJob", "unknown"]),
    ],
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
    fn linked_cells_name_real_metrics_and_whole_labels() {
        for group in LINKED {
            for (id, labels) in *group {
                let m = metric(id).unwrap();
                assert_eq!(labels.len(), m.dimensions.len(), "{id}");
            }
        }
        let kinds: Vec<&str> = report::Kind::ALL.iter().map(|k| k.as_str()).collect();
        for group in &LINKED[3..5] {
            let linked: Vec<&str> = group
                .iter()
                .filter(|(id, _)| *id == "clusters_using_workload_kind")
                .map(|(_, l)| l[0])
                .collect();
            assert_eq!(
                kinds, linked,
                "every workload kind's unknown and v1 are linked"
            );
        }
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
