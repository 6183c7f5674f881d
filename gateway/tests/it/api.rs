//! The gateway's HTTP contract, against a real nats-server.

use std::time::{Duration, Instant};

use async_nats::header::NATS_MESSAGE_ID;
use futures::StreamExt;
use report::{Envelope, ReportId};
use testenv::Nats;
use tokio::sync::mpsc;

use crate::helpers::{
    DEADLINE, Gateway, SEED, TestResult, gzip, jetstream, messages, problem, queue, seed_at,
};

#[tokio::test]
async fn the_seed_report_with_the_original_headers_gets_204_and_is_stored_once() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "SEED", |_| {}).await;
    let before = jiff::Timestamp::now();

    let response = gateway.post_v1(SEED).await;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await?.is_empty());

    let js = jetstream(&nats.url()).await;
    let stored = messages(&js, "SEED").await;
    assert_eq!(stored.len(), 1);
    let envelope = Envelope::decode(&stored[0].payload)?;
    let sent = report::decode(SEED.as_bytes())?;
    // As sent, but for the node IDs, re-keyed under the gateway's key.
    let keyed = sent
        .clone()
        .rekey_node_ids(&gateway::config::test_node_id_key());
    assert_eq!(envelope.report.report(), keyed.report());
    assert!(envelope.received_at >= before && envelope.received_at <= jiff::Timestamp::now());
    let derived = ReportId::derive(
        sent.cluster_id(),
        sent.report().timestamp.as_deref(),
        SEED.as_bytes(),
    );
    assert_eq!(envelope.report_id, derived);
    let msg_id = stored[0]
        .headers
        .get(NATS_MESSAGE_ID)
        .map(|v| v.to_string());
    assert_eq!(msg_id, Some(derived.to_string()));
    Ok(())
}

#[tokio::test]
async fn the_same_report_sent_twice_is_stored_once() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "TWICE", |_| {}).await;
    assert_eq!(gateway.post_v1(SEED).await.status(), 204);
    assert_eq!(gateway.post_v1(SEED).await.status(), 204);
    // The same report gzip-compressed decodes to the same bytes, hence the same reportID.
    let response = gateway
        .http
        .post(format!("{}/api/v1", gateway.url))
        .header("content-type", "application/json; charset=utf-8")
        .header("content-encoding", "gzip")
        .body(gzip(SEED.as_bytes()))
        .send()
        .await?;
    assert_eq!(response.status(), 204);
    let js = jetstream(&nats.url()).await;
    assert_eq!(messages(&js, "TWICE").await.len(), 1);
    Ok(())
}

#[tokio::test]
async fn v2_answers_202_with_the_report_id_and_whether_it_was_a_duplicate() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "V2", |_| {}).await;
    let id = ReportId::random();
    let mut body: serde_json::Value = serde_json::from_str(SEED)?;
    body["reportID"] = id.to_string().into();
    let post = || {
        gateway
            .http
            .post(format!("{}/api/v2/reports", gateway.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let first = post().await?;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await?;
    assert_eq!(
        first,
        serde_json::json!({"reportID": id.to_string(), "duplicate": false})
    );
    let second: serde_json::Value = post().await?.json().await?;
    assert_eq!(
        second,
        serde_json::json!({"reportID": id.to_string(), "duplicate": true})
    );

    let js = jetstream(&nats.url()).await;
    let stored = messages(&js, "V2").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(Envelope::decode(&stored[0].payload)?.report_id, id);
    Ok(())
}

#[tokio::test]
async fn malformed_json_is_400_syntax_and_nothing_is_stored() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "SYNTAX", |_| {}).await;
    for body in [
        "{not json",
        "[]",
        r#"{"version": "v1", "clusterID": "c", "unknownField": 1}"#,
    ] {
        let response = gateway.post_v1(body).await;
        assert_eq!(response.status(), 400, "{body}");
        let problem = problem(response).await;
        assert_eq!(problem["type"], "urn:spartakus:problem:syntax", "{body}");
        assert_eq!(problem["status"], 400);
    }
    // Not gzip although it says so: the client's fault, 400.
    let response = gateway
        .http
        .post(format!("{}/api/v1", gateway.url))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(SEED)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    assert_eq!(
        problem(response).await["type"],
        "urn:spartakus:problem:syntax"
    );
    let js = jetstream(&nats.url()).await;
    assert!(messages(&js, "SYNTAX").await.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_report_breaking_rules_is_400_with_every_field_path() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "INVALID", |_| {}).await;
    let mut body: serde_json::Value = serde_json::from_str(SEED)?;
    body["clusterID"] = "".into();
    body["nodes"][1]["id"] = "".into();
    let response = gateway.post_v1(body.to_string()).await;
    assert_eq!(response.status(), 400);
    let problem = problem(response).await;
    assert_eq!(problem["type"], "urn:spartakus:problem:invalid");
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    assert!(paths.contains(&"clusterID"), "{problem}");
    assert!(paths.contains(&"nodes[1].id"), "{problem}");
    assert!(
        problem["errors"][0]["rule"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    Ok(())
}

#[tokio::test]
async fn wrong_content_type_or_encoding_is_415() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "MEDIA", |_| {}).await;
    let url = format!("{}/api/v1", gateway.url);
    let response = gateway
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body(SEED)
        .send()
        .await?;
    assert_eq!(response.status(), 415);
    assert_eq!(
        problem(response).await["type"],
        "urn:spartakus:problem:content-type"
    );
    let response = gateway.http.post(&url).body(SEED).send().await?;
    assert_eq!(response.status(), 415, "no Content-Type at all");
    let response = gateway
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(SEED)
        .send()
        .await?;
    assert_eq!(response.status(), 415);
    assert_eq!(
        problem(response).await["type"],
        "urn:spartakus:problem:content-encoding"
    );
    Ok(())
}

