//! The privacy step itself: the noise is what it claims, and what is published is consistent.
//!
//! - The noise: many draws of the sampler match the discrete Gaussian of the configured σ
//!   (a Kolmogorov–Smirnov test), and noise drawn 10 % too narrow fails the same test.
//! - Properties over random populations (aggregated here the way the SQL does): published cells
//!   clear the floor, every partition adds up to its total (children to their parent), open-
//!   domain values are published only when many clusters have them, and the step is a function
//!   of its seed.
//!
//! The attacks (forged reports, differencing) run on the real binaries in
//! `systests/tests/it/attacks.rs`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use stats::disclose::{Disclosure, Raw, RawCell, RawTotals, disclose};
use stats::metrics::{Domain, METRICS, Unit};
use stats::normalize::OTHER;
use stats::privacy::{Budget, Noise};

const BUDGET: Budget = Budget::DEFAULT;

/// P(Z ≤ z) of the discrete Gaussian of scale σ, for z in −m..=m.
fn discrete_gaussian_cdf(sigma: f64, m: i64) -> BTreeMap<i64, f64> {
    let w: Vec<(i64, f64)> = (-m..=m)
        .map(|z| (z, (-(z as f64).powi(2) / (2.0 * sigma * sigma)).exp()))
        .collect();
    let norm: f64 = w.iter().map(|(_, v)| v).sum();
    let mut acc = 0.0;
    w.into_iter()
        .map(|(z, v)| {
            acc += v / norm;
            (z, acc)
        })
        .collect()
}

/// The Kolmogorov–Smirnov distance between `draws` and the discrete Gaussian of scale `sigma`.
fn ks_distance(draws: &[i64], sigma: f64) -> f64 {
    let m = (12.0 * sigma).ceil() as i64;
    let cdf = discrete_gaussian_cdf(sigma, m);
    let mut sorted = draws.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as f64;
    let mut d: f64 = 0.0;
    let mut i = 0;
    for (z, f) in &cdf {
        while i < sorted.len() && sorted[i] <= *z {
            i += 1;
        }
        d = d.max((i as f64 / n - f).abs());
    }
    d
}

#[test]
fn the_noise_is_the_discrete_gaussian_of_its_scale_and_a_mis_scaled_one_is_caught() {
    let n = 40_000;
    let sigma_milli = 15_812;
    let sigma = sigma_milli as f64 / 1000.0;
    // At a significance of 0.001 the KS critical distance is about 1.95/√n (conservative for a
    // discrete distribution).
    let critical = 1.95 / (n as f64).sqrt();

    let noise = Noise::with_sigma_milli(1.0, sigma_milli);
    let mut rng = StdRng::seed_from_u64(20261207);
    let draws: Vec<i64> = (0..n).map(|_| noise.sample(&mut rng)).collect();
    let d = ks_distance(&draws, sigma);
    assert!(d < critical, "KS distance {d:.4} ≥ {critical:.4}");
    let mean = draws.iter().sum::<i64>() as f64 / n as f64;
    assert!(mean.abs() < 4.0 * sigma / (n as f64).sqrt(), "mean {mean}");

    // Noise 10 % narrower than claimed: the same test rejects it.
    let narrow = Noise::with_sigma_milli(1.0, sigma_milli * 9 / 10);
    let draws: Vec<i64> = (0..n).map(|_| narrow.sample(&mut rng)).collect();
    let d = ks_distance(&draws, sigma);
    assert!(
        d > critical,
        "a 10 % narrower noise passed: KS distance {d:.4}"
    );
}

#[derive(Debug, Clone)]
struct Cluster {
    minor: Option<u8>,
    patch: u8,
    /// (os family, os version, nodes)
    nodes: Vec<(u8, u8, u64)>,
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (
        prop_oneof![6 => (0u8..3).prop_map(Some), 1 => (3u8..60).prop_map(Some), 1 => Just(None)],
        0u8..3,
        prop::collection::vec(
            (0u8..4, 0u8..3, prop_oneof![8 => 1u64..6, 1 => 100u64..3000]),
            0..3,
        ),
    )
        .prop_map(|(minor, patch, nodes)| Cluster {
            minor,
            patch,
            nodes,
        })
}

