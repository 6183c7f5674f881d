//! The JetStream side: a durable pull consumer shared by every replica, batches of messages,
//! and what happens to each message once the sink has answered.
//!
//! A message is acknowledged only after the sink committed its row. A message that can never be
//! stored (undecodable, invalid under the current rules, or refused by the sink) is published to
//! the dead-letter subject with the reason in a header, then terminated. A transient failure
//! naks with a delay that grows with the delivery count; on the last allowed delivery the
//! message is dead-lettered instead, so nothing is dropped silently.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, AckKind, Message};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::routes::Health;
use crate::row;
use crate::sink::{Outcome, Sink};

/// Header naming why a message was dead-lettered: `syntax`, `invalid`, `rejected` or
/// `retries-exhausted`.
pub const REASON_HEADER: &str = "Spartakus-Dead-Letter-Reason";
/// Header with the detail (the first field errors, the sink's message), at most 1 KiB.
pub const DETAIL_HEADER: &str = "Spartakus-Dead-Letter-Detail";
/// Header with the message's sequence number in the reports stream.
pub const SEQUENCE_HEADER: &str = "Spartakus-Stream-Sequence";

/// How long the dead-letter stream keeps messages.
const DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Pause between attempts to reach NATS, the stream or the consumer.
const REBIND_DELAY: Duration = Duration::from_secs(1);

/// Consumer settings, from the flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The reports stream (created by the gateway).
    pub stream: String,
    /// Filter subject of the consumer.
    pub subject: String,
    /// Durable consumer name.
    pub consumer: String,
    /// Redelivery timeout.
    pub ack_wait: Duration,
    /// Deliveries before giving up.
    pub max_deliver: i64,
    /// Unacknowledged messages allowed across replicas.
    pub max_ack_pending: i64,
    /// Messages per batch.
    pub batch_size: usize,
    /// Longest wait for a batch to fill.
    pub batch_wait: Duration,
    /// Dead-letter subject.
    pub dead_letter_subject: String,
    /// Dead-letter stream name.
    pub dead_letter_stream: String,
}

/// Why a message goes to the dead-letter subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Not JSON or not an envelope.
    Syntax,
    /// Breaks a validation rule.
    Invalid,
    /// The sink refused the row.
    Rejected,
    /// Still failing on the last allowed delivery.
    RetriesExhausted,
}

impl DeadReason {
    /// The header value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Syntax => "syntax",
            DeadReason::Invalid => "invalid",
            DeadReason::Rejected => "rejected",
            DeadReason::RetriesExhausted => "retries-exhausted",
        }
    }
}

