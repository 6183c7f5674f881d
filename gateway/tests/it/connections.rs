//! The gateway's connections are bounded by `plumbing::serve` (whose behaviour is tested in
//! plumbing, `plumbing/tests/it/serve.rs`). Here, against the gateway binary and a real
//! nats-server, what is the gateway's own: its flags reach the server (`--header-timeout`,
//! `--max-connections`, `--idle-timeout`), and under a thousand slow request heads honest
//! reports get 204 while the gateway's memory stays bounded.
//!
//! What the kernel holds for the gateway's port (accepted connections, the backlog) is read
//! from `/proc/net/tcp`, so that the tests wait on the real state rather than on time. The
//! timeouts themselves are measured on the wall clock: they run in the gateway process, on its
//! own clock, which tokio's paused clock in this one cannot move.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testenv::{Nats, PortSockets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{DEADLINE, TestResult, exclusive, launch, seed_at};
use crate::load::mib;

/// Slack on a timeout before a connection counts as outliving it: the machine running the
/// tests has two cores, and a thousand connections are being served at once.
const SLACK: Duration = Duration::from_secs(3);

/// The gateway binary with `args`, ready.
async fn start_gateway(nats: &Nats, name: &str, args: &[&str]) -> testenv::Service {
    launch(&nats.url(), name)
        .args(args)
        .start()
        .await
        .expect("the gateway starts")
}

/// An HTTP client that opens a new connection for every request, so that no idle pooled
/// connection takes one of the gateway's slots and every request goes through accept.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()
        .expect("HTTP client")
}

/// What the kernel says about `port`'s connections.
fn port_sockets(port: u16) -> PortSockets {
    PortSockets::of(port).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `port_sockets(port)` until `condition` holds, failing after [`DEADLINE`].
async fn wait_for_sockets(
    port: u16,
    what: &str,
    condition: impl Fn(PortSockets) -> bool,
) -> PortSockets {
    let seen = std::cell::Cell::new((port_sockets(port), 0));
    let (seen, condition) = (&seen, &condition);
    let held = testenv::try_eventually(DEADLINE, || async move {
        let sockets = port_sockets(port);
        let most = seen.get().1.max(sockets.accepted);
        seen.set((sockets, most));
        condition(sockets)
    })
    .await;
    let (sockets, most) = seen.get();
    if held.is_err() {
        panic!("never {what}: last seen {sockets:?}, at most {most} accepted at once");
    }
    sockets
}

/// How a slow-head connection ended.
#[derive(Debug)]
struct SlowHead {
    /// From connecting until the gateway closed the connection; `None` if it was still open
    /// when the client gave up.
    lasted: Option<Duration>,
    /// Bytes the gateway answered before closing.
    answered: usize,
}

/// Opens a connection and sends a request head one header line at a time, every `every`,
/// never finishing it, until the gateway closes the connection or `give_up` has passed.
async fn slow_head(addr: SocketAddr, every: Duration, give_up: Duration) -> SlowHead {
    // Before connecting: the gateway's clock starts when it accepts, which is after this.
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut answered = 0;
    let closed = |answered| SlowHead {
        lasted: Some(started.elapsed()),
        answered,
    };
    if stream
        .write_all(b"POST /api/v1 HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n")
        .await
        .is_err()
    {
        return closed(answered);
    }
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(every);
    let give_up_at = tokio::time::Instant::from_std(started + give_up);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return closed(answered),
                Ok(n) => answered += n,
            },
            _ = tick.tick() => {
                if stream.write_all(b"x-slow: still coming\r\n").await.is_err() {
                    return closed(answered);
                }
            }
            () = tokio::time::sleep_until(give_up_at) => {
                return SlowHead { lasted: None, answered };
            }
        }
    }
}

/// The number of connections the slow-head test opens: a thousand, or fewer when the open
/// file limit (shared by this process's sockets and, inherited, the gateway's) is lower.
fn slow_head_count() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let count = 1000.min(soft.saturating_sub(200) / 2);
    assert!(
        count >= 256,
        "the open file limit ({soft}) leaves room for only {count} connections; raise `ulimit -n`"
    );
    count
}

