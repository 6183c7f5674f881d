//! The guarantee: how a snapshot's budget is split, the noise that spends it, and what the
//! whole adds up to.
//!
//! A snapshot is a set of noisy measurements, each a vector of counts to which one cluster
//! (all its reports in the window, all its nodes) contributes a bounded amount: one per
//! partition for cluster counts, at most [`Budget::node_clip`] nodes, at most
//! [`Budget::report_clip`] reports. Each measurement adds discrete Gaussian noise of scale σ to
//! every count, which is ρᵢ = Δ²/(2σ²) zero-concentrated DP (zCDP) for a sensitivity Δ (the
//! L2 norm of one cluster's contribution). The budget ρ is split among the measurements by
//! weight ([`MEASUREMENTS`] and each metric's weight), and zCDP composes by adding the ρᵢ, so
//! the snapshot is ρ-zCDP.
//!
//! Open-domain values (versions, kernels) are released by partition selection: a value is
//! published only when its noisy count clears a threshold τ set so that a value only one
//! cluster has is released with probability at most δₛ. That makes the snapshot (ρ, δ/2)-
//! approximately zCDP, converted to (ε, δ)-DP with ε = ρ + 2√(ρ ln(2/δ)) (Bun & Steinke 2016,
//! Proposition 1.3): the other half of δ.
//!
//! The noise comes from [`prio`]'s exact discrete Gaussian sampler (Canonne, Kamath & Steinke
//! 2020, adapted from OpenDP), fed by a cryptographically secure generator that is an
//! argument: seeded in tests, from the operating system in production ([`os_rng`]). The
//! floating point here only *calibrates* σ and τ, rounding σ up so that the stated ρ is an
//! upper bound; no noise is drawn in floating point.

use prio::dp::Rational;
use prio::dp::distributions::DiscreteGaussian;
use rand::distr::Distribution;
use rand::{CryptoRng, SeedableRng};

use crate::metrics::{Domain, METRICS, Measure, Metric, Unit};

/// The privacy parameters of every snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// ρ (zCDP) of one snapshot, with respect to one cluster.
    pub rho: f64,
    /// δ of the (ε, δ) statement: half for partition selection, half for the conversion.
    pub delta: f64,
    /// The floor a noisy count must clear to be published as a cell of its own.
    pub min_clusters: u64,
    /// The most nodes one cluster counts for in node metrics and the node total.
    pub node_clip: u64,
    /// The most reports one cluster counts for in the report total.
    pub report_clip: u64,
}

impl Budget {
    /// The defaults of `stats` (its flags' defaults are these): ρ 0.05 and δ 10⁻⁷ per
    /// snapshot (ε 1.88), a floor of 10, 20 nodes and 28 reports (one a day of the default
    /// window) per cluster. `cargo bench -p stats --bench utility` prints what they give.
    pub const DEFAULT: Budget = Budget {
        rho: 0.05,
        delta: 1e-7,
        min_clusters: 10,
        node_clip: 20,
        report_clip: 28,
    };
}

/// Measurements that are not metrics: the totals every metric's cells add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// Distinct clusters; the total of every cluster metric.
    Clusters,
    /// Reports, each cluster counting at most `report_clip`.
    Reports,
    /// Nodes, each cluster counting at most `node_clip`; the total of every node metric.
    Nodes,
}

/// The totals and their weights in the budget split.
pub const MEASUREMENTS: &[(Total, u32)] =
    &[(Total::Clusters, 2), (Total::Reports, 1), (Total::Nodes, 2)];

impl Total {
    /// Its name in the published documents.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Total::Clusters => "clusters",
            Total::Reports => "reports",
            Total::Nodes => "nodes",
        }
    }
}

/// The noise of one measurement.
#[derive(Debug, Clone)]
pub struct Noise {
    /// σ in thousandths (σ is rounded up to them, so the stated ρ is an upper bound).
    sigma_milli: u64,
    /// Sensitivity: the L2 norm of one cluster's contribution.
    sensitivity: f64,
    sampler: DiscreteGaussian,
}

impl Noise {
    /// Noise for a measurement of `sensitivity` that may spend `rho`.
    pub(crate) fn for_budget(sensitivity: f64, rho: f64) -> Self {
        let sigma = sensitivity / (2.0 * rho).sqrt();
        // Rounding σ up spends at most `rho`. Saturating: a zero budget gives enormous noise.
        let sigma_milli = (sigma * 1000.0).ceil().clamp(1.0, 1e15) as u64;
        Self::with_sigma_milli(sensitivity, sigma_milli)
    }

