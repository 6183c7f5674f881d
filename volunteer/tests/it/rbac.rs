//! The volunteer running as its ServiceAccount with exactly the RBAC objects `k8s/` ships
//! (applied from the kustomizations themselves, so the test cannot drift from them).
//!
//! It shares [`KubeApi::shared`] with the status tests, taking turns with them
//! ([`shipped_turn`]): both apply the shipped objects.

use std::time::Duration;

use crate::common::{TestResult, apply, client_for, code, decode, dry_run, shipped_turn};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, ListParams};
use report::{Kind, SkipReason};
use testenv::{ClusterFixture, KubeApi, eventually};

/// Secrets and ConfigMaps stay out of reach, cluster-wide and in kube-system.
async fn assert_no_secrets_or_configmaps(sa: &kube::Client) -> TestResult {
    let lp = ListParams::default().limit(1);
    let all_secrets: Api<Secret> = Api::all(sa.clone());
    let all_cms: Api<ConfigMap> = Api::all(sa.clone());
    let sys_secrets: Api<Secret> = Api::namespaced(sa.clone(), "kube-system");
    let sys_cms: Api<ConfigMap> = Api::namespaced(sa.clone(), "kube-system");
    assert_eq!(code(&all_secrets.list(&lp).await), Some(403));
    assert_eq!(code(&all_cms.list(&lp).await), Some(403));
    assert_eq!(code(&sys_secrets.list(&lp).await), Some(403));
    assert_eq!(code(&sys_cms.list(&lp).await), Some(403));
    assert_eq!(code(&sys_secrets.get("rbac-probe").await), Some(403));
    assert_eq!(code(&sys_cms.get("rbac-probe").await), Some(403));
    Ok(())
}

#[tokio::test]
async fn the_shipped_roles_allow_what_they_promise_and_nothing_more() -> TestResult {
    let _turn = shipped_turn().await;
    let kube = KubeApi::shared().await?;
    let admin = kube.client().await?;
    let mut fixture = ClusterFixture {
        prefix: "rbac".into(),
        ..Default::default()
    };
    fixture.create_nodes(&admin).await?;
    // Other tests in this API server made nodes too: the volunteer must see every one.
    let nodes = Api::<Node>::all(admin.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len();
    assert!(nodes >= fixture.nodes.len());
    // Something to be denied: a Secret and a ConfigMap in kube-system.
    let pp = kube::api::PostParams::default();
    Api::<Secret>::namespaced(admin.clone(), "kube-system")
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rbac-probe"}, "stringData": {"password": "hunter2-rbac"}}))?,
        )
        .await?;
    Api::<ConfigMap>::namespaced(admin.clone(), "kube-system")
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rbac-probe"}, "data": {"k": "v"}}))?,
        )
        .await?;

    // Minimal: nodes and the kube-system namespace only.
    apply(kube, "volunteer")?;
    let token = kube.token_for("spartakus", "spartakus-volunteer").await?;
    let kubeconfig = kube.kubeconfig_for_token(&token)?;
    let sa = client_for(&kubeconfig).await?;
    let report = decode(&dry_run(&kubeconfig, &[]).await?)?;
    assert_eq!(report.master_version.as_deref(), Some("v1.37.2"));
    assert_eq!(report.nodes.as_ref().map(Vec::len), Some(nodes));
    assert_eq!(report.namespaces, None);
    assert_eq!(report.workloads, Some(vec![]));
    let mut want = vec![("namespaces".to_owned(), SkipReason::Forbidden)];
    want.extend(
        Kind::ALL
            .iter()
            .map(|k| (format!("workloads.{}", k.as_str()), SkipReason::Forbidden)),
    );
    let mut got: Vec<(String, SkipReason)> = report
        .skipped
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.section, s.reason))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    assert_no_secrets_or_configmaps(&sa).await?;

    // Opt-in: plus `list` on namespaces and the workload kinds.
    apply(kube, "volunteer/workloads")?;
    // RBAC changes reach the authorizer through a watch: wait for it, with a deadline.
    let pods: Api<Pod> = Api::all(sa.clone());
    eventually(
        Duration::from_secs(30),
        "the opt-in role to take effect",
        || {
            let pods = pods.clone();
            async move {
                pods.list_metadata(&ListParams::default().limit(1))
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    let report = decode(&dry_run(&kubeconfig, &[]).await?)?;
    assert_eq!(report.skipped, None);
    assert_eq!(report.nodes.as_ref().map(Vec::len), Some(nodes));
    assert!(report.namespaces.is_some_and(|n| n >= 5));
    let kinds: Vec<Kind> = report.workloads.iter().flatten().map(|w| w.kind).collect();
    assert_eq!(kinds, Kind::ALL.to_vec());
    assert_no_secrets_or_configmaps(&sa).await?;
    Ok(())
}
