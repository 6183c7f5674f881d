//! The embedded store: the ingester's SQLite file, opened read-only.
//!
//! The window (`sql/sqlite/window.sql`) is materialized as TEMP tables of this connection, so
//! each metric query reads the 28 days' latest reports once normalized instead of joining the
//! stored tables again. The normalization functions are registered from
//! [`crate::normalize::FUNCTIONS`]; each keeps the labels of the distinct strings it has seen,
//! as a window has few distinct OS images or runtimes and millions of nodes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, named_params};

use super::{Computed, Query, Row, Store, StoreError, assemble, kinds_select, queries};
use crate::normalize::{FUNCTIONS, Function, Value};

/// The window's SQL for SQLite.
pub const WINDOW_SQL: &str = include_str!("../../sql/sqlite/window.sql");

/// Most distinct inputs a function remembers before it forgets them all.
const CACHE_LIMIT: usize = 100_000;

/// The ingester's SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
}

impl SqliteStore {
    /// A store reading `path` (opened on each computation, read-only).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Computes synchronously (what [`Store::compute`] runs on a blocking thread).
    pub fn compute_blocking(&self, query: Query) -> Result<Computed, StoreError> {
        let conn = open(&self.path)?;
        let rows = compute_on(&conn, query)?;
        Ok(Computed {
            raw: assemble(rows)?,
            bytes_processed: None,
        })
    }
}

impl Store for SqliteStore {
    async fn compute(&self, query: Query) -> Result<Computed, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.compute_blocking(query))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Opens the file read-only, checks it carries the ingester's schema, and registers the
/// normalization functions.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The ingester may be writing (WAL): wait for its transaction instead of failing.
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // The window's TEMP tables go to a file, not memory: 2.5 M normalized nodes would not fit
    // the job's memory limit.
    conn.pragma_update(None, "temp_store", "FILE")?;
    conn.pragma_update(None, "cache_size", -32_000)?;
    stored::sqlite::check_readable(&conn).map_err(|e| StoreError::Row {
        metric: "schema".into(),
        detail: format!("{}: {e}", path.display()),
    })?;
    register(&conn)?;
    Ok(conn)
}

/// Registers every normalization function on `conn`.
pub fn register(conn: &Connection) -> Result<(), StoreError> {
    // BigQuery's DIV(x, y): integer division rounding toward zero (the clipped node counts).
    conn.create_scalar_function(
        "div",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let (x, y): (Option<i64>, Option<i64>) = (ctx.get(0)?, ctx.get(1)?);
            Ok(match (x, y) {
                (Some(x), Some(y)) if y != 0 => Some(x / y),
                _ => None,
            })
        },
    )?;
    for function in FUNCTIONS {
        let cache: Mutex<HashMap<String, SqlValue>> = Mutex::new(HashMap::new());
        conn.create_scalar_function(
            function.name,
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            move |ctx| {
                let input = match ctx.get_raw(0) {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Integer(i),
                    ValueRef::Real(r) => Value::Real(r),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(_) => Value::Null,
                };
                let Value::Text(key) = &input else {
                    return Ok(to_sql(function.eval(&input)));
                };
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(v) = cache.get(key) {
                    return Ok(v.clone());
                }
                let out = to_sql(function.eval(&input));
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(key.clone(), out.clone());
                Ok(out)
            },
        )?;
    }
    Ok(())
}

fn to_sql(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Text(s) => SqlValue::Text(s),
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
    }
}

/// Evaluates one function through SQLite, for the contract test of the two dialects.
pub fn eval_in_sqlite(conn: &Connection, function: &Function, input: &Value) -> Value {
    let arg = match input {
        Value::Null => SqlValue::Null,
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Real(r) => SqlValue::Real(*r),
    };
    conn.query_row(&format!("SELECT {}(?1)", function.name), [arg], |r| {
        Ok(match r.get_ref(0)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(_) => Value::Null,
        })
    })
    .unwrap_or(Value::Null)
}

/// Builds the window and runs every query on `conn`.
pub fn compute_on(conn: &Connection, query: Query) -> Result<Vec<Row>, StoreError> {
    let window = query.bind(&WINDOW_SQL.replace("{kinds}", &kinds_select()));
    let start = query.window.start().as_second();
    let end = query.window.end().as_second();
    let synthetic = i64::from(query.include_synthetic);
    for statement in statements(&window) {
        let mut stmt = conn.prepare(statement)?;
        let names: Vec<String> = (1..=stmt.parameter_count())
            .filter_map(|i| stmt.parameter_name(i).map(str::to_owned))
            .collect();
        let mut params: Vec<(&str, &dyn rusqlite::ToSql)> = Vec::new();
        for name in &names {
            match name.as_str() {
                ":start" => params.push((":start", &start)),
                ":end" => params.push((":end", &end)),
                ":synthetic" => params.push((":synthetic", &synthetic)),
                _ => {}
            }
        }
        stmt.execute(params.as_slice())?;
    }
    let mut rows = Vec::new();
    for (metric, sql) in queries(&query) {
        let mut stmt = conn.prepare(&sql)?;
        let mapped = stmt.query_map(named_params! {}, |r| {
            Ok(Row {
                metric: metric.to_owned(),
                labels: [r.get(0)?, r.get(1)?, r.get(2)?],
                clusters: r.get(3)?,
                nodes: r.get(4)?,
                max_nodes: r.get(5)?,
            })
        })?;
        for row in mapped {
            rows.push(row?);
        }
    }
    Ok(rows)
}

/// The statements of a SQL file: separated by a `;` at the end of a line, comments dropped.
fn statements(sql: &str) -> Vec<&str> {
    sql.split(";\n")
        .map(str::trim)
        .filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        })
        .map(|s| s.trim_end_matches(';'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_splits_into_statements_without_comments_only_ones() {
        let s = statements(WINDOW_SQL);
        assert!(s.len() > 20, "{}", s.len());
        assert!(s.iter().all(|s| !s.trim_end().ends_with(';')));
    }
}
