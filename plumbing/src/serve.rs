//! Serving the router over HTTP/1.1 with every connection bounded: a deadline for each request
//! head, a deadline for an idle keep-alive connection, and a cap on open connections.
//!
//! `axum::serve` has none of these, so a client that opens connections and never finishes their
//! headers holds each one (and its buffers) for as long as it likes. Here:
//!
//! - A connection has `header_timeout` to deliver a request head (request line and headers):
//!   counted from accepting it for the first request, and from the first byte of each later one.
//! - Between an answer and the first byte of the next request, a keep-alive connection may wait
//!   `idle_timeout`.
//! - While a request is being handled (its body, the handler, its answer) these clocks stop:
//!   the routes bound the rest (the gateway: `--request-timeout` for a body, `--publish-timeout`).
//! - At most `max_connections` are served at once. A new connection at the cap makes room: the
//!   connection that has waited longest for a request head is closed, or, if none is receiving
//!   a head, the one idle longest. A connection handling a request is never closed for room;
//!   when all of them are, the new connection waits (and the ones after it wait in the
//!   kernel's listen backlog) until one finishes. Slow heads are what an attacker holds
//!   connections with, and an honest client's head arrives in one segment, so the attacker's
//!   connections make room for honest ones rather than honest ones waiting behind them.
//!   Refusing at the cap would turn the attack into errors for honest clients instead.
//!
//! hyper's own `header_read_timeout` is not used: it starts when the server begins waiting for
//! a head, so on a keep-alive connection it also counts the idle time and the two bounds
//! could not be set apart. Both clocks live in `Bounded`, the connection's I/O.
//!
//! Only HTTP/1.1 is served. Volunteers speak HTTP/1.1 to a plaintext gateway (HTTP/2 needs TLS
//! and ALPN, which end at the Ingress), and ingress controllers proxy to their backends in
//! HTTP/1.1. HTTP/2 without TLS (h2c) would need bounds of its own (streams per connection,
//! reset floods, pings, window sizes) for no client that uses it. A client that starts with the
//! HTTP/2 preface has its connection closed without an answer; `Upgrade: h2c` is ignored.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use futures::task::AtomicWaker;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// The largest request head (request line and headers); a larger one gets 431. Volunteers send
/// a few hundred bytes, an ingress controller adds its `X-Forwarded-*` headers.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// The largest read buffer of one connection. hyper's default (about 400 KB) would let every
/// connection at the cap hold that much; bodies stream through in frames of this size.
const MAX_READ_BUFFER: usize = 64 << 10;

/// Connections the kernel completes before they are accepted: a burst (volunteers' CronJobs on
/// one schedule) lands there, and so do new connections while every connection is busy. The
/// standard library listens with 128; the kernel caps this at `net.core.somaxconn`.
const BACKLOG: i32 = 1024;

/// After an accept error that is not about one connection (e.g. out of file descriptors), how
/// long to wait before accepting again, so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The bounds on connections (the gateway's `--header-timeout`, `--idle-timeout` and
/// `--max-connections`).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Time a connection has to deliver a request head.
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// Accepts connections on `listener` and serves `router` on each until `shutdown` is
/// cancelled; then closes the listener (new connections are refused), lets every connection
/// finish the request it is handling, and returns once all are closed.
///
/// Dropping the returned future (when the drain deadline passes) aborts the connections still
/// open.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    bounds: Bounds,
    shutdown: CancellationToken,
) {
    // Listening again on a listening socket only resizes its backlog.
    if let Err(e) = socket2::SockRef::from(&listener).listen(BACKLOG) {
        tracing::warn!(error = %e, "cannot resize the listen backlog; keeping the default");
    }
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let open = Arc::new(Open::default());
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_READ_BUFFER);
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(ended) = connections.join_next() => {
                log_panic(ended);
                continue;
            }
            accepted = accept(&listener) => accepted,
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // The closed connection's slot, or, when every connection is handling a
                // request, the first one to finish or to start waiting for its client.
                // Meanwhile new connections wait in the listen backlog.
                open.make_room();
                loop {
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return drain(listener, connections).await,
                        slot = Arc::clone(&slots).acquire_owned() => {
                            // The semaphore is local to `serve`, which never closes it.
                            break slot.expect("the connection semaphore is never closed");
                        }
                        () = open.waiting.notified() => open.make_room(),
                    }
                }
            }
        };
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            bounds,
            shutdown: shutdown.clone(),
            progress: open.register(),
            _slot: slot,
        };
        connections.spawn(connection.serve(stream, peer));
    }
    drain(listener, connections).await;
}

