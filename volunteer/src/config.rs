//! Command-line flags and environment variables, parsed once into typed values.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use plumbing::log::LogFormat;

use crate::anonymize::Key;
use crate::omit::Omit;

/// Shortest accepted `--key-file` content.
pub(crate) const MIN_KEY_LEN: usize = 16;
/// The status ConfigMap's default name (the shipped Role grants exactly this one).
pub(crate) const STATUS_CONFIGMAP: &str = "spartakus-status";

/// Collects anonymous statistics about this Kubernetes cluster and sends them to a
/// Spartakus collector. Run with `--dry-run` to see exactly what would be sent, `--diff` to
/// see what changed since the last report, `volunteer status` for what was sent and when.
#[derive(Debug, Clone, Parser)]
#[command(name = "volunteer", version, disable_help_subcommand = true)]
pub struct Config {
    /// Without a command, the volunteer collects and sends reports.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Collector base URL (reports are POSTed to URL/api/v1), or `stdout` to print each
    /// report instead of sending it. Required except for `volunteer status`.
    #[arg(
        long,
        visible_alias = "database",
        env = "SPARTAKUS_GATEWAY",
        global = true
    )]
    pub(crate) gateway: Option<String>,

    /// Time between reports; `0` sends one report and exits (for a CronJob), with a
    /// non-zero exit code if that report could not be delivered.
    #[arg(long, env = "SPARTAKUS_PERIOD", default_value = "24h", value_parser = humantime::parse_duration)]
    pub(crate) period: Duration,

    /// Upper bound of a random delay added before each report, so that clusters do not all
    /// report at once. Default: 10% of the period, or no delay with `--period 0` (the
    /// CronJob's schedule already chooses the time).
    #[arg(long, env = "SPARTAKUS_JITTER", value_parser = humantime::parse_duration)]
    pub(crate) jitter: Option<Duration>,

    /// Extra key/value pairs to send: a JSON file of string to string, or a directory
    /// whose every file not starting with a dot is one pair (file name = key).
    #[arg(long, env = "SPARTAKUS_EXTENSIONS")]
    pub(crate) extensions: Option<PathBuf>,

    /// Cluster ID to report instead of the default, a keyed hash of the collector's host
    /// that is stable for this cluster and different for each collector.
    #[arg(long, env = "SPARTAKUS_CLUSTER_ID", global = true)]
    pub(crate) cluster_id: Option<String>,

    /// Leave a field out of the report (repeatable, or comma-separated in the variable):
    /// nodes, nodes.osImage, nodes.kernelVersion, nodes.containerRuntimeVersion,
    /// nodes.kubeletVersion, nodes.operatingSystem, nodes.architecture,
    /// nodes.cloudProvider, nodes.capacity, masterVersion, namespaces, workloads, ages,
    /// extensions.
    #[arg(long = "omit", env = "SPARTAKUS_OMIT", value_delimiter = ',', value_parser = Omit::parse)]
    pub(crate) omit: Vec<Omit>,

    /// The report-content version the operator accepts (`volunteer consent` lists what each
    /// newer one adds): reports carry only the fields of this version and the ones before it,
    /// and the status, an Event and `volunteer status` name what was left out. 1 is what the
    /// original volunteer sent.
    #[arg(long, env = "SPARTAKUS_CONSENT", default_value_t = 1, global = true)]
    pub(crate) consent: u32,

    /// Print the exact (uncompressed) body that would be sent, send nothing, and exit.
    #[arg(long, env = "SPARTAKUS_DRY_RUN")]
    pub(crate) dry_run: bool,

    /// Print what the next report would change relative to the last one delivered (from the
    /// status ConfigMap), as field paths with old and new values; send nothing, and exit.
    #[arg(long, env = "SPARTAKUS_DIFF", conflicts_with = "dry_run")]
    pub(crate) diff: bool,

    /// Kubeconfig file. Default: in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "SPARTAKUS_KUBECONFIG", global = true)]
    pub(crate) kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current one.
    #[arg(long, env = "SPARTAKUS_CONTEXT", global = true)]
    pub(crate) context: Option<String>,

    /// File holding the anonymization key (e.g. a mounted Secret; at least 16 bytes).
    /// Default: a key derived from the kube-system namespace's UID. Never sent or logged.
    #[arg(long, env = "SPARTAKUS_KEY_FILE", global = true)]
    pub(crate) key_file: Option<PathBuf>,

    /// ConfigMap in which the volunteer records each report's outcome, digest and body (the
    /// shipped Role may update only `spartakus-status`; change both together).
    #[arg(long, env = "SPARTAKUS_STATUS_CONFIGMAP", default_value = STATUS_CONFIGMAP, global = true)]
    pub(crate) status_configmap: String,

    /// Namespace of the status ConfigMap. Default: the pod's own namespace in a cluster,
    /// else the kubeconfig context's namespace.
    #[arg(long, env = "SPARTAKUS_STATUS_NAMESPACE", global = true)]
    pub(crate) status_namespace: Option<String>,

    /// Timeout of each request, to the Kubernetes API and to the collector.
    #[arg(long, env = "SPARTAKUS_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub(crate) request_timeout: Duration,

    /// Total time to keep retrying one report (or erasure request) before giving up on it.
    #[arg(long, env = "SPARTAKUS_SEND_DEADLINE", default_value = "10m", value_parser = humantime::parse_duration, global = true)]
    pub(crate) send_deadline: Duration,

    /// Log format: `pretty` for people, `json` for log collectors (one object per line).
    /// Logs go to stderr; stdout carries reports in `--dry-run` and `stdout` modes.
    #[arg(long, env = "SPARTAKUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
}

