//! The ingester's integration tests against real servers (nats-server, the BigQuery emulator) and the real binaries.
//!
//! One integration-test binary per crate: each extra binary links the world again.

mod batches;
mod bigquery;
mod common;
mod contract;
mod deadlines;
mod erasure;
mod failures;
mod health;
mod retention;
mod sqlite;
