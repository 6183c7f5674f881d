//! A metric's rows as the pages read them.

use serde_json::Value;

use crate::snapshot::{MetricDoc, Snapshot};

/// One published cell, read from a row of `rows`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cell<'a> {
    pub(super) labels: Vec<&'a str>,
    pub(super) count: u64,
    pub(super) share: Option<f64>,
}

/// The cells of a metric, in the order of its rows.
pub(super) fn cells(m: &MetricDoc) -> Vec<Cell<'_>> {
    let dims = m.dimensions.len();
    m.rows
        .iter()
        .map(|row| Cell {
            labels: row
                .iter()
                .take(dims)
                .map(|v| v.as_str().unwrap_or(""))
                .collect(),
            count: row.get(dims).and_then(Value::as_u64).unwrap_or(0),
            share: row.get(dims + 1).and_then(Value::as_f64),
        })
        .collect()
}

/// The metric `id` of the snapshot.
pub(super) fn find<'a>(s: &'a Snapshot, id: &str) -> Option<&'a MetricDoc> {
    s.metrics.iter().find(|m| m.id == id)
}
