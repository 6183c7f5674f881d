//! Report-content versions: what an operator agrees to send.
//!
//! The operator of a volunteer accepts one version (the volunteer's `--consent`); the volunteer
//! then sends only the fields of that version and of the ones before it, and says what it left
//! out until the operator accepts a newer one. Version 1 is what the original (2016) volunteer
//! sent; each later version lists the fields it adds.
//!
//! A field is named by its path in the report: object fields joined by `.`, array elements
//! transparent, so `nodes.kernelVersion` is every node's `kernelVersion` (the names `--omit`
//! and `skipped` use, where they have one). Every field a [`Report`] can carry
//! belongs to exactly one version (tested against the report's own types): a field added to
//! the report without a version here fails the tests, and so cannot reach a cluster whose
//! operator did not accept it.

use serde_json::{Map, Value};

use crate::Report;

/// One field of the report, as a version lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Its path, e.g. `nodes.kernelVersion`.
    pub path: &'static str,
    /// What it holds, in a few words.
    pub about: &'static str,
}

/// One report-content version: the fields it adds to the versions before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Its number, counted from 1.
    pub number: u32,
    /// When it was introduced (a year, or an ISO 8601 date).
    pub introduced: &'static str,
    /// What it adds, in a sentence.
    pub summary: &'static str,
    /// The fields it adds, in report order.
    pub fields: &'static [Field],
}

const fn field(path: &'static str, about: &'static str) -> Field {
    Field { path, about }
}

/// Every version, oldest first: `VERSIONS[i].number` is `i + 1`.
pub const VERSIONS: [Version; 2] = [
    Version {
        number: 1,
        introduced: "2016",
        summary: "What the original Spartakus volunteer sent: its version, the cluster's ID and Kubernetes version, each node's platform and capacity, and the operator's extensions.",
        fields: &[
            field("version", "the volunteer's build version"),
            field("timestamp", "when the report was written, UNIX seconds"),
            field("clusterID", "the cluster's ID (by default a keyed hash)"),
            field("masterVersion", "the API server's version, e.g. v1.37.2"),
            field("nodes", "one entry per node"),
            field("nodes.id", "the node's keyed hash"),
            field("nodes.operatingSystem", "e.g. linux"),
            field("nodes.osImage", "the distribution's release string"),
            field("nodes.kernelVersion", "the kernel's release string"),
            field("nodes.architecture", "e.g. amd64"),
            field("nodes.containerRuntimeVersion", "e.g. containerd://2.0.1"),
            field("nodes.kubeletVersion", "the kubelet's version"),
            field("nodes.cloudProvider", "a public provider's name, or other"),
            field("nodes.capacity", "the node's resources"),
            field("nodes.capacity.resource", "a resource name, e.g. cpu"),
            field("nodes.capacity.value", "its quantity, e.g. 4"),
            field("extensions", "key/value pairs from --extensions"),
            field("extensions.name", "a pair's key"),
            field("extensions.value", "a pair's value"),
        ],
    },
    Version {
        number: 2,
        introduced: "2026-12-07",
        summary: "Spartakus 0.1: a report ID and schema version, the namespace count, workload statistics (counts, per-namespace histograms, ages), the sections not collected, and the check that lets the cluster erase its reports.",
        fields: &[
            field(
                "reportID",
                "a random UUID per report, reused on its retries",
            ),
            field("schemaVersion", "the report schema's version"),
            field("namespaces", "the number of namespaces"),
            field("workloads", "statistics per workload kind"),
            field(
                "workloads.kind",
                "Pod, Service, Deployment, StatefulSet, DaemonSet, Job or CronJob",
            ),
            field("workloads.total", "the number of objects of the kind"),
            field(
                "workloads.perNamespace",
                "how many namespaces hold how many objects",
            ),
            field(
                "workloads.perNamespace.min",
                "a bucket's smallest object count",
            ),
            field("workloads.perNamespace.max", "its largest"),
            field(
                "workloads.perNamespace.namespaces",
                "the namespaces in the bucket",
            ),
            field(
                "workloads.namespacesSampled",
                "the namespaces counted, when sampled",
            ),
            field("workloads.ageHours", "the objects' ages in whole hours"),
            field("workloads.ageHours.median", "the median age"),
            field("workloads.ageHours.p90", "the 90th-percentile age"),
            field("skipped", "the sections not collected"),
            field("skipped.section", "which section"),
            field(
                "skipped.reason",
                "why: forbidden, notFound, omitted or error",
            ),
            field("erasureCheck", "SHA-256 of the cluster's erasure secret"),
        ],
    },
];

