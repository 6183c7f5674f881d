//! Spartakus statistics: differentially private snapshots of what the stored reports say.
//!
//! - `config`: the flags, each with a `SPARTAKUS_*` variable, parsed into typed values.
//! - `normalize`: the rules that turn free-form strings into published labels, as data that
//!   both stores evaluate (SQLite through registered functions, BigQuery through generated SQL).
//! - `metrics`: every metric, its columns, and its SQL file.
//! - `store`: the [`store::Store`] seam and its two implementations, SQLite and BigQuery; the
//!   store aggregates, the job never reads report rows.
//! - `privacy`: the guarantee: the budget, its split, the noise (a vetted exact sampler) and
//!   what it adds up to.
//! - `disclose`: the one step from raw cells to published ones: noise, partition selection,
//!   consistent non-negative integers.
//! - `ledger`: every release and its cost; a snapshot is released once.
//! - `snapshot`: the versioned document of one snapshot, and its CSV tables.
//! - `output`: the published directory: atomic writes, the index, the series, `latest.json`.
//! - `dashboard`: the page (HTML and CSS, charts as inline SVG), a pure function of the
//!   published files, written beside them.
//! - `serve`: the read-only HTTP server of periodic mode (`--listen`), and the job's metrics.
//! - `calendar`: which days are over, publication days under a cadence, the snapshot a round
//!   owes.
//! - `run`: which dates to compute, once or periodically, and backfill; the server beside it.

mod calendar;
pub mod config;
pub mod dashboard;
pub mod disclose;
pub mod ledger;
pub mod metrics;
pub mod normalize;
pub mod output;
pub mod privacy;
pub mod run;
mod serve;
pub mod snapshot;
pub mod store;
