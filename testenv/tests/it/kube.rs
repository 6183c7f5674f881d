//! etcd + kube-apiserver from testenv, driven by kube-rs as the volunteer will drive it.

use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use testenv::KubeApi;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The shared API server, printing how long it took for whichever test started it.
async fn kube_api() -> Result<&'static KubeApi, testenv::Error> {
    let started = Instant::now();
    let api = KubeApi::shared().await?;
    eprintln!("KubeApi::shared() returned in {:?}", started.elapsed());
    Ok(api)
}

#[tokio::test]
async fn a_node_with_status_can_be_created_and_listed() -> TestResult {
    let kube = kube_api().await?;
    let nodes: Api<Node> = Api::all(kube.client().await?);
    let name = "testenv-node-a";
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"testenv": "node-test"}},
        "spec": {"providerID": "gce://project/zone/instance"},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let status = serde_json::json!({
        "status": {
            "nodeInfo": {
                "machineID": "m", "systemUUID": "s", "bootID": "b",
                "kernelVersion": "6.1.0-18-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.0", "kubeletVersion": "v1.37.2",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
            "capacity": {"cpu": "4", "memory": "15437428Ki", "pods": "110"},
        }
    });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;

    let listed = nodes
        .list(&ListParams::default().labels("testenv=node-test"))
        .await?;
    assert_eq!(listed.items.len(), 1);
    let node = &listed.items[0];
    assert_eq!(node.metadata.name.as_deref(), Some(name));
    let status = node.status.as_ref().ok_or("no status")?;
    let info = status.node_info.as_ref().ok_or("no nodeInfo")?;
    assert_eq!(info.kubelet_version, "v1.37.2");
    assert_eq!(info.os_image, "Debian GNU/Linux 12 (bookworm)");
    let capacity = status.capacity.as_ref().ok_or("no capacity")?;
    assert_eq!(capacity["cpu"].0, "4");
    assert_eq!(capacity["memory"].0, "15437428Ki");
    Ok(())
}

#[tokio::test]
async fn a_service_account_without_rbac_is_denied_listing_nodes() -> TestResult {
    let kube = kube_api().await?;
    let token = kube.token_for("testenv-rbac", "nobody").await?;
    assert!(!token.is_empty());
    let path = kube.kubeconfig_for_token(&token)?;
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let nodes: Api<Node> = Api::all(kube::Client::try_from(config)?);
    match nodes.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains("system:serviceaccount:testenv-rbac:nobody"),
                "denied as the ServiceAccount: {}",
                status.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn the_server_reports_the_stamped_version() -> TestResult {
    let kube = kube_api().await?;
    let version = kube.client().await?.apiserver_version().await?;
    assert_eq!(version.git_version, "v1.37.2");
    Ok(())
}
