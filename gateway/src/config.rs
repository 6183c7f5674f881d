//! Command-line flags, each with an environment variable, parsed into typed values at start-up.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use governor::Quota;
use plumbing::log::LogFormat;
use report::node_id::NodeIdKey;
use report::queue::Topology;

use crate::limit;
pub use plumbing::cli::parse_bytes;

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

    /// Prefix of every JetStream stream and subject the gateway publishes to and the ingester
    /// consumes (`PREFIX_REPORTS` on `prefix.reports`, `PREFIX_ERASURES` on `prefix.erasures`);
    /// the streams are created at start if missing. Give the ingester the same value.
    #[arg(long, env = "SPARTAKUS_QUEUE", default_value = report::queue::DEFAULT_PREFIX)]
    pub queue: Topology,

    /// Number of copies of the stream in a NATS cluster (1, 3 or 5), used when creating it.
    #[arg(long, env = "SPARTAKUS_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// How long JetStream remembers a reportID to drop a retried copy of the same report.
    #[arg(long, env = "SPARTAKUS_DUPLICATE_WINDOW", default_value = "2h",
          value_parser = humantime::parse_duration)]
    pub duplicate_window: Duration,

    /// Age after which the reports and erasures streams drop a message the ingester has not
    /// stored yet; `0s` for never. A stored message is deleted at once (work-queue retention),
    /// so an age limit only ever loses acknowledged reports: keep it `0s` unless the store must
    /// forget what an ingester left behind for that long.
    #[arg(long, env = "SPARTAKUS_STREAM_MAX_AGE", default_value = "0s",
          value_parser = humantime::parse_duration)]
    pub stream_max_age: Duration,

    /// Byte budget of the reports stream in NATS's store (e.g. `6GiB`). When it is full, new
    /// reports get 503 with Retry-After (none already queued is dropped) until the ingester has
    /// stored enough to make room. This, --erasures-max-bytes and the ingester's
    /// --dead-letters-max-bytes must fit together in the server's `max_file_store`.
    #[arg(long, env = "SPARTAKUS_STREAM_MAX_BYTES", default_value = "6GiB", value_parser = parse_bytes)]
    pub stream_max_bytes: u64,

    /// Byte budget of the erasures stream, apart from the reports stream's, so that a full
    /// reports stream never keeps an erasure request out (one takes about 400 bytes).
    #[arg(long, env = "SPARTAKUS_ERASURES_MAX_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub erasures_max_bytes: u64,

    /// Fill of the reports stream, in percent of --stream-max-bytes, at and above which new
    /// reports are refused before their body is read (503 `queue-full`, Retry-After 60 s) until
    /// the ingester has made room, and `/readyz` (still 200: erasure requests are taken) warns.
    #[arg(long, env = "SPARTAKUS_STREAM_FULL_PERCENT", default_value_t = 95,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub stream_full_percent: u8,

    /// Largest request body as sent on the wire when gzip-compressed (e.g. `4MiB`).
    #[arg(long, env = "SPARTAKUS_MAX_BODY_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    pub max_body_bytes: u64,

    /// Largest report after decompression, and largest uncompressed body (a 15,000-node report
    /// is about 8 MB).
    #[arg(long, env = "SPARTAKUS_MAX_DECODED_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    pub max_decoded_bytes: u64,

    /// Most requests decoded and published at once, counted from the moment their body is
    /// complete (a body still arriving takes none); beyond it requests get 503 with
    /// Retry-After at once instead of queueing.
    #[arg(long, env = "SPARTAKUS_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: u32,

    /// Time a client has to send its whole request body (then 408). The largest report a
    /// volunteer sends (15,000 nodes, about 340 KB gzipped) needs 12 KB/s for it.
    #[arg(long, env = "SPARTAKUS_REQUEST_TIMEOUT", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Slowest a request body may arrive, in bytes per second on average, counted from 2 s
    /// after the body starts (then 408, and the connection is closed); 0 turns it off. Bodies
    /// trickled in to hold connections fall behind it long before --request-timeout.
    #[arg(long, env = "SPARTAKUS_MIN_BODY_RATE", default_value = "1KiB", value_parser = parse_bytes)]
    pub min_body_rate: u64,

    /// Most requests from one client address (the one rate limits use) whose body is still
    /// arriving; more are refused at once with 429 and their connection closed. 0 turns the cap
    /// off. An honest body arrives in a moment, so even many clusters behind one address seldom
    /// have more than a few arriving together.
    #[arg(long, env = "SPARTAKUS_MAX_UPLOADS_PER_IP", default_value_t = 16)]
    pub max_uploads_per_ip: u32,

    /// Bytes that all requests in flight may hold together: bodies as they arrive (and their
    /// gzip state), then the decoded report and the message until JetStream answers. A
    /// request that would pass it gets 503 with Retry-After at once. The default keeps a
    /// 256 MiB pod clear of its limit: 96 MiB here, at most 72 MiB of connections (1,024 at
    /// about 72 KiB each, their 64 KiB read buffers full) and about 20 MiB of process
    /// baseline leave 68 MiB for the allocator's slack (docs/collector.md).
    #[arg(long, env = "SPARTAKUS_MEMORY_BUDGET", default_value = "96MiB", value_parser = parse_bytes)]
    pub memory_budget: u64,

    /// Time JetStream has to acknowledge a report (then 503 with Retry-After).
    #[arg(long, env = "SPARTAKUS_PUBLISH_TIMEOUT", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,

    /// Report requests per minute allowed from one client address, sustained (an IPv6 client
    /// counts as its /64); 0 turns the limit off.
    #[arg(long, env = "SPARTAKUS_RATE_LIMIT_PER_IP", default_value_t = 0)]
    pub rate_limit_per_ip: u32,

    /// Report requests one client address may send at once before --rate-limit-per-ip paces
    /// it (the bucket's size; it refills at that rate). Unset: the same as --rate-limit-per-ip.
    #[arg(long, env = "SPARTAKUS_RATE_LIMIT_PER_IP_BURST",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_per_ip_burst: Option<u32>,

    /// Reports per minute allowed for one clusterID, sustained; 0 turns the limit off.
    #[arg(long, env = "SPARTAKUS_RATE_LIMIT_PER_CLUSTER", default_value_t = 0)]
    pub rate_limit_per_cluster: u32,

    /// Reports one clusterID may send at once before --rate-limit-per-cluster paces it. Unset:
    /// the same as --rate-limit-per-cluster.
    #[arg(long, env = "SPARTAKUS_RATE_LIMIT_PER_CLUSTER_BURST",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_per_cluster_burst: Option<u32>,

    /// Take the client address for rate limiting from the last X-Forwarded-For address, the
    /// one the proxy in front appended, instead of the TCP peer. Only behind a proxy that
    /// appends or sets it (ingress-nginx does); the addresses before it are the client's to
    /// choose and are never used.
    #[arg(long, env = "SPARTAKUS_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Time a client has to send a request head (request line and headers), from connecting
    /// for its first request and from the first byte of each later one; then the connection
    /// is closed.
    #[arg(long, env = "SPARTAKUS_HEADER_TIMEOUT", default_value = "10s",
          value_parser = parse_timeout)]
    pub header_timeout: Duration,

    /// How long a kept-alive connection may wait for its next request before it is closed.
    /// Keep it above the idle timeout of the proxy in front (ingress-nginx: 60s), so that the
    /// proxy never sends a request on a connection the gateway is closing.
    #[arg(long, env = "SPARTAKUS_IDLE_TIMEOUT", default_value = "75s",
          value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// Most connections served at once. At the cap a new connection makes room: the one that
    /// has waited longest for a request head is closed (or else the one idle longest); when
    /// every connection is handling a request, new ones wait until one finishes.
    #[arg(long, env = "SPARTAKUS_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// After SIGTERM/SIGINT, how long requests in flight have to finish before the gateway exits.
    #[arg(long, env = "SPARTAKUS_SHUTDOWN_TIMEOUT", default_value = "20s",
          value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format: `json` for clusters, `pretty` for a terminal. Filter with RUST_LOG.
    #[arg(long, env = "SPARTAKUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Demos only, never on a public gateway: date a report marked spartakus.dev/synthetic=true
    /// by its own `timestamp` instead of the time it arrived (at most 120 days back, never
    /// later than now), so a demo population can have a history. Statistics leave synthetic
    /// reports out unless asked to count them.
    #[arg(long, env = "SPARTAKUS_BACKDATE_SYNTHETIC", default_value_t = false)]
    pub backdate_synthetic: bool,

    /// File holding the collector's node-ID key (e.g. a mounted Secret): at least 32 bytes,
    /// e.g. from `openssl rand -hex 32`; trailing whitespace is ignored. Every node ID a client
    /// sends is stored as HMAC-SHA256 under this key, so that no stored ID is a hash anyone
    /// could recompute from a node's details. Required. Give every replica the same key and
    /// keep it: a new key gives every node a new ID from then on. Never logged.
    #[arg(long = "node-id-key-file", id = "node_id_key_file", env = "SPARTAKUS_NODE_ID_KEY_FILE",
          value_name = "PATH", value_parser = read_node_id_key)]
    pub node_id_key: Option<NodeIdKey>,
}

