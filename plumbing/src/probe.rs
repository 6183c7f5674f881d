//! The probe routes every long-running Spartakus process serves: `/healthz` (the process
//! runs and is not wedged: a liveness probe that fails gets it restarted), `/readyz` (it can do
//! its work now; why not, otherwise) and `/metrics` (Prometheus text). Not traced: probes every
//! few seconds would drown the logs.

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

    /// Something the operator should know while the process is ready (it still does its work,
    /// or some of it): sent after `ready` in the body of the 200.
    fn warning(&self) -> Option<String> {
        None
    }

    /// The metrics in the OpenMetrics text format.
    fn metrics(&self) -> String;

    /// `None` while the process should be left running, else why it is wedged and only a
    /// restart helps (sent as the body of `/healthz`'s 503, which a liveness probe acts on).
    /// Most processes cannot tell, and answer 200 for as long as they serve.
    fn not_live(&self) -> Option<String> {
        None
    }
}

/// The content type of [`Probe::metrics`].
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/healthz`, `/readyz` and `/metrics` for `probe`, to serve alone or to merge into a router
/// of any state `S`.
pub fn router<P: Probe, S: Clone + Send + Sync + 'static>(probe: Arc<P>) -> Router<S> {
    Router::new()
        .route("/healthz", get(healthz::<P>))
        .route("/readyz", get(readyz::<P>))
        .route("/metrics", get(metrics::<P>))
        .with_state(probe)
}

async fn healthz<P: Probe>(State(probe): State<Arc<P>>) -> Response {
    match probe.not_live() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn readyz<P: Probe>(State(probe): State<Arc<P>>) -> Response {
    match probe.not_ready() {
        None => match probe.warning() {
            None => (StatusCode::OK, "ready\n").into_response(),
            Some(warning) => {
                (StatusCode::OK, format!("ready; warning: {warning}\n")).into_response()
            }
        },
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics<P: Probe>(State(probe): State<Arc<P>>) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], probe.metrics()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Option<&'static str>, Option<&'static str>);

    /// A process that can tell it is wedged.
    struct Wedged(Option<&'static str>);

    impl Probe for Wedged {
        fn not_ready(&self) -> Option<String> {
            None
        }

        fn metrics(&self) -> String {
            String::new()
        }

        fn not_live(&self) -> Option<String> {
            self.0.map(str::to_owned)
        }
    }

    impl Probe for Fixed {
        fn not_ready(&self) -> Option<String> {
            self.0.map(str::to_owned)
        }

        fn warning(&self) -> Option<String> {
            self.1.map(str::to_owned)
        }

        fn metrics(&self) -> String {
            String::new()
        }
    }

    async fn answer(probe: Fixed) -> (StatusCode, String) {
        text(readyz(State(Arc::new(probe))).await).await
    }

    async fn text(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_is_ready_with_its_warning_and_not_ready_with_its_reason() {
        assert_eq!(
            answer(Fixed(None, None)).await,
            (StatusCode::OK, "ready\n".into())
        );
        assert_eq!(
            answer(Fixed(None, Some("nearly full"))).await,
            (StatusCode::OK, "ready; warning: nearly full\n".into())
        );
        assert_eq!(
            answer(Fixed(Some("down"), Some("nearly full"))).await,
            (StatusCode::SERVICE_UNAVAILABLE, "down\n".into())
        );
    }

    #[tokio::test]
    async fn healthz_is_ok_unless_the_process_says_it_is_wedged() {
        // The default: a process that cannot tell stays live whatever its readiness.
        assert_eq!(
            text(healthz(State(Arc::new(Fixed(Some("down"), None)))).await).await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            text(healthz(State(Arc::new(Wedged(None)))).await).await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            text(healthz(State(Arc::new(Wedged(Some("stuck for 6m"))))).await).await,
            (StatusCode::SERVICE_UNAVAILABLE, "stuck for 6m\n".into())
        );
    }
}
