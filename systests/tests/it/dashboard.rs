//! The dashboard, read the way a person reads it: a synthetic population goes through the real
//! path (gateway with `--backdate-synthetic` → JetStream → ingester → SQLite), the real `stats`
//! binary backfills weekly snapshots and serves them (`--listen`), and headless Chromium (Debian's
//! `chromium`, driven over the DevTools protocol by chromiumoxide) loads the page.
//!
//! Asserted in the rendered DOM: every metric's section with its chart (an `<svg>`) and table,
//! or its withheld notice, and its noise (± from `snapshot.json`); the numbers in every table
//! equal those in `snapshot.json`; the guarantee (ρ, ε) as the snapshot states it; the series
//! charts with legends. The methodology page, followed from the dashboard's link, renders with
//! the guarantee, a row of the budget's split per measurement, and the licence. Also: no
//! request went anywhere but the loopback server, no console errors (a CSP violation is one),
//! and at 390 CSS pixels nothing overflows horizontally on either page. Printed: time to first
//! contentful paint and the pages' weight as served (HTML + CSS, raw and gzip).
//! `SPARTAKUS_BLESS=1` rewrites the screenshots in `docs/` (`dashboard.png`,
//! `dashboard-phone.png`, `dashboard-methodology.png`).
//!
//! Chromium is found as `$SPARTAKUS_CHROMIUM`, else `chromium` or `chromium-browser` on the
//! PATH; without it the test fails (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::log::{EnableParams as LogEnable, EventEntryAdded};
use chromiumoxide::cdp::browser_protocol::network::{
    EnableParams as NetworkEnable, EventRequestWillBeSent,
};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt;
use serde_json::Value;
use systests::population::{self, Settings};
use testenv::Launch;

use crate::pipeline::{Pipeline, heavy_turn};

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SPARTAKUS_CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium not found (apt-get install chromium, or set SPARTAKUS_CHROMIUM): the dashboard's browser test needs it"
    );
}

/// What the rendered page says, read by script in the page (after it rendered: the page has
/// none of its own).
const READ_DOM: &str = r#"(() => {
  const text = (e) => e.textContent.trim();
  return {
    metrics: [...document.querySelectorAll('section.metric')].map((s) => ({
      id: s.id,
      status: s.dataset.status,
      svg: s.querySelector('svg.chart') !== null,
      bars: s.querySelectorAll('svg.chart rect.bar').length,
      withheld: s.querySelector('.notice.withheld') !== null,
      noise: text(s.querySelector('p.noise')),
      headers: [...s.querySelectorAll('table.numbers thead th')].map(text),
      rows: [...s.querySelectorAll('table.numbers tbody tr:not(.withheld)')]
        .map((tr) => [...tr.querySelectorAll('td')].map(text)),
    })),
    series: [...document.querySelectorAll('section.series')].map((s) => ({
      id: s.id,
      svg: s.querySelector('svg.chart.lines') !== null,
      lines: s.querySelectorAll('svg .series-line').length,
      legend: [...s.querySelectorAll('ul.legend li')].map(text),
    })),
    synthetic: document.querySelector('.notice.synthetic') !== null,
    clusters: text(document.querySelector('dd.total-clusters')),
    rho: text(document.querySelector('dd.rho')),
    epsilon: text(document.querySelector('dd.epsilon')),
    privacy: text(document.querySelector('#privacy')),
    methodology: document.querySelector('header.top a[href="methodology.html"]')?.href ?? null,
    licence: text(document.querySelector('footer .licence')),
  };
})()"#;

/// What the rendered methodology page says.
const READ_METHODOLOGY: &str = r#"(() => {
  const text = (e) => (e ? e.textContent.trim().replace(/\s+/g, ' ') : null);
  return {
    h1: text(document.querySelector('h1')),
    sections: [...document.querySelectorAll('section.prose')].map((s) => s.id),
    guarantee: text(document.querySelector('#guarantee')),
    overAYear: text(document.querySelector('#over-a-year')),
    licence: text(document.querySelector('#licence')),
    metrics: document.querySelectorAll('ol.metric-list li').length,
    budgetRows: document.querySelectorAll('table.budget tbody tr').length,
    styled: getComputedStyle(document.querySelector('section.prose')).borderTopStyle === 'solid',
    back: document.querySelector('a[href="index.html"]') !== null,
  };
})()"#;

