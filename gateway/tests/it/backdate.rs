//! `--backdate-synthetic` (demos only): with it, a report marked `spartakus.dev/synthetic=true`
//! is queued with its own `timestamp` as `receivedAt`, clamped to the last 120 days; every other
//! report, and every report without the flag, gets the time it arrived.

use report::Envelope;
use testenv::Nats;

use crate::helpers::{Gateway, SEED, TestResult, jetstream, messages};

const DAY: i64 = 86_400;

/// A v2 report of `cluster` sent at `timestamp`, marked synthetic or not.
fn report(cluster: &str, timestamp: i64, synthetic: bool) -> String {
    let mut value: serde_json::Value = serde_json::from_str(SEED).expect("seed is JSON");
    value["clusterID"] = cluster.into();
    value["timestamp"] = timestamp.to_string().into();
    let mut extensions = vec![serde_json::json!({"name": "example.com/team", "value": "blue"})];
    if synthetic {
        extensions.push(serde_json::json!({"name": "spartakus.dev/synthetic", "value": "true"}));
    } else {
        // The mark's name with another value is not the mark.
        extensions.push(serde_json::json!({"name": "spartakus.dev/synthetic", "value": "yes"}));
    }
    value["extensions"] = extensions.into();
    value.to_string()
}

/// Sends every report, then returns the `receivedAt` JetStream holds for each cluster.
async fn received(
    nats: &Nats,
    stream: &str,
    backdate: bool,
    reports: &[(&str, String)],
) -> Vec<(String, jiff::Timestamp)> {
    let gateway = Gateway::ready(&nats.url(), stream, |c| c.backdate_synthetic = backdate).await;
    for (cluster, body) in reports {
        let response = gateway.post_v1(body.clone()).await;
        assert_eq!(response.status(), 204, "{cluster}");
    }
    let js = jetstream(&nats.url()).await;
    let stored = messages(&js, stream).await;
    assert_eq!(stored.len(), reports.len());
    gateway.stop().await.expect("gateway stops cleanly");
    stored
        .iter()
        .map(|m| {
            let e = Envelope::decode(&m.payload).expect("an envelope");
            (e.report.cluster_id().to_owned(), e.received_at)
        })
        .collect()
}

#[tokio::test]
async fn only_synthetic_reports_are_backdated_and_only_with_the_flag() -> TestResult {
    let nats = Nats::start().await?;
    let now = jiff::Timestamp::now().as_second();
    let reports = [
        (
            "synthetic-30-days",
            report("synthetic-30-days", now - 30 * DAY, true),
        ),
        (
            "synthetic-200-days",
            report("synthetic-200-days", now - 200 * DAY, true),
        ),
        (
            "synthetic-future",
            report("synthetic-future", now + 10 * DAY, true),
        ),
        (
            "real-30-days",
            report("real-30-days", now - 30 * DAY, false),
        ),
    ];

    let before = jiff::Timestamp::now();
    let on = received(&nats, "BACKDATE_ON", true, &reports).await;
    let after = jiff::Timestamp::now();
    let at = |got: &[(String, jiff::Timestamp)], cluster: &str| {
        got.iter()
            .find(|(c, _)| c == cluster)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("{cluster} not queued"))
    };
    let arrived = |t: jiff::Timestamp| t >= before && t <= after;

    assert_eq!(
        at(&on, "synthetic-30-days").as_second(),
        now - 30 * DAY,
        "a synthetic report is dated by its timestamp"
    );
    let clamped = at(&on, "synthetic-200-days").as_second();
    let earliest = (before.as_second() - 120 * DAY)..=(after.as_second() - 120 * DAY);
    assert!(
        earliest.contains(&clamped),
        "at most 120 days back: {clamped} not in {earliest:?}"
    );
    assert!(
        arrived(at(&on, "synthetic-future")),
        "never later than its arrival"
    );
    assert!(
        arrived(at(&on, "real-30-days")),
        "a report that is not marked keeps its time of arrival"
    );

    // The default: nothing is backdated.
    let before = jiff::Timestamp::now();
    let off = received(&nats, "BACKDATE_OFF", false, &reports).await;
    let after = jiff::Timestamp::now();
    for (cluster, t) in &off {
        assert!(t >= &before && t <= &after, "{cluster} was backdated: {t}");
    }
    Ok(())
}
