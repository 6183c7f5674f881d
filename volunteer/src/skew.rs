//! The cluster's own version skew, judged locally against Kubernetes' policy and release dates
//! ([`report::skew`]): what `volunteer status` shows and the status ConfigMap keeps under
//! `key::VERSION_SKEW` (the `status` module). Computed from what was collected,
//! with no network; never sent. Pure: the snapshot and the day in, text out.

use std::collections::BTreeMap;

use jiff::civil::Date;
use report::skew::{self, ControlPlane, Kubelet};
use report::version::{self, Minor};

use crate::snapshot::{Section, Snapshot};

/// First word of the summary when nothing needs the operator.
pub const OK: &str = "ok";
/// First word of the summary when something is outside the policy or past its support.
pub const ATTENTION: &str = "attention";
/// First word of the summary when the table cannot judge (a release newer than the table, or
/// versions not collected).
pub const UNKNOWN: &str = "unknown";

/// The summary of `snapshot`'s version skew as of `today`: a first line `ok: …`,
/// `attention: …` or `unknown: …`, then one line for the control plane, one per kubelet minor
/// (newest first), and the table's date and sources.
pub(crate) fn summary(snapshot: &Snapshot, today: Date) -> String {
    let mut problems: Vec<String> = Vec::new();
    let mut unknowns: Vec<String> = Vec::new();
    let mut lines: Vec<String> = Vec::new();

    let control = match &snapshot.master_version {
        Section::Ok(v) => match version::minor(v) {
            Some(minor) => Some(minor),
            None => {
                lines.push(format!(
                    "control plane {v:?}: not a Kubernetes version, not judged"
                ));
                unknowns.push("control plane version unreadable".into());
                None
            }
        },
        Section::Skipped(_) => {
            lines.push("control plane: version not collected (omitted), not judged".into());
            unknowns.push("control plane version not collected".into());
            None
        }
    };
    if let Some(minor) = control {
        lines.push(match skew::control_plane(minor, today) {
            ControlPlane::Supported { until, .. } => {
                format!("control plane {minor}: supported until {until}")
            }
            ControlPlane::PastEndOfLife { since, .. } => {
                problems.push(format!("control plane {minor} is past its end of support"));
                match since {
                    Some(d) => format!("control plane {minor}: past its end of support ({d})"),
                    None => format!("control plane {minor}: past its end of support"),
                }
            }
            ControlPlane::Unknown { .. } => {
                unknowns.push(format!("control plane {minor} is newer than the table"));
                format!(
                    "control plane {minor}: unknown, the table ({}) is older than this release",
                    skew::TABLE_DATE
                )
            }
        });
    }

    match &snapshot.nodes {
        Section::Skipped(_) => lines.push("kubelets: nodes not collected, not judged".into()),
        Section::Ok(nodes) if nodes.is_empty() => lines.push("kubelets: no nodes".into()),
        Section::Ok(nodes) => {
            let mut by_minor: BTreeMap<Minor, u64> = BTreeMap::new();
            let mut unreadable = 0u64;
            for node in nodes {
                match node.kubelet_version.as_deref().and_then(version::minor) {
                    Some(m) => *by_minor.entry(m).or_default() += 1,
                    None => unreadable += 1,
                }
            }
            let mut outside = 0u64;
            for (minor, count) in by_minor.iter().rev() {
                let on = format!("kubelet {minor} on {}", nodes_text(*count));
                lines.push(match control.map(|c| (c, skew::kubelet(c, *minor))) {
                    None => format!("{on}: not judged without the control plane's version"),
                    Some((_, Kubelet::Supported { behind: 0 })) => {
                        format!("{on}: the control plane's minor, within the policy")
                    }
                    Some((_, Kubelet::Supported { behind })) => {
                        format!("{on}: {behind} minor(s) behind the control plane, within the policy")
                    }
                    Some((_, Kubelet::TooOld { behind, max })) => {
                        outside += count;
                        format!(
                            "{on}: {behind} minors behind the control plane, more than the {max} the policy allows"
                        )
                    }
                    Some((_, Kubelet::Newer { ahead })) => {
                        outside += count;
                        format!(
                            "{on}: {ahead} minor(s) newer than the control plane, which the policy never allows"
                        )
                    }
                    Some((c, Kubelet::OtherMajor)) => {
                        format!("{on}: another major than the control plane's {c}, not judged")
                    }
                });
            }
            if unreadable > 0 {
                lines.push(format!(
                    "kubelet version unknown on {}",
                    nodes_text(unreadable)
                ));
            }
            if outside > 0 {
                problems.push(format!(
                    "the kubelet of {} is outside the version-skew policy",
                    nodes_text(outside)
                ));
            }
        }
    }

    let first = if !problems.is_empty() {
        format!("{ATTENTION}: {}", problems.join("; "))
    } else if !unknowns.is_empty() {
        format!("{UNKNOWN}: {}", unknowns.join("; "))
    } else {
        format!("{OK}: the control plane is supported and every kubelet is within the policy")
    };
    lines.insert(0, first);
    lines.push(format!(
        "judged on {today} against Kubernetes' version-skew policy and release dates as of {} ({}, {})",
        skew::TABLE_DATE,
        skew::POLICY_SOURCE,
        skew::RELEASES_SOURCE
    ));
    lines.join("\n")
}

