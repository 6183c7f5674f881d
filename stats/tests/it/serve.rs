//! The server of periodic mode (`--listen`), as the real `stats` binary runs it: read-only, the
//! headers a public static site needs (CSP, caching, Last-Modified and 304, gzip), and the
//! probe routes. The store is an empty SQLite file with the committed schema, so the snapshot
//! is all withheld; what is tested here is the serving, not the numbers (the browser test in
//! systests/tests/it/dashboard.rs reads a full page).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    IF_MODIFIED_SINCE, LAST_MODIFIED, LOCATION,
};

struct Stats {
    _service: testenv::Service,
    base: String,
    _dir: tempfile::TempDir,
}

/// `stats --listen` over an empty store, once `/readyz` says the page is published.
async fn start() -> Stats {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.sqlite");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    stored::sqlite::migrate(&mut conn).unwrap();
    drop(conn);
    let service = testenv::Launch::stats()
        .args(["--store", &format!("sqlite:{}", db.display())])
        .args(["--out", dir.path().join("out").to_str().unwrap()])
        .args(["--log-format", "json", "--new-ledger"])
        .serving("--listen", "/readyz")
        .start()
        .await
        .unwrap_or_else(|e| panic!("stats --listen never became ready: {e}"));
    Stats {
        base: service.url(),
        _service: service,
        _dir: dir,
    }
}

fn client() -> reqwest::Client {
    // Raw bytes as sent: no transparent decompression, no redirects followed.
    reqwest::Client::builder()
        .no_gzip()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn header(r: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    r.headers()
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{} has no {name}", r.url()))
}

#[tokio::test]
async fn the_page_and_files_are_served_with_csp_caching_gzip_and_304() {
    let stats = start().await;
    let http = client();
    let get = |path: &str| http.get(format!("{}{path}", stats.base));

    // `/` and `/stats` lead to the page.
    for path in ["/", "/stats"] {
        let r = get(path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(header(&r, LOCATION), "/stats/");
    }

    let page = get("/stats/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(header(&page, CONTENT_TYPE).starts_with("text/html"));
    let csp = header(&page, CONTENT_SECURITY_POLICY).to_owned();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(
        csp.contains("style-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(!csp.contains("script-src"), "no script allowed: {csp}");
    assert_eq!(header(&page, CACHE_CONTROL), "public, max-age=300");
    assert_eq!(
        header(&page, "x-content-type-options".parse().unwrap()),
        "nosniff"
    );
    let last_modified = header(&page, LAST_MODIFIED).to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("What Kubernetes clusters run"));

    // Conditional requests: unchanged since → 304 without a body.
    let r = get("/stats/")
        .header(IF_MODIFIED_SINCE, &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.bytes().await.unwrap().is_empty());

    // gzip when asked, and the same bytes once inflated.
    let r = get("/stats/index.html")
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, CONTENT_ENCODING), "gzip");
    let gz = r.bytes().await.unwrap();
    let mut inflated = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut inflated)
        .unwrap();
    assert_eq!(inflated, html);
    assert!(
        gz.len() * 3 < html.len(),
        "gzip: {} of {}",
        gz.len(),
        html.len()
    );

    // The stylesheet, the pointer, and a dated snapshot's files.
    let css = get("/stats/dashboard.css").send().await.unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert!(header(&css, CONTENT_TYPE).starts_with("text/css"));
    let latest: serde_json::Value = get("/stats/latest.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let snapshot = latest["snapshot"].as_str().unwrap();
    let r = get(&format!("/stats/{snapshot}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, CACHE_CONTROL),
        "public, max-age=604800, immutable"
    );
    let date = latest["date"].as_str().unwrap();
    let r = get(&format!("/stats/snapshots/{date}/nodes_by_os.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, CONTENT_TYPE), "text/csv; charset=utf-8");
    let r = get("/stats/series/clusters_by_os.json")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, CACHE_CONTROL), "public, max-age=300");
    let r = get("/stats/SCHEMA.md").send().await.unwrap();
    assert_eq!(header(&r, CONTENT_TYPE), "text/plain; charset=utf-8");

    // Nothing outside the folder, and no temporary files.
    for path in [
        "/stats/../empty.sqlite",
        "/stats/%2e%2e/empty.sqlite",
        "/stats/.latest.json.tmp-1",
        "/stats/nothing.json",
    ] {
        let r = get(path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // Probes: not cached, and the job's metrics.
    let r = get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, CACHE_CONTROL), "no-store");
    let metrics = get("/metrics").send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("spartakus_stats_snapshots_published_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("spartakus_stats_http_requests_total{class=\"2xx\"}"));
}

#[tokio::test]
async fn nothing_on_the_server_accepts_a_write() {
    let stats = start().await;
    let http = client();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in [
            "/",
            "/stats/",
            "/stats/latest.json",
            "/stats/new.json",
            "/healthz",
            "/metrics",
        ] {
            let r = http
                .request(method.parse().unwrap(), format!("{}{path}", stats.base))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(header(&r, "allow".parse().unwrap()), "GET, HEAD");
            assert!(header(&r, CONTENT_SECURITY_POLICY).starts_with("default-src 'none'"));
        }
    }
    // And the files are unchanged: still the page.
    let r = http
        .get(format!("{}/stats/", stats.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
