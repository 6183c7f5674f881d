//! The collection promise kept for every client, through the gateway binary and a real
//! nats-server: a report from a client that does not sanitize (IP addresses, e-mail addresses,
//! URL hosts and build hosts in its free text, v1 MD5 node IDs) is queued sanitized and with its
//! node IDs re-keyed under the collector's key; impossible values and wrong types are refused
//! with a 400 naming the field; a gateway without a key does not start.

use std::time::Duration;

use report::node_id::NodeIdKey;
use report::{Envelope, ReportId};
use testenv::{GATEWAY_NODE_ID_KEY, Launch, Nats};

use crate::helpers::{TestResult, jetstream, launch, messages};

const HOSTILE: &str = include_str!("../../../report/testdata/hostile/v1-identifying-strings.json");
/// What `report` keeps of it (the golden file of its own test), before node IDs are re-keyed.
const SANITIZED: &str =
    include_str!("../../../report/testdata/hostile/v1-identifying-strings.expected.json");
const IMPOSSIBLE: &str = include_str!("../../../report/testdata/bad/capacity-impossible.json");
const WRONG_TYPE: &str = include_str!("../../../report/testdata/bad/capacity-number.json");

/// Strings of the hostile report that would name a machine, a person or a place.
const IDENTIFYING: &[&str] = &[
    "jane",
    "corp",
    "buildd",
    "lcy02",
    "10.20.30.40",
    "192.168.1.7",
    "fe80",
    "node-17",
    "acme",
    "secret-team",
    "registry",
    "https",
    "@",
    "#",
];

fn node_ids(report: &report::Report) -> Vec<String> {
    report
        .nodes
        .iter()
        .flatten()
        .map(|n| n.id.clone())
        .collect()
}

#[tokio::test]
async fn a_hostile_report_is_queued_sanitized_with_its_node_ids_re_keyed() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = launch(&nats.url(), "PRIVACY").start().await?;
    let url = format!("http://{}", gateway.addr());
    let http = reqwest::Client::new();
    let post = |route: &'static str, body: String| {
        http.post(format!("{url}{route}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // As a v1 client sends it, and as a v2 client would (its own reportID).
    let v2_id = ReportId::random();
    let mut v2: serde_json::Value = serde_json::from_str(HOSTILE)?;
    v2["reportID"] = v2_id.to_string().into();
    v2["schemaVersion"] = 2.into();
    assert_eq!(post("/api/v1", HOSTILE.to_owned()).await?.status(), 204);
    assert_eq!(post("/api/v2/reports", v2.to_string()).await?.status(), 202);

    let js = jetstream(&nats.url()).await;
    let queued = messages(&js, "PRIVACY").await;
    assert_eq!(queued.len(), 2);

    let sent = report::decode(HOSTILE.as_bytes())?;
    let posted_ids = node_ids(sent.report());
    assert_eq!(
        posted_ids[0], "c8863d09ecc5be8d9791f72acd275fc2",
        "a v1 MD5"
    );
    let key = NodeIdKey::from_secret(GATEWAY_NODE_ID_KEY)?;
    let want = report::decode(SANITIZED.as_bytes())?.rekey_node_ids(&key);
    for message in &queued {
        let text = std::str::from_utf8(&message.payload)?;
        for needle in IDENTIFYING {
            assert!(!text.contains(needle), "{needle:?} was queued: {text}");
        }
        for id in &posted_ids {
            assert!(
                !text.contains(id.as_str()),
                "the posted node ID {id} was queued"
            );
        }
        let envelope = Envelope::decode(&message.payload)?;
        let mut got = envelope.report.into_report();
        // The v2 copy differs from the golden only by what was added to it above.
        if got.report_id.is_some() {
            assert_eq!(got.report_id.take(), Some(v2_id.to_string()));
            assert_eq!(got.schema_version.take(), Some(2));
        }
        assert_eq!(&got, want.report());
    }
    assert_ne!(node_ids(want.report()), posted_ids);
    Ok(())
}

#[tokio::test]
async fn impossible_capacities_and_wrong_types_are_refused_naming_the_field() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = launch(&nats.url(), "IMPOSSIBLE").start().await?;
    let url = format!("http://{}/api/v1", gateway.addr());
    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        http.post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let response = post(IMPOSSIBLE).await?;
    assert_eq!(response.status(), 400);
    let problem: serde_json::Value = response.json().await?;
    let errors: Vec<String> = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}: {}",
                e["path"].as_str().unwrap_or(""),
                e["rule"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            "nodes[0].capacity[0].value: negative: a capacity is zero or more",
            "nodes[0].capacity[1].value: not finite: a capacity is at most 1.7e308 base units (cores, bytes)",
            "nodes[0].capacity[2].value: not a Kubernetes quantity",
            "nodes[0].capacity[3].value: negative: a capacity is zero or more",
            "nodes[0].capacity[4].value: not finite: a capacity is at most 1.7e308 base units (cores, bytes)",
        ]
    );

    let response = post(WRONG_TYPE).await?;
    assert_eq!(response.status(), 400);
    let problem: serde_json::Value = response.json().await?;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("nodes[1].capacity[1].value: number out of range"),
        "{detail}"
    );

    let js = jetstream(&nats.url()).await;
    assert!(messages(&js, "IMPOSSIBLE").await.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_gateway_without_a_node_id_key_exits_64_naming_the_flag() -> TestResult {
    let finished = Launch::named("gateway")
        .args(["--nats-url", "nats://127.0.0.1:1"])
        .env_remove("SPARTAKUS_NODE_ID_KEY_FILE")
        .run(Duration::from_secs(30))
        .await?;
    assert_eq!(finished.status.code(), Some(64), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("--node-id-key-file"),
        "{}",
        finished.stderr
    );
    Ok(())
}
