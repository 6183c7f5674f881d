//! This workspace's own binaries as test processes: the gateway, the ingester, stats and the
//! volunteer, started the one way every test starts them.
//!
//! A [`Launch`] names the binary and its flags; [`Launch::start`] runs a server on a free
//! loopback port and waits for its readiness route, [`Launch::run`] runs a command to its end.
//! Either way the process runs under the same watchdog as the external servers (killed when its
//! handle drops or the test process dies), its output goes to a log file, and a failure carries
//! the end of that log.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::Error;
use crate::binaries::workspace_bin;
use crate::cgroup::{MemoryCgroup, MemoryUsage};
use crate::process::{
    POLL, Process, START_ATTEMPTS, apply_env, free_ports, http_get, log_tail, watched,
};

/// How long a server of ours may take to answer its readiness route.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The node-ID key of every gateway [`Launch::gateway`] starts: one constant, so that the
/// replicas and restarts of one test store the same node IDs, and a test can compute them
/// (`report::node_id::NodeIdKey::from_secret(GATEWAY_NODE_ID_KEY)`). Not a secret.
pub const GATEWAY_NODE_ID_KEY: &[u8] = b"spartakus testenv gateways: not a secret at all";

/// A file holding [`GATEWAY_NODE_ID_KEY`], shared by every test process of the machine: its
/// content never changes, and each writer renames its own copy into place. Should writing fail,
/// the gateway exits at start naming the file, and the start fails with its log.
fn gateway_node_id_key_file() -> PathBuf {
    let path = std::env::temp_dir().join("spartakus-testenv-node-id.key");
    if std::fs::read(&path).ok().as_deref() != Some(GATEWAY_NODE_ID_KEY) {
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let _ =
            std::fs::write(&tmp, GATEWAY_NODE_ID_KEY).and_then(|()| std::fs::rename(&tmp, &path));
    }
    path
}

/// One of our binaries with its flags, not started yet.
#[derive(Debug, Clone)]
#[must_use = "a Launch does nothing until started or run"]
pub struct Launch {
    name: &'static str,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    listen: Option<&'static str>,
    port: Option<u16>,
    ready: Option<String>,
    ready_timeout: Duration,
    memory_limit: Option<u64>,
}

impl Launch {
    /// The gateway publishing to the NATS server at `nats_url`; ready when `/readyz` answers
    /// 200 (NATS reachable and its streams in place).
    /// Every gateway started here reads the node-ID key [`GATEWAY_NODE_ID_KEY`].
    pub fn gateway(nats_url: &str) -> Self {
        Self::new("gateway")
            .args(["--nats-url", nats_url, "--log-format", "json"])
            .arg("--node-id-key-file")
            .arg(gateway_node_id_key_file())
            .listen_flag("--listen")
            .ready_at("/readyz")
    }

    /// The ingester consuming from `nats_url` into `sink` (`sqlite:PATH`, `bigquery://…`,
    /// `stdout`), with batches that fill within 50 ms; ready when `/readyz` answers 200.
    pub fn ingester(nats_url: &str, sink: &str) -> Self {
        Self::new("ingester")
            .args(["--nats-url", nats_url, "--sink", sink])
            .args(["--batch-wait", "50ms", "--log-format", "json"])
            .listen_flag("--listen")
            .ready_at("/readyz")
    }

    /// `stats` with no flags yet: [`Launch::run`] it for one snapshot, or add `--listen` by
    /// [`Launch::serving`] to start it as a server.
    pub fn stats() -> Self {
        Self::new("stats")
    }

    /// The volunteer with no flags yet.
    pub fn volunteer() -> Self {
        Self::new("volunteer")
    }

    /// Any of our binaries by name, with no flags yet.
    pub fn named(name: &'static str) -> Self {
        Self::new(name)
    }

