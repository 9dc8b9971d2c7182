//! The little the runner itself asks of cgroups (the runtime creates them and writes the limits):
//! which hierarchy the host has, the processes in a container's cgroup (`top`), the limits the
//! runtime applied, whether the kernel OOM-killed something, freezing (`pause`), and removing a
//! cgroup a crashed runtime left behind. Every operation has a cgroup v2 (unified) and a v1
//! (one hierarchy per controller, as on hybrid hosts) form; which one is decided by the root:
//! a unified root has `cgroup.controllers` at its top. The free functions work on the host's
//! `/sys/fs/cgroup`; [`Cgroups::at`] points the same code at another root (a test's fake tree,
//! or a private cgroup2 mount).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";

/// A cgroup filesystem root and its layout.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    v2: bool,
    /// How long [`Cgroups::freeze`] waits for the kernel to report the transition.
    freeze_timeout: Duration,
}

/// The resource limits a cgroup holds (`None`: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes (v2 `memory.max`, v1 `memory.limit_in_bytes`).
    pub memory: Option<u64>,
    /// CPU time per period in microseconds, and the period (v2 `cpu.max`, v1
    /// `cpu.cfs_quota_us`/`cpu.cfs_period_us`).
    pub cpu_quota: Option<(u64, u64)>,
    /// Tasks (`pids.max`, both versions).
    pub pids: Option<u64>,
}

impl Cgroups {
    /// The host's cgroup filesystem.
    pub fn host() -> Cgroups {
        Cgroups::at(ROOT)
    }

    /// The cgroup filesystem mounted at `root` (its layout read from what is there).
    pub fn at(root: impl Into<PathBuf>) -> Cgroups {
        let root = root.into();
        let v2 = root.join("cgroup.controllers").exists();
        Cgroups {
            root,
            v2,
            freeze_timeout: Duration::from_secs(10),
        }
    }

