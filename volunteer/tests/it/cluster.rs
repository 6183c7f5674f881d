//! The volunteer against a real kube-apiserver holding a realistic cluster: what it
//! reports matches the cluster, and nothing identifying leaves it.
//!
//! This module owns its API server, creates one fixture, and only reads after that, so
//! cluster-wide counts are exact.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{
    BoxError, TestResult, decode, dry_run, own_api_server, reference_counts, volunteer,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, ListParams};
use report::{BUCKETS, Kind, SkipReason, bucket_index};
use testenv::{ClusterFixture, KubeApi};
use tokio::sync::OnceCell;
use volunteer::anonymize::Key;

static KUBE: OnceCell<KubeApi> = OnceCell::const_new();
static FIXTURE: OnceCell<ClusterFixture> = OnceCell::const_new();

async fn setup() -> Result<(&'static KubeApi, &'static ClusterFixture), BoxError> {
    let kube = own_api_server(&KUBE).await?;
    let fixture = FIXTURE
        .get_or_try_init(|| async {
            let client = kube.client().await?;
            Ok::<_, BoxError>(ClusterFixture::create(&client, "rpt").await?)
        })
        .await?;
    Ok((kube, fixture))
}

async fn default_key(kube: &KubeApi) -> Result<Key, BoxError> {
    let ns: Api<Namespace> = Api::all(kube.client().await?);
    let uid = ns.get("kube-system").await?.metadata.uid.ok_or("no uid")?;
    Ok(Key::from_kube_system_uid(&uid))
}

