//! A container's filesystem as one open directory, for `cp` and `export`, without touching its
//! mounts: a running container is reached through `/proc/PID/root` (its own mount namespace,
//! volumes and binds included); otherwise the image's snapshots and the upper directory are
//! mounted as a *detached* overlay (`fsopen`/`fsmount`): no mount point, invisible to everyone
//! else, gone when the descriptor is closed, so a crash can leak nothing.
//!
//! Paths are resolved with `openat2(RESOLVE_IN_ROOT)`: symlinks and `..` inside the container
//! stay inside it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::container::{Container, Runner};
use crate::error::{Result, RunnerError};
use crate::process::process_alive;
use crate::state::Status;

/// What the view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The image plus the container's changes, read-only, without volumes (`export`).
    Layers,
    /// What the container sees (`cp` from it).
    Read,
    /// What the container sees, writable (`cp` into it).
    Write,
}

pub struct ContainerFs {
    root: OwnedFd,
}

impl ContainerFs {
    pub fn open(runner: &Runner, c: &Container, view: View) -> Result<ContainerFs> {
        let running = c.state.status == Status::Running
            && process_alive(c.state.pid, c.state.internal.pid_start);
        if running && view != View::Layers {
            let path = format!("/proc/{}/root", c.state.pid);
            let root = rustix::fs::open(
                &path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| {
                RunnerError::io("opening the container's filesystem at", path, e.into())
            })?;
            return Ok(ContainerFs { root });
        }
        let store = runner.store();
        let img = store.resolve_image(&c.record.image)?;
        let lowers = store.ensure_snapshots(&img)?;
        let upper = c.paths.upper();
        let root = if view == View::Write {
            let mut lowers = lowers;
            if lowers.is_empty() {
                // overlayfs needs a lower directory; an image without layers has none.
                let empty = c.paths.dir.join("empty");
                std::fs::create_dir_all(&empty)
                    .map_err(|e| RunnerError::io("creating", &empty, e))?;
                lowers.push(empty);
            }
            overlay(&lowers, Some((&upper, &c.paths.work())))?
        } else {
            let mut stack = lowers.clone();
            stack.push(upper);
            overlay(&stack, None)?
        };
        if view != View::Layers {
            attach_mounts(&root, c, view)?;
        }
        Ok(ContainerFs { root })
    }

    pub fn root(&self) -> std::os::fd::BorrowedFd<'_> {
        self.root.as_fd()
    }
}

/// A stopped container's volumes and bind mounts, attached to its detached overlay so `cp` sees
/// (and writes into) them as the container would. Each mount point is resolved inside the
/// container first (`RESOLVE_IN_ROOT`), so a symlink there cannot aim a mount at the host; a
/// mount point that does not exist yet (never started) is left out.
/// Read-only mounts are left out of a writable view (nothing may write through them; `cp`
/// refuses such destinations by path first, as Docker does).
fn attach_mounts(root: &OwnedFd, c: &Container, view: View) -> Result<()> {
    use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};
    let mut mounts: Vec<&crate::state::MountPoint> = c
        .record
        .mounts
        .iter()
        .filter(|m| matches!(m.kind.as_str(), "bind" | "volume") && !m.source.is_empty())
        .filter(|m| view != View::Write || m.rw)
        .collect();
    // Parents before children.
    mounts.sort_by_key(|m| m.destination.matches('/').count());
    let tree = Tree {
        root: root.as_fd(),
        contained: true,
    };
    for m in mounts {
        let dest = m.destination.trim_start_matches('/');
        let Ok(target) = tree.open(dest, OFlags::PATH) else {
            continue;
        };
        let fail = |e: rustix::io::Errno| {
            RunnerError::io(
                "attaching the volume at",
                m.destination.clone(),
                std::io::Error::from(e),
            )
        };
        let src = open_tree(
            rustix::fs::CWD,
            m.source.as_str(),
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(fail)?;
        match move_mount(
            src.as_fd(),
            "",
            target.as_fd(),
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        ) {
            Ok(()) => {}
            // Kernels before 6.15 cannot mount onto a detached tree: the volume is left out.
            Err(rustix::io::Errno::INVAL) => {
                tracing::warn!(
                    "this kernel cannot attach {} to a stopped container's view; cp sees the image there",
                    m.destination
                );
            }
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(())
}

fn escape(p: &std::path::Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
}

/// A detached overlay of `lowers` (bottom first), writable through `upper` when given.
fn overlay(lowers: &[PathBuf], upper: Option<(&PathBuf, &PathBuf)>) -> Result<OwnedFd> {
    let fail = |what: &'static str, e: rustix::io::Errno| {
        RunnerError::io(what, "the container's filesystem", e.into())
    };
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| fail("opening an overlay for", e))?;
    let stack: Vec<String> = lowers.iter().rev().map(|p| escape(p)).collect();
    let set = |k: &str, v: &str| {
        rustix::mount::fsconfig_set_string(&fs, k, v).map_err(|e| fail("configuring", e))
    };
    // One `lowerdir+` per layer, top first (Linux 6.8+): this kernel refuses a joined
    // `lowerdir` of three or more layers through fsconfig. Older kernels take the joined form.
    for (i, p) in lowers.iter().rev().enumerate() {
        match rustix::mount::fsconfig_set_string(&fs, "lowerdir+", p.as_path()) {
            Ok(()) => {}
            // A kernel without `lowerdir+` refuses the first one.
            Err(rustix::io::Errno::INVAL) if i == 0 => {
                set("lowerdir", &stack.join(":"))?;
                break;
            }
            Err(e) => return Err(fail("configuring", e)),
        }
    }
    if let Some((upper, work)) = upper {
        std::fs::create_dir_all(work).map_err(|e| RunnerError::io("creating", work, e))?;
        set("upperdir", &upper.to_string_lossy())?;
        set("workdir", &work.to_string_lossy())?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(|e| fail("mounting", e))?;
    let flags = if upper.is_some() {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    };
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, flags)
        .map_err(|e| fail("mounting", e))
}

