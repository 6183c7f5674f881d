//! Erasure in BigQuery: the tombstone in `TABLE_tombstones`, the DML DELETE, and the tombstones
//! the write path checks each row against.
//!
//! An erasure is carried out in three statements, each safe to repeat:
//!
//! 1. the tombstone is inserted unless present (DML, so it is in the table at once and the view
//!    `TABLE_deduplicated` hides the cluster's covered reports from then on);
//! 2. the covered reports are deleted (`DELETE … WHERE receivedAt < …`: the table requires a
//!    partition filter). BigQuery refuses DML over rows still in its streaming buffer, for up to
//!    about 90 minutes after insertAll; that refusal makes the erasure [`Erased::Pending`], and
//!    the consumer tries again later, for as long as it takes;
//! 3. once a DELETE succeeds, the erasure is done only if it ran at least the grace after the
//!    tombstone was first recorded: another replica may have checked its batch against its
//!    tombstones just before this one was written, and insert the batch just after the DELETE.
//!    The grace is longer than a replica's tombstone refresh plus a batch's write, so the
//!    DELETE after it catches such rows; until then the erasure is pending.
//!
//! The write path drops covered rows using the tombstones it holds in memory, reloaded when
//! older than [`REFRESH`] (one small query a minute, not one per batch) and extended at once by
//! the erasures this process carries out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_row::TableRow;
use report::erasure::QueuedErasure;
use tokio::sync::Mutex;

use super::from_bq;
use crate::error::SinkError;
use crate::row::Row;
use crate::sink::Erased;
use stored::TOMBSTONES_SUFFIX;
use stored::TableRef;

/// How old the tombstones the write path checks against may be.
pub(super) const REFRESH: Duration = Duration::from_secs(60);

/// How long after a tombstone was recorded a DELETE must run for the erasure to be done: more
/// than the tombstones' refresh (`REFRESH`, 1 min) plus the longest write of a batch (insertAll
/// with its retries, within `--bigquery-request-timeout`: 1 min by default, at most 5).
pub(crate) const ERASURE_GRACE: Duration = Duration::from_secs(10 * 60);

/// How long one jobs.query or getQueryResults call waits for the job.
#[allow(clippy::cast_possible_truncation)] // 10 s in milliseconds
const WAIT_MS: i32 = stored::bigquery::LONG_POLL.as_millis() as i32;

/// The tombstones as last read: the latest request second per (cluster, check).
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    requested: HashMap<(String, String), i64>,
    loaded: Option<Instant>,
}

impl Tombstones {
    /// Whether a tombstone covers `row` (the rule of `sink::covered`, to the second).
    fn covers(&self, row: &Row) -> bool {
        let Some(check) = &row.erasure_check else {
            return false;
        };
        self.requested
            .get(&(row.cluster_id.clone(), check.clone()))
            .is_some_and(|&requested| row.received_at.as_second() <= requested)
    }

    fn add(&mut self, cluster: &str, check: &str, requested: i64) {
        let latest = self
            .requested
            .entry((cluster.to_owned(), check.to_owned()))
            .or_insert(requested);
        *latest = (*latest).max(requested);
    }
}

/// The tombstones of one table, shared by the write path and the erasures.
#[derive(Debug, Default)]
pub(super) struct Cache(Mutex<Tombstones>);

impl Cache {
    /// For each row, whether a tombstone covers it; reloads the tombstones first when they are
    /// older than [`REFRESH`]. An error when they cannot be read: the batch is retried rather
    /// than written past a tombstone this process has not seen.
    pub(super) async fn covered(
        &self,
        client: &Client,
        table: &TableRef,
        job_deadline: Duration,
        rows: &[Row],
    ) -> Result<Vec<bool>, SinkError> {
        let mut tombstones = self.0.lock().await;
        if tombstones.loaded.is_none_or(|at| at.elapsed() >= REFRESH) {
            *tombstones = load(client, table, job_deadline).await?;
        }
        Ok(rows.iter().map(|r| tombstones.covers(r)).collect())
    }

    /// Loads the tombstones now (at start).
    pub(super) async fn reload(
        &self,
        client: &Client,
        table: &TableRef,
        job_deadline: Duration,
    ) -> Result<(), SinkError> {
        let loaded = load(client, table, job_deadline).await?;
        *self.0.lock().await = loaded;
        Ok(())
    }

    async fn add(&self, cluster: &str, check: &str, requested: i64) {
        self.0.lock().await.add(cluster, check, requested);
    }
}

fn tombstones_table(table: &TableRef) -> String {
    format!(
        "`{}.{}.{}{TOMBSTONES_SUFFIX}`",
        table.project, table.dataset, table.table
    )
}

