//! `POST /api/v2/erasure` against a real nats-server: the shape is checked, the check (never
//! the secret) is queued in its own stream, and every well-formed request gets the same answer.
//! Golden files: `report/testdata/erasure/` (`SPARTAKUS_BLESS=1` rewrites the `.expected.json`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use async_nats::header::NATS_MESSAGE_ID;
use report::erasure::QueuedErasure;
use testenv::Nats;

use crate::helpers::{Gateway, SEED, TestResult, erasures, jetstream, messages, problem, queue};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../report/testdata/erasure")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The golden request's secret.
fn secret() -> String {
    let request: serde_json::Value = serde_json::from_str(&read("request.json")).unwrap();
    request["secret"].as_str().unwrap().to_owned()
}

async fn post(gateway: &Gateway, body: impl Into<reqwest::Body>) -> reqwest::Response {
    gateway
        .http
        .post(format!("{}/api/v2/erasure", gateway.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST /api/v2/erasure")
}

#[tokio::test]
async fn a_well_formed_request_queues_the_check_never_the_secret() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "ERASE", |_| {}).await;
    let before = jiff::Timestamp::now();
    let response = post(&gateway, read("request.json")).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<serde_json::Value>().await?,
        serde_json::json!({"queued": true})
    );

    let js = jetstream(&nats.url()).await;
    let stored = erasures(&js, "ERASE").await;
    assert_eq!(stored.len(), 1);
    let payload = String::from_utf8(stored[0].payload.to_vec())?;
    assert!(
        !payload.contains(&secret()),
        "the secret is never queued: {payload}"
    );
    let queued = QueuedErasure::decode(payload.as_bytes())?;
    assert!(queued.requested_at >= before && queued.requested_at <= jiff::Timestamp::now());
    // The golden queued erasure, but for its time: the cluster and SHA-256 of the secret.
    let mut want = QueuedErasure::decode(read("queued.json").as_bytes())?;
    want.requested_at = queued.requested_at;
    assert_eq!(queued, want);
    assert_eq!(stored[0].subject.as_str(), queue("ERASE").erasures.subject);
    // Nothing reached the reports stream.
    assert!(messages(&js, "ERASE").await.is_empty());
    Ok(())
}

#[tokio::test]
async fn every_well_formed_request_gets_the_same_answer_whatever_it_names() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "SAME", |_| {}).await;
    let other_secret = "ff".repeat(32);
    let bodies = [
        read("request.json"),
        // The same cluster, a wrong secret.
        format!(r#"{{"clusterID":"3b1f0c2a9d8e4f5a6b7c8d9e0f1a2b3c","secret":"{other_secret}"}}"#),
        // A cluster that never reported.
        format!(r#"{{"clusterID":"never-seen","secret":"{other_secret}"}}"#),
    ];
    let mut answers = Vec::new();
    for body in bodies {
        let response = post(&gateway, body).await;
        let status = response.status().as_u16();
        let mut headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != "date")
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        headers.sort();
        answers.push((status, headers, response.bytes().await?));
    }
    assert_eq!(answers[0].0, 202);
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    let js = jetstream(&nats.url()).await;
    assert_eq!(erasures(&js, "SAME").await.len(), 3, "each one queued");
    Ok(())
}

#[tokio::test]
async fn a_retry_within_the_minute_is_queued_once() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "RETRY", |_| {}).await;
    // Two attempts straddle a minute boundary at most once in a while; a third attempt then
    // still shares a minute with the second. (The minute is the gateway's wall-clock time of
    // arrival, which no paused clock in the test moves.)
    for _ in 0..3 {
        assert_eq!(post(&gateway, read("request.json")).await.status(), 202);
    }
    let js = jetstream(&nats.url()).await;
    let stored = erasures(&js, "RETRY").await;
    assert!(
        (1..=2).contains(&stored.len()),
        "{} messages for three attempts",
        stored.len()
    );
    let id = stored[0]
        .headers
        .get(NATS_MESSAGE_ID)
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(
        id.starts_with("erasure:3b1f0c2a9d8e4f5a6b7c8d9e0f1a2b3c:630dcd29"),
        "{id}"
    );
    Ok(())
}

