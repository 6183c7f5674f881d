//! `volunteer status --compare URL`: where this cluster stands among the clusters of the
//! collector's published statistics (the files the dashboard reads, `stats/SCHEMA.md`).
//!
//! **What is sent**: two plain GETs of public files, `URL/latest.json` and the snapshot document
//! it names (`URL/snapshots/DATE/snapshot.json`), with the User-Agent [`USER_AGENT`] and the
//! HTTP client's `accept` and `accept-encoding` headers; no cookie, no query string, no body,
//! no other header. Nothing about the cluster is in them: the cluster's values are compared
//! here, after the download. Each request ends within `--request-timeout`.
//!
//! What is compared comes from the last delivered report in the status ConfigMap (what the
//! statistics count): the control plane's minor (`clusters_by_kubernetes_minor`), the worst
//! kubelet skew (`clusters_by_version_skew`) and the container runtime most nodes run, with its
//! minor (`clusters_by_runtime_version`). A cell the statistics did not publish (too few
//! clusters, or a metric withheld) is said to be so, never guessed.
//!
//! `fetch` is the I/O; `Profile::of` and `explain` are pure.

use std::collections::BTreeMap;
use std::time::Duration;

use report::version::{self, Minor};
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

/// The only User-Agent sent: the program's name, nothing about the cluster or the build.
pub const USER_AGENT: &str = "spartakus-volunteer";
/// Largest document read: a snapshot of every metric is some hundreds of kB.
const MAX_DOCUMENT: usize = 32 * 1024 * 1024;
/// The published documents' `format`.
const FORMAT: &str = "spartakus-stats";
/// The `formatVersion` this reader understands.
const FORMAT_VERSION: u32 = 2;

/// The rule a `--compare` URL follows.
pub(crate) const RULE_URL: &str = "expected the http:// or https:// URL of a published statistics folder (the one holding latest.json), without user name, password, query string or fragment";

/// The published folder, checked (`parse_url`), and the timeout of each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The folder, ending with `/`.
    pub(crate) base: Url,
    /// Each request's timeout (`--request-timeout`).
    pub(crate) timeout: Duration,
}

/// The folder URL of `--compare`, checked by [`RULE_URL`], with a final `/` added.
pub(crate) fn parse_url(s: &str) -> Option<Url> {
    let mut url = Url::parse(s).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !ok {
        return None;
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Some(url)
}

/// Why the comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The HTTP client could not be built.
    #[error("--compare: building the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A request failed or timed out.
    #[error("--compare: GET {url}")]
    Get {
        /// The file.
        url: Url,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something else than 200.
    #[error("--compare: GET {url}: HTTP {status}")]
    Status {
        /// The file.
        url: Url,
        /// Its status.
        status: u16,
    },
    /// A document larger than this reader accepts.
    #[error("--compare: GET {url}: larger than {MAX_DOCUMENT} bytes")]
    TooLarge {
        /// The file.
        url: Url,
    },
    /// Not a document of the published format this volunteer reads.
    #[error("--compare: {url}: {detail}")]
    Format {
        /// The file.
        url: Url,
        /// What is wrong.
        detail: String,
    },
    /// Nothing to compare with: no delivered report kept.
    #[error(
        "--compare: the status ConfigMap keeps no delivered report to compare (none delivered yet, or only its digest was kept)"
    )]
    NoReport,
    /// The kept report does not decode.
    #[error("--compare: the last delivered report does not decode: {0}")]
    Report(String),
}

/// `latest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Latest {
    format: String,
    format_version: u32,
    snapshot: String,
}

/// What of a snapshot document is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Published {
    format: String,
    format_version: u32,
    date: String,
    totals: Totals,
    metrics: Vec<MetricDoc>,
}

