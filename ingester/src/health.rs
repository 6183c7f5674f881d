//! What the probes say: `/readyz` is ready when the consumer is bound and the sink answered its
//! last probe; `/metrics` renders [`Metrics`]. The routes themselves are `plumbing::probe`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

/// Readiness, updated by the consumer and the sink probe.
#[derive(Debug, Default)]
pub(crate) struct Health {
    consumer_bound: AtomicBool,
    sink_ready: AtomicBool,
}

impl Health {
    /// Records whether the durable consumer is bound to the stream.
    pub(crate) fn set_consumer_bound(&self, bound: bool) {
        self.consumer_bound.store(bound, Ordering::Relaxed);
    }

    /// Records whether the sink answered its last probe.
    pub(crate) fn set_sink_ready(&self, ready: bool) {
        self.sink_ready.store(ready, Ordering::Relaxed);
    }

    /// Why the ingester is not ready, or `None` when it is.
    pub(crate) fn not_ready(&self) -> Option<&'static str> {
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

/// The ingester as its probes see it.
#[derive(Debug, Clone)]
pub(crate) struct Probes {
    /// Readiness.
    pub(crate) health: Arc<Health>,
    /// The metrics.
    pub(crate) metrics: Arc<Metrics>,
}

impl plumbing::probe::Probe for Probes {
    fn not_ready(&self) -> Option<String> {
        self.health.not_ready().map(str::to_owned)
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}