#[tokio::test]
async fn bodies_over_the_caps_are_413() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "LARGE", |c| {
        c.max_body_bytes = 16 * 1024;
        c.max_decoded_bytes = 64 * 1024;
    })
    .await;
    let url = format!("{}/api/v1", gateway.url);
    // Incompressible bytes: 20 KiB of gzip on the wire, over the compressed cap.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..20 * 1024)
        .map(|_| {
            // xorshift64: bytes gzip cannot shrink
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let compressed = gzip(&noise);
    assert!(compressed.len() > 16 * 1024);
    let response = gateway
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(compressed)
        .send()
        .await?;
    assert_eq!(response.status(), 413);
    let problem_body = problem(response).await;
    assert_eq!(problem_body["type"], "urn:spartakus:problem:too-large");
    assert!(
        problem_body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("as sent"),
        "{problem_body}"
    );

    // Small on the wire, over the decoded cap once gunzipped.
    let padded = format!("{}{}", " ".repeat(100 * 1024), SEED);
    let response = gateway
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(padded.as_bytes()))
        .send()
        .await?;
    assert_eq!(response.status(), 413);
    let detail = problem(response).await["detail"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(detail.contains("after decompression"), "{detail}");

    // Uncompressed and over the decoded cap.
    assert_eq!(gateway.post_v1(padded).await.status(), 413);
    Ok(())
}

#[tokio::test]
async fn a_cluster_over_its_rate_limit_gets_429_with_retry_after() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "RATE", |c| c.rate_limit_per_cluster = 2).await;
    assert_eq!(gateway.post_v1(seed_at(1)).await.status(), 204);
    assert_eq!(gateway.post_v1(seed_at(2)).await.status(), 204);
    let response = gateway.post_v1(seed_at(3)).await;
    assert_eq!(response.status(), 429);
    // A range, not the exact wait: this gateway's limiter runs on the wall clock, as a paused
    // clock would jump over the waits for NATS and fire the gateway's timeouts. The exact waits
    // are `src/limit.rs`'s tests, under a paused clock.
    let retry_after: u64 = response.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        problem(response).await["type"],
        "urn:spartakus:problem:rate-limited-cluster"
    );
    let js = jetstream(&nats.url()).await;
    assert_eq!(messages(&js, "RATE").await.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_client_over_its_ip_rate_limit_gets_429() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "IPRATE", |c| c.rate_limit_per_ip = 1).await;
    assert_eq!(gateway.post_v1(seed_at(1)).await.status(), 204);
    let response = gateway.post_v1(seed_at(2)).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        problem(response).await["type"],
        "urn:spartakus:problem:rate-limited-ip"
    );
    Ok(())
}

