//! What may be published: the one function that applies the privacy rules to raw cells.
//!
//! [`disclose`] is pure. Its input is what the store aggregated (every cell with its count of
//! distinct clusters and, for node metrics, its nodes and its largest cluster's nodes); its
//! output is the cells that may be published. The rules, with `k = --min-clusters`:
//!
//! 1. **Threshold.** A published cell counts at least k distinct clusters.
//! 2. **Dominance.** A node cell is published only if no single cluster contributes more than
//!    half of its nodes.
//! 3. **Complementary suppression.** Cells failing 1 or 2 fold into `other`. If `other` then
//!    fails 1 or 2 itself, the next-smallest published cells fold into it until it passes, so
//!    no folded cell is the difference of published numbers. A metric whose total fails 1 or 2
//!    is withheld whole.
//! 4. **Refinements** (`Metric::parent`) are disclosed within each published parent cell, whose
//!    count is the total there, with `<parent> other` as that cell's `other`; the children of
//!    a folded parent all fold into `other other`. Parent minus published children is then
//!    always a published cell.
//! 5. **Linked cells** ([`LINKED`]) count the same units in several metrics; once one is folded
//!    anywhere, it is folded everywhere (repeated until nothing changes), so a cell published
//!    in one metric never uncovers what another metric's `other` hides.
//!
//! Merged cells are judged conservatively: the distinct clusters of a merge of node cells are
//! at least the largest part's (a cluster can be in several parts), and its largest cluster
//! contributes at most the sum of the parts' largest (and at most the largest cluster's nodes
//! overall). Cluster cells are a partition, so their merges are exact.

use std::collections::{BTreeMap, HashSet};

use crate::metrics::{LINKED, METRICS, Metric, Order, Unit};
use crate::normalize::OTHER;

/// A cell as the store computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCell {
    /// The labels, one per dimension of the metric.
    pub labels: Vec<String>,
    /// Distinct clusters in the cell.
    pub clusters: u64,
    /// Nodes in the cell (node metrics).
    pub nodes: Option<u64>,
    /// Nodes of the cell's largest cluster (node metrics).
    pub max_nodes: Option<u64>,
}

/// The window's totals as the store computed them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawTotals {
    /// Distinct clusters (one latest report each).
    pub clusters: u64,
    /// Reports.
    pub reports: u64,
    /// Nodes in the clusters' latest reports.
    pub nodes: u64,
    /// Clusters with at least one node.
    pub clusters_with_nodes: u64,
    /// Nodes of the largest cluster.
    pub max_cluster_nodes: u64,
}

/// Everything the store computed for one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw {
    /// The totals.
    pub totals: RawTotals,
    /// Raw cells per metric id.
    pub cells: BTreeMap<String, Vec<RawCell>>,
}

/// The privacy parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// k: the fewest distinct clusters a published cell may count (at least 2).
    pub min_clusters: u64,
}

/// One published cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Labels, one per dimension; the last is `other` for a fold.
    pub labels: Vec<String>,
    /// Clusters or nodes, as the metric's unit says.
    pub count: u64,
}

/// One metric after disclosure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosed {
    /// The metric.
    pub metric: &'static Metric,
    /// The units counted (per group, for a grouped metric); `None` when withheld.
    pub total: Option<u64>,
    /// Published cells, in listing order (empty when withheld).
    pub cells: Vec<Cell>,
}

/// The window's published totals; `None` where withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Distinct clusters.
    pub clusters: Option<u64>,
    /// Reports.
    pub reports: Option<u64>,
    /// Nodes.
    pub nodes: Option<u64>,
}

/// What may be published of one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    /// The totals.
    pub totals: Totals,
    /// Every metric of [`METRICS`], in that order.
    pub metrics: Vec<Disclosed>,
}

/// What the rules judge a cell by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Distinct clusters (a lower bound for merged node cells).
    clusters: u64,
    /// Nodes (node metrics; exact).
    nodes: Option<u64>,
    /// Nodes of the largest cluster (an upper bound for merged cells).
    max: Option<u64>,
}

