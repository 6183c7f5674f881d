//! The ingester binary: parse flags, start logging, bind, run until SIGTERM/SIGINT.

use std::process::ExitCode;

use ingester::config::Config;
use plumbing::Chain;

/// mimalloc instead of the system allocator, as in the gateway (where glibc's malloc and free
/// took a fifth of the CPU): every report decodes into many small strings and rows.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = match plumbing::cli::parse() {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    plumbing::log::init(config.log_format);
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(listen = %config.listen, error = %Chain(&e), "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = match plumbing::signal::cancel_on_signals() {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "cannot listen for signals");
            return ExitCode::FAILURE;
        }
    };
    match ingester::run(config, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => {
            tracing::error!(error = %Chain(&e), "ingester failed: the configuration is at fault");
            ExitCode::from(plumbing::cli::EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!(error = %Chain(&e), "ingester failed");
            ExitCode::FAILURE
        }
    }
}
