//! One server process: spawned under a tiny `sh` watchdog, its output in a log file.
//!
//! Why a watchdog: tests keep shared servers in `static`s, whose `Drop` never runs, and a test
//! process may be killed outright. The workspace forbids `unsafe`, so `prctl(PR_SET_PDEATHSIG)` is
//! out. Instead every server runs as the child of a small `sh` script whose stdin is a pipe from
//! this process. The script forwards each line it reads as a signal name to the server, and on
//! end-of-file (this process exited, however it died, or the handle was dropped) it sends SIGKILL,
//! reaps the server and, if asked, removes the server's folder. Because the script is the server's
//! parent, the PID it signals cannot have been reused. Each script gets its own process group, so a
//! Ctrl-C in the terminal reaches only our process, which then stops the servers in order.
//!
//! A server that dies unasked is an error, not a quiet gap: [`Process::died`] says so (with the
//! exit status and the end of the log) at any time, and a process [`Process::arm`]ed once it was
//! ready panics with the same message when it is dropped, unless it was killed or stopped
//! through its handle, or its death was already reported. The log is kept open, so its end can
//! still be read after a watchdog with a cleanup folder has removed the file.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;

/// `$0` is `sh`, `$1` the server binary, the rest its arguments. The server gets fd 0 from
/// /dev/null; the watcher reads our pipe on fd 3 (an asynchronous list's stdin would be /dev/null).
const WATCHDOG: &str = r#"
exec 3<&0 </dev/null
"$@" 3<&- &
pid=$!
(
  while read -r sig <&3; do kill -s "$sig" "$pid" 2>/dev/null; done
  kill -s KILL "$pid" 2>/dev/null
) &
watcher=$!
exec 3<&-
wait "$pid"
status=$?
kill "$watcher" 2>/dev/null
if [ -n "$SPARTAKUS_TESTENV_CLEANUP" ]; then rm -rf -- "$SPARTAKUS_TESTENV_CLEANUP"; fi
exit "$status"
"#;

/// A `Command` that runs `bin` under the watchdog; add the program's arguments, environment and
/// output. Its stdin is the control pipe: each line written is a signal name (e.g. `TERM`) sent
/// to the program, and closing it (dropping the handle, or this process dying however it dies)
/// SIGKILLs the program. The script runs in its own process group, so a Ctrl-C in the terminal
/// reaches only the test process.
pub(crate) fn watched(bin: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WATCHDOG)
        .arg("sh")
        .arg(bin)
        .stdin(Stdio::piped())
        .process_group(0)
        .env_remove("SPARTAKUS_TESTENV_CLEANUP");
    cmd
}

/// How often readiness probes run. Probing is a poll on a condition, never a fixed sleep.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How many lines of a server's log an error or a death report quotes.
pub(crate) const TAIL_LINES: usize = 30;

/// A running server process (through its watchdog).
#[derive(Debug)]
pub(crate) struct Process {
    name: &'static str,
    // Behind a lock so that a shared handle (e.g. a `static` one) can ask whether it died.
    child: Mutex<Child>,
    control: Option<ChildStdin>,
    log: PathBuf,
    // Open for reading from the start: a watchdog's cleanup removes the file with its folder once
    // the server is dead, which is exactly when its end is wanted.
    log_file: Option<File>,
    /// Whether dropping the process while it is dead unasked panics (see [`Process::arm`]).
    armed: bool,
    /// Set by [`Process::kill`] and [`Process::stop`]: the end was asked for.
    deliberate: bool,
    /// Set once [`Process::died`] has handed the death out as an error: not reported twice.
    reported: AtomicBool,
}

impl Process {
    /// As [`Process::spawn`], with environment variables set (`Some`) or removed (`None`).
    pub(crate) fn spawn_with_env(
        name: &'static str,
        bin: &Path,
        args: &[OsString],
        env: &[(OsString, Option<OsString>)],
        log: &Path,
    ) -> Result<Self, Error> {
        Self::spawn_inner(name, bin, args, env, log, None)
    }

