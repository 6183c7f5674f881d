//! bigquery-emulator from testenv, driven by gcp-bigquery-client as the ingester will drive it.
//!
//! A limit of the emulator (v0.8.1, googlesqlite v0.3.1): a RECORD or REPEATED RECORD nested
//! inside another RECORD (`nodes[].capacity[]`, `workloads[].perNamespace[]`,
//! `workloads[].ageHours` of the Spartakus schema), written through `tabledata.insertAll`, is
//! stored in BigQuery's wire form and cannot be read back field by field. A DML `INSERT` with
//! STRUCT literals stores the full nested schema correctly. `insert_all_read_back_map` pins down
//! exactly which shapes read and which fail, so that it fails, and says which, on the day an
//! emulator upgrade fixes one; docs/limitations.md repeats the map.

use std::time::Instant;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::view_definition::ViewDefinition;
use gcp_bigquery_client::tabledata::ListQueryParameters;
use serde_json::{Value, json};
use testenv::{BigQuery, BigQueryProxy, InsertAll};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn required(mut field: TableFieldSchema) -> TableFieldSchema {
    field.mode = Some("REQUIRED".into());
    field
}

fn repeated(mut field: TableFieldSchema) -> TableFieldSchema {
    field.mode = Some("REPEATED".into());
    field
}

/// A client for the emulator, and the dataset `spartakus` created in it.
async fn client_with_dataset(
    bq: &BigQuery,
) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
    client_at(&bq.endpoint(), bq).await
}

/// A client for `endpoint` (the emulator `bq`, or a proxy before it), and the dataset
/// `spartakus` created through it.
async fn client_at(
    endpoint: &str,
    bq: &BigQuery,
) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
    let client = stored::bigquery::client(
        Some(endpoint),
        &stored::bigquery::Credentials::None,
        stored::bigquery::REQUEST_TIMEOUT,
    )
    .await?;
    client
        .dataset()
        .create(Dataset::new(bq.project(), "spartakus"))
        .await?;
    Ok(client)
}

/// `clusterID`, `nodes[] {id, kubeletVersion, capacity[] {resource, value}}`, `extensions[]`:
/// the shape of the Spartakus table. With `nested_capacity: false`, nodes carry no capacity.
fn report_schema(nested_capacity: bool) -> TableSchema {
    let mut node_fields = vec![
        required(TableFieldSchema::string("id")),
        TableFieldSchema::string("kubeletVersion"),
    ];
    if nested_capacity {
        node_fields.push(repeated(TableFieldSchema::record(
            "capacity",
            vec![
                required(TableFieldSchema::string("resource")),
                required(TableFieldSchema::string("value")),
            ],
        )));
    }
    TableSchema::new(vec![
        required(TableFieldSchema::string("clusterID")),
        repeated(TableFieldSchema::record("nodes", node_fields)),
        repeated(TableFieldSchema::record(
            "extensions",
            vec![
                required(TableFieldSchema::string("name")),
                required(TableFieldSchema::string("value")),
            ],
        )),
    ])
}

/// All rows of a table through tabledata.list, each as the array of its cells. The answer is in
/// BigQuery's f/v form: a record is `{"f": [{"v": cell}, ...]}`, a repeated field
/// `[{"v": element}, ...]`.
async fn list_rows(
    client: &Client,
    project: &str,
    table: &str,
) -> Result<Vec<Value>, gcp_bigquery_client::error::BQError> {
    let parameters = ListQueryParameters {
        start_index: None,
        max_results: None,
        page_token: None,
        selected_fields: None,
        format_options: None,
    };
    let data = client
        .tabledata()
        .list(project, "spartakus", table, parameters)
        .await?;
    Ok(data
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
        .collect())
}

/// The `v` of each element of a repeated field's cell.
fn elements(cell: &Value) -> Vec<&Value> {
    cell.as_array()
        .map(|a| a.iter().map(|e| &e["v"]).collect())
        .unwrap_or_default()
}

/// The `i`-th field of a record cell.
fn field(record: &Value, i: usize) -> &Value {
    &record["f"][i]["v"]
}

