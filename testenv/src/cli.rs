//! `testenv up [nats|kube|bigquery|all]`: start servers, print their endpoints, keep them up until
//! Ctrl-C or SIGTERM.

use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};

use crate::{BigQuery, Error, KubeApi, Nats};

/// Command-line arguments of the `testenv` binary.
#[derive(Debug, clap::Parser)]
#[command(
    name = "testenv",
    about = "Real servers for Spartakus tests, on loopback"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Start servers, print their endpoints, and keep them up until Ctrl-C.
    Up {
        /// Which servers to start.
        #[arg(value_enum, default_value = "all")]
        which: Which,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    Nats,
    Kube,
    Bigquery,
    All,
}

impl Which {
    fn wants(self, server: Which) -> bool {
        self == Which::All || self == server
    }
}

/// Runs the command; returns once the servers are stopped.
pub async fn run(args: Args) -> Result<(), Error> {
    let Command::Up { which } = args.command;
    let mut nats = None;
    let mut kube = None;
    let mut bigquery = None;
    if which.wants(Which::Nats) {
        let t = Instant::now();
        let n = Nats::start().await?;
        println!(
            "NATS        {}  (monitor {}) ready in {:.1?}",
            n.url(),
            n.monitor_url(),
            t.elapsed()
        );
        nats = Some(n);
    }
    if which.wants(Which::Bigquery) {
        let t = Instant::now();
        let b = BigQuery::start().await?;
        println!(
            "BigQuery    {}  project {} ready in {:.1?}",
            b.endpoint(),
            b.project(),
            t.elapsed()
        );
        bigquery = Some(b);
    }
    if which.wants(Which::Kube) {
        let t = Instant::now();
        let k = KubeApi::start().await?;
        println!(
            "Kubernetes  {} ready in {:.1?}",
            k.server_url(),
            t.elapsed()
        );
        println!("            KUBECONFIG={}", k.kubeconfig_path().display());
        kube = Some(k);
    }
    println!("Up. Ctrl-C to stop.");
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::io("listening for SIGTERM", e))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    if let Some(mut n) = nats {
        n.stop().await;
    }
    drop(bigquery);
    drop(kube);
    println!("Stopped.");
    Ok(())
}
