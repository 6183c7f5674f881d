//! Which snapshots to compute, and computing them: once, periodically, or as a backfill.
//!
//! A snapshot of day D can be computed once D is over (UTC). Due are the publication days after
//! the newest kept snapshot up to the last day that is over (only that last one when nothing is
//! kept yet); `--backfill-from` computes every publication day from a date; `--date` one day.
//! A release is final: a date the ledger lists is never computed again unless
//! `--allow-rerelease`, and a folder without a ledger is refused unless `--new-ledger`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use tokio_util::sync::CancellationToken;

pub use crate::calendar::last_complete_day;
use crate::calendar::{due_by_cadence, latest_publication_day, publication_days};
use crate::config::Config;
use crate::dashboard;
use crate::disclose::disclose;
use crate::ledger::{self, Ledger};
use crate::output::{Output, OutputError};
use crate::serve::{self, Metrics};
use crate::snapshot::Snapshot;
use crate::store::{Query, Store, StoreError, Window};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store failed.
    #[error("computing the snapshot of {date}: {source}")]
    Store {
        /// Which snapshot.
        date: Date,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The output could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The flags ask for something impossible (exit 64).
    #[error("{0}")]
    Config(String),
    /// The operating system gave no randomness for the noise.
    #[error("no randomness from the operating system for the noise: {0}")]
    Randomness(String),
    /// The server failed, or stopped while the job was running.
    #[error("serving the published statistics: {0}")]
    Serve(#[source] std::io::Error),
}

impl RunError {
    /// Whether the operator's flags are at fault.
    pub fn is_config(&self) -> bool {
        matches!(self, RunError::Config(_))
    }
}

/// What one computation cost, for logs and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// The snapshot's date.
    pub date: Date,
    /// Clusters in its window, when published.
    pub clusters: Option<u64>,
    /// Bytes the warehouse read, when it says.
    pub(crate) bytes_processed: Option<u64>,
}

/// The days to compute now; dates the ledger lists are refused unless `--allow-rerelease`.
pub(crate) fn due(
    config: &Config,
    kept: &[Date],
    ledger: &Ledger,
    now: Timestamp,
) -> Result<Vec<Date>, RunError> {
    let days = due_days(config, kept, now)?;
    let released: Vec<String> = days
        .iter()
        .filter_map(|d| ledger.released(*d))
        .map(|r| format!("{} (released on {})", r.date, r.released_on))
        .collect();
    if !released.is_empty() && !config.allow_rerelease {
        return Err(RunError::Config(format!(
            "already released: {}. A release is final: computing it again draws fresh noise, and two releases of one date let anyone average the noise away. --allow-rerelease forces it and records the extra cost in {}",
            released.join(", "),
            ledger::FILE
        )));
    }
    Ok(days)
}

fn due_days(config: &Config, kept: &[Date], now: Timestamp) -> Result<Vec<Date>, RunError> {
    let last = last_complete_day(now);
    if let Some(date) = config.date {
        if date > last {
            return Err(RunError::Config(format!(
                "--date {date}: that day is not over yet (the last complete UTC day is {last})"
            )));
        }
        return Ok(vec![date]);
    }
    if let Some(from) = config.backfill_from {
        if from > last {
            return Err(RunError::Config(format!(
                "--backfill-from {from}: that day is not over yet (the last complete UTC day is {last})"
            )));
        }
        return Ok(publication_days(config.cadence, from, last));
    }
    let Some(latest) = latest_publication_day(config.cadence, last) else {
        return Ok(Vec::new());
    };
    Ok(due_by_cadence(config.cadence, kept.last().copied(), latest))
}

/// Computes and publishes the snapshot of `date` with noise from `rng`, and records it in
/// `ledger` (saved once the snapshot's files are in place).
pub async fn compute<S: Store, R: rand::CryptoRng + ?Sized>(
    config: &Config,
    store: &S,
    output: &Output,
    ledger: &mut Ledger,
    date: Date,
    rng: &mut R,
) -> Result<Done, RunError> {
    let window = Window {
        date,
        days: config.window_days,
    };
    let budget = config.budget();
    let query = Query {
        window,
        include_synthetic: config.include_synthetic,
        node_clip: budget.node_clip,
        report_clip: budget.report_clip,
    };
    let computed = store
        .compute(query)
        .await
        .map_err(|source| RunError::Store { date, source })?;
    let disclosure = disclose(&computed.raw, &budget, rng);
    let snapshot = Snapshot::new(window, config.include_synthetic, &disclosure);
    output.publish(&snapshot)?;
    ledger.record(date, Timestamp::now(), &disclosure.guarantee);
    ledger.save(output)?;
    Ok(Done {
        date,
        clusters: snapshot.totals.clusters,
        bytes_processed: computed.bytes_processed,
    })
}

