//! The Helm chart in `k8s/helm/spartakus-volunteer`, with the real `helm` (built by
//! `testenv/build.sh helm`) on testenv's kube-apiserver: lint and render, one source for the
//! manifests (the chart, `k8s/volunteer` and `k8s/install.yaml` give the same objects), the
//! schema's refusals, and a release installed, upgraded, rolled back and uninstalled, its
//! ServiceAccount acting with exactly the rights the volunteer needs.
//!
//! Every assertion on a release reads the objects through the API server, never helm's output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{TestResult, client_for, code, decode, dry_run, shipped_turn};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use report::{Kind, SkipReason};
use serde_json::Value;
use testenv::{KubeApi, eventually};

/// The release and namespace the lifecycle test uses in the shared API server: not the shipped
/// names, which the kustomize tests apply there.
const RELEASE: &str = "it-spartakus-volunteer";
const NAMESPACE: &str = "helm-it";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn chart() -> PathBuf {
    repo("k8s/helm/spartakus-volunteer")
}

fn helm_bin() -> PathBuf {
    let path = testenv::bin_dir().join("helm");
    assert!(
        path.is_file(),
        "{} is missing: run testenv/build.sh helm",
        path.display()
    );
    path
}

/// Runs helm with `args` (and `--kubeconfig` when given), in a fresh HOME-less config.
fn helm(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut cmd = Command::new(helm_bin());
    cmd.args(args);
    if let Some(kc) = kubeconfig {
        cmd.arg("--kubeconfig").arg(kc);
    }
    let dir = std::env::temp_dir().join(format!("spartakus-helm-{}", std::process::id()));
    cmd.env("HELM_CACHE_HOME", dir.join("cache"))
        .env("HELM_CONFIG_HOME", dir.join("config"))
        .env("HELM_DATA_HOME", dir.join("data"));
    cmd.output().expect("helm runs")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The objects of a YAML stream, keyed by kind, namespace and name.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(yaml).expect("YAML parses");
    for v in docs {
        if v.is_null() {
            continue;
        }
        let key = format!(
            "{}/{}/{}",
            v["kind"].as_str().unwrap_or_default(),
            v["metadata"]["namespace"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        );
        assert!(out.insert(key.clone(), v).is_none(), "{key} twice");
    }
    out
}

fn template(extra: &[&str]) -> BTreeMap<String, Value> {
    let chart = chart().display().to_string();
    let mut args = vec![
        "template",
        "spartakus-volunteer",
        &chart,
        "--namespace",
        "spartakus",
    ];
    args.extend_from_slice(extra);
    objects(&ok(helm(&args, None), "helm template"))
}

fn kustomize(variant: &str) -> BTreeMap<String, Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo("k8s").join(variant))
        .output()
        .expect("kubectl runs");
    objects(&ok(out, "kubectl kustomize"))
}

/// Asserts two sets of objects are equal, naming the first object that differs.
fn assert_same(left: &BTreeMap<String, Value>, right: &BTreeMap<String, Value>, what: &str) {
    let lk: Vec<_> = left.keys().collect();
    let rk: Vec<_> = right.keys().collect();
    assert_eq!(lk, rk, "{what}: different objects");
    for (key, l) in left {
        assert_eq!(
            l,
            &right[key],
            "{what}: {key} differs\nleft: {}\nright: {}",
            serde_json::to_string_pretty(l).unwrap_or_default(),
            serde_json::to_string_pretty(&right[key]).unwrap_or_default()
        );
    }
}

