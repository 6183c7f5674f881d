//! End to end: volunteer → the real gateway binary → a real nats-server JetStream stream.
//!
//! The gateway and volunteer binaries are `target/<profile>/{gateway,volunteer}`, built by
//! `cargo build --workspace --bins` before the tests run (binary crates do not depend on each
//! other); testenv starts them.

use std::time::Duration;

use testenv::{ClusterFixture, KubeApi, Launch, Nats};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long one run of the volunteer may take.
const RUN: Duration = Duration::from_secs(120);

/// The volunteer binary with `args`, logging its own debug lines, accepting the current
/// report-content version as the shipped CronJob does (the default, 1, sends no reportID).
fn volunteer(args: &[&str]) -> Launch {
    Launch::volunteer()
        .args(args)
        .env("RUST_LOG", "volunteer=debug,info")
        .env("SPARTAKUS_CONSENT", report::consent::CURRENT.to_string())
}

/// The report in `body`, validated.
fn decode(body: &[u8]) -> Result<report::Report, BoxError> {
    report::decode(body)
        .map(report::ValidReport::into_report)
        .map_err(|e| format!("invalid report: {e}\n{}", String::from_utf8_lossy(body)).into())
}

/// The raw queued messages of the stream.
async fn queued(nats: &Nats) -> Result<Vec<Vec<u8>>, BoxError> {
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(report::queue::Topology::default().reports.name)
        .await?;
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(m.payload.to_vec());
        }
    }
    Ok(out)
}

/// A report without what differs between two runs.
fn comparable(mut r: report::Report) -> report::Report {
    r.report_id = None;
    r.timestamp = None;
    r
}

#[tokio::test]
async fn a_report_arrives_in_the_stream_as_previewed_and_nothing_identifying_with_it() -> TestResult
{
    let kube = KubeApi::shared().await?;
    let fixture = ClusterFixture::create(&kube.client().await?, "e2e").await?;
    let nats = Nats::start().await?;
    let gateway = Launch::gateway(&nats.url()).start().await?;
    let url = gateway.url();

    let kc = kube.kubeconfig_path().display().to_string();
    let out = volunteer(&["--dry-run", "--gateway", &url, "--kubeconfig", &kc])
        .run(RUN)
        .await?;
    assert!(out.status.success(), "{}", out.stderr);
    let preview = out.stdout.trim_ascii_end().to_vec();
    let out = volunteer(&["--period", "0", "--gateway", &url, "--kubeconfig", &kc])
        .run(RUN)
        .await?;
    assert!(out.status.success(), "{}", out.stderr);

    let messages = queued(&nats).await?;
    assert_eq!(messages.len(), 1);
    let envelope = report::Envelope::decode(&messages[0])?;
    let sent = envelope.report.into_report();
    assert_eq!(Some(envelope.report_id.to_string()), sent.report_id);
    // As previewed, but for the node IDs: the gateway re-keys them under its key.
    let previewed = decode(&preview)?;
    let key = report::node_id::NodeIdKey::from_secret(testenv::GATEWAY_NODE_ID_KEY)?;
    let ids = |r: &report::Report| -> Vec<String> {
        r.nodes.iter().flatten().map(|n| n.id.clone()).collect()
    };
    assert!(!ids(&previewed).is_empty());
    assert!(
        ids(&sent).iter().all(|id| !ids(&previewed).contains(id)),
        "a node ID was stored as the volunteer sent it"
    );
    let mut keyed = previewed;
    for node in keyed.nodes.iter_mut().flatten() {
        node.id = key.rekey(&keyed.cluster_id, &node.id);
    }
    assert_eq!(comparable(sent), comparable(keyed));
    let leaks = fixture.leaks(&messages[0]);
    assert!(leaks.is_empty(), "leaked: {leaks:?}");
    Ok(())
}

#[tokio::test]
async fn a_volunteer_retries_while_the_gateway_is_down_and_delivers_when_it_is_up() -> TestResult {
    let kube = KubeApi::shared().await?;
    let nats = Nats::start().await?;
    // The gateway's port stays bound until the gateway starts, so no other test's server can
    // take it meanwhile (one did: the volunteer was answered at once and never retried).
    // Connections are accepted and closed at once: the volunteer sees a transport error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let refuser = tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            drop(connection);
        }
    });
    let kc = kube.kubeconfig_path().display().to_string();
    let mut volunteer = volunteer(&[
        "--period",
        "0",
        "--gateway",
        &format!("http://127.0.0.1:{port}"),
        "--kubeconfig",
        &kc,
        "--log-format",
        "json",
    ])
    .ready_when_started()
    .start()
    .await?;
    // A failed attempt is logged before the gateway comes up.
    let log = volunteer.log().to_owned();
    let retried = testenv::try_eventually(Duration::from_secs(60), || {
        let logged =
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("send failed, retrying"));
        async move { logged }
    })
    .await;
    assert!(
        retried.is_ok(),
        "the volunteer never logged a retry:\n{}",
        volunteer.log_tail(50)
    );
    refuser.abort();
    let _ = refuser.await; // the listener is closed once the task is gone
    let _gateway = Launch::gateway(&nats.url()).on_port(port).start().await?;
    let status = volunteer.wait(RUN).await?;
    assert!(status.success(), "{}", volunteer.log_tail(50));
    assert_eq!(queued(&nats).await?.len(), 1);
    Ok(())
}
