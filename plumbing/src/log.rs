//! Logging, set up once per process with a `RUST_LOG` filter (default `info`).
//!
//! Both formats write to stderr. JSON is one flat object per line — `timestamp`, `level`,
//! `target`, the event's fields and `message` at the top level, the current span's fields
//! under `span` — the same shape for every binary, so one log query works for all of them.

use std::io::{self, IsTerminal};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors (clusters).
    Json,
    /// Human-readable lines, for a terminal.
    Pretty,
}

/// Installs the global subscriber. Call once, first thing after parsing the flags.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    install(format, filter, io::stderr, io::stderr().is_terminal());
}

fn install<W>(format: LogFormat, filter: EnvFilter, writer: W, colours: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Colours only on a terminal: escape codes in a file or a pod's log are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colours);
    // `try_init`: a second initialisation (tests starting several servers in one process)
    // keeps the first subscriber instead of panicking.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_are_flat_objects_with_the_fields_at_the_top() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(report_id = "r1", rows = 3, "batch written");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "batch written");
        assert_eq!(line["report_id"], "r1");
        assert_eq!(line["rows"], 3);
        assert_eq!(line["level"], "INFO");
        assert!(line.get("fields").is_none(), "{line}");
    }
}
