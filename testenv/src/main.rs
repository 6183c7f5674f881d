//! `cargo run -p testenv -- up [nats|kube|bigquery|all]`: real servers on loopback, by hand.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = testenv::cli::Args::parse();
    match testenv::cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testenv: {e}");
            ExitCode::FAILURE
        }
    }
}
