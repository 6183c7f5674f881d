//! `plumbing::serve::serve` bounds every connection: slow request heads are closed by the header
//! timeout without an answer while other clients are served at once; an idle keep-alive
//! connection is closed by the idle timeout; a head begun on a kept-alive connection has the
//! header timeout from its first byte; a request being handled has neither clock; at the
//! connection cap a new connection closes the oldest slow head (or else the connection idle
//! longest) and is served at once, or, when every connection is handling a request, waits
//! until one finishes; HTTP/2 is not served; a head too large gets 431; routes see the peer
//! address; a shutdown refuses new connections, closes idle ones and lets requests in flight
//! answer.
//!
//! The timeouts are measured on the wall clock: the server does real I/O on loopback, and
//! tokio's paused clock would jump to the next deadline whenever the runtime waits for the
//! kernel, closing connections whose bytes are on their way. Each timeout is short, and every
//! wait for one is bounded by [`DEADLINE`] or the timeout plus [`SLACK`].

use std::time::{Duration, Instant};

use plumbing::serve::Bounds;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::server::{
    DEADLINE, Held, LOOSE, SLACK, Server, get_and_close, get_keep_alive, read_answer,
    read_until_closed, request, slow_head,
};

/// How long an answer may take when the server has room for it (it is in this process, on a
/// machine of two cores).
const AT_ONCE: Duration = Duration::from_secs(1);

