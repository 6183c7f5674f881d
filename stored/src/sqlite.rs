//! The SQLite schema: `schema/sqlite.sql` (migration 1), `schema/sqlite-2.sql` (2: erasure
//! checks and tombstones) and `schema/sqlite-3.sql` (3: sampled per-namespace histograms),
//! applied in order by [`migrate`] and recorded in `PRAGMA user_version`.
//!
//! The ingester migrates the file it writes; stats opens it read-only and checks it with
//! [`check_readable`]; tests and benches build their databases with [`migrate`] too, so no
//! schema exists that production never has.

use rusqlite::{Connection, TransactionBehavior};

/// Migrations in order; migration `i` brings `user_version` from `i` to `i + 1`. Never edit one
/// that has shipped: append a new one.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../schema/sqlite.sql"),
    include_str!("../schema/sqlite-2.sql"),
    include_str!("../schema/sqlite-3.sql"),
];

/// The schema version [`migrate`] brings a file to.
pub const LATEST: usize = MIGRATIONS.len();

/// The tables holding a report's child rows, each keyed by `report` first; deleted before the
/// report row itself.
pub const CHILD_TABLES: &[&str] = &[
    "capacity",
    "nodes",
    "extensions",
    "workload_buckets",
    "workloads",
    "skipped",
];

/// Why a file's schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file's schema is newer than this program knows (a newer ingester migrated it).
    #[error(
        "sqlite: the database has schema version {found}, this program knows up to version {supported} (migrated by a newer ingester?)"
    )]
    Newer {
        /// The file's `user_version`.
        found: usize,
        /// [`LATEST`].
        supported: usize,
    },
    /// The file's schema is older than a reader needs (no ingester of this release wrote it
    /// since), or it is not a Spartakus database at all (version 0).
    #[error(
        "sqlite: the database has schema version {found}, a reader needs version {needed} (run this release's ingester on it once, or it is not a Spartakus store)"
    )]
    Older {
        /// The file's `user_version`.
        found: usize,
        /// [`LATEST`].
        needed: usize,
    },
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The file's schema version (`PRAGMA user_version`).
pub fn version(conn: &Connection) -> Result<usize, rusqlite::Error> {
    conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// Applies the migrations the file has not seen yet, in one immediate transaction; a file
/// already newer than [`LATEST`] is refused and left unchanged.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > LATEST {
        return Err(SchemaError::Newer {
            found,
            supported: LATEST,
        });
    }
    for sql in &MIGRATIONS[found..] {
        tx.execute_batch(sql)?;
    }
    // LATEST is the length of a short constant list.
    tx.pragma_update(None, "user_version", LATEST as i64)?;
    tx.commit()?;
    Ok(())
}

/// Checks that a reader of this release can read the file: exactly [`LATEST`].
pub fn check_readable(conn: &Connection) -> Result<(), SchemaError> {
    match version(conn)? {
        LATEST => Ok(()),
        found if found > LATEST => Err(SchemaError::Newer {
            found,
            supported: LATEST,
        }),
        found => Err(SchemaError::Older {
            found,
            needed: LATEST,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_new_file_is_migrated_to_the_latest_version_once_and_a_newer_one_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(matches!(
            check_readable(&conn),
            Err(SchemaError::Older { found: 0, .. })
        ));
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        check_readable(&conn).unwrap();
        // Again: nothing to do.
        migrate(&mut conn).unwrap();
        for table in ["reports", "nodes", "tombstones"]
            .iter()
            .chain(CHILD_TABLES)
        {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{table}");
        }
        conn.pragma_update(None, "user_version", LATEST as i64 + 1)
            .unwrap();
        let e = migrate(&mut conn).unwrap_err();
        assert!(matches!(e, SchemaError::Newer { .. }), "{e}");
        assert_eq!(version(&conn).unwrap(), LATEST + 1, "left unchanged");
        assert!(check_readable(&conn).is_err());
    }

    #[test]
    fn an_older_file_gains_only_the_migrations_it_lacks() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let e = check_readable(&conn).unwrap_err().to_string();
        assert!(
            e.contains("version 1") && e.contains("needs version"),
            "{e}"
        );
        migrate(&mut conn).unwrap();
        check_readable(&conn).unwrap();
    }
}
