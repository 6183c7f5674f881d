//! Real servers for tests, on free loopback ports in temporary folders, stopped on drop.
//!
//! The binaries are built from the Go module proxy by `testenv/build.sh`; [`bin_dir`] says where
//! they are looked for.
//!
//! - `binaries`: locating the server binaries ([`bin_dir`]).
//! - `process`: one server process under a watchdog that kills it when this process dies, its
//!   log, readiness polling with a deadline, free ports; a server that dies unasked fails the
//!   test with its log ([`Error::Died`]).
//! - `nats`: [`Nats`], a JetStream server, and [`NatsCluster`], a JetStream cluster, both with
//!   `sync_interval: always` unless [`NatsOptions`] say otherwise.
//! - `lazyfs`: [`LazyFs`], a FUSE filesystem that keeps unsynced writes in memory and drops
//!   them on command, as a power loss would.
//! - `kube_api`: [`KubeApi`], etcd + kube-apiserver with RBAC, an admin kubeconfig and
//!   ServiceAccount tokens.
//! - `kube_proxy`: [`KubeProxy`], a proxy in front of kube-apiserver that records requests and
//!   injects the answers the real server cannot be made to give (an expired continue token's
//!   410, no `remainingItemCount`, no Tables, Tables without an AGE column).
//! - `cluster_fixture`: [`ClusterFixture`], a realistic cluster to create in a [`KubeApi`], with
//!   the identifying strings that must never leave it and what a report says about its nodes.
//! - `bigquery`: [`BigQuery`], the BigQuery emulator, and its query helper.
//! - `bigquery_proxy`: [`BigQueryProxy`], a proxy in front of the emulator that records requests
//!   and injects the failures the emulator never answers (failed or rejected insertAll, a DML
//!   DELETE refused over the streaming buffer).
//! - `ours`: this workspace's binaries (gateway, ingester, stats, volunteer) as test processes:
//!   [`Launch`] to [`Service`] (a server, ready by its readiness route) or [`Finished`] (a command
//!   run to its end).
//! - `stall_proxy`: [`StallProxy`], a TCP proxy that stops answering on command (a server
//!   that accepts a connection and never answers), for testing deadlines.
//! - `sockets`: [`PortSockets`], a listening port's accepted and queued connections.
//! - `cgroup`: [`MemoryCgroup`], a cgroup v1 memory limit for a child process (a pod's limit),
//!   its peak and its OOM kills.
//! - `eventually`: [`eventually()`], polling a condition with a deadline.
//! - `cli`: `testenv up [nats|kube|bigquery|all]` ([`cli::run`]).

mod bigquery;
mod bigquery_proxy;
mod binaries;
mod cgroup;
pub mod cli;
mod cluster_fixture;
mod eventually;
mod kube_api;
mod kube_proxy;
mod lazyfs;
mod nats;
mod ours;
mod process;
mod sockets;
mod stall_proxy;

use std::path::PathBuf;
use std::process::ExitStatus;

pub use bigquery::BigQuery;
pub use bigquery_proxy::{BigQueryProxy, InsertAll};
pub use binaries::{bin_dir, workspace_bin};
pub use cgroup::{MemoryCgroup, MemoryUsage};
pub use cluster_fixture::{ClusterFixture, ExpectedNode};
pub use eventually::{eventually, try_eventually};
pub use kube_api::KubeApi;
pub use kube_proxy::{KubeFault, KubeProxy, KubeRequest};
pub use lazyfs::LazyFs;
pub use nats::{Nats, NatsCluster, NatsOptions, NatsSync};
pub use ours::{Finished, GATEWAY_NODE_ID_KEY, Launch, READY_TIMEOUT, Service};
pub use sockets::PortSockets;
pub use stall_proxy::StallProxy;

/// Why a server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary is not built yet.
    #[error("{name} not found in {}: run testenv/build.sh (or set SPARTAKUS_TESTENV_BIN)", dir.display())]
    MissingBinary {
        /// The binary's file name.
        name: &'static str,
        /// The folder it was looked for in.
        dir: PathBuf,
    },
    /// A binary of this workspace is not built yet.
    #[error("{name} not found next to the test executable: run `cargo build --workspace --bins`")]
    MissingWorkspaceBinary {
        /// The binary's name.
        name: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited before it was ready.
    #[error("{server} exited ({status}) before it was ready; last lines of {}:\n{tail}", log.display())]
    Exited {
        /// Which server.
        server: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The server died after it was ready, without being stopped through its handle.
    #[error("{server} died unexpectedly ({}); last lines of {}:\n{tail}", process::describe(status), log.display())]
    Died {
        /// Which server.
        server: &'static str,
        /// How it exited (its watchdog's status: 128 + the signal if a signal killed it).
        status: ExitStatus,
        /// Its log file (gone if the server's folder was removed when it died).
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The server did not become ready before the deadline.
    #[error("{server} not ready after {secs}s ({reason}); last lines of {}:\n{tail}", log.display())]
    NotReady {
        /// Which server.
        server: &'static str,
        /// The deadline, in seconds.
        secs: u64,
        /// The last readiness probe's failure.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// Generating a key or certificate failed.
    #[error("generating a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// Reading a kubeconfig failed.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// Whether a server exited because a port chosen for it was taken meanwhile (Go servers
    /// log "bind: address already in use"): then a start is retried on other ports.
    pub(crate) fn is_port_conflict(&self) -> bool {
        matches!(self, Self::Exited { tail, .. } if tail.contains("address already in use"))
    }

    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