impl Config {
    /// Checks what each flag's own parser cannot: settings that are valid alone but that
    /// JetStream would refuse together, or that would leave a stream unable to hold its
    /// largest message. A stream whose duplicate window outlasts its age limit is refused by
    /// the server, which would leave the gateway unready for ever; a reports budget below
    /// --max-decoded-bytes would refuse the largest reports for ever. This says so at start
    /// instead (exit 64).
    pub fn check(&self) -> Result<(), String> {
        let one_report = crate::body::most_reserved_by_one_report(self.max_decoded_bytes);
        if self.memory_budget < one_report {
            return Err(format!(
                "--memory-budget ({}) must be at least {one_report} bytes: the most one report of --max-decoded-bytes ({}) holds at once (five times its size), or the largest reports are refused for ever",
                self.memory_budget, self.max_decoded_bytes
            ));
        }
        if self.node_id_key.is_none() {
            return Err(MISSING_NODE_ID_KEY.to_owned());
        }
        if !self.stream_max_age.is_zero() && self.duplicate_window > self.stream_max_age {
            return Err(format!(
                "--duplicate-window ({}) must not be longer than --stream-max-age ({}): JetStream refuses such a stream",
                humantime::format_duration(self.duplicate_window),
                humantime::format_duration(self.stream_max_age)
            ));
        }
        if self.stream_max_bytes < self.max_decoded_bytes {
            return Err(format!(
                "--stream-max-bytes ({}) must be at least --max-decoded-bytes ({}): the largest report would never fit in the reports stream",
                self.stream_max_bytes, self.max_decoded_bytes
            ));
        }
        if self.erasures_max_bytes < MIN_ERASURES_BYTES {
            return Err(format!(
                "--erasures-max-bytes ({}) must be at least {MIN_ERASURES_BYTES} bytes (room for a few hundred erasure requests)",
                self.erasures_max_bytes
            ));
        }
        Ok(())
    }

