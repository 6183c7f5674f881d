//! The server under test: `plumbing::serve::serve` in this process on 127.0.0.1:0, with a
//! router of three routes:
//!
//! - `GET /now` answers `ok` at once;
//! - `GET /held/{id}` says it is being handled ([`Server::handling`]) and answers `done` only
//!   once the test releases it ([`Server::release`]): a connection kept busy for as long as the
//!   test likes;
//! - `GET /peer` answers the peer address the route was given.
//!
//! The tests speak raw HTTP/1.1 over TCP, the way a slow or hostile client does, and read what
//! the kernel holds for the server's port from `/proc/net/tcp` (connections accepted, and
//! waiting in the listen backlog), so that they wait on the real state rather than on time.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::routing::get;
use plumbing::serve::Bounds;
pub(crate) use testenv::PortSockets;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any condition may take before a test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(10);

/// Slack on a timeout before a connection counts as outliving it: the machine running the
/// tests has two cores, shared with the other tests of this binary.
pub(crate) const SLACK: Duration = Duration::from_secs(3);

/// A timeout far beyond any test: a bound that must not be what closes a connection.
const NEVER: Duration = Duration::from_secs(600);

/// Bounds that close nothing within a test; each test shortens the one it is about.
pub(crate) const LOOSE: Bounds = Bounds {
    header_timeout: NEVER,
    idle_timeout: NEVER,
    max_connections: 1024,
};

/// Which held requests are being handled, and which the test has released.
#[derive(Default)]
struct Gate {
    handling: watch::Sender<BTreeSet<u32>>,
    released: watch::Sender<BTreeSet<u32>>,
}

/// `serve` running in this process.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    gate: Arc<Gate>,
}

impl Server {
    /// Binds 127.0.0.1:0 and serves the test router with `bounds` on it.
    pub(crate) async fn start(bounds: Bounds) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let gate = Arc::new(Gate::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(plumbing::serve::serve(
            listener,
            router(Arc::clone(&gate)),
            bounds,
            shutdown.clone(),
        ));
        Server {
            addr,
            shutdown,
            task,
            gate,
        }
    }

    /// Waits until the request held under `id` is being handled.
    pub(crate) async fn handling(&self, id: u32) {
        let mut handling = self.gate.handling.subscribe();
        tokio::time::timeout(DEADLINE, handling.wait_for(|ids| ids.contains(&id)))
            .await
            .unwrap_or_else(|_| panic!("the request held under {id} was never handled"))
            .expect("the gate lives as long as the server");
    }

    /// Lets the request held under `id` answer.
    pub(crate) fn release(&self, id: u32) {
        self.gate.released.send_modify(|ids| {
            ids.insert(id);
        });
    }

    /// Asks the server to shut down, without waiting for it.
    pub(crate) fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Whether `serve` has returned.
    pub(crate) fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until `serve` returns (after [`Server::shut_down`]).
    pub(crate) async fn stopped(self) {
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("serve returns once its connections are closed")
            .expect("serve does not panic");
    }

    /// What the kernel holds for the server's port now.
    pub(crate) fn sockets(&self) -> PortSockets {
        port_sockets(self.addr.port())
    }

    /// Polls the port's sockets until `condition` holds, failing after [`DEADLINE`].
    pub(crate) async fn wait_for_sockets(
        &self,
        what: &str,
        condition: impl Fn(PortSockets) -> bool,
    ) -> PortSockets {
        let end = Instant::now() + DEADLINE;
        let mut most = 0;
        loop {
            let sockets = self.sockets();
            most = most.max(sockets.accepted);
            if condition(sockets) {
                return sockets;
            }
            assert!(
                Instant::now() < end,
                "never {what}: last seen {sockets:?}, at most {most} accepted at once"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

fn router(gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/now", get(|| async { "ok\n" }))
        .route("/held/{id}", get(held))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .with_state(gate)
}

async fn held(State(gate): State<Arc<Gate>>, Path(id): Path<u32>) -> &'static str {
    let mut released = gate.released.subscribe();
    gate.handling.send_modify(|ids| {
        ids.insert(id);
    });
    // The sender lives in the gate this handler holds: it cannot be dropped meanwhile.
    let _ = released.wait_for(|ids| ids.contains(&id)).await;
    "done\n"
}

/// What the kernel says about `port`'s connections.
fn port_sockets(port: u16) -> PortSockets {
    PortSockets::of(port).unwrap_or_else(|e| panic!("{e}"))
}

/// A `GET path` head that asks the server to close the connection after its answer.
pub(crate) fn get_and_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
}

/// A `GET path` head on a connection kept alive.
pub(crate) fn get_keep_alive(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n")
}

/// Sends `head` on a new connection and reads the answer; the answer's head (lowercase) and
/// body, and how long it took from connecting.
pub(crate) async fn request(
    addr: SocketAddr,
    head: impl AsRef<str>,
) -> (String, Vec<u8>, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(head.as_ref().as_bytes())
        .await
        .expect("send head");
    let (head, body) = read_answer(&mut stream).await;
    (head, body, started.elapsed())
}

/// Reads one HTTP/1.1 answer with a `content-length` off `stream`; returns its head (lowercase)
/// and body.
pub(crate) async fn read_answer(stream: &mut TcpStream) -> (String, Vec<u8>) {
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

/// Waits until the server closes `stream`; returns what it sent meanwhile.
pub(crate) async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
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
    .expect("the server closed the connection in time");
    raw
}

/// A request to `/held/{id}` that the server is handling, and holds until
/// [`Server::release`].
pub(crate) struct Held {
    id: u32,
    stream: TcpStream,
}

impl Held {
    /// Opens a connection, sends the request and waits until it is being handled.
    pub(crate) async fn start(server: &Server, id: u32) -> Self {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(get_keep_alive(&format!("/held/{id}")).as_bytes())
            .await
            .expect("send head");
        server.handling(id).await;
        Held { id, stream }
    }

    /// Releases the request; the head of its answer, and the connection, kept alive.
    pub(crate) async fn finish(mut self, server: &Server) -> (String, TcpStream) {
        server.release(self.id);
        let (head, body) = read_answer(&mut self.stream).await;
        assert_eq!(body, b"done\n");
        (head, self.stream)
    }
}

/// How a slow-head connection ended.
#[derive(Debug)]
pub(crate) struct SlowHead {
    /// From connecting until the server closed the connection; `None` if it was still open
    /// when the client gave up.
    pub(crate) lasted: Option<Duration>,
    /// Bytes the server answered before closing.
    pub(crate) answered: usize,
}

/// Opens a connection and sends a request head one header line at a time, every `every`,
/// never finishing it, until the server closes the connection or `give_up` has passed.
pub(crate) async fn slow_head(addr: SocketAddr, every: Duration, give_up: Duration) -> SlowHead {
    // Before connecting: the server's clock starts when it accepts, which is after this.
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut answered = 0;
    let closed = |answered| SlowHead {
        lasted: Some(started.elapsed()),
        answered,
    };
    if stream
        .write_all(b"POST /now HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n")
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
