//! The Spartakus ingester: a durable JetStream pull consumer that writes each report to
//! BigQuery, a local SQLite file, or stdout, acknowledging it only once it is stored.
//!
//! - [`config`]: the flags, parsed into typed values.
//! - [`consume`]: the pull consumer, batches, ack after commit, nak with growing delay.
//! - [`deadletter`]: the dead-letter subject for reports that can never be stored.
//! - [`row`]: a validated envelope as one row (pure).
//! - [`sink`]: the [`sink::Sink`] trait and its SQLite, BigQuery and stdout implementations.
//! - [`error`]: sink errors and their retry policy.
//! - [`health`]: what `/readyz` and `/metrics` say (the routes are `plumbing::probe`'s).
//! - [`metrics`]: the Prometheus metrics.

pub mod config;
pub mod consume;
pub mod deadletter;
pub mod error;
pub mod health;
pub mod metrics;
pub mod row;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::net::TcpListener;
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEAD_LETTER_STREAM, SinkSpec};
use crate::consume::ConsumeError;
use crate::error::SinkError;
use crate::health::{Health, Probes};
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::sink::bigquery::{BigQuerySink, Limits};
use crate::sink::sqlite::SqliteSink;
use crate::sink::stdout::StdoutSink;

/// How often `/readyz` re-checks the sink.
const SINK_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Why the ingester stopped with an error (and exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sink could not be opened (e.g. the SQLite file, the credentials).
    #[error("opening the sink")]
    Sink(#[source] SinkError),
    /// NATS options were unusable.
    #[error("connecting to NATS")]
    Nats(#[source] async_nats::ConnectError),
    /// The HTTP server failed.
    #[error("serving the probes")]
    Http(#[source] std::io::Error),
    /// The consumer stopped other than by shutdown.
    #[error("the consumer stopped")]
    Consumer(#[source] ConsumeError),
    /// The consumer task panicked.
    #[error("the consumer task panicked")]
    ConsumerPanicked(#[source] JoinError),
}

/// Runs the ingester with the sink `--sink` names until `shutdown` is cancelled, then finishes
/// the batch in hand (within `--shutdown-timeout`) and returns. An error means it stopped for
/// another reason (the sink failed for good, a task panicked), after draining what it safely
/// could.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    match config.sink.clone() {
        SinkSpec::Sqlite(path) => {
            let sink = SqliteSink::open(&path).map_err(Error::Sink)?;
            tracing::info!(path = %path.display(), "sink: sqlite");
            serve(config, listener, sink, shutdown).await
        }
        SinkSpec::Stdout => serve(config, listener, StdoutSink::stdout(), shutdown).await,
        SinkSpec::BigQuery(table) => {
            let client = BigQuerySink::client(
                config.bigquery_endpoint.as_deref(),
                config.bigquery_credentials.as_ref(),
            )
            .await
            .map_err(Error::Sink)?;
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

/// Runs the ingester with `sink`: the probes on `listener`, the consumer until `shutdown`.
pub async fn serve<S: Sink>(
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
    let probes = Probes {
        health: health.clone(),
        metrics: metrics.clone(),
    };
    let app = plumbing::probe::router::<_, ()>(Arc::new(probes));
    let http = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );

    let result = consume_until_shutdown(&config, sink, metrics, health, &shutdown).await;
    http_stop.cancel();
    let served = match http.await {
        Ok(served) => served.map_err(Error::Http),
        Err(e) => {
            tracing::error!(error = %plumbing::Chain(&e), "probe server task failed");
            Ok(())
        }
    };
    result.and(served)
}

/// Prepares the sink (retrying with backoff until it works or shutdown), then consumes until
/// shutdown or a failure.
async fn consume_until_shutdown<S: Sink>(
    config: &Config,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    // Get the sink ready (e.g. create the BigQuery table); /readyz says why not meanwhile.
    let prepare = || sink.prepare();
    let prepared = prepare
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(30))
                .with_jitter()
                .without_max_times(),
        )
        .notify(|e, delay| {
            tracing::warn!(error = %plumbing::Chain(e), sink = sink.name(), ?delay, "sink not ready; retrying");
        });
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        prepared = prepared => prepared.map_err(Error::Sink)?,
    }
    let probe = tokio::spawn(probe_sink(sink.clone(), health.clone(), shutdown.clone()));

    let client = plumbing::nats::connect("spartakus-ingester", &config.nats_url)
        .await
        .map_err(Error::Nats)?;
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

    let ended = tokio::select! {
        _ = shutdown.cancelled() => None,
        ended = &mut consumer => Some(ended),
    };
    let outcome = match ended {
        // Shutdown: let the consumer finish the batches in hand within the deadline.
        None => {
            tracing::info!(deadline = ?config.shutdown_timeout, "shutting down: finishing the batch in hand");
            match tokio::time::timeout(config.shutdown_timeout, &mut consumer).await {
                Ok(ended) => consumer_outcome(ended),
                Err(_) => {
                    tracing::warn!(
                        "shutdown deadline passed; unacknowledged reports will be redelivered"
                    );
                    consumer.abort();
                    Ok(())
                }
            }
        }
        Some(ended) => {
            let outcome = consumer_outcome(ended);
            if outcome.is_ok() {
                // `consume::run` returns `Ok` only after shutdown was requested.
                tracing::warn!("consumer returned without a shutdown request");
            }
            outcome
        }
    };
    // Acks and naks are buffered by the client: send them before exiting, also after a failure
    // (the consumer handed back what it held).
    match tokio::time::timeout(config.shutdown_timeout, client.flush()).await {
        Ok(Ok(())) => tracing::info!("acknowledgements flushed"),
        Ok(Err(e)) => {
            tracing::warn!(error = %plumbing::Chain(&e), "flushing acknowledgements failed; those reports will be redelivered")
        }
        Err(_) => {
            tracing::warn!("flushing acknowledgements timed out; those reports will be redelivered")
        }
    }
    probe.abort();
    outcome
}

fn consumer_outcome(ended: Result<Result<(), ConsumeError>, JoinError>) -> Result<(), Error> {
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Consumer(e)),
        Err(e) => Err(Error::ConsumerPanicked(e)),
    }
}

async fn probe_sink<S: Sink>(sink: Arc<S>, health: Arc<Health>, shutdown: CancellationToken) {
    loop {
        let ready = sink.ready().await;
        if let Err(e) = &ready {
            tracing::warn!(error = %plumbing::Chain(e), sink = sink.name(), "sink probe failed");
        }
        health.set_sink_ready(ready.is_ok());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SINK_PROBE_INTERVAL) => {}
        }
    }
}
