//! The ingester's health when a write hangs: the ingester binary against the BigQuery emulator
//! behind a `StallProxy`, which accepts the write's request and never answers until told to.
//! A stalled proxy is the fault seen in operation (the emulator froze with a lock held): the
//! server is there, the connection is open, no answer comes.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;

const IN_PROGRESS: &str = "spartakus_ingester_write_in_progress_seconds";
const LAST_WRITE_AGE: &str = "spartakus_ingester_last_write_age_seconds";
/// Bounds the waits: a stuck write is seen after 2 s, long before the BigQuery client's own
/// 60 s request timeout would end it.
const DEADLINE: Duration = Duration::from_secs(30);

/// The reportIDs stored in the emulator's `dataset.table`, or none before the table exists.
async fn stored(bq: &testenv::BigQuery, table: &str) -> Vec<String> {
    bq.query(&format!("SELECT reportID FROM {table}"))
        .await
        .map(|rows| {
            rows.into_iter()
                .filter_map(|row| row.first()?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_write_stuck_behind_a_silent_bigquery_fails_health_until_it_answers() {
    let bq = testenv::BigQuery::start().await.expect("bigquery-emulator");
    let upstream: SocketAddr = bq.endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy = testenv::StallProxy::start(upstream)
        .await
        .expect("the stall proxy starts");
    let nats = Nats::with_stream().await;
    let endpoint = format!("{}/bigquery/v2", proxy.http_url());
    let ingester = testenv::Launch::ingester(
        &nats.url(),
        &format!("bigquery://{}/health/reports", bq.project()),
    )
    .args(["--bigquery-endpoint", &endpoint])
    .args([
        "--bigquery-credentials",
        "none",
        "--write-stuck-after",
        "2s",
    ])
    .start()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let addr = ingester.addr();
    // Ready (the table made through the proxy, the consumer bound), and idle: nothing written,
    // nothing in progress, live.
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    let text = get(addr, "/metrics").await.1;
    assert!(text.contains(&format!("{IN_PROGRESS} 0.0")), "{text}");
    assert!(text.contains(LAST_WRITE_AGE), "{text}");

    proxy.stall();
    let (id, payload) = envelope(0);
    nats.publish_raw(&id.to_string(), payload).await;
    let stalled = Instant::now();
    // Not any 503: the sink probe may time out meanwhile and say "sink not reachable".
    let seen = std::sync::Mutex::new(Vec::<(u16, String)>::new());
    let said_stuck = testenv::try_eventually(DEADLINE, || async {
        let answer = get(addr, "/readyz").await;
        let stuck = answer.0 == 503 && answer.1.contains("--write-stuck-after");
        let mut seen = seen.lock().unwrap();
        if seen.last() != Some(&answer) {
            seen.push(answer);
        }
        stuck
    })
    .await;
    assert!(
        said_stuck.is_ok(),
        "/readyz never said the write was stuck within {DEADLINE:?}; it said, in turn: {:?}",
        seen.lock().unwrap()
    );
    let seen_after = stalled.elapsed();
    let (status, live) = get(addr, "/healthz").await;
    assert_eq!(status, 503);
    assert!(
        live.contains("a sink write has been in progress for")
            && live.contains("longer than --write-stuck-after (2s)"),
        "{live}"
    );
    let (status, ready) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready.contains("longer than --write-stuck-after (2s)"),
        "{ready}"
    );
    let text = get(addr, "/metrics").await.1;
    assert!(metric(&text, IN_PROGRESS) >= 2.0, "{text}");
    assert!(proxy.held_bytes() > 0, "requests wait in the stalled proxy");
    assert!(stored(&bq, "health.reports").await.is_empty());

    proxy.resume();
    let resumed = Instant::now();
    eventually(DEADLINE, "/healthz and /readyz 200 again", || async {
        get(addr, "/healthz").await.0 == 200 && get(addr, "/readyz").await.0 == 200
    })
    .await;
    eventually(DEADLINE, "the report stored", || async {
        stored(&bq, "health.reports").await == [id.to_string()]
    })
    .await;
    let text = get(addr, "/metrics").await.1;
    assert_eq!(metric(&text, IN_PROGRESS), 0.0, "{text}");
    // The batch committed after the resume: a write that never committed would be as old as
    // the process, which started before the stall.
    let age = metric(&text, LAST_WRITE_AGE);
    let since_resume = resumed.elapsed().as_secs_f64();
    assert!(
        age <= since_resume + 0.1,
        "{age} s > {since_resume} s: {text}"
    );
    eprintln!(
        "stuck write seen {seen_after:?} after the stall; healthy and stored {since_resume:.1} s after the resume"
    );
}
