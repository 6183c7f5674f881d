//! The message the gateway publishes to JetStream and the ingester consumes.

use crate::{DecodeError, Report, ReportId, ValidReport};
use serde::{Deserialize, Serialize};

/// A report as queued: the volunteer's report as the collector keeps it, plus what the
/// gateway adds. The `reportID` is also the JetStream `Nats-Msg-Id` and the
/// BigQuery `insertId`, so one report is stored once however often it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    /// The report's idempotency key: its own `reportID`, or one derived from the body.
    #[serde(rename = "reportID")]
    pub report_id: ReportId,
    /// When the gateway received the report (RFC 3339, UTC). Set by the server.
    pub received_at: jiff::Timestamp,
    /// The report as the volunteer sent it, sanitized ([`crate::sanitize`]) and its node IDs
    /// re-keyed by the gateway ([`crate::node_id`]).
    pub report: Report,
}

/// An envelope whose report passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEnvelope {
    /// The idempotency key.
    pub report_id: ReportId,
    /// When the gateway received the report.
    pub received_at: jiff::Timestamp,
    /// The validated report.
    pub report: ValidReport,
}

impl Envelope {
    /// Wraps a validated report for the queue.
    pub fn new(report_id: ReportId, received_at: jiff::Timestamp, report: ValidReport) -> Self {
        Envelope {
            report_id,
            received_at,
            report: report.into_report(),
        }
    }

    /// Compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Compact JSON, appended to `out` (which the caller may have sized already).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // serde_json fails only when the writer does (a Vec never does), when a Serialize impl
        // returns an error, or on a map whose keys are not strings. The envelope is derived
        // structs of strings, integers, options and vectors, enums of unit variants, a
        // ReportId and a jiff Timestamp (both written by their infallible `Display`), and no
        // map. The proptest `every_valid_report_round_trips_through_json_unchanged` serializes
        // reports of every shape; `an_envelope_round_trips_and_is_revalidated` an envelope.
        serde_json::to_writer(out, self)
            .expect("an envelope is plain data, which always serializes");
    }

    /// Parses and re-validates a queued message with the current rules (sanitizing it again
    /// changes nothing the gateway already sanitized). A `reportID` that is not canonical is a
    /// [`DecodeError::Syntax`] naming the rule.
    pub fn decode(bytes: &[u8]) -> Result<ValidEnvelope, DecodeError> {
        let env: Envelope = crate::from_json(bytes)?;
        let report = env.report.validate().map_err(DecodeError::Invalid)?;
        Ok(ValidEnvelope {
            report_id: env.report_id,
            received_at: env.received_at,
            report,
        })
    }
}