    /// The flags' defaults with another NATS URL: what tests and the benchmark start from.
    pub fn for_nats(nats_url: impl Into<String>) -> Self {
        // Parsing an empty command line only fails if a default is malformed, which the unit
        // test `defaults_parse` rules out.
        let mut config = Config::try_parse_from(["gateway"]).unwrap_or_else(|e| panic!("{e}"));
        config.nats_url = nats_url.into();
        config.node_id_key = Some(test_node_id_key());
        config
    }

    /// `--rate-limit-per-ip` and its burst as a quota, `None` when off.
    pub(crate) fn ip_quota(&self) -> Option<Quota> {
        limit::per_minute(self.rate_limit_per_ip, self.rate_limit_per_ip_burst)
    }

    /// `--rate-limit-per-cluster` and its burst as a quota, `None` when off.
    pub(crate) fn cluster_quota(&self) -> Option<Quota> {
        limit::per_minute(
            self.rate_limit_per_cluster,
            self.rate_limit_per_cluster_burst,
        )
    }
}

/// The smallest erasures budget --erasures-max-bytes may set.
const MIN_ERASURES_BYTES: u64 = 64 << 10;

/// What [`Config::check`] says when no node-ID key is given.
pub(crate) const MISSING_NODE_ID_KEY: &str = "--node-id-key-file (SPARTAKUS_NODE_ID_KEY_FILE) is required: a file of at least 32 secret bytes, the same for every replica (e.g. `openssl rand -hex 32 > node-id.key`)";

