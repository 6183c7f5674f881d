//! The Spartakus wire contract, shared by the volunteer, the gateway and the ingester.
//!
//! - [`wire`]: the report as JSON on the wire (v1 field for field, plus optional additions).
//! - [`validate`]: every rule a report must pass, each failure named by field path and rule.
//! - [`envelope`]: what the gateway queues in JetStream: the report plus `reportID` and `receivedAt`.
//!
//! Parse, don't validate: [`decode`] turns bytes into a [`ValidReport`], and only
//! validated values cross a crate boundary.
#![warn(missing_docs)]

pub mod envelope;
pub mod validate;
pub mod wire;

pub use envelope::Envelope;
pub use validate::{
    FieldError, MAX_CAPACITY, MAX_ERRORS, MAX_EXTENSION_VALUE, MAX_EXTENSIONS, MAX_NODES,
    MAX_STRING, SCHEMA_VERSION,
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
        for part in [cluster_id.as_bytes(), timestamp.unwrap_or("").as_bytes(), body] {
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

/// A validated report: it passed every rule in [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidReport(Report);

impl ValidReport {
    /// The report.
    pub fn report(&self) -> &Report {
        &self.0
    }

    /// The report, by value.
    pub fn into_report(self) -> Report {
        self.0
    }

    /// The report's own `reportID`, if it carried one (validation ensured its form).
    pub fn report_id(&self) -> Option<ReportId> {
        self.0.report_id.as_deref().and_then(ReportId::parse)
    }

    /// The cluster ID (validation ensured its charset and length).
    pub fn cluster_id(&self) -> &str {
        &self.0.cluster_id
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

/// Parses and validates a JSON report body.
pub fn decode(body: &[u8]) -> Result<ValidReport, DecodeError> {
    let report: Report =
        serde_json::from_slice(body).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    report.validate().map_err(DecodeError::Invalid)
}

impl Report {
    /// Checks every rule; on failure returns all problems, each with its field path.
    pub fn validate(self) -> Result<ValidReport, Vec<FieldError>> {
        let errors = validate::check(&self);
        if errors.is_empty() {
            Ok(ValidReport(self))
        } else {
            Err(errors)
        }
    }
}
