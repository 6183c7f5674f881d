//! The dashboard page: the header with the guarantee, the curves over time, and every metric
//! in its section with its chart, its noise and its numbers.

use maud::{DOCTYPE, Markup, html};

use super::bar_chart::bar_chart;
use super::cells::{cells, find};
use super::format::{sci, share_text, sig, thousands, total};
use super::layout::{head, licence_note, synthetic_notice};
use super::line_chart::series_section;
use super::{METHODOLOGY, Options, Published};
use crate::metrics::{METRICS, Section};
use crate::snapshot::{MetricDoc, Snapshot};

/// The page, from the published documents only.
pub fn render(published: &Published, options: &Options) -> String {
    let s = &published.snapshot;
    let title = format!("Spartakus statistics, {}", s.date);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&title))
            body {
                a.skip href="#main" { "Skip to the charts" }
                (header(published, options))
                main #main {
                    (over_time(published))
                    @for (id, heading, metrics) in sections(s) {
                        section.group #(id) aria-labelledby=(format!("h-{id}")) {
                            h2 #(format!("h-{id}")) { (heading) }
                            @for m in metrics {
                                (metric_section(s, m))
                            }
                        }
                    }
                }
                (footer(published))
            }
        }
    };
    page.into_string()
}

/// The page's sections that have metrics in this snapshot, as (anchor, heading, metrics): each
/// metric in its section, in the order of `METRICS`; a metric the code does not know (from an
/// older or newer snapshot) in a last section, `more`.
fn sections(s: &Snapshot) -> Vec<(&'static str, &'static str, Vec<&MetricDoc>)> {
    let mut out: Vec<(&str, &str, Vec<&MetricDoc>)> = Section::ALL
        .into_iter()
        .map(|section| {
            let metrics = METRICS
                .iter()
                .filter(|m| m.section == section)
                .filter_map(|m| find(s, m.id))
                .collect();
            (section.id(), section.heading(), metrics)
        })
        .collect();
    let rest: Vec<&MetricDoc> = s
        .metrics
        .iter()
        .filter(|m| !METRICS.iter().any(|known| known.id == m.id))
        .collect();
    out.push(("more", "More", rest));
    out.retain(|(_, _, metrics)| !metrics.is_empty());
    out
}

