//! The status ConfigMap and `--diff`, with the shipped manifests applied to a real
//! kube-apiserver and the volunteer acting as its ServiceAccount (a token), sending to the
//! real gateway binary in front of a real nats-server.
//!
//! The shipped objects have fixed names (namespace `spartakus`, ConfigMap
//! `spartakus-status`), so the tests that use them take turns ([`shipped_turn`], with the RBAC
//! test); each starts from the applied manifests and no status, whatever ran before it.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::{BoxError, TestResult, apply, client_for, code, shipped_turn, text};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use sha2::{Digest, Sha256};
use testenv::{ClusterFixture, Finished, KubeApi, Launch, Nats, Service, eventually};
use tokio::sync::MutexGuard;
use volunteer::status::{BODY_KEY, key};

const NAMESPACE: &str = "spartakus";
const STATUS: &str = "spartakus-status";
const STREAM: &str = "SPARTAKUS_REPORTS";

/// The shipped manifests applied, no status ConfigMap and no Events in the namespace, and
/// the volunteer's ServiceAccount with a kubeconfig whose context namespace is the
/// volunteer's (as the pod's own namespace is in a cluster).
struct Shipped {
    _turn: MutexGuard<'static, ()>,
    kube: &'static KubeApi,
    admin: kube::Client,
    /// Runs as the ServiceAccount `spartakus/spartakus-volunteer`.
    kubeconfig: PathBuf,
    sa: kube::Client,
}

impl Shipped {
    async fn new() -> Result<Shipped, BoxError> {
        let turn = shipped_turn().await;
        let kube = KubeApi::shared().await?;
        let admin = kube.client().await?;
        apply(kube, "volunteer")?;
        let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
        match cms.delete(STATUS, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let events: Api<Event> = Api::namespaced(admin.clone(), NAMESPACE);
        events
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
        let token = kube.token_for(NAMESPACE, "spartakus-volunteer").await?;
        let written = kube.kubeconfig_for_token(&token)?;
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&written)?)?;
        config["contexts"][0]["context"]["namespace"] = NAMESPACE.into();
        let kubeconfig = written.with_extension("spartakus.kubeconfig");
        std::fs::write(&kubeconfig, config.to_string())?;
        let sa = client_for(&kubeconfig).await?;
        // RBAC changes reach the authorizer through a watch: until then the status is
        // forbidden (403) rather than missing (404).
        let sa_cms: Api<ConfigMap> = Api::namespaced(sa.clone(), NAMESPACE);
        eventually(
            Duration::from_secs(30),
            "the status Role to take effect",
            || {
                let sa_cms = sa_cms.clone();
                async move { code(&sa_cms.get(STATUS).await) == Some(404) }
            },
        )
        .await;
        Ok(Shipped {
            _turn: turn,
            kube,
            admin,
            kubeconfig,
            sa,
        })
    }

    fn kc(&self) -> String {
        self.kubeconfig.display().to_string()
    }

    async fn status(&self) -> Result<ConfigMap, BoxError> {
        Ok(Api::<ConfigMap>::namespaced(self.admin.clone(), NAMESPACE)
            .get(STATUS)
            .await?)
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The real gateway binary, publishing to `nats`, ready (its stream exists, so the first report
/// is not answered 503).
async fn start_gateway(nats: &Nats) -> Result<(Service, String), BoxError> {
    let gateway = Launch::gateway(&nats.url()).start().await?;
    let url = gateway.url();
    Ok((gateway, url))
}

/// The reports queued in the stream.
async fn queued(nats: &Nats) -> Result<Vec<report::envelope::ValidEnvelope>, BoxError> {
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream(STREAM).await else {
        return Ok(vec![]);
    };
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(report::Envelope::decode(&m.payload)?);
        }
    }
    Ok(out)
}

