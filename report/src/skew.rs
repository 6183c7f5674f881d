//! Kubernetes' version-skew policy and the end of support of each minor release, as data, and
//! the verdicts a cluster's versions get against them. Pure: no clock, no I/O; the date to judge
//! at is an argument.
//!
//! Sources, read on [`TABLE_DATE`]:
//! - the policy, [`POLICY_SOURCE`]: the kubelet must not be newer than kube-apiserver, and may be
//!   up to three minor versions older since Kubernetes 1.28 (two before): [`kubelet_max_behind`];
//! - each minor's end of life, [`RELEASES_SOURCE`]: [`RELEASES`].
//!
//! **The table must be refreshed with each Kubernetes release** (about every four months): a
//! control plane on a minor newer than the table knows gets [`ControlPlane::Unknown`] ("the
//! table is older than this release"), never a guess. End-of-life dates of releases not yet
//! past their end are the project's published plan on that date and may move; those of 1.36
//! and 1.37 follow the project's cadence (end of life about 14 months after release, on the
//! 28th, the 1.34 date excepted) and are the first to check when refreshing.

use jiff::civil::{Date, date};

use crate::version::Minor;

/// The version-skew policy's page.
pub const POLICY_SOURCE: &str = "https://kubernetes.io/releases/version-skew-policy/";
/// The page listing each release's end-of-life date.
pub const RELEASES_SOURCE: &str = "https://kubernetes.io/releases/";
/// When [`RELEASES`] and the policy were last written from their sources.
pub const TABLE_DATE: Date = date(2026, 12, 7);

/// One minor release of Kubernetes 1.x and the last day it is supported (maintenance ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The minor number within major 1: `34` for 1.34.
    pub minor: u16,
    /// Its end of life.
    pub end_of_life: Date,
}

const fn release(minor: u16, y: i16, m: i8, d: i8) -> Release {
    Release {
        minor,
        end_of_life: date(y, m, d),
    }
}

/// Every minor of Kubernetes 1.x from 1.19 (the first with a year of support) to the newest
/// released on [`TABLE_DATE`], oldest first, with its end of life. Any older minor ended
/// before 1.19 did.
pub const RELEASES: &[Release] = &[
    release(19, 2021, 10, 28),
    release(20, 2022, 2, 28),
    release(21, 2022, 6, 28),
    release(22, 2022, 10, 28),
    release(23, 2023, 2, 28),
    release(24, 2023, 7, 28),
    release(25, 2023, 10, 28),
    release(26, 2024, 2, 28),
    release(27, 2024, 6, 28),
    release(28, 2024, 10, 28),
    release(29, 2025, 2, 28),
    release(30, 2025, 6, 28),
    release(31, 2025, 10, 28),
    release(32, 2026, 2, 28),
    release(33, 2026, 6, 28),
    release(34, 2026, 10, 27),
    release(35, 2027, 2, 28),
    release(36, 2027, 6, 28),
    release(37, 2027, 10, 28),
];

/// The first kube-apiserver minor whose policy allows kubelets three minors older.
pub const THREE_MINORS_SINCE: u16 = 28;

/// How many minors older than a kube-apiserver of `apiserver` a kubelet may be: 3 since 1.28,
/// 2 before.
pub fn kubelet_max_behind(apiserver: Minor) -> u16 {
    if apiserver.major > 1 || apiserver.minor >= THREE_MINORS_SINCE {
        3
    } else {
        2
    }
}

/// A control plane's minor against [`RELEASES`] on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlane {
    /// Supported until `until` (inclusive).
    Supported {
        /// The minor.
        minor: Minor,
        /// Its end of life.
        until: Date,
    },
    /// Past its end of life.
    PastEndOfLife {
        /// The minor.
        minor: Minor,
        /// Its end of life; `None` for a minor older than the table's oldest, which ended
        /// before it.
        since: Option<Date>,
    },
    /// Newer than the table knows (or another major): the table is older than this release.
    Unknown {
        /// The minor.
        minor: Minor,
    },
}

impl ControlPlane {
    /// Whether an operator should act: the control plane is past its end of life.
    pub fn needs_attention(&self) -> bool {
        matches!(self, ControlPlane::PastEndOfLife { .. })
    }
}

/// The verdict on a control plane of `minor` on `today`.
pub fn control_plane(minor: Minor, today: Date) -> ControlPlane {
    let oldest = RELEASES[0];
    if minor.major == 0 || (minor.major == 1 && minor.minor < oldest.minor) {
        return ControlPlane::PastEndOfLife { minor, since: None };
    }
    match RELEASES
        .iter()
        .find(|r| minor.major == 1 && r.minor == minor.minor)
    {
        Some(r) if today > r.end_of_life => ControlPlane::PastEndOfLife {
            minor,
            since: Some(r.end_of_life),
        },
        Some(r) => ControlPlane::Supported {
            minor,
            until: r.end_of_life,
        },
        None => ControlPlane::Unknown { minor },
    }
}

