//! The volunteer's life: build clients, then report once or every period (plus a random
//! jitter) until cancelled, recording each report's status; or, once, print a report
//! (`--dry-run`), its difference to the last one delivered (`--diff`), or the status
//! (`volunteer status`).

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use report::ReportId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::anonymize::{Key, Options, anonymize};
use crate::collect::{self, CollectError, Plan};
use crate::config::{Destination, KubeSettings, Settings, StatusTarget, Task};
use crate::omit::Omit;
use crate::send::{self, Policy, SendError};
use crate::status::{self, Attempt, StatusError, Store};

/// Why the volunteer stopped, or why a one-shot report failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No Kubernetes client could be configured.
    #[error("kubernetes client configuration: {0}")]
    KubeConfig(String),
    /// The cluster could not be read at all.
    #[error(transparent)]
    Collect(#[from] CollectError),
    /// The report this volunteer made breaks the schema: a bug, never sent.
    #[error("the report is invalid (a bug in the volunteer): {0}")]
    Invalid(String),
    /// The validated report could not be encoded as JSON: a bug, never sent.
    #[error("encoding the report as JSON (a bug in the volunteer)")]
    Encode(#[source] serde_json::Error),
    /// The report was not delivered.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Writing the report to standard output failed.
    #[error("writing the report to stdout")]
    Stdout(#[source] std::io::Error),
    /// The signal handlers could not be installed.
    #[error("listening for SIGTERM and SIGINT")]
    Signals(#[source] std::io::Error),
    /// The status could not be read (`volunteer status`, `--diff`).
    #[error(transparent)]
    Status(#[from] StatusError),
    /// `--diff` could not compare.
    #[error(transparent)]
    Diff(#[from] crate::diff::DiffError),
    /// `volunteer status --compare` could not compare.
    #[error(transparent)]
    Compare(#[from] crate::compare::CompareError),
    /// `volunteer status` found no status.
    #[error(
        "no status yet: ConfigMap {0} does not exist (the volunteer writes it after each report it sends; check --status-namespace, and that the volunteer has run)"
    )]
    NoStatus(String),
}

/// The volunteer's version as reported, e.g. `v0.1.0`.
pub(crate) fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// A Kubernetes client: in-cluster config, else the kubeconfig (explicit file or the usual
/// resolution), with the request timeout applied.
pub(crate) async fn kube_client(settings: &KubeSettings) -> Result<kube::Client, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::KubeConfig(e.to_string());
    let options = KubeConfigOptions {
        context: settings.context.clone(),
        ..Default::default()
    };
    let mut config = match (&settings.kubeconfig, &settings.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(|e| err(&e))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| err(&e))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| err(&e))?,
        (None, None) => kube::Config::infer().await.map_err(|e| err(&e))?,
    };
    config.connect_timeout = Some(settings.request_timeout);
    config.read_timeout = Some(settings.request_timeout);
    config.write_timeout = Some(settings.request_timeout);
    kube::Client::try_from(config).map_err(|e| err(&e))
}

/// An HTTP client for the collector (rustls, request timeout).
pub(crate) fn http_client(settings: &Settings) -> Result<reqwest::Client, RunError> {
    reqwest::Client::builder()
        .user_agent(format!("spartakus-volunteer/{}", version()))
        .connect_timeout(settings.request_timeout)
        .timeout(settings.request_timeout)
        .build()
        .map_err(|e| RunError::Send(SendError::Transport(e)))
}

/// Carries out `task`: builds the clients it needs and runs it.
pub async fn start(task: Task) -> Result<(), RunError> {
    match task {
        Task::Status(kube, target, compare) => {
            let kube = kube_client(&kube).await?;
            print(&status(&kube, &target).await?)?;
            match compare {
                Some(compare) => print(
                    &crate::compare::compare(
                        &compare,
                        read(&kube, &target).await?.delivered_body(),
                    )
                    .await?,
                ),
                None => Ok(()),
            }
        }
        Task::Consent(accepted) => print(&crate::consent::explain(accepted)),
        Task::Forget(settings) => {
            let http = http_client(&settings)?;
            // With --key-file, the cluster need not be reachable.
            let key = match &settings.key {
                Some(key) => key.clone(),
                None => key(&settings, &kube_client(&settings.kube).await?).await?,
            };
            let forgotten = crate::forget::forget(&settings, &key, &http).await?;
            print(&crate::forget::explain(&forgotten))
        }
        Task::Report(settings) => {
            let kube = kube_client(&settings.kube).await?;
            let http = http_client(&settings)?;
            let shutdown = plumbing::signal::cancel_on_signals().map_err(RunError::Signals)?;
            run(*settings, kube, http, shutdown).await
        }
    }
}

/// Writes `text` to stdout; a closed stdout is an error, not a panic.
fn print(text: &str) -> Result<(), RunError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(RunError::Stdout)
}

