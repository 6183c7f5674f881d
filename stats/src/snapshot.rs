//! The published document of one snapshot, and its tables as CSV.
//!
//! A [`Snapshot`] is built from a [`Disclosure`] only, so it can hold nothing `disclose` did not
//! allow. It names no cluster, node or report, no extension value, and no time finer than a
//! day. Its format is a contract like the wire format: `format` and `formatVersion` say which
//! one, and `stats/SCHEMA.md` documents every field and column.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::disclose::{Disclosed, Disclosure, NoiseInfo};
use crate::metrics::{METRICS, Metric, Section, Unit};
use crate::store::Window;

/// The `format` of every document.
pub(crate) const FORMAT: &str = "spartakus-stats";
/// The `formatVersion` this code writes; a reader must check it. Version 2: differentially
/// private counts, with the guarantee and each metric's noise.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The licence of the published data (SPDX identifier).
pub const LICENSE: &str = "CDLA-Permissive-2.0";
/// Where its text is.
pub const LICENSE_URL: &str = "https://cdla.dev/permissive-2-0/";
/// The sampler behind every published number.
pub(crate) const NOISE_SOURCE: &str = "discrete Gaussian, exact sampler of the prio crate 0.18 (dp module; Canonne, Kamath and Steinke 2020), randomness from the operating system";

/// Where the number of dead-lettered reports is, since the store does not have them.
pub(crate) const DEAD_LETTERS_SOURCE: &str = "not in the store: reports the ingester could not store are in the NATS dead-letter stream (SPARTAKUS_DEADLETTER for the default --queue; report::queue names it; reason in the Spartakus-Dead-Letter-Reason header) and counted by the ingester's metric spartakus_ingester_dead_lettered_total{reason}";

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`FORMAT`].
    pub(crate) format: String,
    /// [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// The snapshot's date: the window's last day.
    pub(crate) date: Date,
    /// The window.
    pub(crate) window: WindowDoc,
    /// The guarantee, and the noise behind the totals.
    pub privacy: PrivacyDoc,
    /// The licence of the data (SPDX identifier).
    pub(crate) license: String,
    /// Whether reports marked synthetic were counted.
    pub(crate) synthetic_included: bool,
    /// The window's totals (`null`: withheld).
    pub totals: TotalsDoc,
    /// Where the data-quality numbers are.
    pub(crate) data_quality: DataQuality,
    /// Every metric, in a fixed order.
    pub metrics: Vec<MetricDoc>,
}

/// The window of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct WindowDoc {
    /// First day (UTC), inclusive.
    pub(crate) first: Date,
    /// Last day (UTC), inclusive.
    pub(crate) last: Date,
    /// Number of days.
    pub(crate) days: u16,
}

/// The guarantee of one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivacyDoc {
    /// Whom it protects: adding or removing one cluster's whole contribution.
    pub(crate) unit: String,
    /// ρ of zero-concentrated differential privacy, for the whole snapshot.
    pub rho: f64,
    /// ε of the (ε, δ)-differential privacy it implies.
    pub epsilon: f64,
    /// δ of that statement.
    pub delta: f64,
    /// The floor a noisy count cleared to be published as a cell of its own.
    pub min_clusters: u64,
    /// The most nodes one cluster counts for.
    pub(crate) node_clip: u64,
    /// The most reports one cluster counts for.
    pub(crate) report_clip: u64,
    /// Where the noise comes from.
    pub(crate) noise: String,
    /// The noise of each total.
    pub totals: Vec<TotalNoiseDoc>,
}

/// The noise of one total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TotalNoiseDoc {
    /// `clusters`, `reports` or `nodes`.
    pub total: String,
    /// Its noise.
    pub noise: NoiseDoc,
}

/// The noise behind a metric's or total's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoiseDoc {
    /// σ of the discrete Gaussian noise on each measured count.
    pub(crate) sigma: f64,
    /// ± this much covers 95 % of the noise on one count (1.96 σ, rounded).
    pub typical_error: u64,
    /// ρ spent (0 for a metric added up from a finer one).
    pub rho: f64,
    /// The noisy count an open-domain value had to reach to be published (`null`: a closed
    /// domain, every value measured).
    pub threshold: Option<u64>,
    /// The finer metric whose noisy cells this one adds up (`null`: its own noise).
    pub derived_from: Option<String>,
    /// The smallest count a cell is published with on its own: the larger of `minClusters`
    /// and twice σ (0 for a total).
    pub floor: u64,
}

impl NoiseDoc {
    fn from(n: &NoiseInfo) -> Self {
        NoiseDoc {
            sigma: round(n.sigma, 3),
            typical_error: (1.96 * n.sigma).round() as u64,
            rho: round(n.rho, 6),
            threshold: n.threshold,
            derived_from: n.derived_from.map(str::to_owned),
            floor: n.floor,
        }
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// Totals of the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TotalsDoc {
    /// Distinct clusters, each counted once by its latest report.
    pub clusters: Option<u64>,
    /// Reports received in the window.
    pub(crate) reports: Option<u64>,
    /// Nodes in the clusters' latest reports.
    pub(crate) nodes: Option<u64>,
}

/// Data quality: what is in the metrics, and what is elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DataQuality {
    /// Metrics about the reports themselves (schema and volunteer versions).
    pub(crate) metrics: Vec<String>,
    /// Reports the ingester could not store.
    pub(crate) dead_letters: DeadLetters,
}

