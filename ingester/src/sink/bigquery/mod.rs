//! The production sink: BigQuery's streaming insertAll, one row per report, `insertId` = the
//! report ID.
//!
//! - `schema`: what the sink keeps in place at every start: the dataset, the table
//!   (`schema/bigquery.json`, partitioned by day of `receivedAt`, clustered by `clusterID`, a
//!   partition filter required), additive column migration, and the view
//!   `TABLE_deduplicated` (`schema/bigquery-view.sql`), which readers query instead of the table.
//! - `insert`: batching rows into insertAll requests, retries, per-row errors.
//! - `erase`: tombstones in `TABLE_tombstones`, the DML DELETE retried until BigQuery allows it,
//!   and the tombstones each batch is checked against.
//!
//! Nothing waits on BigQuery for ever ([`Deadlines`]): every HTTP request ends within the
//! request timeout, answered or not (the client's own timeout), and so do a batch's whole
//! write, its tombstone check and insertAll retries included, and the readiness probe, its
//! OAuth token fetch included; one query job, from its creation to its last page, ends within
//! the job deadline, also while a request of it is in flight, and so does preparing the table
//! at start.
//!
//! insertId deduplication is best-effort (about a minute), so the table may hold a report more
//! than once; the view holds it once, and none a tombstone covers. Retention is the tables'
//! partition expiration, which BigQuery applies by itself.

mod erase;
mod insert;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::error::BQError;

pub(crate) use erase::ERASURE_GRACE;

use report::erasure::QueuedErasure;

use super::{Erased, Outcome, Sink};
use crate::error::SinkError;
use crate::row::Row;
use stored::TableRef;
use stored::bigquery::Credentials;

/// Limits of one insertAll request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most rows per request.
    pub max_rows: usize,
    /// Most bytes of a request's JSON body, as encoded before gzip.
    pub max_bytes: usize,
}

/// How long BigQuery calls may take (`--bigquery-request-timeout`, `--bigquery-job-deadline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// One HTTP request, and a batch's whole write (tombstone check and insertAll retries
    /// included). The client must be built with the same value ([`BigQuerySink::client_with`]).
    pub request: Duration,
    /// One query job, polls and pages included.
    pub job: Duration,
}

impl Default for Deadlines {
    /// The flags' defaults: 60 s, 5 min.
    fn default() -> Self {
        Deadlines {
            request: stored::bigquery::REQUEST_TIMEOUT,
            job: Duration::from_secs(5 * 60),
        }
    }
}

/// Streams rows into one BigQuery table.
#[derive(Clone)]
pub struct BigQuerySink {
    client: Client,
    table: TableRef,
    limits: Limits,
    deadlines: Deadlines,
    retention: Option<Duration>,
    grace: Duration,
    tombstones: Arc<erase::Cache>,
}

impl std::fmt::Debug for BigQuerySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQuerySink")
            .field("table", &self.table)
            .field("limits", &self.limits)
            .field("deadlines", &self.deadlines)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl BigQuerySink {
    /// Builds the client (reading credentials, no API call yet), each request abandoned after
    /// the default request timeout.
    pub async fn client(
        endpoint: Option<&str>,
        credentials: Option<&Credentials>,
    ) -> Result<Client, SinkError> {
        Self::client_with(endpoint, credentials, Deadlines::default().request).await
    }

    /// As [`BigQuerySink::client`], each request abandoned after `request_timeout`.
    pub async fn client_with(
        endpoint: Option<&str>,
        credentials: Option<&Credentials>,
        request_timeout: Duration,
    ) -> Result<Client, SinkError> {
        stored::bigquery::client(
            endpoint,
            credentials.unwrap_or(&Credentials::Default),
            request_timeout,
        )
        .await
        .map_err(from_bq)
    }

    /// A sink for `table`, keeping rows forever; call [`BigQuerySink::ensure_table`] (or
    /// [`Sink::prepare`]) before writing.
    pub fn new(client: Client, table: TableRef, limits: Limits) -> Self {
        BigQuerySink {
            client,
            table,
            limits,
            deadlines: Deadlines::default(),
            retention: None,
            grace: ERASURE_GRACE,
            tombstones: Arc::default(),
        }
    }

    /// The partition expiration of the table and its tombstones (`None`: keep forever).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// The deadlines of writes and query jobs ([`Deadlines::default`] otherwise); the request
    /// timeout must be the one the client was built with.
    pub fn with_deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// How long after its tombstone an erasure deletes once more before it is done
    /// (`ERASURE_GRACE` by default; tests shorten it).
    pub fn with_erasure_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Creates the dataset, table, tombstones table and deduplicating view if missing, adds
    /// missing columns to existing tables, sets their partition expiration to the retention,
    /// and brings the view's query up to date.
    pub async fn ensure_table(&self) -> Result<(), SinkError> {
        schema::ensure(&self.client, &self.table, self.retention).await
    }
}

