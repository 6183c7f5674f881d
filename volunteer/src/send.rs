//! Delivers one report body to a collector: gzip, `POST {gateway}/api/v1`, retries.
//!
//! The body (and so its `reportID`) is the same on every attempt, so the collector
//! stores a report once however often it arrives. Retries use exponential backoff with
//! full jitter (a random delay between zero and the current backoff step), wait at least
//! as long as a `Retry-After` asks, and stop at the send deadline. A 4xx other than 408
//! and 429 is final: sending the same bytes again cannot succeed.
//!
//! `volunteer forget` uses the same policy through `with_retries` and `post`.
//!
//! Usable as a library (the load generator reuses [`send`]).

use std::io::Write;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use tokio::time::Instant;

/// How to retry.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Total time budget for all attempts and waits.
    pub deadline: Duration,
    /// First backoff step.
    pub min_delay: Duration,
    /// Largest backoff step.
    pub max_delay: Duration,
}

impl Policy {
    /// Backoff from 1 s doubling up to 5 min, within `deadline`.
    pub(crate) fn with_deadline(deadline: Duration) -> Self {
        Policy {
            deadline,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
        }
    }
}

/// A delivered report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The collector's answer (2xx).
    pub status: StatusCode,
    /// Attempts it took, at least 1.
    pub attempts: u32,
}

/// Why a report was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The collector answered with a non-success status.
    #[error("collector answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the answer's body.
        body: String,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// No answer (connection refused, timeout, TLS, …). reqwest's message names only the
    /// URL; the cause (e.g. "Connection refused") is in the source chain, which the logs print.
    #[error("sending to the collector")]
    Transport(#[source] reqwest::Error),
    /// The gateway URL cannot take a path below it.
    #[error("gateway URL {0} cannot be a base URL")]
    Url(String),
    /// Compressing the body failed.
    #[error("compressing the report")]
    Compress(#[source] std::io::Error),
    /// The deadline passed; the last failure is attached.
    #[error("gave up after {attempts} attempts")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<SendError>,
    },
}

impl SendError {
    /// Whether sending the same body again may succeed: transport failures, 5xx, 408 and
    /// 429; not other 4xx, nor a local problem.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
            }
            SendError::Transport(_) => true,
            SendError::Url(_) | SendError::Compress(_) | SendError::GaveUp { .. } => false,
        }
    }

    /// The collector's HTTP status, if it answered (also the last answer before giving up).
    pub(crate) fn status(&self) -> Option<StatusCode> {
        match self {
            SendError::Status { status, .. } => Some(*status),
            SendError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The endpoint reports are POSTed to: `{gateway}/api/v1`.
pub(crate) fn endpoint(gateway: &reqwest::Url) -> Result<reqwest::Url, SendError> {
    endpoint_at(gateway, &["api", "v1"])
}

/// `{gateway}/SEGMENTS…`, keeping any path the base URL has.
pub(crate) fn endpoint_at(
    gateway: &reqwest::Url,
    segments: &[&str],
) -> Result<reqwest::Url, SendError> {
    let mut url = gateway.clone();
    url.path_segments_mut()
        .map_err(|_| SendError::Url(gateway.to_string()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// gzip of `body`.
pub(crate) fn gzip(body: &[u8]) -> Result<Vec<u8>, SendError> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::default());
    enc.write_all(body).map_err(SendError::Compress)?;
    enc.finish().map_err(SendError::Compress)
}

/// Sends `body` (uncompressed JSON) to `{gateway}/api/v1`, retrying per `policy`.
#[tracing::instrument(skip_all, fields(url = %gateway))]
pub async fn send(
    client: &reqwest::Client,
    gateway: &reqwest::Url,
    body: &[u8],
    policy: &Policy,
) -> Result<Outcome, SendError> {
    let url = endpoint(gateway)?;
    let compressed = bytes::Bytes::from(gzip(body)?);
    with_retries(policy, |remaining| {
        post(client, &url, compressed.clone(), Encoding::Gzip, remaining)
    })
    .await
}

/// Calls `attempt` (given the time left) until it succeeds, fails for good
/// ([`SendError::is_retryable`]), or the next wait would pass `policy.deadline`.
pub(crate) async fn with_retries<F, Fut>(
    policy: &Policy,
    mut attempt: F,
) -> Result<Outcome, SendError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<StatusCode, SendError>>,
{
    let started = Instant::now();
    let deadline = started + policy.deadline;
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_factor(2.0)
        .without_max_times()
        .build();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let err = match attempt(remaining).await {
            Ok(status) => return Ok(Outcome { status, attempts }),
            Err(e) => e,
        };
        if !err.is_retryable() {
            return Err(err);
        }
        let step = backoff.next().unwrap_or(policy.max_delay);
        // Full jitter: anywhere between nothing and the whole step.
        let jittered = step.mul_f64(rand::random::<f64>());
        let wait = jittered.max(err.retry_after().unwrap_or_default());
        if Instant::now() + wait >= deadline {
            return Err(SendError::GaveUp {
                attempts,
                last: Box::new(err),
            });
        }
        tracing::info!(attempts, wait = ?wait, error = %plumbing::Chain(&err), "send failed, retrying");
        tokio::time::sleep(wait).await;
    }
}

/// How a JSON body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// As it is.
    Identity,
    /// gzip-compressed, with `Content-Encoding: gzip`.
    Gzip,
}

/// One POST of a JSON `body` (already encoded as `encoding` says) to `url`, within
/// `remaining`: the 2xx status, or the failure.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: bytes::Bytes,
    encoding: Encoding,
    remaining: Duration,
) -> Result<StatusCode, SendError> {
    let mut request = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .timeout(remaining.max(Duration::from_millis(1)))
        .body(body);
    if encoding == Encoding::Gzip {
        request = request.header(CONTENT_ENCODING, "gzip");
    }
    let response = request.send().await.map_err(SendError::Transport)?;
    let status = response.status();
    if status.is_success() {
        return Ok(status);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let mut text = response.text().await.unwrap_or_default();
    if text.len() > 512 {
        let mut cut = 512;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    Err(SendError::Status {
        status,
        body: text,
        retry_after,
    })
}

/// `Retry-After` as delay seconds or an HTTP date (capped at one hour).
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
        let secs = when.as_second() - jiff::Timestamp::now().as_second();
        Duration::from_secs(secs.max(0) as u64)
    };
    Some(d.min(Duration::from_secs(3600)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_api_v1_under_the_base_url() {
        for (base, want) in [
            ("https://c.example.org", "https://c.example.org/api/v1"),
            ("https://c.example.org/", "https://c.example.org/api/v1"),
            ("http://c:8080/spartakus/", "http://c:8080/spartakus/api/v1"),
        ] {
            let url = reqwest::Url::parse(base).unwrap();
            assert_eq!(endpoint(&url).unwrap().as_str(), want);
        }
    }

    #[test]
    fn the_status_of_a_failure_is_found_behind_giving_up() {
        let last = SendError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: String::new(),
            retry_after: None,
        };
        let gave_up = SendError::GaveUp {
            attempts: 3,
            last: Box::new(last),
        };
        assert_eq!(gave_up.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(SendError::Url("x".into()).status(), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let status = |s: u16| SendError::Status {
            status: StatusCode::from_u16(s).unwrap(),
            body: String::new(),
            retry_after: None,
        };
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 415, 422] {
            assert!(!status(s).is_retryable(), "{s}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("99999"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_retry_after("Tue, 15 Nov 1994 08:12:31 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = br#"{"version":"v0.1.0"}"#;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gzip(body).unwrap()[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
