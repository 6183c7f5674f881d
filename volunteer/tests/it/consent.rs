//! Consent follows the report: a volunteer sends only the fields of the report-content
//! version its operator accepted (`--consent`, [`report::consent`]), and says what it left
//! out in its status ConfigMap, an Event and `volunteer status`; `volunteer consent` lists
//! what each newer version adds. Against the shared kube-apiserver and the real gateway in
//! front of a real nats-server.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::common::{BoxError, TestResult, apply, shipped_turn, text, volunteer};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use report::consent::{CURRENT, version_of};
use testenv::{ClusterFixture, KubeApi, Launch, Nats};
use volunteer::status::key;

/// The status namespace of these tests: theirs alone, so no other test's turn is needed.
const NAMESPACE: &str = "consent-status";
const STATUS: &str = "spartakus-status";

/// Every field path in a JSON document (array elements transparent), as `report::consent`
/// names them.
fn paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, v) in map {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                paths(v, &path, out);
                out.insert(path);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                paths(item, prefix, out);
            }
        }
        _ => {}
    }
}

fn fields_of(body: &[u8]) -> Result<BTreeSet<String>, BoxError> {
    let mut out = BTreeSet::new();
    paths(&serde_json::from_slice(body)?, "", &mut out);
    Ok(out)
}

/// The newest version that introduced any of `fields`.
fn newest(fields: &BTreeSet<String>) -> Option<u32> {
    fields.iter().filter_map(|f| version_of(f)).max()
}

/// The shared API server with a few nodes.
async fn with_nodes() -> Result<(&'static KubeApi, kube::Client), BoxError> {
    let kube = KubeApi::shared().await?;
    let admin = kube.client().await?;
    let mut fixture = ClusterFixture {
        prefix: "cns".into(),
        ..Default::default()
    };
    // Another test of this module may have made them already.
    let _ = fixture.create_nodes(&admin).await;
    Ok((kube, admin))
}

/// The shared API server with a few nodes, and an empty status namespace of our own.
async fn setup() -> Result<(&'static KubeApi, kube::Client), BoxError> {
    let (kube, admin) = with_nodes().await?;
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    let _ = Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    let _ = cms.delete(STATUS, &DeleteParams::default()).await;
    Api::<Event>::namespaced(admin.clone(), NAMESPACE)
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    Ok((kube, admin))
}

/// The reports queued in the stream, as the gateway queued them.
async fn queued(nats: &Nats) -> Result<Vec<report::envelope::ValidEnvelope>, BoxError> {
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(report::queue::Topology::default().reports.name)
        .await?;
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(report::Envelope::decode(&m.payload)?);
        }
    }
    Ok(out)
}

fn withheld_events(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FieldsWithheld"))
        .collect()
}

