//! Publishing reports and erasure requests to JetStream, and keeping their streams there.
//!
//! The NATS client connects in the background and reconnects on its own, so the gateway starts
//! and answers `/healthz` while NATS is away; [`Publisher::maintain`] creates or verifies the
//! streams whenever it is connected, and [`Publisher::is_ready`] says whether a publish can
//! succeed right now.
//!
//! The streams' names come from [`report::queue::Topology`], which the ingester reads too.
//! Erasure requests go to a stream of their own, with the reports stream's replicas, duplicate window, age and size limits: the ingester
//! consumes them with a consumer of their own, and a backlog of reports never delays an
//! erasure. Only the check is queued ([`QueuedErasure`]), never the secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode, stream};
use async_nats::{HeaderMap, header::NATS_MESSAGE_ID};
use bytes::Bytes;
use report::ReportId;
use report::erasure::QueuedErasure;
use report::queue::Topology;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ApiError;

/// How often the stream is checked (and created if missing), which bounds how stale
/// `/readyz` can be.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The stream as the gateway wants it.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Stream name.
    pub name: String,
    /// The one subject.
    pub subject: String,
    /// Copies in a cluster.
    pub replicas: usize,
    /// Deduplication window for `Nats-Msg-Id`.
    pub duplicate_window: Duration,
    /// Age limit.
    pub max_age: Duration,
    /// Size limit; -1 for none.
    pub max_bytes: i64,
    /// What the stream holds, for its description.
    pub holds: &'static str,
}

impl StreamSettings {
    /// The settings the flags ask for.
    pub fn from_config(config: &Config) -> Self {
        StreamSettings {
            name: config.queue.reports.name.clone(),
            subject: config.queue.reports.subject.clone(),
            replicas: usize::from(config.stream_replicas),
            duplicate_window: config.duplicate_window,
            max_age: config.stream_max_age,
            max_bytes: config
                .stream_max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            holds: "reports",
        }
    }

    /// The erasures stream of `queue` beside these reports: its own name and subject, the
    /// same limits.
    pub fn erasures(&self, queue: &Topology) -> Self {
        StreamSettings {
            name: queue.erasures.name.clone(),
            subject: queue.erasures.subject.clone(),
            holds: "erasure requests (checks, never secrets)",
            ..self.clone()
        }
    }

    /// The JetStream stream configuration.
    ///
    /// File storage, `Limits` retention (messages stay for `max_age` after the ingester has
    /// consumed them, so a bad load can be replayed), and `DiscardPolicy::New`: when the stream
    /// is full, a new publish fails and the volunteer gets a 503 and retries later. `Old` would
    /// instead silently delete the oldest reports, which may not have been ingested yet: losing
    /// reports already acknowledged with 204 is worse than refusing new ones honestly.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![self.subject.clone()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            max_messages: -1,
            max_messages_per_subject: -1,
            max_consumers: -1,
            description: Some(format!(
                "Spartakus {}, published by the gateway",
                self.holds
            )),
            ..Default::default()
        }
    }
}

/// Why a report could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Not connected to NATS right now.
    #[error("not connected to NATS")]
    Disconnected,
    /// No acknowledgment within the publish timeout.
    #[error("no acknowledgment within {0:?}")]
    Timeout(Duration),
    /// The message is larger than the server's `max_payload`.
    #[error("message of {size} bytes is larger than the server's max_payload ({limit})")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The server's limit.
        limit: u64,
    },
    /// JetStream refused the message or the connection failed.
    #[error("publish failed: {0}")]
    Failed(#[source] jetstream::context::PublishError),
}

impl PublishError {
    /// The `outcome` label of the publish latency metric: one of a closed set.
    pub fn outcome(&self) -> &'static str {
        match self {
            PublishError::Disconnected => "disconnected",
            PublishError::Timeout(_) => "timeout",
            PublishError::TooLarge { .. } => "too-large",
            PublishError::Failed(_) => "failed",
        }
    }

    /// What the client is told: the queue's size limit, which it can act on, or that the queue
    /// is unavailable for now. The cause is logged, never returned.
    pub fn api_error(&self) -> ApiError {
        match self {
            PublishError::TooLarge { limit, .. } => {
                ApiError::QueueMessageTooLarge { limit: *limit }
            }
            PublishError::Disconnected | PublishError::Timeout(_) | PublishError::Failed(_) => {
                ApiError::Unavailable
            }
        }
    }

    /// Whether the cause is logged already, once, where it happens: async-nats logs a lost
    /// connection itself, and a line for every request refused meanwhile would flood.
    pub fn is_logged_elsewhere(&self) -> bool {
        matches!(self, PublishError::Disconnected)
    }
}

