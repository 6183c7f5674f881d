//! The methodology page: how the numbers of the newest snapshot are made, with its parameters.

use maud::{DOCTYPE, Markup, html};

use super::cells::find;
use super::format::{pct, sci, sig, thousands};
use super::layout::{head, licence_note, synthetic_notice};
use super::{Options, PAGE, Published};
use crate::metrics::{Domain, METRICS, Measure, Metric};
use crate::privacy::Guarantee;
use crate::snapshot::{LICENSE, LICENSE_URL, MetricDoc, NoiseDoc, Snapshot};

/// Weekly snapshots in a year, for the composition the methodology page states.
const YEAR_OF_WEEKS: u32 = 52;

/// The methodology page: how the numbers of the newest snapshot are made, with its parameters
/// and its noise as the published files state them.
pub(crate) fn render_methodology(published: &Published, options: &Options) -> String {
    let s = &published.snapshot;
    let pr = &s.privacy;
    let k = pr.min_clusters;
    let privacy_href = options.privacy_url.as_deref().unwrap_or("SCHEMA.md");
    let open = METRICS
        .iter()
        .filter(|m| matches!(m.domain, Domain::Open { .. }))
        .count();
    let year = Guarantee::of(
        pr.rho * f64::from(YEAR_OF_WEEKS),
        pr.delta * f64::from(YEAR_OF_WEEKS),
    );
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("How the numbers are made: Spartakus statistics, {}", s.date)))
            body.methodology {
                a.skip href="#main" { "Skip to the text" }
                header.top {
                    p.kicker { "Spartakus statistics" }
                    h1 { "How the numbers are made" }
                    p.lede {
                        "The methodology of the snapshot of "
                        time datetime=(s.date.to_string()) { (s.date) }
                        ", with its parameters and its noise as the published files state them. "
                        a href=(PAGE) { "Back to the dashboard" } "."
                    }
                    (synthetic_notice(s))
                    nav aria-label="Contents" {
                        details {
                            summary { "Contents" }
                            ol {
                                li { a href="#counted" { "What is counted" } }
                                li { a href="#guarantee" { "The guarantee" } }
                                li { a href="#budget" { "The budget and its split" } }
                                li { a href="#over-a-year" { "Over a year" } }
                                li { a href="#contributions" { "Bounded contributions" } }
                                li { a href="#tables" { "From noisy counts to the tables" } }
                                li { a href="#biases" { "Known biases" } }
                                li { a href="#licence" { "Licence" } }
                            }
                        }
                    }
                }
                main #main {
                    section.prose #counted aria-labelledby="h-counted" {
                        h2 #h-counted { "What is counted" }
                        p {
                            "A snapshot covers a window of " (s.window.days) " whole UTC days (this one "
                            time datetime=(s.window.first.to_string()) { (s.window.first) } " to "
                            time datetime=(s.window.last.to_string()) { (s.window.last) }
                            "). Each cluster that reported in the window counts once, by its latest report "
                            "in the window. The totals are the distinct clusters, the reports (a cluster "
                            "counting at most " (pr.report_clip) ") and the nodes of the latest reports (a "
                            "cluster counting at most " (pr.node_clip) ")."
                        }
                        p {
                            "Each of the " (METRICS.len()) " metrics is a partition of clusters or of nodes: "
                            "every cluster (or node) of the window is in exactly one cell, with " code { "unknown" }
                            " where the reports did not say, so the cells add up to the metric's total. A "
                            "metric grouped by workload kind is one such partition per kind."
                        }
                        details.metric-list {
                            summary { "The " (METRICS.len()) " metrics, one by one" }
                            ol.metric-list {
                                @for m in METRICS {
                                    li {
                                        a href=(format!("{PAGE}#{}", m.id)) { (m.title) }
                                        " (" code { (m.id) } ", " (m.unit.column()) "): " (m.description)
                                    }
                                }
                            }
                        }
                    }
                    section.prose #guarantee aria-labelledby="h-guarantee" {
                        h2 #h-guarantee { "The guarantee" }
                        p {
                            "The unit of privacy is " strong { (pr.unit) } ". Every published number is a "
                            "noisy count: a count plus a draw of noise ("
                            (pr.noise) "). No number is published without noise, and which values appear "
                            "is decided from noisy counts too."
                        }
                        p {
                            "A measurement (a vector of counts) to which one cluster can contribute at most Δ "
                            "(its sensitivity, in the L2 norm) and which gets noise of scale σ on every count is "
                            "ρ = Δ²/(2σ²) zero-concentrated differentially private (zCDP). The measurements' "
                            "ρ add up, so the snapshot is " strong.nowrap { "ρ-zCDP with ρ = " (sig(pr.rho)) } "."
                        }
                        p {
                            "That implies (ε, δ)-differential privacy with "
                            span.formula { "ε = ρ + 2√(ρ · ln(2/δ))" } " (Bun and Steinke 2016): here "
                            span.formula { "ε = " (sig(pr.rho)) " + 2√(" (sig(pr.rho)) " · ln(2/" (sci(pr.delta)) "))" }
                            " = " strong { (sig(pr.epsilon)) } " at " strong { "δ = " (sci(pr.delta)) } ". "
                            "Whatever anyone knew before, adding or removing one cluster changes the probability "
                            "of any outcome by a factor of at most e" sup { "ε" } " ≈ " (sig(pr.epsilon.exp()))
                            ", except with a chance of at most δ."
                        }
                        p {
                            "Half of δ is spent on partition selection. A value that comes from the data (a "
                            "version, a kernel: " (open) " metrics have such values) is published only when its "
                            "noisy count reaches a threshold, set so that a value only one cluster has is "
                            "published with a chance of at most δ/(2 · " (open) ") per metric. The other half of δ "
                            "is the conversion's, the " code { "2/δ" } " in the formula."
                        }
                        p {
                            "Not covered: what is true of many clusters (correlations in the world) is what "
                            "statistics show, and it is not hidden: if most clusters on one kernel run one "
                            "operating system, the tables say so, about every such cluster. The guarantee is "
                            "about what is published; the collector's operator holds the raw reports. "
                            a href=(privacy_href) { "What is published, and what cannot be" } "."
                        }
                    }
                    section.prose #budget aria-labelledby="h-budget" {
                        h2 #h-budget { "The budget and its split" }
                        p {
                            "The budget ρ = " (sig(pr.rho)) " is split among the measurements by weight: the "
                            "totals and each metric. What each spent and its noise are in the published files "
                            "(" code { "privacy.totals" } " and each metric's " code { "noise" } "); this table "
                            "reads them from this snapshot's. ± covers 95 % of the noise on one count (1.96 σ). A "
                            "metric added up from a finer one spends nothing."
                        }
                        (budget_table(s))
                    }
                    section.prose #over-a-year aria-labelledby="h-over-a-year" {
                        h2 #h-over-a-year { "Over a year" }
                        p {
                            "Every snapshot draws fresh noise and spends its ρ again, and zCDP adds up over "
                            "releases. A cluster that reports all year is in every weekly snapshot: "
                            (YEAR_OF_WEEKS) " of them cost " strong { (YEAR_OF_WEEKS) " · ρ = " (sig(year.rho)) }
                            ", which is " strong { "ε = " (sig(year.epsilon)) } " at δ = " (YEAR_OF_WEEKS)
                            " · " (sci(pr.delta)) " = " (sci(year.delta)) ". Windows of " (s.window.days)
                            " days overlap, so even one report is in up to " (s.window.days.div_ceil(7))
                            " weekly snapshots; the bound holds for a cluster in all of them."
                        }
                        p {
                            "A published snapshot is final: it is never computed again with fresh noise, "
                            "which would let the noise be averaged away. "
                            @if let Some(l) = &published.ledger {
                                a href="ledger.json" { "ledger.json" } " lists every release and its cost: "
                                "so far " (l.cumulative.releases) " releases, " strong { "ρ = " (sig(l.cumulative.rho)) }
                                ", " strong { "ε = " (sig(l.cumulative.epsilon)) } " at δ = " (sci(l.cumulative.delta)) "."
                            } @else {
                                "The publisher's ledger.json lists every release and its cost; none is "
                                "published beside these files."
                            }
                        }
                    }
                    section.prose #contributions aria-labelledby="h-contributions" {
                        h2 #h-contributions { "Bounded contributions" }
                        p { "Noise hides one cluster only if one cluster can change a count by a bounded amount:" }
                        ul {
                            li { "Cluster metrics and the cluster total: one cell per cluster (in a metric grouped by workload kind, one per kind)." }
                            li {
                                "Node metrics and the node total: at most " strong { (pr.node_clip) " nodes" }
                                " per cluster. A cluster with more counts as " (pr.node_clip)
                                ", spread over its cells in proportion to its nodes (rounded down)."
                            }
                            li {
                                "The report total: at most " strong { (pr.report_clip) " reports" }
                                " per cluster, one per day of the window."
                            }
                        }
                    }
                    section.prose #tables aria-labelledby="h-tables" {
                        h2 #h-tables { "From noisy counts to the tables" }
                        p {
                            "Within each partition, the noisy counts become the non-negative whole numbers "
                            "closest to them that add up to the published total; a count below the floor is folded "
                            "into " code { "other" } ". The floor is " (k) ", or twice the σ of the metric's noise "
                            "if that is more: below it a count is mostly noise (a value no cluster has would "
                            "reach σ one time in six). Children add up to their parent cell. "
                            "This reads only noisy numbers, so it costs no privacy. If the window's noisy "
                            "count of clusters (or nodes) is below " (k) ", the metrics of that unit are withheld."
                        }
                    }
                    section.prose #biases aria-labelledby="h-biases" {
                        h2 #h-biases { "Known biases" }
                        ul {
                            li { "Only clusters that volunteer are counted: their operators chose to install the volunteer. They are not a random sample of all clusters." }
                            li { "Clusters behind firewalls that do not let the volunteer reach the collector are never counted." }
                            li { "Clipping under-weights big clusters in node metrics: a cluster of 500 nodes counts " (pr.node_clip) " of them." }
                            li { "Noise makes small cells fold into " code { "other" } ": rare values disappear, and may appear one week and not the next." }
                            li {
                                "Synthetic data, when flagged: a snapshot that counts reports marked synthetic says so"
                                @if s.synthetic_included { " (this one does)" } @else { " (this one does not)" }
                                "."
                            }
                        }
                    }
                    section.prose #licence aria-labelledby="h-licence" {
                        h2 #h-licence { "Licence" }
                        p {
                            "The published data (every JSON and CSV file) is licensed under the "
                            a rel="license" href=(LICENSE_URL) { "Community Data License Agreement – Permissive, Version 2.0" }
                            " (" code { (LICENSE) } "): you may use, change and share it. Every folder has a "
                            a href="LICENSE.txt" { "LICENSE.txt" } " that says so, and every snapshot names its "
                            "licence in " code { "license" } "."
                        }
                    }
                }
                footer {
                    p {
                        a href=(PAGE) { "The dashboard" } "; every file and column is described in "
                        a href="SCHEMA.md" { "SCHEMA.md" } " (format " code { (s.format) } " version " (s.format_version) ")."
                    }
                    (licence_note())
                }
            }
        }
    };
    page.into_string()
}

