//! What the noise costs: how close the published shares come to the true ones, for populations
//! of 10,000 and 100,000 clusters, at the default budget and along the trade-off curve the
//! default is chosen from. It prints figures, not timings (but for the time `disclose` takes).
//!
//! `cargo bench -p stats --bench utility` (`SPARTAKUS_BENCH_CLUSTERS=10000,100000` for the
//! sizes, `SPARTAKUS_BENCH_RUNS` for R, 30 by default, `SPARTAKUS_BENCH_CURVE_RUNS` for R on
//! the curve if it should differ). About 10 minutes on 2 cores, most of it the 100,000-cluster
//! store computations.
//!
//! Each size's SQLite file is filled once and kept in `target/stats-bench/` (directly, with
//! prepared INSERTs into the committed schema, as the snapshot bench does) from the population
//! in `population.rs`, which `systests::population` follows for the quickstart (stats cannot
//! depend on systests). The true cells are computed once per node clip by [`SqliteStore`], the
//! production query; then [`disclose`] runs R times on them with the seeds 1..=R, so every
//! figure is reproducible. The budget is the one `stats` runs with by default.
//!
//! A share is a cell's count over its unit's total: cluster metrics over the true (published:
//! noisy) cluster total, node metrics over the true (published: noisy) node total *after
//! clipping* (each cluster counting at most `node_clip` nodes), which is what node metrics
//! estimate; the clipping bias, the clipped share against the unclipped one, is printed
//! beside them. A cell labelled `other` is left out (a normalized `other` and the fold of small
//! cells share the label). A true cell is *published* when it appears as a cell of its own.
//! Errors are in percentage points: |published share − true share|, over the published cells
//! (a published value with no true cell counts as a true share of 0); the worst error among the
//! cells of 2 % or more counts a cell left unpublished as its whole share.
//!
//! The target: at 10,000 clusters and the default budget, every cell with at least 2 % of
//! clusters is published, within ±0.5 percentage points — in every one of the R runs (node
//! metrics are held to it too, in shares of clipped nodes). Printed per size: the population's
//! true shares; per metric the errors, what was published and the verdict; the clipping bias of
//! node metrics; the trade-off along ρ and the node clip; and the ρ each metric needs for the
//! target, from which weights can be read.

mod population;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rusqlite::{Connection, params};
use stats::config::Config;
use stats::disclose::{Disclosed, Raw, disclose};
use stats::metrics::{METRICS, Measure, Metric, Unit};
use stats::normalize::OTHER;
use stats::privacy::{Budget, Guarantee, MEASUREMENTS};
use stats::store::sqlite::SqliteStore;
use stats::store::{Query, Window};

/// The snapshot's day; the window is the 28 days ending with it.
const DAY: &str = "2026-11-29";
const WINDOW_DAYS: u16 = 28;
/// The population's seed.
const SEED: u64 = 20_261_129;
/// Bumped whenever the population changes: the cached file's name carries it.
const GENERATION: u32 = 1;
/// A clip no cluster reaches (a report holds at most this many nodes): the unclipped truth.
const NO_CLIP: u64 = report::MAX_NODES as u64;
/// Snapshots in a year (weekly).
const SNAPSHOTS_PER_YEAR: f64 = 52.0;

const RHOS: [f64; 6] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5];
const NODE_CLIPS: [u64; 4] = [10, 20, 50, 100];
/// The target: cells of at least this share…
const TARGET_SHARE: f64 = 0.02;
/// …are published within this many percentage points.
const TARGET_PP: f64 = 0.5;
/// Cells of at least this share should be published.
const LISTED_SHARE: f64 = 0.01;

