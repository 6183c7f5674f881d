//! System tests: Spartakus as its users run it — the volunteer, the gateway, NATS JetStream and
//! the ingester (and the statistics) as separate processes on loopback, talking only through their wire formats.
//!
//! - [`chaos`]: the chaos harness (a JetStream cluster, gateways and ingesters killed at seeded
//!   moments, reconciled against the sink), used by `tests/it/chaos.rs` (CI size) and
//!   `benches/chaos.rs` (longer).
//! - [`population`]: a synthetic population of clusters over past weeks (every report marked
//!   synthetic), sent by the `population` binary (for `testenv/quickstart.sh`) and by
//!   `tests/it/dashboard.rs`.
//!
//! `tests/it/e2e.rs` runs the volunteer against a real kube-apiserver and the real gateway;
//! `tests/it/attacks.rs` runs the two attacks on the published statistics (forged reports,
//! differencing) on the real binaries.
//! Every test here needs the workspace's binaries built first (`cargo build --workspace
//! --bins`, as `testenv/test.sh` does).

pub mod chaos;
pub mod population;
