//! What the tests share: a gateway in-process on 127.0.0.1:0 ([`Gateway`]) or the gateway
//! binary ([`launch`]) in front of a real nats-server from testenv, reading what reached the
//! streams, the seed report and a gzip bomb, a raw HTTP/1.1 POST that hears an early refusal
//! ([`post_raw`]), and the lock that keeps the heavy and timed tests apart.

use std::cell::RefCell;
use std::io::Write;
use std::time::Duration;

use async_nats::jetstream;
use flate2::Compression;
use flate2::write::GzEncoder;
use gateway::{Config, RunError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The seed README's example payload, as existing volunteers send it.
pub(crate) const SEED: &str = include_str!("../../../report/testdata/v1-seed.json");

/// How long any condition may take before a test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Held for its whole run by every test that loads the machine or bounds how long something
/// takes or how much memory it holds (the overload, the hostile corpus, the slow-loris, the
/// connection tests, the gzip bomb), so that no two of them overlap. In one test binary,
/// libtest would otherwise pair, say, the overload with a thousand slow heads on the CI's two
/// cores, and bounds measured while each file was a binary of its own would no longer hold.
pub(crate) async fn exclusive() -> MutexGuard<'static, ()> {
    static EXCLUSIVE: Mutex<()> = Mutex::const_new(());
    EXCLUSIVE.lock().await
}

/// A gateway running in this process.
pub(crate) struct Gateway {
    pub(crate) url: String,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<Result<(), RunError>>,
    pub(crate) http: reqwest::Client,
}

impl Gateway {
    /// Starts a gateway with `config` and waits until `/healthz` answers.
    pub(crate) async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway::run(config, listener, shutdown.clone()));
        let gateway = Gateway {
            url,
            shutdown,
            task,
            http: reqwest::Client::new(),
        };
        gateway.wait_for_status("/healthz", 200).await;
        gateway
    }

    /// Starts a gateway for `nats` with the queue of the test named `name` (see [`queue`]),
    /// and waits until it is ready.
    pub(crate) async fn ready(nats_url: &str, name: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_nats(nats_url);
        config.queue = queue(name);
        tweak(&mut config);
        let gateway = Gateway::start(config).await;
        gateway.wait_for_status("/readyz", 200).await;
        gateway
    }

    /// Polls `GET path` until it answers `status`, failing after [`DEADLINE`].
    pub(crate) async fn wait_for_status(&self, path: &str, status: u16) {
        let (http, url) = (&self.http, &format!("{}{path}", self.url));
        let last = &RefCell::new(String::from("nothing yet"));
        let answered = testenv::try_eventually(DEADLINE, || async move {
            match http.get(url).send().await {
                Ok(r) if r.status() == status => true,
                Ok(r) => {
                    *last.borrow_mut() = r.status().to_string();
                    false
                }
                Err(e) => {
                    *last.borrow_mut() = e.to_string();
                    false
                }
            }
        })
        .await;
        if let Err(waited) = answered {
            panic!(
                "GET {path} never answered {status} within {waited:?} (last: {})",
                last.borrow()
            );
        }
    }

    /// Polls the metrics until `line` appears.
    pub(crate) async fn wait_for_metric(&self, line: &str) {
        let last = &RefCell::new(String::new());
        let appeared = testenv::try_eventually(DEADLINE, || async move {
            let text = self.get_text("/metrics").await;
            let found = text.lines().any(|l| l == line);
            *last.borrow_mut() = text;
            found
        })
        .await;
        if appeared.is_err() {
            panic!("metric line {line:?} never appeared:\n{}", last.borrow());
        }
    }

    pub(crate) async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    }

    /// `POST /api/v1` with the original volunteer's headers.
    pub(crate) async fn post_v1(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /api/v1")
    }

    /// Cancels the gateway and waits until `run` returns.
    pub(crate) async fn stop(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("gateway stops")
            .expect("gateway task")
    }
}

/// The gateway binary publishing to `nats_url` on the queue of the test named `name` (see
/// [`queue`]); add flags, then `start` it (ready once `/readyz` answers 200).
pub(crate) fn launch(nats_url: &str, name: &str) -> testenv::Launch {
    testenv::Launch::gateway(nats_url).args(["--queue", &queue_prefix(name)])
}