/// JetStream's acknowledgment of a stored report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The stream already held a message with this ID (within the duplicate window).
    pub duplicate: bool,
}

/// The `Nats-Msg-Id` of an erasure request: retries of one request (the same cluster, check and
/// minute) are stored once; a request made again later is a new one, covering the reports
/// received up to then. Not secret: the check is what the cluster's reports carry anyway.
pub fn erasure_message_id(queued: &QueuedErasure) -> String {
    format!(
        "erasure:{}:{}:{}",
        queued.erasure.cluster_id,
        queued.erasure.erasure_check,
        queued.requested_at.as_second().div_euclid(60)
    )
}

/// Publishes reports to one stream's subject.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    settings: Arc<StreamSettings>,
    erasures: Arc<StreamSettings>,
    stream_ok: Arc<AtomicBool>,
    timeout: Duration,
}

impl Publisher {
    /// Starts connecting to NATS in the background and returns at once.
    pub async fn connect(
        url: &str,
        settings: StreamSettings,
        erasures: StreamSettings,
        publish_timeout: Duration,
    ) -> Result<Self, async_nats::ConnectError> {
        let client = plumbing::nats::connect("spartakus-gateway", url).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(publish_timeout)
            .build(client.clone());
        Ok(Publisher {
            client,
            js,
            erasures: Arc::new(erasures),
            settings: Arc::new(settings),
            stream_ok: Arc::new(AtomicBool::new(false)),
            timeout: publish_timeout,
        })
    }

    /// Whether a publish can succeed now: connected, and the stream was there at the last check.
    pub fn is_ready(&self) -> bool {
        self.client.connection_state() == State::Connected && self.stream_ok.load(Ordering::Relaxed)
    }

    /// Publishes a report's envelope with `Nats-Msg-Id: id` and waits for JetStream's
    /// acknowledgment.
    pub async fn publish(&self, id: ReportId, payload: Vec<u8>) -> Result<Ack, PublishError> {
        self.publish_to(&self.settings.subject, &id.to_string(), payload)
            .await
    }

    /// Queues an erasure request (see [`erasure_message_id`]) and waits for JetStream's
    /// acknowledgment.
    pub async fn publish_erasure(&self, queued: &QueuedErasure) -> Result<Ack, PublishError> {
        self.publish_to(
            &self.erasures.subject,
            &erasure_message_id(queued),
            queued.encode(),
        )
        .await
    }

