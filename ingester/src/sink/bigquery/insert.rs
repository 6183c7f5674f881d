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

/// Splits `rows` into requests of at most `limits.max_rows` rows whose JSON body, as the client
/// encodes it before gzip, is at most `limits.max_bytes` bytes (a single larger row goes alone),
/// each row with `insertId` = its report ID. Sizes are counted exactly, the request's own fields
/// included, so a limit set at BigQuery's is never crossed by a request of several rows.
fn chunks(rows: &[Row], limits: Limits) -> Result<Vec<Chunk>, SinkError> {
    let overhead = encoded_len(&request(Vec::new())?)?;
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = overhead;
    for (i, row) in rows.iter().enumerate() {
        let json = serde_json::to_value(row).map_err(encoding)?;
        let row = TableDataInsertAllRequestRows {
            insert_id: Some(row.report_id.to_string()),
            json,
        };
        let len = encoded_len(&row)?;
        // The row as it appears in the body, after a comma unless it comes first.
        if !current.is_empty()
            && (current.len() >= limits.max_rows || bytes + 1 + len > limits.max_bytes)
        {
            chunks.push(std::mem::take(&mut current));
            bytes = overhead;
        }
        bytes += len + usize::from(!current.is_empty());
        current.push((i, row));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    Ok(chunks)
}

/// The insertAll request for `rows`, as `insert` sends it.
fn request(
    rows: Vec<TableDataInsertAllRequestRows>,
) -> Result<TableDataInsertAllRequest, SinkError> {
    let mut request = TableDataInsertAllRequest::new();
    // Valid rows are stored even when some are not; the invalid ones are reported by index and
    // dead-lettered.
    request.skip_invalid_rows();
    request.add_rows(rows).map_err(from_bq)?;
    Ok(request)
}

/// Bytes of `value` encoded as the client encodes a request body (compact JSON), without
/// keeping the encoding.
fn encoded_len(value: &impl serde::Serialize) -> Result<usize, SinkError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(encoding)?;
    Ok(count.0)
}

fn encoding(e: serde_json::Error) -> SinkError {
    SinkError::BigQuery {
        status: None,
        message: e.to_string(),
    }
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
            client
                .tabledata()
                .insert_all(project, dataset, table, request(rows)?)
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

    /// The body the client sends for `chunk` (before gzip).
    fn body_len(chunk: &Chunk) -> usize {
        let rows = chunk.iter().map(|(_, r)| r.clone()).collect();
        serde_json::to_vec(&request(rows).unwrap()).unwrap().len()
    }

    #[test]
    fn every_request_body_fits_the_byte_limit_with_its_own_fields_and_no_request_is_split_early() {
        let rows = rows(12);
        let one = body_len(&chunks(&rows[..1], LIMITLESS).unwrap()[0]);
        let row = encoded_len(&chunks(&rows[..1], LIMITLESS).unwrap()[0][0].1).unwrap();
        // From one row per request to all of them in one; and limits within 60 bytes of a whole
        // number of rows, where counting the rows alone, without the request's own fields,
        // would put one row too many in a request.
        let coarse = (one..=12 * one)
            .step_by(one / 7)
            .flat_map(|b| [(b, 1), (b, 5), (b, 500)]);
        let near = (1..=12).flat_map(|k| (k * row - 60..=k * row + 60).map(|b| (b, 500)));
        for (max_bytes, max_rows) in coarse.chain(near) {
            let limits = Limits {
                max_rows,
                max_bytes,
            };
            let chunks = chunks(&rows, limits).unwrap();
            let order: Vec<usize> = chunks.iter().flatten().map(|(i, _)| *i).collect();
            assert_eq!(
                order,
                (0..12).collect::<Vec<_>>(),
                "every row once, in order"
            );
            for (n, chunk) in chunks.iter().enumerate() {
                assert!(chunk.len() <= max_rows);
                assert!(
                    chunk.len() == 1 || body_len(chunk) <= max_bytes,
                    "{max_bytes}: a request of {} bytes",
                    body_len(chunk)
                );
                // Full: the next row would have crossed a limit.
                if let Some(next) = chunks.get(n + 1) {
                    let mut grown = chunk.clone();
                    grown.push(next[0].clone());
                    assert!(grown.len() > max_rows || body_len(&grown) > max_bytes);
                }
            }
        }
    }

    const LIMITLESS: Limits = Limits {
        max_rows: usize::MAX,
        max_bytes: usize::MAX,
    };

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
