//! NATS with JetStream: one server, or a cluster of servers on loopback.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::Error;
use crate::binaries::binary;
use crate::process::{Process, START_ATTEMPTS, free_ports, http_get};

/// How long a server may take to be ready (a cluster: to elect a meta leader).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// JetStream's store limit. The streams' byte budgets are reserved from it (a gateway's
/// defaults take 6.25 GiB), and some tests run several queues on one server: set well above
/// them, so that no test depends on the free disk it runs on, from which the server's default
/// is computed. It is a bound, nothing is allocated.
const STORE_LIMIT: &str = "64GiB";
/// The cluster name every node of a [`NatsCluster`] shares.
const CLUSTER_NAME: &str = "spartakus";

/// How often JetStream fsyncs what it stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NatsSync {
    /// `sync_interval: always`, as every configuration this project ships: a message is on disk
    /// before the server acknowledges it.
    #[default]
    Always,
    /// The server's own default (an fsync every 2 minutes): acknowledged messages live only in
    /// the page cache until then. Only for tests that show what that loses.
    ServerDefault,
}

/// How to start a [`Nats`] or a [`NatsCluster`]: `Nats::options().….start()`.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    sync: NatsSync,
    store: Option<PathBuf>,
}

impl NatsOptions {
    /// How often JetStream fsyncs (default [`NatsSync::Always`]).
    pub fn sync(mut self, sync: NatsSync) -> Self {
        self.sync = sync;
        self
    }

    /// Keeps the store(s) under `dir` (one sub-folder per server, named after it) instead of a
    /// temporary folder, e.g. on a [`crate::LazyFs`] mount. `dir` must exist.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store = Some(dir.into());
        self
    }

    /// Starts a single server and waits until JetStream is ready.
    pub async fn start(self) -> Result<Nats, Error> {
        Nats::start_with(self).await
    }

    /// Starts a cluster of `size` servers, as [`NatsCluster::start`].
    pub async fn start_cluster(self, size: usize) -> Result<NatsCluster, Error> {
        NatsCluster::start_with(size, self).await
    }

    /// The store folder of server `name`: under [`Self::store_dir`] if set, else under `dir`.
    fn store(&self, dir: &Path, name: &str) -> PathBuf {
        self.store.as_deref().unwrap_or(dir).join(name)
    }
}

/// A `nats-server` with JetStream enabled and its own store folder, on a free loopback port,
/// with `sync_interval: always` unless [`NatsOptions::sync`] says otherwise.
///
/// Killed on drop. [`Nats::kill`] simulates a crash; [`Nats::restart`] brings it back on the same
/// port with the same store.
///
/// A server that dies unasked (not through [`Nats::kill`], [`Nats::stop`] or [`Nats::restart`])
/// fails the test: [`Nats::died`] says so with its log, and dropping the handle panics with the
/// same message unless `died` already reported it (or the thread is already panicking: then the
/// message goes to stderr).
#[derive(Debug)]
pub struct Nats {
    // Field order matters: the process dies before its folder is removed.
    process: Option<Process>,
    node: Node,
    http: reqwest::Client,
    _dir: Option<TempDir>,
}

