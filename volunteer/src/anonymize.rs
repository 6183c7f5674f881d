//! The only place that decides what leaves the cluster: a pure function from a
//! [`Snapshot`] and a [`Key`] to a [`report::Report`].
//!
//! - Identifiers (node UIDs, the collector's host) are replaced by HMAC-SHA256 under a key
//!   that never leaves the cluster, so the collector cannot reverse or join them.
//! - Version strings are copied only after the report's sanitizing rules
//!   ([`report::sanitize`]) cut off what could name a machine; the collector applies the same
//!   rules to every report it receives.
//! - Provider IDs become a provider name from an allowlist; extended resources from
//!   unknown vendors are folded into one name (the same rules).
//! - Workloads become counts, fixed-bucket histograms (scaled to the namespace count when
//!   counted in a sample of namespaces) and whole-hour age percentiles.

use std::collections::BTreeSet;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use report::sanitize;
use report::{
    AgeHours, BUCKETS, Bucket, Extension, Node, Report, ReportId, Resource, SCHEMA_VERSION,
    SkipReason, Skipped, WorkloadStats, bucket_index, section,
};
use sha2::{Digest, Sha256};

use crate::omit::{NodeField, Omit};
use crate::snapshot::{KindCounts, NamespaceCounts, NodeSnapshot, Section, Snapshot};

/// The anonymization key. Deliberately not `Debug`-printable, never serialized.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// The default key: SHA-256 of a constant and the kube-system namespace's UID, a
    /// random value the API server chose at cluster creation.
    pub fn from_kube_system_uid(uid: &str) -> Self {
        Self::derive(b"spartakus-key-v1:", uid.as_bytes())
    }

    /// A key from operator-supplied secret bytes (e.g. a mounted Secret).
    pub fn from_secret(bytes: &[u8]) -> Self {
        Self::derive(b"spartakus-key-v1-file:", bytes)
    }

    fn derive(prefix: &[u8], material: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(prefix);
        h.update(material);
        Key(h.finalize().into())
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// A node's report ID: 32 hex characters of HMAC(key, "node:" + UID).
    pub fn node_id(&self, uid: &str) -> String {
        hex::encode(&self.mac(&[b"node:", uid.as_bytes()])[..16])
    }

    /// The default cluster ID: HMAC(key, "cluster-id:" + collector host) as a UUID
    /// (version 8, "custom"), so each collector sees a different, stable ID.
    pub(crate) fn cluster_id(&self, collector_host: &str) -> String {
        let mac = self.mac(&[b"cluster-id:", collector_host.as_bytes()]);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&mac[..16]);
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    /// The erasure secret for a collector: HMAC(key, "erase:" + collector host). Reports
    /// carry only its check ([`ErasureSecret::check`]); `volunteer forget` sends it.
    pub fn erasure_secret(&self, collector_host: &str) -> ErasureSecret {
        ErasureSecret(self.mac(&[b"erase:", collector_host.as_bytes()]))
    }
}

/// The secret S that proves an erasure request comes from this cluster
/// ([`report::erasure`]). Like the key, never `Debug`-printed, logged or stored; it leaves
/// the cluster only in the body of `volunteer forget`'s request.
pub struct ErasureSecret([u8; 32]);

impl fmt::Debug for ErasureSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErasureSecret(<redacted>)")
    }
}

impl ErasureSecret {
    /// `erasureCheck`: SHA-256 of the secret, by the report crate's rule.
    pub fn check(&self) -> String {
        report::erasure::check_of(&self.0)
    }

    /// The secret as the erasure request carries it: 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Everything about a report that is not read from the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The volunteer's version, e.g. `v0.1.0`.
    pub(crate) version: String,
    /// This report's idempotency key.
    pub(crate) report_id: ReportId,
    /// The operator's cluster ID, if any.
    pub(crate) cluster_id: Option<String>,
    /// The collector's host, for the default cluster ID.
    pub(crate) collector_host: String,
    /// Fields to leave out.
    pub(crate) omit: BTreeSet<Omit>,
}

