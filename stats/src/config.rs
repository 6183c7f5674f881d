//! Command-line flags, each with an environment variable, parsed into typed values at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use jiff::civil::Date;

pub use plumbing::log::LogFormat;

use crate::privacy::Budget;
use crate::store::bigquery::Deadlines;
use stored::TableRef;
use stored::bigquery::Credentials;

/// The Spartakus statistics job: computes differentially private snapshots of the stored reports,
/// aggregated where they are stored (SQLite or BigQuery), and publishes them as JSON and CSV files.
#[derive(Debug, Clone, Parser)]
#[command(name = "stats", version, about)]
pub struct Config {
    /// Where the reports are: `sqlite:PATH` (the ingester's file, opened read-only) or `bigquery://PROJECT/DATASET/TABLE` (the ingester's table, read through its TABLE_deduplicated view)
    #[arg(
        long,
        env = "SPARTAKUS_STORE",
        default_value = "sqlite:spartakus.sqlite"
    )]
    pub store: StoreSpec,

    /// Base URL of the BigQuery v2 API, to use an emulator or a private endpoint, e.g. `http://127.0.0.1:9050/bigquery/v2`
    #[arg(long, env = "SPARTAKUS_BIGQUERY_ENDPOINT")]
    pub bigquery_endpoint: Option<String>,

    /// Service-account key file for BigQuery (a reader: roles/bigquery.dataViewer and roles/bigquery.jobUser). Unset: Application Default Credentials. `none`: no credentials (an emulator only)
    #[arg(long, env = "SPARTAKUS_BIGQUERY_CREDENTIALS")]
    pub bigquery_credentials: Option<Credentials>,

    /// The longest one HTTP request to BigQuery may take, connecting included, before it is abandoned and the snapshot fails; longer than the 10 s that jobs.query and getQueryResults ask BigQuery to wait
    #[arg(long, env = "SPARTAKUS_BIGQUERY_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_request_timeout)]
    pub bigquery_request_timeout: Duration,

    /// The longest a snapshot's BigQuery query job may take, from creating it to its last page of results, requests in flight included; then it is cancelled and the snapshot fails
    #[arg(long, env = "SPARTAKUS_JOB_DEADLINE", default_value = "30m", value_parser = parse_job_deadline)]
    pub job_deadline: Duration,

    /// Folder the snapshots are published in (created if missing)
    #[arg(long, env = "SPARTAKUS_OUT", default_value = "spartakus-stats")]
    pub out: PathBuf,

    /// The floor a noisy count must clear to be published as a cell of its own; smaller cells fold into `other` (at least 2)
    #[arg(long, env = "SPARTAKUS_MIN_CLUSTERS", default_value_t = Budget::DEFAULT.min_clusters,
          value_parser = clap::value_parser!(u64).range(2..))]
    pub min_clusters: u64,

    /// ρ: the privacy budget of one snapshot, in zero-concentrated differential privacy, with respect to one cluster; split among every total and metric. Its (ε, δ) equivalent is printed on every output
    #[arg(long, env = "SPARTAKUS_RHO", default_value_t = Budget::DEFAULT.rho, value_parser = parse_rho)]
    pub rho: f64,

    /// δ of the (ε, δ) statement of one snapshot: half for releasing open-domain values (versions, kernels), half for converting ρ to ε
    #[arg(long, env = "SPARTAKUS_DELTA", default_value_t = Budget::DEFAULT.delta, value_parser = parse_delta)]
    pub delta: f64,

    /// The most nodes one cluster counts for in node metrics and the node total (a larger cluster's nodes are scaled down to it): the sensitivity the node noise is calibrated to
    #[arg(long, env = "SPARTAKUS_NODE_CLIP", default_value_t = Budget::DEFAULT.node_clip,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub node_clip: u64,

    /// Days in a snapshot's window, ending with the snapshot's date; each cluster counts once, by its latest report in the window
    #[arg(long, env = "SPARTAKUS_WINDOW_DAYS", default_value_t = 28,
          value_parser = clap::value_parser!(u16).range(1..=366))]
    pub window_days: u16,

    /// Which days get a snapshot: `weekly` (Sundays, UTC) or `daily`
    #[arg(long, env = "SPARTAKUS_CADENCE", value_enum, default_value_t = Cadence::Weekly)]
    pub cadence: Cadence,

    /// Compute the snapshot of this day (YYYY-MM-DD, a day already over) instead of the due ones; refused if the ledger says it is released, unless --allow-rerelease
    #[arg(long, env = "SPARTAKUS_DATE", conflicts_with = "backfill_from")]
    pub date: Option<Date>,

    /// Compute the snapshot of every publication day from this one (YYYY-MM-DD) to the latest, from the stored reports; refused if the ledger says any of them is released, unless --allow-rerelease
    #[arg(long, env = "SPARTAKUS_BACKFILL_FROM")]
    pub backfill_from: Option<Date>,

    /// Release again dates the ledger says are released (--date, --backfill-from). Each release draws fresh noise, so two releases of one date let a reader average the noise away: the ledger records the extra ρ, and the cumulative guarantee gets worse
    #[arg(long, env = "SPARTAKUS_ALLOW_RERELEASE")]
    pub allow_rerelease: bool,

    /// Start a new ledger in an output folder that has none (a new publication). Without it, a folder without ledger.json is refused, so a lost volume is never silently released again; refused if a ledger exists
    #[arg(long, env = "SPARTAKUS_NEW_LEDGER")]
    pub new_ledger: bool,

    /// Count reports marked with the extension spartakus.dev/synthetic=true (demo populations); the snapshot says so
    #[arg(long, env = "SPARTAKUS_INCLUDE_SYNTHETIC")]
    pub include_synthetic: bool,

    /// Compute what is due and exit (for a CronJob), with a non-zero exit code on failure; without it, keep running and check every --interval
    #[arg(long, env = "SPARTAKUS_ONCE")]
    pub once: bool,

    /// In periodic mode, time between checks for a snapshot that is due
    #[arg(long, env = "SPARTAKUS_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// In periodic mode, also serve the published folder read-only on this address: the dashboard and the files under /stats/, and /healthz, /readyz, /metrics. Unset: serve nothing
    #[arg(long, env = "SPARTAKUS_LISTEN", conflicts_with = "once")]
    pub listen: Option<SocketAddr>,

    /// Where the dashboard's privacy summary links to: the manual's page "Privacy and the published statistics" (docs/statistics.md) in your copy of the source. Unset: the published SCHEMA.md
    #[arg(long, env = "SPARTAKUS_PRIVACY_URL")]
    pub privacy_url: Option<String>,

    /// Log format: `pretty` for a terminal, `json` for log collectors. Filter with RUST_LOG
    #[arg(long, env = "SPARTAKUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// Which days get a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cadence {
    /// Every day.
    Daily,
    /// Sundays (a 28-day window is then four whole ISO weeks).
    Weekly,
}

