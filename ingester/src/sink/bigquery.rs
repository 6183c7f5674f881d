//! The production sink: BigQuery's streaming insertAll, one row per report, `insertId` = the
//! report ID so a report sent again (a retry, a redelivery) is dropped by BigQuery's best-effort
//! deduplication.
//!
//! At start it creates the dataset and table if missing, with `schema/bigquery.json`,
//! partitioned by day on `receivedAt` and clustered by `clusterID`; an existing table only gains
//! the columns it lacks (all NULLABLE or REPEATED), never a changed one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;

use super::{Outcome, Sink};
use crate::config::{Credentials, TableRef};
use crate::error::SinkError;
use crate::row::Row;

/// The committed table schema.
pub const SCHEMA_JSON: &str = include_str!("../../schema/bigquery.json");

/// How one batch's requests are retried on 429/5xx before the reports are nakked instead;
/// kept well under the default ack wait.
fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(5)
        .with_jitter()
}

/// Limits of one insertAll request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most rows per request.
    pub max_rows: usize,
    /// Most bytes of row JSON per request.
    pub max_bytes: usize,
}

/// Streams rows into one BigQuery table.
#[derive(Clone)]
pub struct BigQuerySink {
    client: Client,
    table: TableRef,
    limits: Limits,
}

impl std::fmt::Debug for BigQuerySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQuerySink")
            .field("table", &self.table)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Sends no credentials, for an emulator. The trait is declared with `async_trait`; this is
/// its expansion, written out to avoid a dependency for one method.
#[derive(Clone)]
struct Anonymous;

impl Authenticator for Anonymous {
    fn access_token<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = Result<String, BQError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Ok(String::new()) })
    }
}

impl BigQuerySink {
    /// Builds the client (reading credentials, no API call yet).
    pub async fn client(
        endpoint: Option<&str>,
        credentials: Option<&Credentials>,
    ) -> Result<Client, SinkError> {
        let mut builder = ClientBuilder::new();
        if let Some(endpoint) = endpoint {
            builder.with_v2_base_url(endpoint.trim_end_matches('/').to_owned());
        }
        let client = match credentials {
            Some(Credentials::None) => builder.build_from_authenticator(Arc::new(Anonymous)).await,
            Some(Credentials::KeyFile(path)) => {
                builder
                    .build_from_service_account_key_file(&path.to_string_lossy())
                    .await
            }
            None => builder.build_from_application_default_credentials().await,
        };
        client.map_err(from_bq)
    }

    /// A sink for `table`; call [`BigQuerySink::ensure_table`] (or [`Sink::prepare`]) before
    /// writing.
    pub fn new(client: Client, table: TableRef, limits: Limits) -> Self {
        BigQuerySink {
            client,
            table,
            limits,
        }
    }

    /// Creates the dataset and table if missing, or adds missing columns to an existing table.
    pub async fn ensure_table(&self) -> Result<(), SinkError> {
        let desired = schema()?;
        let TableRef {
            project,
            dataset,
            table,
        } = &self.table;
        match self.client.dataset().get(project, dataset).await {
            Ok(_) => {}
            Err(e) if status(&e) == Some(404) => {
                match self
                    .client
                    .dataset()
                    .create(Dataset::new(project, dataset))
                    .await
                {
                    Ok(_) => tracing::info!(project, dataset, "created BigQuery dataset"),
                    Err(e) if status(&e) == Some(409) => {}
                    Err(e) => return Err(from_bq(e)),
                }
            }
            Err(e) => return Err(from_bq(e)),
        }
        let existing = match self.client.table().get(project, dataset, table, None).await {
            Ok(existing) => existing,
            Err(e) if status(&e) == Some(404) => {
                let new = Table::new(project, dataset, table, TableSchema::new(desired.clone()))
                    .description("Spartakus reports, one row per report.")
                    .time_partitioning(TimePartitioning::per_day().field("receivedAt"))
                    .clustering(Clustering {
                        fields: Some(vec!["clusterID".to_owned()]),
                    });
                match self.client.table().create(new).await {
                    Ok(_) => {
                        tracing::info!(project, dataset, table, "created BigQuery table");
                        return Ok(());
                    }
                    // Another replica created it first: check its schema like any other.
                    Err(e) if status(&e) == Some(409) => self
                        .client
                        .table()
                        .get(project, dataset, table, None)
                        .await
                        .map_err(from_bq)?,
                    Err(e) => return Err(from_bq(e)),
                }
            }
            Err(e) => return Err(from_bq(e)),
        };
        let current = existing.schema.fields.clone().unwrap_or_default();
        if let Some(merged) = merge_schema(&current, &desired).map_err(SinkError::Schema)? {
            let mut patch = existing;
            patch.schema = TableSchema::new(merged);
            self.client
                .table()
                .patch(project, dataset, table, patch)
                .await
                .map_err(from_bq)?;
            tracing::info!(
                project,
                dataset,
                table,
                "added missing columns to BigQuery table"
            );
        }
        Ok(())
    }

