//! The real write path on loopback as the attacks and the dashboard use it: nats-server, the
//! gateway with `--backdate-synthetic` and the ingester writing SQLite, started through testenv;
//! and the turn the heavy tests take.

use std::path::{Path, PathBuf};
use std::time::Duration;

use systests::population::{self, Planned, Sent};
use tempfile::TempDir;
use testenv::{Launch, Nats, Service};
use tokio::sync::{Mutex, MutexGuard};

/// How long the gateway and the ingester may take to be ready.
const START: Duration = Duration::from_secs(60);
/// How long the ingester may take to store what was delivered.
const STORED: Duration = Duration::from_secs(180);

/// The attacks, the chaos runs and the dashboard each keep both cores busy for a minute or
/// more, and have deadlines: they take turns rather than slow each other past them.
static HEAVY: Mutex<()> = Mutex::const_new(());

/// A turn for a heavy test (see [`HEAVY`]).
pub(crate) async fn heavy_turn() -> MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// nats-server, the gateway (`--backdate-synthetic`: a synthetic report is dated by its own
/// `timestamp`) and the ingester (SQLite, no retention), each ready.
pub(crate) struct Pipeline {
    // Field order: the processes stop before their folder is removed.
    pub(crate) gateway: Service,
    pub(crate) ingester: Service,
    _nats: Nats,
    /// The ingester's SQLite file.
    pub(crate) db: PathBuf,
    delivered: usize,
    /// Lives as long as the pipeline: the store, and the test's own files.
    pub(crate) dir: TempDir,
}

impl Pipeline {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let nats = Nats::start().await.expect("nats-server starts");
        let gateway = Launch::gateway(&nats.url())
            .arg("--backdate-synthetic")
            .ready_within(START)
            .start()
            .await
            .expect("the gateway is ready");
        let db = dir.path().join("spartakus.sqlite");
        let ingester = Launch::ingester(&nats.url(), &format!("sqlite:{}", db.display()))
            .args(["--retention", "none"])
            .ready_within(START)
            .start()
            .await
            .expect("the ingester is ready");
        Pipeline {
            gateway,
            ingester,
            _nats: nats,
            db,
            delivered: 0,
            dir,
        }
    }

    /// Posts `reports` to the gateway (through the volunteer's sender, `concurrency` at a time)
    /// and waits until the ingester has stored every one, once.
    pub(crate) async fn deliver(&mut self, reports: &[Planned], concurrency: usize) -> Sent {
        let url = reqwest::Url::parse(&self.gateway.url()).expect("the gateway's URL");
        let sent = population::send(&url, reports, concurrency)
            .await
            .expect("the gateway takes every report");
        self.delivered += reports.len();
        let (db, delivered) = (&self.db, self.delivered);
        let waited = testenv::try_eventually(STORED, || async move { stored(db) >= delivered });
        if waited.await.is_err() {
            panic!(
                "the ingester stored {} of {delivered} reports in {STORED:?}:\n{}",
                stored(db),
                self.ingester.log_tail(20)
            );
        }
        assert_eq!(stored(db), delivered, "every report stored once");
        sent
    }
}

/// The store, read-only, beside the ingester writing it.
pub(crate) fn read_only(db: &Path) -> rusqlite::Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// The reports stored so far (none while the table does not exist yet).
fn stored(db: &Path) -> usize {
    read_only(db)
        .and_then(|c| c.query_row("SELECT count(*) FROM reports", [], |r| r.get::<_, i64>(0)))
        .map_or(0, |n| n as usize)
}
