//! `volunteer`: see the crate documentation and `volunteer --help`.

use std::process::ExitCode;

use plumbing::Chain;
use volunteer::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = match plumbing::cli::parse() {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let task = match config.task() {
        Ok(task) => task,
        Err(e) => return plumbing::cli::config_error(Chain(&e)),
    };
    plumbing::log::init(config.log_format);
    match volunteer::run::start(task).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "volunteer failed");
            ExitCode::FAILURE
        }
    }
}