/// Turns what was collected into what is sent.
pub(crate) fn anonymize(snapshot: &Snapshot, key: &Key, options: &Options) -> Report {
    let omit = &options.omit;
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut skip = |section: &str, reason: SkipReason| {
        skipped.push(Skipped {
            section: section.to_owned(),
            reason,
        })
    };
    for o in omit {
        // Omitted node fields are not worth recording when no node is sent anyway.
        let shadowed = matches!(o, Omit::NodeField(_)) && omit.contains(&Omit::Nodes)
            || *o == Omit::Ages && omit.contains(&Omit::Workloads);
        if !shadowed {
            skip(o.section(), SkipReason::Omitted);
        }
    }

    let master_version = if omit.contains(&Omit::MasterVersion) {
        None
    } else {
        match &snapshot.master_version {
            Section::Ok(v) => sanitize::info(v),
            Section::Skipped(r) => {
                skip(section::MASTER_VERSION, *r);
                None
            }
        }
    };

    let nodes = if omit.contains(&Omit::Nodes) {
        None
    } else {
        match &snapshot.nodes {
            Section::Ok(nodes) => {
                Some(nodes.iter().map(|n| node(n, key, omit)).collect::<Vec<_>>())
            }
            Section::Skipped(r) => {
                skip(section::NODES, *r);
                None
            }
        }
    };

    let namespace_names = if omit.contains(&Omit::Namespaces) {
        None
    } else {
        match &snapshot.namespaces {
            Section::Ok(names) => Some(names),
            Section::Skipped(r) => {
                skip(section::NAMESPACES, *r);
                None
            }
        }
    };

    let workloads = if omit.contains(&Omit::Workloads) {
        None
    } else {
        match &snapshot.workloads {
            Section::Ok(kinds) => {
                let mut stats = Vec::new();
                for (kind, counts) in kinds {
                    match counts {
                        Section::Ok(c) => stats.push(workload(
                            *kind,
                            c,
                            namespace_names.map(|n| n.as_slice()),
                            !omit.contains(&Omit::Ages),
                        )),
                        Section::Skipped(r) => skip(section::workload(*kind), *r),
                    }
                }
                Some(stats)
            }
            Section::Skipped(r) => {
                skip(section::WORKLOADS, *r);
                None
            }
        }
    };

    let extensions = if omit.contains(&Omit::Extensions) {
        None
    } else {
        match &snapshot.extensions {
            Section::Ok(pairs) if pairs.is_empty() => None,
            Section::Ok(pairs) => Some(
                pairs
                    .iter()
                    .map(|(name, value)| Extension {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            ),
            Section::Skipped(r) => {
                skip(section::EXTENSIONS, *r);
                None
            }
        }
    };

    skipped.sort_by(|a, b| a.section.cmp(&b.section));
    Report {
        version: options.version.clone(),
        timestamp: Some(snapshot.taken_at.to_string()),
        cluster_id: options
            .cluster_id
            .clone()
            .unwrap_or_else(|| key.cluster_id(&options.collector_host)),
        master_version,
        nodes,
        extensions,
        report_id: Some(options.report_id.to_string()),
        schema_version: Some(SCHEMA_VERSION),
        namespaces: namespace_names.map(|n| n.len() as u64),
        workloads,
        skipped: (!skipped.is_empty()).then_some(skipped),
        // Not data about the cluster, so `--omit` does not touch it; sent with an
        // operator's `--cluster-id` too, so that its reports can be erased as well.
        erasure_check: Some(key.erasure_secret(&options.collector_host).check()),
    }
}

fn node(n: &NodeSnapshot, key: &Key, omit: &BTreeSet<Omit>) -> Node {
    let keep = |f: NodeField| !omit.contains(&Omit::NodeField(f));
    let info = |f: NodeField, v: &Option<String>| {
        if keep(f) {
            v.as_deref().and_then(sanitize::info)
        } else {
            None
        }
    };
    let token = |f: NodeField, v: &Option<String>| {
        if keep(f) {
            v.as_deref().and_then(sanitize::token)
        } else {
            None
        }
    };
    Node {
        id: key.node_id(&n.uid),
        operating_system: token(NodeField::OperatingSystem, &n.operating_system),
        os_image: info(NodeField::OsImage, &n.os_image),
        kernel_version: token(NodeField::KernelVersion, &n.kernel_version),
        architecture: token(NodeField::Architecture, &n.architecture),
        container_runtime_version: token(
            NodeField::ContainerRuntimeVersion,
            &n.container_runtime_version,
        ),
        kubelet_version: token(NodeField::KubeletVersion, &n.kubelet_version),
        cloud_provider: if keep(NodeField::CloudProvider) {
            n.provider_id.as_deref().and_then(cloud_provider)
        } else {
            None
        },
        capacity: keep(NodeField::Capacity).then(|| capacity(&n.capacity)),
    }
}

/// The provider named by a `spec.providerID` scheme, if it is public; `other` else.
pub(crate) fn cloud_provider(provider_id: &str) -> Option<String> {
    if provider_id.is_empty() {
        return None;
    }
    let scheme = provider_id
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    Some(sanitize::cloud_provider(
        scheme.as_deref().unwrap_or_default(),
    ))
}

/// Capacity by the report's rule ([`sanitize::capacity`]), sorted by name.
fn capacity(resources: &[(String, String)]) -> Vec<Resource> {
    let mut out = sanitize::capacity(resources.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    out.sort_by(|a, b| a.resource.cmp(&b.resource));
    out
}

fn workload(
    kind: report::Kind,
    counts: &KindCounts,
    namespaces: Option<&[String]>,
    with_ages: bool,
) -> WorkloadStats {
    let mut buckets = [0u64; BUCKETS.len()];
    let mut namespaces_sampled = None;
    match (&counts.per_namespace, namespaces) {
        // With the namespace list, the buckets hold exactly the listed namespaces (those
        // without any object of this kind in the first), so they add up to the namespace
        // count. The lists are read one after another, not as one snapshot: objects of a
        // namespace created after the namespace list was read count in the total, not in a
        // bucket.
        (NamespaceCounts::Every(counts), Some(names)) => {
            for name in names {
                let n = counts.get(name).copied().unwrap_or(0);
                buckets[bucket_index(n)] += 1;
            }
        }
        (NamespaceCounts::Every(counts), None) => {
            for &n in counts.values() {
                buckets[bucket_index(n)] += 1;
            }
        }
        (NamespaceCounts::Sample { counts, of }, _) => {
            let mut drawn = [0u64; BUCKETS.len()];
            for &n in counts {
                drawn[bucket_index(n)] += 1;
            }
            buckets = scale(&drawn, *of);
            namespaces_sampled = Some(counts.len() as u64);
        }
    }
    let per_namespace = BUCKETS
        .iter()
        .zip(buckets)
        .map(|(&(min, max), namespaces)| Bucket {
            min,
            max,
            namespaces,
        })
        .collect();
    WorkloadStats {
        kind,
        total: counts.total,
        per_namespace,
        namespaces_sampled,
        age_hours: if with_ages {
            age_hours(&counts.ages)
        } else {
            None
        },
    }
}

/// A sample's histogram scaled to `of` namespaces: each bucket gets its share of `of`, rounded
/// down, and the namespaces left over go one each to the buckets with the largest remainders
/// (the lower bucket first on a tie), so the buckets add up to `of` exactly. An empty sample
/// says nothing: all `of` go to the first bucket.
pub(crate) fn scale(drawn: &[u64; BUCKETS.len()], of: u64) -> [u64; BUCKETS.len()] {
    let n: u128 = drawn.iter().map(|&d| u128::from(d)).sum();
    let mut out = [0u64; BUCKETS.len()];
    if n == 0 {
        out[0] = of;
        return out;
    }
    let mut remainders = [(0u128, 0usize); BUCKETS.len()];
    let mut given: u64 = 0;
    for (i, &d) in drawn.iter().enumerate() {
        let exact = u128::from(d) * u128::from(of);
        // exact / n ≤ of, so it fits.
        out[i] = u64::try_from(exact / n).unwrap_or(of);
        given += out[i];
        remainders[i] = (exact % n, i);
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take((of - given) as usize) {
        out[i] += 1;
    }
    out
}

/// Median and 90th percentile (nearest rank) of ages given in seconds, in whole hours; `None`
/// for none.
pub(crate) fn age_hours(ages: &[u64]) -> Option<AgeHours> {
    if ages.is_empty() {
        return None;
    }
    let mut hours: Vec<u64> = ages.iter().map(|&s| s / 3600).collect();
    hours.sort_unstable();
    let rank = |p: usize| {
        // Nearest rank: the smallest value with at least p% of values at or below it.
        let r = (p * hours.len()).div_ceil(100);
        hours[r.max(1) - 1]
    };
    Some(AgeHours {
        median: rank(50),
        p90: rank(90),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;
    use proptest::prelude::*;
    use report::Kind;
    use std::collections::HashMap;

    fn options() -> Options {
        Options {
            version: "v0.1.0".into(),
            report_id: ReportId::random(),
            cluster_id: None,
            collector_host: "spartakus.example.org".into(),
            omit: BTreeSet::new(),
        }
    }

    fn gke_node() -> NodeSnapshot {
        NodeSnapshot {
            uid: "0f5b8a1e-6a7c-4f27-9d43-1c2e3f4a5b6c".into(),
            provider_id: Some("gce://my-project-123/us-central1-a/gke-prod-pool-1-abcd".into()),
            operating_system: Some("linux".into()),
            os_image: Some("Container-Optimized OS from Google".into()),
            kernel_version: Some("6.1.100+".into()),
            architecture: Some("amd64".into()),
            container_runtime_version: Some("containerd://1.7.22".into()),
            kubelet_version: Some("v1.37.2-gke.1000".into()),
            capacity: vec![
                ("cpu".into(), "4".into()),
                ("memory".into(), "16393220Ki".into()),
                ("pods".into(), "110".into()),
                ("nvidia.com/gpu".into(), "1".into()),
                ("acme.internal/fpga".into(), "2".into()),
                ("secret-team.example/dongle".into(), "3".into()),
                ("hugepages-2Mi".into(), "0".into()),
            ],
        }
    }

    fn snapshot(nodes: Vec<NodeSnapshot>) -> Snapshot {
        Snapshot {
            taken_at: 1_800_000_000,
            master_version: Section::Ok("v1.37.2".into()),
            nodes: Section::Ok(nodes),
            namespaces: Section::Ok(vec!["a".into(), "b".into(), "c".into()]),
            workloads: Section::Ok(vec![(
                Kind::Pod,
                Section::Ok(KindCounts {
                    total: 8,
                    per_namespace: NamespaceCounts::Every(HashMap::from([
                        ("a".into(), 1),
                        ("b".into(), 7),
                    ])),
                    ages: vec![3600 * 5; 8],
                }),
            )]),
            extensions: Section::Ok(vec![]),
        }
    }

    #[test]
    fn node_ids_are_32_hex_characters_and_depend_on_the_key() {
        let a = Key::from_kube_system_uid("uid-a");
        let b = Key::from_kube_system_uid("uid-b");
        let id = a.node_id("node-uid");
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(id, a.node_id("node-uid"));
        assert_ne!(id, b.node_id("node-uid"));
        assert_ne!(id, a.node_id("other-node-uid"));
    }

    #[test]
    fn the_default_cluster_id_is_a_uuid_per_collector() {
        let k = Key::from_kube_system_uid("uid");
        let one = k.cluster_id("a.example.org");
        let parsed = uuid::Uuid::parse_str(&one).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(one, k.cluster_id("a.example.org"));
        assert_ne!(one, k.cluster_id("b.example.org"));
    }

    #[test]
    fn the_erasure_check_is_the_sha256_of_a_secret_per_collector() {
        let k = Key::from_kube_system_uid("uid");
        let s = k.erasure_secret("a.example.org");
        let hex = s.to_hex();
        assert!(report::erasure::is_digest(&hex), "{hex}");
        let bytes: [u8; 32] = hex::decode(&hex).unwrap().try_into().unwrap();
        assert_eq!(s.check(), report::erasure::check_of(&bytes));
        assert_ne!(s.check(), hex);
        assert_eq!(hex, k.erasure_secret("a.example.org").to_hex());
        assert_ne!(hex, k.erasure_secret("b.example.org").to_hex());
        assert_ne!(
            hex,
            Key::from_kube_system_uid("other")
                .erasure_secret("a.example.org")
                .to_hex()
        );
        assert_eq!(format!("{s:?}"), "ErasureSecret(<redacted>)");
    }

    #[test]
    fn every_report_carries_the_erasure_check_but_never_the_secret() {
        let key = Key::from_kube_system_uid("k");
        let secret = key.erasure_secret("spartakus.example.org");
        for o in [
            options(),
            Options {
                cluster_id: Some("prod.eu-1".into()),
                ..options()
            },
            {
                let mut o = options();
                o.omit.extend(Omit::all());
                o
            },
        ] {
            let r = anonymize(&snapshot(vec![gke_node()]), &key, &o);
            assert_eq!(r.erasure_check.as_deref(), Some(secret.check().as_str()));
            let body = serde_json::to_string(&r).unwrap();
            assert!(!body.contains(&secret.to_hex()));
            assert!(r.validate().is_ok());
        }
    }

    #[test]
    fn the_key_is_never_printed() {
        let k = Key::from_secret(b"super-secret-key-material");
        assert_eq!(format!("{k:?}"), "Key(<redacted>)");
    }

    #[test]
    fn provider_ids_become_an_allowlisted_scheme_or_other() {
        assert_eq!(cloud_provider("gce://p/z/n").as_deref(), Some("gce"));
        assert_eq!(
            cloud_provider("aws:///us-east-1a/i-0abc").as_deref(),
            Some("aws")
        );
        assert_eq!(
            cloud_provider("AZURE:///subscriptions/x").as_deref(),
            Some("azure")
        );
        assert_eq!(
            cloud_provider("kind://docker/kind/kind-control-plane").as_deref(),
            Some("kind")
        );
        assert_eq!(
            cloud_provider("mycorp-dc7://rack3/host").as_deref(),
            Some("other")
        );
        assert_eq!(cloud_provider("no-scheme").as_deref(), Some("other"));
        assert_eq!(cloud_provider(""), None);
    }

    #[test]
    fn capacity_keeps_standard_and_vendor_resources_and_folds_the_rest() {
        let c = capacity(&gke_node().capacity);
        let got: Vec<(&str, &str)> = c
            .iter()
            .map(|r| (r.resource.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("cpu", "4"),
                ("hugepages-2Mi", "0"),
                ("memory", "16393220Ki"),
                ("nvidia.com/gpu", "1"),
                ("other", "5"),
                ("pods", "110"),
            ]
        );
    }

    #[test]
    fn a_capacity_value_that_is_not_a_quantity_is_left_out_by_the_reports_rule() {
        // Values the volunteer's old, looser check let through; the report refused them.
        let resources = [
            ("cpu", "4"),
            ("memory", "1Kii"),
            ("nvidia.com/gpu", "1 GPU"),
            ("amd.com/gpu", "1e"),
            ("intel.com/qat", "0x10"),
            ("pods", "110"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        let c = capacity(&resources);
        let names: Vec<&str> = c.iter().map(|r| r.resource.as_str()).collect();
        assert_eq!(names, ["cpu", "pods"]);
        let mut snap = snapshot(vec![gke_node()]);
        if let Section::Ok(nodes) = &mut snap.nodes {
            nodes[0].capacity = resources.to_vec();
        }
        assert!(
            anonymize(&snap, &Key::from_secret(b"0123456789abcdef"), &options())
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn histograms_count_empty_namespaces_only_when_namespaces_are_sent() {
        let key = Key::from_kube_system_uid("k");
        let r = anonymize(&snapshot(vec![]), &key, &options());
        let pods = &r.workloads.as_ref().unwrap()[0];
        assert_eq!(pods.total, 8);
        let counts: Vec<u64> = pods.per_namespace.iter().map(|b| b.namespaces).collect();
        assert_eq!(counts, vec![1, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(pods.age_hours, Some(AgeHours { median: 5, p90: 5 }));
        assert_eq!(r.namespaces, Some(3));

        let mut o = options();
        o.omit.insert(Omit::Namespaces);
        let r = anonymize(&snapshot(vec![]), &key, &o);
        let counts: Vec<u64> = r.workloads.as_ref().unwrap()[0]
            .per_namespace
            .iter()
            .map(|b| b.namespaces)
            .collect();
        assert_eq!(counts, vec![0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(r.namespaces, None);
    }

    #[test]
    fn objects_of_a_namespace_created_after_the_namespace_list_stay_out_of_the_buckets() {
        // Seen in CI: services listed after a namespace appeared that the namespace list had
        // missed; the buckets held 5 namespaces for a count of 4 and the report was refused.
        let counts = KindCounts {
            total: 6,
            per_namespace: NamespaceCounts::Every(
                [("a", 2), ("b", 1), ("late", 3)]
                    .into_iter()
                    .map(|(n, c)| (n.to_owned(), c))
                    .collect(),
            ),
            ages: vec![],
        };
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let w = workload(report::Kind::Service, &counts, Some(&names), false);
        let held: u64 = w.per_namespace.iter().map(|b| b.namespaces).sum();
        assert_eq!(held, 4);
        assert_eq!(w.per_namespace[0].namespaces, 2, "c and d hold none");
        assert_eq!(w.total, 6);
        assert_eq!(w.namespaces_sampled, None);
    }

    #[test]
    fn a_sampled_histogram_is_scaled_to_the_namespace_count_and_says_so() {
        // 10 namespaces drawn from 1,000: 5 without pods, 3 with 2–5, 2 with 101–500.
        let counts = KindCounts {
            total: 123_456,
            per_namespace: NamespaceCounts::Sample {
                counts: vec![0, 0, 0, 0, 0, 3, 4, 5, 200, 300],
                of: 1_000,
            },
            ages: vec![7200],
        };
        let names: Vec<String> = (0..1_000).map(|i| format!("ns-{i}")).collect();
        let w = workload(report::Kind::Pod, &counts, Some(&names), true);
        let buckets: Vec<u64> = w.per_namespace.iter().map(|b| b.namespaces).collect();
        assert_eq!(buckets, [500, 0, 300, 0, 0, 0, 200, 0]);
        assert_eq!(w.namespaces_sampled, Some(10));
        assert_eq!(w.total, 123_456);
        assert_eq!(w.age_hours, Some(AgeHours { median: 2, p90: 2 }));
    }

    #[test]
    fn scaling_rounds_to_the_largest_remainders_and_keeps_the_sum() {
        // 3 drawn from 10: thirds of 10 are 3.33 each; one bucket gets the spare namespace.
        assert_eq!(
            scale(&[1, 1, 1, 0, 0, 0, 0, 0], 10),
            [4, 3, 3, 0, 0, 0, 0, 0]
        );
        assert_eq!(scale(&[0; 8], 7), [7, 0, 0, 0, 0, 0, 0, 0]);
    }

    proptest! {
        #[test]
        fn a_scaled_histogram_always_adds_up_to_the_namespace_count(
            drawn in prop::array::uniform8(0u64..300),
            of in 0u64..1_000_000,
        ) {
            let scaled = scale(&drawn, of);
            prop_assert_eq!(scaled.iter().sum::<u64>(), of);
            let n: u64 = drawn.iter().sum();
            for (d, s) in drawn.iter().zip(scaled) {
                // Each bucket within one namespace of its exact share.
                let exact = *d as f64 * of as f64 / n.max(1) as f64;
                prop_assert!(n == 0 || (s as f64 - exact).abs() < 1.0 + 1e-9);
            }
        }
    }

    #[test]
    fn ages_are_nearest_rank_percentiles_in_whole_hours() {
        let ages: Vec<u64> = (1..=10).map(|h| h * 3600 + 59).collect();
        assert_eq!(age_hours(&ages), Some(AgeHours { median: 5, p90: 9 }));
        assert_eq!(age_hours(&[10]), Some(AgeHours { median: 0, p90: 0 }));
        assert_eq!(age_hours(&[]), None);
    }

    #[test]
    fn omitting_a_node_field_removes_it_and_records_it() {
        let key = Key::from_kube_system_uid("k");
        let mut o = options();
        o.omit.insert(Omit::NodeField(NodeField::KernelVersion));
        o.omit.insert(Omit::Ages);
        let r = anonymize(&snapshot(vec![gke_node()]), &key, &o);
        let n = &r.nodes.as_ref().unwrap()[0];
        assert_eq!(n.kernel_version, None);
        assert_eq!(
            n.os_image.as_deref(),
            Some("Container-Optimized OS from Google")
        );
        assert_eq!(r.workloads.as_ref().unwrap()[0].age_hours, None);
        let skipped: Vec<(&str, SkipReason)> = r
            .skipped
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| (s.section.as_str(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            vec![
                ("ages", SkipReason::Omitted),
                ("nodes.kernelVersion", SkipReason::Omitted)
            ]
        );
    }

    #[test]
    fn every_omit_combination_yields_a_valid_report() {
        let key = Key::from_kube_system_uid("k");
        for omit in Omit::all() {
            let mut o = options();
            o.omit.insert(omit);
            let r = anonymize(&snapshot(vec![gke_node()]), &key, &o);
            if let Err(e) = r.clone().validate() {
                panic!("--omit {}: {e:?}", omit.section());
            }
        }
    }

    #[test]
    fn a_forbidden_section_is_recorded_and_the_rest_is_sent() {
        let key = Key::from_kube_system_uid("k");
        let mut s = snapshot(vec![gke_node()]);
        s.namespaces = Section::Skipped(SkipReason::Forbidden);
        s.workloads = Section::Ok(vec![
            (Kind::Pod, Section::Skipped(SkipReason::Forbidden)),
            (Kind::CronJob, Section::Skipped(SkipReason::NotFound)),
        ]);
        let r = anonymize(&s, &key, &options());
        assert_eq!(r.nodes.as_ref().map(Vec::len), Some(1));
        assert_eq!(r.workloads, Some(vec![]));
        let skipped: Vec<(&str, SkipReason)> = r
            .skipped
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| (s.section.as_str(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            vec![
                ("namespaces", SkipReason::Forbidden),
                ("workloads.CronJob", SkipReason::NotFound),
                ("workloads.Pod", SkipReason::Forbidden),
            ]
        );
        assert!(r.validate().is_ok());
    }

    proptest! {
        #[test]
        fn no_node_identifier_ever_appears_in_the_report(
            uid in "[a-z0-9-]{8,40}",
            provider in "[a-z]{2,10}://[a-zA-Z0-9/_.-]{8,40}",
            secret in proptest::collection::vec(any::<u8>(), 16..64),
        ) {
            let key = Key::from_secret(&secret);
            let mut n = gke_node();
            n.uid = uid.clone();
            n.provider_id = Some(provider.clone());
            let report = anonymize(&snapshot(vec![n]), &key, &options());
            let body = serde_json::to_string(&report).unwrap();
            prop_assert!(!body.contains(&uid));
            let rest = provider.split_once("://").unwrap().1;
            prop_assert!(!body.contains(rest));
            prop_assert!(!body.contains(&hex::encode(&secret)));
            // Deterministic for a key.
            let again = anonymize(&snapshot(vec![gke_node_with(&uid)]), &key, &options());
            prop_assert_eq!(&report.nodes.as_ref().unwrap()[0].id, &again.nodes.as_ref().unwrap()[0].id);
        }

    }

    fn gke_node_with(uid: &str) -> NodeSnapshot {
        NodeSnapshot {
            uid: uid.into(),
            ..gke_node()
        }
    }
}
