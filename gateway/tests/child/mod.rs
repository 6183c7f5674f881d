//! The gateway binary as a child process, so that its memory can be read from `/proc` without
//! the test's own allocations in the figure. Shared by `hostile.rs`, `overload.rs` and the
//! `overload` bench.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the gateway may take to start listening and to become ready.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// A running `gateway` binary on a loopback port of its own choosing; killed on drop.
pub struct GatewayProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl GatewayProcess {
    /// Starts `binary` against `nats_url` with `args` added to the flags, and waits until it
    /// listens (the address comes from its "gateway listening" log line on stderr).
    pub fn start(binary: &Path, nats_url: &str, stream: &str, args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--nats-url", nats_url])
            .args(["--queue", &stream.to_lowercase().replace('_', "-")])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway binary");
        // Logs go to stderr (every binary's, as plumbing::log writes them).
        let logs = child.stderr.take().expect("piped stderr");
        let (addr_tx, addr_rx) = mpsc::channel();
        // Reads every log line for as long as the process lives, so that its pipe never fills.
        std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(logs).lines() {
                let Ok(line) = line else { return };
                if let Some(tx) = &addr_tx
                    && let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "gateway listening"
                    && let Some(addr) = event["addr"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                    addr_tx = None;
                }
            }
        });
        let addr = match addr_rx.recv_timeout(START_DEADLINE) {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                panic!("the gateway never logged its address: {e}");
            }
        };
        GatewayProcess {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `(VmHWM, VmRSS)` in bytes: the peak and the current resident set size.
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        let field = |name: &str| -> u64 {
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
                .unwrap_or_else(|| panic!("{name} missing from /proc status"))
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// Polls `GET path` until it answers 200, panicking after [`START_DEADLINE`].
    pub async fn wait_for_ok(&self, http: &reqwest::Client, path: &str) {
        let start = Instant::now();
        loop {
            let got = http.get(format!("{}{path}", self.url)).send().await;
            if got.as_ref().is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                start.elapsed() < START_DEADLINE,
                "GET {path} never answered 200 (last: {:?})",
                got.map(|r| r.status())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes as MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
