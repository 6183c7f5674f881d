//! The binary's contract with an operator: bad flags are one line and exit 64; a failed run
//! exits non-zero; a run with nothing due publishes nothing and succeeds.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use testenv::{Finished, Launch};

async fn stats(args: &[&str]) -> Finished {
    Launch::stats()
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SPARTAKUS_STORE")
        .run(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn bad_flags_exit_64_with_a_line_naming_the_flag() {
    for (args, names) in [
        (&["--min-clusters", "1"][..], "--min-clusters"),
        (&["--store", "postgres://db"][..], "--store"),
        (&["--window-days", "0"][..], "--window-days"),
        (&["--cadence", "hourly"][..], "--cadence"),
        (&["--date", "2026-13-01"][..], "--date"),
        (&["--store", "bigquery://p/d"][..], "--store"),
    ] {
        let out = stats(args).await;
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = &out.stderr;
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_day_that_is_not_over_is_refused_as_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = stats(&[
        "--once",
        "--new-ledger",
        "--date",
        "2999-01-04",
        "--out",
        dir.path().to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(64));
    let stderr = &out.stderr;
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not over yet"), "{stderr}");
}

#[tokio::test]
async fn a_store_that_is_not_there_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sqlite");
    let out = stats(&[
        "--once",
        "--new-ledger",
        "--date",
        "2026-11-29",
        "--store",
        &format!("sqlite:{}", missing.display()),
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(!dir.path().join("out/latest.json").exists());
    assert!(
        !dir.path().join("out/ledger.json").exists(),
        "nothing released, nothing recorded"
    );
}

#[tokio::test]
async fn help_documents_every_flag_with_its_environment_variable() {
    let out = stats(&["--help"]).await;
    assert!(out.status.success());
    let help = out.stdout_text();
    let flags = help
        .lines()
        .filter(|l| l.trim_start().starts_with("--"))
        .count();
    let envs = help.matches("[env: SPARTAKUS_").count();
    assert!(flags >= 10, "{help}");
    assert_eq!(envs, flags, "every flag has a SPARTAKUS_ variable:\n{help}");
}
