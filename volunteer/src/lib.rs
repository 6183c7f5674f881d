//! The Spartakus volunteer: reads a Kubernetes cluster, keeps only anonymous statistics,
//! and sends them to a collector.
//!
//! - [`config`]: flags and environment variables, validated into [`config::Settings`].
//! - [`collect`]: the only Kubernetes I/O for the report: version, nodes, namespaces,
//!   workload counts.
//! - [`table`]: the API server's Table form of a list (a printed row per object) and its AGE
//!   column read back into seconds.
//! - [`snapshot`]: what was collected, as plain values.
//! - [`omit`]: what the operator may leave out (`--omit`), named as the report's sections.
//! - `consent`: the report-content version accepted (`--consent`), what is left out for it,
//!   and `volunteer consent`.
//! - [`anonymize`]: the pure function from a snapshot and a key to the report sent; the
//!   erasure secret.
//! - [`extensions`]: the operator's key/value extensions file or directory.
//! - [`send`]: gzip, POST, retries with backoff and a deadline.
//! - [`status`]: the status ConfigMap (what was sent, when, with what outcome) and the
//!   Event on failure.
//! - [`compare`]: `volunteer status --compare URL`, the cluster among the published
//!   statistics (two GETs of public files, nothing identifying sent).
//! - [`skew`]: the cluster's version skew against Kubernetes' policy, judged locally (pure).
//! - [`diff`]: the pure comparison of the next report with the last one delivered (`--diff`).
//! - `forget`: the erasure request (`volunteer forget`).
//! - [`run`](mod@run): the clients and the report loop.

pub mod anonymize;
pub mod collect;
pub mod compare;
pub mod config;
pub(crate) mod consent;
pub mod diff;
pub mod extensions;
pub(crate) mod forget;
pub mod omit;
pub mod run;
pub mod send;
pub mod skew;
pub mod snapshot;
pub mod status;
pub mod table;

pub use config::Config;
