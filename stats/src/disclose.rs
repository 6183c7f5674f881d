//! What may be published: the one step that adds noise to the store's cells and decides what is
//! released.
//!
//! [`disclose`] is pure but for its random generator, which is an argument (seeded in tests,
//! from the operating system in production). Its input is what the store aggregated; its output
//! is every published number, and nothing else decides one. In order:
//!
//! 1. **Totals.** The window's clusters, reports and nodes each get noise ([`Plan`]); the noisy
//!    cluster total is the total of every cluster metric, the noisy node total that of every
//!    node metric. Below `--min-clusters`, everything is withheld.
//! 2. **Measure.** Each metric's cells get noise of the scale its share of the budget allows.
//!    Which cells exist depends on its [`Domain`]: every value of a closed domain is measured,
//!    zeros included; a value of an open domain is released only when its noisy count clears
//!    the selection threshold (so a value that only one cluster has is released with
//!    probability at most δₛ); a `Published` domain is the values another metric published,
//!    plus `other`. A metric measured as the sum of a finer one ([`Measure::SumOf`]) adds up
//!    that one's noisy cells and costs nothing.
//! 3. **Post-process** (free: it only reads noisy numbers). Within each partition (a metric, a
//!    group, or a published parent cell), the noisy counts and `other` (measured, or for an open
//!    domain what the partition's total leaves) become the non-negative integers closest to
//!    them that add up to the partition's total; a cell under `--min-clusters`, or under twice
//!    its noise's σ, folds into `other`. So every metric's cells add up to its published total,
//!    children to their parent.
//!
//! No deterministic rule (threshold on true counts, dominance, complementary suppression) is
//! needed: every published number is noisy, and the noise, not the rules, is the guarantee.

use std::collections::BTreeMap;

use rand::CryptoRng;

use crate::metrics::{Domain, METRICS, Measure, Metric, NO_NODES, Order, Unit};
use crate::normalize::OTHER;
use crate::privacy::{Budget, Guarantee, Noise, Plan, Total};

/// A cell as the store computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCell {
    /// The labels, one per dimension of the metric.
    pub labels: Vec<String>,
    /// Distinct clusters in the cell.
    pub clusters: u64,
    /// Nodes in the cell (node metrics), each cluster counting at most `node_clip`.
    pub nodes: Option<u64>,
}

impl RawCell {
    fn count(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Clusters => self.clusters,
            Unit::Nodes => self.nodes.unwrap_or(0),
        }
    }
}

/// The window's totals as the store computed them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawTotals {
    /// Distinct clusters (one latest report each).
    pub clusters: u64,
    /// Reports, each cluster counting at most `report_clip`.
    pub reports: u64,
    /// Nodes in the clusters' latest reports, each cluster counting at most `node_clip`.
    pub nodes: u64,
}

/// Everything the store computed for one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw {
    /// The totals.
    pub totals: RawTotals,
    /// Raw cells per metric id.
    pub cells: BTreeMap<String, Vec<RawCell>>,
}

/// One published cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Labels, one per dimension; the last is `other` for a fold.
    pub labels: Vec<String>,
    /// Clusters or nodes, as the metric's unit says.
    pub count: u64,
}

/// The noise behind one metric's or total's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseInfo {
    /// σ of the noise on each measured count (for a derived metric, on its largest sum).
    pub sigma: f64,
    /// ρ it spent (0 for a derived metric).
    pub rho: f64,
    /// The noisy count an open-domain value had to reach to be released.
    pub threshold: Option<u64>,
    /// The finer metric whose noisy cells this one adds up.
    pub(crate) derived_from: Option<&'static str>,
    /// The smallest count a cell is published with on its own (`other` aside).
    pub floor: u64,
}

impl NoiseInfo {
    fn of(noise: &Noise) -> Self {
        NoiseInfo {
            sigma: noise.sigma(),
            rho: noise.rho(),
            threshold: None,
            derived_from: None,
            floor: 0,
        }
    }
}

