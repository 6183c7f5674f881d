//! The load generator: many volunteers, each sending one report with the volunteer's own
//! sender ([`volunteer::send::send`]: gzip, backoff with full jitter, `Retry-After`, the same
//! body and `reportID` on every attempt), switching gateway when one gives up; some send an
//! already acknowledged report again.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use volunteer::send::{Policy, SendError, send};

/// What the generator does.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Distinct reports.
    pub reports: usize,
    /// Most reports in flight at once.
    pub concurrency: usize,
    /// Report `i` is started at `i / reports` of this (later if all slots are busy).
    pub duration: Duration,
    /// Per cent of acknowledged reports sent once more, as a volunteer that missed the answer
    /// would.
    pub duplicate_percent: u32,
    /// Seeds every report's content and every random choice.
    pub seed: u64,
    /// Retry policy of one round against one gateway.
    pub policy: Policy,
    /// Rounds (each against the next gateway) before a report is given up.
    pub rounds: u32,
}

/// One report as sent, with what the sink must hold for it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub report_id: String,
    pub cluster_id: String,
    pub timestamp: String,
    pub master_version: String,
    /// Node IDs in order, as the gateway stores them (re-keyed under
    /// [`testenv::GATEWAY_NODE_ID_KEY`]), and the capacity entries per node.
    pub nodes: Vec<(String, usize)>,
    pub fate: Fate,
    /// Attempts over all rounds (the duplicate send not included).
    pub attempts: u32,
    /// The outcome of the deliberate duplicate send, if there was one.
    pub duplicate: Option<Result<(), String>>,
}

/// How a report ended for its volunteer.
#[derive(Debug, Clone)]
pub enum Fate {
    /// A 2xx arrived.
    Acknowledged,
    /// Every round failed (or a final error); the last error.
    GaveUp(String),
}

/// Sends every report to `gateways` and returns what happened to each, in report order.
pub async fn run(settings: LoadSettings, gateways: Vec<reqwest::Url>) -> Vec<Sent> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.concurrency)
        .build()
        .unwrap_or_else(|e| panic!("reqwest client: {e}"));
    let gateways = Arc::new(gateways);
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..settings.reports {
        // Pacing, not synchronisation: report i is due at its share of the run.
        let due = started
            + settings
                .duration
                .mul_f64(i as f64 / settings.reports as f64);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            unreachable!("the semaphore is never closed");
        };
        let (client, gateways, settings) = (client.clone(), gateways.clone(), settings.clone());
        tasks.spawn(async move {
            let sent = volunteer(i, &client, &gateways, &settings).await;
            drop(permit);
            (i, sent)
        });
    }
    let mut out: Vec<Option<Sent>> = vec![None; settings.reports];
    while let Some(done) = tasks.join_next().await {
        let (i, sent) = done.unwrap_or_else(|e| panic!("a volunteer task panicked: {e}"));
        out[i] = Some(sent);
    }
    out.into_iter().flatten().collect()
}

/// Report `i`: its content and every choice come from `seed` and `i` alone.
async fn volunteer(
    i: usize,
    client: &reqwest::Client,
    gateways: &[reqwest::Url],
    settings: &LoadSettings,
) -> Sent {
    let mut rng =
        StdRng::seed_from_u64(settings.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (mut sent, body) = report(i, &mut rng);
    let first = rng.random_range(0..gateways.len());
    let mut last = String::new();
    for round in 0..settings.rounds {
        let gateway = &gateways[(first + round as usize) % gateways.len()];
        match send(client, gateway, &body, &settings.policy).await {
            Ok(outcome) => {
                sent.attempts += outcome.attempts;
                sent.fate = Fate::Acknowledged;
                break;
            }
            Err(e) => {
                let (attempts, retryable) = match &e {
                    SendError::GaveUp { attempts, last } => (*attempts, last.is_retryable()),
                    other => (1, other.is_retryable()),
                };
                sent.attempts += attempts;
                last = format!("{gateway}: {e}");
                if !retryable {
                    break;
                }
            }
        }
    }
    if !matches!(sent.fate, Fate::Acknowledged) {
        sent.fate = Fate::GaveUp(last);
        return sent;
    }
    if rng.random_range(0..100) < settings.duplicate_percent {
        // A volunteer that missed the 204 sends the same bytes again, a little later,
        // perhaps to the other gateway.
        let later = Duration::from_millis(rng.random_range(0..5_000));
        tokio::time::sleep(later).await;
        let gateway = &gateways[rng.random_range(0..gateways.len())];
        sent.duplicate = Some(
            send(client, gateway, &body, &settings.policy)
                .await
                .map(drop)
                .map_err(|e| format!("{gateway}: {e}")),
        );
    }
    sent
}

/// A report as a volunteer would send it: a v2 body with its own reportID and cluster, and
/// one to three nodes.
fn report(i: usize, rng: &mut StdRng) -> (Sent, Vec<u8>) {
    let report_id = uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string();
    let cluster_id = uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string();
    let timestamp = (1_780_000_000 + i as u64).to_string();
    let master_version = format!(
        "v1.{}.{}",
        rng.random_range(28..38),
        rng.random_range(0..12)
    );
    let nodes: Vec<(String, usize)> = (0..rng.random_range(1..=3))
        .map(|_| (hex::encode(rng.random::<[u8; 16]>()), 4))
        .collect();
    let body = serde_json::json!({
        "version": "v2.0.0-chaos",
        "timestamp": timestamp,
        "clusterID": cluster_id,
        "masterVersion": master_version,
        "reportID": report_id,
        "schemaVersion": 2,
        "nodes": nodes.iter().map(|(id, _)| serde_json::json!({
            "id": id,
            "operatingSystem": "linux",
            "architecture": "amd64",
            "kubeletVersion": master_version,
            "capacity": [
                {"resource": "cpu", "value": "4"},
                {"resource": "memory", "value": "16393220Ki"},
                {"resource": "pods", "value": "110"},
                {"resource": "ephemeral-storage", "value": "98831908Ki"},
            ],
        })).collect::<Vec<_>>(),
    });
    // Testenv's gateways re-key node IDs under its constant key; the sink holds these.
    let key = report::node_id::NodeIdKey::from_secret(testenv::GATEWAY_NODE_ID_KEY)
        .expect("testenv's node-ID key is long enough");
    let nodes = nodes
        .into_iter()
        .map(|(id, capacity)| (key.rekey(&cluster_id, &id), capacity))
        .collect();
    let sent = Sent {
        report_id,
        cluster_id,
        timestamp,
        master_version,
        nodes,
        fate: Fate::GaveUp(String::from("never sent")),
        attempts: 0,
        duplicate: None,
    };
    (sent, body.to_string().into_bytes())
}
