//! A fault-injecting proxy in front of a BigQuery REST endpoint (the emulator): it forwards every
//! request, records it, and on command answers what the emulator never answers.
//!
//! What the emulator cannot show, and the proxy therefore injects:
//! - 429 and 503 answers to insertAll, also one sent after the rows were stored (the way a
//!   timeout after BigQuery committed leaves a duplicate behind);
//! - per-row `insertErrors` (the emulator stores any row it is given);
//! - BigQuery's refusal of a DML DELETE over rows still in its streaming buffer, up to about 90
//!   minutes after insertAll (the emulator has no streaming buffer: it deletes rows inserted a
//!   moment ago).
//!
//! Every request passes one decision point (`forward`) that reads the commands under one lock,
//! so a new command (e.g. holding requests back) is a field and a branch there.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::Error;

/// One insertAll request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertAll {
    /// Each row's `insertId` and the `reportID` of its `json`, in the request's order.
    pub rows: Vec<(Option<String>, Option<String>)>,
    /// The status the proxy answered with (the upstream's, unless one was injected).
    pub status: u16,
}

/// What the proxy was told to do, and what it saw.
#[derive(Debug, Default)]
struct Faults {
    /// Statuses to answer the next insertAll requests with, instead of forwarding them.
    fail_next: VecDeque<StatusCode>,
    /// Statuses to answer the next insertAll requests with after forwarding them: the rows are
    /// stored, the client is told they failed.
    fail_after_storing: VecDeque<StatusCode>,
    /// Rows with this clusterID are removed from insertAll requests and reported as invalid.
    reject_cluster: Option<String>,
    /// Refuse every DML DELETE as BigQuery does while the rows are in its streaming buffer.
    refuse_deletes: bool,
    /// Every request: method, and path with query.
    requests: Vec<(Method, String)>,
    /// Every insertAll request.
    inserts: Vec<InsertAll>,
    /// Every DML DELETE, with whether it was refused.
    deletes: Vec<bool>,
}

/// The proxy's handle on its shared state, and the client it forwards with.
#[derive(Debug, Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Arc<Mutex<Faults>>,
}

impl Shared {
    /// The commands and records. A test that panicked while holding the lock leaves plain
    /// records behind, still fit to read.
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A proxy on a free loopback port in front of a BigQuery REST endpoint, e.g.
/// [`BigQuery::endpoint`](crate::BigQuery::endpoint). Point the client under test at
/// [`BigQueryProxy::endpoint`] instead; it serves the same paths.
///
/// Without commands it forwards every request unchanged (a gzipped body is forwarded plain) and
/// records it. It serves on the Tokio runtime it was started on until dropped.
#[derive(Debug)]
pub struct BigQueryProxy {
    addr: SocketAddr,
    shared: Shared,
    server: JoinHandle<()>,
}

impl BigQueryProxy {
    /// Starts the proxy in front of `upstream` (e.g. `http://127.0.0.1:34567`).
    pub async fn start(upstream: &str) -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("binding the BigQuery proxy", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the BigQuery proxy's address", e))?;
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            faults: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("testenv: the BigQuery proxy on {addr} stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// The proxy's endpoint, e.g. `http://127.0.0.1:34569`, in the form of
    /// [`BigQuery::endpoint`](crate::BigQuery::endpoint).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next insertAll requests with `statuses`, one each, in order, without
    /// forwarding them (nothing is stored). Adds to statuses not used yet.
    ///
    /// # Panics
    ///
    /// If a status is not an HTTP status code (100 to 999).
    pub fn fail_next(&self, statuses: impl IntoIterator<Item = u16>) {
        let statuses: Vec<StatusCode> = statuses.into_iter().map(status_code).collect();
        self.shared.faults().fail_next.extend(statuses);
    }

    /// Forwards the next insertAll requests (their rows are stored) and then answers them with
    /// `statuses`, one each, in order, as a timeout after BigQuery committed leaves the client
    /// believing they failed. Adds to statuses not used yet.
    ///
    /// # Panics
    ///
    /// If a status is not an HTTP status code (100 to 999).
    pub fn fail_after_storing(&self, statuses: impl IntoIterator<Item = u16>) {
        let statuses: Vec<StatusCode> = statuses.into_iter().map(status_code).collect();
        self.shared.faults().fail_after_storing.extend(statuses);
    }

    /// From now on, insertAll rows whose `clusterID` is `cluster_id` are not forwarded and are
    /// answered as invalid rows, by their index in the request, as BigQuery answers with
    /// `skipInvalidRows`; the other rows are stored. `None` stops rejecting.
    pub fn reject_cluster(&self, cluster_id: Option<&str>) {
        self.shared.faults().reject_cluster = cluster_id.map(str::to_owned);
    }

    /// From now on, whether every DML DELETE is refused as BigQuery refuses DML over rows in its
    /// streaming buffer.
    pub fn refuse_deletes(&self, refuse: bool) {
        self.shared.faults().refuse_deletes = refuse;
    }

    /// Every request so far: its method, and its path with the query.
    pub fn requests(&self) -> Vec<(Method, String)> {
        self.shared.faults().requests.clone()
    }

    /// Forgets the requests seen so far (not the insertAll and DELETE records).
    pub fn clear_requests(&self) {
        self.shared.faults().requests.clear();
    }

    /// Every insertAll request so far, in the order they were answered.
    pub fn inserts(&self) -> Vec<InsertAll> {
        self.shared.faults().inserts.clone()
    }

    /// Every DML DELETE so far, in order: whether it was refused.
    pub fn deletes(&self) -> Vec<bool> {
        self.shared.faults().deletes.clone()
    }
}

impl Drop for BigQueryProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or_else(|_| panic!("{status} is not an HTTP status"))
}

/// An error answer in BigQuery's form, with the Google API status name of `status`.
fn error_answer(status: StatusCode, reason: &str, message: &str) -> Response {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    let error = json!({"error": {"code": status.as_u16(), "message": message,
        "errors": [{"reason": reason, "message": message}], "status": name}});
    (status, axum::Json(error)).into_response()
}

/// An injected failure, as BigQuery answers when it is overloaded or unavailable.
fn injected(status: StatusCode) -> Response {
    error_answer(status, "backendError", "injected by the test proxy")
}

/// BigQuery's answer to DML over rows still in the streaming buffer (up to about 90 minutes
/// after insertAll). The emulator has no streaming buffer, so the proxy gives this answer.
fn streaming_buffer(query: &str) -> Response {
    let table = query.split('`').nth(1).unwrap_or("the table");
    let message = format!(
        "UPDATE or DELETE statement over table {table} would affect rows in the streaming buffer, which is not supported"
    );
    error_answer(StatusCode::BAD_REQUEST, "invalidQuery", &message)
}

/// A request the proxy itself could not handle: a test's mistake, not an injected fault.
fn proxy_failed(status: StatusCode, message: String) -> Response {
    error_answer(status, "testProxy", &format!("the test proxy: {message}"))
}

/// Whether `query` is a DML DELETE.
fn is_delete(query: &str) -> bool {
    query
        .trim_start()
        .get(..6)
        .is_some_and(|word| word.eq_ignore_ascii_case("DELETE"))
}

/// The one decision point: records the request, applies the commands, forwards what is left.
async fn forward(
    State(proxy): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    proxy.faults().requests.push((method.clone(), path.clone()));
    let mut body = body.to_vec();
    let mut content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
    {
        let mut plain = Vec::new();
        if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain) {
            return proxy_failed(StatusCode::BAD_REQUEST, format!("gunzipping {path}: {e}"));
        }
        body = plain;
        content_type = "application/json".into();
    }