    fn new(name: &'static str) -> Self {
        Launch {
            name,
            args: Vec::new(),
            env: vec![("RUST_LOG".into(), Some("info".into()))],
            listen: None,
            port: None,
            ready: None,
            ready_timeout: READY_TIMEOUT,
            memory_limit: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable the test process has.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Serves on a free loopback port given by `flag` (e.g. `--listen`), ready when `path`
    /// answers 200 (see [`Launch::ready_at`]).
    pub fn serving(self, flag: &'static str, path: &str) -> Self {
        self.listen_flag(flag).ready_at(path)
    }

    fn listen_flag(mut self, flag: &'static str) -> Self {
        self.listen = Some(flag);
        self
    }

    /// The route that answers 200 once the server is ready (`/readyz` by default for the
    /// gateway and the ingester; `/healthz` to start one whose dependencies are away).
    pub fn ready_at(mut self, path: &str) -> Self {
        self.ready = Some(path.to_owned());
        self
    }

    /// Waits up to `timeout` for the readiness route instead of [`READY_TIMEOUT`] (for a server
    /// that does work before it serves, e.g. `stats` backfilling snapshots).
    pub fn ready_within(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Listens on this port of 127.0.0.1 rather than a free one chosen at start: for a test
    /// that held the port itself until now (e.g. refusing connections on it first), so that no
    /// other server could take it meanwhile. A port taken anyway fails the start.
    pub fn on_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Runs the program under a cgroup v1 memory limit of `bytes`, as a pod's container with
    /// that memory limit runs (see [`MemoryCgroup`]; needs root): over it the kernel reclaims
    /// page cache and then OOM-kills. [`Service::memory_usage`] reads its peak and OOM kills,
    /// over every run of it ([`Service::relaunch`] starts it in the same group); a command
    /// [`Launch::run`] returns them in [`Finished::memory`].
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Starts without waiting for any route: the process only has to be running (for a server
    /// whose readiness the test itself observes, e.g. a gateway without NATS).
    pub fn ready_when_started(mut self) -> Self {
        self.ready = None;
        self
    }

    /// Starts the server on a free loopback port and waits up to [`READY_TIMEOUT`] (or
    /// [`Launch::ready_within`]) for its readiness route. A start whose port was taken meanwhile
    /// is retried on another.
    pub async fn start(self) -> Result<Service, Error> {
        let mut dir = tempfile::Builder::new()
            .prefix(&format!("spartakus-{}-", self.name))
            .tempdir()
            .map_err(|e| Error::io("creating a temporary folder", e))?;
        let program = workspace_bin(self.name)?;
        let mut attempt = 0;
        loop {
            let cgroup = self.memory_limit.map(MemoryCgroup::create).transpose()?;
            attempt += 1;
            let port = match self.port {
                Some(port) => port,
                None => free_ports(1)?[0],
            };
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let mut args = self.args.clone();
            if let Some(flag) = self.listen {
                args.push(flag.into());
                args.push(addr.to_string().into());
            }
            let log = dir.path().join(format!("{}-{attempt}.log", self.name));
            let (bin, args) = match &cgroup {
                Some(group) => group.wrap(&program, &args),
                None => (program.clone(), args),
            };
            let process = Process::spawn_with_env(self.name, &bin, &args, &self.env, &log)?;
            let mut service = Service {
                name: self.name,
                process,
                cgroup,
                addr,
                log,
                bin,
                args,
                env: self.env.clone(),
                ready: self.ready.clone(),
                _dir: dir,
            };
            match service.wait_ready(self.ready_timeout).await {
                Ok(()) => return Ok(service),
                Err(e)
                    if is_port_conflict(&e) && self.port.is_none() && attempt < START_ATTEMPTS =>
                {
                    // The folder goes on to the next attempt; the failed process dies here.
                    dir = service.into_dir();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs the command to its end (at most `timeout`, then it is killed and this fails),
    /// stdout kept apart from the log.
    pub async fn run(self, timeout: Duration) -> Result<Finished, Error> {
        tokio::task::spawn_blocking(move || self.run_blocking(timeout))
            .await
            .map_err(|e| Error::io("waiting for a command", std::io::Error::other(e)))?
    }

    /// As [`Launch::run`], blocking the calling thread (for tests without a runtime).
    pub fn run_blocking(self, timeout: Duration) -> Result<Finished, Error> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("spartakus-{}-", self.name))
            .tempdir()
            .map_err(|e| Error::io("creating a temporary folder", e))?;
        let program = workspace_bin(self.name)?;
        let cgroup = self.memory_limit.map(MemoryCgroup::create).transpose()?;
        let (bin, args) = match &cgroup {
            Some(group) => group.wrap(&program, &self.args),
            None => (program, self.args.clone()),
        };
        let out_path = dir.path().join("stdout");
        let log = dir.path().join(format!("{}.log", self.name));
        let open = |path: &Path| {
            std::fs::File::create(path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))
        };
        let mut cmd = watched(&bin);
        cmd.args(&args)
            .stdout(Stdio::from(open(&out_path)?))
            .stderr(Stdio::from(open(&log)?));
        apply_env(&mut cmd, &self.env);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawning {}", self.name), e))?;
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| Error::io(format!("waiting for {}", self.name), e))?
            {
                break status;
            }
            if start.elapsed() >= timeout {
                // Closing the control pipe makes the watchdog SIGKILL the program.
                drop(child.stdin.take());
                let _ = child.wait();
                return Err(Error::NotReady {
                    server: self.name,
                    secs: timeout.as_secs(),
                    reason: "still running at the deadline, killed".into(),
                    tail: log_tail(&log, 30),
                    log,
                });
            }
            std::thread::sleep(POLL);
        };
        let stdout = std::fs::read(&out_path)
            .map_err(|e| Error::io(format!("reading {}", out_path.display()), e))?;
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        let memory = cgroup.as_ref().map(MemoryCgroup::usage).transpose()?;
        Ok(Finished {
            status,
            stdout,
            stderr,
            memory,
        })
    }
}

/// How a command ran: its exit status, what it printed on stdout, and its log (stderr).
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr (its log).
    pub stderr: String,
    /// What the kernel counted for its memory cgroup (peak, OOM kills), if it ran with
    /// [`Launch::memory_limit`].
    pub memory: Option<MemoryUsage>,
}

impl Finished {
    /// stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A running server of ours: killed on drop, its log kept until then.
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    // Field order matters: the process dies before its folder and its cgroup are removed.
    process: Process,
    cgroup: Option<MemoryCgroup>,
    addr: SocketAddr,
    log: PathBuf,
    // What `relaunch` starts again: the arguments include the listening address (and, under a
    // memory limit, the `sh` that joins the cgroup before running the program).
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    ready: Option<String>,
    _dir: TempDir,
}

impl Service {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// The program's own process id (not its watchdog's), to read `/proc`.
    pub fn pid(&self) -> Result<u32, Error> {
        self.process.program_pid()
    }

    /// `(VmHWM, VmRSS)` in bytes: the peak and current resident set size.
    pub fn memory(&self) -> Result<(u64, u64), Error> {
        let path = format!("/proc/{}/status", self.pid()?);
        let status =
            std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {path}"), e))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024)
                .ok_or_else(|| {
                    Error::io(
                        format!("{name} in {path}"),
                        std::io::Error::other("missing"),
                    )
                })
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }

    /// What the kernel counted for its memory cgroup (peak, OOM kills), over every run;
    /// `None` unless it was started with [`Launch::memory_limit`].
    pub fn memory_usage(&self) -> Option<Result<MemoryUsage, Error>> {
        self.cgroup.as_ref().map(MemoryCgroup::usage)
    }

    /// Its memory cgroup, if it was started with [`Launch::memory_limit`].
    pub fn memory_cgroup(&self) -> Option<&MemoryCgroup> {
        self.cgroup.as_ref()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.exited().is_none()
    }

    /// Sends a signal by name (`TERM`, `INT`, `STOP`, `CONT`…).
    pub fn signal(&mut self, sig: &str) {
        self.process.signal(sig);
    }

    /// SIGKILL, as a crash; waits until it is gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Waits up to `timeout` for the program to exit by itself and returns how it exited; on
    /// the deadline it is killed and this fails with the end of its log.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.process.exited() {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                self.process.kill();
                return Err(Error::NotReady {
                    server: self.name,
                    secs: timeout.as_secs(),
                    reason: "did not exit by the deadline, killed".into(),
                    log: self.log.clone(),
                    tail: self.log_tail(30),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits up to `timeout` for the readiness route to answer 200 (at once for a server
    /// started [`Launch::ready_when_started`]); fails with the end of the log if the program
    /// exits first or the deadline passes. For a server brought back by [`Service::relaunch`],
    /// or to check that one is still serving.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        match &self.ready {
            Some(path) => {
                let http = reqwest::Client::new();
                let url = format!("http://{}{path}", self.addr);
                self.process
                    .wait_until(timeout, || {
                        let (http, url) = (http.clone(), url.clone());
                        async move { http_get(&http, &url).await.map(drop) }
                    })
                    .await
            }
            None => match self.process.exited() {
                Some(status) => Err(Error::Exited {
                    server: self.name,
                    status,
                    log: self.log.clone(),
                    tail: self.log_tail(30),
                }),
                None => Ok(()),
            },
        }
    }

    /// Starts the program again once it has exited or been killed ([`Service::kill`]): the
    /// same binary, flags, environment and port, its output appended to the same log (so
    /// [`Service::log`] covers every run). Returns without waiting, so that several servers can
    /// be brought back while a dependency is still down; [`Service::wait_ready`] waits. Does
    /// nothing while the program runs. The port is not held while the program is down: if
    /// another process took it, the new run exits and `wait_ready` says so.
    pub fn relaunch(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        self.process =
            Process::spawn_with_env(self.name, &self.bin, &self.args, &self.env, &self.log)?;
        Ok(())
    }

    /// The folder, for another attempt at starting; the process is killed.
    fn into_dir(self) -> TempDir {
        let Service {
            process,
            cgroup,
            _dir,
            ..
        } = self;
        drop(process);
        drop(cgroup);
        _dir
    }

    /// SIGTERM, then [`Service::wait`] up to `timeout`: a graceful stop and its exit status.
    pub async fn stop(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        self.process.signal("TERM");
        self.wait(timeout).await
    }
}

/// Whether a start failed because the chosen port was taken meanwhile (Go servers say
/// "address already in use", Rust's io error "Address already in use").
fn is_port_conflict(e: &Error) -> bool {
    matches!(e, Error::Exited { tail, .. } if tail.to_ascii_lowercase().contains("address already in use"))
}
