//! Command-line flags, each with an environment variable, parsed into typed values at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use plumbing::log::LogFormat;
use report::queue::Topology;
pub use stored::TableRef;
pub use stored::bigquery::Credentials;

/// The Spartakus ingester: consumes reports from NATS JetStream and writes each one to a local
/// SQLite file (exactly once), BigQuery (exactly once as queried through the deduplicating
/// view), or stdout, acknowledging it only once stored.
#[derive(Debug, Clone, Parser)]
#[command(name = "ingester", version, about)]
pub struct Config {
    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    #[arg(long, env = "SPARTAKUS_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,

    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "SPARTAKUS_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub(crate) nats_url: String,

    /// Prefix of every JetStream stream and subject, as given to the gateway: reports are
    /// consumed from `PREFIX_REPORTS`, erasure requests from `PREFIX_ERASURES` (the ingester
    /// waits for both to exist), and dead letters go to `PREFIX_DEADLETTER`, which the ingester
    /// creates.
    #[arg(long, env = "SPARTAKUS_QUEUE", default_value = report::queue::DEFAULT_PREFIX)]
    pub(crate) queue: Topology,

    /// Byte budget of the dead-letter stream in NATS's store. When it is full, a report that
    /// cannot be stored stays in the reports stream (nakked, tried again) instead of being
    /// dead-lettered, and nothing is dropped. With the gateway's --stream-max-bytes and
    /// --erasures-max-bytes it must fit in the server's `max_file_store`.
    #[arg(long, env = "SPARTAKUS_DEAD_LETTERS_MAX_BYTES", default_value = "1GiB",
          value_parser = plumbing::cli::parse_bytes)]
    pub(crate) dead_letters_max_bytes: u64,

    /// Name of the durable pull consumers (one on the reports stream, one on the erasures
    /// stream); replicas with the same name share the work.
    #[arg(long, env = "SPARTAKUS_CONSUMER", default_value = "spartakus-ingester")]
    pub(crate) consumer: String,

    /// How long raw reports are kept, by the gateway's receipt time: older ones are deleted from
    /// SQLite every 10 minutes in small batches, expire with their BigQuery partition (set on
    /// the table at start), and are not stored when they arrive late. `none` (or `0`) keeps
    /// them forever. The default serves the statistics' 28-day window with a week to spare.
    #[arg(long, env = "SPARTAKUS_RETENTION", default_value = "35d")]
    pub(crate) retention: Retention,

    /// Time a delivered report may stay unacknowledged before JetStream redelivers it.
    #[arg(long, env = "SPARTAKUS_ACK_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) ack_wait: Duration,

    /// Deliveries of one report before giving up; the last one that still fails sends the
    /// report to the dead-letter subject, so nothing is dropped silently.
    #[arg(long, env = "SPARTAKUS_MAX_DELIVER", default_value_t = 20,
          value_parser = clap::value_parser!(i64).range(2..))]
    pub(crate) max_deliver: i64,

    /// Most reports delivered and not yet acknowledged, across all replicas.
    #[arg(long, env = "SPARTAKUS_MAX_ACK_PENDING", default_value_t = 10_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub(crate) max_ack_pending: i64,

    /// Most reports written to the sink in one batch.
    #[arg(long, env = "SPARTAKUS_BATCH_SIZE", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) batch_size: u32,

    /// Most bytes of reports in one batch, as stored in the stream (e.g. `8MiB`): a batch pulls
    /// fewer reports when they are large. A report larger than this is pulled and written
    /// alone. Up to three batches are in hand at once (one arriving and decoded, two handed to
    /// the sink), two once those handed to the sink hold twice the budget, and a decoded
    /// report takes a few
    /// times its stored size: the default keeps the ingester within a 256Mi memory limit with
    /// reports of up to 16 MiB.
    #[arg(long, env = "SPARTAKUS_BATCH_MAX_BYTES", default_value = "8MiB",
          value_parser = parse_batch_bytes)]
    pub(crate) batch_max_bytes: u64,

    /// Longest a pull request waits for a report when the stream holds none; it is then made
    /// again. A batch never waits to fill: it takes what the stream holds.
    #[arg(long, env = "SPARTAKUS_BATCH_WAIT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) batch_wait: Duration,

    /// SQLite's page cache (e.g. `128MiB`), for the `sqlite:` sink. Each report's insert
    /// touches two indexes at random places (its report ID and its cluster, an estimated 120
    /// bytes a stored report): once they outgrow the cache, writing reads pages back from the
    /// file. The default holds them for some 250,000 reports and fits the shipped 256Mi pod
    /// limit; a bigger cache needs that much more memory.
    #[arg(long, env = "SPARTAKUS_SQLITE_CACHE", default_value = "32MiB",
          value_parser = parse_sqlite_cache)]
    pub(crate) sqlite_cache: u64,

    /// Where rows go: `sqlite:PATH`, `bigquery://PROJECT/DATASET/TABLE`, or `stdout` (JSON lines).
    #[arg(
        long,
        env = "SPARTAKUS_SINK",
        default_value = "sqlite:spartakus.sqlite"
    )]
    pub(crate) sink: SinkSpec,

    /// Base URL of the BigQuery v2 API, to use an emulator or a private endpoint, e.g.
    /// `http://127.0.0.1:9050/bigquery/v2`.
    #[arg(long, env = "SPARTAKUS_BIGQUERY_ENDPOINT")]
    pub(crate) bigquery_endpoint: Option<String>,

    /// Service-account key file for BigQuery. Unset: Application Default Credentials
    /// (GOOGLE_APPLICATION_CREDENTIALS, gcloud, or the metadata server / workload identity).
    /// `none`: send no credentials (only for an emulator).
    #[arg(long, env = "SPARTAKUS_BIGQUERY_CREDENTIALS")]
    pub(crate) bigquery_credentials: Option<Credentials>,

    /// Most rows in one BigQuery insertAll request.
    #[arg(long, env = "SPARTAKUS_BIGQUERY_MAX_ROWS", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub(crate) bigquery_max_rows: u32,

    /// Most bytes in the JSON body of one BigQuery insertAll request, counted exactly before
    /// gzip (BigQuery's limit is 10 MB); a single larger row is sent alone.
    #[arg(long, env = "SPARTAKUS_BIGQUERY_MAX_BYTES", default_value_t = 5_000_000,
          value_parser = clap::value_parser!(u64).range(1024..=10_000_000))]
    pub(crate) bigquery_max_bytes: u64,

    /// Longest wait for one HTTP request to BigQuery (insertAll, a table or dataset call, a
    /// query job's creation or one of its polls), answered or not; a batch's whole write, its
    /// tombstone check and insertAll retries included, and the readiness probe end within it
    /// too. More than 10s: query calls ask BigQuery to wait up to 10 s for their job before
    /// answering; at most 5m, so an erasure's 10-minute grace outlasts a write.
    #[arg(long, env = "SPARTAKUS_BIGQUERY_REQUEST_TIMEOUT", default_value = "60s",
          value_parser = parse_request_timeout)]
    pub(crate) bigquery_request_timeout: Duration,

    /// Longest wait for one BigQuery query job (an erasure's tombstone INSERT, its DML DELETE,
    /// a tombstone read) from its creation to its last page of results, polls included, even
    /// when the server stops answering in the middle of a request; and preparing the table at
    /// start (each attempt). More than 10s.
    #[arg(long, env = "SPARTAKUS_BIGQUERY_JOB_DEADLINE", default_value = "5m",
          value_parser = parse_job_deadline)]
    pub(crate) bigquery_job_deadline: Duration,

    /// Longest wait for NATS to answer: a JetStream API request (stream and consumer info and
    /// creation at start), a dead letter's publish ack, an ack or nak handed to the client,
    /// and the check that the server still answers when a pull brought nothing (a pull request
    /// itself waits at most --batch-wait plus this). A consumer whose server stops answering is
    /// unbound (/readyz says so) within three times this plus --batch-wait, and bound again
    /// once the server answers.
    #[arg(long, env = "SPARTAKUS_NATS_TIMEOUT", default_value = "10s",
          value_parser = parse_nats_timeout)]
    pub(crate) nats_timeout: Duration,

    /// On SIGTERM, time to finish and acknowledge the batch in hand before exiting anyway.
    #[arg(long, env = "SPARTAKUS_SHUTDOWN_TIMEOUT", default_value = "20s",
          value_parser = humantime::parse_duration)]
    pub(crate) shutdown_timeout: Duration,

    /// A write to the sink (a batch or an erasure) unfinished for longer than this is stuck:
    /// /readyz and /healthz answer 503 saying so, and the liveness probe restarts the pod (the
    /// reports it held were not acknowledged, so they are delivered again).
    #[arg(long, env = "SPARTAKUS_WRITE_STUCK_AFTER", default_value = "5m",
          value_parser = parse_write_stuck_after)]
    pub(crate) write_stuck_after: Duration,

    /// Log format: `json` (one object per line, for clusters) or `pretty` (for a terminal).
    /// Filter with RUST_LOG.
    #[arg(long, env = "SPARTAKUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// `--batch-max-bytes`: a byte size of at least 64 KiB (smaller would pull most reports alone)