#[tokio::test]
async fn master_version_and_nodes_match_the_cluster() -> TestResult {
    let (kube, fixture) = setup().await?;
    let body = dry_run(kube.kubeconfig_path(), &[]).await?;
    let report = decode(&body)?;

    let version = kube.client().await?.apiserver_version().await?;
    assert_eq!(
        report.master_version.as_deref(),
        Some(version.git_version.as_str())
    );
    assert_eq!(report.master_version.as_deref(), Some("v1.37.2"));
    assert_eq!(report.version, format!("v{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(report.schema_version, Some(2));
    assert!(report.report_id.is_some());
    let ts: i64 = report.timestamp.as_deref().ok_or("no timestamp")?.parse()?;
    assert!((jiff::Timestamp::now().as_second() - ts).abs() < 600);

    let key = default_key(kube).await?;
    let nodes = report.nodes.as_ref().ok_or("no nodes")?;
    assert_eq!(nodes.len(), fixture.nodes.len());
    for want in &fixture.nodes {
        let id = key.node_id(&want.uid);
        let got = nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| format!("node {id} missing"))?;
        assert_eq!(
            got.operating_system.as_deref(),
            want.operating_system,
            "{id}"
        );
        assert_eq!(got.os_image.as_deref(), want.os_image, "{id}");
        assert_eq!(got.kernel_version.as_deref(), want.kernel_version, "{id}");
        assert_eq!(got.architecture.as_deref(), want.architecture, "{id}");
        assert_eq!(
            got.container_runtime_version.as_deref(),
            want.container_runtime_version,
            "{id}"
        );
        assert_eq!(got.kubelet_version.as_deref(), want.kubelet_version, "{id}");
        assert_eq!(got.cloud_provider.as_deref(), want.cloud_provider, "{id}");
        let capacity: Vec<(&str, &str)> = got
            .capacity
            .iter()
            .flatten()
            .map(|r| (r.resource.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(capacity, want.capacity, "{id}");
    }
    assert_eq!(report.skipped, None, "the admin may read everything");
    Ok(())
}

#[tokio::test]
async fn counts_and_histograms_match_the_cluster() -> TestResult {
    let (kube, fixture) = setup().await?;
    let client = kube.client().await?;
    let report = decode(&dry_run(kube.kubeconfig_path(), &[]).await?)?;

    let namespaces: Vec<String> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    // The four a bare API server makes, plus the fixture's.
    assert_eq!(namespaces.len(), 4 + fixture.namespaces.len());
    assert_eq!(report.namespaces, Some(namespaces.len() as u64));

    let reference: BTreeMap<Kind, BTreeMap<String, u64>> = BTreeMap::from([
        (Kind::Pod, reference_counts::<Pod>(&client).await?),
        (Kind::Service, reference_counts::<Service>(&client).await?),
        (
            Kind::Deployment,
            reference_counts::<Deployment>(&client).await?,
        ),
        (
            Kind::StatefulSet,
            reference_counts::<StatefulSet>(&client).await?,
        ),
        (
            Kind::DaemonSet,
            reference_counts::<DaemonSet>(&client).await?,
        ),
        (Kind::Job, reference_counts::<Job>(&client).await?),
        (Kind::CronJob, reference_counts::<CronJob>(&client).await?),
    ]);
    // The reference agrees with what the fixture made (plus default/kubernetes).
    let pods: u64 = ClusterFixture::PODS_PER_NAMESPACE.iter().sum::<usize>() as u64;
    assert_eq!(reference[&Kind::Pod].values().sum::<u64>(), pods);
    let services: u64 = ClusterFixture::SERVICES_PER_NAMESPACE.iter().sum::<usize>() as u64 + 1;
    assert_eq!(reference[&Kind::Service].values().sum::<u64>(), services);

    let workloads = report.workloads.as_ref().ok_or("no workloads")?;
    let kinds: Vec<Kind> = workloads.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, Kind::ALL.to_vec());
    for stats in workloads {
        let counts = &reference[&stats.kind];
        assert_eq!(
            stats.total,
            counts.values().sum::<u64>(),
            "{:?}",
            stats.kind
        );
        let mut want = [0u64; BUCKETS.len()];
        for ns in &namespaces {
            want[bucket_index(counts.get(ns).copied().unwrap_or(0))] += 1;
        }
        let got: Vec<u64> = stats.per_namespace.iter().map(|b| b.namespaces).collect();
        assert_eq!(got, want.to_vec(), "{:?}", stats.kind);
        let bounds: Vec<(u64, Option<u64>)> =
            stats.per_namespace.iter().map(|b| (b.min, b.max)).collect();
        assert_eq!(bounds, BUCKETS.to_vec());
        // Everything was created moments ago.
        if stats.total > 0 {
            let ages = stats.age_hours.ok_or("no ages")?;
            assert_eq!((ages.median, ages.p90), (0, 0), "{:?}", stats.kind);
        }
    }
    Ok(())
}

#[tokio::test]
async fn nothing_identifying_is_in_the_sent_bytes() -> TestResult {
    let (kube, fixture) = setup().await?;
    let body = dry_run(kube.kubeconfig_path(), &[]).await?;
    decode(&body)?;
    // The check is only as good as its list: make sure it holds what it should.
    assert!(fixture.secrets.len() > 300, "{}", fixture.secrets.len());
    for must in [
        "10.128.0.42",
        "34.123.45.67",
        "i-0a1b2c3d4e5f67890",
        "10.1.2.3",
        "10.20.30.41",
    ] {
        assert!(
            fixture.secrets.contains(must),
            "{must} not in the secret list"
        );
    }
    assert!(
        fixture
            .secrets
            .iter()
            .any(|s| s.contains("rptbuilder@build-rpt-17"))
    );
    let leaks = fixture.leaks(&body);
    assert!(leaks.is_empty(), "leaked: {leaks:?}");
    // Nor the kube-system UID the key is derived from.
    let ns: Api<Namespace> = Api::all(kube.client().await?);
    let uid = ns.get("kube-system").await?.metadata.uid.ok_or("no uid")?;
    assert!(!String::from_utf8_lossy(&body).contains(&uid));
    Ok(())
}

#[tokio::test]
async fn ids_are_stable_across_runs_and_change_with_the_key_and_the_collector() -> TestResult {
    let (kube, _fixture) = setup().await?;
    let ids = |body: &[u8]| -> Result<(String, BTreeSet<String>), BoxError> {
        let r = decode(body)?;
        let nodes = r
            .nodes
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.id)
            .collect();
        Ok((r.cluster_id, nodes))
    };
    let first = ids(&dry_run(kube.kubeconfig_path(), &[]).await?)?;
    let second = ids(&dry_run(kube.kubeconfig_path(), &[]).await?)?;
    assert_eq!(first, second);
    assert!(uuid::Uuid::parse_str(&first.0).is_ok());

    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "a-secret-from-a-kubernetes-secret\n")?;
    let key_path = key_file.display().to_string();
    let keyed = ids(&dry_run(kube.kubeconfig_path(), &["--key-file", &key_path]).await?)?;
    assert_ne!(keyed.0, first.0);
    assert!(keyed.1.is_disjoint(&first.1));
    assert_eq!(keyed.1.len(), first.1.len());
    let again = ids(&dry_run(kube.kubeconfig_path(), &["--key-file", &key_path]).await?)?;
    assert_eq!(keyed, again);

    // Another collector sees another cluster ID (same node IDs: the key is the same).
    let kc = kube.kubeconfig_path().display().to_string();
    let out = volunteer(&[
        "--dry-run",
        "--gateway",
        "https://other-collector.example.net",
        "--kubeconfig",
        &kc,
    ])
    .await?;
    let other = ids(out.stdout.trim_ascii_end())?;
    assert_ne!(other.0, first.0);
    assert_eq!(other.1, first.1);

    // The operator's own ID wins.
    let own = ids(&dry_run(
        kube.kubeconfig_path(),
        &["--cluster-id", "2f9c93d3-156c-47aa-8802-578ffca9b50e"],
    )
    .await?)?;
    assert_eq!(own.0, "2f9c93d3-156c-47aa-8802-578ffca9b50e");
    Ok(())
}

