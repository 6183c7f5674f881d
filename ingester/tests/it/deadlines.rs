//! Every outbound call has a deadline: the ingester against real servers (the BigQuery
//! emulator, nats-server) behind testenv's `StallProxy`, which accepts connections and reads
//! but never answers once stalled, also on connections already open. A server that stops
//! answering fails the call within its flag's time; nothing is acknowledged meanwhile; once the
//! server answers again, the ingester carries on and nothing is lost.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use ingester::sink::Sink;
use ingester::sink::bigquery::{BigQuerySink, Deadlines, Limits};
use stored::TableRef;
use stored::bigquery::Credentials;
use testenv::StallProxy;

/// Every wait in these tests ends by then.
const DEADLINE: Duration = Duration::from_secs(90);

/// The address in a `scheme://127.0.0.1:PORT[/…]` URL.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// Copies per report ID in `sql`'s result (two columns: reportID, count).
async fn copies(bq: &testenv::BigQuery, sql: &str) -> Result<HashMap<String, usize>, String> {
    let rows = bq.query(sql).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect())
}

/// The stream sequence up to which every report was acknowledged.
async fn acked_up_to(nats: &Nats) -> u64 {
    nats.consumer_info().await.ack_floor.stream_sequence
}

#[tokio::test]
async fn a_bigquery_that_stops_answering_fails_the_write_within_the_request_timeout_and_every_report_is_stored_once_it_answers()
 {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let proxy = StallProxy::start(addr_of(&bq.endpoint())).await.unwrap();
    let nats = Nats::with_stream().await;
    let table = format!("{}/stall/reports", bq.project());
    let endpoint = format!("{}/bigquery/v2", proxy.http_url());
    let ingester = InProcess::start(config(
        &nats.url(),
        &format!("bigquery://{table}"),
        &[
            "--bigquery-endpoint",
            &endpoint,
            "--bigquery-credentials",
            "none",
            "--bigquery-request-timeout",
            "11s",
        ],
    ))
    .await;
    // The path works before the stall: one report through.
    let first = envelopes(1);
    nats.publish_all(&first).await;
    let by_report = "SELECT reportID, COUNT(*) FROM stall.reports GROUP BY reportID";
    eventually(DEADLINE, "the first report in the emulator", || async {
        copies(&bq, by_report).await.is_ok_and(|c| c.len() == 1)
    })
    .await;
    eventually(DEADLINE, "the first report acknowledged", || async {
        acked_up_to(&nats).await == 1
    })
    .await;

    proxy.stall();
    let stalled = envelopes(10);
    let published = Instant::now();
    nats.publish_all(&stalled).await;
    let naks = "spartakus_ingester_naks_total";
    eventually(DEADLINE, "the stalled write nakked", || async {
        metric(&get(ingester.addr, "/metrics").await.1, naks) >= 1.0
    })
    .await;
    let failed_after = published.elapsed();
    eprintln!("the stalled write failed after {failed_after:?}");
    assert!(
        proxy.held_bytes() > 0,
        "the ingester did send its insertAll"
    );
    assert!(
        failed_after >= Duration::from_secs(10) && failed_after < Duration::from_secs(25),
        "the write fails by --bigquery-request-timeout (11s), not before: {failed_after:?}"
    );
    // Nothing was acknowledged while BigQuery did not answer.
    assert_eq!(acked_up_to(&nats).await, 1);
    assert_eq!(copies(&bq, by_report).await.unwrap().len(), 1);

    proxy.resume();
    let window = "receivedAt >= TIMESTAMP '2026-01-01'";
    let in_view = format!(
        "SELECT reportID, COUNT(*) FROM stall.reports_deduplicated WHERE {window} GROUP BY reportID"
    );
    eventually(DEADLINE, "11 reports in the view", || async {
        copies(&bq, &in_view).await.is_ok_and(|c| c.len() == 11)
    })
    .await;
    eventually(DEADLINE, "every report acknowledged", || async {
        acked_up_to(&nats).await == 11
    })
    .await;
    // Readers see each report once. The table itself may hold one twice: the insertAll held
    // during the stall reaches the emulator on resume, after the ingester gave it up, and the
    // emulator does not deduplicate by insertId (BigQuery does, best-effort).
    let seen = copies(&bq, &in_view).await.unwrap();
    for (id, _) in first.iter().chain(&stalled) {
        assert_eq!(seen.get(&id.to_string()), Some(&1), "{id} once in the view");
    }
    let table_copies = copies(&bq, by_report).await.unwrap();
    assert_eq!(table_copies.len(), 11);
    ingester.stop().await;
}

