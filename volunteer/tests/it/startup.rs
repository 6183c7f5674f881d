//! The volunteer binary at start-up and at its first failure, no cluster needed: operator
//! input the collector would refuse is a configuration error (exit 64, one line naming the
//! flag and the rule) before anything is read or sent; and a failure to send is logged with
//! its whole cause chain.

use crate::common::{BoxError, TestResult, offline_kubeconfig, volunteer};

/// Exit 64 with exactly one line on stderr, which is returned.
async fn config_error(args: &[&str]) -> Result<String, BoxError> {
    let out = volunteer(args).await?;
    let stderr = out.stderr;
    assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(out.stdout.is_empty());
    Ok(stderr.trim_end().to_owned())
}

#[tokio::test]
async fn a_cluster_id_outside_the_reports_charset_is_refused_at_start() -> TestResult {
    let line = config_error(&["--gateway", "stdout", "--cluster-id", "ops@corp"]).await?;
    assert_eq!(
        line,
        r#"error: --cluster-id "ops@corp": not 1-128 characters of [A-Za-z0-9._:-]"#
    );
    Ok(())
}

#[tokio::test]
async fn sixty_five_extensions_are_refused_at_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    for i in 0..65 {
        std::fs::write(dir.path().join(format!("key{i:02}")), "value")?;
    }
    let path = dir.path().display().to_string();
    let line = config_error(&["--gateway", "stdout", "--extensions", &path]).await?;
    assert_eq!(
        line,
        format!("error: --extensions {path}: 65 pairs: more than 64 extensions")
    );
    Ok(())
}

#[tokio::test]
async fn an_extension_the_report_refuses_is_named_at_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("extensions.json");
    std::fs::write(&file, r#"{"Example.com/x": "1", "ok": "2"}"#)?;
    let path = file.display().to_string();
    let line = config_error(&["--gateway", "stdout", "--extensions", &path]).await?;
    assert_eq!(
        line,
        format!(
            r#"error: --extensions {path}: extension "Example.com/x": not an extension name ([DNS-subdomain/]name)"#
        )
    );
    Ok(())
}

#[tokio::test]
async fn a_flag_that_does_not_parse_is_one_line_and_exit_64() -> TestResult {
    let line = config_error(&["--gateway", "stdout", "--period", "soon"]).await?;
    assert!(line.contains("--period"), "{line}");
    let line = config_error(&["--gateway", "stdout", "--omit", "nodes.name"]).await?;
    assert!(line.contains("nodes.name"), "{line}");
    Ok(())
}

/// Before, only "error sending request for url (…)" reached the log, never why.
#[tokio::test]
async fn a_collector_that_refuses_connections_is_logged_with_the_cause() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Nothing listens on either port: the API server and the collector both refuse.
    let closed = || -> std::io::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let collector = closed()?;
    let kubeconfig = offline_kubeconfig(dir.path())?;
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef")?;
    let out = volunteer(&[
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--key-file",
        &key.display().to_string(),
        "--gateway",
        &format!("http://127.0.0.1:{collector}"),
        "--period",
        "0",
        "--send-deadline",
        "3s",
        "--request-timeout",
        "2s",
    ])
    .await?;
    let stderr = out.stderr;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let failed = stderr
        .lines()
        .find(|l| l.contains("volunteer failed"))
        .unwrap_or_else(|| panic!("no failure line in:\n{stderr}"));
    assert!(failed.contains("gave up after"), "{failed}");
    assert!(failed.contains("Connection refused"), "{failed}");
    Ok(())
}