/// A kubelet's minor against the control plane's, by [`kubelet_max_behind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kubelet {
    /// Within the policy: `behind` minors older (0: the same minor).
    Supported {
        /// Minors behind the control plane.
        behind: u16,
    },
    /// More minors older than the policy allows.
    TooOld {
        /// Minors behind the control plane.
        behind: u16,
        /// The most the policy allows for this control plane.
        max: u16,
    },
    /// Newer than the control plane, which the policy never allows.
    Newer {
        /// Minors ahead of the control plane.
        ahead: u16,
    },
    /// Another major than the control plane's: the policy says nothing about it.
    OtherMajor,
}

impl Kubelet {
    /// Whether an operator should act: outside the policy.
    pub fn needs_attention(&self) -> bool {
        matches!(self, Kubelet::TooOld { .. } | Kubelet::Newer { .. })
    }
}

/// The verdict on a kubelet of `kubelet` under a control plane of `apiserver`.
pub fn kubelet(apiserver: Minor, kubelet: Minor) -> Kubelet {
    match kubelet.minors_after(apiserver) {
        None => Kubelet::OtherMajor,
        Some(d) if d > 0 => Kubelet::Newer {
            ahead: d.unsigned_abs() as u16,
        },
        Some(d) => {
            let behind = d.unsigned_abs() as u16;
            let max = kubelet_max_behind(apiserver);
            if behind > max {
                Kubelet::TooOld { behind, max }
            } else {
                Kubelet::Supported { behind }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn m(s: &str) -> Minor {
        crate::version::minor(s).unwrap()
    }

    #[test]
    fn the_table_is_in_order_without_gaps_and_ends_with_the_minor_of_its_date() {
        for pair in RELEASES.windows(2) {
            assert_eq!(pair[1].minor, pair[0].minor + 1);
            assert!(pair[1].end_of_life > pair[0].end_of_life);
        }
        // The test environment's kube-apiserver (v1.37.2) was the newest release on the day the
        // table was written; a newer one means the table needs refreshing.
        assert_eq!(RELEASES.last().unwrap().minor, 37);
        assert!(TABLE_DATE < RELEASES.last().unwrap().end_of_life);
    }

    #[test]
    fn kubelets_may_be_three_minors_behind_since_1_28_and_two_before() {
        for (apiserver, kubelet_v, want) in [
            ("v1.37.2", "v1.37.0", Kubelet::Supported { behind: 0 }),
            ("v1.37.2", "v1.34.9", Kubelet::Supported { behind: 3 }),
            ("v1.37.2", "v1.33.1", Kubelet::TooOld { behind: 4, max: 3 }),
            ("v1.28.0", "v1.25.3", Kubelet::Supported { behind: 3 }),
            ("v1.28.0", "v1.24.3", Kubelet::TooOld { behind: 4, max: 3 }),
            ("v1.27.4", "v1.25.0", Kubelet::Supported { behind: 2 }),
            ("v1.27.4", "v1.24.0", Kubelet::TooOld { behind: 3, max: 2 }),
            ("v1.34.1", "v1.35.0", Kubelet::Newer { ahead: 1 }),
            ("v1.37.2", "v2.0.0", Kubelet::OtherMajor),
        ] {
            assert_eq!(
                kubelet(m(apiserver), m(kubelet_v)),
                want,
                "{apiserver} {kubelet_v}"
            );
        }
    }

    #[test]
    fn only_kubelets_outside_the_policy_need_attention() {
        assert!(kubelet(m("1.37"), m("1.33")).needs_attention());
        assert!(kubelet(m("1.36"), m("1.37")).needs_attention());
        assert!(!kubelet(m("1.37"), m("1.34")).needs_attention());
        assert!(!kubelet(m("1.37"), m("2.0")).needs_attention());
    }

    #[test]
    fn a_control_plane_is_judged_by_its_minor_s_end_of_life_on_the_day() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        for (version, today, want) in [
            (
                "v1.37.2",
                "2026-12-07",
                ControlPlane::Supported {
                    minor: m("1.37"),
                    until: d("2027-10-28"),
                },
            ),
            (
                "v1.34.5",
                "2026-10-27",
                ControlPlane::Supported {
                    minor: m("1.34"),
                    until: d("2026-10-27"),
                },
            ),
            (
                "v1.34.5",
                "2026-10-28",
                ControlPlane::PastEndOfLife {
                    minor: m("1.34"),
                    since: Some(d("2026-10-27")),
                },
            ),
            (
                "v1.30.0-eks-1",
                "2026-12-07",
                ControlPlane::PastEndOfLife {
                    minor: m("1.30"),
                    since: Some(d("2025-06-28")),
                },
            ),
            (
                "v1.16.0",
                "2020-01-01",
                ControlPlane::PastEndOfLife {
                    minor: m("1.16"),
                    since: None,
                },
            ),
            (
                "v1.38.0",
                "2026-12-07",
                ControlPlane::Unknown { minor: m("1.38") },
            ),
            (
                "v2.0.0",
                "2026-12-07",
                ControlPlane::Unknown { minor: m("2.0") },
            ),
        ] {
            assert_eq!(
                control_plane(m(version), d(today)),
                want,
                "{version} {today}"
            );
        }
    }

    #[test]
    fn only_a_control_plane_past_its_end_of_life_needs_attention() {
        let today = TABLE_DATE;
        assert!(control_plane(m("1.33"), today).needs_attention());
        assert!(!control_plane(m("1.35"), today).needs_attention());
        assert!(!control_plane(m("1.99"), today).needs_attention());
    }
}