    /// Spawns `bin args…`, appending stdout and stderr to `log`. With `cleanup`, the watchdog
    /// removes that folder after the server has died (for servers whose owner never drops).
    pub(crate) fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[OsString],
        log: &Path,
        cleanup: Option<&Path>,
    ) -> Result<Self, Error> {
        Self::spawn_inner(name, bin, args, &[], log, cleanup)
    }

    fn spawn_inner(
        name: &'static str,
        bin: &Path,
        args: &[OsString],
        env: &[(OsString, Option<OsString>)],
        log: &Path,
        cleanup: Option<&Path>,
    ) -> Result<Self, Error> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io("duplicating a log file handle", e))?;
        let mut cmd = watched(bin);
        cmd.args(args).stdout(out).stderr(err);
        apply_env(&mut cmd, env);
        if let Some(dir) = cleanup {
            cmd.env("SPARTAKUS_TESTENV_CLEANUP", dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawning {name}"), e))?;
        let control = child.stdin.take();
        Ok(Self {
            name,
            child: Mutex::new(child),
            control,
            log: log.to_owned(),
            log_file: File::open(log).ok(),
            armed: false,
            deliberate: false,
            reported: AtomicBool::new(false),
        })
    }

    /// From now on, dropping the process while it is dead, without [`Process::kill`] or
    /// [`Process::stop`] and without [`Process::died`] having reported it, panics with the
    /// death's report (or prints it, if the thread is already panicking). Called once the
    /// server is ready and its handle goes to a test: a failed start is reported by its `Result`.
    pub(crate) fn arm(&mut self) {
        self.armed = true;
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        // A panic while the lock was held cannot leave a `Child` half-updated: use it anyway.
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exit status, if the server has exited.
    pub(crate) fn exited(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// If the server has exited without being killed or stopped through this handle: the error
    /// that says so, with its exit status and the end of its log. The death counts as reported:
    /// dropping the process no longer panics for it.
    pub(crate) fn died(&self) -> Option<Error> {
        if self.deliberate {
            return None;
        }
        let status = self.exited()?;
        self.reported.store(true, Ordering::Relaxed);
        Some(Error::Died {
            server: self.name,
            status,
            log: self.log.clone(),
            tail: self.log_tail(TAIL_LINES),
        })
    }

    /// The program's process id: the watchdog's child that is not the watchdog's own `sh`.
    pub(crate) fn program_pid(&self) -> Result<u32, Error> {
        let sh = self.child().id();
        let path = format!("/proc/{sh}/task/{sh}/children");
        let children =
            std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {path}"), e))?;
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() != "sh")
            })
            .ok_or_else(|| {
                Error::io(
                    format!("finding {}'s process under its watchdog", self.name),
                    std::io::Error::other("not running"),
                )
            })
    }

    /// Sends a signal (by name, e.g. `TERM`) to the server.
    pub(crate) fn signal(&mut self, sig: &str) {
        if let Some(control) = self.control.as_mut() {
            // The watchdog is gone only if the server already exited: nothing left to signal.
            let _ = writeln!(control, "{sig}");
        }
    }

    /// SIGKILL, then waits until the server is gone.
    pub(crate) fn kill(&mut self) {
        self.deliberate = true;
        self.signal("KILL");
        // Closing the pipe makes the watchdog send SIGKILL even if the write above was lost.
        self.control = None;
        let _ = self.child().wait();
    }

    /// SIGTERM, waits up to `grace` for the server to exit, then SIGKILL.
    pub(crate) async fn stop(&mut self, grace: Duration) {
        self.deliberate = true;
        self.signal("TERM");
        let deadline = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        self.kill();
    }

    /// The last `lines` lines of the server's log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        match &self.log_file {
            Some(file) => tail_of(file, lines),
            None => log_tail(&self.log, lines),
        }
    }

    /// Polls `probe` until it succeeds, the server exits, or `timeout` passes. The error carries
    /// the last probe failure and the tail of the server's log.
    pub(crate) async fn wait_until<F, Fut>(
        &mut self,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(Error::Exited {
                    server: self.name,
                    status,
                    log: self.log.clone(),
                    tail: self.log_tail(TAIL_LINES),
                });
            }
            let reason = match probe().await {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if start.elapsed() >= timeout {
                return Err(Error::NotReady {
                    server: self.name,
                    secs: timeout.as_secs(),
                    reason,
                    log: self.log.clone(),
                    tail: self.log_tail(TAIL_LINES),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let unreported = self.armed && !self.reported.load(Ordering::Relaxed);
        let death = if unreported { self.died() } else { None };
        self.kill();
        if let Some(death) = death {
            // A second panic while unwinding would abort the test binary and lose both messages.
            if std::thread::panicking() {
                eprintln!("testenv: {death}");
            } else {
                panic!("testenv: {death}");
            }
        }
    }
}

/// How a watchdog's exit status reads: it exits with the server's code, or 128 + the signal
/// that killed the server, as shells do.
pub(crate) fn describe(status: &ExitStatus) -> String {
    let signal = |n: i32| {
        let name = match n {
            1 => " (SIGHUP)",
            2 => " (SIGINT)",
            6 => " (SIGABRT)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        format!("killed by signal {n}{name}")
    };
    match (status.code(), status.signal()) {
        (Some(code), _) if (129..=192).contains(&code) => {
            format!("exit status {code}: {}", signal(code - 128))
        }
        (_, Some(n)) => format!("its watchdog was {}", signal(n)),
        _ => status.to_string(),
    }
}

/// The last `lines` lines of a log file (reads at most its last 64 KiB).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match File::open(path) {
        Ok(file) => tail_of(&file, lines),
        Err(_) => String::from("(no log)"),
    }
}

/// The last `lines` lines of an open log file (reads at most its last 64 KiB). Positioned reads:
/// the file may be shared, and its length grows while the server writes.
fn tail_of(file: &File, lines: usize) -> String {
    const MAX: u64 = 64 * 1024;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(MAX);
    let mut buf = vec![0; usize::try_from(len - start).unwrap_or(0)];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], start + filled as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    buf.truncate(filled);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `n` distinct free loopback ports. They are free when this returns; another process may take
/// one before the server binds it, so callers retry a start whose server exits early.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    // All listeners stay open until every port is chosen, so the ports differ from each other.
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::io("binding 127.0.0.1:0", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::io("reading a local address", e))
}

/// How many times a start is tried when its server exits early (e.g. a port was taken).
pub(crate) const START_ATTEMPTS: usize = 3;

/// A GET that must answer 2xx; the body on success, a reason on failure.
pub(crate) async fn http_get(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let resp = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("GET {url}: {status}: {}", body.trim()))
    }
}

/// Sets (`Some`) or removes (`None`) environment variables of `cmd`.
pub(crate) fn apply_env(cmd: &mut Command, env: &[(OsString, Option<OsString>)]) {
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
}