/// A request whose body is sent in two halves; the second half goes when `finish` is called.
struct HeldRequest {
    rest: mpsc::Sender<Vec<u8>>,
    tail: Vec<u8>,
    response: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

impl HeldRequest {
    fn start(gateway: &Gateway, body: String) -> Self {
        let bytes = body.into_bytes();
        let (head, tail) = bytes.split_at(bytes.len() / 2);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(1);
        let first = futures::stream::iter([Ok::<_, std::io::Error>(head.to_vec())]);
        let rest = tokio_stream_from(rx);
        let body = reqwest::Body::wrap_stream(first.chain(rest));
        let request = gateway
            .http
            .post(format!("{}/api/v1", gateway.url))
            .header("content-type", "application/json")
            .header("content-length", bytes.len())
            .body(body)
            .send();
        HeldRequest {
            rest: tx,
            tail: tail.to_vec(),
            response: tokio::spawn(request),
        }
    }

    async fn finish(self) -> reqwest::Response {
        self.rest.send(self.tail).await.expect("request still open");
        drop(self.rest);
        self.response.await.expect("task").expect("response")
    }
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}

#[tokio::test]
async fn a_body_still_arriving_takes_no_slot() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "HELD", |c| c.max_in_flight = 1).await;
    let held = HeldRequest::start(&gateway, seed_at(1));
    gateway
        .wait_for_metric("spartakus_gateway_reports_in_flight 1")
        .await;
    // The one slot is for work: a complete report gets it while the held body is arriving.
    assert_eq!(gateway.post_v1(seed_at(2)).await.status(), 204);
    assert_eq!(held.finish().await.status(), 204);
    Ok(())
}

#[tokio::test]
async fn beyond_max_in_flight_requests_are_shed_with_503_at_once() -> TestResult {
    let nats = Nats::start().await?;
    // All from one address: the cap on bodies arriving per address is off.
    let gateway = Gateway::ready(&nats.url(), "SHED", |c| {
        c.max_in_flight = 1;
        c.max_uploads_per_ip = 0;
    })
    .await;

    // 64 complete reports at once for one slot: those that find it taken are shed, at once.
    let started = Instant::now();
    let answers =
        futures::future::join_all((0..64).map(|n| gateway.post_v1(seed_at(100 + n)))).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shed at once, not queued"
    );
    let mut shed = 0;
    for response in answers {
        match response.status().as_u16() {
            204 => {}
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                assert_eq!(
                    problem(response).await["type"],
                    "urn:spartakus:problem:overloaded"
                );
                shed += 1;
            }
            other => panic!("answered {other}"),
        }
    }
    assert!(
        shed > 0,
        "64 reports at once never found the one slot taken"
    );
    assert_eq!(
        gateway.post_v1(seed_at(1)).await.status(),
        204,
        "the slot is free again"
    );
    Ok(())
}

#[tokio::test]
async fn with_nats_down_reports_get_503_and_recover_without_a_gateway_restart() -> TestResult {
    let mut nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "OUTAGE", |c| {
        c.publish_timeout = Duration::from_secs(2);
    })
    .await;
    assert_eq!(gateway.post_v1(seed_at(1)).await.status(), 204);

    nats.kill();
    let response = gateway.post_v1(seed_at(2)).await;
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"].to_str()?.parse()?;
    assert!(retry_after >= 1);
    let problem_body = problem(response).await;
    assert_eq!(problem_body["type"], "urn:spartakus:problem:unavailable");
    assert!(
        !problem_body.to_string().contains("nats"),
        "no internal detail: {problem_body}"
    );
    gateway.wait_for_status("/readyz", 503).await;
    assert_eq!(
        gateway
            .http
            .get(format!("{}/healthz", gateway.url))
            .send()
            .await?
            .status(),
        200
    );

    nats.restart().await?;
    gateway.wait_for_status("/readyz", 200).await;
    let start = Instant::now();
    loop {
        let status = gateway.post_v1(seed_at(3)).await.status();
        if status == 204 {
            break;
        }
        assert_eq!(status, 503);
        assert!(start.elapsed() < DEADLINE, "never recovered");
    }
    let js = jetstream(&nats.url()).await;
    let ids: Vec<String> = messages(&js, "OUTAGE")
        .await
        .iter()
        .map(|m| {
            Envelope::decode(&m.payload)
                .map(|e| e.report.report().timestamp.clone().unwrap_or_default())
        })
        .collect::<Result<_, _>>()?;
    // The report refused with 503 may or may not have reached the stream (at-least-once: the
    // volunteer retries it); the first and the last are there.
    assert!(
        ids.contains(&"1".to_owned()) && ids.contains(&"3".to_owned()),
        "{ids:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_gateway_starts_without_nats_and_creates_the_stream_once_it_appears() -> TestResult {
    let mut nats = Nats::start().await?;
    let url = nats.url();
    nats.kill();
    let mut config = gateway::Config::for_nats(&url);
    config.queue = queue("LATE");
    let gateway = Gateway::start(config).await;
    assert_eq!(
        gateway
            .http
            .get(format!("{}/readyz", gateway.url))
            .send()
            .await?
            .status(),
        503
    );
    assert_eq!(gateway.post_v1(SEED).await.status(), 503);

    nats.restart().await?;
    gateway.wait_for_status("/readyz", 200).await;
    assert_eq!(gateway.post_v1(SEED).await.status(), 204);
    let js = jetstream(&url).await;
    assert_eq!(messages(&js, "LATE").await.len(), 1);
    Ok(())
}

