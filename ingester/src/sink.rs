//! Where rows go. One small trait, [`Sink`], with one implementation per destination:
//! [`sqlite::SqliteSink`] (the embedded default), [`bigquery::BigQuerySink`] (production) and
//! [`stdout::StdoutSink`] (debugging). The consumer acknowledges a report only after the sink
//! returned its outcome, and an erasure only once the sink says it is done.
//!
//! Erasure (see [`report::erasure`]): [`Sink::erase`] records a tombstone (clusterID, check,
//! requestedAt) and deletes the cluster's stored reports that carry the check and were received
//! up to the request. From then on [`Sink::write`] drops such reports ([`Outcome::Erased`])
//! instead of storing them: those still queued behind the request, or delivered again later.
//! Reports received after the request are kept.

pub mod bigquery;
pub mod sqlite;
pub mod stdout;

use std::future::Future;
use std::time::Duration;

use report::erasure::QueuedErasure;

use crate::error::SinkError;
use crate::row::Row;

/// What happened to one row of a batch.
#[derive(Debug)]
pub enum Outcome {
    /// Stored now.
    Written,
    /// Already stored earlier (the same report ID): nothing changed.
    Duplicate,
    /// Not stored, and never will be: its cluster asked for the erasure of its reports after
    /// this one was received (a tombstone matches its clusterID, erasureCheck and receipt time).
    Erased,
    /// The sink will never accept this row; the reason goes with it to the dead-letter subject.
    Rejected(String),
    /// Not stored this time; try again later.
    Retry(SinkError),
}

/// What became of an erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erased {
    /// The tombstone is stored and every matching report deleted: acknowledge the request.
    /// `reports` is how many were deleted by this attempt, when the sink can tell.
    Done {
        /// Reports deleted by this attempt.
        reports: Option<u64>,
    },
    /// The tombstone is stored (readers no longer see the reports), but deleting them must be
    /// tried again, no sooner than `not_before`.
    Pending {
        /// The earliest sensible retry.
        not_before: Duration,
        /// Why, for the log.
        reason: String,
    },
}

/// A destination for rows.
pub trait Sink: Send + Sync + 'static {
    /// A short, fixed name for logs and metric labels: `sqlite`, `bigquery`, `stdout`.
    fn name(&self) -> &'static str;

    /// Writes a batch. `Ok` holds one outcome per row, in order, once every written row is
    /// durably stored; `Err` means nothing can be said about any row (all are retried). A row
    /// a tombstone covers is [`Outcome::Erased`], decided in the same transaction as the write
    /// where the sink has transactions, so that no erasure can slip in between.
    fn write(&self, rows: Vec<Row>)
    -> impl Future<Output = Result<Vec<Outcome>, SinkError>> + Send;

    /// Carries out an erasure: stores its tombstone, then deletes the reports of
    /// `erasure.erasure.cluster_id` whose erasureCheck is `erasure.erasure.erasure_check` and
    /// that were received up to `erasure.requested_at`. Idempotent: the same erasure again
    /// changes nothing more.
    fn erase(
        &self,
        erasure: &QueuedErasure,
    ) -> impl Future<Output = Result<Erased, SinkError>> + Send;

    /// Retention: deletes at most `limit` reports received before `before` (with their child
    /// rows, and tombstones requested before it), in one short transaction; how many reports
    /// it deleted. The caller repeats it until fewer than `limit` go. By default nothing: a
    /// sink whose storage expires by itself (BigQuery's partition expiration) or that keeps
    /// nothing (stdout).
    fn expire(
        &self,
        before: jiff::Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<usize, SinkError>> + Send {
        let _ = (before, limit);
        async { Ok(0) }
    }

    /// Gets the destination ready once at start (e.g. creates the table); retried until it
    /// succeeds, with `/readyz` false meanwhile.
    fn prepare(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Whether the sink can take writes now (the database opens, the table answers).
    fn ready(&self) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Whether a tombstone (cluster, check, requested at) covers `row`: same cluster, same check,
/// received in the second of the request or before (every store keeps times to the second, so
/// the rule is the same in each). A row without a check (v1) is never covered. The one rule
/// every sink applies: here in Rust, in `schema/sqlite-2.sql`'s terms in the SQLite sink, and
/// in the BigQuery view and DELETE.
pub(crate) fn covered(
    row: &Row,
    cluster_id: &str,
    erasure_check: &str,
    requested_at: jiff::Timestamp,
) -> bool {
    row.cluster_id == cluster_id
        && row.erasure_check.as_deref() == Some(erasure_check)
        && row.received_at.as_second() <= requested_at.as_second()
}
