//! A cluster with more namespaces than the volunteer asks one by one: the pods are counted in
//! a random sample of `NAMESPACE_SAMPLE` namespaces, the histogram is scaled to all of them and
//! says so, and the total and ages stay exact (they come from the whole kind's Table).
//!
//! This module owns its API server, creates one fixture, and only reads after that, so
//! cluster-wide counts are exact.

use crate::common::{
    BoxError, TestResult, create_namespaces, create_pods, decode, dry_run, own_api_server,
};
use report::{BUCKETS, Kind, bucket_index};
use testenv::KubeApi;
use tokio::sync::OnceCell;
use volunteer::collect::{self, Counting, NAMESPACE_SAMPLE, Plan, counting};
use volunteer::snapshot::{NamespaceCounts, Section};

/// Namespaces the fixture makes; the API server has 4 more, all without pods.
const NAMESPACES: usize = 300;
const SYSTEM_NAMESPACES: usize = 4;
/// Pods in fixture namespace `i`: a third hold none, a third 3 (bucket 2–5), a third 40
/// (bucket 11–50).
fn pods_in(i: usize) -> usize {
    [0, 3, 40][i % 3]
}
const CONCURRENT_CREATES: usize = 16;

static KUBE: OnceCell<KubeApi> = OnceCell::const_new();
static FIXTURE: OnceCell<()> = OnceCell::const_new();

async fn setup() -> Result<&'static KubeApi, BoxError> {
    let kube = own_api_server(&KUBE).await?;
    FIXTURE
        .get_or_try_init(|| async { create_fixture(&kube.client().await?).await })
        .await?;
    Ok(kube)
}

async fn create_fixture(client: &kube::Client) -> Result<(), BoxError> {
    create_namespaces(client, (0..NAMESPACES).map(namespace), CONCURRENT_CREATES).await?;
    let pods = (0..NAMESPACES)
        .flat_map(|i| (0..pods_in(i)).map(move |p| (namespace(i), format!("smp-pod-{p}"))));
    create_pods(client, pods, CONCURRENT_CREATES).await
}

fn namespace(i: usize) -> String {
    format!("smp-{i:03}")
}

fn total_pods() -> u64 {
    (0..NAMESPACES).map(|i| pods_in(i) as u64).sum()
}

/// Namespaces per bucket, counting every namespace: the truth the estimate is checked against.
fn true_buckets() -> [u64; BUCKETS.len()] {
    let mut b = [0u64; BUCKETS.len()];
    b[0] += SYSTEM_NAMESPACES as u64;
    for i in 0..NAMESPACES {
        b[bucket_index(pods_in(i) as u64)] += 1;
    }
    b
}

#[test]
fn the_fixture_is_one_the_volunteer_samples() {
    let namespaces = NAMESPACES + SYSTEM_NAMESPACES;
    assert!(namespaces > NAMESPACE_SAMPLE);
    assert_eq!(
        counting(total_pods(), Some(namespaces)),
        Counting::Sample(NAMESPACE_SAMPLE)
    );
}

#[tokio::test]
async fn pods_are_counted_in_a_sample_of_namespaces_and_totalled_exactly() -> TestResult {
    let kube = setup().await?;
    let plan = Plan {
        master_version: false,
        nodes: false,
        namespaces: true,
        workloads: true,
        extensions: None,
    };
    let (snapshot, cost) = collect::collect(
        &kube.client().await?,
        &plan,
        jiff::Timestamp::now().as_second(),
    )
    .await;
    let Section::Ok(kinds) = &snapshot.workloads else {
        return Err("no workloads".into());
    };
    let pods = kinds
        .iter()
        .find_map(|(k, s)| match (k, s) {
            (Kind::Pod, Section::Ok(c)) => Some(c),
            _ => None,
        })
        .ok_or("no pods")?;
    assert_eq!(pods.total, total_pods());
    assert_eq!(pods.ages.len() as u64, total_pods());
    let NamespaceCounts::Sample { counts, of } = &pods.per_namespace else {
        return Err(format!("pods not sampled: {:?}", pods.per_namespace).into());
    };
    assert_eq!(*of, (NAMESPACES + SYSTEM_NAMESPACES) as u64);
    assert_eq!(counts.len(), NAMESPACE_SAMPLE);
    // Every drawn namespace's count is one the fixture made, and no namespace was drawn more
    // often than the cluster holds such namespaces.
    for (count, available) in [(0, NAMESPACES / 3 + SYSTEM_NAMESPACES), (3, 100), (40, 100)] {
        let drawn = counts.iter().filter(|&&c| c == count).count();
        assert!(drawn <= available, "{drawn} namespaces with {count} pods");
    }
    assert!(counts.iter().all(|c| [0, 3, 40].contains(c)), "{counts:?}");
    // One request per drawn namespace, and not one per namespace of the cluster.
    assert!(cost.requests >= NAMESPACE_SAMPLE as u64);
    assert!(cost.requests < (NAMESPACES + SYSTEM_NAMESPACES) as u64);
    Ok(())
}

#[tokio::test]
async fn the_report_scales_the_sample_to_every_namespace_and_says_so() -> TestResult {
    let kube = setup().await?;
    let report = decode(&dry_run(kube.kubeconfig_path(), &[]).await?)?;
    let namespaces = (NAMESPACES + SYSTEM_NAMESPACES) as u64;
    assert_eq!(report.namespaces, Some(namespaces));
    let workloads = report.workloads.as_ref().ok_or("no workloads")?;
    let pods = workloads
        .iter()
        .find(|w| w.kind == Kind::Pod)
        .ok_or("no pods")?;
    assert_eq!(pods.total, total_pods());
    assert_eq!(pods.namespaces_sampled, Some(NAMESPACE_SAMPLE as u64));
    let got: Vec<u64> = pods.per_namespace.iter().map(|b| b.namespaces).collect();
    assert_eq!(got.iter().sum::<u64>(), namespaces);
    // 256 of 304 drawn without replacement: a bucket's estimate has a standard deviation of
    // about 3.6 namespaces here; 26 is over 7 of them.
    for (bucket, (got, want)) in got.iter().zip(true_buckets()).enumerate() {
        if want == 0 {
            assert_eq!(*got, 0, "bucket {bucket}: {got:?}");
        } else {
            assert!(
                got.abs_diff(want) <= 26,
                "bucket {bucket}: {got} for {want}"
            );
        }
    }
    // The one Service (default/kubernetes) is counted from metadata, in every namespace.
    let services = workloads
        .iter()
        .find(|w| w.kind == Kind::Service)
        .ok_or("no services")?;
    assert_eq!(services.namespaces_sampled, None);
    assert_eq!(services.total, 1);
    assert_eq!(services.per_namespace[1].namespaces, 1);
    assert_eq!(services.per_namespace[0].namespaces, namespaces - 1);
    Ok(())
}