/// Everything needed to (re)start one server.
#[derive(Debug)]
struct Node {
    port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Node {
    /// Writes the server's config file into `dir`; `routes` are the cluster's route ports.
    fn write(
        dir: &Path,
        options: &NatsOptions,
        name: String,
        port: u16,
        http_port: u16,
        cluster: Option<(u16, &[u16])>,
    ) -> Result<Self, Error> {
        let store = options.store(dir, &name);
        let sync = match options.sync {
            NatsSync::Always => "  sync_interval: always\n",
            NatsSync::ServerDefault => "",
        };
        let mut conf = format!(
            "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{http_port}\"\n\
             max_payload: 17MB\njetstream {{\n  store_dir: {store}\n  max_file_store: {STORE_LIMIT}\n{sync}}}\n",
            store = quote(&store),
        );
        if let Some((cluster_port, route_ports)) = cluster {
            let routes: Vec<String> = route_ports
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            conf.push_str(&format!(
                "cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, conf)
            .map_err(|e| Error::io(format!("writing {}", config.display()), e))?;
        Ok(Self {
            log: dir.join(format!("{name}.log")),
            port,
            http_port,
            config,
        })
    }
}

/// A path as a quoted string in NATS config syntax (which accepts JSON strings).
fn quote(path: &Path) -> String {
    serde_json::Value::from(path.to_string_lossy()).to_string()
}

impl Nats {
    /// Starts a single server with the default [`NatsOptions`] and waits until JetStream is
    /// ready.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(NatsOptions::default()).await
    }

    /// Options to start a server or a cluster with other settings.
    pub fn options() -> NatsOptions {
        NatsOptions::default()
    }

    async fn start_with(options: NatsOptions) -> Result<Self, Error> {
        let dir = TempDir::with_prefix("spartakus-nats-")
            .map_err(|e| Error::io("creating a temporary folder", e))?;
        let mut attempt = 1;
        loop {
            let ports = free_ports(2)?;
            let node = Node::write(
                dir.path(),
                &options,
                "nats-0".into(),
                ports[0],
                ports[1],
                None,
            )?;
            let mut nats = Self::spawn(node)?;
            match nats.wait_ready().await {
                Ok(()) => {
                    nats._dir = Some(dir);
                    nats.arm();
                    return Ok(nats);
                }
                // A port was taken between choosing and binding it: choose again.
                Err(e) if e.is_port_conflict() && attempt < START_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn(node: Node) -> Result<Self, Error> {
        let mut nats = Self {
            process: None,
            node,
            http: reqwest::Client::new(),
            _dir: None,
        };
        nats.launch()?;
        Ok(nats)
    }

    fn launch(&mut self) -> Result<(), Error> {
        let args: Vec<OsString> = vec!["-c".into(), self.node.config.clone().into()];
        self.process = Some(Process::spawn(
            "nats-server",
            &binary("nats-server")?,
            &args,
            &self.node.log,
            None,
        )?);
        Ok(())
    }

    /// Waits until `/healthz` answers 200: JetStream is up and, in a cluster, current with the
    /// meta leader.
    async fn wait_ready(&mut self) -> Result<(), Error> {
        let url = format!("http://127.0.0.1:{}/healthz", self.node.http_port);
        let http = self.http.clone();
        let Some(process) = self.process.as_mut() else {
            return Ok(());
        };
        process
            .wait_until(READY_TIMEOUT, || {
                let http = http.clone();
                let url = url.clone();
                async move { http_get(&http, &url).await.map(drop) }
            })
            .await
    }

    /// The client URL, e.g. `nats://127.0.0.1:34567`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.node.port)
    }

    /// The monitoring endpoint, e.g. `http://127.0.0.1:34568` (`/healthz`, `/jsz`, `/varz`).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.node.http_port)
    }

    /// From now on a death unasked fails the test (see [`Nats`]).
    fn arm(&mut self) {
        if let Some(process) = self.process.as_mut() {
            process.arm();
        }
    }

    /// If the server died without [`Nats::kill`], [`Nats::stop`] or [`Nats::restart`]: the
    /// error that says so, with its exit status and the end of its log. Once reported here, the
    /// death no longer panics on drop.
    pub fn died(&self) -> Option<Error> {
        self.process.as_ref().and_then(Process::died)
    }

    /// The process id of the `nats-server` process (an error while it is not running).
    pub fn pid(&self) -> Result<u32, Error> {
        match &self.process {
            Some(process) => process.program_pid(),
            None => Err(Error::io(
                "finding nats-server's process",
                std::io::Error::other("stopped"),
            )),
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| p.exited().is_none())
    }

    /// Kills the server with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Stops the server with SIGTERM (SIGKILL after 10 s) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(STOP_GRACE).await;
        }
    }

    /// Starts the server again on the same ports with the same store and waits until it is
    /// ready. A server still running is stopped first.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.stop().await;
        self.launch()?;
        self.wait_ready().await?;
        self.arm();
        Ok(())
    }

    /// The end of the server's log, for diagnosing a failed test.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::log_tail(&self.node.log, lines)
    }
}

