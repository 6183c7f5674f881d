//! The Spartakus wire contract, shared by the volunteer, the gateway and the ingester.
//!
//! - [`wire`]: the report as JSON on the wire (v1 field for field, plus optional additions).
//! - [`consent`]: the report-content versions an operator accepts, each with the fields it
//!   adds, and the rule that leaves out what was not accepted.
//! - [`validate`]: every rule a report must pass, each failure named by field path and rule.
//! - [`sanitize`]: what may be kept of a report's free text; applied to every valid report.
//! - [`node_id`]: the collector's re-keying of client-supplied node IDs.
//! - [`envelope`]: what the gateway queues in JetStream: the report plus `reportID` and `receivedAt`.
//! - [`erasure`]: a cluster's request to erase its reports, which only the cluster can make.
//! - [`queue`]: the JetStream streams and subjects between the gateway and the ingester, and
//!   the dead-letter headers.
//! - [`vocabulary`]: the closed lists of names some fields take (cloud providers, device
//!   vendors), and the synthetic mark.
//! - [`quantity`]: the grammar of capacity values and their value as a number.
//! - [`version`]: the rule that reads a Kubernetes `gitVersion` (major, minor, patch).
//! - [`skew`]: Kubernetes' version-skew policy and end-of-life dates, dated and sourced, and
//!   the verdicts on a cluster's versions.
//!
//! Parse, don't validate: [`decode`] turns bytes into a [`ValidReport`], sanitized, and only
//! validated values cross a crate boundary.
#![warn(missing_docs)]

pub mod consent;
pub mod envelope;
pub mod erasure;
pub mod node_id;
pub mod quantity;
pub mod queue;
pub mod sanitize;
pub mod skew;
pub mod validate;
pub mod version;
pub mod vocabulary;
pub mod wire;

pub use envelope::Envelope;
pub use validate::{
    FieldError, MAX_CAPACITY, MAX_ERRORS, MAX_EXTENSION_VALUE, MAX_EXTENSIONS, MAX_NODES,
    MAX_STRING, SCHEMA_VERSION, check_capacity, check_cluster_id, check_extensions,
    is_qualified_name, is_quantity, section,
};
pub use wire::{
    AgeHours, BUCKETS, Bucket, Extension, Kind, Node, Report, Resource, SkipReason, Skipped,
    WorkloadStats, bucket_index,
};

use sha2::{Digest, Sha256};
use std::fmt;

/// The idempotency key of a report: a UUID, lowercase hyphenated on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportId(uuid::Uuid);

impl ReportId {
    /// A fresh random report ID (UUID v4), drawn once per report by a volunteer.
    pub fn random() -> Self {
        ReportId(uuid::Uuid::new_v4())
    }

    /// The report ID for a body that did not carry one (v1 volunteers): a
    /// UUID (version 8) made from the SHA-256 of cluster ID, client timestamp
    /// and body, so a retried v1 body gets the same ID and is deduplicated.
    pub fn derive(cluster_id: &str, timestamp: Option<&str>, body: &[u8]) -> Self {
        let mut h = Sha256::new();
        for part in [
            cluster_id.as_bytes(),
            timestamp.unwrap_or("").as_bytes(),
            body,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        ReportId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// Parses the canonical form: lowercase hex digits in `8-4-4-4-12` groups,
    /// exactly as [`Display`](fmt::Display) writes it.
    pub fn parse(s: &str) -> Option<Self> {
        // Only one spelling per ID (hyphenated, lowercase): JetStream and
        // BigQuery deduplicate on the string, so two spellings of one UUID
        // would be stored twice.
        if s.len() != 36 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        uuid::Uuid::try_parse(s).ok().map(ReportId)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl fmt::Display for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// The canonical string, as [`Display`](fmt::Display) writes it.
impl serde::Serialize for ReportId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Only the canonical spelling ([`ReportId::parse`]); anything else is an error naming the rule.
impl<'de> serde::Deserialize<'de> for ReportId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ReportId::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format_args!("reportID {s:?}: {}", validate::RULE_REPORT_ID))
        })
    }
}

/// A validated report: it passed every rule in [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidReport {
    report: Report,
    /// `report.report_id`, parsed once when it was validated.
    report_id: Option<ReportId>,
}

impl ValidReport {
    /// The report.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The report, by value.
    pub fn into_report(self) -> Report {
        self.report
    }

    /// The report's own `reportID`, if it carried one.
    pub fn report_id(&self) -> Option<ReportId> {
        self.report_id
    }

    /// The cluster ID (validation ensured its charset and length).
    pub fn cluster_id(&self) -> &str {
        &self.report.cluster_id
    }

