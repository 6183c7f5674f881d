//! Where the reports are: the seam between the statistics and the ingester's stored tables.
//!
//! [`Store`] has two implementations, one per ingester sink: [`sqlite::SqliteStore`] reads the
//! SQLite file (`stored/schema/sqlite.sql`) and [`bigquery::BigQueryStore`] runs one query job
//! against the BigQuery table (`stored/schema/bigquery.json`). Both run the same metric SQL
//! (`sql/metrics/*.sql`) over their own dialect's window (`sql/<dialect>/window.sql`) and return
//! aggregated cells only: the job never reads report rows.
//!
//! The value a cluster takes from its nodes (the OS most of them run, and so on) is one rule
//! for every such column, `MAJORITIES`: its SELECT is generated, the same text in both
//! dialects, and [`Query::bind`] puts it in each window.

pub mod bigquery;
pub mod sqlite;

use std::future::Future;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::disclose::{Raw, RawCell, RawTotals};
use crate::metrics::{METRICS, WINDOW_SQL};

/// The extension that marks a report as synthetic (a demo population, a test); the wire
/// contract owns it (the SQL in `sql/*/window.sql` names it too, checked by a test).
pub use report::vocabulary::SYNTHETIC_EXTENSION;

/// A snapshot's window: `days` whole UTC days ending with `date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The last day of the window, and the snapshot's date.
    pub date: Date,
    /// The number of days.
    pub days: u16,
}

impl Window {
    /// The first day of the window.
    pub fn first_day(&self) -> Date {
        self.date
            .checked_sub(jiff::Span::new().days(i64::from(self.days) - 1))
            .unwrap_or(self.date)
    }

    /// Midnight UTC at the start of the first day (inclusive).
    pub fn start(&self) -> jiff::Timestamp {
        midnight(self.first_day())
    }

    /// Midnight UTC after the last day (exclusive).
    pub fn end(&self) -> jiff::Timestamp {
        midnight(self.date.tomorrow().unwrap_or(self.date))
    }
}

fn midnight(date: Date) -> jiff::Timestamp {
    // A civil date at midnight in UTC always exists.
    date.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// What to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// The window.
    pub window: Window,
    /// Whether reports marked synthetic count too.
    pub include_synthetic: bool,
    /// The most nodes one cluster counts for (`{node_clip}` in the SQL).
    pub node_clip: u64,
    /// The most reports one cluster counts for (`{report_clip}` in the SQL).
    pub report_clip: u64,
}

impl Query {
    /// `sql` with its placeholders filled in: this query's bounds, and each of
    /// `MAJORITIES` where its table's name stands in braces.
    pub fn bind(&self, sql: &str) -> String {
        let mut sql = sql
            .replace("{node_clip}", &self.node_clip.to_string())
            .replace("{report_clip}", &self.report_clip.to_string());
        for majority in MAJORITIES {
            sql = sql.replace(&majority.placeholder(), &majority.select());
        }
        sql
    }
}

/// A value each cluster takes from its nodes: the one most of them have, ties going to the
/// smaller (byte order). With several columns, each is chosen among the nodes that have the
/// values chosen before it: an OS family, then the version most of the nodes running that
/// family have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Majority {
    /// The window's table: one row per cluster that has nodes, `report` and the columns.
    pub(crate) table: &'static str,
    /// Columns of `win_nodes`, the outermost first; the table's columns keep their names.
    pub(crate) columns: &'static [&'static str],
}

/// Every majority the metrics read (`win_cluster_*`).
pub(crate) const MAJORITIES: &[Majority] = &[
    Majority {
        table: "win_cluster_os",
        columns: &["os_family", "os_version"],
    },
    Majority {
        table: "win_cluster_runtime",
        columns: &["runtime", "runtime_version"],
    },
    Majority {
        table: "win_cluster_kernel",
        columns: &["kernel"],
    },
    Majority {
        table: "win_cluster_cloud",
        columns: &["cloud_provider"],
    },
];

