//! Shared by the volunteer's integration tests: running the volunteer binary (through
//! testenv), reading its report, the reference counts it is checked against, bulk creation of
//! namespaces and pods, and the shipped manifests the RBAC and status tests apply.
//!
//! The realistic cluster most tests read is testenv's [`testenv::ClusterFixture`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::de::DeserializeOwned;
use serde_json::json;
use testenv::{Finished, KubeApi, Launch};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long one run of the volunteer may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The volunteer binary with `args`, logging its own debug lines, its operator having
/// accepted the current report-content version (as the shipped CronJob does): the tests check
/// the whole report. The consent tests pass `--consent` or remove the variable.
pub(crate) fn launch(args: &[&str]) -> Launch {
    Launch::volunteer()
        .args(args)
        .env("RUST_LOG", "volunteer=debug,info")
        .env("SPARTAKUS_CONSENT", report::consent::CURRENT.to_string())
}

/// Runs the volunteer binary to its end with `args`.
pub(crate) async fn volunteer(args: &[&str]) -> Result<Finished, BoxError> {
    Ok(launch(args).run(RUN_TIMEOUT).await?)
}

/// How a run ended and everything it printed, for an assertion's message.
pub(crate) fn text(out: &Finished) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout_text(),
        out.stderr
    )
}

/// `volunteer --dry-run` against `kubeconfig`: the body it would send.
pub(crate) async fn dry_run(kubeconfig: &Path, extra: &[&str]) -> Result<Vec<u8>, BoxError> {
    let kc = kubeconfig.display().to_string();
    let mut args = vec![
        "--dry-run",
        "--gateway",
        "https://collector.example.org",
        "--kubeconfig",
        &kc,
    ];
    args.extend_from_slice(extra);
    let out = volunteer(&args).await?;
    if !out.status.success() {
        return Err(format!("volunteer exited {}: {}", out.status, out.stderr).into());
    }
    let mut body = out.stdout;
    if body.last() == Some(&b'\n') {
        body.pop();
    }
    Ok(body)
}

/// The report in `body`, validated.
pub(crate) fn decode(body: &[u8]) -> Result<report::Report, BoxError> {
    report::decode(body)
        .map(report::ValidReport::into_report)
        .map_err(|e| format!("invalid report: {e}\n{}", String::from_utf8_lossy(body)).into())
}

/// Per-namespace counts of one kind, by listing full objects as an admin: the
/// independent reference the volunteer's counts are checked against.
pub(crate) async fn reference_counts<K>(
    client: &kube::Client,
) -> Result<BTreeMap<String, u64>, BoxError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut counts = BTreeMap::new();
    for item in Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        *counts
            .entry(item.meta().namespace.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    Ok(counts)
}

/// Creates the namespaces `names`, `concurrency` requests at a time.
pub(crate) async fn create_namespaces(
    client: &kube::Client,
    names: impl IntoIterator<Item = String>,
    concurrency: usize,
) -> Result<(), BoxError> {
    use futures::{StreamExt, TryStreamExt};
    let create = |name: String| {
        let client = client.clone();
        async move {
            let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
            Api::<Namespace>::all(client)
                .create(&PostParams::default(), &ns)
                .await?;
            Ok::<_, BoxError>(())
        }
    };
    futures::stream::iter(names)
        .map(create)
        .buffer_unordered(concurrency)
        .try_collect()
        .await
}

/// Creates a bare pod for each `(namespace, name)`, `concurrency` requests at a time. A bare
/// API server has no scheduler: the pods stay Pending.
pub(crate) async fn create_pods(
    client: &kube::Client,
    pods: impl IntoIterator<Item = (String, String)>,
    concurrency: usize,
) -> Result<(), BoxError> {
    use futures::{StreamExt, TryStreamExt};
    let create = |(namespace, name): (String, String)| {
        let client = client.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            }))?;
            Api::<Pod>::namespaced(client, &namespace)
                .create(&PostParams::default(), &pod)
                .await?;
            Ok::<_, BoxError>(())
        }
    };
    futures::stream::iter(pods)
        .map(create)
        .buffer_unordered(concurrency)
        .try_collect()
        .await
}

/// An API server of the calling module's own, started by its first test, for tests whose
/// cluster-wide counts must be exact: objects that other modules' tests create in
/// [`KubeApi::shared`] would change them. Like the shared one, its servers and folder go away
/// when the test process exits.
pub(crate) async fn own_api_server(
    cell: &'static OnceCell<KubeApi>,
) -> Result<&'static KubeApi, BoxError> {
    Ok(cell.get_or_try_init(KubeApi::start).await?)
}

/// Taken by every test that applies the shipped manifests or uses their fixed names (namespace
/// `spartakus`, ConfigMap `spartakus-status`) in [`KubeApi::shared`]: they take turns.
static SHIPPED: Mutex<()> = Mutex::const_new(());

/// A turn with the shipped objects (see [`SHIPPED`]).
pub(crate) async fn shipped_turn() -> MutexGuard<'static, ()> {
    SHIPPED.lock().await
}

/// `k8s/<variant>` in the repository.
pub(crate) fn k8s_dir(variant: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../k8s")
        .join(variant)
}

/// `kubectl apply -k k8s/<variant>` as the admin.
pub(crate) fn apply(kube: &KubeApi, variant: &str) -> TestResult {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kube.kubeconfig_path())
        .args(["apply", "-k"])
        .arg(k8s_dir(variant))
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "kubectl apply -k k8s/{variant}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// A client with the credentials of `kubeconfig`.
pub(crate) async fn client_for(kubeconfig: &Path) -> Result<kube::Client, BoxError> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// The HTTP status of an API call: 200 when it succeeded, `None` when no answer came.
pub(crate) fn code<T>(r: &Result<T, kube::Error>) -> Option<u16> {
    match r {
        Ok(_) => Some(200),
        Err(kube::Error::Api(s)) => Some(s.code),
        Err(_) => None,
    }
}

/// Writes `dir/kubeconfig` for an API server that is not there (a loopback port nothing
/// listens on, so every request is refused at once) and returns its path: a volunteer run that
/// must not depend on a cluster.
pub(crate) fn offline_kubeconfig(dir: &Path) -> Result<PathBuf, BoxError> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{closed}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )?;
    Ok(path)
}
