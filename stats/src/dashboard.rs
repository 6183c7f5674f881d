//! The dashboard: two HTML pages and their stylesheet, drawn from the published files alone.
//!
//! [`render`] is a pure function from the published documents (`snapshot.json` of the newest
//! snapshot, `index.json`, the `series/ID.json` drawn over time, and `ledger.json` when there is
//! one) to HTML. It decides nothing about privacy: it shows exactly the cells the files hold,
//! `other`, `unknown` and withheld metrics included, and states the guarantee and the noise the
//! files state (`disclose` alone decides what is published, `privacy` what it costs).
//! [`render_methodology`] explains how the numbers are made, with this snapshot's parameters.
//! Markup comes from maud's templates, which escape every value; charts are inline SVG written
//! the same way; the pages need no JavaScript and load nothing but their own stylesheet, so
//! they work under a Content-Security-Policy that forbids every other origin.
//!
//! [`publish`] reads the files, renders, and writes `index.html`, `methodology.html` and
//! `dashboard.css` beside them when they changed.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::ledger::Ledger;
use crate::metrics::{Domain, METRICS, Measure, Metric};
use crate::output::{Index, Latest, Output, OutputError, Series, write_atomic};
use crate::privacy::Guarantee;
use crate::snapshot::{LICENSE, LICENSE_URL, MetricDoc, NoiseDoc, Snapshot};

/// The page's file name in the published directory.
pub const PAGE: &str = "index.html";
/// The methodology page's file name in the published directory.
pub const METHODOLOGY: &str = "methodology.html";
/// The stylesheet's file name in the published directory.
pub const STYLESHEET: &str = "dashboard.css";
/// The stylesheet (the only file the page loads).
pub const CSS: &str = include_str!("dashboard.css");

/// The metrics drawn over time, as adoption curves: (metric, what the curve shows).
pub const OVER_TIME: [(&str, &str); 3] = [
    (
        "clusters_by_kubernetes_minor",
        "Kubernetes minor versions: share of clusters",
    ),
    (
        "clusters_by_os",
        "Operating system families: share of clusters",
    ),
    (
        "clusters_by_runtime",
        "Container runtimes: share of clusters",
    ),
];

/// Sections of the page, and which metrics each holds (by id; others go last).
const SECTIONS: &[(&str, &str, &[&str])] = &[
    (
        "kubernetes",
        "Kubernetes versions",
        &[
            "clusters_by_kubernetes_minor",
            "clusters_by_kubernetes_patch",
            "clusters_by_distribution",
            "clusters_by_version_skew",
            "nodes_by_version_skew",
        ],
    ),
    (
        "os",
        "Operating systems and kernels",
        &[
            "clusters_by_os",
            "clusters_by_os_version",
            "nodes_by_os",
            "nodes_by_os_version",
            "clusters_by_kernel",
            "nodes_by_kernel",
        ],
    ),
    (
        "runtimes",
        "Container runtimes",
        &[
            "clusters_by_runtime",
            "clusters_by_runtime_version",
            "nodes_by_runtime",
            "nodes_by_runtime_version",
        ],
    ),
    (
        "machines",
        "Machines and clouds",
        &[
            "clusters_by_architecture",
            "nodes_by_architecture",
            "clusters_by_cloud_provider",
            "nodes_by_cloud_provider",
            "clusters_by_node_count",
            "nodes_by_cpu",
            "nodes_by_memory",
            "clusters_by_accelerator",
        ],
    ),
    (
        "workloads",
        "Namespaces and workloads",
        &[
            "clusters_by_namespaces",
            "clusters_using_workload_kind",
            "clusters_by_workload_objects",
            "clusters_by_workload_age",
        ],
    ),
    (
        "reports",
        "The reports themselves",
        &[
            "clusters_by_schema_version",
            "clusters_by_volunteer_version",
        ],
    ),
];

/// Everything the page is drawn from, as read from the published directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The newest snapshot (the one `latest.json` names).
    pub snapshot: Snapshot,
    /// Every kept snapshot.
    pub index: Index,
    /// The series of [`OVER_TIME`] that exist, in that order.
    pub series: Vec<Series>,
    /// Every release and what all of them cost, when the folder has a `ledger.json`.
    pub ledger: Option<Ledger>,
}

