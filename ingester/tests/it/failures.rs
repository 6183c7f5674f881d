//! Failures fail: when the sink can never write again, or a write task panics, the ingester
//! hands back what it holds and stops with an error (the binary exits non-zero, so Kubernetes
//! restarts it instead of recording "Completed"), and no report is acknowledged that was not
//! written — a replacement ingester then stores every report exactly once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use ingester::consume::ConsumeError;
use ingester::error::SinkError;
use ingester::row::Row;
use ingester::sink::sqlite::SqliteSink;
use ingester::sink::{Outcome, Sink};

const DEADLINE: Duration = Duration::from_secs(60);

/// How the wrapped sink dies once its budget of good batches is spent.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// The write task panics (a bug in a sink).
    Panic,
    /// The sink reports it can never write again (the SQLite writer thread is gone).
    Gone,
}

/// The real SQLite sink, killed after `good` batches. A wrapper rather than an outside event:
/// nothing outside the process can make the writer thread panic or vanish (a deleted or moved
/// database file keeps working through its open descriptor in WAL mode); the schema test below
/// kills the real sink from outside instead.
struct Dying {
    inner: SqliteSink,
    good: Arc<AtomicUsize>,
    death: Death,
}

impl Sink for Dying {
    fn name(&self) -> &'static str {
        "dying"
    }

    async fn write(&self, rows: Vec<Row>) -> Result<Vec<Outcome>, SinkError> {
        // The consumer writes one batch at a time, so a load and a store are enough.
        let left = self.good.load(Ordering::SeqCst);
        if left == 0 {
            match self.death {
                Death::Panic => panic!("the sink dies mid-run"),
                Death::Gone => return Err(SinkError::WriterGone),
            }
        }
        self.good.store(left - 1, Ordering::SeqCst);
        self.inner.write(rows).await
    }

    async fn erase(
        &self,
        erasure: &report::erasure::QueuedErasure,
    ) -> Result<ingester::sink::Erased, SinkError> {
        self.inner.erase(erasure).await
    }

    async fn ready(&self) -> Result<(), SinkError> {
        self.inner.ready().await
    }
}

/// Runs a dying sink over `n` reports, checks the error it stops with, then lets a healthy
/// ingester finish and checks that every report is stored exactly once.
async fn dies_and_loses_nothing(death: Death) -> ingester::Error {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let n = 1_000;
    let published = envelopes(n);
    nats.publish_all(&published).await;

    let sink = Dying {
        inner: SqliteSink::open(&db).unwrap(),
        good: Arc::new(AtomicUsize::new(3)),
        death,
    };
    let config = config(
        &nats.url(),
        &format!("sqlite:{}", db.display()),
        &["--batch-size", "50"],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Never cancelled: the ingester must stop by itself.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ended = tokio::time::timeout(DEADLINE, ingester::serve(config, listener, sink, shutdown))
        .await
        .expect("the ingester stops by itself when its sink dies");
    let error = ended.expect_err("a dead sink is an error, not a clean exit");
    let written = sqlite_i64(&db, "SELECT count(*) FROM reports");
    assert!(
        (1..n as i64).contains(&written),
        "the sink died mid-run ({written} of {n} written)"
    );

    // A healthy replacement takes over; the handed-back reports come back at once.
    let healthy = InProcess::start(crate::common::config(
        &nats.url(),
        &format!("sqlite:{}", db.display()),
        &["--batch-size", "50", "--ack-wait", "2s"],
    ))
    .await;
    eventually(DEADLINE, "every report stored and acknowledged", || async {
        sqlite_i64(&db, "SELECT count(*) FROM reports") >= n as i64
            && nats.consumer_info().await.num_ack_pending == 0
            && nats.consumer_info().await.num_pending == 0
    })
    .await;
    healthy.stop().await;
    assert_eq!(
        sqlite_i64(&db, "SELECT count(DISTINCT report_id) FROM reports"),
        n as i64,
        "an acknowledged report that was never written would be missing here"
    );
    assert_eq!(sqlite_i64(&db, "SELECT count(*) FROM reports"), n as i64);
    error
}

#[tokio::test]
async fn a_panicking_write_task_stops_the_ingester_with_an_error_and_loses_nothing() {
    let error = dies_and_loses_nothing(Death::Panic).await;
    assert!(
        matches!(error, ingester::Error::Consumer(ConsumeError::WriteTask(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_sink_that_can_never_write_again_stops_the_ingester_and_loses_nothing() {
    let error = dies_and_loses_nothing(Death::Gone).await;
    assert!(
        matches!(
            error,
            ingester::Error::Consumer(ConsumeError::Sink(SinkError::WriterGone))
        ),
        "{error:?}"
    );
}

/// The real binary with the real sink, killed from outside: the database it writes is migrated
/// under it (as a newer ingester sharing the file would). It must exit non-zero, and nothing it
/// acknowledged may be missing.
#[tokio::test]
async fn the_binary_exits_non_zero_when_its_database_is_migrated_under_it() {
    let nats = Nats::with_stream().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let n = 400;
    nats.publish_all(&envelopes(n / 2)).await;
    let sink = format!("sqlite:{}", db.display());
    let mut first = Process::spawn(&nats.url(), &sink, &["--batch-size", "20"]).await;
    eventually(DEADLINE, "the first half stored", || async {
        sqlite_i64(&db, "SELECT count(*) FROM reports") >= (n / 2) as i64
    })
    .await;
    let schema: i64 = sqlite_i64(&db, "PRAGMA user_version");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.pragma_update(None, "user_version", schema + 1)
            .unwrap();
    }
    nats.publish_all(&envelopes(n)[n / 2..]).await;

    let status = first
        .service
        .wait(DEADLINE)
        .await
        .expect("the ingester exits when its database changes under it");
    let text = std::fs::read_to_string(first.service.log()).unwrap();
    assert_eq!(status.code(), Some(1), "exit status {status}; log:\n{text}");
    assert!(
        text.contains("schema version") && text.contains("ingester failed"),
        "log:\n{text}"
    );
    assert_eq!(
        sqlite_i64(&db, "SELECT count(*) FROM reports"),
        (n / 2) as i64,
        "nothing was written after the migration"
    );

    // Back to the schema this ingester writes: a new one stores the rest, each report once.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", schema).unwrap();
    }
    let second = Process::spawn(
        &nats.url(),
        &sink,
        &["--batch-size", "20", "--ack-wait", "2s"],
    )
    .await;
    let addr = second.addr;
    eventually(DEADLINE, "every report stored and acknowledged", || async {
        sqlite_i64(&db, "SELECT count(*) FROM reports") >= n as i64
            && nats.consumer_info().await.num_ack_pending == 0
            && get(addr, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(
        sqlite_i64(&db, "SELECT count(DISTINCT report_id) FROM reports"),
        n as i64
    );
}

/// A sink that cannot be opened is the operator's configuration at fault: one error, exit 64,
/// as for a bad flag (it was a plain failure, exit 1, before).
#[tokio::test]
async fn an_unopenable_sink_is_a_configuration_error_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("no-such-folder").join("spartakus.sqlite");
    let run = testenv::Launch::ingester("nats://127.0.0.1:9", &format!("sqlite:{}", db.display()))
        .args(["--listen", "127.0.0.1:0"])
        .run(DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status.code(), Some(64), "{}", run.stderr);
    assert!(
        run.stderr.contains("opening the sink") && run.stderr.contains("configuration"),
        "{}",
        run.stderr
    );
}