impl Stat {
    fn of(cell: &RawCell) -> Self {
        Stat {
            clusters: cell.clusters,
            nodes: cell.nodes,
            max: cell.max_nodes,
        }
    }

    fn count(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Clusters => self.clusters,
            Unit::Nodes => self.nodes.unwrap_or(0),
        }
    }

    fn passes(&self, policy: &Policy) -> bool {
        let dominated =
            matches!((self.nodes, self.max), (Some(n), Some(m)) if m.saturating_mul(2) > n);
        self.clusters >= policy.min_clusters && !dominated
    }

    /// A merge of cells of `unit`, inside a partition whose largest cluster has `cap` nodes.
    fn merge<'a>(unit: Unit, parts: impl Iterator<Item = &'a Stat>, cap: Option<u64>) -> Stat {
        let mut merged = Stat {
            clusters: 0,
            nodes: None,
            max: None,
        };
        for s in parts {
            merged.clusters = match unit {
                Unit::Clusters => merged.clusters + s.clusters,
                Unit::Nodes => merged.clusters.max(s.clusters),
            };
            merged.nodes = add(merged.nodes, s.nodes);
            merged.max = add(merged.max, s.max);
        }
        if let (Some(m), Some(cap)) = (merged.max, cap) {
            merged.max = Some(m.min(cap));
        }
        merged
    }
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// The result of disclosing one partition: kept cells (labels, stat) and the fold, if any.
struct Partition {
    kept: Vec<(Vec<String>, Stat)>,
    other: Option<Stat>,
}

/// Rules 1–3 on one partition of `total`.
///
/// `rules.linked` are this metric's cells of [`LINKED`]: another metric may publish the same
/// number, so `other` must pass also without them (unless it is the whole partition), and they
/// are the last cells chosen to fold for `other`'s sake.
fn partition(
    unit: Unit,
    cells: Vec<(Vec<String>, Stat)>,
    total: Stat,
    rules: &Rules<'_>,
) -> Option<Partition> {
    let policy = rules.policy;
    if !total.passes(policy) {
        return None;
    }
    let (mut kept, mut folded): (Vec<_>, Vec<_>) = cells.into_iter().partition(|(labels, s)| {
        s.passes(policy)
            && !rules.forced.contains(labels)
            && labels.last().is_none_or(|l| l != OTHER)
    });
    // The next cell to fold is last, so `pop` takes it: linked cells last, then the smallest.
    kept.sort_by(|(la, a), (lb, b)| {
        let (linked_a, linked_b) = (rules.linked.contains(la), rules.linked.contains(lb));
        (linked_b, b.count(unit), b.clusters, lb).cmp(&(linked_a, a.count(unit), a.clusters, la))
    });
    let other = loop {
        if folded.is_empty() {
            break None;
        }
        if kept.is_empty() {
            // Everything folded: `other` is the whole partition, exactly.
            break Some(total);
        }
        let merged = Stat::merge(unit, folded.iter().map(|(_, s)| s), total.max);
        // Another metric may publish a linked cell's number (the same units), so what `other`
        // holds besides its linked cells must pass on its own: otherwise `other` minus that
        // number is a small cell, or `other` is that number, uncovering the folds elsewhere.
        let mut rest = folded
            .iter()
            .filter(|(l, _)| !rules.linked.contains(l))
            .map(|(_, s)| s)
            .peekable();
        let rest_ok = rest.peek().is_some() && Stat::merge(unit, rest, total.max).passes(policy);
        if merged.passes(policy) && rest_ok {
            break Some(merged);
        }
        if let Some(next) = kept.pop() {
            folded.push(next);
        }
    };
    Some(Partition { kept, other })
}

/// The rules for one metric: the policy, and its forced and linked cells.
struct Rules<'a> {
    policy: &'a Policy,
    forced: &'a HashSet<Vec<String>>,
    linked: &'a HashSet<Vec<String>>,
}

