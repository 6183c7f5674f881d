//! `volunteer forget`: asks the collector to erase every report it has from this cluster.
//!
//! The request carries the cluster ID the reports carry and the erasure secret S
//! ([`Key::erasure_secret`]), whose SHA-256 every v2 report carried as `erasureCheck`: the
//! collector erases the reports of that cluster whose check matches, so only the holder of
//! the key can erase. S is in the request body and nowhere else: never printed, logged or
//! stored. The collector answers 202 to every well-formed request whether or not it holds
//! any report of the cluster, so the answer says nothing about what was erased.

use std::fmt::Write;

use reqwest::StatusCode;

use crate::anonymize::Key;
use crate::config::Settings;
use crate::send::{self, Encoding, Policy, SendError};

/// What was asked, and the collector's answer.
#[derive(Debug, Clone)]
pub(crate) struct Forgotten {
    /// Where the request went.
    pub(crate) endpoint: reqwest::Url,
    /// The cluster ID sent.
    pub(crate) cluster_id: String,
    /// The collector's answer (2xx).
    pub(crate) status: StatusCode,
    /// Requests it took.
    pub(crate) attempts: u32,
}

/// The body of the erasure request (the only place S is written).
fn body(cluster_id: &str, key: &Key, collector_host: &str) -> Vec<u8> {
    let request = report::erasure::ErasureRequest {
        cluster_id: cluster_id.to_owned(),
        secret: key.erasure_secret(collector_host).to_hex(),
    };
    // serde_json into a Vec fails only when a Serialize impl returns an error or a map has
    // a key that is not a string; a derived struct of two Strings has neither (and
    // `the_request_is_the_reports_contract_and_its_check_is_what_reports_carry` encodes one).
    serde_json::to_vec(&request).expect("a struct of two strings always serializes")
}

/// Sends the erasure request to `{gateway}/api/v2/erasure`, with the same retries and
/// deadline as a report.
pub(crate) async fn forget(
    settings: &Settings,
    key: &Key,
    http: &reqwest::Client,
) -> Result<Forgotten, SendError> {
    let crate::config::Destination::Gateway(gateway) = &settings.destination else {
        // Settings refuses `--gateway stdout` for `forget`.
        return Err(SendError::Url("stdout".into()));
    };
    let host = settings.destination.host();
    let cluster_id = settings
        .cluster_id
        .clone()
        .unwrap_or_else(|| key.cluster_id(&host));
    let endpoint = send::endpoint_at(gateway, &["api", "v2", "erasure"])?;
    let body = bytes::Bytes::from(body(&cluster_id, key, &host));
    let policy = Policy::with_deadline(settings.send_deadline);
    let outcome = send::with_retries(&policy, |remaining| {
        send::post(http, &endpoint, body.clone(), Encoding::Identity, remaining)
    })
    .await?;
    tracing::info!(cluster_id = %cluster_id, status = %outcome.status, attempts = outcome.attempts, "erasure requested");
    Ok(Forgotten {
        endpoint,
        cluster_id,
        status: outcome.status,
        attempts: outcome.attempts,
    })
}

/// What `volunteer forget` prints after the request was accepted.
pub(crate) fn explain(f: &Forgotten) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Erasure requested: cluster ID {} at {} (answer {} after {} request(s)).",
        f.cluster_id, f.endpoint, f.status, f.attempts
    );
    let _ = writeln!(
        out,
        "- The collector never tells whether it erased anything: it answers every well-formed request the same way, by design, so that nobody can learn from it whether a cluster reports there."
    );
    let _ = writeln!(
        out,
        "- The reports of this cluster that the collector received before this request are erased (also those still queued), if their erasureCheck matches; v1 reports, which carry none, cannot be proven to be this cluster's and are not."
    );
    let _ = writeln!(
        out,
        "- Stop the volunteer now (kubectl delete -k k8s/volunteer, or delete its CronJob): otherwise it keeps reporting, and the collector stores the new reports."
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_reports_contract_and_its_check_is_what_reports_carry() {
        let key = Key::from_secret(b"0123456789abcdef");
        let bytes = body("c-1", &key, "collector.example.org");
        let erasure = report::erasure::decode_request(&bytes).unwrap();
        assert_eq!(erasure.cluster_id, "c-1");
        assert_eq!(
            erasure.erasure_check,
            key.erasure_secret("collector.example.org").check()
        );
    }

    #[test]
    fn the_explanation_says_nothing_is_confirmed_and_to_stop_the_volunteer() {
        let text = explain(&Forgotten {
            endpoint: reqwest::Url::parse("https://c.example.org/api/v2/erasure").unwrap(),
            cluster_id: "c-1".into(),
            status: StatusCode::ACCEPTED,
            attempts: 1,
        });
        assert!(text.contains("never tells whether it erased anything"));
        assert!(text.contains("received before this request are erased"));
        assert!(text.contains("Stop the volunteer"));
        assert!(text.contains("202 Accepted"));
    }
}
