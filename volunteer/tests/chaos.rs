//! The chaos run at CI size (issue 7): no report the gateway acknowledged is lost or stored
//! twice while NATS nodes, gateways and ingesters are killed with SIGKILL. The harness is in
//! `support/chaos`; the longer run is `cargo bench -p volunteer --bench chaos`.
//!
//! Runs the gateway and ingester binaries: `cargo build -p gateway -p ingester --bins` first
//! (testenv/test.sh does). `SPARTAKUS_CHAOS_SEED` replays another schedule.

mod support {
    pub mod chaos;
}

use std::time::Duration;

use support::chaos::{Scenario, SinkKind, run};

/// The two runs share two cores with everything else: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn seed() -> u64 {
    std::env::var("SPARTAKUS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_507)
}

async fn chaos(scenario: Scenario) {
    let _one_at_a_time = SERIAL.lock().await;
    let accounting = match run(&scenario).await {
        Ok(accounting) => accounting,
        Err(e) => panic!(
            "chaos run ({} sink, seed {}): {e}",
            scenario.sink, scenario.load.seed
        ),
    };
    println!("{accounting}");
    let failures = accounting.failures();
    assert!(failures.is_empty(), "{accounting}\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_report_is_in_sqlite_exactly_once_whatever_is_killed() {
    chaos(Scenario::new(
        SinkKind::Sqlite,
        800,
        Duration::from_secs(60),
        seed(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_report_id_reaches_bigquery_whatever_is_killed() {
    chaos(Scenario::new(
        SinkKind::BigQuery,
        300,
        Duration::from_secs(30),
        seed(),
    ))
    .await;
}