/// Every measurement of the snapshot: its noise and its share of ρ, as the files state them.
fn budget_table(s: &Snapshot) -> Markup {
    let pr = &s.privacy;
    let spent: f64 = pr.totals.iter().map(|t| t.noise.rho).sum::<f64>()
        + s.metrics.iter().map(|m| m.noise.rho).sum::<f64>();
    let share = |rho: f64| {
        if spent > 0.0 {
            pct(rho / spent)
        } else {
            "—".into()
        }
    };
    let row = |name: Markup, unit: &str, released: Markup, n: Option<&NoiseDoc>| {
        html! {
            tr {
                th scope="row" { (name) }
                td { (unit) }
                td { (released) }
                @if let Some(n) = n {
                    td.num { (sig(n.sigma)) }
                    td.num { (thousands(n.typical_error)) }
                    td.num { (sig(n.rho)) }
                    td.num { (share(n.rho)) }
                } @else {
                    td.num colspan="4" { "not in this snapshot" }
                }
            }
        }
    };
    html! {
        div.table-wrap role="region" aria-label="The budget and its split: numbers" tabindex="0" {
            table.numbers.budget {
                caption { "The split of ρ in the snapshot of " (s.date) }
                thead {
                    tr {
                        th scope="col" { "measurement" }
                        th scope="col" { "unit" }
                        th scope="col" { "values" }
                        th.num scope="col" { "σ" }
                        th.num scope="col" { "± (95 %)" }
                        th.num scope="col" { "ρ" }
                        th.num scope="col" { "share of ρ" }
                    }
                }
                tbody {
                    @for t in &pr.totals {
                        (row(html! { "total " (t.total) }, &t.total, html! { "one count" }, Some(&t.noise)))
                    }
                    @for m in METRICS {
                        @let doc = find(s, m.id);
                        (row(
                            html! { a href=(format!("{PAGE}#{}", m.id)) { (m.title) } },
                            m.unit.column(),
                            released(m, doc),
                            doc.map(|d| &d.noise),
                        ))
                    }
                }
                tfoot {
                    tr {
                        th scope="row" colspan="5" { "the snapshot" }
                        td.num { (sig(spent)) }
                        td.num { (share(spent)) }
                    }
                }
            }
        }
    }
}

/// How a metric's values are chosen, in a few words.
fn released(m: &Metric, doc: Option<&MetricDoc>) -> Markup {
    let title = |id: &'static str| crate::metrics::metric(id).map_or(id, |m| m.title);
    html! {
        @match (m.measure, m.domain) {
            (Measure::SumOf(child), _) => { "sum of " a href=(format!("{PAGE}#{child}")) { (title(child)) } }
            (_, Domain::Open { .. }) => {
                "from the data"
                @if let Some(t) = doc.and_then(|d| d.noise.threshold) { ", at " (thousands(t)) " or more" }
            }
            (_, Domain::Published { from }) => { "those " a href=(format!("{PAGE}#{from}")) { (title(from)) } " published" }
            (_, Domain::Closed(_) | Domain::ClosedUnder(_)) => { "a fixed list" }
        }
    }
}
