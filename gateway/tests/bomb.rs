//! A gzip bomb is cut off at the decoded cap while it streams in. Alone in its own test binary so
//! that the process's memory measures this request only.

mod common;

use std::io::Write;

use common::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::StreamExt;
use testenv::Nats;

const MIB: u64 = 1 << 20;
/// What the bomb expands to.
const BOMB_BYTES: u64 = 1 << 30;

/// A `/proc/self/status` field in KiB, as bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .expect("status field")
}

/// 1 GiB of zeros, gzip-compressed on the fly one MiB at a time (about 1 MiB on the wire).
fn bomb() -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let zeros = vec![0u8; MIB as usize];
    let mut encoder = Some(GzEncoder::new(Vec::new(), Compression::best()));
    futures::stream::iter(0..=BOMB_BYTES / MIB).map(move |i| {
        let Some(enc) = encoder.as_mut() else {
            return Ok(Vec::new());
        };
        if i < BOMB_BYTES / MIB {
            enc.write_all(&zeros)?;
            Ok(std::mem::take(enc.get_mut()))
        } else {
            encoder.take().map_or(Ok(Vec::new()), |e| e.finish())
        }
    })
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_with_413_and_memory_stays_bounded() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "BOMB", |_| {}).await;
    // Warm up allocator and connection pool with one ordinary report.
    assert_eq!(gateway.post_v1(SEED).await.status(), 204);
    let rss_before = proc_status_bytes("VmRSS:");

    let response = gateway
        .http
        .post(format!("{}/api/v1", gateway.url))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(reqwest::Body::wrap_stream(bomb()))
        .send()
        .await?;
    assert_eq!(response.status(), 413);
    let problem = problem(response).await;
    assert_eq!(problem["type"], "urn:spartakus:problem:too-large");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("after decompression")),
        "{problem}"
    );

    let peak = proc_status_bytes("VmHWM:");
    let grown = peak.saturating_sub(rss_before);
    eprintln!(
        "RSS before {} MiB, peak {} MiB",
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
