//! Binding a durable pull consumer, the one way both consumers (reports and erasures) do it:
//! wait until NATS and the stream (created by the gateway) are there, make sure the dead-letter
//! stream exists beside it (with as many copies: a dead letter is a report too) within its byte
//! budget, then create the consumer or update its settings.
//!
//! Nothing here waits on NATS for ever: the JetStream context's timeout (`--nats-timeout`)
//! bounds every API request (stream and consumer info, creation, update) and publish ack, and
//! [`reply`] bounds an ack or nak. A pull request ends by itself (async-nats ends it 5 s after
//! its expiry when the server sends nothing, and this crate at its expiry plus the timeout), but
//! an empty pull looks the same whether the server answered it or not: [`Liveness`] asks the
//! server for the consumer's info after one, at most once per timeout, so that a consumer whose
//! server went silent is noticed, unbound and bound again once the server answers.
//!
//! The gateway makes the reports and erasures streams with work-queue retention: a message is
//! deleted once acknowledged, which the consumers do only after the sink has it. JetStream
//! refuses a second consumer whose subjects overlap on such a stream; the one durable per
//! stream, shared by every replica under one name, is the only consumer there.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, AckKind, Message};
use report::queue::Stream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pause between attempts to reach NATS or the stream.
pub(crate) const REBIND_DELAY: Duration = Duration::from_secs(1);

/// One durable consumer as the ingester wants it.
#[derive(Debug, Clone)]
pub(crate) struct Durable {
    /// The stream it reads, with its one subject.
    pub(crate) stream: Stream,
    /// Where what can never be handled goes.
    pub(crate) dead_letters: Stream,
    /// The dead-letter stream's byte budget.
    pub(crate) dead_letters_max_bytes: i64,
    /// The durable name (replicas with the same name share the work).
    pub(crate) name: String,
    /// What it does, for the consumer's description.
    pub(crate) description: &'static str,
    /// Redelivery timeout.
    pub(crate) ack_wait: Duration,
    /// Deliveries before giving up; -1 for never.
    pub(crate) max_deliver: i64,
    /// Unacknowledged messages allowed across replicas; `None` for the server's default.
    pub(crate) max_ack_pending: Option<i64>,
    /// Longest wait for NATS to answer (`--nats-timeout`).
    pub(crate) nats_timeout: Duration,
}