/// Applies every rule to `raw`.
pub fn disclose(raw: &Raw, policy: &Policy) -> Disclosure {
    let mut forced: BTreeMap<&'static str, HashSet<Vec<String>>> = BTreeMap::new();
    loop {
        let metrics = disclose_metrics(raw, policy, &forced);
        let mut grew = false;
        for group in LINKED {
            let folded_somewhere = group
                .iter()
                .any(|(id, labels)| exists(raw, id, labels) && !published(&metrics, id, labels));
            if folded_somewhere {
                for (id, labels) in *group {
                    let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
                    grew |= forced.entry(id).or_default().insert(labels);
                }
            }
        }
        if !grew {
            return Disclosure {
                totals: totals(&raw.totals, policy),
                metrics,
            };
        }
    }
}

fn exists(raw: &Raw, id: &str, labels: &[&str]) -> bool {
    raw.cells
        .get(id)
        .is_some_and(|cells| cells.iter().any(|c| c.labels == labels))
}

fn published(metrics: &[Disclosed], id: &str, labels: &[&str]) -> bool {
    metrics
        .iter()
        .find(|d| d.metric.id == id)
        .is_some_and(|d| d.cells.iter().any(|c| c.labels == labels))
}

fn totals(raw: &RawTotals, policy: &Policy) -> Totals {
    let clusters_ok = raw.clusters >= policy.min_clusters;
    let nodes = Stat {
        clusters: raw.clusters_with_nodes,
        nodes: Some(raw.nodes),
        max: Some(raw.max_cluster_nodes),
    };
    Totals {
        clusters: clusters_ok.then_some(raw.clusters),
        reports: clusters_ok.then_some(raw.reports),
        nodes: nodes.passes(policy).then_some(raw.nodes),
    }
}

/// Intermediate result per metric: the published cells with their stats, so that refinements
/// can use a parent cell's exact numbers as their total.
struct Working {
    disclosed: Disclosed,
    /// Published parent-level cells (not `other`), with their raw stats.
    kept: Vec<(Vec<String>, Stat)>,
    /// Labels and stat of each partition's `other` (folds).
    others: Vec<(Vec<String>, Stat)>,
}

fn disclose_metrics(
    raw: &Raw,
    policy: &Policy,
    forced: &BTreeMap<&'static str, HashSet<Vec<String>>>,
) -> Vec<Disclosed> {
    let empty = HashSet::new();
    let mut done: Vec<Working> = Vec::new();
    for metric in METRICS {
        let cells = raw.cells.get(metric.id).map(Vec::as_slice).unwrap_or(&[]);
        let linked: HashSet<Vec<String>> = LINKED
            .iter()
            .flat_map(|group| group.iter())
            .filter(|(id, _)| *id == metric.id)
            .map(|(_, labels)| labels.iter().map(|l| l.to_string()).collect())
            .collect();
        let rules = Rules {
            policy,
            forced: forced.get(metric.id).unwrap_or(&empty),
            linked: &linked,
        };
        let parent = metric
            .parent
            .and_then(|p| done.iter().find(|w| w.disclosed.metric.id == p));
        let working = match metric.parent {
            None => disclose_top(metric, cells, &raw.totals, &rules),
            Some(_) => disclose_child(metric, cells, parent, &rules),
        };
        done.push(working);
    }
    done.into_iter().map(|w| w.disclosed).collect()
}

/// The partitions of a metric: `(group prefix, cells)`; one with an empty prefix unless grouped.
/// Cells with the stats the rules judge them by.
type Cells = Vec<(Vec<String>, Stat)>;

fn groups(metric: &Metric, cells: &[RawCell]) -> Vec<(Vec<String>, Cells)> {
    let mut by_group: BTreeMap<Vec<String>, Cells> = BTreeMap::new();
    for c in cells {
        let prefix = if metric.grouped {
            c.labels[..1].to_vec()
        } else {
            Vec::new()
        };
        by_group
            .entry(prefix)
            .or_default()
            .push((c.labels.clone(), Stat::of(c)));
    }
    let mut groups: Vec<_> = by_group.into_iter().collect();
    groups.sort_by_key(|(prefix, _)| group_rank(prefix));
    groups
}

