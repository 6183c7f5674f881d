//! The read-only HTTP server of periodic mode (`--listen`): the published directory under
//! `/stats/`, and `/healthz`, `/readyz`, `/metrics`.
//!
//! - Files come from tower-http's `ServeDir` (no path escapes the directory; `Last-Modified`,
//!   `If-Modified-Since` → 304, HEAD), gzip from its `CompressionLayer`.
//! - Caching: a dated snapshot's files (`snapshots/DATE/…`) change only when an operator
//!   recomputes that day, so they are cached for a week and marked immutable; the page,
//!   `latest.json`, `index.json`, the series and `SCHEMA.md` change with every publication and
//!   are cached for five minutes.
//! - Every answer carries a Content-Security-Policy that allows the page's own stylesheet and
//!   nothing else (no script, no other origin, no framing), `nosniff` and no referrer.
//! - Only GET and HEAD: anything else is 405, on every path. Paths with a component starting
//!   with a dot (the writer's temporary files) are 404.
//!
//! `/` and `/stats` redirect to `/stats/`. The Ingress routes only `/stats` here, so the probe
//! routes stay inside the cluster.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::config::Cadence;
use crate::dashboard;

/// Where the published directory is served.
pub(crate) const PREFIX: &str = "/stats/";

/// The Content-Security-Policy of every answer: the page's own stylesheet, nothing else.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `Cache-Control` of a dated snapshot's files.
pub(crate) const CACHE_DATED: &str = "public, max-age=604800, immutable";
/// `Cache-Control` of the page and every file that changes with a publication.
pub(crate) const CACHE_LATEST: &str = "public, max-age=300";
/// `Cache-Control` of the probe routes.
pub(crate) const CACHE_NONE: &str = "no-store";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

/// The newest snapshot published, and when.
#[derive(Debug, Clone, Copy, Default)]
struct Newest {
    date: Option<Date>,
    /// When it was published: by this process, or before it started (its `snapshot.json`'s
    /// modification time); `None` when unknown.
    at: Option<Timestamp>,
}

/// The job's metrics: what it published, and what it served.
///
/// Two gauges are computed when scraped, from the clock: the age of the newest published
/// snapshot (since the process started when none was ever published, so the gauge is never
/// absent) and how long a snapshot due by `--cadence` has gone unpublished.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    published: Counter,
    failed_rounds: Counter,
    latest: Gauge,
    latest_age: Gauge<f64, AtomicU64>,
    overdue: Gauge<f64, AtomicU64>,
    requests: Family<ClassLabels, Counter>,
    cadence: Cadence,
    started: Timestamp,
    newest: Mutex<Newest>,
}

impl Metrics {
    /// Registers every metric under the `spartakus_stats` prefix, for a job publishing on
    /// `cadence` that starts now.
    pub(crate) fn new(cadence: Cadence) -> Self {
        Self::started_at(cadence, Timestamp::now())
    }

