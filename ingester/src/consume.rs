//! The JetStream side: a durable pull consumer shared by every replica, batches of messages,
//! and what happens to each message once the sink has answered.
//!
//! A message is acknowledged only after the sink committed its row, or decided never to store it:
//! a report its cluster asked to erase ([`Outcome::Erased`]), or one received longer ago than
//! `--retention` (it would be deleted at once). A message that can never be
//! stored (undecodable, invalid under the current rules, or refused by the sink) goes to the
//! dead-letter subject (`crate::deadletter`). A transient failure naks with a delay that
//! grows with the delivery count; on the last allowed delivery the message is dead-lettered
//! instead, so nothing is dropped silently. A sink that can never write again (or a write task
//! that panicked) naks what is in hand and ends the consumer with an error, so that the process
//! exits non-zero and is restarted rather than looking healthy.
//!
//! No NATS call waits for ever (see `crate::durable`): a pull request ends by its expiry plus
//! `--nats-timeout`, and a pull that brought nothing is followed, at most once per timeout, by
//! a consumer info request; a server that does not answer it in time unbinds the consumer
//! (`/readyz` says so), which binds again once the server answers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind, Message};
use futures::StreamExt;
use report::ReportId;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::deadletter::{self, DeadReason};
use crate::durable::{self, Durable, Liveness, REBIND_DELAY};
use crate::error::SinkError;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::row::{self, Row};
use crate::sink::{Outcome, Sink};

/// Batches handed to the sink at once: one being written and the next, queued behind it, so
/// the sink never waits for the consumer between two batches.
const WRITES_AHEAD: usize = 2;

/// The delay of the nak that hands back the messages of a batch whose sink failed for good.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// Consumer settings, from the flags.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The durable consumer on the reports stream.
    pub(crate) durable: Durable,
    /// Messages per batch.
    pub(crate) batch_size: usize,
    /// Bytes of messages per batch (as the stream stores them); a message larger than this is
    /// pulled alone.
    pub(crate) batch_max_bytes: usize,
    /// Longest wait for a batch to fill.
    pub(crate) batch_wait: Duration,
    /// Reports received longer ago than this are acknowledged without being stored.
    pub(crate) retention: Option<Duration>,
}

