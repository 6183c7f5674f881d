//! A paged list whose continue token expires part-way (410 Gone) is restarted once from
//! the beginning, and counts nothing twice; a second 410 skips only that section.
//!
//! The 410s come from testenv's fault-injecting [`KubeProxy`] in front of the real
//! kube-apiserver, because the real server cannot be made to send one here (the proxy's
//! module says why). Everything else the volunteer reads is the real server's answer,
//! forwarded unchanged.
//!
//! This module owns its API server, creates one fixture, and only reads after that, so
//! cluster-wide counts are exact.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{
    BoxError, TestResult, create_namespaces, create_pods, decode, dry_run, own_api_server,
    reference_counts,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use report::{Kind, SkipReason};
use serde_json::json;
use testenv::{KubeApi, KubeFault, KubeProxy, KubeRequest};
use tokio::sync::OnceCell;
use volunteer::collect::{self, Cost, NODE_PAGE, Plan, TABLE_PAGE};
use volunteer::snapshot::{KindCounts, NamespaceCounts, Section, Snapshot};

const PODS: &str = "/api/v1/pods";
const NODES: &str = "/api/v1/nodes";

/// Pods per namespace: 2,100 in all, two Table pages; enough that each namespace is counted
/// by its own request rather than from metadata.
const PODS_PER_NAMESPACE: [usize; 3] = [1_400, 450, 250];
/// Two node pages.
const NODE_COUNT: usize = 130;
const CONCURRENT_CREATES: usize = 8;
/// Fixed, so two collections' snapshots compare equal.
const TAKEN_AT: i64 = 1_800_000_000;

// ---------------------------------------------------------------------------------------
// The fixture and the runs

static KUBE: OnceCell<KubeApi> = OnceCell::const_new();
static FIXTURE: OnceCell<()> = OnceCell::const_new();

/// More pods than one Table page and more nodes than one node page, plus a few other
/// workloads so "the rest of the report" has something in it.
async fn setup() -> Result<&'static KubeApi, BoxError> {
    let kube = own_api_server(&KUBE).await?;
    FIXTURE
        .get_or_try_init(|| async {
            let client = kube.client().await?;
            create_fixture(&client).await
        })
        .await?;
    Ok(kube)
}

async fn create_fixture(client: &kube::Client) -> Result<(), BoxError> {
    assert!(PODS_PER_NAMESPACE.iter().sum::<usize>() > TABLE_PAGE as usize);
    assert!(NODE_COUNT > NODE_PAGE as usize);
    let namespace = |i: usize| format!("relist-{i}");
    create_namespaces(
        client,
        (0..PODS_PER_NAMESPACE.len()).map(namespace),
        CONCURRENT_CREATES,
    )
    .await?;
    let pods = PODS_PER_NAMESPACE
        .iter()
        .enumerate()
        .flat_map(|(i, n)| (0..*n).map(move |p| (namespace(i), format!("relist-pod-{i}-{p}"))));
    create_pods(client, pods, CONCURRENT_CREATES).await?;

    let pp = PostParams::default();
    let create_node = |n: usize| {
        let (client, pp) = (client.clone(), pp.clone());
        async move {
            let node: Node =
                serde_json::from_value(json!({"metadata": {"name": format!("relist-node-{n}")}}))?;
            Api::<Node>::all(client).create(&pp, &node).await?;
            Ok::<_, BoxError>(())
        }
    };
    futures::stream::iter(0..NODE_COUNT)
        .map(create_node)
        .buffer_unordered(CONCURRENT_CREATES)
        .try_collect::<()>()
        .await?;

    let labels = json!({"app": "relist"});
    for s in 0..3 {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("relist-svc-{s}")},
            "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 80}]},
        }))?;
        Api::<Service>::namespaced(client.clone(), "relist-1")
            .create(&pp, &svc)
            .await?;
    }
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "relist-app"},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                 "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}},
    }))?;
    Api::<Deployment>::namespaced(client.clone(), "relist-2")
        .create(&pp, &deploy)
        .await?;
    Ok(())
}

fn everything() -> Plan {
    Plan {
        master_version: true,
        nodes: true,
        namespaces: true,
        workloads: true,
        extensions: None,
    }
}

