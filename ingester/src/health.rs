//! What the probes say, and the clocks of the sink's writes behind them.
//!
//! `/readyz` is ready when the consumer is bound, the sink answered its last probe, and no
//! write is stuck. `/healthz` fails only when a write is stuck: a write to the sink (a batch,
//! or an erasure) still unfinished after `--write-stuck-after`. A server that accepts a
//! request and never answers holds the write, and with it every report in hand, for as long as
//! the connection lives; the sink probe may never return either, so nothing else would notice.
//! Only a restart helps then, and it loses nothing: the reports of the stuck batch are not
//! acknowledged, so JetStream delivers them again.
//!
//! `/metrics` renders [`Metrics`] with two clocks computed when scraped: the age of the last
//! committed batch (it grows while no reports come, which is healthy) and how long the oldest
//! unfinished write has been running (it grows only when a write hangs: the one to alert on).
//! The routes themselves are `plumbing::probe`'s.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use report::erasure::QueuedErasure;
use tokio::time::Instant;

use crate::error::SinkError;
use crate::metrics::Metrics;
use crate::row::Row;
use crate::sink::{Erased, Outcome, Sink};

/// Readiness and liveness, updated by the consumer, the sink probe and every sink write.
#[derive(Debug)]
pub(crate) struct Health {
    consumer_bound: AtomicBool,
    sink_ready: AtomicBool,
    /// `--write-stuck-after`.
    stuck_after: Duration,
    writes: Mutex<Writes>,
}

/// The sink's writes: when one last committed, and which are unfinished.
#[derive(Debug)]
struct Writes {
    /// When the sink last committed a batch, or when the ingester started.
    last_committed: Instant,
    /// The ID the next write gets.
    next: u64,
    /// The unfinished writes by ID, with when each started. IDs grow with time, so the first
    /// entry is the oldest write.
    running: BTreeMap<u64, Instant>,
}

impl Health {
    /// Nothing bound or ready yet, no write so far; a write is stuck after `stuck_after`.
    pub(crate) fn new(stuck_after: Duration) -> Self {
        Health {
            consumer_bound: AtomicBool::new(false),
            sink_ready: AtomicBool::new(false),
            stuck_after,
            writes: Mutex::new(Writes {
                last_committed: Instant::now(),
                next: 0,
                running: BTreeMap::new(),
            }),
        }
    }

    /// Records whether the durable consumer is bound to the stream.
    pub(crate) fn set_consumer_bound(&self, bound: bool) {
        self.consumer_bound.store(bound, Ordering::Relaxed);
    }

    /// Records whether the sink answered its last probe.
    pub(crate) fn set_sink_ready(&self, ready: bool) {
        self.sink_ready.store(ready, Ordering::Relaxed);
    }

    fn writes(&self) -> MutexGuard<'_, Writes> {
        // The lock is never held across code that can panic; if it were, the clocks are still
        // the best there is.
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write handed to the sink now; unfinished until the returned [`Write`] is committed
    /// or dropped.
    pub(crate) fn write_started(self: &Arc<Self>) -> Write {
        let mut writes = self.writes();
        let id = writes.next;
        writes.next += 1;
        writes.running.insert(id, Instant::now());
        Write {
            health: Arc::clone(self),
            id,
        }
    }

    /// Time since the sink last committed a batch (since the start if it never has).
    pub(crate) fn last_write_age(&self) -> Duration {
        self.writes().last_committed.elapsed()
    }

    /// How long the oldest unfinished write has been running; zero when none is.
    pub(crate) fn write_in_progress(&self) -> Duration {
        self.writes()
            .running
            .first_key_value()
            .map_or(Duration::ZERO, |(_, started)| started.elapsed())
    }

    /// Why the ingester is wedged (a write unfinished for longer than `--write-stuck-after`),
    /// or `None`.
    pub(crate) fn stuck(&self) -> Option<String> {
        let running = self.write_in_progress();
        (running > self.stuck_after).then(|| {
            format!(
                "a sink write has been in progress for {}, longer than --write-stuck-after ({})",
                humantime::format_duration(readable(running)),
                humantime::format_duration(self.stuck_after),
            )
        })
    }

    /// Why the ingester is not ready, or `None` when it is.
    pub(crate) fn not_ready(&self) -> Option<String> {
        if let Some(stuck) = self.stuck() {
            return Some(stuck);
        }
        match (
            self.consumer_bound.load(Ordering::Relaxed),
            self.sink_ready.load(Ordering::Relaxed),
        ) {
            (true, true) => None,
            (false, _) => Some("consumer not bound (waiting for NATS or the stream)".into()),
            (true, false) => Some("sink not reachable".into()),
        }
    }
}

