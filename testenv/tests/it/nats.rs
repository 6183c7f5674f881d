//! nats-server from testenv, driven by async-nats as the gateway and ingester will drive it.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use testenv::{Nats, NatsCluster, NatsSync};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn headers_with_id(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, id);
    headers
}

#[tokio::test]
async fn a_repeated_msg_id_is_stored_and_consumed_once() -> TestResult {
    let started = Instant::now();
    let nats = Nats::start().await?;
    eprintln!("nats-server ready in {:?}", started.elapsed());
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let mut stream = js
        .create_stream(stream::Config {
            name: "REPORTS".into(),
            subjects: vec!["reports.>".into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;

    let first = js
        .publish_with_headers(
            "reports.v1",
            headers_with_id("report-1"),
            "same payload".into(),
        )
        .await?
        .await?;
    let second = js
        .publish_with_headers(
            "reports.v1",
            headers_with_id("report-1"),
            "same payload".into(),
        )
        .await?
        .await?;
    assert!(!first.duplicate);
    assert!(
        second.duplicate,
        "the second publish is acknowledged as a duplicate"
    );
    assert_eq!(first.sequence, second.sequence);
    assert_eq!(stream.info().await?.state.messages, 1);

    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("ingester".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    // `fetch` does not wait for more messages than are stored: it ends when the stream is drained.
    let mut messages = consumer.fetch().max_messages(10).messages().await?;
    let mut received = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message?;
        received.push(String::from_utf8(message.payload.to_vec())?);
        message.ack().await.map_err(|e| e.to_string())?;
    }
    assert_eq!(received, vec!["same payload"]);
    let mut consumer = consumer;
    assert_eq!(consumer.info().await?.num_pending, 0);
    Ok(())
}

#[tokio::test]
async fn a_file_stream_survives_kill_and_restart() -> TestResult {
    let mut nats = Nats::start().await?;
    let url = nats.url();
    {
        let js = jetstream::new(async_nats::connect(&url).await?);
        js.create_stream(stream::Config {
            name: "DURABLE".into(),
            subjects: vec!["durable".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        for i in 0..5 {
            js.publish("durable", format!("message {i}").into())
                .await?
                .await?;
        }
    }

    nats.kill();
    assert!(!nats.is_running());
    let started = Instant::now();
    nats.restart().await?;
    eprintln!("nats-server restarted in {:?}", started.elapsed());
    assert_eq!(nats.url(), url, "same port after restart");

    let js = jetstream::new(async_nats::connect(&url).await?);
    let mut stream = js.get_stream("DURABLE").await?;
    assert_eq!(stream.info().await?.state.messages, 5);
    let last = stream.get_last_raw_message_by_subject("durable").await?;
    assert_eq!(&last.payload[..], b"message 4");
    Ok(())
}

/// Publishes `payload` with Nats-Msg-Id `id` until JetStream acknowledges it, and returns the
/// number of failed attempts. While a replicated stream has no leader (just created, or its
/// leader just died) a publish finds no responder or times out; the same Nats-Msg-Id makes the
/// retries safe.
async fn publish_until_acked(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    payload: &'static str,
) -> Result<(jetstream::publish::PublishAck, u32), Box<dyn std::error::Error + Send + Sync>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        let attempt = async {
            js.publish_with_headers(subject.to_owned(), headers_with_id(id), payload.into())
                .await?
                .await
        };
        match attempt.await {
            Ok(ack) => return Ok((ack, failures)),
            Err(e) if Instant::now() < deadline => {
                failures += 1;
                if failures == 1 {
                    eprintln!("publish of {id} not acked yet: {e}");
                }
                // A pause between polls, not a wait for the election: the loop ends on an ack.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[tokio::test]
async fn an_r3_stream_keeps_accepting_publishes_when_its_leader_is_killed() -> TestResult {
    let started = Instant::now();
    let mut cluster = NatsCluster::start(3).await?;
    eprintln!("3-node nats cluster ready in {:?}", started.elapsed());
    let urls = cluster.urls();

    let js = jetstream::new(async_nats::connect(&urls[0]).await?);
    // Placing a new R3 stream takes the meta leader a Raft round over all three nodes; on a
    // loaded 2-core machine that can outlast the 5 s request timeout (CI failed on it once).
    // Creating again is safe: if the first request did create it, the second finds it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        let config = stream::Config {
            name: "REPLICATED".into(),
            subjects: vec!["replicated".into()],
            storage: stream::StorageType::File,
            num_replicas: 3,
            ..Default::default()
        };
        match js.get_or_create_stream(config).await {
            Ok(stream) => break stream,
            Err(e) if Instant::now() < deadline => {
                eprintln!("creating the stream failed, trying again: {e}");
                // A pause between attempts; the loop ends on success or the deadline.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // The stream exists once created, but takes a moment to elect its own leader.
    let (ack, failures) = publish_until_acked(&js, "replicated", "m-1", "before").await?;
    eprintln!("first publish acked after {failures} failed attempts");
    assert_eq!(ack.sequence, 1);

    // Kill the stream's leader, and talk to the cluster through a node that stays up.
    let leader = stream
        .info()
        .await?
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .ok_or("the stream has no leader")?;
    let victim: usize = leader.trim_start_matches("nats-").parse()?;
    let survivor = (victim + 1) % 3;
    cluster.node_mut(victim).kill();
    let js = jetstream::new(async_nats::connect(&urls[survivor]).await?);

    let failover = Instant::now();
    let (ack, failures) = publish_until_acked(&js, "replicated", "m-2", "after").await?;
    eprintln!(
        "publish acked {:?} after the leader died ({failures} failed attempts)",
        failover.elapsed()
    );
    assert_eq!(ack.stream, "REPLICATED");
    assert_eq!(ack.sequence, 2, "the message before the failover is kept");

    let started = Instant::now();
    cluster.node_mut(victim).restart().await?;
    eprintln!("cluster node {victim} restarted in {:?}", started.elapsed());

    // While the restarted node rejoins, the stream may briefly have no leader; the meta leader
    // then answers a stream info with the configuration and an empty state. Wait until a leader
    // answers with both replicas current, then check that no message was lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = js.get_stream("REPLICATED").await?;
    let info = loop {
        let info = stream.info().await?.clone();
        let settled = info.cluster.as_ref().is_some_and(|c| {
            c.leader.is_some() && c.replicas.len() == 2 && c.replicas.iter().all(|r| r.current)
        });
        if settled {
            break info;
        }
        if Instant::now() >= deadline {
            return Err(
                format!("the stream did not settle within 30 s: {:?}", info.cluster).into(),
            );
        }
        // A pause between polls; the loop ends on the condition or the deadline.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("stream settled {:?} after the restart", started.elapsed());
    assert_eq!(info.state.messages, 2, "both acknowledged messages kept");
    Ok(())
}

/// Whether the server at `monitor` fsyncs every write before acknowledging it.
async fn syncs_always(monitor: &str) -> bool {
    let varz: serde_json::Value = reqwest::get(format!("{monitor}/varz"))
        .await
        .expect("/varz answers")
        .json()
        .await
        .expect("/varz is JSON");
    let config = &varz["jetstream"]["config"];
    assert!(config.is_object(), "/varz shows JetStream's config: {varz}");
    // Left out when false.
    config["sync_always"].as_bool().unwrap_or(false)
}

#[tokio::test]
async fn servers_fsync_before_acknowledging_unless_told_otherwise() -> TestResult {
    let always = Nats::start().await?;
    assert!(syncs_always(&always.monitor_url()).await);
    let default = Nats::options()
        .sync(NatsSync::ServerDefault)
        .start()
        .await?;
    assert!(!syncs_always(&default.monitor_url()).await);
    Ok(())
}

#[test]
fn every_shipped_nats_configuration_fsyncs_before_acknowledging() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["k8s/base/nats/configmap.yaml", "testenv/quickstart.sh"] {
        let text = std::fs::read_to_string(root.join(file)).expect("readable");
        let jetstream = text.find("jetstream {").expect("a jetstream block");
        let block = &text[jetstream..jetstream + text[jetstream..].find('}').expect("closed")];
        assert!(
            block.contains("sync_interval: always"),
            "{file}: the jetstream block does not set sync_interval: always"
        );
    }
}
