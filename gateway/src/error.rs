//! `ApiError`: every way a report or erasure request can fail, as an RFC 9457 problem response.
//!
//! The body says what the client can act on; internal detail (a NATS error) is logged once where
//! it happens and never returned. A client's fault is always a 4xx.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use report::{DecodeError, FieldError};
use serde::Serialize;

/// Why a report or erasure request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An erasure request body that is not JSON of the request's shape (or not valid gzip).
    #[error("malformed erasure request: {0}")]
    ErasureSyntax(String),
    /// A well-formed erasure request breaking the rules listed (the cluster ID's, the secret's).
    #[error("invalid erasure request")]
    ErasureInvalid(Vec<FieldError>),
    /// An erasure request body larger than any well-formed one.
    #[error("erasure request body larger than {limit} bytes")]
    ErasureTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The body is not JSON of the report's shape, or not valid gzip.
    #[error("malformed body: {0}")]
    Syntax(String),
    /// Well-formed, but breaks the rules listed.
    #[error("invalid report")]
    Invalid(Vec<FieldError>),
    /// The body, compressed or decompressed, is larger than allowed.
    #[error("body larger than {limit} bytes {what}")]
    TooLarge {
        /// The limit that was hit.
        limit: u64,
        /// Which one, e.g. `as sent` or `after decompression`.
        what: &'static str,
    },
    /// The report fits our limits but not the message size the queue accepts.
    #[error("report larger than the queue accepts ({limit} bytes)")]
    QueueMessageTooLarge {
        /// The queue's limit.
        limit: u64,
    },
    /// Content-Type is not `application/json`.
    #[error("Content-Type must be application/json")]
    ContentType,
    /// Content-Encoding is neither `gzip` nor `identity`.
    #[error("Content-Encoding must be gzip or identity")]
    ContentEncoding,
    /// The client did not send its body in time.
    #[error("request body not received within {0:?}")]
    BodyTimeout(Duration),
    /// The body arrived slower than the slowest rate the gateway waits for.
    #[error("request body arriving slower than {min_rate} bytes per second")]
    BodyTooSlow {
        /// `--min-body-rate`, in bytes per second.
        min_rate: u64,
    },
    /// The client address already has as many bodies arriving as it may.
    #[error("too many request bodies arriving from this address at once")]
    TooManyUploads,
    /// Too many requests from one client IP address.
    #[error("too many requests from this address")]
    RateLimitedIp {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// Too many reports for one cluster.
    #[error("too many reports for this cluster")]
    RateLimitedCluster {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// Every slot for a report in flight is taken.
    #[error("the gateway is at capacity")]
    Overloaded,
    /// The bytes of the requests in flight would pass the gateway's memory budget.
    #[error("the gateway's memory budget is spent")]
    OverBudget,
    /// JetStream is unreachable, refused the message, or did not acknowledge it in time.
    #[error("the report queue is unavailable")]
    Unavailable,
    /// The reports stream is at `--stream-full-percent` of its budget: refused before the body
    /// is read, until the ingester has stored enough to make room.
    #[error("the report queue is full; try again later")]
    QueueFull,
}

/// The RFC 9457 body.
#[derive(Debug, Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ProblemField<'a>>,
}

/// One field error in a problem body.
#[derive(Debug, Serialize)]
struct ProblemField<'a> {
    path: &'a str,
    rule: &'a str,
}