    /// Sends one request with retries; outcomes for its rows.
    async fn insert(
        &self,
        chunk: Vec<(usize, TableDataInsertAllRequestRows)>,
    ) -> Vec<(usize, Outcome)> {
        let TableRef {
            project,
            dataset,
            table,
        } = &self.table;
        let rows: Vec<TableDataInsertAllRequestRows> =
            chunk.iter().map(|(_, r)| r.clone()).collect();
        let send = || {
            let rows = rows.clone();
            async move {
                let mut request = TableDataInsertAllRequest::new();
                // Valid rows are stored even when some are not; the invalid ones are reported
                // by index and dead-lettered.
                request.skip_invalid_rows();
                request.add_rows(rows).map_err(from_bq)?;
                self.client
                    .tabledata()
                    .insert_all(project, dataset, table, request)
                    .await
                    .map_err(from_bq)
            }
        };
        let response = send
            .retry(retry_policy())
            .when(SinkError::is_retryable)
            .notify(|e, delay| tracing::warn!(error = %e, ?delay, "BigQuery insertAll failed; retrying"))
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) if e.is_retryable() => {
                return chunk
                    .into_iter()
                    .map(|(i, _)| (i, Outcome::Retry(clone_error(&e))))
                    .collect();
            }
            Err(e) => {
                let reason = e.to_string();
                return chunk
                    .into_iter()
                    .map(|(i, _)| (i, Outcome::Rejected(reason.clone())))
                    .collect();
            }
        };
        let mut outcomes: Vec<(usize, Outcome)> =
            chunk.iter().map(|(i, _)| (*i, Outcome::Written)).collect();
        for row_errors in response.insert_errors.unwrap_or_default() {
            let Some(slot) = row_errors
                .index
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| outcomes.get_mut(i))
            else {
                continue;
            };
            let errors = row_errors.errors.unwrap_or_default();
            // "stopped": not inserted because of another row; not this row's fault.
            let own: Vec<String> = errors
                .iter()
                .filter(|e| e.reason.as_deref() != Some("stopped"))
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.location.as_deref().unwrap_or("row"),
                        e.message
                            .as_deref()
                            .or(e.reason.as_deref())
                            .unwrap_or("invalid")
                    )
                })
                .collect();
            slot.1 = if own.is_empty() {
                Outcome::Retry(SinkError::BigQuery {
                    status: None,
                    message: "row not inserted because another row was invalid".into(),
                })
            } else {
                Outcome::Rejected(own.join("; "))
            };
        }
        outcomes
    }
}

