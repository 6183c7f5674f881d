//! Publishing reports and erasure requests to JetStream, and keeping their streams there.
//!
//! The NATS client connects in the background and reconnects on its own, so the gateway starts
//! and answers `/healthz` while NATS is away; [`Publisher::maintain`] creates or verifies the
//! streams whenever it is connected, reads how full they are, and [`Publisher::is_ready`] says
//! whether a publish can succeed right now.
//!
//! The streams' names come from [`report::queue::Topology`], which the ingester reads too.
//! Erasure requests go to a stream of their own, with its own byte budget: the ingester
//! consumes them with a consumer of their own, a backlog of reports never delays an erasure,
//! and a full reports stream never keeps one out. Only the check is queued
//! ([`QueuedErasure`]), never the secret. Both streams keep a message until the ingester has
//! stored it (work-queue retention). The dead-letter stream is the ingester's; the gateway
//! only reports its fill.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode, stream};
use async_nats::{HeaderMap, header::NATS_MESSAGE_ID};
use bytes::Bytes;
use report::ReportId;
use report::erasure::QueuedErasure;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::StreamFill;

/// How often the streams are checked (and created if missing) and their fill read, which
/// bounds how stale `/readyz` and the stream gauges can be.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where docs/collector.md tells how to move a stream made by an earlier gateway.
const MIGRATION_DOC: &str = "docs/collector.md#streams-made-by-an-earlier-gateway";

/// One stream as the gateway wants it.
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
    /// Age limit; zero for none.
    pub max_age: Duration,
    /// Byte budget.
    pub max_bytes: i64,
    /// What the stream holds, for its description.
    pub holds: &'static str,
    /// Its label in the stream gauges.
    pub label: &'static str,
}

/// Every stream the gateway publishes to or watches.
#[derive(Debug, Clone)]
pub struct Streams {
    /// Reports.
    pub reports: StreamSettings,
    /// Erasure requests: the reports' replicas, duplicate window and age limit, a budget of
    /// their own.
    pub erasures: StreamSettings,
    /// The dead-letter stream's name: the ingester creates it, the gateway reads its fill.
    pub dead_letters: String,
    /// Fill of the reports stream, in percent of its budget, from which the gateway is not
    /// ready.
    pub full_percent: u8,
}

impl Streams {
    /// The streams the flags ask for.
    pub fn from_config(config: &Config) -> Self {
        let budget = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        let reports = StreamSettings {
            name: config.queue.reports.name.clone(),
            subject: config.queue.reports.subject.clone(),
            replicas: usize::from(config.stream_replicas),
            duplicate_window: config.duplicate_window,
            max_age: config.stream_max_age,
            max_bytes: budget(config.stream_max_bytes),
            holds: "reports",
            label: "reports",
        };
        let erasures = StreamSettings {
            name: config.queue.erasures.name.clone(),
            subject: config.queue.erasures.subject.clone(),
            max_bytes: budget(config.erasures_max_bytes),
            holds: "erasure requests (checks, never secrets)",
            label: "erasures",
            ..reports.clone()
        };
        Streams {
            reports,
            erasures,
            dead_letters: config.queue.dead_letters.name.clone(),
            full_percent: config.stream_full_percent,
        }
    }
}

impl StreamSettings {
    /// The JetStream stream configuration.
    ///
    /// File storage and work-queue retention: a message stays until the ingester acknowledges
    /// it, which it does once the sink has committed it, and is deleted then, so the budget
    /// holds only what is not stored yet. (Interest retention would do the same with a
    /// consumer bound, but with none yet JetStream acknowledges a publish without storing it.)
    /// `DiscardPolicy::New`: when the budget is full, a new publish fails and the volunteer
    /// gets a 503 and retries later. `Old` would instead silently delete the oldest reports,
    /// which have not been stored yet: losing reports already acknowledged with 204 is worse
    /// than refusing new ones honestly.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![self.subject.clone()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::WorkQueue,
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

/// Publishes reports and erasure requests, each to its stream's subject.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    streams: Arc<Streams>,
    stream_ok: Arc<AtomicBool>,
    reports_fill: Arc<Fill>,
    gauges: StreamFill,
    timeout: Duration,
}

/// The reports stream's bytes and budget at the last check.
#[derive(Debug, Default)]
struct Fill {
    bytes: AtomicU64,
    max_bytes: AtomicI64,
}

impl Publisher {
    /// Starts connecting to NATS in the background and returns at once. `gauges` receive
    /// each stream's fill.
    pub async fn connect(
        url: &str,
        streams: Streams,
        publish_timeout: Duration,
        gauges: StreamFill,
    ) -> Result<Self, async_nats::ConnectError> {
        let client = plumbing::nats::connect("spartakus-gateway", url).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(publish_timeout)
            .build(client.clone());
        Ok(Publisher {
            client,
            js,
            streams: Arc::new(streams),
            stream_ok: Arc::new(AtomicBool::new(false)),
            reports_fill: Arc::default(),
            gauges,
            timeout: publish_timeout,
        })
    }

