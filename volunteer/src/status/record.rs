//! What the status ConfigMap keeps, and how: its `data` keys, what an attempt writes there
//! ([`to_data`]), and a status read back ([`Status`]), whose last delivered body is
//! decompressed within a bound and checked against its recorded digest. Pure: no I/O.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

/// `binaryData` key of the last delivered body (gzip of the exact JSON sent).
pub const BODY_KEY: &str = "lastDelivered.json.gz";
/// Largest compressed body kept: a ConfigMap holds at most 1 MiB of data in all, and the
/// other keys and the object's metadata need room too.
pub(crate) const MAX_STORED_GZIP: usize = 768 * 1024;
/// Largest body [`Status::delivered_body`] decompresses (a report of 5,000 nodes is some
/// 2 MB): a corrupted or hostile ConfigMap cannot make it allocate without bound.
pub(crate) const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Longest error text kept in the ConfigMap or an Event's note (Events allow 1 kB).
pub(super) const MAX_ERROR: usize = 1000;

/// `data` keys, as `kubectl get configmap -o yaml` shows them.
pub mod key {
    /// When the last report was attempted (RFC 3339, UTC).
    pub const LAST_ATTEMPT: &str = "lastAttempt";
    /// `delivered` or `failed`.
    pub const OUTCOME: &str = "outcome";
    /// The collector's last HTTP status; absent when it never answered.
    pub const HTTP_STATUS: &str = "httpStatus";
    /// HTTP requests made for that report (retries included).
    pub const ATTEMPTS: &str = "attempts";
    /// Why it failed, with its causes.
    pub const ERROR: &str = "error";
    /// The attempted report's `reportID`.
    pub const REPORT_ID: &str = "reportID";
    /// SHA-256 of the exact body attempted (uncompressed JSON), hex.
    pub const BODY_SHA256: &str = "bodySHA256";
    /// Its size in bytes.
    pub const BODY_BYTES: &str = "bodyBytes";
    /// The collector's host.
    pub const COLLECTOR_HOST: &str = "collectorHost";
    /// When the next report is due (RFC 3339); absent with `--period 0`, where a CronJob's
    /// schedule decides.
    pub const NEXT_REPORT_DUE: &str = "nextReportDue";
    /// `--period`.
    pub const PERIOD: &str = "period";
    /// The volunteer's version.
    pub const VERSION: &str = "volunteerVersion";
    /// When a report was last delivered.
    pub const LAST_DELIVERED: &str = "lastDelivered";
    /// Its `reportID`.
    pub const LAST_DELIVERED_REPORT_ID: &str = "lastDeliveredReportID";
    /// SHA-256 of its body.
    pub const LAST_DELIVERED_SHA256: &str = "lastDeliveredSHA256";
    /// Its size in bytes.
    pub const LAST_DELIVERED_BYTES: &str = "lastDeliveredBytes";
    /// Where its body is: `binaryData/lastDelivered.json.gz`, or why only the digest is kept.
    pub const LAST_DELIVERED_BODY: &str = "lastDeliveredBody";
    /// The cluster's version skew against Kubernetes' policy, judged locally when the report
    /// was collected (the `skew` module): a first line `ok: …`, `attention: …` or `unknown: …`,
    /// then the details. Never sent.
    pub const VERSION_SKEW: &str = "versionSkew";
    /// The report-content version accepted (`--consent`), this volunteer's, and the fields
    /// the report left out for lack of consent: `accepted 1, current 2, withheld: reportID,
    /// …`, or `accepted 2, current 2, nothing withheld`.
    pub const CONSENT: &str = "consent";

    /// The keys that describe the last delivered report, kept when an attempt fails.
    pub const DELIVERED: [&str; 5] = [
        LAST_DELIVERED,
        LAST_DELIVERED_REPORT_ID,
        LAST_DELIVERED_SHA256,
        LAST_DELIVERED_BYTES,
        LAST_DELIVERED_BODY,
    ];
}

/// How a report attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The collector accepted it.
    Delivered,
    /// It was not delivered.
    Failed,
}

