//! What the sink keeps in place at every start: the dataset; the table with the committed schema
//! (`stored/schema/bigquery.json`), partitioned by day of `receivedAt`, clustered by `clusterID` and
//! requiring a partition filter; the erasure tombstones `TABLE_tombstones`
//! (`stored/schema/bigquery-tombstones.json`, partitioned by day of `requestedAt`); and the view
//! `TABLE_deduplicated` (`stored/schema/bigquery-view.sql`) with one row per report and none a
//! tombstone covers, which every documented query reads.
//!
//! An existing table only gains the columns it lacks (all NULLABLE or REPEATED), never a changed
//! one, and keeps its partition-filter setting: turning the requirement on would break the
//! unfiltered queries its readers already run, so that is left to its owner (logged at start).
//! Both tables' partition expiration is `--retention` (none for `none`), set at creation and
//! changed when it differs. The view is created if missing and its query replaced when it
//! differs from the committed one.

use std::time::Duration;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use gcp_bigquery_client::model::view_definition::ViewDefinition;

use super::{from_bq, status};
use crate::error::SinkError;
use stored::bigquery::view_query;
use stored::{TOMBSTONES_SUFFIX, TableRef, VIEW_SUFFIX};

/// The committed schema, parsed.
pub(crate) fn schema() -> Result<Vec<TableFieldSchema>, SinkError> {
    stored::bigquery::schema()
        .map_err(|e| SinkError::Schema(format!("stored/schema/bigquery.json: {e}")))
}

/// The committed schema of the tombstones table, parsed.
pub(crate) fn tombstones_schema() -> Result<Vec<TableFieldSchema>, SinkError> {
    stored::bigquery::tombstones_schema()
        .map_err(|e| SinkError::Schema(format!("stored/schema/bigquery-tombstones.json: {e}")))
}

/// One of the two tables the sink keeps in place.
struct Spec {
    name: String,
    fields: Vec<TableFieldSchema>,
    partition_by: &'static str,
    cluster_by: Option<&'static str>,
    /// Whether a new table requires a partition filter.
    require_partition_filter: bool,
    description: String,
}

/// Creates or updates the dataset, the table, the tombstones and the view.
pub(super) async fn ensure(
    client: &Client,
    table: &TableRef,
    retention: Option<Duration>,
) -> Result<(), SinkError> {
    ensure_dataset(client, table).await?;
    let reports = Spec {
        name: table.table.clone(),
        fields: schema()?,
        partition_by: "receivedAt",
        cluster_by: Some("clusterID"),
        require_partition_filter: true,
        description: "Spartakus reports. A report may appear more than once, and an erased one until BigQuery lets it be deleted: query the view with the suffix _deduplicated instead.".into(),
    };
    let columns_added = ensure_table(client, table, &reports, retention).await?;
    // A tombstone requested before the retention covers only reports that expired already.
    let tombstones = Spec {
        name: format!("{}{TOMBSTONES_SUFFIX}", table.table),
        fields: tombstones_schema()?,
        partition_by: "requestedAt",
        cluster_by: None,
        require_partition_filter: false,
        description: format!(
            "Spartakus erasure tombstones of {}: the view {}{VIEW_SUFFIX} hides every report they cover.",
            table.table, table.table
        ),
    };
    ensure_table(client, table, &tombstones, retention).await?;
    // A view records the columns it had when its query was last set; set it again after the
    // table gained columns so they show in its metadata too.
    ensure_view(client, table, columns_added).await
}

async fn ensure_dataset(client: &Client, table: &TableRef) -> Result<(), SinkError> {
    let TableRef {
        project, dataset, ..
    } = table;
    match client.dataset().get(project, dataset).await {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(404) => {
            match client
                .dataset()
                .create(Dataset::new(project, dataset))
                .await
            {
                Ok(_) => {
                    tracing::info!(project, dataset, "created BigQuery dataset");
                    Ok(())
                }
                Err(e) if status(&e) == Some(409) => Ok(()),
                Err(e) => Err(from_bq(e)),
            }
        }
        Err(e) => Err(from_bq(e)),
    }
}

