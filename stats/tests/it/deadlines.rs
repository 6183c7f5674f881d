//! No BigQuery call waits forever: `stats` against the real emulator behind a proxy that stops
//! answering (`testenv::StallProxy`: it accepts connections and reads requests, and never
//! answers), as a frozen BigQuery would. `--once` must fail within its deadline, naming it; in
//! periodic mode `/metrics` must show the snapshot overdue while the store hangs, and a fresh
//! publication once it answers again.
//!
//! One limit of the setup: bigquery-emulator closes a connection that brings no whole request
//! within 15 s, and the proxy passes that close on to the client even while stalled. So every
//! deadline tested here is shorter than 15 s, and the tests check that it, not that close, ended
//! the run (by its time and by the message naming the flag).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use testenv::{Finished, Launch, StallProxy};

use crate::common::{BigQueryFixture, DATASET, TABLE};

/// The emulator's address, for the proxy in front of it.
fn upstream(emulator: &testenv::BigQuery) -> SocketAddr {
    let endpoint = emulator.endpoint();
    endpoint
        .strip_prefix("http://")
        .unwrap_or(&endpoint)
        .parse()
        .unwrap()
}

/// `stats` reading the emulator's table through `proxy`, publishing to `out`.
fn stats(emulator: &testenv::BigQuery, proxy: &StallProxy, out: &Path) -> Launch {
    Launch::stats()
        .args([
            "--store",
            &format!("bigquery://{}/{DATASET}/{TABLE}", emulator.project()),
            "--bigquery-endpoint",
            &format!("{}/bigquery/v2", proxy.http_url()),
            "--bigquery-credentials",
            "none",
            "--out",
            out.to_str().unwrap(),
            "--new-ledger",
            // An empty table: every number is withheld, as an empty window must publish.
            "--min-clusters",
            "1000",
        ])
        .env_remove("SPARTAKUS_STORE")
}

/// Runs `stats --once` with `args` against a stalled emulator; fails the test if it is still
/// running after `bound`. Returns how it ended, how long it took, and the bytes the proxy held.
async fn once_against_a_stalled_store(args: &[&str], bound: Duration) -> (Finished, Duration, u64) {
    let emulator = testenv::BigQuery::start()
        .await
        .expect("bigquery-emulator starts");
    let proxy = StallProxy::start(upstream(&emulator)).await.unwrap();
    proxy.stall();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let finished = stats(&emulator, &proxy, &dir.path().join("out"))
        .arg("--once")
        .args(args)
        .run(bound)
        .await
        .unwrap_or_else(|e| panic!("stats --once {args:?} against a stalled store: {e}"));
    (finished, started.elapsed(), proxy.held_bytes())
}

#[tokio::test]
async fn the_job_deadline_ends_a_request_the_server_never_answers() {
    // A request timeout of an hour: only the job deadline can end the run within the bound.
    let (out, took, held) = once_against_a_stalled_store(
        &["--job-deadline", "3s", "--bigquery-request-timeout", "1h"],
        Duration::from_secs(30),
    )
    .await;
    eprintln!("stats --once --job-deadline 3s against a stalled store: {took:?}");
    assert!(held > 0, "stats sent its request to the stalled server");
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    // Before 15 s: when the emulator closes the idle connection behind the proxy, which
    // would end the run without any deadline of ours.
    assert!(took < Duration::from_secs(14), "took {took:?}");
    assert!(
        took >= Duration::from_secs(3),
        "failed before the deadline: {took:?}"
    );
    assert!(
        out.stderr.contains("job deadline of 3s (--job-deadline)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("no job ID to cancel"),
        "says that nothing could be cancelled: {}",
        out.stderr
    );
}

#[tokio::test]
async fn the_request_timeout_ends_a_request_the_server_never_answers() {
    // The smallest request timeout allowed (longer than the 10 s long poll), a long job deadline.
    let (out, took, held) = once_against_a_stalled_store(
        &["--bigquery-request-timeout", "11s", "--job-deadline", "1h"],
        Duration::from_secs(40),
    )
    .await;
    eprintln!("stats --once --bigquery-request-timeout 11s against a stalled store: {took:?}");
    assert!(held > 0, "stats sent its request to the stalled server");
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        took >= Duration::from_secs(11),
        "failed before the timeout: {took:?}"
    );
    assert!(
        out.stderr.contains(
            "jobs.query: no answer within the request timeout of 11s (--bigquery-request-timeout)"
        ),
        "{}",
        out.stderr
    );
}