/// Resolution inside a tree: `openat2` with `RESOLVE_IN_ROOT` for a container, plain lookups
/// for the host.
#[derive(Clone, Copy)]
pub struct Tree<'a> {
    pub root: std::os::fd::BorrowedFd<'a>,
    pub contained: bool,
}

impl Tree<'_> {
    pub fn host() -> Tree<'static> {
        Tree {
            root: rustix::fs::CWD,
            contained: false,
        }
    }

    /// Open `path` (relative to the root, or to the current directory on the host).
    pub fn open(&self, path: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
        let path = if path.is_empty() { "." } else { path };
        if self.contained {
            Ok(rustix::fs::openat2(
                self.root,
                path,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )?)
        } else {
            Ok(rustix::fs::openat(
                self.root,
                path,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        }
    }
}

/// `export`: the container's filesystem (image and changes, no volumes) as a tar on `out`.
pub fn export(runner: &Runner, c: &Container, out: impl std::io::Write) -> Result<()> {
    let fs = ContainerFs::open(runner, c, View::Layers)?;
    let root = rustix::fs::openat(
        fs.root(),
        ".",
        berth_store::layers::tree::DIR_FLAGS,
        Mode::empty(),
    )
    .map_err(|e| RunnerError::io("opening", "the container's filesystem", e.into()))?;
    let mut tw = berth_store::layers::tree::TreeWriter::new(out);
    tw.append_tree(root.as_fd(), b"", &mut |_, _| true)
        .map_err(|e| RunnerError::io("exporting", c.name().to_string(), e))?;
    tw.finish()
        .map_err(|e| RunnerError::io("exporting", c.name().to_string(), e))?;
    Ok(())
}

/// An image's root filesystem (its layers merged, whiteouts applied) as a tar on `out`, read
/// through a detached read-only overlay of its snapshots (`build --output type=tar|local`).
/// `scratch` is an empty directory the caller owns: overlayfs wants two lower directories.
pub fn export_image(
    store: &berth_store::Store,
    img: &berth_store::Image,
    scratch: &std::path::Path,
    out: impl std::io::Write,
) -> Result<()> {
    let mut lowers = store.ensure_snapshots(img)?;
    if lowers.is_empty() {
        // No layers (FROM scratch with only metadata): an empty archive.
        let tw = berth_store::layers::tree::TreeWriter::new(out);
        tw.finish()
            .map_err(|e| RunnerError::io("exporting", img.short_id().to_string(), e))?;
        return Ok(());
    }
    if lowers.len() < 2 {
        lowers.insert(0, scratch.to_path_buf());
    }
    let fs = overlay(&lowers, None)?;
    let what = || format!("image {}", img.short_id());
    let root = rustix::fs::openat(
        &fs,
        ".",
        berth_store::layers::tree::DIR_FLAGS,
        Mode::empty(),
    )
    .map_err(|e| RunnerError::io("opening", what(), e.into()))?;
    let mut tw = berth_store::layers::tree::TreeWriter::new(out);
    tw.append_tree(root.as_fd(), b"", &mut |_, _| true)
        .map_err(|e| RunnerError::io("exporting", what(), e))?;
    tw.finish()
        .map_err(|e| RunnerError::io("exporting", what(), e))?;
    Ok(())
}
