//! A full broker recovers by itself: the gateway binary with a small reports budget in front of
//! nats-server fills the reports stream until it refuses reports (503 with Retry-After), says so
//! on `/readyz` and in its stream gauges, still queues erasure requests (their stream has its
//! own budget), and takes reports again, without a restart, once the ingester binary has stored
//! the backlog (work-queue retention deletes what it acknowledged).

use std::path::Path;
use std::time::Duration;

use testenv::{Launch, Nats, Service};

/// The reports stream's budget: a few dozen of the reports below.
const BUDGET: &str = "256KiB";
/// Nodes in each report: about 12 KB in the stream.
const NODES: usize = 24;
/// Reports posted at most while filling: far more than the budget holds.
const MOST: usize = 200;
/// How long any condition may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// A valid v1 report of cluster number `n`, with [`NODES`] nodes.
fn report(n: usize) -> String {
    let mut seed: serde_json::Value =
        serde_json::from_str(include_str!("../../../report/testdata/v1-seed.json"))
            .expect("the seed report is JSON");
    seed["clusterID"] = format!("00000000-0000-4000-8000-{n:012}").into();
    let node = seed["nodes"][0].clone();
    seed["nodes"] = (0..NODES)
        .map(|i| {
            let mut node = node.clone();
            node["id"] = format!("{:032x}", n * 1000 + i).into();
            node
        })
        .collect();
    seed.to_string()
}

async fn post(
    http: &reqwest::Client,
    gateway: &Service,
    path: &str,
    body: String,
) -> reqwest::Response {
    http.post(format!("{}{path}", gateway.url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

async fn get(http: &reqwest::Client, gateway: &Service, path: &str) -> (u16, String) {
    let response = http
        .get(format!("{}{path}", gateway.url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The value of the gauge line `name{stream="reports"}` in the gateway's metrics.
async fn reports_gauge(http: &reqwest::Client, gateway: &Service, name: &str) -> Option<f64> {
    let (_, text) = get(http, gateway, "/metrics").await;
    let prefix = format!("{name}{{stream=\"reports\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn stored(db: &Path) -> usize {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM reports", [], |r| r.get::<_, i64>(0)))
        .map_or(0, |n| n as usize)
}

#[tokio::test]
async fn a_full_reports_stream_refuses_reports_but_not_erasures_and_takes_reports_again_once_drained()
 {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let nats = Nats::start().await.expect("nats-server starts");
    let gateway = Launch::gateway(&nats.url())
        .args(["--stream-max-bytes", BUDGET, "--max-decoded-bytes", "64KiB"])
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::new();

    // Fill: post distinct reports until the stream refuses one.
    let mut accepted = 0;
    let refused = loop {
        assert!(
            accepted < MOST,
            "{MOST} reports taken: the budget is not enforced"
        );
        let response = post(&http, &gateway, "/api/v1", report(accepted)).await;
        if response.status() == 204 {
            accepted += 1;
        } else {
            break response;
        }
    };
    assert_eq!(refused.status(), 503, "a full stream is a 503");
    assert!(
        refused.headers().contains_key("retry-after"),
        "with Retry-After: {:?}",
        refused.headers()
    );
    assert!(accepted > 5, "only {accepted} reports fit in {BUDGET}");

    // The operator sees it: the gauge near 1, and a warning naming the stream on /readyz, which
    // stays ready (erasure requests are still taken).
    let (http_ref, gateway_ref) = (&http, &gateway);
    testenv::eventually(
        DEADLINE,
        "the reports gauge shows the stream full",
        || async move {
            reports_gauge(http_ref, gateway_ref, "spartakus_gateway_stream_fill_ratio")
                .await
                .is_some_and(|fill| fill >= 0.95)
        },
    )
    .await;
    testenv::eventually(
        DEADLINE,
        "/readyz warns the stream is full",
        || async move {
            let (status, body) = get(http_ref, gateway_ref, "/readyz").await;
            status == 200 && body.contains("warning: reports stream") && body.contains("full")
        },
    )
    .await;

    // Erasures have their own room.
    let erasure = serde_json::json!({
        "clusterID": "00000000-0000-4000-8000-000000000000",
        "secret": "ab".repeat(32),
    });
    let answer = post(&http, &gateway, "/api/v2/erasure", erasure.to_string()).await;
    assert_eq!(
        answer.status(),
        202,
        "an erasure is queued while reports are refused"
    );
    let still = post(&http, &gateway, "/api/v1", report(MOST + 1)).await;
    assert_eq!(still.status(), 503, "reports are still refused");
    let body = still.text().await.unwrap_or_default();
    assert!(
        body.contains("queue-full"),
        "refused as queue-full, before the body is read: {body}"
    );

    // Drain: the ingester stores the backlog and its acknowledgments free the stream.
    let db = dir.path().join("spartakus.sqlite");
    let ingester = Launch::ingester(&nats.url(), &format!("sqlite:{}", db.display()))
        .args(["--retention", "none"])
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db_ref = &db;
    if testenv::try_eventually(DEADLINE, || async move { stored(db_ref) >= accepted })
        .await
        .is_err()
    {
        panic!(
            "the ingester stored {} of {accepted}:\n{}",
            stored(&db),
            ingester.log_tail(20)
        );
    }

    // The same gateway, never restarted, is ready and takes reports again.
    testenv::eventually(DEADLINE, "/readyz without the warning", || async move {
        get(http_ref, gateway_ref, "/readyz").await == (200, "ready\n".to_owned())
    })
    .await;
    let again = post(&http, &gateway, "/api/v1", report(MOST + 2)).await;
    assert_eq!(
        again.status(),
        204,
        "a report is taken once the stream drained"
    );
    let fill = reports_gauge(&http, &gateway, "spartakus_gateway_stream_fill_ratio").await;
    assert!(
        fill.is_some_and(|f| f < 0.5),
        "the stream emptied: {fill:?}"
    );
    testenv::eventually(DEADLINE, "the last report stored too", || async move {
        stored(db_ref) == accepted + 1
    })
    .await;
}