/// A lower bound on when a timeout closes a connection, measured by a client that started its
/// clock a little after the server did (once it had read an answer, or sent bytes).
fn not_before(timeout: Duration) -> Duration {
    timeout - Duration::from_millis(50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_closed_by_the_header_timeout_without_an_answer_while_other_requests_are_served_at_once()
 {
    const COUNT: usize = 100;
    // Long enough that every slow head is open at once before the first is closed.
    let header_timeout = Duration::from_secs(2);
    let server = Server::start(Bounds {
        header_timeout,
        ..LOOSE
    })
    .await;

    let heads: Vec<_> = (0..COUNT)
        .map(|_| {
            tokio::spawn(slow_head(
                server.addr,
                Duration::from_millis(250),
                header_timeout + SLACK,
            ))
        })
        .collect();
    // The server holds them all (and then closes them): not refused, not queued.
    server
        .wait_for_sockets("held every slow head", |s| s.accepted >= COUNT)
        .await;

    // Meanwhile other clients, each on a new connection, are served at once: one every 10 ms
    // until the slow heads are gone, which takes the header timeout (each slow head gives up
    // `SLACK` after it).
    let mut served = 0u64;
    let mut slowest = Duration::ZERO;
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    while heads.iter().any(|h| !h.is_finished()) {
        pace.tick().await;
        let (head, body, took) = request(server.addr, get_and_close("/now")).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, b"ok\n");
        slowest = slowest.max(took);
        served += 1;
    }
    let mut lasted = Vec::new();
    for head in heads {
        let head = head.await.expect("the slow head's task");
        assert_eq!(head.answered, 0, "a slow head got an answer");
        let Some(took) = head.lasted else {
            panic!("a slow head was still open {SLACK:?} after the header timeout");
        };
        lasted.push(took);
    }
    lasted.sort();
    println!(
        "{COUNT} slow heads closed after {:?}..{:?} (header timeout {header_timeout:?}); \
         {served} other requests answered, slowest {slowest:?}",
        lasted[0],
        lasted[COUNT - 1],
    );
    assert!(
        lasted[0] >= header_timeout,
        "a slow head was closed before the header timeout, after {:?}",
        lasted[0]
    );
    assert!(
        served > 0,
        "no other request was sent during the slow heads"
    );
    assert!(slowest < AT_ONCE, "a request took {slowest:?}");
    server
        .wait_for_sockets("closed the slow heads", |s| s.accepted == 0)
        .await;
    assert!(!server.has_stopped());
}

#[tokio::test]
async fn at_the_connection_cap_a_new_connection_closes_the_oldest_slow_head_and_is_served_at_once()
{
    const CAP: usize = 4;
    // No timeout within the test: only making room can close a slow head here.
    let server = Server::start(Bounds {
        max_connections: CAP,
        ..LOOSE
    })
    .await;

    // Fill every slot with a head that never ends, one after the other, so that the first is
    // the oldest.
    let mut heads = Vec::new();
    for opened in 1..=CAP {
        heads.push(tokio::spawn(slow_head(
            server.addr,
            Duration::from_millis(250),
            DEADLINE,
        )));
        server
            .wait_for_sockets("accepted the slow head", |s| s.accepted == opened)
            .await;
    }

    let (head, body, took) = request(server.addr, get_and_close("/now")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ok\n");
    println!("cap {CAP}, every slot a slow head: a request was answered in {took:?}");
    assert!(took < AT_ONCE, "the request waited {took:?} at the cap");

    // The oldest slow head made room, and only it.
    let oldest = heads.remove(0).await.expect("the slow head's task");
    let lasted = oldest.lasted.expect("the oldest slow head was closed");
    assert!(lasted < DEADLINE, "{lasted:?}");
    assert_eq!(oldest.answered, 0);
    server
        .wait_for_sockets("closed the request's connection", |s| s.accepted == CAP - 1)
        .await;
    assert!(
        heads.iter().all(|h| !h.is_finished()),
        "more than the oldest slow head was closed"
    );
    for head in heads {
        head.abort();
    }
}

/// A connection that has had one answer and is kept alive, idle.
async fn idle_connection(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(get_keep_alive("/now").as_bytes())
        .await
        .expect("send head");
    let (head, _) = read_answer(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    stream
}

#[tokio::test]
async fn at_the_connection_cap_a_slow_head_is_closed_before_an_idle_connection_and_then_the_one_idle_longest()
 {
    const CAP: usize = 3;
    let server = Server::start(Bounds {
        max_connections: CAP,
        ..LOOSE
    })
    .await;

    // Two idle connections, then the newest connection a slow head: the slow head goes first.
    let mut oldest_idle = idle_connection(&server).await;
    let mut idle = idle_connection(&server).await;
    let slow = tokio::spawn(slow_head(server.addr, Duration::from_millis(250), DEADLINE));
    server
        .wait_for_sockets("accepted the slow head", |s| s.accepted == CAP)
        .await;
    let started = Instant::now();
    let mut newest_idle = idle_connection(&server).await;
    let took = started.elapsed();
    assert!(took < AT_ONCE, "the request waited {took:?} at the cap");
    let slow = slow.await.expect("the slow head's task");
    assert!(slow.lasted.is_some(), "the slow head was not closed");
    assert_eq!(slow.answered, 0);

    // Every connection idle (the one just answered kept alive too): the one idle longest goes.
    let (head, _, took) = request(server.addr, get_and_close("/now")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(took < AT_ONCE, "the request waited {took:?} at the cap");
    assert!(
        read_until_closed(&mut oldest_idle).await.is_empty(),
        "the closed idle connection got more than its answer"
    );

    // The two others were kept: each is answered again.
    for stream in [&mut idle, &mut newest_idle] {
        stream
            .write_all(get_keep_alive("/now").as_bytes())
            .await
            .expect("send head");
        let (head, body) = read_answer(stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, b"ok\n");
    }
}

#[tokio::test]
async fn at_the_connection_cap_with_every_connection_busy_new_ones_wait_until_one_is_done() {
    const CAP: usize = 2;
    let server = Server::start(Bounds {
        max_connections: CAP,
        ..LOOSE
    })
    .await;

    let mut held = Vec::new();
    for id in 0..CAP {
        held.push(Held::start(&server, id as u32).await);
    }
    // Two more requests. No connection can make room: the first is accepted and waits for a
    // slot, the second waits in the listen backlog.
    let first = tokio::spawn(request(server.addr, get_and_close("/now")));
    server
        .wait_for_sockets("accepted the first waiting request", |s| {
            s.accepted == CAP + 1
        })
        .await;
    let second = tokio::spawn(request(server.addr, get_and_close("/now")));
    let waiting = server
        .wait_for_sockets("queued the second request", |s| s.backlog == 1)
        .await;
    assert_eq!(waiting.accepted, CAP + 1, "{waiting:?}");
    assert!(
        !first.is_finished() && !second.is_finished(),
        "a request was answered while every connection was busy"
    );

    // One busy request is answered and its connection kept alive: now idle, it makes room for
    // the waiting requests, which are served in turn.
    let (status, mut idle) = held.remove(0).finish(&server).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert!(
        read_until_closed(&mut idle).await.is_empty(),
        "the idle connection got more than its answer"
    );
    for (name, waiting) in [("first", first), ("second", second)] {
        let (head, body, _) = waiting.await.expect("the waiting request's task");
        assert!(head.starts_with("http/1.1 200"), "the {name}: {head}");
        assert_eq!(body, b"ok\n", "the {name}");
    }
    // A connection handling a request is never closed to make room.
    for request in held {
        let (status, _) = request.finish(&server).await;
        assert!(status.starts_with("http/1.1 200"), "{status}");
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_millis(500);
    let server = Server::start(Bounds {
        idle_timeout,
        ..LOOSE
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    // Two requests on one connection: it is kept alive between them.
    for _ in 0..2 {
        stream
            .write_all(get_keep_alive("/now").as_bytes())
            .await
            .expect("send head");
        let (head, _) = read_answer(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    let answered = Instant::now();
    // The idle timeout has to pass: bounded by `DEADLINE`.
    let after = read_until_closed(&mut stream).await;
    let idle = answered.elapsed();
    println!("idle connection closed {idle:?} after its last answer");
    assert!(after.is_empty(), "sent {after:?} before closing");
    // Not before the idle timeout, and long before the header timeout: it is the idle clock
    // that closed it.
    assert!(idle >= not_before(idle_timeout), "closed after {idle:?}");
    assert!(idle < idle_timeout + SLACK, "closed only after {idle:?}");
}

#[tokio::test]
async fn a_head_begun_on_a_kept_alive_connection_has_the_header_timeout_from_its_first_byte() {
    let header_timeout = Duration::from_millis(500);
    let server = Server::start(Bounds {
        header_timeout,
        ..LOOSE
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(get_keep_alive("/now").as_bytes())
        .await
        .expect("send head");
    let (head, body) = read_answer(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ok\n");
    // The next request begins but never ends: the idle clock (never) stops, the head clock
    // runs.
    stream
        .write_all(b"GET /now HTTP/1.1\r\nhost: te")
        .await
        .expect("send half a head");
    let started = Instant::now();
    // The header timeout has to pass: bounded by `DEADLINE`.
    let after = read_until_closed(&mut stream).await;
    let lasted = started.elapsed();
    println!("unfinished head closed after {lasted:?}");
    assert!(after.is_empty(), "sent {after:?} before closing");
    assert!(
        lasted >= not_before(header_timeout),
        "closed after {lasted:?}"
    );
    assert!(
        lasted < header_timeout + SLACK,
        "closed only after {lasted:?}"
    );
}

#[tokio::test]
async fn a_request_being_handled_is_bounded_by_neither_the_header_nor_the_idle_timeout() {
    let timeout = Duration::from_millis(300);
    let server = Server::start(Bounds {
        header_timeout: timeout,
        idle_timeout: timeout,
        ..LOOSE
    })
    .await;
    let held = Held::start(&server, 1).await;
    // A slow head accepted after the held request was handled is closed by the header timeout:
    // by then both clocks would have run out for the held request too.
    let slow = slow_head(server.addr, Duration::from_millis(100), DEADLINE).await;
    assert!(slow.lasted.is_some(), "the slow head was not closed");
    let (status, _) = held.finish(&server).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
}

/// The HTTP/2 connection preface and an empty SETTINGS frame: what an h2c client with prior
/// knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn http2_is_not_served_prior_knowledge_is_closed_and_an_h2c_upgrade_is_answered_in_http1() {
    let server = Server::start(LOOSE).await;

    // Prior knowledge: no SETTINGS back, no HTTP/1.1 answer, the connection closed at once
    // (long before the header timeout).
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    stream.write_all(H2_PREFACE).await.expect("send preface");
    let answer = read_until_closed(&mut stream).await;
    let closed_after = started.elapsed();
    println!(
        "HTTP/2 prior knowledge: {} bytes back, closed after {closed_after:?}",
        answer.len()
    );
    assert!(
        answer.is_empty(),
        "answered the HTTP/2 preface with {answer:?}"
    );
    assert!(closed_after < AT_ONCE, "closed after {closed_after:?}");

    // An upgrade request is answered as the HTTP/1.1 request it also is.
    let (head, body, _) = request(
        server.addr,
        "GET /now HTTP/1.1\r\nhost: test\r\nconnection: Upgrade, HTTP2-Settings\r\n\
         upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("upgrade"), "{head}");
    assert_eq!(body, b"ok\n");

    let (head, _, _) = request(server.addr, get_and_close("/now")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

#[tokio::test]
async fn a_request_head_larger_than_16_kib_gets_431_and_the_connection_is_closed() {
    let server = Server::start(LOOSE).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "GET /now HTTP/1.1\r\nhost: test\r\nx-large: {}\r\n\r\n",
        "a".repeat(16 << 10)
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let (answer, _) = read_answer(&mut stream).await;
    assert!(answer.starts_with("http/1.1 431"), "{answer}");
    assert!(read_until_closed(&mut stream).await.is_empty());

    // A head just under the cap is served.
    let head = format!(
        "GET /now HTTP/1.1\r\nhost: test\r\nconnection: close\r\nx-large: {}\r\n\r\n",
        "a".repeat(15 << 10)
    );
    let (answer, _, _) = request(server.addr, head).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_route_is_given_the_peer_address_of_its_connection() {
    let server = Server::start(LOOSE).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let client = stream.local_addr().expect("local addr");
    stream
        .write_all(get_and_close("/peer").as_bytes())
        .await
        .expect("send head");
    let (head, body) = read_answer(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(String::from_utf8_lossy(&body), client.to_string());
}

#[tokio::test]
async fn at_shutdown_new_connections_are_refused_idle_ones_closed_and_requests_in_flight_answered()
{
    let server = Server::start(LOOSE).await;
    let held = Held::start(&server, 1).await;
    let mut idle = idle_connection(&server).await;

    server.shut_down();
    assert!(
        read_until_closed(&mut idle).await.is_empty(),
        "the idle connection got more than its answer"
    );
    // The listener is closed: a connection made before `serve` saw the shutdown is reset
    // with the listener, and then every new one is refused.
    let end = Instant::now() + DEADLINE;
    while TcpStream::connect(server.addr).await.is_ok() {
        assert!(Instant::now() < end, "new connections still accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !server.has_stopped(),
        "serve returned with a request in flight"
    );

    let (status, mut stream) = held.finish(&server).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert!(
        read_until_closed(&mut stream).await.is_empty(),
        "the drained connection got more than its answer"
    );
    server.stopped().await;
}
