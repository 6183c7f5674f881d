//! Validation rules. Every failure is a [`FieldError`] naming the field path
//! (e.g. `nodes[3].capacity[1].value`) and the rule it breaks.
//!
//! All problems are reported, in field order (the order of the fields in
//! [`Report`]), so a volunteer's operator can fix a report in one round trip.
//! At most [`MAX_ERRORS`] are listed, then one `(report): N more errors
//! omitted` entry, so a hostile body cannot make the error response huge.
//!
//! Decisions beyond the original's (unwritten) rules:
//! - `clusterID`: the original accepted any user-provided string and
//!   recommended a random UUID. We accept 1–128 characters of
//!   `[A-Za-z0-9._:-]`: every UUID, hash or hostname-like ID fits, while
//!   spaces, `@` (e-mail addresses) and markup do not.
//! - `timestamp`: UNIX seconds as 1–20 decimal digits. The seed example's
//!   `867530909031976` (15 digits, not a plausible time) must stay valid, so
//!   the value is not range-checked; the collector's `receivedAt` is the time
//!   to trust.
//! - String fields are at most [`MAX_STRING`] bytes; only extension values need
//!   more ([`MAX_EXTENSION_VALUE`]).
//! - Workloads: when the report has both `namespaces` and a per-namespace
//!   histogram, the histogram's namespaces must add up to `namespaces`: every
//!   namespace falls in exactly one bucket (the first bucket counts namespaces
//!   with none of the kind), so anything else is an inconsistent snapshot.
//! - Extension names must be unique, as they were keys of a map in the original.

use crate::{BUCKETS, Extension, Kind, Node, Report, ReportId, WorkloadStats};
use std::collections::HashSet;
use std::fmt;

/// Most nodes a report may list. Larger than any conformant cluster (5,000
/// nodes is the Kubernetes scalability limit) with room to spare.
pub const MAX_NODES: usize = 15_000;
/// Most capacity entries per node.
pub const MAX_CAPACITY: usize = 64;
/// Most extensions per report.
pub const MAX_EXTENSIONS: usize = 64;
/// Longest string field, in bytes, unless the field says otherwise.
pub const MAX_STRING: usize = 256;
/// Longest extension value, in bytes.
pub const MAX_EXTENSION_VALUE: usize = 1024;
/// Most errors listed before the rest are summarized in one entry.
pub const MAX_ERRORS: usize = 100;
/// Highest `schemaVersion` this crate understands.
pub const SCHEMA_VERSION: u32 = 2;

/// The rule a malformed `reportID` breaks.
pub const RULE_REPORT_ID: &str = "not a canonical UUID (lowercase 8-4-4-4-12 hex)";
/// The rule a malformed `erasureCheck` breaks.
pub const RULE_ERASURE_CHECK: &str = "not 64 lowercase hex characters (a SHA-256)";
/// The rule a malformed `clusterID` breaks.
pub const RULE_CLUSTER_ID: &str = "not 1-128 characters of [A-Za-z0-9._:-]";
/// The rule a malformed extension name breaks.
pub const RULE_EXTENSION_NAME: &str = "not an extension name ([DNS-subdomain/]name)";
/// The rule a repeated extension name breaks.
pub const RULE_DUPLICATE_EXTENSION: &str = "duplicate extension name";
/// The rule a malformed capacity resource name breaks.
pub const RULE_RESOURCE_NAME: &str = "not a Kubernetes resource name ([DNS-subdomain/]name)";
/// The rule a malformed capacity value breaks.
pub const RULE_QUANTITY: &str = "not a Kubernetes quantity";
/// The rule a negative capacity breaks.
pub const RULE_NEGATIVE_CAPACITY: &str = "negative: a capacity is zero or more";
/// The rule a capacity too large for a 64-bit float (`1e400`) breaks.
pub const RULE_INFINITE_CAPACITY: &str =
    "not finite: a capacity is at most 1.7e308 base units (cores, bytes)";

/// One broken rule at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `nodes[3].capacity[1].value`.
    pub path: String,
    /// The rule, e.g. `not a Kubernetes quantity`.
    pub rule: String,
}

