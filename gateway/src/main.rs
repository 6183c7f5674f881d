//! The gateway binary: flags, logging, signals; everything else is in the library.

use std::process::ExitCode;

use gateway::Config;
use plumbing::Chain;
use tokio::net::TcpListener;

/// mimalloc instead of the system allocator: decoding, validating and re-encoding a report
/// allocates for every string, and glibc's malloc and free took a fifth of the gateway's CPU
/// in the throughput benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = match plumbing::cli::parse() {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    if let Err(e) = config.check() {
        return plumbing::cli::config_error(e);
    }
    plumbing::log::init(config.log_format);
    let listener = match TcpListener::bind(config.listen).await {
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
    match gateway::run(config, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "gateway failed");
            ExitCode::FAILURE
        }
    }
}
