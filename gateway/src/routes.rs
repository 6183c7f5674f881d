//! The HTTP API: report intake (v1 and v2), erasure requests, health, readiness, metrics,
//! version, OpenAPI.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use report::erasure::QueuedErasure;
use report::node_id::NodeIdKey;
use report::{Envelope, ReportId};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::body::{self, Encoding, Limits, Pace};
use crate::config::Config;
use crate::error::ApiError;
use crate::limit::{Budget, RateLimits, Reservation, Uploads, client_ip};
use crate::metrics::Metrics;
use crate::publish::Publisher;

/// The OpenAPI document, kept in the repository beside the crate.
const OPENAPI: &str = include_str!("../openapi.yaml");

/// The largest erasure request body: a cluster ID (at most 128 characters) and a secret (64) in
/// JSON fit ten times over.
const MAX_ERASURE_BODY: u64 = 4096;

/// Time a body has before `--min-body-rate` counts: a client sends its body right after its
/// head, but the first bytes may wait a round trip or two behind TCP's slow start.
const BODY_GRACE: Duration = Duration::from_secs(2);

/// Everything a handler needs, shared by all requests.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    publisher: Publisher,
    metrics: Arc<Metrics>,
    limits: RateLimits,
    slots: Arc<Semaphore>,
    uploads: Uploads,
    budget: Arc<Budget>,
    body_limits: Limits,
    pace: Pace,
    request_timeout: Duration,
    trust_forwarded_for: bool,
    backdate_synthetic: bool,
    /// Re-keys every node ID a client sends ([`report::node_id`]).
    node_id_key: NodeIdKey,
    shutdown: CancellationToken,
}

impl AppState {
    pub(crate) fn new(
        config: &Config,
        node_id_key: NodeIdKey,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        limits: RateLimits,
        shutdown: CancellationToken,
    ) -> Self {
        let budget = Budget::new(config.memory_budget, metrics.memory_budget_used().clone());
        AppState(Arc::new(Shared {
            publisher,
            metrics,
            limits,
            slots: Arc::new(Semaphore::new(config.max_in_flight as usize)),
            uploads: Uploads::new(config.max_uploads_per_ip),
            budget,
            body_limits: Limits {
                max_compressed: config.max_body_bytes,
                max_decoded: config.max_decoded_bytes,
            },
            pace: Pace {
                grace: BODY_GRACE,
                min_rate: config.min_body_rate,
            },
            request_timeout: config.request_timeout,
            trust_forwarded_for: config.trust_forwarded_for,
            backdate_synthetic: config.backdate_synthetic,
            node_id_key,
            shutdown,
        }))
    }
}

/// The router with every route.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1", post(post_v1))
        .route("/api/v2/reports", post(post_v2))
        .route("/api/v2/erasure", post(post_erasure))
        .route("/version", get(version))
        .route("/openapi.yaml", get(openapi))
        .merge(plumbing::probe::router(Arc::new(state.clone())))
        // Bodies are capped while streaming in `body::read`, with our own limits and errors.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    state.0.metrics.request(&route, response.status().as_u16());
    response
}

/// The original contract: 204 No Content once JetStream has the report.
async fn post_v1(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    accept_report(&state.0, peer, &headers, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer of `POST /api/v2/reports`.
#[derive(Debug, Serialize)]
struct Accepted {
    #[serde(rename = "reportID")]
    report_id: String,
    /// JetStream already held this report: an earlier attempt was stored.
    duplicate: bool,
}

/// For new clients: 202 with the reportID the report is stored under.
async fn post_v2(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (id, duplicate) = accept_report(&state.0, peer, &headers, body).await?;
    let accepted = Accepted {
        report_id: id.to_string(),
        duplicate,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(accepted)).into_response())
}

/// The one answer to every well-formed erasure request.
#[derive(Debug, Serialize)]
struct ErasureQueued {
    queued: bool,
}

/// `POST /api/v2/erasure`: checks the request's shape only, queues the erasure (the check,
/// never the secret) and answers 202 with the same body whatever the request names. Whether
/// the cluster exists, or the secret matches its reports, is for the ingester to find out and
/// never told: the gateway holds no report, so the answer and its timing cannot depend on one.
async fn post_erasure(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let shared = &state.0;
    let queued = queue_erasure(shared, peer, &headers, body)
        .await
        .map_err(ApiError::for_erasure);
    count_refusal(shared, Intake::Erasure, queued)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(ErasureQueued { queued: true }),
    )
        .into_response())
}