/// One metric after disclosure.
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosed {
    /// The metric.
    pub metric: &'static Metric,
    /// The units counted (per group, for a grouped metric); `None` when withheld.
    pub total: Option<u64>,
    /// Published cells, in listing order (empty when withheld).
    pub cells: Vec<Cell>,
    /// The noise behind them.
    pub noise: NoiseInfo,
}

/// The window's published totals; `None` where withheld.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Distinct clusters.
    pub clusters: Option<u64>,
    /// Reports (each cluster counting at most `report_clip`).
    pub reports: Option<u64>,
    /// Nodes (each cluster counting at most `node_clip`).
    pub nodes: Option<u64>,
    /// The noise of each, in [`crate::privacy::MEASUREMENTS`] order.
    pub noise: [(Total, NoiseInfo); 3],
}

/// What may be published of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    /// What the snapshot guarantees.
    pub guarantee: Guarantee,
    /// The budget it was computed under.
    pub(crate) budget: Budget,
    /// The totals.
    pub totals: Totals,
    /// Every metric of [`METRICS`], in that order.
    pub metrics: Vec<Disclosed>,
}

/// Released values with their noisy counts.
type Noisy = Vec<(Vec<String>, i64)>;

/// Noisy counts of one metric: every released value's labels and noisy count.
#[derive(Debug, Clone, Default)]
struct Measured {
    cells: Noisy,
    /// `other` is what a partition's total leaves (open domains), not a measured cell.
    other_is_rest: bool,
    threshold: Option<u64>,
}

/// Adds noise to `raw` and decides what is published, under `budget`.
pub fn disclose<R: CryptoRng + ?Sized>(raw: &Raw, budget: &Budget, rng: &mut R) -> Disclosure {
    let plan = Plan::new(*budget);
    let floor = budget.min_clusters;
    let mut noisy_total =
        |t: Total, v: u64| -> u64 { u64::try_from(plan.total(t).add(v, rng).max(0)).unwrap_or(0) };
    let clusters = noisy_total(Total::Clusters, raw.totals.clusters);
    let reports = noisy_total(Total::Reports, raw.totals.reports);
    let nodes = noisy_total(Total::Nodes, raw.totals.nodes);
    let clusters_ok = clusters >= floor;
    let nodes_ok = clusters_ok && nodes >= floor;
    let info = |t: Total| (t, NoiseInfo::of(plan.total(t)));
    let totals = Totals {
        clusters: clusters_ok.then_some(clusters),
        reports: clusters_ok.then_some(reports),
        nodes: nodes_ok.then_some(nodes),
        noise: [
            info(Total::Clusters),
            info(Total::Reports),
            info(Total::Nodes),
        ],
    };

    let mut measured: BTreeMap<&'static str, Measured> = BTreeMap::new();
    let mut done: Vec<Disclosed> = Vec::with_capacity(METRICS.len());
    for (i, metric) in METRICS.iter().enumerate() {
        let cells = raw.cells.get(metric.id).map(Vec::as_slice).unwrap_or(&[]);
        let mut noise = plan.metrics[i].as_ref().map(NoiseInfo::of);
        let m = match metric.measure {
            Measure::SumOf(child) => {
                let child_metric = crate::metrics::metric(child)
                    .unwrap_or_else(|| unreachable!("SumOf names a metric (tested)"));
                let child_cells = raw.cells.get(child).map(Vec::as_slice).unwrap_or(&[]);
                let child_noise = plan
                    .metric(child)
                    .unwrap_or_else(|| unreachable!("SumOf names a measured metric (tested)"));
                let fine = measure(child_metric, child_cells, child_noise, &plan, &done, rng);
                let summed = sum_up(&fine);
                noise = Some(NoiseInfo {
                    sigma: child_noise.sigma() * (summed.1 as f64).sqrt(),
                    rho: 0.0,
                    threshold: None,
                    derived_from: Some(child),
                    floor: 0,
                });
                measured.insert(child, fine);
                summed.0
            }
            Measure::Noise(_) => match measured.remove(metric.id) {
                Some(m) => m,
                None => {
                    let n = plan.metrics[i]
                        .as_ref()
                        .unwrap_or_else(|| unreachable!("a measured metric has noise"));
                    measure(metric, cells, n, &plan, &done, rng)
                }
            },
        };
        let mut noise = noise.unwrap_or_else(|| unreachable!("set above"));
        noise.threshold = m.threshold;
        let total = match metric.unit {
            Unit::Clusters => totals.clusters,
            Unit::Nodes => totals.nodes,
        };
        // A cell must clear the floor and twice its noise's σ: below that it is mostly noise
        // (a value of a closed domain that no cluster has clears σ one time in six). For a sum
        // of a finer metric's cells, the σ of one of them: many of its cells are a single one
        // (a kind not in use, or unknown), and the larger sums are far above it anyway.
        let unit_sigma = match metric.measure {
            Measure::SumOf(child) => plan.metric(child).map_or(noise.sigma, Noise::sigma),
            Measure::Noise(_) => noise.sigma,
        };
        let floor = floor.max((2.0 * unit_sigma).ceil() as u64);
        noise.floor = floor;
        let disclosed = match (total, metric.parent) {
            (None, _) => Disclosed {
                metric,
                total: None,
                cells: Vec::new(),
                noise,
            },
            (Some(total), None) => release_top(metric, m, total, floor, noise),
            (Some(_), Some(parent)) => {
                let parent = done
                    .iter()
                    .find(|d| d.metric.id == parent)
                    .unwrap_or_else(|| unreachable!("parents come first (tested)"));
                release_child(metric, m, parent, floor, noise)
            }
        };
        done.push(disclosed);
    }
    Disclosure {
        guarantee: plan.guarantee(),
        budget: *budget,
        totals,
        metrics: done,
    }
}

