//! The erasures consumer: a durable pull consumer of its own on the erasures stream (created by
//! the gateway), handing each queued erasure ([`QueuedErasure`]: the cluster, the check, when it
//! was asked for; never the secret) to [`Sink::erase`], one at a time.
//!
//! An erasure is acknowledged only once the sink says it is done. Until then it is nakked and
//! delivered again, without a delivery limit: an erasure is never given up on. BigQuery, which
//! refuses to delete rows still in its streaming buffer for up to about 90 minutes, answers
//! [`Erased::Pending`] meanwhile; its tombstone already hides the reports from the view, and
//! keeps the ones still queued from being stored. An erasure that cannot be decoded goes to the
//! dead-letter subject, like a report.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, Message};
use futures::StreamExt;
use report::erasure::QueuedErasure;
use tokio_util::sync::CancellationToken;

use crate::consume::{ConsumeError, nak_delay};
use crate::deadletter::{self, DeadReason};
use crate::durable::{self, Durable, Liveness, REBIND_DELAY};
use crate::metrics::Metrics;
use crate::sink::{Erased, Sink};

/// Time a delivered erasure may go without an ack or a progress signal before it is
/// delivered again (a crashed replica's erasure is taken over after this).
const ACK_WAIT: Duration = Duration::from_secs(120);
/// While the sink works on an erasure, JetStream is told so this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// How long one pull request waits for an erasure.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// Deliveries after which a still failing erasure is logged as an error (an operator should
/// look); it is retried all the same.
const LOUD_AFTER: i64 = 10;

/// The erasures consumer's settings, from the flags.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The durable consumer on the erasures stream (named as the reports consumer: names are
    /// per stream).
    pub(crate) durable: Durable,
}

impl Settings {
    /// The erasures consumer of `queue`, named `name` (dead letters within their budget of
    /// `dead_letters_max_bytes`): never given up on (redelivered, with a
    /// growing delay, until the sink is done).
    pub(crate) fn new(
        queue: &report::queue::Topology,
        name: &str,
        dead_letters_max_bytes: i64,
        nats_timeout: Duration,
    ) -> Self {
        Settings {
            durable: Durable {
                stream: queue.erasures.clone(),
                dead_letters: queue.dead_letters.clone(),
                dead_letters_max_bytes,
                name: name.to_owned(),
                description: "erasures carried out in the sink",
                ack_wait: ACK_WAIT,
                max_deliver: -1,
                max_ack_pending: None,
                nats_timeout,
            },
        }
    }
}

/// Consumes erasures until `shutdown` (the erasure in hand is finished first). `Err` when the
/// sink failed for good.
pub(crate) async fn run<S: Sink>(
    js: jetstream::Context,
    settings: Settings,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    loop {
        let Some(mut consumer) = settings.durable.bind(&js, &shutdown).await else {
            return Ok(());
        };
        let timeout = settings.durable.nats_timeout;
        let mut liveness = Liveness::new(timeout);
        loop {
            // Given up `timeout` after the pull's expiry when the server has not ended it.
            let deadline = tokio::time::Instant::now() + PULL_WAIT + timeout;
            let batch = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                batch = tokio::time::timeout_at(
                    deadline,
                    consumer.batch().max_messages(1).expires(PULL_WAIT).messages(),
                ) => batch,
            };
            let mut messages = match batch {
                Ok(Ok(messages)) => messages,
                Ok(Err(e)) => {
                    tracing::warn!(error = %plumbing::Chain(&e), "erasures pull failed; rebinding");
                    break;
                }
                Err(_) => {
                    tracing::warn!(?timeout, "erasures pull not answered; rebinding");
                    break;
                }
            };
            // One message at most: handled to the end even when shutdown comes meanwhile.
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => {
                    liveness.answered();
                    handle(&js, &settings, &*sink, &metrics, message).await?;
                    continue;
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %plumbing::Chain(&*e), "erasures pull ended");
                }
                Ok(None) | Err(_) => {}
            }
            // Nothing came: no erasure waiting, or a server that stopped answering.
            if let Err(e) = liveness.check(&mut consumer).await {
                tracing::warn!(error = %plumbing::Chain(&e), "NATS is not answering the erasures consumer; rebinding");
                break;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(REBIND_DELAY) => {}
        }
    }
}

