//! README command one, `testenv/quickstart.sh`, run as a user would, so it cannot rot: it must
//! store the seed report and a volunteer report, send the synthetic population through the
//! same path, serve a dashboard of weekly snapshots that says it counts synthetic data, and
//! Ctrl-C must stop everything it started.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testenv::KubeApi;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("quickstart.sh")
}

fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

#[tokio::test]
async fn quickstart_stores_the_seed_a_volunteer_report_and_a_population_serves_a_dashboard_and_stops_on_ctrl_c()
 {
    let kube = KubeApi::shared().await.expect("kube-apiserver starts");
    let gateway = testenv::workspace_bin("gateway").expect("built");
    let target_debug = gateway.parent().expect("target/debug");
    // A shell started in the background without job control (as CI may run the tests) has
    // SIGINT ignored, and a signal ignored on entry cannot be trapped: the script would never
    // see the Ctrl-C below. `env --default-signal=INT` gives it the disposition it has in a
    // terminal.
    let mut child = Command::new("env")
        .args(["--default-signal=INT", "bash"])
        .arg(script())
        .env("KUBECONFIG", kube.kubeconfig_path())
        .env("SPARTAKUS_QUICKSTART_NO_BUILD", "1")
        .env("SPARTAKUS_TESTENV_BIN", testenv::bin_dir())
        .env("CARGO_TARGET_DIR", target_debug.parent().expect("target"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("env runs bash, which runs the quickstart");

    // Read its output on a thread, so that waiting has a deadline.
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The population (about 27,000 reports) and seven snapshots take most of it: about three
    // minutes on a loaded 2-core machine.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut output = Vec::new();
    let pids: Vec<String> = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("quickstart did not come up in time:\n{}", output.join("\n"));
            }
        };
        output.push(line.clone());
        if let Some(rest) = line.strip_prefix("quickstart: running (pids ") {
            break rest
                .split(')')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        }
    };
    let text = output.join("\n");
    assert!(
        text.contains("POST the original README's example report -> HTTP 204"),
        "{text}"
    );
    assert!(text.contains("reports stored: 2 (expected 2)"), "{text}");
    // The seed's cluster ID and master version are in the printed table.
    assert!(
        text.contains("2f9c93d3-156c-47aa-8802-578ffca9b50e"),
        "{text}"
    );
    assert!(
        text.contains("v1.37.2"),
        "the volunteer's report is listed:\n{text}"
    );
    let sent = text
        .lines()
        .find_map(|l| l.strip_prefix("population: sent "))
        .and_then(|l| l.split(' ').next())
        .expect("the population is sent");
    assert!(sent.parse::<u32>().expect("a count") >= 20_000, "{text}");
    assert!(
        text.contains(&format!(
            "synthetic reports stored: {sent} (expected {sent})"
        )),
        "{text}"
    );
    let snapshots: u32 = text
        .lines()
        .filter(|l| l.contains(" weekly snapshots since "))
        .find_map(|l| l.strip_prefix("quickstart: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("how many snapshots:\n{text}"));
    assert!(snapshots >= 4, "several weeks of snapshots: {text}");
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("quickstart: dashboard "))
        .expect("the dashboard's URL is printed");
    let page = reqwest::get(url)
        .await
        .expect("the dashboard answers")
        .text()
        .await
        .expect("a page");
    assert!(page.contains("Synthetic data."), "the page says so");
    assert!(
        page.contains("<svg class=\"chart lines\""),
        "adoption curves"
    );
    assert!(page.contains("id=\"clusters_by_distribution\""));
    // Large enough to show real charts under the default privacy budget: several Kubernetes
    // minors clear the selection threshold, not just `other`.
    let latest: serde_json::Value = reqwest::get(format!("{url}latest.json"))
        .await
        .expect("latest.json")
        .json()
        .await
        .expect("JSON");
    let snapshot: serde_json::Value = reqwest::get(format!(
        "{url}{}",
        latest["snapshot"].as_str().expect("a path")
    ))
    .await
    .expect("the snapshot")
    .json()
    .await
    .expect("JSON");
    let minors = snapshot["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["id"] == "clusters_by_kubernetes_minor")
        .expect("the minor metric")["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r[0] != "other")
        .count();
    assert!(minors >= 4, "{minors} minors published: {snapshot}");
    assert_eq!(
        pids.len(),
        4,
        "nats-server, gateway, ingester and stats: {pids:?}"
    );
    assert!(pids.iter().all(|p| alive(p)), "all four are running");

    // Ctrl-C.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    // Under the ingester's 30 s shutdown timeout: stopping the broker before the ingester makes
    // it wait that out (it took 30.4 s so; 1.5 s in order).
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait works") {
            break exit;
        }
        assert!(Instant::now() < deadline, "quickstart ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(50)); // polling a process, not synchronising
    };
    assert!(!exit.success(), "interrupted, so not a success: {exit:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.iter().any(|p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "quickstart left processes running: {:?}",
            pids.iter().filter(|p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
