//! The queue topology between the gateway and the ingester: which JetStream streams exist, on
//! which subjects, and the headers a dead letter carries.
//!
//! Both ends derive every name from one [`Topology`], built from one prefix (`--queue` on both
//! binaries, `spartakus` by default), so renaming the queue renames every stream on both sides at
//! once and the two can never be paired by half: either both sides rename a stream, or neither.
//!
//! | prefix `spartakus` | stream | subject |
//! |---|---|---|
//! | reports | `SPARTAKUS_REPORTS` | `spartakus.reports` |
//! | erasure requests | `SPARTAKUS_ERASURES` | `spartakus.erasures` |
//! | dead letters | `SPARTAKUS_DEADLETTER` | `spartakus.deadletter` |

use std::fmt;
use std::str::FromStr;

/// The prefix every name derives from unless `--queue` says otherwise.
pub const DEFAULT_PREFIX: &str = "spartakus";

/// The header naming why a report was dead-lettered: `syntax`, `invalid`, `rejected` or
/// `retries-exhausted`.
pub const DEAD_LETTER_REASON_HEADER: &str = "Spartakus-Dead-Letter-Reason";
/// The header with a dead letter's detail (the first field errors, the sink's message).
pub const DEAD_LETTER_DETAIL_HEADER: &str = "Spartakus-Dead-Letter-Detail";
/// The header with a dead letter's sequence number in the stream it came from.
pub const STREAM_SEQUENCE_HEADER: &str = "Spartakus-Stream-Sequence";

/// One stream and its one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The stream's name (upper case, as JetStream streams are conventionally named).
    pub name: String,
    /// Its only subject.
    pub subject: String,
}

/// Every stream of one queue, named from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    /// Reports, published by the gateway, consumed by the ingester.
    pub reports: Stream,
    /// Erasure requests (checks, never secrets), published by the gateway, consumed by the
    /// ingester with a consumer of their own so that a backlog of reports never delays them.
    pub erasures: Stream,
    /// Reports the ingester can never store, with the reason in [`DEAD_LETTER_REASON_HEADER`].
    pub dead_letters: Stream,
}

/// Why a prefix cannot name a queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "queue prefix {0:?}: must be 1 to 32 characters of lowercase ASCII letters, digits and `-`, \
     starting with a letter (it becomes part of JetStream stream and subject names)"
)]
pub struct BadPrefix(String);

impl Topology {
    /// The topology named by `prefix` (`a-z`, `0-9` and `-`, starting with a letter, at most 32
    /// characters): streams `PREFIX_REPORTS`… (upper case, `-` as `_`), subjects `prefix.reports`….
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = (1..=32).contains(&prefix.len())
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(BadPrefix(prefix.to_owned()));
        }
        let stream = |what: &str| Stream {
            name: format!("{}_{}", prefix.replace('-', "_"), what).to_ascii_uppercase(),
            subject: format!("{prefix}.{}", what.to_ascii_lowercase()),
        };
        Ok(Topology {
            prefix: prefix.to_owned(),
            reports: stream("REPORTS"),
            erasures: stream("ERASURES"),
            dead_letters: stream("DEADLETTER"),
        })
    }

    /// The prefix this topology was named from.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Default for Topology {
    /// The topology of [`DEFAULT_PREFIX`].
    fn default() -> Self {
        // DEFAULT_PREFIX passes the rule (a unit test checks it).
        Topology::new(DEFAULT_PREFIX).unwrap_or_else(|e| unreachable!("{e}"))
    }
}

impl FromStr for Topology {
    type Err = BadPrefix;
    fn from_str(prefix: &str) -> Result<Self, BadPrefix> {
        Topology::new(prefix)
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_default_prefix_names_the_streams_deployed_collectors_already_have() {
        let t = Topology::default();
        assert_eq!(t.prefix(), DEFAULT_PREFIX);
        assert_eq!(t.reports.name, "SPARTAKUS_REPORTS");
        assert_eq!(t.reports.subject, "spartakus.reports");
        assert_eq!(t.erasures.name, "SPARTAKUS_ERASURES");
        assert_eq!(t.erasures.subject, "spartakus.erasures");
        assert_eq!(t.dead_letters.name, "SPARTAKUS_DEADLETTER");
        assert_eq!(t.dead_letters.subject, "spartakus.deadletter");
    }

    #[test]
    fn another_prefix_renames_every_stream_and_subject_and_no_two_collide() {
        let t: Topology = "test-7".parse().unwrap();
        assert_eq!(t.reports.name, "TEST_7_REPORTS");
        assert_eq!(t.erasures.subject, "test-7.erasures");
        let d = Topology::default();
        for (a, b) in [
            (&t.reports, &d.reports),
            (&t.erasures, &d.erasures),
            (&t.dead_letters, &d.dead_letters),
        ] {
            assert_ne!(a, b);
        }
        let names = [&t.reports.name, &t.erasures.name, &t.dead_letters.name];
        assert_eq!(
            names.iter().collect::<std::collections::HashSet<_>>().len(),
            3
        );
    }

    #[test]
    fn a_prefix_that_cannot_be_part_of_a_stream_or_subject_name_is_refused_by_name() {
        for bad in [
            "",
            "Spartakus",
            "a.b",
            "a b",
            "a*",
            ">",
            "1abc",
            &"a".repeat(33),
        ] {
            let e = Topology::new(bad).unwrap_err();
            assert!(e.to_string().contains("queue prefix"), "{e}");
        }
    }
}
