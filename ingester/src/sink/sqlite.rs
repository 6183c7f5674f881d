//! The embedded sink: one SQLite file (WAL), written by one dedicated thread, one transaction
//! per batch. `report_id` is unique and rows are inserted with `INSERT OR IGNORE`, so a
//! redelivered report changes nothing: exactly once in this sink.
//!
//! The schema and its migrations are the `stored` crate's ([`stored::sqlite`]), shared with
//! stats, which reads the file.
//!
//! Erasures and retention run on the same writer thread as the batches, each in its own short
//! transaction, so they interleave with ingestion and never race it: a batch sees every
//! tombstone committed before it, and an erasure deletes every report committed before it.

use std::path::Path;
use std::sync::mpsc;

use backon::{BlockingRetryable, ConstantBuilder};
use rusqlite::{CachedStatement, Connection, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use report::erasure::QueuedErasure;

use super::{Erased, Outcome, Sink};
use crate::error::SinkError;
use crate::row::{Row, kubernetes_minor};

use stored::sqlite::{CHILD_TABLES, LATEST};

/// How long a write waits for another process holding the database lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Pause between attempts to switch a file that another process is opening to WAL.
const WAL_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// A batch's outcome, and its rows handed back to be freed by the caller.
type Written = (Result<Vec<Outcome>, SinkError>, Vec<Row>);

enum Job {
    Write(Vec<Row>, oneshot::Sender<Written>),
    Erase(QueuedErasure, oneshot::Sender<Result<u64, SinkError>>),
    Expire(i64, usize, oneshot::Sender<Result<usize, SinkError>>),
    Ping(oneshot::Sender<Result<(), SinkError>>),
}

/// Writes rows into a SQLite file.
#[derive(Debug)]
pub struct SqliteSink {
    jobs: mpsc::Sender<Job>,
}

impl SqliteSink {
    /// Opens (or creates) the database, applies pending migrations and starts the writer
    /// thread, with a page cache of [`DEFAULT_CACHE`].
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        Self::open_with_cache(path, DEFAULT_CACHE)
    }

    /// [`SqliteSink::open`] with a page cache of `cache_bytes` (`--sqlite-cache`).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, SinkError> {
        let conn = open_connection_with_cache(path, cache_bytes)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, rx))?;
        Ok(SqliteSink { jobs })
    }
}

/// `--sqlite-cache`'s default: the random-place indexes of some 250,000 reports, within the
/// shipped 256Mi pod limit together with the batches in hand.
pub const DEFAULT_CACHE: u64 = 32 << 20;

/// Opens the file with the pragmas the ingester relies on and migrates it, with a page cache
/// of [`DEFAULT_CACHE`].
pub fn open_connection(path: &Path) -> Result<Connection, SinkError> {
    open_connection_with_cache(path, DEFAULT_CACHE)
}

/// [`open_connection`] with a page cache of `cache_bytes`.
pub fn open_connection_with_cache(path: &Path, cache_bytes: u64) -> Result<Connection, SinkError> {
    let mut conn = Connection::open(path)?;
    // A negative cache_size is in KiB. Each report's insert lands at random places in two
    // indexes (its report ID, a random UUID, and its cluster): with SQLite's default 2 MB
    // they outgrow the cache at some tens of thousands of reports, and every insert then reads
    // pages back from the file.
    let kib = i64::try_from(cache_bytes / 1024).unwrap_or(i64::MAX);
    conn.pragma_update(None, "cache_size", -kib)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers (people querying) never block the writer. FULL: a commit is on disk before
    // we acknowledge the reports in it, even across a power loss.
    //
    // Switching to WAL can answer SQLITE_BUSY at once, without the busy handler, while another
    // process opens the same file (two replicas starting together): retry it for as long as a
    // busy lock would be waited for.
    let set_wal = || conn.pragma_update(None, "journal_mode", "WAL");
    set_wal
        .retry(
            ConstantBuilder::default()
                .with_delay(WAL_RETRY_DELAY)
                .with_max_times((BUSY_TIMEOUT.as_millis() / WAL_RETRY_DELAY.as_millis()) as usize),
        )
        .sleep(std::thread::sleep)
        .when(|e| {
            matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            )
        })
        .call()?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Applies the migrations the file has not seen yet ([`stored::sqlite::migrate`]).
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), SinkError> {
    stored::sqlite::migrate(conn).map_err(SinkError::from)
}