/// Workload kinds in report order; anything else after them.
fn group_rank(prefix: &[String]) -> (usize, Vec<String>) {
    let rank = prefix
        .first()
        .and_then(|g| report::Kind::ALL.iter().position(|k| k.as_str() == g))
        .unwrap_or(usize::MAX);
    (rank, prefix.to_vec())
}

fn disclose_top(
    metric: &'static Metric,
    cells: &[RawCell],
    window: &RawTotals,
    rules: &Rules<'_>,
) -> Working {
    let mut out = Working {
        disclosed: Disclosed {
            metric,
            total: None,
            cells: Vec::new(),
        },
        kept: Vec::new(),
        others: Vec::new(),
    };
    let groups = groups(metric, cells);
    let mut total_count = None;
    for (prefix, cells) in groups {
        let total = match metric.unit {
            Unit::Clusters => Stat::merge(metric.unit, cells.iter().map(|(_, s)| s), None),
            Unit::Nodes => Stat {
                clusters: window.clusters_with_nodes,
                nodes: Some(window.nodes),
                max: Some(window.max_cluster_nodes),
            },
        };
        let Some(p) = partition(metric.unit, cells, total, rules) else {
            // One group withheld withholds the metric: its groups share one total.
            return Working {
                disclosed: Disclosed {
                    metric,
                    total: None,
                    cells: Vec::new(),
                },
                kept: Vec::new(),
                others: Vec::new(),
            };
        };
        total_count = Some(total.count(metric.unit));
        let mut kept = p.kept;
        sort(metric, &mut kept);
        for (labels, s) in &kept {
            out.disclosed.cells.push(Cell {
                labels: labels.clone(),
                count: s.count(metric.unit),
            });
        }
        out.kept.extend(kept);
        if let Some(other) = p.other {
            let mut labels = prefix.clone();
            labels.push(OTHER.to_owned());
            out.disclosed.cells.push(Cell {
                labels: labels.clone(),
                count: other.count(metric.unit),
            });
            out.others.push((labels, other));
        }
    }
    out.disclosed.total = total_count;
    out
}

fn disclose_child(
    metric: &'static Metric,
    cells: &[RawCell],
    parent: Option<&Working>,
    rules: &Rules<'_>,
) -> Working {
    let mut out = Working {
        disclosed: Disclosed {
            metric,
            total: None,
            cells: Vec::new(),
        },
        kept: Vec::new(),
        others: Vec::new(),
    };
    let Some(parent) = parent.filter(|p| p.disclosed.total.is_some()) else {
        return out;
    };
    out.disclosed.total = parent.disclosed.total;
    let depth = metric.dimensions.len() - 1;
    // Parent cells in their published order, then the parent's folds.
    for parent_cell in &parent.disclosed.cells {
        let labels = &parent_cell.labels;
        if let Some((_, total)) = parent.kept.iter().find(|(l, _)| l == labels) {
            let children: Vec<(Vec<String>, Stat)> = cells
                .iter()
                .filter(|c| c.labels[..depth] == labels[..])
                .map(|c| (c.labels.clone(), Stat::of(c)))
                .collect();
            let Some(p) = partition(metric.unit, children, *total, rules) else {
                // Unreachable: the parent cell passed, and it is this partition's total.
                continue;
            };
            let mut kept = p.kept;
            sort(metric, &mut kept);
            for (l, s) in &kept {
                out.disclosed.cells.push(Cell {
                    labels: l.clone(),
                    count: s.count(metric.unit),
                });
            }
            if let Some(other) = p.other {
                let mut l = labels.clone();
                l.push(OTHER.to_owned());
                out.disclosed.cells.push(Cell {
                    labels: l,
                    count: other.count(metric.unit),
                });
            }
        } else if let Some((_, other)) = parent.others.iter().find(|(l, _)| l == labels) {
            let mut l = labels.clone();
            l.push(OTHER.to_owned());
            out.disclosed.cells.push(Cell {
                labels: l,
                count: other.count(metric.unit),
            });
        }
    }
    out
}

