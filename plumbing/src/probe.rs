//! The probe routes every long-running Spartakus process serves: `/healthz` (the process
//! runs), `/readyz` (it can do its work now; why not, otherwise) and `/metrics` (Prometheus
//! text). Not traced: probes every few seconds would drown the logs.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What a process tells its probes.
pub trait Probe: Send + Sync + 'static {
    /// `None` when ready, else a short reason (sent as the body of the 503).
    fn not_ready(&self) -> Option<String>;

    /// The metrics in the OpenMetrics text format.
    fn metrics(&self) -> String;
}

/// The content type of [`Probe::metrics`].
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/healthz`, `/readyz` and `/metrics` for `probe`, to serve alone or to merge into a router
/// of any state `S`.
pub fn router<P: Probe, S: Clone + Send + Sync + 'static>(probe: Arc<P>) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<P>))
        .route("/metrics", get(metrics::<P>))
        .with_state(probe)
}

async fn readyz<P: Probe>(State(probe): State<Arc<P>>) -> Response {
    match probe.not_ready() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics<P: Probe>(State(probe): State<Arc<P>>) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], probe.metrics()).into_response()
}
