//! The per-IP rate limit keys on an address the client cannot choose: behind a proxy
//! (`--trust-forwarded-for`), the last `X-Forwarded-For` address, the one the proxy appended;
//! an IPv6 client as its /64. A client that puts addresses of its own in front, or sends a
//! header line of its own, still gets its own allowance and no other.

use testenv::Nats;

use crate::helpers::{Gateway, TestResult, seed_at};

/// POSTs a report with one `X-Forwarded-For` line per entry of `forwarded`; the status.
async fn post_forwarded(gateway: &Gateway, report: String, forwarded: &[&str]) -> u16 {
    let mut request = gateway
        .http
        .post(format!("{}/api/v1", gateway.url))
        .header("content-type", "application/json");
    for line in forwarded {
        request = request.header("x-forwarded-for", *line);
    }
    request
        .body(report)
        .send()
        .await
        .expect("POST /api/v1")
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_a_proxy_the_address_it_appended_is_the_key_whatever_the_client_sends() -> TestResult
{
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "XFF", |c| {
        c.rate_limit_per_ip = 1;
        c.trust_forwarded_for = true;
    })
    .await;
    let cases: [(&[&str], u16); 9] = [
        (&["198.51.100.1, 203.0.113.9"], 204),
        // Same proxy-appended address, whatever the client wrote before it: same allowance.
        (&["198.51.100.2, 203.0.113.9"], 429),
        (&["203.0.113.9"], 429),
        // The client's own header line first, the proxy's line last.
        (&["10.1.1.1, 10.2.2.2", "203.0.113.9"], 429),
        // A client that puts another's address first is still itself.
        (&["203.0.113.9, 203.0.113.10"], 204),
        (&["203.0.113.9, 203.0.113.10"], 429),
        // IPv6: one /64 is one client.
        (&["2001:db8:1:2::1"], 204),
        (&["2001:db8:1:2:ffff::1"], 429),
        (&["2001:db8:1:3::1"], 204),
    ];
    for (i, (forwarded, expected)) in cases.into_iter().enumerate() {
        let status = post_forwarded(&gateway, seed_at(i as u64), forwarded).await;
        assert_eq!(status, expected, "X-Forwarded-For {forwarded:?}");
    }
    Ok(())
}

#[tokio::test]
async fn without_trust_the_forwarded_header_is_ignored_and_the_peer_is_the_key() -> TestResult {
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "PEER", |c| c.rate_limit_per_ip = 1).await;
    assert_eq!(
        post_forwarded(&gateway, seed_at(1), &["203.0.113.1"]).await,
        204
    );
    assert_eq!(
        post_forwarded(&gateway, seed_at(2), &["203.0.113.2"]).await,
        429,
        "a client escaped its limit by sending X-Forwarded-For"
    );
    Ok(())
}

#[tokio::test]
async fn a_burst_lets_a_shared_address_report_at_once_then_the_rate_paces_it() -> TestResult {
    const BURST: u64 = 20;
    let nats = Nats::start().await?;
    let gateway = Gateway::ready(&nats.url(), "BURST", |c| {
        c.rate_limit_per_ip = 1;
        c.rate_limit_per_ip_burst = Some(BURST as u32);
    })
    .await;
    // Twenty clusters behind one NAT address reporting in the same minute.
    for cluster in 0..BURST {
        let report = seed_at(cluster).replace(
            "2f9c93d3-156c-47aa-8802-578ffca9b50e",
            &format!("cluster-{cluster}"),
        );
        assert_eq!(
            post_forwarded(&gateway, report, &[]).await,
            204,
            "cluster {cluster}"
        );
    }
    let response = gateway.post_v1(seed_at(BURST)).await;
    assert_eq!(response.status(), 429);
    // A range: a real server's limiter, on the wall clock (see `api.rs`).
    let retry_after: u64 = response.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    Ok(())
}