    if path.ends_with("/queries")
        && let Ok(request) = serde_json::from_slice::<Value>(&body)
        && let Some(query) = request["query"].as_str().filter(|q| is_delete(q))
    {
        let mut faults = proxy.faults();
        let refuse = faults.refuse_deletes;
        faults.deletes.push(refuse);
        if refuse {
            return streaming_buffer(query);
        }
    }

    let mut insert = None;
    let mut rejected: Vec<usize> = Vec::new();
    let mut fail_after_storing = None;
    if path.contains("/insertAll") {
        let mut request: Value = match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return proxy_failed(StatusCode::BAD_REQUEST, format!("insertAll body: {e}"));
            }
        };
        let all = request["rows"].as_array().cloned().unwrap_or_default();
        let rows = all
            .iter()
            .map(|r| {
                (
                    r["insertId"].as_str().map(str::to_owned),
                    r["json"]["reportID"].as_str().map(str::to_owned),
                )
            })
            .collect();
        let mut faults = proxy.faults();
        if let Some(status) = faults.fail_next.pop_front() {
            faults.inserts.push(InsertAll {
                rows,
                status: status.as_u16(),
            });
            return injected(status);
        }
        fail_after_storing = faults.fail_after_storing.pop_front();
        if let Some(cluster) = &faults.reject_cluster {
            let mut kept = Vec::new();
            for (index, row) in all.into_iter().enumerate() {
                if row["json"]["clusterID"] == cluster.as_str() {
                    rejected.push(index);
                } else {
                    kept.push(row);
                }
            }
            request["rows"] = kept.into();
            body = request.to_string().into_bytes();
        }
        insert = Some(rows);
    }

    // The emulator needs nothing of the request but its method, path, type and body.
    let url = format!("{}{path}", proxy.upstream);
    let response = match proxy
        .http
        .request(method, &url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return proxy_failed(StatusCode::BAD_GATEWAY, format!("{url}: {e}")),
    };
    let status = response.status();
    let mut answer = match response.bytes().await {
        Ok(bytes) => bytes.to_vec(),
        Err(e) => return proxy_failed(StatusCode::BAD_GATEWAY, format!("{url}: {e}")),
    };
    let answered = fail_after_storing.unwrap_or(status);
    if let Some(rows) = insert {
        proxy.faults().inserts.push(InsertAll {
            rows,
            status: answered.as_u16(),
        });
    }
    if let Some(status) = fail_after_storing {
        return injected(status);
    }
    if !rejected.is_empty() && status.is_success() {
        // As BigQuery answers with skipInvalidRows: the invalid rows by their index in the request.
        let errors: Vec<Value> = rejected
            .iter()
            .map(|i| {
                json!({"index": i, "errors": [{"reason": "invalid", "location": "clusterID",
                    "message": "injected: no such field"}]})
            })
            .collect();
        answer = json!({"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": errors})
            .to_string()
            .into_bytes();
    }
    (status, [("content-type", "application/json")], answer).into_response()
}
