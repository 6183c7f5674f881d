//! Command-line flags, each with an environment variable, parsed into typed values at start-up.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The Spartakus gateway: validates volunteers' reports and publishes each one durably to a NATS
/// JetStream stream before acknowledging it.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "SPARTAKUS_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "SPARTAKUS_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,

    /// JetStream stream the reports are published to; created at start if missing.
    #[arg(long, env = "SPARTAKUS_STREAM", default_value = "SPARTAKUS_REPORTS")]
    pub stream: String,

    /// Subject the reports are published on (the stream's only subject).
    #[arg(long, env = "SPARTAKUS_SUBJECT", default_value = "spartakus.reports")]
    pub subject: String,

    /// Number of copies of the stream in a NATS cluster (1, 3 or 5), used when creating it.
    #[arg(long, env = "SPARTAKUS_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// How long JetStream remembers a reportID to drop a retried copy of the same report.
    #[arg(long, env = "SPARTAKUS_DUPLICATE_WINDOW", default_value = "2h",
          value_parser = humantime::parse_duration)]
    pub duplicate_window: Duration,

    /// How long the stream keeps a report (consumed or not) before discarding it.
    #[arg(long, env = "SPARTAKUS_STREAM_MAX_AGE", default_value = "7d",
          value_parser = humantime::parse_duration)]
    pub stream_max_age: Duration,

    /// Largest size of the stream (e.g. `8GiB`); when full, new reports are refused with 503
    /// rather than old ones dropped. Unset: bounded only by the server's storage limit.
    #[arg(long, env = "SPARTAKUS_STREAM_MAX_BYTES", value_parser = parse_bytes)]
    pub stream_max_bytes: Option<u64>,

    /// Largest request body as sent on the wire when gzip-compressed (e.g. `4MiB`).
    #[arg(long, env = "SPARTAKUS_MAX_BODY_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    pub max_body_bytes: u64,

    /// Largest report after decompression, and largest uncompressed body (a 15,000-node report
    /// is about 8 MB).
    #[arg(long, env = "SPARTAKUS_MAX_DECODED_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    pub max_decoded_bytes: u64,

    /// Most report requests handled at once; beyond it requests get 503 with Retry-After at
    /// once instead of queueing.
    #[arg(long, env = "SPARTAKUS_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: u32,

    /// Time a client has to send its whole request body (then 408).
    #[arg(long, env = "SPARTAKUS_REQUEST_TIMEOUT", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Time JetStream has to acknowledge a report (then 503 with Retry-After).
    #[arg(long, env = "SPARTAKUS_PUBLISH_TIMEOUT", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,

    /// Report requests per minute allowed from one client IP address; 0 turns the limit off.
    #[arg(long, env = "SPARTAKUS_RATE_LIMIT_PER_IP", default_value_t = 0)]
    pub rate_limit_per_ip: u32,

    /// Reports per minute allowed for one clusterID; 0 turns the limit off.
    #[arg(long, env = "SPARTAKUS_RATE_LIMIT_PER_CLUSTER", default_value_t = 0)]
    pub rate_limit_per_cluster: u32,

    /// Take the client IP for rate limiting from the first X-Forwarded-For address (only behind
    /// a proxy that sets it) instead of the TCP peer.
    #[arg(long, env = "SPARTAKUS_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// After SIGTERM/SIGINT, how long requests in flight have to finish before the gateway exits.
    #[arg(long, env = "SPARTAKUS_SHUTDOWN_TIMEOUT", default_value = "20s",
          value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format: `json` for clusters, `pretty` for a terminal. Filter with RUST_LOG.
    #[arg(long, env = "SPARTAKUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

impl Config {
    /// The flags' defaults with another NATS URL: what tests and the benchmark start from.
    pub fn for_nats(nats_url: impl Into<String>) -> Self {
        // Parsing an empty command line only fails if a default is malformed, which the unit
        // test `defaults_parse` rules out.
        let mut config = Config::try_parse_from(["gateway"]).unwrap_or_else(|e| panic!("{e}"));
        config.nats_url = nats_url.into();
        config
    }

    /// `--rate-limit-per-ip` as a quota, `None` when off.
    pub(crate) fn ip_quota(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.rate_limit_per_ip)
    }

    /// `--rate-limit-per-cluster` as a quota, `None` when off.
    pub(crate) fn cluster_quota(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.rate_limit_per_cluster)
    }
}

/// Parses a byte size: a whole number with an optional unit, `B`, `KB`/`MB`/`GB` (powers of
/// 1000) or `KiB`/`MiB`/`GiB` (powers of 1024), e.g. `4MiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte size such as 4194304 or 4MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" | "ki" => 1 << 10,
        "mib" | "mi" => 1 << 20,
        "gib" | "gi" => 1 << 30,
        other => {
            return Err(format!(
                "unknown byte unit {other:?} (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_parse() {
        let config = Config::for_nats("nats://127.0.0.1:1");
        assert_eq!(config.max_body_bytes, 4 << 20);
        assert_eq!(config.max_decoded_bytes, 16 << 20);
        assert_eq!(config.duplicate_window, Duration::from_secs(7200));
        assert_eq!(config.stream_max_age, Duration::from_secs(7 * 86400));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(config.stream_max_bytes, None);
        assert_eq!(config.ip_quota(), None);
    }

    #[test]
    fn byte_sizes_accept_decimal_and_binary_units() {
        assert_eq!(parse_bytes("123"), Ok(123));
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("16 MB"), Ok(16_000_000));
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert!(parse_bytes("4 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
    }

    #[test]
    fn every_flag_has_an_env_var_and_help() {
        use clap::CommandFactory;
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(
                env.as_deref(),
                Some(format!("SPARTAKUS_{}", id.to_ascii_uppercase()).as_str()),
                "--{id}"
            );
            assert!(arg.get_help().is_some(), "--{id} has no help");
        }
    }
}