    /// Whether a publish can succeed now: connected, and the stream was there at the last check.
    pub fn is_ready(&self) -> bool {
        self.client.connection_state() == State::Connected && self.stream_ok.load(Ordering::Relaxed)
    }

    /// Why the reports stream counts as full (at or above `--stream-full-percent` of its
    /// budget at the last check), or `None`.
    pub fn reports_full(&self) -> Option<String> {
        full(
            self.reports_fill.bytes.load(Ordering::Relaxed),
            self.reports_fill.max_bytes.load(Ordering::Relaxed),
            self.streams.full_percent,
        )
    }

    /// Publishes a report's envelope with `Nats-Msg-Id: id` and waits for JetStream's
    /// acknowledgment.
    pub async fn publish(&self, id: ReportId, payload: Vec<u8>) -> Result<Ack, PublishError> {
        self.publish_to(&self.streams.reports.subject, &id.to_string(), payload)
            .await
    }

    /// Queues an erasure request (see [`erasure_message_id`]) and waits for JetStream's
    /// acknowledgment.
    pub async fn publish_erasure(&self, queued: &QueuedErasure) -> Result<Ack, PublishError> {
        self.publish_to(
            &self.streams.erasures.subject,
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

    /// Until `shutdown`: whenever connected, makes sure both streams exist as configured, and
    /// reads every stream's fill into the gauges and `/readyz`.
    pub async fn maintain(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_ok = false;
        let mut last_error = String::new();
        let mut kept_logged = false;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let checked = if self.client.connection_state() == State::Connected {
                match tokio::time::timeout(self.timeout, self.ensure_streams()).await {
                    Ok(Ok(checked)) => Some(checked),
                    Ok(Err(e)) => {
                        // Once per distinct failure: a misconfigured stream needs an operator.
                        let error = e.to_string();
                        if error != last_error {
                            tracing::warn!(stream = %self.streams.reports.name, %error, "stream check failed");
                            last_error = error;
                        }
                        None
                    }
                    Err(_) => None,
                }
            } else {
                None
            };
            let ok = checked.is_some();
            if let Some(checked) = checked {
                self.record(&checked);
                if !checked.kept_retention.is_empty() && !kept_logged {
                    // An operator must act: such a stream fills up with stored reports.
                    tracing::error!(
                        streams = ?checked.kept_retention,
                        doc = MIGRATION_DOC,
                        "streams made by an earlier gateway keep limits retention, which JetStream cannot change to work-queue: they keep reports after the ingester stored them, until their age limit, and can fill up; drain and delete them once to have them made again"
                    );
                    kept_logged = true;
                }
                self.watch_dead_letters().await;
            }
            self.stream_ok.store(ok, Ordering::Relaxed);
            if ok && !was_ok {
                last_error.clear();
                tracing::info!(stream = %self.streams.reports.name, subject = %self.streams.reports.subject, "stream ready");
            }
            was_ok = ok;
        }
    }

    /// Sets the gauges and the reports fill from what the check read.
    fn record(&self, checked: &Checked) {
        let [reports, erasures] = &checked.infos;
        self.reports_fill
            .bytes
            .store(reports.state.bytes, Ordering::Relaxed);
        self.reports_fill
            .max_bytes
            .store(reports.config.max_bytes, Ordering::Relaxed);
        for (settings, info) in [
            (&self.streams.reports, reports),
            (&self.streams.erasures, erasures),
        ] {
            self.gauges
                .set(settings.label, info.state.bytes, info.config.max_bytes);
        }
    }

    /// Reads the dead-letter stream's fill into the gauges, if the ingester has made it.
    async fn watch_dead_letters(&self) {
        let read = tokio::time::timeout(self.timeout, async {
            let mut stream = self.js.get_stream(&self.streams.dead_letters).await.ok()?;
            let info = stream.info().await.ok()?;
            Some((info.state.bytes, info.config.max_bytes))
        });
        if let Ok(Some((bytes, max_bytes))) = read.await {
            self.gauges.set("dead-letters", bytes, max_bytes);
        }
    }

    async fn ensure_streams(&self) -> Result<Checked, StreamSetupError> {
        let mut kept_retention = Vec::new();
        let mut infos = Vec::with_capacity(2);
        for settings in [&self.streams.reports, &self.streams.erasures] {
            let (info, kept) = self.ensure_stream(settings).await?;
            if kept {
                kept_retention.push(settings.name.clone());
            }
            infos.push(info);
        }
        let infos = infos
            .try_into()
            .unwrap_or_else(|_| unreachable!("two streams, two infos"));
        Ok(Checked {
            infos,
            kept_retention,
        })
    }

    /// Creates the stream if it is missing; if it exists with other settings, updates them.
    /// Its info, and whether it kept a retention JetStream cannot change.
    async fn ensure_stream(
        &self,
        settings: &StreamSettings,
    ) -> Result<(stream::Info, bool), StreamSetupError> {
        let mut wanted = settings.stream_config();
        match self.js.get_stream(&settings.name).await {
            Ok(existing) => {
                let current = existing.cached_info();
                // JetStream refuses to change a retention to or from work-queue. A stream made
                // by an earlier gateway (limits retention) keeps it, and its age limit, which
                // is then what frees its storage; the rest is brought up to date.
                let kept = current.config.retention != wanted.retention;
                if kept {
                    wanted.retention = current.config.retention;
                    wanted.max_age = current.config.max_age;
                }
                if differs(&current.config, &wanted) {
                    let info = self
                        .js
                        .update_stream(&wanted)
                        .await
                        .map_err(StreamSetupError::update)?;
                    // Only once it worked: a refused update is logged once, by `maintain`.
                    tracing::warn!(stream = %wanted.name, "stream settings differed from the flags; updated");
                    return Ok((info, kept));
                }
                Ok((current.clone(), kept))
            }
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(ref js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                let created = self
                    .js
                    .create_stream(wanted)
                    .await
                    .map_err(StreamSetupError::create)?;
                tracing::info!(stream = %settings.name, "stream created");
                Ok((created.cached_info().clone(), false))
            }
            Err(e) => Err(StreamSetupError::Get(e.to_string())),
        }
    }

    /// Waits until everything published has reached the server.
    pub async fn flush(&self) -> Result<(), async_nats::client::FlushError> {
        self.client.flush().await
    }
}

/// Why a stream holding `bytes` of its budget `max_bytes` (none if not positive) counts as full
/// at `percent`, or `None`.
fn full(bytes: u64, max_bytes: i64, percent: u8) -> Option<String> {
    let max = u128::try_from(max_bytes).ok().filter(|&m| m > 0)?;
    let fill = u128::from(bytes) * 100 / max;
    (fill >= u128::from(percent)).then(|| {
        format!(
            "reports stream {fill}% full ({bytes} of {max} bytes): reports are refused until the ingester has stored enough of them; erasure requests are taken"
        )
    })
}

/// What one check of the streams found.
struct Checked {
    /// The reports' and the erasures' stream info.
    infos: [stream::Info; 2],
    /// The streams that kept a retention other than work-queue.
    kept_retention: Vec<String>,
}

/// Whether the settings the gateway manages differ.
fn differs(current: &stream::Config, wanted: &stream::Config) -> bool {
    !current.subjects.contains(&wanted.subjects[0])
        || current.storage != wanted.storage
        || current.retention != wanted.retention
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

/// What to add to JetStream's refusal of a budget that does not fit its store.
const BUDGET_HINT: &str = "; the stream budgets (--stream-max-bytes, --erasures-max-bytes and the ingester's --dead-letters-max-bytes) must fit together in the NATS server's max_file_store";

impl StreamSetupError {
    fn create(e: impl std::fmt::Display) -> Self {
        Self::Create(with_hint(e))
    }
    fn update(e: impl std::fmt::Display) -> Self {
        Self::Update(with_hint(e))
    }
}

/// The error's text, with [`BUDGET_HINT`] when JetStream says its store cannot hold a budget.
fn with_hint(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    if text.contains("insufficient storage") || text.contains("10047") {
        text + BUDGET_HINT
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_full_from_the_threshold_on_and_never_without_a_budget() {
        assert_eq!(full(949, 1000, 95), None);
        let reason = full(950, 1000, 95).unwrap_or_default();
        assert!(
            reason.starts_with("reports stream 95% full (950 of 1000 bytes)"),
            "{reason}"
        );
        assert!(full(1000, 1000, 100).is_some());
        assert_eq!(full(999, 1000, 100), None);
        assert_eq!(full(u64::MAX, -1, 95), None, "no budget");
        assert_eq!(full(5, 0, 95), None, "no budget");
    }

    #[test]
    fn a_store_too_small_for_the_budgets_is_explained_by_the_flags() {
        let refused = with_hint(
            "jetstream error: insufficient storage resources available (code 500, error code 10047)",
        );
        assert!(
            refused.contains("--stream-max-bytes") && refused.contains("max_file_store"),
            "{refused}"
        );
        assert_eq!(with_hint("timed out"), "timed out");
    }

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
