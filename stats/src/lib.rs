//! Spartakus statistics: k-anonymous snapshots of what the stored reports say.
//!
//! - `config`: the flags, each with a `SPARTAKUS_*` variable, parsed into typed values.
//! - `normalize`: the rules that turn free-form strings into published labels, as data that
//!   both stores evaluate (SQLite through registered functions, BigQuery through generated SQL).
//! - `metrics`: every metric, its columns, and its SQL file.
//! - `store`: the [`store::Store`] seam and its two implementations, SQLite and BigQuery; the
//!   store aggregates, the job never reads report rows.
//! - `disclose`: the privacy rules, one pure function from raw cells to publishable cells.
//! - `snapshot`: the versioned document of one snapshot, and its CSV tables.
//! - `output`: the published directory: atomic writes, the index, the series, `latest.json`.
//! - `dashboard`: the page (HTML and CSS, charts as inline SVG), a pure function of the
//!   published files, written beside them.
//! - `serve`: the read-only HTTP server of periodic mode (`--listen`), and the job's metrics.
//! - `run`: which dates to compute, once or periodically, and backfill; the server beside it.

pub mod config;
pub mod dashboard;
pub mod disclose;
pub mod metrics;
pub mod normalize;
pub mod output;
pub mod run;
pub mod serve;
pub mod snapshot;
pub mod store;
