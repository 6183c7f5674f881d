//! The version-skew verdict on a real kube-apiserver (v1.37.2) holding testenv's realistic
//! nodes: the volunteer records it in its status ConfigMap with each report it sends (to the
//! real gateway in front of a real nats-server) and `volunteer status` prints it.
//!
//! This module owns its API server, because it changes a node's kubelet version; the compare
//! tests (`compare.rs`) report from the same cluster, taking turns through [`cluster`].

use std::collections::BTreeMap;

use crate::common::{BoxError, TestResult, own_api_server, text, volunteer};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use testenv::{ClusterFixture, KubeApi, Launch, Nats, Service};
use tokio::sync::{Mutex, MutexGuard, OnceCell};
use volunteer::status::key;

static KUBE: OnceCell<KubeApi> = OnceCell::const_new();
static FIXTURE: OnceCell<ClusterFixture> = OnceCell::const_new();
static TURN: Mutex<()> = Mutex::const_new(());

/// The status ConfigMaps live in `default`, which a bare API server has.
pub(crate) const NAMESPACE: &str = "default";

/// The cluster of this module and the compare tests: its API server, the fixture's nodes (all
/// kubelets v1.37.x), and a turn, as the skew test changes a node.
pub(crate) async fn cluster() -> Result<
    (
        &'static KubeApi,
        &'static ClusterFixture,
        MutexGuard<'static, ()>,
    ),
    BoxError,
> {
    let turn = TURN.lock().await;
    let kube = own_api_server(&KUBE).await?;
    let fixture = FIXTURE
        .get_or_try_init(|| async {
            let client = kube.client().await?;
            let mut f = ClusterFixture {
                prefix: "skw".into(),
                ..Default::default()
            };
            f.create_nodes(&client).await?;
            Ok::<_, BoxError>(f)
        })
        .await?;
    Ok((kube, fixture, turn))
}

/// The real gateway binary in front of a real nats-server.
pub(crate) async fn gateway() -> Result<(Nats, Service), BoxError> {
    let nats = Nats::start().await?;
    let gateway = Launch::gateway(&nats.url()).start().await?;
    Ok((nats, gateway))
}

/// One report to `gateway` as the admin, its status in `configmap`; the ConfigMap's data.
pub(crate) async fn report(
    kube: &KubeApi,
    gateway: &str,
    configmap: &str,
) -> Result<BTreeMap<String, String>, BoxError> {
    let kc = kube.kubeconfig_path().display().to_string();
    let out = volunteer(&[
        "--period",
        "0",
        "--gateway",
        gateway,
        "--kubeconfig",
        &kc,
        "--status-namespace",
        NAMESPACE,
        "--status-configmap",
        configmap,
        "--request-timeout",
        "5s",
    ])
    .await?;
    if !out.status.success() {
        return Err(format!("the report failed: {}", text(&out)).into());
    }
    let cm = Api::<ConfigMap>::namespaced(kube.client().await?, NAMESPACE)
        .get(configmap)
        .await?;
    Ok(cm.data.unwrap_or_default())
}

/// `volunteer status` for `configmap`, with `extra` flags.
pub(crate) async fn status(
    kube: &KubeApi,
    configmap: &str,
    extra: &[&str],
) -> Result<testenv::Finished, BoxError> {
    let kc = kube.kubeconfig_path().display().to_string();
    let mut args = vec![
        "status",
        "--kubeconfig",
        &kc,
        "--status-namespace",
        NAMESPACE,
        "--status-configmap",
        configmap,
    ];
    args.extend_from_slice(extra);
    volunteer(&args).await
}

/// Sets the kubelet version `node` reports (through the status subresource, as a kubelet does).
async fn set_kubelet(client: &kube::Client, node: &str, version: &str) -> TestResult {
    Api::<Node>::all(client.clone())
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"nodeInfo": {"kubeletVersion": version}}})),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_kubelet_four_minors_behind_gets_the_verdict_and_a_healthy_cluster_does_not() -> TestResult
{
    let (kube, fixture, _turn) = cluster().await?;
    let client = kube.client().await?;
    let (_nats, gateway) = gateway().await?;
    let cm = "spartakus-skew";

    // Healthy: every kubelet is the control plane's minor.
    let healthy = report(kube, &gateway.url(), cm).await?;
    let verdict = healthy.get(key::VERSION_SKEW).ok_or("no versionSkew key")?;
    assert!(!verdict.contains("kubelet of"), "{verdict}");
    assert!(verdict.contains("control plane 1.37: "), "{verdict}");
    assert!(
        verdict.contains(&format!(
            "kubelet 1.37 on {} nodes: the control plane's minor, within the policy",
            fixture.nodes.len()
        )),
        "{verdict}"
    );
    let out = status(kube, cm, &[]).await?;
    assert!(out.status.success(), "{}", text(&out));
    let printed = out.stdout_text();
    assert!(printed.contains("  version skew    "), "{printed}");
    assert!(
        !printed.contains("outside the version-skew policy"),
        "{printed}"
    );

    // One node's kubelet four minors behind v1.37.
    let nodes: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = nodes
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let old = names.first().ok_or("no nodes")?;
    set_kubelet(&client, old, "v1.33.7").await?;
    let result = async {
        let skewed = report(kube, &gateway.url(), cm).await?;
        let verdict = skewed
            .get(key::VERSION_SKEW)
            .ok_or("no versionSkew key")?
            .clone();
        assert!(
            verdict.contains("the kubelet of 1 node is outside the version-skew policy"),
            "{verdict}"
        );
        assert!(
            verdict.starts_with("attention: "),
            "the first line says attention: {verdict}"
        );
        assert!(
            verdict.contains(
                "kubelet 1.33 on 1 node: 4 minors behind the control plane, more than the 3 the policy allows"
            ),
            "{verdict}"
        );
        // Local, but still nothing identifying in it: no node name, UID or address.
        assert_eq!(fixture.leaks(verdict.as_bytes()), Vec::<String>::new());
        let out = status(kube, cm, &[]).await?;
        assert!(out.status.success(), "{}", text(&out));
        let printed = out.stdout_text();
        assert!(
            printed.contains(
                "  version skew    attention: the kubelet of 1 node is outside the version-skew policy"
            ),
            "{printed}"
        );
        assert!(
            printed.contains("                  kubelet 1.33 on 1 node: 4 minors behind"),
            "{printed}"
        );
        Ok::<_, BoxError>(())
    }
    .await;
    // The compare tests report from this cluster too: put the node back either way.
    set_kubelet(&client, old, "v1.37.2").await?;
    result
}