    /// [`Metrics::new`] for a job that started at `started`.
    pub(crate) fn started_at(cadence: Cadence, started: Timestamp) -> Self {
        let mut registry = Registry::with_prefix("spartakus_stats");
        let published = Counter::default();
        registry.register(
            "snapshots_published",
            "Snapshots computed and published",
            published.clone(),
        );
        let failed_rounds = Counter::default();
        registry.register(
            "failed_rounds",
            "Periodic checks that failed (retried at the next one)",
            failed_rounds.clone(),
        );
        let latest = Gauge::default();
        registry.register(
            "latest_snapshot_date_seconds",
            "Start of the newest published snapshot's day, UNIX seconds (0: none)",
            latest.clone(),
        );
        let latest_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "latest_snapshot_age_seconds",
            "Seconds since the newest published snapshot was written (by this process, or before it started: its snapshot.json's modification time); since the process started when none is published",
            latest_age.clone(),
        );
        let overdue = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "snapshot_overdue_seconds",
            "Seconds since the oldest snapshot due by --cadence and not yet published became due (its day ended, UTC); 0 while none is due",
            overdue.clone(),
        );
        let requests = Family::<ClassLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by status class",
            requests.clone(),
        );
        Metrics {
            registry,
            published,
            failed_rounds,
            latest,
            latest_age,
            overdue,
            requests,
            cadence,
            started,
            newest: Mutex::new(Newest::default()),
        }
    }

    /// Counts a snapshot of `date` published at `at`.
    pub(crate) fn published(&self, date: Date, at: Timestamp) {
        self.published.inc();
        self.latest(date, Some(at));
    }

    /// Notes that a snapshot of `date` is published, at `at` if known. The newest date wins;
    /// of one date, the latest publication.
    pub(crate) fn latest(&self, date: Date, at: Option<Timestamp>) {
        {
            // A poisoned lock still holds a consistent pair: it is only ever assigned whole.
            let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
            let n = *newest;
            if n.date.is_none_or(|d| date > d) {
                *newest = Newest {
                    date: Some(date),
                    at,
                };
            } else if n.date == Some(date) && at > n.at {
                newest.at = at;
            }
        }
        let seconds = date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .unwrap_or(0);
        if seconds > self.latest.get() {
            self.latest.set(seconds);
        }
    }

    /// Counts a failed periodic check.
    pub(crate) fn failed_round(&self) {
        self.failed_rounds.inc();
    }

    fn request(&self, status: StatusCode) {
        let class = match status.as_u16() {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.get_or_create(&ClassLabels { class }).inc();
    }

    /// Seconds since the newest snapshot was published, at `now` (since the process started
    /// when none was, or when its time is unknown).
    fn latest_age_at(&self, now: Timestamp) -> f64 {
        let newest = *self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        seconds_between(newest.at.unwrap_or(self.started), now)
    }

    /// Seconds since the oldest snapshot due by the cadence at `now` became due (0: none due).
    fn overdue_at(&self, now: Timestamp) -> f64 {
        let newest = self
            .newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .date;
        match crate::calendar::oldest_due(self.cadence, newest, now) {
            None => 0.0,
            Some(day) => seconds_between(crate::calendar::end_of_day(day), now),
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub(crate) fn render(&self) -> String {
        self.render_at(Timestamp::now())
    }

    /// The metrics at `now`.
    fn render_at(&self, now: Timestamp) -> String {
        self.latest_age.set(self.latest_age_at(now));
        self.overdue.set(self.overdue_at(now));
        let mut out = String::new();
        // The text encoder fails only when its writer does, which a String never does, or on a
        // native histogram without buckets: the registry holds counters and gauges only (see
        // `new`), labelled by a derived label set that writes nothing but its field.
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Seconds from `from` to `to`, never negative (a clock set back, a file from the future).
fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

/// What the probes see.
struct Probe {
    out: PathBuf,
    metrics: Arc<Metrics>,
}

impl plumbing::probe::Probe for Probe {
    fn not_ready(&self) -> Option<String> {
        if self.out.join(dashboard::PAGE).is_file() {
            None
        } else {
            Some("no snapshot published yet".into())
        }
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }
}

/// The router: the directory `out` under [`PREFIX`], and the probe routes.
pub(crate) fn router(out: &Path, metrics: Arc<Metrics>) -> Router {
    let files = ServeDir::new(out).append_index_html_on_directories(true);
    let probe = Arc::new(Probe {
        out: out.to_owned(),
        metrics: metrics.clone(),
    });
    Router::new()
        .nest_service(PREFIX.trim_end_matches('/'), files)
        .merge(plumbing::probe::router(probe))
        .layer(CompressionLayer::new().gzip(true))
        .layer(middleware::from_fn(move |req, next| {
            guard(metrics.clone(), req, next)
        }))
}

/// Read-only, no hidden files, redirects to the prefix, and the headers of every answer.
async fn guard(metrics: Arc<Metrics>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = if request.method() != Method::GET && request.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "read-only: only GET and HEAD\n",
        )
            .into_response()
    } else if path == "/" || path == PREFIX.trim_end_matches('/') {
        (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, PREFIX)]).into_response()
    } else if path.split('/').any(|c| c.starts_with('.')) {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    } else {
        next.run(request).await
    };
    metrics.request(response.status());
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control(&path)),
    );
    // Text files a browser should show rather than download, in UTF-8.
    let text = if path.ends_with(".md") {
        Some("text/plain; charset=utf-8")
    } else if path.ends_with(".csv") {
        Some("text/csv; charset=utf-8")
    } else {
        None
    };
    if let Some(text) = text
        && response.status().is_success()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(text));
    }
    response
}

/// The `Cache-Control` of `path`.
pub(crate) fn cache_control(path: &str) -> &'static str {
    match path.strip_prefix(PREFIX) {
        Some(rest) if rest.starts_with("snapshots/") => CACHE_DATED,
        Some(_) => CACHE_LATEST,
        None => CACHE_NONE,
    }
}

/// Serves `out` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    out: PathBuf,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, dashboard = %format!("http://{addr}{PREFIX}"), "serving the published statistics");
    }
    plumbing::serve::serve(listener, router(&out, metrics), BOUNDS, shutdown).await;
    Ok(())
}

