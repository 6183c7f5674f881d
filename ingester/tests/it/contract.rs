//! One contract, every sink: a batch is written with one outcome per row, in order; writing the
//! same report IDs again never creates a second row (where the sink can tell, it says
//! `Duplicate`); a row the sink cannot store is rejected alone. Erasure: the reports of the
//! cluster with the request's check received up to it are deleted (where the sink can delete)
//! and never written again, and nothing else is touched: not another check's, another
//! cluster's, a v1 report, or one received after the request.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ingester::row::Row;
use ingester::sink::bigquery::{BigQuerySink, Limits};
use ingester::sink::sqlite::SqliteSink;
use ingester::sink::stdout::StdoutSink;
use ingester::sink::{Erased, Outcome, Sink};
use report::erasure::{Erasure, QueuedErasure};
use stored::TableRef;
use stored::bigquery::Credentials;

fn rows(n: usize) -> Vec<Row> {
    crate::common::envelopes(n)
        .into_iter()
        .map(|(_, e)| ingester::row::from_envelope(report::Envelope::decode(&e).unwrap()))
        .collect()
}

/// A row SQLite and BigQuery cannot store: a count beyond 2^63.
fn oversized_row() -> Row {
    let mut row = rows(1).remove(0);
    row.namespaces = Some(u64::MAX);
    row
}

/// What the contract needs to observe in a sink's storage.
trait Observe {
    /// Stored rows per report ID.
    async fn stored(&self) -> HashMap<String, usize>;
    /// Whether the sink itself can tell a duplicate from a new row.
    const REPORTS_DUPLICATES: bool;
    /// Whether the sink refuses rows it cannot represent.
    const REJECTS_OVERSIZED: bool;
    /// Whether the sink can delete what it stored (stdout cannot take back a printed line).
    const DELETES: bool = true;
}

/// A row of `cluster` received at `at` (UNIX seconds) with erasure check `check` (none: v1).
fn row_of(cluster: &str, check: Option<&str>, at: i64) -> Row {
    let mut row = rows(1).remove(0);
    row.cluster_id = cluster.to_owned();
    row.erasure_check = check.map(str::to_owned);
    row.received_at = jiff::Timestamp::from_second(at).unwrap();
    row
}

const CHECK: &str = "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd";
const OTHER_CHECK: &str = "1111111111111111111111111111111111111111111111111111111111111111";

async fn erasure_contract<S: Sink, O: Observe>(sink: &S, observe: &O) {
    let now = jiff::Timestamp::now().as_second();
    let requested = now - 60;
    let erased = row_of("erase-me", Some(CHECK), requested - 3600);
    let same_second = row_of("erase-me", Some(CHECK), requested);
    let kept = [
        row_of("erase-me", Some(OTHER_CHECK), requested - 3600),
        row_of("erase-me", None, requested - 3600),
        row_of("someone-else", Some(CHECK), requested - 3600),
        row_of("erase-me", Some(CHECK), requested + 1),
    ];
    let mut batch = vec![erased.clone(), same_second.clone()];
    batch.extend(kept.iter().cloned());
    let outcomes = sink.write(batch).await.expect("write");
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Written)),
        "{outcomes:?}"
    );

    let erasure = QueuedErasure {
        erasure: Erasure {
            cluster_id: "erase-me".into(),
            erasure_check: CHECK.into(),
        },
        requested_at: jiff::Timestamp::from_second(requested).unwrap(),
    };
    let done = sink.erase(&erasure).await.expect("erase");
    assert!(matches!(done, Erased::Done { .. }), "{done:?}");
    if let Erased::Done { reports: Some(n) } = done {
        assert_eq!(n, 2, "the two covered reports");
    }
    // Idempotent.
    let again = sink.erase(&erasure).await.expect("erase again");
    assert!(matches!(again, Erased::Done { .. }), "{again:?}");

    let stored = observe.stored().await;
    for row in &kept {
        assert!(
            stored.contains_key(&row.report_id.to_string()),
            "{} {:?} at {} kept",
            row.cluster_id,
            row.erasure_check,
            row.received_at
        );
    }
    if O::DELETES {
        for row in [&erased, &same_second] {
            assert!(
                !stored.contains_key(&row.report_id.to_string()),
                "{} erased",
                row.received_at
            );
        }
    }

    // The tombstone: a covered report arriving late is dropped, a later one is written.
    let late = row_of("erase-me", Some(CHECK), requested - 10);
    let after = row_of("erase-me", Some(CHECK), requested + 5);
    let v1 = row_of("erase-me", None, requested - 10);
    let outcomes = sink
        .write(vec![late.clone(), after.clone(), v1.clone()])
        .await
        .expect("write after the erasure");
    assert!(matches!(outcomes[0], Outcome::Erased), "{outcomes:?}");
    assert!(matches!(outcomes[1], Outcome::Written), "{outcomes:?}");
    assert!(matches!(outcomes[2], Outcome::Written), "{outcomes:?}");
    let stored = observe.stored().await;
    assert!(!stored.contains_key(&late.report_id.to_string()));
    assert!(stored.contains_key(&after.report_id.to_string()));
    assert!(stored.contains_key(&v1.report_id.to_string()));
}

