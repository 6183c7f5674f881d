//! The Spartakus gateway: the public HTTP face of the collector. It checks every report against
//! the `report` crate's rules and answers only once JetStream has stored it.
//!
//! - [`config`]: the flags, each with a `SPARTAKUS_…` environment variable.
//! - `routes`: the HTTP API (report intake v1 and v2, erasure requests, health, readiness,
//!   metrics, version, OpenAPI), the two intakes sharing one `receive` step.
//! - `body`: reading a body under a wire cap and a decompressed cap, gunzipping as it streams,
//!   at a minimum rate, into memory reserved from the budget.
//! - `limit`: rate limits per client IP and per clusterID, bodies arriving per client IP, and
//!   the memory budget of all requests in flight.
//! - HTTP/1.1 with every connection bounded (head and idle timeouts, a connection cap) is
//!   `plumbing::serve`, shared with the stats server.
//! - [`publish`]: the JetStream publisher, and keeping the streams in place and watching their fill.
//! - [`metrics`]: Prometheus metrics.
//! - [`error`]: [`ApiError`], every refusal as an RFC 9457 problem.

mod body;
pub mod config;
pub mod error;
mod limit;
pub mod metrics;
pub mod publish;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::ApiError;
use limit::RateLimits;
use metrics::Metrics;
use publish::{Publisher, Streams};

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The NATS options were unusable (e.g. a malformed URL).
    #[error("connecting to NATS: {0}")]
    Nats(#[from] async_nats::ConnectError),
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
    /// A background task (keeping the streams in place, forgetting idle rate limiters) returned
    /// although no shutdown was requested: `/readyz` would go stale, or the limiters grow, while
    /// the gateway went on looking healthy.
    #[error("the {0} ended without a shutdown request")]
    Ended(&'static str),
    /// A background task panicked.
    #[error("the {0} panicked")]
    Panicked(&'static str, #[source] JoinError),
    /// No `--node-id-key-file`: node IDs would be stored as clients sent them.
    #[error("{}", config::MISSING_NODE_ID_KEY)]
    NoNodeIdKey,
}

/// Serves the gateway on `listener` until `shutdown` is cancelled, then lets requests in flight
/// finish (they wait for their acknowledgment) for up to `--shutdown-timeout`, and flushes NATS.
/// A background task that ends first stops the gateway the same way, and is the error.
///
/// NATS need not be up: the gateway connects in the background, `/readyz` says when it can
/// publish, and reports are refused with 503 until then.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let node_id_key = config.node_id_key.clone().ok_or(RunError::NoNodeIdKey)?;
    let metrics = Arc::new(Metrics::new());
    let publisher = Publisher::connect(
        &config.nats_url,
        Streams::from_config(&config),
        config.publish_timeout,
        metrics.stream_fill(),
    )
    .await?;
    let limits = RateLimits::new(config.ip_quota(), config.cluster_quota());
    // Cancelled by a shutdown request, or by a background task that ended.
    let stop = shutdown.child_token();
    let state = routes::AppState::new(
        &config,
        node_id_key,
        publisher.clone(),
        metrics,
        limits.clone(),
        stop.clone(),
    );
    let addr = listener.local_addr()?;

    // The streams are kept in place until the requests in flight have been answered.
    let quit = CancellationToken::new();
    let background = Background {
        maintain: Some(tokio::spawn(publisher.clone().maintain(quit.clone()))),
        forget: Some(tokio::spawn(forget_idle(limits, quit.clone()))),
        quit,
    };

    tracing::info!(%addr, nats = %config.nats_url, queue = %config.queue, "gateway listening");
    let bounds = plumbing::serve::Bounds {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections as usize,
    };
    let server = plumbing::serve::serve(listener, routes::router(state), bounds, stop.clone());
    let outcome = supervise(server, background, &stop, config.shutdown_timeout).await;

    match tokio::time::timeout(config.shutdown_timeout, publisher.flush()).await {
        Ok(Ok(())) => tracing::info!("NATS flushed; gateway stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing NATS failed"),
        Err(_) => tracing::warn!("flushing NATS timed out"),
    }
    outcome
}

/// Runs `server` (which returns once `stop` is cancelled and its connections are closed) until
/// `stop` is cancelled or a background task ends; then stops the server, letting requests in
/// flight finish within `drain`, and then the background tasks. A task that ended first, or
/// panicked, is the error.
async fn supervise(
    server: impl Future<Output = ()>,
    mut background: Background,
    stop: &CancellationToken,
    drain: Duration,
) -> Result<(), RunError> {
    tokio::pin!(server);
    let mut drained = false;
    let mut outcome = tokio::select! {
        () = &mut server => {
            drained = true;
            Ok(())
        }
        () = stop.cancelled() => Ok(()),
        // The tasks stop only when told to, after the server: any end here is a fault.
        (task, ended) = background.next() => Err(match ended {
            Ok(()) => RunError::Ended(task),
            Err(e) => RunError::Panicked(task, e),
        }),
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %plumbing::Chain(e), "stopping the gateway");
    }
    stop.cancel();
    if !drained {
        tracing::info!(deadline = ?drain, "shutting down: finishing requests in flight");
        if tokio::time::timeout(drain, &mut server).await.is_err() {
            tracing::warn!("drain deadline passed: dropping the requests still in flight");
        }
    }
    for e in background.stop(drain).await {
        if outcome.is_ok() {
            outcome = Err(e);
        } else {
            tracing::error!(error = %plumbing::Chain(&e), "another background task failed too");
        }
    }
    outcome
}