const FAMILIES: [&str; 4] = ["Ubuntu", "COS", "Flatcar", "Talos"];

/// The store's cells for a population: a few metrics of each shape (open with a refinement,
/// closed with an open refinement, node metrics clipped as the SQL clips them).
fn raw_of(population: &[Cluster], clip: u64) -> Raw {
    let mut cells: BTreeMap<&str, BTreeMap<Vec<String>, (u64, u64)>> = BTreeMap::new();
    let mut add = |metric: &'static str, labels: Vec<String>, clusters: u64, nodes: u64| {
        let c = cells.entry(metric).or_default().entry(labels).or_default();
        c.0 += clusters;
        c.1 += nodes;
    };
    let mut node_total = 0;
    for c in population {
        let (minor, patch) = match c.minor {
            Some(m) => (format!("1.{}", 30 + m), format!("1.{}.{}", 30 + m, c.patch)),
            None => ("unknown".into(), "unknown".into()),
        };
        add("clusters_by_kubernetes_minor", vec![minor.clone()], 1, 0);
        add("clusters_by_kubernetes_patch", vec![minor, patch], 1, 0);
        let n: u64 = c.nodes.iter().map(|(_, _, n)| n).sum();
        node_total += n.min(clip);
        let mut fam: BTreeMap<&str, u64> = BTreeMap::new();
        for (f, v, k) in &c.nodes {
            let f = FAMILIES[*f as usize];
            *fam.entry(f).or_default() += k;
            let clipped = k * clip / n.max(clip);
            add("nodes_by_os", vec![f.into()], 1, clipped);
            add(
                "nodes_by_os_version",
                vec![f.into(), format!("{}.0", 10 + v)],
                1,
                clipped,
            );
        }
        match fam.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) {
            None => {
                add("clusters_by_os", vec!["no nodes".into()], 1, 0);
                add(
                    "clusters_by_os_version",
                    vec!["no nodes".into(), "no nodes".into()],
                    1,
                    0,
                );
            }
            Some((f, _)) => {
                add("clusters_by_os", vec![(*f).into()], 1, 0);
                let v = c
                    .nodes
                    .iter()
                    .find(|(x, _, _)| FAMILIES[*x as usize] == *f)
                    .unwrap()
                    .1;
                add(
                    "clusters_by_os_version",
                    vec![(*f).into(), format!("{}.0", 10 + v)],
                    1,
                    0,
                );
            }
        }
    }
    Raw {
        totals: RawTotals {
            clusters: population.len() as u64,
            reports: population.len() as u64 * 4,
            nodes: node_total,
        },
        cells: cells
            .into_iter()
            .map(|(id, cells)| {
                let unit = stats::metrics::metric(id).unwrap().unit;
                let cells = cells
                    .into_iter()
                    .map(|(labels, (clusters, nodes))| RawCell {
                        labels,
                        clusters,
                        nodes: (unit == Unit::Nodes).then_some(nodes),
                    })
                    .collect();
                (id.to_owned(), cells)
            })
            .collect(),
    }
}