/// The two kinds of request the gateway takes in. Both go through [`receive`]: the same
/// per-address allowance (erasing costs the collector a deletion), the same caps on bodies
/// arriving, the same memory budget and slots, media types, encodings, minimum rate and
/// request timeout; only the body's caps differ.
#[derive(Debug, Clone, Copy)]
enum Intake {
    Report,
    Erasure,
}

impl Intake {
    /// What is refused, for the log.
    fn name(self) -> &'static str {
        match self {
            Intake::Report => "report",
            Intake::Erasure => "erasure request",
        }
    }

    fn limits(self, shared: &Shared) -> Limits {
        match self {
            Intake::Report => shared.body_limits,
            Intake::Erasure => Limits {
                max_compressed: MAX_ERASURE_BODY,
                max_decoded: MAX_ERASURE_BODY,
            },
        }
    }
}

/// A request let in and its body read. The slot and the memory reserved stay taken for as
/// long as this lives, so that the publish that follows counts against `--max-in-flight` and
/// `--memory-budget` too.
struct Admitted {
    /// The decoded body.
    body: Vec<u8>,
    /// Covers `body`, and grows for what decoding and publishing it hold.
    reservation: Reservation,
    slot: OwnedSemaphorePermit,
}

/// The steps every intake shares: the client address's allowance, the media type and
/// encoding, a place among the address's bodies arriving (or 429 at once), the body read under
/// its caps, the minimum rate and the request timeout into memory reserved from the budget
/// (or 503 at once), and only then a slot for the work (or 503 at once: shedding load instead
/// of queueing it). Reading a body takes no slot, so bodies that arrive slowly or never hold
/// nothing that complete requests need, but their address's places and their connections.
async fn receive(
    shared: &Shared,
    intake: Intake,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<Admitted, ApiError> {
    let client = client_ip(peer, headers, shared.trust_forwarded_for);
    shared.limits.check_ip(client)?;
    // A full reports stream refuses a report before its body is read (JetStream would refuse
    // it after); erasure requests have a stream of their own.
    if let Intake::Report = intake
        && shared.publisher.reports_full().is_some()
    {
        return Err(ApiError::QueueFull);
    }
    body::check_content_type(headers)?;
    let encoding = Encoding::from_headers(headers)?;
    let arriving = shared.uploads.start(client)?;
    let received = tokio::time::timeout(
        shared.request_timeout,
        body::read(
            headers,
            body,
            encoding,
            intake.limits(shared),
            shared.pace,
            shared.budget.reservation(),
        ),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout(shared.request_timeout))??;
    drop(arriving);
    shared.metrics.bytes_received(received.wire_bytes);
    let slot = shared
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded)?;
    Ok(Admitted {
        body: received.bytes,
        reservation: received.reservation,
        slot,
    })
}

/// Counts a refusal by its reason and logs it: no client address and no content, the reason
/// is enough to debug.
fn count_refusal<T>(
    shared: &Shared,
    intake: Intake,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(e) = &result {
        shared.metrics.rejection(e.reason());
        tracing::debug!(
            reason = e.reason(),
            status = e.status().as_u16(),
            "{} refused",
            intake.name()
        );
    }
    result
}

/// Receives, checks and queues an erasure request. Its refusals are named as a report's;
/// the caller renames them with [`ApiError::for_erasure`].
async fn queue_erasure(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let Admitted {
        body,
        reservation: _reservation,
        slot: _slot,
    } = receive(shared, Intake::Erasure, peer, headers, body).await?;
    // The secret lives only in this body; what is queued is its check.
    let erasure = report::erasure::decode_request(&body)?;
    drop(body);
    let queued = QueuedErasure {
        erasure,
        requested_at: jiff::Timestamp::now(),
    };
    // A duplicate (a retry within the minute) is the same request: the same answer.
    if let Err(e) = shared.publisher.publish_erasure(&queued).await {
        if e.is_logged_elsewhere() {
            tracing::debug!(error = %e, "erasure request not queued");
        } else {
            tracing::warn!(error = %e, "erasure request not queued");
        }
        return Err(e.api_error());
    }
    tracing::debug!("erasure request queued");
    Ok(())
}