/// The gateway's background tasks, each `None` once it ended; they stop when `quit` is
/// cancelled.
struct Background {
    /// [`Publisher::maintain`].
    maintain: Option<JoinHandle<()>>,
    /// [`forget_idle`].
    forget: Option<JoinHandle<()>>,
    quit: CancellationToken,
}

impl Background {
    /// Waits for the next task to end: its name, and whether it panicked. Pending for ever
    /// when none runs.
    async fn next(&mut self) -> (&'static str, Result<(), JoinError>) {
        async fn wait(task: &mut Option<JoinHandle<()>>) -> Result<(), JoinError> {
            match task {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            ended = wait(&mut self.maintain) => {
                self.maintain = None;
                ("stream maintenance", ended)
            }
            ended = wait(&mut self.forget) => {
                self.forget = None;
                ("rate-limiter cleanup", ended)
            }
        }
    }

    /// Tells the tasks still running to stop and waits up to `deadline` for them; the ones
    /// that panicked.
    async fn stop(mut self, deadline: Duration) -> Vec<RunError> {
        self.quit.cancel();
        let mut panicked = Vec::new();
        let all = async {
            while self.maintain.is_some() || self.forget.is_some() {
                if let (task, Err(e)) = self.next().await {
                    panicked.push(RunError::Panicked(task, e));
                }
            }
        };
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("background tasks did not stop in time; aborting them");
            for handle in [self.maintain.take(), self.forget.take()]
                .into_iter()
                .flatten()
            {
                handle.abort();
            }
        }
        panicked
    }
}

async fn forget_idle(limits: RateLimits, stop: CancellationToken) {
    let mut tick = tokio::time::interval(limit::FORGET_EVERY);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = tick.tick() => limits.forget_idle(),
        }
    }
}

