//! The ledger: every release and what it cost, so that a snapshot is released once.
//!
//! Each release draws fresh noise, so two releases of one date would let anyone average the
//! noise away. `ledger.json`, in the published folder beside the snapshots, lists every release
//! (date, day of release, ρ, ε, δ) and the cumulative guarantee for a cluster present in all of them
//! (ρ adds up under composition). `run` refuses to release a date the ledger lists unless
//! `--allow-rerelease`, and refuses a folder without a ledger unless `--new-ledger`: a lost
//! volume is then a failing job, not a silent second release.

use std::path::Path;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::output::{Output, OutputError, write_atomic};
use crate::privacy::Guarantee;
use crate::snapshot::to_json;

/// The ledger's file name in the published folder.
pub(crate) const FILE: &str = "ledger.json";
/// Its `format`.
pub(crate) const FORMAT: &str = "spartakus-stats-ledger";
/// Its `formatVersion`.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// `ledger.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ledger {
    /// [`FORMAT`].
    pub(crate) format: String,
    /// [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// Every release, oldest first.
    pub(crate) releases: Vec<Release>,
    /// What every release together guarantees a cluster present in all of them.
    pub cumulative: Cumulative,
}

/// One release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Release {
    /// The snapshot's date.
    pub(crate) date: Date,
    /// The UTC day it was computed (no time of day: nothing published is finer than a day).
    pub(crate) released_on: Date,
    /// ρ spent.
    pub(crate) rho: f64,
    /// ε at `delta`.
    pub(crate) epsilon: f64,
    /// δ.
    pub(crate) delta: f64,
    /// Whether it released a date again (`--allow-rerelease`).
    pub(crate) rerelease: bool,
}

/// The composition of every release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cumulative {
    /// Releases.
    pub(crate) releases: usize,
    /// The sum of their ρ.
    pub(crate) rho: f64,
    /// ε at `delta`.
    pub epsilon: f64,
    /// The sum of their δ.
    pub(crate) delta: f64,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Ledger {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            releases: Vec::new(),
            cumulative: Cumulative {
                releases: 0,
                rho: 0.0,
                epsilon: 0.0,
                delta: 0.0,
            },
        }
    }

    /// The ledger of `output`; `None` when it has none.
    pub fn load(output: &Output) -> Result<Option<Self>, OutputError> {
        output.read_json(FILE)
    }

    /// Writes it to `output` atomically.
    pub fn save(&self, output: &Output) -> Result<(), OutputError> {
        write_atomic(&output.root().join(FILE), &to_json(self))
    }

    /// The release of `date`, if any (the latest one).
    pub(crate) fn released(&self, date: Date) -> Option<&Release> {
        self.releases.iter().rev().find(|r| r.date == date)
    }

    /// Records a release of `date` with `guarantee`.
    pub fn record(&mut self, date: Date, at: Timestamp, guarantee: &Guarantee) {
        let rerelease = self.released(date).is_some();
        self.releases.push(Release {
            date,
            released_on: at.to_zoned(jiff::tz::TimeZone::UTC).date(),
            rho: round6(guarantee.rho),
            epsilon: round6(guarantee.epsilon),
            delta: guarantee.delta,
            rerelease,
        });
        let rho: f64 = self.releases.iter().map(|r| r.rho).sum();
        let delta: f64 = self.releases.iter().map(|r| r.delta).sum();
        let g = Guarantee::of(rho, delta);
        self.cumulative = Cumulative {
            releases: self.releases.len(),
            rho: round6(rho),
            epsilon: round6(g.epsilon),
            delta,
        };
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Why the folder has no usable ledger, for the operator.
pub(crate) fn missing(root: &Path, has_snapshots: bool) -> String {
    if has_snapshots {
        format!(
            "{}: snapshots but no {FILE}: a release is final, and without the ledger the job cannot tell which dates were released. Restore {FILE} from the published copy (it is served beside the snapshots) before running again",
            root.display()
        )
    } else {
        format!(
            "{}: no {FILE}. For a new publication start once with --new-ledger; if this folder lost its volume, restore {FILE} and the snapshots from the published copy first, or every released date would be released again with fresh noise",
            root.display()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cumulative_guarantee_adds_up_every_release() {
        let mut l = Ledger::new();
        let g = Guarantee::of(0.05, 1e-7);
        let at: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        for d in ["2026-11-22", "2026-11-29"] {
            l.record(d.parse().unwrap(), at, &g);
        }
        assert_eq!(l.cumulative.releases, 2);
        assert!((l.cumulative.rho - 0.1).abs() < 1e-9);
        assert!((l.cumulative.delta - 2e-7).abs() < 1e-15);
        assert!(l.cumulative.epsilon > g.epsilon && l.cumulative.epsilon < 2.0 * g.epsilon);
        assert!(!l.releases[1].rerelease);
        l.record("2026-11-29".parse().unwrap(), at, &g);
        assert!(l.releases[2].rerelease);
        assert!(l.released("2026-11-22".parse().unwrap()).is_some());
        assert!(l.released("2026-11-15".parse().unwrap()).is_none());
    }
}