/// A JetStream cluster of `nats-server`s on loopback: one cluster name, a `server_name` per node,
/// full-mesh routes. Killed on drop; a node that died unasked fails the test as a [`Nats`] does.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Nats>,
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until every node is ready and the cluster has a JetStream
    /// meta leader, so a replicated stream can be created right away.
    pub async fn start(size: usize) -> Result<Self, Error> {
        Self::start_with(size, NatsOptions::default()).await
    }

    async fn start_with(size: usize, options: NatsOptions) -> Result<Self, Error> {
        let dir = TempDir::with_prefix("spartakus-nats-cluster-")
            .map_err(|e| Error::io("creating a temporary folder", e))?;
        let mut attempt = 1;
        loop {
            let ports = free_ports(3 * size)?;
            let route_ports = &ports[2 * size..];
            let mut nodes = Vec::with_capacity(size);
            for i in 0..size {
                let node = Node::write(
                    dir.path(),
                    &options,
                    format!("nats-{i}"),
                    ports[i],
                    ports[size + i],
                    Some((route_ports[i], route_ports)),
                )?;
                nodes.push(Nats::spawn(node)?);
            }
            match wait_cluster_ready(&mut nodes).await {
                Ok(()) => {
                    nodes.iter_mut().for_each(Nats::arm);
                    return Ok(Self { nodes, _dir: dir });
                }
                // A port was taken between choosing and binding it: choose again.
                Err(e) if e.is_port_conflict() && attempt < START_ATTEMPTS => {
                    attempt += 1;
                    // The old servers must be gone before new ones use the same store folders.
                    drop(nodes);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The client URLs of all nodes, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Nats::url).collect()
    }

    /// The first node (in node order) that died unasked, as [`Nats::died`] says it.
    pub fn died(&self) -> Option<Error> {
        self.nodes.iter().find_map(Nats::died)
    }

    /// Node `i` (panics if out of range).
    pub fn node(&self, i: usize) -> &Nats {
        &self.nodes[i]
    }

    /// Node `i`, to kill or restart it (panics if out of range).
    pub fn node_mut(&mut self, i: usize) -> &mut Nats {
        &mut self.nodes[i]
    }

    /// Every node, to kill or restart several at once (e.g. restart all concurrently: a lone
    /// node of a cluster whose others are down never becomes ready).
    pub fn nodes_mut(&mut self) -> &mut [Nats] {
        &mut self.nodes
    }
}

/// Waits until every node answers `/healthz` and the JetStream meta leader sees every other node
/// as a current peer. A meta leader alone is not enough: until all peers have joined, creating an
/// R3 stream fails with "insufficient resources".
async fn wait_cluster_ready(nodes: &mut [Nats]) -> Result<(), Error> {
    for node in nodes.iter_mut() {
        node.wait_ready().await?;
    }
    let size = nodes.len();
    let monitors: Vec<String> = nodes.iter().map(Nats::monitor_url).collect();
    let Some((first, _)) = nodes.split_first_mut() else {
        return Ok(());
    };
    let http = first.http.clone();
    let Some(process) = first.process.as_mut() else {
        return Ok(());
    };
    process
        .wait_until(READY_TIMEOUT, || {
            let http = http.clone();
            let monitors = monitors.clone();
            async move { meta_group_complete(&http, &monitors, size).await }
        })
        .await
}

/// `Ok` once the meta leader (asked through node 0) reports `size - 1` current peers.
async fn meta_group_complete(
    http: &reqwest::Client,
    monitors: &[String],
    size: usize,
) -> Result<(), String> {
    let jsz = |url: String| async move {
        let body = http_get(http, &url).await?;
        serde_json::from_str::<serde_json::Value>(&body).map_err(|e| format!("{url}: {e}"))
    };
    let first = jsz(format!("{}/jsz", monitors[0])).await?;
    let leader = match first["meta_cluster"]["leader"].as_str() {
        Some(leader) if !leader.is_empty() => leader.to_owned(),
        _ => return Err("no meta leader yet".into()),
    };
    // Nodes are named `nats-{index}`; only the leader lists the meta group's peers.
    let index = leader
        .strip_prefix("nats-")
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|&i| i < size)
        .ok_or_else(|| format!("unexpected meta leader name {leader:?}"))?;
    let meta = &jsz(format!("{}/jsz", monitors[index])).await?["meta_cluster"];
    let current = meta["replicas"]
        .as_array()
        .map(|peers| peers.iter().filter(|p| p["current"] == true).count())
        .unwrap_or(0);
    if meta["cluster_size"] == size && current == size - 1 {
        Ok(())
    } else {
        Err(format!(
            "meta leader {leader}: cluster size {}, {current} of {} peers current",
            meta["cluster_size"],
            size - 1
        ))
    }
}
