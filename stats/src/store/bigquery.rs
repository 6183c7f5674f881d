//! The warehouse store: one BigQuery query job per snapshot.
//!
//! The job reads the ingester's view `TABLE_deduplicated` (`stored/schema/bigquery-view.sql`:
//! one row per report; insertAll's deduplication is best-effort), filtered on `receivedAt` to
//! the window, so it touches only the window's day partitions; the table requires that filter.
//! The normalization functions are declared as `CREATE TEMP FUNCTION`s generated from
//! [`crate::normalize::FUNCTIONS`], the window is `sql/bigquery/window.sql`, and every metric's
//! query is one branch of a `UNION ALL`, so the warehouse scans the window once and returns
//! only the aggregated cells.

use std::time::Duration;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_row::TableRow;
use jiff::Timestamp;

use super::{Computed, Query, Row, Store, StoreError, assemble, kinds_select, queries};
use crate::normalize::bigquery_prelude;

/// The window's SQL for BigQuery (common table expressions).
pub const WINDOW_SQL: &str = include_str!("../../sql/bigquery/window.sql");

/// How long a query job may run before the snapshot fails.
const JOB_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// How long one jobs.query or getQueryResults call asks BigQuery to wait (`timeoutMs`).
#[allow(clippy::cast_possible_truncation)] // 10 s in milliseconds
const LONG_POLL_MS: i32 = stored::bigquery::LONG_POLL.as_millis() as i32;

pub use stored::TableRef;
pub use stored::bigquery::Credentials;

/// Reads the ingester's BigQuery table through its deduplicating view.
#[derive(Clone)]
pub struct BigQueryStore {
    client: Client,
    table: TableRef,
}

impl std::fmt::Debug for BigQueryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQueryStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl BigQueryStore {
    /// A client for `table`, at `endpoint` (the v2 API base URL) if given.
    pub async fn connect(
        table: TableRef,
        endpoint: Option<&str>,
        credentials: &Credentials,
    ) -> Result<Self, StoreError> {
        let client =
            stored::bigquery::client(endpoint, credentials, stored::bigquery::REQUEST_TIMEOUT)
                .await
                .map_err(|e| StoreError::BigQuery(format!("connecting: {e}")))?;
        Ok(Self { client, table })
    }

    /// The whole query job's SQL for `query`.
    pub fn sql(&self, query: Query) -> String {
        query_sql(&self.table, query)
    }
}

/// The query job's SQL: temp functions, the window, one `UNION ALL` branch per query.
pub fn query_sql(table: &TableRef, query: Query) -> String {
    let window = WINDOW_SQL
        .replace("{table}", &table.view_sql())
        .replace("{start}", &timestamp_literal(query.window.start()))
        .replace("{end}", &timestamp_literal(query.window.end()))
        .replace(
            "{synthetic}",
            if query.include_synthetic {
                "TRUE"
            } else {
                "FALSE"
            },
        )
        .replace("{kinds}", &kinds_select());
    let window = query.bind(&window);
    let mut ctes = vec![window.trim_end().to_owned()];
    let mut branches = Vec::new();
    for (i, (metric, sql)) in queries(&query).enumerate() {
        ctes.push(format!("q{i} AS (\n{}\n)", sql.trim_end()));
        branches.push(format!(
            "SELECT '{metric}' AS metric, a, b, c, clusters, nodes, max_nodes FROM q{i}"
        ));
    }
    format!(
        "{}\nWITH\n{}\n{}",
        bigquery_prelude(),
        ctes.join(",\n"),
        branches.join("\nUNION ALL\n")
    )
}

fn timestamp_literal(t: Timestamp) -> String {
    format!("TIMESTAMP '{}'", t.strftime("%Y-%m-%d %H:%M:%S+00"))
}