impl Sink for BigQuerySink {
    fn name(&self) -> &'static str {
        "bigquery"
    }

    async fn prepare(&self) -> Result<(), SinkError> {
        // Each request is bounded by the client, but not the OAuth token fetch before it.
        let limit = self.deadlines.job;
        let prepare = async {
            self.ensure_table().await?;
            self.tombstones
                .reload(&self.client, &self.table, self.deadlines.job)
                .await
        };
        within(
            limit,
            "preparing the table (--bigquery-job-deadline)",
            prepare,
        )
        .await
    }

    async fn write(&self, rows: Vec<Row>) -> Result<Vec<Outcome>, SinkError> {
        // Each request ends within the request timeout, but a tombstone reload and insertAll's
        // retries are several: the batch as a whole must end within it too, so that a server
        // that stops answering fails the batch (nakked, tried again) rather than holding it.
        within(
            self.deadlines.request,
            "the batch's write (--bigquery-request-timeout)",
            self.write_within(rows),
        )
        .await
    }

    async fn erase(&self, erasure: &QueuedErasure) -> Result<Erased, SinkError> {
        erase::erase(
            &self.client,
            &self.table,
            &self.tombstones,
            self.grace,
            self.deadlines.job,
            erasure,
        )
        .await
    }

    async fn ready(&self) -> Result<(), SinkError> {
        let TableRef {
            project,
            dataset,
            table,
        } = &self.table;
        let probe = async {
            self.client
                .table()
                .get(project, dataset, table, Some(vec!["tableReference"]))
                .await
                .map(drop)
                .map_err(from_bq)
        };
        // The request is bounded by the client, but not the OAuth token fetch before it.
        within(
            self.deadlines.request,
            "the probe (--bigquery-request-timeout)",
            probe,
        )
        .await
    }
}

/// `work`, failed when it has not finished within `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T, SinkError>>,
) -> Result<T, SinkError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(SinkError::BigQuery {
            status: None,
            message: format!("{what} did not finish within {limit:?}"),
        })
    })
}

impl BigQuerySink {
    /// A batch's write without its overall deadline.
    async fn write_within(&self, rows: Vec<Row>) -> Result<Vec<Outcome>, SinkError> {
        let covered = self
            .tombstones
            .covered(&self.client, &self.table, self.deadlines.job, &rows)
            .await?;
        if !covered.contains(&true) {
            return insert::write(&self.client, &self.table, self.limits, rows).await;
        }
        let kept: Vec<Row> = rows
            .into_iter()
            .zip(&covered)
            .filter(|(_, c)| !**c)
            .map(|(r, _)| r)
            .collect();
        let mut written = insert::write(&self.client, &self.table, self.limits, kept)
            .await?
            .into_iter();
        // Back in batch order: the erased rows where they were.
        Ok(covered
            .into_iter()
            .map(|c| match c {
                true => Outcome::Erased,
                false => written
                    .next()
                    .unwrap_or(Outcome::Retry(SinkError::BigQuery {
                        status: None,
                        message: "no outcome".into(),
                    })),
            })
            .collect())
    }
}

/// The HTTP status of a failed call, when a response arrived.
fn status(e: &BQError) -> Option<u16> {
    match e {
        BQError::ResponseError { error } => u16::try_from(error.error.code).ok(),
        BQError::RequestError(e) => e.status().map(|s| s.as_u16()),
        _ => None,
    }
}

fn from_bq(e: BQError) -> SinkError {
    let status = status(&e);
    let message = match &e {
        BQError::ResponseError { error } => error.error.message.clone(),
        other => other.to_string(),
    };
    SinkError::BigQuery { status, message }
}
