//! The stored tables, the contract between the ingester (which writes them) and stats (which
//! reads them): nobody else declares them.
//!
//! - [`table`]: a BigQuery table reference (`bigquery://PROJECT/DATASET/TABLE`) with the
//!   characters BigQuery allows, and the names of the view and tombstones beside the table.
//! - `sqlite` (feature `sqlite`): the SQLite schema as ordered migrations, and the one
//!   [`sqlite::migrate`] that applies them; [`sqlite::check_readable`] for readers.
//! - `bigquery` (feature `bigquery`): the committed schemas and view, [`bigquery::Credentials`],
//!   and the one client constructor (with the no-credentials authenticator an emulator takes).
//!
//! The schema files live in `stored/schema/`.
#![warn(missing_docs)]

#[cfg(feature = "bigquery")]
pub mod bigquery;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod table;

pub use table::{TOMBSTONES_SUFFIX, TableRef, VIEW_SUFFIX};
