//! A cgroup v1 memory limit for a child process: the limit a Kubernetes pod's container runs
//! under, so that a test can see whether a process would be OOM-killed in its pod, and how much
//! memory it charged at its peak.
//!
//! The group is created at the root of the memory hierarchy (`/sys/fs/cgroup/memory`, which
//! needs root), named after this process, and removed on drop. A child joins it before it runs
//! any of its own code: it is started through `sh`, which writes its own pid to `cgroup.procs`
//! and then `exec`s the program (the workspace forbids `unsafe`, so no `pre_exec` hook). Its
//! children inherit the group.
//!
//! The figures are the kernel's: `memory.max_usage_in_bytes` counts the resident memory and the
//! page cache the group charged (as a pod's limit does), `memory.failcnt` how often a charge hit
//! the limit (reclaim then made room, or the OOM killer did), and `memory.oom_control`'s
//! `oom_kill` the processes the OOM killer killed in the group.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Error;

/// Where the cgroup v1 memory controller is mounted.
const MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

/// The prefix of every group this crate creates; the rest is the owner's pid and a sequence.
const PREFIX: &str = "spartakus-testenv-";

/// Run by `sh -c`: `$0` is the group's `cgroup.procs`, the rest the program and its arguments.
/// How long dropping a group waits for the last processes in it to be gone.
const REMOVE_WAIT: Duration = Duration::from_secs(5);

/// Run by `sh -c`: `$0` is the group's `cgroup.procs`, the rest the program and its arguments.
const JOIN: &str = r#"echo $$ > "$0" && exec "$@""#;

/// A memory cgroup with a limit, removed on drop (once the processes in it are gone).
#[derive(Debug)]
pub struct MemoryCgroup {
    path: PathBuf,
    limit: u64,
}

/// What the kernel counted for a [`MemoryCgroup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// The limit, in bytes.
    pub limit: u64,
    /// Memory charged now (resident memory and page cache), in bytes.
    pub current: u64,
    /// The most ever charged at once (`memory.max_usage_in_bytes`), in bytes.
    pub peak: u64,
    /// Resident anonymous memory now (`rss` in `memory.stat`), in bytes.
    pub rss: u64,
    /// Page cache now (`cache` in `memory.stat`), in bytes.
    pub cache: u64,
    /// How often a charge hit the limit (`memory.failcnt`).
    pub failcnt: u64,
    /// Processes the OOM killer killed in the group.
    pub oom_kills: u64,
    /// Whether the group is out of memory right now (its processes are stalled).
    pub under_oom: bool,
}

impl MemoryCgroup {
    /// Creates a group limited to `limit` bytes of memory (and as much memory plus swap, where
    /// swap is accounted, so that nothing is swapped out instead). Fails when the cgroup v1
    /// memory controller is not mounted or not writable (it needs root).
    pub fn create(limit: u64) -> Result<Self, Error> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let root = Path::new(MEMORY_ROOT);
        if !root.join("memory.limit_in_bytes").is_file() {
            return Err(Error::io(
                format!("using the cgroup v1 memory controller at {MEMORY_ROOT}"),
                std::io::Error::other("not mounted"),
            ));
        }
        remove_abandoned(root);
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("{PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| {
            Error::io(
                format!("creating the cgroup {} (needs root)", path.display()),
                e,
            )
        })?;
        let group = MemoryCgroup { path, limit };
        group.write("memory.limit_in_bytes", limit)?;
        if group.path.join("memory.memsw.limit_in_bytes").is_file() {
            group.write("memory.memsw.limit_in_bytes", limit)?;
        }
        Ok(group)
    }

    /// Its folder in the cgroup filesystem.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Moves a running process into the group. Memory it charged before stays charged where it
    /// was: start a program through [`MemoryCgroup::command`] to count all of it.
    pub fn add(&self, pid: u32) -> Result<(), Error> {
        self.write("cgroup.procs", pid)
    }

    /// A `Command` that runs `bin` inside the group from its first instruction: add arguments,
    /// environment and output as usual.
    pub fn command(&self, bin: impl AsRef<Path>) -> Command {
        let (sh, args) = self.wrap(bin.as_ref(), &[]);
        let mut cmd = Command::new(sh);
        cmd.args(args);
        cmd
    }

    /// The program and arguments that run `bin args…` inside the group: `sh`, joining the group,
    /// then `exec`ing the program (whose pid, name and signals are then the program's own).
    pub(crate) fn wrap(&self, bin: &Path, args: &[OsString]) -> (PathBuf, Vec<OsString>) {
        let mut wrapped: Vec<OsString> = vec![
            "-c".into(),
            JOIN.into(),
            self.path.join("cgroup.procs").into(),
            bin.into(),
        ];
        wrapped.extend(args.iter().cloned());
        (PathBuf::from("sh"), wrapped)
    }

    /// The pids in the group now.
    pub fn pids(&self) -> Result<Vec<u32>, Error> {
        Ok(self
            .read("cgroup.procs")?
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// What the kernel counted so far.
    pub fn usage(&self) -> Result<MemoryUsage, Error> {
        let number = |file: &str| -> Result<u64, Error> {
            let text = self.read(file)?;
            text.trim().parse().map_err(|_| {
                Error::io(
                    format!("parsing {}", self.path.join(file).display()),
                    std::io::Error::other(format!("not a number: {text:?}")),
                )
            })
        };
        let stat = self.read("memory.stat")?;
        let oom = self.read("memory.oom_control")?;
        Ok(MemoryUsage {
            limit: self.limit,
            current: number("memory.usage_in_bytes")?,
            peak: number("memory.max_usage_in_bytes")?,
            failcnt: number("memory.failcnt")?,
            rss: field(&stat, "rss").unwrap_or(0),
            cache: field(&stat, "cache").unwrap_or(0),
            // Kernels before 4.13 do not count kills; none is then what can be known.
            oom_kills: field(&oom, "oom_kill").unwrap_or(0),
            under_oom: field(&oom, "under_oom") == Some(1),
        })
    }

    fn read(&self, file: &str) -> Result<String, Error> {
        let path = self.path.join(file);
        std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))
    }

    fn write(&self, file: &str, value: impl std::fmt::Display) -> Result<(), Error> {
        let path = self.path.join(file);
        std::fs::write(&path, value.to_string())
            .map_err(|e| Error::io(format!("writing {value} to {}", path.display()), e))
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // A group is removed once no process is in it. Its processes' own children may still be
        // dying (killed by their watchdogs when their parent died): wait a little for them. One
        // still running after that (its owner's handle outlived this one) leaves the group
        // behind, and the next group created after that process died removes it.
        let deadline = std::time::Instant::now() + REMOVE_WAIT;
        while std::fs::remove_dir(&self.path).is_err()
            && self.path.exists()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `key value` line's value in a cgroup file such as `memory.stat`.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Removes the groups left by test processes that died without dropping them (e.g. killed),
/// once nothing runs in them.
fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(owner).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_by_their_whole_key() {
        let oom = "oom_kill_disable 0\nunder_oom 1\noom_kill 2\n";
        assert_eq!(field(oom, "oom_kill"), Some(2));
        assert_eq!(field(oom, "under_oom"), Some(1));
        assert_eq!(field(oom, "oom"), None);
        let stat = "cache 4096\nrss 8192\nrss_huge 0\ntotal_rss 8192\n";
        assert_eq!(field(stat, "rss"), Some(8192));
        assert_eq!(field(stat, "cache"), Some(4096));
    }
}
