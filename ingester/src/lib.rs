//! The Spartakus ingester: a durable JetStream pull consumer that writes each report to
//! BigQuery, a local SQLite file, or stdout, acknowledging it only once it is stored.
//!
//! - [`config`]: the flags, parsed into typed values.
//! - [`consume`]: the pull consumer, batches, ack after commit, nak with growing delay.
//! - `erasure`: the erasures consumer: each erasure a cluster asked for, carried out in the
//!   sink until it is done.
//! - `retention`: deleting reports older than `--retention`, in small batches.
//! - `deadletter`: the dead-letter subject for reports that can never be stored.
//! - `durable`: binding a durable pull consumer, the one way both consumers do it.
//! - [`row`]: a validated envelope as one row (pure).
//! - [`sink`]: the [`sink::Sink`] trait and its SQLite, BigQuery and stdout implementations.
//! - [`error`]: sink errors and their retry policy.
//! - `health`: what `/healthz`, `/readyz` and `/metrics` say, from the clocks of the sink's
//!   writes (the routes are `plumbing::probe`'s).
//! - `metrics`: the Prometheus metrics.

pub mod config;
pub mod consume;
mod deadletter;
mod durable;
mod erasure;
pub mod error;
mod health;
mod metrics;
mod retention;
pub mod row;
pub mod sink;

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SinkSpec};
use crate::consume::ConsumeError;
use crate::error::SinkError;
use crate::health::{Health, Probes, Watched};
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::sink::bigquery::{BigQuerySink, Deadlines, Limits};
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
    /// The erasures consumer stopped other than by shutdown.
    #[error("the erasures consumer stopped")]
    Erasures(#[source] ConsumeError),
    /// Retention found the sink unable to write again.
    #[error("retention stopped")]
    Retention(#[source] SinkError),
    /// The erasures consumer or the retention task panicked.
    #[error("a background task panicked")]
    TaskPanicked(#[source] JoinError),
    /// A task returned although no shutdown was requested: nothing consumes any more, so the
    /// process must not go on looking healthy.
    #[error("the {0} ended without a shutdown request")]
    Ended(&'static str),
}

impl Error {
    /// Whether the configuration is at fault (exit 64): the sink it names cannot be opened.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Sink(_))
    }
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
            let sink =
                SqliteSink::open_with_cache(&path, config.sqlite_cache).map_err(Error::Sink)?;
            tracing::info!(path = %path.display(), "sink: sqlite");
            serve(config, listener, sink, shutdown).await
        }
        SinkSpec::Stdout => serve(config, listener, StdoutSink::stdout(), shutdown).await,
        SinkSpec::BigQuery(table) => {
            let deadlines = Deadlines {
                request: config.bigquery_request_timeout,
                job: config.bigquery_job_deadline,
            };
            let client = BigQuerySink::client_with(
                config.bigquery_endpoint.as_deref(),
                config.bigquery_credentials.as_ref(),
                deadlines.request,
            )
            .await
            .map_err(Error::Sink)?;
            tracing::info!(project = %table.project, dataset = %table.dataset, table = %table.table, "sink: bigquery");
            let limits = Limits {
                max_rows: usize::try_from(config.bigquery_max_rows).unwrap_or(500),
                max_bytes: usize::try_from(config.bigquery_max_bytes).unwrap_or(5_000_000),
            };
            let sink = BigQuerySink::new(client, table, limits)
                .with_deadlines(deadlines)
                .with_retention(config.retention.0);
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
    metrics.declare_dead_letter_reasons(
        deadletter::DeadReason::ALL.map(deadletter::DeadReason::as_str),
    );
    let health = Arc::new(Health::new(config.write_stuck_after));
    // Every write and erasure is timed, so that a stuck one fails the probes.
    let sink = Arc::new(Watched::new(sink, health.clone()));

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
    let mut js = async_nats::jetstream::new(client.clone());
    // Every JetStream API request and publish ack waits at most this (else 10 s and 5 s).
    js.set_timeout(config.nats_timeout);
    let settings = consume::Settings {
        durable: durable::Durable {
            stream: config.queue.reports.clone(),
            dead_letters: config.queue.dead_letters.clone(),
            dead_letters_max_bytes: dead_letters_budget(config),
            name: config.consumer.clone(),
            description: "reports into the sink",
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            max_ack_pending: Some(config.max_ack_pending),
            nats_timeout: config.nats_timeout,
        },
        batch_size: usize::try_from(config.batch_size).unwrap_or(500),
        batch_max_bytes: usize::try_from(config.batch_max_bytes).unwrap_or(usize::MAX),
        batch_wait: config.batch_wait,
        retention: config.retention.0,
    };
    // The reports consumer, the erasures consumer and retention stop together: on shutdown, or
    // when one of them fails.
    let stop = shutdown.child_token();
    let mut tasks = Tasks {
        consumer: Some(tokio::spawn(consume::run(
            js.clone(),
            settings,
            sink.clone(),
            metrics.clone(),
            health,
            stop.clone(),
        ))),
        erasures: Some(tokio::spawn(erasure::run(
            js,
            erasure::Settings::new(
                &config.queue,
                &config.consumer,
                dead_letters_budget(config),
                config.nats_timeout,
            ),
            sink.clone(),
            metrics.clone(),
            stop.clone(),
        ))),
        retention: config.retention.0.map(|keep| {
            tracing::info!(retention = ?keep, "retention: reports received longer ago are deleted");
            tokio::spawn(retention::run(sink, keep, metrics, stop.clone()))
        }),
    };

    let first = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        ended = tasks.next() => Some(ended),
    };
    stop.cancel();
    let mut outcome = match first {
        None => {
            tracing::info!(deadline = ?config.shutdown_timeout, "shutting down: finishing the batch in hand");
            Ok(())
        }
        // A task that saw the shutdown first may end before this select did.
        Some(Ok(_)) if shutdown.is_cancelled() => Ok(()),
        // Each task returns `Ok` only after a stop was requested: one that did not is a fault.
        Some(Ok(ended)) => Err(Error::Ended(ended)),
        Some(Err(e)) => Err(e),
    };
    // Let the others finish what they hold within the deadline.
    let rest = async {
        let mut errors = Vec::new();
        while tasks.running() {
            if let Err(e) = tasks.next().await {
                errors.push(e);
            }
        }
        errors
    };
    match tokio::time::timeout(config.shutdown_timeout, rest).await {
        Ok(errors) => {
            for e in errors {
                if outcome.is_ok() {
                    outcome = Err(e);
                } else {
                    tracing::error!(error = %plumbing::Chain(&e), "another task failed too");
                }
            }
        }
        Err(_) => {
            tracing::warn!("shutdown deadline passed; unacknowledged reports will be redelivered");
            tasks.abort();
        }
    }
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

/// The tasks that consume and maintain; each `None` once it ended (or was never started).
struct Tasks {
    consumer: Option<JoinHandle<Result<(), ConsumeError>>>,
    erasures: Option<JoinHandle<Result<(), ConsumeError>>>,
    retention: Option<JoinHandle<Result<(), SinkError>>>,
}

impl Tasks {
    fn running(&self) -> bool {
        self.consumer.is_some() || self.erasures.is_some() || self.retention.is_some()
    }

    /// Waits for the next task to end and says which ended or how it failed; pending for ever
    /// when none runs.
    async fn next(&mut self) -> Result<&'static str, Error> {
        async fn wait<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
            match task {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            ended = wait(&mut self.consumer) => {
                self.consumer = None;
                match ended {
                    Ok(Ok(())) => Ok("reports consumer"),
                    Ok(Err(e)) => Err(Error::Consumer(e)),
                    Err(e) => Err(Error::ConsumerPanicked(e)),
                }
            }
            ended = wait(&mut self.erasures) => {
                self.erasures = None;
                match ended {
                    Ok(Ok(())) => Ok("erasures consumer"),
                    Ok(Err(e)) => Err(Error::Erasures(e)),
                    Err(e) => Err(Error::TaskPanicked(e)),
                }
            }
            ended = wait(&mut self.retention) => {
                self.retention = None;
                match ended {
                    Ok(Ok(())) => Ok("retention task"),
                    Ok(Err(e)) => Err(Error::Retention(e)),
                    Err(e) => Err(Error::TaskPanicked(e)),
                }
            }
        }
    }

    fn abort(&mut self) {
        for handle in [self.consumer.take(), self.erasures.take()]
            .into_iter()
            .flatten()
        {
            handle.abort();
        }
        if let Some(handle) = self.retention.take() {
            handle.abort();
        }
    }
}

/// `--dead-letters-max-bytes` as JetStream takes it.
fn dead_letters_budget(config: &Config) -> i64 {
    i64::try_from(config.dead_letters_max_bytes).unwrap_or(i64::MAX)
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