/// How long a client should wait after a 503 for overload or an unavailable queue.
const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(5);
const RETRY_AFTER_OVERLOADED: Duration = Duration::from_secs(1);
/// How long a client should wait after a 503 for a full queue: the ingester needs a while to
/// make room.
const RETRY_AFTER_QUEUE_FULL: Duration = Duration::from_secs(60);

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Syntax(_)
            | ApiError::Invalid(_)
            | ApiError::ErasureSyntax(_)
            | ApiError::ErasureInvalid(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. }
            | ApiError::QueueMessageTooLarge { .. }
            | ApiError::ErasureTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ContentType | ApiError::ContentEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTimeout(_) | ApiError::BodyTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimitedIp { .. }
            | ApiError::RateLimitedCluster { .. }
            | ApiError::TooManyUploads => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded
            | ApiError::OverBudget
            | ApiError::Unavailable
            | ApiError::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// One refusal of every kind. A new variant must be added here: the exhaustive match in
    /// `example_index` makes the compiler name it, and the test `every_kind_has_an_example`
    /// fails until it is listed.
    pub fn examples() -> Vec<ApiError> {
        vec![
            ApiError::ErasureSyntax(String::new()),
            ApiError::ErasureInvalid(Vec::new()),
            ApiError::ErasureTooLarge { limit: 0 },
            ApiError::Syntax(String::new()),
            ApiError::Invalid(Vec::new()),
            ApiError::TooLarge { limit: 0, what: "" },
            ApiError::QueueMessageTooLarge { limit: 0 },
            ApiError::ContentType,
            ApiError::ContentEncoding,
            ApiError::BodyTimeout(Duration::ZERO),
            ApiError::BodyTooSlow { min_rate: 0 },
            ApiError::TooManyUploads,
            ApiError::RateLimitedIp {
                retry_after: Duration::ZERO,
            },
            ApiError::RateLimitedCluster {
                retry_after: Duration::ZERO,
            },
            ApiError::Overloaded,
            ApiError::OverBudget,
            ApiError::Unavailable,
            ApiError::QueueFull,
        ]
    }

    /// This kind's position in [`ApiError::examples`].
    #[cfg(test)]
    fn example_index(&self) -> usize {
        match self {
            ApiError::ErasureSyntax(_) => 0,
            ApiError::ErasureInvalid(_) => 1,
            ApiError::ErasureTooLarge { .. } => 2,
            ApiError::Syntax(_) => 3,
            ApiError::Invalid(_) => 4,
            ApiError::TooLarge { .. } => 5,
            ApiError::QueueMessageTooLarge { .. } => 6,
            ApiError::ContentType => 7,
            ApiError::ContentEncoding => 8,
            ApiError::BodyTimeout(_) => 9,
            ApiError::BodyTooSlow { .. } => 10,
            ApiError::TooManyUploads => 11,
            ApiError::RateLimitedIp { .. } => 12,
            ApiError::RateLimitedCluster { .. } => 13,
            ApiError::Overloaded => 14,
            ApiError::OverBudget => 15,
            ApiError::Unavailable => 16,
            ApiError::QueueFull => 17,
        }
    }

    /// Every value of the `reason` label, in [`ApiError::examples`]' order.
    pub fn reasons() -> Vec<&'static str> {
        Self::examples().iter().map(ApiError::reason).collect()
    }

    /// A short, stable name for the metrics' `reason` label and the problem `type`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Syntax(_) => "syntax",
            ApiError::Invalid(_) => "invalid",
            ApiError::ErasureSyntax(_) => "erasure-syntax",
            ApiError::ErasureInvalid(_) => "erasure-invalid",
            ApiError::ErasureTooLarge { .. } => "erasure-too-large",
            ApiError::TooLarge { .. } => "too-large",
            ApiError::QueueMessageTooLarge { .. } => "queue-message-too-large",
            ApiError::ContentType => "content-type",
            ApiError::ContentEncoding => "content-encoding",
            ApiError::BodyTimeout(_) => "body-timeout",
            ApiError::BodyTooSlow { .. } => "body-too-slow",
            ApiError::TooManyUploads => "too-many-uploads",
            ApiError::RateLimitedIp { .. } => "rate-limited-ip",
            ApiError::RateLimitedCluster { .. } => "rate-limited-cluster",
            ApiError::Overloaded => "overloaded",
            ApiError::OverBudget => "memory-budget",
            ApiError::Unavailable => "unavailable",
            ApiError::QueueFull => "queue-full",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Syntax(_) => "Malformed report",
            ApiError::Invalid(_) => "Invalid report",
            ApiError::ErasureSyntax(_) => "Malformed erasure request",
            ApiError::ErasureInvalid(_) => "Invalid erasure request",
            ApiError::ErasureTooLarge { .. } => "Erasure request too large",
            ApiError::TooLarge { .. } | ApiError::QueueMessageTooLarge { .. } => "Report too large",
            ApiError::ContentType | ApiError::ContentEncoding => "Unsupported media type",
            ApiError::BodyTimeout(_) | ApiError::BodyTooSlow { .. } => "Request timeout",
            ApiError::RateLimitedIp { .. }
            | ApiError::RateLimitedCluster { .. }
            | ApiError::TooManyUploads => "Too many requests",
            ApiError::Overloaded
            | ApiError::OverBudget
            | ApiError::Unavailable
            | ApiError::QueueFull => "Service unavailable",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimitedIp { retry_after }
            | ApiError::RateLimitedCluster { retry_after } => Some(*retry_after),
            ApiError::Overloaded | ApiError::OverBudget | ApiError::TooManyUploads => {
                Some(RETRY_AFTER_OVERLOADED)
            }
            ApiError::Unavailable => Some(RETRY_AFTER_UNAVAILABLE),
            ApiError::QueueFull => Some(RETRY_AFTER_QUEUE_FULL),
            _ => None,
        }
    }

    /// Refused while the body may still be arriving: the connection is closed after the
    /// answer rather than kept for a next request behind the unread rest.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            ApiError::BodyTimeout(_)
                | ApiError::BodyTooSlow { .. }
                | ApiError::TooManyUploads
                | ApiError::OverBudget
                | ApiError::QueueFull
        )
    }

    /// The same refusal for an erasure request: a body problem (its syntax, its rules, its
    /// size, also the queue's size limit) is named as the erasure request's; anything else
    /// (media type, timeout, rate limits, an unavailable queue) is shared.
    pub fn for_erasure(self) -> Self {
        match self {
            ApiError::Syntax(detail) => ApiError::ErasureSyntax(detail),
            ApiError::Invalid(errors) => ApiError::ErasureInvalid(errors),
            ApiError::TooLarge { limit, .. } | ApiError::QueueMessageTooLarge { limit } => {
                ApiError::ErasureTooLarge { limit }
            }
            other => other,
        }
    }
}