fn fill(path: &Path, clusters: u64) -> rusqlite::Result<(u64, u64)> {
    let mut conn = Connection::open(path)?;
    stored::sqlite::migrate(&mut conn).map_err(|e| match e {
        stored::sqlite::SchemaError::Sqlite(e) => e,
        other => rusqlite::Error::UserFunctionError(Box::new(other)),
    })?;
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
    let window = window();
    let (start, end) = (window.start().as_second(), window.end().as_second());
    let (mut reports, mut nodes) = (0u64, 0u64);
    let tx = conn.transaction()?;
    {
        let mut report = tx.prepare(
            "INSERT INTO reports (id, report_id, received_at, version, timestamp, cluster_id,
                 master_version, master_minor, schema_version, namespaces)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9)",
        )?;
        let mut node = tx.prepare(
            "INSERT INTO nodes (report, idx, node_id, operating_system, os_image, kernel_version,
                 architecture, container_runtime_version, kubelet_version, cloud_provider)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut capacity = tx.prepare(
            "INSERT INTO capacity (report, node, idx, resource, value) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut workload = tx.prepare(
            "INSERT INTO workloads (report, idx, kind, total, age_median_hours, age_p90_hours)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut id: i64 = 0;
        for c in 0..clusters {
            let cluster = population::cluster(SEED, c);
            let period = cluster.period_hours * 3600;
            // The latest report somewhere in the last period of the window; earlier ones a
            // period apart, as many as fit.
            let latest = end - 1 - (c as i64 * 7919) % period;
            let fit = (latest - start) / period + 1;
            let count = cluster.reports.min(fit);
            for r in (0..count).rev() {
                id += 1;
                reports += 1;
                let at = latest - r * period;
                report.execute(params![
                    id,
                    format!("{c:08x}-0000-4000-8000-{r:012x}"),
                    at,
                    cluster.volunteer,
                    at.to_string(),
                    format!("cluster-{c:07}"),
                    cluster.master,
                    cluster.v2.then_some(2),
                    cluster.namespaces,
                ])?;
                if r > 0 {
                    // Only the latest report is read for nodes and workloads (as in the
                    // snapshot bench): the earlier ones stay small.
                    continue;
                }
                let mut n: i64 = 0;
                for pool in &cluster.pools {
                    let windows = pool.os_image.is_some_and(|i| i.starts_with("Windows"));
                    for _ in 0..pool.nodes {
                        node.execute(params![
                            id,
                            n,
                            format!("{:032x}", id * 100_000 + n),
                            if windows { "windows" } else { "linux" },
                            pool.os_image,
                            pool.kernel,
                            pool.architecture,
                            pool.runtime,
                            pool.kubelet,
                            pool.cloud,
                        ])?;
                        let mut idx = 0;
                        let mut resource = |name: &str, value: &str| {
                            idx += 1;
                            capacity.execute(params![id, n, idx, name, value])
                        };
                        if let Some((cpu, memory)) = &pool.capacity {
                            resource("cpu", cpu)?;
                            resource("memory", memory)?;
                        }
                        resource("pods", "110")?;
                        if let Some((name, value)) = pool.accelerator {
                            resource(name, value)?;
                        }
                        n += 1;
                    }
                }
                nodes += n as u64;
                for (i, w) in cluster.workloads.iter().enumerate() {
                    workload.execute(params![
                        id,
                        i as i64,
                        w.kind,
                        w.total,
                        w.age_median_hours,
                        w.age_median_hours.map(|a| a * 3),
                    ])?;
                }
            }
        }
    }
    tx.commit()?;
    conn.execute_batch("ANALYZE;")?;
    Ok((reports, nodes))
}

fn window() -> Window {
    Window {
        date: DAY
            .parse()
            .unwrap_or_else(|_| unreachable!("a constant date")),
        days: WINDOW_DAYS,
    }
}

/// The true cells of the window, with each cluster counting at most `node_clip` nodes.
fn truth(
    db: &Path,
    budget: &Budget,
    node_clip: u64,
) -> Result<(Raw, Duration), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let computed = SqliteStore::new(db).compute_blocking(Query {
        window: window(),
        include_synthetic: false,
        node_clip,
        report_clip: budget.report_clip,
    })?;
    Ok((computed.raw, started.elapsed()))
}