fn header(p: &Published, options: &Options) -> Markup {
    let s = &p.snapshot;
    let pr = &s.privacy;
    let k = pr.min_clusters;
    let privacy_href = options.privacy_url.as_deref().unwrap_or("SCHEMA.md");
    let schema = find(s, "clusters_by_schema_version");
    let share_of = |label: &str| {
        schema
            .into_iter()
            .flat_map(cells)
            .find(|c| c.labels == [label])
            .and_then(|c| c.share)
    };
    let error_of = |name: &str| {
        pr.totals
            .iter()
            .find(|t| t.total == name)
            .map(|t| t.noise.typical_error)
    };
    html! {
        header.top {
            p.kicker { "Spartakus statistics" }
            h1 { "What Kubernetes clusters run" }
            p.lede {
                "Counted from the anonymous reports that Kubernetes clusters volunteer. Snapshot of "
                time datetime=(s.date.to_string()) { (s.date) }
                ", covering the " (s.window.days) " days from "
                time datetime=(s.window.first.to_string()) { (s.window.first) } " to "
                time datetime=(s.window.last.to_string()) { (s.window.last) }
                "; each cluster counts once, by its latest report. Every number has noise added "
                "for privacy. "
                a href=(METHODOLOGY) { "How the numbers are made" } "."
            }
            (synthetic_notice(s))
            dl.facts {
                div { dt { "Snapshot" } dd { (s.date) } }
                div { dt { "Clusters" } dd.total-clusters { (total(s.totals.clusters)) } (error_dd(error_of("clusters"))) }
                div { dt { "Reports" } dd.total-reports { (total(s.totals.reports)) } (error_dd(error_of("reports"))) }
                div { dt { "Nodes" } dd.total-nodes { (total(s.totals.nodes)) } (error_dd(error_of("nodes"))) }
                div {
                    dt { abbr title="zero-concentrated differential privacy: the smaller, the more private" { "ρ" } " (zCDP)" }
                    dd.rho { (sig(pr.rho)) }
                }
                div {
                    dt { abbr title="(ε, δ)-differential privacy: the smaller ε, the more private" { "ε" } " at δ = " (sci(pr.delta)) }
                    dd.epsilon { (sig(pr.epsilon)) }
                }
            }
            div.explain {
                section #privacy aria-labelledby="h-privacy" {
                    h2 #h-privacy { "Privacy: differential privacy for every cluster" }
                    p {
                        "Every number on this page has random noise added (discrete Gaussian), "
                        "calibrated so that adding or removing any one cluster's reports (all of them "
                        "in the window, and all their nodes) changes the probability of anything on "
                        "this page by at most the bound below: a factor of e" sup { "ε" } ", except "
                        "with a chance of δ. The page says about as much about any one cluster as it "
                        "would had that cluster never reported."
                    }
                    p.bound {
                        "This snapshot: " strong { "ρ = " (sig(pr.rho)) } " (zero-concentrated DP), "
                        "which implies " strong { "ε = " (sig(pr.epsilon)) " at δ = " (sci(pr.delta)) }
                        " (e" sup { "ε" } " ≈ " (sig(pr.epsilon.exp())) ")."
                    }
                    p.bound.cumulative {
                        @if let Some(l) = &p.ledger {
                            "All " (l.cumulative.releases) " releases so far together (" a href="ledger.json" { "ledger.json" } "): "
                            strong { "ρ = " (sig(l.cumulative.rho)) ", ε = " (sig(l.cumulative.epsilon)) " at δ = " (sci(l.cumulative.delta)) }
                            ", for a cluster in every one of them."
                        } @else {
                            "No ledger.json is published beside these files, so what every release "
                            "together costs is not stated here."
                        }
                    }
                    p {
                        "Not covered: what is true of many clusters (correlations in the world, such as "
                        "which kernels go with which operating system) is what statistics show, and "
                        "differential privacy does not hide it. It protects what is published, not the "
                        "reports: the collector's operator holds the raw reports. "
                    }
                    p {
                        a href=(METHODOLOGY) { "Methodology" } ": the budget, its split and a year of snapshots. "
                        a href=(privacy_href) { "What is published, and what cannot be" } "."
                    }
                }
                section #terms aria-labelledby="h-terms" {
                    h2 #h-terms { "Reading the numbers" }
                    dl.terms {
                        dt { "± about N" }
                        dd { "The noise on each count: 95 % of the time the count is within N of the true one. N is the same for small and large counts, so small counts are relatively noisier." }
                        dt { code { "other" } }
                        dd {
                            "Values whose count is below the metric's floor (at least " (k) " and twice its "
                            "noise's σ), or that were not released (a value seen in the data, such as a version, "
                            "below its threshold), and values not on the list of names that may be published. "
                            "They are not told apart."
                        }
                        dt { code { "unknown" } }
                        dd { "The reports did not say (a field left out, or the volunteer not allowed to count it)." }
                        dt { "withheld" }
                        dd { "The window's noisy count of clusters (of nodes, for a node metric) is below " (k) ", so none of the metric is shown." }
                        dt { code { "v1" } }
                        dd { "Sent in the original report format, which has no namespaces or workloads." }
                        dt { "Shares" }
                        dd { "Of the metric's published total (of the workload kind's, where grouped by kind), from the published counts, rounded." }
                    }
                }
                section #quality aria-labelledby="h-quality" {
                    h2 #h-quality { "Data quality" }
                    ul {
                        li { (total(s.totals.reports)) " reports from " (total(s.totals.clusters)) " clusters in the window (noisy counts; a cluster counts at most " (pr.report_clip) " reports)." }
                        li {
                            "Report format: "
                            @if schema.is_some_and(|m| m.status == "published") {
                                (share_text(share_of("2"))) " v2, " (share_text(share_of("1"))) " v1 (the original). "
                            } @else {
                                "withheld. "
                            }
                            a href="#clusters_by_schema_version" { "Details" } ", "
                            a href="#clusters_by_volunteer_version" { "volunteer versions" } "."
                        }
                        li.dead-letters { "Reports that could not be stored (dead letters) are not counted: " (s.data_quality.dead_letters.source) "." }
                    }
                }
            }
            nav aria-label="Contents" {
                details {
                    summary { "All " (s.metrics.len()) " metrics" }
                    ol {
                        li { a href="#over-time" { "Over time" } }
                        @for (_, heading, metrics) in sections(s) {
                            li {
                                (heading)
                                ol {
                                    @for m in metrics {
                                        li { a href=(format!("#{}", m.id)) { (m.title) } }
                                    }
                                }
                            }
                        }
                        li { a href=(METHODOLOGY) { "Methodology" } }
                    }
                }
            }
        }
    }
}

/// The 95 % noise of a total, under its number.
fn error_dd(typical_error: Option<u64>) -> Markup {
    html! {
        @if let Some(e) = typical_error {
            dd.error { "± about " (thousands(e)) }
        }
    }
}

fn footer(p: &Published) -> Markup {
    let s = &p.snapshot;
    html! {
        footer {
            p {
                "All files: "
                a href="latest.json" { "latest.json" } ", "
                a href="index.json" { "index.json" } " (every snapshot), "
                a href=(format!("snapshots/{}/snapshot.json", s.date)) { "this snapshot" } ", "
                a href="series/totals.csv" { "totals over time" }
                @if p.ledger.is_some() {
                    ", " a href="ledger.json" { "ledger.json" } " (every release and its cost)"
                }
                ". Every file and column is described in "
                a href="SCHEMA.md" { "SCHEMA.md" } " (format " code { (s.format) } " version " (s.format_version) "); "
                a href=(METHODOLOGY) { "how the numbers are made" } "."
            }
            (licence_note())
        }
    }
}

