//! One validated report as one row: the shape of the BigQuery table, and the input of every sink.
//!
//! Pure and synchronous: no I/O here, so the mapping is tested exhaustively beside it.

use report::envelope::ValidEnvelope;
use report::{Extension, Node, ReportId, Skipped, WorkloadStats};
use serde::Serialize;

/// A report as stored: the v1 columns unchanged, then everything added since. Serialized, it is
/// the JSON row BigQuery's insertAll takes (column names as in `schema/bigquery.json`) and the
/// line the stdout sink prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Build version of the volunteer.
    pub version: String,
    /// The volunteer's clock, UNIX seconds as a string, as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The cluster identifier.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// The API server's version, e.g. `v1.37.2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_version: Option<String>,
    /// One entry per node (empty when the report had none).
    pub nodes: Vec<Node>,
    /// Operator-supplied extensions (empty when none).
    pub extensions: Vec<Extension>,
    /// The idempotency key: the BigQuery insertId and the SQLite unique key.
    #[serde(rename = "reportID")]
    pub report_id: ReportId,
    /// When the gateway received the report; the time analyses should trust.
    pub received_at: jiff::Timestamp,
    /// The report's schema version; absent means 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// Number of namespaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<u64>,
    /// Counts and ages per workload kind (empty when not collected).
    pub workloads: Vec<WorkloadStats>,
    /// Sections the volunteer did not collect, and why.
    pub skipped: Vec<Skipped>,
    /// SHA-256 of the cluster's erasure secret (v2 reports): an erasure request proving the
    /// secret erases exactly the reports carrying this check. `None` for v1 reports, which
    /// no erasure can touch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erasure_check: Option<String>,
}

/// The row for one validated envelope.
pub fn from_envelope(envelope: ValidEnvelope) -> Row {
    let report = envelope.report.into_report();
    Row {
        version: report.version,
        timestamp: report.timestamp,
        cluster_id: report.cluster_id,
        master_version: report.master_version,
        nodes: report.nodes.unwrap_or_default(),
        extensions: report.extensions.unwrap_or_default(),
        report_id: envelope.report_id,
        received_at: envelope.received_at,
        schema_version: report.schema_version,
        namespaces: report.namespaces,
        workloads: report.workloads.unwrap_or_default(),
        skipped: report.skipped.unwrap_or_default(),
        erasure_check: report.erasure_check,
    }
}