/// Every label tuple of a closed domain, in listing order.
fn closed_domain(metric: &Metric) -> Vec<Vec<String>> {
    let groups: Vec<Vec<String>> = if metric.grouped {
        report::Kind::ALL
            .iter()
            .map(|k| vec![k.as_str().to_owned()])
            .collect()
    } else {
        vec![Vec::new()]
    };
    let mut tuples = Vec::new();
    for g in groups {
        match metric.domain {
            Domain::Closed(labels) => {
                for l in labels() {
                    let mut t = g.clone();
                    t.push(l.to_owned());
                    tuples.push(t);
                }
            }
            Domain::ClosedUnder(under) => {
                for (middle, labels) in under {
                    for l in *labels {
                        let mut t = g.clone();
                        t.extend([(*middle).to_owned(), (*l).to_owned()]);
                        tuples.push(t);
                    }
                }
            }
            Domain::Open { .. } | Domain::Published { .. } => {}
        }
    }
    tuples
}

/// Step 2: noisy counts of the values `metric` may release.
fn measure<R: CryptoRng + ?Sized>(
    metric: &Metric,
    cells: &[RawCell],
    noise: &Noise,
    plan: &Plan,
    done: &[Disclosed],
    rng: &mut R,
) -> Measured {
    let unit = metric.unit;
    let raw: BTreeMap<&[String], u64> = cells
        .iter()
        .map(|c| (c.labels.as_slice(), c.count(unit)))
        .collect();
    match metric.domain {
        Domain::Closed(_) | Domain::ClosedUnder(_) => {
            let domain = closed_domain(metric);
            for c in cells {
                if !domain.contains(&c.labels) {
                    // A value the SQL should not produce (a test checks both stores): leaving it
                    // out is safe; the partition's total still counts it.
                    tracing::warn!(metric = metric.id, labels = ?c.labels, "a value outside the metric's closed domain is not published");
                }
            }
            every_value(domain, |t| raw.get(t).copied().unwrap_or(0), noise, rng)
        }
        Domain::Open { always } => {
            let tau = plan.threshold(noise);
            let is_always = |labels: &[String]| {
                always
                    .iter()
                    .any(|a| a.len() == labels.len() && a.iter().zip(labels).all(|(x, y)| x == y))
            };
            let mut out = Vec::new();
            for c in cells {
                if is_always(&c.labels) || c.labels.last().is_some_and(|l| l == OTHER) {
                    continue;
                }
                let noisy = noise.add(c.count(unit), rng);
                if noisy >= i64::try_from(tau).unwrap_or(i64::MAX) {
                    out.push((c.labels.clone(), noisy));
                }
            }
            for a in always {
                let t: Vec<String> = a.iter().map(|s| (*s).to_owned()).collect();
                let count = raw.get(t.as_slice()).copied().unwrap_or(0);
                out.push((t, noise.add(count, rng)));
            }
            Measured {
                cells: out,
                other_is_rest: true,
                threshold: Some(tau),
            }
        }
        Domain::Published { from } => {
            let source: Vec<&Vec<String>> = done
                .iter()
                .find(|d| d.metric.id == from)
                .map(|d| d.cells.iter().map(|c| &c.labels).collect())
                .unwrap_or_default();
            let prefixes: Vec<Vec<String>> = match metric.parent {
                None => vec![Vec::new()],
                Some(parent) => done
                    .iter()
                    .find(|d| d.metric.id == parent)
                    .map(|d| d.cells.iter().map(|c| c.labels.clone()).collect())
                    .unwrap_or_default(),
            };
            let mut domain: Vec<Vec<String>> = Vec::new();
            for p in &prefixes {
                for l in &source {
                    let last = l.last().map(String::as_str);
                    if l.starts_with(p) && last != Some(OTHER) && last != Some(NO_NODES) {
                        domain.push((*l).clone());
                    }
                }
                let mut other = p.clone();
                other.push(OTHER.to_owned());
                domain.push(other);
            }
            let mut counts: BTreeMap<Vec<String>, u64> = BTreeMap::new();
            for c in cells {
                let key = if domain.contains(&c.labels) {
                    c.labels.clone()
                } else {
                    let mut k = c.labels[..c.labels.len() - 1].to_vec();
                    k.push(OTHER.to_owned());
                    k
                };
                *counts.entry(key).or_default() += c.count(unit);
            }
            every_value(domain, |t| counts.get(t).copied().unwrap_or(0), noise, rng)
        }
    }
}