impl Majority {
    /// Where a window's SQL wants the SELECT: the table's name in braces.
    pub(crate) fn placeholder(&self) -> String {
        format!("{{{}}}", self.table)
    }

    /// The SELECT, in SQL that SQLite and BigQuery read alike. Nodes are counted per
    /// combination of the columns (`n`), and per value of each outer column (`n0`, `n1`, …, by
    /// window sums over those counts); the cluster's row is the first when ordered by each
    /// column's count, largest first, then by its value.
    pub(crate) fn select(&self) -> String {
        let columns = self.columns.join(", ");
        let outer = self.columns.len().saturating_sub(1);
        let sums: String = (0..outer)
            .map(|i| {
                format!(
                    ", SUM(n) OVER (PARTITION BY report, {}) AS n{i}",
                    self.columns[..=i].join(", ")
                )
            })
            .collect();
        let order: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let count = if i < outer {
                    format!("n{i}")
                } else {
                    "n".to_owned()
                };
                format!("{count} DESC, {column}")
            })
            .collect();
        format!(
            "SELECT report, {columns} FROM (
    SELECT report, {columns},
           ROW_NUMBER() OVER (PARTITION BY report ORDER BY {order}) AS rn
    FROM (
        SELECT report, {columns}, n{sums}
        FROM (SELECT report, {columns}, COUNT(*) AS n FROM win_nodes
              GROUP BY report, {columns}) AS counts
    ) AS sums
) AS ranked
WHERE rn = 1",
            order = order.join(", ")
        )
    }
}

/// Why the store could not compute the cells.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (the file is missing, locked, or not the ingester's schema).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// BigQuery failed.
    #[error("bigquery: {0}")]
    BigQuery(String),
    /// A row of the result was not what the SQL promises.
    #[error("unexpected result row for {metric}: {detail}")]
    Row {
        /// Which metric.
        metric: String,
        /// What was wrong.
        detail: String,
    },
    /// The blocking SQLite task died.
    #[error("the SQLite task failed: {0}")]
    Task(String),
}

/// Raw cells of every metric for one window, aggregated where the data lives.
pub trait Store {
    /// Computes the window's totals and every metric's cells.
    fn compute(&self, query: Query) -> impl Future<Output = Result<Computed, StoreError>> + Send;
}

/// What a store computed, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    /// The cells.
    pub raw: Raw,
    /// Bytes the warehouse read, when it says (BigQuery's totalBytesProcessed).
    pub bytes_processed: Option<u64>,
}

/// One result row of a metric query: `a, b, c, clusters, nodes, max_nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Which query: a metric id, or `window`.
    pub metric: String,
    /// The labels (NULL where unused).
    pub labels: [Option<String>; 3],
    /// `clusters`.
    pub clusters: Option<i64>,
    /// `nodes`.
    pub nodes: Option<i64>,
    /// `max_nodes` (unused since node counts are clipped; kept in the result shape).
    pub max_nodes: Option<i64>,
}