#[tokio::test]
async fn insert_all_round_trips_repeated_records() -> TestResult {
    let started = Instant::now();
    let bq = BigQuery::start().await?;
    eprintln!("bigquery-emulator ready in {:?}", started.elapsed());
    let client = client_with_dataset(&bq).await?;
    let project = bq.project();
    client
        .table()
        .create(Table::new(
            project,
            "spartakus",
            "reports",
            report_schema(false),
        ))
        .await?;

    let mut request = TableDataInsertAllRequest::new();
    request.add_row(
        Some("report-1".into()),
        json!({
            "clusterID": "cluster-1",
            "nodes": [{"id": "n1", "kubeletVersion": "v1.37.2"}, {"id": "n2"}],
            "extensions": [{"name": "example.com/hello", "value": "world"}],
        }),
    )?;
    request.add_row(Some("report-2".into()), json!({"clusterID": "cluster-2"}))?;
    let response = client
        .tabledata()
        .insert_all(project, "spartakus", "reports", request)
        .await?;
    assert!(
        response.insert_errors.as_ref().is_none_or(Vec::is_empty),
        "{:?}",
        response.insert_errors
    );

    let rows = list_rows(&client, project, "reports").await?;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let first = rows
        .iter()
        .find(|r| r[0] == "cluster-1")
        .ok_or("cluster-1 missing")?;
    let nodes = elements(&first[1]);
    assert_eq!(nodes.len(), 2);
    assert_eq!(field(nodes[0], 0), "n1");
    assert_eq!(field(nodes[0], 1), "v1.37.2");
    assert_eq!(field(nodes[1], 0), "n2");
    assert_eq!(field(nodes[1], 1), &Value::Null);
    let extensions = elements(&first[2]);
    assert_eq!(extensions.len(), 1);
    assert_eq!(field(extensions[0], 0), "example.com/hello");
    assert_eq!(field(extensions[0], 1), "world");
    let second = rows
        .iter()
        .find(|r| r[0] == "cluster-2")
        .ok_or("cluster-2 missing")?;
    assert!(elements(&second[1]).is_empty());

    // Unknown fields are rejected per row, as BigQuery does.
    let mut request = TableDataInsertAllRequest::new();
    request.add_row(None, json!({"clusterID": "cluster-3", "surprise": 1}))?;
    let response = client
        .tabledata()
        .insert_all(project, "spartakus", "reports", request)
        .await?;
    assert_eq!(response.insert_errors.map(|e| e.len()), Some(1));
    Ok(())
}

