//! Slow requests from a real attack tool, Debian's `slowhttptest`, against the gateway binary
//! with the flags it is shipped with (`k8s/base/gateway/deployment.yaml`: the per-address rate
//! limit, the header and idle timeouts, the connection cap) in front of a real nats-server:
//!
//! - slow bodies (`-B`, "R-U-Dead-Yet"): 2,000 connections that send a head, then trickle the
//!   body a few bytes at a time;
//! - slow heads (`-H`, "Slowloris"): 8,000 connections that send a head one header line at a
//!   time and never finish it.
//!
//! Meanwhile an honest volunteer on another address (127.0.0.2: Linux routes all of 127/8 to
//! the loopback) posts a distinct report every half second, each on a new connection, and at
//! least 99 % of them must get 204.
//!
//! Each attack lasts 60 s, the time CI gives it; `SPARTAKUS_SLOW_ATTACK_SECS` shortens it for a
//! quick run by hand. The honest reports are distinct (another `timestamp`, hence another
//! reportID): JetStream would drop a repeated one as a duplicate.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use testenv::{Nats, PortSockets, Service};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::helpers::{TestResult, exclusive, launch, seed_at};

/// How long each attack lasts, unless `SPARTAKUS_SLOW_ATTACK_SECS` says otherwise.
const ATTACK_SECS: u64 = 60;

/// One honest report every this long.
const HONEST_EVERY: Duration = Duration::from_millis(500);

/// How long an honest volunteer waits for its answer: its own send deadline is minutes, but
/// a report that needs more than this while the gateway is attacked counts as turned away.
const HONEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags `k8s/base/gateway/deployment.yaml` sets that bear on these attacks; the rest
/// (body caps, timeouts for bodies, the memory budget) are the defaults it ships with too.
const SHIPPED: &[&str] = &[
    "--trust-forwarded-for",
    "--rate-limit-per-ip",
    "2",
    "--rate-limit-per-ip-burst",
    "1000",
    "--header-timeout",
    "10s",
    "--idle-timeout",
    "75s",
    "--max-connections",
    "1024",
];

fn attack_secs() -> u64 {
    std::env::var("SPARTAKUS_SLOW_ATTACK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ATTACK_SECS)
}

/// `slowhttptest` running against `url` with `args`, killed when dropped. It needs a
/// descriptor per connection: the soft open-file limit is raised to the hard one first.
fn slowhttptest(url: &str, args: &[&str]) -> Child {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            r#"ulimit -n "$(ulimit -Hn)" && exec slowhttptest "$@""#,
            "slowhttptest",
            "-u",
            url,
            // A report's media type: the gateway refuses any other before reading a body.
            "-f",
            "application/json",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command.spawn().unwrap_or_else(|e| {
        panic!("cannot run slowhttptest ({e}): install it (apt-get install slowhttptest)")
    })
}

/// What the honest volunteer saw.
#[derive(Debug, Default)]
struct Honest {
    sent: usize,
    accepted: usize,
    /// The other answers (status or error).
    refused: Vec<String>,
    /// The most connections the gateway held at once, sampled at each report.
    most_connections: usize,
}

/// Posts `count` distinct reports from 127.0.0.2, one every [`HONEST_EVERY`], each on its own
/// connection and without waiting for the previous answer.
async fn honest_volunteer(gateway: &Service, count: usize) -> Honest {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .pool_max_idle_per_host(0)
        .timeout(HONEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let url = format!("{}/api/v1", gateway.url());
    let port = gateway.addr().port();
    let mut honest = Honest::default();
    let mut posts = JoinSet::new();
    let mut pace = tokio::time::interval(HONEST_EVERY);
    for n in 0..count {
        pace.tick().await;
        if let Ok(sockets) = PortSockets::of(port) {
            honest.most_connections = honest.most_connections.max(sockets.accepted);
        }
        let request = http
            .post(&url)
            .header("content-type", "application/json")
            .body(seed_at(1_000_000 + n as u64));
        posts.spawn(async move {
            match request.send().await {
                Ok(response) if response.status() == 204 => Ok(()),
                Ok(response) => Err(format!("status {}", response.status())),
                Err(e) if e.is_timeout() => Err("timed out".to_owned()),
                Err(e) => Err(format!("error: {e}")),
            }
        });
        honest.sent += 1;
    }
    while let Some(outcome) = posts.join_next().await {
        match outcome.expect("an honest post panicked") {
            Ok(()) => honest.accepted += 1,
            Err(e) => honest.refused.push(e),
        }
    }
    honest
}

/// Runs slowhttptest with `args` for the attack's length while the honest volunteer posts;
/// asserts that at least 99 % of the honest reports got 204.
async fn under_attack(name: &str, mode: &str, args: &[&str]) -> TestResult {
    let _alone = exclusive().await;
    let secs = attack_secs();
    let nats = Nats::start().await?;
    let mut gateway = launch(&nats.url(), name).args(SHIPPED).start().await?;
    let url = format!("{}/api/v1", gateway.url());
    let length = secs.to_string();
    let mut all = vec![mode, "-l", &length];
    all.extend_from_slice(args);
    let mut attack = slowhttptest(&url, &all);

    let count = usize::try_from(secs * 1000 / HONEST_EVERY.as_millis() as u64)?;
    let honest = honest_volunteer(&gateway, count).await;
    let attacking = attack.try_wait()?.is_none();
    drop(attack);

    let metrics = reqwest::get(format!("{}/metrics", gateway.url()))
        .await?
        .text()
        .await?;
    let refusals: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("spartakus_gateway_rejections_total"))
        .collect();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for refused in &honest.refused {
        *kinds.entry(refused).or_default() += 1;
    }
    println!(
        "slowhttptest {mode} {args:?} for {secs} s: {} of {} honest reports got 204 ({:.1} %), \
         other answers {kinds:?}; at most {} connections held at once; still attacking at \
         the end: {attacking}; the gateway's refusals: {refusals:?}",
        honest.accepted,
        honest.sent,
        100.0 * honest.accepted as f64 / honest.sent as f64,
        honest.most_connections,
    );
    assert!(
        honest.accepted * 100 >= honest.sent * 99,
        "only {} of {} honest reports got 204; the others: {kinds:?}",
        honest.accepted,
        honest.sent,
    );
    assert!(gateway.is_running());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_from_2000_connections_leave_honest_reports_served() -> TestResult {
    // slowhttptest's own trickle (up to 32 bytes every 10 s into a 4,096-byte body), opened
    // 34 a second: new slow bodies keep coming for the whole minute (slowhttptest does not
    // open a closed connection again). The first 1,000 pass the shipped per-address burst.
    under_attack("SLOWBODY", "-B", &["-c", "2000", "-r", "34"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_from_8000_connections_leave_honest_reports_served() -> TestResult {
    // 8,000 slow heads opened 200 a second (all of them within the first 40 s), one more
    // header line every 10 s each.
    under_attack("SLOWHEAD8000", "-H", &["-c", "8000", "-r", "200"]).await
}