    /// Noise of scale σ = `sigma_milli` / 1000, for a measurement of `sensitivity`.
    pub fn with_sigma_milli(sensitivity: f64, sigma_milli: u64) -> Self {
        let sigma_milli = sigma_milli.max(1);
        // The denominator is 1000, never zero.
        let std = Rational::from_unsigned(sigma_milli, 1000)
            .unwrap_or_else(|_| unreachable!("a non-zero denominator"));
        let sampler =
            DiscreteGaussian::new(std).unwrap_or_else(|_| unreachable!("a non-zero denominator"));
        Noise {
            sigma_milli,
            sensitivity,
            sampler,
        }
    }

    /// σ.
    pub fn sigma(&self) -> f64 {
        self.sigma_milli as f64 / 1000.0
    }

    /// The ρ this noise costs: Δ²/(2σ²).
    pub(crate) fn rho(&self) -> f64 {
        self.sensitivity * self.sensitivity / (2.0 * self.sigma() * self.sigma())
    }

    /// One draw.
    pub fn sample<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> i64 {
        let z = self.sampler.sample(rng);
        // |z| > 2⁶³ has probability far below 2⁻¹⁰⁰⁰ for any σ this module makes.
        i64::try_from(z).unwrap_or(i64::MAX)
    }

    /// `count` plus one draw.
    pub(crate) fn add<R: CryptoRng + ?Sized>(&self, count: u64, rng: &mut R) -> i64 {
        i64::try_from(count)
            .unwrap_or(i64::MAX)
            .saturating_add(self.sample(rng))
    }
}

/// The sensitivity (L2) of one measurement of `metric` under `budget`.
pub(crate) fn sensitivity(metric: &Metric, budget: &Budget) -> f64 {
    match metric.unit {
        // One cell per partition; a grouped metric has one partition per group.
        Unit::Clusters if metric.grouped => (report::Kind::ALL.len() as f64).sqrt(),
        Unit::Clusters => 1.0,
        // At most `node_clip` nodes, spread over the cells: L2 ≤ L1 ≤ node_clip.
        Unit::Nodes => budget.node_clip as f64,
    }
}

/// How the budget is spent: every measurement's noise, and the selection threshold.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The budget.
    pub(crate) budget: Budget,
    /// Noise of each total, in [`MEASUREMENTS`] order.
    pub(crate) totals: Vec<(Total, Noise)>,
    /// Noise of each measured metric (`None` for one derived from another), in [`METRICS`]
    /// order.
    pub(crate) metrics: Vec<Option<Noise>>,
    /// δ of each open-domain metric's partition selection.
    pub(crate) selection_delta: f64,
}

impl Plan {
    /// Splits `budget` among every measurement by weight.
    pub fn new(budget: Budget) -> Self {
        let weights: u32 = MEASUREMENTS.iter().map(|(_, w)| w).sum::<u32>()
            + METRICS.iter().map(|m| m.measure.weight()).sum::<u32>();
        let share = |w: u32| budget.rho * f64::from(w) / f64::from(weights.max(1));
        let totals = MEASUREMENTS
            .iter()
            .map(|(t, w)| {
                let sensitivity = match t {
                    Total::Clusters => 1.0,
                    Total::Reports => budget.report_clip as f64,
                    Total::Nodes => budget.node_clip as f64,
                };
                (*t, Noise::for_budget(sensitivity, share(*w)))
            })
            .collect();
        let metrics = METRICS
            .iter()
            .map(|m| match m.measure {
                Measure::Noise(w) => Some(Noise::for_budget(sensitivity(m, &budget), share(w))),
                Measure::SumOf(_) => None,
            })
            .collect();
        let open = METRICS
            .iter()
            .filter(|m| matches!(m.domain, Domain::Open { .. }))
            .count();
        Plan {
            budget,
            totals,
            metrics,
            selection_delta: budget.delta / 2.0 / open.max(1) as f64,
        }
    }

    /// The noise of a total.
    pub fn total(&self, which: Total) -> &Noise {
        self.totals
            .iter()
            .find(|(t, _)| *t == which)
            .map(|(_, n)| n)
            .unwrap_or_else(|| unreachable!("every total is in MEASUREMENTS"))
    }

    /// The noise of a measured metric.
    pub fn metric(&self, id: &str) -> Option<&Noise> {
        METRICS
            .iter()
            .position(|m| m.id == id)
            .and_then(|i| self.metrics[i].as_ref())
    }

    /// The noisy count a value of an open-domain metric measured with `noise` must reach to be
    /// released: a value only one cluster has reaches it with probability at most
    /// [`Plan::selection_delta`]. Never below the floor.
    pub(crate) fn threshold(&self, noise: &Noise) -> u64 {
        selection_threshold(noise.sigma(), self.selection_delta).max(self.budget.min_clusters)
    }