/// What the volunteer does instead of reporting.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub(crate) enum Command {
    /// Print the last report's status from the status ConfigMap (when, outcome, HTTP status,
    /// report ID, digest, collector, next report, the cluster's version skew); exit 1 if there
    /// is none yet.
    Status {
        /// Also say where this cluster stands among the clusters of the collector's published
        /// statistics at URL (the folder holding latest.json, as the dashboard reads it). Sends
        /// two plain GETs of public files, URL/latest.json and the snapshot it names: no
        /// identifier, no cookie, no query string, no cluster data, User-Agent
        /// "spartakus-volunteer"; the comparison is made here. Each request ends within
        /// --request-timeout.
        #[arg(long, value_name = "URL", env = "SPARTAKUS_COMPARE")]
        compare: Option<String>,
    },
    /// Ask the collector to erase every report it received from this cluster (sends the
    /// cluster ID and the erasure secret, once, to URL/api/v2/erasure). Stop the volunteer
    /// too, or it keeps reporting.
    Forget,
    /// Print exactly which fields each report-content version after the accepted one
    /// (`--consent`) adds, and how to accept them; needs no cluster.
    Consent,
}

/// Where reports go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Print each report on standard output.
    Stdout,
    /// POST to this collector base URL.
    Gateway(reqwest::Url),
}

impl Destination {
    /// The host the default cluster ID is derived from: the collector's host name, or
    /// `stdout`.
    pub(crate) fn host(&self) -> String {
        match self {
            Destination::Stdout => "stdout".into(),
            Destination::Gateway(url) => url.host_str().unwrap_or_default().to_ascii_lowercase(),
        }
    }
}

/// The configuration after validation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where reports go.
    pub(crate) destination: Destination,
    /// Time between reports; zero for one report.
    pub(crate) period: Duration,
    /// Upper bound of the random delay before each report.
    pub(crate) jitter: Duration,
    /// Extensions file or directory.
    pub(crate) extensions: Option<PathBuf>,
    /// Cluster ID override.
    pub(crate) cluster_id: Option<String>,
    /// Omitted fields.
    pub(crate) omit: BTreeSet<Omit>,
    /// The report-content version accepted (`--consent`).
    pub(crate) consent: u32,
    /// Print instead of sending, once.
    pub(crate) dry_run: bool,
    /// Print the difference to the last delivered report instead of sending, once.
    pub(crate) diff: bool,
    /// The key from `--key-file`; `None` derives it from kube-system.
    pub(crate) key: Option<Key>,
    /// How to reach the Kubernetes API.
    pub(crate) kube: KubeSettings,
    /// Where the status is recorded.
    pub(crate) status: StatusTarget,
    /// Per-request timeout (also of the collector's requests).
    pub(crate) request_timeout: Duration,
    /// Retry budget per report.
    pub(crate) send_deadline: Duration,
}

