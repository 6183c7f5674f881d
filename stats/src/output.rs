//! The published directory, written so that a reader never sees a half-written file.
//!
//! ```text
//! OUT/SCHEMA.md                      what every file and column means (stats/SCHEMA.md)
//! OUT/LICENSE.txt                    the data's licence (in every folder)
//! OUT/ledger.json                    every release and its ρ (`ledger`)
//! OUT/latest.json                    {"date": …, "snapshot": "snapshots/DATE/snapshot.json"}
//! OUT/index.json                     every kept snapshot, oldest first, with its totals
//! OUT/snapshots/DATE/snapshot.json   one snapshot: every metric
//! OUT/snapshots/DATE/ID.csv, ID.json one metric of it
//! OUT/series/ID.csv, ID.json         one metric across every kept snapshot (for charts)
//! OUT/series/totals.csv              clusters, reports and nodes per snapshot
//! OUT/index.html, methodology.html,  the dashboard and its methodology page, drawn from the
//! OUT/dashboard.css                  files above (`dashboard`)
//! ```
//!
//! Every file is written to a temporary name in its folder, flushed to disk, and renamed over
//! the old one (and the folder synced); `latest.json` is swapped last, once everything it points
//! to is complete. Snapshots are kept: nothing here deletes one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::snapshot::{FORMAT, FORMAT_VERSION, Snapshot, csv_table, to_json};

/// The schema document, copied into every published directory.
pub const SCHEMA_MD: &str = include_str!("../SCHEMA.md");

/// The licence notice written into every folder of the published directory.
pub(crate) const LICENSE_TXT: &str =
    "The data in this folder is published by Spartakus under the Community Data License
Agreement - Permissive, Version 2.0 (SPDX-License-Identifier: CDLA-Permissive-2.0),
https://cdla.dev/permissive-2-0/. You may use, modify and share it; the agreement's text says
how. Every number in it is differentially private with respect to one cluster: SCHEMA.md says
how, and ledger.json lists every release and its cost.
";

/// Why the output could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A table could not be written as CSV: a row of another length than its header.
    #[error("writing {} as CSV: {source}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: csv::Error,
    },
    /// A kept snapshot is not a document this version reads.
    #[error("{}: {detail}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn csv_error(path: &Path) -> impl FnOnce(csv::Error) -> OutputError + '_ {
    move |source| OutputError::Csv {
        path: path.to_owned(),
        source,
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> OutputError + 'a {
    move |source| OutputError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
/// folder.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    file.write_all(bytes).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), OutputError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// `latest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Latest {
    /// [`FORMAT`].
    pub(crate) format: String,
    /// [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// The newest snapshot's date.
    pub(crate) date: Date,
    /// Its document, relative to the directory.
    pub(crate) snapshot: String,
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Index {
    /// [`FORMAT`].
    pub(crate) format: String,
    /// [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// Every kept snapshot, oldest first.
    pub(crate) snapshots: Vec<IndexEntry>,
}

/// One kept snapshot in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IndexEntry {
    /// Its date.
    pub(crate) date: Date,
    /// Its document, relative to the directory.
    pub(crate) snapshot: String,
    /// Its window's clusters (`null`: withheld).
    pub(crate) clusters: Option<u64>,
    /// Its window's reports (`null`: withheld).
    pub(crate) reports: Option<u64>,
    /// Its window's nodes (`null`: withheld).
    pub(crate) nodes: Option<u64>,
    /// Whether synthetic reports were counted.
    pub(crate) synthetic_included: bool,
}

/// The published directory.
#[derive(Debug, Clone)]
pub struct Output {
    root: PathBuf,
}

