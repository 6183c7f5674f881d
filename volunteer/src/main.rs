//! `volunteer`: see the crate documentation and `volunteer --help`.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use volunteer::{Config, run};

/// sysexits' EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let settings = match config.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_tracing(&config.log_format);
    match start(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "volunteer failed");
            ExitCode::FAILURE
        }
    }
}

async fn start(settings: volunteer::config::Settings) -> anyhow::Result<()> {
    let kube = run::kube_client(&settings).await?;
    let http = run::http_client(&settings)?;
    let shutdown = CancellationToken::new();
    run::cancel_on_signals(shutdown.clone());
    run(settings, kube, http, shutdown).await?;
    Ok(())
}

/// Logs go to stderr: stdout carries the report in `--dry-run` and `stdout` modes.
fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
