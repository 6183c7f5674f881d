//! A metric's shares over every kept snapshot as a line chart (inline SVG), with its table.

use maud::{Markup, html};
use serde_json::Value;

use super::format::{f1, pct_tick, share_text};
use super::scale::{nice_ceiling, ticks};
use crate::output::Series;

/// One line of a series: a label and its share on each date (`None`: not published then).
struct Line<'a> {
    label: &'a str,
    points: Vec<Option<f64>>,
}

/// The series' lines: largest on the latest date first, `other` and `unknown` last.
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

/// Lines with a colour of their own (classes `c0`..`c7` in the stylesheet).
const COLORS: usize = 8;

/// The colour of line `i`: the first few get their own, the rest and `other` are muted.
fn color_class(i: usize, label: &str) -> String {
    match label {
        "other" | "unknown" => "muted".into(),
        _ if i < COLORS => format!("c{i}"),
        _ => "muted".into(),
    }
}

/// Chart geometry (SVG user units; the chart scales to the page's width).
const LW: f64 = 360.0;
const LH: f64 = 210.0;
const L_LEFT: f64 = 40.0;
const L_RIGHT: f64 = 24.0;
const L_TOP: f64 = 10.0;
const L_BOTTOM: f64 = 46.0;

/// A series drawn as lines, one per value, with its numbers in a table beside it.
pub(super) fn series_section(series: &Series, caption: &str) -> Markup {
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

#[cfg(test)]
mod tests {
    use super::*;

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
