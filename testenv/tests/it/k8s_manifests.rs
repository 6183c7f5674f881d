//! The manifests in `k8s/` against a real kube-apiserver: every kustomization builds, every
//! object passes a server-side dry-run apply, and every pod template is admitted by a namespace
//! that enforces the Pod Security "restricted" profile.
//!
//! `kubectl` does the building and applying, as it does for operators.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::Value;
use testenv::KubeApi;

/// Entry points an operator applies, and the bases they are made of.
const KUSTOMIZATIONS: [&str; 8] = [
    "volunteer",
    "volunteer/workloads",
    "collector",
    "base/volunteer",
    "base/gateway",
    "base/ingester",
    "base/nats",
    "base/stats",
];
const ENTRY_POINTS: [&str; 3] = ["volunteer", "volunteer/workloads", "collector"];
/// Namespaces the entry points create; both are labelled to enforce "restricted".
const NAMESPACES: [&str; 2] = ["spartakus", "spartakus-collector"];

fn k8s_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../k8s")
        .join(rel)
}

fn kubectl(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.args(args);
    if let Some(path) = kubeconfig {
        cmd.arg("--kubeconfig").arg(path);
    }
    cmd.output()
        .expect("kubectl is installed (see the README's prerequisites)")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The namespaces exist for real before a dry run: a dry-run of a namespaced object in a
/// namespace that is only dry-run created fails with "namespace not found".
async fn ensure_namespaces(kube: &KubeApi) {
    let namespaces: Api<Namespace> = Api::all(kube.client().await.expect("admin client"));
    for name in NAMESPACES {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    [(
                        "pod-security.kubernetes.io/enforce".to_string(),
                        "restricted".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("creating namespace {name}: {e}"),
        }
    }
}

/// `kubectl apply --server-side --dry-run=server -k DIR -o json`: the objects as the server
/// would store them, and kubectl's stderr (where admission warnings appear).
fn dry_run_apply(kube: &KubeApi, dir: &str) -> (Vec<Value>, String) {
    let path = k8s_dir(dir);
    let out = kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=spartakus-test",
            "--dry-run=server",
            "-o",
            "json",
            "-k",
            path.to_str().expect("utf-8 path"),
        ],
        Some(kube.kubeconfig_path()),
    );
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "server-side dry-run apply of k8s/{dir} failed:\n{stderr}"
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("kubectl -o json prints JSON");
    let items = match json.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![json],
    };
    (items, stderr)
}

fn kind_of(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or_default()
}

#[test]
fn every_kustomization_builds() {
    for dir in KUSTOMIZATIONS {
        let path = k8s_dir(dir);
        let out = kubectl(&["kustomize", path.to_str().expect("utf-8 path")], None);
        assert!(
            out.status.success(),
            "kubectl kustomize k8s/{dir} failed:\n{}",
            text(&out.stderr)
        );
        let yaml = text(&out.stdout);
        assert!(yaml.contains("kind:"), "k8s/{dir} built to no objects");
        // ConfigMaps: see the_volunteers_rbac_reaches_its_status_configmap_and_nothing_else.
        if dir.starts_with("volunteer") || dir == "base/volunteer" {
            assert!(
                !yaml.contains("- secrets"),
                "the volunteer's RBAC must never name secrets"
            );
        }
    }
}