/// A domain known before the noise: every value measured, zeros included.
fn every_value<R: CryptoRng + ?Sized>(
    domain: Vec<Vec<String>>,
    count: impl Fn(&[String]) -> u64,
    noise: &Noise,
    rng: &mut R,
) -> Measured {
    let cells = domain
        .into_iter()
        .map(|t| {
            let noisy = noise.add(count(&t), rng);
            (t, noisy)
        })
        .collect();
    Measured {
        cells,
        other_is_rest: false,
        threshold: None,
    }
}

/// A parent's noisy cells as the sums of a closed refinement's over its last dimension, and
/// the most cells one sum adds.
fn sum_up(fine: &Measured) -> (Measured, usize) {
    let mut sums: Vec<(Vec<String>, i64, usize)> = Vec::new();
    for (labels, v) in &fine.cells {
        let prefix = labels[..labels.len() - 1].to_vec();
        match sums.iter_mut().find(|(p, _, _)| *p == prefix) {
            Some((_, s, n)) => {
                *s = s.saturating_add(*v);
                *n += 1;
            }
            None => sums.push((prefix, *v, 1)),
        }
    }
    let most = sums.iter().map(|(_, _, n)| *n).max().unwrap_or(1);
    (
        Measured {
            cells: sums.into_iter().map(|(p, s, _)| (p, s)).collect(),
            other_is_rest: false,
            threshold: None,
        },
        most,
    )
}