#[tokio::test]
async fn requests_in_flight_at_shutdown_all_finish_and_are_stored() -> TestResult {
    const IN_FLIGHT: usize = 8;
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "DRAIN", |_| {}).await;
    let held: Vec<HeldRequest> = (0..IN_FLIGHT)
        .map(|i| HeldRequest::start(&gateway, seed_at(i as u64)))
        .collect();
    gateway
        .wait_for_metric(&format!("spartakus_gateway_reports_in_flight {IN_FLIGHT}"))
        .await;

    gateway.shutdown.cancel();
    wait_until_refused(&gateway).await;
    let mut statuses = Vec::new();
    for request in held {
        statuses.push(request.finish().await.status().as_u16());
    }
    assert_eq!(statuses, vec![204; IN_FLIGHT]);
    tokio::time::timeout(DEADLINE, gateway.task).await???;

    let js = jetstream(&nats.url()).await;
    assert_eq!(messages(&js, "DRAIN").await.len(), IN_FLIGHT);
    Ok(())
}

/// Waits until the gateway's listener is closed: shutdown has begun.
async fn wait_until_refused(gateway: &Gateway) {
    let (fresh, url) = (&reqwest::Client::new(), &format!("{}/healthz", gateway.url));
    testenv::eventually(DEADLINE, "the listener to close", || async move {
        fresh.get(url).send().await.is_err()
    })
    .await;
}

#[tokio::test]
async fn health_version_metrics_and_openapi_are_served() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "META", |_| {}).await;
    assert_eq!(gateway.get_text("/healthz").await, "ok\n");
    assert_eq!(
        gateway.get_text("/version").await.trim(),
        env!("CARGO_PKG_VERSION")
    );
    let openapi = gateway.get_text("/openapi.yaml").await;
    assert!(openapi.starts_with("openapi: 3.1.0") && openapi.contains("/api/v2/reports:"));
    assert_eq!(gateway.post_v1(SEED).await.status(), 204);
    assert_eq!(gateway.post_v1("{").await.status(), 400);
    let metrics = gateway.get_text("/metrics").await;
    for line in [
        r#"spartakus_gateway_http_requests_total{route="/api/v1",status="204"} 1"#,
        r#"spartakus_gateway_http_requests_total{route="/api/v1",status="400"} 1"#,
        r#"spartakus_gateway_rejections_total{reason="syntax"} 1"#,
        r#"spartakus_gateway_publish_seconds_count{outcome="ok"} 1"#,
        r#"spartakus_gateway_reports_accepted_total{outcome="new"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}:\n{metrics}"
        );
    }
    let received: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("spartakus_gateway_received_bytes_total "))
        .expect("bytes metric")
        .parse()?;
    assert_eq!(received, SEED.len() as u64 + 1);
    gateway.stop().await?;
    Ok(())
}

/// Settings JetStream would refuse together end the gateway at start with exit 64 and the
/// flags named; they left it unready for ever, with one log line.
#[tokio::test]
async fn a_duplicate_window_longer_than_the_stream_age_exits_64_naming_both_flags() {
    let run = testenv::Launch::gateway("nats://127.0.0.1:9")
        .args(["--listen", "127.0.0.1:0"])
        .args(["--stream-max-age", "1h", "--duplicate-window", "2h"])
        .run(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status.code(), Some(64), "{}", run.stderr);
    assert!(
        run.stderr.contains("--duplicate-window (2h)")
            && run.stderr.contains("--stream-max-age (1h)"),
        "{}",
        run.stderr
    );
}