fn metric_section(s: &Snapshot, m: &MetricDoc) -> Markup {
    let published = m.status == "published";
    let cells = cells(m);
    let k = s.privacy.min_clusters;
    html! {
        section.metric #(m.id) data-status=(m.status) aria-labelledby=(format!("h-{}", m.id)) {
            h3 #(format!("h-{}", m.id)) { (m.title) }
            p.description { (m.description) }
            p.meta {
                @if let Some(t) = m.total {
                    "Total: " (thousands(t)) " " (m.unit)
                    @if m.grouped { " (in each " (m.dimensions[0]) ")" }
                    ". "
                }
                "Download "
                a href=(format!("snapshots/{}/{}.csv", s.date, m.id)) { "CSV" } ", "
                a href=(format!("snapshots/{}/{}.json", s.date, m.id)) { "JSON" } "; over time "
                a href=(format!("series/{}.csv", m.id)) { "CSV" } ", "
                a href=(format!("series/{}.json", m.id)) { "JSON" } "."
            }
            (noise_note(s, m))
            @if published && !cells.is_empty() {
                figure.chart {
                    (bar_chart(m, &cells))
                }
            } @else if published {
                p.notice { "No cells: the reports in the window say nothing about this." }
            } @else {
                p.notice.withheld {
                    strong { "Withheld. " }
                    @if m.unit == "nodes" {
                        "Fewer than " (k) " clusters, or " (k) " nodes, in the window (noisy counts): nothing of this metric is published."
                    } @else {
                        "Fewer than " (k) " clusters in the window (noisy count): nothing of this metric is published."
                    }
                }
            }
            div.table-wrap role="region" aria-label=(format!("{}: numbers", m.title)) tabindex="0" {
                table.numbers {
                    caption { (m.title) ", " (s.date) }
                    thead {
                        tr {
                            @for d in &m.dimensions { th scope="col" { (d.replace('_', " ")) } }
                            th.num scope="col" { (m.unit) }
                            th.num scope="col" { "share" }
                        }
                    }
                    tbody {
                        @for c in &cells {
                            tr {
                                @for l in &c.labels { td { (l) } }
                                td.num { (thousands(c.count)) }
                                td.num { (share_text(c.share)) }
                            }
                        }
                        @if !published {
                            tr.withheld { td colspan=(m.dimensions.len() + 2) { "withheld" } }
                        }
                    }
                }
            }
        }
    }
}

/// What the noise does to a metric's numbers, from its `noise` in the snapshot.
fn noise_note(s: &Snapshot, m: &MetricDoc) -> Markup {
    let n = &m.noise;
    let k = s.privacy.min_clusters;
    let floor = n.floor;
    let derived = n
        .derived_from
        .as_deref()
        .map(|id| (id, find(s, id).map_or(id, |d| d.title.as_str())));
    html! {
        p.noise {
            strong { "± about " (thousands(n.typical_error)) " " (m.unit) }
            " on each count (95 %)."
            @if let Some((id, title)) = derived {
                " Each count is the sum of the noisy counts of "
                a href=(format!("#{id}")) { (title) }
                ", so it costs no privacy budget of its own; the ± is that of its largest sum."
            }
            @if let Some(t) = n.threshold {
                " A value is shown only when its noisy count reaches " (thousands(t))
                " and its count is at least " (thousands(floor)) " (the floor: at least " (k)
                " and twice the noise's σ); otherwise it is in " code { "other" } "."
            } @else {
                " A value whose count is below " (thousands(floor)) " (the floor: at least " (k)
                " and twice the noise's σ) is in " code { "other" } "."
            }
            @if m.unit == "nodes" {
                " Each cluster counts at most " (s.privacy.node_clip) " nodes (a larger one is scaled down)."
            }
        }
    }
}

fn over_time(p: &Published) -> Markup {
    html! {
        section.group #over-time aria-labelledby="h-over-time" {
            h2 #h-over-time { "Over time" }
            p.description {
                "Each point is one snapshot (a window of " (p.snapshot.window.days) " days). "
                "A line has a gap where its value was not published that week (its noisy count was "
                "below the floor or its threshold); it was then counted in " code { "other" } ". "
                "Every snapshot has noise of its own: a change smaller than the metric's ± may be "
                "noise alone."
            }
            @for (m, caption) in METRICS.iter().filter_map(|m| Some((m, m.over_time?))) {
                @if let Some(series) = p.series.iter().find(|s| s.id == m.id) {
                    (series_section(series, caption))
                }
            }
        }
    }
}