/// Step 3 for one partition of `total`: the kept cells and `other`.
fn fit_partition(
    measured: Noisy,
    other_is_rest: bool,
    total: u64,
    floor: u64,
) -> (Vec<(Vec<String>, u64)>, u64) {
    let mut labels = Vec::new();
    let mut estimates: Vec<f64> = Vec::new();
    let mut other: Option<f64> = None;
    for (l, v) in measured {
        if l.last().is_some_and(|x| x == OTHER) {
            *other.get_or_insert(0.0) += v as f64;
        } else {
            labels.push(l);
            estimates.push(v as f64);
        }
    }
    if other_is_rest {
        other = Some(total as f64 - estimates.iter().sum::<f64>());
    }
    let with_other = other.is_some() || labels.is_empty();
    if with_other {
        estimates.push(other.unwrap_or(0.0));
    }
    let mut fitted = fit_to_total(&estimates, total);
    let mut rest = if with_other {
        fitted.pop().unwrap_or(0)
    } else {
        0
    };
    let mut kept = Vec::new();
    for (l, v) in labels.into_iter().zip(fitted) {
        if v >= floor && v > 0 {
            kept.push((l, v));
        } else {
            rest += v;
        }
    }
    (kept, rest)
}

/// The non-negative integers closest (least squares, then largest remainder) to `estimates`
/// that add up to `total`.
pub(crate) fn fit_to_total(estimates: &[f64], total: u64) -> Vec<u64> {
    if estimates.is_empty() || total == 0 {
        return vec![0; estimates.len()];
    }
    let t = total as f64;
    // Projection onto the simplex {x ≥ 0, Σx = t}: x = max(y − θ, 0).
    let mut sorted = estimates.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    let mut theta = (sorted.iter().sum::<f64>() - t) / sorted.len() as f64;
    for (j, u) in sorted.iter().enumerate() {
        sum += u;
        let candidate = (sum - t) / (j + 1) as f64;
        if u - candidate > 0.0 {
            theta = candidate;
        }
    }
    let x: Vec<f64> = estimates.iter().map(|y| (y - theta).max(0.0)).collect();
    let mut out: Vec<u64> = x.iter().map(|v| v.floor() as u64).collect();
    let assigned: u64 = out.iter().sum();
    let mut left = total.saturating_sub(assigned);
    let mut order: Vec<usize> = (0..x.len()).collect();
    // Largest fractional part first; ties by position, so the result is deterministic.
    order.sort_by(|&a, &b| {
        (x[b] - x[b].floor())
            .total_cmp(&(x[a] - x[a].floor()))
            .then(a.cmp(&b))
    });
    let mut i = 0;
    while left > 0 {
        out[order[i % order.len()]] += 1;
        left -= 1;
        i += 1;
    }
    // Rounding can overshoot only by float error: take it back from the largest.
    let mut over = out.iter().sum::<u64>().saturating_sub(total);
    while over > 0 {
        if let Some(max) = (0..out.len()).max_by_key(|&j| out[j]) {
            let take = over.min(out[max]);
            out[max] -= take;
            over -= take;
        }
    }
    out
}

fn other_labels(prefix: &[String]) -> Vec<String> {
    let mut l = prefix.to_vec();
    l.push(OTHER.to_owned());
    l
}

fn emit(
    metric: &Metric,
    prefix: &[String],
    kept: Vec<(Vec<String>, u64)>,
    other: u64,
    out: &mut Vec<Cell>,
) {
    let mut kept = kept;
    sort(metric, &mut kept);
    out.extend(
        kept.into_iter()
            .map(|(labels, count)| Cell { labels, count }),
    );
    if other > 0 {
        out.push(Cell {
            labels: other_labels(prefix),
            count: other,
        });
    }
}

