//! The published document of one snapshot, and its tables as CSV.
//!
//! A [`Snapshot`] is built from a [`Disclosure`] only, so it can hold nothing `disclose` did not
//! allow. It names no cluster, node or report, no extension value, and no time finer than a
//! day. Its format is a contract like the wire format: `format` and `formatVersion` say which
//! one, and `stats/SCHEMA.md` documents every field and column.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::disclose::{Disclosed, Disclosure};
use crate::metrics::{Metric, Unit};
use crate::store::Window;

/// The `format` of every document.
pub const FORMAT: &str = "spartakus-stats";
/// The `formatVersion` this code writes; a reader must check it.
pub const FORMAT_VERSION: u32 = 1;
/// The dominance rule's share: no cluster may hold more of a node cell.
pub const DOMINANCE_SHARE: f64 = 0.5;

/// Where the number of dead-lettered reports is, since the store does not have them.
pub const DEAD_LETTERS_SOURCE: &str = "not in the store: reports the ingester could not store are in the NATS stream SPARTAKUS_DEADLETTER (reason in the Spartakus-Dead-Letter-Reason header) and counted by the ingester's metric spartakus_ingester_dead_lettered_total{reason}";

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The snapshot's date: the window's last day.
    pub date: Date,
    /// The window.
    pub window: WindowDoc,
    /// k: every published cell counts at least this many distinct clusters.
    pub min_clusters: u64,
    /// The dominance rule: no cluster holds more than this share of a published node count.
    pub dominance_share: f64,
    /// Whether reports marked synthetic were counted.
    pub synthetic_included: bool,
    /// The window's totals (`null`: withheld).
    pub totals: TotalsDoc,
    /// Where the data-quality numbers are.
    pub data_quality: DataQuality,
    /// Every metric, in a fixed order.
    pub metrics: Vec<MetricDoc>,
}

/// The window of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowDoc {
    /// First day (UTC), inclusive.
    pub first: Date,
    /// Last day (UTC), inclusive.
    pub last: Date,
    /// Number of days.
    pub days: u16,
}

/// Totals of the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TotalsDoc {
    /// Distinct clusters, each counted once by its latest report.
    pub clusters: Option<u64>,
    /// Reports received in the window.
    pub reports: Option<u64>,
    /// Nodes in the clusters' latest reports.
    pub nodes: Option<u64>,
}

/// Data quality: what is in the metrics, and what is elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataQuality {
    /// Metrics about the reports themselves (schema and volunteer versions).
    pub metrics: Vec<String>,
    /// Reports the ingester could not store.
    pub dead_letters: DeadLetters,
}

/// Dead letters are not in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetters {
    /// Always false: the store holds only stored reports.
    pub in_store: bool,
    /// Where the number is.
    pub source: String,
}

/// One metric of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricDoc {
    /// Identifier, also the file names `ID.csv` and `ID.json`.
    pub id: String,
    /// Heading.
    pub title: String,
    /// What is counted.
    pub description: String,
    /// `clusters` or `nodes`.
    pub unit: String,
    /// Label columns.
    pub dimensions: Vec<String>,
    /// Whether the first dimension splits the metric into partitions of all units.
    pub grouped: bool,
    /// The metric this one refines.
    pub parent: Option<String>,
    /// `published` or `withheld`.
    pub status: String,
    /// Units counted (in each group, if grouped); `null` when withheld.
    pub total: Option<u64>,
    /// Column names of `rows`: the dimensions, the unit, `share`.
    pub columns: Vec<String>,
    /// The cells: labels, count, share of the total (4 decimals).
    pub rows: Vec<Vec<Value>>,
}

impl MetricDoc {
    fn from(d: &Disclosed) -> Self {
        let m: &Metric = d.metric;
        let mut columns: Vec<String> = m.dimensions.iter().map(|s| s.to_string()).collect();
        columns.push(m.unit.column().into());
        columns.push("share".into());
        let rows = d
            .cells
            .iter()
            .map(|c| {
                let mut row: Vec<Value> =
                    c.labels.iter().map(|l| Value::from(l.as_str())).collect();
                row.push(Value::from(c.count));
                row.push(share(c.count, d.total));
                row
            })
            .collect();
        MetricDoc {
            id: m.id.into(),
            title: m.title.into(),
            description: m.description.into(),
            unit: match m.unit {
                Unit::Clusters => "clusters".into(),
                Unit::Nodes => "nodes".into(),
            },
            dimensions: m.dimensions.iter().map(|s| s.to_string()).collect(),
            grouped: m.grouped,
            parent: m.parent.map(str::to_owned),
            status: if d.total.is_some() {
                "published".into()
            } else {
                "withheld".into()
            },
            total: d.total,
            columns,
            rows,
        }
    }

    /// The metric as CSV: a header row, then one row per cell (a withheld metric has only
    /// the header).
    pub fn csv(&self) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        // Writing to a Vec cannot fail.
        let _ = w.write_record(&self.columns);
        for row in &self.rows {
            let _ = w.write_record(row.iter().map(csv_field));
        }
        w.into_inner().unwrap_or_default()
    }
}

fn csv_field(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `count / total`, rounded to 4 decimals.
fn share(count: u64, total: Option<u64>) -> Value {
    match total {
        Some(t) if t > 0 => {
            let s = (count as f64 / t as f64 * 10_000.0).round() / 10_000.0;
            Value::from(s)
        }
        _ => Value::Null,
    }
}

impl Snapshot {
    /// The document of `disclosure` for `window`.
    pub fn new(
        window: Window,
        min_clusters: u64,
        synthetic_included: bool,
        disclosure: &Disclosure,
    ) -> Self {
        Snapshot {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            date: window.date,
            window: WindowDoc {
                first: window.first_day(),
                last: window.date,
                days: window.days,
            },
            min_clusters,
            dominance_share: DOMINANCE_SHARE,
            synthetic_included,
            totals: TotalsDoc {
                clusters: disclosure.totals.clusters,
                reports: disclosure.totals.reports,
                nodes: disclosure.totals.nodes,
            },
            data_quality: DataQuality {
                metrics: vec![
                    "clusters_by_schema_version".into(),
                    "clusters_by_volunteer_version".into(),
                ],
                dead_letters: DeadLetters {
                    in_store: false,
                    source: DEAD_LETTERS_SOURCE.into(),
                },
            },
            metrics: disclosure.metrics.iter().map(MetricDoc::from).collect(),
        }
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }

    /// One metric's own JSON file: the metric with the snapshot's context.
    pub fn metric_json(&self, metric: &MetricDoc) -> Vec<u8> {
        to_json(&MetricFile {
            format: &self.format,
            format_version: self.format_version,
            date: self.date,
            window: &self.window,
            min_clusters: self.min_clusters,
            synthetic_included: self.synthetic_included,
            metric,
        })
    }
}

/// `snapshots/DATE/ID.json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricFile<'a> {
    format: &'a str,
    format_version: u32,
    date: Date,
    window: &'a WindowDoc,
    min_clusters: u64,
    synthetic_included: bool,
    metric: &'a MetricDoc,
}

/// Pretty JSON with a final newline.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}
