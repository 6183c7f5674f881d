//! End to end: volunteer → the real gateway binary → a real nats-server JetStream stream.
//!
//! The gateway binary is `target/<profile>/gateway`, built by `cargo build --workspace
//! --bins` before the tests run (binary crates do not depend on each other).

// The realistic cluster the volunteer's own tests create, shared rather than copied.
#[path = "../../volunteer/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{Fixture, TestResult, decode, wait_until};
use testenv::{KubeApi, Nats};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn gateway_bin() -> Result<PathBuf, common::BoxError> {
    Ok(testenv::workspace_bin("gateway")?)
}

fn free_port() -> Result<u16, common::BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_gateway(port: u16, nats: &Nats) -> Result<Child, common::BoxError> {
    let child = Command::new(gateway_bin()?)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--nats-url",
            &nats.url(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    wait_until("the gateway's /healthz", Duration::from_secs(30), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await?;
    Ok(child)
}

/// The raw queued messages of the stream.
async fn queued(nats: &Nats) -> Result<Vec<Vec<u8>>, common::BoxError> {
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
    let fixture = Fixture::create(&kube.client().await?, "e2e").await?;
    let nats = Nats::start().await?;
    let port = free_port()?;
    let _gateway = start_gateway(port, &nats).await?;
    let gateway = format!("http://127.0.0.1:{port}");

    let kc = kube.kubeconfig_path().display().to_string();
    let out = common::volunteer(
        &["--dry-run", "--gateway", &gateway, "--kubeconfig", &kc],
        &[],
    )
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let preview = out.stdout.trim_ascii_end().to_vec();
    let out = common::volunteer(
        &["--period", "0", "--gateway", &gateway, "--kubeconfig", &kc],
        &[],
    )
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let messages = queued(&nats).await?;
    assert_eq!(messages.len(), 1);
    let envelope = report::Envelope::decode(&messages[0])?;
    let sent = envelope.report.into_report();
    assert_eq!(Some(envelope.report_id.to_string()), sent.report_id);
    assert_eq!(comparable(sent), comparable(decode(&preview)?));
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
    let mut volunteer = Command::new(common::volunteer_bin()?)
        .args([
            "--period",
            "0",
            "--gateway",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--kubeconfig", &kc, "--log-format", "json"])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(volunteer.stderr.take().ok_or("stderr")?).lines();
    // Wait for a failed attempt to be logged, with a deadline.
    let mut log = Vec::new();
    let retried = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let retry = line.contains("send failed, retrying");
            log.push(line);
            if retry {
                return true;
            }
        }
        false
    })
    .await?;
    assert!(
        retried,
        "the volunteer never logged a retry:\n{}",
        log.join("\n")
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    refuser.abort();
    let _ = refuser.await; // the listener is closed once the task is gone
    let _gateway = start_gateway(port, &nats).await?;
    let status = tokio::time::timeout(Duration::from_secs(120), volunteer.wait()).await??;
    assert!(status.success());
    assert_eq!(queued(&nats).await?.len(), 1);
    Ok(())
}
