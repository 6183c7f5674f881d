//! The privacy properties of `disclose`, over random populations of clusters.
//!
//! Each population is aggregated here the way the SQL does it (a few metrics with every kind of
//! structure: a refinement of clusters, a refinement of nodes, majority values, linked cells),
//! keeping which cluster is in which cell, so the published numbers can be checked against the
//! truth rather than against the bounds `disclose` itself works with:
//!
//! - every published cell counts at least k distinct clusters, and no cluster holds more than
//!   half of a published node count;
//! - in every partition, the published cells (with `other`) add up to the partition's total;
//! - no withheld cell is derivable: unless `other` is the whole partition, what it holds besides
//!   the cells other metrics might publish (linked cells) passes the rules on its own;
//!   a linked cell folded anywhere is published nowhere; a refinement publishes children only
//!   of published parents.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use stats::disclose::{Disclosure, Policy, Raw, RawCell, RawTotals, disclose};
use stats::metrics::{LINKED, METRICS, Unit, metric};
use stats::normalize::{Function, OTHER, Value};

#[derive(Debug, Clone)]
struct Cluster {
    minor: Option<u8>,
    patch: u8,
    distribution: u8,
    /// (os family, os version, nodes)
    nodes: Vec<(u8, u8, u64)>,
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (
        prop_oneof![4 => (0u8..4).prop_map(Some), 1 => Just(None)],
        0u8..3,
        0u8..3,
        prop::collection::vec(
            (0u8..4, 0u8..3, prop_oneof![8 => 1u64..4, 1 => 100u64..6000]),
            0..4,
        ),
    )
        .prop_map(|(minor, patch, distribution, nodes)| Cluster {
            minor,
            patch,
            distribution,
            nodes,
        })
}

const FAMILIES: [&str; 4] = ["Ubuntu", "COS", "Flatcar", "Talos"];

/// metric -> labels -> cluster -> units (1 per cluster for cluster metrics, nodes for node ones).
type Truth = BTreeMap<&'static str, BTreeMap<Vec<String>, BTreeMap<usize, u64>>>;

fn labels(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn truth(population: &[Cluster]) -> Truth {
    let mut t: Truth = BTreeMap::new();
    let mut add = |metric: &'static str, l: Vec<String>, c: usize, units: u64| {
        *t.entry(metric)
            .or_default()
            .entry(l)
            .or_default()
            .entry(c)
            .or_default() += units;
    };
    let bucket = Function::named("node_count_bucket").unwrap();
    for (i, c) in population.iter().enumerate() {
        let (minor, patch, dist) = match c.minor {
            Some(m) => (
                format!("1.{}", 34 + m),
                format!("1.{}.{}", 34 + m, c.patch),
                ["gke", "eks", "no suffix"][c.distribution as usize].to_owned(),
            ),
            None => ("unknown".into(), "unknown".into(), "unknown".into()),
        };
        add("clusters_by_kubernetes_minor", labels(&[&minor]), i, 1);
        add(
            "clusters_by_kubernetes_patch",
            labels(&[&minor, &patch]),
            i,
            1,
        );
        add("clusters_by_distribution", labels(&[&dist]), i, 1);
        let n: u64 = c.nodes.iter().map(|(_, _, n)| n).sum();
        let Value::Text(b) = bucket.eval(&Value::Integer(n as i64)) else {
            unreachable!()
        };
        add("clusters_by_node_count", labels(&[&b]), i, 1);
        // Majority family (ties: the smaller name), then majority version within it.
        let mut fam: BTreeMap<&str, u64> = BTreeMap::new();
        let mut ver: BTreeMap<(&str, String), u64> = BTreeMap::new();
        for (f, v, k) in &c.nodes {
            let f = FAMILIES[*f as usize];
            let v = format!("{}.0", 10 + v);
            *fam.entry(f).or_default() += k;
            *ver.entry((f, v.clone())).or_default() += k;
            add("nodes_by_os", labels(&[f]), i, *k);
            add("nodes_by_os_version", labels(&[f, &v]), i, *k);
        }
        match fam.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) {
            None => {
                add("clusters_by_os", labels(&["no nodes"]), i, 1);
                add(
                    "clusters_by_os_version",
                    labels(&["no nodes", "no nodes"]),
                    i,
                    1,
                );
            }
            Some((f, _)) => {
                let v = ver
                    .iter()
                    .filter(|((vf, _), _)| vf == f)
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.1.cmp(&a.0.1)))
                    .map(|((_, v), _)| v.clone())
                    .unwrap();
                add("clusters_by_os", labels(&[f]), i, 1);
                add("clusters_by_os_version", labels(&[f, &v]), i, 1);
            }
        }
    }
    t
}

