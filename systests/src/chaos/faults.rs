//! The faults: at seeded moments, kill -9 one NATS node, one gateway, one ingester, and once
//! everything at once; each comes back after a seeded downtime.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use testenv::Service;

use super::{Env, named};

/// How long a restarted process may take to be ready again.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What is killed.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    NatsNode(usize),
    Gateway(usize),
    Ingester(usize),
    /// Every gateway, every ingester and every NATS node, in a seeded order, back to back.
    Everything,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::NatsNode(i) => write!(f, "nats-{i}"),
            Fault::Gateway(i) => write!(f, "gateway-{i}"),
            Fault::Ingester(i) => write!(f, "ingester-{i}"),
            Fault::Everything => f.write_str("everything (all gateways, ingesters, NATS nodes)"),
        }
    }
}

/// One fault in the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// When, from the start of the load.
    pub at: Duration,
    pub fault: Fault,
    /// How long the killed processes stay dead.
    pub down_for: Duration,
}

/// The four faults in a seeded order, one in each quarter of the first 85 % of the load (so
/// the last recovery still sees traffic), at a seeded moment in the first half of its quarter.
pub fn plan(
    seed: u64,
    load: Duration,
    nats: usize,
    gateways: usize,
    ingesters: usize,
) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17);
    let mut faults = vec![
        Fault::NatsNode(rng.random_range(0..nats)),
        Fault::Gateway(rng.random_range(0..gateways)),
        Fault::Ingester(rng.random_range(0..ingesters)),
        Fault::Everything,
    ];
    faults.shuffle(&mut rng);
    let begin = load.mul_f64(0.05);
    let slot = load.mul_f64(0.80) / faults.len() as u32;
    faults
        .into_iter()
        .enumerate()
        .map(|(k, fault)| Planned {
            at: begin + slot * k as u32 + slot.mul_f64(rng.random_range(0.0..0.5)),
            fault,
            down_for: Duration::from_millis(rng.random_range(500..3_000)),
        })
        .collect()
}

/// Runs the schedule against `env`, from `start`; returns a line per event.
pub async fn inject(
    env: &mut Env,
    schedule: &[Planned],
    start: Instant,
    seed: u64,
) -> Result<Vec<String>, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0dd);
    let mut log = Vec::new();
    let t = |at: Instant| at.duration_since(start).as_secs_f64();
    for planned in schedule {
        // The moment is part of the scenario; if the previous recovery overran it, go now.
        tokio::time::sleep_until(start + planned.at).await;
        let killed = Instant::now();
        match planned.fault {
            Fault::NatsNode(i) => env.nats.node_mut(i).kill(),
            Fault::Gateway(i) => env.gateways[i].kill(),
            Fault::Ingester(i) => env.ingesters[i].kill(),
            Fault::Everything => {
                let mut victims: Vec<Fault> = (0..env.gateways.len())
                    .map(Fault::Gateway)
                    .chain((0..env.ingesters.len()).map(Fault::Ingester))
                    .chain((0..env.nats.urls().len()).map(Fault::NatsNode))
                    .collect();
                victims.shuffle(&mut rng);
                for victim in victims {
                    match victim {
                        Fault::NatsNode(i) => env.nats.node_mut(i).kill(),
                        Fault::Gateway(i) => env.gateways[i].kill(),
                        Fault::Ingester(i) => env.ingesters[i].kill(),
                        Fault::Everything => {}
                    }
                }
            }
        }
        log.push(format!("{:6.1}s kill -9 {}", t(killed), planned.fault));
        // The downtime is part of the scenario too.
        tokio::time::sleep(planned.down_for).await;
        let restarted = Instant::now();
        match planned.fault {
            Fault::NatsNode(i) => env
                .nats
                .node_mut(i)
                .restart()
                .await
                .map_err(|e| format!("restarting nats-{i}: {e}"))?,
            Fault::Gateway(i) => restart(&mut env.gateways[i], "gateway", i).await?,
            Fault::Ingester(i) => restart(&mut env.ingesters[i], "ingester", i).await?,
            Fault::Everything => {
                // Gateways and ingesters first: they must start while NATS is still down.
                for (name, service) in named(&mut env.gateways, &mut env.ingesters) {
                    service
                        .relaunch()
                        .map_err(|e| format!("relaunching {name}: {e}"))?;
                }
                // All nodes at once: a lone node of a cluster whose quorum is down never
                // reports ready.
                let restarts = env.nats.nodes_mut().iter_mut().map(|n| n.restart());
                futures::future::try_join_all(restarts)
                    .await
                    .map_err(|e| format!("restarting the NATS cluster: {e}"))?;
                log.push(format!(
                    "{:6.1}s NATS cluster ready again, {:.1}s after its restart",
                    t(Instant::now()),
                    restarted.elapsed().as_secs_f64()
                ));
                for (name, service) in named(&mut env.gateways, &mut env.ingesters) {
                    service
                        .wait_ready(READY_TIMEOUT)
                        .await
                        .map_err(|e| format!("{name}: {e}"))?;
                }
            }
        }
        log.push(format!(
            "{:6.1}s {} back after {:.1}s down, ready in {:.1}s",
            t(Instant::now()),
            planned.fault,
            planned.down_for.as_secs_f64(),
            restarted.elapsed().as_secs_f64()
        ));
    }
    Ok(log)
}

/// Starts a killed gateway or ingester again (same port, flags and log) and waits until it is
/// ready.
async fn restart(service: &mut Service, kind: &str, i: usize) -> Result<(), String> {
    service
        .relaunch()
        .map_err(|e| format!("relaunching {kind}-{i}: {e}"))?;
    service
        .wait_ready(READY_TIMEOUT)
        .await
        .map_err(|e| format!("{kind}-{i}: {e}"))
}
