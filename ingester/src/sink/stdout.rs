//! The debugging sink: one JSON line per row (the BigQuery row shape) on standard output.
//! It does not deduplicate: a redelivered report is printed again.

use std::io::Write;
use std::sync::Mutex;

use super::{Outcome, Sink};
use crate::error::SinkError;
use crate::row::Row;

/// Prints rows as JSON lines to a writer (standard output in the binary).
#[derive(Debug)]
pub struct StdoutSink<W = std::io::Stdout> {
    out: Mutex<W>,
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
            out: Mutex::new(out),
        }
    }

    /// The writer back, e.g. to read what a test printed.
    pub fn into_inner(self) -> W {
        self.out
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<W: Write + Send + 'static> Sink for StdoutSink<W> {
    fn name(&self) -> &'static str {
        "stdout"
    }

    async fn write(&self, rows: Vec<Row>) -> Result<Vec<Outcome>, SinkError> {
        let mut buf = Vec::with_capacity(rows.len() * 1024);
        for row in &rows {
            // A Row is plain strings, integers and a timestamp: serializing cannot fail.
            serde_json::to_writer(&mut buf, row).map_err(std::io::Error::from)?;
            buf.push(b'\n');
        }
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        out.write_all(&buf)?;
        out.flush()?;
        Ok(rows.iter().map(|_| Outcome::Written).collect())
    }

    async fn ready(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
