//! Overload, long run: the harness of `tests/it/overload.rs` on a release build, measuring
//! capacity for 10 s and then offering twice that for 60 s.
//!
//! `cargo bench -p gateway --bench overload` (needs the testenv binaries, as the tests do).

#[path = "../tests/it/load.rs"]
mod load;

use std::process::ExitCode;
use std::time::Duration;

/// The gateway's queue prefix.
const QUEUE: &str = "overload-bench";
const MAX_IN_FLIGHT: usize = 32;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let nats = match testenv::Nats::start().await {
        Ok(nats) => nats,
        Err(e) => {
            eprintln!("cannot start nats-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = testenv::Launch::gateway(&nats.url())
        .args(["--queue", QUEUE])
        .args(["--max-in-flight", &MAX_IN_FLIGHT.to_string()])
        .start()
        .await;
    let mut gateway = match started {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("cannot start the gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = load::Settings {
        measure_for: Duration::from_secs(10),
        measure_clients: MAX_IN_FLIGHT,
        overload_for: Duration::from_secs(60),
        factor: 2.0,
        max_requests: 2_000_000,
        max_outstanding: 256,
        recovery_deadline: Duration::from_secs(10),
    };
    println!("overload: --max-in-flight {MAX_IN_FLIGHT}, {settings:?}");
    let figures = load::run(&gateway, &settings).await;
    figures.print();
    let healthy =
        gateway.is_running() && figures.unexpected.is_empty() && figures.recovered_after.is_some();
    if healthy {
        ExitCode::SUCCESS
    } else {
        eprintln!("the gateway did not hold up: see the figures above");
        ExitCode::FAILURE
    }
}