/// One collection through the proxy with `fault` armed: the snapshot, what it says it
/// cost, and the requests the proxy saw.
async fn collect_with(
    proxy: &KubeProxy,
    fault: KubeFault,
) -> Result<(Snapshot, Cost, Vec<KubeRequest>), BoxError> {
    proxy.arm(fault);
    let client = proxy.client()?;
    let (snapshot, cost) = collect::collect(&client, &everything(), TAKEN_AT).await;
    let seen = proxy.seen();
    // Every request reached the proxy and was counted, the 410s and the restarts too.
    assert_eq!(cost.requests, seen.len() as u64, "{fault:?}: {seen:?}");
    Ok((snapshot, cost, seen))
}

/// The volunteer binary through the proxy with `fault` armed: the report it would send
/// and its log.
async fn report_with(
    proxy: &KubeProxy,
    fault: KubeFault,
) -> Result<(report::Report, String), BoxError> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = proxy.kubeconfig(dir.path())?;
    proxy.arm(fault);
    let kc = kubeconfig.display().to_string();
    let out = crate::common::volunteer(&[
        "--dry-run",
        "--gateway",
        "https://collector.example.org",
        "--kubeconfig",
        &kc,
    ])
    .await?;
    let log = out.stderr;
    if !out.status.success() {
        return Err(format!("volunteer exited {}: {log}", out.status).into());
    }
    Ok((decode(out.stdout.trim_ascii_end())?, log))
}

/// The requests for `path`, as (continued, answered 410) pairs.
fn requests_for(seen: &[KubeRequest], path: &str) -> Vec<(bool, bool)> {
    seen.iter()
        .filter(|s| s.path == path)
        .map(|s| (s.continued, s.gone))
        .collect()
}

/// The requests for the pods of one namespace whose name starts with `prefix`.
fn pod_requests_in<'s>(seen: &'s [KubeRequest], prefix: &str) -> Vec<&'s KubeRequest> {
    let start = format!("/api/v1/namespaces/{prefix}");
    seen.iter()
        .filter(|s| s.path.starts_with(&start) && s.path.ends_with("/pods"))
        .collect()
}

/// The volunteer's logs name sections, never objects.
fn assert_no_object_names(log: &str) {
    for name in [
        "relist-0",
        "relist-1",
        "relist-2",
        "relist-pod-",
        "relist-node-",
    ] {
        assert!(!log.contains(name), "{name} in the log:\n{log}");
    }
}

/// Per-kind totals of the report, checked against an admin listing of the real server.
async fn assert_workloads_match(
    client: &kube::Client,
    report: &report::Report,
    except: Option<Kind>,
) -> TestResult {
    let workloads = report.workloads.as_ref().ok_or("no workloads")?;
    for stats in workloads {
        let want: u64 = match stats.kind {
            Kind::Pod => reference_counts::<Pod>(client).await?,
            Kind::Service => reference_counts::<Service>(client).await?,
            Kind::Deployment => reference_counts::<Deployment>(client).await?,
            Kind::StatefulSet => reference_counts::<StatefulSet>(client).await?,
            Kind::DaemonSet => reference_counts::<DaemonSet>(client).await?,
            Kind::Job => reference_counts::<Job>(client).await?,
            Kind::CronJob => reference_counts::<CronJob>(client).await?,
        }
        .values()
        .sum();
        assert_eq!(stats.total, want, "{:?}", stats.kind);
    }
    let kinds: Vec<Kind> = workloads.iter().map(|w| w.kind).collect();
    let want: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| Some(*k) != except)
        .collect();
    assert_eq!(kinds, want);
    Ok(())
}

/// The pods' section name, as the report's `skipped` list and the log spell it.
fn pod_section() -> String {
    format!("workloads.{}", Kind::Pod.as_str())
}

fn skipped(report: &report::Report) -> Vec<(String, SkipReason)> {
    report
        .skipped
        .iter()
        .flatten()
        .map(|s| (s.section.clone(), s.reason))
        .collect()
}

fn pods(snapshot: &Snapshot) -> Option<&KindCounts> {
    match &snapshot.workloads {
        Section::Ok(kinds) => kinds.iter().find_map(|(k, s)| match (k, s) {
            (Kind::Pod, Section::Ok(c)) => Some(c),
            _ => None,
        }),
        Section::Skipped(_) => None,
    }
}

