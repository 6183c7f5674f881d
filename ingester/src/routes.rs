//! The HTTP surface: `/healthz` (the process runs), `/readyz` (consumer bound and sink
//! reachable) and `/metrics`. Not traced: probes would drown the logs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What `/readyz` reports, updated by the consumer and the sink probe.
#[derive(Debug, Default)]
pub struct Health {
    consumer_bound: AtomicBool,
    sink_ready: AtomicBool,
}

impl Health {
    /// Records whether the durable consumer is bound to the stream.
    pub fn set_consumer_bound(&self, bound: bool) {
        self.consumer_bound.store(bound, Ordering::Relaxed);
    }

    /// Records whether the sink answered its last probe.
    pub fn set_sink_ready(&self, ready: bool) {
        self.sink_ready.store(ready, Ordering::Relaxed);
    }

    /// Why the ingester is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<&'static str> {
        match (
            self.consumer_bound.load(Ordering::Relaxed),
            self.sink_ready.load(Ordering::Relaxed),
        ) {
            (true, true) => None,
            (false, _) => Some("consumer not bound (waiting for NATS or the stream)"),
            (true, false) => Some("sink not reachable"),
        }
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// The router.
pub fn router(health: Arc<Health>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.not_ready() {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
