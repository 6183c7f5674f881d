//! The report as it travels on the wire (JSON, camelCase).
//!
//! Version 1 is the original Spartakus format, kept field for field so that
//! volunteers already in the field are accepted unchanged. Everything added
//! since is optional, so a v1 body is a valid report of every later version.
//!
//! Unknown fields are rejected: what the collector accepts is an allowlist, and
//! that allowlist is part of the privacy promise. Extensions are the one open map.

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// One report: a snapshot of one cluster at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    /// Build version of the volunteer that wrote the report, e.g. `v1.0.0`.
    /// Required, at most 256 bytes. Identifies software shared by every
    /// volunteer of that release, not a cluster.
    pub version: String,
    /// When the volunteer wrote the report, UNIX seconds as a decimal string
    /// (v1 sends a string), 1–20 digits. The collector also records its own
    /// `receivedAt`, which is the time analyses should trust. Says when, not
    /// who: a report is sent on a timer, not on a user's action.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub timestamp: Option<String>,
    /// Cluster identifier. Required, 1–128 characters of `[A-Za-z0-9._:-]`.
    /// A random UUID in v1; a keyed hash the collector cannot reverse in v2
    /// (see the volunteer's `anonymize` module). Links reports of one cluster
    /// over time, never to its owner: the charset keeps out e-mail addresses
    /// and free text.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// `gitVersion` of the Kubernetes API server, e.g. `v1.37.2`. A public
    /// release string shared by every cluster on that release.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub master_version: Option<String>,
    /// One entry per node, at most [`MAX_NODES`](crate::MAX_NODES). Each node
    /// is identified only by a keyed hash; node names and addresses are never sent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "capped::<_, _, { crate::MAX_NODES }>"
    )]
    pub nodes: Option<Vec<Node>>,
    /// Free-form key/value pairs the operator chose to add, from a file they
    /// control (`--extensions`); at most 64. The one open map: what it says is
    /// the operator's explicit choice, and nothing is put there by default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "capped::<_, _, { crate::validate::MAX_EXTENSIONS }>"
    )]
    pub extensions: Option<Vec<Extension>>,

    // ---- Additions since v1: all optional. ----
    /// Idempotency key for the whole pipeline: a UUID the volunteer draws once
    /// per report and reuses on every retry. Random, so it carries no
    /// information about the cluster.
    #[serde(rename = "reportID", default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    /// Version of this schema the report follows, 1 or 2; absent means 1.
    /// Describes the software, not the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Number of namespaces in the cluster. A count, never a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<u64>,
    /// Object counts and ages per workload kind. Counts and coarse ages only,
    /// never names. ConfigMaps and Secrets are never counted: the permission
    /// to list them would expose their contents.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "capped::<_, _, { Kind::ALL.len() }>"
    )]
    pub workloads: Option<Vec<WorkloadStats>>,
    /// Sections the volunteer could not collect, and why (e.g. the operator
    /// granted only the minimal role). Names sections of this schema only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "capped::<_, _, { crate::validate::SECTIONS.len() }>"
    )]
    pub skipped: Option<Vec<Skipped>>,
    /// SHA-256 of the cluster's erasure secret, 64 lowercase hex characters
    /// ([`crate::erasure`]). The secret never leaves the cluster until the
    /// operator asks the collector to erase the cluster's reports; then only
    /// the reports carrying this check are erased. A hash of a keyed secret:
    /// it names nothing and cannot be reversed.
    #[serde(
        rename = "erasureCheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub erasure_check: Option<String>,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// Keyed hash of the node's UID, 32 lowercase hex characters (the rule
    /// allows 1–64 of `[A-Za-z0-9_-]`, which v1's MD5 hex also meets). The
    /// key never leaves the cluster, so the collector cannot recover the node.
    /// What the collector stores is this ID re-keyed under its own key
    /// ([`crate::node_id`]), whatever the client sent.
    pub id: String,
    /// `status.nodeInfo.operatingSystem`, e.g. `linux`. Like every node
    /// string below, at most 256 bytes and a release or platform name shared
    /// by many machines.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub operating_system: Option<String>,
    /// `status.nodeInfo.osImage`, e.g. `Ubuntu 24.04.1 LTS`: a distribution
    /// release string.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub os_image: Option<String>,
    /// `status.nodeInfo.kernelVersion`, e.g. `6.8.0-1015-gke`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub kernel_version: Option<String>,
    /// `status.nodeInfo.architecture`, e.g. `amd64`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub architecture: Option<String>,
    /// `status.nodeInfo.containerRuntimeVersion`, e.g. `containerd://2.0.1`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub container_runtime_version: Option<String>,
    /// `status.nodeInfo.kubeletVersion`, e.g. `v1.37.2`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub kubelet_version: Option<String>,
    /// The scheme of `spec.providerID` when it names a public provider on the
    /// volunteer's allowlist (e.g. `gce`, `aws`), else `other` (v1 sent
    /// `unknown`); 1–64 characters of `[a-z0-9-]`. Never the provider ID
    /// itself, which names the machine.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_is_absent"
    )]
    pub cloud_provider: Option<String>,
    /// `status.capacity`: standard resources verbatim; extended resources only
    /// from allowlisted public device vendors, others folded into one name.
    /// At most 64 entries. Sizes, not names: many machines share each shape.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "capped::<_, _, { crate::validate::MAX_CAPACITY }>"
    )]
    pub capacity: Option<Vec<Resource>>,
}