impl Sink for BigQuerySink {
    fn name(&self) -> &'static str {
        "bigquery"
    }

    async fn prepare(&self) -> Result<(), SinkError> {
        self.ensure_table().await
    }

    async fn write(&self, rows: Vec<Row>) -> Result<Vec<Outcome>, SinkError> {
        let mut outcomes: Vec<Option<Outcome>> = rows.iter().map(|_| None).collect();
        let mut chunks: Vec<Vec<(usize, TableDataInsertAllRequestRows)>> = Vec::new();
        let mut current = Vec::new();
        let mut bytes = 0usize;
        for (i, row) in rows.iter().enumerate() {
            let json = serde_json::to_value(row).map_err(|e| SinkError::BigQuery {
                status: None,
                message: e.to_string(),
            })?;
            // The request wraps each row in {"insertId": …, "json": …}: count that too.
            let size = json.to_string().len() + row.report_id.len() + 32;
            if !current.is_empty()
                && (current.len() >= self.limits.max_rows || bytes + size > self.limits.max_bytes)
            {
                chunks.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes += size;
            current.push((
                i,
                TableDataInsertAllRequestRows {
                    insert_id: Some(row.report_id.clone()),
                    json,
                },
            ));
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        let results = futures::future::join_all(chunks.into_iter().map(|c| self.insert(c))).await;
        for (i, outcome) in results.into_iter().flatten() {
            outcomes[i] = Some(outcome);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::Retry(SinkError::BigQuery {
                    status: None,
                    message: "no outcome".into(),
                }))
            })
            .collect())
    }

    async fn ready(&self) -> Result<(), SinkError> {
        let TableRef {
            project,
            dataset,
            table,
        } = &self.table;
        self.client
            .table()
            .get(project, dataset, table, Some(vec!["tableReference"]))
            .await
            .map(drop)
            .map_err(from_bq)
    }
}

/// The committed schema, parsed.
pub fn schema() -> Result<Vec<TableFieldSchema>, SinkError> {
    serde_json::from_str(SCHEMA_JSON)
        .map_err(|e| SinkError::Schema(format!("schema/bigquery.json: {e}")))
}

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

fn clone_error(e: &SinkError) -> SinkError {
    match e {
        SinkError::BigQuery { status, message } => SinkError::BigQuery {
            status: *status,
            message: message.clone(),
        },
        other => SinkError::BigQuery {
            status: None,
            message: other.to_string(),
        },
    }
}

fn type_name(t: &FieldType) -> &'static str {
    match t {
        FieldType::String => "STRING",
        FieldType::Bytes => "BYTES",
        FieldType::Integer | FieldType::Int64 => "INTEGER",
        FieldType::Float | FieldType::Float64 => "FLOAT",
        FieldType::Numeric => "NUMERIC",
        FieldType::Bignumeric => "BIGNUMERIC",
        FieldType::Boolean | FieldType::Bool => "BOOLEAN",
        FieldType::Timestamp => "TIMESTAMP",
        FieldType::Date => "DATE",
        FieldType::Time => "TIME",
        FieldType::Datetime => "DATETIME",
        FieldType::Record | FieldType::Struct => "RECORD",
        FieldType::Geography => "GEOGRAPHY",
        FieldType::Json => "JSON",
        FieldType::Interval => "INTERVAL",
    }
}

fn mode(f: &TableFieldSchema) -> &str {
    f.mode.as_deref().unwrap_or("NULLABLE")
}

/// The schema `existing` must become to hold `desired` rows: `existing` plus the columns (and
/// nested fields) it lacks, or `None` when it lacks nothing. A column present with another type
/// or mode is an error: BigQuery only allows additive changes, and we make no others.
pub fn merge_schema(
    existing: &[TableFieldSchema],
    desired: &[TableFieldSchema],
) -> Result<Option<Vec<TableFieldSchema>>, String> {
    merge_fields(existing, desired, "")
}