/// A report body that is not a report: its syntax, or the rules it breaks. (An erasure
/// request's are named by [`ApiError::for_erasure`].)
impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Syntax(detail) => ApiError::Syntax(detail),
            DecodeError::Invalid(errors) => ApiError::Invalid(errors),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let kind = format!("urn:spartakus:problem:{}", self.reason());
        let errors = match &self {
            ApiError::Invalid(errors) | ApiError::ErasureInvalid(errors) => errors
                .iter()
                .map(|e| ProblemField {
                    path: &e.path,
                    rule: &e.rule,
                })
                .collect(),
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: &kind,
            title: self.title(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        };
        // serde_json into a Vec fails only when a Serialize impl returns an error or a map has
        // a key that is not a string: derived structs of strings and a number, and a vector of
        // such structs, have neither (`every_refusal_is_a_problem_naming_its_status_and_type`
        // encodes each kind).
        let body =
            serde_json::to_vec(&problem).expect("a problem is plain data, which always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(wait) = self.retry_after() {
            // Whole seconds, rounded up so a client never comes back too early.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if self.closes_connection() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_kind_has_an_example() {
        let examples = ApiError::examples();
        for (i, e) in examples.iter().enumerate() {
            assert_eq!(e.example_index(), i, "{e:?} is not at its place");
        }
        let reasons: std::collections::HashSet<_> = ApiError::reasons().into_iter().collect();
        assert_eq!(reasons.len(), examples.len(), "two kinds share a reason");
    }

    #[test]
    fn client_faults_are_never_server_errors() {
        let client_faults = [
            ApiError::ErasureSyntax("x".into()),
            ApiError::ErasureInvalid(vec![]),
            ApiError::ErasureTooLarge { limit: 1 },
            ApiError::Syntax("x".into()),
            ApiError::Invalid(vec![]),
            ApiError::TooLarge {
                limit: 1,
                what: "as sent",
            },
            ApiError::QueueMessageTooLarge { limit: 1 },
            ApiError::ContentType,
            ApiError::ContentEncoding,
            ApiError::BodyTimeout(Duration::from_secs(1)),
            ApiError::BodyTooSlow { min_rate: 1024 },
            ApiError::TooManyUploads,
            ApiError::RateLimitedIp {
                retry_after: Duration::from_secs(1),
            },
            ApiError::RateLimitedCluster {
                retry_after: Duration::from_secs(1),
            },
        ];
        for e in client_faults {
            assert!(e.status().is_client_error(), "{e:?} -> {}", e.status());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let response = ApiError::RateLimitedCluster {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = ApiError::Unavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn refusals_while_a_body_may_still_be_arriving_close_the_connection() {
        for e in [ApiError::TooManyUploads, ApiError::OverBudget] {
            let response = e.into_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            assert_eq!(response.headers()[header::CONNECTION], "close");
        }
        for e in [
            ApiError::BodyTooSlow { min_rate: 1024 },
            ApiError::BodyTimeout(Duration::from_secs(30)),
        ] {
            let response = e.into_response();
            assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
            assert_eq!(response.headers()[header::CONNECTION], "close");
        }
        // A full queue refuses before the body is read: a minute before the next try.
        let response = ApiError::QueueFull.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "60");
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let response = ApiError::Overloaded.into_response();
        assert!(
            !response.headers().contains_key(header::CONNECTION),
            "a complete body leaves the connection reusable"
        );
    }

    #[test]
    fn an_erasure_body_problem_names_the_erasure_request_and_lists_the_broken_rules() {
        let e = ApiError::Invalid(vec![FieldError::new("secret", "not hex")]).for_erasure();
        assert_eq!(e.reason(), "erasure-invalid");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = ApiError::TooLarge {
            limit: 4096,
            what: "as sent",
        }
        .for_erasure();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.reason(), "erasure-too-large");
        let e = ApiError::QueueMessageTooLarge { limit: 1024 }.for_erasure();
        assert_eq!(e.reason(), "erasure-too-large");
        // Shared refusals stay as they are.
        assert_eq!(ApiError::ContentType.for_erasure().reason(), "content-type");
        assert_eq!(ApiError::Unavailable.for_erasure().reason(), "unavailable");
    }

    #[tokio::test]
    async fn every_refusal_is_a_problem_naming_its_status_and_type() {
        let refusals = [
            ApiError::Syntax("expected value at line 1 column 1".into()),
            ApiError::Invalid(vec![
                FieldError::new("clusterID", "required"),
                FieldError::new("nodes[0].id", "required"),
            ]),
            ApiError::ErasureInvalid(vec![FieldError::new("secret", "not hex")]),
            ApiError::TooLarge {
                limit: 16,
                what: "as sent",
            },
            ApiError::RateLimitedIp {
                retry_after: Duration::from_secs(3),
            },
            ApiError::TooManyUploads,
            ApiError::OverBudget,
            ApiError::QueueFull,
            ApiError::Unavailable,
        ];
        for e in refusals {
            let (status, reason, detail) = (e.status(), e.reason(), e.to_string());
            let response = e.into_response();
            assert_eq!(response.status(), status);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["status"], status.as_u16(), "{problem}");
            assert_eq!(
                problem["type"],
                format!("urn:spartakus:problem:{reason}"),
                "{problem}"
            );
            assert_eq!(problem["detail"], detail, "{problem}");
            assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()));
        }
    }

    #[test]
    fn a_body_that_is_not_a_report_names_its_syntax_or_every_broken_rule() {
        let e = ApiError::from(DecodeError::Syntax("EOF".into()));
        assert_eq!(e.reason(), "syntax");
        let e = ApiError::from(DecodeError::Invalid(vec![FieldError::new(
            "clusterID",
            "x",
        )]));
        assert!(
            matches!(&e, ApiError::Invalid(errors) if errors.len() == 1),
            "{e:?}"
        );
        assert_eq!(e.for_erasure().reason(), "erasure-invalid");
    }
}