/// Receives, checks and publishes one report; counts a refusal by its reason.
async fn accept_report(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(ReportId, bool), ApiError> {
    let _in_flight = InFlight::enter(&shared.metrics);
    let accepted = receive_and_publish(shared, peer, headers, body).await;
    count_refusal(shared, Intake::Report, accepted)
}

/// Raises the in-flight gauge for as long as it lives, also when the client goes away and the
/// request's future is dropped.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a Metrics) -> Self {
        metrics.in_flight().inc();
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight().dec();
    }
}

async fn receive_and_publish(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(ReportId, bool), ApiError> {
    let Admitted {
        body,
        mut reservation,
        slot: _slot,
    } = receive(shared, Intake::Report, peer, headers, body).await?;
    // The decoded report, and the message it is re-encoded into, before either exists.
    let len = body.len() as u64;
    reservation.grow(len * body::DECODED_PER_BYTE + len + body::ENVELOPE_BYTES)?;
    // Sanitized by `decode`; node IDs re-keyed before anything is queued.
    let valid = report::decode(&body)?.rekey_node_ids(&shared.node_id_key);
    shared.limits.check_cluster(valid.cluster_id())?;
    let id = valid.report_id().unwrap_or_else(|| {
        ReportId::derive(
            valid.cluster_id(),
            valid.report().timestamp.as_deref(),
            &body,
        )
    });
    // The re-encoded report is about as long as the body: one allocation, no regrowth.
    let mut payload = Vec::with_capacity(body.len() + body::ENVELOPE_BYTES as usize);
    drop(body);
    let received_at = received_at(&valid, jiff::Timestamp::now(), shared.backdate_synthetic);
    Envelope::new(id, received_at, valid).encode_into(&mut payload);
    // Until JetStream answers, the message is all this request holds.
    reservation.shrink_to(payload.capacity() as u64);

    let started = Instant::now();
    let published = shared.publisher.publish(id, payload).await;
    let took = started.elapsed();
    match published {
        Ok(ack) => {
            shared.metrics.publish("ok", took);
            shared.metrics.accepted(ack.duplicate);
            tracing::debug!(report_id = %id, duplicate = ack.duplicate, "report queued");
            Ok((id, ack.duplicate))
        }
        Err(e) => {
            shared.metrics.publish(e.outcome(), took);
            if e.is_logged_elsewhere() {
                tracing::debug!(report_id = %id, error = %e, "report not queued");
            } else {
                tracing::warn!(report_id = %id, error = %e, "report not queued");
            }
            Err(e.api_error())
        }
    }
}

/// How far back `--backdate-synthetic` may date a report: a demo's history, a few months.
const MAX_BACKDATE: jiff::SignedDuration = jiff::SignedDuration::from_hours(120 * 24);

/// The `receivedAt` of a report that arrives at `now`: `now`, except with `--backdate-synthetic`
/// for a report marked synthetic, whose own `timestamp` (UNIX seconds) is taken, clamped to
/// `now - 120 days ..= now`. A synthetic report without a readable timestamp gets `now`.
fn received_at(
    report: &report::ValidReport,
    now: jiff::Timestamp,
    backdate_synthetic: bool,
) -> jiff::Timestamp {
    if !backdate_synthetic || !report.is_synthetic() {
        return now;
    }
    let Some(sent) = report
        .report()
        .timestamp
        .as_deref()
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
    else {
        return now;
    };
    let earliest = now.checked_sub(MAX_BACKDATE).unwrap_or(now);
    sent.clamp(earliest, now)
}

/// Ready: connected to NATS, the streams present, not shutting down. A reports stream at
/// `--stream-full-percent` of its budget keeps the gateway ready, with a warning: every gateway
/// shares the stream, and taking them all out of the Service would refuse erasure requests too,
/// whose stream has room; reports are refused before their body is read meanwhile.
impl plumbing::probe::Probe for AppState {
    fn not_ready(&self) -> Option<String> {
        if self.0.shutdown.is_cancelled() {
            Some("shutting down".into())
        } else if !self.0.publisher.is_ready() {
            Some("JetStream not reachable or stream missing".into())
        } else {
            None
        }
    }

    fn warning(&self) -> Option<String> {
        self.0.publisher.reports_full()
    }

    fn metrics(&self) -> String {
        self.0.metrics.render()
    }
}

async fn version() -> String {
    format!("{}\n", env!("CARGO_PKG_VERSION"))
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        OPENAPI,
    )
        .into_response()
}