/// Every query the stores run for `query`: `window` first, then each metric, by id.
pub fn queries(query: &Query) -> impl Iterator<Item = (&'static str, String)> + '_ {
    std::iter::once(("window", WINDOW_SQL))
        .chain(METRICS.iter().map(|m| (m.id, m.sql)))
        .map(|(id, sql)| (id, query.bind(sql)))
}

/// The workload kinds as a SELECT both dialects read, for `{kinds}` in the windows.
pub fn kinds_select() -> String {
    report::Kind::ALL
        .iter()
        .map(|k| format!("SELECT '{}' AS kind", k.as_str()))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn count(metric: &str, what: &str, v: Option<i64>) -> Result<u64, StoreError> {
    let v = v.unwrap_or(0);
    u64::try_from(v).map_err(|_| StoreError::Row {
        metric: metric.into(),
        detail: format!("negative {what}: {v}"),
    })
}

/// Turns result rows into the raw cells `disclose` reads.
pub fn assemble(rows: Vec<Row>) -> Result<Raw, StoreError> {
    let mut raw = Raw::default();
    for row in rows {
        if row.metric == "window" {
            let which = row.labels[0].as_deref().unwrap_or_default();
            let clusters = count("window", which, row.clusters)?;
            match which {
                "clusters" => raw.totals.clusters = clusters,
                "reports" => raw.totals.reports = clusters,
                "nodes" => {
                    raw.totals = RawTotals {
                        nodes: count("window", "nodes", row.nodes)?,
                        ..raw.totals
                    }
                }
                other => {
                    return Err(StoreError::Row {
                        metric: "window".into(),
                        detail: format!("unknown total {other:?}"),
                    });
                }
            }
            continue;
        }
        let Some(metric) = METRICS.iter().find(|m| m.id == row.metric) else {
            return Err(StoreError::Row {
                metric: row.metric,
                detail: "not a metric".into(),
            });
        };
        let n = metric.dimensions.len();
        let labels: Option<Vec<String>> = row.labels[..n].iter().cloned().collect();
        let Some(labels) = labels else {
            return Err(StoreError::Row {
                metric: row.metric,
                detail: format!("a NULL label in {:?}", row.labels),
            });
        };
        let nodes_metric = metric.unit == crate::metrics::Unit::Nodes;
        let cell = RawCell {
            labels,
            clusters: count(metric.id, "clusters", row.clusters)?,
            nodes: nodes_metric
                .then(|| count(metric.id, "nodes", row.nodes))
                .transpose()?,
        };
        raw.cells
            .entry(metric.id.to_owned())
            .or_default()
            .push(cell);
    }
    for cells in raw.cells.values_mut() {
        cells.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_window_is_whole_utc_days_ending_with_its_date() {
        let w = Window {
            date: "2026-11-29".parse().unwrap(),
            days: 28,
        };
        assert_eq!(w.first_day().to_string(), "2026-11-02");
        assert_eq!(w.start().to_string(), "2026-11-02T00:00:00Z");
        assert_eq!(w.end().to_string(), "2026-11-30T00:00:00Z");
    }

    #[test]
    fn each_dialect_takes_every_majority_once_from_the_generator() {
        let query = Query {
            window: Window {
                date: "2026-11-29".parse().unwrap(),
                days: 28,
            },
            include_synthetic: false,
            node_clip: 20,
            report_clip: 28,
        };
        for sql in [sqlite::WINDOW_SQL, bigquery::WINDOW_SQL] {
            for majority in MAJORITIES {
                assert_eq!(
                    sql.matches(&majority.placeholder()).count(),
                    1,
                    "{majority:?}"
                );
                assert!(query.bind(sql).contains(&majority.select()));
            }
            // No hand-written copy is left: the one ranking of node values is generated.
            assert_eq!(
                query
                    .bind(sql)
                    .matches("ROW_NUMBER() OVER (PARTITION BY report ORDER BY n")
                    .count(),
                MAJORITIES.len(),
            );
        }
    }

    #[test]
    fn a_majority_ranks_the_outer_column_by_its_nodes_then_the_inner_within_it() {
        let os = MAJORITIES[0].select();
        assert!(
            os.contains("SUM(n) OVER (PARTITION BY report, os_family) AS n0")
                && os.contains("ORDER BY n0 DESC, os_family, n DESC, os_version"),
            "{os}"
        );
        let kernel = MAJORITIES[2].select();
        assert!(
            kernel.contains("ORDER BY n DESC, kernel") && !kernel.contains("SUM("),
            "{kernel}"
        );
    }

    #[test]
    fn both_dialects_leave_out_the_synthetic_mark_the_wire_contract_defines() {
        let (name, value) = SYNTHETIC_EXTENSION;
        for sql in [sqlite::WINDOW_SQL, bigquery::WINDOW_SQL] {
            assert!(
                sql.contains(&format!("e.name = '{name}' AND e.value = '{value}'")),
                "{sql}"
            );
        }
    }
}