    /// The report with every node ID re-keyed under the collector's `key`
    /// ([`node_id`]): what the gateway queues instead of the IDs the client sent.
    pub fn rekey_node_ids(mut self, key: &node_id::NodeIdKey) -> Self {
        if let Some(nodes) = &mut self.report.nodes {
            for node in nodes {
                node.id = key.rekey(&self.report.cluster_id, &node.id);
            }
        }
        self
    }

    /// Whether the report carries [`vocabulary::SYNTHETIC_EXTENSION`].
    pub fn is_synthetic(&self) -> bool {
        let (name, value) = vocabulary::SYNTHETIC_EXTENSION;
        self.report
            .extensions
            .iter()
            .flatten()
            .any(|e| e.name == name && e.value == value)
    }
}

/// Why a body is not a valid report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape (wrong type, unknown field, …).
    #[error("{0}")]
    Syntax(String),
    /// Well-formed, but breaks one or more rules.
    #[error("{}", display_all(.0))]
    Invalid(Vec<FieldError>),
}

fn display_all(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses, validates and sanitizes a JSON report body.
///
/// A body that is not JSON, or not of the report's shape (unknown or
/// duplicate field, wrong type, an array where an object belongs), is a
/// [`DecodeError::Syntax`] with serde_json's message, prefixed by the path of
/// the field where it happened (`nodes[3].capacity: invalid type: …`). A
/// well-formed body that breaks rules is [`DecodeError::Invalid`] with every
/// problem, in field order. A valid report comes back with [`sanitize`]'s rules
/// applied.
pub fn decode(body: &[u8]) -> Result<ValidReport, DecodeError> {
    let report: Report = from_json(body)?;
    report.validate().map_err(DecodeError::Invalid)
}

/// JSON into `T`, an error naming the path of the field where it happened (nothing before the
/// message when it is the document itself, e.g. trailing data).
///
/// Tracking the path costs every field of every report, so the bytes are parsed once without it
/// and, only when that fails, again with it to name the field: the same error either way.
pub(crate) fn from_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| DecodeError::Syntax(e.to_string()))?;
    de.end().map_err(|e| DecodeError::Syntax(e.to_string()))?;
    Ok(value)
}

