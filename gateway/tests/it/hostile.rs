//! Hostile requests against the gateway binary and a real nats-server: every case of the corpus
//! in `tests/it/hostile/cases.json` gets its expected status and an RFC 9457 problem naming
//! the problem, never a 5xx; the gateway keeps answering; its memory stays bounded although the
//! corpus has a 1 GiB gzip bomb, 10 MB strings and a million-node array. Slow-loris bodies are
//! cut off by the request timeout while other clients are served.
//!
//! Cases are data: a body file in `tests/it/hostile/`, or the name of a generator below for
//! bodies too large to commit (the bomb is compressed on the fly and never touches the disk).
//!
//! The request timeout is measured on the wall clock: it runs in the gateway process, on its
//! own clock, which tokio's paused clock in this one cannot move.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use testenv::{Nats, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{SEED, TestResult, exclusive, gzip, gzip_bomb, launch, post_raw};
use crate::load::mib;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/hostile");

/// How much the gateway's peak resident set may grow over the whole corpus. Each request holds
/// at most `--max-decoded-bytes` (16 MiB) of body plus what decoding it costs; the bound leaves
/// room for the allocator keeping freed memory.
const MEMORY_GROWTH_BOUND: u64 = 128 << 20;

/// One hostile request and what the gateway must answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Defaults to `/api/v1`.
    #[serde(default)]
    route: Option<String>,
    /// A file in the corpus folder...
    #[serde(default)]
    body: Option<String>,
    /// ...or a generator's name (see [`generate`]).
    #[serde(default)]
    generator: Option<String>,
    /// `gzip`: compress the body before sending (the header is set separately, so that a lie
    /// can be told).
    #[serde(default)]
    encode: Option<String>,
    /// Headers to send; `null` removes a default (`content-type: application/json`).
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    status: u16,
    /// A substring of the problem's detail or of one of its `path: rule` errors.
    #[serde(default)]
    mentions: Option<String>,
    /// A known defect, still to be fixed, that makes this case cost more memory than
    /// [`MEMORY_GROWTH_BOUND`]. Such cases run last and must still exceed the bound: once the
    /// defect is fixed the test fails until the mark is removed.
    #[serde(default)]
    known_issue: Option<String>,
}