/// and at most 1 GiB.
fn parse_batch_bytes(s: &str) -> Result<u64, String> {
    let bytes = plumbing::cli::parse_bytes(s)?;
    if (64 << 10..=1 << 30).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!("{bytes} bytes: between 64KiB and 1GiB"))
    }
}

/// `--sqlite-cache`: from 1MiB (SQLite's own default is 2 MB) to 64GiB.
fn parse_sqlite_cache(s: &str) -> Result<u64, String> {
    let bytes = plumbing::cli::parse_bytes(s)?;
    if (1 << 20..=64 << 30).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!("{bytes} bytes: between 1MiB and 64GiB"))
    }
}

/// `--bigquery-request-timeout`: longer than the long poll query calls ask BigQuery for, so a
/// healthy poll is never cut; at most 5 minutes, because a batch's write lasts up to this long
/// and an erasure waits out `ERASURE_GRACE` (10 min) for the batches another replica was
/// writing when its tombstone appeared: the grace must outlast the tombstones' 1-minute refresh
/// plus one write.
fn parse_request_timeout(s: &str) -> Result<Duration, String> {
    let d = longer_than_the_long_poll(s)?;
    if d <= Duration::from_secs(300) {
        Ok(d)
    } else {
        Err("at most 5m: an erasure's grace (10 min) must outlast a batch's write".into())
    }
}