/// The delay before a nakked message is redelivered: 1 s, doubling per delivery, at most 5 min.
pub fn nak_delay(delivered: i64) -> Duration {
    let exp = u32::try_from(delivered.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

/// Consumes until `shutdown`, rebinding after stream errors. Returns once the batch in hand is
/// settled after cancellation.
pub async fn run<S: Sink>(
    js: jetstream::Context,
    settings: Settings,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let worker = Worker {
        js,
        settings,
        sink,
        metrics,
    };
    loop {
        let Some(consumer) = worker.bind(&shutdown).await else {
            return;
        };
        health.set_consumer_bound(true);
        let ended = worker.consume(consumer, &shutdown).await;
        health.set_consumer_bound(false);
        if ended == Ended::Shutdown {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(REBIND_DELAY) => {}
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Shutdown,
    StreamFailed,
}

struct Worker<S> {
    js: jetstream::Context,
    settings: Settings,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
}

impl<S> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Worker {
            js: self.js.clone(),
            settings: self.settings.clone(),
            sink: self.sink.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// A batch decoded and ready for the sink: the messages with their delivery counts, and rows.
struct Decoded {
    messages: Vec<(Message, i64)>,
    rows: Vec<crate::row::Row>,
    started: Instant,
}

impl<S: Sink> Worker<S> {
    /// Waits for the reports stream, creates the dead-letter stream and binds the durable
    /// consumer (creating it, or updating its settings). `None` on shutdown.
    async fn bind(&self, shutdown: &CancellationToken) -> Option<PullConsumer> {
        let mut waiting_logged = false;
        loop {
            match self.try_bind().await {
                Ok(consumer) => {
                    tracing::info!(
                        stream = %self.settings.stream,
                        consumer = %self.settings.consumer,
                        "consumer bound"
                    );
                    return Some(consumer);
                }
                Err(e) => {
                    if !waiting_logged {
                        tracing::warn!(error = %e, stream = %self.settings.stream, "waiting for NATS and the reports stream");
                        waiting_logged = true;
                    } else {
                        tracing::debug!(error = %e, "still waiting");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(REBIND_DELAY) => {}
            }
        }
    }

    async fn try_bind(&self) -> Result<PullConsumer, async_nats::Error> {
        let s = &self.settings;
        let stream = self.js.get_stream(&s.stream).await?;
        // As many copies as the reports stream: a dead letter is a report too, and with one
        // copy a single NATS node down would keep every restarting ingester from binding.
        let num_replicas = stream.cached_info().config.num_replicas;
        self.js
            .get_or_create_stream(stream::Config {
                name: s.dead_letter_stream.clone(),
                subjects: vec![s.dead_letter_subject.clone()],
                num_replicas,
                storage: StorageType::File,
                max_age: DEAD_LETTER_MAX_AGE,
                duplicate_window: Duration::from_secs(2 * 3600),
                ..Default::default()
            })
            .await?;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(s.consumer.clone()),
                description: Some("Spartakus ingester: reports into the sink".into()),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: s.ack_wait,
                max_deliver: s.max_deliver,
                max_ack_pending: s.max_ack_pending,
                filter_subject: s.subject.clone(),
                ..Default::default()
            })
            .await?;
        Ok(consumer)
    }

    /// Pulls batches until shutdown, as a three-stage pipeline: while batch N is written and
    /// settled, batch N+1 is decoded and batch N+2 requested. Writes stay in order, one at a
    /// time, and every message is settled only after the sink answered for its batch. On
    /// shutdown no new request is made and the batches already requested are finished, so
    /// nothing is left delivered-but-unhandled.
    async fn consume(&self, consumer: PullConsumer, shutdown: &CancellationToken) -> Ended {
        let mut in_flight = Some(self.request(&consumer));
        let mut writing: Option<tokio::task::JoinHandle<()>> = None;
        let mut ended = Ended::Shutdown;
        while let Some(request) = in_flight.take() {
            let batch = match request.await {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "pull request failed; rebinding");
                    ended = Ended::StreamFailed;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "pull task failed; rebinding");
                    ended = Ended::StreamFailed;
                    break;
                }
            };
            if !shutdown.is_cancelled() {
                in_flight = Some(self.request(&consumer));
            }
            let decoded = self.decode(batch).await;
            if let Some(previous) = writing.take() {
                let _ = previous.await;
            }
            let worker = self.clone();
            writing = Some(tokio::spawn(async move { worker.write(decoded).await }));
        }
        if let Some(previous) = writing.take() {
            let _ = previous.await;
        }
        if let Some(request) = in_flight {
            // Rebinding after a failure: settle what the last request brought.
            if let Ok(Ok(batch)) = request.await {
                let decoded = self.decode(batch).await;
                self.write(decoded).await;
            }
        }
        ended
    }

    /// One pull request: up to `batch_size` messages, waiting at most `batch_wait`.
    fn request(
        &self,
        consumer: &PullConsumer,
    ) -> tokio::task::JoinHandle<Result<Vec<Message>, async_nats::Error>> {
        let consumer = consumer.clone();
        let (size, wait) = (self.settings.batch_size, self.settings.batch_wait);
        tokio::spawn(async move {
            let mut messages = consumer
                .batch()
                .max_messages(size)
                .expires(wait)
                .messages()
                .await?;
            let mut batch = Vec::with_capacity(size);
            while let Some(message) = messages.next().await {
                match message {
                    Ok(m) => batch.push(m),
                    // Keep what arrived: it is delivered and must be settled.
                    Err(e) if !batch.is_empty() => {
                        tracing::debug!(error = %e, "pull request ended early");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(batch)
        })
    }

    /// Decodes a batch; poison messages are dead-lettered here.
    async fn decode(&self, batch: Vec<Message>) -> Decoded {
        let started = Instant::now();
        let mut rows = Vec::with_capacity(batch.len());
        let mut written = Vec::with_capacity(batch.len());
        for message in batch {
            let delivered = match message.info() {
                Ok(info) => {
                    self.metrics.pending(info.pending);
                    info.delivered
                }
                Err(_) => 1,
            };
            if delivered > 1 {
                self.metrics.redelivered();
            }
            match report::Envelope::decode(&message.payload) {
                Ok(envelope) => {
                    rows.push(row::from_envelope(envelope));
                    written.push((message, delivered));
                }
                Err(e) => {
                    let reason = match e {
                        report::DecodeError::Syntax(_) => DeadReason::Syntax,
                        report::DecodeError::Invalid(_) => DeadReason::Invalid,
                    };
                    self.dead_letter(&message, delivered, reason, &e.to_string())
                        .await;
                }
            }
        }
        Decoded {
            messages: written,
            rows,
            started,
        }
    }

    /// Writes one decoded batch and settles every message in it.
    async fn write(&self, decoded: Decoded) {
        let Decoded {
            messages: written,
            rows,
            started,
        } = decoded;
        if rows.is_empty() {
            return;
        }
        let ids: Vec<String> = rows.iter().map(|r| r.report_id.clone()).collect();
        let sink = self.sink.name();
        let result = self.sink.write(rows).await;
        let ok = result.is_ok();
        match result {
            Ok(outcomes) => {
                let (mut new, mut dup) = (0, 0);
                for (((message, delivered), outcome), id) in
                    written.into_iter().zip(outcomes).zip(&ids)
                {
                    match outcome {
                        Outcome::Written | Outcome::Duplicate => {
                            if matches!(outcome, Outcome::Written) {
                                new += 1;
                            } else {
                                dup += 1;
                            }
                            if let Err(e) = message.ack().await {
                                // Stored already: a redelivery will be a harmless duplicate.
                                tracing::warn!(report_id = %id, error = %e, "ack failed");
                            }
                        }
                        Outcome::Rejected(reason) => {
                            tracing::warn!(report_id = %id, %reason, "sink rejected the row");
                            self.dead_letter(&message, delivered, DeadReason::Rejected, &reason)
                                .await;
                        }
                        Outcome::Retry(e) => self.retry_later(&message, delivered, id, &e).await,
                    }
                }
                self.metrics.rows(sink, "written", new);
                self.metrics.rows(sink, "duplicate", dup);
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = ids.len(), "sink write failed");
                for ((message, delivered), id) in written.into_iter().zip(&ids) {
                    if e.is_retryable() {
                        self.retry_later(&message, delivered, id, &e).await;
                    } else {
                        self.dead_letter(&message, delivered, DeadReason::Rejected, &e.to_string())
                            .await;
                    }
                }
            }
        }
        self.metrics.batch(ok, started.elapsed().as_secs_f64());
    }

    async fn retry_later(
        &self,
        message: &Message,
        delivered: i64,
        id: &str,
        error: &crate::error::SinkError,
    ) {
        if delivered >= self.settings.max_deliver {
            tracing::error!(report_id = %id, delivered, %error, "giving up on a report: dead-lettering it");
            self.dead_letter(
                message,
                delivered,
                DeadReason::RetriesExhausted,
                &error.to_string(),
            )
            .await;
            return;
        }
        self.metrics.nakked();
        if let Err(e) = message
            .ack_with(AckKind::Nak(Some(nak_delay(delivered))))
            .await
        {
            tracing::warn!(report_id = %id, error = %e, "nak failed; redelivered after ack_wait");
        }
    }

    /// Publishes the message to the dead-letter subject and, once JetStream stored it,
    /// terminates it. If the dead-letter publish fails the message is nakked instead.
    async fn dead_letter(
        &self,
        message: &Message,
        delivered: i64,
        reason: DeadReason,
        detail: &str,
    ) {
        let sequence = message
            .info()
            .map(|i| i.stream_sequence)
            .unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(REASON_HEADER, reason.as_str());
        headers.insert(DETAIL_HEADER, header_value(detail).as_str());
        headers.insert(SEQUENCE_HEADER, sequence.to_string().as_str());
        // A dead letter published twice (a crash before the Term) is stored once.
        headers.insert(
            "Nats-Msg-Id",
            format!("{}-{sequence}", self.settings.stream).as_str(),
        );
        if let Some(id) = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
            headers.insert("Spartakus-Report-Id", id.as_str());
        }
        let published = async {
            self.js
                .publish_with_headers(
                    self.settings.dead_letter_subject.clone(),
                    headers,
                    message.payload.clone(),
                )
                .await?
                .await?;
            Ok::<_, async_nats::Error>(())
        }
        .await;
        match published {
            Ok(()) => {
                self.metrics.dead_lettered(reason.as_str());
                tracing::warn!(
                    sequence,
                    reason = reason.as_str(),
                    detail,
                    "message dead-lettered"
                );
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(sequence, error = %e, "term failed");
                }
            }
            Err(e) => {
                tracing::warn!(sequence, error = %e, "dead-letter publish failed; nakking");
                self.metrics.nakked();
                let _ = message
                    .ack_with(AckKind::Nak(Some(nak_delay(delivered))))
                    .await;
            }
        }
    }
}

/// A header value: one line, at most 1 KiB.
fn header_value(detail: &str) -> String {
    let mut out: String = detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 1024 {
        let mut end = 1024;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_nak_delay_doubles_and_is_capped() {
        assert_eq!(nak_delay(1), Duration::from_secs(1));
        assert_eq!(nak_delay(2), Duration::from_secs(2));
        assert_eq!(nak_delay(4), Duration::from_secs(8));
        assert_eq!(nak_delay(20), Duration::from_secs(300));
        assert_eq!(nak_delay(0), Duration::from_secs(1));
    }

    #[test]
    fn header_values_are_one_bounded_line() {
        let v = header_value(&format!("a\r\nb{}", "é".repeat(2000)));
        assert!(!v.contains('\n') && !v.contains('\r'));
        assert!(v.len() <= 1024);
        assert!(v.starts_with("a  b"));
    }
}