/// The value of the sample `name` (without labels) in an OpenMetrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_show_the_snapshot_overdue_while_the_store_hangs_and_a_fresh_one_once_it_answers() {
    let bq = BigQueryFixture::start().await;
    let proxy = StallProxy::start(upstream(&bq.emulator)).await.unwrap();
    proxy.stall();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let service = stats(&bq.emulator, &proxy, &dir.path().join("out"))
        // Long enough for the emulator's query once it answers (about 5 s here).
        .args(["--job-deadline", "12s", "--interval", "1s"])
        // Not /readyz: nothing is published while the store hangs.
        .serving("--listen", "/healthz")
        .start()
        .await
        .unwrap_or_else(|e| panic!("stats --listen never started: {e}"));
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", service.url());
    let scrape = || {
        let (http, url, service) = (http.clone(), url.clone(), &service);
        async move {
            let response = http
                .get(&url)
                .send()
                .await
                .and_then(|r| r.error_for_status());
            match response {
                Ok(r) => r.text().await.unwrap(),
                Err(e) => panic!("GET /metrics: {e}; stats' log:\n{}", service.log_tail(30)),
            }
        }
    };
    const FAILED: &str = "spartakus_stats_failed_rounds_total";
    const PUBLISHED: &str = "spartakus_stats_snapshots_published_total";
    const AGE: &str = "spartakus_stats_latest_snapshot_age_seconds";
    const OVERDUE: &str = "spartakus_stats_snapshot_overdue_seconds";

    testenv::eventually(Duration::from_secs(60), "a failed round", || async {
        sample(&scrape().await, FAILED).is_some_and(|n| n >= 1.0)
    })
    .await;
    let text = scrape().await;
    let (age, overdue) = (sample(&text, AGE).unwrap(), sample(&text, OVERDUE).unwrap());
    // The job deadline ended it: the emulator closes a connection that brings no request
    // within 15 s, and the proxy passes that close on, so the deadline is kept below that.
    let log = std::fs::read_to_string(service.log()).unwrap();
    assert!(
        log.contains("job deadline of 12s (--job-deadline)"),
        "{log}"
    );
    assert!(
        proxy.held_bytes() > 0,
        "stats sent its request to the stalled server"
    );
    assert_eq!(sample(&text, PUBLISHED), Some(0.0), "{text}");
    // Nothing published yet: the age counts from the process's start.
    assert!(
        age >= 0.0 && age <= started.elapsed().as_secs_f64(),
        "age {age} s, {:?} since the start",
        started.elapsed()
    );
    // The latest Sunday is due since its day ended, at most a week ago.
    assert!(
        overdue > 0.0 && overdue <= 7.0 * 86_400.0,
        "overdue {overdue} s"
    );

    proxy.resume();
    let published = testenv::try_eventually(Duration::from_secs(60), || async {
        sample(&scrape().await, PUBLISHED).is_some_and(|n| n >= 1.0)
    })
    .await;
    if let Err(waited) = published {
        panic!(
            "nothing published {waited:?} after the store answered again; stats' log:\n{}",
            service.log_tail(30)
        );
    }
    let text = scrape().await;
    let (age, overdue) = (sample(&text, AGE).unwrap(), sample(&text, OVERDUE).unwrap());
    assert_eq!(overdue, 0.0, "{text}");
    assert!(age < 30.0, "just published, yet {age} s old");
    drop(service);
}
