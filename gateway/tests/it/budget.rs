//! The memory budget (`--memory-budget`) bounds the bytes all requests in flight hold together:
//! a flood of gzip bombs and of maximal reports at once gets 503 with Retry-After for what does
//! not fit, the reserved bytes never pass the budget, and once the flood is over an honest
//! report is served again with nothing left reserved. The gateway is the binary, so that its
//! memory is this flood's alone.

use std::time::Duration;

use testenv::Nats;
use tokio::task::JoinSet;

use crate::helpers::{DEADLINE, SEED, TestResult, exclusive, gzip_bomb, launch, post_raw, seed_at};
use crate::load::mib;

/// The budget under test: the shipped default.
const BUDGET: i64 = 96 << 20;

/// The gauge's line in `/metrics`.
const GAUGE: &str = "spartakus_gateway_memory_budget_used_bytes";

/// The budget's gauge as `/metrics` shows it.
async fn reserved(http: &reqwest::Client, url: &str) -> i64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(GAUGE))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {GAUGE} in {text}"))
}

/// A valid report of `size` bytes: the seed report after that much leading whitespace, which
/// JSON allows. The gateway holds all of it until it is decoded.
fn padded_report(size: usize, n: u64) -> Vec<u8> {
    let report = seed_at(n);
    let mut body = vec![b' '; size - report.len()];
    body.extend_from_slice(report.as_bytes());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bombs_and_maximal_reports_is_refused_beyond_the_memory_budget() -> TestResult {
    let _alone = exclusive().await;
    let nats = Nats::start().await?;
    // Every request comes from 127.0.0.1 here; the flood stands for many addresses, so the cap
    // on bodies arriving per address is off.
    let mut gateway = launch(&nats.url(), "BUDGET")
        .args(["--max-uploads-per-ip", "0"])
        .start()
        .await?;
    let addr = gateway.addr().to_string();
    let url = gateway.url();
    let http = reqwest::Client::builder().timeout(DEADLINE).build()?;
    let json = ("content-type".to_owned(), "application/json".to_owned());
    let gzip = ("content-encoding".to_owned(), "gzip".to_owned());
    let warm_up = post_raw(&addr, "/api/v1", std::slice::from_ref(&json), SEED.into()).await?;
    assert_eq!(warm_up.status, 204);
    let (_, rss_before) = gateway.memory()?;

    // 128 gzip bombs (each cut off at 16 MiB decoded, 413) and 24 reports of 12 MB (204),
    // all at once.
    let bomb = gzip_bomb();
    let mut flood = JoinSet::new();
    for _ in 0..128 {
        let (addr, headers, body) = (addr.clone(), vec![json.clone(), gzip.clone()], bomb.clone());
        flood.spawn(async move { post_raw(&addr, "/api/v1", &headers, body).await });
    }
    for n in 0..24 {
        let (addr, headers) = (addr.clone(), vec![json.clone()]);
        let body = padded_report(12_000_000, 2_000_000 + n);
        flood.spawn(async move { post_raw(&addr, "/api/v1", &headers, body).await });
    }
    // The gauge, sampled while the flood lasts.
    let mut most_reserved = 0;
    let mut answers = Vec::new();
    let mut sample = tokio::time::interval(Duration::from_millis(20));
    while !flood.is_empty() {
        tokio::select! {
            Some(answer) = flood.join_next() => answers.push(answer?),
            _ = sample.tick() => most_reserved = most_reserved.max(reserved(&http, &url).await),
        }
    }
    let (peak, _) = gateway.memory()?;

    let mut over_budget = 0;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for answer in &answers {
        let answer = answer.as_ref().map_err(Clone::clone)?;
        let kind = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|p| p["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *statuses
            .entry(format!("{} {kind}", answer.status))
            .or_default() += 1;
        match answer.status {
            503 => {
                assert_eq!(kind, "urn:spartakus:problem:memory-budget");
                assert_eq!(answer.header("retry-after"), Some("1"));
                over_budget += 1;
            }
            204 | 413 => {}
            other => panic!(
                "answered {other}: {}",
                String::from_utf8_lossy(&answer.body)
            ),
        }
    }
    println!(
        "flood of 128 gzip bombs and 24 reports of 12 MB: {statuses:?}; at most {:.1} MiB \
         reserved of {:.0} MiB; RSS before {:.1} MiB, peak {:.1} MiB",
        mib(most_reserved as u64),
        mib(BUDGET as u64),
        mib(rss_before),
        mib(peak)
    );
    assert!(over_budget > 0, "nothing was refused for the budget");
    assert!(most_reserved <= BUDGET, "{most_reserved} bytes reserved");
    assert!(most_reserved > 0, "the gauge never moved");

    // The flood is over: nothing stays reserved, and an honest report is served.
    testenv::eventually(DEADLINE, "the budget to be given back", || async {
        reserved(&http, &url).await == 0
    })
    .await;
    let honest = post_raw(&addr, "/api/v1", &[json], seed_at(3_000_000).into_bytes()).await?;
    assert_eq!(honest.status, 204);
    assert!(gateway.is_running());
    Ok(())
}