impl Outcome {
    /// As written in the ConfigMap.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
        }
    }
}

/// One report attempt, as recorded.
#[derive(Debug, Clone)]
pub(crate) struct Attempt<'a> {
    /// When it ended.
    pub(crate) at: jiff::Timestamp,
    /// How.
    pub(crate) outcome: Outcome,
    /// The collector's last answer, if any.
    pub(crate) http_status: Option<u16>,
    /// HTTP requests made, when known (a final refusal may follow retries).
    pub(crate) attempts: Option<u32>,
    /// The error with its causes, on failure.
    pub(crate) error: Option<String>,
    /// The report's ID.
    pub(crate) report_id: String,
    /// The exact body sent (uncompressed JSON).
    pub(crate) body: &'a [u8],
    /// The collector's host.
    pub(crate) collector_host: String,
    /// When the next report is due; `None` with `--period 0`.
    pub(crate) next_due: Option<jiff::Timestamp>,
    /// `--period`.
    pub(crate) period: Duration,
    /// The volunteer's version.
    pub(crate) version: String,
    /// The version-skew summary of what was collected (the `skew` module's `summary`).
    pub(crate) version_skew: Option<String>,
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_owned()
}

fn seconds(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The ConfigMap's `data` and `binaryData` after `attempt`, given what it held before.
/// `gzip_limit` is [`MAX_STORED_GZIP`] but for tests.
pub(crate) fn to_data(
    previous: Option<&ConfigMap>,
    attempt: &Attempt<'_>,
    gzip_limit: usize,
) -> (BTreeMap<String, String>, BTreeMap<String, ByteString>) {
    let mut data = BTreeMap::new();
    let mut binary = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        data.insert(k.to_owned(), v);
    };
    put(key::LAST_ATTEMPT, seconds(attempt.at).to_string());
    put(key::OUTCOME, attempt.outcome.as_str().to_owned());
    if let Some(s) = attempt.http_status {
        put(key::HTTP_STATUS, s.to_string());
    }
    if let Some(n) = attempt.attempts {
        put(key::ATTEMPTS, n.to_string());
    }
    if let Some(e) = &attempt.error {
        put(key::ERROR, truncate(e, MAX_ERROR));
    }
    put(key::REPORT_ID, attempt.report_id.clone());
    let digest = sha256_hex(attempt.body);
    put(key::BODY_SHA256, digest.clone());
    put(key::BODY_BYTES, attempt.body.len().to_string());
    put(key::COLLECTOR_HOST, attempt.collector_host.clone());
    if let Some(due) = attempt.next_due {
        put(key::NEXT_REPORT_DUE, seconds(due).to_string());
    }
    put(
        key::PERIOD,
        humantime::format_duration(attempt.period).to_string(),
    );
    put(key::VERSION, attempt.version.clone());
    if let Some(skew) = &attempt.version_skew {
        put(key::VERSION_SKEW, truncate(skew, MAX_ERROR * 4));
    }
    match attempt.outcome {
        Outcome::Delivered => {
            put(key::LAST_DELIVERED, seconds(attempt.at).to_string());
            put(key::LAST_DELIVERED_REPORT_ID, attempt.report_id.clone());
            put(key::LAST_DELIVERED_SHA256, digest);
            put(key::LAST_DELIVERED_BYTES, attempt.body.len().to_string());
            // Compressing into memory cannot fail; an empty result is treated as too big.
            let gz = crate::send::gzip(attempt.body).unwrap_or_default();
            if !gz.is_empty() && gz.len() <= gzip_limit {
                put(key::LAST_DELIVERED_BODY, format!("binaryData/{BODY_KEY}"));
                binary.insert(BODY_KEY.to_owned(), ByteString(gz));
            } else {
                put(
                    key::LAST_DELIVERED_BODY,
                    format!(
                        "digest only: {} bytes compressed, more than the {gzip_limit} kept in a ConfigMap",
                        gz.len()
                    ),
                );
            }
        }
        Outcome::Failed => {
            if let Some(prev) = previous {
                let old = prev.data.as_ref();
                for k in key::DELIVERED {
                    if let Some(v) = old.and_then(|d| d.get(k)) {
                        put(k, v.clone());
                    }
                }
                if let Some(body) = prev.binary_data.as_ref().and_then(|b| b.get(BODY_KEY)) {
                    binary.insert(BODY_KEY.to_owned(), body.clone());
                }
            }
        }
    }
    (data, binary)
}