/// Dead letters are not in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DeadLetters {
    /// Always false: the store holds only stored reports.
    pub(crate) in_store: bool,
    /// Where the number is.
    pub(crate) source: String,
}

/// One metric of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricDoc {
    /// Identifier, also the file names `ID.csv` and `ID.json`.
    pub id: String,
    /// Heading.
    pub(crate) title: String,
    /// What is counted.
    pub(crate) description: String,
    /// `clusters` or `nodes`.
    pub unit: String,
    /// Label columns.
    pub dimensions: Vec<String>,
    /// Whether the first dimension splits the metric into partitions of all units.
    pub(crate) grouped: bool,
    /// The metric this one refines.
    pub(crate) parent: Option<String>,
    /// `published` or `withheld`.
    pub status: String,
    /// The noise behind the counts.
    pub noise: NoiseDoc,
    /// Units counted (in each group, if grouped); `null` when withheld.
    pub(crate) total: Option<u64>,
    /// Column names of `rows`: the dimensions, the unit, `share`.
    pub(crate) columns: Vec<String>,
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
            noise: NoiseDoc::from(&d.noise),
            total: d.total,
            columns,
            rows,
        }
    }

    /// The metric as CSV: a header row, then one row per cell (a withheld metric has only
    /// the header). Fails on a row of another length than `columns`.
    pub(crate) fn csv(&self) -> Result<Vec<u8>, csv::Error> {
        csv_table(
            &self.columns,
            self.rows.iter().map(|row| row.iter().map(csv_field)),
        )
    }
}

/// A CSV table with `\n` line ends: `header`, then `rows`. A row of another length than the
/// header is an error (the csv crate refuses a ragged table), never a table cut short.
pub(crate) fn csv_table<H, R>(
    header: H,
    rows: impl IntoIterator<Item = R>,
) -> Result<Vec<u8>, csv::Error>
where
    H: IntoIterator,
    H::Item: AsRef<[u8]>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows {
        w.write_record(row)?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
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
    pub fn new(window: Window, synthetic_included: bool, disclosure: &Disclosure) -> Self {
        let g = &disclosure.guarantee;
        let b = &disclosure.budget;
        Snapshot {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            date: window.date,
            window: WindowDoc {
                first: window.first_day(),
                last: window.date,
                days: window.days,
            },
            privacy: PrivacyDoc {
                unit: "one cluster: all its reports in the window and all their nodes".into(),
                rho: round(g.rho, 6),
                epsilon: round(g.epsilon, 3),
                delta: g.delta,
                min_clusters: b.min_clusters,
                node_clip: b.node_clip,
                report_clip: b.report_clip,
                noise: NOISE_SOURCE.into(),
                totals: disclosure
                    .totals
                    .noise
                    .iter()
                    .map(|(t, n)| TotalNoiseDoc {
                        total: t.name().into(),
                        noise: NoiseDoc::from(n),
                    })
                    .collect(),
            },
            license: LICENSE.into(),
            synthetic_included,
            totals: TotalsDoc {
                clusters: disclosure.totals.clusters,
                reports: disclosure.totals.reports,
                nodes: disclosure.totals.nodes,
            },
            data_quality: DataQuality {
                metrics: METRICS
                    .iter()
                    .filter(|m| m.section == Section::Reports)
                    .map(|m| m.id.into())
                    .collect(),
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
    pub(crate) fn metric_json(&self, metric: &MetricDoc) -> Vec<u8> {
        to_json(&MetricFile {
            format: &self.format,
            format_version: self.format_version,
            date: self.date,
            window: &self.window,
            privacy: &self.privacy,
            license: &self.license,
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
    privacy: &'a PrivacyDoc,
    license: &'a str,
    synthetic_included: bool,
    metric: &'a MetricDoc,
}

/// Pretty JSON with a final newline, of one of the crate's published documents: [`Snapshot`],
/// its metric files, `latest.json`, `index.json`, a series, the ledger.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // serde_json fails only on an I/O error (none, writing to a Vec), a map key that is not a
    // string, or a `Serialize` impl that fails. The documents are derived structs of strings,
    // numbers (a non-finite float is written as null), booleans, jiff dates (written through
    // their `Display`), options, vectors and `serde_json::Value`s, whose maps have string keys:
    // none of these can fail. Every test that publishes a directory writes each kind of document.
    let mut out = serde_json::to_vec_pretty(value)
        .expect("a published document is plain data, which serde_json always serializes");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_table_is_written_whole_or_not_at_all() {
        let table = csv_table(["a", "b"], [["1", "x,y"], ["2", ""]]).unwrap();
        assert_eq!(String::from_utf8(table).unwrap(), "a,b\n1,\"x,y\"\n2,\n");
        let ragged = csv_table(["a", "b"], [vec!["1", "2"], vec!["3"]]);
        assert!(ragged.is_err(), "a row shorter than the header is an error");
    }
}