fn check_consistent(d: &Disclosure) {
    for m in &d.metrics {
        let Some(total) = m.total else {
            assert!(m.cells.is_empty(), "{}", m.metric.id);
            continue;
        };
        let expected = match m.metric.unit {
            Unit::Clusters => d.totals.clusters,
            Unit::Nodes => d.totals.nodes,
        };
        assert_eq!(Some(total), expected, "{}", m.metric.id);
        for c in &m.cells {
            if c.labels.last().is_some_and(|l| l != OTHER) {
                assert!(
                    c.count >= BUDGET.min_clusters,
                    "{}: {c:?} under the floor",
                    m.metric.id
                );
            }
            assert!(c.count > 0, "{}: {c:?}", m.metric.id);
        }
        // Partitions add up: a parent's cells (or the total, per group) equal their children.
        let parts: Vec<(Vec<String>, u64)> = match m.metric.parent {
            Some(p) => d
                .metrics
                .iter()
                .find(|x| x.metric.id == p)
                .unwrap()
                .cells
                .iter()
                .map(|c| (c.labels.clone(), c.count))
                .collect(),
            None if m.metric.grouped => report::Kind::ALL
                .iter()
                .map(|k| (vec![k.as_str().to_owned()], total))
                .collect(),
            None => vec![(Vec::new(), total)],
        };
        for (prefix, count) in parts {
            let sum: u64 = m
                .cells
                .iter()
                .filter(|c| c.labels.starts_with(&prefix))
                .map(|c| c.count)
                .sum();
            assert_eq!(sum, count, "{} under {prefix:?}", m.metric.id);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn published_cells_clear_the_floor_and_add_up(
        population in prop::collection::vec(cluster(), 0..1500),
        seed in any::<u64>(),
    ) {
        let raw = raw_of(&population, BUDGET.node_clip);
        let d = disclose(&raw, &BUDGET, &mut StdRng::seed_from_u64(seed));
        check_consistent(&d);
        // An open-domain value is published only when it is common: the selection threshold
        // is far above a handful of clusters.
        for m in &d.metrics {
            let Domain::Open { always } = m.metric.domain else {
                continue;
            };
            let tau = m.noise.threshold.unwrap();
            prop_assert!(tau > 50, "{}: τ {tau}", m.metric.id);
            let raw_cells = raw.cells.get(m.metric.id).cloned().unwrap_or_default();
            for c in &m.cells {
                if c.labels.last().is_some_and(|l| l == OTHER) { continue; }
                let truth = raw_cells.iter().find(|r| r.labels == c.labels).map_or(0, |r| r.clusters);
                // Values known in advance (`unknown`, `no nodes`) are measured like a closed
                // domain's, zeros included; the rest come from the data through selection.
                let known = always.iter().any(|a| a.iter().copied().eq(c.labels.iter().map(String::as_str)));
                prop_assert!(truth + 80 > tau || known,
                    "{}: {:?} published with {truth} clusters (τ {tau})", m.metric.id, c.labels);
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_release_and_another_seed_another(
        population in prop::collection::vec(cluster(), 200..600),
        seed in any::<u64>(),
    ) {
        let raw = raw_of(&population, BUDGET.node_clip);
        let a = disclose(&raw, &BUDGET, &mut StdRng::seed_from_u64(seed));
        let b = disclose(&raw, &BUDGET, &mut StdRng::seed_from_u64(seed));
        let c = disclose(&raw, &BUDGET, &mut StdRng::seed_from_u64(seed ^ 1));
        prop_assert_eq!(&a, &b);
        prop_assert_ne!(a.totals.clusters.map(|_| &a.metrics), c.totals.clusters.map(|_| &c.metrics));
    }
}

#[test]
fn every_metric_states_its_noise_and_the_snapshot_spends_the_budget() {
    let raw = raw_of(&[], BUDGET.node_clip);
    let d = disclose(&raw, &BUDGET, &mut StdRng::seed_from_u64(1));
    assert!(d.guarantee.rho <= BUDGET.rho && d.guarantee.rho > 0.99 * BUDGET.rho);
    assert!(d.guarantee.epsilon < 2.0, "ε {}", d.guarantee.epsilon);
    let spent: f64 = d.metrics.iter().map(|m| m.noise.rho).sum::<f64>()
        + d.totals.noise.iter().map(|(_, n)| n.rho).sum::<f64>();
    assert!(
        (spent - d.guarantee.rho).abs() < 1e-12,
        "{spent} vs {}",
        d.guarantee.rho
    );
    for m in &d.metrics {
        assert!(m.noise.sigma > 1.0, "{}", m.metric.id);
    }
    assert_eq!(d.metrics.len(), METRICS.len());
}