/// One report to `gateway`, as the ServiceAccount.
async fn report_to(shipped: &Shipped, gateway: &str, extra: &[&str]) -> Result<Finished, BoxError> {
    let kc = shipped.kc();
    let mut args = vec![
        "--period",
        "0",
        "--gateway",
        gateway,
        "--kubeconfig",
        &kc,
        "--request-timeout",
        "5s",
    ];
    args.extend_from_slice(extra);
    crate::common::volunteer(&args).await
}

fn data(cm: &ConfigMap) -> std::collections::BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn stored_body(cm: &ConfigMap) -> Result<Vec<u8>, BoxError> {
    let gz = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get(BODY_KEY))
        .ok_or("no body in binaryData")?;
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(&gz.0[..]).read_to_end(&mut body)?;
    Ok(body)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_delivered_report_is_recorded_and_volunteer_status_prints_it() -> TestResult {
    let shipped = Shipped::new().await?;
    let nats = Nats::start().await?;
    let (_gateway, url) = start_gateway(&nats).await?;
    let out = report_to(&shipped, &url, &[]).await?;
    assert!(out.status.success(), "{}", text(&out));

    let sent = queued(&nats).await?;
    assert_eq!(sent.len(), 1);
    let cm = shipped.status().await?;
    let d = data(&cm);
    assert_eq!(d[key::OUTCOME], "delivered", "{d:?}");
    assert_eq!(d[key::HTTP_STATUS], "204");
    assert_eq!(d[key::ATTEMPTS], "1");
    assert_eq!(d[key::REPORT_ID], sent[0].report_id.to_string());
    assert_eq!(d[key::COLLECTOR_HOST], "127.0.0.1");
    assert_eq!(d[key::PERIOD], "0s");
    assert!(!d.contains_key(key::NEXT_REPORT_DUE), "a CronJob decides");
    assert!(!d.contains_key(key::ERROR));
    let at: jiff::Timestamp = d[key::LAST_ATTEMPT].parse()?;
    assert!((jiff::Timestamp::now().as_second() - at.as_second()).abs() < 120);
    // The kept body is the exact body: its digest and size, and the report that arrived.
    let body = stored_body(&cm)?;
    assert_eq!(d[key::BODY_SHA256], sha256(&body));
    assert_eq!(d[key::BODY_BYTES], body.len().to_string());
    assert_eq!(d[key::LAST_DELIVERED_SHA256], d[key::BODY_SHA256]);
    assert_eq!(d[key::LAST_DELIVERED_REPORT_ID], d[key::REPORT_ID]);
    let mut kept = crate::common::decode(&body)?;
    // The gateway re-keys node IDs with its own key before it queues a report.
    let key = report::node_id::NodeIdKey::from_secret(testenv::GATEWAY_NODE_ID_KEY)?;
    for node in kept.nodes.iter_mut().flatten() {
        node.id = key.rekey(&kept.cluster_id, &node.id);
    }
    assert_eq!(&kept, sent[0].report.report());
    assert!(
        kept.erasure_check.is_some(),
        "every v2 report carries its check"
    );

    // `volunteer status`, as the ServiceAccount (it may read its own status).
    let kc = shipped.kc();
    let out = crate::common::volunteer(&["status", "--kubeconfig", &kc]).await?;
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout)?;
    eprintln!("volunteer status:\n{printed}");
    assert!(
        printed.contains("Status of the volunteer (ConfigMap spartakus/spartakus-status)"),
        "{printed}"
    );
    assert!(printed.contains(": delivered"), "{printed}");
    assert!(printed.contains(&d[key::REPORT_ID]), "{printed}");
    assert!(printed.contains("204 (after 1 request(s))"), "{printed}");
    assert!(printed.contains(&d[key::BODY_SHA256]), "{printed}");

    // And what the README shows with kubectl.
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(shipped.kube.kubeconfig_path())
        .args(["-n", NAMESPACE, "get", "configmap", STATUS, "-o", "yaml"])
        .output()?;
    let yaml = String::from_utf8(out.stdout)?;
    assert!(yaml.contains("outcome: delivered"), "{yaml}");
    assert!(yaml.contains(&format!("{BODY_KEY}: ")), "{yaml}");
    // The README's check of the kept body against its digest, verbatim but for the kubeconfig.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            r"kubectl --kubeconfig {} -n spartakus get configmap spartakus-status -o jsonpath='{{.binaryData.lastDelivered\.json\.gz}}' | base64 -d | gunzip | sha256sum",
            shipped.kube.kubeconfig_path().display()
        ))
        .output()?;
    let printed = String::from_utf8(out.stdout)?;
    assert!(
        printed.starts_with(&d[key::LAST_DELIVERED_SHA256]),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_report_is_recorded_with_an_event_and_the_last_delivered_body_is_kept()
-> TestResult {
    let shipped = Shipped::new().await?;
    let nats = Nats::start().await?;
    let (_gateway, url) = start_gateway(&nats).await?;
    let out = report_to(&shipped, &url, &[]).await?;
    assert!(out.status.success(), "{}", text(&out));
    let delivered = data(&shipped.status().await?);

    // A collector that is down: nothing listens on the port.
    let down = format!("http://127.0.0.1:{}", free_port()?);
    let out = report_to(&shipped, &down, &["--send-deadline", "2s"]).await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let cm = shipped.status().await?;
    let d = data(&cm);
    assert_eq!(d[key::OUTCOME], "failed", "{d:?}");
    assert!(!d.contains_key(key::HTTP_STATUS), "no answer: {d:?}");
    assert!(d[key::ERROR].contains("Connection refused"), "{d:?}");
    assert_ne!(d[key::REPORT_ID], delivered[key::REPORT_ID]);
    assert_ne!(d[key::BODY_SHA256], delivered[key::BODY_SHA256]);
    for k in key::DELIVERED {
        assert_eq!(d.get(k), delivered.get(k), "{k}");
    }
    assert_eq!(
        sha256(&stored_body(&cm)?),
        delivered[key::LAST_DELIVERED_SHA256]
    );

    let events: Api<Event> = Api::namespaced(shipped.admin.clone(), NAMESPACE);
    let events = events.list(&ListParams::default()).await?.items;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.reason.as_deref(), Some("ReportNotDelivered"));
    let regarding = e.regarding.as_ref().ok_or("no regarding")?;
    assert_eq!(regarding.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(regarding.name.as_deref(), Some(STATUS));
    assert_eq!(regarding.uid, cm.metadata.uid);
    let note = e.note.as_deref().unwrap_or_default();
    assert!(note.contains(&d[key::REPORT_ID]), "{note}");
    assert!(note.contains("Connection refused"), "{note}");

    // A collector that refuses the report for good: 400, recorded with its status.
    let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let refusing_url = format!("http://{}", refusing.local_addr()?);
    let app = axum::Router::new().route(
        "/api/v1",
        axum::routing::post(|| async { (axum::http::StatusCode::BAD_REQUEST, "no") }),
    );
    // A stand-in: the real gateway answers 400 only to reports this volunteer never makes.
    tokio::spawn(async move { axum::serve(refusing, app).await });
    let out = report_to(&shipped, &refusing_url, &[]).await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = data(&shipped.status().await?);
    assert_eq!(d[key::OUTCOME], "failed");
    assert_eq!(d[key::HTTP_STATUS], "400");
    assert_eq!(d[key::LAST_DELIVERED_REPORT_ID], delivered[key::REPORT_ID]);
    Ok(())
}

#[tokio::test]
async fn diff_prints_what_changed_since_the_last_delivered_report_and_sends_nothing() -> TestResult
{
    let shipped = Shipped::new().await?;
    let mut fixture = ClusterFixture {
        prefix: "diff".into(),
        ..Default::default()
    };
    fixture.create_nodes(&shipped.admin).await?;
    let nats = Nats::start().await?;
    let (_gateway, url) = start_gateway(&nats).await?;
    let kc = shipped.kc();
    let args = ["--diff", "--gateway", &url, "--kubeconfig", &kc];
    let diff = || crate::common::volunteer(&args);

    // Before any report: nothing to compare with, said plainly.
    let out = diff().await?;
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout)?;
    assert!(
        printed.starts_with("No status in ConfigMap spartakus/spartakus-status yet"),
        "{printed}"
    );

    let out = report_to(&shipped, &url, &[]).await?;
    assert!(out.status.success(), "{}", text(&out));
    let before = shipped.status().await?;

    // A node is upgraded.
    let name = "diff-kind-worker";
    let nodes: Api<Node> = Api::all(shipped.admin.clone());
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"status": {"nodeInfo": {"kubeletVersion": "v1.38.0"}}}),
            ),
        )
        .await?;
    let out = diff().await?;
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout)?;
    eprintln!("volunteer --diff:\n{printed}");
    let changes: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("  nodes") || l.starts_with("  namespaces"))
        .collect();
    assert_eq!(changes.len(), 1, "{printed}");
    let line = changes[0].trim();
    assert!(
        line.starts_with("nodes[") && line.ends_with(r#"].kubeletVersion: "v1.37.2" -> "v1.38.0""#),
        "{printed}"
    );
    assert!(printed.contains("1 field(s) would change"), "{printed}");
    assert!(printed.contains("  reportID: "), "{printed}");
    assert!(printed.ends_with("Nothing was sent.\n"), "{printed}");

    // Nothing sent, nothing recorded.
    assert_eq!(queued(&nats).await?.len(), 1);
    let after = shipped.status().await?;
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    Ok(())
}