    /// The same root with another wait for freeze transitions.
    pub fn with_freeze_timeout(mut self, t: Duration) -> Cgroups {
        self.freeze_timeout = t;
        self
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// The directory of controller `ctrl` for the cgroup `rel` (v1), or of the cgroup (v2).
    fn dir(&self, ctrl: &str, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        if self.v2 {
            self.root.join(rel)
        } else {
            self.root.join(ctrl).join(rel)
        }
    }

    /// Every directory the cgroup `rel` has (one per v1 controller, or one on v2).
    pub fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        let rel = rel.trim_start_matches('/');
        if self.v2 {
            let d = self.root.join(rel);
            return if d.is_dir() { vec![d] } else { Vec::new() };
        }
        let Ok(rd) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            // `cpu,cpuacct` style directories have `cpu` and `cpuacct` symlinks beside them.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path().join(rel))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// The processes in the cgroup `rel` and its descendants (`cgroup.procs`), as the host
    /// sees their PIDs.
    pub fn pids(&self, rel: &str) -> BTreeSet<i32> {
        fn walk(dir: &Path, out: &mut BTreeSet<i32>) {
            if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path(), out);
                    }
                }
            }
        }
        let mut out = BTreeSet::new();
        for d in self.dirs(rel) {
            walk(&d, &mut out);
        }
        out
    }

    /// The kernel's OOM-kill count for the cgroup (v2 `memory.events`, v1
    /// `memory.oom_control`; both carry an `oom_kill N` line).
    pub fn oom_kills(&self, rel: &str) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let Ok(text) = fs::read_to_string(self.dir("memory", rel).join(file)) else {
            return 0;
        };
        key_value(&text, "oom_kill").unwrap_or(0)
    }

    /// The limits the runtime wrote into the cgroup `rel`.
    pub fn limits(&self, rel: &str) -> Limits {
        let read = |ctrl: &str, file: &str| {
            fs::read_to_string(self.dir(ctrl, rel).join(file))
                .ok()
                .map(|s| s.trim().to_string())
        };
        // "max" (v2) or a huge page-rounded number (v1's "unlimited") mean no limit.
        let number = |s: Option<String>| -> Option<u64> {
            s.and_then(|s| s.parse::<u64>().ok())
                .filter(|&n| n < (i64::MAX as u64) & !4095)
        };
        if self.v2 {
            let cpu_quota = read("cpu", "cpu.max").and_then(|s| {
                let mut f = s.split_whitespace();
                let quota = f.next()?.parse::<u64>().ok()?;
                let period = f.next().map_or(Some(100_000), |p| p.parse::<u64>().ok())?;
                Some((quota, period))
            });
            Limits {
                memory: number(read("memory", "memory.max")),
                cpu_quota,
                pids: number(read("pids", "pids.max")),
            }
        } else {
            let quota = read("cpu", "cpu.cfs_quota_us").and_then(|s| s.parse::<i64>().ok());
            let period = read("cpu", "cpu.cfs_period_us").and_then(|s| s.parse::<u64>().ok());
            Limits {
                memory: number(read("memory", "memory.limit_in_bytes")),
                cpu_quota: match (quota, period) {
                    (Some(q), Some(p)) if q > 0 => Some((q as u64, p)),
                    _ => None,
                },
                pids: number(read("pids", "pids.max")),
            }
        }
    }

    /// Remove the cgroup `rel` everywhere it exists, its descendants first (a runtime may have
    /// made sub-cgroups for exec). Only empty cgroups go: the kernel refuses the others.
    pub fn remove(&self, rel: &str) {
        fn remove_tree(dir: &Path) {
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove_tree(&e.path());
                    }
                }
            }
            let _ = fs::remove_dir(dir);
        }
        for d in self.dirs(rel) {
            remove_tree(&d);
        }
    }

    /// Freeze (`true`) or thaw the cgroup `rel` and wait until the kernel reports it done: v2
    /// `cgroup.freeze` / `frozen` in `cgroup.events`, v1 the freezer controller's
    /// `freezer.state`.
    pub fn freeze(&self, rel: &str, frozen: bool) -> std::io::Result<()> {
        let (file, value, done_file, done): (PathBuf, &str, PathBuf, &str) = if self.v2 {
            let d = self.dir("", rel);
            (
                d.join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
                d.join("cgroup.events"),
                if frozen { "frozen 1" } else { "frozen 0" },
            )
        } else {
            let d = self.dir("freezer", rel);
            let state = if frozen { "FROZEN" } else { "THAWED" };
            (
                d.join("freezer.state"),
                state,
                d.join("freezer.state"),
                state,
            )
        };
        fs::write(&file, value)?;
        let deadline = Instant::now() + self.freeze_timeout;
        loop {
            let now = fs::read_to_string(&done_file)?;
            if now.lines().any(|l| l.trim() == done) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "the cgroup did not reach {done:?} within {:?}",
                    self.freeze_timeout
                )));
            }
            if !self.v2 {
                // v1 retries the transition on each write.
                let _ = fs::write(&file, value);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// An early start of the kernel's wait for the container's cgroup migration.
///
/// Moving a process into a cgroup (a write to `cgroup.procs`, v1 or v2) takes the kernel's
/// global `cgroup_threadgroup_rwsem` for writing, and the first writer after a quiet spell waits
/// for an RCU grace period (`rcu_sync_enter`: 4–20 ms measured on the 2-core bench VM); writers
/// that come while that grace period runs share it, and those within a grace period after the
/// last writer left do not wait at all. The runtime's intermediate process joins the
/// container's cgroups on the critical path of every start (crun and runc alike), so it pays
/// that wait in full. [`MigrationPrimer::start`] begins it sooner: a thread writes `0` (itself)
/// into the `cgroup.procs` of the cgroup this process is already in, a migration that moves
/// nothing but takes the lock, so the grace period elapses while the bundle is prepared.
/// [`MigrationPrimer::finish`] joins the thread before the sandbox forks (which needs a
/// single-threaded process). The container's cgroups and what joins them are unchanged.
pub struct MigrationPrimer(Option<std::thread::JoinHandle<()>>);

impl MigrationPrimer {
    /// Start the no-op migration on its own thread (nothing if this process's cgroup cannot be
    /// found: the runtime then simply waits as before).
    pub fn start() -> MigrationPrimer {
        MigrationPrimer(own_procs_file().and_then(|file| {
            std::thread::Builder::new()
                .name("cgroup-primer".into())
                .spawn(move || {
                    // Failure only loses the head start.
                    let _ = fs::write(&file, "0");
                })
                .ok()
        }))
    }

    /// Wait for the primer's thread (at most the grace period the runtime would wait for);
    /// dropping the primer does the same, so no path leaves the thread running by accident.
    pub fn finish(self) {}

    /// Let the thread finish on its own: for a caller that hands the start to another process
    /// (which primes again; a grace period already running is shared, not waited for twice).
    pub fn detach(mut self) {
        // Dropping a JoinHandle detaches its thread.
        drop(self.0.take());
    }
}

impl Drop for MigrationPrimer {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

/// The `cgroup.procs` of the cgroup this process is in, in the first hierarchy of
/// `/proc/self/cgroup` that is mounted under /sys/fs/cgroup.
fn own_procs_file() -> Option<PathBuf> {
    own_procs_file_in(
        Path::new(ROOT),
        &fs::read_to_string("/proc/self/cgroup").ok()?,
    )
}

fn own_procs_file_in(root: &Path, self_cgroup: &str) -> Option<PathBuf> {
    let v2 = root.join("cgroup.controllers").exists();
    self_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let path = path.trim_start_matches('/');
        let dir = match (v2, ctrls) {
            (true, "") => root.join(path),
            (false, "") | (true, _) => return None,
            (false, c) => root.join(c.strip_prefix("name=").unwrap_or(c)).join(path),
        };
        let file = dir.join("cgroup.procs");
        file.exists().then_some(file)
    })
}

/// The number after `key ` on one of the lines of a flat-keyed cgroup file.
fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether the host uses the unified (v2) hierarchy at /sys/fs/cgroup.
pub fn is_v2() -> bool {
    Cgroups::host().is_v2()
}

/// Where a container's cgroup is, relative to each hierarchy's root.
pub fn path_for(id: &str) -> String {
    format!("/berth/{id}")
}

/// Every directory the cgroup `rel` has on the host ([`Cgroups::dirs`]).
pub fn dirs(rel: &str) -> Vec<PathBuf> {
    Cgroups::host().dirs(rel)
}

/// The host's OOM-kill count for the cgroup ([`Cgroups::oom_kills`]).
pub fn oom_kills(rel: &str) -> u64 {
    Cgroups::host().oom_kills(rel)
}

/// Remove the cgroup `rel` from the host ([`Cgroups::remove`]).
pub fn remove(rel: &str) {
    Cgroups::host().remove(rel)
}

/// Freeze or thaw the cgroup `rel` on the host ([`Cgroups::freeze`]).
pub fn freeze(rel: &str, frozen: bool) -> std::io::Result<()> {
    Cgroups::host().freeze(rel, frozen)
}

#[cfg(test)]
#[path = "cgroups_tests.rs"]
mod tests;