/// `--bigquery-job-deadline`: longer than one long poll, so a job gets at least one.
fn parse_job_deadline(s: &str) -> Result<Duration, String> {
    longer_than_the_long_poll(s)
}

fn longer_than_the_long_poll(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    let poll = stored::bigquery::LONG_POLL;
    if d > poll {
        Ok(d)
    } else {
        Err(format!(
            "must be more than {}s, the longest a BigQuery query call asks the server to wait",
            poll.as_secs()
        ))
    }
}

/// `--nats-timeout`: between 100ms and 10m.
fn parse_nats_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&d) {
        Ok(d)
    } else {
        Err("between 100ms and 10m".into())
    }
}

/// How long raw reports are kept: `None` for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention(pub(crate) Option<Duration>);

impl FromStr for Retention {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "none" | "0" => Ok(Retention(None)),
            other => match humantime::parse_duration(other) {
                Ok(d) if d.is_zero() => Ok(Retention(None)),
                // Shorter than a day would delete reports before a daily snapshot reads them.
                Ok(d) if d < Duration::from_secs(86_400) => {
                    Err("at least 1d (or none to keep reports forever)".into())
                }
                Ok(d) => Ok(Retention(Some(d))),
                Err(e) => Err(format!("{e}; expected a duration such as 35d, or none")),
            },
        }
    }
}

/// `--write-stuck-after`: a duration above zero (zero would call every write stuck).
fn parse_write_stuck_after(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e}; expected a duration such as 5m")),
    }
}