impl FieldError {
    /// A new error at `path` for `rule`.
    pub fn new(path: impl Into<String>, rule: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

/// Collects errors, formatting a path only when a rule is broken: a valid
/// 15,000-node report allocates nothing here.
struct Errors {
    list: Vec<FieldError>,
    omitted: usize,
}

impl Errors {
    fn push(&mut self, path: fmt::Arguments<'_>, rule: impl Into<String>) {
        if self.list.len() < MAX_ERRORS {
            self.list.push(FieldError::new(path.to_string(), rule));
        } else {
            self.omitted += 1;
        }
    }

    /// A required string: non-empty and at most [`MAX_STRING`] bytes.
    fn required(&mut self, path: fmt::Arguments<'_>, value: &str) {
        if value.is_empty() {
            self.push(path, "required");
        } else {
            self.max_len(path, value, MAX_STRING);
        }
    }

    fn max_len(&mut self, path: fmt::Arguments<'_>, value: &str, max: usize) {
        if value.len() > max {
            self.push(path, format!("longer than {max} bytes"));
        }
    }

    fn finish(mut self) -> Vec<FieldError> {
        if self.omitted > 0 {
            let rule = format!("{} more errors omitted", self.omitted);
            self.list.push(FieldError::new("(report)", rule));
        }
        self.list
    }
}

impl Errors {
    fn new() -> Self {
        Errors {
            list: Vec::new(),
            omitted: 0,
        }
    }
}

/// Checks a cluster ID: `Err` holds the rule it breaks. The volunteer checks `--cluster-id`
/// with this at start-up, so an override the collector would refuse never starts.
pub fn check_cluster_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        Err("required")
    } else if !is_cluster_id(id) {
        Err(RULE_CLUSTER_ID)
    } else {
        Ok(())
    }
}

/// Every rule broken by a list of extensions, with paths as in a report
/// (`extensions[3].name`). The volunteer checks the operator's `--extensions` with this at
/// start-up.
pub fn check_extensions(extensions: &[Extension]) -> Vec<FieldError> {
    let mut e = Errors::new();
    check_extension_list(&mut e, extensions);
    e.finish()
}

fn check_extension_list(e: &mut Errors, extensions: &[Extension]) {
    if extensions.len() > MAX_EXTENSIONS {
        e.push(
            format_args!("extensions"),
            format!("more than {MAX_EXTENSIONS} extensions"),
        );
    }
    let mut seen = HashSet::new();
    for (i, ext) in extensions.iter().enumerate() {
        if !is_qualified_name(&ext.name) {
            e.push(format_args!("extensions[{i}].name"), RULE_EXTENSION_NAME);
        } else if !seen.insert(ext.name.as_str()) {
            e.push(
                format_args!("extensions[{i}].name"),
                RULE_DUPLICATE_EXTENSION,
            );
        }
        e.max_len(
            format_args!("extensions[{i}].value"),
            &ext.value,
            MAX_EXTENSION_VALUE,
        );
    }
}

/// Every rule broken by `report`, in field order; empty when valid.
pub(crate) fn check(report: &Report) -> Vec<FieldError> {
    let mut e = Errors::new();

    e.required(format_args!("version"), &report.version);
    if let Some(ts) = &report.timestamp
        && !is_timestamp(ts)
    {
        e.push(
            format_args!("timestamp"),
            "not UNIX seconds (1-20 decimal digits)",
        );
    }
    if let Err(rule) = check_cluster_id(&report.cluster_id) {
        e.push(format_args!("clusterID"), rule);
    }
    if let Some(v) = &report.master_version {
        e.max_len(format_args!("masterVersion"), v, MAX_STRING);
    }
    if let Some(nodes) = &report.nodes {
        if nodes.len() > MAX_NODES {
            e.push(
                format_args!("nodes"),
                format!("more than {MAX_NODES} nodes"),
            );
        }
        for (i, node) in nodes.iter().enumerate() {
            check_node(&mut e, i, node);
        }
    }
    if let Some(extensions) = &report.extensions {
        check_extension_list(&mut e, extensions);
    }
    if let Some(id) = &report.report_id
        && ReportId::parse(id).is_none()
    {
        e.push(format_args!("reportID"), RULE_REPORT_ID);
    }
    if let Some(v) = report.schema_version
        && !(1..=SCHEMA_VERSION).contains(&v)
    {
        e.push(
            format_args!("schemaVersion"),
            format!("not a supported schema version (1 to {SCHEMA_VERSION})"),
        );
    }
    if let Some(workloads) = &report.workloads {
        let mut seen = HashSet::new();
        for (i, w) in workloads.iter().enumerate() {
            if !seen.insert(w.kind) {
                e.push(
                    format_args!("workloads[{i}].kind"),
                    format!("duplicate kind {}", w.kind.as_str()),
                );
            }
            check_workload(&mut e, i, w, report.namespaces);
        }
    }
    if let Some(skipped) = &report.skipped {
        let mut seen = HashSet::new();
        for (i, s) in skipped.iter().enumerate() {
            if !is_section(&s.section) {
                e.push(format_args!("skipped[{i}].section"), "not a known section");
            } else if !seen.insert(s.section.as_str()) {
                e.push(format_args!("skipped[{i}].section"), "duplicate section");
            }
        }
    }
    if let Some(check) = &report.erasure_check
        && !is_digest(check)
    {
        e.push(format_args!("erasureCheck"), RULE_ERASURE_CHECK);
    }
    e.finish()
}