/// Reads `--node-id-key-file`; the error names the file's problem, never its content.
fn read_node_id_key(path: &str) -> Result<NodeIdKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    NodeIdKey::from_secret(&bytes).map_err(|e| format!("{path}: {e}"))
}

/// The node-ID key of [`Config::for_nats`]: a constant, so that tests can compute the IDs a
/// gateway stores. Only for tests and benchmarks; a real gateway reads its key from a file.
pub fn test_node_id_key() -> NodeIdKey {
    // 32 bytes, so `from_secret` cannot refuse it.
    NodeIdKey::from_secret(b"spartakus gateway tests: not a secret")
        .unwrap_or_else(|_| unreachable!())
}

/// Parses a timeout such as `10s`; zero would close every connection at once.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_node_id_key_is_required_read_from_its_file_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("gateway-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, short) = (dir.join("good"), dir.join("short"));
        std::fs::write(&good, "0123456789abcdef0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::write(&short, "0123456789\n").unwrap();
        let parse = |args: &[&str]| Config::try_parse_from([&["gateway"], args].concat());

        let missing = parse(&[]).unwrap();
        assert_eq!(missing.check(), Err(MISSING_NODE_ID_KEY.to_owned()));
        assert!(MISSING_NODE_ID_KEY.starts_with("--node-id-key-file"));

        let config = parse(&["--node-id-key-file", good.to_str().unwrap()]).unwrap();
        assert_eq!(config.check(), Ok(()));
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        let from_file = config.node_id_key.unwrap();
        let want =
            NodeIdKey::from_secret(b"0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(from_file.rekey("c", "n"), want.rekey("c", "n"));

        for (path, says) in [
            (short, "10 bytes; at least 32"),
            (dir.join("absent"), "cannot read"),
        ] {
            let err = parse(&["--node-id-key-file", path.to_str().unwrap()])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--node-id-key-file") && err.contains(says),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn defaults_parse() {
        let config = Config::for_nats("nats://127.0.0.1:1");
        assert_eq!(config.max_body_bytes, 4 << 20);
        assert_eq!(config.max_decoded_bytes, 16 << 20);
        assert_eq!(config.duplicate_window, Duration::from_secs(7200));
        assert_eq!(config.stream_max_age, Duration::ZERO, "kept until stored");
        assert_eq!(config.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(config.stream_max_bytes, 6 << 30);
        assert_eq!(config.erasures_max_bytes, 256 << 20);
        assert_eq!(config.stream_full_percent, 95);
        assert_eq!(config.ip_quota(), None);
        assert_eq!(config.cluster_quota(), None);
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(75));
        assert_eq!(config.max_connections, 1024);
        assert_eq!(config.min_body_rate, 1024);
        assert_eq!(config.max_uploads_per_ip, 16);
        assert_eq!(config.memory_budget, 96 << 20);
        assert!(
            !config.backdate_synthetic,
            "backdating is off unless asked for"
        );
    }

    /// The flags `args` parsed, with the test node-ID key that `check` requires.
    fn configured(args: &[&str]) -> Config {
        let mut all = vec!["gateway"];
        all.extend_from_slice(args);
        let mut config = Config::try_parse_from(all).unwrap();
        config.node_id_key = Some(test_node_id_key());
        config
    }

    #[test]
    fn a_duplicate_window_longer_than_the_age_limit_is_refused_naming_both_flags() {
        let parse = configured;
        assert_eq!(Config::for_nats("nats://127.0.0.1:1").check(), Ok(()));
        let e = parse(&["--stream-max-age", "1h", "--duplicate-window", "2h"])
            .check()
            .unwrap_err();
        assert!(
            e.contains("--duplicate-window (2h)") && e.contains("--stream-max-age (1h)"),
            "{e}"
        );
        assert_eq!(
            parse(&["--stream-max-age", "2h", "--duplicate-window", "2h"]).check(),
            Ok(())
        );
        // 0 is no age limit.
        assert_eq!(
            parse(&["--stream-max-age", "0s", "--duplicate-window", "2h"]).check(),
            Ok(())
        );
    }

    #[test]
    fn stream_budgets_that_cannot_hold_their_largest_message_are_refused_naming_the_flags() {
        let check = |args: &[&str]| configured(args).check();
        let e = check(&["--stream-max-bytes", "8MiB"]).unwrap_err();
        assert!(
            e.contains("--stream-max-bytes (8388608)")
                && e.contains("--max-decoded-bytes (16777216)"),
            "{e}"
        );
        assert_eq!(
            check(&["--stream-max-bytes", "1MiB", "--max-decoded-bytes", "1MiB"]),
            Ok(())
        );
        let e = check(&["--erasures-max-bytes", "4KiB"]).unwrap_err();
        assert!(e.contains("--erasures-max-bytes (4096)"), "{e}");
        assert_eq!(check(&["--erasures-max-bytes", "64KiB"]), Ok(()));
        for bad in ["--stream-full-percent=0", "--stream-full-percent=101"] {
            let e = Config::try_parse_from(["gateway", bad]).unwrap_err();
            assert!(e.to_string().contains("--stream-full-percent"), "{e}");
        }
    }

    #[test]
    fn a_memory_budget_too_small_for_the_largest_report_is_refused_naming_both_flags() {
        let check = |args: &[&str]| configured(args).check();
        let e = check(&["--memory-budget", "64MiB"]).unwrap_err();
        assert!(
            e.contains("--memory-budget (67108864)")
                && e.contains("--max-decoded-bytes (16777216)"),
            "{e}"
        );
        assert_eq!(
            check(&["--memory-budget", "64MiB", "--max-decoded-bytes", "8MiB"]),
            Ok(())
        );
    }

    #[test]
    fn a_burst_sizes_the_bucket_and_the_rate_refills_it() {
        let config = Config::try_parse_from([
            "gateway",
            "--rate-limit-per-ip=5",
            "--rate-limit-per-ip-burst=1000",
            "--rate-limit-per-cluster=2",
        ])
        .unwrap();
        let ip = config.ip_quota().unwrap();
        assert_eq!(ip.burst_size().get(), 1000);
        assert_eq!(ip.replenish_interval(), Duration::from_secs(12));
        let cluster = config.cluster_quota().unwrap();
        assert_eq!(cluster.burst_size().get(), 2);
        assert_eq!(cluster.replenish_interval(), Duration::from_secs(30));
    }

    #[test]
    fn zero_timeouts_connections_and_bursts_are_refused() {
        for flag in [
            "--header-timeout=0s",
            "--idle-timeout=0s",
            "--max-connections=0",
            "--rate-limit-per-ip-burst=0",
            "--header-timeout=soon",
        ] {
            let err = Config::try_parse_from(["gateway", flag]).unwrap_err();
            let name = flag.split('=').next().unwrap();
            assert!(err.to_string().contains(name), "{flag}: {err}");
        }
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