/// The folder's ledger: created with `--new-ledger` in a folder without one, else required.
pub(crate) fn open_ledger(config: &Config, output: &Output) -> Result<Ledger, RunError> {
    match (Ledger::load(output)?, config.new_ledger) {
        (Some(_), true) => Err(RunError::Config(format!(
            "--new-ledger: {} already has a {}; remove the flag",
            output.root().display(),
            ledger::FILE
        ))),
        (Some(l), false) => Ok(l),
        (None, true) if output.dates()?.is_empty() => Ok(Ledger::new()),
        (None, _) => Err(RunError::Config(ledger::missing(
            output.root(),
            !output.dates()?.is_empty(),
        ))),
    }
}

/// When the kept snapshot of `date` was published: its `snapshot.json`'s modification time
/// (written once per release, renamed into place), if the file system says.
fn published_at(output: &Output, date: Date) -> Option<Timestamp> {
    let path = output
        .root()
        .join("snapshots")
        .join(date.to_string())
        .join("snapshot.json");
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Timestamp::try_from(modified).ok()
}

/// Computes what is due now, oldest first, then renders the dashboard of what is published.
async fn once_counted<S: Store>(
    config: &Config,
    store: &S,
    now: Timestamp,
    metrics: &Metrics,
) -> Result<Vec<Done>, RunError> {
    let output = Output::new(&config.out);
    let mut ledger = open_ledger(config, &output)?;
    let kept = output.dates()?;
    if let Some(newest) = kept.last() {
        metrics.latest(*newest, published_at(&output, *newest));
    }
    let days = due(config, &kept, &ledger, now)?;
    let mut rng = crate::privacy::os_rng().map_err(|e| RunError::Randomness(e.to_string()))?;
    if days.is_empty() {
        tracing::info!(out = %config.out.display(), "no snapshot due");
    }
    let mut done = Vec::with_capacity(days.len());
    for date in days {
        let d = compute(config, store, &output, &mut ledger, date, &mut rng).await?;
        metrics.published(date, Timestamp::now());
        tracing::info!(
            %date,
            clusters = ?d.clusters,
            bytes_processed = ?d.bytes_processed,
            "snapshot published"
        );
        done.push(d);
    }
    // Also when nothing was due: a new version of the page replaces the old one.
    dashboard::publish(&output, &config.dashboard())?;
    Ok(done)
}

/// Runs once (`--once`) or until `shutdown`, checking every `--interval` for a due snapshot. A
/// failed periodic check is logged and retried at the next one; a failed `--once` is an error.
pub async fn run<S: Store>(
    config: Config,
    store: S,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let metrics = Metrics::new(config.cadence);
    run_counted(config, store, &metrics, shutdown).await
}

/// [`run`], and with `listener` (bound from `--listen` by the caller) the read-only server of
/// the published folder beside it, until `shutdown`. If either ends with an error, or the
/// server stops early, both stop and that is the error.
pub async fn start<S: Store>(
    config: Config,
    store: S,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new(config.cadence));
    let Some(listener) = listener else {
        return run_counted(config, store, &metrics, shutdown).await;
    };
    let stop = shutdown.child_token();
    let mut server = tokio::spawn(serve::serve(
        listener,
        config.out.clone(),
        metrics.clone(),
        stop.clone(),
    ));
    let job = run_counted(config, store, &metrics, stop.clone());
    tokio::pin!(job);
    tokio::select! {
        result = &mut job => {
            stop.cancel();
            let served = server.await;
            result?;
            match served {
                Ok(r) => r.map_err(RunError::Serve),
                Err(e) => Err(RunError::Serve(std::io::Error::other(e))),
            }
        }
        served = &mut server => {
            stop.cancel();
            let why = match served {
                Ok(Ok(())) if shutdown.is_cancelled() => return job.await,
                Ok(Ok(())) => std::io::Error::other("the server stopped"),
                Ok(Err(e)) => e,
                Err(e) => std::io::Error::other(e),
            };
            tracing::error!(error = %why, "the server stopped; stopping");
            let _ = job.await;
            Err(RunError::Serve(why))
        }
    }
}