#[tokio::test]
async fn a_dml_insert_round_trips_records_repeated_inside_repeated_records() -> TestResult {
    let bq = BigQuery::start().await?;
    let client = client_with_dataset(&bq).await?;
    let project = bq.project();
    client
        .table()
        .create(Table::new(
            project,
            "spartakus",
            "reports",
            report_schema(true),
        ))
        .await?;

    let insert = "INSERT INTO spartakus.reports (clusterID, nodes, extensions) VALUES ('cluster-1', [
        STRUCT('n1' AS id, 'v1.37.2' AS kubeletVersion,
               [STRUCT('cpu' AS resource, '4' AS value), STRUCT('memory' AS resource, '15437428Ki' AS value)] AS capacity),
        STRUCT('n2' AS id, NULL AS kubeletVersion, [STRUCT('pods' AS resource, '110' AS value)] AS capacity)
    ], [])";
    client
        .job()
        .query(project, QueryRequest::new(insert))
        .await?;

    let rows = list_rows(&client, project, "reports").await?;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0][0], "cluster-1");
    let nodes = elements(&rows[0][1]);
    assert_eq!(nodes.len(), 2);
    let capacity = |node: &Value| -> Vec<(String, String)> {
        elements(field(node, 2))
            .into_iter()
            .map(|c| (field(c, 0).to_string(), field(c, 1).to_string()))
            .collect()
    };
    assert_eq!(field(nodes[0], 0), "n1");
    assert_eq!(
        capacity(nodes[0]),
        vec![
            (r#""cpu""#.to_owned(), r#""4""#.to_owned()),
            (r#""memory""#.to_owned(), r#""15437428Ki""#.to_owned())
        ]
    );
    assert_eq!(field(nodes[1], 0), "n2");
    assert_eq!(
        capacity(nodes[1]),
        vec![(r#""pods""#.to_owned(), r#""110""#.to_owned())]
    );
    Ok(())
}

/// The emulator's message when a query touches a record that insertAll left in wire form.
///
/// Why: bigquery-emulator's `normalizeData` (types/types.go, called by the insertAll handler,
/// server/handler.go `tabledataInsertAllHandler.Handle`) turns every RECORD value into
/// BigQuery's wire form, an ordered list of one-field objects (`[{"resource": "cpu"},
/// {"value": "4"}]`), at every depth. googlesqlite's `reshapeBQEStructShape`
/// (internal/analyzer.go, applied to each argument by `DMLStmt.Exec`, internal/stmt.go) merges
/// that list back into a STRUCT only for the column's own type: it recurses into ARRAY
/// elements but returns a merged STRUCT without reshaping the STRUCT's fields. So a top-level
/// REPEATED RECORD's elements are proper STRUCTs, while any RECORD inside them stays a list.
/// Every later field access or output of such a value calls `ArrayValue.ToStruct`
/// (internal/value/value_array.go), which fails with this message; the emulator wraps it as
/// "failed to scan rows: …" (internal/contentdata/repository.go, `Query`) and answers HTTP
/// 400 with reason `jobInternalError`.
const MANGLED: &str = "failed to scan rows: failed to convert struct from array";

/// What one read gives back.
enum Read {
    /// These rows (each cell's `v`, records in f/v form).
    Rows(Value),
    /// The emulator's [`MANGLED`] error.
    Mangled,
}

/// One shape of the committed schema, read back one way.
struct Shape {
    shape: &'static str,
    sql: &'static str,
    read: Read,
}

/// Asserts each read of `shapes`; an emulator that now reads a shape listed as mangled fails
/// the test, naming it.
async fn assert_reads(bq: &BigQuery, shapes: &[Shape]) {
    let mut surprises = Vec::new();
    for Shape { shape, sql, read } in shapes {
        let got = bq.query(sql).await;
        match (read, got) {
            (Read::Rows(want), Ok(rows)) if Value::from(rows.clone()) == *want => {}
            (Read::Mangled, Err(e)) if e.contains(MANGLED) => {}
            (Read::Mangled, Ok(rows)) => surprises.push(format!(
                "{shape}: the emulator now reads it ({rows:?}): an upgrade fixed insertAll of \
                 nested records; move it to the readable rows here and in \
                 docs/limitations.md, and let stats' end-to-end test (stats/tests/it/stores.rs) \
                 read it from ingester-written rows\n  {sql}"
            )),
            (_, got) => surprises.push(format!("{shape}: {got:?}\n  {sql}")),
        }
    }
    assert!(surprises.is_empty(), "{}", surprises.join("\n"));
}

/// Reports as the ingester writes them (ingester/src/row.rs): `full` has every nested
/// record; `hollow` has nodes without capacity (absent, and empty) and a workload with an
/// empty `perNamespace` and no `ageHours`; `bare` has only empty arrays.
fn rows() -> [Value; 3] {
    let common = |cluster: &str| {
        json!({"version": "v0.1.0", "clusterID": cluster, "reportID": format!("r-{cluster}"),
               "receivedAt": "2026-12-06T12:00:00Z", "extensions": [], "skipped": [],
               "nodes": [], "workloads": []})
    };
    let mut full = common("full");
    for (k, v) in [
        ("timestamp", json!("1764000000")),
        ("masterVersion", json!("v1.37.2")),
        ("schemaVersion", json!(2)),
        ("namespaces", json!(12)),
        ("erasureCheck", json!("ab12")),
        (
            "nodes",
            json!([{"id": "n1", "osImage": "Ubuntu 24.04.1 LTS", "kubeletVersion": "v1.37.2",
                    "capacity": [{"resource": "cpu", "value": "4"},
                                 {"resource": "memory", "value": "16Gi"}]}]),
        ),
        (
            "extensions",
            json!([{"name": "example.com/owner", "value": "team"}]),
        ),
        (
            "skipped",
            json!([{"section": "namespaces", "reason": "forbidden"}]),
        ),
        (
            "workloads",
            json!([{"kind": "Pod", "total": 40,
                    "perNamespace": [{"min": 0, "max": 0, "namespaces": 11},
                                     {"min": 1, "namespaces": 1}],
                    "ageHours": {"median": 30, "p90": 60}}]),
        ),
    ] {
        full[k] = v;
    }
    let mut hollow = common("hollow");
    hollow["nodes"] = json!([{"id": "n1"}, {"id": "n2", "capacity": []}]);
    hollow["workloads"] = json!([{"kind": "Job", "total": 0, "perNamespace": []}]);
    [full, hollow, common("bare")]
}

/// Which of the committed schema's shapes the emulator reads back after insertAll, by
/// `SELECT`, by the UNNESTs stats runs (stats/sql/bigquery/window.sql), through the view
/// `reports_deduplicated`, and by tabledata.list. Each readable shape is asserted to read its
/// value; each mangled one to fail with [`MANGLED`]. The schema has no JSON column: the
/// extensions are STRING pairs.
#[tokio::test]
async fn insert_all_read_back_map() -> TestResult {
    let bq = BigQuery::start().await?;
    let client = client_with_dataset(&bq).await?;
    let project = bq.project();
    let table = stored::TableRef::parse(&format!("{project}/spartakus/reports"))?;
    let schema = TableSchema::new(stored::bigquery::schema()?);
    client
        .table()
        .create(Table::new(project, "spartakus", "reports", schema))
        .await?;
    let tombstones = TableSchema::new(stored::bigquery::tombstones_schema()?);
    client
        .table()
        .create(Table::new(
            project,
            "spartakus",
            &table.tombstones_id(),
            tombstones,
        ))
        .await?;
    let view = Table::new(
        project,
        "spartakus",
        &table.view_id(),
        TableSchema::new(vec![]),
    )
    .view(ViewDefinition {
        query: stored::bigquery::view_query(&table),
        use_legacy_sql: Some(false),
        user_defined_function_resources: None,
    });
    client.table().create(view).await?;
    let insert = |rows: &[Value]| {
        let mut request = TableDataInsertAllRequest::new();
        for row in rows {
            request.add_row(None, row.clone())?;
        }
        Ok::<_, gcp_bigquery_client::error::BQError>(client.tabledata().insert_all(
            project,
            "spartakus",
            "reports",
            request,
        ))
    };
    let [full, hollow, bare] = rows();

    // Rows with no value in a nested record read back whole, tabledata.list included.
    let answer = insert(&[hollow, bare])?.await?;
    assert!(answer.insert_errors.is_none_or(|e| e.is_empty()));
    let listed = list_rows(&client, project, "reports").await?;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let node = |id: &str, capacity: Value| {
        let mut f = vec![json!({"v": id})];
        f.extend((0..7).map(|_| json!({"v": null})));
        f.push(json!({"v": capacity}));
        json!({"v": {"f": f}})
    };
    // An absent nested array reads as NULL, an empty one as empty (a NULL top-level column
    // reads as empty, as in BigQuery).
    let hollow_nodes = json!([node("n1", Value::Null), node("n2", json!([]))]);
    let hollow_workloads =
        json!([{"v": {"f": [{"v": "Job"}, {"v": "0"}, {"v": []}, {"v": null}, {"v": null}]}}]);
    assert_reads(
        &bq,
        &[
            Shape {
                shape: "whole rows without nested values (SELECT *)",
                sql: "SELECT clusterID, nodes, workloads, extensions, skipped FROM spartakus.reports \
                      WHERE clusterID IN ('bare', 'hollow') ORDER BY clusterID",
                read: Read::Rows(json!([
                    ["bare", [], [], [], []],
                    ["hollow", hollow_nodes, hollow_workloads, [], []]
                ])),
            },
            Shape {
                shape: "NULL vs empty nested arrays, and UNNEST of them",
                sql: "SELECT n.id, ARRAY_LENGTH(n.capacity), \
                             (SELECT COUNT(*) FROM UNNEST(n.capacity) AS c WHERE c.resource = 'cpu') \
                      FROM spartakus.reports AS r, UNNEST(r.nodes) AS n ORDER BY n.id",
                read: Read::Rows(json!([["n1", null, "0"], ["n2", "0", "0"]])),
            },
            Shape {
                shape: "an absent RECORD in a REPEATED RECORD, its field, an empty REPEATED RECORD in it",
                sql: "SELECT w.kind, w.ageHours.median, ARRAY_LENGTH(w.perNamespace) \
                      FROM spartakus.reports AS r, UNNEST(r.workloads) AS w",
                read: Read::Rows(json!([["Job", null, "0"]])),
            },
        ],
    )
    .await;

    // The full row: every nested shape of the schema.
    insert(&[full])?.await?;
    let listed = list_rows(&client, project, "reports").await;
    assert!(
        listed
            .as_ref()
            .is_err_and(|e| e.to_string().contains(MANGLED)),
        "tabledata.list of a table with a nested record written by insertAll: {listed:?}"
    );
    assert_reads(&bq, &full_row_shapes()).await;
    Ok(())
}

/// The reads of the `full` row, each alone (one mangled value fails the whole query).
fn full_row_shapes() -> Vec<Shape> {
    vec![
        Shape {
            shape: "scalar columns: STRING, INTEGER, TIMESTAMP",
            sql: "SELECT version, timestamp, masterVersion, reportID, schemaVersion, namespaces, \
                         erasureCheck, UNIX_SECONDS(receivedAt) \
                  FROM spartakus.reports WHERE clusterID = 'full'",
            read: Read::Rows(json!([[
                "v0.1.0",
                "1764000000",
                "v1.37.2",
                "r-full",
                "2",
                "12",
                "ab12",
                "1796558400"
            ]])),
        },
        Shape {
            shape: "REPEATED RECORD of scalars, whole (extensions, skipped)",
            sql: "SELECT extensions, skipped FROM spartakus.reports WHERE clusterID = 'full'",
            read: Read::Rows(json!([[
                [{"v": {"f": [{"v": "example.com/owner"}, {"v": "team"}]}}],
                [{"v": {"f": [{"v": "namespaces"}, {"v": "forbidden"}]}}]
            ]])),
        },
        Shape {
            shape: "REPEATED RECORD of scalars, by UNNEST (extensions)",
            sql: "SELECT e.name, e.value FROM spartakus.reports AS r, UNNEST(r.extensions) AS e \
                  WHERE r.clusterID = 'full'",
            read: Read::Rows(json!([["example.com/owner", "team"]])),
        },
        Shape {
            shape: "scalar fields of a REPEATED RECORD that holds a REPEATED RECORD (nodes[].id)",
            sql: "SELECT n.id, n.osImage, n.kubeletVersion, ARRAY_LENGTH(r.nodes) \
                  FROM spartakus.reports AS r, UNNEST(r.nodes) AS n WHERE r.clusterID = 'full'",
            read: Read::Rows(json!([["n1", "Ubuntu 24.04.1 LTS", "v1.37.2", "1"]])),
        },
        Shape {
            shape: "scalar fields of a REPEATED RECORD that holds RECORDs (workloads[].kind)",
            sql: "SELECT w.kind, w.total, w.namespacesSampled, ARRAY_LENGTH(w.perNamespace) \
                  FROM spartakus.reports AS r, UNNEST(r.workloads) AS w WHERE r.clusterID = 'full'",
            read: Read::Rows(json!([["Pod", "40", null, "2"]])),
        },
        Shape {
            shape: "ARRAY_LENGTH of a REPEATED RECORD in a REPEATED RECORD (nodes[].capacity)",
            sql: "SELECT ARRAY_LENGTH(n.capacity) FROM spartakus.reports AS r, UNNEST(r.nodes) AS n \
                  WHERE r.clusterID = 'full'",
            read: Read::Rows(json!([["2"]])),
        },
        Shape {
            shape: "a RECORD in a REPEATED RECORD, whole (workloads[].ageHours)",
            sql: "SELECT w.ageHours FROM spartakus.reports AS r, UNNEST(r.workloads) AS w \
                  WHERE r.clusterID = 'full'",
            read: Read::Rows(json!([[{"f": [{"v": "30"}, {"v": "60"}]}]])),
        },
        Shape {
            shape: "a RECORD in a REPEATED RECORD, by field (workloads[].ageHours.median: stats' win_workloads)",
            sql: "SELECT w.ageHours.median FROM spartakus.reports AS r, UNNEST(r.workloads) AS w \
                  WHERE r.clusterID = 'full'",
            read: Read::Mangled,
        },
        Shape {
            shape: "a REPEATED RECORD in a REPEATED RECORD, whole (nodes[].capacity)",
            sql: "SELECT n.capacity FROM spartakus.reports AS r, UNNEST(r.nodes) AS n \
                  WHERE r.clusterID = 'full'",
            read: Read::Mangled,
        },
        Shape {
            shape: "a REPEATED RECORD in a REPEATED RECORD, by UNNEST (nodes[].capacity: stats' win_accel)",
            sql: "SELECT c.resource, c.value \
                  FROM spartakus.reports AS r, UNNEST(r.nodes) AS n, UNNEST(n.capacity) AS c \
                  WHERE r.clusterID = 'full'",
            read: Read::Mangled,
        },
        Shape {
            shape: "a REPEATED RECORD in a REPEATED RECORD, in a correlated subquery (stats' win_nodes cpu)",
            sql: "SELECT (SELECT MAX(c.value) FROM UNNEST(n.capacity) AS c WHERE c.resource = 'cpu') \
                  FROM spartakus.reports AS r, UNNEST(r.nodes) AS n WHERE r.clusterID = 'full'",
            read: Read::Mangled,
        },
        Shape {
            shape: "a REPEATED RECORD in a REPEATED RECORD, by UNNEST (workloads[].perNamespace)",
            sql: "SELECT p.min, p.max, p.namespaces \
                  FROM spartakus.reports AS r, UNNEST(r.workloads) AS w, UNNEST(w.perNamespace) AS p \
                  WHERE r.clusterID = 'full'",
            read: Read::Mangled,
        },
        Shape {
            shape: "a REPEATED RECORD holding a nested record, whole (nodes)",
            sql: "SELECT nodes FROM spartakus.reports WHERE clusterID = 'full'",
            read: Read::Mangled,
        },
        Shape {
            shape: "a REPEATED RECORD holding a nested record, whole (workloads)",
            sql: "SELECT workloads FROM spartakus.reports WHERE clusterID = 'full'",
            read: Read::Mangled,
        },
        Shape {
            shape: "SELECT * of the row",
            sql: "SELECT * FROM spartakus.reports WHERE clusterID = 'full'",
            read: Read::Mangled,
        },
        Shape {
            shape: "TO_JSON_STRING of nodes: reads, a nested record as its list of one-field objects",
            sql: "SELECT TO_JSON_STRING(n.capacity) FROM spartakus.reports AS r, UNNEST(r.nodes) AS n \
                  WHERE r.clusterID = 'full'",
            read: Read::Rows(json!([[
                r#"[[{"resource":"cpu"},{"value":"4"}],[{"resource":"memory"},{"value":"16Gi"}]]"#
            ]])),
        },
        Shape {
            shape: "through the view: scalar fields of nodes",
            sql: "SELECT n.id FROM spartakus.reports_deduplicated AS r, UNNEST(r.nodes) AS n \
                  WHERE r.receivedAt >= TIMESTAMP '2026-12-06' AND r.clusterID = 'full'",
            read: Read::Rows(json!([["n1"]])),
        },
        Shape {
            shape: "through the view: nodes[].capacity by UNNEST",
            sql: "SELECT c.resource FROM spartakus.reports_deduplicated AS r, UNNEST(r.nodes) AS n, \
                         UNNEST(n.capacity) AS c \
                  WHERE r.receivedAt >= TIMESTAMP '2026-12-06' AND r.clusterID = 'full'",
            read: Read::Mangled,
        },
    ]
}

#[tokio::test]
async fn query_answers_each_rows_cells_or_the_emulators_error() -> TestResult {
    let bq = BigQuery::start().await?;
    let rows = bq
        .query(
            "SELECT n, s, CAST(NULL AS STRING) AS z \
             FROM UNNEST([STRUCT(2 AS n, 'b' AS s), STRUCT(1 AS n, 'a' AS s)]) ORDER BY n",
        )
        .await?;
    assert_eq!(
        rows,
        [
            [json!("1"), json!("a"), Value::Null],
            [json!("2"), json!("b"), Value::Null]
        ]
    );
    assert_eq!(
        bq.query("SELECT 1 LIMIT 0").await?,
        Vec::<Vec<Value>>::new()
    );
    let refused = bq.query("SELECT x FROM nowhere.nothing").await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("nothing")),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_proxy_forwards_and_records_and_fails_what_it_is_told_to() -> TestResult {
    let bq = BigQuery::start().await?;
    let proxy = BigQueryProxy::start(&bq.endpoint()).await?;
    let client = client_at(&proxy.endpoint(), &bq).await?;
    let project = bq.project();
    let table = Table::new(project, "spartakus", "reports", report_schema(false));
    client.table().create(table).await?;
    let insert = |rows: &[(&str, &str)]| {
        let mut request = TableDataInsertAllRequest::new();
        for (insert_id, cluster) in rows {
            request.add_row(Some((*insert_id).into()), json!({"clusterID": cluster}))?;
        }
        Ok::<_, gcp_bigquery_client::error::BQError>(client.tabledata().insert_all(
            project,
            "spartakus",
            "reports",
            request,
        ))
    };
    let clusters = || bq.query("SELECT clusterID FROM spartakus.reports ORDER BY clusterID");

    // Failed before storing, stored then failed, stored with one row rejected.
    proxy.fail_next([503]);
    assert!(insert(&[("r1", "c1")])?.await.is_err());
    proxy.fail_after_storing([429]);
    assert!(insert(&[("r2", "c2")])?.await.is_err());
    proxy.reject_cluster(Some("c4"));
    let answer = insert(&[("r3", "c3"), ("r4", "c4")])?.await?;
    let errors = answer.insert_errors.unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].index, Some(1));
    assert_eq!(clusters().await?, [[json!("c2")], [json!("c3")]]);
    let seen = |ids: &[&str], status| InsertAll {
        rows: ids
            .iter()
            .map(|id| (Some((*id).to_owned()), None))
            .collect(),
        status,
    };
    assert_eq!(
        proxy.inserts(),
        [
            seen(&["r1"], 503),
            seen(&["r2"], 429),
            seen(&["r3", "r4"], 200)
        ]
    );

    // A DELETE refused as over the streaming buffer, then allowed.
    let delete = || {
        client.job().query(
            project,
            QueryRequest::new("DELETE FROM spartakus.reports WHERE clusterID = 'c2'"),
        )
    };
    proxy.refuse_deletes(true);
    let refused = delete().await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("streaming buffer")),
        "{refused:?}"
    );
    proxy.refuse_deletes(false);
    delete().await?;
    assert_eq!(proxy.deletes(), [true, false]);
    assert_eq!(clusters().await?, [[json!("c3")]]);

    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|(method, path)| method == "POST" && path.ends_with("/reports/insertAll")),
        "{requests:?}"
    );
    proxy.clear_requests();
    assert!(proxy.requests().is_empty());
    Ok(())
}
