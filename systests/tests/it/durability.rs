//! Power loss, the way Jepsen tests it: nats-server keeps its store on a [`LazyFs`], the gateway
//! acknowledges reports, then every NATS node is killed with SIGKILL and every write it never
//! synced is dropped at once, as when the power fails. After a restart on the same store, every
//! acknowledged report must be in the stream with `sync_interval: always` (what we ship); with
//! the server's default (an fsync every 2 minutes) the same run must lose some, which shows the
//! test can see a loss.
//!
//! Runs the gateway binary: `cargo build -p gateway --bins` first (testenv/test.sh does).

use std::collections::HashSet;
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;
use futures::StreamExt;
use report::queue::Topology;
use testenv::{Launch, LazyFs, Nats, NatsSync, Service};

/// Reports posted before the power fails.
const REPORTS: usize = 300;
/// Concurrent posts.
const CLIENTS: usize = 16;
/// The gateway's queue prefix.
const QUEUE: &str = "power";
/// How long a restarted server (or cluster) may take to serve its stream again.
const RECOVERY: Duration = Duration::from_secs(30);

/// A v2 report with its own reportID and cluster, and one node.
fn report(report_id: &str, i: usize) -> String {
    serde_json::json!({
        "version": "v2.0.0-durability",
        "timestamp": (1_780_000_000 + i as u64).to_string(),
        "clusterID": uuid::Uuid::new_v4().to_string(),
        "masterVersion": "v1.37.2",
        "reportID": report_id,
        "schemaVersion": 2,
        "nodes": [{
            "id": format!("{i:032x}"),
            "operatingSystem": "linux",
            "architecture": "amd64",
            "kubeletVersion": "v1.37.2",
            "capacity": [
                {"resource": "cpu", "value": "4"},
                {"resource": "memory", "value": "16393220Ki"},
            ],
        }],
    })
    .to_string()
}

