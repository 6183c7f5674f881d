//! Prometheus metrics: requests by route and status, rejections by reason, publish latency,
//! bytes received, each stream's fill. Labels are drawn from closed sets, so cardinality stays fixed.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: &'static str,
}

/// Each stream's bytes and byte budget, as the stream maintenance last read them from
/// JetStream; labelled `reports`, `erasures` or `dead-letters`.
#[derive(Debug, Clone, Default)]
pub struct StreamFill {
    bytes: Family<StreamLabels, Gauge>,
    max_bytes: Family<StreamLabels, Gauge>,
    fill: Family<StreamLabels, Gauge<f64, AtomicU64>>,
}

impl StreamFill {
    /// Records that `stream` holds `bytes` of its budget `max_bytes` (-1 or 0: none).
    pub fn set(&self, stream: &'static str, bytes: u64, max_bytes: i64) {
        let labels = StreamLabels { stream };
        self.bytes
            .get_or_create(&labels)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.max_bytes.get_or_create(&labels).set(max_bytes);
        if max_bytes > 0 {
            self.fill
                .get_or_create(&labels)
                .set(bytes as f64 / max_bytes as f64);
        }
    }
}

/// The gateway's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
    publish_seconds: Family<OutcomeLabels, Histogram>,
    bytes_received: Counter,
    reports_accepted: Family<OutcomeLabels, Counter>,
    in_flight: Gauge,
    memory_budget_used: Gauge,
    streams: StreamFill,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `spartakus_gateway` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("spartakus_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by matched route and status",
            requests.clone(),
        );
        let rejections = Family::<ReasonLabels, Counter>::default();
        // Every reason exported at 0 from the start: a rate over a refusal that has not
        // happened yet is 0, not missing, so an alert on it is evaluated from the first scrape.
        for reason in crate::error::ApiError::reasons() {
            let _ = rejections.get_or_create(&ReasonLabels { reason });
        }
        registry.register(
            "rejections",
            "Report requests refused, by reason",
            rejections.clone(),
        );
        let publish_seconds = Family::<OutcomeLabels, Histogram>::new_with_constructor(|| {
            // 0.25 ms .. ~8 s
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register(
            "publish_seconds",
            "Time from publish to JetStream acknowledgment, by outcome",
            publish_seconds.clone(),
        );
        let bytes_received = Counter::default();
        registry.register(
            "received_bytes",
            "Report body bytes received on the wire",
            bytes_received.clone(),
        );
        let reports_accepted = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reports_accepted",
            "Reports acknowledged by JetStream, new or duplicate",
            reports_accepted.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reports_in_flight",
            "Report requests being handled",
            in_flight.clone(),
        );
        let memory_budget_used = Gauge::default();
        registry.register(
            "memory_budget_used_bytes",
            "Bytes the requests in flight hold of --memory-budget",
            memory_budget_used.clone(),
        );
        let streams = StreamFill::default();
        registry.register(
            "stream_bytes",
            "Bytes a JetStream stream holds, by stream",
            streams.bytes.clone(),
        );
        registry.register(
            "stream_max_bytes",
            "A JetStream stream's byte budget, by stream",
            streams.max_bytes.clone(),
        );
        registry.register(
            "stream_fill_ratio",
            "A JetStream stream's bytes over its budget (1 is full), by stream",
            streams.fill.clone(),
        );
        Metrics {
            streams,
            registry,
            requests,
            rejections,
            publish_seconds,
            bytes_received,
            reports_accepted,
            in_flight,
            memory_budget_used,
        }
    }

    /// Counts one finished request.
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// Counts one refused report request.
    pub fn rejection(&self, reason: &'static str) {
        self.rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records one publish's latency; `outcome` is `ok` or an error class.
    pub fn publish(&self, outcome: &'static str, took: Duration) {
        self.publish_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(took.as_secs_f64());
    }

    /// Counts body bytes received.
    pub fn bytes_received(&self, n: u64) {
        self.bytes_received.inc_by(n);
    }

    /// Counts an acknowledged report.
    pub fn accepted(&self, duplicate: bool) {
        let outcome = if duplicate { "duplicate" } else { "new" };
        self.reports_accepted
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The in-flight gauge, raised while a report request is handled.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// The bytes reserved of the memory budget; the budget counts in it.
    pub fn memory_budget_used(&self) -> &Gauge {
        &self.memory_budget_used
    }

    /// The stream gauges, for the stream maintenance to set.
    pub fn stream_fill(&self) -> StreamFill {
        self.streams.clone()
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // The text encoder fails only when its writer does, which a String never does, or on a
        // native histogram without buckets: the latency histograms have classic buckets (see
        // `new`), and every label set is derived from strings and numbers.
        encode(&mut out, &self.registry).expect("encoding the metrics into a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rendered_text_carries_each_metric_with_its_labels() {
        let metrics = Metrics::new();
        metrics.request("/api/v1", 204);
        metrics.rejection("syntax");
        metrics.publish("ok", Duration::from_millis(2));
        metrics.bytes_received(1234);
        metrics.accepted(true);
        metrics.stream_fill().set("reports", 768, 1024);
        let text = metrics.render();
        assert!(
            text.contains(r#"spartakus_gateway_stream_fill_ratio{stream="reports"} 0.75"#)
                && text.contains(r#"spartakus_gateway_stream_max_bytes{stream="reports"} 1024"#)
                && text.contains(r#"spartakus_gateway_stream_bytes{stream="reports"} 768"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"spartakus_gateway_http_requests_total{route="/api/v1",status="204"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"spartakus_gateway_rejections_total{reason="syntax"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"spartakus_gateway_publish_seconds_count{outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("spartakus_gateway_received_bytes_total 1234"),
            "{text}"
        );
        assert!(
            text.contains(r#"spartakus_gateway_reports_accepted_total{outcome="duplicate"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
