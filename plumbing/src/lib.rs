//! Process plumbing shared by the Spartakus binaries, in one place so that the gateway, the
//! ingester and the volunteer parse their flags, log, stop and fail the same way. Each binary
//! keeps its own defaults (e.g. the volunteer logs for people, the collector for machines).
//!
//! - [`cli`]: parse the flags, or exit 64 (`EX_USAGE`) with a one-line error.
//! - [`log`]: logging, initialised once: one flat JSON object per line, or pretty lines; always
//!   on stderr (the volunteer's stdout carries reports).
//! - [`signal`]: SIGTERM and SIGINT cancel one [`CancellationToken`](tokio_util::sync::CancellationToken).
//! - [`error`]: an error with its whole cause chain, for logs and exit messages.
//! - `nats` (feature `nats`): the NATS connection from a comma-separated URL list.
//! - `probe` (feature `probe`): the `/healthz`, `/readyz` and `/metrics` routes.
//! - `serve` (feature `serve`): serving a router over HTTP/1.1 with every connection bounded
//!   (a request-head deadline, an idle deadline, a connection cap).

pub mod cli;
pub mod error;
pub mod log;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "probe")]
pub mod probe;
#[cfg(feature = "serve")]
pub mod serve;
pub mod signal;

pub use error::Chain;