/// `snapshot` with every age in whole hours: ages are printed by the API server when it
/// answers, so two collections a second apart read ages a second apart.
fn in_hours(mut snapshot: Snapshot) -> Snapshot {
    if let Section::Ok(kinds) = &mut snapshot.workloads {
        for (_, counts) in kinds.iter_mut() {
            *counts = in_hours_kind(counts);
        }
    }
    snapshot
}

fn in_hours_kind(counts: &Section<KindCounts>) -> Section<KindCounts> {
    let mut counts = counts.clone();
    if let Section::Ok(c) = &mut counts {
        for age in &mut c.ages {
            *age /= 3600;
        }
    }
    counts
}

async fn admin_node_uids(client: &kube::Client) -> Result<BTreeSet<String>, BoxError> {
    Ok(Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.uid)
        .collect())
}

// ---------------------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn a_410_part_way_through_the_pods_restarts_the_list_and_counts_each_pod_once() -> TestResult
{
    let kube = setup().await?;
    let admin = kube.client().await?;
    let proxy = KubeProxy::start(kube).await?;

    let (baseline, baseline_cost, seen) = collect_with(&proxy, KubeFault::None).await?;
    assert_eq!(requests_for(&seen, PODS), [(false, false), (true, false)]);
    let reference = reference_counts::<Pod>(&admin).await?;
    let want: u64 = PODS_PER_NAMESPACE.iter().sum::<usize>() as u64;
    assert_eq!(reference.values().sum::<u64>(), want);
    let counted = pods(&baseline).ok_or("no pods in the baseline")?;
    let NamespaceCounts::Every(per_namespace) = &counted.per_namespace else {
        return Err(format!("pods counted in a sample: {:?}", counted.per_namespace).into());
    };
    // Counted namespace by namespace: the empty ones too.
    let nonzero: BTreeMap<String, u64> = per_namespace
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(ns, n)| (ns.clone(), *n))
        .collect();
    assert_eq!(nonzero, reference);
    assert_eq!(counted.total, want);

    let (snapshot, cost, seen) = collect_with(&proxy, KubeFault::Once(PODS)).await?;
    // The first page, the 410 for the second, then the whole list again.
    assert_eq!(
        requests_for(&seen, PODS),
        [(false, false), (true, true), (false, false), (true, false)]
    );
    assert_eq!(cost.requests, baseline_cost.requests + 2);
    assert_eq!(pods(&snapshot).map(|c| c.ages.len() as u64), Some(want));
    // Exactly what an undisturbed collection read: nothing counted twice, nothing lost.
    assert_eq!(in_hours(snapshot), in_hours(baseline.clone()));

    let (report, log) = report_with(&proxy, KubeFault::Once(PODS)).await?;
    assert!(proxy.seen().iter().any(|s| s.gone), "the fault never fired");
    assert_eq!(skipped(&report), []);
    assert_workloads_match(&admin, &report, None).await?;
    let pod_stats = report
        .workloads
        .iter()
        .flatten()
        .find(|w| w.kind == Kind::Pod)
        .ok_or("no pods")?;
    assert_eq!(pod_stats.total, want);
    assert!(
        log.lines()
            .any(|l| l.contains("restarting") && l.contains(&pod_section())),
        "no restart logged for {}:\n{log}",
        pod_section()
    );
    assert_no_object_names(&log);
    Ok(())
}

