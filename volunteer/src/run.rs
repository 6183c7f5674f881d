//! The volunteer's life: build clients, then report once or every period (plus a random
//! jitter) until cancelled.

use std::io::Write;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use report::ReportId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::anonymize::{Key, Options, anonymize};
use crate::collect::{self, CollectError, Plan};
use crate::config::{Destination, Settings};
use crate::omit::Omit;
use crate::send::{self, Policy, SendError};

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
    /// The report was not delivered.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Writing the report to standard output failed.
    #[error("writing the report to stdout")]
    Stdout(#[source] std::io::Error),
    /// The signal handlers could not be installed.
    #[error("listening for SIGTERM and SIGINT")]
    Signals(#[source] std::io::Error),
}

/// The volunteer's version as reported, e.g. `v0.1.0`.
pub fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// A Kubernetes client: in-cluster config, else the kubeconfig (explicit file or the usual
/// resolution), with the request timeout applied.
pub async fn kube_client(settings: &Settings) -> Result<kube::Client, RunError> {
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
pub fn http_client(settings: &Settings) -> Result<reqwest::Client, RunError> {
    reqwest::Client::builder()
        .user_agent(format!("spartakus-volunteer/{}", version()))
        .connect_timeout(settings.request_timeout)
        .timeout(settings.request_timeout)
        .build()
        .map_err(|e| RunError::Send(SendError::Transport(e)))
}

/// Runs the volunteer until cancelled; with `--period 0` or `--dry-run`, makes one
/// report and returns its result.
pub async fn run(
    settings: Settings,
    kube: kube::Client,
    http: reqwest::Client,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let key = match &settings.key {
        Some(key) => key.clone(),
        None => Key::from_kube_system_uid(&collect::kube_system_uid(&kube).await?),
    };
    let volunteer = Volunteer {
        settings,
        kube,
        http,
        key,
    };
    let s = &volunteer.settings;
    if s.dry_run {
        return volunteer.report_once().await;
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
            r = volunteer.report_once() => r,
        };
    }
    let start = Instant::now();
    for cycle in 0u32.. {
        let due = start + s.period * cycle + random_up_to(s.jitter);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = volunteer.report_once() => if let Err(e) = r {
                tracing::error!(error = %plumbing::Chain(&e), "report not delivered");
            },
        }
    }
    Ok(())
}

/// A uniformly random duration in `[0, max]`.
fn random_up_to(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

struct Volunteer {
    settings: Settings,
    kube: kube::Client,
    http: reqwest::Client,
    key: Key,
}

impl Volunteer {
    fn plan(&self) -> Plan {
        let omit = &self.settings.omit;
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

    /// Collects, anonymizes, validates and prints or sends one report.
    async fn report_once(&self) -> Result<(), RunError> {
        let report_id = ReportId::random();
        let taken_at = jiff::Timestamp::now().as_second();
        let (snapshot, cost) = collect::collect(&self.kube, &self.plan(), taken_at).await;
        let options = Options {
            version: version(),
            report_id,
            cluster_id: self.settings.cluster_id.clone(),
            collector_host: self.settings.destination.host(),
            omit: self.settings.omit.clone(),
        };
        let report = anonymize(&snapshot, &self.key, &options);
        let valid = report.validate().map_err(|errors| {
            RunError::Invalid(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        // Serializing plain structs of strings and integers cannot fail.
        let body = serde_json::to_vec(valid.report()).unwrap_or_default();
        tracing::info!(
            report_id = %report_id,
            requests = cost.requests,
            bytes = body.len(),
            "report collected"
        );
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
                let outcome = send::send(&self.http, url, &body, &policy).await?;
                tracing::info!(
                    report_id = %report_id,
                    status = %outcome.status,
                    attempts = outcome.attempts,
                    "report delivered"
                );
                Ok(())
            }
        }
    }
}