/// The anonymization key: from `--key-file`, else derived from kube-system's UID.
pub(crate) async fn key(settings: &Settings, kube: &kube::Client) -> Result<Key, RunError> {
    Ok(match &settings.key {
        Some(key) => key.clone(),
        None => Key::from_kube_system_uid(&collect::kube_system_uid(kube).await?),
    })
}

/// The recorded status; an error if there is none.
async fn read(kube: &kube::Client, target: &StatusTarget) -> Result<status::Status, RunError> {
    let store = Store::new(kube, target);
    store
        .read()
        .await?
        .ok_or_else(|| RunError::NoStatus(store.configmap()))
}

/// `volunteer status`: the recorded status, readable.
pub(crate) async fn status(kube: &kube::Client, target: &StatusTarget) -> Result<String, RunError> {
    let store = Store::new(kube, target);
    match store.read().await? {
        Some(s) => Ok(status::render(&s, jiff::Timestamp::now())),
        None => Err(RunError::NoStatus(store.configmap())),
    }
}

/// Runs the volunteer until cancelled; with `--period 0`, `--dry-run` or `--diff`, makes
/// one report and returns its result.
pub(crate) async fn run(
    settings: Settings,
    kube: kube::Client,
    http: reqwest::Client,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let key = key(&settings, &kube).await?;
    let store = Store::new(&kube, &settings.status);
    let volunteer = Volunteer {
        settings,
        kube,
        http,
        key,
        store,
    };
    let s = &volunteer.settings;
    if s.diff {
        return volunteer.diff_once().await;
    }
    if s.dry_run {
        return volunteer.report_once(None).await;
    }
    if s.period.is_zero() {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(random_up_to(s.jitter)) => {}
        }
        return tokio::select! {
            biased;
            _ = shutdown.cancelled() => Ok(()),
            r = volunteer.report_once(None) => r,
        };
    }
    let start = Instant::now();
    let mut due = start + random_up_to(s.jitter);
    for cycle in 1u32.. {
        // Drawn before this report, so that its status can say when the next one is due.
        let next = start + s.period * cycle + random_up_to(s.jitter);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = volunteer.report_once(Some(next)) => if let Err(e) = r {
                tracing::error!(error = %plumbing::Chain(&e), "report not delivered");
            },
        }
        due = next;
    }
    Ok(())
}

/// The wall-clock time of a future `instant`.
fn wall_time(instant: Instant) -> Option<jiff::Timestamp> {
    let ahead = instant.saturating_duration_since(Instant::now());
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(ahead).ok()?)
        .ok()
}

