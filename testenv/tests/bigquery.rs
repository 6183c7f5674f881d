//! bigquery-emulator from testenv, driven by gcp-bigquery-client as the ingester will drive it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::tabledata::ListQueryParameters;
use serde_json::{Value, json};
use testenv::BigQuery;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The emulator accepts any bearer token; this stands in for Google's OAuth, which cannot run here.
#[derive(Clone)]
struct NoAuth;

impl Authenticator for NoAuth {
    // Spelled out instead of `#[async_trait]`, to need no extra crate for one method.
    fn access_token<'a, 'b>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = Result<String, BQError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async { Ok("emulator".to_owned()) })
    }
}

fn required(mut field: TableFieldSchema) -> TableFieldSchema {
    field.mode = Some("REQUIRED".into());
    field
}

fn repeated(mut field: TableFieldSchema) -> TableFieldSchema {
    field.mode = Some("REPEATED".into());
    field
}

#[tokio::test]
async fn rows_with_repeated_records_round_trip() -> TestResult {
    let started = Instant::now();
    let bq = BigQuery::start().await?;
    eprintln!("bigquery-emulator ready in {:?}", started.elapsed());
    let client = ClientBuilder::new()
        .with_v2_base_url(bq.endpoint())
        .build_from_authenticator(Arc::new(NoAuth))
        .await?;
    let project = bq.project();

    client
        .dataset()
        .create(Dataset::new(project, "spartakus"))
        .await?;
    let schema = TableSchema::new(vec![
        required(TableFieldSchema::string("clusterID")),
        repeated(TableFieldSchema::record(
            "nodes",
            vec![
                required(TableFieldSchema::string("id")),
                TableFieldSchema::string("kubeletVersion"),
                repeated(TableFieldSchema::record(
                    "capacity",
                    vec![
                        required(TableFieldSchema::string("resource")),
                        required(TableFieldSchema::string("value")),
                    ],
                )),
            ],
        )),
    ]);
    client
        .table()
        .create(Table::new(project, "spartakus", "reports", schema))
        .await?;

    let mut request = TableDataInsertAllRequest::new();
    request.add_row(
        Some("report-1".into()),
        json!({
            "clusterID": "cluster-1",
            "nodes": [
                {"id": "n1", "kubeletVersion": "v1.37.2", "capacity": [
                    {"resource": "cpu", "value": "4"},
                    {"resource": "memory", "value": "15437428Ki"},
                ]},
                {"id": "n2", "capacity": []},
            ],
        }),
    )?;
    request.add_row(
        Some("report-2".into()),
        json!({"clusterID": "cluster-2", "nodes": []}),
    )?;
    let response = client
        .tabledata()
        .insert_all(project, "spartakus", "reports", request)
        .await?;
    assert!(
        response.insert_errors.as_ref().is_none_or(Vec::is_empty),
        "{:?}",
        response.insert_errors
    );

    let data = client
        .tabledata()
        .list(
            project,
            "spartakus",
            "reports",
            ListQueryParameters {
                start_index: None,
                max_results: None,
                page_token: None,
                selected_fields: None,
                format_options: None,
            },
        )
        .await?;
    // tabledata.list answers in BigQuery's f/v form: a row is {"f": [{"v": cell}, ...]}, a record
    // is a row, and a repeated field is [{"v": element}, ...].
    let rows: Vec<Value> = data
        .rows
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            Value::Array(
                row.columns
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.value.unwrap_or(Value::Null))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let first = rows
        .iter()
        .find(|r| r[0] == "cluster-1")
        .ok_or("cluster-1 not found")?;
    let nodes = first[1].as_array().ok_or("nodes is not an array")?;
    assert_eq!(nodes.len(), 2);
    let n1 = &nodes[0]["v"]["f"];
    assert_eq!(n1[0]["v"], "n1");
    assert_eq!(n1[1]["v"], "v1.37.2");
    let capacity = n1[2]["v"].as_array().ok_or("capacity is not an array")?;
    let pairs: Vec<(&Value, &Value)> = capacity
        .iter()
        .map(|c| (&c["v"]["f"][0]["v"], &c["v"]["f"][1]["v"]))
        .collect();
    assert_eq!(
        pairs,
        vec![
            (&json!("cpu"), &json!("4")),
            (&json!("memory"), &json!("15437428Ki"))
        ]
    );
    let n2 = &nodes[1]["v"]["f"];
    assert_eq!(n2[0]["v"], "n2");
    assert_eq!(n2[1]["v"], Value::Null);
    Ok(())
}
