//! The volunteer's status, kept in a ConfigMap of its own namespace so that an operator can
//! see what was sent and when without reading logs (`volunteer status`, or `kubectl get
//! configmap spartakus-status -o yaml`), and `--diff` can compare with the last report
//! delivered.
//!
//! After each report (all its retries included) the volunteer writes the attempt: when, the
//! outcome, the collector's HTTP status, the report ID, the SHA-256 and size of the exact
//! (uncompressed) body, the collector's host and when the next report is due. A delivered
//! report's body is also kept, gzip-compressed in `binaryData`, when it fits well under the
//! ConfigMap limit (1 MiB for the whole object); else only its digest is. A failed attempt
//! leaves the last delivered report's keys and body in place, and also emits a Warning Event
//! regarding the ConfigMap.
//!
//! Writing the status never fails a report: a missing permission, or an API server that does
//! not answer, is a logged warning.
//!
//! Three rooms, one job each:
//! - `record`: what the ConfigMap keeps and how, pure: its [`key`]s, the data written after
//!   an attempt (`to_data`), and a status read back (`Status`) with the last delivered body
//!   decompressed and checked against its digest.
//! - `render`: what `volunteer status` prints, pure.
//! - `store`: the Kubernetes I/O (`Store`): reading and writing the ConfigMap, and the
//!   Warning Event on a failed attempt.

mod record;
mod render;
mod store;

#[cfg(test)]
pub(crate) use record::to_data;
pub(crate) use record::{Attempt, Outcome, Status, sha256_hex};
pub use record::{BODY_KEY, StatusError, key};
pub(crate) use render::render;
pub(crate) use store::Store;
