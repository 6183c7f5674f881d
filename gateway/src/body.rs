//! Reading a request body under two caps (bytes on the wire and bytes after gunzip), a
//! minimum rate, and the gateway's memory budget.
//!
//! The body is read frame by frame and gunzipped as it arrives into a buffer that refuses to
//! grow past its cap, so a gzip bomb is cut off after `max_decoded` bytes, however much it would
//! expand to, and memory per request stays bounded. The buffer grows only as bytes arrive, each
//! growth reserved from the [`Budget`](crate::limit::Budget) first: a request that would pass it
//! is refused rather than grown, and a body that is announced large but sent slowly holds only
//! what has arrived. A body must keep arriving at `--min-body-rate` after a short grace.

use std::io::{self, Write};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use flate2::write::MultiGzDecoder;
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::limit::Reservation;

/// What a gzip body's decoder holds besides the decoded bytes: the inflate state with its
/// 32 KiB window, and the decoder's 32 KiB input buffer. Reserved before the first byte.
pub(crate) const GZIP_STATE: u64 = 80 << 10;

/// What a decoded report holds in memory, per byte of its JSON, while it is validated and
/// re-encoded (its strings and vectors, each with its own header and allocation): an estimate
/// on the safe side, reserved from the memory budget before decoding.
pub(crate) const DECODED_PER_BYTE: u64 = 2;

/// What the envelope adds to a report's JSON (its ID, the time it arrived).
pub(crate) const ENVELOPE_BYTES: u64 = 128;

/// The most one report of `max_decoded` bytes reserves of the memory budget: the buffers its
/// body grew through (at most twice the last), its gzip state, then the decoded report and the
/// message.
pub(crate) fn most_reserved_by_one_report(max_decoded: u64) -> u64 {
    max_decoded.saturating_mul(2 + DECODED_PER_BYTE + 1) + GZIP_STATE + ENVELOPE_BYTES
}

/// The largest buffer allocated for a body before its bytes arrive (when `Content-Length`
/// announces one): enough for most reports at once, too little for an announced but unsent
/// body to hold memory.
const FIRST_BUFFER: u64 = 64 << 10;

/// How the body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Sent as is.
    Identity,
    /// gzip, possibly of several members.
    Gzip,
}

impl Encoding {
    /// The encoding named by the headers; 415 for any other than gzip or identity.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut encoding = Encoding::Identity;
        for value in headers.get_all(header::CONTENT_ENCODING) {
            let value = value.to_str().map_err(|_| ApiError::ContentEncoding)?;
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match coding.to_ascii_lowercase().as_str() {
                    "identity" => {}
                    // Only one layer of gzip: a stacked encoding is not something volunteers send.
                    "gzip" | "x-gzip" if encoding == Encoding::Identity => {
                        encoding = Encoding::Gzip
                    }
                    _ => return Err(ApiError::ContentEncoding),
                }
            }
        }
        Ok(encoding)
    }
}

/// Checks that `Content-Type` is `application/json`, parameters such as `charset` allowed.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::ContentType)?;
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::ContentType)
    }
}

/// The size caps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest gzip body on the wire.
    pub(crate) max_compressed: u64,
    /// Largest body after gunzip, and largest uncompressed body.
    pub(crate) max_decoded: u64,
}

/// The slowest a body may arrive: after `grace` from the start of the body, at least
/// `min_rate` bytes per second on average (the time allowed grows with each byte, as Apache's
/// `mod_reqtimeout` counts it). A `min_rate` of 0 waits for ever; the request timeout bounds
/// the whole body either way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Time before the first byte counts.
    pub(crate) grace: Duration,
    /// Bytes per second; 0 is no minimum.
    pub(crate) min_rate: u64,
}

impl Pace {
    /// No minimum rate.
    pub(crate) const NONE: Pace = Pace {
        grace: Duration::ZERO,
        min_rate: 0,
    };

    /// The time from the body's start by which it must have sent more than `received` bytes.
    fn allowed(self, received: u64) -> Option<Duration> {
        if self.min_rate == 0 {
            return None;
        }
        // Lossy only past 2^53 bytes, far beyond any body cap.
        #[allow(clippy::cast_precision_loss)]
        let secs = received as f64 / self.min_rate as f64;
        Some(self.grace + Duration::from_secs_f64(secs))
    }
}

/// A body read in full.
#[derive(Debug)]
pub(crate) struct Received {
    /// The decoded body.
    pub(crate) bytes: Vec<u8>,
    /// How many bytes came over the wire.
    pub(crate) wire_bytes: u64,
    /// The budget reserved for `bytes`: every buffer it grew through, and a gzip decoder's
    /// state.
    pub(crate) reservation: Reservation,
}