#[tokio::test]
async fn a_pod_list_that_expires_again_after_its_restart_is_skipped_as_an_error() -> TestResult {
    let kube = setup().await?;
    let admin = kube.client().await?;
    let proxy = KubeProxy::start(kube).await?;

    let (baseline, baseline_cost, baseline_seen) = collect_with(&proxy, KubeFault::None).await?;
    let (snapshot, cost, seen) = collect_with(&proxy, KubeFault::Always(PODS)).await?;
    // One restart, not more.
    assert_eq!(
        requests_for(&seen, PODS),
        [(false, false), (true, true), (false, false), (true, true)]
    );
    // Two more requests for the pods' Table, and none of the per-namespace counts that follow
    // it: the kind is given up before them.
    let counted = pod_requests_in(&seen, "");
    assert!(counted.is_empty(), "{counted:?}");
    let baseline_counted = pod_requests_in(&baseline_seen, "").len() as u64;
    assert!(baseline_counted > 0);
    assert_eq!(cost.requests, baseline_cost.requests + 2 - baseline_counted);
    let (Section::Ok(got), Section::Ok(want)) = (&snapshot.workloads, &baseline.workloads) else {
        return Err("no workloads".into());
    };
    for ((kind, got), (_, want)) in got.iter().zip(want) {
        if *kind == Kind::Pod {
            assert_eq!(*got, Section::Skipped(SkipReason::Error));
        } else {
            assert_eq!(in_hours_kind(got), in_hours_kind(want), "{kind:?}");
        }
    }
    assert_eq!(snapshot.nodes, baseline.nodes);
    assert_eq!(snapshot.namespaces, baseline.namespaces);
    assert_eq!(snapshot.master_version, baseline.master_version);

    let (report, log) = report_with(&proxy, KubeFault::Always(PODS)).await?;
    assert_eq!(skipped(&report), [(pod_section(), SkipReason::Error)]);
    assert_workloads_match(&admin, &report, Some(Kind::Pod)).await?;
    let nodes = report.nodes.as_ref().ok_or("no nodes")?;
    assert_eq!(nodes.len(), admin_node_uids(&admin).await?.len());
    assert!(report.namespaces.is_some());
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("restarting") && l.contains(&pod_section()))
            .count(),
        1,
        "{log}"
    );
    assert_no_object_names(&log);
    Ok(())
}

#[tokio::test]
async fn a_410_in_the_node_list_restarts_it_once_then_skips_the_nodes() -> TestResult {
    let kube = setup().await?;
    let admin = kube.client().await?;
    let proxy = KubeProxy::start(kube).await?;
    let uids = admin_node_uids(&admin).await?;
    assert!(uids.len() > NODE_PAGE as usize, "{}", uids.len());

    let (baseline, baseline_cost, seen) = collect_with(&proxy, KubeFault::None).await?;
    assert_eq!(requests_for(&seen, NODES), [(false, false), (true, false)]);
    let Section::Ok(nodes) = &baseline.nodes else {
        return Err("no nodes in the baseline".into());
    };
    let read: BTreeSet<String> = nodes.iter().map(|n| n.uid.clone()).collect();
    assert_eq!(read, uids);
    assert_eq!(nodes.len(), uids.len());

    // Once: restarted, and every node read exactly once.
    let (snapshot, cost, seen) = collect_with(&proxy, KubeFault::Once(NODES)).await?;
    assert_eq!(
        requests_for(&seen, NODES),
        [(false, false), (true, true), (false, false), (true, false)]
    );
    assert_eq!(cost.requests, baseline_cost.requests + 2);
    match &snapshot.nodes {
        Section::Ok(nodes) => assert_eq!(nodes.len(), uids.len()),
        Section::Skipped(reason) => return Err(format!("nodes skipped: {reason:?}").into()),
    }
    assert_eq!(in_hours(snapshot), in_hours(baseline.clone()));

    // Every time: skipped after one restart; the rest is whole.
    let (snapshot, cost, seen) = collect_with(&proxy, KubeFault::Always(NODES)).await?;
    assert_eq!(
        requests_for(&seen, NODES),
        [(false, false), (true, true), (false, false), (true, true)]
    );
    assert_eq!(cost.requests, baseline_cost.requests + 2);
    assert_eq!(snapshot.nodes, Section::Skipped(SkipReason::Error));
    assert_eq!(
        in_hours(snapshot.clone()).workloads,
        in_hours(baseline.clone()).workloads
    );
    assert_eq!(snapshot.namespaces, baseline.namespaces);

    let (report, log) = report_with(&proxy, KubeFault::Always(NODES)).await?;
    assert_eq!(skipped(&report), [("nodes".to_owned(), SkipReason::Error)]);
    assert!(report.nodes.is_none());
    assert_workloads_match(&admin, &report, None).await?;
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("restarting") && l.contains("nodes"))
            .count(),
        1,
        "{log}"
    );
    assert_no_object_names(&log);

    let (report, _) = report_with(&proxy, KubeFault::Once(NODES)).await?;
    assert_eq!(skipped(&report), []);
    assert_eq!(report.nodes.map(|n| n.len()), Some(uids.len()));
    Ok(())
}

