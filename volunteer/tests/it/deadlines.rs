//! No call of the volunteer waits for ever: a Kubernetes API server or a collector that accepts
//! the connection and then never answers (testenv's [`StallProxy`]) costs at most
//! `--request-timeout` per request, and the run ends with the failure named.
//!
//! These deadlines predate the tests: they guard them (each test hangs until its bound with the
//! timeout removed from `volunteer/src/run.rs`).

use std::time::{Duration, Instant};

use testenv::{KubeApi, Launch, Nats, StallProxy};

use crate::common::{BoxError, TestResult, offline_kubeconfig, text, volunteer};

/// Longest a stalled run may take here: far above the deadlines it sets, far below forever.
const BOUND: Duration = Duration::from_secs(60);

/// A kubeconfig whose server is `server` (admin credentials otherwise unchanged).
fn kubeconfig_via(kube: &KubeApi, server: &str, dir: &std::path::Path) -> Result<String, BoxError> {
    let original = std::fs::read_to_string(kube.kubeconfig_path())?;
    assert!(original.contains(kube.server_url()), "{original}");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, original.replace(kube.server_url(), server))?;
    Ok(path.display().to_string())
}

#[tokio::test]
async fn an_api_server_that_never_answers_skips_each_section_after_the_request_timeout()
-> TestResult {
    let kube = KubeApi::shared().await?;
    let upstream = kube
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .map_err(|e| format!("{}: {e}", kube.server_url()))?;
    let proxy = StallProxy::start(upstream).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = kubeconfig_via(kube, &format!("https://{}", proxy.addr()), dir.path())?;
    // A key of its own, so the run goes past the key (kube-system's UID) to the sections.
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef")?;
    let key = key.display().to_string();
    proxy.stall();

    let started = Instant::now();
    let out = Launch::volunteer()
        .args(["--dry-run", "--gateway", "https://collector.example.org"])
        .args(["--kubeconfig", &kubeconfig, "--key-file", &key])
        .args(["--request-timeout", "2s"])
        .run(BOUND)
        .await?;
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        proxy.held_bytes() > 0,
        "the volunteer never reached the proxy"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(
        report.get("masterVersion").is_none() && report.get("nodes").is_none(),
        "nothing could be read, so nothing is reported: {report}"
    );
    assert!(
        out.stderr.contains("section skipped") && out.stderr.contains("deadline has elapsed"),
        "{}",
        text(&out)
    );
    eprintln!("stalled API server: run ended in {took:.1?}");
    Ok(())
}

#[tokio::test]
async fn a_collector_that_never_answers_fails_the_send_within_its_deadline() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Launch::gateway(&nats.url()).start().await?;
    let proxy = StallProxy::start(gateway.addr()).await?;
    proxy.stall();
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef")?;
    // No API server: every section is skipped at once, and the (small) report is sent.
    let kubeconfig = offline_kubeconfig(dir.path())?;

    let started = Instant::now();
    let out = volunteer(&[
        "--gateway",
        &proxy.http_url(),
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--key-file",
        &key.display().to_string(),
        "--period",
        "0",
        "--request-timeout",
        "2s",
        "--send-deadline",
        "5s",
    ])
    .await?;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(proxy.held_bytes() > 0, "the report never reached the proxy");
    let failed = out
        .stderr
        .lines()
        .find(|l| l.contains("volunteer failed"))
        .unwrap_or_else(|| panic!("no failure line in:\n{}", text(&out)));
    assert!(failed.contains("gave up after"), "{failed}");
    assert!(failed.contains("timed out"), "{failed}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    eprintln!("stalled collector: run ended in {took:.1?}");
    Ok(())
}