/// One resource quantity, e.g. `{"resource": "cpu", "value": "4"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Resource {
    /// Kubernetes resource name (a qualified name: optional DNS-subdomain
    /// prefix and `/`, then at most 63 characters), e.g. `cpu`, `memory`,
    /// `nvidia.com/gpu`.
    pub resource: String,
    /// Kubernetes quantity (the `resource.Quantity` grammar, see
    /// [`is_quantity`](crate::validate::is_quantity)), e.g. `4`, `15437428Ki`, `500m`.
    pub value: String,
}

/// One operator-supplied extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Extension {
    /// `[DNS-subdomain/]name`, e.g. `example.com/hello`, unique within the
    /// report (the original read them from a map).
    pub name: String,
    /// Up to 1 KiB of text, chosen by the operator.
    pub value: String,
}

/// The workload kinds the volunteer counts. A closed set: anything else is
/// rejected, and ConfigMaps and Secrets are deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// core/v1 Pod.
    Pod,
    /// core/v1 Service.
    Service,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 Job.
    Job,
    /// batch/v1 CronJob.
    CronJob,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 7] = [
        Kind::Pod,
        Kind::Service,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];

    /// The name used on the wire, e.g. `StatefulSet`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
        }
    }
}

/// Statistics for one workload kind across the cluster; each kind appears at
/// most once per report. Aggregates only, so no object can be singled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadStats {
    /// Which kind these numbers describe.
    pub kind: Kind,
    /// Number of objects of this kind in the cluster.
    pub total: u64,
    /// How many namespaces hold how many objects of this kind, in the fixed
    /// buckets of [`BUCKETS`], in that order. Counts of namespaces only. When
    /// the report has `namespaces`, the buckets add up to it.
    pub per_namespace: Vec<Bucket>,
    /// Present when `perNamespace` is an estimate: the objects of this kind
    /// were counted in this many namespaces drawn at random (without
    /// replacement) from all of them, and the buckets scaled to the namespace
    /// count. Absent when every namespace was counted. A volunteer samples only
    /// on large clusters, where counting every namespace would cost the API
    /// server more than the rest of the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces_sampled: Option<u64>,
    /// Ages of the objects of this kind, in whole hours; absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_hours: Option<AgeHours>,
}

/// One bucket of a per-namespace histogram: `namespaces` namespaces hold
/// between `min` and `max` (inclusive; no `max` means unbounded) objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Bucket {
    /// Smallest object count in this bucket.
    pub min: u64,
    /// Largest object count in this bucket; absent for the last, open bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// Number of namespaces whose object count falls in this bucket.
    pub namespaces: u64,
}

/// The fixed histogram buckets `(min, max)`: 0, 1, 2–5, 6–10, 11–50, 51–100,
/// 101–500, 501+. Fixed so that reports from every cluster can be summed.
pub const BUCKETS: [(u64, Option<u64>); 8] = [
    (0, Some(0)),
    (1, Some(1)),
    (2, Some(5)),
    (6, Some(10)),
    (11, Some(50)),
    (51, Some(100)),
    (101, Some(500)),
    (501, None),
];

/// Index into [`BUCKETS`] of the bucket that holds `count`.
pub fn bucket_index(count: u64) -> usize {
    BUCKETS
        .iter()
        .position(|&(min, max)| count >= min && max.is_none_or(|max| count <= max))
        .unwrap_or(BUCKETS.len() - 1)
}

/// Summary of object ages in whole hours. Coarse on purpose: no single
/// object's creation time can be read back from it. `p90` is at least `median`.
/// A volunteer may read ages as the API server prints them (`kubectl get`'s
/// AGE column): exact to the hour below 8 days, to the day from 8 days and to
/// the year from 8 years, so a long age may be up to a day (a year) short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct AgeHours {
    /// Median age in hours.
    pub median: u64,
    /// 90th percentile age in hours.
    pub p90: u64,
}

/// A section of the report the volunteer did not collect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Skipped {
    /// Which section, as a path in this schema, from the fixed list
    /// [`SECTIONS`](crate::validate::SECTIONS): e.g. `nodes`, `nodes.osImage`,
    /// `namespaces`, `workloads.Pod`, `ages`. Each at most once. Names parts of
    /// the schema, never anything of the cluster's.
    pub section: String,
    /// Why: `forbidden` (no RBAC permission), `notFound` (the API does not
    /// exist on this server), `omitted` (the operator chose `--omit`), or
    /// `error` (any other failure).
    pub reason: SkipReason,
}