fn raw_of(population: &[Cluster], t: &Truth) -> Raw {
    let mut raw = Raw::default();
    for (metric_id, cells) in t {
        let nodes = metric(metric_id).unwrap().unit == Unit::Nodes;
        let v = cells
            .iter()
            .map(|(l, by_cluster)| RawCell {
                labels: l.clone(),
                clusters: by_cluster.len() as u64,
                nodes: nodes.then(|| by_cluster.values().sum()),
                max_nodes: nodes.then(|| *by_cluster.values().max().unwrap()),
            })
            .collect();
        raw.cells.insert(metric_id.to_string(), v);
    }
    let sizes: Vec<u64> = population
        .iter()
        .map(|c| c.nodes.iter().map(|(_, _, n)| n).sum())
        .collect();
    raw.totals = RawTotals {
        clusters: population.len() as u64,
        reports: population.len() as u64 * 2,
        nodes: sizes.iter().sum(),
        clusters_with_nodes: sizes.iter().filter(|n| **n > 0).count() as u64,
        max_cluster_nodes: sizes.iter().copied().max().unwrap_or(0),
    };
    raw
}

/// The union of cells: cluster -> units.
fn union<'a>(cells: impl Iterator<Item = &'a BTreeMap<usize, u64>>) -> BTreeMap<usize, u64> {
    let mut u = BTreeMap::new();
    for c in cells {
        for (k, v) in c {
            *u.entry(*k).or_default() += v;
        }
    }
    u
}

/// Whether a set of units passes the rules, judged by the truth.
fn passes(units: &BTreeMap<usize, u64>, unit: Unit, k: u64) -> bool {
    let nodes: u64 = units.values().sum();
    let max = units.values().copied().max().unwrap_or(0);
    units.len() as u64 >= k && (unit == Unit::Clusters || 2 * max <= nodes)
}

fn linked_labels(metric_id: &str) -> BTreeSet<Vec<String>> {
    LINKED
        .iter()
        .flat_map(|g| g.iter())
        .filter(|(id, _)| *id == metric_id)
        .map(|(_, l)| l.iter().map(|s| s.to_string()).collect())
        .collect()
}

