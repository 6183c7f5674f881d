//! Reading a request body under two caps: bytes on the wire and bytes after gunzip.
//!
//! The body is read frame by frame and gunzipped as it arrives into a buffer that refuses to
//! grow past its cap, so a gzip bomb is cut off after `max_decoded` bytes, however much it would
//! expand to, and memory per request stays bounded.

use std::io::{self, Write};

use axum::body::Body;
use axum::http::{HeaderMap, header};
use flate2::write::MultiGzDecoder;
use http_body_util::BodyExt;

use crate::error::ApiError;

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

/// A body read in full.
#[derive(Debug)]
pub(crate) struct Received {
    /// The decoded body.
    pub(crate) bytes: Vec<u8>,
    /// How many bytes came over the wire.
    pub(crate) wire_bytes: u64,
}

/// Reads and decodes `body`, stopping as soon as a cap is passed.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
    limits: Limits,
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

    let capacity = announced.unwrap_or(0).min(limits.max_decoded);
    let buffer = CappedBuffer::new(limits.max_decoded, capacity);
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
    while let Some(frame) = body.frame().await {
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
            return Err(if sink.buffer().overflowed {
                too_large_decoded
            } else {
                invalid_gzip(&e)
            });
        }
    }
    let bytes = sink.finish().map_err(|(overflowed, e)| {
        if overflowed {
            too_large_decoded
        } else {
            invalid_gzip(&e)
        }
    })?;
    Ok(Received { bytes, wire_bytes })
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

    /// The decoded bytes; on error, whether the cap was the cause.
    fn finish(self) -> Result<Vec<u8>, (bool, io::Error)> {
        match self {
            Sink::Identity(buffer) => Ok(buffer.bytes),
            Sink::Gzip(mut decoder) => match decoder.try_finish() {
                Ok(()) => Ok(std::mem::take(&mut decoder.get_mut().bytes)),
                Err(e) => Err((decoder.get_ref().overflowed, e)),
            },
        }
    }
}

/// A `Vec` that fails a write which would take it past `cap`, and remembers that it did.
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: u64,
    overflowed: bool,
}

impl CappedBuffer {
    fn new(cap: u64, capacity: u64) -> Self {
        // `capacity` is at most `cap`, which the config keeps to a size that fits in memory.
        let capacity = usize::try_from(capacity).unwrap_or(0);
        CappedBuffer {
            bytes: Vec::with_capacity(capacity),
            cap,
            overflowed: false,
        }
    }
}

impl Write for CappedBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.bytes.len() as u64 + data.len() as u64 > self.cap {
            self.overflowed = true;
            return Err(io::Error::other("decoded body over the size cap"));
        }
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

    use super::*;
    use axum::http::HeaderValue;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    const LIMITS: Limits = Limits {
        max_compressed: 1024,
        max_decoded: 4096,
    };

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    async fn read_with(encoding: Encoding, body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        read(&HeaderMap::new(), Body::from(body), encoding, LIMITS)
            .await
            .map(|r| r.bytes)
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
        let err = read(&headers, Body::from("tiny"), Encoding::Gzip, LIMITS)
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
