//! The dashboard: one HTML page and its stylesheet, drawn from the published files alone.
//!
//! [`render`] is a pure function from the published documents (`snapshot.json` of the newest
//! snapshot, `index.json`, and the `series/ID.json` drawn over time) to HTML. It decides
//! nothing about privacy: it shows exactly the cells the files hold, `other`, `unknown` and
//! withheld metrics included (`disclose` alone decides what is published). Markup comes from
//! maud's templates, which escape every value; charts are inline SVG written the same way; the
//! page needs no JavaScript and loads nothing but its own stylesheet, so it works under a
//! Content-Security-Policy that forbids every other origin.
//!
//! [`publish`] reads the files, renders, and writes `index.html` and `dashboard.css` beside
//! them when they changed.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::output::{Index, Latest, Output, OutputError, Series, write_atomic};
use crate::snapshot::{MetricDoc, Snapshot};

/// The page's file name in the published directory.
pub const PAGE: &str = "index.html";
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
}

/// What the page says beyond the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Where the privacy summary links to (the README section "Statistics: what is published,
    /// and what cannot be" of the operator's copy of the source); `None`: the published
    /// `SCHEMA.md`.
    pub privacy_url: Option<String>,
}

/// Reads the newest snapshot, the index and the series from `output`; `None` when nothing is
/// published yet.
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
    Ok(Some(Published {
        snapshot,
        index,
        series,
    }))
}

/// Renders the page of what `output` holds and writes it with its stylesheet, each only if it
/// changed. Returns whether a page exists now.
pub fn publish(output: &Output, options: &Options) -> Result<bool, OutputError> {
    let Some(published) = read(output)? else {
        return Ok(false);
    };
    let html = render(&published, options);
    write_if_changed(output, STYLESHEET, CSS.as_bytes())?;
    write_if_changed(output, PAGE, html.as_bytes())?;
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
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light";
                title { (title) }
                link rel="stylesheet" href=(STYLESHEET);
                // No favicon request: the page loads nothing but its stylesheet.
                link rel="icon" href="data:,";
            }
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
                (footer(s))
            }
        }
    };
    page.into_string()
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
    let k = s.privacy.min_clusters;
    let privacy_href = options.privacy_url.as_deref().unwrap_or("SCHEMA.md");
    let schema = find(s, "clusters_by_schema_version");
    let share_of = |label: &str| {
        schema
            .into_iter()
            .flat_map(cells)
            .find(|c| c.labels == [label])
            .and_then(|c| c.share)
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
                "; each cluster counts once, by its latest report."
            }
            @if s.synthetic_included {
                p.notice.synthetic role="note" {
                    strong { "Synthetic data. " }
                    "This snapshot includes reports marked "
                    code { "spartakus.dev/synthetic=true" }
                    ": a generated demonstration population, not real clusters."
                }
            }
            dl.facts {
                div { dt { "Snapshot" } dd { (s.date) } }
                div { dt { "Window" } dd { (s.window.days) " days" } }
                div { dt { abbr title="the fewest distinct clusters any number counts" { "k" } } dd { (k) } }
                div { dt { "Clusters" } dd.total-clusters { (total(s.totals.clusters)) } }
                div { dt { "Reports" } dd.total-reports { (total(s.totals.reports)) } }
                div { dt { "Nodes" } dd.total-nodes { (total(s.totals.nodes)) } }
                div { dt { "Snapshots kept" } dd { (p.index.snapshots.len()) } }
            }
            div.explain {
                section #privacy aria-labelledby="h-privacy" {
                    h2 #h-privacy { "Privacy: no number here singles out a cluster" }
                    p {
                        "Every number on this page counts at least " strong { "k = " (k) } " distinct clusters. "
                        "Smaller groups are folded into " code { "other" } ", and more are folded until "
                        code { "other" } " counts at least " (k) " too, so no hidden number can be worked out "
                        "by subtracting shown ones. A node count is shown only if no single cluster holds "
                        "more than half of it. No cluster, node or report identifier, no extension and no "
                        "time finer than a day is published. "
                        a href=(privacy_href) { "What is published, and what cannot be" }
                    }
                }
                section #terms aria-labelledby="h-terms" {
                    h2 #h-terms { "Reading the numbers" }
                    dl.terms {
                        dt { code { "other" } }
                        dd { "Several groups folded together (each too small to show, or values not on the list of names that may be published). They are not told apart." }
                        dt { code { "unknown" } }
                        dd { "The reports did not say (a field left out, or the volunteer not allowed to count it)." }
                        dt { "withheld" }
                        dd { "The whole metric counts fewer than " (k) " clusters (or one cluster holds most of its nodes), so none of it is shown." }
                        dt { code { "v1" } }
                        dd { "Sent in the original report format, which has no namespaces or workloads." }
                        dt { "Shares" }
                        dd { "Of the metric's total (of the workload kind's, where grouped by kind), rounded." }
                    }
                }
                section #quality aria-labelledby="h-quality" {
                    h2 #h-quality { "Data quality" }
                    ul {
                        li { (total(s.totals.reports)) " reports from " (total(s.totals.clusters)) " clusters in the window." }
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
                    }
                }
            }
        }
    }
}

fn footer(s: &Snapshot) -> Markup {
    html! {
        footer {
            p {
                "All files: "
                a href="latest.json" { "latest.json" } ", "
                a href="index.json" { "index.json" } " (every snapshot), "
                a href=(format!("snapshots/{}/snapshot.json", s.date)) { "this snapshot" } ", "
                a href="series/totals.csv" { "totals over time" } ". Every file and column is described in "
                a href="SCHEMA.md" { "SCHEMA.md" } " (format " code { (s.format) } " version " (s.format_version) ")."
            }
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
            @if published && !cells.is_empty() {
                figure.chart {
                    (bar_chart(m, &cells))
                }
            } @else if published {
                p.notice { "No cells: the reports in the window say nothing about this." }
            } @else {
                p.notice.withheld {
                    strong { "Withheld. " }
                    "Fewer than " (s.privacy.min_clusters) " clusters in total (or one cluster with most of the nodes): nothing of this metric is published."
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
                "A line has a gap where its value was not published that week (too few clusters to "
                "show alone); it was then counted in " code { "other" } "."
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
    fn a_missing_point_breaks_the_line() {
        let d = path_of(
            &[Some(0.5), None, Some(0.25), Some(0.0)],
            &|i| i as f64 * 10.0,
            &|s| 100.0 * s,
        );
        assert_eq!(d, "M0 50 M20 25 L30 0");
    }
}
