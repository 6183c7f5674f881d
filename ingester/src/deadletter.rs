//! The dead-letter subject: where a report that can never be stored goes, with the reason in a
//! header, before its message is terminated. Nothing is dropped silently.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, Message};

use crate::durable::Durable;

// The headers are part of the queue's contract, owned by `report::queue`; the detail is cut to
// at most 1 KiB here.
use report::queue::{
    DEAD_LETTER_DETAIL_HEADER as DETAIL_HEADER, DEAD_LETTER_REASON_HEADER as REASON_HEADER,
    STREAM_SEQUENCE_HEADER as SEQUENCE_HEADER,
};

/// Why a message goes to the dead-letter subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadReason {
    /// Not JSON or not an envelope.
    Syntax,
    /// Breaks a validation rule.
    Invalid,
    /// The sink refused the row.
    Rejected,
    /// Still failing on the last allowed delivery.
    RetriesExhausted,
}

impl DeadReason {
    /// Every reason, for the metric's labels to exist at 0 from the start.
    pub(crate) const ALL: [DeadReason; 4] = [
        DeadReason::Syntax,
        DeadReason::Invalid,
        DeadReason::Rejected,
        DeadReason::RetriesExhausted,
    ];

    /// The header value and metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeadReason::Syntax => "syntax",
            DeadReason::Invalid => "invalid",
            DeadReason::Rejected => "rejected",
            DeadReason::RetriesExhausted => "retries-exhausted",
        }
    }
}

/// What became of a message sent to the dead-letter subject.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Stored in the dead-letter stream and terminated in the reports stream.
    Stored,
    /// The dead-letter publish failed; the message was nakked to be tried again.
    Nakked,
}

/// Publishes `message`, delivered by the consumer `from`, to `from`'s dead-letter subject with
/// the reason and, once JetStream stored it, terminates it. If the publish fails, or its ack
/// does not come within `from`'s `--nats-timeout`, the message is nakked with `retry_delay`
/// instead.
pub(crate) async fn send(
    js: &jetstream::Context,
    from: &Durable,
    message: &Message,
    reason: DeadReason,
    detail: &str,
    retry_delay: Duration,
) -> Sent {
    let subject = &from.dead_letters.subject;
    let reports_stream = &from.stream.name;
    let timeout = from.nats_timeout;
    let sequence = message
        .info()
        .map(|i| i.stream_sequence)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(REASON_HEADER, reason.as_str());
    headers.insert(DETAIL_HEADER, header_value(detail).as_str());
    headers.insert(SEQUENCE_HEADER, sequence.to_string().as_str());
    // A dead letter published twice (a crash before the Term) is stored once.
    headers.insert(
        "Nats-Msg-Id",
        format!("{reports_stream}-{sequence}").as_str(),
    );
    if let Some(id) = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
        headers.insert("Spartakus-Report-Id", id.as_str());
    }
    let published = async {
        js.publish_with_headers(subject.to_owned(), headers, message.payload.clone())
            .await?
            .await?;
        Ok::<_, async_nats::Error>(())
    };
    // The JetStream context's timeout bounds the publish and its ack each; this bounds both.
    let published = tokio::time::timeout(timeout, published)
        .await
        .unwrap_or_else(|_| {
            Err(format!("no publish ack within {timeout:?} (--nats-timeout)").into())
        });
    match published {
        Ok(()) => {
            tracing::warn!(
                sequence,
                reason = reason.as_str(),
                detail,
                "message dead-lettered"
            );
            if let Err(e) = crate::durable::reply(message, AckKind::Term, timeout).await {
                tracing::warn!(sequence, error = %plumbing::Chain(&*e), "term failed");
            }
            Sent::Stored
        }
        Err(e) => {
            tracing::warn!(sequence, error = %plumbing::Chain(&*e), "dead-letter publish failed; nakking");
            let _ = crate::durable::reply(message, AckKind::Nak(Some(retry_delay)), timeout).await;
            Sent::Nakked
        }
    }
}

/// A header value: one line, at most 1 KiB.
fn header_value(detail: &str) -> String {
    let mut out: String = detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 1024 {
        let mut end = 1024;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_in_all() {
        // Exhaustive: a new reason fails to compile here until it is given its place in ALL.
        let place = |r: DeadReason| match r {
            DeadReason::Syntax => 0,
            DeadReason::Invalid => 1,
            DeadReason::Rejected => 2,
            DeadReason::RetriesExhausted => 3,
        };
        for (i, r) in DeadReason::ALL.iter().enumerate() {
            assert_eq!(place(*r), i, "{r:?}");
        }
    }

    #[test]
    fn header_values_are_one_bounded_line() {
        let v = header_value(&format!("a\r\nb{}", "é".repeat(2000)));
        assert!(!v.contains('\n') && !v.contains('\r'));
        assert!(v.len() <= 1024);
        assert!(v.starts_with("a  b"));
    }
}
