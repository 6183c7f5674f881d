//! The node IDs the collector stores: every client-supplied node ID re-keyed with a secret of
//! the collector's, so that nothing stored is a hash anyone could recompute.
//!
//! A client's node ID may be a plain hash of what identifies the node: the original v1
//! volunteers sent an unsalted MD5 of the node's name, machine ID and system UUID, so anyone who
//! knows a node's details (its cloud provider, say) could confirm that it reported. Our
//! volunteer sends an HMAC under a key that never leaves the cluster, but the collector cannot
//! tell one client from another, so it treats every ID alike: the stored ID is
//! `HMAC-SHA256(collector key, cluster ID, client's node ID)`, cut to 128 bits and written as 32
//! lowercase hex characters (within the node-ID rule of [`Report::validate`](crate::Report::validate)).
//!
//! The same node in the same cluster keeps one stored ID for as long as the key is kept, which
//! is all the statistics need (nodes are counted within a report). The cluster ID is part of the
//! input, so one node ID sent under two cluster IDs cannot be linked through the store. The key
//! must be the same for every gateway replica and across restarts; a new key gives every node a
//! new stored ID from then on.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Shortest key accepted, in bytes (after trailing whitespace is trimmed): 32 random bytes, or
/// the 64 hex characters of `openssl rand -hex 32`, both qualify.
pub const MIN_KEY_LEN: usize = 32;

/// The collector's node-ID key. Never `Debug`-printed, serialized or logged.
#[derive(Clone)]
pub struct NodeIdKey([u8; 32]);

impl fmt::Debug for NodeIdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeIdKey(<redacted>)")
    }
}

/// Why a secret cannot be a [`NodeIdKey`]. Never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes; at least {MIN_KEY_LEN} are needed (e.g. `openssl rand -hex 32`)")]
pub struct ShortKey {
    /// The length of what was given, trailing whitespace trimmed.
    pub len: usize,
}

impl NodeIdKey {
    /// A key from secret bytes, e.g. a mounted Secret's file. Trailing whitespace (the newline
    /// an editor or `echo` adds) is not part of the key; at least [`MIN_KEY_LEN`] bytes remain.
    pub fn from_secret(secret: &[u8]) -> Result<Self, ShortKey> {
        let secret = secret.trim_ascii_end();
        if secret.len() < MIN_KEY_LEN {
            return Err(ShortKey { len: secret.len() });
        }
        let mut h = Sha256::new();
        h.update(b"spartakus-node-id-key-v1:");
        h.update(secret);
        Ok(NodeIdKey(h.finalize().into()))
    }

    /// The stored ID of the node a client calls `node_id` in cluster `cluster_id`.
    pub fn rekey(&self, cluster_id: &str, node_id: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        // Length-prefixed, so that where one input ends and the next begins is never ambiguous.
        for part in [cluster_id.as_bytes(), node_id.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(32);
        for b in &digest[..16] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(s: &str) -> NodeIdKey {
        NodeIdKey::from_secret(s.as_bytes()).unwrap()
    }

    const K: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn stored_ids_are_32_lowercase_hex_characters_and_valid_node_ids() {
        let id = key(K).rekey("c", "c8863d09ecc5be8d9791f72acd275fc2");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert!(crate::validate::is_node_id(&id));
    }

    #[test]
    fn stored_ids_are_stable_for_a_key_and_change_with_key_cluster_and_node() {
        let id = key(K).rekey("c", "n");
        assert_eq!(id, key(K).rekey("c", "n"));
        assert_eq!(
            id,
            key(&format!("{K}\n")).rekey("c", "n"),
            "a trailing newline is no part of the key"
        );
        assert_ne!(id, key(&format!("{K}x")).rekey("c", "n"));
        assert_ne!(id, key(K).rekey("d", "n"));
        assert_ne!(id, key(K).rekey("c", "m"));
        assert_ne!(key(K).rekey("ab", "c"), key(K).rekey("a", "bc"));
    }

    #[test]
    fn a_short_key_is_refused_and_the_key_is_never_printed() {
        assert_eq!(
            NodeIdKey::from_secret(b"too short\n").unwrap_err(),
            ShortKey { len: 9 }
        );
        assert_eq!(format!("{:?}", key(K)), "NodeIdKey(<redacted>)");
    }
}