#[tokio::test]
async fn consent_1_sends_only_version_1_fields_and_says_what_it_withheld_until_2_is_accepted()
-> TestResult {
    let (kube, admin) = setup().await?;
    let nats = Nats::start().await?;
    let gateway = Launch::gateway(&nats.url()).start().await?;
    let url = gateway.url();
    let kc = kube.kubeconfig_path().display().to_string();
    let run = |consent: &'static str| {
        let (url, kc) = (url.clone(), kc.clone());
        async move {
            volunteer(&[
                "--period",
                "0",
                "--gateway",
                &url,
                "--kubeconfig",
                &kc,
                "--status-namespace",
                NAMESPACE,
                "--consent",
                consent,
            ])
            .await
        }
    };

    let out = run("1").await?;
    assert!(out.status.success(), "{}", text(&out));
    let sent = queued(&nats).await?;
    assert_eq!(sent.len(), 1);
    // What arrived holds only version-1 fields, nodes among them.
    let arrived = serde_json::to_vec(sent[0].report.report())?;
    let fields = fields_of(&arrived)?;
    assert_eq!(newest(&fields), Some(1), "{fields:?}");
    for f in ["nodes.kubeletVersion", "nodes.capacity", "masterVersion"] {
        assert!(fields.contains(f), "{f} missing: {fields:?}");
    }
    for f in &fields {
        assert_eq!(version_of(f), Some(1), "{f} was sent under consent 1");
    }
    // The exact body sent (kept in the status) too.
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    let cm = cms.get(STATUS).await?;
    let d = cm.data.clone().unwrap_or_default();
    let gz = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get(volunteer::status::BODY_KEY))
        .ok_or("no body kept")?;
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.0[..]), &mut body)?;
    assert_eq!(newest(&fields_of(&body)?), Some(1));
    // Without its own ID the report is stored under the one the gateway derives: the status
    // names that one.
    assert_eq!(d[key::REPORT_ID], sent[0].report_id.to_string());
    assert_eq!(
        d[key::CONSENT],
        "accepted 1, current 2, withheld: reportID, schemaVersion, namespaces, workloads, erasureCheck"
    );
    // An Event regarding the status ConfigMap says so too.
    let events = Api::<Event>::namespaced(admin.clone(), NAMESPACE)
        .list(&ListParams::default())
        .await?
        .items;
    let withheld = withheld_events(&events);
    assert_eq!(withheld.len(), 1, "{events:?}");
    let e = withheld[0];
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    let regarding = e.regarding.as_ref().ok_or("no regarding")?;
    assert_eq!(regarding.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(regarding.name.as_deref(), Some(STATUS));
    assert_eq!(regarding.uid, cm.metadata.uid);
    let note = e.note.as_deref().unwrap_or_default();
    assert!(
        note.contains("reportID, schemaVersion, namespaces, workloads, erasureCheck"),
        "{note}"
    );
    assert!(note.contains("--consent 2"), "{note}");
    // And `volunteer status`.
    let out = volunteer(&[
        "status",
        "--kubeconfig",
        &kc,
        "--status-namespace",
        NAMESPACE,
    ])
    .await?;
    assert!(out.status.success(), "{}", text(&out));
    let printed = out.stdout_text();
    eprintln!("volunteer status:\n{printed}");
    assert!(
        printed.contains(
            "  consent         version 1 accepted; this volunteer's reports are version 2\n  withheld        reportID, schemaVersion, namespaces, workloads, erasureCheck\n                  `volunteer consent --consent 1` lists what version 2 adds; accept it with --consent 2 (SPARTAKUS_CONSENT=2)\n"
        ),
        "{printed}"
    );

    // The operator accepts version 2: everything is sent, and nothing is said any more.
    let out = run("2").await?;
    assert!(out.status.success(), "{}", text(&out));
    let sent = queued(&nats).await?;
    assert_eq!(sent.len(), 2);
    let v2 = sent[1].report.report();
    assert!(v2.report_id.is_some() && v2.erasure_check.is_some() && v2.workloads.is_some());
    assert_eq!(newest(&fields_of(&serde_json::to_vec(v2)?)?), Some(2));
    let d = cms.get(STATUS).await?.data.unwrap_or_default();
    assert_eq!(d[key::CONSENT], "accepted 2, current 2, nothing withheld");
    let events = Api::<Event>::namespaced(admin.clone(), NAMESPACE)
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(withheld_events(&events).len(), 1, "no new one: {events:?}");
    let out = volunteer(&[
        "status",
        "--kubeconfig",
        &kc,
        "--status-namespace",
        NAMESPACE,
    ])
    .await?;
    let printed = out.stdout_text();
    assert!(
        printed.contains("  consent         version 2 accepted: nothing withheld\n"),
        "{printed}"
    );
    assert!(!printed.contains("withheld  "), "{printed}");
    Ok(())
}

