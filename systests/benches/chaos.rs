//! The chaos run, longer (issue 7): the CI test's scenario at a size from the environment.
//!
//! ```text
//! cargo build --release -p gateway -p ingester --bins
//! SPARTAKUS_CHAOS_REPORTS=5000 cargo bench -p systests --bench chaos
//! ```
//!
//! `SPARTAKUS_CHAOS_REPORTS` (default 5,000) reports over `SPARTAKUS_CHAOS_SECONDS` (default one
//! second per 20 reports) into SQLite, then a fifth of that into the BigQuery emulator
//! (`SPARTAKUS_CHAOS_SINKS=sqlite` skips it); `SPARTAKUS_CHAOS_SEED` picks the schedule. Exits
//! non-zero on any loss or duplicate.

use std::process::ExitCode;
use std::time::Duration;

use systests::chaos::{self, Scenario, SinkKind};

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("{name}={value:?} is not a whole number; using the default");
            None
        }
    }
}

fn main() -> ExitCode {
    let reports = env_u64("SPARTAKUS_CHAOS_REPORTS").unwrap_or(5_000).max(10) as usize;
    let seconds = env_u64("SPARTAKUS_CHAOS_SECONDS")
        .unwrap_or(reports as u64 / 20)
        .max(10);
    let seed = env_u64("SPARTAKUS_CHAOS_SEED").unwrap_or(20_260_507);
    let sinks = std::env::var("SPARTAKUS_CHAOS_SINKS").unwrap_or_else(|_| "sqlite,bigquery".into());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut scenarios = Vec::new();
    if sinks.contains("sqlite") {
        scenarios.push(Scenario::new(
            SinkKind::Sqlite,
            reports,
            Duration::from_secs(seconds),
            seed,
        ));
    }
    if sinks.contains("bigquery") {
        scenarios.push(Scenario::new(
            SinkKind::BigQuery,
            (reports / 5).max(10),
            Duration::from_secs((seconds / 5).max(10)),
            seed,
        ));
    }
    let mut ok = true;
    for scenario in scenarios {
        match runtime.block_on(chaos::run(&scenario)) {
            Ok(accounting) => {
                println!("{accounting}");
                let failures = accounting.failures();
                for failure in &failures {
                    println!("  FAILED: {failure}");
                }
                ok &= failures.is_empty();
            }
            Err(e) => {
                println!(
                    "chaos run ({} sink, seed {seed}) could not run: {e}",
                    scenario.sink
                );
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