/// The only ConfigMap the volunteer may read or change is its status ConfigMap, by name, in its
/// own namespace; it may create ConfigMaps (RBAC cannot limit `create` by name) and Events; it
/// never reaches Secrets, and no rule uses a wildcard.
#[tokio::test]
async fn the_volunteers_rbac_reaches_its_status_configmap_and_nothing_else() {
    let kube = KubeApi::shared().await.expect("kube-apiserver starts");
    ensure_namespaces(kube).await;
    for dir in ["volunteer", "volunteer/workloads"] {
        let (items, _) = dry_run_apply(kube, dir);
        let mut status_rules = 0;
        for obj in items
            .iter()
            .filter(|o| matches!(kind_of(o), "Role" | "ClusterRole"))
        {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            for rule in obj["rules"].as_array().into_iter().flatten() {
                let list = |field: &str| -> Vec<&str> {
                    rule[field]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect()
                };
                let (groups, resources, verbs, names) = (
                    list("apiGroups"),
                    list("resources"),
                    list("verbs"),
                    list("resourceNames"),
                );
                for field in [&groups, &resources, &verbs] {
                    assert!(
                        !field.contains(&"*"),
                        "k8s/{dir}: {name} has a wildcard: {rule}"
                    );
                }
                assert!(
                    !resources.contains(&"secrets"),
                    "k8s/{dir}: {name} grants secrets: {rule}"
                );
                if !resources.contains(&"configmaps") {
                    continue;
                }
                assert_eq!(
                    kind_of(obj),
                    "Role",
                    "k8s/{dir}: configmaps beyond one namespace: {rule}"
                );
                assert_eq!(
                    obj["metadata"]["namespace"], "spartakus",
                    "k8s/{dir}: {rule}"
                );
                assert_eq!(resources, ["configmaps"], "k8s/{dir}: {name}: {rule}");
                if verbs == ["create"] {
                    continue;
                }
                assert_eq!(
                    names,
                    ["spartakus-status"],
                    "k8s/{dir}: {name}: configmaps other than the status: {rule}"
                );
                assert!(
                    verbs
                        .iter()
                        .all(|v| matches!(*v, "get" | "update" | "patch")),
                    "k8s/{dir}: {name}: more than reading and writing the status: {rule}"
                );
                status_rules += 1;
            }
        }
        assert_eq!(
            status_rules, 1,
            "k8s/{dir}: exactly one rule grants the status ConfigMap"
        );
    }
}

#[tokio::test]
async fn every_object_is_accepted_by_a_server_side_dry_run_apply() {
    let kube = KubeApi::shared().await.expect("kube-apiserver starts");
    ensure_namespaces(kube).await;
    for dir in ENTRY_POINTS {
        let (items, stderr) = dry_run_apply(kube, dir);
        let built = text(
            &kubectl(
                &["kustomize", k8s_dir(dir).to_str().expect("utf-8 path")],
                None,
            )
            .stdout,
        );
        let expected = built.matches("\nkind: ").count() + usize::from(built.starts_with("kind: "));
        assert_eq!(
            items.len(),
            expected,
            "k8s/{dir}: the server returned {} objects for {expected} built",
            items.len()
        );
        assert!(
            !stderr.contains("PodSecurity"),
            "k8s/{dir}: the restricted profile warns about a pod template:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn every_pod_template_is_admitted_under_the_restricted_pod_security_profile() {
    let kube = KubeApi::shared().await.expect("kube-apiserver starts");
    ensure_namespaces(kube).await;
    let client = kube.client().await.expect("admin client");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut templates = 0;
    for dir in ENTRY_POINTS {
        let (items, _) = dry_run_apply(kube, dir);
        for obj in &items {
            let template = match kind_of(obj) {
                "Deployment" | "StatefulSet" | "DaemonSet" => &obj["spec"]["template"],
                "CronJob" => &obj["spec"]["jobTemplate"]["spec"]["template"],
                _ => continue,
            };
            let name = obj["metadata"]["name"].as_str().expect("named object");
            let namespace = obj["metadata"]["namespace"]
                .as_str()
                .expect("workloads are namespaced");
            assert!(
                NAMESPACES.contains(&namespace),
                "{name} is in {namespace}, which does not enforce the restricted profile"
            );
            let mut pod: Pod = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": template["metadata"].clone(),
                "spec": template["spec"].clone(),
            }))
            .expect("a pod template is a pod");
            pod.metadata.name = Some(format!("{name}-template-check"));
            // A StatefulSet's pods get a PVC volume per claim template, as its controller does.
            if let (Some(spec), Some(claims)) = (
                pod.spec.as_mut(),
                obj["spec"]["volumeClaimTemplates"].as_array(),
            ) {
                for claim in claims {
                    let claim_name = claim["metadata"]["name"].as_str().expect("named claim");
                    spec.volumes.get_or_insert_with(Vec::new).push(
                        serde_json::from_value(serde_json::json!({
                            "name": claim_name,
                            "persistentVolumeClaim": {"claimName": format!("{claim_name}-{name}-0")},
                        }))
                        .expect("a PVC volume"),
                    );
                }
            }
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            if let Err(e) = pods.create(&dry_run, &pod).await {
                panic!(
                    "k8s/{dir}: the pod of {} {name} is refused: {e}",
                    kind_of(obj)
                );
            }
            // Read-only root filesystem on every container, beyond what "restricted" demands.
            for c in pod
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or_default()
            {
                let ro = c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.read_only_root_filesystem)
                    .unwrap_or(false);
                assert!(ro, "{name}/{}: root filesystem is writable", c.name);
                // Each binary's default format suits a terminal or a cluster; a manifest
                // says which it wants rather than relying on it.
                if c.image
                    .as_deref()
                    .is_some_and(|i| i.starts_with("spartakus-"))
                {
                    let sets_format = c.env.iter().flatten().any(|e| {
                        e.name == "SPARTAKUS_LOG_FORMAT" && e.value.as_deref() == Some("json")
                    });
                    assert!(
                        sets_format,
                        "k8s/{dir}: {name}/{} does not set SPARTAKUS_LOG_FORMAT=json",
                        c.name
                    );
                }
            }
            templates += 1;
        }
    }
    // volunteer CronJob (twice: both variants), gateway, ingester, nats.
    assert!(templates >= 5, "only {templates} pod templates found");

    // The control: the same namespace refuses a pod that breaks the profile, so the checks above
    // could fail.
    let root: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "runs-as-root"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "securityContext": {"runAsUser": 0, "privileged": true}}]}
    }))
    .expect("valid pod");
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACES[0]);
    let refused = pods.create(&dry_run, &root).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403),
        "a privileged root pod was not refused: {refused:?}"
    );
}

