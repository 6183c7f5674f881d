//! The dashboard's pages are a contract too: golden files (`stats/testdata/golden/dashboard.html`
//! and `methodology.html`, regenerated with `SPARTAKUS_BLESS=1`) drawn from a fixed published
//! directory (six weekly snapshots of fixed raw cells, seeded noise, and their ledger), and the
//! properties every page must have whatever the data.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use stats::dashboard::{self, Options};
use stats::disclose::{Raw, RawCell, RawTotals, disclose};
use stats::ledger::Ledger;
use stats::metrics::METRICS;
use stats::privacy::{Budget, Guarantee};
use stats::snapshot::{LICENSE, LICENSE_URL};

/// The defaults.
const BUDGET: Budget = Budget::DEFAULT;
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

/// The published directory of the six weeks, with their ledger and the pages.
fn published() -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let out = Output::new(dir.path());
    let mut ledger = Ledger::new();
    for (w, date) in DATES.iter().enumerate() {
        let window = Window {
            date: date.parse().unwrap(),
            days: 28,
        };
        let d = disclose(
            &raw(w as u64),
            &BUDGET,
            &mut StdRng::seed_from_u64(w as u64),
        );
        let snapshot = Snapshot::new(window, true, &d);
        out.publish(&snapshot).unwrap();
        let at = format!("{date}T06:00:00Z").parse().unwrap();
        ledger.record(window.date, at, &d.guarantee);
    }
    ledger.save(&out).unwrap();
    assert!(dashboard::publish(&out, &Options::default()).unwrap());
    (dir, out)
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(name)
}

/// Compares a page with its golden file (rewritten first under `SPARTAKUS_BLESS`).
fn assert_golden(dir: &Path, page: &str, golden_name: &str) {
    let got = std::fs::read_to_string(dir.join(page)).unwrap();
    if std::env::var_os("SPARTAKUS_BLESS").is_some() {
        std::fs::write(golden(golden_name), &got).unwrap();
    }
    let want = std::fs::read_to_string(golden(golden_name)).unwrap_or_default();
    assert!(
        got == want,
        "{page} differs from stats/testdata/golden/{golden_name}; run with SPARTAKUS_BLESS=1 and review the diff"
    );
}

#[test]
fn the_pages_match_the_golden_files() {
    let (dir, _) = published();
    assert_golden(dir.path(), dashboard::PAGE, "dashboard.html");
    assert_golden(dir.path(), dashboard::METHODOLOGY, "methodology.html");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(dashboard::STYLESHEET)).unwrap(),
        dashboard::CSS
    );
}

/// The section of `html` that starts at `start` and ends at its first `</section>`.
fn section<'a>(html: &'a str, start: &str) -> &'a str {
    let i = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the page"));
    let end = html[i..].find("</section>").unwrap() + i;
    &html[i..end]
}

