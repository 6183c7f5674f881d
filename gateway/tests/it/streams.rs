//! The streams as the gateway binary makes and keeps them in a real nats-server: work-queue
//! retention and a byte budget each, and a stream made by an earlier gateway (limits retention,
//! which JetStream cannot change to work-queue) kept working, given its budget, and named in an
//! ERROR log line for the operator.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy};
use testenv::Nats;

use crate::helpers::{DEADLINE, TestResult, jetstream, launch, queue};

#[tokio::test]
async fn each_stream_is_a_work_queue_with_its_own_budget() -> TestResult {
    let nats = Nats::start().await?;
    let _gateway = launch(&nats.url(), "BUDGETS")
        .args([
            "--stream-max-bytes",
            "32MiB",
            "--erasures-max-bytes",
            "1MiB",
        ])
        .start()
        .await?;
    let js = jetstream(&nats.url()).await;
    for (name, budget) in [
        (queue("BUDGETS").reports.name, 32 << 20),
        (queue("BUDGETS").erasures.name, 1 << 20),
    ] {
        let config = js.get_stream(&name).await?.cached_info().config.clone();
        assert_eq!(config.retention, RetentionPolicy::WorkQueue, "{name}");
        assert_eq!(config.discard, DiscardPolicy::New, "{name}");
        assert_eq!(config.max_bytes, budget, "{name}");
        assert_eq!(config.max_age, Duration::ZERO, "{name}: kept until stored");
    }
    Ok(())
}

#[tokio::test]
async fn a_stream_made_by_an_earlier_gateway_keeps_working_gets_its_budget_and_is_named_for_the_operator()
-> TestResult {
    let nats = Nats::start().await?;
    let js = jetstream(&nats.url()).await;
    let old = queue("EARLIER").reports;
    // As the earlier gateway made it: limits retention, a week's age limit, no budget.
    js.create_stream(stream::Config {
        name: old.name.clone(),
        subjects: vec![old.subject.clone()],
        storage: stream::StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::New,
        duplicate_window: Duration::from_secs(7200),
        max_age: Duration::from_secs(7 * 86400),
        ..Default::default()
    })
    .await?;

    let gateway = launch(&nats.url(), "EARLIER")
        .args(["--stream-max-bytes", "32MiB"])
        .start()
        .await?;

    let config = js.get_stream(&old.name).await?.cached_info().config.clone();
    assert_eq!(
        config.retention,
        RetentionPolicy::Limits,
        "JetStream cannot change it"
    );
    assert_eq!(
        config.max_age,
        Duration::from_secs(7 * 86400),
        "its age limit frees it"
    );
    assert_eq!(config.max_bytes, 32 << 20, "it has its budget");
    let erasures = js.get_stream(&queue("EARLIER").erasures.name).await?;
    assert_eq!(
        erasures.cached_info().config.retention,
        RetentionPolicy::WorkQueue,
        "a stream made now is a work queue"
    );

    let (gateway, name) = (&gateway, &old.name);
    testenv::eventually(DEADLINE, "an ERROR naming the stream", || async move {
        let log = gateway.log_tail(100);
        log.contains("\"ERROR\"") && log.contains(name.as_str()) && log.contains("earlier gateway")
    })
    .await;
    let log = gateway.log_tail(200);
    assert_eq!(
        log.matches("earlier gateway").count(),
        1,
        "logged once, not every second:\n{log}"
    );
    Ok(())
}