/// A privacy parameter as the pages print it: three significant digits, no trailing zeros.
fn sig(v: f64) -> String {
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

async fn set_viewport(page: &Page, width: i64, height: i64, mobile: bool) {
    page.execute(SetDeviceMetricsOverrideParams::new(
        width, height, 1.0, mobile,
    ))
    .await
    .expect("the viewport is set");
}

async fn eval<T: serde::de::DeserializeOwned>(page: &Page, js: &str) -> T {
    page.evaluate(js)
        .await
        .unwrap_or_else(|e| panic!("{js}: {e}"))
        .into_value()
        .unwrap_or_else(|e| panic!("{js}: {e}"))
}

async fn screenshot(page: &Page, path: &Path) {
    let png = page
        .screenshot(
            ScreenshotParams::builder()
                .format(CaptureScreenshotFormat::Png)
                .build(),
        )
        .await
        .expect("a screenshot");
    std::fs::write(path, png).expect("the screenshot is written");
}

#[tokio::test]
async fn the_dashboard_shows_every_metric_as_published_and_loads_nothing_from_elsewhere() {
    let _turn = heavy_turn().await;
    let mut pipeline = Pipeline::start().await;

    // The population, through the real path.
    let now = jiff::Timestamp::now().as_second();
    let planned = population::plan(&Settings {
        clusters: 1000,
        weeks: 12,
        seed: 12,
        now,
    });
    let sent = pipeline.deliver(&planned, 16).await;
    let (dir, db) = (&pipeline.dir, &pipeline.db);

    // Weekly snapshots from the first Sunday whose window is all population, then served.
    let first = jiff::Timestamp::from_second(sent.first)
        .expect("a time")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let from = first
        .checked_add(jiff::Span::new().days(27))
        .expect("a date");
    let out = dir.path().join("stats");
    let mut stats = Launch::stats()
        .args([
            "--store",
            &format!("sqlite:{}", db.display()),
            "--out",
            out.to_str().expect("utf-8"),
            "--backfill-from",
            &from.to_string(),
            "--include-synthetic",
            "--new-ledger",
            "--log-format",
            "json",
        ])
        .serving("--listen", "/readyz")
        .ready_within(Duration::from_secs(300))
        .start()
        .await
        .expect("stats publishes the snapshots and the page");
    let base = stats.url();
    let url = format!("{base}/stats/");

    let latest: Value =
        serde_json::from_slice(&std::fs::read(out.join("latest.json")).expect("latest.json"))
            .expect("JSON");
    let snapshot: Value = serde_json::from_slice(
        &std::fs::read(out.join(latest["snapshot"].as_str().expect("a path")))
            .expect("snapshot.json"),
    )
    .expect("JSON");
    let kept = std::fs::read_dir(out.join("snapshots"))
        .expect("snapshots")
        .count();
    assert!(kept >= 6, "several weeks of snapshots: {kept}");

    // The browser, in a fresh profile, with nothing that phones home.
    let profile = dir.path().join("chromium-profile");
    let config = BrowserConfig::builder()
        .chrome_executable(chromium())
        // chromiumoxide adds --headless (with --hide-scrollbars, --mute-audio), --no-sandbox,
        // the profile and the DevTools port; names are given without their dashes.
        .disable_default_args()
        .no_sandbox()
        .args([
            "disable-gpu",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
            "no-default-browser-check",
            "disable-default-apps",
        ])
        .user_data_dir(&profile)
        .viewport(None)
        .launch_timeout(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(60))
        .build()
        .expect("a browser configuration");
    let (mut browser, mut handler) = Browser::launch(config).await.expect("chromium starts");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let page = browser.new_page("about:blank").await.expect("a tab");
    page.execute(NetworkEnable::default())
        .await
        .expect("network events");
    page.execute(LogEnable::default())
        .await
        .expect("log events");
    let requests = Arc::new(Mutex::new(Vec::<String>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut on_request = page
        .event_listener::<EventRequestWillBeSent>()
        .await
        .expect("listener");
    let r = requests.clone();
    tokio::spawn(async move {
        while let Some(e) = on_request.next().await {
            r.lock().expect("lock").push(e.request.url.clone());
        }
    });
    let mut on_console = page
        .event_listener::<EventConsoleApiCalled>()
        .await
        .expect("listener");
    let e1 = errors.clone();
    tokio::spawn(async move {
        while let Some(e) = on_console.next().await {
            let level = format!("{:?}", e.r#type).to_lowercase();
            if level.contains("error") || level.contains("warn") || level.contains("assert") {
                e1.lock()
                    .expect("lock")
                    .push(format!("console {level}: {:?}", e.args));
            }
        }
    });
    let mut on_log = page
        .event_listener::<EventEntryAdded>()
        .await
        .expect("listener");
    let e2 = errors.clone();
    tokio::spawn(async move {
        while let Some(e) = on_log.next().await {
            let level = format!("{:?}", e.entry.level).to_lowercase();
            if level.contains("error") || level.contains("warn") {
                e2.lock()
                    .expect("lock")
                    .push(format!("log {level}: {} {:?}", e.entry.text, e.entry.url));
            }
        }
    });
    let mut on_exception = page
        .event_listener::<EventExceptionThrown>()
        .await
        .expect("listener");
    let e3 = errors.clone();
    tokio::spawn(async move {
        while let Some(e) = on_exception.next().await {
            e3.lock()
                .expect("lock")
                .push(format!("exception: {:?}", e.exception_details.text));
        }
    });

    // Desktop first.
    set_viewport(&page, 1280, 1800, false).await;
    page.goto(url.as_str()).await.expect("the page loads");
    page.wait_for_navigation().await.expect("loaded");
    // The paint entry is recorded once the frame is presented, which may follow the load.
    let fcp = std::cell::Cell::new(-1.0);
    let (painted, tab) = (&fcp, &page);
    let _ = testenv::try_eventually(Duration::from_secs(20), || async move {
        painted.set(
            eval(
                tab,
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1",
            )
            .await,
        );
        painted.get() > 0.0
    })
    .await;
    let fcp = fcp.get();
    let load: f64 = eval(
        &page,
        "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; })()",
    )
    .await;
    assert!(fcp > 0.0, "no first contentful paint recorded");

    let dom: Value = eval(&page, READ_DOM).await;
    assert_eq!(
        dom["synthetic"], true,
        "the page says it counts synthetic data"
    );
    assert_eq!(
        dom["clusters"].as_str().map(|s| s.replace(',', "")),
        snapshot["totals"]["clusters"]
            .as_u64()
            .map(|n| n.to_string())
    );
    // The guarantee, as the snapshot states it.
    let rho = sig(snapshot["privacy"]["rho"].as_f64().expect("rho"));
    let epsilon = sig(snapshot["privacy"]["epsilon"].as_f64().expect("epsilon"));
    assert_eq!(dom["rho"].as_str(), Some(rho.as_str()));
    assert_eq!(dom["epsilon"].as_str(), Some(epsilon.as_str()));
    let ledger: Value =
        serde_json::from_slice(&std::fs::read(out.join("ledger.json")).expect("ledger.json"))
            .expect("JSON");
    let releases = ledger["cumulative"]["releases"].as_u64().expect("releases");
    assert_eq!(releases, kept as u64, "a release per snapshot");
    let privacy = dom["privacy"].as_str().expect("a privacy section");
    for said in [
        "random noise added (discrete Gaussian)".to_owned(),
        "any one cluster's reports".to_owned(),
        format!("ρ = {rho}"),
        format!("ε = {epsilon}"),
        format!("All {releases} releases so far"),
        "correlations in the world".to_owned(),
        "raw reports".to_owned(),
    ] {
        assert!(
            privacy.contains(&said),
            "the privacy text lacks {said:?}: {privacy}"
        );
    }
    assert!(
        dom["methodology"]
            .as_str()
            .is_some_and(|u| u == format!("{url}methodology.html")),
        "the header links to the methodology: {}",
        dom["methodology"]
    );
    assert!(
        dom["licence"]
            .as_str()
            .is_some_and(|l| l.contains("CDLA-Permissive-2.0")),
        "the footer names the licence: {}",
        dom["licence"]
    );
    let shown = dom["metrics"].as_array().expect("metrics");
    let metrics = snapshot["metrics"].as_array().expect("metrics");
    assert_eq!(shown.len(), metrics.len(), "one section per metric");
    let mut published = 0;
    for m in metrics {
        let id = m["id"].as_str().expect("id");
        let s = shown
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no section for {id}"));
        let dims = m["dimensions"].as_array().expect("dimensions").len();
        let rows = m["rows"].as_array().expect("rows");
        assert_eq!(s["status"], m["status"], "{id}");
        let error = m["noise"]["typicalError"].as_u64().expect("typicalError");
        assert!(
            s["noise"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("± about {error} "))),
            "{id}: its noise beside the numbers: {}",
            s["noise"]
        );
        assert_eq!(
            s["headers"].as_array().map(Vec::len),
            Some(dims + 2),
            "{id}: the table has the file's columns"
        );
        if m["status"] == "withheld" {
            assert_eq!(s["withheld"], true, "{id}: says withheld");
            assert_eq!(s["svg"], false, "{id}: draws nothing");
            continue;
        }
        published += 1;
        assert_eq!(s["svg"], true, "{id}: has a chart");
        assert_eq!(
            s["bars"].as_u64(),
            Some(rows.len() as u64),
            "{id}: a bar per cell"
        );
        // The table shows exactly the file's cells, in its order: labels, count, share.
        let table: Vec<Vec<String>> =
            serde_json::from_value(s["rows"].clone()).expect("rows of strings");
        let want: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let r = r.as_array().expect("a row");
                let mut cells: Vec<String> = r[..dims]
                    .iter()
                    .map(|l| l.as_str().expect("a label").to_owned())
                    .collect();
                cells.push(r[dims].as_u64().expect("a count").to_string());
                cells.push(format!(
                    "{:.1}%",
                    r[dims + 1].as_f64().expect("a share") * 100.0
                ));
                cells
            })
            .collect();
        let got: Vec<Vec<String>> = table
            .into_iter()
            .map(|mut row| {
                if let Some(count) = row.get_mut(dims) {
                    *count = count.replace(',', "");
                }
                row
            })
            .collect();
        assert_eq!(got, want, "{id}: the table differs from snapshot.json");
    }
    assert!(
        published >= 20,
        "most metrics are published for 1,000 clusters: {published}"
    );
    let series = dom["series"].as_array().expect("series");
    assert_eq!(
        series.len(),
        3,
        "minor versions, OS families, runtimes over time"
    );
    for s in series {
        assert_eq!(s["svg"], true, "{s}");
        assert!(s["lines"].as_u64().unwrap_or(0) >= 2, "{s}");
        assert_eq!(
            s["lines"].as_u64(),
            s["legend"].as_array().map(|l| l.len() as u64),
            "a legend entry per line: {s}"
        );
    }

    let bless = std::env::var_os("SPARTAKUS_BLESS").is_some();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let shots = if bless {
        docs.clone()
    } else {
        dir.path().to_owned()
    };
    std::fs::create_dir_all(&shots).expect("a folder for screenshots");
    screenshot(&page, &shots.join("dashboard.png")).await;

    // A phone: 390 CSS pixels wide, nothing wider than that.
    set_viewport(&page, 390, 1400, true).await;
    page.reload().await.expect("reloads");
    page.wait_for_navigation().await.expect("loaded");
    let (scroll, client): (f64, f64) = eval(
        &page,
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]",
    )
    .await;
    assert!(
        scroll <= 390.0,
        "at 390 px the page scrolls sideways: scrollWidth {scroll}, clientWidth {client}"
    );
    let wide: Vec<String> = eval(
        &page,
        "[...document.querySelectorAll('body *')].filter((e) => !e.closest('.table-wrap') && e.getBoundingClientRect().right > 390.5).map((e) => e.tagName + '.' + e.className).slice(0, 10)",
    )
    .await;
    assert!(wide.is_empty(), "wider than the screen: {wide:?}");
    screenshot(&page, &shots.join("dashboard-phone.png")).await;

    // Printing lays the page out again without errors.
    page.execute(
        chromiumoxide::cdp::browser_protocol::emulation::SetEmulatedMediaParams::builder()
            .media("print")
            .build(),
    )
    .await
    .expect("print media");
    let printed_nav: bool = eval(
        &page,
        "getComputedStyle(document.querySelector('nav')).display === 'none'",
    )
    .await;
    assert!(printed_nav, "the contents are not printed");
    page.execute(
        chromiumoxide::cdp::browser_protocol::emulation::SetEmulatedMediaParams::builder()
            .media("")
            .build(),
    )
    .await
    .expect("screen media");

    // The methodology page, on a desktop and on a phone.
    set_viewport(&page, 1280, 1800, false).await;
    page.goto(format!("{url}methodology.html").as_str())
        .await
        .expect("the methodology loads");
    page.wait_for_navigation().await.expect("loaded");
    let method: Value = eval(&page, READ_METHODOLOGY).await;
    assert_eq!(method["h1"], "How the numbers are made");
    assert_eq!(method["styled"], true, "the stylesheet applies");
    assert_eq!(method["back"], true, "a link back to the dashboard");
    assert_eq!(
        method["sections"],
        serde_json::json!([
            "counted",
            "guarantee",
            "budget",
            "over-a-year",
            "contributions",
            "tables",
            "biases",
            "licence"
        ])
    );
    assert_eq!(
        method["metrics"].as_u64(),
        Some(metrics.len() as u64),
        "every metric is listed"
    );
    assert_eq!(
        method["budgetRows"].as_u64(),
        Some(metrics.len() as u64 + 3),
        "the split: the three totals and every metric"
    );
    let guarantee = method["guarantee"].as_str().expect("the guarantee");
    assert!(
        guarantee.contains(&format!("ρ-zCDP with ρ = {rho}")),
        "{guarantee}"
    );
    assert!(
        guarantee.contains(&format!("= {epsilon} at δ =")),
        "{guarantee}"
    );
    assert!(
        method["overAYear"].as_str().is_some_and(
            |t| t.contains("52 · ρ") && t.contains(&format!("so far {releases} releases"))
        ),
        "{}",
        method["overAYear"]
    );
    assert!(
        method["licence"]
            .as_str()
            .is_some_and(|t| t.contains("CDLA-Permissive-2.0")),
        "{}",
        method["licence"]
    );
    screenshot(&page, &shots.join("dashboard-methodology.png")).await;
    set_viewport(&page, 390, 1400, true).await;
    page.reload().await.expect("reloads");
    page.wait_for_navigation().await.expect("loaded");
    let wide: Vec<String> = eval(
        &page,
        "[...document.querySelectorAll('body *')].filter((e) => !e.closest('.table-wrap') && e.getBoundingClientRect().right > 390.5).map((e) => e.tagName + '.' + e.className).slice(0, 10)",
    )
    .await;
    assert!(
        wide.is_empty(),
        "methodology: wider than the screen: {wide:?}"
    );

    let requests = requests.lock().expect("lock").clone();
    let elsewhere: Vec<&String> = requests
        .iter()
        .filter(|u| {
            !u.starts_with(&format!("{base}/")) && !u.starts_with("data:") && *u != "about:blank"
        })
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests beyond the loopback server: {elsewhere:?}"
    );
    assert!(
        requests.iter().any(|u| u.ends_with("/stats/dashboard.css")),
        "the stylesheet was requested: {requests:?}"
    );
    let seen = errors.lock().expect("lock").clone();
    assert!(seen.is_empty(), "console errors: {seen:?}");

    // The control: an image from another origin (another loopback port) is refused by the
    // Content-Security-Policy, and the refusal is a console error this test sees.
    let _: bool = eval(
        &page,
        "(() => { const i = document.createElement('img'); i.src = 'http://127.0.0.1:9/x.png'; document.body.append(i); return true; })()",
    )
    .await;
    let reported = testenv::try_eventually(Duration::from_secs(10), || {
        let csp = errors
            .lock()
            .expect("lock")
            .iter()
            .any(|e| e.contains("Content Security Policy"));
        async move { csp }
    })
    .await;
    assert!(
        reported.is_ok(),
        "a CSP violation was not reported: {:?}",
        errors.lock().expect("lock")
    );

    // The weight of what a visitor downloads: the page and its stylesheet, as served.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client");
    let mut plain = 0;
    let mut gzip = 0;
    for file in ["index.html", "methodology.html", "dashboard.css"] {
        let get = |gz: bool| {
            let mut r = raw.get(format!("{url}{file}"));
            if gz {
                r = r.header("accept-encoding", "gzip");
            }
            r.send()
        };
        plain += get(false)
            .await
            .expect("GET")
            .bytes()
            .await
            .expect("body")
            .len();
        gzip += get(true)
            .await
            .expect("GET")
            .bytes()
            .await
            .expect("body")
            .len();
    }
    println!(
        "dashboard: first contentful paint {fcp:.0} ms, load {load:.0} ms; weight of both pages and the CSS {plain} bytes, {gzip} bytes gzip; {} metrics ({published} published), {kept} snapshots, {} reports",
        metrics.len(),
        planned.len()
    );
    println!("dashboard: screenshots in {}", shots.display());

    browser.close().await.expect("chromium closes");
    let _ = browser.wait().await;
    events.abort();
    stats.kill();
}