async fn run_counted<S: Store>(
    config: Config,
    store: S,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    if config.once {
        return tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            r = once_counted(&config, &store, Timestamp::now(), metrics) => r.map(drop),
        };
    }
    // `--date` and `--backfill-from` apply to the first round only.
    let mut round = config.clone();
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = once_counted(&round, &store, Timestamp::now(), metrics) => r,
        };
        match result {
            Err(e) if e.is_config() => return Err(e),
            Err(e) => {
                metrics.failed_round();
                tracing::error!(error = %e, "computing snapshots failed; retrying at the next check")
            }
            Ok(_) => {}
        }
        round.date = None;
        round.backfill_from = None;
        // --new-ledger holds until the ledger exists: a first round that failed before it
        // published anything saved none, and the next round must still start it.
        if config.out.join(ledger::FILE).exists() {
            round.new_ledger = false;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(config.interval.max(Duration::from_secs(1))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::calendar::{end_of_day, oldest_due};
    use crate::config::Cadence;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("stats").chain(args.iter().copied())).unwrap()
    }

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn due(config: &Config, kept: &[Date], now: Timestamp) -> Result<Vec<Date>, RunError> {
        super::due(config, kept, &Ledger::new(), now)
    }

    // 2026-12-02 is a Wednesday; the last complete day is Tuesday 2026-12-01, the last Sunday
    // 2026-11-29.
    fn now() -> Timestamp {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_latest_sunday_that_is_over_is_due_when_nothing_is_kept() {
        assert_eq!(
            due(&config(&[]), &[], now()).unwrap(),
            vec![d("2026-11-29")]
        );
        assert_eq!(
            due(&config(&["--cadence", "daily"]), &[], now()).unwrap(),
            vec![d("2026-12-01")]
        );
    }

    #[test]
    fn missed_publication_days_are_caught_up_and_kept_ones_not_recomputed() {
        assert_eq!(
            due(&config(&[]), &[d("2026-11-08")], now()).unwrap(),
            vec![d("2026-11-15"), d("2026-11-22"), d("2026-11-29")]
        );
        assert!(
            due(&config(&[]), &[d("2026-11-29")], now())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_sunday_is_due_only_once_it_is_over() {
        let sunday_noon: Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        assert_eq!(
            due(&config(&[]), &[], sunday_noon).unwrap(),
            vec![d("2026-11-22")]
        );
        assert!(due(&config(&["--date", "2026-11-29"]), &[], sunday_noon).is_err());
    }

    #[test]
    fn a_released_date_is_refused_unless_forced() {
        let mut ledger = Ledger::new();
        let g = crate::privacy::Guarantee::of(0.05, 1e-7);
        ledger.record(d("2026-11-22"), now(), &g);
        for args in [
            &["--date", "2026-11-22"][..],
            &["--backfill-from", "2026-11-10"],
        ] {
            let e = super::due(&config(args), &[d("2026-11-22")], &ledger, now()).unwrap_err();
            assert!(e.is_config(), "{e}");
            assert!(
                e.to_string()
                    .contains("2026-11-22 (released on 2026-12-02)"),
                "{e}"
            );
            let mut forced = args.to_vec();
            forced.push("--allow-rerelease");
            assert!(super::due(&config(&forced), &[], &ledger, now()).is_ok());
        }
        assert_eq!(
            super::due(&config(&["--date", "2026-11-29"]), &[], &ledger, now()).unwrap(),
            vec![d("2026-11-29")]
        );
    }

    #[test]
    fn a_folder_without_a_ledger_is_refused_unless_it_is_new_and_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let output = Output::new(dir.path());
        let e = open_ledger(&config(&[]), &output).unwrap_err();
        assert!(
            e.is_config() && e.to_string().contains("--new-ledger"),
            "{e}"
        );
        let ledger = open_ledger(&config(&["--new-ledger"]), &output).unwrap();
        ledger.save(&output).unwrap();
        assert!(
            open_ledger(&config(&["--new-ledger"]), &output)
                .unwrap_err()
                .is_config()
        );
        assert!(open_ledger(&config(&[]), &output).is_ok());
        // A folder with snapshots whose ledger was lost: never silently released again.
        std::fs::remove_file(dir.path().join(ledger::FILE)).unwrap();
        std::fs::create_dir_all(dir.path().join("snapshots/2026-11-29")).unwrap();
        std::fs::write(dir.path().join("snapshots/2026-11-29/snapshot.json"), "{}").unwrap();
        for args in [&[][..], &["--new-ledger"]] {
            let e = open_ledger(&config(args), &output).unwrap_err();
            assert!(e.to_string().contains("Restore ledger.json"), "{e}");
        }
    }

    #[test]
    fn a_kept_snapshot_counts_as_published_when_its_snapshot_json_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let output = Output::new(dir.path());
        assert_eq!(published_at(&output, d("2026-11-29")), None);
        let before = Timestamp::now() - jiff::SignedDuration::from_secs(1);
        std::fs::create_dir_all(dir.path().join("snapshots/2026-11-29")).unwrap();
        std::fs::write(dir.path().join("snapshots/2026-11-29/snapshot.json"), "{}").unwrap();
        let at = published_at(&output, d("2026-11-29")).unwrap();
        assert!(before <= at && at <= Timestamp::now(), "{at}");
    }

    #[test]
    fn the_oldest_due_snapshot_is_what_a_periodic_round_computes_first() {
        for (kept, want) in [
            (&[][..], Some("2026-11-29")),
            (&[d("2026-11-08")][..], Some("2026-11-15")),
            (&[d("2026-11-29")][..], None),
        ] {
            assert_eq!(
                oldest_due(Cadence::Weekly, kept.last().copied(), now()),
                want.map(d),
                "{kept:?}"
            );
            assert_eq!(
                due(&config(&[]), kept, now()).unwrap().first().copied(),
                want.map(d)
            );
        }
        assert_eq!(
            end_of_day(d("2026-11-29")),
            "2026-11-30T00:00:00Z".parse().unwrap()
        );
    }

    #[test]
    fn backfill_recomputes_every_publication_day_from_a_date() {
        assert_eq!(
            due(
                &config(&["--backfill-from", "2026-11-10"]),
                &[d("2026-11-29")],
                now()
            )
            .unwrap(),
            vec![d("2026-11-15"), d("2026-11-22"), d("2026-11-29")]
        );
    }
}
