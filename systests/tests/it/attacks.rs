//! The two attacks on the published statistics that the old k-anonymous release failed, run on
//! the real binaries, with every report on the real path (gateway → JetStream → ingester →
//! SQLite). The setting: 400 ordinary clusters (the synthetic population of
//! `systests::population`) and one distinctive target, Kubernetes v1.50.9 on kernel 9.40,
//! riscv64, 2,000 nodes, with an OS, runtime, provider, accelerator, volunteer version and
//! workloads no ordinary cluster has.
//!
//! 1. **Forged reports** (Sybil, n − 1): the attacker posts 99 forged clusters with the target's
//!    values, so each cell the target is in holds only clusters the attacker knows. k-anonymity
//!    published those cells (100 ≥ k) as exact counts, and subtracting the forged clusters gave
//!    the target's values. Here the store's raw cells with and without the target (computed by
//!    the binary's own store code) go through `disclose` many times each, and an empirical
//!    privacy audit in the style of DP-Sniper and StatDP checks the claimed (ε, δ) on the best
//!    single statistic there is; the same audit catches a release whose noise is far too small.
//! 2. **Differencing**: a date is released, the target joins, the same date is released again,
//!    and the attacker subtracts. The second release is refused; forced, its fresh noise hides
//!    which cells moved by exactly the target's values.
//!
//! Every report is marked synthetic and dated by its own `timestamp` through the gateway's
//! `--backdate-synthetic`: `--date` takes only a day that is over, and only a synthetic report
//! can be dated into it. So the statistics count synthetic reports (`--include-synthetic`); the
//! synthetic filter is not what is under test here.
//!
//! Needs the workspace's binaries (`cargo build --workspace --bins`).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use jiff::Timestamp;
use jiff::civil::Date;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use report::vocabulary::SYNTHETIC_EXTENSION;
use serde_json::{Value, json};
use stats::config::Config;
use stats::disclose::{Disclosure, Raw, RawCell, disclose};
use stats::metrics::{METRICS, Metric, Unit};
use stats::normalize::OTHER;
use stats::privacy::{Budget, Plan, Total};
use stats::store::sqlite::SqliteStore;
use stats::store::{Query, Store, Window};
use systests::population::{self, Planned, Settings};
use testenv::{Finished, Launch};

use crate::pipeline::{Pipeline, heavy_turn, read_only};

const ORDINARY: usize = 400;
const FORGED: usize = 99;
const FORGED_NODES: usize = 250;
const TARGET_NODES: usize = 2_000;

/// Runs of `disclose` on each store in the audit. One `disclose` of this population takes about
/// 75 ms in the debug profile on a busy two-core machine (the exact sampler's big-integer
/// arithmetic), so 2 × 500 runs on two threads take about 40 s. On 500 runs an event never
/// seen has an upper bound of 1.5 %, so a violation of e^ε ≈ 6.6 shows wherever P ≳ 10 %.
const RUNS: u64 = 500;
/// Runs for the audit of a release with far too little noise: its violation is gross, and 120
/// runs are enough to certify it (1 − 0.06 > 6.6 × 0.06).
const POWER_RUNS: u64 = 120;
/// Each Clopper–Pearson interval is at 99.9 %: each bound is wrong with probability 0.0005.
const ALPHA: f64 = 0.001;
/// Thresholds t of the events {S ≥ t}, spread over the quantiles of S.
const THRESHOLDS: usize = 200;

/// How long one run of the stats binary may take.
const STATS_RUN: Duration = Duration::from_secs(120);
/// The volunteer's sender posts this many reports at a time.
const CONCURRENCY: usize = 8;

// The target's values; the forged clusters copy them. None is in the ordinary population.
const MASTER: &str = "v1.50.9";
const KERNEL: &str = "9.40.3-1-riscv64";
const ARCH: &str = "riscv64";
const OS_IMAGE: &str = "openSUSE Leap 15.6";
const RUNTIME: &str = "cri-o://1.50.2";
const CLOUD: &str = "ovhcloud";
const VOLUNTEER: &str = "v0.7.1";
const NAMESPACES: u64 = 700;
/// (kind, objects, median age in hours).
const WORKLOADS: [(&str, u64, u64); 7] = [
    ("Pod", 60_000, 30),
    ("Service", 9_000, 9_000),
    ("Deployment", 7_000, 9_000),
    ("StatefulSet", 1_500, 12_000),
    ("DaemonSet", 40, 10_000),
    ("Job", 20_000, 3),
    ("CronJob", 900, 8_000),
];

