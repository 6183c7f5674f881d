//! `send` against a collector that misbehaves on purpose.
//!
//! The peer here is a tiny axum server, not the real gateway: it stands for a broken or
//! overloaded collector (answering 400, 503 or 429 on demand) and counts requests, which
//! the real gateway cannot be made to do. The real gateway is used in `e2e.rs`.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use volunteer::send::{Policy, SendError, send};

#[derive(Default)]
struct Peer {
    /// Answers to give, in order; then 204.
    script: Vec<(u16, Option<&'static str>)>,
    /// Every request body received (decompressed) and its headers.
    received: Vec<(HeaderMap, Vec<u8>)>,
}

async fn handle(State(peer): State<Arc<Mutex<Peer>>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut plain = Vec::new();
    let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain);
    let mut peer = peer.lock().expect("lock");
    let n = peer.received.len();
    peer.received.push((headers, plain));
    let (status, retry_after) = peer.script.get(n).copied().unwrap_or((204, None));
    let status = StatusCode::from_u16(status).expect("status");
    match retry_after {
        Some(ra) => (status, [("retry-after", ra)], "try later").into_response(),
        None => (status, "answer").into_response(),
    }
}

async fn peer(script: Vec<(u16, Option<&'static str>)>) -> (reqwest::Url, Arc<Mutex<Peer>>) {
    let state = Arc::new(Mutex::new(Peer {
        script,
        ..Default::default()
    }));
    let app = Router::new()
        .route("/api/v1", post(handle))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (reqwest::Url::parse(&url).expect("url"), state)
}

fn fast(deadline: Duration) -> Policy {
    Policy {
        deadline,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    }
}

const BODY: &[u8] =
    br#"{"version":"v0.1.0","clusterID":"c","reportID":"0b6f3a59-2f6e-4a8e-9d1c-3f1c2b7a9e10"}"#;

#[tokio::test]
async fn a_400_is_final_and_sent_once() {
    let (url, state) = peer(vec![(400, None)]).await;
    let err = send(
        &reqwest::Client::new(),
        &url,
        BODY,
        &fast(Duration::from_secs(10)),
    )
    .await
    .expect_err("400 must fail");
    assert!(
        matches!(err, SendError::Status { status, .. } if status == 400),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(state.lock().expect("lock").received.len(), 1);
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_body_until_accepted() {
    let (url, state) = peer(vec![
        (503, Some("0")),
        (500, None),
        (408, None),
        (429, Some("0")),
    ])
    .await;
    let outcome = send(
        &reqwest::Client::new(),
        &url,
        BODY,
        &fast(Duration::from_secs(30)),
    )
    .await
    .expect("delivered");
    assert_eq!(outcome.attempts, 5);
    assert_eq!(outcome.status, 204);
    let peer = state.lock().expect("lock");
    assert_eq!(peer.received.len(), 5);
    for (headers, body) in &peer.received {
        assert_eq!(body, BODY, "same bytes, same reportID, every time");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["content-encoding"], "gzip");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (url, state) = peer(vec![(503, Some("1"))]).await;
    let started = std::time::Instant::now();
    let outcome = send(
        &reqwest::Client::new(),
        &url,
        BODY,
        &fast(Duration::from_secs(30)),
    )
    .await
    .expect("delivered");
    assert_eq!(outcome.attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(state.lock().expect("lock").received.len(), 2);
}

#[tokio::test]
async fn the_deadline_bounds_the_retries() {
    let script = vec![(503, None); 10_000];
    let (url, state) = peer(script).await;
    let started = std::time::Instant::now();
    let err = send(
        &reqwest::Client::new(),
        &url,
        BODY,
        &fast(Duration::from_millis(700)),
    )
    .await
    .expect_err("never accepted");
    assert!(matches!(err, SendError::GaveUp { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(state.lock().expect("lock").received.len() >= 2);
}

#[tokio::test]
async fn a_collector_that_drops_connections_is_retried_until_it_answers() {
    let (backend, state) = peer(vec![]).await;
    let backend_addr = format!(
        "{}:{}",
        backend.host_str().expect("host"),
        backend.port().expect("port")
    );
    // In front of the collector: the first three connections are closed unanswered, as a
    // collector that is down or restarting would; later ones are passed through.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url =
        reqwest::Url::parse(&format!("http://{}", front.local_addr().expect("addr"))).expect("url");
    let dropped = Arc::new(Mutex::new(0u32));
    tokio::spawn({
        let dropped = dropped.clone();
        async move {
            loop {
                let Ok((mut conn, _)) = front.accept().await else {
                    return;
                };
                {
                    let mut d = dropped.lock().expect("lock");
                    if *d < 3 {
                        *d += 1;
                        continue;
                    }
                }
                let backend_addr = backend_addr.clone();
                tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(backend_addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                    }
                });
            }
        }
    });
    let outcome = send(
        &reqwest::Client::new(),
        &url,
        BODY,
        &fast(Duration::from_secs(30)),
    )
    .await
    .expect("delivered");
    assert_eq!(*dropped.lock().expect("lock"), 3);
    assert_eq!(outcome.attempts, 4);
    assert_eq!(state.lock().expect("lock").received.len(), 1);
}