/// `d` to the millisecond under a second, else to the second: what a reason needs.
fn readable(d: Duration) -> Duration {
    if d < Duration::from_secs(1) {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    } else {
        Duration::from_secs(d.as_secs())
    }
}

/// One unfinished write. Dropping it ends the write without a commit (it failed, or its task
/// was aborted); [`Write::committed`] ends it as the newest commit.
#[derive(Debug)]
pub(crate) struct Write {
    health: Arc<Health>,
    id: u64,
}

impl Write {
    /// The sink committed the write.
    pub(crate) fn committed(self) {
        let mut writes = self.health.writes();
        writes.running.remove(&self.id);
        writes.last_committed = Instant::now();
    }
}

impl Drop for Write {
    fn drop(&mut self) {
        self.health.writes().running.remove(&self.id);
    }
}

/// The sink as the probes watch it: every [`Sink::write`] and [`Sink::erase`] is timed by
/// [`Health`] from the moment it is handed to the sink until it answers or is dropped. Every
/// other method is passed on as it is; a method added to [`Sink`] must be passed on here too,
/// or the wrapped sink's own version would never be called.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    sink: S,
    health: Arc<Health>,
}

impl<S> Watched<S> {
    pub(crate) fn new(sink: S, health: Arc<Health>) -> Self {
        Watched { sink, health }
    }
}

impl<S: Sink> Sink for Watched<S> {
    fn name(&self) -> &'static str {
        self.sink.name()
    }

    fn write(
        &self,
        rows: Vec<Row>,
    ) -> impl Future<Output = Result<Vec<Outcome>, SinkError>> + Send {
        let write = self.health.write_started();
        let written = self.sink.write(rows);
        async move {
            let written = written.await;
            if written.is_ok() {
                write.committed();
            }
            written
        }
    }

    fn erase(
        &self,
        erasure: &QueuedErasure,
    ) -> impl Future<Output = Result<Erased, SinkError>> + Send {
        // An erasure is not a batch: it counts while it runs, not as the last write.
        let write = self.health.write_started();
        let erased = self.sink.erase(erasure);
        async move {
            let erased = erased.await;
            drop(write);
            erased
        }
    }

    fn expire(
        &self,
        before: jiff::Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<usize, SinkError>> + Send {
        self.sink.expire(before, limit)
    }

    fn prepare(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.sink.prepare()
    }

    fn ready(&self) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.sink.ready()
    }
}

/// The ingester as its probes see it.
#[derive(Debug, Clone)]
pub(crate) struct Probes {
    /// Readiness, liveness and the write clocks.
    pub(crate) health: Arc<Health>,
    /// The metrics.
    pub(crate) metrics: Arc<Metrics>,
}

impl plumbing::probe::Probe for Probes {
    fn not_ready(&self) -> Option<String> {
        self.health.not_ready()
    }

    fn not_live(&self) -> Option<String> {
        self.health.stuck()
    }

