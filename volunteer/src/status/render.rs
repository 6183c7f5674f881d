//! What `volunteer status` prints: the recorded status for people. Pure: the status and
//! the time now in, text out.

use std::time::Duration;

use super::record::{Status, key};

/// `volunteer status`: the status for people, as of `now`.
pub(crate) fn render(status: &Status, now: jiff::Timestamp) -> String {
    let get = |k| status.get(k).unwrap_or("unknown");
    let ago = |k| match status
        .get(k)
        .and_then(|v| v.parse::<jiff::Timestamp>().ok())
    {
        Some(t) => {
            let secs = (now.as_second() - t.as_second()).max(0) as u64;
            format!(
                "{}, {} ago",
                t,
                humantime::format_duration(Duration::from_secs(secs))
            )
        }
        None => get(k).to_owned(),
    };
    let mut lines = vec![
        format!("Status of the volunteer (ConfigMap {})", status.configmap),
        String::new(),
    ];
    let mut row = |label: &str, value: String| lines.push(format!("  {label:<15} {value}"));
    row(
        "last attempt",
        format!("{}: {}", ago(key::LAST_ATTEMPT), get(key::OUTCOME)),
    );
    let requests = match status.get(key::ATTEMPTS) {
        Some(n) => format!(" (after {n} request(s))"),
        None => String::new(),
    };
    row(
        "HTTP status",
        match status.get(key::HTTP_STATUS) {
            Some(s) => format!("{s}{requests}"),
            None => format!("no answer{requests}"),
        },
    );
    if let Some(e) = status.get(key::ERROR) {
        row("error", e.to_owned());
    }
    row("report ID", get(key::REPORT_ID).to_owned());
    row(
        "body",
        format!(
            "{} bytes, SHA-256 {}",
            get(key::BODY_BYTES),
            get(key::BODY_SHA256)
        ),
    );
    row("collector", get(key::COLLECTOR_HOST).to_owned());
    row(
        "next report",
        match status.get(key::NEXT_REPORT_DUE) {
            Some(t) => t.to_owned(),
            None => "when the CronJob's schedule next runs the volunteer (--period 0)".into(),
        },
    );
    match status.get(key::LAST_DELIVERED) {
        Some(_) => {
            row(
                "last delivered",
                format!(
                    "{}: report {}",
                    ago(key::LAST_DELIVERED),
                    get(key::LAST_DELIVERED_REPORT_ID)
                ),
            );
            row(
                "  its body",
                format!(
                    "{} bytes, SHA-256 {}; {}",
                    get(key::LAST_DELIVERED_BYTES),
                    get(key::LAST_DELIVERED_SHA256),
                    get(key::LAST_DELIVERED_BODY)
                ),
            );
        }
        None => row("last delivered", "never".into()),
    }
    row("version", get(key::VERSION).to_owned());
    for (label, value) in crate::consent::status_rows(status.get(key::CONSENT)) {
        row(label, value);
    }
    let skew = status
        .get(key::VERSION_SKEW)
        .unwrap_or("not recorded (the volunteer records it with each report it sends)");
    let mut skew_lines = skew.lines();
    row(
        "version skew",
        skew_lines.next().unwrap_or_default().to_owned(),
    );
    for line in skew_lines {
        row("", line.to_owned());
    }
    lines.push(String::new());
    lines.join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::status::record::{Attempt, MAX_STORED_GZIP, Outcome, to_data};

    /// The status after `outcome`, written as the volunteer writes it.
    fn status_after(outcome: Outcome, previous: Option<&Status>) -> Status {
        let delivered = outcome == Outcome::Delivered;
        let attempt = Attempt {
            at: "2026-12-02T03:17:05.123Z".parse().unwrap(),
            outcome,
            http_status: Some(if delivered { 204 } else { 503 }),
            attempts: Some(2),
            error: (!delivered).then(|| "gave up after 2 attempts: 503".into()),
            report_id: "0b6f3a59-2f6e-4a8e-9d1c-3f1c2b7a9e10".into(),
            body: br#"{"version":"v0.1.0","clusterID":"c"}"#,
            collector_host: "collector.example.org".into(),
            next_due: delivered.then(|| "2026-12-03T03:17:05Z".parse().unwrap()),
            period: Duration::from_secs(86400),
            version: "v0.1.0".into(),
            version_skew: Some("attention: the kubelet of 1 node is outside the version-skew policy\ncontrol plane 1.37: supported until 2027-10-28".into()),
        };
        let previous = previous.map(|p| k8s_openapi::api::core::v1::ConfigMap {
            data: Some(p.data.clone()),
            ..Default::default()
        });
        let (data, _) = to_data(previous.as_ref(), &attempt, MAX_STORED_GZIP);
        Status {
            configmap: "spartakus/spartakus-status".into(),
            data,
            body_gzip: None,
        }
    }

    #[test]
    fn a_failure_is_printed_with_why_and_how_long_ago() {
        let delivered = status_after(Outcome::Delivered, None);
        let status = status_after(Outcome::Failed, Some(&delivered));
        let text = render(&status, "2026-12-02T05:17:05Z".parse().unwrap());
        assert!(
            text.contains("2026-12-02T03:17:05Z, 2h ago: failed"),
            "{text}"
        );
        assert!(text.contains("503 (after 2 request(s))"), "{text}");
        assert!(text.contains("CronJob's schedule"), "{text}");
        assert!(text.contains("gave up after 2 attempts"), "{text}");
        assert!(
            text.contains("last delivered  2026-12-02T03:17:05Z, 2h ago: report 0b6f3a59"),
            "{text}"
        );
    }

    #[test]
    fn the_version_skew_summary_is_printed_line_by_line_under_its_label() {
        let status = status_after(Outcome::Delivered, None);
        let text = render(&status, "2026-12-02T05:17:05Z".parse().unwrap());
        assert!(
            text.contains(
                "\n  version skew    attention: the kubelet of 1 node is outside the version-skew policy\n                  control plane 1.37: supported until 2027-10-28\n"
            ),
            "{text}"
        );
        let old = Status {
            configmap: "ns/cm".into(),
            data: BTreeMap::new(),
            body_gzip: None,
        };
        let text = render(&old, "2026-12-02T05:17:05Z".parse().unwrap());
        assert!(text.contains("version skew    not recorded"), "{text}");
    }

    #[test]
    fn a_status_without_a_delivery_says_never_and_unknown_for_what_is_missing() {
        let status = Status {
            configmap: "ns/cm".into(),
            data: BTreeMap::from([(key::OUTCOME.to_owned(), "failed".to_owned())]),
            body_gzip: None,
        };
        let text = render(&status, "2026-12-02T05:17:05Z".parse().unwrap());
        assert!(
            text.starts_with("Status of the volunteer (ConfigMap ns/cm)"),
            "{text}"
        );
        assert!(text.contains("last attempt    unknown: failed"), "{text}");
        assert!(text.contains("HTTP status     no answer"), "{text}");
        assert!(text.contains("last delivered  never"), "{text}");
    }
}