/// What the page says beyond the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Where the privacy summary links to (the README section "Statistics: what is published,
    /// and what cannot be" of the operator's copy of the source); `None`: the published
    /// `SCHEMA.md`.
    pub privacy_url: Option<String>,
}

/// Reads the newest snapshot, the index, the series and the ledger (if any) from `output`;
/// `None` when nothing is published yet.
pub fn read(output: &Output) -> Result<Option<Published>, OutputError> {
    let Some(latest) = output.read_json::<Latest>("latest.json")? else {
        return Ok(None);
    };
    let snapshot = output.read(latest.date)?;
    let index = output
        .read_json::<Index>("index.json")?
        .ok_or_else(|| OutputError::Format {
            path: output.root().join("index.json"),
            detail: "missing, but latest.json exists".into(),
        })?;
    let mut series = Vec::new();
    for (id, _) in OVER_TIME {
        if let Some(s) = output.read_json::<Series>(&format!("series/{id}.json"))? {
            series.push(s);
        }
    }
    let ledger = Ledger::load(output)?;
    Ok(Some(Published {
        snapshot,
        index,
        series,
        ledger,
    }))
}

/// Renders the pages of what `output` holds and writes them with their stylesheet, each only if
/// it changed. Returns whether a page exists now.
pub fn publish(output: &Output, options: &Options) -> Result<bool, OutputError> {
    let Some(published) = read(output)? else {
        return Ok(false);
    };
    write_if_changed(output, STYLESHEET, CSS.as_bytes())?;
    write_if_changed(
        output,
        METHODOLOGY,
        render_methodology(&published, options).as_bytes(),
    )?;
    write_if_changed(output, PAGE, render(&published, options).as_bytes())?;
    Ok(true)
}

fn write_if_changed(output: &Output, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
    let path = output.root().join(name);
    if std::fs::read(&path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    write_atomic(&path, bytes)
}

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

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light";
            title { (title) }
            link rel="stylesheet" href=(STYLESHEET);
            // No favicon request: the page loads nothing but its stylesheet.
            link rel="icon" href="data:,";
        }
    }
}

fn sections(s: &Snapshot) -> Vec<(&'static str, &'static str, Vec<&MetricDoc>)> {
    let mut out: Vec<(&str, &str, Vec<&MetricDoc>)> = SECTIONS
        .iter()
        .map(|(id, heading, ids)| {
            let metrics = ids
                .iter()
                .filter_map(|id| s.metrics.iter().find(|m| m.id == *id))
                .collect();
            (*id, *heading, metrics)
        })
        .collect();
    let rest: Vec<&MetricDoc> = s
        .metrics
        .iter()
        .filter(|m| {
            !SECTIONS
                .iter()
                .any(|(_, _, ids)| ids.contains(&m.id.as_str()))
        })
        .collect();
    out.push(("more", "More", rest));
    out.retain(|(_, _, metrics)| !metrics.is_empty());
    out
}

// ---- Header ----

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

/// The data's licence, as every page states it.
fn licence_note() -> Markup {
    html! {
        p.licence {
            "The data is licensed under the "
            a rel="license" href=(LICENSE_URL) { "Community Data License Agreement – Permissive 2.0" }
            " (" code { (LICENSE) } "); every folder has a "
            a href="LICENSE.txt" { "LICENSE.txt" } " that says so."
        }
    }
}

// ---- One metric ----

/// One published cell, read from a row of `rows`.
#[derive(Debug, Clone, PartialEq)]
struct Cell<'a> {
    labels: Vec<&'a str>,
    count: u64,
    share: Option<f64>,
}

fn cells(m: &MetricDoc) -> Vec<Cell<'_>> {
    let dims = m.dimensions.len();
    m.rows
        .iter()
        .map(|row| Cell {
            labels: row
                .iter()
                .take(dims)
                .map(|v| v.as_str().unwrap_or(""))
                .collect(),
            count: row.get(dims).and_then(Value::as_u64).unwrap_or(0),
            share: row.get(dims + 1).and_then(Value::as_f64),
        })
        .collect()
}

