//! `volunteer`: see the crate documentation and `volunteer --help`.

use std::process::ExitCode;

use plumbing::Chain;
use volunteer::config::{Command, Settings};
use volunteer::{Config, RunError, forget, run};

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = match plumbing::cli::parse() {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let checked = match config.command {
        Some(Command::Status) => config
            .kube()
            .and_then(|kube| Ok((kube, config.status_target()?)))
            .map(Task::Status),
        Some(Command::Forget) => config.settings().map(Task::Forget),
        None => config.settings().map(Task::Report),
    };
    let task = match checked {
        Ok(task) => task,
        Err(e) => return plumbing::cli::config_error(Chain(&e)),
    };
    plumbing::log::init(config.log_format);
    match start(task).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "volunteer failed");
            ExitCode::FAILURE
        }
    }
}

enum Task {
    Report(Settings),
    Forget(Settings),
    Status(
        (
            volunteer::config::KubeSettings,
            volunteer::config::StatusTarget,
        ),
    ),
}

async fn start(task: Task) -> Result<(), RunError> {
    match task {
        Task::Status((kube, target)) => {
            let kube = run::kube_client(&kube).await?;
            print!("{}", run::status(&kube, &target).await?);
            Ok(())
        }
        Task::Forget(settings) => {
            let http = run::http_client(&settings)?;
            // With --key-file, the cluster need not be reachable.
            let key = match &settings.key {
                Some(key) => key.clone(),
                None => run::key(&settings, &run::kube_client(&settings.kube).await?).await?,
            };
            let forgotten = forget::forget(&settings, &key, &http).await?;
            print!("{}", forget::explain(&forgotten));
            Ok(())
        }
        Task::Report(settings) => {
            let kube = run::kube_client(&settings.kube).await?;
            let http = run::http_client(&settings)?;
            let shutdown = plumbing::signal::cancel_on_signals().map_err(RunError::Signals)?;
            run(settings, kube, http, shutdown).await
        }
    }
}
