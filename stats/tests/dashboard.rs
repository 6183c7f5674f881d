//! The dashboard page is a contract too: a golden file (`stats/testdata/golden/dashboard.html`,
//! regenerated with `SPARTAKUS_BLESS=1`) drawn from a fixed published directory (six weekly
//! snapshots of fixed raw cells), and the properties every page must have whatever the data.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use stats::dashboard::{self, Options};
use rand::SeedableRng;
use rand::rngs::StdRng;
use stats::disclose::{Raw, RawCell, RawTotals, disclose};
use stats::privacy::Budget;

/// The defaults, with a lower floor for the small fixture.
const BUDGET: Budget = Budget {
    rho: 0.05,
    delta: 1e-7,
    min_clusters: 10,
    node_clip: 20,
    report_clip: 28,
};
use stats::output::Output;
use stats::snapshot::Snapshot;
use stats::store::Window;

fn cell(labels: &[&str], clusters: u64) -> RawCell {
    RawCell {
        labels: labels.iter().map(|s| s.to_string()).collect(),
        clusters,
        nodes: None,
    }
}

fn node_cell(labels: &[&str], clusters: u64, nodes: u64, _max: u64) -> RawCell {
    RawCell {
        nodes: Some(nodes),
        ..cell(labels, clusters)
    }
}

/// Week `w` (0 = oldest) of a population that moves from 1.35 to 1.37.
fn raw(w: u64) -> Raw {
    let mut raw = Raw {
        totals: RawTotals {
            clusters: 120,
            reports: 480 + w,
            nodes: 1_450,
        },
        ..Raw::default()
    };
    let mut put = |id: &str, cells: Vec<RawCell>| {
        raw.cells.insert(id.into(), cells);
    };
    put(
        "clusters_by_kubernetes_minor",
        vec![
            cell(&["1.37"], 4 + 8 * w),
            cell(&["1.36"], 50),
            cell(&["1.35"], 60 - 8 * w),
            cell(&["1.34"], 3),
            cell(&["unknown"], 3),
        ],
    );
    put(
        "clusters_by_kubernetes_patch",
        vec![
            cell(&["1.37", "1.37.2"], 4 + 8 * w),
            cell(&["1.36", "1.36.4"], 38),
            cell(&["1.36", "1.36.1"], 12),
            cell(&["1.35", "1.35.9"], 60 - 8 * w),
            cell(&["1.34", "1.34.0"], 3),
            cell(&["unknown", "unknown"], 3),
        ],
    );
    put(
        "clusters_by_os",
        vec![
            cell(&["Ubuntu"], 70),
            cell(&["COS"], 30),
            cell(&["Bottlerocket"], 14),
            cell(&["Flatcar"], 6),
        ],
    );
    put(
        "nodes_by_os",
        vec![
            node_cell(&["Ubuntu"], 70, 900, 60),
            node_cell(&["COS"], 30, 400, 40),
            node_cell(&["Bottlerocket"], 14, 120, 20),
            node_cell(&["Flatcar"], 6, 30, 10),
        ],
    );
    put(
        "clusters_by_runtime",
        vec![cell(&["containerd"], 110 - w), cell(&["cri-o"], 10 + w)],
    );
    put(
        "clusters_using_workload_kind",
        vec![
            cell(&["Pod", "yes"], 100),
            cell(&["Pod", "v1"], 20),
            cell(&["Job", "yes"], 40),
            cell(&["Job", "no"], 60),
            cell(&["Job", "v1"], 20),
        ],
    );
    raw
}

const DATES: [&str; 6] = [
    "2026-10-25",
    "2026-11-01",
    "2026-11-08",
    "2026-11-15",
    "2026-11-22",
    "2026-11-29",
];

/// The published directory of the six weeks, with its page.
fn published() -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let out = Output::new(dir.path());
    for (w, date) in DATES.iter().enumerate() {
        let window = Window {
            date: date.parse().unwrap(),
            days: 28,
        };
        let d = disclose(&raw(w as u64), &BUDGET, &mut StdRng::seed_from_u64(w as u64));
        let snapshot = Snapshot::new(window, true, &d);
        out.publish(&snapshot).unwrap();
    }
    assert!(dashboard::publish(&out, &Options::default()).unwrap());
    (dir, out)
}

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden/dashboard.html")
}

#[test]
fn the_page_matches_the_golden_file() {
    let (dir, _) = published();
    let got = std::fs::read_to_string(dir.path().join(dashboard::PAGE)).unwrap();
    if std::env::var_os("SPARTAKUS_BLESS").is_some() {
        std::fs::write(golden(), &got).unwrap();
    }
    let want = std::fs::read_to_string(golden()).unwrap_or_default();
    assert!(
        got == want,
        "index.html differs from stats/testdata/golden/dashboard.html; run with SPARTAKUS_BLESS=1 and review the diff"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(dashboard::STYLESHEET)).unwrap(),
        dashboard::CSS
    );
}

