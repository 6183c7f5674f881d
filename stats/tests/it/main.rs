//! Stats' integration tests: the real binary, both stores (SQLite written by the real ingester, the BigQuery emulator), the published formats and the privacy guarantees.
//!
//! One integration-test binary per crate: each extra binary links the world again.

mod cli;
mod common;
mod dashboard;
mod deadlines;
mod formats;
mod no_trace;
mod periodic;
mod privacy;
mod rules;
mod serve;
mod stores;