/// Reads and decodes `body`, stopping as soon as a cap is passed, the body falls behind
/// `pace`, or its buffers would need more than `reservation` can grow by.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
    limits: Limits,
    pace: Pace,
    mut reservation: Reservation,
) -> Result<Received, ApiError> {
    let wire_limit = match encoding {
        Encoding::Identity => limits.max_decoded,
        Encoding::Gzip => limits.max_compressed,
    };
    let too_large_on_wire = ApiError::TooLarge {
        limit: wire_limit,
        what: "as sent",
    };
    // Refuse early what announces itself as too large.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > wire_limit) {
        return Err(too_large_on_wire);
    }

    if encoding == Encoding::Gzip {
        reservation.grow(GZIP_STATE)?;
    }
    let capacity = announced
        .unwrap_or(0)
        .min(limits.max_decoded)
        .min(FIRST_BUFFER);
    reservation.grow(capacity)?;
    let buffer = CappedBuffer::new(limits.max_decoded, capacity, reservation);
    let mut sink = match encoding {
        Encoding::Identity => Sink::Identity(buffer),
        Encoding::Gzip => Sink::Gzip(Box::new(MultiGzDecoder::new(buffer))),
    };
    let too_large_decoded = ApiError::TooLarge {
        limit: limits.max_decoded,
        what: "after decompression",
    };

    let mut body = body;
    let mut wire_bytes: u64 = 0;
    let started = tokio::time::Instant::now();
    loop {
        let next = match pace.allowed(wire_bytes) {
            Some(allowed) => tokio::time::timeout_at(started + allowed, body.frame())
                .await
                .map_err(|_| ApiError::BodyTooSlow {
                    min_rate: pace.min_rate,
                })?,
            None => body.frame().await,
        };
        let Some(frame) = next else { break };
        let frame =
            frame.map_err(|_| ApiError::Syntax("the request body could not be read".into()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing we use
        };
        wire_bytes += data.len() as u64;
        if wire_bytes > wire_limit {
            return Err(too_large_on_wire);
        }
        if let Err(e) = sink.write_all(&data) {
            return Err(sink.buffer().refusal(&e, too_large_decoded));
        }
    }
    // What was reserved stays so until the request is done with the body (see
    // `CappedBuffer::make_room`).
    let CappedBuffer {
        bytes, reservation, ..
    } = sink.finish(too_large_decoded)?;
    Ok(Received {
        bytes,
        wire_bytes,
        reservation,
    })
}

fn invalid_gzip(e: &io::Error) -> ApiError {
    ApiError::Syntax(format!("the body is not valid gzip: {e}"))
}

/// Where body bytes go: straight into the buffer, or through a gzip decoder.
enum Sink {
    Identity(CappedBuffer),
    // Boxed: the decoder's state is large and the identity path should not carry it.
    Gzip(Box<MultiGzDecoder<CappedBuffer>>),
}

impl Sink {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Identity(buffer) => buffer.write_all(data),
            Sink::Gzip(decoder) => decoder.write_all(data),
        }
    }

    fn buffer(&self) -> &CappedBuffer {
        match self {
            Sink::Identity(buffer) => buffer,
            Sink::Gzip(decoder) => decoder.get_ref(),
        }
    }

    /// The buffer with the decoded bytes, the decoder's own state dropped.
    fn finish(self, too_large: ApiError) -> Result<CappedBuffer, ApiError> {
        match self {
            Sink::Identity(buffer) => Ok(buffer),
            Sink::Gzip(mut decoder) => {
                if let Err(e) = decoder.try_finish() {
                    return Err(decoder.get_ref().refusal(&e, too_large));
                }
                // Finished already: this only hands the buffer over.
                decoder.finish().map_err(|e| invalid_gzip(&e))
            }
        }
    }
}

/// Why a write to a [`CappedBuffer`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Nothing was refused (an error, if any, was the gzip's).
    No,
    /// Past the size cap.
    TooLarge,
    /// Past the memory budget.
    OverBudget,
}

/// A `Vec` that fails a write which would take it past `cap`, or its growth past what its
/// reservation can be grown by, and remembers why.
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: u64,
    refused: Refused,
    /// Covers `bytes`' capacity.
    reservation: Reservation,
}

impl CappedBuffer {
    /// A buffer of `capacity` bytes, already reserved in `reservation`.
    fn new(cap: u64, capacity: u64, reservation: Reservation) -> Self {
        // `capacity` is at most `FIRST_BUFFER`.
        let capacity = usize::try_from(capacity).unwrap_or(0);
        CappedBuffer {
            bytes: Vec::with_capacity(capacity),
            cap,
            refused: Refused::No,
            reservation,
        }
    }

