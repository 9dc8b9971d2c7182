//! A container's root filesystem: the image's snapshots stacked read-only under the container's
//! own upper directory with overlayfs, mounted at `containers/<id>/rootfs`. The upper directory
//! *is* the container's change set (`diff`, `commit`), so it outlives the mount: a stopped
//! container keeps its changes and is mounted again when it starts.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use berth_store::mount::is_mount_point;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::error::{IoContext, Result, RunnerError};

/// Whether the upper directory must survive a crash of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The kernel syncs the upper filesystem when the overlay is unmounted (what Docker does
    /// for every container).
    Synced,
    /// overlayfs `volatile` (Linux 5.10+): no sync at unmount, for an upper directory that is
    /// thrown away with its container (`--rm`). On a loaded host that sync of the whole upper
    /// filesystem took 10–300 ms of every `run --rm`.
    Volatile,
}

/// The marker overlayfs leaves in the work directory of a volatile mount; while it exists the
/// kernel refuses to mount that upper/work pair again.
fn volatile_marker(work: &Path) -> PathBuf {
    work.join("work").join("incompat").join("volatile")
}

/// Mount `lowers` (bottom layer first) + `upper`/`work` at `target`; idempotent.
pub fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    mount_overlay_with(lowers, upper, work, target, Durability::Synced)
}

/// [`mount_overlay`] with a choice of [`Durability`].
pub fn mount_overlay_with(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    durability: Durability,
) -> Result<()> {
    if is_mount_point(target) {
        return Ok(());
    }
    if volatile_marker(work).exists() {
        // A volatile mount was not cleanly unmounted (a crash): the work directory is scratch
        // space, so it is emptied; the upper directory is kept as it is.
        fs::remove_dir_all(work).ctx("clearing", work)?;
    }
    fs::create_dir_all(upper).ctx("creating", upper)?;
    fs::create_dir_all(work).ctx("creating", work)?;
    fs::create_dir_all(target).ctx("creating", target)?;
    let escape = |p: &Path| {
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace(':', "\\:")
            .replace(',', "\\,")
    };
    let empty;
    let lowers: Vec<String> = if lowers.is_empty() {
        // overlayfs needs a lower directory; an image without layers (FROM scratch) has none.
        empty = upper.with_file_name("empty");
        fs::create_dir_all(&empty).ctx("creating", &empty)?;
        vec![escape(&empty)]
    } else {
        // overlayfs lists the topmost lower directory first.
        lowers.iter().rev().map(|p| escape(p)).collect()
    };
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        escape(upper),
        escape(work)
    );
    if durability == Durability::Volatile {
        data.push_str(",volatile");
    }
    if data.len() >= 4096 {
        return Err(RunnerError::Unsupported(format!(
            "the image has {} layers, more than one overlay mount can stack here",
            lowers.len()
        )));
    }
    let cdata = CString::new(data.as_str())
        .map_err(|_| RunnerError::invalid("layer path", "contains a NUL byte"))?;
    let mut mounted = rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(cdata.as_c_str()),
    );
    if durability == Durability::Volatile && mounted == Err(rustix::io::Errno::INVAL) {
        // A kernel older than 5.10 does not know `volatile`: mount as usual.
        let plain = CString::new(data.trim_end_matches(",volatile"))
            .map_err(|_| RunnerError::invalid("layer path", "contains a NUL byte"))?;
        mounted = rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            MountFlags::empty(),
            Some(plain.as_c_str()),
        );
    }
    mounted.map_err(|e| {
        RunnerError::io(
            "mounting the container's root filesystem at",
            target,
            e.into(),
        )
    })?;
    // Private, so the mount does not propagate into the container's or anyone else's namespace.
    let _ = rustix::mount::mount_change(target, MountPropagationFlags::PRIVATE);
    Ok(())
}

/// Unmount whatever is mounted at `target` (lazily when busy); `Ok(false)` when nothing was.
pub fn unmount(target: &Path) -> Result<bool> {
    if !is_mount_point(target) {
        return Ok(false);
    }
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(target, UnmountFlags::DETACH)
                .map_err(|e| RunnerError::io("unmounting", target, e.into()))?;
            Ok(true)
        }
        Err(e) => Err(RunnerError::io("unmounting", target, e.into())),
    }
}

/// Unmount every mount at or below `dir` (deepest first): volumes and binds a runtime left behind.
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = berth_store::mount::mount_points()
        .into_iter()
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.dedup();
    for m in mounts {
        let p = PathBuf::from(&m);
        if let Err(e) = rustix::mount::unmount(&p, UnmountFlags::DETACH)
            && e != rustix::io::Errno::INVAL
        {
            return Err(RunnerError::io("unmounting", p, e.into()));
        }
    }
    Ok(())
}
