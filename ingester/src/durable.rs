//! Binding a durable pull consumer, the one way both consumers (reports and erasures) do it:
//! wait until NATS and the stream (created by the gateway) are there, make sure the dead-letter
//! stream exists beside it (with as many copies: a dead letter is a report too) within its byte
//! budget, then create the consumer or update its settings.
//!
//! The gateway makes the reports and erasures streams with work-queue retention: a message is
//! deleted once acknowledged, which the consumers do only after the sink has it. JetStream
//! refuses a second consumer whose subjects overlap on such a stream; the one durable per
//! stream, shared by every replica under one name, is the only consumer there.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self};
use report::queue::Stream;
use tokio_util::sync::CancellationToken;

use crate::deadletter;

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
        let wanted = deadletter::stream_config(
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
