//! A memory cgroup limits a child as a pod's limit does: a child over it is OOM-killed and
//! counted, one under it runs to its end with its peak measured, and one of our processes
//! started by `Launch::memory_limit` runs inside it, relaunches included.

use std::process::Stdio;
use std::time::Duration;

use testenv::{Launch, MemoryCgroup};

const MIB: u64 = 1 << 20;

/// `sh` holding a string of `bytes` bytes in memory (a command substitution keeps the whole
/// output), then printing its length.
fn hold(group: &MemoryCgroup, bytes: u64) -> std::process::Output {
    group
        .command("sh")
        .arg("-c")
        .arg(format!(
            r#"x=$(head -c {bytes} /dev/zero | tr '\0' a); echo ${{#x}}"#
        ))
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

#[test]
fn a_child_over_the_limit_is_oom_killed_and_counted() {
    let group = MemoryCgroup::create(32 * MIB).expect("a memory cgroup (needs root)");
    let out = hold(&group, 100_000_000);
    assert!(
        !out.status.success(),
        "sh survived holding 100 MB under 32 MiB"
    );
    let usage = group.usage().expect("the cgroup's figures");
    assert_eq!(usage.oom_kills, 1, "{usage:?}");
    assert_eq!(usage.limit, 32 * MIB);
    assert!(usage.peak <= 32 * MIB, "{usage:?}");
    assert!(usage.peak > 16 * MIB, "{usage:?}");
}

#[test]
fn a_child_under_the_limit_runs_and_its_peak_is_measured() {
    let group = MemoryCgroup::create(128 * MIB).expect("a memory cgroup (needs root)");
    let out = hold(&group, 20_000_000);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "20000000");
    let usage = group.usage().expect("the cgroup's figures");
    assert_eq!(usage.oom_kills, 0, "{usage:?}");
    assert!(!usage.under_oom);
    assert!(usage.peak >= 20_000_000, "{usage:?}");
    assert!(group.pids().expect("its pids").is_empty());
    let path = group.path().to_owned();
    assert!(path.is_dir());
    drop(group);
    assert!(!path.exists(), "the cgroup is removed on drop");
}

#[tokio::test]
async fn a_launched_service_runs_in_its_cgroup_across_relaunches() {
    // `testenv up nats` is a program of this workspace that serves until stopped, with a
    // child of its own (nats-server), which must be in the group too.
    let mut service = Launch::named("testenv")
        .args(["up", "nats"])
        .ready_when_started()
        .memory_limit(256 * MIB)
        .start()
        .await
        .expect("testenv up nats starts");
    let in_group = |service: &testenv::Service| {
        let group = service
            .memory_cgroup()
            .expect("started with a memory limit");
        let pid = service
            .pid()
            .is_ok_and(|pid| group.pids().is_ok_and(|p| p.contains(&pid)));
        pid && group.pids().is_ok_and(|p| p.len() >= 2)
    };
    testenv::eventually(
        Duration::from_secs(30),
        "testenv and nats-server in the cgroup",
        || async { in_group(&service) },
    )
    .await;
    let path = service.memory_cgroup().map(|g| g.path().to_owned());

    service.kill();
    service.relaunch().expect("relaunched");
    testenv::eventually(
        Duration::from_secs(30),
        "testenv and nats-server in the cgroup",
        || async { in_group(&service) },
    )
    .await;
    let usage = service
        .memory_usage()
        .expect("started with a memory limit")
        .expect("the cgroup's figures");
    assert_eq!(usage.limit, 256 * MIB);
    assert_eq!(usage.oom_kills, 0, "{usage:?}");
    assert!(usage.peak > MIB, "{usage:?}");

    drop(service);
    assert!(
        path.is_some_and(|p| !p.exists()),
        "the cgroup is removed with the service"
    );
}

#[test]
fn a_command_run_under_a_limit_reports_what_it_charged() {
    let run = |launch: Launch| {
        launch
            .arg("--help")
            .run_blocking(Duration::from_secs(30))
            .expect("testenv --help runs")
    };
    let limited = run(Launch::named("testenv").memory_limit(64 * MIB));
    assert!(limited.status.success(), "{limited:?}");
    assert!(limited.stdout_text().contains("testenv"));
    let usage = limited.memory.expect("run with a memory limit");
    assert_eq!(usage.limit, 64 * MIB);
    assert_eq!(usage.oom_kills, 0, "{usage:?}");
    assert!(usage.peak > 0, "{usage:?}");
    assert!(run(Launch::named("testenv")).memory.is_none());
}