#[derive(Debug, Clone, Deserialize)]
struct Totals {
    clusters: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct MetricDoc {
    id: String,
    status: String,
    total: Option<u64>,
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

/// A relative path of a published file: letters, digits, `._-/`, no `..`, not absolute.
fn is_published_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && p.split('/').all(|seg| !seg.is_empty() && seg != "..")
}

async fn get(http: &reqwest::Client, url: Url) -> Result<Vec<u8>, CompareError> {
    let get_err = |source| CompareError::Get {
        url: url.clone(),
        source,
    };
    let mut resp = http.get(url.clone()).send().await.map_err(get_err)?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(CompareError::Status {
            url,
            status: resp.status().as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(get_err)? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(CompareError::TooLarge { url });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn check_format(url: &Url, format: &str, version: u32) -> Result<(), CompareError> {
    if format != FORMAT || version != FORMAT_VERSION {
        return Err(CompareError::Format {
            url: url.clone(),
            detail: format!(
                "format {format:?} version {version}, this volunteer reads {FORMAT:?} version {FORMAT_VERSION}"
            ),
        });
    }
    Ok(())
}

/// The newest published snapshot under `target`, and its URL: `latest.json`, then the document
/// it names. Two GETs, nothing else sent (see the module documentation).
pub(crate) async fn fetch(target: &Target) -> Result<(Url, Published), CompareError> {
    let http = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(target.timeout)
        .timeout(target.timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(CompareError::Client)?;
    let format_err = |url: &Url, detail: String| CompareError::Format {
        url: url.clone(),
        detail,
    };
    let latest_url = target
        .base
        .join("latest.json")
        .map_err(|e| format_err(&target.base, e.to_string()))?;
    let latest: Latest = serde_json::from_slice(&get(&http, latest_url.clone()).await?)
        .map_err(|e| format_err(&latest_url, e.to_string()))?;
    check_format(&latest_url, &latest.format, latest.format_version)?;
    if !is_published_path(&latest.snapshot) {
        return Err(format_err(
            &latest_url,
            format!(
                "snapshot {:?} is not a relative path of a published file",
                latest.snapshot
            ),
        ));
    }
    let url = target
        .base
        .join(&latest.snapshot)
        .map_err(|e| format_err(&latest_url, e.to_string()))?;
    let published: Published = serde_json::from_slice(&get(&http, url.clone()).await?)
        .map_err(|e| format_err(&url, e.to_string()))?;
    check_format(&url, &published.format, published.format_version)?;
    Ok((url, published))
}

/// What of the cluster is compared, from its last delivered report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Profile {
    /// The control plane's minor; `None` if the report has none or it does not read.
    minor: Option<Minor>,
    /// Kubelet minor minus control-plane minor, the value farthest from 0 (the positive one on
    /// a tie), as the statistics count it; `None` without both.
    worst_skew: Option<i32>,
    /// The container runtime most nodes run, and the minor most of those run.
    runtime: Option<(String, Option<String>)>,
}

impl Profile {
    /// The profile of a delivered report.
    pub(crate) fn of(report: &report::Report) -> Profile {
        let minor = report.master_version.as_deref().and_then(version::minor);
        let nodes = report.nodes.as_deref().unwrap_or_default();
        let worst_skew = minor.and_then(|m| {
            nodes
                .iter()
                .filter_map(|n| n.kubelet_version.as_deref().and_then(version::minor))
                .filter_map(|k| k.minors_after(m))
                .max_by_key(|d| (d.abs(), *d))
        });
        let mut families: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
        for n in nodes {
            if let Some((name, rest)) = n
                .container_runtime_version
                .as_deref()
                .and_then(|r| r.split_once("://"))
            {
                families.entry(name).or_default().push(runtime_minor(rest));
            }
        }
        let runtime = most(families.iter().map(|(k, v)| (*k, v.len()))).map(|name| {
            let mut minors: BTreeMap<Option<String>, usize> = BTreeMap::new();
            for m in &families[name] {
                *minors.entry(m.clone()).or_default() += 1;
            }
            let minor = most(minors.iter().map(|(k, v)| (k.clone(), *v))).flatten();
            (name.to_owned(), minor)
        });
        Profile {
            minor,
            worst_skew,
            runtime,
        }
    }
}

/// The key with the largest count; the first in order on a tie.
fn most<K>(counts: impl Iterator<Item = (K, usize)>) -> Option<K> {
    let mut best: Option<(K, usize)> = None;
    for (k, n) in counts {
        if best.as_ref().is_none_or(|(_, b)| n > *b) {
            best = Some((k, n));
        }
    }
    best.map(|(k, _)| k)
}

/// `1.7` of `1.7.22` or `v1.7.22`: the labels the statistics publish runtime versions by.
fn runtime_minor(version: &str) -> Option<String> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let (major, minor) = (parts.next()?, parts.next()?);
    let sep = v.as_bytes().get(major.len()).copied();
    (!major.is_empty() && !minor.is_empty() && sep == Some(b'.'))
        .then(|| format!("{major}.{minor}"))
}

/// The cells of a published metric: labels and count, with its total; or why there are none.
struct Cells<'a> {
    rows: Vec<(Vec<&'a str>, u64)>,
    total: u64,
}

fn cells<'a>(p: &'a Published, id: &str) -> Result<Cells<'a>, String> {
    let m = p
        .metrics
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(|| format!("not in this snapshot ({id})"))?;
    let total = match (m.status.as_str(), m.total) {
        ("published", Some(t)) if t > 0 => t,
        _ => return Err("not published in this snapshot: too few clusters".into()),
    };
    let labels = m.columns.len().saturating_sub(2);
    let rows = m
        .rows
        .iter()
        .filter_map(|r| {
            let names: Option<Vec<&str>> = r.iter().take(labels).map(Value::as_str).collect();
            Some((names?, r.get(labels)?.as_u64()?))
        })
        .collect();
    Ok(Cells { rows, total })
}

fn pct(n: u64, total: u64) -> String {
    format!("{:.0} %", n as f64 * 100.0 / total as f64)
}

/// Where `profile` stands in `published` (read from `url`), for people.
pub(crate) fn explain(profile: &Profile, published: &Published, url: &Url) -> String {
    let mut lines = vec![format!(
        "Compared with the published statistics of {} ({url}): {} clusters; every count is noisy (differential privacy) and values too few clusters have are not published",
        published.date,
        published
            .totals
            .clusters
            .map_or("a withheld number of".into(), |c| c.to_string())
    )];
    let mut row = |label: &str, value: String| lines.push(format!("  {label:<15} {value}"));

    row(
        "control plane",
        match profile.minor {
            None => "no Kubernetes version in the last delivered report".into(),
            Some(minor) => match cells(published, "clusters_by_kubernetes_minor") {
                Err(why) => format!("{minor}: {why}"),
                Ok(c) => {
                    let (mut same, mut newer, mut older) = (None, 0, 0);
                    for (labels, n) in &c.rows {
                        match labels.first().and_then(|l| version::minor(l)) {
                            Some(m) if m == minor => same = Some(*n),
                            Some(m) if m.major == minor.major && m > minor => newer += n,
                            Some(m) if m.major == minor.major => older += n,
                            _ => {}
                        }
                    }
                    let this = match same {
                        Some(n) => format!("{} of clusters run this minor", pct(n, c.total)),
                        None => "this minor is not published: too few clusters run it".into(),
                    };
                    format!(
                        "{minor}: {this}; {} run a newer minor, {} an older one",
                        pct(newer, c.total),
                        pct(older, c.total)
                    )
                }
            },
        },
    );

    row(
        "version skew",
        match profile.worst_skew {
            None => "no kubelet and control-plane versions in the last delivered report".into(),
            Some(d) => {
                let label = match d {
                    d if d <= -4 => "-4 or less".to_owned(),
                    d if d >= 1 => "+1 or more".to_owned(),
                    0 => "0".to_owned(),
                    d => d.to_string(),
                };
                let name = match d {
                    0 => "every kubelet on the control plane's minor".to_owned(),
                    d if d < 0 => format!("worst kubelet {} minor(s) behind", -d),
                    d => format!("worst kubelet {d} minor(s) ahead"),
                };
                match cells(published, "clusters_by_version_skew") {
                    Err(why) => format!("{name}: {why}"),
                    Ok(c) => match c.rows.iter().find(|(l, _)| l.first() == Some(&&*label)) {
                        Some((_, n)) => {
                            format!("{name} (skew {label}): {} of clusters", pct(*n, c.total))
                        }
                        None => format!("{name} (skew {label}): not published: too few clusters"),
                    },
                }
            }
        },
    );

    row(
        "runtime",
        match &profile.runtime {
            None => "no container runtime in the last delivered report".into(),
            Some((name, minor)) => {
                let this = match minor {
                    Some(m) => format!("{name} {m}"),
                    None => name.clone(),
                };
                match (minor, cells(published, "clusters_by_runtime_version")) {
                    (_, Err(why)) => format!("{this}: {why}"),
                    (None, Ok(_)) => format!("{this}: no version to compare"),
                    (Some(m), Ok(c)) => match c.rows.iter().find(|(l, _)| {
                        l.first() == Some(&name.as_str()) && l.get(1) == Some(&m.as_str())
                    }) {
                        Some((_, n)) => format!("{this}: {} of clusters", pct(*n, c.total)),
                        None => format!("{this}: not published: too few clusters"),
                    },
                }
            }
        },
    );
    lines.push(String::new());
    lines.join("\n")
}

/// The comparison of the last delivered report, `delivered` (its body as the status
/// ConfigMap keeps it, or why it could not be read), with the statistics at `target`.
pub(crate) async fn compare<E: std::fmt::Display>(
    target: &Target,
    delivered: Result<Option<Vec<u8>>, E>,
) -> Result<String, CompareError> {
    let body = delivered
        .map_err(|e| CompareError::Report(e.to_string()))?
        .ok_or(CompareError::NoReport)?;
    let report = report::decode(&body).map_err(|e| CompareError::Report(e.to_string()))?;
    let profile = Profile::of(report.report());
    let (url, published) = fetch(target).await?;
    Ok(explain(&profile, &published, &url))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use serde_json::json;

    use super::*;

    fn published(metrics: Value) -> Published {
        serde_json::from_value(json!({
            "format": "spartakus-stats", "formatVersion": 2, "date": "2026-12-06",
            "totals": {"clusters": 1000}, "metrics": metrics,
        }))
        .unwrap()
    }

    fn metric(id: &str, dims: &[&str], rows: Value, total: Option<u64>) -> Value {
        let mut columns: Vec<&str> = dims.to_vec();
        columns.extend(["clusters", "share"]);
        json!({"id": id, "status": if total.is_some() {"published"} else {"withheld"},
               "total": total, "columns": columns, "rows": rows, "unit": "clusters"})
    }

    fn report(master: &str, nodes: &[(&str, &str)]) -> report::Report {
        let nodes: Vec<Value> = nodes
            .iter()
            .enumerate()
            .map(|(i, (k, r))| json!({"id": format!("n{i}"), "kubeletVersion": k, "containerRuntimeVersion": r}))
            .collect();
        serde_json::from_value(
            json!({"version": "v0.1.0", "clusterID": "c", "masterVersion": master, "nodes": nodes}),
        )
        .unwrap()
    }

    fn url() -> Url {
        Url::parse("https://stats.example.org/spartakus-stats/snapshots/2026-12-06/snapshot.json")
            .unwrap()
    }

    #[test]
    fn the_profile_is_what_the_statistics_count() {
        let p = Profile::of(&report(
            "v1.34.2-gke.1",
            &[
                ("v1.34.2", "containerd://1.7.22"),
                ("v1.31.0", "containerd://1.7.3"),
                ("v1.35.0", "containerd://2.0.1"),
                ("v1.34.0", "cri-o://1.31.1"),
            ],
        ));
        assert_eq!(p.minor, version::minor("1.34"));
        assert_eq!(p.worst_skew, Some(-3));
        assert_eq!(p.runtime, Some(("containerd".into(), Some("1.7".into()))));
        let tie = Profile::of(&report(
            "v1.34.0",
            &[("v1.35.0", "docker://v20.10.7"), ("v1.33.0", "x")],
        ));
        assert_eq!(tie.worst_skew, Some(1), "the positive one on a tie");
        assert_eq!(tie.runtime, Some(("docker".into(), Some("20.10".into()))));
    }

    #[test]
    fn where_the_cluster_stands_is_said_in_shares_of_clusters() {
        let p = published(json!([
            metric(
                "clusters_by_kubernetes_minor",
                &["minor"],
                json!([
                    ["1.33", 100, 0.1],
                    ["1.34", 290, 0.29],
                    ["1.35", 400, 0.4],
                    ["1.36", 210, 0.21],
                    ["unknown", 0, 0.0]
                ]),
                Some(1000)
            ),
            metric(
                "clusters_by_version_skew",
                &["skew"],
                json!([["-3", 50, 0.05], ["0", 900, 0.9]]),
                Some(1000)
            ),
            metric(
                "clusters_by_runtime_version",
                &["runtime", "version"],
                json!([
                    ["containerd", "1.7", 400, 0.4],
                    ["containerd", "2.0", 500, 0.5]
                ]),
                Some(1000)
            ),
        ]));
        let profile = Profile::of(&report("v1.34.2", &[("v1.31.0", "containerd://1.7.22")]));
        let text = explain(&profile, &p, &url());
        assert!(
            text.starts_with(
                "Compared with the published statistics of 2026-12-06 (https://stats.example.org/"
            ),
            "{text}"
        );
        assert!(text.contains("1000 clusters"), "{text}");
        assert!(
            text.contains("control plane   1.34: 29 % of clusters run this minor; 61 % run a newer minor, 10 % an older one"),
            "{text}"
        );
        assert!(
            text.contains(
                "version skew    worst kubelet 3 minor(s) behind (skew -3): 5 % of clusters"
            ),
            "{text}"
        );
        assert!(
            text.contains("runtime         containerd 1.7: 40 % of clusters"),
            "{text}"
        );
    }

    #[test]
    fn unpublished_cells_and_withheld_metrics_are_said_not_published() {
        let p = published(json!([
            metric(
                "clusters_by_kubernetes_minor",
                &["minor"],
                json!([["1.35", 600, 0.6], ["other", 400, 0.4]]),
                Some(1000)
            ),
            metric("clusters_by_version_skew", &["skew"], json!([]), None),
        ]));
        let profile = Profile::of(&report("v1.30.1", &[("v1.26.0", "rkt://0.9.1")]));
        let text = explain(&profile, &p, &url());
        assert!(
            text.contains("1.30: this minor is not published: too few clusters run it; 60 % run a newer minor, 0 % an older one"),
            "{text}"
        );
        assert!(text.contains("version skew    worst kubelet 4 minor(s) behind: not published in this snapshot: too few clusters"), "{text}");
        assert!(
            text.contains(
                "runtime         rkt 0.9: not in this snapshot (clusters_by_runtime_version)"
            ),
            "{text}"
        );
        let none = explain(&Profile::default(), &p, &url());
        assert!(
            none.contains("no Kubernetes version in the last delivered report"),
            "{none}"
        );
    }

    #[test]
    fn a_compare_url_is_a_public_folder_without_credentials_or_query() {
        assert_eq!(
            parse_url("https://stats.example.org/spartakus-stats")
                .unwrap()
                .as_str(),
            "https://stats.example.org/spartakus-stats/"
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8080/stats/").unwrap().path(),
            "/stats/"
        );
        for bad in [
            "stats.example.org",
            "ftp://stats.example.org/",
            "https://user:pw@stats.example.org/",
            "https://stats.example.org/?cluster=abc",
            "https://stats.example.org/#x",
            "file:///etc/passwd",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn latest_json_may_only_point_to_a_relative_published_file() {
        assert!(is_published_path("snapshots/2026-12-06/snapshot.json"));
        for bad in [
            "",
            "/etc/passwd",
            "../x.json",
            "snapshots//a",
            "https://evil.example/x",
            "a?b=c",
            "a#b",
        ] {
            assert!(!is_published_path(bad), "{bad}");
        }
    }
}