fn check_node(e: &mut Errors, i: usize, node: &Node) {
    if node.id.is_empty() {
        e.push(format_args!("nodes[{i}].id"), "required");
    } else if !is_node_id(&node.id) {
        e.push(
            format_args!("nodes[{i}].id"),
            "not 1-64 characters of [A-Za-z0-9_-]",
        );
    }
    let strings = [
        ("operatingSystem", &node.operating_system),
        ("osImage", &node.os_image),
        ("kernelVersion", &node.kernel_version),
        ("architecture", &node.architecture),
        ("containerRuntimeVersion", &node.container_runtime_version),
        ("kubeletVersion", &node.kubelet_version),
    ];
    for (field, value) in strings {
        if let Some(v) = value {
            e.max_len(format_args!("nodes[{i}].{field}"), v, MAX_STRING);
        }
    }
    if let Some(p) = &node.cloud_provider
        && !is_cloud_provider(p)
    {
        e.push(
            format_args!("nodes[{i}].cloudProvider"),
            "not 1-64 characters of [a-z0-9-]",
        );
    }
    if let Some(capacity) = &node.capacity {
        if capacity.len() > MAX_CAPACITY {
            e.push(
                format_args!("nodes[{i}].capacity"),
                format!("more than {MAX_CAPACITY} entries"),
            );
        }
        for (j, r) in capacity.iter().enumerate() {
            if !is_qualified_name(&r.resource) {
                e.push(
                    format_args!("nodes[{i}].capacity[{j}].resource"),
                    RULE_RESOURCE_NAME,
                );
            }
            if let Err(rule) = check_capacity(&r.value) {
                e.push(format_args!("nodes[{i}].capacity[{j}].value"), rule);
            }
        }
    }
}

fn check_workload(e: &mut Errors, i: usize, w: &WorkloadStats, namespaces: Option<u64>) {
    if w.per_namespace.len() != BUCKETS.len() {
        e.push(
            format_args!("workloads[{i}].perNamespace"),
            format!("not the {} fixed buckets", BUCKETS.len()),
        );
    } else {
        let mut bounds_ok = true;
        for (j, (b, &(min, max))) in w.per_namespace.iter().zip(BUCKETS.iter()).enumerate() {
            if b.min != min || b.max != max {
                bounds_ok = false;
                let want = match max {
                    Some(max) if max == min => format!("{min}"),
                    Some(max) => format!("{min}-{max}"),
                    None => format!("{min}+"),
                };
                e.push(
                    format_args!("workloads[{i}].perNamespace[{j}]"),
                    format!("not bucket {want}"),
                );
            }
        }
        if bounds_ok && let Some(n) = namespaces {
            // Saturating: a hostile body could send counts that overflow.
            let sum = w
                .per_namespace
                .iter()
                .fold(0u64, |acc, b| acc.saturating_add(b.namespaces));
            if sum != n {
                e.push(
                    format_args!("workloads[{i}].perNamespace"),
                    format!("buckets hold {sum} namespaces, not namespaces ({n})"),
                );
            }
        }
    }
    if let Some(sampled) = w.namespaces_sampled {
        if sampled == 0 {
            e.push(
                format_args!("workloads[{i}].namespacesSampled"),
                "zero: a sample holds at least one namespace",
            );
        } else if let Some(n) = namespaces
            && sampled > n
        {
            e.push(
                format_args!("workloads[{i}].namespacesSampled"),
                format!("more than namespaces ({n})"),
            );
        }
    }
    if let Some(age) = w.age_hours
        && age.p90 < age.median
    {
        e.push(
            format_args!("workloads[{i}].ageHours.p90"),
            "less than median",
        );
    }
}