fn nodes_text(n: u64) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use report::SkipReason;

    use super::*;
    use crate::snapshot::NodeSnapshot;

    fn snapshot(master: Option<&str>, kubelets: &[Option<&str>]) -> Snapshot {
        Snapshot {
            taken_at: 0,
            master_version: match master {
                Some(v) => Section::Ok(v.to_owned()),
                None => Section::Skipped(SkipReason::Omitted),
            },
            nodes: Section::Ok(
                kubelets
                    .iter()
                    .map(|k| NodeSnapshot {
                        uid: "uid-that-must-not-appear".into(),
                        kubelet_version: k.map(str::to_owned),
                        ..Default::default()
                    })
                    .collect(),
            ),
            namespaces: Section::Skipped(SkipReason::Omitted),
            workloads: Section::Skipped(SkipReason::Omitted),
            extensions: Section::Skipped(SkipReason::Omitted),
        }
    }

    fn day(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn each_case_gets_its_verdict() {
        let today = day("2026-12-07");
        for (master, kubelets, first, line) in [
            (
                Some("v1.37.2"),
                vec![Some("v1.37.2"), Some("v1.36.1")],
                "ok: ",
                "kubelet 1.36 on 1 node: 1 minor(s) behind the control plane, within the policy",
            ),
            (
                Some("v1.37.2"),
                vec![Some("v1.37.2"), Some("v1.33.4"), Some("v1.33.4")],
                "attention: the kubelet of 2 nodes is outside the version-skew policy",
                "kubelet 1.33 on 2 nodes: 4 minors behind the control plane, more than the 3 the policy allows",
            ),
            (
                Some("v1.27.3"),
                vec![Some("v1.24.0")],
                "attention: control plane 1.27 is past its end of support; the kubelet of 1 node is outside",
                "kubelet 1.24 on 1 node: 3 minors behind the control plane, more than the 2 the policy allows",
            ),
            (
                Some("v1.35.0"),
                vec![Some("v1.36.0")],
                "attention: the kubelet of 1 node",
                "kubelet 1.36 on 1 node: 1 minor(s) newer than the control plane, which the policy never allows",
            ),
            (
                Some("v1.33.1+k3s1"),
                vec![Some("v1.33.1+k3s1")],
                "attention: control plane 1.33 is past its end of support",
                "control plane 1.33: past its end of support (2026-06-28)",
            ),
            (
                Some("v1.38.0"),
                vec![Some("v1.38.0")],
                "unknown: control plane 1.38 is newer than the table",
                "control plane 1.38: unknown, the table (2026-12-07) is older than this release",
            ),
            (
                None,
                vec![Some("v1.30.0")],
                "unknown: control plane version not collected",
                "kubelet 1.30 on 1 node: not judged without the control plane's version",
            ),
            (
                Some("v1.37.2"),
                vec![None, Some("garbage")],
                "ok: ",
                "kubelet version unknown on 2 nodes",
            ),
        ] {
            let text = summary(&snapshot(master, &kubelets), today);
            assert!(text.starts_with(first), "{master:?} {kubelets:?}:\n{text}");
            assert!(
                text.lines().any(|l| l == line),
                "{master:?} {kubelets:?}:\n{text}"
            );
            assert!(!text.contains("uid-that-must-not-appear"));
            assert!(
                text.ends_with(
                    "as of 2026-12-07 (https://kubernetes.io/releases/version-skew-policy/, https://kubernetes.io/releases/)"
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn kubelets_are_listed_newest_first_and_a_supported_control_plane_says_until_when() {
        let text = summary(
            &snapshot(Some("v1.37.2"), &[Some("v1.35.0"), Some("v1.37.1")]),
            day("2026-12-07"),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "control plane 1.37: supported until 2027-10-28");
        assert!(lines[2].starts_with("kubelet 1.37 on 1 node: the control plane's minor"));
        assert!(lines[3].starts_with("kubelet 1.35 on 1 node: 2 minor(s) behind"));
    }

    #[test]
    fn skipped_nodes_and_an_empty_cluster_are_said_as_such() {
        let mut s = snapshot(Some("v1.37.2"), &[]);
        assert!(summary(&s, day("2026-12-07")).contains("\nkubelets: no nodes\n"));
        s.nodes = Section::Skipped(SkipReason::Omitted);
        let text = summary(&s, day("2026-12-07"));
        assert!(text.contains("\nkubelets: nodes not collected"), "{text}");
        assert!(text.starts_with("ok: "), "{text}");
    }
}