/// A metric's true shares (of its unit's total), by labels.
type Shares = BTreeMap<Vec<String>, f64>;

/// The true shares of `metric`; `other` left out.
fn shares(raw: &Raw, metric: &Metric) -> Shares {
    let total = match metric.unit {
        Unit::Clusters => raw.totals.clusters,
        Unit::Nodes => raw.totals.nodes,
    } as f64;
    raw.cells
        .get(metric.id)
        .into_iter()
        .flatten()
        .filter(|c| !is_other(&c.labels))
        .map(|c| {
            let count = match metric.unit {
                Unit::Clusters => c.clusters,
                Unit::Nodes => c.nodes.unwrap_or(0),
            };
            (c.labels.clone(), count as f64 / total.max(1.0))
        })
        .collect()
}

fn is_other(labels: &[String]) -> bool {
    labels.last().is_some_and(|l| l == OTHER)
}

/// The population as the true cells show it: each cluster metric's cells of at least 1 %, and
/// what the smaller ones hold together.
fn population(raw: &Raw) {
    println!(
        "The population's true shares (%): every cluster metric's cells of at least 1 % (workload metrics left out)."
    );
    for m in METRICS
        .iter()
        .filter(|m| m.unit == Unit::Clusters && !m.grouped)
    {
        let truth = shares(raw, m);
        let mut cells: Vec<(&Vec<String>, f64)> = truth.iter().map(|(l, s)| (l, *s)).collect();
        cells.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let (big, small): (Vec<_>, Vec<_>) = cells.into_iter().partition(|c| c.1 >= LISTED_SHARE);
        let listed: Vec<String> = big
            .iter()
            .map(|(l, s)| format!("{} {:.1}", label(l), s * 100.0))
            .collect();
        println!(
            "  {}: {}; {} smaller cells {:.1}",
            m.id,
            listed.join(", "),
            small.len(),
            // From +0.0: an empty f64 sum is −0.0.
            small.iter().fold(0.0, |sum, c| sum + c.1) * 100.0
        );
    }
    println!();
}

/// A cell's labels for people: the last, or all of them when the last alone is ambiguous
/// (`Ubuntu 22.04`, but `1.36.4` rather than `1.36 1.36.4`).
fn label(labels: &[String]) -> String {
    match labels {
        [.., parent, last] if !last.starts_with(parent.as_str()) => labels.join(" "),
        [.., last] => last.clone(),
        [] => String::new(),
    }
}

/// What R runs of one metric (or several) came to, against one truth.
#[derive(Debug, Default, Clone)]
struct Tally {
    runs: u64,
    /// |error| over published cells, in shares.
    error_sum: f64,
    error_max: f64,
    published_cells: u64,
    /// True cells of at least 1 % (summed over runs), and how many of them were published.
    listed: u64,
    listed_published: u64,
    /// True cells of at least 2 % (summed over runs), how many met the target, the worst error
    /// among them, and the runs in which all of them did.
    target: u64,
    target_met: u64,
    target_worst: f64,
    runs_all_met: u64,
}

impl Tally {
    /// Adds one run; whether every cell of 2 % or more met the target in it.
    fn add(&mut self, truth: &Shares, published: &Disclosed) -> bool {
        self.runs += 1;
        let total = published.total.unwrap_or(0).max(1) as f64;
        let cells: BTreeMap<&[String], f64> = published
            .cells
            .iter()
            .filter(|c| !is_other(&c.labels))
            .map(|c| (c.labels.as_slice(), c.count as f64 / total))
            .collect();
        for (labels, share) in &cells {
            let error = (share - truth.get(*labels).copied().unwrap_or(0.0)).abs();
            self.error_sum += error;
            self.error_max = self.error_max.max(error);
            self.published_cells += 1;
        }
        let mut all_met = true;
        for (labels, share) in truth {
            let got = cells.get(labels.as_slice());
            if *share >= LISTED_SHARE {
                self.listed += 1;
                self.listed_published += u64::from(got.is_some());
            }
            if *share >= TARGET_SHARE {
                let error = (got.copied().unwrap_or(0.0) - share).abs();
                let met = got.is_some() && error * 100.0 <= TARGET_PP;
                self.target += 1;
                self.target_met += u64::from(met);
                self.target_worst = self.target_worst.max(error);
                all_met &= met;
            }
        }
        self.runs_all_met += u64::from(all_met);
        all_met
    }