/// The newest version: what this build's reports contain.
pub const CURRENT: u32 = VERSIONS.len() as u32;

/// The version `number`, if there is one.
pub fn version(number: u32) -> Option<&'static Version> {
    let index = usize::try_from(number).ok()?.checked_sub(1)?;
    VERSIONS.get(index)
}

/// The versions after `accepted`, oldest first: what accepting [`CURRENT`] would add.
pub fn newer_than(accepted: u32) -> &'static [Version] {
    let from = usize::try_from(accepted).map_or(VERSIONS.len(), |a| a.min(VERSIONS.len()));
    &VERSIONS[from..]
}

/// The version that introduced the field at `path`; `None` for a path no version lists.
pub fn version_of(path: &str) -> Option<u32> {
    VERSIONS
        .iter()
        .find(|v| v.fields.iter().any(|f| f.path == path))
        .map(|v| v.number)
}

/// Whether an operator who accepted version `accepted` agreed to send the field at `path`.
pub fn is_accepted(path: &str, accepted: u32) -> bool {
    version_of(path).is_some_and(|v| v <= accepted)
}

/// The position of `path` among all versions' fields (report order within a version, older
/// versions first); after every listed field for one no version lists.
pub fn position(path: &str) -> usize {
    VERSIONS
        .iter()
        .flat_map(|v| v.fields)
        .position(|f| f.path == path)
        .unwrap_or(usize::MAX)
}

/// Removes from `report` (a report as JSON) every field that version `accepted` does not
/// include, and any field no version lists. Returns the paths removed, the outermost only
/// (`workloads`, not also `workloads.total`), each once, in the order of the versions' lists
/// ([`position`]).
pub fn withhold(report: &mut Value, accepted: u32) -> Vec<String> {
    let mut removed = Vec::new();
    if let Value::Object(map) = report {
        retain(map, "", accepted, &mut removed);
    }
    removed.sort_by_key(|p| position(p));
    removed
}

fn retain(map: &mut Map<String, Value>, prefix: &str, accepted: u32, removed: &mut Vec<String>) {
    map.retain(|name, value| {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if !is_accepted(&path, accepted) {
            if !removed.contains(&path) {
                removed.push(path);
            }
            return false;
        }
        match value {
            Value::Object(inner) => retain(inner, &path, accepted, removed),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        retain(inner, &path, accepted, removed);
                    }
                }
            }
            _ => {}
        }
        true
    });
}