impl Cadence {
    /// Whether `date` gets a snapshot.
    pub fn publishes_on(self, date: Date) -> bool {
        match self {
            Cadence::Daily => true,
            Cadence::Weekly => date.weekday() == jiff::civil::Weekday::Sunday,
        }
    }
}

/// Where the reports are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The ingester's SQLite file.
    Sqlite(PathBuf),
    /// The ingester's BigQuery table.
    BigQuery(TableRef),
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("sqlite: needs a path, e.g. sqlite:spartakus.sqlite".into());
            }
            Ok(StoreSpec::Sqlite(PathBuf::from(path)))
        } else if let Some(rest) = s.strip_prefix("bigquery://") {
            TableRef::parse(rest)
                .map(StoreSpec::BigQuery)
                .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "{s:?}: expected sqlite:PATH or bigquery://PROJECT/DATASET/TABLE"
            ))
        }
    }
}

fn parse_positive(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{s}: must be longer than zero"));
    }
    Ok(d)
}

fn parse_request_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_positive(s)?;
    let poll = stored::bigquery::LONG_POLL;
    if d <= poll {
        return Err(format!(
            "{s}: must be longer than the {} that jobs.query and getQueryResults ask BigQuery to wait, or every healthy poll would be cut",
            humantime::format_duration(poll)
        ));
    }
    Ok(d)
}

fn parse_job_deadline(s: &str) -> Result<Duration, String> {
    parse_positive(s)
}

fn parse_rho(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?}: not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 10.0 {
        Ok(v)
    } else {
        Err(format!("{s}: ρ must be above 0 and at most 10"))
    }
}

fn parse_delta(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?}: not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 1e-3 {
        Ok(v)
    } else {
        Err(format!("{s}: δ must be above 0 and at most 0.001"))
    }
}

impl Config {
    /// The privacy parameters: each cluster counts at most one report per day of the window.
    pub fn budget(&self) -> Budget {
        Budget {
            rho: self.rho,
            delta: self.delta,
            min_clusters: self.min_clusters,
            node_clip: self.node_clip,
            report_clip: u64::from(self.window_days),
        }
    }

