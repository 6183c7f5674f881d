//! Rows into insertAll requests: split by the request limits, sent concurrently, retried on
//! 429/5xx with the same insertIds, and each row's outcome read from the answer.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;

use super::{Limits, from_bq};
use crate::error::SinkError;
use crate::row::Row;
use crate::sink::Outcome;
use stored::TableRef;

/// How one batch's requests are retried on 429/5xx before the reports are nakked instead;
/// kept well under the default ack wait. The attempts never outlast the batch's deadline
/// (`--bigquery-request-timeout`, applied around the whole write by `BigQuerySink::write`):
/// when it passes, the batch fails and its reports are nakked.
fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(5)
        .with_jitter()
}

/// One request's rows, each with its index in the batch.
type Chunk = Vec<(usize, TableDataInsertAllRequestRows)>;

/// Writes a batch: one outcome per row, in order.
pub(super) async fn write(
    client: &Client,
    table: &TableRef,
    limits: Limits,
    rows: Vec<Row>,
) -> Result<Vec<Outcome>, SinkError> {
    let mut outcomes: Vec<Option<Outcome>> = rows.iter().map(|_| None).collect();
    let chunks = chunks(&rows, limits)?;
    let results =
        futures::future::join_all(chunks.into_iter().map(|c| insert(client, table, c))).await;
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

/// Splits `rows` into requests of at most `limits.max_rows` rows and about `limits.max_bytes`
/// bytes (a single larger row goes alone), each row with `insertId` = its report ID.
fn chunks(rows: &[Row], limits: Limits) -> Result<Vec<Chunk>, SinkError> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for (i, row) in rows.iter().enumerate() {
        let json = serde_json::to_value(row).map_err(|e| SinkError::BigQuery {
            status: None,
            message: e.to_string(),
        })?;
        // The request wraps each row in {"insertId": …, "json": …}: count that too.
        let size = json.to_string().len() + row.report_id.to_string().len() + 32;
        if !current.is_empty()
            && (current.len() >= limits.max_rows || bytes + size > limits.max_bytes)
        {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push((
            i,
            TableDataInsertAllRequestRows {
                insert_id: Some(row.report_id.to_string()),
                json,
            },
        ));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    Ok(chunks)
}

/// Sends one request with retries; outcomes for its rows.
async fn insert(client: &Client, table: &TableRef, chunk: Chunk) -> Vec<(usize, Outcome)> {
    let TableRef {
        project,
        dataset,
        table,
    } = table;
    let rows: Vec<TableDataInsertAllRequestRows> = chunk.iter().map(|(_, r)| r.clone()).collect();
    let send = || {
        let rows = rows.clone();
        async move {
            let mut request = TableDataInsertAllRequest::new();
            // Valid rows are stored even when some are not; the invalid ones are reported
            // by index and dead-lettered.
            request.skip_invalid_rows();
            request.add_rows(rows).map_err(from_bq)?;
            client
                .tabledata()
                .insert_all(project, dataset, table, request)
                .await
                .map_err(from_bq)
        }
    };
    let response = send
        .retry(retry_policy())
        .when(SinkError::is_retryable)
        .notify(
            |e, delay| tracing::warn!(error = %e, ?delay, "BigQuery insertAll failed; retrying"),
        )
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|_| {
                let report =
                    report::decode(include_bytes!("../../../../report/testdata/v1-seed.json"))
                        .unwrap();
                let env = report::Envelope::new(
                    report::ReportId::random(),
                    jiff::Timestamp::UNIX_EPOCH,
                    report,
                );
                crate::row::from_envelope(report::Envelope::decode(&env.encode()).unwrap())
            })
            .collect()
    }

    fn shape(chunks: &[Chunk]) -> Vec<Vec<usize>> {
        chunks
            .iter()
            .map(|c| c.iter().map(|(i, _)| *i).collect())
            .collect()
    }

    #[test]
    fn a_batch_is_split_by_row_count_in_order_with_the_report_id_as_insert_id() {
        let rows = rows(5);
        let limits = Limits {
            max_rows: 2,
            max_bytes: usize::MAX,
        };
        let chunks = chunks(&rows, limits).unwrap();
        assert_eq!(shape(&chunks), [vec![0, 1], vec![2, 3], vec![4]]);
        for (i, row) in chunks.iter().flatten() {
            assert_eq!(
                row.insert_id.as_deref(),
                Some(rows[*i].report_id.to_string().as_str())
            );
        }
    }

    #[test]
    fn a_batch_is_split_by_bytes_and_a_row_larger_than_the_limit_goes_alone() {
        let rows = rows(3);
        let one = serde_json::to_string(&rows[0]).unwrap().len();
        let two_fit = Limits {
            max_rows: 500,
            max_bytes: 2 * (one + 100),
        };
        assert_eq!(
            shape(&chunks(&rows, two_fit).unwrap()),
            [vec![0, 1], vec![2]]
        );
        let none_fit = Limits {
            max_rows: 500,
            max_bytes: 1,
        };
        assert_eq!(
            shape(&chunks(&rows, none_fit).unwrap()),
            [vec![0], vec![1], vec![2]]
        );
    }
}
