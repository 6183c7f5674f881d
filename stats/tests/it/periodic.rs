//! Periodic mode: without `--once` the job publishes what is due, keeps running, and stops
//! cleanly when cancelled. The store is an empty SQLite file with the committed schema (no
//! reports: every number is withheld, which is what an empty window must publish).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use clap::Parser;
use stats::config::Config;
use stats::store::sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn periodic_mode_publishes_what_is_due_and_stops_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.sqlite");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    stored::sqlite::migrate(&mut conn).unwrap();
    drop(conn);
    let out = dir.path().join("out");
    let config = Config::try_parse_from([
        "stats",
        "--store",
        &format!("sqlite:{}", db.display()),
        "--out",
        out.to_str().unwrap(),
        "--interval",
        "1h",
        "--new-ledger",
        // An empty store's noisy cluster total is noise alone (σ about 16): a floor far above
        // it makes the snapshot withheld, as the assertions below expect.
        "--min-clusters",
        "1000",
    ])
    .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(stats::run::run(
        config,
        SqliteStore::new(&db),
        shutdown.clone(),
    ));
    let latest = out.join("latest.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !latest.is_file() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!task.is_finished(), "periodic mode keeps running");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let latest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest).unwrap()).unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(latest["snapshot"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(snapshot["totals"]["clusters"], serde_json::Value::Null);
    assert!(
        snapshot["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "withheld" && m["rows"].as_array().unwrap().is_empty())
    );
    let date: jiff::civil::Date = latest["date"].as_str().unwrap().parse().unwrap();
    assert_eq!(date.weekday(), jiff::civil::Weekday::Sunday);
}