/// Reads a report body as the report routes do: the `Content-Encoding` named by `headers`, the
/// wire cap and the streaming, capped gunzip, with `chunks` arriving as the body's frames.
/// Exposed for the `gzip_body` fuzz target only; not part of the gateway's API.
#[doc(hidden)]
pub async fn read_body_for_fuzzing(
    headers: &axum::http::HeaderMap,
    chunks: Vec<Vec<u8>>,
    max_compressed: u64,
    max_decoded: u64,
) -> Result<Vec<u8>, ApiError> {
    let encoding = body::Encoding::from_headers(headers)?;
    let frames = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let limits = body::Limits {
        max_compressed,
        max_decoded,
    };
    let unbudgeted = limit::Budget::new(u64::MAX, Default::default()).reservation();
    let received = body::read(
        headers,
        axum::body::Body::from_stream(frames),
        encoding,
        limits,
        body::Pace::NONE,
        unbudgeted,
    );
    Ok(received.await?.bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const DRAIN: Duration = Duration::from_secs(5);

    /// `supervise`, failing the test if it never returns. The clock is paused, so a supervisor
    /// that waits for ever fails at once rather than after a minute.
    async fn supervised(
        server: impl Future<Output = ()>,
        tasks: Background,
        stop: &CancellationToken,
    ) -> Result<(), RunError> {
        tokio::time::timeout(
            Duration::from_secs(60),
            supervise(server, tasks, stop, DRAIN),
        )
        .await
        .expect("supervise returns")
    }

    /// A stand-in for `plumbing::serve::serve`: returns once `stop` is cancelled, and says so.
    fn server(stop: &CancellationToken) -> (impl Future<Output = ()>, Arc<AtomicBool>) {
        let returned = Arc::new(AtomicBool::new(false));
        let (stop, flag) = (stop.clone(), Arc::clone(&returned));
        let server = async move {
            stop.cancelled().await;
            flag.store(true, Ordering::SeqCst);
        };
        (server, returned)
    }

    /// Background tasks as `run` spawns them, with these bodies in their place.
    fn background(
        maintain: impl Future<Output = ()> + Send + 'static,
        forget: impl Future<Output = ()> + Send + 'static,
        quit: CancellationToken,
    ) -> Background {
        Background {
            maintain: Some(tokio::spawn(maintain)),
            forget: Some(tokio::spawn(forget)),
            quit,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_background_task_that_ends_without_a_shutdown_request_stops_the_server_and_is_the_error()
     {
        let (stop, quit) = (CancellationToken::new(), CancellationToken::new());
        let (server, returned) = server(&stop);
        let tasks = background(async {}, quit.clone().cancelled_owned(), quit.clone());

        let outcome = supervised(server, tasks, &stop).await;

        assert!(
            matches!(outcome, Err(RunError::Ended("stream maintenance"))),
            "{outcome:?}"
        );
        assert!(stop.is_cancelled() && returned.load(Ordering::SeqCst));
        assert!(quit.is_cancelled(), "the other task was not told to stop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_background_task_that_panics_stops_the_server_and_is_the_error() {
        let (stop, quit) = (CancellationToken::new(), CancellationToken::new());
        let (server, returned) = server(&stop);
        let tasks = background(
            quit.clone().cancelled_owned(),
            async { panic!("a bug in the cleanup") },
            quit.clone(),
        );

        let outcome = supervised(server, tasks, &stop).await;

        assert!(
            matches!(&outcome, Err(RunError::Panicked("rate-limiter cleanup", e)) if e.is_panic()),
            "{outcome:?}"
        );
        assert!(stop.is_cancelled() && returned.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_request_drains_the_server_then_stops_the_background_tasks_without_an_error()
    {
        let (stop, quit) = (CancellationToken::new(), CancellationToken::new());
        let (server, returned) = server(&stop);
        // Each task checks, as it stops, that the server has already returned.
        let stopped_after_server = |returned: Arc<AtomicBool>, quit: CancellationToken| async move {
            quit.cancelled().await;
            assert!(returned.load(Ordering::SeqCst), "stopped before the server");
        };
        let tasks = background(
            stopped_after_server(Arc::clone(&returned), quit.clone()),
            stopped_after_server(Arc::clone(&returned), quit.clone()),
            quit.clone(),
        );
        stop.cancel();

        let outcome = supervised(server, tasks, &stop).await;

        assert!(outcome.is_ok(), "{outcome:?}");
        assert!(returned.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_while_stopping_after_a_shutdown_is_still_an_error() {
        let (stop, quit) = (CancellationToken::new(), CancellationToken::new());
        let (server, _) = server(&stop);
        let tasks = background(
            quit.clone().cancelled_owned(),
            {
                let quit = quit.clone();
                async move {
                    quit.cancelled().await;
                    panic!("a bug on the way out");
                }
            },
            quit.clone(),
        );
        stop.cancel();

        let outcome = supervised(server, tasks, &stop).await;

        assert!(
            matches!(outcome, Err(RunError::Panicked("rate-limiter cleanup", _))),
            "{outcome:?}"
        );
    }
}