fn find<'a>(s: &'a Snapshot, id: &str) -> Option<&'a MetricDoc> {
    s.metrics.iter().find(|m| m.id == id)
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

/// The notice on both pages when the snapshot counts reports marked synthetic.
fn synthetic_notice(s: &Snapshot) -> Markup {
    html! {
        @if s.synthetic_included {
            p.notice.synthetic role="note" {
                strong { "Synthetic data. " }
                "This snapshot includes reports marked "
                code { "spartakus.dev/synthetic=true" }
                ": a generated demonstration population, not real clusters."
            }
        }
    }
}

/// Chart geometry (SVG user units; the chart scales to the page's width).
const W: f64 = 360.0;
const LABEL_W: f64 = 128.0;
const BAR_X: f64 = 134.0;
const VALUE_W: f64 = 46.0;
const ROW_H: f64 = 20.0;
const TOP: f64 = 18.0;
const LABEL_CHARS: usize = 19;

/// A row of a bar chart: a heading (a workload kind) or a bar.
enum BarRow<'a> {
    Heading(&'a str),
    Bar {
        label: String,
        share: f64,
        muted: bool,
    },
}

fn bar_chart(m: &MetricDoc, cells: &[Cell<'_>]) -> Markup {
    let mut rows: Vec<BarRow<'_>> = Vec::new();
    let mut group: Option<&str> = None;
    for c in cells {
        let labels: &[&str] = if m.grouped {
            let g = c.labels.first().copied().unwrap_or("");
            if group != Some(g) {
                rows.push(BarRow::Heading(g));
                group = Some(g);
            }
            &c.labels[1.min(c.labels.len())..]
        } else {
            &c.labels
        };
        let label = label_of(labels);
        let muted = matches!(
            labels.last().copied(),
            Some("other" | "unknown" | "v1" | "no nodes" | "no objects")
        );
        rows.push(BarRow::Bar {
            label,
            share: c.share.unwrap_or(0.0),
            muted,
        });
    }
    let max = rows
        .iter()
        .filter_map(|r| match r {
            BarRow::Bar { share, .. } => Some(*share),
            BarRow::Heading(_) => None,
        })
        .fold(0.0, f64::max);
    let scale = nice_ceiling(max);
    let bar_w = W - BAR_X - VALUE_W;
    let height = TOP + rows.len() as f64 * ROW_H + 42.0;
    let axis_y = TOP + rows.len() as f64 * ROW_H + 2.0;
    let unit = &m.unit;
    let share_of = if m.grouped {
        format!("share of {unit} of each {}", m.dimensions[0])
    } else {
        format!("share of {unit}")
    };
    let dims = if m.grouped {
        m.dimensions[1..].join(" · ")
    } else {
        m.dimensions.join(" · ")
    };
    html! {
        svg.chart.bars xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {height}"))
            role="img" aria-labelledby=(format!("c-{}", m.id)) {
            title #(format!("c-{}", m.id)) { (m.title) ": " (share_of) " (%)" }
            text.axis-title x="0" y="12" { (dims.replace('_', " ")) }
            text.axis-title x=(W) y="12" text-anchor="end" { "%" }
            @for t in ticks(scale) {
                @let x = BAR_X + bar_w * t / scale;
                line.grid x1=(f1(x)) x2=(f1(x)) y1=(f1(TOP - 2.0)) y2=(f1(axis_y)) {}
                text.tick x=(f1(x)) y=(f1(axis_y + 14.0)) text-anchor="middle" { (pct_tick(t)) }
            }
            @for (i, row) in rows.iter().enumerate() {
                @let y = TOP + i as f64 * ROW_H;
                @match row {
                    BarRow::Heading(g) => {
                        text.group x="0" y=(f1(y + 14.0)) { (g) }
                    }
                    BarRow::Bar { label, share, muted } => {
                        g {
                            title { (label) ": " (pct(*share)) }
                            text.label x=(f1(LABEL_W)) y=(f1(y + 14.0)) text-anchor="end" { (truncate(label, LABEL_CHARS)) }
                            rect class=(if *muted { "bar muted" } else { "bar" }) x=(f1(BAR_X)) y=(f1(y + 3.0))
                                width=(f1((bar_w * share / scale).max(0.5))) height="14" {}
                            text.value x=(f1(W)) y=(f1(y + 14.0)) text-anchor="end" { (pct(*share)) }
                        }
                    }
                }
            }
            line.axis x1=(f1(BAR_X)) x2=(f1(BAR_X + bar_w)) y1=(f1(axis_y)) y2=(f1(axis_y)) {}
            text.axis-title x=(f1(BAR_X + bar_w / 2.0)) y=(f1(axis_y + 34.0)) text-anchor="middle" { (share_of) " (%)" }
        }
    }
}

/// A chart label for a cell's labels: refinements repeat their parent (`1.37`, `1.37.2`), so a
/// label that the next one starts with is left out, and `other other` is `other`.
fn label_of(labels: &[&str]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let next = labels.get(i + 1);
        if next.is_some_and(|n| n.starts_with(l) && !l.is_empty()) {
            continue;
        }
        parts.push(l);
    }
    parts.join(" ")
}