impl Store for BigQueryStore {
    async fn compute(&self, query: Query) -> Result<Computed, StoreError> {
        let sql = self.sql(query);
        let project = self.table.project.as_str();
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        request.use_query_cache = Some(false);
        request.timeout_ms = Some(LONG_POLL_MS);
        let response = self
            .client
            .job()
            .query(project, request)
            .await
            .map_err(|e| StoreError::BigQuery(short(&e.to_string())))?;
        let mut bytes = response.total_bytes_processed.clone();
        let mut rows: Vec<TableRow> = Vec::new();
        let mut complete = response.job_complete.unwrap_or(false);
        let mut page_token = response.page_token.clone();
        if complete {
            rows.extend(response.rows.unwrap_or_default());
        }
        let job_id = response.job_reference.and_then(|r| r.job_id);
        let location = None::<String>;
        let deadline = tokio::time::Instant::now() + JOB_DEADLINE;
        // Poll until the job is done, then page through the (few hundred) result rows.
        while !complete || page_token.is_some() {
            let Some(job_id) = job_id.as_deref() else {
                return Err(StoreError::BigQuery("the query job has no ID".into()));
            };
            if tokio::time::Instant::now() > deadline {
                return Err(StoreError::BigQuery(format!(
                    "query job {job_id} not done after {JOB_DEADLINE:?}"
                )));
            }
            let page = self
                .client
                .job()
                .get_query_results(
                    project,
                    job_id,
                    GetQueryResultsParameters {
                        page_token: if complete { page_token.clone() } else { None },
                        location: location.clone(),
                        timeout_ms: Some(LONG_POLL_MS),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| StoreError::BigQuery(short(&e.to_string())))?;
            if !page.job_complete.unwrap_or(false) {
                continue;
            }
            if page.total_bytes_processed.is_some() {
                bytes = page.total_bytes_processed.clone();
            }
            if !complete {
                // The first complete answer starts the rows afresh.
                rows.clear();
                complete = true;
            }
            rows.extend(page.rows.unwrap_or_default());
            page_token = page.page_token;
        }
        let rows = rows
            .into_iter()
            .map(parse_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Computed {
            raw: assemble(rows)?,
            bytes_processed: bytes.and_then(|b| b.parse().ok()),
        })
    }
}

/// BigQuery's errors quote the whole query; the end says what went wrong.
fn short(message: &str) -> String {
    const KEEP: usize = 600;
    if message.len() <= 2 * KEEP {
        return message.to_owned();
    }
    let start = message.floor_char_boundary(KEEP);
    let end = message.ceil_char_boundary(message.len() - KEEP);
    format!("{} … {}", &message[..start], &message[end..])
}

fn parse_row(row: TableRow) -> Result<Row, StoreError> {
    let cells: Vec<serde_json::Value> = row
        .columns
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.value.unwrap_or(serde_json::Value::Null))
        .collect();
    let bad = |detail: String| StoreError::Row {
        metric: cells
            .first()
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned(),
        detail,
    };
    if cells.len() != 7 {
        return Err(bad(format!("{} columns, expected 7", cells.len())));
    }
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let int = |v: &serde_json::Value| -> Result<Option<i64>, StoreError> {
        match v {
            serde_json::Value::Null => Ok(None),
            // BigQuery sends INT64 as a JSON string.
            serde_json::Value::String(s) => s
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("not an integer: {s:?}"))),
            serde_json::Value::Number(n) => Ok(n.as_i64()),
            other => Err(bad(format!("not an integer: {other}"))),
        }
    };
    Ok(Row {
        metric: text(&cells[0]).ok_or_else(|| bad("no metric name".into()))?,
        labels: [text(&cells[1]), text(&cells[2]), text(&cells[3])],
        clusters: int(&cells[4])?,
        nodes: int(&cells[5])?,
        max_nodes: int(&cells[6])?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::Window;

    #[test]
    fn table_names_are_checked_before_they_reach_sql() {
        // The rules are stored::TableRef's (tested there); these are the ones SQL relies on.
        assert!(TableRef::parse("my-project/spartakus/reports").is_ok());
        assert!(TableRef::parse("my-project/d").is_err());
        assert!(TableRef::parse("my-project/d/t`; DROP").is_err());
        assert!(TableRef::parse("my-project/d-x/t").is_err());
    }

    #[test]
    fn the_job_filters_the_view_on_received_at_only_by_constants() {
        let t = TableRef::parse("my-project/d/reports").unwrap();
        let sql = query_sql(
            &t,
            Query {
                window: Window {
                    date: "2026-11-29".parse().unwrap(),
                    days: 28,
                },
                include_synthetic: false,
                node_clip: 20,
                report_clip: 28,
            },
        );
        assert!(sql.contains("FROM `my-project.d.reports_deduplicated` AS r"));
        assert!(sql.contains("r.receivedAt >= TIMESTAMP '2026-11-02 00:00:00+00'"));
        assert!(sql.contains("r.receivedAt < TIMESTAMP '2026-11-30 00:00:00+00'"));
        assert!(sql.contains("LEAST(n, 28)") && sql.contains("DIV(per_cluster.n * 20,"));
        for placeholder in [
            "{table}",
            "{start}",
            "{end}",
            "{synthetic}",
            "{kinds}",
            "{node_clip}",
            "{report_clip}",
        ] {
            assert!(!sql.contains(placeholder), "{placeholder} filled");
        }
        assert!(!sql.contains("`p.d.reports`"), "never the table itself");
    }
}