impl Report {
    /// Checks every rule; on failure returns all problems, each with its field path. A report
    /// that passes comes back with [`sanitize`]'s rules applied.
    pub fn validate(self) -> Result<ValidReport, Vec<FieldError>> {
        let mut errors = validate::check(&self);
        // The one required free-text string must keep something once sanitized (its other
        // rules are `check`'s, which stays free of the sanitizing rules that build on it).
        if !self.version.is_empty() && sanitize::info(&self.version).is_none() {
            errors.insert(0, FieldError::new("version", sanitize::RULE_NOTHING_LEFT));
        }
        if errors.is_empty() {
            // `check` refused any reportID that does not parse.
            let report_id = self.report_id.as_deref().and_then(ReportId::parse);
            Ok(ValidReport {
                report: sanitize::report(self),
                report_id,
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SEED: &[u8] = include_bytes!("../testdata/v1-seed.json");

    fn minimal(extra: &str) -> String {
        format!(r#"{{"version":"v1.0.0","clusterID":"c"{extra}}}"#)
    }

    fn rules(body: &str) -> Vec<String> {
        match decode(body.as_bytes()) {
            Err(DecodeError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn only_the_exact_synthetic_mark_makes_a_report_synthetic() {
        let with =
            |exts: &str| decode(minimal(&format!(r#","extensions":{exts}"#)).as_bytes()).unwrap();
        assert!(
            with(r#"[{"name":"a","value":"b"},{"name":"spartakus.dev/synthetic","value":"true"}]"#)
                .is_synthetic()
        );
        assert!(!with(r#"[{"name":"spartakus.dev/synthetic","value":"false"}]"#).is_synthetic());
        assert!(!with(r#"[{"name":"example.com/synthetic","value":"true"}]"#).is_synthetic());
        assert!(!decode(minimal("").as_bytes()).unwrap().is_synthetic());
    }

    #[test]
    fn derived_report_ids_are_deterministic() {
        let a = ReportId::derive("cluster", Some("1700000000"), SEED);
        let b = ReportId::derive("cluster", Some("1700000000"), SEED);
        assert_eq!(a, b);
    }

    #[test]
    fn derived_report_ids_change_with_each_input() {
        let base = ReportId::derive("cluster", Some("1700000000"), b"body");
        assert_ne!(
            base,
            ReportId::derive("cluster2", Some("1700000000"), b"body")
        );
        assert_ne!(
            base,
            ReportId::derive("cluster", Some("1700000001"), b"body")
        );
        assert_ne!(base, ReportId::derive("cluster", None, b"body"));
        assert_ne!(
            base,
            ReportId::derive("cluster", Some("1700000000"), b"body ")
        );
    }

    #[test]
    fn derived_report_ids_do_not_confuse_where_one_input_ends_and_the_next_begins() {
        assert_ne!(
            ReportId::derive("ab", Some("c"), b""),
            ReportId::derive("a", Some("bc"), b"")
        );
        assert_ne!(
            ReportId::derive("a", Some(""), b"b"),
            ReportId::derive("a", Some("b"), b"")
        );
    }

    #[test]
    fn derived_report_ids_are_version_8_uuids_in_canonical_form() {
        let id = ReportId::derive("c", None, b"");
        assert_eq!(id.as_uuid().get_version_num(), 8);
        assert_eq!(ReportId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn random_report_ids_differ_and_parse_back() {
        let (a, b) = (ReportId::random(), ReportId::random());
        assert_ne!(a, b);
        assert_eq!(ReportId::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn only_the_canonical_spelling_of_a_report_id_parses() {
        let canonical = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(ReportId::parse(canonical).is_some());
        for other in [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "0f8fad5bd9cb469fa16570867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "",
        ] {
            assert_eq!(ReportId::parse(other), None, "{other}");
        }
    }

    #[test]
    fn a_valid_report_exposes_its_ids() {
        let body = minimal(r#","reportID":"0f8fad5b-d9cb-469f-a165-70867728950e""#);
        let valid = decode(body.as_bytes()).unwrap();
        assert_eq!(valid.cluster_id(), "c");
        assert_eq!(
            valid.report_id().unwrap().to_string(),
            "0f8fad5b-d9cb-469f-a165-70867728950e"
        );
        assert_eq!(decode(SEED).unwrap().report_id(), None);
    }

    #[test]
    fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
        let deep = "[".repeat(10_000);
        let bodies = [
            deep.clone(),
            "{".repeat(10_000),
            format!(r#"{{"version":{deep}"#),
            format!(r#"{{"version":"v","clusterID":"c","extensions":[{{"name":"a","value":{deep}"#),
            format!(r#"{{"nodes":[{{"capacity":{deep}"#),
        ];
        for body in bodies {
            assert!(matches!(
                decode(body.as_bytes()),
                Err(DecodeError::Syntax(_))
            ));
        }
    }

    #[test]
    fn duplicate_keys_are_a_syntax_error() {
        let err = decode(br#"{"version":"a","version":"b","clusterID":"c"}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("duplicate field `version`"),
            "{err}"
        );
        let err = decode(br#"{"version":"a","clusterID":"c","nodes":[{"id":"n","id":"m"}]}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("nodes[0]: duplicate field `id`"),
            "{err}"
        );
    }

    #[test]
    fn trailing_data_after_the_report_is_a_syntax_error() {
        let body = format!("{} {{}}", minimal(""));
        assert!(matches!(
            decode(body.as_bytes()),
            Err(DecodeError::Syntax(_))
        ));
    }

    #[test]
    fn fifteen_thousand_nodes_are_accepted_and_one_more_is_not() {
        let nodes = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!(r#"{{"id":"n{i}"}}"#)).collect();
            minimal(&format!(r#","nodes":[{}]"#, list.join(",")))
        };
        assert!(decode(nodes(MAX_NODES).as_bytes()).is_ok());
        assert_eq!(
            rules(&nodes(MAX_NODES + 1)),
            ["nodes: more than 15000 nodes"]
        );
    }

    #[test]
    fn a_hostile_body_gets_at_most_a_hundred_errors_and_a_count_of_the_rest() {
        let list: Vec<&str> = vec![r#"{"id":"bad id"}"#; MAX_NODES];
        let body = minimal(&format!(r#","nodes":[{}]"#, list.join(",")));
        let rules = rules(&body);
        assert_eq!(rules.len(), MAX_ERRORS + 1);
        assert_eq!(
            rules[0],
            "nodes[0].id: not 1-64 characters of [A-Za-z0-9_-]"
        );
        assert_eq!(
            rules[MAX_ERRORS],
            format!("(report): {} more errors omitted", MAX_NODES - MAX_ERRORS)
        );
    }

    #[test]
    fn strings_of_exactly_the_limit_are_accepted() {
        let at_limit = "x".repeat(MAX_STRING);
        let body = minimal(&format!(
            r#","masterVersion":"{at_limit}","extensions":[{{"name":"k","value":"{}"}}]"#,
            "v".repeat(MAX_EXTENSION_VALUE)
        ));
        assert!(decode(body.as_bytes()).is_ok());
        let id = minimal("").replace(r#""c""#, &format!(r#""{}""#, "c".repeat(128)));
        assert!(decode(id.as_bytes()).is_ok());
    }

    #[test]
    fn string_limits_count_bytes_not_characters() {
        // 86 three-byte characters: 258 bytes.
        let body = minimal(&format!(r#","masterVersion":"{}""#, "€".repeat(86)));
        assert_eq!(rules(&body), ["masterVersion: longer than 256 bytes"]);
    }

    #[test]
    fn the_histogram_need_not_add_up_when_the_namespace_count_is_absent() {
        let body = minimal(
            r#","workloads":[{"kind":"Pod","total":3,"perNamespace":[
            {"min":0,"max":0,"namespaces":0},{"min":1,"max":1,"namespaces":1},
            {"min":2,"max":5,"namespaces":1},{"min":6,"max":10,"namespaces":0},
            {"min":11,"max":50,"namespaces":0},{"min":51,"max":100,"namespaces":0},
            {"min":101,"max":500,"namespaces":0},{"min":501,"namespaces":0}]}]"#,
        );
        assert!(decode(body.as_bytes()).is_ok());
        let with_count = body.replace(r#""workloads""#, r#""namespaces":5,"workloads""#);
        assert_eq!(
            rules(&with_count),
            ["workloads[0].perNamespace: buckets hold 2 namespaces, not namespaces (5)"]
        );
    }

    #[test]
    fn every_optional_section_can_be_marked_skipped() {
        let skipped: Vec<String> = validate::SECTIONS
            .iter()
            .map(|s| format!(r#"{{"section":"{s}","reason":"omitted"}}"#))
            .collect();
        let body = minimal(&format!(r#","skipped":[{}]"#, skipped.join(",")));
        assert!(decode(body.as_bytes()).is_ok());
    }

    #[test]
    fn an_envelope_round_trips_and_is_revalidated() {
        let id = ReportId::random();
        let at = jiff::Timestamp::from_second(1_767_225_600).unwrap();
        let env = Envelope::new(id, at, decode(SEED).unwrap());
        let back = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(back.report_id, id);
        assert_eq!(back.received_at, at);
        assert_eq!(back.report, decode(SEED).unwrap());

        let mut bad = env.clone();
        bad.report.cluster_id = String::new();
        assert_eq!(
            Envelope::decode(&bad.encode()).unwrap_err().to_string(),
            "clusterID: required"
        );
    }

    #[test]
    fn an_envelope_with_a_non_canonical_report_id_is_refused_naming_the_rule() {
        let id = ReportId::random();
        let at = jiff::Timestamp::from_second(1_767_225_600).unwrap();
        let json = String::from_utf8(Envelope::new(id, at, decode(SEED).unwrap()).encode())
            .unwrap()
            .replace(&id.to_string(), &id.to_string().to_uppercase());
        let err = Envelope::decode(json.as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::Syntax(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("not a canonical UUID (lowercase 8-4-4-4-12 hex)"),
            "{err}"
        );
    }

    #[test]
    fn v1_md5_node_ids_are_re_keyed_into_ids_nobody_without_the_key_can_recompute() {
        let key = node_id::NodeIdKey::from_secret(&[7u8; 32]).unwrap();
        let sent = decode(SEED).unwrap();
        let ids = |r: &ValidReport| -> Vec<String> {
            r.report()
                .nodes
                .iter()
                .flatten()
                .map(|n| n.id.clone())
                .collect()
        };
        assert_eq!(
            ids(&sent),
            [
                "c8863d09ecc5be8d9791f72acd275fc2",
                "5b919a15947b0680277acddf68d4b7aa"
            ]
        );
        let stored = sent.clone().rekey_node_ids(&key);
        assert_eq!(
            ids(&stored),
            [
                "4ea09d753e665d9fed20b06c9af42109",
                "f02877cfcf7f92a9b7e1a8fd88bef715"
            ]
        );
        // Everything else as sent; the stored IDs still pass the report's rules.
        let mut back = stored.clone().into_report();
        for (node, id) in back.nodes.iter_mut().flatten().zip(ids(&sent)) {
            node.id = id;
        }
        assert_eq!(back, sent.into_report());
        assert!(stored.into_report().validate().is_ok());
    }

    #[test]
    fn a_report_id_serializes_as_its_canonical_string() {
        let id = ReportId::parse("0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, r#""0f8fad5b-d9cb-469f-a165-70867728950e""#);
        assert_eq!(serde_json::from_str::<ReportId>(&json).unwrap(), id);
    }
}