/// Why a recorded status cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Reading the ConfigMap failed.
    #[error("reading ConfigMap {0}")]
    Read(String, #[source] kube::Error),
    /// The stored body does not decompress.
    #[error("the last delivered body in binaryData/{BODY_KEY} does not decompress")]
    Gzip(#[source] std::io::Error),
    /// The stored body is larger than `MAX_BODY`.
    #[error("the last delivered body in binaryData/{BODY_KEY} is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The stored body is not the one whose digest was recorded.
    #[error(
        "the body in binaryData/{BODY_KEY} does not match lastDeliveredSHA256 (changed by hand?)"
    )]
    Digest,
}

/// A status read back from its ConfigMap.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    /// `namespace/name`.
    pub(crate) configmap: String,
    /// The `data` keys.
    pub(crate) data: BTreeMap<String, String>,
    /// The compressed last delivered body, if kept.
    pub(crate) body_gzip: Option<Vec<u8>>,
}

impl Status {
    /// The status in `cm`.
    pub(crate) fn parse(cm: &ConfigMap) -> Status {
        let meta = &cm.metadata;
        Status {
            configmap: format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            ),
            data: cm.data.clone().unwrap_or_default(),
            body_gzip: cm
                .binary_data
                .as_ref()
                .and_then(|b| b.get(BODY_KEY))
                .map(|b| b.0.clone()),
        }
    }

    /// A data key's value.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// The last delivered body, decompressed and checked against its recorded digest;
    /// `None` if only the digest is kept (or nothing was ever delivered).
    pub(crate) fn delivered_body(&self) -> Result<Option<Vec<u8>>, StatusError> {
        self.delivered_body_within(MAX_BODY)
    }

    fn delivered_body_within(&self, max: u64) -> Result<Option<Vec<u8>>, StatusError> {
        let Some(gz) = &self.body_gzip else {
            return Ok(None);
        };
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(StatusError::Gzip)?;
        if out.len() as u64 > max {
            return Err(StatusError::TooLarge);
        }
        if self.get(key::LAST_DELIVERED_SHA256) != Some(sha256_hex(&out).as_str()) {
            return Err(StatusError::Digest);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use kube::api::ObjectMeta;

    use super::*;

    fn attempt(outcome: Outcome, body: &[u8]) -> Attempt<'_> {
        Attempt {
            at: "2026-12-02T03:17:05.123Z".parse().unwrap(),
            outcome,
            http_status: Some(if outcome == Outcome::Delivered {
                204
            } else {
                503
            }),
            attempts: Some(2),
            error: (outcome == Outcome::Failed).then(|| "gave up after 2 attempts: 503".into()),
            report_id: "0b6f3a59-2f6e-4a8e-9d1c-3f1c2b7a9e10".into(),
            body,
            collector_host: "collector.example.org".into(),
            next_due: Some("2026-12-03T03:17:05.9Z".parse().unwrap()),
            period: Duration::from_secs(86400),
            version: "v0.1.0".into(),
            version_skew: None,
        }
    }

    fn configmap(
        data: BTreeMap<String, String>,
        binary: BTreeMap<String, ByteString>,
    ) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("spartakus-status".into()),
                namespace: Some("spartakus".into()),
                ..Default::default()
            },
            data: Some(data),
            binary_data: Some(binary),
            ..Default::default()
        }
    }

    #[test]
    fn a_delivered_report_is_recorded_with_its_digest_and_its_body() {
        let body = br#"{"version":"v0.1.0","clusterID":"c"}"#;
        let (data, binary) = to_data(None, &attempt(Outcome::Delivered, body), MAX_STORED_GZIP);
        assert_eq!(data[key::LAST_ATTEMPT], "2026-12-02T03:17:05Z");
        assert_eq!(data[key::OUTCOME], "delivered");
        assert_eq!(data[key::HTTP_STATUS], "204");
        assert_eq!(data[key::BODY_BYTES], body.len().to_string());
        assert_eq!(data[key::BODY_SHA256], sha256_hex(body));
        assert_eq!(data[key::LAST_DELIVERED_SHA256], sha256_hex(body));
        assert_eq!(data[key::NEXT_REPORT_DUE], "2026-12-03T03:17:05Z");
        assert_eq!(data[key::PERIOD], "1day");
        assert!(!data.contains_key(key::ERROR));
        let status = Status::parse(&configmap(data, binary));
        assert_eq!(status.delivered_body().unwrap().as_deref(), Some(&body[..]));
    }

    #[test]
    fn a_body_too_large_for_the_configmap_leaves_only_its_digest() {
        let body: Vec<u8> = (0..4096u32)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let (data, binary) = to_data(None, &attempt(Outcome::Delivered, &body), 1024);
        assert!(binary.is_empty());
        assert!(
            data[key::LAST_DELIVERED_BODY].starts_with("digest only:"),
            "{data:?}"
        );
        assert_eq!(data[key::LAST_DELIVERED_SHA256], sha256_hex(&body));
        let status = Status::parse(&configmap(data, binary));
        assert_eq!(status.delivered_body().unwrap(), None);
    }

    #[test]
    fn a_failure_keeps_the_last_delivered_report_and_records_why() {
        let good = br#"{"version":"v0.1.0","clusterID":"good"}"#;
        let (data, binary) = to_data(None, &attempt(Outcome::Delivered, good), MAX_STORED_GZIP);
        let before = configmap(data, binary);
        let bad = br#"{"version":"v0.1.0","clusterID":"bad"}"#;
        let mut failed = attempt(Outcome::Failed, bad);
        failed.next_due = None;
        let (data, binary) = to_data(Some(&before), &failed, MAX_STORED_GZIP);
        assert_eq!(data[key::OUTCOME], "failed");
        assert_eq!(data[key::HTTP_STATUS], "503");
        assert_eq!(data[key::ERROR], "gave up after 2 attempts: 503");
        assert_eq!(data[key::BODY_SHA256], sha256_hex(bad));
        assert_eq!(data[key::LAST_DELIVERED_SHA256], sha256_hex(good));
        assert!(!data.contains_key(key::NEXT_REPORT_DUE));
        let status = Status::parse(&configmap(data, binary));
        assert_eq!(status.delivered_body().unwrap().as_deref(), Some(&good[..]));
    }

    #[test]
    fn a_body_changed_by_hand_or_a_gzip_bomb_is_refused() {
        let body = br#"{"a":1}"#;
        let (mut data, binary) = to_data(None, &attempt(Outcome::Delivered, body), MAX_STORED_GZIP);
        data.insert(key::LAST_DELIVERED_SHA256.into(), sha256_hex(b"other"));
        let status = Status::parse(&configmap(data.clone(), binary));
        assert!(matches!(status.delivered_body(), Err(StatusError::Digest)));
        let zeros = vec![0u8; 1 << 20];
        let bomb = crate::send::gzip(&zeros).unwrap();
        assert!(bomb.len() < 2048);
        let status = Status {
            body_gzip: Some(bomb),
            ..status
        };
        assert!(matches!(
            status.delivered_body_within(1 << 19),
            Err(StatusError::TooLarge)
        ));
        let status = Status {
            body_gzip: Some(b"not gzip".to_vec()),
            ..status
        };
        assert!(matches!(status.delivered_body(), Err(StatusError::Gzip(_))));
    }

    #[test]
    fn errors_are_cut_to_what_an_event_note_holds() {
        let long = "é".repeat(2000);
        let mut a = attempt(Outcome::Failed, b"{}");
        a.error = Some(long);
        let (data, _) = to_data(None, &a, MAX_STORED_GZIP);
        assert!(data[key::ERROR].len() <= MAX_ERROR);
        assert!(!data.contains_key(key::LAST_DELIVERED));
    }
}
