//! The little the runner itself asks of cgroups (the runtime creates and fills them): which
//! hierarchy the host has, whether the kernel OOM-killed something in a container's cgroup, and
//! removing a cgroup a crashed runtime left behind. Works on cgroup v1, hybrid and v2 hosts.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Whether the host uses the unified (v2) hierarchy at /sys/fs/cgroup.
pub fn is_v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// Where a container's cgroup is, relative to each hierarchy's root.
pub fn path_for(id: &str) -> String {
    format!("/berth/{id}")
}

/// Every directory the cgroup `rel` has (one per v1 controller, or one on v2).
pub fn dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if is_v2() {
        return vec![Path::new(ROOT).join(rel)];
    }
    let Ok(rd) = fs::read_dir(ROOT) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .map(|e| e.path().join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// The kernel's OOM-kill count for the cgroup (v2 `memory.events`, v1 `memory.oom_control`).
pub fn oom_kills(rel: &str) -> u64 {
    let rel = rel.trim_start_matches('/');
    let candidates = [
        Path::new(ROOT).join(rel).join("memory.events"),
        Path::new(ROOT)
            .join("memory")
            .join(rel)
            .join("memory.oom_control"),
    ];
    for f in candidates {
        if let Ok(text) = fs::read_to_string(&f) {
            for line in text.lines() {
                if let Some(n) = line.strip_prefix("oom_kill ") {
                    return n.trim().parse().unwrap_or(0);
                }
            }
        }
    }
    0
}

/// Remove the cgroup `rel` everywhere it exists (empty cgroups only: the kernel refuses others).
pub fn remove(rel: &str) {
    for d in dirs(rel) {
        // Children first (a runtime may have made sub-cgroups for exec).
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.path().is_dir() {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        let _ = fs::remove_dir(&d);
    }
}

/// Freeze (`true`) or thaw the cgroup `rel` and wait until the kernel reports it done: v2
/// `cgroup.freeze` / `cgroup.events`, v1 the freezer controller's `freezer.state`.
pub fn freeze(rel: &str, frozen: bool) -> std::io::Result<()> {
    let rel = rel.trim_start_matches('/');
    let v2 = is_v2();
    let (file, value, done_file, done): (PathBuf, &str, PathBuf, &str) = if v2 {
        let d = Path::new(ROOT).join(rel);
        (
            d.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
            d.join("cgroup.events"),
            if frozen { "frozen 1" } else { "frozen 0" },
        )
    } else {
        let d = Path::new(ROOT).join("freezer").join(rel);
        let state = if frozen { "FROZEN" } else { "THAWED" };
        (
            d.join("freezer.state"),
            state,
            d.join("freezer.state"),
            state,
        )
    };
    fs::write(&file, value)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = fs::read_to_string(&done_file)?;
        if now.lines().any(|l| l.trim() == done) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "the cgroup did not reach {done:?} within 10 s"
            )));
        }
        if !v2 {
            // v1 retries the transition on each write.
            let _ = fs::write(&file, value);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
