//! One metric's published cells as a horizontal bar chart (inline SVG).

use maud::{Markup, html};

use super::cells::Cell;
use super::format::{f1, pct, pct_tick, truncate};
use super::scale::{nice_ceiling, ticks};
use crate::snapshot::MetricDoc;

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

/// The bars of a published metric's cells, in their order (a grouped metric's under a heading
/// per group).
pub(super) fn bar_chart(m: &MetricDoc, cells: &[Cell<'_>]) -> Markup {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refinements_do_not_repeat_their_parent_in_chart_labels() {
        assert_eq!(label_of(&["1.37", "1.37.2"]), "1.37.2");
        assert_eq!(label_of(&["1.37", "other"]), "1.37 other");
        assert_eq!(label_of(&["other", "other"]), "other");
        assert_eq!(label_of(&["Ubuntu", "24.04"]), "Ubuntu 24.04");
        assert_eq!(label_of(&["yes", "11-100"]), "yes 11-100");
    }
}