/// Closes the listener (new connections are refused from here on) and waits until every
/// connection has finished.
async fn drain(listener: TcpListener, mut connections: JoinSet<()>) {
    drop(listener);
    tracing::debug!(
        open = connections.len(),
        "listener closed; finishing the connections' requests"
    );
    while let Some(ended) = connections.join_next().await {
        log_panic(ended);
    }
}

/// The next connection; errors about a single connection are skipped, others (e.g. out of
/// file descriptors) logged and retried after a pause.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            // The client went away before we accepted it.
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::warn!(error = %e, "accepting connections failed; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!(error = %e, "a connection task panicked");
    }
}

/// What one connection task needs; holds its slot and its place among the open connections
/// for as long as it lives.
struct Connection {
    builder: http1::Builder,
    router: Router,
    bounds: Bounds,
    shutdown: CancellationToken,
    progress: Registered,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let progress = Arc::clone(&self.progress.progress);
        let io = TokioIo::new(Bounded::new(stream, Arc::clone(&progress), self.bounds));
        let app = TowerToHyperService::new(self.router);
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // The routes key the per-IP rate limit on the peer address.
            request.extensions_mut().insert(ConnectInfo(peer));
            let answering = Answering::start(Arc::clone(&progress));
            let response = hyper::service::Service::call(&app, request);
            async move {
                let response: Response<axum::body::Body> = response.await?;
                Ok::<_, Infallible>(response.map(|body| Answer {
                    body,
                    _answering: answering,
                }))
            }
        });
        let connection = self.builder.serve_connection(io, service);
        tokio::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = self.shutdown.cancelled() => {
                // Closes an idle connection at once; a busy one after its answer.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = served {
            // Timeouts, clients going away, malformed heads: routine on a public server.
            tracing::debug!(error = %e, "connection closed");
        }
    }
}

/// The open connections, so that at the cap the one to close can be found.
#[derive(Debug)]
struct Open {
    connections: Mutex<HashMap<u64, Arc<Progress>>>,
    /// Notified when a connection starts waiting for its client (see [`Progress::stalled`]),
    /// so that a new connection held at the cap can make room then.
    waiting: Arc<Notify>,
    next_id: AtomicU64,
    /// What the connections' clocks count from, to compare them as numbers.
    epoch: Instant,
}