/// The `--queue` prefix of the test named `name`.
fn queue_prefix(name: &str) -> String {
    name.to_lowercase().replace('_', "-")
}

/// The queue of a test named `name` (`SEED` → streams `SEED_REPORTS`, `SEED_ERASURES`), so that
/// tests sharing a NATS server never share a stream.
pub(crate) fn queue(name: &str) -> report::queue::Topology {
    report::queue::Topology::new(&queue_prefix(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// A JetStream context on `url`.
pub(crate) async fn jetstream(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("connect to NATS"))
}

/// The reports queued by the gateway of the test named `name`.
pub(crate) async fn messages(
    js: &jetstream::Context,
    name: &str,
) -> Vec<jetstream::message::StreamMessage> {
    stored(js, &queue(name).reports.name).await
}

/// The erasure requests queued by the gateway of the test named `name`.
pub(crate) async fn erasures(
    js: &jetstream::Context,
    name: &str,
) -> Vec<jetstream::message::StreamMessage> {
    stored(js, &queue(name).erasures.name).await
}

/// Every message in `stream`, in order.
async fn stored(js: &jetstream::Context, stream: &str) -> Vec<jetstream::message::StreamMessage> {
    let mut handle = js.get_stream(stream).await.expect("stream exists");
    let state = handle.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(message) = handle.get_raw_message(seq).await {
            out.push(message);
        }
    }
    out
}

/// The seed report with another `timestamp`, so that it gets another derived reportID.
pub(crate) fn seed_at(timestamp: u64) -> String {
    let mut value: serde_json::Value = serde_json::from_str(SEED).expect("seed is JSON");
    value["timestamp"] = serde_json::Value::String(timestamp.to_string());
    value.to_string()
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// The problem body of a refused request.
pub(crate) async fn problem(response: reqwest::Response) -> serde_json::Value {
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    response.json().await.expect("problem JSON")
}

/// 1 GiB of zeros, gzipped as it is produced (about 1 MB compressed).
pub(crate) fn gzip_bomb() -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    for _ in 0..1024 {
        encoder.write_all(&zeros).expect("gzip in memory");
    }
    encoder.finish().expect("gzip in memory")
}

/// An HTTP answer as read off the socket.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How long one raw request may take, from connecting to the end of the answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// POSTs `body` over a fresh connection, writing and reading at once: a gateway that refuses
/// a body early (413) answers while the client is still sending, and an HTTP client that waits
/// for its write to finish would see only the broken pipe, not the answer.
pub(crate) async fn post_raw(
    addr: &str,
    route: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Answer, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "POST {route} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // Dropping the write half would half-close the connection, which the server takes for a
    // client gone away: the writer is kept until the answer is read.
    let (done, until_done) = tokio::sync::oneshot::channel::<()>();
    let send = tokio::spawn(async move {
        let written = async {
            writer.write_all(head.as_bytes()).await?;
            for chunk in body.chunks(64 << 10) {
                writer.write_all(chunk).await?;
            }
            writer.flush().await
        }
        .await;
        let _ = until_done.await;
        written
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(REQUEST_DEADLINE, async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
            if complete(&raw) {
                return Ok(());
            }
        }
    })
    .await;
    let _ = done.send(());
    send.abort();
    match read {
        Err(_) => return Err(format!("no complete answer within {REQUEST_DEADLINE:?}")),
        Ok(Err(e)) => return Err(format!("reading the answer: {e}")),
        Ok(Ok(())) => {}
    }
    parse_answer(&raw)
        .ok_or_else(|| format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
}

/// Splits the head from the body: the index just past the blank line.
fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Whether `raw` holds a whole answer (the gateway's answers all carry content-length).
fn complete(raw: &[u8]) -> bool {
    parse_answer(raw).is_some()
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let end = head_end(raw)?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    let body = raw.get(end..end + length)?.to_vec();
    Some(Answer {
        status,
        headers,
        body,
    })
}