// ---- The reports ----

/// The ordinary population: one report per cluster, in the week before `noon`.
fn ordinary(noon: i64) -> Vec<Planned> {
    // With one week, clusters the population lets join late send nothing: ask for more.
    let planned = population::plan(&Settings {
        clusters: ORDINARY * 5 / 4,
        weeks: 1,
        seed: 400,
        now: noon,
    });
    assert!(planned.len() >= ORDINARY, "{} reports", planned.len());
    planned.into_iter().take(ORDINARY).collect()
}

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random::<u128>().to_be_bytes())
        .into_uuid()
        .to_string()
}

/// A cluster with the target's values and `nodes` nodes, reporting at `timestamp`.
fn distinctive(rng: &mut StdRng, nodes: usize, timestamp: i64) -> Planned {
    let cluster = uuid(rng);
    let node_seed: u64 = rng.random();
    let nodes: Vec<Value> = (0..nodes)
        .map(|n| {
            json!({
                "id": format!("{node_seed:016x}{n:016x}"),
                "operatingSystem": "linux",
                "osImage": OS_IMAGE,
                "kernelVersion": KERNEL,
                "architecture": ARCH,
                "containerRuntimeVersion": RUNTIME,
                "kubeletVersion": MASTER,
                "cloudProvider": CLOUD,
                "capacity": [
                    {"resource": "cpu", "value": "192"},
                    {"resource": "memory", "value": "1536Gi"},
                    {"resource": "pods", "value": "250"},
                    {"resource": "amd.com/gpu", "value": "8"},
                ],
            })
        })
        .collect();
    let workloads: Vec<Value> = WORKLOADS
        .iter()
        .map(|(kind, total, age)| {
            json!({
                "kind": kind,
                "total": total,
                "perNamespace": per_namespace(*total, NAMESPACES),
                "ageHours": {"median": age, "p90": age * 3},
            })
        })
        .collect();
    let (name, value) = SYNTHETIC_EXTENSION;
    let body = json!({
        "version": VOLUNTEER,
        "schemaVersion": 2,
        "reportID": uuid(rng),
        "timestamp": timestamp.to_string(),
        "clusterID": cluster,
        "masterVersion": MASTER,
        "nodes": nodes,
        "namespaces": NAMESPACES,
        "workloads": workloads,
        "extensions": [{"name": name, "value": value}],
    });
    Planned {
        timestamp,
        body: body.to_string().into_bytes(),
    }
}

/// `total` objects spread evenly over `namespaces` namespaces, as the report's histogram (its
/// namespaces must add up to `namespaces`).
fn per_namespace(total: u64, namespaces: u64) -> Vec<Value> {
    let mut counts = [0u64; report::BUCKETS.len()];
    let holding = total.min(namespaces);
    if holding > 0 {
        counts[report::bucket_index(total.div_ceil(holding))] += holding;
    }
    counts[0] += namespaces - holding;
    report::BUCKETS
        .iter()
        .zip(counts)
        .map(|((min, max), n)| match max {
            Some(max) => json!({"min": min, "max": max, "namespaces": n}),
            None => json!({"min": min, "namespaces": n}),
        })
        .collect()
}

// ---- The store (the real path to it is `crate::pipeline`) ----

/// The raw cells of `day`'s window in the store `db`: what the stats binary feeds to `disclose`.
async fn raw(db: &Path, day: Date) -> Raw {
    let config = defaults();
    let budget = config.budget();
    let query = Query {
        window: Window {
            date: day,
            days: config.window_days,
        },
        include_synthetic: true,
        node_clip: budget.node_clip,
        report_clip: budget.report_clip,
    };
    SqliteStore::new(db)
        .compute(query)
        .await
        .expect("the store computes the cells")
        .raw
}

/// The stats binary's defaults: the budget every snapshot is released under.
fn defaults() -> Config {
    Config::try_parse_from(["stats"]).expect("the defaults parse")
}

/// The day whose window the reports are dated into, and noon of it (UNIX seconds).
fn the_day() -> (Date, i64) {
    let day = stats::run::last_complete_day(Timestamp::now());
    let midnight = day
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("a UTC day")
        .timestamp()
        .as_second();
    (day, midnight + 12 * 3_600)
}