/// How to reach the Kubernetes API: all that `volunteer status` needs.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Kubeconfig file.
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    pub(crate) context: Option<String>,
    /// Per-request timeout.
    pub(crate) request_timeout: Duration,
}

/// The status ConfigMap: its name, and its namespace if not the client's default one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTarget {
    /// The ConfigMap's name.
    pub(crate) name: String,
    /// Its namespace; `None`: the pod's own, or the kubeconfig context's.
    pub(crate) namespace: Option<String>,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The gateway is neither `stdout` nor an http(s) URL with a host.
    #[error("--gateway {0:?}: expected an http:// or https:// URL, or \"stdout\"")]
    Gateway(String),
    /// The cluster ID override breaks the report's rule for cluster IDs.
    #[error("--cluster-id {value:?}: {rule}")]
    ClusterId {
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The jitter is not smaller than the period.
    #[error("--jitter {jitter:?} must be smaller than --period {period:?}")]
    Jitter {
        /// The jitter.
        jitter: Duration,
        /// The period.
        period: Duration,
    },
    /// The key file is unreadable or too short (the reason never includes its content).
    #[error("--key-file {}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The extensions cannot be read or break the report's rules.
    #[error("--extensions {}: {source}", path.display())]
    Extensions {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        source: crate::extensions::ExtensionsError,
    },
    /// A `--consent` version this volunteer does not know.
    #[error(
        "--consent {0}: not a report-content version this volunteer knows (1 to {current}; `volunteer consent` lists what each adds)",
        current = report::consent::CURRENT
    )]
    Consent(u32),
    /// A `--compare` URL that is not a published folder's.
    #[error("--compare {0:?}: {1}")]
    Compare(String, &'static str),
    /// A timeout of zero.
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    /// No `--gateway` where one is needed.
    #[error(
        "--gateway (or SPARTAKUS_GATEWAY) is required: the collector's base URL, or \"stdout\""
    )]
    NoGateway,
    /// `--gateway stdout` for `volunteer forget`.
    #[error("--gateway stdout: `volunteer forget` needs the collector's URL")]
    ForgetStdout,
    /// A status ConfigMap or namespace name Kubernetes would refuse.
    #[error("--{flag} {value:?}: {rule}")]
    StatusName {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

const RULE_DNS_SUBDOMAIN: &str = "not a Kubernetes object name (at most 253 characters of [a-z0-9.-], starting and ending with a letter or digit)";
const RULE_DNS_LABEL: &str = "not a Kubernetes namespace name (at most 63 characters of [a-z0-9-], starting and ending with a letter or digit)";

/// Whether `s` is an RFC 1123 subdomain (`dots`) or label (no dots) of at most `max` bytes.
fn is_dns_name(s: &str, max: usize, dots: bool) -> bool {
    let ok_end = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    s.len() <= max
        && ok_end(s.as_bytes().first())
        && ok_end(s.as_bytes().last())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
        })
}

/// What the process is to do, with its validated configuration.
#[derive(Debug, Clone)]
pub enum Task {
    /// Report (or `--dry-run`, `--diff`).
    Report(Box<Settings>),
    /// `volunteer forget`.
    Forget(Box<Settings>),
    /// `volunteer status`: only the API and the ConfigMap are needed, and with `--compare`
    /// the published statistics.
    Status(
        KubeSettings,
        StatusTarget,
        Option<Box<crate::compare::Target>>,
    ),
    /// `volunteer consent`: the version accepted.
    Consent(u32),
}

