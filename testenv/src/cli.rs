//! `testenv up [nats|kube|bigquery|all]`: start servers, print their endpoints and process ids,
//! keep them up until Ctrl-C or SIGTERM. A server that dies meanwhile (also while the next one
//! starts) ends it: the others are stopped, and the error names the server, its exit status and
//! the end of its log, so nobody keeps testing against a dead server.

use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};

use crate::process::POLL;
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

/// Runs the command; returns once the servers are stopped: `Ok` on Ctrl-C or SIGTERM, the
/// error if a server failed to start or died.
pub async fn run(args: Args) -> Result<(), Error> {
    let Command::Up { which } = args.command;
    let mut servers = Servers::default();
    let result = up(which, &mut servers).await;
    if result.is_err() {
        eprintln!("testenv: a server failed; stopping the others.");
    }
    servers.stop().await;
    println!("Stopped.");
    result
}

/// Starts what `which` asks for into `servers`, then serves until a signal or a death.
async fn up(which: Which, servers: &mut Servers) -> Result<(), Error> {
    if which.wants(Which::Nats) {
        let t = Instant::now();
        let n = servers.unless_one_dies(Nats::start()).await?;
        println!(
            "NATS        {}  (monitor {}) ready in {:.1?}, nats-server pid {}",
            n.url(),
            n.monitor_url(),
            t.elapsed(),
            pid(n.pid())
        );
        servers.nats = Some(n);
    }
    if which.wants(Which::Bigquery) {
        let t = Instant::now();
        let b = servers.unless_one_dies(BigQuery::start()).await?;
        println!(
            "BigQuery    {}  project {} ready in {:.1?}, bigquery-emulator pid {}",
            b.endpoint(),
            b.project(),
            t.elapsed(),
            pid(b.pid())
        );
        servers.bigquery = Some(b);
    }
    if which.wants(Which::Kube) {
        let t = Instant::now();
        let k = servers.unless_one_dies(KubeApi::start()).await?;
        println!(
            "Kubernetes  {} ready in {:.1?}, kube-apiserver pid {}, etcd pid {}",
            k.server_url(),
            t.elapsed(),
            pid(k.apiserver_pid()),
            pid(k.etcd_pid())
        );
        println!("            KUBECONFIG={}", k.kubeconfig_path().display());
        servers.kube = Some(k);
    }
    println!("Up. Ctrl-C to stop.");
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::io("listening for SIGTERM", e))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        death = servers.first_death() => Err(death),
    }
}

/// A process id for display.
fn pid(pid: Result<u32, Error>) -> String {
    pid.map_or_else(|_| "unknown".to_owned(), |p| p.to_string())
}

/// The servers started so far.
#[derive(Default)]
struct Servers {
    nats: Option<Nats>,
    bigquery: Option<BigQuery>,
    kube: Option<KubeApi>,
}

impl Servers {
    /// The first server (in start order) that died, as an error with its log; any other that
    /// died too is printed here, since only one error is returned.
    fn died(&self) -> Option<Error> {
        let mut deaths = [
            self.nats.as_ref().and_then(Nats::died),
            self.bigquery.as_ref().and_then(BigQuery::died),
            self.kube.as_ref().and_then(KubeApi::died),
        ]
        .into_iter()
        .flatten();
        let first = deaths.next();
        for other in deaths {
            eprintln!("testenv: {other}");
        }
        first
    }

    /// Resolves when a server dies. A poll: a child's exit gives no event to wait on here, and
    /// asking is a `waitpid` without blocking.
    async fn first_death(&self) -> Error {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            if let Some(death) = self.died() {
                return death;
            }
        }
    }

    /// `start`, unless a server started before dies first (a minute of kube-apiserver start
    /// is long enough for that).
    async fn unless_one_dies<T>(
        &self,
        start: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::select! {
            started = start => started,
            death = self.first_death() => Err(death),
        }
    }

    /// Stops every server still running: NATS gracefully, the others killed.
    async fn stop(&mut self) {
        if let Some(mut n) = self.nats.take() {
            n.stop().await;
        }
        self.bigquery = None;
        self.kube = None;
    }
}
