//! The Spartakus ingester: a durable JetStream pull consumer that writes each report, exactly
//! once, to BigQuery, a local SQLite file, or stdout.
//!
//! - [`config`]: the flags, parsed into typed values.
//! - [`consume`]: the pull consumer, batches, ack after commit, nak with growing delay,
//!   dead-letter and terminate poison messages.
//! - [`row`]: a validated envelope as one row (pure).
//! - [`sink`]: the [`sink::Sink`] trait and its SQLite, BigQuery and stdout implementations.
//! - [`error`]: sink errors and their retry policy.
//! - [`metrics`]: the Prometheus metrics.
//! - [`routes`]: `/healthz`, `/readyz`, `/metrics`.

pub mod config;
pub mod consume;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod row;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEAD_LETTER_STREAM, SinkSpec};
use crate::error::SinkError;
use crate::metrics::Metrics;
use crate::routes::Health;
use crate::sink::Sink;
use crate::sink::bigquery::{BigQuerySink, Limits};
use crate::sink::sqlite::SqliteSink;
use crate::sink::stdout::StdoutSink;

/// How often `/readyz` re-checks the sink.
const SINK_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Why the ingester stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sink could not be opened (e.g. the SQLite file, the credentials).
    #[error("opening the sink: {0}")]
    Sink(#[from] SinkError),
    /// NATS options were unusable.
    #[error("connecting to NATS: {0}")]
    Nats(String),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs the ingester until `shutdown` is cancelled, then finishes the batch in hand (within
/// `--shutdown-timeout`) and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    match config.sink.clone() {
        SinkSpec::Sqlite(path) => {
            let sink = SqliteSink::open(&path)?;
            tracing::info!(path = %path.display(), "sink: sqlite");
            serve(config, listener, sink, shutdown).await
        }
        SinkSpec::Stdout => serve(config, listener, StdoutSink::stdout(), shutdown).await,
        SinkSpec::BigQuery(table) => {
            let client = BigQuerySink::client(
                config.bigquery_endpoint.as_deref(),
                config.bigquery_credentials.as_ref(),
            )
            .await?;
            tracing::info!(project = %table.project, dataset = %table.dataset, table = %table.table, "sink: bigquery");
            let limits = Limits {
                max_rows: usize::try_from(config.bigquery_max_rows).unwrap_or(500),
                max_bytes: usize::try_from(config.bigquery_max_bytes).unwrap_or(5_000_000),
            };
            let sink = BigQuerySink::new(client, table, limits);
            serve(config, listener, sink, shutdown).await
        }
    }
}

async fn serve<S: Sink>(
    config: Config,
    listener: TcpListener,
    sink: S,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let sink = Arc::new(sink);

    // The HTTP server outlives the consumer so /metrics and /readyz answer while draining.
    let http_stop = CancellationToken::new();
    let app = routes::router(health.clone(), metrics.clone());
    let http = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );

    let result = consume_until_shutdown(&config, sink, metrics, health, &shutdown).await;
    http_stop.cancel();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::Http(e)),
        Err(e) => tracing::error!(error = %e, "http server task failed"),
    }
    result
}

async fn consume_until_shutdown<S: Sink>(
    config: &Config,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    // Get the sink ready (e.g. create the BigQuery table), retrying while /readyz says why.
    let mut delay = Duration::from_millis(500);
    loop {
        let prepared = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = sink.prepare() => r,
        };
        match prepared {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, sink = sink.name(), ?delay, "sink not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    let probe = tokio::spawn(probe_sink(sink.clone(), health.clone(), shutdown.clone()));

    let client = async_nats::ConnectOptions::new()
        .name("spartakus-ingester")
        .retry_on_initial_connect()
        // `--nats-url` is a comma-separated list; async-nats parses a `&str` as one URL.
        .connect(
            config
                .nats_url
                .split(',')
                .map(str::trim)
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(|e| Error::Nats(e.to_string()))?;
    let js = async_nats::jetstream::new(client.clone());
    let settings = consume::Settings {
        stream: config.stream.clone(),
        subject: config.subject.clone(),
        consumer: config.consumer.clone(),
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
        max_ack_pending: config.max_ack_pending,
        batch_size: usize::try_from(config.batch_size).unwrap_or(500),
        batch_wait: config.batch_wait,
        dead_letter_subject: config.dead_letter_subject.clone(),
        dead_letter_stream: DEAD_LETTER_STREAM.to_owned(),
    };
    let mut consumer = tokio::spawn(consume::run(
        js,
        settings,
        sink,
        metrics,
        health,
        shutdown.clone(),
    ));

    tokio::select! {
        _ = shutdown.cancelled() => {}
        ended = &mut consumer => {
            // consume::run only returns on shutdown; anything else is a panic.
            tracing::error!(?ended, "consumer task exited");
        }
    }
    tracing::info!(deadline = ?config.shutdown_timeout, "shutting down: finishing the batch in hand");
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        if !consumer.is_finished() {
            let _ = (&mut consumer).await;
        }
        // Acks are buffered by the client: send them before exiting.
        client.flush().await
    })
    .await;
    match drained {
        Ok(Ok(())) => tracing::info!("consumer stopped; acknowledgements flushed"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "flushing acknowledgements failed; those reports will be redelivered")
        }
        Err(_) => {
            tracing::warn!("shutdown deadline passed; unacknowledged reports will be redelivered");
            consumer.abort();
        }
    }
    probe.abort();
    Ok(())
}

async fn probe_sink<S: Sink>(sink: Arc<S>, health: Arc<Health>, shutdown: CancellationToken) {
    loop {
        let ready = sink.ready().await;
        if let Err(e) = &ready {
            tracing::warn!(error = %e, sink = sink.name(), "sink probe failed");
        }
        health.set_sink_ready(ready.is_ok());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SINK_PROBE_INTERVAL) => {}
        }
    }
}