/// A uniformly random duration in `[0, max]`.
fn random_up_to(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

/// One report, ready to send.
struct Built {
    /// Its ID: its own, or the one the gateway derives from a body without one.
    report_id: ReportId,
    /// The exact body.
    body: Vec<u8>,
    /// The cluster's version-skew summary (kept locally, never sent).
    skew: String,
    /// What was left out for lack of consent.
    withheld: crate::consent::Withheld,
}

struct Volunteer {
    settings: Settings,
    kube: kube::Client,
    http: reqwest::Client,
    key: Key,
    store: Store,
}

impl Volunteer {
    /// What is left out: the operator's `--omit`, and what the accepted version lacks.
    fn omit(&self) -> BTreeSet<Omit> {
        let mut omit = self.settings.omit.clone();
        omit.extend(crate::consent::omits(self.settings.consent));
        omit
    }

    fn plan(&self) -> Plan {
        let omit = &self.omit();
        Plan {
            master_version: !omit.contains(&Omit::MasterVersion),
            nodes: !omit.contains(&Omit::Nodes),
            namespaces: !omit.contains(&Omit::Namespaces),
            workloads: !omit.contains(&Omit::Workloads),
            extensions: if omit.contains(&Omit::Extensions) {
                None
            } else {
                self.settings.extensions.clone()
            },
        }
    }

    /// Collects, anonymizes, keeps what the operator accepted (`--consent`) and validates one
    /// report: its ID, its exact body, the cluster's version-skew summary (kept locally, never
    /// sent), and what was left out for lack of consent.
    async fn build(&self) -> Result<Built, RunError> {
        let report_id = ReportId::random();
        let now = jiff::Timestamp::now();
        let taken_at = now.as_second();
        let (snapshot, cost) = collect::collect(&self.kube, &self.plan(), taken_at).await;
        let skew = crate::skew::summary(&snapshot, now.to_zoned(jiff::tz::TimeZone::UTC).date());
        let options = Options {
            version: version(),
            report_id,
            cluster_id: self.settings.cluster_id.clone(),
            collector_host: self.settings.destination.host(),
            omit: self.omit(),
        };
        let report = anonymize(&snapshot, &self.key, &options);
        // Only what the operator accepted, before the report is validated and sent.
        let (report, withheld) =
            crate::consent::apply(report, self.settings.consent, &self.settings.omit)
                .map_err(RunError::Encode)?;
        if !withheld.fields.is_empty() {
            tracing::info!(
                accepted = withheld.accepted,
                current = withheld.current,
                withheld = %withheld.fields.join(", "),
                "fields left out for lack of consent; {}",
                withheld.how_to_accept()
            );
        }
        let valid = report.validate().map_err(|errors| {
            RunError::Invalid(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        // Plain structs of strings and integers do not fail to serialize today; if a change
        // to the report ever made them, that report is not sent rather than sent empty.
        let body = serde_json::to_vec(valid.report()).map_err(RunError::Encode)?;
        // A report without its own ID (consent 1) is stored under the ID the gateway derives
        // from its body, as for every v1 report: the status names that one.
        let report_id = valid.report_id().unwrap_or_else(|| {
            ReportId::derive(
                valid.cluster_id(),
                valid.report().timestamp.as_deref(),
                &body,
            )
        });
        tracing::info!(
            report_id = %report_id,
            requests = cost.requests,
            bytes = body.len(),
            "report collected"
        );
        Ok(Built {
            report_id,
            body,
            skew,
            withheld,
        })
    }

    /// `--diff`: prints what the next report changes relative to the last one delivered.
    async fn diff_once(&self) -> Result<(), RunError> {
        let Built { body, .. } = self.build().await?;
        let last = self.store.read().await?;
        print(&crate::diff::explain(
            &self.store.configmap(),
            last.as_ref(),
            &body,
        )?)
    }

    /// Collects, anonymizes, validates and prints or sends one report; a sent report's
    /// outcome is recorded in the status ConfigMap. `next` is when the next report is due.
    async fn report_once(&self, next: Option<Instant>) -> Result<(), RunError> {
        let Built {
            report_id,
            body,
            skew,
            withheld,
        } = self.build().await?;
        match (&self.settings.destination, self.settings.dry_run) {
            (Destination::Stdout, _) | (_, true) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&body)
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush())
                    .map_err(RunError::Stdout)
            }
            (Destination::Gateway(url), false) => {
                let policy = Policy::with_deadline(self.settings.send_deadline);
                let result = send::send(&self.http, url, &body, &policy).await;
                let mut attempt = Attempt {
                    at: jiff::Timestamp::now(),
                    outcome: status::Outcome::Delivered,
                    http_status: None,
                    attempts: None,
                    error: None,
                    report_id: report_id.to_string(),
                    body: &body,
                    collector_host: self.settings.destination.host(),
                    next_due: next.and_then(wall_time),
                    period: self.settings.period,
                    version: version(),
                    version_skew: Some(skew),
                };
                match &result {
                    Ok(outcome) => {
                        attempt.http_status = Some(outcome.status.as_u16());
                        attempt.attempts = Some(outcome.attempts);
                        tracing::info!(
                            report_id = %report_id,
                            status = %outcome.status,
                            attempts = outcome.attempts,
                            "report delivered"
                        );
                    }
                    Err(e) => {
                        attempt.outcome = status::Outcome::Failed;
                        attempt.http_status = e.status().map(|s| s.as_u16());
                        attempt.attempts = match e {
                            SendError::GaveUp { attempts, .. } => Some(*attempts),
                            _ => None,
                        };
                        attempt.error = Some(plumbing::Chain(e).to_string());
                    }
                }
                self.store.record(&attempt, &withheld).await;
                result.map(|_| ()).map_err(RunError::Send)
            }
        }
    }
}