impl Output {
    /// The directory at `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn snapshot_rel(date: Date) -> String {
        format!("snapshots/{date}/snapshot.json")
    }

    /// Dates of the kept snapshots, oldest first.
    pub(crate) fn dates(&self) -> Result<Vec<Date>, OutputError> {
        let dir = self.root.join("snapshots");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("listing", &dir)(e)),
        };
        let mut dates = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("listing", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(date) = name.parse::<Date>()
                && entry.path().join("snapshot.json").is_file()
            {
                dates.push(date);
            }
        }
        dates.sort();
        Ok(dates)
    }

    /// A published JSON document at `rel` (e.g. `latest.json`); `None` when it does not exist.
    pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        rel: &str,
    ) -> Result<Option<T>, OutputError> {
        let path = self.root.join(rel);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| OutputError::Format {
                path,
                detail: e.to_string(),
            })
    }

    /// A kept snapshot.
    pub fn read(&self, date: Date) -> Result<Snapshot, OutputError> {
        let path = self.root.join(Self::snapshot_rel(date));
        let bytes = fs::read(&path).map_err(io("reading", &path))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| OutputError::Format {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if value["format"] != FORMAT || value["formatVersion"] != FORMAT_VERSION {
            return Err(OutputError::Format {
                path,
                detail: format!(
                    "format {} version {}, this program reads {FORMAT} version {FORMAT_VERSION}",
                    value["format"], value["formatVersion"]
                ),
            });
        }
        serde_json::from_value(value).map_err(|e| OutputError::Format {
            path,
            detail: e.to_string(),
        })
    }

    /// Publishes `snapshot`: its files, then the index and the series over every kept
    /// snapshot, then `latest.json`.
    pub fn publish(&self, snapshot: &Snapshot) -> Result<(), OutputError> {
        let dir = self.root.join("snapshots").join(snapshot.date.to_string());
        for metric in &snapshot.metrics {
            let path = dir.join(format!("{}.csv", metric.id));
            write_atomic(&path, &metric.csv().map_err(csv_error(&path))?)?;
            write_atomic(
                &dir.join(format!("{}.json", metric.id)),
                &snapshot.metric_json(metric),
            )?;
        }
        write_atomic(&dir.join("snapshot.json"), &snapshot.to_json())?;
        write_atomic(&dir.join("LICENSE.txt"), LICENSE_TXT.as_bytes())?;
        write_atomic(&self.root.join("SCHEMA.md"), SCHEMA_MD.as_bytes())?;
        write_atomic(&self.root.join("LICENSE.txt"), LICENSE_TXT.as_bytes())?;

        let dates = self.dates()?;
        let kept: Vec<Snapshot> = dates
            .iter()
            .map(|d| self.read(*d))
            .collect::<Result<_, _>>()?;
        self.write_index(&kept)?;
        self.write_series(&kept)?;
        if let Some(newest) = dates.last() {
            let latest = Latest {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                date: *newest,
                snapshot: Self::snapshot_rel(*newest),
            };
            write_atomic(&self.root.join("latest.json"), &to_json(&latest))?;
        }
        Ok(())
    }

    fn write_index(&self, kept: &[Snapshot]) -> Result<(), OutputError> {
        let index = Index {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            snapshots: kept
                .iter()
                .map(|s| IndexEntry {
                    date: s.date,
                    snapshot: Self::snapshot_rel(s.date),
                    clusters: s.totals.clusters,
                    reports: s.totals.reports,
                    nodes: s.totals.nodes,
                    synthetic_included: s.synthetic_included,
                })
                .collect(),
        };
        write_atomic(&self.root.join("index.json"), &to_json(&index))
    }

    fn write_series(&self, kept: &[Snapshot]) -> Result<(), OutputError> {
        let dir = self.root.join("series");
        let Some(newest) = kept.last() else {
            return Ok(());
        };
        // A withheld total is an empty field.
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let totals = csv_table(
            ["date", "clusters", "reports", "nodes", "synthetic_included"],
            kept.iter().map(|s| {
                [
                    s.date.to_string(),
                    n(s.totals.clusters),
                    n(s.totals.reports),
                    n(s.totals.nodes),
                    s.synthetic_included.to_string(),
                ]
            }),
        );
        write_atomic(&dir.join("LICENSE.txt"), LICENSE_TXT.as_bytes())?;
        let path = dir.join("totals.csv");
        write_atomic(&path, &totals.map_err(csv_error(&path))?)?;
        for metric in &newest.metrics {
            let mut columns = vec!["date".to_owned()];
            columns.extend(metric.columns.iter().cloned());
            let mut rows: Vec<Vec<Value>> = Vec::new();
            for s in kept {
                // A kept snapshot of an older version may lack a newer metric.
                let Some(m) = s.metrics.iter().find(|m| m.id == metric.id) else {
                    continue;
                };
                for row in &m.rows {
                    let mut r = vec![Value::from(s.date.to_string())];
                    r.extend(row.iter().cloned());
                    rows.push(r);
                }
            }
            let table = csv_table(
                &columns,
                rows.iter().map(|r| {
                    r.iter().map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                }),
            );
            let path = dir.join(format!("{}.csv", metric.id));
            write_atomic(&path, &table.map_err(csv_error(&path))?)?;
            let doc = Series {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                id: metric.id.clone(),
                title: metric.title.clone(),
                unit: metric.unit.clone(),
                dates: kept.iter().map(|s| s.date).collect(),
                columns,
                rows,
            };
            write_atomic(&dir.join(format!("{}.json", metric.id)), &to_json(&doc))?;
        }
        Ok(())
    }
}

/// `series/ID.json`: one metric over every kept snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Series {
    /// [`FORMAT`].
    pub(crate) format: String,
    /// [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// The metric's id.
    pub(crate) id: String,
    /// Its title.
    pub(crate) title: String,
    /// `clusters` or `nodes`.
    pub(crate) unit: String,
    /// The kept snapshots' dates, oldest first.
    pub(crate) dates: Vec<Date>,
    /// `date`, then the metric's columns.
    pub(crate) columns: Vec<String>,
    /// One row per published cell per snapshot, oldest first.
    pub(crate) rows: Vec<Vec<Value>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<String> = fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["b.json"]);
    }
}