// ---- What the target changes, and what is published ----

/// One published number the target is counted in.
#[derive(Debug, Clone)]
struct Touch {
    /// A metric's id, or `totals`.
    metric: &'static str,
    labels: Vec<String>,
    /// The target's contribution: 1 cluster, 1 report, or its clipped nodes.
    delta: u64,
}

fn unit_count(metric: &Metric, cell: &RawCell) -> u64 {
    match metric.unit {
        Unit::Clusters => cell.clusters,
        Unit::Nodes => cell.nodes.unwrap_or(0),
    }
}

/// Every raw number that differs between the store with the target and the store without:
/// the target's contribution, as the store counts it (nodes clipped).
fn touches(with: &Raw, without: &Raw) -> Vec<Touch> {
    let mut out = Vec::new();
    for (name, a, b) in [
        ("clusters", with.totals.clusters, without.totals.clusters),
        ("reports", with.totals.reports, without.totals.reports),
        ("nodes", with.totals.nodes, without.totals.nodes),
    ] {
        assert!(a >= b, "the {name} total shrank");
        if a > b {
            out.push(Touch {
                metric: "totals",
                labels: vec![name.to_owned()],
                delta: a - b,
            });
        }
    }
    for metric in METRICS {
        let cells = |raw: &Raw| raw.cells.get(metric.id).cloned().unwrap_or_default();
        let before: HashMap<Vec<String>, u64> = cells(without)
            .iter()
            .map(|c| (c.labels.clone(), unit_count(metric, c)))
            .collect();
        let after: HashMap<Vec<String>, u64> = cells(with)
            .iter()
            .map(|c| (c.labels.clone(), unit_count(metric, c)))
            .collect();
        for (labels, b) in &before {
            let a = after.get(labels).copied().unwrap_or(0);
            assert!(a >= *b, "{} {labels:?} shrank", metric.id);
        }
        for (labels, a) in after {
            let b = before.get(&labels).copied().unwrap_or(0);
            if a > b {
                out.push(Touch {
                    metric: metric.id,
                    labels,
                    delta: a - b,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.metric, &a.labels).cmp(&(b.metric, &b.labels)));
    out
}

/// Every published number of one release: (metric id or `totals`, labels) → count.
type Published = BTreeMap<(String, Vec<String>), u64>;

fn published(d: &Disclosure) -> Published {
    let mut out = Published::new();
    for (name, v) in [
        ("clusters", d.totals.clusters),
        ("reports", d.totals.reports),
        ("nodes", d.totals.nodes),
    ] {
        if let Some(v) = v {
            out.insert(("totals".into(), vec![name.into()]), v);
        }
    }
    for m in &d.metrics {
        for c in &m.cells {
            out.insert((m.metric.id.into(), c.labels.clone()), c.count);
        }
    }
    out
}

/// The same from a published `snapshot.json`.
fn published_in(snapshot: &Value) -> Published {
    let mut out = Published::new();
    for name in ["clusters", "reports", "nodes"] {
        if let Some(v) = snapshot["totals"][name].as_u64() {
            out.insert(("totals".into(), vec![name.into()]), v);
        }
    }
    for m in snapshot["metrics"].as_array().expect("metrics") {
        let id = m["id"].as_str().expect("an id");
        let dims = m["dimensions"].as_array().expect("dimensions").len();
        for row in m["rows"].as_array().expect("rows") {
            let row = row.as_array().expect("a row");
            let labels = row[..dims]
                .iter()
                .map(|l| l.as_str().expect("a label").to_owned())
                .collect();
            out.insert((id.into(), labels), row[dims].as_u64().expect("a count"));
        }
    }
    out
}

/// Where an attacker reads the target's number in a release: its own cell if published, else
/// the nearest `other` it was folded into that is published, else that fold at 0.
fn resolve(p: &Published, t: &Touch) -> (Vec<String>, u64) {
    let n = t.labels.len();
    let mut candidates = vec![t.labels.clone()];
    if t.metric != "totals" {
        for keep in (0..n).rev() {
            let mut l = t.labels[..keep].to_vec();
            l.resize(n, OTHER.to_owned());
            if l != t.labels {
                candidates.push(l);
            }
        }
    }
    for c in &candidates {
        if let Some(v) = p.get(&(t.metric.to_owned(), c.clone())) {
            return (c.clone(), *v);
        }
    }
    (candidates[candidates.len().min(2) - 1].clone(), 0)
}

/// The target's numbers that moved from `first` to `second` by exactly its contribution.
fn moved_exactly<'a>(
    first: &Published,
    second: &Published,
    touched: &'a [Touch],
) -> Vec<&'a Touch> {
    touched
        .iter()
        .filter(|t| {
            let (l1, c1) = resolve(first, t);
            let (l2, c2) = resolve(second, t);
            l1 == l2 && c2 == c1 + t.delta
        })
        .collect()
}

// ---- The audit ----

/// A published number in the statistic S = Σᵢ Δᵢ·yᵢ/σᵢ², with its weight Δᵢ/σᵢ².
struct Term {
    key: (String, Vec<String>),
    weight: f64,
}

/// The Neyman–Pearson statistic of the target's presence: for independent Gaussian noise of
/// scale σᵢ on each count yᵢ the log-likelihood ratio of "with" against "without" is affine in
/// Σᵢ Δᵢ·yᵢ/σᵢ², so no test on the measured counts is stronger. Only measured numbers count:
/// a metric derived as the sum of another's noisy cells adds no independent information.
fn statistic_terms(touched: &[Touch], plan: &Plan) -> Vec<Term> {
    touched
        .iter()
        .filter_map(|t| {
            let sigma = match t.metric {
                "totals" => {
                    let total = match t.labels[0].as_str() {
                        "clusters" => Total::Clusters,
                        "reports" => Total::Reports,
                        _ => Total::Nodes,
                    };
                    plan.total(total).sigma()
                }
                id => plan.metric(id)?.sigma(),
            };
            Some(Term {
                key: (t.metric.to_owned(), t.labels.clone()),
                weight: t.delta as f64 / (sigma * sigma),
            })
        })
        .collect()
}

fn statistic(p: &Published, terms: &[Term]) -> f64 {
    terms
        .iter()
        .map(|t| t.weight * p.get(&t.key).copied().unwrap_or(0) as f64)
        .sum()
}

/// What an attacker sees in one release.
struct Seen {
    /// The statistic S.
    s: f64,
    /// The published riscv64 node count (0 when not published).
    riscv: u64,
}

/// What an attacker sees in the releases of `raw` with noise seeded by `seeds`.
fn observe(raw: &Raw, budget: &Budget, terms: &[Term], seeds: std::ops::Range<u64>) -> Vec<Seen> {
    let riscv = ("nodes_by_architecture".to_owned(), vec![ARCH.to_owned()]);
    seeds
        .map(|seed| {
            let d = disclose(raw, budget, &mut StdRng::seed_from_u64(seed));
            let p = published(&d);
            Seen {
                s: statistic(&p, terms),
                riscv: p.get(&riscv).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// Both stores' observations, one thread each.
fn observe_both(
    with: &Raw,
    without: &Raw,
    budget: &Budget,
    terms: &[Term],
    runs: u64,
) -> (Vec<Seen>, Vec<Seen>) {
    std::thread::scope(|s| {
        let a = s.spawn(|| observe(with, budget, terms, 0..runs));
        let b = s.spawn(|| observe(without, budget, terms, runs..2 * runs));
        (a.join().expect("runs"), b.join().expect("runs"))
    })
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// What the audit found.
#[derive(Debug)]
struct Finding {
    /// The largest lower(P_A[E]) / upper(P_B[E]) over every event E and both orders of the
    /// stores: a lower bound on e^ε of the release (up to δ), at 99.9 % per bound.
    certified_ratio: f64,
    /// The largest ratio of the two estimates P̂_A[E] / P̂_B[E] where B saw E at least 10
    /// times (rarer events give ratios of a few counts, which mean nothing).
    observed_ratio: f64,
    /// Events with lower(P_A[E]) > e^ε · upper(P_B[E]) + δ.
    violations: Vec<String>,
}

/// Checks (ε, δ) on the events {S ≥ t} and {S < t} for thresholds t over the range of S, in
/// both orders of the two samples.
fn audit(with: &[f64], without: &[f64], epsilon: f64, delta: f64) -> Finding {
    let n = with.len();
    assert_eq!(n, without.len());
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(with), sorted(without));
    let mut pooled: Vec<f64> = a.iter().chain(&b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let mut thresholds: Vec<f64> = (0..THRESHOLDS)
        .map(|j| pooled[j * pooled.len() / THRESHOLDS])
        .collect();
    thresholds.dedup();
    let mut bounds: HashMap<usize, (f64, f64)> = HashMap::new();
    let mut bound = |k: usize| {
        *bounds
            .entry(k)
            .or_insert_with(|| clopper_pearson(k, n, ALPHA))
    };
    let mut finding = Finding {
        certified_ratio: 0.0,
        observed_ratio: 0.0,
        violations: Vec::new(),
    };
    for t in thresholds {
        let at_least = |s: &[f64]| s.len() - s.partition_point(|x| *x < t);
        let (ka, kb) = (at_least(&a), at_least(&b));
        for (event, x, y, first, second) in [
            ("S ≥", ka, kb, "D", "D'"),
            ("S ≥", kb, ka, "D'", "D"),
            ("S <", n - ka, n - kb, "D", "D'"),
            ("S <", n - kb, n - ka, "D'", "D"),
        ] {
            let (lower, _) = bound(x);
            let (_, upper) = bound(y);
            finding.certified_ratio = finding.certified_ratio.max(lower / upper);
            if y >= 10 {
                finding.observed_ratio = finding.observed_ratio.max(x as f64 / y as f64);
            }
            if lower > epsilon.exp() * upper + delta {
                finding.violations.push(format!(
                    "{event} {t:.1}: P_{first} ≥ {lower:.4} ({x}/{n}) but P_{second} ≤ {upper:.4} ({y}/{n})"
                ));
            }
        }
    }
    finding
}

/// The Clopper–Pearson interval of a binomial proportion, `k` of `n`, at confidence 1 − `alpha`.
fn clopper_pearson(k: usize, n: usize, alpha: f64) -> (f64, f64) {
    let (k, m) = (k as f64, n as f64);
    let lower = if k == 0.0 {
        0.0
    } else {
        beta_quantile(alpha / 2.0, k, m - k + 1.0)
    };
    let upper = if k == m {
        1.0
    } else {
        beta_quantile(1.0 - alpha / 2.0, k + 1.0, m - k)
    };
    (lower, upper)
}

/// The x with I_x(a, b) = q, by bisection (I_x is increasing in x).
fn beta_quantile(q: f64, a: f64, b: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1.0);
    for _ in 0..64 {
        let mid = (lo + hi) / 2.0;
        if incomplete_beta(mid, a, b) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The regularized incomplete beta function I_x(a, b), by its continued fraction (Numerical
/// Recipes, `betai`).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let nonzero = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..100_000 {
        let m = f64::from(m);
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / nonzero(1.0 + even * d);
        c = nonzero(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / nonzero(1.0 + odd * d);
        c = nonzero(1.0 + odd / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x ≥ 1 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let series: f64 = C[0]
        + C[1..]
            .iter()
            .enumerate()
            .map(|(i, c)| c / (x + i as f64 + 1.0))
            .sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

// ---- The stats binary ----

async fn run_stats(db: &Path, out: &Path, day: Date, extra: &[&str]) -> Finished {
    Launch::stats()
        .args(["--once", "--include-synthetic", "--log-format", "json"])
        .args(["--store", &format!("sqlite:{}", db.display())])
        .args(["--out", out.to_str().expect("a UTF-8 path")])
        .args(["--date", &day.to_string()])
        .args(extra)
        .env("RUST_LOG", "warn")
        .run(STATS_RUN)
        .await
        .expect("stats finishes within 2 minutes")
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, as (relative path, contents).
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("a folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string();
                let text = std::fs::read(&path).expect("a file");
                out.push((rel, String::from_utf8_lossy(&text).into_owned()));
            }
        }
    }
    out.sort();
    out
}

/// Every cluster ID, report ID and node ID in the store.
fn identifiers(db: &Path) -> HashSet<String> {
    let conn = read_only(db).expect("the store opens");
    let mut out = HashSet::new();
    for sql in [
        "SELECT report_id FROM reports",
        "SELECT cluster_id FROM reports",
        "SELECT DISTINCT node_id FROM nodes",
    ] {
        let mut stmt = conn.prepare(sql).expect("a query");
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).expect("rows");
        out.extend(rows.map(|r| r.expect("an identifier")));
    }
    out
}

/// Asserts that no file holds an identifier of the store or a time finer than a day.
fn assert_no_trace(files: &[(String, String)], ids: &HashSet<String>) {
    // An identifier is made of [A-Za-z0-9._:-] (cluster IDs; UUIDs and node IDs are narrower),
    // so wherever it occurs it lies inside one maximal run of those characters.
    let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    let mut lengths: Vec<usize> = ids.iter().map(String::len).collect();
    lengths.sort_unstable();
    lengths.dedup();
    for (name, text) in files {
        for token in text.split(|c: char| !id_char(c)) {
            for &len in &lengths {
                for start in 0..=token.len().saturating_sub(len) {
                    let Some(part) = token.get(start..start + len) else {
                        continue;
                    };
                    assert!(!ids.contains(part), "{name} holds the identifier {part}");
                }
            }
        }
        // Dates only: no clock time (hh:mm) anywhere.
        let b = text.as_bytes();
        let clock = b.windows(5).find(|w| {
            w[0].is_ascii_digit()
                && w[1].is_ascii_digit()
                && w[2] == b':'
                && w[3].is_ascii_digit()
                && w[4].is_ascii_digit()
        });
        assert!(
            clock.is_none(),
            "{name} holds a time of day: {}",
            String::from_utf8_lossy(clock.unwrap_or_default())
        );
    }
}

// ---- The tests ----

#[tokio::test]
async fn forged_reports_around_one_cluster_learn_no_more_than_the_guarantee_allows() {
    let (day, noon) = the_day();
    let mut rng = StdRng::seed_from_u64(99);
    let forged: Vec<Planned> = (0..FORGED)
        .map(|_| distinctive(&mut rng, FORGED_NODES, noon))
        .collect();
    let target = distinctive(&mut rng, TARGET_NODES, noon);

    // D' = ordinary + forged, D = D' + the target: one store before and after the target's
    // report, each through the real path.
    let _turn = heavy_turn().await;
    let mut pipeline = Pipeline::start().await;
    pipeline.deliver(&ordinary(noon), CONCURRENCY).await;
    pipeline.deliver(&forged, CONCURRENCY).await;
    let without = raw(&pipeline.db, day).await;
    pipeline.deliver(&[target], CONCURRENCY).await;
    let with = raw(&pipeline.db, day).await;
    drop(pipeline);

    let budget = defaults().budget();
    let plan = Plan::new(budget);
    let claim = plan.guarantee();
    let touched = touches(&with, &without);
    // The target is counted in every metric and total; its 2,000 nodes count for node_clip.
    for m in METRICS {
        let own: Vec<&Touch> = touched.iter().filter(|t| t.metric == m.id).collect();
        assert!(!own.is_empty(), "the target is not in {}", m.id);
        if m.unit == Unit::Nodes {
            let nodes: u64 = own.iter().map(|t| t.delta).sum();
            assert_eq!(nodes, budget.node_clip, "{}", m.id);
        }
    }
    let riscv_raw = with.cells["nodes_by_architecture"]
        .iter()
        .find(|c| c.labels == [ARCH])
        .and_then(|c| c.nodes);
    let forged_nodes = FORGED as u64 * budget.node_clip;
    assert_eq!(riscv_raw, Some(forged_nodes + budget.node_clip));
    let terms = statistic_terms(&touched, &plan);

    let started = std::time::Instant::now();
    let (on_d, on_d_prime) = observe_both(&with, &without, &budget, &terms, RUNS);
    let elapsed = started.elapsed();
    let s = |v: &[Seen]| v.iter().map(|seen| seen.s).collect::<Vec<_>>();
    let finding = audit(&s(&on_d), &s(&on_d_prime), claim.epsilon, claim.delta);
    // How far the target moves S, in its standard deviations: at most √(2ρ) for ρ-zCDP
    // Gaussian noise before post-processing.
    let (mean, sd) = mean_sd(&s(&on_d_prime));
    let shift = (mean_sd(&s(&on_d)).0 - mean) / sd;
    println!(
        "audit: {RUNS} runs per store in {elapsed:.1?}, {} published numbers in S, which the target shifts by {shift:.3} sd (√(2ρ) = {:.3}); claimed ε = {:.3} (e^ε = {:.2}) at δ = {:e}; largest certified ratio {:.3} (ε ≥ {:.3}), largest observed ratio {:.3}",
        terms.len(),
        (2.0 * claim.rho).sqrt(),
        claim.epsilon,
        claim.epsilon.exp(),
        claim.delta,
        finding.certified_ratio,
        finding.certified_ratio.max(1.0).ln(),
        finding.observed_ratio,
    );
    assert!(
        finding.violations.is_empty(),
        "the release breaks its (ε, δ) = ({}, {}):\n{}",
        claim.epsilon,
        claim.delta,
        finding.violations.join("\n")
    );

    // The attacker's estimate of the target's nodes: published riscv64 nodes minus what the
    // forged clusters count for. The old k-anonymity step published 99 × 250 + 2,000 exactly
    // (nodes were not clipped), so the estimate was the target's 2,000 nodes, every time.
    let estimates: Vec<f64> = on_d
        .iter()
        .map(|seen| seen.riscv as f64 - forged_nodes as f64)
        .collect();
    let mean = estimates.iter().sum::<f64>() / estimates.len() as f64;
    let sigma = plan
        .metric("nodes_by_architecture")
        .expect("measured")
        .sigma();
    let near = estimates
        .iter()
        .filter(|e| (**e - 2_000.0).abs() < 500.0)
        .count();
    println!(
        "riscv64: the attacker's estimate of the target's 2,000 nodes averages {mean:.1} over {RUNS} releases (σ of one: {sigma:.1}); within 500 of 2,000 in {near}"
    );
    // Even averaged over many releases of the same data (which the release-once rule forbids),
    // the estimate centres on the clipped contribution (less the bias of fitting non-negative
    // counts to their total): nowhere near 2,000.
    assert!(
        mean < 500.0,
        "the estimate averages {mean:.1} over {RUNS} releases"
    );
    assert!(
        (near as f64) < 0.05 * RUNS as f64,
        "{near} of {RUNS} estimates within 500 of 2,000"
    );

    // The audit has power: noise for ρ = 50 while claiming the ε of ρ = 0.05 is caught. (The
    // old k-anonymity step was deterministic: the event "riscv64 nodes published = 26,750" had
    // P_D = 1 and P_D' = 0, which no finite ε allows.)
    let loud = Budget {
        rho: 50.0,
        ..budget
    };
    let loud_plan = Plan::new(loud);
    let loud_terms = statistic_terms(&touched, &loud_plan);
    let (on_d, on_d_prime) = observe_both(&with, &without, &loud, &loud_terms, POWER_RUNS);
    let broken = audit(&s(&on_d), &s(&on_d_prime), claim.epsilon, claim.delta);
    println!(
        "power: ρ = 50 claimed as ε = {:.3}: largest certified ratio {:.1}, {} violating events",
        claim.epsilon,
        broken.certified_ratio,
        broken.violations.len()
    );
    assert!(
        !broken.violations.is_empty(),
        "the audit misses a release with 1,000 times the budget: {broken:?}"
    );
}

#[tokio::test]
async fn a_date_is_released_once_and_a_forced_second_release_hides_who_joined() {
    let (day, noon) = the_day();
    let mut rng = StdRng::seed_from_u64(1);
    let target = distinctive(&mut rng, TARGET_NODES, noon);
    let _turn = heavy_turn().await;
    let mut pipeline = Pipeline::start().await;
    pipeline.deliver(&ordinary(noon), CONCURRENCY).await;
    let before = raw(&pipeline.db, day).await;
    let out = pipeline.dir.path().join("stats");
    let snapshot = out.join(format!("snapshots/{day}/snapshot.json"));

    let first = run_stats(&pipeline.db, &out, day, &["--new-ledger"]).await;
    assert!(first.status.success(), "{}", first.stderr);
    let first_release = std::fs::read(&snapshot).expect("the first release");

    // The target joins; the same date again is refused, and nothing is rewritten.
    pipeline.deliver(&[target], CONCURRENCY).await;
    let after = raw(&pipeline.db, day).await;
    let again = run_stats(&pipeline.db, &out, day, &[]).await;
    let stderr = &again.stderr;
    assert_eq!(again.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("already released"), "{stderr}");
    assert_eq!(
        std::fs::read(&snapshot).expect("still there"),
        first_release
    );
    assert_eq!(
        read_json(&out.join("ledger.json"))["releases"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Forced, it is released again and the ledger charges both.
    let forced = run_stats(&pipeline.db, &out, day, &["--allow-rerelease"]).await;
    assert!(forced.status.success(), "{}", forced.stderr);
    let ledger = read_json(&out.join("ledger.json"));
    let releases = ledger["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 2, "{ledger}");
    assert_eq!(releases[1]["rerelease"], true, "{ledger}");
    for r in releases {
        assert_eq!(r["date"], day.to_string(), "{ledger}");
    }
    let rho = |v: &Value| v.as_f64().expect("a number");
    assert!(
        (rho(&ledger["cumulative"]["rho"]) - 2.0 * rho(&releases[0]["rho"])).abs() < 1e-5,
        "{ledger}"
    );

    // The attacker subtracts the two releases. k-anonymity published exact counts, so every
    // number the target is in moved by exactly its contribution (all 49 of its cells in the old
    // code); with fresh noise of σ ≈ 16 on each, about 2 % would by chance.
    let first = published_in(&serde_json::from_slice(&first_release).expect("JSON"));
    let second = published_in(&read_json(&snapshot));
    let touched = touches(&after, &before);
    assert!(touched.len() > 40, "{touched:?}");
    let moved = moved_exactly(&first, &second, &touched);
    println!(
        "differencing: {} of the target's {} numbers moved by exactly its contribution: {:?}",
        moved.len(),
        touched.len(),
        moved
            .iter()
            .map(|t| (t.metric, &t.labels))
            .collect::<Vec<_>>()
    );
    assert!(
        moved.len() * 4 < touched.len(),
        "{} of {} moved by exactly the target's values",
        moved.len(),
        touched.len()
    );
    // The count has power: releases with negligible noise (exact counts, as k-anonymity
    // published) give the target away nearly everywhere.
    let exact = Budget {
        rho: 1e6,
        ..defaults().budget()
    };
    let exact_first = published(&disclose(&before, &exact, &mut StdRng::seed_from_u64(1)));
    let exact_second = published(&disclose(&after, &exact, &mut StdRng::seed_from_u64(2)));
    let exact_moved = moved_exactly(&exact_first, &exact_second, &touched);
    println!(
        "differencing without noise: {} of {} moved exactly",
        exact_moved.len(),
        touched.len()
    );

    assert!(
        exact_moved.len() * 4 >= touched.len() * 3,
        "{} of {} moved exactly without noise",
        exact_moved.len(),
        touched.len()
    );

    // Nothing published names a cluster, report or node, or a time finer than a day.
    let ids = identifiers(&pipeline.db);
    assert!(ids.len() > 2 * (ORDINARY + 1), "{} identifiers", ids.len());
    let published_files = files(&out);
    assert!(
        published_files.len() > 50,
        "{} files",
        published_files.len()
    );
    assert_no_trace(&published_files, &ids);
}

#[test]
fn clopper_pearson_bounds_match_their_closed_forms_and_a_known_interval() {
    let (n, alpha) = (1_000usize, 0.001);
    let (lo, hi) = clopper_pearson(0, n, alpha);
    assert_eq!(lo, 0.0);
    assert!(
        (hi - (1.0 - (alpha / 2.0).powf(1.0 / n as f64))).abs() < 1e-9,
        "{hi}"
    );
    let (lo, hi) = clopper_pearson(n, n, alpha);
    assert!(
        (lo - (alpha / 2.0).powf(1.0 / n as f64)).abs() < 1e-9,
        "{lo}"
    );
    assert_eq!(hi, 1.0);
    // 5 of 10 at 95 %: (0.1871, 0.8129).
    let (lo, hi) = clopper_pearson(5, 10, 0.05);
    assert!(
        (lo - 0.1871).abs() < 1e-4 && (hi - 0.8129).abs() < 1e-4,
        "{lo} {hi}"
    );
    let (lo, hi) = clopper_pearson(3_000, 6_000, 0.001);
    assert!(
        (lo + hi - 1.0).abs() < 1e-9 && lo < 0.48 && hi > 0.52,
        "{lo} {hi}"
    );
}