    /// What the snapshot guarantees.
    pub fn guarantee(&self) -> Guarantee {
        let rho: f64 = self.totals.iter().map(|(_, n)| n.rho()).sum::<f64>()
            + self.metrics.iter().flatten().map(Noise::rho).sum::<f64>();
        Guarantee::of(rho, self.budget.delta)
    }
}

/// A guarantee: ρ-zCDP (plus partition selection), and the (ε, δ)-DP it implies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guarantee {
    /// ρ of zCDP, as spent (at most the budget).
    pub rho: f64,
    /// ε at `delta`.
    pub epsilon: f64,
    /// δ: half for partition selection, half for the conversion.
    pub delta: f64,
}

impl Guarantee {
    /// ρ spent with `delta` in all: ε = ρ + 2√(ρ ln(2/δ)).
    pub fn of(rho: f64, delta: f64) -> Self {
        let conversion = delta / 2.0;
        Guarantee {
            rho,
            epsilon: rho + 2.0 * (rho * (1.0 / conversion).ln()).sqrt(),
            delta,
        }
    }
}

/// The smallest τ with P(1 + Z ≥ τ) ≤ `delta` for Z discrete Gaussian of scale `sigma`.
pub(crate) fn selection_threshold(sigma: f64, delta: f64) -> u64 {
    // Weights e^(−z²/2σ²) for z = 0..=M; beyond M = 40σ + 40 they are below 1e-300.
    let m = (40.0 * sigma + 40.0).ceil() as usize;
    let w: Vec<f64> = (0..=m)
        .map(|z| (-(z as f64).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let normalizer = w[0] + 2.0 * w[1..].iter().sum::<f64>();
    // tail[t] = P(Z ≥ t) for t ≥ 0, summing from the small end for accuracy.
    let mut tail = vec![0.0; m + 2];
    for z in (0..=m).rev() {
        tail[z] = tail[z + 1] + w[z] / normalizer;
    }
    let t = (0..=m).find(|&t| tail[t] <= delta).unwrap_or(m + 1);
    // 1 + Z ≥ τ ⇔ Z ≥ τ − 1.
    t as u64 + 1
}

/// A generator seeded from the operating system: the only one production uses.
pub fn os_rng() -> Result<rand::rngs::StdRng, rand::rngs::SysError> {
    rand::rngs::StdRng::try_from_rng(&mut rand::rngs::SysRng)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn budget() -> Budget {
        Budget::DEFAULT
    }

    #[test]
    fn the_measurements_spend_at_most_the_budget_and_nearly_all_of_it() {
        let plan = Plan::new(budget());
        let g = plan.guarantee();
        assert!(g.rho <= 0.05, "{}", g.rho);
        assert!(g.rho > 0.0499, "{}", g.rho);
    }

    #[test]
    fn epsilon_follows_from_rho_and_delta() {
        let g = Guarantee::of(0.05, 1e-7);
        // ρ + 2√(ρ ln(2·10⁷)) = 0.05 + 2√(0.05 · 16.81)
        assert!((g.epsilon - 1.8837).abs() < 1e-3, "{}", g.epsilon);
    }

    #[test]
    fn a_value_of_one_cluster_clears_the_threshold_with_probability_at_most_delta() {
        for sigma in [1.0, 5.0, 15.8, 40.0] {
            for delta in [1e-3, 1e-6, 1e-9] {
                let tau = selection_threshold(sigma, delta);
                // Against the Gaussian tail: the discrete one is within a few percent of it,
                // so τ − 1 is close to σ·z(1 − δ).
                let z = (tau - 1) as f64 / sigma;
                let gaussian_tail =
                    |z: f64| (-z * z / 2.0).exp() / (z * (2.0 * std::f64::consts::PI).sqrt());
                assert!(
                    gaussian_tail(z) <= delta * 1.5,
                    "σ {sigma} δ {delta}: τ {tau}"
                );
                assert!(
                    gaussian_tail(z - 1.0 / sigma - 0.3) > delta,
                    "σ {sigma} δ {delta}: τ {tau} too high"
                );
            }
        }
    }

    #[test]
    fn a_grouped_metric_costs_its_groups() {
        let b = budget();
        let objects = crate::metrics::metric("clusters_by_workload_objects").unwrap();
        assert!((sensitivity(objects, &b) - 7f64.sqrt()).abs() < 1e-12);
        let nodes = crate::metrics::metric("nodes_by_os").unwrap();
        assert_eq!(sensitivity(nodes, &b), 20.0);
    }

    #[test]
    fn the_same_seed_draws_the_same_noise_and_another_seed_other_noise() {
        let noise = Noise::for_budget(1.0, 0.002);
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..20).map(|_| noise.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        assert!(os_rng().is_ok());
    }
}
