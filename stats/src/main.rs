//! The stats binary: parse flags, start logging, bind the server if asked, connect to the
//! store, compute what is due.

use std::process::ExitCode;

use plumbing::Chain;
use stats::config::{Config, StoreSpec};
use stats::store::bigquery::BigQueryStore;
use stats::store::sqlite::SqliteStore;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = match plumbing::cli::parse() {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    plumbing::log::init(config.log_format);
    let shutdown = match plumbing::signal::cancel_on_signals() {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %Chain(&e), "cannot listen for signals");
            return ExitCode::FAILURE;
        }
    };
    let listener = match config.listen {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::error!(%addr, error = %Chain(&e), "cannot listen");
                return ExitCode::FAILURE;
            }
        },
    };
    let result = match config.store.clone() {
        StoreSpec::Sqlite(path) => {
            stats::run::start(config, SqliteStore::new(path), listener, shutdown).await
        }
        StoreSpec::BigQuery(table) => {
            let credentials = config.credentials();
            let endpoint = config.bigquery_endpoint.as_deref();
            let deadlines = config.bigquery_deadlines();
            match BigQueryStore::connect_with(table, endpoint, &credentials, deadlines).await {
                Ok(store) => stats::run::start(config, store, listener, shutdown).await,
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "cannot connect to BigQuery");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => plumbing::cli::config_error(&e),
        Err(e) => {
            tracing::error!(error = %Chain(&e), "stats failed");
            ExitCode::FAILURE
        }
    }
}