    fn merge(&mut self, other: &Tally) {
        self.runs = self.runs.max(other.runs);
        self.error_sum += other.error_sum;
        self.error_max = self.error_max.max(other.error_max);
        self.published_cells += other.published_cells;
        self.listed += other.listed;
        self.listed_published += other.listed_published;
        self.target += other.target;
        self.target_met += other.target_met;
        self.target_worst = self.target_worst.max(other.target_worst);
    }

    fn passes(&self) -> bool {
        self.target_met == self.target
    }
}

fn verdict(t: &Tally) -> &'static str {
    if t.passes() { "PASS" } else { "FAIL" }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1} %", 100.0 * part as f64 / whole as f64)
}

fn pp(share: f64) -> String {
    format!("{:.2}", share * 100.0)
}

/// What R runs of `disclose` came to.
struct Runs {
    /// Per truth, per metric (in [`METRICS`] order).
    tallies: Vec<Vec<Tally>>,
    /// Per run, against the first truth: whether every cluster metric, and every node metric,
    /// met the target.
    all_met: Vec<(bool, bool)>,
    /// How long each run took.
    times: Vec<Duration>,
    /// The first run's metrics (for their noise).
    first: Vec<Disclosed>,
}

/// Disclosure of `raw` under `budget` with the seeds 1..=`runs`, tallied per metric against
/// each of `truths`.
fn runs(raw: &Raw, budget: &Budget, runs: u64, truths: &[&[Shares]]) -> Runs {
    let mut out = Runs {
        tallies: vec![vec![Tally::default(); METRICS.len()]; truths.len()],
        all_met: Vec::new(),
        times: Vec::new(),
        first: Vec::new(),
    };
    for seed in 1..=runs {
        let mut rng = StdRng::seed_from_u64(seed);
        let started = Instant::now();
        let d = disclose(raw, budget, &mut rng);
        out.times.push(started.elapsed());
        let mut met = (true, true);
        for (t, truth) in truths.iter().enumerate() {
            for (i, m) in d.metrics.iter().enumerate() {
                let all = out.tallies[t][i].add(&truth[i], m);
                if t == 0 {
                    match m.metric.unit {
                        Unit::Clusters => met.0 &= all,
                        Unit::Nodes => met.1 &= all,
                    }
                }
            }
        }
        out.all_met.push(met);
        if out.first.is_empty() {
            out.first = d.metrics;
        }
    }
    out
}

fn describe(budget: &Budget) -> String {
    format!(
        "rho {}, delta {:e}, min_clusters {}, node_clip {}, report_clip {}",
        budget.rho, budget.delta, budget.min_clusters, budget.node_clip, budget.report_clip
    )
}

fn epsilons(rho: f64, delta: f64) -> (f64, f64) {
    let year = SNAPSHOTS_PER_YEAR;
    (
        Guarantee::of(rho, delta).epsilon,
        Guarantee::of(year * rho, year * delta).epsilon,
    )
}