fn check(population: &[Cluster], k: u64) -> Result<(), TestCaseError> {
    let t = truth(population);
    let raw = raw_of(population, &t);
    let d: Disclosure = disclose(&raw, &Policy { min_clusters: k });
    let published = |id: &str| -> BTreeMap<Vec<String>, u64> {
        d.metrics
            .iter()
            .find(|m| m.metric.id == id)
            .unwrap()
            .cells
            .iter()
            .map(|c| (c.labels.clone(), c.count))
            .collect()
    };
    for m in METRICS {
        let Some(truth_cells) = t.get(m.id) else {
            continue;
        };
        let pubs = published(m.id);
        let depth = m.dimensions.len() - 1;
        let parent_pubs = m.parent.map(&published);
        // Partitions: prefix -> raw labels in it.
        let mut partitions: BTreeMap<Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
        for l in truth_cells.keys() {
            let mut prefix = l[..depth].to_vec();
            if let Some(pp) = &parent_pubs
                && !pp.contains_key(&prefix)
            {
                // A parent that is not published: its children belong to `other other`.
                prefix = vec![OTHER.to_string(); depth];
            }
            partitions.entry(prefix).or_default().push(l);
        }
        let linked = linked_labels(m.id);
        for (prefix, members) in &partitions {
            let in_partition: Vec<(&Vec<String>, &u64)> = pubs
                .iter()
                .filter(|(l, _)| l[..depth] == prefix[..])
                .collect();
            let total = union(members.iter().map(|l| &truth_cells[*l]));
            let total_units: u64 = total.values().sum();
            if in_partition.is_empty() {
                // Withheld (the metric, or children of a folded parent that became `other other`).
                continue;
            }
            let published_sum: u64 = in_partition.iter().map(|(_, n)| **n).sum();
            prop_assert_eq!(
                published_sum,
                total_units,
                "{} {:?}: cells add up",
                m.id,
                prefix
            );
            let folded: Vec<&Vec<String>> = members
                .iter()
                .copied()
                .filter(|l| !pubs.contains_key(*l))
                .collect();
            for (l, n) in &in_partition {
                if l.last().map(String::as_str) == Some(OTHER) {
                    let units = union(folded.iter().map(|l| &truth_cells[*l]));
                    prop_assert_eq!(units.values().sum::<u64>(), **n, "{} {:?}", m.id, l);
                    prop_assert!(
                        passes(&units, m.unit, k),
                        "{} {:?} fails the rules",
                        m.id,
                        l
                    );
                    // Unless `other` is the whole partition, what it holds besides cells
                    // another metric may publish (linked cells) passes on its own.
                    let whole = in_partition.len() == 1;
                    let rest: Vec<&Vec<String>> = folded
                        .iter()
                        .copied()
                        .filter(|l| !linked.contains(*l))
                        .collect();
                    let rest_units = union(rest.iter().map(|l| &truth_cells[*l]));
                    prop_assert!(
                        whole || passes(&rest_units, m.unit, k),
                        "{} {:?}: without its linked cells, other would single out {:?}",
                        m.id,
                        l,
                        rest
                    );
                } else {
                    let units = &truth_cells[*l];
                    prop_assert!(
                        passes(units, m.unit, k),
                        "{} {:?} published but fails",
                        m.id,
                        l
                    );
                }
            }
        }
        if let Some(pp) = &parent_pubs {
            for l in pubs.keys() {
                let prefix = l[..depth].to_vec();
                prop_assert!(
                    pp.contains_key(&prefix),
                    "{} {:?}: a child of an unpublished parent",
                    m.id,
                    l
                );
            }
        }
    }
    // A linked cell folded anywhere is published nowhere.
    for group in LINKED {
        let present: Vec<(&str, Vec<String>)> = group
            .iter()
            .filter(|(id, l)| {
                let l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
                t.get(id).is_some_and(|c| c.contains_key(&l))
            })
            .map(|(id, l)| (*id, l.iter().map(|s| s.to_string()).collect()))
            .collect();
        let shown: Vec<bool> = present
            .iter()
            .map(|(id, l)| published(id).contains_key(l))
            .collect();
        prop_assert!(
            shown.iter().all(|s| *s) || shown.iter().all(|s| !*s),
            "linked cells {:?} published {:?}",
            present,
            shown
        );
    }
    // Published totals pass the threshold.
    if let Some(c) = d.totals.clusters {
        prop_assert!(c >= k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn published_cells_pass_add_up_and_hide_what_they_fold(
        population in prop::collection::vec(cluster(), 0..150),
        k in 2u64..12,
    ) {
        check(&population, k)?;
    }
}

#[test]
fn a_population_below_k_publishes_nothing_but_withheld_marks() {
    let population: Vec<Cluster> = (0..9)
        .map(|_| Cluster {
            minor: Some(3),
            patch: 0,
            distribution: 0,
            nodes: vec![(0, 0, 3)],
        })
        .collect();
    let t = truth(&population);
    let d = disclose(&raw_of(&population, &t), &Policy { min_clusters: 10 });
    assert!(
        d.metrics
            .iter()
            .all(|m| m.total.is_none() && m.cells.is_empty())
    );
    assert_eq!(
        (d.totals.clusters, d.totals.reports, d.totals.nodes),
        (None, None, None)
    );
}