/// A size as NATS's configuration and our flags write it: a whole number and a binary unit.
fn binary_size(text: &str) -> u64 {
    let text = text.trim().trim_matches('"');
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let shift = match unit {
        "" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => panic!("{text:?}: write sizes with a binary unit (KiB, MiB, GiB), not {other:?}"),
    };
    digits.parse::<u64>().expect("a size") << shift
}

/// The default of `flag` in `bin --help`.
fn help_default(bin: &'static str, flag: &str) -> String {
    let out = testenv::Launch::named(bin)
        .arg("--help")
        .run_blocking(std::time::Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{bin} --help: {e}"));
    let help = out.stdout_text();
    let after = &help[help
        .find(&format!("{flag} <"))
        .unwrap_or_else(|| panic!("{bin} has no {flag}"))..];
    let default = &after[after.find("[default: ").expect("a default") + "[default: ".len()..];
    default[..default.find(']').expect("]")].to_owned()
}

/// JetStream reserves each stream's byte budget from the store's limit and refuses a stream
/// whose budget does not fit: the shipped limit must hold the three default budgets, which the
/// deployments leave as they are.
#[test]
fn the_nats_store_limit_holds_every_streams_budget() {
    let config = std::fs::read_to_string(k8s_dir("base/nats/configmap.yaml"))
        .expect("k8s/base/nats/configmap.yaml");
    let store = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("max_file_store:"))
        .map(binary_size)
        .expect("k8s/base/nats sets max_file_store");
    let quickstart = std::fs::read_to_string(k8s_dir("../testenv/quickstart.sh"))
        .expect("testenv/quickstart.sh");
    assert!(
        quickstart.contains("max_file_store: 8GiB") && store == 8 << 30,
        "the quickstart's store limit is k8s's"
    );
    let budgets = [
        (
            "gateway",
            "--stream-max-bytes",
            "SPARTAKUS_STREAM_MAX_BYTES",
        ),
        (
            "gateway",
            "--erasures-max-bytes",
            "SPARTAKUS_ERASURES_MAX_BYTES",
        ),
        (
            "ingester",
            "--dead-letters-max-bytes",
            "SPARTAKUS_DEAD_LETTERS_MAX_BYTES",
        ),
    ];
    let mut sum = 0;
    for (bin, flag, env) in budgets {
        let deployment = std::fs::read_to_string(k8s_dir(&format!("base/{bin}/deployment.yaml")))
            .expect("the deployment");
        assert!(
            !deployment.contains(env),
            "{bin}'s deployment sets {env}: count it here"
        );
        sum += binary_size(&help_default(bin, flag));
    }
    assert!(
        sum < store,
        "the stream budgets ({sum} bytes) must fit in max_file_store ({store} bytes)"
    );
}

