//! The alerting rules in `k8s/monitoring` select series our processes really export: every
//! metric name, and every label value a rule matches on, is on the `/metrics` page of a running
//! gateway, ingester or stats. A renamed metric or reason would otherwise leave an alert that
//! can never fire. (That Prometheus loads the rules, and the operator's CRD accepts them, is
//! testenv's `k8s_manifests` test; both use `rulecheck`, Prometheus's own rule loader.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use testenv::{Launch, Nats};

/// Every series on a `/metrics` page: metric name → the label sets it is exported with.
type Series = BTreeMap<String, Vec<BTreeMap<String, String>>>;

/// Parses the text exposition format's sample lines (`name{a="b",c="d"} value`). Label values
/// here never contain `"` or `,`.
fn series(page: &str, into: &mut Series) {
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name_labels, _) = line.rsplit_once(' ').expect("name and value");
        let (name, labels) = match name_labels.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label=value");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        into.entry(name.to_owned()).or_default().push(labels);
    }
}

async fn scrape(base: &str, into: &mut Series) {
    let page = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a page");
    series(&page, into);
}

/// The values a matcher accepts: one for `=`, each alternative of a plain `a|b|c` for `=~`.
fn accepted(op: &str, value: &str) -> Vec<String> {
    match op {
        "=" => vec![value.to_owned()],
        "=~" => {
            assert!(
                value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '|'),
                "keep rule regexes plain alternations so this test can check them: {value}"
            );
            value.split('|').map(str::to_owned).collect()
        }
        other => panic!("matcher {other} {value}: only = and =~ are checked here"),
    }
}

#[tokio::test]
async fn every_alert_selects_series_the_processes_export() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/monitoring/prometheusrule.yaml");
    let out = std::process::Command::new(testenv::bin_dir().join("rulecheck"))
        .arg(&rules)
        .output()
        .expect("rulecheck runs (testenv/build.sh builds it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules: Value = serde_json::from_slice(&out.stdout).expect("JSON");

    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("reports.db");
    let nats = Nats::start().await.expect("NATS starts");
    let gateway = Launch::gateway(&nats.url())
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ingester = Launch::ingester(&nats.url(), &format!("sqlite:{}", db.display()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Periodic stats on the (empty) store the ingester created: it serves /metrics whether or
    // not a snapshot could be published.
    let stats = Launch::stats()
        .args(["--store", &format!("sqlite:{}", db.display())])
        .args(["--out", dir.path().join("out").to_str().expect("utf-8")])
        .args(["--new-ledger", "--log-format", "json"])
        .serving("--listen", "/healthz")
        .ready_within(Duration::from_secs(60))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut exported = Series::new();
    for base in [gateway.url(), ingester.url(), stats.url()] {
        scrape(&base, &mut exported).await;
    }
    // The gateway's stream gauges appear once its stream maintenance has read the streams,
    // the dead letters' once the ingester has created that stream.
    testenv::eventually(
        Duration::from_secs(30),
        "the gateway's gauges for all three streams",
        || {
            let url = gateway.url();
            async move {
                let mut s = Series::new();
                scrape(&url, &mut s).await;
                s.get("spartakus_gateway_stream_fill_ratio")
                    .is_some_and(|sets| sets.len() == 3)
            }
        },
    )
    .await;
    scrape(&gateway.url(), &mut exported).await;

    let mut checked = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        let alert = rule["alert"].as_str().expect("alert");
        for selector in rule["selectors"].as_array().expect("selectors") {
            let metric = selector["metric"].as_str().expect("metric");
            let Some(sets) = exported.get(metric) else {
                panic!(
                    "{alert}: no process exports {metric}; exported: {:?}",
                    exported.keys().collect::<Vec<_>>()
                );
            };
            for m in selector["matchers"].as_array().expect("matchers") {
                let label = m["label"].as_str().expect("label");
                for value in accepted(
                    m["op"].as_str().expect("op"),
                    m["value"].as_str().expect("value"),
                ) {
                    assert!(
                        sets.iter().any(|s| s.get(label) == Some(&value)),
                        "{alert}: {metric} is never exported with {label}={value:?}; it has {sets:?}"
                    );
                }
            }
            checked.insert(metric.to_owned());
        }
    }
    assert!(checked.len() >= 8, "only {checked:?} checked");
}
