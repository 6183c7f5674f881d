//! The gateway binary: flags, tracing, signals; everything else is in the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use gateway::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: decoding, validating and re-encoding a report
/// allocates for every string, and glibc's malloc and free took a fifth of the gateway's CPU
/// in the throughput benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `EX_USAGE`: the configuration is unusable.
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => {
            // --help or --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    gateway::init_tracing(config.log_format);
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gateway failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = gateway::shutdown_signal().await {
            tracing::error!(error = %e, "cannot listen for signals; stopping");
        }
        on_signal.cancel();
    });
    gateway::run(config, listener, shutdown).await?;
    Ok(())
}