/// What the gateway may hold in memory per slow-head connection: at most its largest read
/// buffer (64 KiB; a head is capped at 16 KiB). Measured: about 32 KiB per connection in a
/// debug build (the buffer, hyper's connection state, the task), honest reports included.
const MEMORY_PER_CONNECTION: u64 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_closed_by_the_header_timeout_while_reports_get_204_in_bounded_memory()
-> TestResult {
    let _alone = exclusive().await;
    // Long enough that every slow head is open at once although a thousand connect together
    // (a dropped SYN is sent again after a second).
    let header_timeout = Duration::from_secs(5);
    let count = slow_head_count();
    let nats = Nats::start().await?;
    let mut gateway = start_gateway(
        &nats,
        "SLOWHEAD",
        &["--header-timeout", "5s", "--max-connections", "4096"],
    )
    .await;
    let http = fresh_connections();
    let addr = gateway.addr();
    let (peak_before, _) = gateway.memory()?;

    let heads: Vec<_> = (0..count)
        .map(|_| {
            tokio::spawn(slow_head(
                addr,
                Duration::from_millis(250),
                header_timeout + SLACK,
            ))
        })
        .collect();
    // The gateway holds them all (and then closes them): not refused, not queued.
    wait_for_sockets(addr.port(), "held every slow head", |s| s.accepted >= count).await;

    // Meanwhile honest volunteers, each on a new connection, are served at once: one every
    // 10 ms until the slow heads are gone (at most `header_timeout + SLACK`).
    let mut served = 0u64;
    let mut slowest = Duration::ZERO;
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    while heads.iter().any(|h| !h.is_finished()) {
        pace.tick().await;
        let started = Instant::now();
        let response = http
            .post(format!("{}/api/v1", gateway.url()))
            .header("content-type", "application/json")
            .body(seed_at(served))
            .send()
            .await?;
        assert_eq!(response.status(), 204);
        slowest = slowest.max(started.elapsed());
        served += 1;
    }
    let mut lasted = Vec::new();
    for head in heads {
        let head = head.await?;
        assert_eq!(head.answered, 0, "a slow head got an answer");
        let Some(took) = head.lasted else {
            panic!("a slow head was still open {SLACK:?} after the header timeout");
        };
        lasted.push(took);
    }
    lasted.sort();
    let (peak_after, rss_after) = gateway.memory()?;
    let growth = peak_after.saturating_sub(peak_before);
    let bound = MEMORY_PER_CONNECTION * count as u64;
    println!(
        "{count} slow heads closed after {:?}..{:?} (header timeout {header_timeout:?}); \
         {served} honest reports got 204, slowest {slowest:?}; peak RSS {:.1} -> {:.1} MiB \
         (growth {:.1} MiB, bound {:.1} MiB), RSS now {:.1} MiB",
        lasted[0],
        lasted[count - 1],
        mib(peak_before),
        mib(peak_after),
        mib(growth),
        mib(bound),
        mib(rss_after),
    );
    assert!(
        lasted[0] >= header_timeout,
        "a slow head was closed before the header timeout, after {:?}",
        lasted[0]
    );
    assert!(served > 0, "no honest report was sent during the attack");
    assert!(
        slowest < Duration::from_secs(1),
        "an honest report took {slowest:?}"
    );
    assert!(growth < bound, "peak RSS grew by {:.1} MiB", mib(growth));
    wait_for_sockets(addr.port(), "closed the slow heads", |s| s.accepted == 0).await;
    assert!(gateway.is_running());
    Ok(())
}

#[tokio::test]
async fn the_connection_cap_and_the_idle_timeout_are_the_flags() -> TestResult {
    let _alone = exclusive().await;
    let idle_timeout = Duration::from_secs(1);
    let nats = Nats::start().await?;
    // A header timeout far beyond the test: only making room can close the slow head here.
    let mut gateway = start_gateway(
        &nats,
        "FLAGS",
        &[
            "--max-connections",
            "1",
            "--idle-timeout",
            "1s",
            "--header-timeout",
            "60s",
        ],
    )
    .await;
    let http = fresh_connections();
    let addr = gateway.addr();
    wait_for_sockets(addr.port(), "closed the readiness checks", |s| {
        s.accepted == 0
    })
    .await;

    // At a cap of one (the default is 1024), a report closes the one slow head and is served.
    let head = tokio::spawn(slow_head(addr, Duration::from_millis(250), DEADLINE));
    wait_for_sockets(addr.port(), "accepted the slow head", |s| s.accepted == 1).await;
    let started = Instant::now();
    let response = http
        .post(format!("{}/api/v1", gateway.url()))
        .header("content-type", "application/json")
        .body(seed_at(1))
        .send()
        .await?;
    assert_eq!(response.status(), 204);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the report waited {took:?}");
    let head = head.await?;
    assert!(head.lasted.is_some(), "the slow head was not closed");
    assert_eq!(head.answered, 0);

    // A kept-alive connection is closed after a second idle (the default is 75 s).
    let mut stream = TcpStream::connect(addr).await?;
    let report = seed_at(2);
    let request = format!(
        "POST /api/v1 HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{report}",
        report.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let (head, _) = read_answer(&mut stream).await;
    assert!(head.starts_with("http/1.1 204"), "{head}");
    let answered = Instant::now();
    let after = read_until_closed(&mut stream).await;
    let idle = answered.elapsed();
    println!("idle connection closed {idle:?} after its answer");
    assert!(after.is_empty(), "sent {after:?} before closing");
    assert!(
        idle >= idle_timeout - Duration::from_millis(50),
        "closed after {idle:?}"
    );
    assert!(idle < idle_timeout + SLACK, "closed only after {idle:?}");
    assert!(gateway.is_running());
    Ok(())
}

/// Reads one HTTP/1.1 answer with a `content-length` off `stream`; returns its head and body.
async fn read_answer(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("a content-length"));
                if raw.len() >= end + 4 + length {
                    let body = raw[end + 4..end + 4 + length].to_vec();
                    raw.drain(..end + 4 + length);
                    assert!(raw.is_empty(), "bytes after the answer");
                    return (head, body);
                }
            }
            let n = stream.read(&mut buf).await.expect("read the answer");
            assert!(n > 0, "closed before a whole answer: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    read.expect("an answer in time")
}

/// Waits until the gateway closes `stream`; returns what it sent meanwhile.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the gateway closed the connection in time");
    raw
}