/// UNIX seconds: 1–20 ASCII digits.
fn is_timestamp(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` is 64 lowercase hex characters: a SHA-256 digest or a 32-byte secret, written
/// the one way the collector compares them (`erasureCheck`, the erasure secret).
pub fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A cluster ID: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn is_cluster_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A node ID as a report carries it: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn is_node_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn is_cloud_provider(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The names of the report's optional sections, as `skipped` records them and as the
/// volunteer's `--omit` takes them.
pub mod section {
    /// `masterVersion`.
    pub const MASTER_VERSION: &str = "masterVersion";
    /// The whole `nodes` array.
    pub const NODES: &str = "nodes";
    /// Every node's `operatingSystem`.
    pub const NODES_OPERATING_SYSTEM: &str = "nodes.operatingSystem";
    /// Every node's `osImage`.
    pub const NODES_OS_IMAGE: &str = "nodes.osImage";
    /// Every node's `kernelVersion`.
    pub const NODES_KERNEL_VERSION: &str = "nodes.kernelVersion";
    /// Every node's `architecture`.
    pub const NODES_ARCHITECTURE: &str = "nodes.architecture";
    /// Every node's `containerRuntimeVersion`.
    pub const NODES_CONTAINER_RUNTIME_VERSION: &str = "nodes.containerRuntimeVersion";
    /// Every node's `kubeletVersion`.
    pub const NODES_KUBELET_VERSION: &str = "nodes.kubeletVersion";
    /// Every node's `cloudProvider`.
    pub const NODES_CLOUD_PROVIDER: &str = "nodes.cloudProvider";
    /// Every node's `capacity`.
    pub const NODES_CAPACITY: &str = "nodes.capacity";
    /// `extensions`.
    pub const EXTENSIONS: &str = "extensions";
    /// `namespaces`.
    pub const NAMESPACES: &str = "namespaces";
    /// All of `workloads`.
    pub const WORKLOADS: &str = "workloads";
    /// The ages in `workloads`.
    pub const AGES: &str = "ages";

    /// The section of one workload kind, e.g. `workloads.Pod`.
    pub const fn workload(kind: crate::Kind) -> &'static str {
        match kind {
            crate::Kind::Pod => "workloads.Pod",
            crate::Kind::Service => "workloads.Service",
            crate::Kind::Deployment => "workloads.Deployment",
            crate::Kind::StatefulSet => "workloads.StatefulSet",
            crate::Kind::DaemonSet => "workloads.DaemonSet",
            crate::Kind::Job => "workloads.Job",
            crate::Kind::CronJob => "workloads.CronJob",
        }
    }
}

/// Every section name `skipped` may carry: the optional parts of a report.
pub const SECTIONS: [&str; 21] = [
    section::MASTER_VERSION,
    section::NODES,
    section::NODES_OPERATING_SYSTEM,
    section::NODES_OS_IMAGE,
    section::NODES_KERNEL_VERSION,
    section::NODES_ARCHITECTURE,
    section::NODES_CONTAINER_RUNTIME_VERSION,
    section::NODES_KUBELET_VERSION,
    section::NODES_CLOUD_PROVIDER,
    section::NODES_CAPACITY,
    section::EXTENSIONS,
    section::NAMESPACES,
    section::WORKLOADS,
    section::workload(Kind::Pod),
    section::workload(Kind::Service),
    section::workload(Kind::Deployment),
    section::workload(Kind::StatefulSet),
    section::workload(Kind::DaemonSet),
    section::workload(Kind::Job),
    section::workload(Kind::CronJob),
    section::AGES,
];

fn is_section(s: &str) -> bool {
    SECTIONS.contains(&s)
}

/// A Kubernetes qualified name (`IsQualifiedName`): an optional DNS-subdomain
/// prefix and `/`, then a name of at most 63 characters,
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`. Resource names and extension
/// names follow it, e.g. `cpu`, `hugepages-2Mi`, `example.com/hello`.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && is_name_part(name)
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            b.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// RFC 1123 subdomain, lowercase, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    b.len() <= 63
                        && (first.is_ascii_lowercase() || first.is_ascii_digit())
                        && (last.is_ascii_lowercase() || last.is_ascii_digit())
                        && b.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                }
                _ => false,
            }
        })
}

/// Checks a capacity value: a Kubernetes quantity ([`is_quantity`]) whose value is zero or more
/// and finite; `Err` holds the rule it breaks. No machine has less than nothing of a resource,
/// and a value beyond an f64 (`1e400`) would be infinite to every reader that sums it.
pub fn check_capacity(s: &str) -> Result<(), &'static str> {
    let value = match crate::quantity::Quantity::parse(s) {
        Some(q) if s.len() <= MAX_STRING => q.value(),
        _ => return Err(RULE_QUANTITY),
    };
    if value < 0.0 {
        Err(RULE_NEGATIVE_CAPACITY)
    } else if !value.is_finite() {
        Err(RULE_INFINITE_CAPACITY)
    } else {
        Ok(())
    }
}