/// Every connection bounded as the gateway's are (its defaults): a public page must not let a
/// client hold connections by never finishing its headers. Static files answer at once, so
/// these need no flags of their own.
const BOUNDS: plumbing::serve::Bounds = plumbing::serve::Bounds {
    header_timeout: std::time::Duration::from_secs(10),
    idle_timeout: std::time::Duration::from_secs(75),
    max_connections: 1024,
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    /// The value of `name` in the rendered metrics at `now`.
    fn gauge(metrics: &Metrics, now: Timestamp, name: &str) -> f64 {
        let text = metrics.render_at(now);
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    const AGE: &str = "spartakus_stats_latest_snapshot_age_seconds";
    const OVERDUE: &str = "spartakus_stats_snapshot_overdue_seconds";

    #[test]
    fn with_nothing_published_the_age_counts_from_the_start_and_the_due_sunday_is_overdue_since_it_ended()
     {
        // Wednesday 2026-12-02: Sunday 2026-11-29 is due since Monday 00:00 UTC.
        let m = Metrics::started_at(Cadence::Weekly, t("2026-12-02T10:00:00Z"));
        let now = t("2026-12-02T10:05:00Z");
        assert_eq!(gauge(&m, now, AGE), 300.0);
        assert_eq!(
            gauge(&m, now, OVERDUE),
            f64::from(2 * 86_400 + 10 * 3600 + 300)
        );
    }

    #[test]
    fn a_publication_resets_the_age_and_ends_the_overdue_time_until_the_next_sunday_ends() {
        let m = Metrics::started_at(Cadence::Weekly, t("2026-12-02T10:00:00Z"));
        m.published(d("2026-11-29"), t("2026-12-02T10:01:00Z"));
        assert_eq!(gauge(&m, t("2026-12-02T10:01:30Z"), AGE), 30.0);
        assert_eq!(gauge(&m, t("2026-12-02T10:01:30Z"), OVERDUE), 0.0);
        // Sunday 2026-12-06 is due from Monday 2026-12-07 00:00 UTC.
        assert_eq!(gauge(&m, t("2026-12-06T23:59:59Z"), OVERDUE), 0.0);
        assert_eq!(gauge(&m, t("2026-12-07T01:00:00Z"), OVERDUE), 3600.0);
        assert_eq!(
            gauge(&m, t("2026-12-07T01:00:00Z"), AGE),
            f64::from(4 * 86_400 + 15 * 3600 - 60)
        );
        m.published(d("2026-12-06"), t("2026-12-07T01:00:00Z"));
        assert_eq!(gauge(&m, t("2026-12-07T01:00:10Z"), OVERDUE), 0.0);
        assert_eq!(gauge(&m, t("2026-12-07T01:00:10Z"), AGE), 10.0);
    }

    #[test]
    fn a_snapshot_published_before_the_start_counts_from_its_own_time_and_missed_weeks_from_the_oldest()
     {
        let m = Metrics::started_at(Cadence::Weekly, t("2026-12-02T10:00:00Z"));
        // Found in the folder at start: published on Monday 2026-11-16 at 01:00.
        m.latest(d("2026-11-15"), Some(t("2026-11-16T01:00:00Z")));
        let now = t("2026-12-02T10:00:00Z");
        assert_eq!(
            gauge(&m, now, AGE),
            f64::from(16 * 86_400 + 9 * 3600),
            "since it was published, not since the start"
        );
        // 2026-11-22 and 2026-11-29 are due; the older since Monday 2026-11-23.
        assert_eq!(gauge(&m, now, OVERDUE), f64::from(9 * 86_400 + 10 * 3600));
        // An older date (a backfill) changes neither.
        m.published(d("2026-11-08"), t("2026-12-02T10:00:00Z"));
        assert_eq!(gauge(&m, now, AGE), f64::from(16 * 86_400 + 9 * 3600));
        // Its time unknown: since the start.
        let m = Metrics::started_at(Cadence::Daily, t("2026-12-02T10:00:00Z"));
        m.latest(d("2026-12-01"), None);
        assert_eq!(gauge(&m, t("2026-12-02T10:00:42Z"), AGE), 42.0);
        assert_eq!(gauge(&m, t("2026-12-02T10:00:42Z"), OVERDUE), 0.0);
        assert_eq!(gauge(&m, t("2026-12-03T00:00:42Z"), OVERDUE), 42.0, "daily");
    }

    #[test]
    fn dated_files_are_cached_long_and_everything_else_briefly() {
        assert_eq!(
            cache_control("/stats/snapshots/2026-11-29/nodes_by_os.csv"),
            CACHE_DATED
        );
        for path in [
            "/stats/",
            "/stats/index.html",
            "/stats/latest.json",
            "/stats/series/clusters_by_os.json",
        ] {
            assert_eq!(cache_control(path), CACHE_LATEST, "{path}");
        }
        assert_eq!(cache_control("/metrics"), CACHE_NONE);
    }
}