/// Why a section was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// The volunteer's RBAC role does not allow it.
    Forbidden,
    /// The API server does not serve this API.
    NotFound,
    /// The operator asked for it to be left out.
    Omitted,
    /// Any other failure while collecting.
    Error,
}

impl SkipReason {
    /// Every reason.
    pub const ALL: [SkipReason; 4] = [
        SkipReason::Forbidden,
        SkipReason::NotFound,
        SkipReason::Omitted,
        SkipReason::Error,
    ];

    /// The name used on the wire, e.g. `notFound`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipReason::Forbidden => "forbidden",
            SkipReason::NotFound => "notFound",
            SkipReason::Omitted => "omitted",
            SkipReason::Error => "error",
        }
    }
}

// Closed sets of names: only a JSON string is accepted (serde's default would
// also take `{"Pod": null}`), so every value has exactly one spelling.
macro_rules! string_enum {
    ($($t:ident),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const NAMES: &[&str] = &{
                    let mut names = [""; $t::ALL.len()];
                    let mut i = 0;
                    while i < names.len() {
                        names[i] = $t::ALL[i].as_str();
                        i += 1;
                    }
                    names
                };
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $t::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| serde::de::Error::unknown_variant(&s, NAMES))
            }
        }
    )*};
}
string_enum!(Kind, SkipReason);

// Objects only. Serde's derived structs also accept a JSON array of the field
// values in order; the original (Go) collector did not, and a second spelling
// of the same report has no use. `remote = "Self"` makes the derives inherent
// functions, wrapped here by the trait impls.
macro_rules! object_only {
    ($($t:ident),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $t::serialize(self, s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;
                impl<'de> Visitor<'de> for ObjectVisitor {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a JSON object ({})", stringify!($t))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$t, A::Error> {
                        $t::deserialize(MapAccessDeserializer::new(map))
                    }
                }
                d.deserialize_map(ObjectVisitor)
            }
        }
    )*};
}
object_only!(
    Report,
    Node,
    Resource,
    Extension,
    WorkloadStats,
    Bucket,
    AgeHours,
    Skipped
);

/// An optional string of the v1 format: absent, `null` and `""` all mean absent. The original
/// collector stored v1 bodies with empty optional strings (`"timestamp": ""` from old or
/// hand-written volunteers), and an empty string carries nothing, identifying or not.
fn empty_is_absent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value.filter(|v| !v.is_empty()))
}

/// Reads an optional array, keeping at most `MAX + 1` elements: one more than validation
/// allows, so its rule ("more than MAX …") still fires, while the rest of a hostile array is
/// read as syntax only and dropped. Memory then stays bounded by the cap, not by the number of
/// elements a 16 MiB body can hold (about 200 bytes per ten-byte `{"id":"n"}`).
fn capped<'de, D, T, const MAX: usize>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Capped<T, const MAX: usize>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for Capped<T, MAX> {
        type Value = Option<Vec<T>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_seq(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut kept = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX + 1));
            while kept.len() <= MAX {
                match seq.next_element()? {
                    Some(element) => kept.push(element),
                    None => return Ok(Some(kept)),
                }
            }
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Some(kept))
        }
    }

    d.deserialize_option(Capped::<T, MAX>(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_with_nodes(n: usize) -> String {
        let nodes = vec![r#"{"id":"n"}"#; n].join(",");
        format!(r#"{{"version":"v1","clusterID":"c","nodes":[{nodes}]}}"#)
    }

    #[test]
    fn a_hostile_array_keeps_only_one_element_more_than_the_limit() {
        let report: Report =
            serde_json::from_str(&body_with_nodes(crate::MAX_NODES + 5_000)).expect("parses");
        assert_eq!(report.nodes.map(|n| n.len()), Some(crate::MAX_NODES + 1));
    }

    #[test]
    fn an_array_within_the_limit_is_kept_whole_and_null_means_absent() {
        let report: Report = serde_json::from_str(&body_with_nodes(3)).expect("parses");
        assert_eq!(report.nodes.map(|n| n.len()), Some(3));
        let report: Report =
            serde_json::from_str(r#"{"version":"v1","clusterID":"c","nodes":null}"#)
                .expect("parses");
        assert_eq!(report.nodes, None);
    }

    #[test]
    fn empty_optional_v1_strings_are_absent() {
        let report: Report = serde_json::from_str(
            r#"{"version":"v1","clusterID":"c","timestamp":"","masterVersion":"",
                "nodes":[{"id":"n","osImage":"","cloudProvider":"","kernelVersion":null}]}"#,
        )
        .expect("parses");
        assert_eq!((report.timestamp, report.master_version), (None, None));
        let node = &report.nodes.expect("nodes")[0];
        assert_eq!(node.os_image, None);
        assert_eq!(node.cloud_provider, None);
        assert_eq!(node.kernel_version, None);
    }

    #[test]
    fn elements_past_the_limit_must_still_be_json() {
        let mut body = body_with_nodes(crate::MAX_NODES + 2);
        body.insert_str(body.len() - 2, ",{");
        assert!(serde_json::from_str::<Report>(&body).is_err());
    }
}