/// Whether `s` is a Kubernetes quantity: the grammar of [`crate::quantity`], in at most
/// [`MAX_STRING`] bytes like every other string.
pub fn is_quantity(s: &str) -> bool {
    s.len() <= MAX_STRING && crate::quantity::Quantity::parse(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities_from_the_wild_are_accepted() {
        for q in [
            "0",
            "4",
            "110",
            "15437428Ki",
            "500m",
            "1.5",
            "1e3",
            "1E-3",
            "+1",
            "-1",
            ".5",
            "5.",
            "2Gi",
            "100n",
            "3u",
            "1k",
            "7E",
            "7Ei",
            "1.5e+10",
        ] {
            assert!(is_quantity(q), "{q}");
        }
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for q in [
            "", ".", "+", "-", "Ki", "1KI", "1K", "1 Ki", "1e", "1e+", "1.2.3", "1Mi ", " 1",
            "1..", "0x10", "1ki", "1mi", "1e1.5", "1Kii", "∞",
        ] {
            assert!(!is_quantity(q), "{q:?}");
        }
    }

    #[test]
    fn qualified_names_follow_kubernetes() {
        for n in [
            "cpu",
            "memory",
            "hugepages-2Mi",
            "alpha.kubernetes.io/nvidia-gpu",
            "nvidia.com/gpu",
            "example.com/hello",
            "a",
            "A_b.c",
        ] {
            assert!(is_qualified_name(n), "{n}");
        }
        for n in [
            "",
            "/",
            "/cpu",
            "cpu/",
            "-cpu",
            "cpu-",
            "Example.com/x",
            "a/b/c",
            "ex_ample.com/x",
            ".com/x",
            "a..b/x",
            "has space",
            &"a".repeat(64),
            &format!("{}/x", "a".repeat(254)),
        ] {
            assert!(!is_qualified_name(n), "{n:?}");
        }
        assert!(is_qualified_name(&"a".repeat(63)));
    }

    #[test]
    fn every_workload_kind_is_a_known_section() {
        for kind in Kind::ALL {
            assert_eq!(
                section::workload(kind),
                format!("workloads.{}", kind.as_str())
            );
            assert!(is_section(section::workload(kind)));
        }
        assert!(!is_section("workloads.ConfigMap"));
        assert!(!is_section("workloads.Secret"));
    }

    #[test]
    fn cluster_ids_outside_the_charset_break_the_cluster_id_rule() {
        assert_eq!(
            check_cluster_id("2f9c93d3-156c-47aa-8802-578ffca9b50e"),
            Ok(())
        );
        assert_eq!(check_cluster_id("prod.eu-west:1_a"), Ok(()));
        assert_eq!(check_cluster_id(""), Err("required"));
        for bad in ["ops@corp", "a b", "<x>", "é", &"c".repeat(129)] {
            assert_eq!(check_cluster_id(bad), Err(RULE_CLUSTER_ID), "{bad:?}");
        }
    }

    #[test]
    fn an_extension_list_is_checked_as_in_a_report() {
        let ext = |name: &str, value: &str| Extension {
            name: name.into(),
            value: value.into(),
        };
        assert!(check_extensions(&[ext("example.com/a", "x"), ext("b", "")]).is_empty());
        let errors: Vec<String> = check_extensions(&[
            ext("Bad.Domain/a", "x"),
            ext("b", "x"),
            ext("b", &"v".repeat(MAX_EXTENSION_VALUE + 1)),
        ])
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            errors,
            [
                "extensions[0].name: not an extension name ([DNS-subdomain/]name)",
                "extensions[2].name: duplicate extension name",
                "extensions[2].value: longer than 1024 bytes",
            ]
        );
        let many: Vec<Extension> = (0..=MAX_EXTENSIONS)
            .map(|i| ext(&format!("e{i}"), ""))
            .collect();
        assert_eq!(
            check_extensions(&many)[0].to_string(),
            "extensions: more than 64 extensions"
        );
    }

    #[test]
    fn errors_beyond_the_cap_are_summarized_in_one_entry() {
        let mut e = Errors::new();
        for i in 0..MAX_ERRORS + 5 {
            e.push(format_args!("x[{i}]"), "bad");
        }
        let list = e.finish();
        assert_eq!(list.len(), MAX_ERRORS + 1);
        assert_eq!(
            list[MAX_ERRORS].to_string(),
            "(report): 5 more errors omitted"
        );
    }
}
