//! The contracts between our binaries, checked on the binaries themselves: a table the ingester
//! writes is a table stats can read, by the same rules.

use std::time::Duration;

use testenv::Launch;

/// How long a binary may take to refuse its flags.
const DEADLINE: Duration = Duration::from_secs(30);

/// `bigquery://…` names as an operator types them: the ingester (`--sink`) and stats
/// (`--store`) give the same verdict, and a refusal names the part and BigQuery's rule. Before
/// `stored::TableRef`, the ingester accepted the first two and stats refused them.
#[tokio::test]
async fn the_ingester_and_stats_refuse_the_same_bigquery_names_by_the_same_rule() {
    for (name, part, rule) in [
        (
            "bigquery://spartakus-test/my-data/t",
            "dataset \"my-data\"",
            "no '-' or '.' in a dataset name",
        ),
        (
            "bigquery://spartakus-test/d/reports.v2",
            "table \"reports.v2\"",
            "no '.' in a table name",
        ),
        ("bigquery://p/d/t", "project \"p\"", "6 to 30"),
    ] {
        let ingester = Launch::ingester("nats://127.0.0.1:9", name)
            .run(DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let stats = Launch::stats()
            .args(["--once", "--store", name, "--out", "/nonexistent"])
            .run(DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (binary, run) in [("ingester", &ingester), ("stats", &stats)] {
            assert_eq!(
                run.status.code(),
                Some(64),
                "{binary} {name}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains(part) && run.stderr.contains(rule),
                "{binary} {name}: {}",
                run.stderr
            );
        }
    }
}
