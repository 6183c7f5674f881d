//! The BigQuery emulator (github.com/goccy/bigquery-emulator), data in memory.

use std::ffi::OsString;
use std::time::Duration;

use tempfile::TempDir;

use crate::Error;
use crate::binaries::binary;
use crate::process::{Process, START_ATTEMPTS, free_ports, http_get};

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The project every emulator serves.
const PROJECT: &str = "spartakus-test";

/// A `bigquery-emulator` serving one project, its data in memory, on free loopback ports.
///
/// Its memory grows with each query it runs, so keep one instance to a group of tests with tens
/// of queries, not hundreds. Killed on drop.
///
/// An emulator that dies (it has crashed on bad input) fails the test: [`BigQuery::died`] says so
/// with its log, and dropping the handle panics with the same message unless `died` already
/// reported it (or the thread is already panicking: then the message goes to stderr).
#[derive(Debug)]
pub struct BigQuery {
    // Field order matters: the process dies before its folder (the log) is removed.
    process: Process,
    port: u16,
    grpc_port: u16,
    http: reqwest::Client,
    _dir: TempDir,
}

impl BigQuery {
    /// Starts the emulator and waits until it lists the project's datasets.
    pub async fn start() -> Result<Self, Error> {
        let dir = TempDir::with_prefix("spartakus-bigquery-")
            .map_err(|e| Error::io("creating a temporary folder", e))?;
        let log = dir.path().join("bigquery-emulator.log");
        let http = reqwest::Client::new();
        let mut attempt = 1;
        loop {
            let ports = free_ports(2)?;
            let (port, grpc_port) = (ports[0], ports[1]);
            let args: Vec<OsString> = [
                format!("--project={PROJECT}"),
                "--host=127.0.0.1".to_owned(),
                format!("--port={port}"),
                format!("--grpc-port={grpc_port}"),
                "--log-level=warn".to_owned(),
            ]
            .into_iter()
            .map(OsString::from)
            .collect();
            // The watchdog removes the folder once the emulator is dead, also when this process
            // is killed; so a retry must create it again.
            std::fs::create_dir_all(dir.path())
                .map_err(|e| Error::io(format!("creating {}", dir.path().display()), e))?;
            let mut process = Process::spawn(
                "bigquery-emulator",
                &binary("bigquery-emulator")?,
                &args,
                &log,
                Some(dir.path()),
            )?;
            let url = format!("http://127.0.0.1:{port}/bigquery/v2/projects/{PROJECT}/datasets");
            let ready = process
                .wait_until(READY_TIMEOUT, || {
                    let (http, url) = (http.clone(), url.clone());
                    async move { http_get(&http, &url).await.map(drop) }
                })
                .await;
            match ready {
                Ok(()) => {
                    process.arm();
                    return Ok(Self {
                        process,
                        port,
                        grpc_port,
                        http,
                        _dir: dir,
                    });
                }
                // A port was taken between choosing and binding it: choose again.
                Err(e) if e.is_port_conflict() && attempt < START_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The REST endpoint, e.g. `http://127.0.0.1:34567`; it serves paths both with and
    /// without the `/bigquery/v2` prefix.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Storage API (gRPC) address, e.g. `127.0.0.1:34568`.
    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// The project the emulator serves.
    pub fn project(&self) -> &str {
        PROJECT
    }

    /// Runs one standard-SQL statement (`jobs.query`) and returns each row's cells, each cell's
    /// `v` as the REST API gives it (a string, or null; a DML statement has no rows), or the
    /// emulator's error when it refused the statement or could not be reached.
    pub async fn query(&self, sql: &str) -> Result<Vec<Vec<serde_json::Value>>, String> {
        let url = format!("{}/bigquery/v2/projects/{PROJECT}/queries", self.endpoint());
        let response = self
            .http
            .post(&url)
            .json(&serde_json::json!({"query": sql, "useLegacySql": false}))
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
        let answer: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("POST {url}: {status}: not JSON ({e}): {body}"))?;
        if let Some(error) = answer.get("error") {
            let message = error["message"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            return Err(format!("{status}: {message}"));
        }
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        if answer["jobComplete"] == false {
            return Err(format!("the query did not complete at once: {body}"));
        }
        let Some(rows) = answer["rows"].as_array() else {
            return Ok(Vec::new());
        };
        rows.iter()
            .map(|row| match row["f"].as_array() {
                Some(cells) => Ok(cells.iter().map(|cell| cell["v"].clone()).collect()),
                None => Err(format!("a row without cells: {row}")),
            })
            .collect()
    }

    /// If the emulator died: the error that says so, with its exit status and the end of its
    /// log. Once reported here, the death no longer panics on drop.
    pub fn died(&self) -> Option<Error> {
        self.process.died()
    }

    /// Whether the emulator is running.
    pub fn is_running(&self) -> bool {
        self.process.exited().is_none()
    }

    /// The process id of the `bigquery-emulator` process.
    pub fn pid(&self) -> Result<u32, Error> {
        self.process.program_pid()
    }

    /// The end of the emulator's log, for diagnosing a failed test.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