#[test]
fn the_chart_lints_and_renders_the_objects_of_k8s_volunteer_and_install_yaml() {
    let chart = chart().display().to_string();
    ok(
        helm(&["lint", "--strict", &chart], None),
        "helm lint --strict",
    );
    ok(
        helm(
            &["lint", "--strict", &chart, "--set", "workloads=true"],
            None,
        ),
        "helm lint --strict workloads",
    );

    // The chart with the namespace == kustomize == the committed install.yaml.
    let with_ns = template(&["--set", "namespace.create=true"]);
    assert_same(&with_ns, &kustomize("volunteer"), "chart vs k8s/volunteer");
    let install = std::fs::read_to_string(repo("k8s/install.yaml")).expect("k8s/install.yaml");
    assert_same(&objects(&install), &with_ns, "install.yaml vs chart");
    // install.yaml is the render script's output, byte for byte.
    let script = Command::new(repo("k8s/render-install.sh"))
        .env("HELM", helm_bin())
        .output()
        .expect("render-install.sh runs");
    assert!(
        ok(script, "render-install.sh") == install,
        "k8s/install.yaml is stale: run k8s/render-install.sh > k8s/install.yaml"
    );

    // The default render: the same objects but the Namespace, which a release does not own.
    let mut without_ns = with_ns.clone();
    assert!(without_ns.remove("Namespace//spartakus").is_some());
    assert_same(&template(&[]), &without_ns, "default render");

    // Opt-in workload statistics, like k8s/volunteer/workloads.
    assert_same(
        &template(&["--set", "namespace.create=true", "--set", "workloads=true"]),
        &kustomize("volunteer/workloads"),
        "chart workloads=true vs k8s/volunteer/workloads",
    );

    // The default consent is the current report-content version.
    let cronjob = &with_ns["CronJob/spartakus/spartakus-volunteer"];
    let env = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"];
    let consent = env
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "SPARTAKUS_CONSENT")
        .map(|e| e["value"].clone());
    assert_eq!(
        consent,
        Some(Value::from(report::consent::CURRENT.to_string()))
    );
}