/// The proxy itself: without a fault it changes nothing a client can see.
#[tokio::test]
async fn the_proxy_without_a_fault_answers_as_the_server_does() -> TestResult {
    let kube = setup().await?;
    let proxy = KubeProxy::start(kube).await?;
    let direct = dry_run(kube.kubeconfig_path(), &[]).await?;
    let (proxied, _) = report_with(&proxy, KubeFault::None).await?;
    let direct = decode(&direct)?;
    assert_eq!(proxied.cluster_id, direct.cluster_id);
    assert_eq!(proxied.nodes, direct.nodes);
    assert_eq!(proxied.namespaces, direct.namespaces);
    assert_eq!(proxied.workloads, direct.workloads);
    assert_eq!(proxied.skipped, None);
    Ok(())
}

#[tokio::test]
async fn a_namespace_whose_count_the_server_leaves_out_is_counted_page_by_page() -> TestResult {
    let kube = setup().await?;
    let proxy = KubeProxy::start(kube).await?;

    let (baseline, baseline_cost, _) = collect_with(&proxy, KubeFault::None).await?;
    let (snapshot, cost, seen) = collect_with(&proxy, KubeFault::NoRemainingCount).await?;
    // The same counts, read page by page in each namespace holding more than one pod.
    assert_eq!(in_hours(snapshot), in_hours(baseline));
    let paged = pod_requests_in(&seen, "relist-");
    assert_eq!(paged.len(), 2 * PODS_PER_NAMESPACE.len(), "{paged:?}");
    assert_eq!(
        cost.requests,
        baseline_cost.requests + PODS_PER_NAMESPACE.len() as u64
    );
    Ok(())
}

#[tokio::test]
async fn a_server_that_prints_no_tables_is_read_as_metadata() -> TestResult {
    read_as_metadata(KubeFault::NoTables, "no Table form").await
}

#[tokio::test]
async fn tables_without_an_age_column_are_read_as_metadata() -> TestResult {
    read_as_metadata(KubeFault::NoAgeColumn, "no AGE column").await
}

/// With `fault`, each kind's Table is refused or useless: the kind is read from its metadata,
/// with exact ages, and `logged` says why.
async fn read_as_metadata(fault: KubeFault, logged: &str) -> TestResult {
    let kube = setup().await?;
    let admin = kube.client().await?;
    let proxy = KubeProxy::start(kube).await?;

    let (snapshot, _, seen) = collect_with(&proxy, fault).await?;
    // One Table request per kind, then the kind's metadata pages.
    let pods = pods(&snapshot).ok_or("no pods")?;
    let NamespaceCounts::Every(per_namespace) = &pods.per_namespace else {
        return Err(format!("pods counted in a sample: {:?}", pods.per_namespace).into());
    };
    let read: BTreeMap<String, u64> = per_namespace
        .iter()
        .map(|(ns, n)| (ns.clone(), *n))
        .collect();
    assert_eq!(read, reference_counts::<Pod>(&admin).await?);
    let want = PODS_PER_NAMESPACE.iter().sum::<usize>() as u64;
    assert_eq!(pods.total, want);
    assert_eq!(pods.ages.len() as u64, want);
    // Exact ages from creation times, up to the snapshot's time: every pod was made moments
    // ago, and the snapshot is dated TAKEN_AT.
    let since = u64::try_from(TAKEN_AT - jiff::Timestamp::now().as_second())?;
    assert!(
        pods.ages
            .iter()
            .all(|&a| a <= since + 60 && a + 3600 >= since),
        "{since}: {:?}",
        &pods.ages[..5]
    );
    assert_eq!(
        requests_for(&seen, PODS).len(),
        1 + 5,
        "one Table, five metadata pages"
    );
    let (report, log) = report_with(&proxy, fault).await?;
    assert_eq!(skipped(&report), []);
    assert_workloads_match(&admin, &report, None).await?;
    assert!(log.contains(logged), "{log}");
    assert_no_object_names(&log);
    Ok(())
}