fn writer(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    // Ends when the sink (every sender) is dropped.
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Write(rows, reply) => {
                // The rows go back with the answer, to be freed off this thread: the writer
                // is the pipeline's bottleneck, and freeing a batch's rows is a tenth of its
                // work.
                let written = write_batch(&mut conn, &rows);
                let _ = reply.send((written, rows));
            }
            Job::Erase(erasure, reply) => {
                let _ = reply.send(erase(&mut conn, &erasure));
            }
            Job::Expire(before, limit, reply) => {
                let _ = reply.send(expire(&mut conn, before, limit));
            }
            Job::Ping(reply) => {
                let ping = conn
                    .query_row("SELECT count(*) FROM pragma_user_version", [], |_| Ok(()))
                    .map_err(SinkError::from);
                let _ = reply.send(ping);
            }
        }
    }
}

/// Starts a write transaction on a database of this ingester's schema version. Another
/// ingester sharing the file may have migrated it since this one opened it: rows written with
/// the old statements could then be wrong. Checked inside the write lock, so no migration can
/// slip in before the commit; a mismatch is [`SinkError::SchemaVersion`], which stops it.
fn begin(conn: &mut Connection) -> Result<Transaction<'_>, SinkError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version = stored::sqlite::version(&tx)?;
    if version != LATEST {
        return Err(SinkError::SchemaVersion {
            found: version,
            supported: LATEST,
        });
    }
    Ok(tx)
}