/// Which sink rows are written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SinkSpec {
    /// A local SQLite file.
    Sqlite(PathBuf),
    /// A BigQuery table.
    BigQuery(TableRef),
    /// JSON lines on standard output.
    Stdout,
}

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "stdout" {
            return Ok(SinkSpec::Stdout);
        }
        if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("sqlite: needs a path, e.g. sqlite:spartakus.sqlite".into());
            }
            return Ok(SinkSpec::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("bigquery://") {
            return TableRef::parse(rest)
                .map(SinkSpec::BigQuery)
                .map_err(|e| e.to_string());
        }
        Err("expected sqlite:PATH, bigquery://PROJECT/DATASET/TABLE or stdout".into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_parse_and_match_the_documentation() {
        let config = Config::try_parse_from(["ingester"]).unwrap();
        assert_eq!(config.sink, SinkSpec::Sqlite("spartakus.sqlite".into()));
        assert_eq!(config.ack_wait, Duration::from_secs(60));
        assert_eq!(config.batch_size, 500);
        assert_eq!(config.batch_max_bytes, 8 << 20);
        assert_eq!(config.queue, report::queue::Topology::default());
        assert_eq!(
            config.retention,
            Retention(Some(Duration::from_secs(35 * 86_400)))
        );
    }

    #[test]
    fn retention_is_a_duration_of_a_day_or_more_or_none() {
        let parse = |s: &str| s.parse::<Retention>();
        assert_eq!(parse("none"), Ok(Retention(None)));
        assert_eq!(parse("0"), Ok(Retention(None)));
        assert_eq!(parse("0s"), Ok(Retention(None)));
        assert_eq!(
            parse("90d"),
            Ok(Retention(Some(Duration::from_secs(90 * 86_400))))
        );
        assert!(parse("1h").unwrap_err().contains("at least 1d"));
        assert!(parse("forever").is_err());
    }

    #[test]
    fn a_bigquery_sink_names_project_dataset_and_table() {
        let spec: SinkSpec = "bigquery://my-proj/spartakus/reports".parse().unwrap();
        assert_eq!(
            spec,
            SinkSpec::BigQuery(TableRef {
                project: "my-proj".into(),
                dataset: "spartakus".into(),
                table: "reports".into()
            })
        );
        assert!("bigquery://my-proj/spartakus".parse::<SinkSpec>().is_err());
        assert!("bigquery://my-proj/d/t/x".parse::<SinkSpec>().is_err());
        assert!("bigquery://my-proj/d a/t".parse::<SinkSpec>().is_err());
        assert!("postgres://x".parse::<SinkSpec>().is_err());
        assert!("sqlite:".parse::<SinkSpec>().is_err());
    }

    #[test]
    fn the_batch_byte_budget_is_a_byte_size_within_bounds() {
        let parse = |v: &str| {
            Config::try_parse_from(["ingester", "--batch-max-bytes", v]).map(|c| c.batch_max_bytes)
        };
        assert_eq!(parse("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse("65536").unwrap(), 65_536);
        assert!(
            parse("1KiB")
                .unwrap_err()
                .to_string()
                .contains("between 64KiB and 1GiB")
        );
        assert!(parse("2GiB").is_err());
        assert!(parse("lots").is_err());
    }

    #[test]
    fn bigquery_deadlines_must_exceed_the_long_poll_and_name_their_flag() {
        let config = Config::try_parse_from(["ingester"]).unwrap();
        assert_eq!(config.bigquery_request_timeout, Duration::from_secs(60));
        assert_eq!(config.bigquery_job_deadline, Duration::from_secs(300));
        assert_eq!(config.nats_timeout, Duration::from_secs(10));
        let parsed = Config::try_parse_from([
            "ingester",
            "--bigquery-request-timeout",
            "11s",
            "--bigquery-job-deadline",
            "2m",
        ])
        .unwrap();
        assert_eq!(parsed.bigquery_request_timeout, Duration::from_secs(11));
        assert_eq!(parsed.bigquery_job_deadline, Duration::from_secs(120));
        for flag in ["--bigquery-request-timeout", "--bigquery-job-deadline"] {
            let refused = Config::try_parse_from(["ingester", flag, "10s"])
                .unwrap_err()
                .to_string();
            assert!(refused.contains(flag), "{refused}");
            assert!(refused.contains("must be more than 10s"), "{refused}");
        }
        let refused = Config::try_parse_from(["ingester", "--bigquery-request-timeout", "6m"])
            .unwrap_err()
            .to_string();
        assert!(refused.contains("at most 5m"), "{refused}");
    }

    #[test]
    fn the_nats_timeout_is_bounded() {
        let parse = |v: &str| {
            Config::try_parse_from(["ingester", "--nats-timeout", v]).map(|c| c.nats_timeout)
        };
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        let refused = parse("0s").unwrap_err().to_string();
        assert!(
            refused.contains("--nats-timeout") && refused.contains("between 100ms and 10m"),
            "{refused}"
        );
        assert!(parse("1h").is_err());
    }

    #[test]
    fn max_deliver_below_two_is_refused() {
        assert!(Config::try_parse_from(["ingester", "--max-deliver", "1"]).is_err());
    }

    #[test]
    fn a_write_is_stuck_after_five_minutes_and_never_after_zero() {
        let parse = |v: &str| {
            Config::try_parse_from(["ingester", "--write-stuck-after", v])
                .map(|c| c.write_stuck_after)
        };
        let config = Config::try_parse_from(["ingester"]).unwrap();
        assert_eq!(config.write_stuck_after, Duration::from_secs(300));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        let refused = parse("0s").unwrap_err().to_string();
        assert!(
            refused.contains("--write-stuck-after") && refused.contains("more than 0s"),
            "{refused}"
        );
        assert!(parse("soon").is_err());
    }
}