/// `n` bytes that do not compress (xorshift; no need for a real random source).
fn incompressible(n: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A valid report's prefix, to which a generator appends one hostile field and `}`.
const HEAD: &str = r#"{"version":"v1.0.0","clusterID":"2f9c93d3-156c-47aa-8802-578ffca9b50e""#;

fn generate(name: &str) -> Vec<u8> {
    let depth = 10_000;
    let mb10 = 10_000_000;
    match name {
        "seed" => SEED.as_bytes().to_vec(),
        "seed-gzip" => gzip(SEED.as_bytes()),
        "deep-arrays-10000" => format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
        "deep-nodes-10000" => format!(
            "{HEAD},\"nodes\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes(),
        "deep-objects-10000" => format!(
            "{HEAD},\"extensions\":[{{\"name\":\"a\",\"value\":{}1{}}}]}}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        )
        .into_bytes(),
        "string-10mb-cluster-id" => format!(
            r#"{{"version":"v1.0.0","clusterID":"{}"}}"#,
            "a".repeat(mb10)
        )
        .into_bytes(),
        "string-10mb-extension" => format!(
            r#"{HEAD},"extensions":[{{"name":"example.com/x","value":"{}"}}]}}"#,
            "x".repeat(mb10)
        )
        .into_bytes(),
        // Six bytes on the wire per character: 10 MB of body.
        "escapes-10mb-master-version" => format!(
            r#"{HEAD},"masterVersion":"{}"}}"#,
            r"\u0041".repeat(mb10 / 6)
        )
        .into_bytes(),
        "nodes-1000000" => {
            let nodes = vec![r#"{"id":"n"}"#; 1_000_000].join(",");
            format!(r#"{HEAD},"nodes":[{nodes}]}}"#).into_bytes()
        }
        "capacity-500000" => {
            let capacity = vec![r#"{"resource":"cpu","value":"1"}"#; 500_000].join(",");
            format!(r#"{HEAD},"nodes":[{{"id":"n","capacity":[{capacity}]}}]}}"#).into_bytes()
        }
        "extensions-500000" => {
            let extensions: Vec<String> = (0..500_000)
                .map(|i| format!(r#"{{"name":"e{i}","value":""}}"#))
                .collect();
            format!(r#"{HEAD},"extensions":[{}]}}"#, extensions.join(",")).into_bytes()
        }
        "spaces-17mib" => {
            let mut body = vec![b' '; 17 << 20];
            body.extend_from_slice(SEED.as_bytes());
            body
        }
        "random-5mib" => incompressible(5 << 20),
        "gzip-bomb-1gib" => gzip_bomb(),
        "seed-then-bomb" => {
            let mut body = gzip(SEED.as_bytes());
            body.extend(gzip_bomb());
            body
        }
        "seed-gzip-truncated" => {
            let full = gzip(SEED.as_bytes());
            full[..full.len() / 2].to_vec()
        }
        "seed-gzip-trailing-garbage" => {
            let mut body = gzip(SEED.as_bytes());
            body.extend_from_slice(b"garbage after the gzip member");
            body
        }
        other => panic!("unknown generator {other:?}"),
    }
}

fn body_of(case: &Case) -> Vec<u8> {
    let raw = match (&case.body, &case.generator) {
        (Some(file), None) => std::fs::read(Path::new(CORPUS).join(file))
            .unwrap_or_else(|e| panic!("{}: reading {file}: {e}", case.name)),
        (None, Some(generator)) => generate(generator),
        _ => panic!("{}: give exactly one of body and generator", case.name),
    };
    match case.encode.as_deref() {
        None => raw,
        Some("gzip") => gzip(&raw),
        Some(other) => panic!("{}: unknown encoding {other:?}", case.name),
    }
}

/// Sends `case` and returns what is wrong with the answer, if anything.
async fn check(addr: &str, case: &Case) -> Result<(), String> {
    let route = case.route.as_deref().unwrap_or("/api/v1");
    let mut headers = serde_json::Map::new();
    headers.insert("content-type".into(), "application/json".into());
    headers.extend(case.headers.clone());
    let mut send = Vec::new();
    for (name, value) in headers {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::String(v) => send.push((name, v)),
            other => return Err(format!("header {name}: {other} is not a string or null")),
        }
    }
    let response = post_raw(addr, route, &send, body_of(case)).await?;
    let status = response.status;
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let has_retry_after = response.header("retry-after").is_some();
    let text = String::from_utf8_lossy(&response.body).into_owned();
    if status >= 500 {
        return Err(format!("server error {status}: {text}"));
    }
    if status != case.status {
        return Err(format!("status {status}, expected {}: {text}", case.status));
    }
    if status < 400 {
        return Ok(());
    }
    if has_retry_after {
        return Err(format!("a client error with Retry-After: {text}"));
    }
    if content_type != "application/problem+json" {
        return Err(format!("content type {content_type:?}: {text}"));
    }
    let problem: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("problem is not JSON ({e}): {text}"))?;
    if problem["status"] != status
        || !problem["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:spartakus:problem:"))
    {
        return Err(format!("problem lacks its status or type: {text}"));
    }
    let mut said = vec![problem["detail"].as_str().unwrap_or("").to_owned()];
    for error in problem["errors"].as_array().into_iter().flatten() {
        said.push(format!(
            "{}: {}",
            error["path"].as_str().unwrap_or(""),
            error["rule"].as_str().unwrap_or("")
        ));
    }
    let mentions = case
        .mentions
        .as_deref()
        .ok_or("an error case must say what the problem mentions")?;
    if !said.iter().any(|s| s.contains(mentions)) {
        return Err(format!("problem does not mention {mentions:?}: {text}"));
    }
    Ok(())
}

#[tokio::test]
async fn every_hostile_request_gets_its_status_and_a_problem_naming_it_in_bounded_memory()
-> TestResult {
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(format!("{CORPUS}/cases.json"))?)?;
    assert!(cases.len() >= 50, "the corpus lost cases: {}", cases.len());

    let _alone = exclusive().await;
    let nats = Nats::start().await?;
    let mut gateway = launch(&nats.url(), "HOSTILE").start().await?;
    let http = reqwest::Client::new();
    let addr = gateway.addr().to_string();
    let (peak_before, _) = gateway.memory()?;

    let (bounded, known): (Vec<&Case>, Vec<&Case>) =
        cases.iter().partition(|c| c.known_issue.is_none());
    let mut failures = Vec::new();
    for case in &bounded {
        if let Err(e) = run_case(&mut gateway, &addr, case).await {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    let (peak_bounded, _) = gateway.memory()?;
    for case in &known {
        if let Err(e) = run_case(&mut gateway, &addr, case).await {
            failures.push(format!("{}: {e}", case.name));
        }
    }

    let healthz = http
        .get(format!("{}/healthz", gateway.url()))
        .send()
        .await?;
    assert_eq!(
        healthz.status(),
        200,
        "the gateway answers after the corpus"
    );
    let accepted = http
        .post(format!("{}/api/v1", gateway.url()))
        .header("content-type", "application/json")
        .body(generate("seed"))
        .send()
        .await?;
    assert_eq!(accepted.status(), 204, "the gateway still accepts reports");

    let (peak_after, rss_after) = gateway.memory()?;
    let growth = peak_bounded.saturating_sub(peak_before);
    println!(
        "peak RSS {:.1} MiB before the corpus, {:.1} MiB after it (growth {:.1} MiB, bound {:.0} MiB), \
         {:.1} MiB after the known issues; RSS now {:.1} MiB",
        mib(peak_before),
        mib(peak_bounded),
        mib(growth),
        mib(MEMORY_GROWTH_BOUND),
        mib(peak_after),
        mib(rss_after)
    );
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        growth < MEMORY_GROWTH_BOUND,
        "peak RSS grew by {:.1} MiB",
        mib(growth)
    );
    if !known.is_empty() {
        let with_known = peak_after.saturating_sub(peak_before);
        for case in &known {
            println!(
                "known issue, {}: {}",
                case.name,
                case.known_issue.as_deref().unwrap_or("")
            );
        }
        assert!(
            with_known >= MEMORY_GROWTH_BOUND,
            "the known issues stayed within the bound ({:.1} MiB): fixed? remove their known_issue",
            mib(with_known)
        );
    }
    Ok(())
}

/// Sends one case, prints how it went and the gateway's memory, and checks it is still alive.
async fn run_case(gateway: &mut Service, addr: &str, case: &Case) -> Result<(), String> {
    let started = Instant::now();
    let outcome = check(addr, case).await;
    assert!(gateway.is_running(), "the gateway died at {:?}", case.name);
    let (peak, rss) = gateway.memory().expect("the gateway's memory");
    println!(
        "{:<48} {:>6.2}s peak {:>6.1} MiB rss {:>6.1} MiB {}",
        case.name,
        started.elapsed().as_secs_f64(),
        mib(peak),
        mib(rss),
        outcome
            .as_ref()
            .map_or_else(|e| format!("FAIL: {e}"), |()| "ok".into())
    );
    outcome
}

/// Sends headers announcing `length` bytes of body, then one byte every `every` until the
/// connection closes or `length` is sent; returns the answer's status line, if any, and when
/// the connection was closed.
async fn slow_loris(addr: &str, length: usize, every: Duration) -> (Option<String>, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1 HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send headers");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..length {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    // The whole answer is small; keep reading until the server closes.
                    continue;
                }
            },
            () = tokio::time::sleep(every) => {
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
    }
    // Whatever is left of the answer, until the server closes (bounded by the deadline).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    (status_line, started.elapsed())
}

#[tokio::test]
async fn slow_loris_bodies_are_cut_off_by_the_request_timeout_while_others_are_served() -> TestResult
{
    let _alone = exclusive().await;
    let timeout = Duration::from_secs(2);
    let nats = Nats::start().await?;
    let mut gateway = launch(&nats.url(), "LORIS")
        .args(["--request-timeout", "2s"])
        .start()
        .await?;
    let http = reqwest::Client::new();
    let addr = gateway.addr().to_string();

    // Eight clients each sending one byte every 250 ms of a 10,000-byte body: without a
    // timeout they would hold their connection (and an in-flight slot) for 40 minutes.
    let lorises: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move { slow_loris(&addr, 10_000, Duration::from_millis(250)).await })
        })
        .collect();

    // Meanwhile an honest volunteer is served at once, again and again.
    let honest_until = Instant::now() + timeout;
    let mut served = 0;
    while Instant::now() < honest_until {
        let started = Instant::now();
        let response = http
            .post(format!("{}/api/v1", gateway.url()))
            .header("content-type", "application/json")
            .body(SEED)
            .send()
            .await?;
        assert_eq!(response.status(), 204);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "an honest report took {:?} during the slow-loris",
            started.elapsed()
        );
        served += 1;
    }
    assert!(served > 0);

    for loris in lorises {
        let (status_line, lasted) = loris.await?;
        println!("slow-loris: {status_line:?} after {lasted:?}");
        // 408 from the gateway, or the connection closed: either way, by the timeout plus slack.
        if let Some(line) = &status_line {
            assert!(
                line.starts_with("HTTP/1.1 408"),
                "slow-loris answered {line:?}"
            );
        }
        assert!(
            lasted < timeout + Duration::from_secs(5),
            "a slow-loris lasted {lasted:?}, the timeout is {timeout:?}"
        );
    }
    assert!(gateway.is_running());
    let healthz = http
        .get(format!("{}/healthz", gateway.url()))
        .send()
        .await?;
    assert_eq!(healthz.status(), 200);
    Ok(())
}