/// `report` with only the fields version `accepted` includes ([`withhold`]), and the paths
/// removed. A report of version [`CURRENT`] or later comes back as it was.
pub fn restrict(report: Report, accepted: u32) -> Result<(Report, Vec<String>), serde_json::Error> {
    if accepted >= CURRENT {
        return Ok((report, Vec::new()));
    }
    let mut value = serde_json::to_value(&report)?;
    let removed = withhold(&mut value, accepted);
    // Every field a later version adds is optional, so what is left is still a report.
    Ok((serde_json::from_value(value)?, removed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails
mod tests {
    use std::collections::BTreeSet;
    use std::fmt::Write;
    use std::path::PathBuf;

    use super::*;
    use crate::{AgeHours, Bucket, Extension, Node, Resource, Skipped, WorkloadStats};

    const SEED: &[u8] = include_bytes!("../testdata/v1-seed.json");
    const FULL: &[u8] = include_bytes!("../testdata/v2-full.json");

    /// The fields serde accepts for `T`: its `deny_unknown_fields` error names every one.
    fn fields_of<T: serde::de::DeserializeOwned>() -> Vec<String> {
        let err = serde_json::from_str::<T>(r#"{"\u0000": 0}"#)
            .err()
            .expect("an unknown field is refused")
            .to_string();
        let (_, list) = err.split_once("expected ").expect("a list of fields");
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// Every field path a report can carry, from the report's own types: each struct of the
    /// report, with the path at which it appears.
    fn every_report_field() -> Vec<String> {
        let structs = [
            ("", fields_of::<Report>()),
            ("nodes", fields_of::<Node>()),
            ("nodes.capacity", fields_of::<Resource>()),
            ("extensions", fields_of::<Extension>()),
            ("workloads", fields_of::<WorkloadStats>()),
            ("workloads.perNamespace", fields_of::<Bucket>()),
            ("workloads.ageHours", fields_of::<AgeHours>()),
            ("skipped", fields_of::<Skipped>()),
        ];
        let mut all = Vec::new();
        for (prefix, fields) in structs {
            assert!(!fields.is_empty(), "{prefix}");
            for f in fields {
                all.push(if prefix.is_empty() {
                    f
                } else {
                    format!("{prefix}.{f}")
                });
            }
        }
        all
    }

    /// Every field path present in a JSON document.
    fn paths_in(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (name, v) in map {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    paths_in(v, &path, out);
                    out.insert(path);
                }
            }
            Value::Array(items) => {
                for item in items {
                    paths_in(item, prefix, out);
                }
            }
            _ => {}
        }
    }

    fn paths_of(body: &[u8]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        paths_in(&serde_json::from_slice(body).unwrap(), "", &mut out);
        out
    }

    /// Compares `text` with the committed file `path` (relative to the crate);
    /// `SPARTAKUS_BLESS=1` rewrites it instead.
    fn golden(path: &str, text: &str) {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
        if std::env::var_os("SPARTAKUS_BLESS").is_some() {
            std::fs::write(&file, text).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            committed, text,
            "{path} differs from report::consent (SPARTAKUS_BLESS=1 rewrites it)"
        );
    }

    #[test]
    fn versions_are_numbered_from_one_and_current_is_the_newest() {
        for (i, v) in VERSIONS.iter().enumerate() {
            assert_eq!(v.number as usize, i + 1);
            assert_eq!(version(v.number), Some(v));
            assert!(!v.fields.is_empty(), "version {} adds nothing", v.number);
        }
        assert_eq!(CURRENT, 2);
        assert_eq!(version(0), None);
        assert_eq!(version(CURRENT + 1), None);
        assert_eq!(newer_than(0).len(), VERSIONS.len());
        assert_eq!(newer_than(1), &VERSIONS[1..]);
        assert!(newer_than(CURRENT).is_empty());
        assert!(newer_than(u32::MAX).is_empty());
    }

    #[test]
    fn every_field_the_report_can_carry_belongs_to_exactly_one_version() {
        let listed: Vec<&str> = VERSIONS
            .iter()
            .flat_map(|v| v.fields)
            .map(|f| f.path)
            .collect();
        let unique: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(
            unique.len(),
            listed.len(),
            "a field listed twice: {listed:?}"
        );
        let carried = every_report_field();
        for path in &carried {
            assert!(
                version_of(path).is_some(),
                "the report can carry {path}, which no consent version lists: add it to a new version in report::consent"
            );
        }
        let carried: BTreeSet<&str> = carried.iter().map(String::as_str).collect();
        assert_eq!(unique, carried, "listed fields the report cannot carry");
        // The complete example carries every field, and nothing no version lists.
        let in_example = paths_of(FULL);
        let in_example: BTreeSet<&str> = in_example.iter().map(String::as_str).collect();
        assert_eq!(in_example, carried);
    }

    #[test]
    fn the_original_report_is_exactly_version_one() {
        let seed = paths_of(SEED);
        for path in &seed {
            assert_eq!(version_of(path), Some(1), "{path}");
        }
        // The seed has every version-1 field but the optional extensions and cloudProvider.
        let v1: BTreeSet<String> = VERSIONS[0]
            .fields
            .iter()
            .map(|f| f.path.to_owned())
            .filter(|p| !p.starts_with("extensions") && p != "nodes.cloudProvider")
            .collect();
        assert_eq!(seed, v1);
    }

    #[test]
    fn each_versions_fields_match_the_golden_file() {
        let mut text = String::new();
        for v in &VERSIONS {
            let _ = writeln!(text, "version {} (introduced {})", v.number, v.introduced);
            for f in v.fields {
                let _ = writeln!(text, "  {}", f.path);
            }
        }
        golden("testdata/consent/versions.txt", &text);
    }

    /// The table in docs/report.md, as generated from [`VERSIONS`].
    fn docs_table() -> String {
        let mut out = String::from("| version | introduced | adds |\n| --- | --- | --- |\n");
        for v in &VERSIONS {
            let fields: Vec<String> = v.fields.iter().map(|f| format!("`{}`", f.path)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} Fields: {} |",
                v.number,
                v.introduced,
                v.summary,
                fields.join(", ")
            );
        }
        out
    }

    #[test]
    fn the_manuals_versions_table_is_report_consent() {
        const BEGIN: &str = "<!-- BEGIN CONSENT VERSIONS -->\n";
        const END: &str = "<!-- END CONSENT VERSIONS -->";
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/report.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let start = doc.find(BEGIN).expect("the BEGIN marker in docs/report.md") + BEGIN.len();
        let end = start
            + doc[start..]
                .find(END)
                .expect("the END marker in docs/report.md");
        let want = docs_table();
        if std::env::var_os("SPARTAKUS_BLESS").is_some() {
            std::fs::write(&path, format!("{}{want}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        assert_eq!(
            &doc[start..end],
            want,
            "docs/report.md's consent table differs from report::consent (SPARTAKUS_BLESS=1 rewrites it)"
        );
    }

    #[test]
    fn a_full_report_restricted_to_version_one_keeps_exactly_version_ones_fields() {
        let full = crate::decode(FULL).unwrap().into_report();
        let (v1, removed) = restrict(full.clone(), 1).unwrap();
        assert_eq!(
            removed,
            [
                "reportID",
                "schemaVersion",
                "namespaces",
                "workloads",
                "skipped",
                "erasureCheck"
            ]
        );
        let body = serde_json::to_vec(&v1).unwrap();
        for path in paths_of(&body) {
            assert_eq!(version_of(&path), Some(1), "{path}");
        }
        // Nothing of version 1 was touched, and what is left passes the report's rules.
        assert_eq!(v1.nodes, full.nodes);
        assert_eq!(v1.extensions, full.extensions);
        assert_eq!(v1.master_version, full.master_version);
        assert!(v1.clone().validate().is_ok());
        // The current version keeps everything.
        let (same, removed) = restrict(full.clone(), CURRENT).unwrap();
        assert_eq!((same, removed), (full, Vec::new()));
    }

    #[test]
    fn withholding_removes_fields_inside_arrays_and_fields_no_version_lists() {
        let mut doc = serde_json::json!({
            "version": "v", "clusterID": "c",
            "nodes": [{"id": "a", "newField": 1}, {"id": "b", "newField": 2}],
            "unlisted": true
        });
        let removed = withhold(&mut doc, CURRENT);
        assert_eq!(removed, ["nodes.newField", "unlisted"]);
        assert_eq!(
            doc,
            serde_json::json!({"version": "v", "clusterID": "c", "nodes": [{"id": "a"}, {"id": "b"}]})
        );
    }

    #[test]
    fn positions_follow_the_versions_and_unknown_paths_come_last() {
        assert!(position("version") < position("nodes.kernelVersion"));
        assert!(position("extensions.value") < position("reportID"));
        assert!(position("skipped") < position("erasureCheck"));
        assert_eq!(position("nope"), usize::MAX);
        assert!(is_accepted("nodes.kernelVersion", 1));
        assert!(!is_accepted("workloads", 1));
        assert!(is_accepted("workloads", 2));
        assert!(!is_accepted("nope", CURRENT));
    }
}
