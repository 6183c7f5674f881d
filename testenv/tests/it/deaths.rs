//! A server that dies unasked is loud: `testenv up` ends with its name, exit status and log, and
//! in tests the handle of a server killed behind its back panics on drop with the same, while
//! the handles' own `kill`, `stop` and `restart` stay quiet.
//!
//! The servers are killed with `kill -9` from outside (as a crash or the OOM killer would), never
//! through the handle.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::time::{Duration, Instant};

use testenv::{BigQuery, Launch, Nats, NatsCluster, eventually};

/// How long a dead server may take to be noticed (the watchdog reaps it at once; `up` polls
/// every 50 ms).
const NOTICED: Duration = Duration::from_secs(30);

/// `kill -9 pid`, from outside the handle.
fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -9 {pid}: {status}");
}

/// The text of a panic's payload.
fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(not text)".to_owned(), |s| (*s).to_owned()),
    }
}

/// Drops `value`, returning the panic message if dropping it panicked.
fn drop_panics<T>(value: T) -> Option<String> {
    catch_unwind(AssertUnwindSafe(move || drop(value)))
        .err()
        .map(panic_text)
}

#[tokio::test]
async fn testenv_up_exits_with_the_name_status_and_log_of_a_server_that_died() {
    let mut up = Launch::named("testenv")
        .args(["up", "nats"])
        .ready_when_started()
        .start()
        .await
        .expect("testenv up nats starts");
    eventually(Duration::from_secs(60), "testenv up prints Up.", || async {
        up.log_tail(20).contains("Up.")
    })
    .await;
    let output = up.log_tail(20);
    let pid: u32 = output
        .split("nats-server pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no nats-server pid in:\n{output}"));

    kill_9(pid);
    let killed = Instant::now();
    let status = up
        .wait(NOTICED)
        .await
        .unwrap_or_else(|e| panic!("testenv up kept running with nats-server dead: {e}"));
    let noticed = killed.elapsed();

    let output = up.log_tail(100);
    assert!(!status.success(), "exit {status}:\n{output}");
    assert!(
        output.contains("nats-server died unexpectedly (exit status 137: killed by signal 9"),
        "{output}"
    );
    // The end of nats-server's own log.
    assert!(output.contains("Server is ready"), "{output}");
    assert!(output.contains("Stopped."), "{output}");
    println!("testenv up exited {noticed:?} after nats-server was killed");
}

#[tokio::test]
async fn a_nats_server_killed_behind_its_handle_panics_on_drop_with_its_log() {
    let nats = Nats::start().await.expect("nats-server starts");
    kill_9(nats.pid().expect("its pid"));
    eventually(NOTICED, "nats-server is gone", || async {
        !nats.is_running()
    })
    .await;

    let message = drop_panics(nats).expect("dropping the handle of a dead server panics");
    assert!(
        message.contains("nats-server died unexpectedly (exit status 137: killed by signal 9"),
        "{message}"
    );
    assert!(message.contains("Server is ready"), "{message}");
}

#[tokio::test]
async fn died_reports_a_dead_server_with_its_log_and_then_the_drop_is_quiet() {
    let nats = Nats::start().await.expect("nats-server starts");
    assert!(nats.died().is_none(), "a running server has not died");
    kill_9(nats.pid().expect("its pid"));
    eventually(NOTICED, "nats-server is gone", || async {
        !nats.is_running()
    })
    .await;
    let death = nats.died().expect("died() reports the killed server");
    let message = death.to_string();
    assert!(
        message.starts_with("nats-server died unexpectedly"),
        "{message}"
    );
    assert!(message.contains("Server is ready"), "{message}");

    assert_eq!(
        drop_panics(nats),
        None,
        "a death already reported panics again"
    );
}

#[tokio::test]
async fn kill_stop_and_restart_through_the_handle_are_not_deaths() {
    let mut killed = Nats::start().await.expect("nats-server starts");
    killed.kill();
    assert!(killed.died().is_none());
    assert_eq!(drop_panics(killed), None, "after kill()");

    let mut stopped = Nats::start().await.expect("nats-server starts");
    stopped.stop().await;
    assert!(stopped.died().is_none());
    assert_eq!(drop_panics(stopped), None, "after stop()");

    // A restarted server is watched again: killing it from outside is a death.
    let mut restarted = Nats::start().await.expect("nats-server starts");
    restarted.kill();
    restarted.restart().await.expect("restarts");
    assert_eq!(restarted.died().map(|e| e.to_string()), None);
    kill_9(restarted.pid().expect("its pid"));
    eventually(NOTICED, "nats-server is gone", || async {
        !restarted.is_running()
    })
    .await;
    let message = drop_panics(restarted).expect("a restarted server killed from outside panics");
    assert!(
        message.contains("nats-server died unexpectedly"),
        "{message}"
    );
}

#[tokio::test]
async fn a_dead_server_dropped_while_the_test_panics_does_not_abort_it() {
    let nats = Nats::start().await.expect("nats-server starts");
    kill_9(nats.pid().expect("its pid"));
    eventually(NOTICED, "nats-server is gone", || async {
        !nats.is_running()
    })
    .await;

    // The test's own failure stays the message; the death goes to stderr instead of a second
    // panic, which would abort the whole test binary.
    let result = catch_unwind(AssertUnwindSafe(move || {
        let _nats = nats;
        panic!("the test failed first");
    }));
    let message = panic_text(result.expect_err("the closure panics"));
    assert_eq!(message, "the test failed first");
}

#[tokio::test]
async fn a_cluster_node_killed_behind_its_handle_fails_the_test_naming_its_log() {
    let cluster = NatsCluster::start(3)
        .await
        .expect("a 3-node cluster starts");
    assert!(cluster.died().is_none());
    kill_9(cluster.node(1).pid().expect("its pid"));
    eventually(NOTICED, "node 1 is gone", || async {
        !cluster.node(1).is_running()
    })
    .await;

    let message = drop_panics(cluster).expect("dropping a cluster with a dead node panics");
    assert!(
        message.contains("nats-server died unexpectedly"),
        "{message}"
    );
    assert!(message.contains("nats-1.log"), "{message}");
}

#[tokio::test]
async fn a_dead_bigquery_emulator_panics_on_drop_with_its_log_though_its_folder_is_gone() {
    let bigquery = BigQuery::start().await.expect("the emulator starts");
    kill_9(bigquery.pid().expect("its pid"));
    eventually(NOTICED, "the emulator is gone", || async {
        !bigquery.is_running()
    })
    .await;
    let message = drop_panics(bigquery).expect("dropping the handle of a dead emulator panics");
    assert!(
        message.contains("bigquery-emulator died unexpectedly (exit status 137"),
        "{message}"
    );
    assert!(message.contains("REST server listening at"), "{message}");
    // Its watchdog removed the emulator's folder, log included, once the emulator was dead: the
    // tail above was read from the file kept open.
    let log = message
        .split("last lines of ")
        .nth(1)
        .and_then(|rest| rest.split(":\n").next())
        .unwrap_or_else(|| panic!("no log path in {message}"));
    assert!(!std::path::Path::new(log).exists(), "{log} still exists");
}