/// Everything for one population size.
fn size(
    clusters: u64,
    budget: &Budget,
    r: u64,
    curve_r: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/stats-bench");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join(format!("utility-g{GENERATION}-{clusters}.sqlite"));
    println!("## {clusters} clusters\n");
    if !db.is_file() {
        let tmp = dir.join(format!("utility-g{GENERATION}-{clusters}.sqlite.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let started = Instant::now();
        let (reports, nodes) = fill(&tmp, clusters)?;
        std::fs::rename(&tmp, &db)?;
        println!(
            "filled {} ({reports} reports, {nodes} nodes in the latest ones) in {:.0} s",
            db.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );
    }
    let mut clips: BTreeMap<u64, Raw> = BTreeMap::new();
    let mut took: BTreeMap<u64, Duration> = BTreeMap::new();
    for clip in NODE_CLIPS
        .iter()
        .copied()
        .chain([budget.node_clip, NO_CLIP])
    {
        if let std::collections::btree_map::Entry::Vacant(e) = clips.entry(clip) {
            let (raw, t) = truth(&db, budget, clip)?;
            took.insert(clip, t);
            e.insert(raw);
        }
    }
    let raw = &clips[&budget.node_clip];
    let unclipped = &clips[&NO_CLIP];
    println!(
        "window: {} clusters, {} reports (each cluster at most {}), {} nodes ({} with each cluster at most {} nodes)",
        raw.totals.clusters,
        raw.totals.reports,
        budget.report_clip,
        unclipped.totals.nodes,
        raw.totals.nodes,
        budget.node_clip
    );
    println!(
        "true cells computed by SqliteStore once per node clip: {}",
        took.iter()
            .map(|(clip, t)| format!("{clip}: {:.1} s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (eps, eps_year) = epsilons(budget.rho, budget.delta);
    println!(
        "default budget: {}; ε = {eps:.2} per snapshot, {eps_year:.1} per year (52 snapshots, δ = {:.1e})",
        describe(budget),
        SNAPSHOTS_PER_YEAR * budget.delta
    );

    population(raw);
    // The default budget, per metric.
    let truths: Vec<Shares> = METRICS.iter().map(|m| shares(raw, m)).collect();
    let default = runs(raw, budget, r, &[&truths]);
    let tallies = &default.tallies[0];
    let times = &default.times;
    let mean = times.iter().sum::<Duration>().as_secs_f64() / times.len().max(1) as f64;
    let max = times
        .iter()
        .max()
        .copied()
        .unwrap_or_default()
        .as_secs_f64();
    println!(
        "disclose: {r} runs (seeds 1..={r}), {:.1} ms per run on average, {:.1} ms at most\n",
        mean * 1e3,
        max * 1e3
    );
    println!(
        "Per metric, {r} runs: shares in percentage points of the metric's unit (node metrics: of the clipped node total)."
    );
    let row = |cols: [&str; 13]| {
        let [id, rest @ ..] = cols;
        let widths = [6, 4, 5, 4, 7, 5, 5, 4, 7, 5, 5, 6];
        let rest: Vec<String> = rest
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        println!(
            "{id:<30} {} | {} | {} | {}",
            rest[..3].join(" "),
            rest[3..5].join(" "),
            rest[5..7].join(" "),
            rest[7..].join(" ")
        );
    };
    row([
        "metric", "σ", "τ", "floor", "≥1%", "listed", "mean", "max", "≥2%", "met", "runs", "worst",
        "target",
    ]);
    let mut overall = [Tally::default(), Tally::default()];
    for (i, m) in METRICS.iter().enumerate() {
        let t = &tallies[i];
        let noise = default.first.get(i).map(|d| d.noise);
        let count = |share: f64| {
            truths[i]
                .values()
                .filter(|s| **s >= share)
                .count()
                .to_string()
        };
        row([
            m.id,
            &noise.map_or("-".into(), |n| format!("{:.1}", n.sigma)),
            &noise
                .and_then(|n| n.threshold)
                .map_or("-".into(), |t| t.to_string()),
            &noise.map_or("-".into(), |n| n.floor.to_string()),
            &count(LISTED_SHARE),
            &pct(t.listed_published, t.listed),
            &pp(t.error_sum / t.published_cells.max(1) as f64),
            &pp(t.error_max),
            &count(TARGET_SHARE),
            &pct(t.target_met, t.target),
            &format!("{}/{}", t.runs_all_met, t.runs),
            &pp(t.target_worst),
            verdict(t),
        ]);
        overall[usize::from(m.unit == Unit::Nodes)].merge(t);
    }
    println!(
        "(σ: the noise on each count, of clusters or clipped nodes; τ: an open domain's selection threshold; floor: the least count a cell of its own is published with; ≥1%: true cells of at least 1 %; listed: of those, published as their own cell; mean, max: |error| over published cells; ≥2%: true cells of at least 2 %; met: of those, published within ±{TARGET_PP} pp; runs: runs in which all of them were; worst: the largest error among them, an unpublished cell counting its share.)\n"
    );
    for (u, (name, unit)) in [
        ("cluster metrics", Unit::Clusters),
        ("node metrics (of clipped nodes)", Unit::Nodes),
    ]
    .into_iter()
    .enumerate()
    {
        let t = &overall[u];
        let every = default
            .all_met
            .iter()
            .filter(|m| if u == 0 { m.0 } else { m.1 })
            .count();
        let fails: Vec<String> = METRICS
            .iter()
            .zip(tallies)
            .filter(|(m, t)| m.unit == unit && !t.passes())
            .map(|(m, t)| {
                format!(
                    "{} ({} pp, {})",
                    m.id,
                    pp(t.target_worst),
                    pct(t.target_met, t.target)
                )
            })
            .collect();
        println!(
            "target at {clusters} clusters, {name}: {} — {} of {} cell-runs ({}) within ±{TARGET_PP} pp, worst {} pp; every cell met in {every} of {r} runs; {} of the ≥1 % cells listed{}",
            verdict(t),
            t.target_met,
            t.target,
            pct(t.target_met, t.target),
            pp(t.target_worst),
            pct(t.listed_published, t.listed),
            if fails.is_empty() {
                String::new()
            } else {
                format!("\n  failing: {}", fails.join(", "))
            }
        );
    }
    println!();

    // Clipping bias of node metrics.
    println!(
        "Clipping bias of node metrics at node_clip {}: the clipped share minus the unclipped one, over cells of at least 1 % of either (pp); sum: what the clipped cells add up to, of the clipped total.",
        budget.node_clip
    );
    println!(
        "{:<26} {:>5} {:>6} {:>6} {:>7}   largest",
        "metric", "cells", "mean", "max", "sum"
    );
    for m in METRICS.iter().filter(|m| m.unit == Unit::Nodes) {
        let clipped = shares(raw, m);
        let full = shares(unclipped, m);
        let labels: BTreeSet<&Vec<String>> = clipped.keys().chain(full.keys()).collect();
        let mut biases: Vec<(f64, f64, f64, String)> = labels
            .into_iter()
            .map(|l| {
                let (c, f) = (
                    clipped.get(l).copied().unwrap_or(0.0),
                    full.get(l).copied().unwrap_or(0.0),
                );
                (c - f, c, f, label(l))
            })
            .filter(|(_, c, f, _)| c.max(*f) >= LISTED_SHARE)
            .collect();
        biases.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
        let mean = biases.iter().map(|b| b.0.abs()).sum::<f64>() / biases.len().max(1) as f64;
        let largest = biases
            .first()
            .map(|(b, c, f, l)| {
                format!("{l}: {} clipped vs {} ({:+.2})", pp(*c), pp(*f), b * 100.0)
            })
            .unwrap_or_default();
        // Each cluster's clipped nodes are rounded down per cell, so the cells add up to a little
        // less than the clipped total.
        let sum: u64 = raw
            .cells
            .get(m.id)
            .into_iter()
            .flatten()
            .filter_map(|c| c.nodes)
            .sum();
        println!(
            "{:<26} {:>5} {:>6} {:>6} {:>7}   {}",
            m.id,
            biases.len(),
            pp(mean),
            pp(biases.first().map_or(0.0, |b| b.0.abs())),
            pct(sum, raw.totals.nodes),
            largest
        );
    }
    println!();

    // The trade-off curve.
    println!(
        "Trade-off, {curve_r} runs per point (seeds 1..={curve_r}); ε at δ = {:e} per snapshot and over a year of 52 (ρ·52, δ·52). Cluster metrics:",
        budget.delta
    );
    println!(
        "{:>5} {:>7} {:>8} | {:>9} {:>10} {:>10} | worst metric",
        "ρ", "ε/snap", "ε/year", "worst ≥2%", "met ±0.5", "listed ≥1%"
    );
    let clip_truths: BTreeMap<u64, Vec<Shares>> = clips
        .iter()
        .map(|(clip, raw)| (*clip, METRICS.iter().map(|m| shares(raw, m)).collect()))
        .collect();
    let unclipped_truths = &clip_truths[&NO_CLIP];
    let mut node_rows = Vec::new();
    for rho in RHOS {
        let (eps, eps_year) = epsilons(rho, budget.delta);
        let mut cluster_row = Tally::default();
        let mut worst = (0.0, "");
        for clip in NODE_CLIPS {
            let b = Budget {
                rho,
                node_clip: clip,
                ..*budget
            };
            let point = runs(
                &clips[&clip],
                &b,
                curve_r,
                &[&clip_truths[&clip], unclipped_truths],
            );
            // Against the clipped truth (noise only) and the unclipped one (noise and bias).
            let mut nodes = [Tally::default(), Tally::default()];
            for (i, m) in METRICS.iter().enumerate() {
                match m.unit {
                    Unit::Clusters if clip == budget.node_clip => {
                        let t = &point.tallies[0][i];
                        cluster_row.merge(t);
                        if t.target_worst > worst.0 {
                            worst = (t.target_worst, m.id);
                        }
                    }
                    Unit::Clusters => {}
                    Unit::Nodes => {
                        nodes[0].merge(&point.tallies[0][i]);
                        nodes[1].merge(&point.tallies[1][i]);
                    }
                }
            }
            node_rows.push((rho, clip, nodes));
        }
        println!(
            "{:>5} {:>7.2} {:>8.1} | {:>9} {:>10} {:>10} | {} ({} pp)",
            rho,
            eps,
            eps_year,
            pp(cluster_row.target_worst),
            pct(cluster_row.target_met, cluster_row.target),
            pct(cluster_row.listed_published, cluster_row.listed),
            worst.1,
            pp(worst.0)
        );
    }
    println!(
        "\nNode metrics, by node_clip: against the clipped truth (noise only) and against the unclipped truth (noise and clipping bias)."
    );
    println!(
        "{:>5} {:>5} | {:>9} {:>10} {:>10} | {:>9} {:>10} {:>10}",
        "ρ", "clip", "worst ≥2%", "met ±0.5", "listed ≥1%", "worst ≥2%", "met ±0.5", "listed ≥1%"
    );
    for (rho, clip, [nodes, full]) in node_rows {
        println!(
            "{:>5} {:>5} | {:>9} {:>10} {:>10} | {:>9} {:>10} {:>10}",
            rho,
            clip,
            pp(nodes.target_worst),
            pct(nodes.target_met, nodes.target),
            pct(nodes.listed_published, nodes.listed),
            pp(full.target_worst),
            pct(full.target_met, full.target),
            pct(full.listed_published, full.listed),
        );
    }
    println!();
    needs(raw, budget, r, &truths);
    Ok(())
}

/// The ρ each metric needs for the target: the smallest ρ of a fine grid from which it passes
/// in all R runs, as the share of it the metric's weight gives it. Approximate: a metric also
/// depends on the totals' noise (scaled along), on its parent's published cells and, for a node
/// metric of published values, on its cluster metric's; and the grid steps by 25 %.
fn needs(raw: &Raw, budget: &Budget, r: u64, truths: &[Shares]) {
    let weight_sum: u32 = MEASUREMENTS.iter().map(|(_, w)| w).sum::<u32>()
        + METRICS.iter().map(|m| m.measure.weight()).sum::<u32>();
    let share = |w: u32| f64::from(w) / f64::from(weight_sum);
    let grid: Vec<f64> = (0..=35).map(|k| 0.001 * 1.25f64.powi(k)).collect();
    let mut passes: Vec<Vec<bool>> = vec![Vec::new(); METRICS.len()];
    for rho in &grid {
        let b = Budget {
            rho: *rho,
            ..*budget
        };
        let point = runs(raw, &b, r, &[truths]);
        for (i, t) in point.tallies[0].iter().enumerate() {
            passes[i].push(t.passes());
        }
    }
    // From the grid point after its last failure (a metric that passes at the first one may
    // need less).
    let from: Vec<Option<f64>> = passes
        .iter()
        .map(|p| {
            let k = p.iter().rposition(|ok| !ok).map_or(0, |k| k + 1);
            grid.get(k).copied()
        })
        .collect();
    println!(
        "What each metric needs for the target ({r} runs; node metrics against the clipped truth at node_clip {}): the smallest ρ (grid 0.001·1.25^k, up to 2.5) from which it passes, and the ρᵢ its weight then gives it (weights sum to {weight_sum}, the totals' included).",
        budget.node_clip
    );
    println!(
        "{:<30} {:>6} {:>8} {:>10} {:>10}",
        "metric", "weight", "ρᵢ now", "passes at", "ρᵢ needed"
    );
    let mut total = [0.0, 0.0];
    let mut unmet = [false, false];
    for (i, m) in METRICS.iter().enumerate() {
        let w = m.measure.weight();
        // A metric that adds up a finer one's noise needs that one to have enough.
        let mut need = from[i];
        for (j, other) in METRICS.iter().enumerate() {
            if other.measure == Measure::SumOf(m.id) {
                need = need.zip(from[j]).map(|(a, b)| a.max(b));
            }
        }
        let needed = need.map(|rho| rho * share(w));
        let u = usize::from(m.unit == Unit::Nodes);
        if let Measure::Noise(_) = m.measure {
            match needed {
                Some(n) => total[u] += n,
                None => unmet[u] = true,
            }
        }
        let via = match m.measure {
            Measure::SumOf(child) => format!("(in {child})"),
            Measure::Noise(_) => needed.map_or("-".into(), |n| format!("{n:.5}")),
        };
        println!(
            "{:<30} {:>6} {:>8.5} {:>10} {:>10}",
            m.id,
            w,
            budget.rho * share(w),
            from[i].map_or(format!("> {:.2}", grid[grid.len() - 1]), |f| {
                let at_most = if f == grid[0] { "≤ " } else { "" };
                format!("{at_most}{f:.3}")
            }),
            via
        );
    }
    let totals = budget.rho * share(MEASUREMENTS.iter().map(|(_, w)| w).sum());
    let sum = |u: usize| {
        format!(
            "{}{:.3}",
            if unmet[u] { "more than " } else { "" },
            total[u]
        )
    };
    println!(
        "With each metric given exactly what it needs, the target costs ρ = {} for the cluster metrics and {} for the node metrics, plus the totals ({totals:.4} now; a metric that passes at the grid's first point counts that point).\n",
        sum(0),
        sum(1)
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    use clap::Parser;
    let started = Instant::now();
    let sizes: Vec<u64> = std::env::var("SPARTAKUS_BENCH_CLUSTERS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let r = env("SPARTAKUS_BENCH_RUNS", 30);
    let curve_r = env("SPARTAKUS_BENCH_CURVE_RUNS", r);
    // The defaults, from the flags' own defaults.
    let budget = Config::try_parse_from(["stats"])?.budget();
    for clusters in sizes {
        size(clusters, &budget, r, curve_r)?;
    }
    println!("bench ran in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