/// Sorts cells of one partition by the metric's order of their last label.
fn sort(metric: &Metric, cells: &mut [(Vec<String>, Stat)]) {
    let unit = metric.unit;
    let last = |l: &Vec<String>| l.last().cloned().unwrap_or_default();
    match metric.order {
        Order::Count => cells.sort_by(|(la, a), (lb, b)| {
            b.count(unit)
                .cmp(&a.count(unit))
                .then_with(|| last(la).cmp(&last(lb)))
        }),
        Order::Version => cells.sort_by(|(la, a), (lb, b)| {
            let (va, vb) = (version_key(&last(la)), version_key(&last(lb)));
            // Versions first, newest first; then the rest by count.
            match (va, vb) {
                (Some(va), Some(vb)) => vb.cmp(&va),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => b
                    .count(unit)
                    .cmp(&a.count(unit))
                    .then_with(|| last(la).cmp(&last(lb))),
            }
        }),
        Order::Fixed(order) => cells.sort_by(|(la, a), (lb, b)| {
            let rank = |l: &String| order.iter().position(|o| o == l).unwrap_or(usize::MAX);
            rank(&last(la))
                .cmp(&rank(&last(lb)))
                .then_with(|| b.count(unit).cmp(&a.count(unit)))
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

    fn cell(labels: &[&str], clusters: u64) -> RawCell {
        RawCell {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            clusters,
            nodes: None,
            max_nodes: None,
        }
    }

    fn node_cell(labels: &[&str], clusters: u64, nodes: u64, max: u64) -> RawCell {
        RawCell {
            nodes: Some(nodes),
            max_nodes: Some(max),
            ..cell(labels, clusters)
        }
    }

    fn raw(metric: &str, cells: Vec<RawCell>) -> Raw {
        let clusters = if metric.starts_with("nodes") {
            100
        } else {
            cells.iter().map(|c| c.clusters).sum()
        };
        let nodes = cells.iter().filter_map(|c| c.nodes).sum();
        let max = cells.iter().filter_map(|c| c.max_nodes).max().unwrap_or(0);
        Raw {
            totals: RawTotals {
                clusters,
                reports: clusters * 3,
                nodes,
                clusters_with_nodes: clusters,
                max_cluster_nodes: max,
            },
            cells: [(metric.to_string(), cells)].into(),
        }
    }

    fn published(d: &Disclosure, metric: &str) -> Vec<(String, u64)> {
        d.metrics
            .iter()
            .find(|m| m.metric.id == metric)
            .unwrap()
            .cells
            .iter()
            .map(|c| (c.labels.join("/"), c.count))
            .collect()
    }

    const K10: Policy = Policy { min_clusters: 10 };

    #[test]
    fn small_cells_fold_into_other_and_other_grows_until_it_reaches_k() {
        let d = disclose(
            &raw(
                "clusters_by_kubernetes_minor",
                vec![
                    cell(&["1.37"], 50),
                    cell(&["1.36"], 30),
                    cell(&["1.35"], 12),
                    cell(&["1.20"], 3),
                ],
            ),
            &K10,
        );
        // 1.20 (3) alone is below k: the next-smallest, 1.35, folds with it.
        assert_eq!(
            published(&d, "clusters_by_kubernetes_minor"),
            vec![
                ("1.37".into(), 50),
                ("1.36".into(), 30),
                ("other".into(), 15)
            ]
        );
    }

    #[test]
    fn a_metric_whose_total_is_below_k_is_withheld() {
        let d = disclose(
            &raw("clusters_by_kubernetes_minor", vec![cell(&["1.37"], 9)]),
            &K10,
        );
        let m = &d.metrics[2];
        assert_eq!(m.metric.id, "clusters_by_kubernetes_minor");
        assert_eq!((m.total, m.cells.len()), (None, 0));
        assert_eq!(d.totals.clusters, None);
    }

    #[test]
    fn a_node_cell_dominated_by_one_cluster_is_folded() {
        let d = disclose(
            &raw(
                "nodes_by_os",
                vec![
                    node_cell(&["Ubuntu"], 60, 6000, 100),
                    node_cell(&["Flatcar"], 12, 6000, 5000),
                    node_cell(&["COS"], 20, 5000, 200),
                    node_cell(&["Debian"], 15, 1500, 100),
                ],
            ),
            &K10,
        );
        // Flatcar has 12 clusters but one holds 5,000 of its 6,000 nodes. Folded alone it still
        // dominates `other`; with Debian (1,500) still; with COS (5,000) it is under half.
        assert_eq!(
            published(&d, "nodes_by_os"),
            vec![("Ubuntu".into(), 6000), ("other".into(), 12500)]
        );
    }

    #[test]
    fn children_of_a_published_parent_fold_into_the_parents_other() {
        let mut r = raw(
            "clusters_by_kubernetes_minor",
            vec![cell(&["1.37"], 40), cell(&["1.36"], 5), cell(&["1.35"], 6)],
        );
        r.cells.insert(
            "clusters_by_kubernetes_patch".into(),
            vec![
                cell(&["1.37", "1.37.2"], 30),
                cell(&["1.37", "1.37.1"], 7),
                cell(&["1.37", "1.37.0"], 3),
                cell(&["1.36", "1.36.4"], 5),
                cell(&["1.35", "1.35.0"], 6),
            ],
        );
        let d = disclose(&r, &K10);
        assert_eq!(
            published(&d, "clusters_by_kubernetes_minor"),
            vec![("1.37".into(), 40), ("other".into(), 11)]
        );
        assert_eq!(
            published(&d, "clusters_by_kubernetes_patch"),
            vec![
                ("1.37/1.37.2".into(), 30),
                ("1.37/other".into(), 10),
                ("other/other".into(), 11)
            ]
        );
    }

    #[test]
    fn a_linked_cell_folded_in_one_metric_is_folded_in_all() {
        let mut r = raw(
            "clusters_by_kubernetes_minor",
            vec![
                cell(&["1.37"], 40),
                cell(&["unknown"], 12),
                cell(&["1.20"], 3),
            ],
        );
        r.cells.insert(
            "clusters_by_distribution".into(),
            vec![cell(&["gke"], 43), cell(&["unknown"], 12)],
        );
        let d = disclose(&r, &K10);
        // 1.20 (3) needs company in `other`. `unknown` is smaller than 1.37, but it is linked:
        // the distribution metric publishes the same 12, so `other` = 1.20 + unknown would give
        // 1.20 away. 1.37 folds instead.
        assert_eq!(
            published(&d, "clusters_by_kubernetes_minor"),
            vec![("unknown".into(), 12), ("other".into(), 43)]
        );
        assert_eq!(
            published(&d, "clusters_by_distribution"),
            vec![("gke".into(), 43), ("unknown".into(), 12)]
        );

        // When `unknown` fails the threshold in one metric, it is folded in every metric.
        let mut r = raw(
            "clusters_by_kubernetes_minor",
            vec![
                cell(&["1.37"], 40),
                cell(&["1.36"], 20),
                cell(&["unknown"], 4),
            ],
        );
        r.cells.insert(
            "clusters_by_distribution".into(),
            vec![
                cell(&["gke"], 30),
                cell(&["eks"], 20),
                cell(&["k3s"], 10),
                cell(&["unknown"], 4),
            ],
        );
        let d = disclose(&r, &K10);
        assert_eq!(
            published(&d, "clusters_by_kubernetes_minor"),
            vec![("1.37".into(), 40), ("other".into(), 24)]
        );
        assert_eq!(
            published(&d, "clusters_by_distribution"),
            vec![("gke".into(), 30), ("eks".into(), 20), ("other".into(), 14)]
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