/// Why the consumer stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The sink can never write again in this process (see `SinkError::is_fatal`).
    #[error("the sink failed for good")]
    Sink(#[source] SinkError),
    /// A task writing a batch to the sink panicked.
    #[error("a sink write task panicked")]
    WriteTask(#[source] JoinError),
}

/// The delay before a nakked message is redelivered: 1 s, doubling per delivery, at most 5 min.
pub(crate) fn nak_delay(delivered: i64) -> Duration {
    let exp = u32::try_from(delivered.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

/// Consumes until `shutdown`, rebinding after stream errors. Returns `Ok` once the batches in
/// hand are settled after cancellation, `Err` when the sink failed for good (every message in
/// hand is nakked first).
pub(crate) async fn run<S: Sink>(
    js: jetstream::Context,
    settings: Settings,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    let worker = Worker {
        js,
        settings,
        sink,
        metrics,
        replies_stuck: AtomicBool::new(false),
    };
    loop {
        let Some(consumer) = worker.settings.durable.bind(&worker.js, &shutdown).await else {
            return Ok(());
        };
        health.set_consumer_bound(true);
        let ended = worker.consume(consumer, &shutdown).await;
        health.set_consumer_bound(false);
        match ended {
            Ended::Shutdown => return Ok(()),
            Ended::Failed(e) => return Err(e),
            Ended::StreamFailed => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(REBIND_DELAY) => {}
        }
    }
}

#[derive(Debug)]
enum Ended {
    Shutdown,
    StreamFailed,
    Failed(ConsumeError),
}

struct Worker<S> {
    js: jetstream::Context,
    settings: Settings,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    /// Whether the last ack or nak could not be handed to the client within the timeout: the
    /// next ones then wait no longer than it takes to try, so settling a batch of hundreds
    /// waits on a stuck client once, not once per message.
    replies_stuck: AtomicBool,
}

/// A batch decoded and ready for the sink: the messages with their delivery counts and report
/// IDs, and their rows; and the messages that will not be written.
struct Decoded {
    messages: Vec<Pending>,
    rows: Vec<Row>,
    aside: Vec<Aside>,
    started: Instant,
}

impl Decoded {
    /// Adds `other`'s messages and rows (both batches' aside messages are already carried out).
    fn append(&mut self, other: Decoded) {
        self.messages.extend(other.messages);
        self.rows.extend(other.rows);
    }
}

/// A delivered message that will not be written, and what should happen to it.
enum Aside {
    /// Received before the retention's cutoff: acknowledged unstored.
    Expired(Message, ReportId),
    /// Not an envelope, or not a valid report: dead-lettered.
    Dead {
        message: Message,
        delivered: i64,
        reason: DeadReason,
        detail: String,
    },
}

/// A delivered message whose row is being written.
struct Pending {
    message: Message,
    delivered: i64,
    id: ReportId,
}

/// A batch being written by its own task; its messages stay here, so that they can be settled
/// whatever becomes of the task.
struct Writing {
    task: JoinHandle<Result<Vec<Outcome>, SinkError>>,
    messages: Vec<Pending>,
    started: Instant,
}

impl<S: Sink> Worker<S> {
    /// Pulls batches until shutdown, as a pipeline that keeps the sink busy: up to
    /// [`WRITES_AHEAD`] batches are handed to the sink at once (the SQLite writer takes the
    /// next from its queue the moment it commits one), while the next batch is pulled and
    /// decoded, and a batch is settled (acked) as soon as its own write answered, while the next
    /// is being written. Every message is settled only after the sink answered for its batch.
    /// At most three batches are in hand (two when those being written hold twice the byte
    /// budget).
    /// On shutdown no new request is made and the batches already requested are finished, so
    /// nothing is left delivered-but-unhandled. When the sink fails for good, what is in hand
    /// is nakked.
    async fn consume(&self, mut consumer: PullConsumer, shutdown: &CancellationToken) -> Ended {
        let mut liveness = Liveness::new(self.settings.durable.nats_timeout);
        let mut in_flight: Option<JoinHandle<Result<Vec<Message>, async_nats::Error>>> = None;
        let mut ready: Option<Decoded> = None;
        let mut writes: VecDeque<Writing> = VecDeque::new();
        let mut ended = Ended::Shutdown;
        loop {
            if writes.len() < WRITES_AHEAD
                && let Some(decoded) = ready.take()
                && let Some(w) = self.start_write(decoded)
            {
                writes.push_back(w);
            }
            // Another batch while there is room for it: a third one while the two handed to
            // the sink hold less than twice the byte budget (so the next is decoded before the
            // sink needs it), two when they are large. Messages in hand stay under twice
            // max(budget, the largest report).
            let held = writes
                .iter()
                .map(|w| payload_bytes(w.messages.iter().map(|p| &p.message)))
                .sum::<usize>();
            if in_flight.is_none()
                && ready.is_none()
                && !shutdown.is_cancelled()
                && (writes.len() < WRITES_AHEAD
                    || held < self.settings.batch_max_bytes.saturating_mul(2))
            {
                in_flight = Some(self.request(&consumer));
            }
            if in_flight.is_none() && writes.is_empty() && ready.is_none() {
                break;
            }
            tokio::select! {
                biased;
                joined = async {
                    match writes.front_mut() {
                        Some(w) => (&mut w.task).await,
                        None => std::future::pending().await,
                    }
                }, if !writes.is_empty() => {
                    let Some(w) = writes.pop_front() else { continue };
                    if let Err(e) = self.settle(joined, w.messages, w.started).await {
                        ended = Ended::Failed(e);
                        break;
                    }
                }
                pulled = async {
                    match in_flight.as_mut() {
                        Some(request) => request.await,
                        None => std::future::pending().await,
                    }
                }, if in_flight.is_some() => {
                    in_flight = None;
                    let batch = match pulled {
                        Ok(Ok(batch)) if !batch.is_empty() => {
                            liveness.answered();
                            batch
                        }
                        // Nothing came: an idle stream, or a server that stopped answering.
                        Ok(Ok(batch)) => match liveness.check(&mut consumer).await {
                            Ok(()) => batch,
                            Err(e) => {
                                tracing::warn!(error = %plumbing::Chain(&e), "NATS is not answering; rebinding");
                                ended = Ended::StreamFailed;
                                break;
                            }
                        },
                        Ok(Err(e)) => {
                            tracing::warn!(error = %plumbing::Chain(&*e), "pull request failed; rebinding");
                            ended = Ended::StreamFailed;
                            break;
                        }
                        Err(e) => {
                            tracing::error!(error = %plumbing::Chain(&e), "pull task failed; rebinding");
                            ended = Ended::StreamFailed;
                            break;
                        }
                    };
                    if !batch.is_empty() {
                        ready = Some(self.take(batch).await);
                    }
                }
            }
        }
        // Rebinding or failing: settle what is in hand, in order. After a failure for good
        // what was not handed to the sink yet is handed back.
        let failed = |ended: &Ended| matches!(ended, Ended::Failed(_));
        while let Some(w) = writes.pop_front() {
            let joined = w.task.await;
            if let Err(e) = self.settle(joined, w.messages, w.started).await
                && !failed(&ended)
            {
                ended = Ended::Failed(e);
            }
        }
        if let Some(request) = in_flight
            && let Ok(Ok(batch)) = request.await
            && !batch.is_empty()
        {
            let decoded = self.take(batch).await;
            match ready.as_mut() {
                Some(r) => r.append(decoded),
                None => ready = Some(decoded),
            }
        }
        if let Some(decoded) = ready {
            if failed(&ended) {
                self.hand_back(decoded.messages).await;
            } else if let Some(w) = self.start_write(decoded) {
                let joined = w.task.await;
                if let Err(e) = self.settle(joined, w.messages, w.started).await {
                    ended = Ended::Failed(e);
                }
            }
        }
        ended
    }

    /// One batch: what the stream holds now, up to `batch_size` messages and `batch_max_bytes`
    /// bytes, without waiting; when it holds nothing, the first report to arrive within
    /// `batch_wait` and what arrived with it. A batch never waits to fill: under load it fills
    /// while the previous one is written, and the last report of a burst is written at once
    /// rather than after `batch_wait`. When the next message alone is larger than the byte
    /// budget, JetStream delivers nothing and says so; that message is then pulled alone, so
    /// that it is written like any other rather than refused for ever.
    fn request(
        &self,
        consumer: &PullConsumer,
    ) -> JoinHandle<Result<Vec<Message>, async_nats::Error>> {
        let consumer = consumer.clone();
        let s = &self.settings;
        let (size, max_bytes, wait) = (s.batch_size, s.batch_max_bytes, s.batch_wait);
        let timeout = s.durable.nats_timeout;
        tokio::spawn(async move {
            match pull(&consumer, Pull::Now { size, max_bytes }, timeout).await? {
                Pulled::Batch(batch) if !batch.is_empty() => return Ok(batch),
                Pulled::Batch(_) => {}
                Pulled::TooLarge => return pull_alone(&consumer, max_bytes, timeout).await,
            }
            let Pulled::Batch(mut batch) = pull(&consumer, Pull::First { wait }, timeout).await?
            else {
                return Ok(Vec::new());
            };
            let left = max_bytes.saturating_sub(payload_bytes(batch.iter()));
            if batch.is_empty() || size <= 1 || left == 0 {
                return Ok(batch);
            }
            // What arrived with the first: a failure here only ends the batch early.
            let more = Pull::Now {
                size: size - 1,
                max_bytes: left,
            };
            match pull(&consumer, more, timeout).await {
                Ok(Pulled::Batch(more)) => batch.extend(more),
                Ok(Pulled::TooLarge) => {}
                Err(e) => {
                    tracing::debug!(error = %plumbing::Chain(&*e), "pull after the first report failed")
                }
            }
            Ok(batch)
        })
    }

    /// Decodes a batch and decides what becomes of each message, without I/O: a row to
    /// write, or a message put aside (poison to dead-letter, a report older than the
    /// retention to acknowledge unstored), which [`Worker::put_aside`] then carries out.
    fn decode(&self, batch: Vec<Message>) -> Decoded {
        let started = Instant::now();
        let mut rows = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        let mut aside = Vec::new();
        let cutoff = crate::retention::cutoff(self.settings.retention, jiff::Timestamp::now());
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
                    let row = row::from_envelope(envelope);
                    if cutoff.is_some_and(|c| row.received_at.as_second() < c.as_second()) {
                        // Retention would delete it at once; its tombstone may be gone already.
                        aside.push(Aside::Expired(message, row.report_id));
                        continue;
                    }
                    messages.push(Pending {
                        message,
                        delivered,
                        id: row.report_id,
                    });
                    rows.push(row);
                }
                Err(e) => {
                    let reason = match e {
                        report::DecodeError::Syntax(_) => DeadReason::Syntax,
                        report::DecodeError::Invalid(_) => DeadReason::Invalid,
                    };
                    aside.push(Aside::Dead {
                        message,
                        delivered,
                        reason,
                        detail: e.to_string(),
                    });
                }
            }
        }
        Decoded {
            messages,
            rows,
            aside,
            started,
        }
    }

    /// Carries out what [`Worker::decode`] decided for the messages it put aside.
    async fn put_aside(&self, aside: Vec<Aside>) {
        let mut expired = 0;
        for a in aside {
            match a {
                Aside::Expired(message, id) => {
                    expired += 1;
                    if let Err(e) = self.reply(&message, AckKind::Ack).await {
                        tracing::warn!(report_id = %id, error = %plumbing::Chain(&*e), "ack failed");
                    }
                }
                Aside::Dead {
                    message,
                    delivered,
                    reason,
                    detail,
                } => self.dead_letter(&message, delivered, reason, &detail).await,
            }
        }
        self.metrics.rows(self.sink.name(), "expired", expired);
    }

    /// [`Worker::decode`] and [`Worker::put_aside`]: the batch's rows and their messages.
    async fn take(&self, batch: Vec<Message>) -> Decoded {
        let mut decoded = self.decode(batch);
        self.put_aside(std::mem::take(&mut decoded.aside)).await;
        decoded
    }

    /// Hands a decoded batch's rows to the sink in a task of its own; `None` when it has none.
    fn start_write(&self, decoded: Decoded) -> Option<Writing> {
        if decoded.rows.is_empty() {
            return None;
        }
        let sink = self.sink.clone();
        let rows = decoded.rows;
        Some(Writing {
            task: tokio::spawn(async move { sink.write(rows).await }),
            messages: decoded.messages,
            started: decoded.started,
        })
    }

    /// Settles every message of a batch whose write answered (`joined`): ack what is stored,
    /// dead-letter what never will be, nak what may be later. `Err` when the sink failed for
    /// good or the task panicked; the batch's messages are nakked then.
    async fn settle(
        &self,
        joined: Result<Result<Vec<Outcome>, SinkError>, JoinError>,
        messages: Vec<Pending>,
        started: Instant,
    ) -> Result<(), ConsumeError> {
        let sink = self.sink.name();
        let result = match joined {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %plumbing::Chain(&e), rows = messages.len(), "sink write task panicked; handing the batch back");
                self.metrics.batch(false, started.elapsed().as_secs_f64());
                self.hand_back(messages).await;
                return Err(ConsumeError::WriteTask(e));
            }
        };
        let ok = result.is_ok();
        match result {
            Ok(outcomes) => {
                let (mut new, mut dup, mut erased) = (0, 0, 0);
                for (pending, outcome) in messages.into_iter().zip(outcomes) {
                    let Pending {
                        message,
                        delivered,
                        id,
                    } = pending;
                    match outcome {
                        Outcome::Written | Outcome::Duplicate | Outcome::Erased => {
                            match outcome {
                                Outcome::Written => new += 1,
                                Outcome::Duplicate => dup += 1,
                                _ => erased += 1,
                            }
                            if let Err(e) = self.reply(&message, AckKind::Ack).await {
                                // Stored already: a redelivery will be a harmless duplicate.
                                tracing::warn!(report_id = %id, error = %plumbing::Chain(&*e), "ack failed");
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
                self.metrics.rows(sink, "erased", erased);
            }
            Err(e) if e.is_fatal() => {
                tracing::error!(error = %plumbing::Chain(&e), rows = messages.len(), "the sink failed for good; handing the batch back");
                self.metrics.batch(false, started.elapsed().as_secs_f64());
                self.hand_back(messages).await;
                return Err(ConsumeError::Sink(e));
            }
            Err(e) => {
                tracing::warn!(error = %plumbing::Chain(&e), rows = messages.len(), "sink write failed");
                for Pending {
                    message,
                    delivered,
                    id,
                } in messages
                {
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
        Ok(())
    }

    /// Naks messages this consumer will not write, with a short delay, so that another replica
    /// (or this one, restarted) takes them soon.
    async fn hand_back(&self, messages: Vec<Pending>) {
        for Pending { message, id, .. } in messages {
            self.metrics.nakked();
            if let Err(e) = self
                .reply(&message, AckKind::Nak(Some(HAND_BACK_DELAY)))
                .await
            {
                tracing::warn!(report_id = %id, error = %plumbing::Chain(&*e), "nak failed; redelivered after ack_wait");
            }
        }
    }

    async fn retry_later(
        &self,
        message: &Message,
        delivered: i64,
        id: ReportId,
        error: &SinkError,
    ) {
        if delivered >= self.settings.durable.max_deliver {
            tracing::error!(report_id = %id, delivered, error = %plumbing::Chain(error), "giving up on a report: dead-lettering it");
            let detail = plumbing::Chain(error).to_string();
            self.dead_letter(message, delivered, DeadReason::RetriesExhausted, &detail)
                .await;
            return;
        }
        self.metrics.nakked();
        if let Err(e) = self
            .reply(message, AckKind::Nak(Some(nak_delay(delivered))))
            .await
        {
            tracing::warn!(report_id = %id, error = %plumbing::Chain(&*e), "nak failed; redelivered after ack_wait");
        }
    }

    async fn dead_letter(
        &self,
        message: &Message,
        delivered: i64,
        reason: DeadReason,
        detail: &str,
    ) {
        let s = &self.settings;
        let sent = deadletter::send(
            &self.js,
            &s.durable,
            message,
            reason,
            detail,
            nak_delay(delivered),
        )
        .await;
        match sent {
            deadletter::Sent::Stored => self.metrics.dead_lettered(reason.as_str()),
            deadletter::Sent::Nakked => self.metrics.nakked(),
        }
    }
}

impl<S> Worker<S> {
    /// Acks, naks or terms `message` within `--nats-timeout`, or at once after one that did not
    /// make it (the client's queue is full until it reconnects).
    async fn reply(&self, message: &Message, kind: AckKind) -> Result<(), async_nats::Error> {
        let timeout = if self.replies_stuck.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            self.settings.durable.nats_timeout
        };
        let replied = durable::reply(message, kind, timeout).await;
        let stuck = replied
            .as_ref()
            .is_err_and(|e| e.is::<durable::NotHanded>());
        self.replies_stuck.store(stuck, Ordering::Relaxed);
        replied
    }
}

/// The bytes of these messages' payloads.
fn payload_bytes<'a>(messages: impl Iterator<Item = &'a Message>) -> usize {
    messages.map(|m| m.payload.len()).sum()
}

/// What one pull request brought.
enum Pulled {
    /// The messages delivered (maybe none).
    Batch(Vec<Message>),
    /// None: the next message alone is larger than the request's byte budget.
    TooLarge,
}

/// A pull request.
#[derive(Debug, Clone, Copy)]
enum Pull {
    /// What the stream holds now, up to `size` messages and `max_bytes` bytes, without
    /// waiting (JetStream's `no_wait`).
    Now { size: usize, max_bytes: usize },
    /// The next message, waiting up to `wait` for it (one message: never over a byte budget).
    First { wait: Duration },
}

/// The next message alone, larger than `max_bytes`: pulled without a byte budget.
async fn pull_alone(
    consumer: &PullConsumer,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Vec<Message>, async_nats::Error> {
    tracing::debug!(
        max_bytes,
        "the next report is larger than --batch-max-bytes: pulling it alone"
    );
    match pull(
        consumer,
        Pull::First {
            wait: Duration::ZERO,
        },
        timeout,
    )
    .await?
    {
        Pulled::Batch(batch) => Ok(batch),
        Pulled::TooLarge => Ok(Vec::new()),
    }
}

/// One pull request, which JetStream ends at once (`Now`) or after `wait` (`First`); given up
/// `timeout` after that when the server has not ended it (what arrived is kept), an error if
/// nothing did.
async fn pull(
    consumer: &PullConsumer,
    request: Pull,
    timeout: Duration,
) -> Result<Pulled, async_nats::Error> {
    let (wait, now) = match request {
        Pull::Now { .. } => (Duration::ZERO, true),
        Pull::First { wait } => (wait, false),
    };
    let deadline = tokio::time::Instant::now() + wait + timeout;
    let unanswered = || -> async_nats::Error {
        format!("pull request not answered within {wait:?} plus {timeout:?} (--nats-timeout)")
            .into()
    };
    let messages = match request {
        // JetStream ends a no-wait request itself, once it delivered what it holds.
        Pull::Now { size, max_bytes } => {
            let fetch = consumer.fetch().max_messages(size).max_bytes(max_bytes);
            tokio::time::timeout_at(deadline, fetch.messages()).await
        }
        // A waiting request needs an expiry of at least 1 ms.
        Pull::First { wait } => {
            let batch = consumer
                .batch()
                .max_messages(1)
                .expires(wait.max(Duration::from_millis(1)));
            tokio::time::timeout_at(deadline, batch.messages()).await
        }
    };
    let mut messages = messages.map_err(|_| unanswered())??;
    let mut batch = Vec::new();
    loop {
        let message = match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_) if batch.is_empty() => return Err(unanswered()),
            Err(_) => {
                tracing::debug!(
                    received = batch.len(),
                    "pull request not ended by the server in time; keeping what arrived"
                );
                break;
            }
        };
        match message {
            Ok(m) => batch.push(m),
            // Keep what arrived: it is delivered and must be settled. The budget running out
            // ends a request this way too.
            Err(e) if !batch.is_empty() => {
                tracing::debug!(error = %plumbing::Chain(&*e), "pull request ended early");
                break;
            }
            Err(e) if now && exceeds_max_bytes(&*e) => return Ok(Pulled::TooLarge),
            // A no-wait request JetStream will not serve now (e.g. 409 Exceeded
            // MaxAckPending, where a waiting request would wait): the waiting request follows.
            Err(e) if now && is_status(&*e) => {
                tracing::debug!(error = %plumbing::Chain(&*e), "no-wait pull refused");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Pulled::Batch(batch))
}

/// Whether a pull request was ended by a JetStream status (async-nats passes it on as the
/// error's text), not by the connection.
fn is_status(error: &(dyn std::error::Error + 'static)) -> bool {
    plumbing::Chain(error)
        .to_string()
        .contains("error while processing messages from the stream")
}

/// Whether a pull request ended because the next message was larger than its byte budget:
/// JetStream answers `409 Message Size Exceeds MaxBytes`, which async-nats passes on as the
/// error's text.
fn exceeds_max_bytes(error: &(dyn std::error::Error + 'static)) -> bool {
    plumbing::Chain(error)
        .to_string()
        .to_ascii_lowercase()
        .contains("exceeds maxbytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_over_the_byte_budget_is_told_from_other_pull_errors() {
        // The text async-nats gives JetStream's 409 status.
        let too_large = std::io::Error::other(
            "error while processing messages from the stream: 409, Some(\"Message Size Exceeds MaxBytes\")",
        );
        assert!(exceeds_max_bytes(&too_large));
        let other = std::io::Error::other(
            "error while processing messages from the stream: 409, Some(\"Consumer Deleted\")",
        );
        assert!(!exceeds_max_bytes(&other));
    }

    #[test]
    fn the_nak_delay_doubles_and_is_capped() {
        assert_eq!(nak_delay(1), Duration::from_secs(1));
        assert_eq!(nak_delay(2), Duration::from_secs(2));
        assert_eq!(nak_delay(4), Duration::from_secs(8));
        assert_eq!(nak_delay(20), Duration::from_secs(300));
        assert_eq!(nak_delay(0), Duration::from_secs(1));
    }
}