async fn load(
    client: &Client,
    table: &TableRef,
    job_deadline: Duration,
) -> Result<Tombstones, SinkError> {
    let sql = format!(
        "SELECT clusterID, erasureCheck, UNIX_SECONDS(MAX(requestedAt)) FROM {} \
         GROUP BY clusterID, erasureCheck",
        tombstones_table(table)
    );
    let rows = query(client, &table.project, sql, Vec::new(), job_deadline)
        .await?
        .rows;
    let mut tombstones = Tombstones {
        requested: HashMap::with_capacity(rows.len()),
        loaded: Some(Instant::now()),
    };
    for row in rows {
        let cells = cells(&row);
        let (Some(cluster), Some(check), Some(requested)) = (
            cells.first().cloned().flatten(),
            cells.get(1).cloned().flatten(),
            cells.get(2).cloned().flatten().and_then(|s| s.parse().ok()),
        ) else {
            return Err(SinkError::BigQuery {
                status: None,
                message: "a tombstone row without clusterID, erasureCheck or requestedAt".into(),
            });
        };
        tombstones.add(&cluster, &check, requested);
    }
    Ok(tombstones)
}

/// Carries out one attempt of `erasure` (see the module's documentation).
pub(super) async fn erase(
    client: &Client,
    table: &TableRef,
    cache: &Cache,
    grace: Duration,
    job_deadline: Duration,
    erasure: &QueuedErasure,
) -> Result<Erased, SinkError> {
    let project = &table.project;
    let tombstones = tombstones_table(table);
    let cluster = &erasure.erasure.cluster_id;
    let check = &erasure.erasure.erasure_check;
    let requested = erasure.requested_at.as_second();
    // A TIMESTAMP parameter, RFC 3339 in UTC, truncated to the second (the rule's unit). Not
    // TIMESTAMP_SECONDS of an INT64 parameter: the emulator inserts that scaled by 10^-6 when
    // string parameters are bound beside it.
    let requested_at = jiff::Timestamp::from_second(requested)
        .map_err(|e| SinkError::BigQuery {
            status: None,
            message: format!("requestedAt: {e}"),
        })?
        .to_string();
    let params = || {
        vec![
            param("cluster", "STRING", cluster.clone()),
            param("check", "STRING", check.clone()),
            param("requested", "TIMESTAMP", requested_at.clone()),
        ]
    };

    let insert = format!(
        "INSERT INTO {tombstones} (clusterID, erasureCheck, requestedAt, recordedAt)
         SELECT @cluster, @check, @requested, CURRENT_TIMESTAMP()
         FROM UNNEST([1])
         WHERE NOT EXISTS (
             SELECT 1 FROM {tombstones}
             WHERE clusterID = @cluster AND erasureCheck = @check AND requestedAt = @requested)"
    );
    query(client, project, insert, params(), job_deadline).await?;
    cache.add(cluster, check, requested).await;

    let recorded = format!(
        "SELECT UNIX_SECONDS(MIN(recordedAt)) FROM {tombstones}
         WHERE clusterID = @cluster AND erasureCheck = @check AND requestedAt = @requested"
    );
    let recorded: Option<i64> = query(client, project, recorded, params(), job_deadline)
        .await?
        .rows
        .first()
        .and_then(|r| cells(r).first().cloned().flatten())
        .and_then(|s| s.parse().ok());

    // The rule of `sink::covered`, to the second; the receivedAt bound is the partition filter.
    let delete = format!(
        "DELETE FROM `{}.{}.{}`
         WHERE receivedAt < TIMESTAMP_ADD(@requested, INTERVAL 1 SECOND)
           AND clusterID = @cluster AND erasureCheck = @check",
        table.project, table.dataset, table.table
    );
    let started = jiff::Timestamp::now().as_second();
    let deleted = match query(client, project, delete, params(), job_deadline).await {
        Ok(done) => done.affected,
        Err(SinkError::BigQuery { message, .. }) if message.contains("streaming buffer") => {
            return Ok(Erased::Pending {
                not_before: Duration::ZERO,
                reason: format!(
                    "BigQuery cannot delete rows in its streaming buffer yet: {message}"
                ),
            });
        }
        Err(e) => return Err(e),
    };
    let recorded = recorded.unwrap_or(started);
    let after = u64::try_from(started.saturating_sub(recorded)).unwrap_or(0);
    let grace_left = grace.saturating_sub(Duration::from_secs(after));
    if grace_left.is_zero() {
        Ok(Erased::Done { reports: deleted })
    } else {
        Ok(Erased::Pending {
            not_before: grace_left,
            reason: format!(
                "deleted; deleting once more after {}s, for rows another replica may have been writing",
                grace.as_secs()
            ),
        })
    }
}

fn param(name: &str, kind: &str, value: String) -> QueryParameter {
    QueryParameter {
        name: Some(name.to_owned()),
        parameter_type: Some(QueryParameterType {
            array_type: None,
            struct_types: None,
            r#type: kind.to_owned(),
        }),
        parameter_value: Some(QueryParameterValue {
            array_values: None,
            struct_values: None,
            value: Some(value),
        }),
    }
}

/// What a completed query job gave.
struct Done {
    rows: Vec<TableRow>,
    /// Rows a DML statement changed, when BigQuery says (the emulator does not).
    affected: Option<u64>,
}

