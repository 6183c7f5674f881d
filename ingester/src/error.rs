//! Errors at the ingester's boundaries. Retry policy lives in the error: `SinkError::is_retryable`
//! decides between a nak with a delay and giving up on a row.

/// Why a sink could not write (a whole batch, or one row).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// SQLite refused or failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite writer thread is gone (it panicked or the sink was dropped).
    #[error("sqlite writer thread stopped")]
    WriterGone,
    /// The database's schema is not the one this ingester writes: a newer ingester migrated
    /// it (at start, or while this one ran).
    #[error(
        "sqlite: the database has schema version {found}, this ingester writes version {supported} (migrated by a newer ingester?)"
    )]
    SchemaVersion {
        /// The database's `user_version`.
        found: usize,
        /// The newest schema version this ingester writes.
        supported: usize,
    },
    /// A BigQuery API call failed; `status` is the HTTP status when there was a response.
    #[error("bigquery{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    BigQuery {
        /// The HTTP status, if a response arrived.
        status: Option<u16>,
        /// What BigQuery (or the transport) said.
        message: String,
    },
    /// The existing BigQuery table cannot take our rows (a column of another type or mode).
    #[error("bigquery schema: {0}")]
    Schema(String),
    /// Writing to stdout failed.
    #[error("stdout: {0}")]
    Io(#[from] std::io::Error),
}

impl From<stored::sqlite::SchemaError> for SinkError {
    fn from(e: stored::sqlite::SchemaError) -> Self {
        match e {
            stored::sqlite::SchemaError::Newer { found, supported } => {
                SinkError::SchemaVersion { found, supported }
            }
            stored::sqlite::SchemaError::Older { found, needed } => SinkError::SchemaVersion {
                found,
                supported: needed,
            },
            stored::sqlite::SchemaError::Sqlite(e) => SinkError::Sqlite(e),
        }
    }
}

impl SinkError {
    /// Whether trying again later may succeed. A retryable failure naks the reports with a
    /// growing delay; one that is not sends them to the dead-letter subject.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            SinkError::Sqlite(e) => sqlite_retryable(e),
            // Retried by another replica, or by this one once restarted (see `is_fatal`).
            SinkError::WriterGone | SinkError::SchemaVersion { .. } | SinkError::Io(_) => true,
            // No response: a network failure. 403 is how BigQuery reports quota and rate
            // limits; 401 and 404 can heal (token refresh, table recreated at restart).
            SinkError::BigQuery { status, .. } => match status {
                None => true,
                Some(s) => matches!(s, 401 | 403 | 404 | 408 | 409 | 429) || *s >= 500,
            },
            // Someone must fix the table; until then, keep the reports queued.
            SinkError::Schema(_) => true,
        }
    }
}

impl SinkError {
    /// Whether this sink can never write again in this process: the consumer naks what it
    /// holds and stops, and the ingester exits non-zero so that it is restarted, instead of
    /// nakking every report forever.
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(
            self,
            SinkError::WriterGone | SinkError::SchemaVersion { .. }
        )
    }
}

fn sqlite_retryable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        // Row data SQLite will never accept.
        Some(ConstraintViolation | TooBig | TypeMismatch | ParameterOutOfRange) => false,
        // Busy, locked, disk full, I/O errors, …: the environment, not the row.
        Some(_) => true,
        // Conversion errors (e.g. an integer beyond i64) are about the row.
        None => !matches!(
            e,
            rusqlite::Error::ToSqlConversionFailure(_)
                | rusqlite::Error::IntegralValueOutOfRange(..)
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bq(status: Option<u16>) -> SinkError {
        SinkError::BigQuery {
            status,
            message: String::new(),
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retried_bad_requests_are_not() {
        for s in [429, 500, 502, 503, 504, 403] {
            assert!(bq(Some(s)).is_retryable(), "{s}");
        }
        assert!(bq(None).is_retryable());
        assert!(!bq(Some(400)).is_retryable());
    }

    #[test]
    fn only_a_sink_that_cannot_write_again_is_fatal() {
        assert!(SinkError::WriterGone.is_fatal());
        assert!(
            SinkError::SchemaVersion {
                found: 9,
                supported: 1
            }
            .is_fatal()
        );
        assert!(!bq(Some(503)).is_fatal());
        assert!(!bq(Some(400)).is_fatal());
    }

    #[test]
    fn a_busy_database_is_retried_a_constraint_violation_is_not() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(SinkError::from(busy).is_retryable());
        let constraint = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(!SinkError::from(constraint).is_retryable());
    }
}
