//! Erasure that only the cluster can ask for.
//!
//! A volunteer derives a 32-byte **secret** S from its anonymization key and the collector's
//! host (`HMAC-SHA256(key, "erase:" + host)`; the key never leaves the cluster) and sends only
//! its **check**, `SHA-256(S)`, in every v2 report ([`Report::erasure_check`](crate::Report)).
//! To erase, the operator runs `volunteer forget`, which sends S itself with the cluster ID
//! (`POST /api/v2/erasure`, an [`ErasureRequest`]). The collector can then prove the request
//! came from the holder of the key: it deletes exactly the reports of that cluster whose check
//! is `SHA-256(S)`. Nobody else can produce S from what the collector stores, and the gateway
//! answers every well-formed request the same way, so a request teaches nothing about whether
//! the cluster exists.
//!
//! The gateway never stores S: it queues an [`Erasure`] holding the check, which is what the
//! stored reports carry anyway.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::validate::is_digest;
use crate::validate::{RULE_CLUSTER_ID, check_cluster_id};
use crate::{DecodeError, FieldError};

/// The rule a malformed erasure secret breaks.
pub const RULE_SECRET: &str = "not 64 lowercase hex characters (a 32-byte secret)";

/// The check of a secret: `SHA-256(secret)`, 64 lowercase hex characters.
pub fn check_of(secret: &[u8; 32]) -> String {
    hex(&Sha256::digest(secret))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The body of `POST /api/v2/erasure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The cluster whose reports are to be erased, as its reports name it.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// The erasure secret S, 64 lowercase hex characters.
    pub secret: String,
}

impl ErasureRequest {
    /// Checks the request's shape: a valid cluster ID and a well-formed secret. Whether they
    /// match any report is for the ingester to find out, not the gateway.
    pub fn validate(self) -> Result<Erasure, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(rule) = check_cluster_id(&self.cluster_id) {
            errors.push(FieldError::new("clusterID", rule));
        }
        let secret = parse_secret(&self.secret);
        if secret.is_none() {
            errors.push(FieldError::new("secret", RULE_SECRET));
        }
        match secret {
            Some(secret) if errors.is_empty() => Ok(Erasure {
                cluster_id: self.cluster_id,
                erasure_check: check_of(&secret),
            }),
            _ => Err(errors),
        }
    }
}

fn parse_secret(s: &str) -> Option<[u8; 32]> {
    if !is_digest(s) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| match b {
            b'0'..=b'9' => b - b'0',
            _ => b - b'a' + 10,
        };
        out[i] = digit(pair[0]) << 4 | digit(pair[1]);
    }
    Some(out)
}

/// Parses and checks an erasure request body.
pub fn decode_request(body: &[u8]) -> Result<Erasure, DecodeError> {
    let request: ErasureRequest = crate::from_json(body)?;
    request.validate().map_err(DecodeError::Invalid)
}

/// An erasure to carry out: the cluster, and the check its reports must carry to be erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Erasure {
    /// The cluster.
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    /// `SHA-256(S)`: only reports with this `erasureCheck` are erased.
    #[serde(rename = "erasureCheck")]
    pub erasure_check: String,
}

/// What the gateway queues for the ingester: the erasure and when it was asked for. Reports
/// of the cluster received up to then are erased, also those still queued behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueuedErasure {
    /// The erasure.
    #[serde(flatten)]
    pub erasure: Erasure,
    /// When the gateway received the request (RFC 3339, UTC).
    pub requested_at: jiff::Timestamp,
}

impl QueuedErasure {
    /// Compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        // serde_json into a Vec fails only when a Serialize impl returns an error or a map has
        // a key that is not a string: two derived structs of strings (the inner one flattened,
        // which a struct may be) and a jiff Timestamp, written by its infallible `Display`, have
        // neither (`a_well_formed_request_becomes_the_check_and_never_keeps_the_secret` encodes
        // one).
        serde_json::to_vec(self).expect("a queued erasure is plain data, which always serializes")
    }

    /// Parses a queued erasure and checks its fields again.
    pub fn decode(bytes: &[u8]) -> Result<QueuedErasure, DecodeError> {
        let queued: QueuedErasure = crate::from_json(bytes)?;
        let mut errors = Vec::new();
        if check_cluster_id(&queued.erasure.cluster_id).is_err() {
            errors.push(FieldError::new("clusterID", RULE_CLUSTER_ID));
        }
        if !is_digest(&queued.erasure.erasure_check) {
            errors.push(FieldError::new(
                "erasureCheck",
                crate::validate::RULE_ERASURE_CHECK,
            ));
        }
        if errors.is_empty() {
            Ok(queued)
        } else {
            Err(DecodeError::Invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn the_check_is_the_sha256_of_the_secret_bytes() {
        // sha256 of the bytes 0x00..=0x1f.
        let secret: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            check_of(&secret),
            "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
        );
        assert_eq!(parse_secret(SECRET), Some(secret));
    }

    #[test]
    fn a_well_formed_request_becomes_the_check_and_never_keeps_the_secret() {
        let body = format!(r#"{{"clusterID":"c-1","secret":"{SECRET}"}}"#);
        let erasure = decode_request(body.as_bytes()).unwrap();
        assert_eq!(erasure.cluster_id, "c-1");
        assert!(is_digest(&erasure.erasure_check));
        let queued = QueuedErasure {
            erasure,
            requested_at: jiff::Timestamp::from_second(1_767_225_600).unwrap(),
        };
        let bytes = queued.encode();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET));
        assert_eq!(QueuedErasure::decode(&bytes).unwrap(), queued);
    }

    #[test]
    fn malformed_requests_name_every_broken_field() {
        let err = decode_request(br#"{"clusterID":"a@b","secret":"ABC"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "clusterID: not 1-128 characters of [A-Za-z0-9._:-]; secret: not 64 lowercase hex characters (a 32-byte secret)"
        );
        let upper = SECRET.to_uppercase();
        let body = format!(r#"{{"clusterID":"c","secret":"{upper}"}}"#);
        assert!(decode_request(body.as_bytes()).is_err());
        assert!(matches!(
            decode_request(br#"{"clusterID":"c","secret":"00","extra":1}"#),
            Err(DecodeError::Syntax(_))
        ));
    }

    #[test]
    fn digests_are_64_lowercase_hex_characters() {
        assert!(is_digest(&"a".repeat(64)));
        assert!(!is_digest(&"a".repeat(63)));
        assert!(!is_digest(&"A".repeat(64)));
        assert!(!is_digest(&"g".repeat(64)));
    }
}
