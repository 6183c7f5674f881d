//! The pipeline bench (issue 25, deliverable 4): `cargo bench -p systests --bench pipeline`.
//!
//! Build the release binaries the second part starts first:
//! `cargo build --release -p gateway -p ingester --bins`.
//!
//! 1. [`ingest`]: the ingester against its baselines on the same messages;
//! 2. [`rates`]: the whole pipeline (gateway + NATS + ingester) at fixed offered rates and at
//!    its maximum.
//!
//! Each module says which `SPARTAKUS_BENCH_*` variables it reads. `SPARTAKUS_BENCH_PARTS`
//! (default `ingest,rates`) runs only the parts it names.

mod ingest;
mod rates;

use std::time::Duration;

// The in-process ingester runs on the allocator its binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A whole number from the environment, or `default` when unset or not a whole number.
fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(value) => value.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}={value:?} is not a whole number; using {default}");
            default
        }),
    }
}

/// The NATS servers' fsync setting: `SPARTAKUS_BENCH_NATS_SYNC=always` (the default, what
/// every shipped configuration sets: each publish and each ack, which deletes its message from
/// the work queue, is on disk before it is answered) or `default` (the server's own: an fsync
/// every 2 minutes), to see the limits of our processes rather than the disk's.
fn nats_sync() -> testenv::NatsSync {
    match std::env::var("SPARTAKUS_BENCH_NATS_SYNC").as_deref() {
        Err(_) | Ok("always") => testenv::NatsSync::Always,
        Ok("default") => testenv::NatsSync::ServerDefault,
        Ok(other) => panic!("SPARTAKUS_BENCH_NATS_SYNC={other:?}: always or default"),
    }
}

/// `n` per second over `took`.
fn rate(n: f64, took: Duration) -> f64 {
    n / took.as_secs_f64().max(f64::MIN_POSITIVE)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let parts = std::env::var("SPARTAKUS_BENCH_PARTS").unwrap_or_else(|_| "ingest,rates".into());
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    if let Some(unknown) = parts.iter().find(|p| !["ingest", "rates"].contains(p)) {
        return Err(format!(
            "SPARTAKUS_BENCH_PARTS: {unknown:?} is not a part: ingest or rates, separated by commas"
        )
        .into());
    }
    if parts.contains(&"ingest") {
        let f = ingest::run().await;
        println!(
            "\nsummary, the ingester against its baselines: raw pull + ack {:.0}/s, decode only {:.0}/s",
            f.raw, f.decode
        );
        for (label, pair) in [
            ("empty database", Some(&f.empty)),
            ("big database", f.big.as_ref()),
        ] {
            if let Some(p) = pair {
                println!(
                    "  {label}: SQLite alone {:.0}/s, ingester steady {:.0}/s (whole drain {:.0}/s, tail {:.0?}): ingester / SQLite alone {:.2}",
                    p.sqlite,
                    p.ingester.steady,
                    p.ingester.whole,
                    p.ingester.tail,
                    p.ingester.steady / p.sqlite
                );
            }
        }
    }
    if parts.contains(&"rates") {
        rates::run().await?;
    }
    Ok(())
}
