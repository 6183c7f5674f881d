//! The debugging sink: one JSON line per row (the BigQuery row shape) on standard output.
//! It does not deduplicate: a redelivered report is printed again.
//!
//! What is printed cannot be taken back: an erasure prints one line
//! `{"erasure": {"clusterID": …, "erasureCheck": …, "requestedAt": …}}` for whatever reads the
//! lines to apply, and keeps the tombstone in memory (for as long as the process runs), so that
//! the covered reports still queued are not printed.

use std::io::Write;
use std::sync::Mutex;

use report::erasure::QueuedErasure;
use serde::Serialize;

use super::{Erased, Outcome, Sink, covered};
use crate::error::SinkError;
use crate::row::Row;

/// Prints rows as JSON lines to a writer (standard output in the binary).
#[derive(Debug)]
pub struct StdoutSink<W = std::io::Stdout> {
    out: Mutex<Printer<W>>,
}

#[derive(Debug)]
struct Printer<W> {
    out: W,
    tombstones: Vec<QueuedErasure>,
}

/// The line an erasure prints.
#[derive(Serialize)]
struct ErasureLine<'a> {
    erasure: &'a QueuedErasure,
}

impl StdoutSink {
    /// A sink printing to standard output.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }
}

impl<W: Write + Send + 'static> StdoutSink<W> {
    /// A sink printing to `out`.
    pub fn new(out: W) -> Self {
        StdoutSink {
            out: Mutex::new(Printer {
                out,
                tombstones: Vec::new(),
            }),
        }
    }

    /// The writer back, e.g. to read what a test printed.
    pub fn into_inner(self) -> W {
        self.out
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .out
    }
}

impl<W: Write + Send + 'static> Sink for StdoutSink<W> {
    fn name(&self) -> &'static str {
        "stdout"
    }

    async fn write(&self, rows: Vec<Row>) -> Result<Vec<Outcome>, SinkError> {
        let mut printer = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut buf = Vec::with_capacity(rows.len() * 1024);
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in &rows {
            let erased = printer.tombstones.iter().any(|t| {
                covered(
                    row,
                    &t.erasure.cluster_id,
                    &t.erasure.erasure_check,
                    t.requested_at,
                )
            });
            if erased {
                outcomes.push(Outcome::Erased);
                continue;
            }
            // A Row is plain strings, integers and a timestamp: serializing cannot fail.
            serde_json::to_writer(&mut buf, row).map_err(std::io::Error::from)?;
            buf.push(b'\n');
            outcomes.push(Outcome::Written);
        }
        printer.out.write_all(&buf)?;
        printer.out.flush()?;
        Ok(outcomes)
    }

    async fn erase(&self, erasure: &QueuedErasure) -> Result<Erased, SinkError> {
        let mut printer = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !printer.tombstones.contains(erasure) {
            let mut line =
                serde_json::to_vec(&ErasureLine { erasure }).map_err(std::io::Error::from)?;
            line.push(b'\n');
            printer.out.write_all(&line)?;
            printer.out.flush()?;
            printer.tombstones.push(erasure.clone());
        }
        Ok(Erased::Done { reports: None })
    }

    async fn ready(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