fn release_top(
    metric: &'static Metric,
    m: Measured,
    total: u64,
    floor: u64,
    noise: NoiseInfo,
) -> Disclosed {
    let mut cells = Vec::new();
    let mut groups: Vec<(Vec<String>, Noisy)> = Vec::new();
    if metric.grouped {
        for k in report::Kind::ALL {
            groups.push((vec![k.as_str().to_owned()], Vec::new()));
        }
    } else {
        groups.push((Vec::new(), Vec::new()));
    }
    for (labels, v) in m.cells {
        if let Some((_, g)) = groups.iter_mut().find(|(p, _)| labels.starts_with(p)) {
            g.push((labels, v));
        }
    }
    for (prefix, measured) in groups {
        let (kept, other) = fit_partition(measured, m.other_is_rest, total, floor);
        emit(metric, &prefix, kept, other, &mut cells);
    }
    Disclosed {
        metric,
        total: Some(total),
        cells,
        noise,
    }
}

fn release_child(
    metric: &'static Metric,
    m: Measured,
    parent: &Disclosed,
    floor: u64,
    noise: NoiseInfo,
) -> Disclosed {
    let mut out = Disclosed {
        metric,
        total: parent.total,
        cells: Vec::new(),
        noise,
    };
    if parent.total.is_none() {
        return out;
    }
    let mut by_parent: BTreeMap<Vec<String>, Noisy> = BTreeMap::new();
    for (labels, v) in m.cells {
        let prefix = labels[..labels.len() - 1].to_vec();
        by_parent.entry(prefix).or_default().push((labels, v));
    }
    for p in &parent.cells {
        if p.labels.last().is_some_and(|l| l == OTHER) {
            out.cells.push(Cell {
                labels: other_labels(&p.labels),
                count: p.count,
            });
            continue;
        }
        let measured = by_parent.remove(&p.labels).unwrap_or_default();
        let (kept, other) = fit_partition(measured, m.other_is_rest, p.count, floor);
        emit(metric, &p.labels, kept, other, &mut out.cells);
    }
    out
}

/// Sorts cells of one partition by the metric's order of their last label.
fn sort(metric: &Metric, cells: &mut [(Vec<String>, u64)]) {
    let last = |l: &Vec<String>| l.last().cloned().unwrap_or_default();
    match metric.order {
        Order::Count => {
            cells.sort_by(|(la, a), (lb, b)| b.cmp(a).then_with(|| last(la).cmp(&last(lb))))
        }
        Order::Version => cells.sort_by(|(la, a), (lb, b)| {
            let (va, vb) = (version_key(&last(la)), version_key(&last(lb)));
            // Versions first, newest first; then the rest by count.
            match (va, vb) {
                (Some(va), Some(vb)) => vb.cmp(&va),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => b.cmp(a).then_with(|| last(la).cmp(&last(lb))),
            }
        }),
        Order::Fixed(order) => cells.sort_by(|(la, a), (lb, b)| {
            let rank = |l: &String| order.iter().position(|o| o == l).unwrap_or(usize::MAX);
            rank(&last(la))
                .cmp(&rank(&last(lb)))
                .then_with(|| b.cmp(a))
                .then_with(|| last(la).cmp(&last(lb)))
        }),
    }
}