#[test]
fn every_metric_has_a_section_with_a_chart_its_noise_and_its_numbers() {
    let (dir, out) = published();
    let html = std::fs::read_to_string(dir.path().join(dashboard::PAGE)).unwrap();
    let snapshot = out.read(DATES[5].parse().unwrap()).unwrap();
    let (mut thresholds, mut derived, mut nodes) = (0, 0, 0);
    for m in &snapshot.metrics {
        let section = section(&html, &format!(r#"<section class="metric" id="{}""#, m.id));
        assert!(section.contains("<table class=\"numbers\">"), "{}", m.id);
        assert!(
            section.contains(&format!("href=\"snapshots/2026-11-29/{}.csv\"", m.id)),
            "{}",
            m.id
        );
        assert_eq!(m.status, "published", "{}: the fixture publishes all", m.id);
        // The noise beside the numbers, as the file states it.
        assert!(
            section.contains(&format!(
                "<strong>± about {} {}</strong> on each count (95 %).",
                dashboard::thousands(m.noise.typical_error),
                m.unit
            )),
            "{}: {section}",
            m.id
        );
        // The floor a cell must reach to be published alone: every published cell does.
        let floor = m.noise.floor;
        assert!(floor >= snapshot.privacy.min_clusters);
        for row in &m.rows {
            let labels = &row[..m.dimensions.len()];
            if labels.last().and_then(|l| l.as_str()) != Some("other") {
                let count = row[m.dimensions.len()].as_u64().unwrap();
                assert!(count >= floor, "{}: {row:?} below the floor {floor}", m.id);
            }
        }
        let floor = dashboard::thousands(floor);
        if let Some(t) = m.noise.threshold {
            thresholds += 1;
            assert!(
                section.contains(&format!(
                    "A value is shown only when its noisy count reaches {} and its count is at least {floor} \
                     (the floor: at least 10 and twice the noise's σ); otherwise it is in <code>other</code>.",
                    dashboard::thousands(t)
                )),
                "{}: {section}",
                m.id
            );
        } else {
            assert!(!section.contains("reaches"), "{}", m.id);
            assert!(
                section.contains(&format!(
                    "A value whose count is below {floor} (the floor: at least 10 and twice the \
                     noise's σ) is in <code>other</code>."
                )),
                "{}: {section}",
                m.id
            );
        }
        if let Some(from) = &m.noise.derived_from {
            derived += 1;
            assert!(
                section.contains(&format!(
                    "Each count is the sum of the noisy counts of <a href=\"#{from}\">"
                )),
                "{}",
                m.id
            );
        }
        if m.unit == "nodes" {
            nodes += 1;
            assert!(
                section.contains("Each cluster counts at most 20 nodes"),
                "{}",
                m.id
            );
        } else {
            assert!(!section.contains("counts at most"), "{}", m.id);
        }
        if m.rows.is_empty() {
            assert!(section.contains("No cells"), "{}", m.id);
            continue;
        }
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
    }
    assert!(
        thresholds > 0 && derived > 0 && nodes > 0,
        "the fixture has open-domain, derived and node metrics"
    );
    for id in METRICS
        .iter()
        .filter(|m| m.over_time.is_some())
        .map(|m| m.id)
    {
        let start = html
            .find(&format!("id=\"over-time-{id}\""))
            .unwrap_or_else(|| panic!("no series of {id}"));
        let section = &html[start..];
        assert!(section.contains("<svg class=\"chart lines\""), "{id}");
        assert!(section.contains("<ul class=\"legend\">"), "{id}");
    }
    assert!(html.contains("<th scope=\"row\">2026-10-25</th>"));
}

/// A page of one snapshot of `raw` under `budget`, without a ledger.
fn page_of(raw: &Raw, budget: &Budget) -> (Snapshot, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Output::new(dir.path());
    let window = Window {
        date: DATES[5].parse().unwrap(),
        days: 28,
    };
    let snapshot = Snapshot::new(
        window,
        false,
        &disclose(raw, budget, &mut StdRng::seed_from_u64(7)),
    );
    out.publish(&snapshot).unwrap();
    let page = dashboard::render(
        &dashboard::read(&out).unwrap().unwrap(),
        &Options::default(),
    );
    (snapshot, page)
}

#[test]
fn a_withheld_metric_says_why_and_draws_nothing() {
    // A large budget keeps the noise on the totals small, so the fixture is withheld for sure.
    let budget = Budget {
        rho: 1000.0,
        ..BUDGET
    };
    // Too few clusters: every metric is withheld.
    let mut few = raw(5);
    few.totals.clusters = 3;
    // Clusters enough, but too few nodes: the node metrics are withheld.
    let mut nodeless = raw(5);
    nodeless.totals.nodes = 4;
    for (raw, withheld_units) in [
        (few, &["clusters", "nodes"][..]),
        (nodeless, &["nodes"][..]),
    ] {
        let (snapshot, html) = page_of(&raw, &budget);
        let mut withheld = 0;
        for m in &snapshot.metrics {
            let section = section(&html, &format!(r#"<section class="metric" id="{}""#, m.id));
            let expected = withheld_units.contains(&m.unit.as_str());
            assert_eq!(m.status == "withheld", expected, "{}", m.id);
            if !expected {
                assert!(!section.contains("Withheld."), "{}", m.id);
                continue;
            }
            withheld += 1;
            let why = if m.unit == "nodes" {
                "Fewer than 10 clusters, or 10 nodes, in the window (noisy counts)"
            } else {
                "Fewer than 10 clusters in the window (noisy count)"
            };
            assert!(section.contains("<strong>Withheld. </strong>"), "{}", m.id);
            assert!(section.contains(why), "{}: {section}", m.id);
            assert!(!section.contains("<svg"), "{}", m.id);
            assert!(section.contains("<tr class=\"withheld\">"), "{}", m.id);
        }
        assert!(withheld > 0);
    }
}

#[test]
fn the_header_states_the_guarantee_and_what_every_release_cost() {
    let (dir, out) = published();
    let html = std::fs::read_to_string(dir.path().join(dashboard::PAGE)).unwrap();
    let header = &html[..html.find("<main").unwrap()];
    let snapshot = out.read(DATES[5].parse().unwrap()).unwrap();
    assert_eq!(
        (snapshot.privacy.rho, snapshot.privacy.epsilon),
        (0.049998, 1.884),
        "the fixture's guarantee (the numbers below are written out)"
    );
    let privacy = section(header, "<section id=\"privacy\"");
    for said in [
        "Every number on this page has random noise added (discrete Gaussian)",
        "adding or removing any one cluster's reports",
        "changes the probability of anything on this page by at most the bound below",
        "<strong>ρ = 0.05</strong> (zero-concentrated DP)",
        "<strong>ε = 1.88 at δ = 10<sup>−7</sup></strong>",
        // The ledger: six releases of ρ 0.049998.
        "All 6 releases so far together (<a href=\"ledger.json\">ledger.json</a>): <strong>ρ = 0.3, ε = ",
        " at δ = 6 × 10<sup>−7</sup></strong>",
        "correlations in the world",
        "the collector's operator holds the raw reports",
        "<a href=\"methodology.html\">",
        "<a href=\"SCHEMA.md\">What is published, and what cannot be</a>",
    ] {
        assert!(
            privacy.contains(said),
            "the privacy text lacks {said:?}:\n{privacy}"
        );
    }
    let ledger = Ledger::load(&out).unwrap().unwrap();
    assert!(privacy.contains(&format!("ε = {:.2} at δ", ledger.cumulative.epsilon)));
    // The facts: ρ and ε beside the totals and their noise; no k.
    assert!(header.contains("<dd class=\"rho\">0.05</dd>"));
    assert!(header.contains("<dd class=\"epsilon\">1.88</dd>"));
    let clusters = &snapshot.privacy.totals[0];
    assert_eq!(clusters.total, "clusters");
    assert!(header.contains(&format!(
        "<dd class=\"total-clusters\">{}</dd><dd class=\"error\">± about {}</dd>",
        snapshot.totals.clusters.unwrap(),
        clusters.noise.typical_error
    )));
    for gone in [
        ">k<",
        "k = ",
        "dominance",
        "most of its nodes",
        "at least k",
    ] {
        assert!(!html.contains(gone), "the page still says {gone:?}");
    }
    // Reading the numbers: `other` holds what the noise did not let through.
    let terms = section(header, "<section id=\"terms\"");
    assert!(terms.contains(
        "below the metric's floor (at least 10 and twice its noise's σ), or that were not released"
    ));
    assert!(terms.contains("± about N"));
    // The footer names the licence.
    let footer = &html[html.find("<footer>").unwrap()..];
    assert!(footer.contains(&format!("<code>{LICENSE}</code>")));
    assert!(footer.contains(&format!("href=\"{LICENSE_URL}\"")));
    assert!(footer.contains("href=\"LICENSE.txt\""));
}

#[test]
fn the_methodology_page_is_linked_and_states_the_guarantee_its_split_and_the_licence() {
    let (dir, out) = published();
    let html = std::fs::read_to_string(dir.path().join(dashboard::PAGE)).unwrap();
    let header = &html[..html.find("<main").unwrap()];
    assert!(
        header.contains("<a href=\"methodology.html\">"),
        "linked from the header"
    );
    let page = std::fs::read_to_string(dir.path().join(dashboard::METHODOLOGY)).unwrap();
    let snapshot = out.read(DATES[5].parse().unwrap()).unwrap();
    assert!(page.contains("<link rel=\"stylesheet\" href=\"dashboard.css\">"));
    assert!(page.contains("<a href=\"index.html\">"), "links back");

    // The guarantee, with this snapshot's numbers.
    let guarantee = section(&page, "<section class=\"prose\" id=\"guarantee\"");
    for said in [
        "one cluster: all its reports in the window and all their nodes",
        "ρ-zCDP with ρ = 0.05",
        "ε = ρ + 2√(ρ · ln(2/δ))",
        "ε = 0.05 + 2√(0.05 · ln(2/10<sup>−7</sup>))",
        "<strong>1.88</strong> at <strong>δ = 10<sup>−7</sup></strong>",
        "Half of δ is spent on partition selection",
        "correlations in the world",
        "raw reports",
    ] {
        assert!(guarantee.contains(said), "{said:?}:\n{guarantee}");
    }
    // Every metric of the catalog, and its share of ρ as its file states it.
    let counted = section(&page, "<section class=\"prose\" id=\"counted\"");
    let budget = section(&page, "<section class=\"prose\" id=\"budget\"");
    for m in METRICS {
        let link = format!("<a href=\"index.html#{}\">{}</a>", m.id, m.title);
        assert!(counted.contains(&link), "{} is listed", m.id);
        let row_start = format!("<th scope=\"row\">{link}");
        let row = &budget[budget
            .find(&row_start)
            .unwrap_or_else(|| panic!("{} in the split", m.id))..];
        let row = &row[..row.find("</tr>").unwrap()];
        let doc = snapshot.metrics.iter().find(|d| d.id == m.id).unwrap();
        let spent: f64 = snapshot
            .privacy
            .totals
            .iter()
            .map(|t| t.noise.rho)
            .sum::<f64>()
            + snapshot.metrics.iter().map(|d| d.noise.rho).sum::<f64>();
        let share = format!("{:.1}%", doc.noise.rho / spent * 100.0);
        assert!(
            row.contains(&format!("<td class=\"num\">{share}</td>")),
            "{}: {row}",
            m.id
        );
        assert!(
            row.contains(&format!(
                "<td class=\"num\">{}</td>",
                doc.noise.typical_error
            )),
            "{}: {row}",
            m.id
        );
    }
    assert!(budget.contains("<th scope=\"row\">total clusters</th>"));
    assert!(budget.contains("<td class=\"num\">0.05</td><td class=\"num\">100.0%</td>"));

    // A year of weekly snapshots, composed as the privacy module composes.
    let year = Guarantee::of(snapshot.privacy.rho * 52.0, snapshot.privacy.delta * 52.0);
    assert!(
        year.epsilon > 10.0 && year.epsilon < 100.0,
        "three digits: {}",
        year.epsilon
    );
    let over_a_year = section(&page, "<section class=\"prose\" id=\"over-a-year\"");
    assert!(
        over_a_year.contains("<strong>52 · ρ = 2.6</strong>"),
        "{over_a_year}"
    );
    assert!(over_a_year.contains(&format!("<strong>ε = {:.1}</strong>", year.epsilon)));
    assert!(over_a_year.contains("5.2 × 10<sup>−6</sup>"));
    assert!(over_a_year.contains("so far 6 releases, <strong>ρ = 0.3</strong>"));

    let contributions = section(&page, "<section class=\"prose\" id=\"contributions\"");
    assert!(contributions.contains("<strong>20 nodes</strong>"));
    assert!(contributions.contains("<strong>28 reports</strong>"));
    let biases = section(&page, "<section class=\"prose\" id=\"biases\"");
    for bias in [
        "volunteer",
        "firewalls",
        "under-weights big clusters",
        "fold into",
        "Synthetic",
    ] {
        assert!(biases.contains(bias), "{bias}");
    }
    let licence = section(&page, "<section class=\"prose\" id=\"licence\"");
    assert!(licence.contains(&format!("<code>{LICENSE}</code>")));
    assert!(licence.contains(&format!("<a rel=\"license\" href=\"{LICENSE_URL}\">")));
}

#[test]
fn the_pages_load_nothing_and_run_nothing() {
    let (dir, _) = published();
    for name in [dashboard::PAGE, dashboard::METHODOLOGY] {
        let html = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(!html.contains("<script"), "{name}: no JavaScript");
        // Inline styles would need 'unsafe-inline' in the Content-Security-Policy.
        assert!(!html.contains(" style="), "{name}: no inline style");
        assert!(!html.contains("<img"), "{name}: no images");
        assert!(!html.contains(" src="), "{name}: no embedded resources");
        for url in html.split("href=\"").skip(1) {
            let url = &url[..url.find('"').unwrap()];
            // The licence's text is a link to follow, never a resource the page loads.
            assert!(
                !url.contains("//") && !url.contains(':') || url == "data:," || url == LICENSE_URL,
                "{name}: a link or resource elsewhere: {url}"
            );
        }
        assert_eq!(
            html.matches("<link ").count(),
            2,
            "{name}: the stylesheet and the empty icon"
        );
        // Only the SVG namespace and the licence are absolute URLs, and neither is fetched.
        let absolute: Vec<&str> = html
            .match_indices("http")
            .map(|(i, _)| &html[i..(i + 30).min(html.len())])
            .filter(|s| !s.starts_with("http://www.w3.org/2000/svg") && !LICENSE_URL.starts_with(s))
            .collect();
        assert!(absolute.is_empty(), "{name}: {absolute:?}");
    }
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
    // Without a ledger, the page says it cannot state the cost of every release.
    assert!(page.contains("No ledger.json is published beside these files"));
    assert!(!page.contains("href=\"ledger.json\""));
}

#[test]
fn nothing_published_means_no_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = Output::new(dir.path());
    assert!(!dashboard::publish(&out, &Options::default()).unwrap());
    assert!(!dir.path().join(dashboard::PAGE).exists());
    assert!(!dir.path().join(dashboard::METHODOLOGY).exists());
}
