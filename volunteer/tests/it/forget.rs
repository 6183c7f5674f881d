//! `volunteer forget`, the binary: the request it sends, and that it matches the
//! `erasureCheck` its reports carry.
//!
//! Most peers here are a small axum server, not the real gateway: it records the exact body
//! and answers 503 or 400 on demand, which the real gateway cannot be made to do (it answers
//! 202 to every well-formed request). The last test goes through the real gateway binary to
//! a real nats-server.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sha2::{Digest, Sha256};

use crate::common::{BoxError, TestResult, offline_kubeconfig, text, volunteer};

#[derive(Default)]
struct Peer {
    /// Statuses to answer, in order; then 202.
    script: Vec<u16>,
    received: Vec<(HeaderMap, Vec<u8>)>,
}

async fn handle(
    State(peer): State<Arc<Mutex<Peer>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut peer = peer.lock().expect("lock");
    let n = peer.received.len();
    peer.received.push((headers, body.to_vec()));
    StatusCode::from_u16(peer.script.get(n).copied().unwrap_or(202)).expect("status")
}

async fn peer(script: Vec<u16>) -> Result<(String, Arc<Mutex<Peer>>), BoxError> {
    let state = Arc::new(Mutex::new(Peer {
        script,
        ..Default::default()
    }));
    let app = Router::new()
        .route("/api/v2/erasure", post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, state))
}

/// A key file, and a kubeconfig whose API server refuses connections: `forget` needs no
/// cluster when the key is given, and `--dry-run` still makes a report (sections skipped).
struct Offline {
    _dir: tempfile::TempDir,
    key: String,
    kubeconfig: String,
}

fn offline() -> Result<Offline, BoxError> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef")?;
    let kubeconfig = offline_kubeconfig(dir.path())?;
    Ok(Offline {
        key: key.display().to_string(),
        kubeconfig: kubeconfig.display().to_string(),
        _dir: dir,
    })
}

impl Offline {
    /// The erasure secret `forget` sends to `gateway`, as a peer receives it.
    fn secret_for(&self, gateway: &str) -> Result<String, BoxError> {
        let key = volunteer::anonymize::Key::from_secret(std::fs::read(&self.key)?.trim_ascii());
        let host = reqwest::Url::parse(gateway)?
            .host_str()
            .unwrap_or_default()
            .to_owned();
        Ok(key.erasure_secret(&host).to_hex())
    }
}

/// The report `--dry-run` would send to `gateway` with the same key.
async fn report_for(
    o: &Offline,
    gateway: &str,
    extra: &[&str],
) -> Result<report::Report, BoxError> {
    let mut args = vec![
        "--dry-run",
        "--gateway",
        gateway,
        "--key-file",
        &o.key,
        "--kubeconfig",
        &o.kubeconfig,
        "--request-timeout",
        "2s",
    ];
    args.extend_from_slice(extra);
    let out = volunteer(&args).await?;
    assert!(out.status.success(), "{}", out.stderr);
    Ok(report::decode(out.stdout.trim_ascii_end())?.into_report())
}