impl Config {
    /// The task the flags ask for, checked.
    pub fn task(&self) -> Result<Task, ConfigError> {
        Ok(match &self.command {
            Some(Command::Status { compare }) => {
                let kube = self.kube()?;
                let compare = match compare {
                    None => None,
                    Some(url) => Some(Box::new(crate::compare::Target {
                        base: crate::compare::parse_url(url).ok_or_else(|| {
                            ConfigError::Compare(url.clone(), crate::compare::RULE_URL)
                        })?,
                        timeout: kube.request_timeout,
                    })),
                };
                Task::Status(kube, self.status_target()?, compare)
            }
            Some(Command::Forget) => Task::Forget(Box::new(self.settings()?)),
            Some(Command::Consent) => Task::Consent(self.consent()?),
            None => Task::Report(Box::new(self.settings()?)),
        })
    }

    /// The accepted report-content version, one this volunteer knows.
    pub(crate) fn consent(&self) -> Result<u32, ConfigError> {
        if (1..=report::consent::CURRENT).contains(&self.consent) {
            Ok(self.consent)
        } else {
            Err(ConfigError::Consent(self.consent))
        }
    }

    /// How to reach the Kubernetes API.
    pub(crate) fn kube(&self) -> Result<KubeSettings, ConfigError> {
        if self.request_timeout.is_zero() {
            return Err(ConfigError::Zero("request-timeout"));
        }
        Ok(KubeSettings {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            request_timeout: self.request_timeout,
        })
    }

    /// The status ConfigMap, its names checked by Kubernetes' rules.
    pub(crate) fn status_target(&self) -> Result<StatusTarget, ConfigError> {
        if !is_dns_name(&self.status_configmap, 253, true) {
            return Err(ConfigError::StatusName {
                flag: "status-configmap",
                value: self.status_configmap.clone(),
                rule: RULE_DNS_SUBDOMAIN,
            });
        }
        if let Some(ns) = &self.status_namespace
            && !is_dns_name(ns, 63, false)
        {
            return Err(ConfigError::StatusName {
                flag: "status-namespace",
                value: ns.clone(),
                rule: RULE_DNS_LABEL,
            });
        }
        Ok(StatusTarget {
            name: self.status_configmap.clone(),
            namespace: self.status_namespace.clone(),
        })
    }