/// `1.37` → [1, 37]; `v1.0.0` → [1, 0, 0]; `15 SP5` → [15, 5]; anything else `None`.
fn version_key(label: &str) -> Option<Vec<u64>> {
    let s = label.strip_prefix('v').unwrap_or(label);
    let parts: Option<Vec<u64>> = s
        .split(['.', ' '])
        .map(|p| p.strip_prefix("SP").unwrap_or(p).parse().ok())
        .collect();
    parts.filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    pub(crate) const BUDGET: Budget = Budget::DEFAULT;

    fn cell(labels: &[&str], clusters: u64) -> RawCell {
        RawCell {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            clusters,
            nodes: None,
        }
    }

    fn raw(metric: &str, cells: Vec<RawCell>) -> Raw {
        let clusters = cells.iter().map(|c| c.clusters).sum();
        Raw {
            totals: RawTotals {
                clusters,
                reports: clusters * 3,
                nodes: clusters * 5,
            },
            cells: [(metric.to_string(), cells)].into(),
        }
    }

    fn published<'a>(d: &'a Disclosure, metric: &str) -> &'a Disclosed {
        d.metrics.iter().find(|m| m.metric.id == metric).unwrap()
    }

    #[test]
    fn fitting_gives_non_negative_integers_that_add_up_to_the_total() {
        assert_eq!(fit_to_total(&[50.0, 30.0, 20.0], 100), vec![50, 30, 20]);
        // (60, 30, 20) projected on a total of 100 is (56⅔, 26⅔, 16⅔): two of them round up.
        let fitted = fit_to_total(&[60.0, 30.0, 20.0], 100);
        assert_eq!(fitted.iter().sum::<u64>(), 100);
        for (f, p) in fitted.iter().zip([56.67, 26.67, 16.67]) {
            assert!((*f as f64 - p).abs() < 1.0, "{fitted:?}");
        }
        assert_eq!(fit_to_total(&[-5.0, 30.0, 80.0], 100), vec![0, 25, 75]);
        assert_eq!(fit_to_total(&[-5.0, -3.0], 0), vec![0, 0]);
        assert_eq!(fit_to_total(&[1.0, 1.0, 1.0], 10).iter().sum::<u64>(), 10);
        assert_eq!(fit_to_total(&[], 10), Vec::<u64>::new());
    }

    #[test]
    fn a_metrics_cells_add_up_to_the_published_cluster_total() {
        let r = raw(
            "clusters_by_kubernetes_minor",
            vec![
                cell(&["1.37"], 5000),
                cell(&["1.36"], 3000),
                cell(&["1.20"], 3),
            ],
        );
        let d = disclose(&r, &BUDGET, &mut StdRng::seed_from_u64(7));
        let total = d.totals.clusters.unwrap();
        for m in &d.metrics {
            if m.metric.unit == Unit::Clusters && !m.metric.grouped {
                assert_eq!(m.total, Some(total), "{}", m.metric.id);
                assert_eq!(
                    m.cells.iter().map(|c| c.count).sum::<u64>(),
                    total,
                    "{}",
                    m.metric.id
                );
            }
        }
        let minor = published(&d, "clusters_by_kubernetes_minor");
        let labels: Vec<&str> = minor.cells.iter().map(|c| c.labels[0].as_str()).collect();
        assert_eq!(&labels[..2], ["1.37", "1.36"]);
        assert!(
            !labels.contains(&"1.20"),
            "3 clusters are far below the threshold"
        );
        assert!(minor.noise.threshold.unwrap() > 50);
    }

    #[test]
    fn every_value_of_a_closed_domain_is_measured_and_small_ones_fold_into_other() {
        // Only Ubuntu is in the data; every other family is measured as a zero with noise, and
        // what clears the floor by chance is published.
        let r = raw("clusters_by_os", vec![cell(&["Ubuntu"], 2000)]);
        let mut seen_other_values = 0;
        for seed in 0..20 {
            let d = disclose(&r, &BUDGET, &mut StdRng::seed_from_u64(seed));
            let os = published(&d, "clusters_by_os");
            assert_eq!(os.cells[0].labels, ["Ubuntu"]);
            seen_other_values += os.cells.len() - 1;
            assert!(
                os.cells
                    .iter()
                    .all(|c| c.count >= 10 || c.labels == ["other"])
            );
        }
        assert!(
            seen_other_values > 0,
            "zeros get noise too, so some clear the floor"
        );
    }

    #[test]
    fn a_child_adds_up_to_its_published_parent() {
        let mut r = raw(
            "clusters_by_kubernetes_minor",
            vec![cell(&["1.37"], 4000), cell(&["1.36"], 1000)],
        );
        r.cells.insert(
            "clusters_by_kubernetes_patch".into(),
            vec![
                cell(&["1.37", "1.37.2"], 3000),
                cell(&["1.37", "1.37.1"], 990),
                cell(&["1.37", "1.37.0"], 10),
                cell(&["1.36", "1.36.4"], 1000),
            ],
        );
        let d = disclose(&r, &BUDGET, &mut StdRng::seed_from_u64(3));
        let minor = published(&d, "clusters_by_kubernetes_minor");
        let patch = published(&d, "clusters_by_kubernetes_patch");
        for p in &minor.cells {
            let sum: u64 = patch
                .cells
                .iter()
                .filter(|c| c.labels[0] == p.labels[0])
                .map(|c| c.count)
                .sum();
            assert_eq!(sum, p.count, "{:?}", p.labels);
        }
        assert!(patch.cells.iter().any(|c| c.labels == ["1.37", "1.37.2"]));
        assert!(!patch.cells.iter().any(|c| c.labels == ["1.37", "1.37.0"]));
    }

    #[test]
    fn a_derived_metric_is_the_sum_of_its_refinement() {
        let mut cells = Vec::new();
        for k in report::Kind::ALL {
            cells.push(cell(&[k.as_str(), "yes", "1-10"], 600));
            cells.push(cell(&[k.as_str(), "yes", "11-100"], 300));
            cells.push(cell(&[k.as_str(), "no", "0"], 100));
        }
        let mut r = raw("clusters_by_workload_objects", cells);
        // Each kind partitions the same 1,000 clusters.
        r.totals.clusters = 1000;
        let d = disclose(&r, &BUDGET, &mut StdRng::seed_from_u64(5));
        let uses = published(&d, "clusters_using_workload_kind");
        let objects = published(&d, "clusters_by_workload_objects");
        // Its floor is that of one noisy cell, not of its largest sum: a kind not in use is a
        // single cell of the finer metric.
        assert_eq!(uses.noise.floor, objects.noise.floor);
        assert!(uses.noise.sigma > objects.noise.sigma);
        assert_eq!(uses.noise.rho, 0.0);
        assert_eq!(
            uses.noise.derived_from,
            Some("clusters_by_workload_objects")
        );
        for u in &uses.cells {
            let sum: u64 = objects
                .cells
                .iter()
                .filter(|c| c.labels[..2] == u.labels[..])
                .map(|c| c.count)
                .sum();
            assert_eq!(sum, u.count, "{:?}", u.labels);
        }
        let total = d.totals.clusters.unwrap();
        for k in report::Kind::ALL {
            let sum: u64 = uses
                .cells
                .iter()
                .filter(|c| c.labels[0] == k.as_str())
                .map(|c| c.count)
                .sum();
            assert_eq!(sum, total, "{}", k.as_str());
        }
    }

    #[test]
    fn below_the_floor_everything_is_withheld() {
        let r = raw("clusters_by_kubernetes_minor", vec![cell(&["1.37"], 1)]);
        let budget = Budget {
            min_clusters: 1000,
            ..BUDGET
        };
        let d = disclose(&r, &budget, &mut StdRng::seed_from_u64(1));
        assert_eq!(d.totals.clusters, None);
        assert!(
            d.metrics
                .iter()
                .all(|m| m.total.is_none() && m.cells.is_empty())
        );
    }

    #[test]
    fn version_labels_sort_numerically() {
        assert!(version_key("1.37") > version_key("1.9"));
        assert_eq!(version_key("15 SP5"), Some(vec![15, 5]));
        assert_eq!(version_key("v1.0.0"), Some(vec![1, 0, 0]));
        assert_eq!(version_key("unknown"), None);
    }
}
