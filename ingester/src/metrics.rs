//! Prometheus metrics, served on `/metrics`. Labels are low-cardinality: sink name, result, reason.
//! The two write clocks are set from the `health` module when scraped.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

type Labels = Vec<(&'static str, &'static str)>;

/// Every metric the ingester exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    rows: Family<Labels, Counter>,
    batches: Family<Labels, Counter>,
    batch_seconds: Histogram,
    redeliveries: Counter,
    naks: Counter,
    dead_lettered: Family<Labels, Counter>,
    pending: Gauge,
    erasures: Family<Labels, Counter>,
    erased_reports: Counter,
    retention_deleted: Counter,
    last_write_age: Gauge<f64, AtomicU64>,
    write_in_progress: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `spartakus_ingester` prefix.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("spartakus_ingester");
        let rows = Family::<Labels, Counter>::default();
        registry.register(
            "rows",
            "Rows handled, by sink and result: written, duplicate, erased (not stored: its cluster asked for erasure after sending it), expired (received longer ago than --retention, not stored)",
            rows.clone(),
        );
        let batches = Family::<Labels, Counter>::default();
        registry.register(
            "batches",
            "Batches written, by result (ok, error)",
            batches.clone(),
        );
        let batch_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "batch_duration_seconds",
            "Time to write a batch to the sink and settle its messages",
            batch_seconds.clone(),
        );
        let redeliveries = Counter::default();
        registry.register(
            "redeliveries",
            "Messages delivered more than once (after a crash, a nak or an ack timeout)",
            redeliveries.clone(),
        );
        let naks = Counter::default();
        registry.register("naks", "Messages nakked for a later retry", naks.clone());
        let dead_lettered = Family::<Labels, Counter>::default();
        registry.register(
            "dead_lettered",
            "Messages sent to the dead-letter subject, by reason",
            dead_lettered.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "consumer_pending",
            "Messages in the stream not yet delivered to the consumer",
            pending.clone(),
        );
        let erasures = Family::<Labels, Counter>::default();
        registry.register(
            "erasures",
            "Erasure attempts, by result: done, pending (tombstone stored, deletion to be retried), failed, dead-lettered",
            erasures.clone(),
        );
        let erased_reports = Counter::default();
        registry.register(
            "erased_reports",
            "Stored reports deleted by erasures (where the sink can count them)",
            erased_reports.clone(),
        );
        let retention_deleted = Counter::default();
        registry.register(
            "retention_deleted_reports",
            "Stored reports deleted because they were received longer ago than --retention",
            retention_deleted.clone(),
        );
        let last_write_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_write_age_seconds",
            "Seconds since the sink last committed a batch (since the start if it never has); grows while no reports come, which is healthy",
            last_write_age.clone(),
        );
        let write_in_progress = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "write_in_progress_seconds",
            "Seconds the oldest unfinished sink write (a batch or an erasure) has been running, 0 when none is; past --write-stuck-after, /healthz and /readyz fail",
            write_in_progress.clone(),
        );
        Metrics {
            registry,
            last_write_age,
            write_in_progress,
            erasures,
            erased_reports,
            retention_deleted,
            rows,
            batches,
            batch_seconds,
            redeliveries,
            naks,
            dead_lettered,
            pending,
        }
    }

    /// Counts `n` rows with `result` in `sink`.
    pub(crate) fn rows(&self, sink: &'static str, result: &'static str, n: u64) {
        if n > 0 {
            self.rows
                .get_or_create(&vec![("sink", sink), ("result", result)])
                .inc_by(n);
        }
    }

    /// Counts one batch and how long it took.
    pub(crate) fn batch(&self, ok: bool, seconds: f64) {
        let result = if ok { "ok" } else { "error" };
        self.batches.get_or_create(&vec![("result", result)]).inc();
        self.batch_seconds.observe(seconds);
    }

    /// Counts a redelivered message.
    pub(crate) fn redelivered(&self) {
        self.redeliveries.inc();
    }

    /// Counts a nakked message.
    pub(crate) fn nakked(&self) {
        self.naks.inc();
    }

    /// Exports the dead-letter counter at 0 for each of `reasons`, before the first dead letter:
    /// a counter that first appears at 1 is never seen to increase by Prometheus's
    /// `increase()`, so an alert on it would miss the first dead letter.
    pub(crate) fn declare_dead_letter_reasons(
        &self,
        reasons: impl IntoIterator<Item = &'static str>,
    ) {
        for reason in reasons {
            let _ = self.dead_lettered.get_or_create(&vec![("reason", reason)]);
        }
    }

    /// Counts a dead-lettered message.
    pub(crate) fn dead_lettered(&self, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// Counts an erasure attempt with `result`.
    pub(crate) fn erasure(&self, result: &'static str) {
        self.erasures.get_or_create(&vec![("result", result)]).inc();
    }

    /// Counts reports deleted by an erasure.
    pub(crate) fn erased_reports(&self, n: u64) {
        self.erased_reports.inc_by(n);
    }

    /// Counts reports deleted by retention.
    pub(crate) fn retention_deleted(&self, n: u64) {
        self.retention_deleted.inc_by(n);
    }

    /// Records the consumer's pending count as last reported by JetStream.
    pub(crate) fn pending(&self, n: u64) {
        self.pending.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the write clocks, read from the `health` module just before a scrape.
    pub(crate) fn write_clocks(&self, last_write_age: Duration, write_in_progress: Duration) {
        self.last_write_age.set(last_write_age.as_secs_f64());
        self.write_in_progress.set(write_in_progress.as_secs_f64());
    }

    /// The text exposition format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition_with_their_labels() {
        let m = Metrics::new();
        m.rows("sqlite", "written", 3);
        m.dead_lettered("invalid");
        m.pending(7);
        let text = m.encode();
        assert!(
            text.contains(r#"spartakus_ingester_rows_total{sink="sqlite",result="written"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"spartakus_ingester_dead_lettered_total{reason="invalid"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("spartakus_ingester_consumer_pending 7"),
            "{text}"
        );
    }
}