#[test]
fn values_render_as_documented() {
    let objs = template(&[
        "--set",
        &format!("image.digest={DIGEST}"),
        "--set",
        "image.tag=9.9.9",
        "--set",
        "omit={nodes.osImage,extensions}",
        "--set",
        "schedule=5 4 * * 1",
        "--set",
        "consent=1",
        "--set-json",
        r#"extensions={"example.com/team":"platform"}"#,
    ]);
    let cj = &objs["CronJob/spartakus/spartakus-volunteer"];
    assert_eq!(cj["spec"]["schedule"], "5 4 * * 1");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    // A digest wins over the tag.
    assert_eq!(c["image"], format!("spartakus-volunteer@{DIGEST}"));
    let env: BTreeMap<&str, &str> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default(),
                e["value"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(env["SPARTAKUS_OMIT"], "nodes.osImage,extensions");
    assert_eq!(env["SPARTAKUS_CONSENT"], "1");
    assert_eq!(
        env["SPARTAKUS_EXTENSIONS"],
        "/etc/spartakus/extensions/extensions.json"
    );
    let cm = &objs["ConfigMap/spartakus/spartakus-volunteer-extensions"];
    let json: Value =
        serde_json::from_str(cm["data"]["extensions.json"].as_str().unwrap_or_default())
            .expect("extensions.json is JSON");
    assert_eq!(json, serde_json::json!({"example.com/team": "platform"}));
    assert_eq!(
        pod["volumes"][1]["configMap"]["name"],
        "spartakus-volunteer-extensions"
    );
    // Without a digest, the tag.
    let objs = template(&["--set", "image.tag=9.9.9"]);
    let c = &objs["CronJob/spartakus/spartakus-volunteer"]["spec"]["jobTemplate"]["spec"]["template"]
        ["spec"]["containers"][0];
    assert_eq!(c["image"], "spartakus-volunteer:9.9.9");
}

/// Each bad value, and what helm's error must say about it (the schema's path and rule).
const BAD_VALUES: [(&str, &str, &str); 7] = [
    ("--set", "gateway=http://collector.example.org", "/gateway"),
    ("--set", "gateway=not a url", "/gateway"),
    ("--set", "image.digest=sha256:abc", "/image/digest"),
    ("--set", "omit={nodes.name}", "/omit/0"),
    ("--set", "schedule=every day", "/schedule"),
    ("--set", "schedule=12345", "/schedule"),
    ("--set", "gatway=https://collector.example.org", "gatway"),
];

#[test]
fn bad_values_are_refused_by_lint_with_the_schemas_message() {
    let chart = chart().display().to_string();
    for (flag, value, path) in BAD_VALUES {
        let out = helm(&["lint", "--strict", &chart, flag, value], None);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{value} passed lint:\n{all}");
        assert!(
            all.contains("values don't meet the specifications of the schema")
                && all.contains(path),
            "{value}: lint's message does not name {path}:\n{all}"
        );
    }
}

/// The minute the chart derives from the kube-system namespace's UID: Adler-32 (sprig's
/// `adler32sum`) modulo 60.
fn derived_minute(uid: &str) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for byte in uid.bytes() {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    ((b << 16) | a) % 60
}

async fn cluster_role_rules(client: &kube::Client) -> usize {
    Api::<ClusterRole>::all(client.clone())
        .get(RELEASE)
        .await
        .expect("the ClusterRole")
        .rules
        .map_or(0, |r| r.len())
}

fn image(cj: &CronJob) -> String {
    let v = serde_json::to_value(cj).unwrap_or_default();
    v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn schedule(cj: &CronJob) -> String {
    let v = serde_json::to_value(cj).unwrap_or_default();
    v["spec"]["schedule"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn install_upgrade_rollback_and_uninstall_on_the_api_server() -> TestResult {
    let kube = KubeApi::shared().await?;
    let admin = kube.client().await?;
    let kc = kube.kubeconfig_path();
    let chart = chart().display().to_string();
    let base = [
        RELEASE,
        chart.as_str(),
        "--namespace",
        NAMESPACE,
        "--set",
        "gateway=https://collector.example.org",
    ];

    // A bad value is refused before anything is created.
    let mut args = vec!["install"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--create-namespace", "--set", "image.digest=sha256:abc"]);
    let out = helm(&args, Some(kc));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/image/digest"),
        "{err}"
    );
    assert_eq!(
        code(&Api::<ClusterRole>::all(admin.clone()).get(RELEASE).await),
        Some(404)
    );

    // Install.
    let mut args = vec!["install"];
    args.extend_from_slice(&base);
    args.push("--create-namespace");
    ok(helm(&args, Some(kc)), "helm install");
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NAMESPACE);
    let cronjobs: Api<CronJob> = Api::namespaced(admin.clone(), NAMESPACE);
    sas.get(RELEASE).await?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .get(RELEASE)
        .await?;
    let role = Api::<Role>::namespaced(admin.clone(), NAMESPACE)
        .get(&format!("{RELEASE}-status"))
        .await?;
    let rules = role.rules.unwrap_or_default();
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["spartakus-status".to_owned()][..])
    );
    Api::<RoleBinding>::namespaced(admin.clone(), NAMESPACE)
        .get(&format!("{RELEASE}-status"))
        .await?;
    assert_eq!(cluster_role_rules(&admin).await, 2);
    let cj = cronjobs.get(RELEASE).await?;
    assert_eq!(image(&cj), "spartakus-volunteer:0.1.0");
    // The minute comes from this cluster's kube-system UID.
    let uid = Api::<Namespace>::all(admin.clone())
        .get("kube-system")
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    let want_schedule = format!("{} 3 * * *", derived_minute(&uid));
    assert_eq!(schedule(&cj), want_schedule);

    // The ServiceAccount the chart installed: what the volunteer needs, nothing more.
    let token = kube.token_for(NAMESPACE, RELEASE).await?;
    let sa_kc = kube.kubeconfig_for_token(&token)?;
    let sa = client_for(&sa_kc).await?;
    let report = decode(&dry_run(&sa_kc, &[]).await?)?;
    assert!(report.nodes.is_some());
    assert_eq!(report.namespaces, None);
    let mut skipped: Vec<(String, SkipReason)> = report
        .skipped
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.section, s.reason))
        .collect();
    skipped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![("namespaces".to_owned(), SkipReason::Forbidden)];
    want.extend(
        Kind::ALL
            .iter()
            .map(|k| (format!("workloads.{}", k.as_str()), SkipReason::Forbidden)),
    );
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(skipped, want);
    assert_status_rights(&admin, &sa).await?;

    // Upgrade: workload statistics and an image by digest.
    let mut args = vec!["upgrade"];
    args.extend_from_slice(&base);
    let digest = format!("image.digest={DIGEST}");
    args.extend_from_slice(&["--set", "workloads=true", "--set", &digest]);
    ok(helm(&args, Some(kc)), "helm upgrade");
    assert_eq!(cluster_role_rules(&admin).await, 6);
    let cj = cronjobs.get(RELEASE).await?;
    assert_eq!(image(&cj), format!("spartakus-volunteer@{DIGEST}"));
    assert_eq!(schedule(&cj), want_schedule);
    // The opt-in reaches the authorizer through a watch: wait for it.
    eventually(
        Duration::from_secs(30),
        "the opt-in role to take effect",
        || {
            let all: Api<Namespace> = Api::all(sa.clone());
            async move {
                all.list_metadata(&ListParams::default().limit(1))
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    let report = decode(&dry_run(&sa_kc, &[]).await?)?;
    assert_eq!(report.skipped, None);
    assert!(report.namespaces.is_some());

    // Rollback to the first revision: back to the minimal role and the tag.
    ok(
        helm(
            &["rollback", RELEASE, "1", "--namespace", NAMESPACE],
            Some(kc),
        ),
        "helm rollback",
    );
    assert_eq!(cluster_role_rules(&admin).await, 2);
    assert_eq!(
        image(&cronjobs.get(RELEASE).await?),
        "spartakus-volunteer:0.1.0"
    );

    // Uninstall: every object gone.
    ok(
        helm(&["uninstall", RELEASE, "--namespace", NAMESPACE], Some(kc)),
        "helm uninstall",
    );
    let a = admin.clone();
    eventually(
        Duration::from_secs(30),
        "the release's objects to go",
        || {
            let a = a.clone();
            async move {
                let ns = NAMESPACE;
                let status = format!("{RELEASE}-status");
                [
                    code(
                        &Api::<ServiceAccount>::namespaced(a.clone(), ns)
                            .get(RELEASE)
                            .await,
                    ),
                    code(&Api::<CronJob>::namespaced(a.clone(), ns).get(RELEASE).await),
                    code(&Api::<Role>::namespaced(a.clone(), ns).get(&status).await),
                    code(
                        &Api::<RoleBinding>::namespaced(a.clone(), ns)
                            .get(&status)
                            .await,
                    ),
                    code(&Api::<ClusterRole>::all(a.clone()).get(RELEASE).await),
                    code(&Api::<ClusterRoleBinding>::all(a.clone()).get(RELEASE).await),
                ]
                .iter()
                .all(|c| *c == Some(404))
            }
        },
    )
    .await;
    Ok(())
}

/// The status Role, acting as the ServiceAccount: its own ConfigMap (create, get, update) and
/// Events, and no other ConfigMap; no Secrets anywhere.
async fn assert_status_rights(admin: &kube::Client, sa: &kube::Client) -> TestResult {
    let pp = PostParams::default();
    let admin_cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    admin_cms
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "other"}}))?,
        )
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(sa.clone(), NAMESPACE);
    let mut status: ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "spartakus-status"}, "data": {"k": "v"}}),
    )?;
    cms.create(&pp, &status).await?;
    status = cms.get("spartakus-status").await?;
    status.data = Some([("k".to_owned(), "w".to_owned())].into());
    cms.replace("spartakus-status", &pp, &status).await?;
    assert_eq!(code(&cms.get("other").await), Some(403));
    assert_eq!(code(&cms.list(&ListParams::default()).await), Some(403));
    assert_eq!(
        code(&cms.delete("spartakus-status", &Default::default()).await),
        Some(403)
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(sa.clone(), NAMESPACE);
    events
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "helm-it-probe"},
                "eventTime": "2026-12-07T00:00:00.000000Z",
                "reportingController": "spartakus.dev/volunteer",
                "reportingInstance": "volunteer",
                "action": "Report", "reason": "Probe", "type": "Normal",
                "regarding": {"kind": "ConfigMap", "namespace": NAMESPACE, "name": "spartakus-status"}
            }))?,
        )
        .await?;
    let lp = ListParams::default().limit(1);
    assert_eq!(
        code(&Api::<Secret>::all(sa.clone()).list(&lp).await),
        Some(403)
    );
    assert_eq!(
        code(&Api::<ConfigMap>::all(sa.clone()).list(&lp).await),
        Some(403)
    );
    assert_eq!(
        code(
            &Api::<Secret>::namespaced(sa.clone(), NAMESPACE)
                .list(&lp)
                .await
        ),
        Some(403)
    );
    // Cleanup for the uninstall check: helm does not own these.
    admin_cms.delete("other", &Default::default()).await?;
    admin_cms
        .delete("spartakus-status", &Default::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn install_yaml_passes_a_server_side_dry_run_apply() -> TestResult {
    // The namespace and names are the shipped ones: take turns with the kustomize tests.
    let _turn = shipped_turn().await;
    let kube = KubeApi::shared().await?;
    let admin = kube.client().await?;
    // A dry run cannot create the namespace its own objects live in: make it for real first
    // (the shipped tests apply it too; an existing one is fine).
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "spartakus"}}))?;
    match Api::<Namespace>::all(admin)
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kube.kubeconfig_path())
        .args(["apply", "--dry-run=server", "-f"])
        .arg(repo("k8s/install.yaml"))
        .output()?;
    let stdout = ok(out, "kubectl apply --dry-run=server -f k8s/install.yaml");
    let objects = objects(&std::fs::read_to_string(repo("k8s/install.yaml"))?).len();
    assert_eq!(
        objects, 7,
        "Namespace, ServiceAccount, 2 roles, 2 bindings, CronJob"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count(),
        objects,
        "{stdout}"
    );
    Ok(())
}