/// Carries out one delivered erasure and settles its message.
async fn handle<S: Sink>(
    js: &jetstream::Context,
    settings: &Settings,
    sink: &S,
    metrics: &Metrics,
    message: Message,
) -> Result<(), ConsumeError> {
    let (delivered, sequence) = match message.info() {
        Ok(info) => (info.delivered, info.stream_sequence),
        Err(_) => (1, 0),
    };
    let queued = match QueuedErasure::decode(&message.payload) {
        Ok(queued) => queued,
        Err(e) => {
            let reason = match e {
                report::DecodeError::Syntax(_) => DeadReason::Syntax,
                report::DecodeError::Invalid(_) => DeadReason::Invalid,
            };
            tracing::warn!(sequence, error = %e, "an erasure that cannot be decoded: dead-lettering it");
            let sent = deadletter::send(
                js,
                &settings.durable,
                &message,
                reason,
                &e.to_string(),
                nak_delay(delivered),
            )
            .await;
            if sent == deadletter::Sent::Stored {
                metrics.dead_lettered(reason.as_str());
                metrics.erasure("dead-lettered");
            }
            return Ok(());
        }
    };

    // Keep JetStream from delivering it elsewhere while the sink works (a DML job can take
    // minutes).
    let erase = sink.erase(&queued);
    tokio::pin!(erase);
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let result = loop {
        tokio::select! {
            result = &mut erase => break result,
            _ = progress.tick() => {
                if let Err(e) = durable::reply(&message, AckKind::Progress, settings.durable.nats_timeout).await {
                    tracing::debug!(error = %plumbing::Chain(&*e), "progress signal failed");
                }
            }
        }
    };

    // The cluster ID stays out of info logs: the sequence number finds the request.
    match result {
        Ok(Erased::Done { reports }) => {
            metrics.erasure("done");
            metrics.erased_reports(reports.unwrap_or(0));
            tracing::info!(sequence, delivered, reports, requested_at = %queued.requested_at, sink = sink.name(), "erasure done");
            if let Err(e) =
                durable::reply(&message, AckKind::Ack, settings.durable.nats_timeout).await
            {
                // Done already: a redelivery repeats it harmlessly.
                tracing::warn!(sequence, error = %plumbing::Chain(&*e), "ack failed");
            }
        }
        Ok(Erased::Pending { not_before, reason }) => {
            metrics.erasure("pending");
            let delay = not_before.max(nak_delay(delivered));
            tracing::info!(sequence, delivered, retry_in = ?delay, %reason, sink = sink.name(), "erasure pending: tombstone stored, deletion to be tried again");
            nak(&message, sequence, delay, settings.durable.nats_timeout).await;
        }
        Err(e) if e.is_fatal() => {
            metrics.erasure("failed");
            tracing::error!(sequence, error = %plumbing::Chain(&e), "the sink failed for good during an erasure; handing it back");
            nak(
                &message,
                sequence,
                Duration::from_secs(1),
                settings.durable.nats_timeout,
            )
            .await;
            return Err(ConsumeError::Sink(e));
        }
        Err(e) => {
            metrics.erasure("failed");
            let delay = nak_delay(delivered);
            if delivered >= LOUD_AFTER {
                tracing::error!(sequence, delivered, retry_in = ?delay, error = %plumbing::Chain(&e), "erasure still failing; retrying");
            } else {
                tracing::warn!(sequence, delivered, retry_in = ?delay, error = %plumbing::Chain(&e), "erasure failed; retrying");
            }
            nak(&message, sequence, delay, settings.durable.nats_timeout).await;
        }
    }
    Ok(())
}

async fn nak(message: &Message, sequence: u64, delay: Duration, timeout: Duration) {
    if let Err(e) = durable::reply(message, AckKind::Nak(Some(delay)), timeout).await {
        tracing::warn!(sequence, error = %plumbing::Chain(&*e), "nak failed; redelivered after the ack wait");
    }
}
