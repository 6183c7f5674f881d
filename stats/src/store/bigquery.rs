//! The warehouse store: one BigQuery query job per snapshot.
//!
//! The job reads the ingester's view `TABLE_deduplicated` (`stored/schema/bigquery-view.sql`:
//! one row per report; insertAll's deduplication is best-effort), filtered on `receivedAt` to
//! the window, so it touches only the window's day partitions; the table requires that filter.
//! The normalization functions are declared as `CREATE TEMP FUNCTION`s generated from
//! [`crate::normalize::FUNCTIONS`], the window is `sql/bigquery/window.sql`, and every metric's
//! query is one branch of a `UNION ALL`, so the warehouse scans the window once and returns
//! only the aggregated cells.
//!
//! Two deadlines bound the job ([`Deadlines`]): every HTTP request is abandoned after
//! `--bigquery-request-timeout`, and the whole job (creating it, every poll, every page of
//! results) runs under one `--job-deadline`, which holds even while a request is in flight: a
//! server that accepts the connection and never answers fails the snapshot instead of stalling
//! it. A job that overruns is cancelled (best effort, itself bounded by [`CANCEL_DEADLINE`]).

use std::time::Duration;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_row::TableRow;
use jiff::Timestamp;

use super::{Computed, Query, Row, Store, StoreError, assemble, kinds_select, queries};
use crate::normalize::bigquery_prelude;

/// The window's SQL for BigQuery (common table expressions).
pub const WINDOW_SQL: &str = include_str!("../../sql/bigquery/window.sql");

/// How long a query job may run before the snapshot fails, unless `--job-deadline` says.
pub const JOB_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// How long the best-effort jobs.cancel of a job that overran its deadline may take.
pub const CANCEL_DEADLINE: Duration = Duration::from_secs(10);

/// The deadlines of the store's calls to BigQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Every HTTP request, connecting included (`--bigquery-request-timeout`); longer than
    /// [`stored::bigquery::LONG_POLL`], or every healthy long poll would be cut.
    pub request: Duration,
    /// The whole query job, from creating it to its last page of results (`--job-deadline`).
    pub job: Duration,
}

impl Deadlines {
    /// The defaults of the flags.
    pub const DEFAULT: Deadlines = Deadlines {
        request: stored::bigquery::REQUEST_TIMEOUT,
        job: JOB_DEADLINE,
    };
}

impl Default for Deadlines {
    fn default() -> Self {
        Self::DEFAULT
    }
}

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
    deadlines: Deadlines,
}

impl std::fmt::Debug for BigQueryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQueryStore")
            .field("table", &self.table)
            .field("deadlines", &self.deadlines)
            .finish_non_exhaustive()
    }
}

impl BigQueryStore {
    /// A client for `table`, at `endpoint` (the v2 API base URL) if given, with the default
    /// [`Deadlines`].
    pub async fn connect(
        table: TableRef,
        endpoint: Option<&str>,
        credentials: &Credentials,
    ) -> Result<Self, StoreError> {
        Self::connect_with(table, endpoint, credentials, Deadlines::DEFAULT).await
    }

    /// [`BigQueryStore::connect`] with these deadlines.
    pub async fn connect_with(
        table: TableRef,
        endpoint: Option<&str>,
        credentials: &Credentials,
        deadlines: Deadlines,
    ) -> Result<Self, StoreError> {
        let client = stored::bigquery::client(endpoint, credentials, deadlines.request)
            .await
            .map_err(|e| StoreError::BigQuery(format!("connecting: {e}")))?;
        Ok(Self {
            client,
            table,
            deadlines,
        })
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

/// The job BigQuery created, once jobs.query has answered: what jobs.cancel needs.
#[derive(Debug, Default)]
struct JobRef {
    id: Option<String>,
    location: Option<String>,
}

impl Store for BigQueryStore {
    async fn compute(&self, query: Query) -> Result<Computed, StoreError> {
        let deadline = tokio::time::Instant::now() + self.deadlines.job;
        let mut job = JobRef::default();
        // One deadline for the whole job, requests in flight included: dropping the future
        // abandons whatever request it was waiting on.
        match tokio::time::timeout_at(deadline, self.run_job(query, &mut job)).await {
            Ok(result) => result,
            Err(_) => {
                let cancelled = self.cancel(&job).await;
                Err(StoreError::BigQuery(format!(
                    "the query job did not finish within the job deadline of {} (--job-deadline); {cancelled}",
                    humantime::format_duration(self.deadlines.job)
                )))
            }
        }
    }
}

impl BigQueryStore {
    /// Creates the job, polls it until done and reads every page of its results; notes the
    /// job's ID in `job` as soon as BigQuery gives it.
    async fn run_job(&self, query: Query, job: &mut JobRef) -> Result<Computed, StoreError> {
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
            .map_err(|e| self.error("jobs.query", &e))?;
        let mut bytes = response.total_bytes_processed.clone();
        let mut rows: Vec<TableRow> = Vec::new();
        let mut complete = response.job_complete.unwrap_or(false);
        let mut page_token = response.page_token.clone();
        if complete {
            rows.extend(response.rows.unwrap_or_default());
        }
        if let Some(r) = response.job_reference {
            job.id = r.job_id;
            job.location = r.location;
        }
        // Poll until the job is done, then page through the (few hundred) result rows.
        while !complete || page_token.is_some() {
            let Some(job_id) = job.id.as_deref() else {
                return Err(StoreError::BigQuery("the query job has no ID".into()));
            };
            let page = self
                .client
                .job()
                .get_query_results(
                    project,
                    job_id,
                    GetQueryResultsParameters {
                        page_token: if complete { page_token.clone() } else { None },
                        location: job.location.clone(),
                        timeout_ms: Some(LONG_POLL_MS),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.error("jobs.getQueryResults", &e))?;
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

    /// A failed call, saying which deadline ended it when one did.
    fn error(&self, call: &str, e: &BQError) -> StoreError {
        match e {
            BQError::RequestError(e) if e.is_timeout() => StoreError::BigQuery(format!(
                "{call}: no answer within the request timeout of {} (--bigquery-request-timeout): {e}",
                humantime::format_duration(self.deadlines.request)
            )),
            e => StoreError::BigQuery(format!("{call}: {}", short(&e.to_string()))),
        }
    }

    /// Asks BigQuery to cancel `job` (best effort, within [`CANCEL_DEADLINE`]) and says what
    /// came of it, for the error and the log.
    async fn cancel(&self, job: &JobRef) -> String {
        let Some(id) = job.id.as_deref() else {
            tracing::warn!("job deadline passed before jobs.query answered: no job ID to cancel");
            return "jobs.query never answered, so there is no job ID to cancel".into();
        };
        let project = self.table.project.as_str();
        let call = self
            .client
            .job()
            .cancel_job(project, id, job.location.as_deref());
        match tokio::time::timeout(CANCEL_DEADLINE, call).await {
            Ok(Ok(_)) => {
                tracing::info!(job = id, "query job cancelled after its deadline");
                format!("query job {id} cancelled")
            }
            Ok(Err(e)) => {
                let e = self.error("jobs.cancel", &e);
                tracing::warn!(job = id, error = %e, "could not cancel the query job");
                format!("query job {id} not cancelled: {e}")
            }
            Err(_) => {
                tracing::warn!(
                    job = id,
                    deadline = %humantime::format_duration(CANCEL_DEADLINE),
                    "jobs.cancel did not answer; the query job may run on"
                );
                format!(
                    "query job {id} not cancelled: jobs.cancel did not answer within {}",
                    humantime::format_duration(CANCEL_DEADLINE)
                )
            }
        }
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