/// The partition expiration `retention` asks for, in BigQuery's spelling (milliseconds).
fn expiration_ms(retention: Option<Duration>) -> Option<String> {
    retention.map(|r| r.as_millis().to_string())
}

/// Creates the table `spec` describes, or adds missing columns to it and sets its partition
/// expiration to `retention`; whether columns were added.
async fn ensure_table(
    client: &Client,
    table_ref: &TableRef,
    spec: &Spec,
    retention: Option<Duration>,
) -> Result<bool, SinkError> {
    let desired = spec.fields.clone();
    let TableRef {
        project, dataset, ..
    } = table_ref;
    let table = spec.name.as_str();
    let existing = match client.table().get(project, dataset, table, None).await {
        Ok(existing) => existing,
        Err(e) if status(&e) == Some(404) => {
            let mut partitioning = TimePartitioning::per_day().field(spec.partition_by);
            partitioning.expiration_ms = expiration_ms(retention);
            let mut new = Table::new(project, dataset, table, TableSchema::new(desired.clone()))
                .description(&spec.description)
                .time_partitioning(partitioning);
            if spec.require_partition_filter {
                new = new.require_partition_filter(true);
            }
            if let Some(column) = spec.cluster_by {
                new = new.clustering(Clustering {
                    fields: Some(vec![column.to_owned()]),
                });
            }
            match client.table().create(new).await {
                Ok(_) => {
                    tracing::info!(project, dataset, table, "created BigQuery table");
                    return Ok(false);
                }
                // Another replica created it first: check its schema like any other.
                Err(e) if status(&e) == Some(409) => client
                    .table()
                    .get(project, dataset, table, None)
                    .await
                    .map_err(from_bq)?,
                Err(e) => return Err(from_bq(e)),
            }
        }
        Err(e) => return Err(from_bq(e)),
    };
    if spec.require_partition_filter && !requires_partition_filter(&existing) {
        tracing::warn!(
            project,
            dataset,
            table,
            "the BigQuery table does not require a partition filter, so a query without a \
             receivedAt filter reads every partition; left as it is, because requiring one would \
             break its readers' unfiltered queries. Its owner can turn it on with \
             ALTER TABLE ... SET OPTIONS (require_partition_filter = true)"
        );
    }
    let current = existing.schema.fields.clone().unwrap_or_default();
    let merged = merge_schema(&current, &desired).map_err(SinkError::Schema)?;
    let have_expiration = existing
        .time_partitioning
        .as_ref()
        .and_then(|p| p.expiration_ms.clone());
    let want_expiration = expiration_ms(retention);
    let expiration_differs = existing.time_partitioning.is_some()
        && have_expiration
            .as_deref()
            .and_then(|ms| ms.parse::<u128>().ok())
            != retention.map(|r| r.as_millis());
    if existing.time_partitioning.is_none() && retention.is_some() {
        tracing::warn!(
            project,
            dataset,
            table,
            "the BigQuery table is not partitioned, so --retention cannot expire its rows; copy \
             it into a table the ingester created, or delete old rows by hand"
        );
    }
    let columns_added = merged.is_some();
    let set_expiration = expiration_differs && want_expiration.is_some();
    if columns_added || set_expiration {
        // The table as it is (its expiration too, unless it changes), with the new columns.
        let mut patch = existing;
        if let Some(merged) = merged {
            patch.schema = TableSchema::new(merged);
        }
        if set_expiration && let Some(partitioning) = patch.time_partitioning.as_mut() {
            partitioning.expiration_ms = want_expiration.clone();
        }
        client
            .table()
            .patch(project, dataset, table, patch)
            .await
            .map_err(from_bq)?;
        if columns_added {
            tracing::info!(
                project,
                dataset,
                table,
                "added missing columns to BigQuery table"
            );
        }
        if set_expiration {
            tracing::info!(
                project,
                dataset,
                table,
                expiration_ms = want_expiration.as_deref().unwrap_or_default(),
                "set the partition expiration to --retention"
            );
        }
    }
    if expiration_differs && want_expiration.is_none() {
        // This client cannot send a null expiration in a patch; DDL removes it.
        let sql = format!(
            "ALTER TABLE `{project}.{dataset}.{table}` SET OPTIONS (partition_expiration_days = NULL)"
        );
        let mut request = QueryRequest::new(sql);
        request.use_legacy_sql = false;
        client
            .job()
            .query(project, request)
            .await
            .map_err(from_bq)?;
        tracing::info!(
            project,
            dataset,
            table,
            "removed the partition expiration (--retention none)"
        );
    }
    Ok(columns_added)
}

