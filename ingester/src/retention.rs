//! Retention: raw reports received longer ago than `--retention` are deleted, periodically, in
//! small batches (each its own short transaction, queued between the consumer's batches, so no
//! write waits long). Tombstones requested before the cutoff go with them: they cover only
//! reports older than the cutoff, and the consumer stores no such report any more.
//!
//! In BigQuery the tables' partition expiration does it (set at start), so [`crate::sink::Sink::expire`]
//! deletes nothing there; the statistics snapshots are aggregates, published as files, and
//! are never touched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::SinkError;
use crate::metrics::Metrics;
use crate::sink::Sink;

/// Time between passes; the first runs at start.
pub(crate) const EVERY: Duration = Duration::from_secs(10 * 60);

/// Reports per batch at first, and the bounds the size adapts within.
const FIRST_BATCH: usize = 100;
const MIN_BATCH: usize = 1;
const MAX_BATCH: usize = 1_000;
/// A batch should hold the write lock about this long: shorter batches grow, longer shrink.
const TARGET: Duration = Duration::from_millis(50);

/// The oldest receipt time kept at `now`, or `None` when everything is kept.
pub(crate) fn cutoff(retention: Option<Duration>, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let retention = jiff::SignedDuration::try_from(retention?).ok()?;
    now.checked_sub(retention).ok()
}

/// Runs a pass now and every [`EVERY`] until `shutdown`. Returns an error only when the sink
/// can never write again ([`SinkError::is_fatal`]); other failures are logged and the next pass
/// tries again.
pub(crate) async fn run<S: Sink>(
    sink: Arc<S>,
    retention: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), SinkError> {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = FIRST_BATCH;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let Some(before) = cutoff(Some(retention), jiff::Timestamp::now()) else {
            continue;
        };
        match pass(&*sink, before, &mut batch, &metrics, &shutdown).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, %before, sink = sink.name(), "retention: deleted reports received before the cutoff");
            }
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %plumbing::Chain(&e), sink = sink.name(), "retention pass failed; trying again at the next");
            }
        }
    }
}

/// Deletes batch after batch until one comes back short; how many reports in all. `batch`
/// adapts so that each transaction stays near [`TARGET`].
async fn pass<S: Sink>(
    sink: &S,
    before: jiff::Timestamp,
    batch: &mut usize,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<u64, SinkError> {
    let mut total = 0u64;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let deleted = sink.expire(before, *batch).await?;
        let took = started.elapsed();
        total += deleted as u64;
        metrics.retention_deleted(deleted as u64);
        let full = deleted == *batch;
        *batch = next_batch(*batch, took);
        if !full {
            break;
        }
    }
    Ok(total)
}

/// The next batch size: halved after a batch that held the lock more than twice the target,
/// doubled after one under half of it.
fn next_batch(batch: usize, took: Duration) -> usize {
    if took > TARGET * 2 {
        (batch / 2).max(MIN_BATCH)
    } else if took < TARGET / 2 {
        (batch * 2).min(MAX_BATCH)
    } else {
        batch
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cutoff_is_now_minus_the_retention_and_none_keeps_everything() {
        let now: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        assert_eq!(
            cutoff(Some(Duration::from_secs(35 * 86_400)), now).unwrap(),
            "2026-10-28T12:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(cutoff(None, now), None);
    }

    #[test]
    fn batches_shrink_when_slow_and_grow_when_fast_within_bounds() {
        assert_eq!(next_batch(100, Duration::from_millis(500)), 50);
        assert_eq!(next_batch(1, Duration::from_secs(5)), 1);
        assert_eq!(next_batch(100, Duration::from_millis(1)), 200);
        assert_eq!(next_batch(1_000, Duration::ZERO), 1_000);
        assert_eq!(next_batch(100, TARGET), 100);
    }
}