/// Posts [`REPORTS`] distinct reports and returns the IDs the gateway acknowledged (204).
async fn post_reports(gateway: &Service) -> HashSet<String> {
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1", gateway.url());
    let ids: Vec<String> = (0..REPORTS)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let results: Vec<Option<String>> = futures::stream::iter(ids.into_iter().enumerate())
        .map(|(i, id)| {
            let request = http
                .post(&url)
                .header("content-type", "application/json")
                .body(report(&id, i))
                .send();
            async move {
                let status = request.await.ok()?.status();
                (status == 204).then_some(id)
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let acknowledged: HashSet<String> = results.into_iter().flatten().collect();
    assert_eq!(
        acknowledged.len(),
        REPORTS,
        "every report should be acknowledged before the power fails"
    );
    acknowledged
}

/// The `Nats-Msg-Id`s (report IDs) in the reports stream, read through `url` once the stream
/// answers again.
async fn stored_ids(url: &str) -> HashSet<String> {
    let client = async_nats::connect(url).await.expect("connects to NATS");
    let js = jetstream::new(client);
    let name = Topology::new(QUEUE).expect("valid prefix").reports.name;
    let ready = testenv::try_eventually(RECOVERY, || {
        let (js, name) = (js.clone(), name.clone());
        async move {
            match js.get_stream(&name).await {
                Ok(mut stream) => stream.info().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(
        ready.is_ok(),
        "stream {name} did not come back within {RECOVERY:?} after the restart"
    );
    let mut stream = js.get_stream(&name).await.expect("the stream answers");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut ids = HashSet::new();
    if state.messages == 0 {
        return ids;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        // A sequence lost in the middle of the stream is simply not there.
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        if let Some(id) = message.headers.get(NATS_MESSAGE_ID) {
            ids.insert(id.as_str().to_owned());
        }
    }
    ids
}

/// Posts reports through a gateway on `nats_url` and returns what it acknowledged. The gateway
/// creates its streams when it starts; then `fs` is checkpointed (everything written so far is
/// synced, as the kernel's writeback would within seconds), so that the loss measured is that
/// of acknowledged reports and not of a stream whose own metadata was never synced: a crash
/// right after a stream is created can leave its meta file empty or with a bad checksum, in
/// any sync mode.
async fn acknowledged_reports(nats_url: &str, replicas: usize, fs: &LazyFs) -> HashSet<String> {
    let gateway = Launch::gateway(nats_url)
        .args(["--queue", QUEUE, "--stream-replicas", &replicas.to_string()])
        .start()
        .await
        .expect("the gateway starts");
    fs.checkpoint().expect("checkpoint");
    post_reports(&gateway).await
    // The gateway stops here: it plays no part in what survives.
}

/// One node: acknowledged reports, then a power loss; returns (acknowledged, lost).
async fn single_node(sync: NatsSync) -> (usize, usize) {
    let mut fs = LazyFs::mount().expect("a lazy filesystem mounts (needs /dev/fuse and root)");
    let mut nats = Nats::options()
        .sync(sync)
        .store_dir(fs.path())
        .start()
        .await
        .expect("nats-server starts on the lazy filesystem");
    let acknowledged = acknowledged_reports(&nats.url(), 1, &fs).await;

    nats.kill();
    fs.crash().expect("the power fails");
    nats.restart()
        .await
        .unwrap_or_else(|e| panic!("nats-server restarts after the power loss: {e}"));
    let stored = stored_ids(&nats.url()).await;
    let lost = acknowledged.difference(&stored).count();
    println!(
        "{sync:?}: {} acknowledged, {lost} lost after the power loss",
        acknowledged.len()
    );
    (acknowledged.len(), lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sync_always_no_acknowledged_report_is_lost_when_the_power_fails() {
    let (acknowledged, lost) = single_node(NatsSync::Always).await;
    assert_eq!(
        lost, 0,
        "sync_interval: always lost {lost} of {acknowledged} acknowledged reports"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_default_sync_acknowledged_reports_are_lost_when_the_power_fails() {
    let (acknowledged, lost) = single_node(NatsSync::ServerDefault).await;
    assert!(
        lost > 0,
        "the server's default sync lost none of {acknowledged} acknowledged reports: \
         the test cannot see a loss"
    );
}

/// Three replicas on one lazy filesystem, all losing power at once; returns (acknowledged,
/// lost).
async fn three_nodes(sync: NatsSync) -> (usize, usize) {
    let mut fs = LazyFs::mount().expect("a lazy filesystem mounts (needs /dev/fuse and root)");
    let mut cluster = Nats::options()
        .sync(sync)
        .store_dir(fs.path())
        .start_cluster(3)
        .await
        .expect("a 3-node cluster starts on the lazy filesystem");
    let acknowledged = acknowledged_reports(&cluster.urls().join(","), 3, &fs).await;

    for node in cluster.nodes_mut() {
        node.kill();
    }
    fs.crash().expect("the power fails on every node at once");
    // A lone node of a cluster whose others are down never becomes ready: restart all at once.
    let restarts = futures::future::join_all(cluster.nodes_mut().iter_mut().map(Nats::restart));
    for result in restarts.await {
        result.unwrap_or_else(|e| panic!("a node restarts after the power loss: {e}"));
    }
    let stored = stored_ids(&cluster.node(0).url()).await;
    let lost = acknowledged.difference(&stored).count();
    println!(
        "3 replicas, {sync:?}: {} acknowledged, {lost} lost after the power loss",
        acknowledged.len()
    );
    (acknowledged.len(), lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sync_always_three_replicas_losing_power_at_once_lose_no_acknowledged_report() {
    let (acknowledged, lost) = three_nodes(NatsSync::Always).await;
    assert_eq!(
        lost, 0,
        "sync_interval: always lost {lost} of {acknowledged} acknowledged reports"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_default_sync_three_replicas_losing_power_at_once_lose_acknowledged_reports()
 {
    let (acknowledged, lost) = three_nodes(NatsSync::ServerDefault).await;
    assert!(
        lost > 0,
        "the server's default sync lost none of {acknowledged} acknowledged reports on three \
         replicas: the test cannot see a loss"
    );
}
