//! The Spartakus volunteer: reads a Kubernetes cluster, keeps only anonymous statistics,
//! and sends them to a collector.
//!
//! - [`config`]: flags and environment variables, validated into [`config::Settings`].
//! - [`collect`]: the only Kubernetes I/O: version, nodes, namespaces, workload counts.
//! - [`snapshot`]: what was collected, as plain values.
//! - [`omit`]: what the operator may leave out (`--omit`), named as the report's sections.
//! - [`anonymize`]: the pure function from a snapshot and a key to the report sent.
//! - [`extensions`]: the operator's key/value extensions file or directory.
//! - [`send`]: gzip, POST, retries with backoff and a deadline.
//! - [`run`](mod@run): the clients and the report loop.

pub mod anonymize;
pub mod collect;
pub mod config;
pub mod extensions;
pub mod omit;
pub mod run;
pub mod send;
pub mod snapshot;

pub use config::Config;
pub use run::{RunError, run};