#[tokio::test]
async fn the_volunteer_reads_no_other_configmap_and_no_secret() -> TestResult {
    let shipped = Shipped::new().await?;
    let pp = PostParams::default();
    let admin_cms: Api<ConfigMap> = Api::namespaced(shipped.admin.clone(), NAMESPACE);
    let admin_secrets: Api<Secret> = Api::namespaced(shipped.admin.clone(), NAMESPACE);
    for name in ["status-probe", "status-probe-2"] {
        let _ = admin_cms
            .create(
                &pp,
                &serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}, "data": {"k": "v"}}))?,
            )
            .await;
    }
    let _ = admin_secrets
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "status-probe"}, "stringData": {"password": "hunter2-status"}}))?,
        )
        .await;

    let cms: Api<ConfigMap> = Api::namespaced(shipped.sa.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(shipped.sa.clone(), NAMESPACE);
    let lp = ListParams::default().limit(1);
    // Its own status: readable (absent yet), and it may create it.
    assert_eq!(code(&cms.get(STATUS).await), Some(404));
    // Every other ConfigMap: neither listed, read, changed nor deleted.
    assert_eq!(code(&cms.list(&lp).await), Some(403));
    assert_eq!(code(&cms.get("status-probe").await), Some(403));
    let mut probe = admin_cms.get("status-probe").await?;
    probe.data = Some([("k".to_owned(), "changed".to_owned())].into());
    assert_eq!(
        code(&cms.replace("status-probe", &pp, &probe).await),
        Some(403)
    );
    assert_eq!(
        code(&cms.delete("status-probe", &DeleteParams::default()).await),
        Some(403)
    );
    assert_eq!(
        code(&Api::<ConfigMap>::all(shipped.sa.clone()).list(&lp).await),
        Some(403)
    );
    // No Secret at all.
    assert_eq!(code(&secrets.list(&lp).await), Some(403));
    assert_eq!(code(&secrets.get("status-probe").await), Some(403));
    assert_eq!(
        code(&Api::<Secret>::all(shipped.sa.clone()).list(&lp).await),
        Some(403)
    );
    // `create` cannot be limited by name in RBAC: another ConfigMap can be created (the
    // README says so), but not read back.
    let other: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "status-created-by-volunteer"}, "data": {"k": "v"}}))?;
    assert_eq!(code(&cms.create(&pp, &other).await), Some(200));
    assert_eq!(
        code(&cms.get("status-created-by-volunteer").await),
        Some(403)
    );
    admin_cms
        .delete("status-created-by-volunteer", &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn without_its_status_role_the_volunteer_still_delivers_and_warns() -> TestResult {
    let shipped = Shipped::new().await?;
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(shipped.admin.clone(), NAMESPACE);
    bindings
        .delete("spartakus-volunteer-status", &DeleteParams::default())
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(shipped.sa.clone(), NAMESPACE);
    eventually(
        Duration::from_secs(30),
        "the status Role to be gone",
        || {
            let cms = cms.clone();
            async move { code(&cms.get(STATUS).await) == Some(403) }
        },
    )
    .await;

    let nats = Nats::start().await?;
    let (_gateway, url) = start_gateway(&nats).await?;
    let out = report_to(&shipped, &url, &[]).await?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(queued(&nats).await?.len(), 1, "the report was delivered");
    let stderr = &out.stderr;
    let warning = stderr
        .lines()
        .find(|l| l.contains("status not recorded"))
        .unwrap_or_else(|| panic!("no warning in:\n{stderr}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("forbidden"), "{warning}");
    assert!(
        warning.contains("must allow get and update on configmaps/spartakus-status"),
        "{warning}"
    );
    assert_eq!(
        code(
            &Api::<ConfigMap>::namespaced(shipped.admin.clone(), NAMESPACE)
                .get(STATUS)
                .await
        ),
        Some(404)
    );

    // Failing without the role: the failure is the report's, the status only a warning.
    let down = format!("http://127.0.0.1:{}", free_port()?);
    let out = report_to(&shipped, &down, &["--send-deadline", "1s"]).await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = &out.stderr;
    assert!(stderr.contains("event not emitted"), "{stderr}");
    assert!(stderr.contains("volunteer failed"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_periodic_volunteer_records_when_its_next_report_is_due() -> TestResult {
    let shipped = Shipped::new().await?;
    let nats = Nats::start().await?;
    let (_gateway, url) = start_gateway(&nats).await?;
    let kc = shipped.kc();
    let mut volunteer = crate::common::launch(&[
        "--period",
        "1h",
        "--jitter",
        "1s",
        "--gateway",
        &url,
        "--kubeconfig",
        &kc,
    ])
    .ready_when_started()
    .start()
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(shipped.admin.clone(), NAMESPACE);
    eventually(Duration::from_secs(60), "the first report's status", || {
        let cms = cms.clone();
        async move { cms.get_opt(STATUS).await.ok().flatten().is_some() }
    })
    .await;
    volunteer.kill();
    let d = data(&shipped.status().await?);
    assert_eq!(d[key::OUTCOME], "delivered", "{d:?}");
    assert_eq!(d[key::PERIOD], "1h");
    let attempt: jiff::Timestamp = d[key::LAST_ATTEMPT].parse()?;
    let due: jiff::Timestamp = d[key::NEXT_REPORT_DUE].parse()?;
    // One period after the first report's slot, give or take the two jitters (at most 1 s
    // each) and the time the first report took.
    let ahead = due.as_second() - attempt.as_second();
    assert!(
        (3590..=3602).contains(&ahead),
        "next report {ahead} s after the last"
    );
    Ok(())
}

#[tokio::test]
async fn volunteer_status_without_a_status_says_so_and_fails() -> TestResult {
    let kube = KubeApi::shared().await?;
    let kc = kube.kubeconfig_path().display().to_string();
    let out = crate::common::volunteer(&[
        "status",
        "--kubeconfig",
        &kc,
        "--status-namespace",
        "kube-public",
    ])
    .await?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stdout.is_empty());
    let stderr = &out.stderr;
    assert!(
        stderr.contains("no status yet: ConfigMap kube-public/spartakus-status does not exist"),
        "{stderr}"
    );
    Ok(())
}
