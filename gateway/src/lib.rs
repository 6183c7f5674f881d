//! The Spartakus gateway: the public HTTP face of the collector. It checks every report against
//! the `report` crate's rules and answers only once JetStream has stored it.
//!
//! - [`config`]: the flags, each with a `SPARTAKUS_…` environment variable.
//! - `routes`: the HTTP API (report intake v1 and v2, erasure requests, health, readiness,
//!   metrics, version, OpenAPI), the two intakes sharing one `receive` step.
//! - `body`: reading a body under a wire cap and a decompressed cap, gunzipping as it streams.
//! - `limit`: rate limits per client IP and per clusterID.
//! - HTTP/1.1 with every connection bounded (head and idle timeouts, a connection cap) is
//!   `plumbing::serve`, shared with the stats server.
//! - [`publish`]: the JetStream publisher, and keeping the stream in place.
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

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::ApiError;
use limit::RateLimits;
use metrics::Metrics;
use publish::{Publisher, StreamSettings};

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The NATS options were unusable (e.g. a malformed URL).
    #[error("connecting to NATS: {0}")]
    Nats(#[from] async_nats::ConnectError),
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
}

/// Serves the gateway on `listener` until `shutdown` is cancelled, then lets requests in flight
/// finish (they wait for their acknowledgment) for up to `--shutdown-timeout`, and flushes NATS.
///
/// NATS need not be up: the gateway connects in the background, `/readyz` says when it can
/// publish, and reports are refused with 503 until then.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let reports = StreamSettings::from_config(&config);
    let erasures = reports.erasures(&config.queue);
    let publisher =
        Publisher::connect(&config.nats_url, reports, erasures, config.publish_timeout).await?;
    let limits = RateLimits::new(config.ip_quota(), config.cluster_quota());
    let state = routes::AppState::new(
        &config,
        publisher.clone(),
        Arc::new(Metrics::new()),
        limits.clone(),
        shutdown.clone(),
    );

    let background = CancellationToken::new();
    let maintain = tokio::spawn(publisher.clone().maintain(background.clone()));
    let forget = tokio::spawn(forget_idle(limits, background.clone()));

    let addr = listener.local_addr()?;
    tracing::info!(%addr, nats = %config.nats_url, queue = %config.queue, "gateway listening");
    let bounds = plumbing::serve::Bounds {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections as usize,
    };
    let server = plumbing::serve::serve(listener, routes::router(state), bounds, shutdown.clone());
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => {}
        () = shutdown.cancelled() => {
            tracing::info!(deadline = ?config.shutdown_timeout, "shutting down: finishing requests in flight");
            if tokio::time::timeout(config.shutdown_timeout, &mut server).await.is_err() {
                tracing::warn!("drain deadline passed: dropping the requests still in flight");
            }
        }
    }

    background.cancel();
    let _ = tokio::join!(maintain, forget);
    match tokio::time::timeout(config.shutdown_timeout, publisher.flush()).await {
        Ok(Ok(())) => tracing::info!("NATS flushed; gateway stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing NATS failed"),
        Err(_) => tracing::warn!("flushing NATS timed out"),
    }
    Ok(())
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
    let received = body::read(
        headers,
        axum::body::Body::from_stream(frames),
        encoding,
        limits,
    );
    Ok(received.await?.bytes)
}