/// The `master_minor` column: the Kubernetes minor release of the API server's `gitVersion`,
/// e.g. `1.37` for `v1.37.2-gke.1200`, by the rule the published statistics count clusters by
/// ([`report::version`]); `None` when the string does not follow it.
pub(crate) fn kubernetes_minor(git_version: &str) -> Option<String> {
    report::version::minor(git_version).map(|m| m.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use report::{AgeHours, Bucket, Kind, SkipReason};

    fn envelope(json: &str) -> ValidEnvelope {
        let report = report::decode(json.as_bytes()).unwrap();
        let id = ReportId::parse("0b6f1c9e-4a8b-4f5e-9a51-9e1a1f7b2c3d").unwrap();
        let at: jiff::Timestamp = "2026-05-01T12:00:00Z".parse().unwrap();
        report::Envelope::decode(&report::Envelope::new(id, at, report).encode()).unwrap()
    }

    #[test]
    fn a_v1_report_keeps_every_field_and_gains_id_and_receipt_time() {
        let row = from_envelope(envelope(
            r#"{"version":"v1.0.0","timestamp":"867530909031976","clusterID":"c1",
                "masterVersion":"v1.3.5",
                "nodes":[{"id":"n1","operatingSystem":"linux","osImage":"Debian","kernelVersion":"3.16",
                          "architecture":"amd64","containerRuntimeVersion":"docker://1.11.2",
                          "kubeletVersion":"v1.3.2","cloudProvider":"gce",
                          "capacity":[{"resource":"cpu","value":"4"}]}],
                "extensions":[{"name":"example.com/hello","value":"world"}]}"#,
        ));
        assert_eq!(row.version, "v1.0.0");
        assert_eq!(row.timestamp.as_deref(), Some("867530909031976"));
        assert_eq!(row.cluster_id, "c1");
        assert_eq!(row.master_version.as_deref(), Some("v1.3.5"));
        assert_eq!(row.nodes.len(), 1);
        assert_eq!(row.nodes[0].cloud_provider.as_deref(), Some("gce"));
        assert_eq!(row.nodes[0].capacity.as_ref().unwrap()[0].value, "4");
        assert_eq!(row.extensions[0].name, "example.com/hello");
        assert_eq!(
            row.report_id.to_string(),
            "0b6f1c9e-4a8b-4f5e-9a51-9e1a1f7b2c3d"
        );
        assert_eq!(row.received_at.to_string(), "2026-05-01T12:00:00Z");
        assert!(row.workloads.is_empty() && row.skipped.is_empty());
        assert_eq!((row.schema_version, row.namespaces), (None, None));
        assert_eq!(
            row.erasure_check, None,
            "a v1 report carries no erasure check"
        );
    }

    #[test]
    fn a_minimal_report_has_empty_repeated_fields_not_missing_ones() {
        let row = from_envelope(envelope(r#"{"version":"v2","clusterID":"c"}"#));
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["nodes"], serde_json::json!([]));
        assert_eq!(json["extensions"], serde_json::json!([]));
        assert!(json.get("masterVersion").is_none());
        assert!(json.get("timestamp").is_none());
    }

    #[test]
    fn statistics_serialize_with_the_bigquery_column_names() {
        let row = from_envelope(envelope(include_str!("../../report/testdata/v2-full.json")));
        assert_eq!(row.schema_version, Some(2));
        assert_eq!(row.namespaces, Some(12));
        assert_eq!(
            row.erasure_check.as_deref(),
            Some("630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd")
        );
        assert_eq!(row.workloads[0].kind, Kind::Pod);
        assert_eq!(
            row.workloads[0].per_namespace[7],
            Bucket {
                min: 501,
                max: None,
                namespaces: 0
            }
        );
        assert_eq!(
            row.workloads[0].age_hours,
            Some(AgeHours {
                median: 30,
                p90: 410
            })
        );
        assert!(!row.skipped.is_empty());
        let json = serde_json::to_value(&row).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "reportID",
            "receivedAt",
            "clusterID",
            "schemaVersion",
            "namespaces",
            "workloads",
            "skipped",
            "erasureCheck",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert_eq!(json["workloads"][0]["perNamespace"][0]["namespaces"], 2);
        assert_eq!(json["workloads"][0]["ageHours"]["p90"], 410);
        assert!(json["workloads"][0]["perNamespace"][7].get("max").is_none());
        assert_eq!(json["receivedAt"], "2026-05-01T12:00:00Z");
    }

    #[test]
    fn skip_reasons_keep_their_wire_spelling() {
        let row = from_envelope(envelope(
            r#"{"version":"v2","clusterID":"c","skipped":[{"section":"nodes","reason":"notFound"}]}"#,
        ));
        assert_eq!(row.skipped[0].reason, SkipReason::NotFound);
        assert_eq!(
            serde_json::to_value(&row).unwrap()["skipped"][0]["reason"],
            "notFound"
        );
    }

    #[test]
    fn minor_versions_come_from_git_versions_by_the_statistics_rule() {
        for (input, want) in [
            ("v1.37.2", Some("1.37")),
            ("v1.30.5-gke.1014001", Some("1.30")),
            ("1.29", Some("1.29")),
            ("v1.28+k3s1", Some("1.28")),
            ("v2.0.1", Some("2.0")),
            ("v1", None),
            ("v01.2", None),
            ("", None),
            ("vx.y.z", None),
        ] {
            assert_eq!(kubernetes_minor(input).as_deref(), want, "{input}");
        }
    }
}