fn merge_fields(
    existing: &[TableFieldSchema],
    desired: &[TableFieldSchema],
    prefix: &str,
) -> Result<Option<Vec<TableFieldSchema>>, String> {
    let mut merged = existing.to_vec();
    let mut changed = false;
    for want in desired {
        let path = format!("{prefix}{}", want.name);
        match merged
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(&want.name))
        {
            None => {
                if mode(want) == "REQUIRED" {
                    return Err(format!(
                        "cannot add REQUIRED column {path} to an existing table"
                    ));
                }
                merged.push(want.clone());
                changed = true;
            }
            Some(have) => {
                if type_name(&have.r#type) != type_name(&want.r#type) {
                    return Err(format!(
                        "column {path} is {} in the table, {} in schema/bigquery.json",
                        type_name(&have.r#type),
                        type_name(&want.r#type)
                    ));
                }
                // A REQUIRED column where we want NULLABLE would refuse our NULLs; the reverse
                // (NULLABLE where the original said REQUIRED) accepts everything we send.
                let compatible = mode(have) == mode(want)
                    || (mode(have) == "NULLABLE" && mode(want) == "REQUIRED");
                if !compatible {
                    return Err(format!(
                        "column {path} is {} in the table, {} in schema/bigquery.json",
                        mode(have),
                        mode(want)
                    ));
                }
                if let Some(want_fields) = &want.fields {
                    let have_fields = have.fields.clone().unwrap_or_default();
                    if let Some(fields) =
                        merge_fields(&have_fields, want_fields, &format!("{path}."))?
                    {
                        have.fields = Some(fields);
                        changed = true;
                    }
                }
            }
        }
    }
    Ok(changed.then_some(merged))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The original table, as mission.md §3 describes it. Existing datasets use it.
    const ORIGINAL: &str = r#"[
      {"name": "version", "type": "STRING", "mode": "REQUIRED"},
      {"name": "timestamp", "type": "STRING", "mode": "NULLABLE"},
      {"name": "clusterID", "type": "STRING", "mode": "REQUIRED"},
      {"name": "masterVersion", "type": "STRING", "mode": "NULLABLE"},
      {"name": "nodes", "type": "RECORD", "mode": "REPEATED", "fields": [
        {"name": "id", "type": "STRING", "mode": "REQUIRED"},
        {"name": "operatingSystem", "type": "STRING", "mode": "NULLABLE"},
        {"name": "osImage", "type": "STRING", "mode": "NULLABLE"},
        {"name": "kernelVersion", "type": "STRING", "mode": "NULLABLE"},
        {"name": "architecture", "type": "STRING", "mode": "NULLABLE"},
        {"name": "containerRuntimeVersion", "type": "STRING", "mode": "NULLABLE"},
        {"name": "kubeletVersion", "type": "STRING", "mode": "NULLABLE"},
        {"name": "cloudProvider", "type": "STRING", "mode": "NULLABLE"},
        {"name": "capacity", "type": "RECORD", "mode": "REPEATED", "fields": [
          {"name": "resource", "type": "STRING", "mode": "REQUIRED"},
          {"name": "value", "type": "STRING", "mode": "REQUIRED"}
        ]}
      ]},
      {"name": "extensions", "type": "RECORD", "mode": "REPEATED", "fields": [
        {"name": "name", "type": "STRING", "mode": "REQUIRED"},
        {"name": "value", "type": "STRING", "mode": "REQUIRED"}
      ]}
    ]"#;

    /// Name, type and mode of every field, depth first, ignoring descriptions.
    fn shape(fields: &[TableFieldSchema], prefix: &str, out: &mut Vec<String>) {
        for f in fields {
            let path = format!("{prefix}{}", f.name);
            out.push(format!("{path} {} {}", type_name(&f.r#type), mode(f)));
            if let Some(sub) = &f.fields {
                shape(sub, &format!("{path}."), out);
            }
        }
    }

    fn parse(json: &str) -> Vec<TableFieldSchema> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_original_columns_are_unchanged_in_the_committed_schema() {
        let original = parse(ORIGINAL);
        let committed = schema().unwrap();
        let (mut want, mut have) = (Vec::new(), Vec::new());
        shape(&original, "", &mut want);
        // The committed schema restricted to the original columns, in their order.
        let restricted: Vec<TableFieldSchema> = committed
            .iter()
            .filter(|f| original.iter().any(|o| o.name == f.name))
            .cloned()
            .collect();
        shape(&restricted, "", &mut have);
        assert_eq!(have, want);
        // The original columns come first, in their original order.
        let names: Vec<&str> = committed
            .iter()
            .take(original.len())
            .map(|f| f.name.as_str())
            .collect();
        let original_names: Vec<&str> = original.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, original_names);
    }

    #[test]
    fn every_new_column_is_nullable_or_repeated() {
        let original = parse(ORIGINAL);
        let mut all = Vec::new();
        shape(&schema().unwrap(), "", &mut all);
        let mut old = Vec::new();
        shape(&original, "", &mut old);
        for field in all.iter().filter(|f| !old.contains(f)) {
            assert!(!field.ends_with("REQUIRED"), "{field}");
        }
    }

    #[test]
    fn the_committed_schema_is_the_row_serialization() {
        // Every top-level key a Row serializes to is a column.
        let report =
            report::decode(include_bytes!("../../../report/testdata/v2-full.json")).unwrap();
        let env = report::Envelope::new(
            report::ReportId::random(),
            jiff::Timestamp::UNIX_EPOCH,
            report,
        );
        let row = crate::row::from_envelope(report::Envelope::decode(&env.encode()).unwrap());
        let json = serde_json::to_value(&row).unwrap();
        fn check(value: &serde_json::Value, fields: &[TableFieldSchema], path: &str) {
            let obj = value.as_object().unwrap();
            for (k, v) in obj {
                let field = fields
                    .iter()
                    .find(|f| &f.name == k)
                    .unwrap_or_else(|| panic!("{path}{k} is not a column"));
                if let Some(sub) = &field.fields {
                    let items: Vec<&serde_json::Value> = match v {
                        serde_json::Value::Array(a) => a.iter().collect(),
                        other => vec![other],
                    };
                    for item in items {
                        check(item, sub, &format!("{path}{k}."));
                    }
                }
            }
        }
        check(&json, &schema().unwrap(), "");
    }

    #[test]
    fn an_original_table_gains_only_the_new_columns() {
        let original = parse(ORIGINAL);
        let merged = merge_schema(&original, &schema().unwrap())
            .unwrap()
            .unwrap();
        let (mut before, mut after) = (Vec::new(), Vec::new());
        shape(&original, "", &mut before);
        shape(&merged, "", &mut after);
        assert_eq!(&after[..before.len()], &before[..]);
        assert!(after.contains(&"receivedAt TIMESTAMP NULLABLE".to_owned()));
        assert!(after.contains(&"workloads.perNamespace.max INTEGER NULLABLE".to_owned()));
        // Merging again changes nothing.
        assert!(merge_schema(&merged, &schema().unwrap()).unwrap().is_none());
    }

    #[test]
    fn a_column_of_another_type_is_a_conflict_not_a_change() {
        let mut existing = schema().unwrap();
        existing.retain(|f| f.name != "namespaces");
        existing.push(TableFieldSchema::string("namespaces"));
        let err = merge_schema(&existing, &schema().unwrap()).unwrap_err();
        assert!(err.contains("namespaces"), "{err}");
    }

    #[test]
    fn a_missing_nested_field_is_added_inside_its_record() {
        let mut existing = schema().unwrap();
        let workloads = existing.iter_mut().find(|f| f.name == "workloads").unwrap();
        workloads
            .fields
            .as_mut()
            .unwrap()
            .retain(|f| f.name != "ageHours");
        let merged = merge_schema(&existing, &schema().unwrap())
            .unwrap()
            .unwrap();
        let mut after = Vec::new();
        shape(&merged, "", &mut after);
        assert!(after.contains(&"workloads.ageHours.p90 INTEGER NULLABLE".to_owned()));
    }
}