/// NATS's `max_payload` (its `MB` is 2^20 bytes, as `/varz` shows) in every configuration we
/// ship holds the largest report the gateway takes, `--max-decoded-bytes`, with its envelope
/// (the report ID and arrival time): at exactly 16 MiB the payload limit refused it.
#[test]
fn the_nats_payload_limit_holds_the_largest_report_and_its_envelope() {
    let largest = binary_size(&help_default("gateway", "--max-decoded-bytes"));
    for path in [
        "base/nats/configmap.yaml",
        "../testenv/quickstart.sh",
        "../testenv/src/nats.rs",
    ] {
        let text = std::fs::read_to_string(k8s_dir(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let value = text
            .split("max_payload:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|v| v.split("\\n").next().unwrap_or(v).to_owned())
            .unwrap_or_else(|| panic!("{path} sets no max_payload"));
        let megabytes: u64 = value
            .strip_suffix("MB")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{path}: max_payload {value:?} is not in MB"));
        assert!(
            megabytes << 20 >= largest + 1024,
            "{path}: max_payload {value} must hold --max-decoded-bytes ({largest}) and an envelope"
        );
    }
}

/// `k8s/monitoring`'s PrometheusRule is accepted by the Prometheus Operator's own CRD schema on
/// the real API server, and Prometheus's rule loader (`rulecheck`, built by testenv/build.sh
/// from Prometheus's `rulefmt`) finds every rule valid. Whether the rules name metrics our
/// processes export is systests' `alerts` test.
#[tokio::test]
async fn the_alerting_rules_pass_the_operators_schema_and_prometheus_rule_loader() {
    let kube = KubeApi::shared().await.expect("kube-apiserver starts");
    ensure_namespaces(kube).await;
    let crd = testenv::bin_dir().join("monitoring.coreos.com_prometheusrules.yaml");
    assert!(
        crd.exists(),
        "{} missing: run testenv/build.sh",
        crd.display()
    );
    let out = kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=spartakus-test",
            "-f",
            crd.to_str().expect("utf-8 path"),
        ],
        Some(kube.kubeconfig_path()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
        Some(kube.kubeconfig_path()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (objects, _) = dry_run_apply(kube, "monitoring");
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(kind_of(&objects[0]), "PrometheusRule");
    assert_eq!(
        objects[0]["metadata"]["namespace"], "spartakus-collector",
        "beside the collector it watches"
    );

    let rules = k8s_dir("monitoring/prometheusrule.yaml");
    let out = Command::new(testenv::bin_dir().join("rulecheck"))
        .arg(&rules)
        .output()
        .expect("rulecheck runs (testenv/build.sh builds it)");
    assert!(
        out.status.success(),
        "Prometheus would not load the rules:\n{}",
        text(&out.stderr)
    );
    let rules: Value = serde_json::from_slice(&out.stdout).expect("rulecheck prints JSON");
    let alerts: Vec<&str> = rules
        .as_array()
        .expect("a list of rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for wanted in [
        "SpartakusIngesterWriteStuck",
        "SpartakusSnapshotOverdue",
        "SpartakusGatewayQueueFull",
        "SpartakusReportsStreamFilling",
    ] {
        assert!(alerts.contains(&wanted), "no {wanted} in {alerts:?}");
    }
}

/// The rule checker itself refuses what Prometheus refuses: a misspelt field and a PromQL
/// expression that does not parse, each named.
#[test]
fn the_rule_checker_refuses_a_bad_field_and_bad_promql() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (body, expected) in [
        (
            "      forr: 5m\n      expr: up > 0\n",
            "field forr not found",
        ),
        (
            "      expr: rate(up[5m) > 0\n",
            "could not parse expression",
        ),
    ] {
        let path = dir.path().join("rule.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec:\n  groups:\n  - name: g\n    rules:\n    - alert: A\n{body}"
            ),
        )
        .expect("write");
        let out = Command::new(testenv::bin_dir().join("rulecheck"))
            .arg(&path)
            .output()
            .expect("rulecheck runs");
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
}
