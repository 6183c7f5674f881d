//! `volunteer status --compare URL` against a real published folder: a small population of
//! reports queued in a real nats-server, stored by the real ingester into SQLite, published by
//! the real `stats --listen`; between the volunteer and it, a recorder that keeps every request
//! as it arrived (method, path and query, headers, body) and forwards it. The cluster compared
//! is the skew module's (testenv's realistic nodes on kube-apiserver v1.37.2).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{BoxError, TestResult, text};
use crate::skew::{self, NAMESPACE};
use async_nats::jetstream::{self, stream};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use report::{Envelope, ReportId};
use serde_json::json;
use testenv::{Launch, Nats, Service, StallProxy, eventually};
use tokio::sync::OnceCell;

/// One request as the recorder received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, as sent.
    target: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

#[derive(Clone)]
struct Recorder {
    upstream: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    http: reqwest::Client,
}

/// Records the request, then GETs the same path and query from the upstream.
async fn record(State(r): State<Recorder>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    r.seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    });
    let upstream = r.http.get(format!("{}{target}", r.upstream)).send().await;
    let mut resp = Response::builder();
    match upstream {
        Ok(u) => {
            resp = resp.status(u.status().as_u16());
            let bytes = u.bytes().await.unwrap_or_default();
            resp.body(Body::from(bytes)).unwrap_or_default()
        }
        Err(_) => resp.status(502).body(Body::empty()).unwrap_or_default(),
    }
}

/// A recorder in front of `upstream`: its base URL and what it saw.
async fn recorder(upstream: String) -> Result<(String, Arc<Mutex<Vec<Seen>>>), BoxError> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Recorder {
        upstream,
        seen: seen.clone(),
        http: reqwest::Client::builder().no_gzip().build()?,
    };
    let app = axum::Router::new().fallback(record).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), seen))
}

/// The last Sunday whose day is over: the newest weekly snapshot `stats` can publish.
fn last_sunday() -> jiff::civil::Date {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let back = match today.weekday().to_sunday_zero_offset() {
        0 => 7,
        n => i64::from(n),
    };
    today.saturating_sub(jiff::Span::new().days(back))
}

/// The population: 40 clusters on v1.37.2 with containerd 2.0, 30 on v1.35.1 with cri-o 1.31,
/// marked synthetic, received the day before the snapshot's date.
fn population(date: jiff::civil::Date) -> Result<Vec<Envelope>, BoxError> {
    let at = date
        .saturating_sub(jiff::Span::new().days(1))
        .at(12, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)?
        .timestamp();
    let mut out = Vec::new();
    for i in 0..70 {
        let (version, runtime) = if i < 40 {
            ("v1.37.2", "containerd://2.0.1")
        } else {
            ("v1.35.1", "cri-o://1.31.1")
        };
        let body = json!({
            "version": "v0.1.0", "clusterID": format!("population-{i}"),
            "timestamp": at.as_second().to_string(), "masterVersion": version,
            "nodes": [{"id": format!("n{i}"), "kubeletVersion": version,
                       "containerRuntimeVersion": runtime, "operatingSystem": "linux"}],
            "extensions": [{"name": "spartakus.dev/synthetic", "value": "true"}],
        });
        let valid = report::decode(body.to_string().as_bytes())?;
        out.push(Envelope::new(ReportId::random(), at, valid));
    }
    Ok(out)
}

/// Sum of a counter's samples on a `/metrics` page.
fn counter(page: &str, name: &str) -> u64 {
    page.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A published folder served by `stats --listen`, made from [`population`] through the real
/// nats-server, ingester and stats; kept for the module's tests.
struct Published {
    stats: Service,
    date: jiff::civil::Date,
    _dir: tempfile::TempDir,
}

static PUBLISHED: OnceCell<Published> = OnceCell::const_new();

async fn published() -> Result<&'static Published, BoxError> {
    PUBLISHED.get_or_try_init(publish).await
}

async fn publish() -> Result<Published, BoxError> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("spartakus.sqlite");
    let date = last_sunday();
    let envs = population(date)?;

    let nats = Nats::start().await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let queue = report::queue::Topology::default();
    js.get_or_create_stream(stream::Config {
        name: queue.reports.name.clone(),
        subjects: vec![queue.reports.subject.clone()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(7200),
        ..Default::default()
    })
    .await?;
    let mut ingester = Launch::ingester(&nats.url(), &format!("sqlite:{}", db.display()))
        .start()
        .await?;
    for e in &envs {
        js.publish(queue.reports.subject.clone(), e.encode().into())
            .await?
            .await?;
    }
    let metrics = format!("{}/metrics", ingester.url());
    let want = envs.len() as u64;
    eventually(
        Duration::from_secs(60),
        "the ingester to store the population",
        || {
            let metrics = metrics.clone();
            async move {
                let page = match reqwest::get(&metrics).await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => return false,
                };
                counter(&page, "spartakus_ingester_rows_total") >= want
            }
        },
    )
    .await;
    ingester.stop(Duration::from_secs(30)).await?;

    let out = dir.path().join("out");
    let stats = Launch::stats()
        .args(["--store", &format!("sqlite:{}", db.display())])
        .args(["--out", out.to_str().ok_or("utf-8")?])
        .args(["--backfill-from", &date.to_string()])
        // A population of 70: a large budget, so that values 30 clusters share are published.
        .args(["--rho", "10", "--min-clusters", "5"])
        .args([
            "--include-synthetic",
            "--new-ledger",
            "--log-format",
            "json",
        ])
        .serving("--listen", "/readyz")
        .ready_within(Duration::from_secs(120))
        .start()
        .await?;
    Ok(Published {
        stats,
        date,
        _dir: dir,
    })
}