/// Removes what `--omit section` should remove from a full report's JSON.
fn without(mut report: serde_json::Value, section: &str) -> serde_json::Value {
    let obj = report.as_object_mut().expect("an object");
    match section.split_once('.') {
        Some(("nodes", field)) => {
            for node in obj["nodes"].as_array_mut().expect("nodes").iter_mut() {
                node.as_object_mut().expect("a node").remove(field);
            }
        }
        _ if section == "ages" => {
            for w in obj["workloads"]
                .as_array_mut()
                .expect("workloads")
                .iter_mut()
            {
                w.as_object_mut().expect("stats").remove("ageHours");
            }
        }
        _ if section == "namespaces" => {
            obj.remove("namespaces");
            // Without the namespace list, empty namespaces are not counted (their number
            // would reveal the namespace count).
            for w in obj["workloads"]
                .as_array_mut()
                .expect("workloads")
                .iter_mut()
            {
                w["perNamespace"][0]["namespaces"] = 0.into();
            }
        }
        _ => {
            obj.remove(section);
        }
    }
    report
}

/// The report minus what differs between any two runs.
fn comparable(body: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    let obj = v.as_object_mut().expect("an object");
    obj.remove("reportID");
    obj.remove("timestamp");
    obj.remove("skipped");
    v
}

#[tokio::test]
async fn omit_removes_exactly_the_named_field() -> TestResult {
    let (kube, _fixture) = setup().await?;
    let dir = tempfile::tempdir()?;
    let ext = dir.path().join("extensions.json");
    std::fs::write(&ext, r#"{"example.com/hello": "world"}"#)?;
    let ext_path = ext.display().to_string();
    let full = dry_run(kube.kubeconfig_path(), &["--extensions", &ext_path]).await?;
    let full_report = decode(&full)?;
    assert_eq!(full_report.extensions.as_ref().map(Vec::len), Some(1));
    for omit in volunteer::omit::Omit::all() {
        let section = omit.section().to_owned();
        let body = dry_run(
            kube.kubeconfig_path(),
            &["--extensions", &ext_path, "--omit", &section],
        )
        .await?;
        let report = decode(&body)?;
        assert_eq!(
            comparable(&body),
            without(comparable(&full), &section),
            "--omit {section}"
        );
        let skipped: Vec<(String, SkipReason)> = report
            .skipped
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.section, s.reason))
            .collect();
        assert_eq!(
            skipped,
            vec![(section.clone(), SkipReason::Omitted)],
            "--omit {section}"
        );
    }
    // Repeatable.
    let body = dry_run(
        kube.kubeconfig_path(),
        &[
            "--omit",
            "nodes.osImage",
            "--omit",
            "nodes.kernelVersion",
            "--omit",
            "workloads",
        ],
    )
    .await?;
    let report = decode(&body)?;
    assert!(report.workloads.is_none());
    for n in report.nodes.iter().flatten() {
        assert!(n.os_image.is_none() && n.kernel_version.is_none());
        assert!(n.kubelet_version.is_some());
    }
    Ok(())
}

#[tokio::test]
async fn bad_configuration_is_one_line_and_exit_64() -> TestResult {
    for args in [
        vec!["--gateway", "stdout", "--omit", "nodes.name"],
        vec!["--gateway", "ftp://collector.example.org"],
        vec!["--gateway", "stdout", "--period", "soon"],
        vec!["--gateway", "stdout", "--key-file", "/nonexistent/key"],
        vec![
            "--gateway",
            "stdout",
            "--extensions",
            "/nonexistent/ext.json",
        ],
        vec![],
    ] {
        let out = volunteer(&args).await?;
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = &out.stderr;
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    Ok(())
}