#[tokio::test]
async fn by_default_the_volunteer_sends_what_the_original_one_sent() -> TestResult {
    let (kube, _) = with_nodes().await?;
    let kc = kube.kubeconfig_path().display().to_string();
    let args = [
        "--dry-run",
        "--gateway",
        "https://collector.example.org",
        "--kubeconfig",
        &kc,
    ];
    // Neither the flag nor the variable: an operator who accepted nothing newer.
    let out = crate::common::launch(&args)
        .env_remove("SPARTAKUS_CONSENT")
        .run(std::time::Duration::from_secs(120))
        .await?;
    assert!(out.status.success(), "{}", text(&out));
    let fields = fields_of(out.stdout.trim_ascii_end())?;
    assert_eq!(newest(&fields), Some(1), "{fields:?}");
    assert!(fields.contains("nodes.kubeletVersion"), "{fields:?}");
    assert!(
        out.stderr.contains("fields left out for lack of consent"),
        "{}",
        text(&out)
    );
    // The variable accepts a version as the flag does.
    let out = crate::common::launch(&args)
        .env("SPARTAKUS_CONSENT", CURRENT.to_string())
        .run(std::time::Duration::from_secs(120))
        .await?;
    assert!(out.status.success(), "{}", text(&out));
    let fields = fields_of(out.stdout.trim_ascii_end())?;
    assert_eq!(newest(&fields), Some(CURRENT));
    assert!(fields.contains("workloads.total") && fields.contains("reportID"));
    Ok(())
}

#[tokio::test]
async fn a_consent_version_this_volunteer_does_not_know_is_refused_at_start() -> TestResult {
    let over = (CURRENT + 1).to_string();
    for args in [
        vec!["--gateway", "stdout", "--consent", over.as_str()],
        vec!["--gateway", "stdout", "--consent", "0"],
        vec!["consent", "--consent", over.as_str()],
    ] {
        let out = volunteer(&args).await?;
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out));
        let stderr = out.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "not a report-content version this volunteer knows (1 to {CURRENT}"
            )) && stderr.contains("--consent"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    Ok(())
}

/// `volunteer/testdata/consent/NAME`; `SPARTAKUS_BLESS=1` rewrites it with `text`.
fn golden(name: &str, text: &str) -> Result<String, BoxError> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/consent")
        .join(name);
    if std::env::var_os("SPARTAKUS_BLESS").is_some() {
        std::fs::write(&path, text)?;
    }
    Ok(std::fs::read_to_string(&path)?)
}

#[tokio::test]
async fn volunteer_consent_prints_exactly_what_each_newer_version_adds() -> TestResult {
    // No cluster needed: no kubeconfig, no gateway.
    let out = volunteer(&["consent", "--consent", "1"]).await?;
    assert!(out.status.success(), "{}", text(&out));
    let printed = out.stdout_text();
    assert_eq!(
        printed,
        golden("consent-1.txt", &printed)?,
        "SPARTAKUS_BLESS=1 rewrites it"
    );
    // Every field version 2 adds, one line each.
    for f in report::consent::VERSIONS[1].fields {
        assert!(
            printed.contains(&format!("\n  {} ", f.path)),
            "{} missing:\n{printed}",
            f.path
        );
    }
    let by_variable = crate::common::launch(&["consent"])
        .env("SPARTAKUS_CONSENT", "1")
        .run(std::time::Duration::from_secs(60))
        .await?;
    assert_eq!(by_variable.stdout_text(), printed);
    let out = volunteer(&["consent", "--consent", &CURRENT.to_string()]).await?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        out.stdout_text(),
        format!(
            "Consent: version {CURRENT} accepted, the newest this volunteer knows: its reports leave nothing out for lack of consent.\n"
        )
    );
    Ok(())
}

#[tokio::test]
async fn the_shipped_cronjob_accepts_the_current_version() -> TestResult {
    let _turn = shipped_turn().await;
    let kube = KubeApi::shared().await?;
    apply(kube, "volunteer")?;
    let cronjob = Api::<CronJob>::namespaced(kube.client().await?, "spartakus")
        .get("spartakus-volunteer")
        .await?;
    let env = cronjob
        .spec
        .job_template
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.env)
        .unwrap_or_default();
    let consent = env
        .iter()
        .find(|e| e.name == "SPARTAKUS_CONSENT")
        .and_then(|e| e.value.clone());
    // A new version must be a conscious change of the manifest: accepted for the operators who
    // apply it, and said so in its comment.
    assert_eq!(
        consent,
        Some(CURRENT.to_string()),
        "k8s/base/volunteer/cronjob.yaml's SPARTAKUS_CONSENT is not report::consent::CURRENT"
    );
    Ok(())
}
