//! A NATS server that accepts the connection and then never answers (testenv's
//! [`StallProxy`]): a report waits at most `--publish-timeout` and gets a 503 with Retry-After
//! (the volunteer keeps it and retries), the gateway says it is not ready, and once NATS
//! answers again the same gateway takes reports again without a restart.
//!
//! The publish deadline predates this test: it guards it (with the timeout removed from
//! `Publisher::publish`, the POST hangs past the test's bound).

use std::time::{Duration, Instant};

use testenv::{Nats, StallProxy};

use crate::helpers::{DEADLINE, Gateway, SEED, TestResult, problem, seed_at};

#[tokio::test]
async fn a_silent_nats_costs_a_report_at_most_the_publish_timeout_then_the_gateway_recovers()
-> TestResult {
    let nats = Nats::start().await?;
    let upstream = nats.url().trim_start_matches("nats://").parse()?;
    let proxy = StallProxy::start(upstream).await?;
    let gateway = Gateway::ready(&format!("nats://{}", proxy.addr()), "STALL", |c| {
        c.publish_timeout = Duration::from_secs(2);
        c.rate_limit_per_cluster = 0;
    })
    .await;
    assert_eq!(gateway.post_v1(SEED).await.status(), 204);

    proxy.stall();
    let started = Instant::now();
    let response = tokio::time::timeout(DEADLINE, gateway.post_v1(seed_at(1)))
        .await
        .expect("the POST ends within the test's bound");
    let took = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response).await;
    assert_eq!(body["type"], "urn:spartakus:problem:unavailable", "{body}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "answered after {took:?}, the publish timeout is 2 s"
    );
    assert!(proxy.held_bytes() > 0, "the report never reached the proxy");
    gateway.wait_for_status("/readyz", 503).await;
    eprintln!("stalled NATS: a report answered 503 after {took:.1?}");

    proxy.resume();
    gateway.wait_for_status("/readyz", 200).await;
    assert_eq!(gateway.post_v1(seed_at(2)).await.status(), 204);
    gateway.stop().await?;
    Ok(())
}