    /// Checks the flags and turns them into [`Settings`] (for reporting, `--dry-run`,
    /// `--diff` and `forget`; `status` needs only [`Config::kube`] and
    /// [`Config::status_target`]).
    pub(crate) fn settings(&self) -> Result<Settings, ConfigError> {
        let gateway = self.gateway.as_deref().ok_or(ConfigError::NoGateway)?;
        let destination = if gateway == "stdout" {
            if self.command == Some(Command::Forget) {
                return Err(ConfigError::ForgetStdout);
            }
            Destination::Stdout
        } else {
            let url =
                reqwest::Url::parse(gateway).map_err(|_| ConfigError::Gateway(gateway.into()))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::Gateway(gateway.into()));
            }
            Destination::Gateway(url)
        };
        if let Some(id) = &self.cluster_id {
            report::check_cluster_id(id).map_err(|rule| ConfigError::ClusterId {
                value: id.clone(),
                rule,
            })?;
        }
        let jitter = match self.jitter {
            Some(j) => j,
            None => self.period / 10,
        };
        if !self.period.is_zero() && jitter >= self.period {
            return Err(ConfigError::Jitter {
                jitter,
                period: self.period,
            });
        }
        let consent = self.consent()?;
        let kube = self.kube()?;
        let status = self.status_target()?;
        if self.send_deadline.is_zero() {
            return Err(ConfigError::Zero("send-deadline"));
        }
        let key = match &self.key_file {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| ConfigError::KeyFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let secret = bytes.trim_ascii();
                if secret.len() < MIN_KEY_LEN {
                    return Err(ConfigError::KeyFile {
                        path: path.clone(),
                        reason: format!("shorter than {MIN_KEY_LEN} bytes"),
                    });
                }
                Some(Key::from_secret(secret))
            }
        };
        if let Some(path) = &self.extensions {
            crate::extensions::read(path).map_err(|source| ConfigError::Extensions {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Settings {
            destination,
            period: self.period,
            jitter,
            extensions: self.extensions.clone(),
            cluster_id: self.cluster_id.clone(),
            omit: self.omit.iter().copied().collect(),
            consent,
            dry_run: self.dry_run,
            diff: self.diff,
            key,
            kube,
            status,
            request_timeout: self.request_timeout,
            send_deadline: self.send_deadline,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("volunteer").chain(args.iter().copied()))
    }

    #[test]
    fn the_original_database_flag_still_works() {
        let c = parse(&["--database", "https://spartakus.k8s.io"]).unwrap();
        assert_eq!(c.settings().unwrap().destination.host(), "spartakus.k8s.io");
    }

    #[test]
    fn unknown_omit_fields_are_rejected_with_the_list_of_known_ones() {
        let err = parse(&["--gateway", "stdout", "--omit", "nodes.name"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("nodes.name"), "{text}");
        assert!(text.contains("nodes.kernelVersion"), "{text}");
    }

    #[test]
    fn jitter_defaults_to_a_tenth_of_the_period_and_to_nothing_for_one_shot() {
        let c = parse(&["--gateway", "stdout", "--period", "24h"]).unwrap();
        assert_eq!(c.settings().unwrap().jitter, Duration::from_secs(8640));
        let c = parse(&["--gateway", "stdout", "--period", "0"]).unwrap();
        assert_eq!(c.settings().unwrap().jitter, Duration::ZERO);
    }

    #[test]
    fn bad_gateways_and_cluster_ids_are_config_errors() {
        for g in ["ftp://x", "not a url", "https://"] {
            let c = parse(&["--gateway", g]).unwrap();
            assert!(c.settings().is_err(), "{g}");
        }
        let c = parse(&["--gateway", "stdout", "--cluster-id", "a b"]).unwrap();
        assert!(matches!(c.settings(), Err(ConfigError::ClusterId { .. })));
        let c = parse(&["--gateway", "stdout", "--period", "1h", "--jitter", "2h"]).unwrap();
        assert!(matches!(c.settings(), Err(ConfigError::Jitter { .. })));
    }

    #[test]
    fn a_cluster_id_the_collector_would_refuse_is_a_config_error_naming_the_rule() {
        let c = parse(&["--gateway", "stdout", "--cluster-id", "a@b"]).unwrap();
        assert_eq!(
            c.settings().unwrap_err().to_string(),
            r#"--cluster-id "a@b": not 1-128 characters of [A-Za-z0-9._:-]"#
        );
        let c = parse(&["--gateway", "stdout", "--cluster-id", "prod.eu-1"]).unwrap();
        assert_eq!(
            c.settings().unwrap().cluster_id.as_deref(),
            Some("prod.eu-1")
        );
    }

    #[test]
    fn todays_flags_still_run_the_reporter_and_commands_take_the_shared_flags_after_them() {
        let c = parse(&["--gateway", "https://c.example.org", "--period", "1h"]).unwrap();
        assert_eq!(c.command, None);
        assert_eq!(c.settings().unwrap().period, Duration::from_secs(3600));
        let c = parse(&[
            "status",
            "--kubeconfig",
            "/k",
            "--status-namespace",
            "spartakus",
        ])
        .unwrap();
        assert_eq!(c.command, Some(Command::Status { compare: None }));
        assert_eq!(
            c.status_target().unwrap(),
            StatusTarget {
                name: STATUS_CONFIGMAP.into(),
                namespace: Some("spartakus".into())
            }
        );
        assert_eq!(c.kube().unwrap().kubeconfig, Some(PathBuf::from("/k")));
        let c = parse(&[
            "forget",
            "--gateway",
            "https://c.example.org",
            "--cluster-id",
            "x",
        ])
        .unwrap();
        assert_eq!(c.command, Some(Command::Forget));
        assert_eq!(c.settings().unwrap().cluster_id.as_deref(), Some("x"));
    }

    #[test]
    fn a_missing_gateway_is_a_config_error_except_for_status() {
        let c = parse(&[]).unwrap();
        assert!(matches!(c.settings(), Err(ConfigError::NoGateway)));
        let c = parse(&["forget", "--gateway", "stdout"]).unwrap();
        assert!(matches!(c.settings(), Err(ConfigError::ForgetStdout)));
        let c = parse(&["status"]).unwrap();
        assert!(c.status_target().is_ok() && c.kube().is_ok());
    }

    #[test]
    fn status_names_follow_kubernetes_rules() {
        for bad in ["", "Status", "-x", "x-", "a_b", &"a".repeat(254)] {
            let flag = format!("--status-configmap={bad}");
            let c = parse(&["--gateway", "stdout", &flag]).unwrap();
            assert!(c.settings().is_err(), "{bad:?}");
        }
        for bad in ["a.b", "Spartakus", &"a".repeat(64)] {
            let c = parse(&["status", "--status-namespace", bad]).unwrap();
            assert!(c.status_target().is_err(), "{bad:?}");
        }
        let c = parse(&["status", "--status-configmap", "my.status-1"]).unwrap();
        assert_eq!(c.status_target().unwrap().name, "my.status-1");
    }

    #[test]
    fn consent_defaults_to_version_one_and_refuses_a_version_it_does_not_know() {
        let c = parse(&["--gateway", "stdout"]).unwrap();
        assert_eq!(c.settings().unwrap().consent, 1);
        let current = report::consent::CURRENT.to_string();
        let c = parse(&["--gateway", "stdout", "--consent", &current]).unwrap();
        assert_eq!(c.settings().unwrap().consent, report::consent::CURRENT);
        for bad in ["0", &(report::consent::CURRENT + 1).to_string()] {
            let c = parse(&["--gateway", "stdout", "--consent", bad]).unwrap();
            assert_eq!(
                c.settings().unwrap_err().to_string(),
                format!(
                    "--consent {bad}: not a report-content version this volunteer knows (1 to {current}; `volunteer consent` lists what each adds)"
                )
            );
        }
        let c = parse(&["consent", "--consent", "1"]).unwrap();
        assert!(matches!(c.task(), Ok(Task::Consent(1))));
        let c = parse(&["consent", "--consent", "9"]).unwrap();
        assert!(matches!(c.task(), Err(ConfigError::Consent(9))));
    }

    #[test]
    fn a_compare_url_with_a_query_or_credentials_is_refused_naming_the_flag_and_the_rule() {
        let c = parse(&["status", "--compare", "https://s.example/stats?cluster=x"]).unwrap();
        let err = c.task().unwrap_err().to_string();
        assert!(
            err.starts_with("--compare \"https://s.example/stats?cluster=x\": expected the http:// or https:// URL"),
            "{err}"
        );
        let c = parse(&[
            "status",
            "--compare",
            "https://s.example/stats",
            "--request-timeout",
            "7s",
        ])
        .unwrap();
        match c.task().unwrap() {
            Task::Status(_, _, Some(t)) => {
                assert_eq!(t.base.as_str(), "https://s.example/stats/");
                assert_eq!(t.timeout, Duration::from_secs(7));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn diff_and_dry_run_exclude_each_other() {
        assert!(parse(&["--gateway", "stdout", "--diff", "--dry-run"]).is_err());
        assert!(parse(&["--gateway", "stdout", "--diff"]).unwrap().diff);
    }

    #[test]
    fn too_many_extensions_are_a_config_error_naming_the_flag_and_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=report::MAX_EXTENSIONS {
            std::fs::write(dir.path().join(format!("k{i}")), "v").unwrap();
        }
        let path = dir.path().to_str().unwrap();
        let c = parse(&["--gateway", "stdout", "--extensions", path]).unwrap();
        assert_eq!(
            c.settings().unwrap_err().to_string(),
            format!("--extensions {path}: 65 pairs: more than 64 extensions")
        );
    }
}
