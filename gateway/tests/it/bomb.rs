//! A gzip bomb is cut off at the decoded cap while it streams in. The gateway is a process of
//! its own (the binary, started by testenv), so that its memory measures this request only:
//! in-process it would share a peak with every test of this binary.

use testenv::Nats;

use crate::helpers::{
    SEED, TestResult, exclusive, gzip_bomb, jetstream, launch, messages, post_raw,
};

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_gzip_bomb_is_refused_with_413_and_memory_stays_bounded() -> TestResult {
    let _alone = exclusive().await;
    let nats = Nats::start().await?;
    let gateway = launch(&nats.url(), "BOMB").start().await?;
    let addr = gateway.addr().to_string();
    let json = ("content-type".to_owned(), "application/json".to_owned());
    // Warm up the allocator with one ordinary report.
    let warm_up = post_raw(&addr, "/api/v1", std::slice::from_ref(&json), SEED.into()).await?;
    assert_eq!(warm_up.status, 204);
    let (_, rss_before) = gateway.memory()?;

    // 1 GiB of zeros in about 1 MiB of gzip, sent while the answer is read: the gateway
    // refuses it long before it is all sent.
    let gzip = ("content-encoding".to_owned(), "gzip".to_owned());
    let response = post_raw(&addr, "/api/v1", &[json, gzip], gzip_bomb()).await?;
    assert_eq!(response.status, 413);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = serde_json::from_slice(&response.body)?;
    assert_eq!(problem["type"], "urn:spartakus:problem:too-large");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("after decompression")),
        "{problem}"
    );

    let (peak, _) = gateway.memory()?;
    let grown = peak.saturating_sub(rss_before);
    eprintln!(
        "gateway RSS before {} MiB, peak {} MiB",
        rss_before / MIB,
        peak / MIB
    );
    // The decoded cap is 16 MiB; a bomb inflated in memory would add 1 GiB.
    assert!(grown < 128 * MIB, "memory grew by {} MiB", grown / MIB);
    let js = jetstream(&nats.url()).await;
    assert!(
        messages(&js, "BOMB").await.len() == 1,
        "only the warm-up report is stored"
    );
    Ok(())
}