    /// What the dashboard says beyond the published files.
    pub fn dashboard(&self) -> crate::dashboard::Options {
        crate::dashboard::Options {
            privacy_url: self.privacy_url.clone(),
        }
    }

    /// The deadlines of the BigQuery store's calls.
    pub fn bigquery_deadlines(&self) -> Deadlines {
        Deadlines {
            request: self.bigquery_request_timeout,
            job: self.job_deadline,
        }
    }

    /// The BigQuery credentials to use.
    pub fn credentials(&self) -> Credentials {
        self.bigquery_credentials.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("stats").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_rho_0_05_a_floor_of_10_a_28_day_window_and_weekly_snapshots() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.min_clusters, 10);
        assert_eq!((c.rho, c.delta, c.node_clip), (0.05, 1e-7, 20));
        assert_eq!(
            c.budget(),
            Budget::DEFAULT,
            "the window's 28 days: 28 reports"
        );
        assert!(!c.allow_rerelease && !c.new_ledger);
        assert_eq!(c.window_days, 28);
        assert_eq!(c.cadence, Cadence::Weekly);
        assert_eq!(c.store, StoreSpec::Sqlite("spartakus.sqlite".into()));
        assert!(!c.include_synthetic && !c.once);
        assert_eq!(c.listen, None, "serves nothing unless asked");
    }

    #[test]
    fn serving_needs_periodic_mode() {
        assert!(parse(&["--once", "--listen", "127.0.0.1:8080"]).is_err());
        assert!(parse(&["--listen", "localhost"]).is_err());
        let c = parse(&["--listen", "127.0.0.1:8080"]).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn a_threshold_below_two_is_refused() {
        for k in ["0", "1", "-3", "x"] {
            assert!(parse(&["--min-clusters", k]).is_err(), "{k}");
        }
        assert_eq!(parse(&["--min-clusters", "2"]).unwrap().min_clusters, 2);
    }

    #[test]
    fn a_budget_outside_its_range_is_refused() {
        for (flag, v) in [
            ("--rho", "0"),
            ("--rho", "-1"),
            ("--rho", "inf"),
            ("--rho", "11"),
            ("--delta", "0"),
            ("--delta", "0.5"),
            ("--node-clip", "0"),
        ] {
            assert!(parse(&[flag, v]).is_err(), "{flag} {v}");
        }
        assert_eq!(parse(&["--rho", "0.2"]).unwrap().rho, 0.2);
    }

    #[test]
    fn stores_are_sqlite_or_bigquery() {
        let c = parse(&["--store", "bigquery://my-project/d/t"]).unwrap();
        assert!(matches!(c.store, StoreSpec::BigQuery(t) if t.table == "t"));
        assert!(parse(&["--store", "postgres://x"]).is_err());
        assert!(parse(&["--store", "sqlite:"]).is_err());
        assert!(parse(&["--date", "2026-11-29", "--backfill-from", "2026-01-04"]).is_err());
        assert!(parse(&["--date", "yesterday"]).is_err());
    }

    #[test]
    fn bigquery_deadlines_default_to_60_s_per_request_and_30_min_per_job() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.bigquery_deadlines(), Deadlines::DEFAULT);
        assert_eq!(c.bigquery_request_timeout, Duration::from_secs(60));
        assert_eq!(c.job_deadline, Duration::from_secs(30 * 60));
        let c = parse(&["--bigquery-request-timeout", "11s", "--job-deadline", "3s"]).unwrap();
        assert_eq!(
            c.bigquery_deadlines(),
            Deadlines {
                request: Duration::from_secs(11),
                job: Duration::from_secs(3)
            }
        );
    }

    #[test]
    fn a_zero_deadline_or_a_request_timeout_inside_the_long_poll_is_refused_naming_the_flag() {
        for (flag, v, why) in [
            ("--job-deadline", "0s", "longer than zero"),
            ("--job-deadline", "soon", "soon"),
            ("--bigquery-request-timeout", "0s", "longer than zero"),
            ("--bigquery-request-timeout", "5s", "longer than the 10s"),
            ("--bigquery-request-timeout", "10s", "longer than the 10s"),
        ] {
            let e = parse(&[flag, v]).unwrap_err().to_string();
            assert!(e.contains(flag) && e.contains(why), "{flag} {v}: {e}");
        }
    }

    #[test]
    fn weekly_snapshots_are_on_sundays() {
        assert!(Cadence::Weekly.publishes_on("2026-11-29".parse().unwrap()));
        assert!(!Cadence::Weekly.publishes_on("2026-11-30".parse().unwrap()));
        assert!(Cadence::Daily.publishes_on("2026-11-30".parse().unwrap()));
    }
}
