//! Where rows go. One small trait, [`Sink`], with one implementation per destination:
//! [`sqlite::SqliteSink`] (the embedded default), [`bigquery::BigQuerySink`] (production) and
//! [`stdout::StdoutSink`] (debugging). The consumer acknowledges a report only after the sink
//! returned its outcome.

pub mod bigquery;
pub mod sqlite;
pub mod stdout;

use std::future::Future;

use crate::error::SinkError;
use crate::row::Row;

/// What happened to one row of a batch.
#[derive(Debug)]
pub enum Outcome {
    /// Stored now.
    Written,
    /// Already stored earlier (the same report ID): nothing changed.
    Duplicate,
    /// The sink will never accept this row; the reason goes with it to the dead-letter subject.
    Rejected(String),
    /// Not stored this time; try again later.
    Retry(SinkError),
}

/// A destination for rows.
pub trait Sink: Send + Sync + 'static {
    /// A short, fixed name for logs and metric labels: `sqlite`, `bigquery`, `stdout`.
    fn name(&self) -> &'static str;

    /// Writes a batch. `Ok` holds one outcome per row, in order, once every written row is
    /// durably stored; `Err` means nothing can be said about any row (all are retried).
    fn write(&self, rows: Vec<Row>)
    -> impl Future<Output = Result<Vec<Outcome>, SinkError>> + Send;

    /// Gets the destination ready once at start (e.g. creates the table); retried until it
    /// succeeds, with `/readyz` false meanwhile.
    fn prepare(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Whether the sink can take writes now (the database opens, the table answers).
    fn ready(&self) -> impl Future<Output = Result<(), SinkError>> + Send;
}