#[tokio::test]
async fn an_erasure_job_whose_server_stops_answering_mid_request_ends_at_the_job_deadline() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let proxy = StallProxy::start(addr_of(&bq.endpoint())).await.unwrap();
    // A job deadline shorter than the request timeout: only the job deadline can end the
    // stalled request this early. The emulator closes a connection whose request has not
    // arrived within 15 s (its http.Server ReadTimeout), and the proxy passes a close on even
    // while stalled: without the job deadline the request fails at 15 s, with it at 11 s.
    let deadlines = Deadlines {
        request: Duration::from_secs(60),
        job: Duration::from_secs(11),
    };
    let table = TableRef {
        project: bq.project().into(),
        dataset: "erasestall".into(),
        table: "reports".into(),
    };
    let limits = Limits {
        max_rows: 500,
        max_bytes: 5_000_000,
    };
    let client = BigQuerySink::client_with(
        Some(&format!("{}/bigquery/v2", proxy.http_url())),
        Some(&Credentials::None),
        deadlines.request,
    )
    .await
    .unwrap();
    let sink = BigQuerySink::new(client, table, limits).with_deadlines(deadlines);
    sink.prepare().await.unwrap();
    let (_, check) = secret_and_check(0x24);
    let erasure = report::erasure::QueuedErasure {
        erasure: report::erasure::Erasure {
            cluster_id: "stalled".into(),
            erasure_check: check,
        },
        requested_at: jiff::Timestamp::now(),
    };

    proxy.stall();
    let started = Instant::now();
    let result = tokio::time::timeout(DEADLINE, sink.erase(&erasure))
        .await
        .expect("the erasure ends");
    let took = started.elapsed();
    eprintln!("the stalled erasure ended after {took:?}: {result:?}");
    assert!(proxy.held_bytes() > 0, "the sink did send its query job");
    let error = result.unwrap_err().to_string();
    assert!(error.contains("--bigquery-job-deadline"), "{error}");
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(14),
        "ended by the 11 s job deadline, not the 60 s request timeout nor the emulator's close: {took:?}"
    );

    proxy.resume();
    let done = tokio::time::timeout(DEADLINE, sink.erase(&erasure))
        .await
        .expect("the erasure ends");
    assert!(done.is_ok(), "carried out once BigQuery answers: {done:?}");
}

#[tokio::test]
async fn a_nats_server_that_stops_answering_ends_the_pull_at_its_deadline_and_the_consumer_binds_again_once_it_answers()
 {
    // Under 5 s, the pull's own deadline (its 50 ms expiry plus the timeout) ends it first, and
    // the consumer is unbound a moment after; async-nats would end it, empty, 5 s after its
    // expiry.
    let timeout = Duration::from_secs(2);
    nats_stops_answering_under_a_running_ingester(timeout, timeout + Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_nats_server_that_stops_answering_is_told_from_an_idle_stream_by_the_info_request_and_the_consumer_binds_again_once_it_answers()
 {
    // Over 5 s (the default is 10 s), async-nats ends each pull empty 5 s after its expiry, as
    // on an idle stream: only the consumer info request after it tells the two apart. At most
    // the last answer's age (the timeout), the pull's end (5.05 s) and the info request (the
    // timeout).
    let timeout = Duration::from_secs(6);
    nats_stops_answering_under_a_running_ingester(timeout, 3 * timeout + Duration::from_secs(1))
        .await;
}

/// An ingester with `--nats-timeout` `timeout` behind a NATS server that stops answering:
/// `/readyz` says the consumer is not bound `within` that, and once the server answers again a
/// report published then is stored.
async fn nats_stops_answering_under_a_running_ingester(timeout: Duration, within: Duration) {
    let nats = Nats::with_stream().await;
    let proxy = StallProxy::start(addr_of(&nats.url())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spartakus.sqlite");
    let ingester = InProcess::start(config(
        &format!("nats://{}", proxy.addr()),
        &format!("sqlite:{}", db.display()),
        &[
            "--nats-timeout",
            &format!("{}s", timeout.as_secs()),
            "--ack-wait",
            "5s",
        ],
    ))
    .await;
    let count = || sqlite_i64(&db, "SELECT count(*) FROM reports");
    nats.publish_all(&envelopes(1)).await;
    eventually(DEADLINE, "the first report in SQLite", || async {
        count() == 1
    })
    .await;
    eventually(DEADLINE, "ready", || async {
        ingester.get("/readyz").await.0 == 200
    })
    .await;

    proxy.stall();
    let stalled = Instant::now();
    // Its pulls bring nothing now, exactly as on an idle stream; the consumer must tell.
    let noticed = testenv::try_eventually(5 * timeout, || async {
        let (status, body) = ingester.get("/readyz").await;
        status == 503 && body.contains("consumer not bound")
    })
    .await;
    let took = stalled.elapsed();
    eprintln!("--nats-timeout {timeout:?}: the silent NATS server was noticed after {took:?}");
    assert!(
        noticed.is_ok(),
        "/readyz still says ready {took:?} after NATS stopped answering"
    );
    assert!(proxy.held_bytes() > 0, "the ingester did ask NATS");
    assert!(
        took < within,
        "noticed after {took:?}, not within {within:?}"
    );

    proxy.resume();
    let later = envelopes(1);
    nats.publish_all(&later).await;
    eventually(
        DEADLINE,
        "the report published after the stall in SQLite",
        || async { count() == 2 },
    )
    .await;
    eventually(DEADLINE, "ready again", || async {
        ingester.get("/readyz").await.0 == 200
    })
    .await;
    let stored = sqlite_i64(
        &db,
        &format!(
            "SELECT count(*) FROM reports WHERE report_id = '{}'",
            later[0].0
        ),
    );
    assert_eq!(stored, 1);
    ingester.stop().await;
}