async fn contract<S: Sink, O: Observe>(sink: &S, observe: &O) {
    sink.prepare().await.expect("prepare");
    sink.ready().await.expect("ready");

    // Write: one outcome per row, all written.
    let batch = rows(20);
    let ids: Vec<String> = batch.iter().map(|r| r.report_id.to_string()).collect();
    let outcomes = sink.write(batch.clone()).await.expect("write");
    assert_eq!(outcomes.len(), 20);
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Written)),
        "{outcomes:?}"
    );

    // Rewrite the same IDs (a redelivery): never an error.
    let outcomes = sink.write(batch.clone()).await.expect("rewrite");
    assert_eq!(outcomes.len(), 20);
    if O::REPORTS_DUPLICATES {
        assert!(
            outcomes.iter().all(|o| matches!(o, Outcome::Duplicate)),
            "{outcomes:?}"
        );
    } else {
        assert!(
            outcomes.iter().all(|o| matches!(o, Outcome::Written)),
            "{outcomes:?}"
        );
    }
    let stored = observe.stored().await;
    for id in &ids {
        let copies = stored.get(id).copied().unwrap_or(0);
        assert!(copies >= 1, "{id} stored");
        if O::REPORTS_DUPLICATES {
            assert_eq!(copies, 1, "{id} stored once");
        }
    }

    // Per-row outcomes: a bad row among good ones is refused alone.
    if O::REJECTS_OVERSIZED {
        let mut mixed = rows(3);
        mixed.insert(1, oversized_row());
        let bad_id = mixed[1].report_id.to_string();
        let good: Vec<String> = [0, 2, 3]
            .iter()
            .map(|&i| mixed[i].report_id.to_string())
            .collect();
        let outcomes = sink.write(mixed).await.expect("mixed write");
        assert!(matches!(outcomes[0], Outcome::Written), "{outcomes:?}");
        assert!(matches!(outcomes[1], Outcome::Rejected(_)), "{outcomes:?}");
        assert!(matches!(outcomes[2], Outcome::Written) && matches!(outcomes[3], Outcome::Written));
        let stored = observe.stored().await;
        assert!(!stored.contains_key(&bad_id), "rejected row not stored");
        assert!(good.iter().all(|id| stored.contains_key(id)));
    }
}

struct SqliteObserver(std::path::PathBuf);

impl Observe for SqliteObserver {
    const REPORTS_DUPLICATES: bool = true;
    const REJECTS_OVERSIZED: bool = true;
    async fn stored(&self) -> HashMap<String, usize> {
        let conn = rusqlite::Connection::open(&self.0).unwrap();
        let mut stmt = conn
            .prepare("SELECT report_id, count(*) FROM reports GROUP BY report_id")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }
}

#[tokio::test]
async fn the_sqlite_sink_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.sqlite");
    let sink = SqliteSink::open(&path).unwrap();
    let observe = SqliteObserver(path);
    contract(&sink, &observe).await;
    erasure_contract(&sink, &observe).await;
}

/// A writer whose bytes a test can read while the sink holds it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Observe for Shared {
    // stdout prints what it is given: a redelivery prints again, consumers of the lines dedupe.
    const REPORTS_DUPLICATES: bool = false;
    const REJECTS_OVERSIZED: bool = false;
    const DELETES: bool = false;
    async fn stored(&self) -> HashMap<String, usize> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        let mut out = HashMap::new();
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            // An erasure line is for the reader of the lines to apply; it is no row.
            if v.get("erasure").is_some() {
                continue;
            }
            *out.entry(v["reportID"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        out
    }
}

#[tokio::test]
async fn the_stdout_sink_keeps_the_contract() {
    let out = Shared::default();
    let sink = StdoutSink::new(out.clone());
    contract(&sink, &out).await;
    erasure_contract(&sink, &out).await;
    // The erasure is printed once, as the queued form: cluster, check and time, never a secret.
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let erasures: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("erasure").is_some())
        .collect();
    assert_eq!(erasures.len(), 1, "{erasures:?}");
    assert_eq!(erasures[0]["erasure"]["clusterID"], "erase-me");
    assert_eq!(erasures[0]["erasure"]["erasureCheck"], CHECK);
}

struct BigQueryObserver<'a>(&'a testenv::BigQuery);

impl Observe for BigQueryObserver<'_> {
    // BigQuery drops a repeated insertId best-effort and reports nothing; the emulator does
    // not deduplicate at all. What the sink guarantees is the same insertId on every attempt,
    // checked in tests/bigquery.rs through a recording proxy.
    const REPORTS_DUPLICATES: bool = false;
    // The emulator does not check values against the schema (it stores NULL in a REQUIRED
    // column and does not answer insertErrors); tests/bigquery.rs injects insertErrors instead.
    const REJECTS_OVERSIZED: bool = false;
    async fn stored(&self) -> HashMap<String, usize> {
        let rows = self
            .0
            .query("SELECT reportID, COUNT(*) FROM contract.reports GROUP BY reportID")
            .await
            .unwrap();
        rows.into_iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_owned(),
                    r[1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn the_bigquery_sink_keeps_the_contract_against_the_emulator() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let endpoint = format!("{}/bigquery/v2", bq.endpoint());
    let client = BigQuerySink::client(Some(&endpoint), Some(&Credentials::None))
        .await
        .unwrap();
    let table = TableRef {
        project: bq.project().to_owned(),
        dataset: "contract".into(),
        table: "reports".into(),
    };
    // No grace: the erasure is done once its DELETE succeeded (tests/bigquery.rs checks the
    // grace and the retries past the streaming buffer).
    let sink = BigQuerySink::new(
        client,
        table,
        Limits {
            max_rows: 7,
            max_bytes: 5_000_000,
        },
    )
    .with_erasure_grace(std::time::Duration::ZERO);
    let observe = BigQueryObserver(&bq);
    contract(&sink, &observe).await;
    erasure_contract(&sink, &observe).await;
}