/// Whether queries over `table` must filter on its partitioning column. The flag sits on the
/// table; older tables may carry it, deprecated, in their time partitioning.
fn requires_partition_filter(table: &Table) -> bool {
    table.require_partition_filter == Some(true)
        || table
            .time_partitioning
            .as_ref()
            .and_then(|p| p.require_partition_filter)
            == Some(true)
}

/// Creates the view, or sets its query when it differs from the committed one (or `refresh`).
async fn ensure_view(client: &Client, table: &TableRef, refresh: bool) -> Result<(), SinkError> {
    let TableRef {
        project, dataset, ..
    } = table;
    let name = format!("{}{VIEW_SUFFIX}", table.table);
    let query = view_query(table);
    let definition = || {
        let mut view =
            Table::new(project, dataset, &name, TableSchema::default()).description(&format!(
                "Spartakus reports of {}, one row per report (ingester/stored/schema/bigquery-view.sql). \
                 Filter on receivedAt.",
                table.table
            ));
        view.view = Some(ViewDefinition {
            query: query.clone(),
            use_legacy_sql: Some(false),
            user_defined_function_resources: None,
        });
        view
    };
    let existing = match client.table().get(project, dataset, &name, None).await {
        Ok(existing) => existing,
        Err(e) if status(&e) == Some(404) => match client.table().create(definition()).await {
            Ok(_) => {
                tracing::info!(project, dataset, view = name, "created BigQuery view");
                return Ok(());
            }
            // Another replica created it first: check it like any other.
            Err(e) if status(&e) == Some(409) => client
                .table()
                .get(project, dataset, &name, None)
                .await
                .map_err(from_bq)?,
            Err(e) => return Err(from_bq(e)),
        },
        Err(e) => return Err(from_bq(e)),
    };
    let Some(current) = existing.view else {
        return Err(SinkError::Schema(format!(
            "{dataset}.{name} exists and is not a view; rename or drop it so that the ingester \
             can create the deduplicating view there"
        )));
    };
    if current.query.trim() == query && current.use_legacy_sql != Some(true) && !refresh {
        return Ok(());
    }
    client
        .table()
        .patch(project, dataset, &name, definition())
        .await
        .map_err(from_bq)?;
    tracing::info!(project, dataset, view = name, "updated BigQuery view");
    Ok(())
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
pub(crate) fn merge_schema(
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
                        "column {path} is {} in the table, {} in stored/schema/bigquery.json",
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
                        "column {path} is {} in the table, {} in stored/schema/bigquery.json",
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

    fn reports() -> TableRef {
        TableRef {
            project: "example.com:spartakus".into(),
            dataset: "usage".into(),
            table: "reports".into(),
        }
    }

    #[test]
    fn the_view_query_is_the_committed_statement_over_the_sinks_table() {
        let query = view_query(&reports());
        assert!(query.starts_with("SELECT *"), "{query}");
        assert!(
            !query.contains("--"),
            "the leading comment is left out: {query}"
        );
        assert!(
            query.contains("FROM `example.com:spartakus.usage.reports` AS r"),
            "{query}"
        );
        assert!(
            query.contains("FROM `example.com:spartakus.usage.reports_tombstones` AS t"),
            "the tombstones beside the table hide erased reports: {query}"
        );
        assert!(!query.contains("PROJECT.DATASET.TABLE"));
    }

    #[test]
    fn the_view_partitions_its_window_by_received_at_so_a_time_filter_reaches_the_table() {
        // BigQuery pushes a filter through an analytic function only on columns of its
        // PARTITION BY; without receivedAt there, no query through the view could satisfy the
        // table's required partition filter.
        let query = view_query(&reports());
        assert!(
            query.contains("OVER (PARTITION BY r.reportID, r.receivedAt)"),
            "{query}"
        );
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
            report::decode(include_bytes!("../../../../report/testdata/v2-full.json")).unwrap();
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