    fn metrics(&self) -> String {
        self.metrics.write_clocks(
            self.health.last_write_age(),
            self.health.write_in_progress(),
        );
        self.metrics.encode()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use plumbing::probe::Probe;
    use tokio::sync::Notify;

    const LIMIT: Duration = Duration::from_secs(300);

    fn ready(limit: Duration) -> Arc<Health> {
        let health = Arc::new(Health::new(limit));
        health.set_consumer_bound(true);
        health.set_sink_ready(true);
        health
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_ingester_ages_its_last_write_and_stays_healthy() {
        let health = ready(LIMIT);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(health.last_write_age(), Duration::from_secs(3600));
        assert_eq!(health.write_in_progress(), Duration::ZERO);
        assert_eq!(health.not_ready(), None);
        assert_eq!(health.stuck(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_unfinished_past_the_limit_is_stuck_until_it_ends() {
        let health = ready(LIMIT);
        let write = health.write_started();
        tokio::time::advance(LIMIT).await;
        assert_eq!(health.write_in_progress(), LIMIT);
        assert_eq!(health.stuck(), None, "at the limit, not past it");
        tokio::time::advance(Duration::from_millis(1500)).await;
        let why = health.stuck().unwrap();
        assert_eq!(
            why,
            "a sink write has been in progress for 5m 1s, longer than --write-stuck-after (5m)"
        );
        assert_eq!(health.not_ready(), Some(why));
        write.committed();
        assert_eq!(health.stuck(), None);
        assert_eq!(health.not_ready(), None);
        assert_eq!(health.write_in_progress(), Duration::ZERO);
        assert_eq!(health.last_write_age(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_unfinished_write_is_measured_and_a_failed_one_commits_nothing() {
        let health = ready(LIMIT);
        let first = health.write_started();
        tokio::time::advance(Duration::from_secs(60)).await;
        let second = health.write_started();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(health.write_in_progress(), Duration::from_secs(90));
        // The first failed (or its task was aborted): dropped, not committed.
        drop(first);
        assert_eq!(health.write_in_progress(), Duration::from_secs(30));
        assert_eq!(health.last_write_age(), Duration::from_secs(90));
        second.committed();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(health.write_in_progress(), Duration::ZERO);
        assert_eq!(health.last_write_age(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_reasons_stay_as_they_were_without_a_stuck_write() {
        let health = Arc::new(Health::new(LIMIT));
        assert!(health.not_ready().unwrap().contains("consumer not bound"));
        health.set_consumer_bound(true);
        assert_eq!(health.not_ready().unwrap(), "sink not reachable");
        let _write = health.write_started();
        tokio::time::advance(LIMIT * 2).await;
        assert!(health.not_ready().unwrap().contains("--write-stuck-after"));
    }

    /// A sink whose writes and erasures answer only when the test says so. No server is
    /// involved: this is the bookkeeping around our own trait, which the integration test
    /// (`tests/it/health.rs`) checks against the BigQuery emulator behind a stalled proxy.
    #[derive(Default)]
    struct Gated {
        open: Notify,
        fail: AtomicBool,
    }

    impl Sink for Gated {
        fn name(&self) -> &'static str {
            "gated"
        }

        async fn write(&self, rows: Vec<Row>) -> Result<Vec<Outcome>, SinkError> {
            self.open.notified().await;
            if self.fail.load(Ordering::Relaxed) {
                Err(SinkError::WriterGone)
            } else {
                Ok(rows.iter().map(|_| Outcome::Written).collect())
            }
        }

        async fn erase(&self, _: &QueuedErasure) -> Result<Erased, SinkError> {
            self.open.notified().await;
            Ok(Erased::Done { reports: None })
        }

        async fn ready(&self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    fn probes(health: &Arc<Health>) -> Probes {
        Probes {
            health: health.clone(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_watched_sink_times_writes_and_erasures_until_they_answer() {
        let health = ready(Duration::from_secs(2));
        let sink = Arc::new(Watched::new(Gated::default(), health.clone()));
        let probes = probes(&health);
        tokio::time::advance(Duration::from_secs(10)).await;

        let writing = tokio::spawn({
            let sink = sink.clone();
            async move { sink.write(Vec::new()).await }
        });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(3)).await;
        let text = probes.metrics();
        assert!(
            text.contains("spartakus_ingester_write_in_progress_seconds 3.0"),
            "{text}"
        );
        assert!(
            text.contains("spartakus_ingester_last_write_age_seconds 13.0"),
            "{text}"
        );
        assert!(probes.not_live().unwrap().contains("in progress for 3s"));

        sink.sink.open.notify_one();
        writing.await.unwrap().unwrap();
        let text = probes.metrics();
        assert!(
            text.contains("spartakus_ingester_write_in_progress_seconds 0.0"),
            "{text}"
        );
        assert!(
            text.contains("spartakus_ingester_last_write_age_seconds 0.0"),
            "{text}"
        );
        assert_eq!(probes.not_live(), None);

        // A failed write ends, but is not a commit.
        sink.sink.fail.store(true, Ordering::Relaxed);
        let failing = tokio::spawn({
            let sink = sink.clone();
            async move { sink.write(Vec::new()).await }
        });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(1)).await;
        sink.sink.open.notify_one();
        assert!(failing.await.unwrap().is_err());
        assert_eq!(health.write_in_progress(), Duration::ZERO);
        assert_eq!(health.last_write_age(), Duration::from_secs(1));

        // An erasure counts while it runs, and does not count as a committed batch.
        let erasure = QueuedErasure {
            erasure: report::erasure::Erasure {
                cluster_id: "cluster".into(),
                erasure_check: "0".repeat(64),
            },
            requested_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let erasing = tokio::spawn({
            let sink = sink.clone();
            async move { sink.erase(&erasure).await }
        });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(probes.not_ready().unwrap().contains("in progress for 4s"));
        sink.sink.open.notify_one();
        erasing.await.unwrap().unwrap();
        assert_eq!(health.write_in_progress(), Duration::ZERO);
        assert_eq!(health.last_write_age(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_whose_task_is_aborted_is_no_longer_in_progress() {
        let health = ready(Duration::from_secs(2));
        let sink = Arc::new(Watched::new(Gated::default(), health.clone()));
        let writing = tokio::spawn({
            let sink = sink.clone();
            async move { sink.write(Vec::new()).await }
        });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(health.stuck().is_some());
        writing.abort();
        assert!(writing.await.unwrap_err().is_cancelled());
        assert_eq!(health.stuck(), None);
        assert_eq!(health.last_write_age(), Duration::from_secs(3));
    }
}