// ---- Over time ----

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
            @for (id, caption) in OVER_TIME {
                @if let Some(series) = p.series.iter().find(|s| s.id == id) {
                    (series_section(series, caption))
                }
            }
        }
    }
}

/// One line of a series: a label and its share on each date (`None`: not published then).
struct Line<'a> {
    label: &'a str,
    points: Vec<Option<f64>>,
}

fn lines(series: &Series) -> Vec<Line<'_>> {
    // Rows are `date, label, count, share`: single-dimension metrics only.
    let n = series.dates.len();
    let mut out: Vec<Line<'_>> = Vec::new();
    for row in &series.rows {
        let (Some(date), Some(label), Some(share)) = (
            row.first().and_then(Value::as_str),
            row.get(1).and_then(Value::as_str),
            row.get(3).and_then(Value::as_f64),
        ) else {
            continue;
        };
        let Some(i) = series.dates.iter().position(|d| d.to_string() == date) else {
            continue;
        };
        let line = match out.iter_mut().position(|l| l.label == label) {
            Some(j) => &mut out[j],
            None => {
                out.push(Line {
                    label,
                    points: vec![None; n],
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        line.points[i] = Some(share);
    }
    // Largest on the latest date first; `other` and `unknown` last.
    let latest = |l: &Line<'_>| {
        l.points
            .iter()
            .rev()
            .flatten()
            .next()
            .copied()
            .unwrap_or(0.0)
    };
    out.sort_by(|a, b| {
        let rank = |l: &Line<'_>| u8::from(matches!(l.label, "other" | "unknown"));
        rank(a)
            .cmp(&rank(b))
            .then(latest(b).total_cmp(&latest(a)))
            .then(a.label.cmp(b.label))
    });
    out
}

const COLORS: usize = 8;

fn color_class(i: usize, label: &str) -> String {
    match label {
        "other" | "unknown" => "muted".into(),
        _ if i < COLORS => format!("c{i}"),
        _ => "muted".into(),
    }
}

const LW: f64 = 360.0;
const LH: f64 = 210.0;
const L_LEFT: f64 = 40.0;
const L_RIGHT: f64 = 24.0;
const L_TOP: f64 = 10.0;
const L_BOTTOM: f64 = 46.0;

fn series_section(series: &Series, caption: &str) -> Markup {
    let lines = lines(series);
    let dates = &series.dates;
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().flatten())
        .fold(0.0, |a: f64, b| a.max(*b));
    let scale = nice_ceiling(max);
    let plot_w = LW - L_LEFT - L_RIGHT;
    let plot_h = LH - L_TOP - L_BOTTOM;
    let x = |i: usize| {
        if dates.len() <= 1 {
            L_LEFT + plot_w / 2.0
        } else {
            L_LEFT + plot_w * i as f64 / (dates.len() - 1) as f64
        }
    };
    let y = |share: f64| L_TOP + plot_h * (1.0 - share / scale);
    // At most six date labels, the newest always among them.
    let every = dates.len().div_ceil(6).max(1);
    let labelled: Vec<usize> = (0..dates.len())
        .filter(|i| (dates.len() - 1 - i).is_multiple_of(every))
        .collect();
    let id = &series.id;
    html! {
        section.series #(format!("over-time-{id}")) aria-labelledby=(format!("h-over-time-{id}")) {
            h3 #(format!("h-over-time-{id}")) { (caption) }
            p.meta {
                (dates.len()) " snapshots, " (dates.first().map(ToString::to_string).unwrap_or_default())
                " to " (dates.last().map(ToString::to_string).unwrap_or_default()) ". Download "
                a href=(format!("series/{id}.csv")) { "CSV" } ", "
                a href=(format!("series/{id}.json")) { "JSON" } "."
            }
            figure.chart {
                svg.chart.lines xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {LW} {LH}"))
                    role="img" aria-labelledby=(format!("c-over-time-{id}")) {
                    title #(format!("c-over-time-{id}")) { (caption) ", by snapshot date (%)" }
                    @for t in ticks(scale) {
                        line.grid x1=(f1(L_LEFT)) x2=(f1(LW - L_RIGHT)) y1=(f1(y(t))) y2=(f1(y(t))) {}
                        text.tick x=(f1(L_LEFT - 4.0)) y=(f1(y(t) + 4.0)) text-anchor="end" { (pct_tick(t)) }
                    }
                    line.axis x1=(f1(L_LEFT)) x2=(f1(LW - L_RIGHT)) y1=(f1(y(0.0))) y2=(f1(y(0.0))) {}
                    @for i in &labelled {
                        text.tick x=(f1(x(*i))) y=(f1(LH - L_BOTTOM + 16.0)) text-anchor="middle" {
                            (dates[*i].strftime("%b %-d").to_string())
                        }
                    }
                    text.axis-title x=(f1(L_LEFT + plot_w / 2.0)) y=(f1(LH - 8.0)) text-anchor="middle" { "snapshot date" }
                    text.axis-title transform=(format!("translate(11 {}) rotate(-90)", f1(L_TOP + plot_h / 2.0))) text-anchor="middle" { "% of clusters" }
                    @for (n, line) in lines.iter().enumerate() {
                        @let class = color_class(n, line.label);
                        g class=(format!("series-line {class}")) {
                            title { (line.label) }
                            path d=(path_of(&line.points, &x, &y)) {}
                            @for (i, p) in line.points.iter().enumerate() {
                                @if let Some(p) = p {
                                    circle cx=(f1(x(i))) cy=(f1(y(*p))) r="2.5" {}
                                }
                            }
                        }
                    }
                }
                figcaption {
                    ul.legend {
                        @for (n, line) in lines.iter().enumerate() {
                            li {
                                span class=(format!("swatch {}", color_class(n, line.label))) aria-hidden="true" {}
                                (line.label) " "
                                span.latest { (share_text(line.points.last().copied().flatten())) }
                            }
                        }
                    }
                }
            }
            p.table-note { "Share of clusters on each snapshot date (—: not published that week)." }
            div.table-wrap role="region" aria-label=(format!("{caption}: numbers")) tabindex="0" {
                table.numbers.over-time {
                    caption.visually-hidden { (caption) ", share of clusters on each snapshot date" }
                    thead {
                        tr {
                            th scope="col" { "date" }
                            @for line in &lines { th.num scope="col" { (line.label) } }
                        }
                    }
                    tbody {
                        @for (i, d) in dates.iter().enumerate().rev() {
                            tr {
                                th scope="row" { (d) }
                                @for line in &lines { td.num { (share_text(line.points[i])) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An SVG path through the published points, broken where a point is missing.
fn path_of(points: &[Option<f64>], x: &dyn Fn(usize) -> f64, y: &dyn Fn(f64) -> f64) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(p) => {
                let cmd = if pen_down { 'L' } else { 'M' };
                if !d.is_empty() {
                    d.push(' ');
                }
                d.push_str(&format!("{cmd}{} {}", f1(x(i)), f1(y(*p))));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d
}

// ---- Methodology ----

/// Weekly snapshots in a year, for the composition the methodology page states.
const YEAR_OF_WEEKS: u32 = 52;

/// The methodology page: how the numbers of the newest snapshot are made, with its parameters
/// and its noise as the published files state them.
pub fn render_methodology(published: &Published, options: &Options) -> String {
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

// ---- Numbers ----

/// The smallest of a few round shares at or above `max` (at least 10%).
fn nice_ceiling(max: f64) -> f64 {
    [0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.8, 1.0]
        .into_iter()
        .find(|v| max <= *v + 1e-9)
        .unwrap_or(1.0)
}

fn ticks(scale: f64) -> [f64; 3] {
    [0.0, scale / 2.0, scale]
}

fn f1(v: f64) -> String {
    // One decimal is finer than a pixel; trailing `.0` is dropped to keep the page small.
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// A privacy parameter or σ: three significant digits, without trailing zeros.
fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A small number such as δ in scientific notation: `10⁻⁷`, `5.2 × 10⁻⁶`.
fn sci(v: f64) -> Markup {
    if v <= 0.0 || !v.is_finite() {
        return html! { (v) };
    }
    let mut exponent = v.log10().floor() as i32;
    let mut mantissa = (v / 10f64.powi(exponent) * 10.0).round() / 10.0;
    if mantissa >= 10.0 {
        mantissa /= 10.0;
        exponent += 1;
    }
    let power = html! { "10" sup { (exponent.to_string().replace('-', "−")) } };
    html! {
        @if (mantissa - 1.0).abs() < 1e-9 { (power) } @else { (sig(mantissa)) " × " (power) }
    }
}

fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn pct_tick(share: f64) -> String {
    let v = share * 100.0;
    if (v - v.round()).abs() < 1e-9 {
        format!("{}%", v.round())
    } else {
        format!("{v:.1}%")
    }
}

/// A share as the tables show it: one decimal of a percent, `—` when there is none.
pub fn share_text(share: Option<f64>) -> String {
    share.map_or_else(|| "—".into(), pct)
}

fn total(v: Option<u64>) -> String {
    v.map_or_else(|| "withheld".into(), thousands)
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn refinements_do_not_repeat_their_parent_in_chart_labels() {
        assert_eq!(label_of(&["1.37", "1.37.2"]), "1.37.2");
        assert_eq!(label_of(&["1.37", "other"]), "1.37 other");
        assert_eq!(label_of(&["other", "other"]), "other");
        assert_eq!(label_of(&["Ubuntu", "24.04"]), "Ubuntu 24.04");
        assert_eq!(label_of(&["yes", "11-100"]), "yes 11-100");
    }

    #[test]
    fn scales_are_round_and_hold_the_largest_share() {
        assert_eq!(nice_ceiling(0.0), 0.1);
        assert_eq!(nice_ceiling(0.21), 0.25);
        assert_eq!(nice_ceiling(0.5), 0.5);
        assert_eq!(nice_ceiling(0.97), 1.0);
        assert_eq!(pct_tick(0.125), "12.5%");
        assert_eq!(pct_tick(0.5), "50%");
    }

    #[test]
    fn privacy_parameters_have_three_significant_digits_and_delta_a_power_of_ten() {
        assert_eq!(sig(0.049998), "0.05");
        assert_eq!(sig(1.884), "1.88");
        assert_eq!(sig(14.17), "14.2");
        assert_eq!(sig(0.000962), "0.000962");
        assert_eq!(sig(638.499), "638");
        assert_eq!(sig(0.0), "0");
        assert_eq!(sci(1e-7).into_string(), "10<sup>−7</sup>");
        assert_eq!(sci(6e-7).into_string(), "6 × 10<sup>−7</sup>");
        assert_eq!(sci(5.2e-6).into_string(), "5.2 × 10<sup>−6</sup>");
        assert_eq!(sci(9.99e-7).into_string(), "10<sup>−6</sup>");
    }

    #[test]
    fn a_missing_point_breaks_the_line() {
        let d = path_of(
            &[Some(0.5), None, Some(0.25), Some(0.0)],
            &|i| i as f64 * 10.0,
            &|s| 100.0 * s,
        );
        assert_eq!(d, "M0 50 M20 25 L30 0");
    }
}