#[tokio::test]
async fn a_malformed_request_is_a_problem_naming_the_field_and_the_rule() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "BAD", |_| {}).await;

    let response = post(&gateway, read("bad-secret.json")).await;
    assert_eq!(response.status(), 400);
    let refusal = problem(response).await;
    let expected = golden("bad-secret.expected.json");
    let text = serde_json::to_string_pretty(&refusal)? + "\n";
    if std::env::var_os("SPARTAKUS_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&expected, &text)?;
    }
    assert_eq!(
        text,
        std::fs::read_to_string(&expected).unwrap_or_default(),
        "{} (SPARTAKUS_BLESS=1 rewrites it)",
        expected.display()
    );
    assert_eq!(refusal["type"], "urn:spartakus:problem:erasure-invalid");
    let paths: Vec<&str> = refusal["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["clusterID", "secret"]);

    // Unknown fields, and JSON of another shape.
    for body in [
        format!(
            r#"{{"clusterID":"c","secret":"{}","reason":"x"}}"#,
            secret()
        ),
        "[]".to_owned(),
        "not json".to_owned(),
    ] {
        let response = post(&gateway, body).await;
        assert_eq!(response.status(), 400);
        assert_eq!(
            problem(response).await["type"],
            "urn:spartakus:problem:erasure-syntax"
        );
    }

    // Larger than any well-formed request, another media type.
    let response = post(
        &gateway,
        format!(r#"{{"clusterID":"{}"}}"#, "a".repeat(5000)),
    )
    .await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        problem(response).await["type"],
        "urn:spartakus:problem:erasure-too-large"
    );
    let response = gateway
        .http
        .post(format!("{}/api/v2/erasure", gateway.url))
        .header("content-type", "text/plain")
        .body(read("request.json"))
        .send()
        .await?;
    assert_eq!(response.status(), 415);

    let js = jetstream(&nats.url()).await;
    assert!(
        erasures(&js, "BAD").await.is_empty(),
        "nothing malformed is queued"
    );
    Ok(())
}

#[tokio::test]
async fn erasure_requests_share_the_per_address_rate_limit_of_reports() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "LIMIT", |c| {
        c.rate_limit_per_ip = 2;
    })
    .await;
    assert_eq!(gateway.post_v1(SEED).await.status(), 204);
    assert_eq!(post(&gateway, read("request.json")).await.status(), 202);
    let response = post(&gateway, read("request.json")).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        problem(response).await["type"],
        "urn:spartakus:problem:rate-limited-ip"
    );
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_lists_the_endpoint_and_every_field_of_a_full_report() {
    let openapi = include_str!("../../openapi.yaml");
    assert!(
        openapi.contains("\n  /api/v2/erasure:\n    post:"),
        "the endpoint"
    );
    // Every top-level field of the golden v2 report is a property of the Report schema
    // (properties sit at eight spaces), and the request's fields of ErasureRequest.
    let section = |name: &str| -> String {
        let schemas = openapi.find("\n  schemas:\n").expect("components.schemas");
        let start = openapi[schemas..]
            .find(&format!("\n    {name}:\n"))
            .unwrap_or_else(|| panic!("schema {name}"))
            + schemas
            + 1;
        let mut out = String::from("\n");
        for (i, line) in openapi[start..].lines().enumerate() {
            let indent = line.len() - line.trim_start().len();
            if i > 0 && !line.trim().is_empty() && indent <= 4 {
                break;
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    };
    let report = section("Report");
    let full: serde_json::Value =
        serde_json::from_str(include_str!("../../../report/testdata/v2-full.json")).unwrap();
    for key in full.as_object().unwrap().keys() {
        assert!(
            report.contains(&format!("\n        {key}:")),
            "{key} is not in the OpenAPI Report schema"
        );
    }
    let request = section("ErasureRequest");
    let golden: serde_json::Value = serde_json::from_str(&read("request.json")).unwrap();
    for key in golden.as_object().unwrap().keys() {
        assert!(request.contains(&format!("\n        {key}:")), "{key}");
    }
}