    /// The refusal for a failed write: the cap's, the budget's, or else invalid gzip.
    fn refusal(&self, e: &io::Error, too_large: ApiError) -> ApiError {
        match self.refused {
            Refused::TooLarge => too_large,
            Refused::OverBudget => ApiError::OverBudget,
            Refused::No => invalid_gzip(e),
        }
    }

    /// Makes room for `more` bytes, reserving the growth first. Doubles, as `Vec` does, so
    /// that a growing body is copied a logarithmic number of times, but never past `cap`.
    /// Every buffer stays reserved until the request is done with the body, the ones already
    /// outgrown too: the allocator keeps what was freed for a while (measured: a flood's peak
    /// RSS near twice what its live buffers held), and the doubling bounds their sum by twice
    /// the last one.
    fn make_room(&mut self, more: usize) -> io::Result<()> {
        let needed = self.bytes.len() + more;
        let capacity = self.bytes.capacity();
        if needed <= capacity {
            return Ok(());
        }
        let cap = usize::try_from(self.cap).unwrap_or(usize::MAX);
        let grown = needed.max(capacity.saturating_mul(2)).min(cap);
        if self.reservation.grow(grown as u64).is_err() {
            self.refused = Refused::OverBudget;
            return Err(io::Error::other("over the gateway's memory budget"));
        }
        self.bytes.reserve_exact(grown - self.bytes.len());
        Ok(())
    }
}