#[tokio::test]
async fn forget_sends_the_secret_whose_check_the_reports_carry_and_retries_like_a_report()
-> TestResult {
    let o = offline()?;
    let (url, state) = peer(vec![503]).await?;
    let out = volunteer(&[
        "forget",
        "--gateway",
        &url,
        "--key-file",
        &o.key,
        "--send-deadline",
        "30s",
    ])
    .await?;
    assert!(out.status.success(), "{}", text(&out));

    let received = state.lock().expect("lock").received.clone();
    assert_eq!(received.len(), 2, "retried after the 503");
    assert_eq!(received[0].1, received[1].1, "the same request each time");
    assert_eq!(received[1].0["content-type"], "application/json");
    let request: serde_json::Value = serde_json::from_slice(&received[1].1)?;
    let erasure = report::erasure::decode_request(&received[1].1)?;

    let report = report_for(&o, &url, &[]).await?;
    assert_eq!(
        erasure.cluster_id, report.cluster_id,
        "the cluster ID the reports carry"
    );
    assert_eq!(Some(&erasure.erasure_check), report.erasure_check.as_ref());
    let secret = request["secret"].as_str().ok_or("no secret")?;
    assert_eq!(
        hex::encode(Sha256::digest(hex::decode(secret)?)),
        erasure.erasure_check
    );

    // The secret is in the request body and nowhere else.
    let printed = text(&out);
    assert!(!printed.contains(secret), "{printed}");
    let stdout = out.stdout_text();
    assert!(
        stdout.contains(&format!("cluster ID {}", report.cluster_id)),
        "{stdout}"
    );
    assert!(
        stdout.contains("202 Accepted after 2 request(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("never tells whether it erased anything"),
        "{stdout}"
    );
    assert!(
        stdout.contains("received before this request are erased"),
        "{stdout}"
    );
    assert!(stdout.contains("Stop the volunteer"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn an_operators_cluster_id_is_sent_and_the_check_is_still_in_every_report() -> TestResult {
    let o = offline()?;
    let (url, state) = peer(vec![]).await?;
    let id = ["--cluster-id", "prod.eu-1"];
    let mut args = vec!["forget", "--gateway", &url, "--key-file", &o.key];
    args.extend_from_slice(&id);
    let out = volunteer(&args).await?;
    assert!(out.status.success(), "{}", text(&out));
    let body = state.lock().expect("lock").received[0].1.clone();
    let erasure = report::erasure::decode_request(&body)?;
    assert_eq!(erasure.cluster_id, "prod.eu-1");
    let report = report_for(&o, &url, &id).await?;
    assert_eq!(report.cluster_id, "prod.eu-1");
    assert_eq!(report.erasure_check, Some(erasure.erasure_check.clone()));
    // Leaving every field out leaves the check in: it is not data about the cluster.
    let report = report_for(
        &o,
        &url,
        &[
            "--omit",
            "nodes,masterVersion,namespaces,workloads,extensions",
        ],
    )
    .await?;
    assert_eq!(report.erasure_check, Some(erasure.erasure_check));
    Ok(())
}

#[tokio::test]
async fn a_refused_request_fails_once_and_stdout_is_no_collector() -> TestResult {
    let o = offline()?;
    let (url, state) = peer(vec![400]).await?;
    let out = volunteer(&["forget", "--gateway", &url, "--key-file", &o.key]).await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        state.lock().expect("lock").received.len(),
        1,
        "a 400 is final"
    );
    assert!(
        out.stderr.contains("collector answered 400"),
        "{}",
        text(&out)
    );
    assert!(out.stdout.is_empty());

    let out = volunteer(&["forget", "--gateway", "stdout", "--key-file", &o.key]).await?;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    Ok(())
}

/// The messages of a JetStream stream.
async fn messages(nats: &testenv::Nats, stream: &str) -> Result<Vec<Vec<u8>>, BoxError> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let mut stream = js.get_stream(stream).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        out.push(stream.get_raw_message(seq).await?.payload.to_vec());
    }
    Ok(out)
}

#[tokio::test]
async fn through_the_real_gateway_the_queued_erasure_names_the_reports_cluster_and_check()
-> TestResult {
    let o = offline()?;
    let nats = testenv::Nats::start().await?;
    let gateway = testenv::Launch::gateway(&nats.url()).start().await?;
    let url = gateway.url();

    let common = [
        "--gateway",
        &url,
        "--key-file",
        &o.key,
        "--kubeconfig",
        &o.kubeconfig,
    ];
    let mut args = vec!["--period", "0", "--request-timeout", "2s"];
    args.extend_from_slice(&common);
    let out = volunteer(&args).await?;
    assert!(out.status.success(), "{}", text(&out));
    let mut args = vec!["forget"];
    args.extend_from_slice(&common);
    let out = volunteer(&args).await?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout_text().contains("202 Accepted"), "{}", text(&out));

    let reports = messages(&nats, "SPARTAKUS_REPORTS").await?;
    assert_eq!(reports.len(), 1);
    let report = report::Envelope::decode(&reports[0])?.report.into_report();
    let erasures = messages(&nats, "SPARTAKUS_ERASURES").await?;
    assert_eq!(erasures.len(), 1);
    let queued = report::erasure::QueuedErasure::decode(&erasures[0])?;
    assert_eq!(queued.erasure.cluster_id, report.cluster_id);
    assert_eq!(
        Some(&queued.erasure.erasure_check),
        report.erasure_check.as_ref()
    );
    let secret = o.secret_for(&url)?;
    for m in reports.iter().chain(&erasures) {
        assert!(
            !String::from_utf8_lossy(m).contains(&secret),
            "the secret was queued"
        );
    }
    Ok(())
}