/// Writes rows in one transaction. A row SQLite could never store (an integer beyond 2^63) is
/// rejected alone, a row a tombstone covers is [`Outcome::Erased`]; any other failure rolls
/// the whole batch back.
pub fn write_batch(conn: &mut Connection, rows: &[Row]) -> Result<Vec<Outcome>, SinkError> {
    let tx = begin(conn)?;
    let mut outcomes = Vec::with_capacity(rows.len());
    {
        // Looked up once per batch, not once per row: the lookup hashes the SQL text.
        let mut statements = Statements::prepare(&tx)?;
        for row in rows {
            let outcome = match fits(row) {
                Err(reason) => Outcome::Rejected(reason),
                Ok(()) if statements.tombstoned(row)? => Outcome::Erased,
                Ok(()) => statements.insert(&tx, row)?,
            };
            outcomes.push(outcome);
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// Carries out an erasure in one transaction: the tombstone (the latest request per cluster and
/// check), then the covered reports with their child rows. How many reports it deleted.
pub(crate) fn erase(conn: &mut Connection, erasure: &QueuedErasure) -> Result<u64, SinkError> {
    let tx = begin(conn)?;
    let cluster = &erasure.erasure.cluster_id;
    let check = &erasure.erasure.erasure_check;
    let requested = erasure.requested_at.as_second();
    tx.execute(
        "INSERT INTO tombstones (cluster_id, erasure_check, requested_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (cluster_id, erasure_check)
         DO UPDATE SET requested_at = max(requested_at, excluded.requested_at)",
        params![cluster, check, requested],
    )?;
    // The same rule as `Statements::tombstoned` and `sink::covered`.
    let covered = "SELECT id FROM reports
                   WHERE cluster_id = ?1 AND erasure_check = ?2 AND received_at <= ?3";
    let deleted = delete_reports(&tx, covered, params![cluster, check, requested])?;
    tx.commit()?;
    Ok(deleted as u64)
}

/// Retention, one step: deletes the `limit` oldest reports received before `before` (UNIX
/// seconds) with their child rows, and the tombstones requested before it, in one transaction.
/// How many reports it deleted.
pub(crate) fn expire(conn: &mut Connection, before: i64, limit: usize) -> Result<usize, SinkError> {
    let tx = begin(conn)?;
    let oldest = "SELECT id FROM reports WHERE received_at < ?1 ORDER BY received_at, id LIMIT ?2";
    let deleted = delete_reports(&tx, oldest, params![before, limit])?;
    // A tombstone requested before the cutoff covers only reports received before it: those
    // are deleted here, and the consumer refuses to store any such report that arrives late.
    tx.execute(
        "DELETE FROM tombstones WHERE requested_at < ?1",
        params![before],
    )?;
    tx.commit()?;
    Ok(deleted)
}

/// Deletes the reports `select_ids` (a `SELECT id FROM reports …` with `params`) and every child
/// row of theirs; how many reports. The child tables go first, each with the same selection,
/// which sees the same reports within the transaction.
fn delete_reports(
    tx: &Transaction<'_>,
    select_ids: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<usize, SinkError> {
    for table in CHILD_TABLES {
        tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE report IN ({select_ids})"
        ))?
        .execute(params)?;
    }
    let deleted = tx
        .prepare_cached(&format!("DELETE FROM reports WHERE id IN ({select_ids})"))?
        .execute(params)?;
    Ok(deleted)
}

/// SQLite integers are signed 64-bit; the report's counts are unsigned.
fn fits(row: &Row) -> Result<(), String> {
    let mut values = vec![("namespaces".to_owned(), row.namespaces)];
    for (i, w) in row.workloads.iter().enumerate() {
        values.push((format!("workloads[{i}].total"), Some(w.total)));
        values.push((
            format!("workloads[{i}].namespacesSampled"),
            w.namespaces_sampled,
        ));
        if let Some(age) = w.age_hours {
            values.push((format!("workloads[{i}].ageHours.median"), Some(age.median)));
            values.push((format!("workloads[{i}].ageHours.p90"), Some(age.p90)));
        }
        for (j, b) in w.per_namespace.iter().enumerate() {
            values.push((format!("workloads[{i}].perNamespace[{j}].min"), Some(b.min)));
            values.push((format!("workloads[{i}].perNamespace[{j}].max"), b.max));
            values.push((
                format!("workloads[{i}].perNamespace[{j}].namespaces"),
                Some(b.namespaces),
            ));
        }
    }
    match values
        .into_iter()
        .find(|(_, v)| v.is_some_and(|v| i64::try_from(v).is_err()))
    {
        Some((path, _)) => Err(format!("{path}: larger than SQLite's 64-bit integers")),
        None => Ok(()),
    }
}

/// The batch's prepared statements.
struct Statements<'c> {
    report: CachedStatement<'c>,
    node: CachedStatement<'c>,
    capacity: CachedStatement<'c>,
    extension: CachedStatement<'c>,
    workload: CachedStatement<'c>,
    bucket: CachedStatement<'c>,
    skipped: CachedStatement<'c>,
    tombstone: CachedStatement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(tx: &'c Transaction<'_>) -> Result<Self, SinkError> {
        Ok(Statements {
            report: tx.prepare_cached(
                "INSERT OR IGNORE INTO reports (report_id, received_at, version, timestamp, cluster_id,
                     master_version, master_minor, schema_version, namespaces, erasure_check)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?,
            node: tx.prepare_cached(
                "INSERT INTO nodes (report, idx, node_id, operating_system, os_image, kernel_version,
                     architecture, container_runtime_version, kubelet_version, cloud_provider)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?,
            capacity: tx.prepare_cached(
                "INSERT INTO capacity (report, node, idx, resource, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            extension: tx.prepare_cached(
                "INSERT INTO extensions (report, idx, name, value) VALUES (?1, ?2, ?3, ?4)",
            )?,
            workload: tx.prepare_cached(
                "INSERT INTO workloads (report, idx, kind, total, age_median_hours, age_p90_hours,
                     namespaces_sampled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
            bucket: tx.prepare_cached(
                "INSERT INTO workload_buckets (report, workload, idx, min, max, namespaces)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            skipped: tx.prepare_cached(
                "INSERT INTO skipped (report, idx, section, reason) VALUES (?1, ?2, ?3, ?4)",
            )?,
            tombstone: tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tombstones
                     WHERE cluster_id = ?1 AND erasure_check = ?2 AND requested_at >= ?3)",
            )?,
        })
    }

    /// Whether a tombstone covers `row` (the rule of `sink::covered`).
    fn tombstoned(&mut self, row: &Row) -> Result<bool, SinkError> {
        let Some(check) = &row.erasure_check else {
            return Ok(false);
        };
        let covered = self.tombstone.query_row(
            params![row.cluster_id, check, row.received_at.as_second()],
            |r| r.get(0),
        )?;
        Ok(covered)
    }

    fn insert(&mut self, tx: &Transaction<'_>, row: &Row) -> Result<Outcome, SinkError> {
        let inserted = self.report.execute(params![
            row.report_id.to_string(),
            row.received_at.as_second(),
            row.version,
            row.timestamp,
            row.cluster_id,
            row.master_version,
            row.master_version.as_deref().and_then(kubernetes_minor),
            row.schema_version,
            row.namespaces,
            row.erasure_check,
        ])?;
        if inserted == 0 {
            return Ok(Outcome::Duplicate);
        }
        let id = tx.last_insert_rowid();
        for (i, n) in row.nodes.iter().enumerate() {
            self.node.execute(params![
                id,
                i,
                n.id,
                n.operating_system,
                n.os_image,
                n.kernel_version,
                n.architecture,
                n.container_runtime_version,
                n.kubelet_version,
                n.cloud_provider,
            ])?;
            for (j, c) in n.capacity.iter().flatten().enumerate() {
                self.capacity
                    .execute(params![id, i, j, c.resource, c.value])?;
            }
        }
        for (i, e) in row.extensions.iter().enumerate() {
            self.extension.execute(params![id, i, e.name, e.value])?;
        }
        for (i, w) in row.workloads.iter().enumerate() {
            self.workload.execute(params![
                id,
                i,
                w.kind.as_str(),
                w.total,
                w.age_hours.map(|a| a.median),
                w.age_hours.map(|a| a.p90),
                w.namespaces_sampled,
            ])?;
            for (j, b) in w.per_namespace.iter().enumerate() {
                self.bucket
                    .execute(params![id, i, j, b.min, b.max, b.namespaces])?;
            }
        }
        for (i, s) in row.skipped.iter().enumerate() {
            self.skipped
                .execute(params![id, i, s.section, s.reason.as_str()])?;
        }
        Ok(Outcome::Written)
    }
}

