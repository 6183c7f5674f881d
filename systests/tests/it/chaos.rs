//! The chaos run at CI size (issue 7): no report the gateway acknowledged is lost or stored
//! twice while NATS nodes, gateways and ingesters are killed with SIGKILL. The harness is
//! `systests::chaos`; the longer run is `cargo bench -p systests --bench chaos`.
//!
//! Runs the gateway and ingester binaries: `cargo build -p gateway -p ingester --bins` first
//! (testenv/test.sh does). `SPARTAKUS_CHAOS_SEED` replays another schedule.

use std::time::Duration;

use systests::chaos::{Scenario, SinkKind, run};

use crate::pipeline::heavy_turn;

fn seed() -> u64 {
    std::env::var("SPARTAKUS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_507)
}

async fn chaos(scenario: Scenario) {
    // The runs share two cores with everything else: one heavy test at a time.
    let _turn = heavy_turn().await;
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

/// The reconciliation itself can fail: a lost, a twice-stored, an altered and an unknown
/// report are each caught; a report given up on but stored anyway is not a failure.
#[test]
fn the_reconciliation_catches_loss_duplicates_and_altered_content() {
    use std::collections::HashMap;
    use systests::chaos::load::{Fate, Sent};
    use systests::chaos::reconcile::{Stored, account};

    let sent = |id: &str, fate: Fate| Sent {
        report_id: id.to_owned(),
        cluster_id: format!("cluster-{id}"),
        timestamp: "1780000000".to_owned(),
        master_version: "v1.37.2".to_owned(),
        nodes: vec![("00ff".to_owned(), 4)],
        fate,
        attempts: 1,
        duplicate: None,
    };
    let row = |s: &Sent| Stored {
        cluster_id: s.cluster_id.clone(),
        timestamp: s.timestamp.clone(),
        master_version: s.master_version.clone(),
        nodes: Some(s.nodes.clone()),
    };
    let reports = vec![
        sent("ok", Fate::Acknowledged),
        sent("lost", Fate::Acknowledged),
        sent("twice", Fate::Acknowledged),
        sent("altered", Fate::Acknowledged),
        sent("abandoned", Fate::GaveUp("503".into())),
    ];
    let mut stored: HashMap<String, Vec<Stored>> = HashMap::new();
    for s in &reports {
        match s.report_id.as_str() {
            "lost" => {}
            "twice" => drop(stored.insert(s.report_id.clone(), vec![row(s), row(s)])),
            "altered" => {
                let mut r = row(s);
                r.nodes = Some(vec![("00ff".to_owned(), 3)]);
                stored.insert(s.report_id.clone(), vec![r]);
            }
            _ => drop(stored.insert(s.report_id.clone(), vec![row(s)])),
        }
    }
    stored.insert("stranger".into(), vec![row(&reports[0])]);
    let scenario = Scenario::new(SinkKind::Sqlite, reports.len(), Duration::ZERO, 1);
    let a = account(
        &scenario,
        reports,
        &stored,
        5,
        0,
        vec![],
        Duration::ZERO,
        Duration::ZERO,
    );
    assert_eq!(a.lost, ["lost"]);
    assert_eq!(a.duplicates, 1);
    assert_eq!(a.mismatched, ["altered"]);
    assert_eq!(a.unexpected, ["stranger"]);
    assert_eq!(
        (a.acknowledged, a.gave_up.len(), a.gave_up_but_stored),
        (4, 1, 1)
    );
    // The four above, and too few acknowledged (4 of 5) for the run to prove anything.
    assert_eq!(a.failures().len(), 5, "{:?}", a.failures());
}
