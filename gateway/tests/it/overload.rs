//! Overload, CI-sized: the gateway binary with a small `--max-in-flight` in front of a real
//! nats-server gets twice the reports per second it can accept, open loop, for ten seconds. It
//! must shed the excess politely (503 or 429 with Retry-After), keep accepted requests fast,
//! keep its memory bounded, survive, and accept reports again as soon as the load is gone.
//! `cargo bench -p gateway --bench overload` runs the same harness longer on a release build.
//!
//! The wall clock throughout: the latencies are the gateway binary's, on its own clock.

use std::time::Duration;

use testenv::Nats;

use crate::helpers::{TestResult, exclusive, launch};
use crate::load::{self, mib};

/// The gateway's `--max-in-flight` for the run: small, so that overload is reached quickly.
const MAX_IN_FLIGHT: usize = 32;
/// p99 latency of accepted requests. A slot is taken or refused at once, so an accepted
/// request waits only for its own publish and for CPU: measured 170 ms to 1 s on the 2-core
/// development machine (debug build, the load generator in the same process, five other builds
/// running); the bound leaves room for a CI machine busy with other tests.
const P99_BOUND: Duration = Duration::from_secs(2);
/// The gateway's peak RSS: measured 17 to 51 MiB; at most `MAX_IN_FLIGHT` seed-size bodies are
/// held at once, so anything near the bound means requests pile up somewhere.
const PEAK_RSS_BOUND: u64 = 128 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twice_the_capacity_is_shed_with_retry_after_and_accepted_requests_stay_fast() -> TestResult
{
    let _alone = exclusive().await;
    let nats = Nats::start().await?;
    let mut gateway = launch(&nats.url(), "OVERLOAD")
        .args(["--max-in-flight", &MAX_IN_FLIGHT.to_string()])
        .start()
        .await?;

    let settings = load::Settings {
        measure_for: Duration::from_secs(3),
        measure_clients: MAX_IN_FLIGHT,
        overload_for: Duration::from_secs(10),
        factor: 2.0,
        max_requests: 200_000,
        max_outstanding: 256,
        recovery_deadline: Duration::from_secs(10),
    };
    let figures = load::run(&gateway, &settings).await;
    figures.print();

    assert!(gateway.is_running(), "the gateway died under load");
    assert!(
        figures.unexpected.is_empty(),
        "answers other than 2xx or 503/429 with Retry-After: {:?}",
        figures.unexpected
    );
    assert!(figures.accepted > 0, "nothing was accepted under load");
    assert!(
        figures.shed > 0,
        "nothing was shed at {:.0} requests/s against a capacity of {:.0}/s",
        figures.offered_rate,
        figures.capacity
    );
    assert!(
        figures.p99 < P99_BOUND,
        "p99 of accepted requests {:?} (bound {P99_BOUND:?})",
        figures.p99
    );
    assert!(
        figures.peak_rss < PEAK_RSS_BOUND,
        "peak RSS {:.1} MiB (bound {:.0} MiB)",
        mib(figures.peak_rss),
        mib(PEAK_RSS_BOUND)
    );
    assert!(
        figures.recovered_after.is_some(),
        "no report accepted within {:?} after the load",
        settings.recovery_deadline
    );
    Ok(())
}