    async fn publish_to(
        &self,
        subject: &str,
        id: &str,
        payload: Vec<u8>,
    ) -> Result<Ack, PublishError> {
        // Fail fast while disconnected rather than queue the message in the client's buffer.
        if self.client.connection_state() != State::Connected {
            return Err(PublishError::Disconnected);
        }
        let limit = self.client.server_info().max_payload as u64;
        if limit > 0 && payload.len() as u64 > limit {
            return Err(PublishError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id);
        let publish = async {
            let ack = self
                .js
                .publish_with_headers(subject.to_owned(), headers, Bytes::from(payload))
                .await?;
            ack.await
        };
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(ack)) => Ok(Ack {
                duplicate: ack.duplicate,
            }),
            Ok(Err(e)) if e.kind() == PublishErrorKind::TimedOut => {
                Err(PublishError::Timeout(self.timeout))
            }
            Ok(Err(e)) if e.kind() == PublishErrorKind::StreamNotFound => {
                // The stream vanished: let `maintain` recreate it and `/readyz` say so meanwhile.
                self.stream_ok.store(false, Ordering::Relaxed);
                Err(PublishError::Failed(e))
            }
            Ok(Err(e)) => Err(PublishError::Failed(e)),
            Err(_) => Err(PublishError::Timeout(self.timeout)),
        }
    }

    /// Until `shutdown`: whenever connected, makes sure both streams exist as configured.
    pub async fn maintain(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_ok = false;
        let mut last_error = String::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let ok = self.client.connection_state() == State::Connected
                && match tokio::time::timeout(self.timeout, self.ensure_streams()).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        // Once per distinct failure: a misconfigured stream needs an operator.
                        let error = e.to_string();
                        if error != last_error {
                            tracing::warn!(stream = %self.settings.name, %error, "stream check failed");
                            last_error = error;
                        }
                        false
                    }
                    Err(_) => false,
                };
            self.stream_ok.store(ok, Ordering::Relaxed);
            if ok && !was_ok {
                last_error.clear();
                tracing::info!(stream = %self.settings.name, subject = %self.settings.subject, "stream ready");
            }
            was_ok = ok;
        }
    }

    async fn ensure_streams(&self) -> Result<(), StreamSetupError> {
        self.ensure_stream(&self.settings).await?;
        self.ensure_stream(&self.erasures).await
    }

    /// Creates the stream if it is missing; if it exists with other settings, updates them.
    async fn ensure_stream(&self, settings: &StreamSettings) -> Result<(), StreamSetupError> {
        let wanted = settings.stream_config();
        match self.js.get_stream(&settings.name).await {
            Ok(existing) => {
                let current = &existing.cached_info().config;
                if differs(current, &wanted) {
                    tracing::warn!(stream = %wanted.name, "stream settings differ from the flags; updating");
                    self.js
                        .update_stream(&wanted)
                        .await
                        .map_err(StreamSetupError::update)?;
                }
                Ok(())
            }
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(ref js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                self.js
                    .create_stream(wanted)
                    .await
                    .map_err(StreamSetupError::create)?;
                tracing::info!(stream = %settings.name, "stream created");
                Ok(())
            }
            Err(e) => Err(StreamSetupError::Get(e.to_string())),
        }
    }

    /// Waits until everything published has reached the server.
    pub async fn flush(&self) -> Result<(), async_nats::client::FlushError> {
        self.client.flush().await
    }
}

/// Whether the settings the gateway manages differ.
fn differs(current: &stream::Config, wanted: &stream::Config) -> bool {
    !current.subjects.contains(&wanted.subjects[0])
        || current.storage != wanted.storage
        || current.num_replicas != wanted.num_replicas
        || current.duplicate_window != wanted.duplicate_window
        || current.max_age != wanted.max_age
        || current.max_bytes != wanted.max_bytes
        || current.discard != wanted.discard
}

/// Why the stream could not be created or verified.
#[derive(Debug, thiserror::Error)]
enum StreamSetupError {
    #[error("looking up the stream: {0}")]
    Get(String),
    #[error("creating the stream: {0}")]
    Create(String),
    #[error("updating the stream: {0}")]
    Update(String),
}

impl StreamSetupError {
    fn create(e: impl std::fmt::Display) -> Self {
        Self::Create(e.to_string())
    }
    fn update(e: impl std::fmt::Display) -> Self {
        Self::Update(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_error_tells_the_client_only_what_it_can_act_on() {
        let failed = PublishError::Failed(jetstream::context::PublishError::new(
            PublishErrorKind::StreamNotFound,
        ));
        let errors = [
            PublishError::Disconnected,
            PublishError::Timeout(Duration::from_secs(1)),
            PublishError::TooLarge {
                size: 2048,
                limit: 1024,
            },
            failed,
        ];
        let told: Vec<_> = errors
            .iter()
            .map(|e| (e.outcome(), e.api_error().reason(), e.is_logged_elsewhere()))
            .collect();
        assert_eq!(
            told,
            [
                ("disconnected", "unavailable", true),
                ("timeout", "unavailable", false),
                ("too-large", "queue-message-too-large", false),
                ("failed", "unavailable", false),
            ]
        );
        assert!(
            matches!(
                errors[2].api_error(),
                ApiError::QueueMessageTooLarge { limit: 1024 }
            ),
            "the limit, which the client can act on"
        );
    }
}