#[test]
fn every_metric_has_a_section_with_a_chart_or_a_withheld_notice_and_its_numbers() {
    let (dir, out) = published();
    let html = std::fs::read_to_string(dir.path().join(dashboard::PAGE)).unwrap();
    let snapshot = out.read(DATES[5].parse().unwrap()).unwrap();
    let mut withheld = 0;
    for m in &snapshot.metrics {
        let start = html
            .find(&format!(r#"<section class="metric" id="{}""#, m.id))
            .unwrap_or_else(|| panic!("no section for {}", m.id));
        let end = html[start..].find("</section>").unwrap() + start;
        let section = &html[start..end];
        assert!(section.contains("<table class=\"numbers\">"), "{}", m.id);
        assert!(
            section.contains(&format!("href=\"snapshots/2026-11-29/{}.csv\"", m.id)),
            "{}",
            m.id
        );
        if m.status == "published" && m.rows.is_empty() {
            assert!(section.contains("No cells"), "{}", m.id);
        } else if m.status == "published" {
            assert!(section.contains("<svg class=\"chart bars\""), "{}", m.id);
            // Every cell's count is in the table, `other` included.
            for row in &m.rows {
                let count = row[m.dimensions.len()].as_u64().unwrap();
                assert!(
                    section.contains(&format!(
                        "<td class=\"num\">{}</td>",
                        dashboard::thousands(count)
                    )),
                    "{}: {row:?}",
                    m.id
                );
            }
        } else {
            withheld += 1;
            assert!(section.contains("Withheld."), "{}", m.id);
            assert!(!section.contains("<svg"), "{}", m.id);
        }
    }
    assert!(withheld > 0, "the fixture has withheld metrics");
    for (id, _) in dashboard::OVER_TIME {
        let start = html
            .find(&format!("id=\"over-time-{id}\""))
            .unwrap_or_else(|| panic!("no series of {id}"));
        let section = &html[start..];
        assert!(section.contains("<svg class=\"chart lines\""), "{id}");
        assert!(section.contains("<ul class=\"legend\">"), "{id}");
    }
    // 1.37 grows from 4 of 120 clusters (folded: below k) to 44; its line starts in week 2.
    assert!(html.contains("<th scope=\"row\">2026-10-25</th>"));
}

#[test]
fn the_page_loads_nothing_and_runs_nothing() {
    let (dir, _) = published();
    let html = std::fs::read_to_string(dir.path().join(dashboard::PAGE)).unwrap();
    assert!(!html.contains("<script"), "no JavaScript");
    // Inline styles would need 'unsafe-inline' in the Content-Security-Policy.
    assert!(!html.contains(" style="), "no inline style");
    assert!(!html.contains("<img"), "no images");
    for url in html.split("href=\"").skip(1) {
        let url = &url[..url.find('"').unwrap()];
        assert!(
            !url.contains("//") && !url.contains(':') || url == "data:,",
            "a link or resource elsewhere: {url}"
        );
    }
    // Only the SVG namespace is an absolute URL, and it is never fetched.
    let absolute: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 30).min(html.len())])
        .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
        .collect();
    assert!(absolute.is_empty(), "{absolute:?}");
}

#[test]
fn a_synthetic_snapshot_says_so_and_a_real_one_does_not() {
    let (dir, _) = published();
    let html = std::fs::read_to_string(dir.path().join(dashboard::PAGE)).unwrap();
    assert!(html.contains("Synthetic data."));

    let dir = tempfile::tempdir().unwrap();
    let out = Output::new(dir.path());
    let window = Window {
        date: DATES[5].parse().unwrap(),
        days: 28,
    };
    out.publish(&Snapshot::new(
        window,
        false,
        &disclose(&raw(5), &BUDGET, &mut StdRng::seed_from_u64(5)),
    ))
    .unwrap();
    let page = dashboard::render(
        &dashboard::read(&out).unwrap().unwrap(),
        &Options {
            privacy_url: Some("https://docs.example.org/spartakus#statistics".into()),
        },
    );
    assert!(!page.contains("Synthetic data."));
    assert!(page.contains("href=\"https://docs.example.org/spartakus#statistics\""));
}

#[test]
fn nothing_published_means_no_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = Output::new(dir.path());
    assert!(!dashboard::publish(&out, &Options::default()).unwrap());
    assert!(!dir.path().join(dashboard::PAGE).exists());
}