#[tokio::test]
async fn compare_sends_two_plain_gets_and_says_where_the_cluster_stands() -> TestResult {
    let published = published().await?;
    let (kube, fixture, _turn) = skew::cluster().await?;
    let (_nats, gateway) = skew::gateway().await?;
    let cm = "spartakus-compare";
    skew::report(kube, &gateway.url(), cm).await?;
    let (proxy, seen) = recorder(published.stats.url()).await?;

    let url = format!("{proxy}/stats");
    let out = skew::status(kube, cm, &["--compare", &url, "--request-timeout", "10s"]).await?;
    assert!(out.status.success(), "{}", text(&out));
    let printed = out.stdout_text();
    eprintln!("{printed}");

    // Where the cluster stands: 1.37 and skew 0 are published; containerd 1.7 (the fixture's
    // runtime) no population cluster runs, so it is not.
    let date = published.date;
    assert!(
        printed.contains(&format!("Compared with the published statistics of {date} ({proxy}/stats/snapshots/{date}/snapshot.json)")),
        "{printed}"
    );
    let line = |prefix: &str| {
        printed
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .ok_or_else(|| format!("no line {prefix:?} in\n{printed}"))
    };
    let control = line("  control plane   1.37: ")?;
    assert!(
        control.contains("% of clusters run this minor;")
            && control.contains("% run a newer minor"),
        "{control}"
    );
    let skew_line =
        line("  version skew    every kubelet on the control plane's minor (skew 0): ")?;
    assert!(skew_line.ends_with("% of clusters"), "{skew_line}");
    assert_eq!(
        line("  runtime         ")?,
        "  runtime         containerd 1.7: not published: too few clusters"
    );

    // Exactly two plain GETs of public files, nothing else.
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/stats/latest.json".to_owned(),
            format!("/stats/snapshots/{date}/snapshot.json")
        ]
    );
    let allowed = ["host", "user-agent", "accept", "accept-encoding"];
    for s in &seen {
        assert_eq!(s.method, "GET");
        assert!(s.body.is_empty(), "{s:?}");
        for (name, value) in &s.headers {
            assert!(allowed.contains(&name.as_str()), "header {name}: {value}");
            if name == "user-agent" {
                assert_eq!(value, "spartakus-volunteer");
            }
        }
    }
    // Nothing identifying: not the cluster ID, no node name, UID or address, not the
    // kube-system UID the key is derived from.
    let sent = format!("{seen:?}");
    let status: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(kube.client().await?, NAMESPACE);
    let body = crate::common::decode(&{
        use std::io::Read;
        let gz = status
            .get(cm)
            .await?
            .binary_data
            .and_then(|b| b.get(volunteer::status::BODY_KEY).cloned())
            .ok_or("no delivered body")?;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz.0[..]).read_to_end(&mut out)?;
        out
    })?;
    assert!(!sent.contains(&body.cluster_id), "{sent}");
    let uid = Api::<Namespace>::all(kube.client().await?)
        .get("kube-system")
        .await?
        .metadata
        .uid
        .ok_or("no uid")?;
    assert!(!sent.contains(&uid), "{sent}");
    assert_eq!(fixture.leaks(sent.as_bytes()), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_statistics_server_that_never_answers_fails_within_the_request_timeout() -> TestResult {
    let published = published().await?;
    let (kube, _fixture, _turn) = skew::cluster().await?;
    let (_nats, gateway) = skew::gateway().await?;
    let cm = "spartakus-compare-stall";
    skew::report(kube, &gateway.url(), cm).await?;
    let proxy = StallProxy::start(published.stats.addr()).await?;
    proxy.stall();

    let started = std::time::Instant::now();
    let url = format!("{}/stats/", proxy.http_url());
    let out = skew::status(kube, cm, &["--compare", &url, "--request-timeout", "2s"]).await?;
    let took = started.elapsed();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        out.stderr.contains("--compare: GET ") && out.stderr.contains("/stats/latest.json"),
        "{}",
        text(&out)
    );
    // The status itself is printed before the comparison is tried.
    assert!(
        out.stdout_text().contains("  version skew    "),
        "{}",
        text(&out)
    );
    assert!(proxy.held_bytes() > 0, "the volunteer tried");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    Ok(())
}