impl Write for CappedBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.bytes.len() as u64 + data.len() as u64 > self.cap {
            self.refused = Refused::TooLarge;
            return Err(io::Error::other("decoded body over the size cap"));
        }
        self.make_room(data.len())?;
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::limit::Budget;
    use axum::http::HeaderValue;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use prometheus_client::metrics::gauge::Gauge;

    const LIMITS: Limits = Limits {
        max_compressed: 1024,
        max_decoded: 4096,
    };

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// A reservation from a budget too large to matter.
    fn unbudgeted() -> Reservation {
        Budget::new(u64::MAX, Gauge::default()).reservation()
    }

    async fn read_with(encoding: Encoding, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        read(
            &HeaderMap::new(),
            Body::from(body),
            encoding,
            LIMITS,
            Pace::NONE,
            unbudgeted(),
        )
        .await
        .map(|r| r.bytes)
    }

    #[tokio::test]
    async fn the_budget_covers_the_buffers_and_a_body_that_would_pass_it_is_refused() {
        let gauge = Gauge::default();
        let budget = Budget::new(3000, gauge.clone());
        let data = vec![b'x'; 2500];
        let no_headers = HeaderMap::new();
        let identity = |data: &[u8], budget: &Arc<Budget>| {
            read(
                &no_headers,
                Body::from(data.to_vec()),
                Encoding::Identity,
                LIMITS,
                Pace::NONE,
                budget.reservation(),
            )
        };
        let received = identity(&data, &budget).await.unwrap();
        assert_eq!(received.bytes, data);
        assert!(received.reservation.held() >= received.bytes.capacity() as u64);
        assert_eq!(gauge.get(), received.reservation.held() as i64);
        // While it is held, a second one does not fit.
        let err = identity(&data, &budget).await.unwrap_err();
        assert!(matches!(err, ApiError::OverBudget), "{err:?}");
        drop(received);
        assert_eq!(gauge.get(), 0, "everything reserved was given back");
        // A gzip body reserves its decoder's state too: a smaller budget refuses it at once.
        let small = Budget::new(GZIP_STATE - 1, Gauge::default());
        let err = read(
            &HeaderMap::new(),
            Body::from(gzip(b"{}")),
            Encoding::Gzip,
            LIMITS,
            Pace::NONE,
            small.reservation(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ApiError::OverBudget), "{err:?}");
    }

    #[tokio::test]
    async fn an_announced_length_reserves_no_more_than_a_first_buffer() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(16u64 << 20));
        let gauge = Gauge::default();
        let budget = Budget::new(u64::MAX, gauge.clone());
        let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(1);
        let body = Body::from_stream(tokio_stream_of(receiver));
        let limits = Limits {
            max_compressed: 32 << 20,
            max_decoded: 32 << 20,
        };
        let reservation = budget.reservation();
        let reading = tokio::spawn(async move {
            read(
                &headers,
                body,
                Encoding::Identity,
                limits,
                Pace::NONE,
                reservation,
            )
            .await
        });
        sender.send(Ok(b"{".to_vec())).await.unwrap();
        testenv::eventually(Duration::from_secs(5), "a first buffer", || async {
            gauge.get() > 0
        })
        .await;
        assert_eq!(gauge.get(), FIRST_BUFFER as i64);
        drop(sender);
        reading.await.unwrap().unwrap();
    }

    /// The frames sent on `receiver`, as a body's stream.
    fn tokio_stream_of(
        receiver: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    ) -> impl futures::Stream<Item = io::Result<Vec<u8>>> {
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|frame| (frame, receiver))
        })
    }

    /// Where a test sends a body's frames.
    type Frames = tokio::sync::mpsc::Sender<io::Result<Vec<u8>>>;

    /// Reads a body whose frames are sent on the returned sender, at `pace`.
    fn paced(pace: Pace) -> (Frames, tokio::task::JoinHandle<Result<Received, ApiError>>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let body = Body::from_stream(tokio_stream_of(receiver));
        let reading = tokio::spawn(async move {
            read(
                &HeaderMap::new(),
                body,
                Encoding::Identity,
                LIMITS,
                pace,
                unbudgeted(),
            )
            .await
        });
        (sender, reading)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_falls_behind_the_minimum_rate_is_refused_after_the_grace() {
        let (sender, reading) = paced(Pace {
            grace: Duration::from_secs(2),
            min_rate: 100,
        });
        let started = tokio::time::Instant::now();
        // 100 bytes buy a second past the grace: 3 s in all. Fifty more at 2.5 s buy half a
        // second: 3.5 s. Then nothing.
        sender.send(Ok(vec![b' '; 100])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        sender.send(Ok(vec![b' '; 50])).await.unwrap();
        let err = reading.await.unwrap().unwrap_err();
        assert!(
            matches!(err, ApiError::BodyTooSlow { min_rate: 100 }),
            "{err:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(3500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_the_minimum_rate_is_read() {
        let (sender, reading) = paced(Pace {
            grace: Duration::from_secs(1),
            min_rate: 100,
        });
        // 10 bytes every 0.1 s: exactly the minimum, for 3 s.
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sender.send(Ok(vec![b' '; 10])).await.unwrap();
        }
        drop(sender);
        assert_eq!(reading.await.unwrap().unwrap().bytes.len(), 300);
    }

    #[tokio::test]
    async fn gzip_bodies_are_decoded() {
        let data = b"{\"hello\": \"world\"}".repeat(10);
        assert_eq!(read_with(Encoding::Gzip, gzip(&data)).await.unwrap(), data);
    }

    #[tokio::test]
    async fn concatenated_gzip_members_are_decoded_in_order() {
        let mut body = gzip(b"first,");
        body.extend(gzip(b"second"));
        assert_eq!(
            read_with(Encoding::Gzip, body).await.unwrap(),
            b"first,second"
        );
    }

    #[tokio::test]
    async fn a_small_gzip_that_expands_past_the_cap_is_too_large() {
        let body = gzip(&[0u8; 100_000]);
        assert!(body.len() < 1024);
        let err = read_with(Encoding::Gzip, body).await.unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::TooLarge {
                    limit: 4096,
                    what: "after decompression"
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_body_exactly_at_the_cap_is_accepted() {
        let data = vec![b'x'; 4096];
        assert_eq!(
            read_with(Encoding::Identity, data.clone()).await.unwrap(),
            data
        );
        assert_eq!(read_with(Encoding::Gzip, gzip(&data)).await.unwrap(), data);
        let err = read_with(Encoding::Identity, vec![b'x'; 4097])
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::TooLarge { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn truncated_or_garbage_gzip_is_a_syntax_error() {
        let full = gzip(&b"some report".repeat(20));
        for body in [
            full[..full.len() - 4].to_vec(),
            b"not gzip at all".to_vec(),
            Vec::new(),
        ] {
            let err = read_with(Encoding::Gzip, body).await.unwrap_err();
            assert!(matches!(err, ApiError::Syntax(_)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn an_announced_length_over_the_cap_is_refused_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(2000));
        let err = read(
            &headers,
            Body::from("tiny"),
            Encoding::Gzip,
            LIMITS,
            Pace::NONE,
            unbudgeted(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::TooLarge {
                    limit: 1024,
                    what: "as sent"
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn encodings_other_than_gzip_and_identity_are_unsupported() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(v));
            Encoding::from_headers(&h)
        };
        assert_eq!(
            Encoding::from_headers(&HeaderMap::new()).unwrap(),
            Encoding::Identity
        );
        assert_eq!(with("GZIP").unwrap(), Encoding::Gzip);
        assert_eq!(with("identity").unwrap(), Encoding::Identity);
        assert!(matches!(with("br"), Err(ApiError::ContentEncoding)));
        assert!(matches!(with("gzip, gzip"), Err(ApiError::ContentEncoding)));
    }

    #[test]
    fn json_with_a_charset_is_accepted_and_other_types_are_not() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            check_content_type(&h)
        };
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=utf-8").is_ok());
        assert!(with("text/plain").is_err());
        assert!(with("application/jsonx").is_err());
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }
}