/// The cells of a row as strings (`None` for NULL).
fn cells(row: &TableRow) -> Vec<Option<String>> {
    row.columns
        .iter()
        .flatten()
        .map(|c| match &c.value {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
        .collect()
}

/// Runs a standard-SQL statement with named parameters and waits for its job (polling
/// getQueryResults while it runs, and reading every page of its rows), all of it within
/// `deadline`: the deadline also ends a request the server stopped answering, not only the
/// wait between polls.
async fn query(
    client: &Client,
    project: &str,
    sql: String,
    params: Vec<QueryParameter>,
    deadline: Duration,
) -> Result<Done, SinkError> {
    tokio::time::timeout(deadline, run_job(client, project, sql, params))
        .await
        .unwrap_or_else(|_| {
            Err(SinkError::BigQuery {
                status: None,
                message: format!(
                    "query job not done within {deadline:?} (--bigquery-job-deadline)"
                ),
            })
        })
}

/// [`query`] without its deadline.
async fn run_job(
    client: &Client,
    project: &str,
    sql: String,
    params: Vec<QueryParameter>,
) -> Result<Done, SinkError> {
    let mut request = QueryRequest::new(sql);
    request.use_legacy_sql = false;
    request.timeout_ms = Some(WAIT_MS);
    if !params.is_empty() {
        request.parameter_mode = Some("NAMED".into());
        request.query_parameters = Some(params);
    }
    let response = client
        .job()
        .query(project, request)
        .await
        .map_err(from_bq)?;
    if let Some(error) = response.errors.as_ref().and_then(|e| e.first())
        && response.job_complete == Some(true)
    {
        return Err(SinkError::BigQuery {
            status: None,
            message: error.message.clone().unwrap_or_default(),
        });
    }
    let mut done = Done {
        rows: response.rows.unwrap_or_default(),
        affected: response.num_dml_affected_rows.and_then(|n| n.parse().ok()),
    };
    let mut complete = response.job_complete != Some(false);
    let mut page_token = response.page_token;
    if complete && page_token.is_none() {
        return Ok(done);
    }
    let job = response.job_reference.ok_or_else(|| SinkError::BigQuery {
        status: None,
        message: "a query job without a reference".into(),
    })?;
    let job_id = job.job_id.unwrap_or_default();
    while !complete || page_token.is_some() {
        let parameters = GetQueryResultsParameters {
            format_options: None,
            location: job.location.clone(),
            max_results: None,
            page_token: page_token.clone(),
            start_index: None,
            timeout_ms: Some(WAIT_MS),
        };
        let page = client
            .job()
            .get_query_results(project, &job_id, parameters)
            .await
            .map_err(from_bq)?;
        if page.job_complete != Some(true) {
            continue;
        }
        if let Some(error) = page.errors.as_ref().and_then(|e| e.first()) {
            return Err(SinkError::BigQuery {
                status: None,
                message: error.message.clone().unwrap_or_default(),
            });
        }
        // Rows already read (a response that was complete but paged) are not read again.
        if complete {
            done.rows.extend(page.rows.unwrap_or_default());
        } else {
            done.rows = page.rows.unwrap_or_default();
        }
        done.affected = page
            .num_dml_affected_rows
            .and_then(|n| n.parse().ok())
            .or(done.affected);
        complete = true;
        page_token = page.page_token;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(cluster: &str, check: Option<&str>, received: i64) -> Row {
        let report = report::decode(br#"{"version":"v2","clusterID":"c"}"#).unwrap();
        let env = report::Envelope::new(
            report::ReportId::random(),
            jiff::Timestamp::from_second(received).unwrap(),
            report,
        );
        let mut row = crate::row::from_envelope(report::Envelope::decode(&env.encode()).unwrap());
        row.cluster_id = cluster.into();
        row.erasure_check = check.map(str::to_owned);
        row
    }

    #[test]
    fn a_tombstone_covers_its_clusters_reports_with_its_check_up_to_its_second() {
        let mut t = Tombstones::default();
        t.add("c", "x", 100);
        t.add("c", "x", 50); // an older request changes nothing
        assert!(t.covers(&row("c", Some("x"), 100)));
        assert!(t.covers(&row("c", Some("x"), 1)));
        assert!(
            !t.covers(&row("c", Some("x"), 101)),
            "sent after the request"
        );
        assert!(!t.covers(&row("c", Some("y"), 1)), "another check");
        assert!(!t.covers(&row("d", Some("x"), 1)), "another cluster");
        assert!(!t.covers(&row("c", None, 1)), "a v1 report");
        for (r, want) in [(100, true), (101, false)] {
            assert_eq!(
                crate::sink::covered(
                    &row("c", Some("x"), r),
                    "c",
                    "x",
                    jiff::Timestamp::from_second(100).unwrap()
                ),
                want,
                "the same rule as sink::covered"
            );
        }
    }
}
