//! `volunteer`: see the crate documentation and `volunteer --help`.

use std::process::ExitCode;

use plumbing::Chain;
use volunteer::config::Settings;
use volunteer::{Config, RunError, run};

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = match plumbing::cli::parse() {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let settings = match config.settings() {
        Ok(settings) => settings,
        Err(e) => return plumbing::cli::config_error(Chain(&e)),
    };
    plumbing::log::init(config.log_format);
    match start(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "volunteer failed");
            ExitCode::FAILURE
        }
    }
}

async fn start(settings: Settings) -> Result<(), RunError> {
    let kube = run::kube_client(&settings).await?;
    let http = run::http_client(&settings)?;
    let shutdown = plumbing::signal::cancel_on_signals().map_err(RunError::Signals)?;
    run(settings, kube, http, shutdown).await
}