impl Default for Open {
    fn default() -> Self {
        Open {
            connections: Mutex::default(),
            waiting: Arc::new(Notify::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Open {
    /// A new connection, receiving its first head from now on.
    fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(Progress {
            handling: AtomicUsize::new(0),
            waker: AtomicWaker::new(),
            phase: AtomicU8::new(Phase::Head as u8),
            since: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            close: AtomicBool::new(false),
            waiting: Arc::clone(&self.waiting),
            epoch: self.epoch,
        });
        progress.entered(Phase::Head);
        self.lock().insert(id, Arc::clone(&progress));
        Registered {
            open: Arc::clone(self),
            id,
            progress,
        }
    }

    /// Asks the connection that has waited longest for its client to finish a request head,
    /// or else the one idle longest, to close. Does nothing when every connection is handling
    /// a request (or was accepted a moment ago and has not read its socket yet).
    fn make_room(&self) {
        let open = self.lock();
        let oldest = open
            .values()
            .filter_map(|p| {
                p.waiting()
                    .map(|(phase, since)| (phase != Phase::Head, since, p))
            })
            .min_by_key(|&(idle, since, _)| (idle, since));
        if let Some((_, _, progress)) = oldest {
            progress.close.store(true, Ordering::Release);
            progress.waker.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Progress>>> {
        // The map stays consistent whatever panicked while holding it: one insert or remove.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's entry among the open ones, removed when the connection ends.
struct Registered {
    open: Arc<Open>,
    id: u64,
    progress: Arc<Progress>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

/// What a connection's I/O and the rest of the server need to know of each other: how many
/// requests are being handled (head parsed, answer not yet sent), the task to wake when an
/// answer is done (so that the idle clock starts) or when the connection is asked to close,
/// and the phase the I/O is in and since when.
#[derive(Debug)]
struct Progress {
    handling: AtomicUsize,
    waker: AtomicWaker,
    phase: AtomicU8,
    /// Nanoseconds from `epoch` to entering the phase.
    since: AtomicU64,
    /// In this phase the I/O has read all there was and found no complete head: the client is
    /// the one keeping the connection waiting. A connection accepted a moment ago, whose head
    /// may be sitting unread in the socket, is not (yet).
    stalled: AtomicBool,
    /// Set to make room at the cap: close unless handling a request.
    close: AtomicBool,
    /// [`Open::waiting`].
    waiting: Arc<Notify>,
    epoch: Instant,
}

impl Progress {
    fn entered(&self, phase: Phase) {
        let since = Instant::now().saturating_duration_since(self.epoch);
        self.since.store(
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        self.stalled.store(false, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn is_handling(&self) -> bool {
        self.handling.load(Ordering::Acquire) > 0
    }

    /// The phase and its start, when the connection is waiting for its client to send a head
    /// or idle.
    fn waiting(&self) -> Option<(Phase, u64)> {
        if self.is_handling() || !self.stalled.load(Ordering::Acquire) {
            return None;
        }
        let phase = match self.phase.load(Ordering::Acquire) {
            p if p == Phase::Head as u8 => Phase::Head,
            p if p == Phase::Idle as u8 => Phase::Idle,
            // Answered a moment ago; the I/O is about to start the idle clock.
            _ => return None,
        };
        Some((phase, self.since.load(Ordering::Acquire)))
    }
}

/// One request being handled, from its parsed head until its answer's body is dropped (sent,
/// or abandoned with the connection).
struct Answering(Arc<Progress>);

impl Answering {
    fn start(progress: Arc<Progress>) -> Self {
        progress.handling.fetch_add(1, Ordering::AcqRel);
        Answering(progress)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::AcqRel);
        // hyper reads again after an answer only when woken; the read starts the idle clock.
        self.0.waker.wake();
    }
}

/// An answer's body, marking the request handled once hyper drops it.
struct Answer {
    body: axum::body::Body,
    _answering: Answering,
}

impl Body for Answer {
    type Data = <axum::body::Body as Body>::Data;
    type Error = <axum::body::Body as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Where a connection is, as its I/O sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Receiving a request head; the clock runs to `header_timeout`.
    Head,
    /// Handling a request: no clock here.
    Busy,
    /// Answered, waiting for the next request; the clock runs to `idle_timeout`.
    Idle,
}

/// A TCP stream that fails its reads with `TimedOut` once the head or idle deadline passes,
/// which makes hyper close the connection.
struct Bounded {
    stream: TcpStream,
    progress: Arc<Progress>,
    bounds: Bounds,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
}

impl Bounded {
    /// The head clock starts now: the connection has just been accepted.
    fn new(stream: TcpStream, progress: Arc<Progress>, bounds: Bounds) -> Self {
        progress.entered(Phase::Head);
        Bounded {
            stream,
            progress,
            bounds,
            phase: Phase::Head,
            deadline: Box::pin(tokio::time::sleep(bounds.header_timeout)),
        }
    }

    fn enter(&mut self, phase: Phase) {
        let clock = match phase {
            Phase::Head => self.bounds.header_timeout,
            Phase::Idle => self.bounds.idle_timeout,
            Phase::Busy => Duration::ZERO,
        };
        self.phase = phase;
        self.progress.entered(phase);
        if phase != Phase::Busy {
            self.deadline.as_mut().reset(Instant::now() + clock);
        }
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.progress.waker.register(cx.waker());
        let handling = this.progress.is_handling();
        if this.progress.close.swap(false, Ordering::AcqRel) && !handling {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room at the connection cap",
            )));
        }
        match (handling, this.phase) {
            (true, Phase::Busy) => {}
            (true, _) => this.enter(Phase::Busy),
            (false, Phase::Busy) => this.enter(Phase::Idle),
            (false, Phase::Head | Phase::Idle) => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.enter(Phase::Head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.phase != Phase::Busy => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    match this.phase {
                        Phase::Idle => "idle keep-alive connection timed out",
                        _ => "request head not received in time",
                    },
                ))),
                Poll::Pending => {
                    if !this.progress.stalled.swap(true, Ordering::AcqRel) {
                        this.progress.waiting.notify_one();
                    }
                    Poll::Pending
                }
            },
            other => other,
        }
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
