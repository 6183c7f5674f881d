//! What `collect` read from the cluster, as plain values: no Kubernetes types cross
//! into `anonymize`. A snapshot still holds identifying values (UIDs, provider IDs);
//! only `anonymize` decides what leaves the process.

use std::collections::HashMap;

use report::{Kind, SkipReason};

/// One collected section, or why it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section<T> {
    /// Collected.
    Ok(T),
    /// Not collected.
    Skipped(SkipReason),
}

/// Everything one report is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When collection started, UNIX seconds.
    pub(crate) taken_at: i64,
    /// The API server's `gitVersion`.
    pub master_version: Section<String>,
    /// Every node.
    pub nodes: Section<Vec<NodeSnapshot>>,
    /// The names of every namespace (to count them, and the empty ones per kind).
    pub namespaces: Section<Vec<String>>,
    /// Per workload kind, what was counted, in [`Kind::ALL`] order.
    pub workloads: Section<Vec<(Kind, Section<KindCounts>)>>,
    /// The operator's extensions, as read.
    pub(crate) extensions: Section<Vec<(String, String)>>,
}

/// One node, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.providerID`.
    pub(crate) provider_id: Option<String>,
    /// `status.nodeInfo.operatingSystem`.
    pub(crate) operating_system: Option<String>,
    /// `status.nodeInfo.osImage`.
    pub(crate) os_image: Option<String>,
    /// `status.nodeInfo.kernelVersion`.
    pub(crate) kernel_version: Option<String>,
    /// `status.nodeInfo.architecture`.
    pub(crate) architecture: Option<String>,
    /// `status.nodeInfo.containerRuntimeVersion`.
    pub(crate) container_runtime_version: Option<String>,
    /// `status.nodeInfo.kubeletVersion`.
    pub(crate) kubelet_version: Option<String>,
    /// `status.capacity`, name and quantity.
    pub(crate) capacity: Vec<(String, String)>,
}

/// The objects of one kind, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Objects of this kind in the cluster.
    pub total: u64,
    /// How many objects each namespace holds: all of them, or a sample.
    pub per_namespace: NamespaceCounts,
    /// The age of every object, in seconds: when read from a Table (the API server prints ages
    /// so), exact to the hour below 8 days, to the day from 8 days, to the year from 8 years;
    /// exact otherwise.
    pub ages: Vec<u64>,
}

/// Objects of one kind per namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceCounts {
    /// Every namespace's count, by name; a namespace without objects may be absent.
    Every(HashMap<String, u64>),
    /// The counts in `counts.len()` namespaces drawn at random, without replacement, from the
    /// `of` namespaces of the namespace list. Names are not kept.
    Sample {
        /// One count per drawn namespace, zeros included.
        counts: Vec<u64>,
        /// How many namespaces they were drawn from.
        of: u64,
    },
}

impl Default for NamespaceCounts {
    fn default() -> Self {
        Self::Every(HashMap::new())
    }
}