impl Durable {
    /// Binds the consumer, retrying every [`REBIND_DELAY`] until it can (logging the first
    /// failure as a warning, later ones at debug). `None` on shutdown.
    pub(crate) async fn bind(
        &self,
        js: &jetstream::Context,
        shutdown: &CancellationToken,
    ) -> Option<PullConsumer> {
        let mut waiting_logged = false;
        loop {
            match self.try_bind(js).await {
                Ok(consumer) => {
                    tracing::info!(stream = %self.stream.name, consumer = %self.name, "consumer bound");
                    return Some(consumer);
                }
                Err(e) => {
                    let error = plumbing::Chain(&*e);
                    if !waiting_logged {
                        tracing::warn!(%error, stream = %self.stream.name, "waiting for NATS and the stream");
                        waiting_logged = true;
                    } else {
                        tracing::debug!(%error, stream = %self.stream.name, "still waiting");
                    }
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(REBIND_DELAY) => {}
            }
        }
    }

    async fn try_bind(&self, js: &jetstream::Context) -> Result<PullConsumer, async_nats::Error> {
        let stream = js.get_stream(&self.stream.name).await?;
        let num_replicas = stream.cached_info().config.num_replicas;
        let wanted = dead_letter_stream_config(
            &self.dead_letters.name,
            &self.dead_letters.subject,
            num_replicas,
            self.dead_letters_max_bytes,
        );
        let dead_letters = js.get_or_create_stream(wanted.clone()).await?;
        let current = &dead_letters.cached_info().config;
        // One made by an earlier ingester has no budget: give it this one.
        if current.max_bytes != wanted.max_bytes || current.discard != wanted.discard {
            tracing::info!(stream = %wanted.name, max_bytes = wanted.max_bytes, "dead-letter stream budget updated");
            js.update_stream(&wanted).await?;
        }
        let mut config = pull::Config {
            durable_name: Some(self.name.clone()),
            description: Some(format!("Spartakus ingester: {}", self.description)),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            filter_subject: self.stream.subject.clone(),
            ..Default::default()
        };
        if let Some(max) = self.max_ack_pending {
            config.max_ack_pending = max;
        }
        Ok(stream.create_consumer(config).await?)
    }
}

/// Acknowledges (or naks, terms, …) `message`, giving up after `timeout`: an ack is handed to
/// the client's command queue, which waits while that queue is full (a server that stopped
/// reading). An ack that does not arrive is harmless: the message is delivered again after its
/// ack wait.
pub(crate) async fn reply(
    message: &Message,
    kind: AckKind,
    timeout: Duration,
) -> Result<(), async_nats::Error> {
    match tokio::time::timeout(timeout, message.ack_with(kind)).await {
        Ok(replied) => replied,
        Err(_) => Err(NotHanded.into()),
    }
}

/// An ack or nak the client did not take in time ([`reply`]).
#[derive(Debug, thiserror::Error)]
#[error("not handed to the NATS client within --nats-timeout (its queue is full)")]
pub(crate) struct NotHanded;

/// Whether a consumer's server still answers, asked after a pull that brought nothing when
/// nothing else showed it for `timeout`.
#[derive(Debug)]
pub(crate) struct Liveness {
    timeout: Duration,
    last_answer: Instant,
}

/// Why [`Liveness::check`] found the consumer unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unanswered {
    /// Nothing came back in time.
    #[error("NATS did not answer the consumer's info request within {0:?} (--nats-timeout)")]
    Silent(Duration),
    /// The server answered with an error (e.g. the consumer is gone).
    #[error("the consumer's info request failed")]
    Failed(#[source] async_nats::Error),
}

impl Liveness {
    pub(crate) fn new(timeout: Duration) -> Self {
        Liveness {
            timeout,
            last_answer: Instant::now(),
        }
    }

    /// The server just answered (a message arrived).
    pub(crate) fn answered(&mut self) {
        self.last_answer = Instant::now();
    }

    /// After a pull that brought nothing: `Ok` when the server answered within the last
    /// timeout, or answers the consumer's info request within the timeout now.
    pub(crate) async fn check(&mut self, consumer: &mut PullConsumer) -> Result<(), Unanswered> {
        if self.last_answer.elapsed() < self.timeout {
            return Ok(());
        }
        // The JetStream context's timeout bounds the request already; this bound holds
        // whatever that is.
        match tokio::time::timeout(self.timeout, consumer.info()).await {
            Ok(Ok(_)) => {
                self.answered();
                Ok(())
            }
            Ok(Err(e)) => Err(Unanswered::Failed(e.into())),
            Err(_) => Err(Unanswered::Silent(self.timeout)),
        }
    }
}

/// How long the dead-letter stream keeps messages.
const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The dead-letter stream's configuration: as many copies as the reports stream (a dead
/// letter is a report too, and with one copy a single NATS node down would keep every
/// restarting ingester from binding), and a byte budget of `max_bytes`. Limits retention: a
/// dead letter waits for an operator for [`MAX_AGE`]. `DiscardPolicy::New`: when the budget is
/// full, a new dead letter is refused and its report nakked, so it stays in the reports stream
/// instead of an older dead letter being dropped.
pub(crate) fn dead_letter_stream_config(
    name: &str,
    subject: &str,
    num_replicas: usize,
    max_bytes: i64,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        num_replicas,
        storage: StorageType::File,
        max_age: MAX_AGE,
        max_bytes,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(2 * 3600),
        ..Default::default()
    }
}