impl Sink for SqliteSink {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn write(&self, rows: Vec<Row>) -> Result<Vec<Outcome>, SinkError> {
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send(Job::Write(rows, reply))
            .map_err(|_| SinkError::WriterGone)?;
        let (written, rows) = outcome.await.map_err(|_| SinkError::WriterGone)?;
        drop(rows);
        written
    }

    async fn erase(&self, erasure: &QueuedErasure) -> Result<Erased, SinkError> {
        let (reply, deleted) = oneshot::channel();
        self.jobs
            .send(Job::Erase(erasure.clone(), reply))
            .map_err(|_| SinkError::WriterGone)?;
        let reports = deleted.await.map_err(|_| SinkError::WriterGone)??;
        Ok(Erased::Done {
            reports: Some(reports),
        })
    }

    async fn expire(&self, before: jiff::Timestamp, limit: usize) -> Result<usize, SinkError> {
        let (reply, deleted) = oneshot::channel();
        self.jobs
            .send(Job::Expire(before.as_second(), limit, reply))
            .map_err(|_| SinkError::WriterGone)?;
        deleted.await.map_err(|_| SinkError::WriterGone)?
    }

    async fn ready(&self) -> Result<(), SinkError> {
        let (reply, pong) = oneshot::channel();
        self.jobs
            .send(Job::Ping(reply))
            .map_err(|_| SinkError::WriterGone)?;
        pong.await.map_err(|_| SinkError::WriterGone)?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op_and_records_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(open_connection(&path).unwrap());
        let conn = open_connection(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, LATEST as i64);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_database_from_a_newer_ingester_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = open_connection(&path).unwrap_err();
        let SinkError::SchemaVersion { found, supported } = err else {
            panic!("expected SchemaVersion, got {err:?}");
        };
        assert_eq!((found, supported), (99, LATEST));
        assert!(err.is_fatal());
    }
}
