//! The gateway and ingester binaries as child processes that can be killed with SIGKILL and
//! started again on the same port with the same flags.
//!
//! Each runs under testenv's watchdog ([`testenv::watched`]), as testenv's servers do: the
//! binary dies with the test even if the test is killed outright.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::time::Duration;

use tokio::time::Instant;

/// How often `/readyz` is probed while waiting.
const POLL: Duration = Duration::from_millis(100);

/// A workspace binary next to the test executable: `target/debug/deps/chaos-… →
/// target/debug/NAME` (`target/release/…` for the bench).
pub fn workspace_binary(name: &str) -> Result<PathBuf, String> {
    testenv::workspace_bin(name).map_err(|e| e.to_string())
}

/// A free loopback port (bound, then released for the child to bind).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("binding 127.0.0.1:0: {e}"))
}

/// One gateway or ingester process, restartable.
pub struct Child {
    pub name: String,
    pub addr: SocketAddr,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    running: Option<(std::process::Child, ChildStdin)>,
    http: reqwest::Client,
}

impl Child {
    /// Starts `bin` with `args`; `--listen 127.0.0.1:PORT` is added. Output goes to `dir/NAME.log`.
    pub fn start(
        name: &str,
        bin: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
        dir: &Path,
    ) -> Result<Self, String> {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut child = Child {
            name: name.to_owned(),
            addr,
            bin: bin.to_owned(),
            args,
            env,
            log: dir.join(format!("{name}.log")),
            running: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| e.to_string())?,
        };
        child.launch()?;
        Ok(child)
    }

    /// Starts the process again (same port, flags and log file) if it is not running.
    pub fn launch(&mut self) -> Result<(), String> {
        if self.running.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = testenv::watched(&self.bin)
            .args(&self.args)
            .args(["--listen", &self.addr.to_string()])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", self.name))?;
        let control = child
            .stdin
            .take()
            .ok_or_else(|| format!("{}: no stdin pipe", self.name))?;
        self.running = Some((child, control));
        Ok(())
    }

    /// SIGKILL, as a crash; returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some((mut child, mut control)) = self.running.take() {
            let _ = writeln!(control, "KILL");
            // Closing the pipe makes the watchdog SIGKILL even if the line was lost.
            drop(control);
            let _ = child.wait();
        }
    }

    /// Waits until `GET /readyz` answers 200, the process exits, or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let url = format!("http://{}/readyz", self.addr);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((child, _)) = self.running.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.running = None;
                return Err(format!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.name,
                    self.log_tail(30)
                ));
            }
            let last = match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not ready after {timeout:?} ({last}):\n{}",
                    self.name,
                    self.log_tail(30)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:34567/`.
    pub fn url(&self) -> reqwest::Url {
        // A socket address always makes a valid URL.
        reqwest::Url::parse(&format!("http://{}/", self.addr)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Log lines at ERROR level (the binaries log JSON: `"level":"ERROR"`), over every run.
    pub fn errors_logged(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(r#""level":"ERROR""#))
            .map(str::to_owned)
            .collect()
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}
