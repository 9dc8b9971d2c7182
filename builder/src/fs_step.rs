//! Steps that change the filesystem (RUN, COPY/ADD, WORKDIR): the parent's snapshots are
//! stacked under a fresh upper directory in a scratch directory under `ROOT/builder/tmp/`, the
//! step works in the merged root, and after unmounting the upper directory *is* the layer diff
//! (the executor writes it as a tar with OCI whiteouts). A step whose diff is empty yields no
//! layer, as BuildKit's exporter drops empty layers. Mounts are undone and scratch removed on
//! every path out, failures included.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::FlockOperation;

use berth_store::{Image, Store};

use crate::context::SourceTree;
use berth_store::inroot;

use crate::copy::{CopyMode, copy_into, mkdir_all, resolve_chown};
use crate::error::BuildError;
use crate::exec::{ExecError, Executor, NetworkMode, RunSpec};
use crate::ignore::Ignore;
use crate::lock::flock_file;
use crate::run_mounts::{MountPlan, MountSources, Prepared, StepDirs};

/// What a filesystem step leaves: its layer tar (None when it changed nothing) and its upper
/// directory, which is that layer in snapshot form, inside a scratch directory removed on drop.
pub struct FsOutput {
    pub layer: Option<File>,
    pub upper: PathBuf,
    // Field order is drop order: the lock goes only after the directory is removed.
    _scratch: ScratchDir,
    _lock: File,
}

/// A step's scratch directory, removed on drop. It is made under a `new-` name, locked, and
/// only then renamed to `step-…`, so [`clean_stale`] (which takes `step-` directories whose
/// lock it can get) never sees one before its owner holds the lock.
pub struct ScratchDir(PathBuf);

/// A scratch directory under `ROOT/builder/tmp/` and the lock that marks it in use: removed
/// when both are dropped, and by the next build's [`clean_stale`] if this process dies (the
/// CLI keeps a build context read from stdin in one).
pub fn scratch_dir(state_root: &Path) -> Result<(ScratchDir, File), BuildError> {
    let tmp_root = state_root.join("builder").join("tmp");
    std::fs::create_dir_all(&tmp_root).map_err(|e| BuildError::io("creating", &tmp_root, e))?;
    ScratchDir::create(&tmp_root)
}

impl ScratchDir {
    fn create(tmp_root: &Path) -> Result<(ScratchDir, File), BuildError> {
        let fresh = tempfile::Builder::new()
            .prefix("new-")
            .tempdir_in(tmp_root)
            .map_err(|e| BuildError::io("creating a scratch directory in", tmp_root, e))?;
        let lock = lock_scratch(fresh.path(), true)
            .map_err(|e| BuildError::io("locking", fresh.path(), e))?;
        let name = fresh
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().replacen("new-", "step-", 1))
            .unwrap_or_else(|| "step-x".into());
        let target = tmp_root.join(name);
        std::fs::rename(fresh.path(), &target)
            .map_err(|e| BuildError::io("renaming a scratch directory to", &target, e))?;
        // The TempDir's path is gone; from here the guard removes the renamed directory.
        let _ = fresh.keep();
        Ok((ScratchDir(target), lock))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Takes the lock that marks a scratch directory as in use (released when the file closes,
/// however the process ends).
fn lock_scratch(dir: &Path, blocking: bool) -> std::io::Result<File> {
    let op = if blocking {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    flock_file(&dir.join("lock"), op)
}

/// Unmounts and removes scratch directories no running build holds: what a build killed
/// mid-step (Ctrl-C, SIGKILL) left behind.
pub fn clean_stale(store: &Store, exec: &dyn Executor) {
    let tmp_root = store.root().join("builder").join("tmp");
    let Ok(rd) = std::fs::read_dir(&tmp_root) else {
        return;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        // A `new-` directory is one a build died making (nothing mounted in it yet); one
        // seconds old may be another build's, between its creation and its lock.
        if name.starts_with("new-") {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a.as_secs() > 60));
            if old && let Ok(_lock) = lock_scratch(&dir, false) {
                let _ = std::fs::remove_dir_all(&dir);
            }
            continue;
        }
        if !name.starts_with("step-") {
            continue;
        }
        let Ok(_lock) = lock_scratch(&dir, false) else {
            continue;
        };
        // The step's root first, then what was mounted beside it (another stage's root,
        // RUN --mount overlays, the secrets tmpfs).
        let _ = exec.unmount(&dir.join("rootfs"));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for m in entries.flatten() {
                if m.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = exec.unmount(&m.path());
                }
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            warn_stale(&dir, &err);
        }
    }
}

fn warn_stale(dir: &Path, err: &std::io::Error) {
    eprintln!(
        "warning: cannot remove the stale build directory {}: {err}",
        dir.display()
    );
}

/// How many output lines a failed RUN reports.
const TAIL_LINES: usize = 10;

/// What a filesystem step does (one per step, short-lived: its size does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum FsOp {
    /// WORKDIR: create the directory (owned by USER).
    Mkdir { path: String, user: String },
    Run {
        argv: Vec<String>,
        env: Vec<String>,
        cwd: String,
        user: String,
        network: NetworkMode,
        /// `RUN --mount`s, planned.
        mounts: Vec<MountPlan>,
        sources: Arc<MountSources>,
    },
    Copy {
        sources: Vec<String>,
        /// `--from`: `Some(image)` of a stage or image (`Some(None)`: an empty stage).
        from: Option<Option<Image>>,
        dest: String,
        chown: Option<String>,
        chmod: Option<u32>,
        unpack: bool,
        context_root: PathBuf,
        ignore: Ignore,
        /// Heredoc sources: (file name, content).
        inline: Vec<(String, String)>,
        /// ADD's URL and git sources.
        remote: Vec<crate::fetch::Remote>,
    },
}

pub struct FsStep<'a> {
    pub store: &'a Store,
    pub exec: &'a dyn Executor,
    pub line: usize,
    pub text: String,
}

/// Unmounts on drop (the explicit [`Mounted::release`] reports errors).
struct Mounted<'a> {
    exec: &'a dyn Executor,
    target: PathBuf,
    live: bool,
}

impl Mounted<'_> {
    fn release(mut self) -> Result<(), ExecError> {
        self.live = false;
        self.exec.unmount(&self.target)
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if self.live {
            let _ = self.exec.unmount(&self.target);
        }
    }
}

impl<'a> FsStep<'a> {
    fn mount(
        &self,
        lowers: &[PathBuf],
        dir: &Path,
        name: &str,
    ) -> Result<(Mounted<'a>, PathBuf, PathBuf), BuildError> {
        let upper = dir.join(format!("{name}-upper"));
        let work = dir.join(format!("{name}-work"));
        let target = dir.join(name);
        self.exec.mount(lowers, &upper, &work, &target)?;
        Ok((
            Mounted {
                exec: self.exec,
                target: target.clone(),
                live: true,
            },
            target,
            upper,
        ))
    }

    fn step_err(&self, message: String) -> BuildError {
        BuildError::Step {
            line: self.line,
            instruction: self.text.clone(),
            message,
        }
    }

    /// Carries out `op` on the image `parent` (`None`: an empty root); returns the layer tar
    /// (positioned at its start; `None` when the step changed nothing) and the upper directory.
    pub fn run(
        &self,
        parent: Option<&Image>,
        op: &FsOp,
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<FsOutput, BuildError> {
        let lowers = match parent {
            Some(img) => self.store.ensure_snapshots(img)?,
            None => Vec::new(),
        };
        let tmp_root = self.store.root().join("builder").join("tmp");
        std::fs::create_dir_all(&tmp_root).map_err(|e| BuildError::io("creating", &tmp_root, e))?;
        let (scratch, lock) = ScratchDir::create(&tmp_root)?;
        let (mounted, rootfs, upper) = self.mount(&lowers, scratch.path(), "rootfs")?;
        let io_err = |what: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |e| BuildError::io(what, p, e)
        };
        // Parent directories of RUN mount points, copied up only because of them.
        let mut copied_up = Vec::new();
        match op {
            FsOp::Mkdir { path, user } => {
                let owner = if user.is_empty() {
                    (0, 0)
                } else {
                    resolve_chown(&rootfs, user).unwrap_or((0, 0))
                };
                let host = inroot::resolve(&rootfs, path, true)
                    .map_err(io_err("resolving the directory in", &rootfs))?;
                mkdir_all(&host, owner).map_err(io_err("creating", &host))?;
            }
            FsOp::Run {
                argv,
                env,
                cwd,
                user,
                network,
                mounts,
                sources,
            } => {
                let dirs = StepDirs {
                    store: self.store,
                    exec: self.exec,
                    scratch: scratch.path(),
                    rootfs: &rootfs,
                };
                let prepared = Prepared::new(&dirs, mounts, sources, &|m| self.step_err(m))?;
                let bundle = prepared
                    .private_bundle_dir()
                    .unwrap_or_else(|| scratch.path().join("bundle"));
                std::fs::create_dir_all(&bundle).map_err(io_err("creating", &bundle))?;
                let mut env = env.clone();
                env.extend(prepared.env.iter().cloned());
                let spec = RunSpec {
                    rootfs: &rootfs,
                    argv: argv.clone(),
                    env,
                    cwd: cwd.clone(),
                    user: user.clone(),
                    network: *network,
                    scratch: &bundle,
                    mounts: prepared.mounts.clone(),
                };
                let mut tail: VecDeque<String> = VecDeque::new();
                let mut partial: Vec<u8> = Vec::new();
                let code = self.exec.run(&spec, &mut |b| {
                    output(b);
                    for &c in b {
                        if c == b'\n' {
                            tail.push_back(String::from_utf8_lossy(&partial).into_owned());
                            partial.clear();
                            if tail.len() > TAIL_LINES {
                                tail.pop_front();
                            }
                        } else {
                            partial.push(c);
                        }
                    }
                });
                // Mount points made for the step go, and the host mounts are undone, whatever
                // the outcome.
                copied_up = prepared.finish(&rootfs);
                let code = code?;
                if !partial.is_empty() {
                    tail.push_back(String::from_utf8_lossy(&partial).into_owned());
                    if tail.len() > TAIL_LINES {
                        tail.pop_front();
                    }
                }
                if code != 0 {
                    mounted.release()?;
                    let tail = if tail.is_empty() {
                        String::new()
                    } else {
                        let lines: Vec<String> = tail.iter().map(|l| format!("  > {l}")).collect();
                        format!("\nlast output lines:\n{}", lines.join("\n"))
                    };
                    return Err(BuildError::RunFailed {
                        line: self.line,
                        command: argv.join(" "),
                        code,
                        tail,
                    });
                }
            }
            FsOp::Copy {
                sources,
                from,
                dest,
                chown,
                chmod,
                unpack,
                context_root,
                ignore,
                inline,
                remote,
            } => {
                let owner = match chown {
                    Some(c) => {
                        resolve_chown(&rootfs, c).map_err(|e| self.step_err(e.to_string()))?
                    }
                    None => (0, 0),
                };
                let mode = CopyMode {
                    owner,
                    chmod: *chmod,
                    unpack: *unpack,
                };
                // Another stage's or image's root, mounted beside this one.
                let mut src_mount = None;
                let tree = match from {
                    None => SourceTree {
                        root: context_root.clone(),
                        ignore: ignore.clone(),
                        what: "build context".into(),
                    },
                    Some(img) => {
                        let lowers = match img {
                            Some(img) => self.store.ensure_snapshots(img)?,
                            None => Vec::new(),
                        };
                        let (m, root, _) = self.mount(&lowers, scratch.path(), "source")?;
                        src_mount = Some(m);
                        SourceTree {
                            root,
                            ignore: Ignore::default(),
                            what: "source stage or image".into(),
                        }
                    }
                };
                let mut any = false;
                let mut all = Vec::new();
                for s in sources {
                    let sel = tree.select(s)?;
                    any |= !sel.is_empty();
                    all.extend(sel);
                }
                if !any && let Some(s) = sources.first() {
                    return Err(BuildError::SourceNotFound {
                        path: s.clone(),
                        what: tree.what.clone(),
                    });
                }
                copy_into(&tree, &all, &rootfs, dest, mode)
                    .map_err(|e| self.step_err(format!("copying to {dest}: {e}")))?;
                if let Some(m) = src_mount {
                    m.release()?;
                }
                let copy_err = |e: std::io::Error| self.step_err(format!("copying to {dest}: {e}"));
                for (name, content) in inline {
                    // BuildKit writes an inline document 0644 before copying it.
                    let mut r = content.as_bytes();
                    crate::copy::write_named(&rootfs, dest, name, &mut r, 0o644, None, mode)
                        .map_err(copy_err)?;
                }
                for (i, r) in remote.iter().enumerate() {
                    let fetched = r
                        .fetch(&scratch.path().join(format!("git-{i}")), scratch.path())
                        .map_err(|e| self.step_err(e.to_string()))?;
                    match (fetched, r) {
                        (
                            crate::fetch::Fetched::File { path, mtime, .. },
                            crate::fetch::Remote::Http { name, unpack, .. },
                        ) => {
                            if *unpack
                                && crate::copy::unpack_into(&rootfs, &path, dest)
                                    .map_err(copy_err)?
                            {
                                continue;
                            }
                            let mut f = std::fs::File::open(&path)
                                .map_err(io_err("reading the download", &path))?;
                            // URL sources are 0600, as BuildKit's http source writes them.
                            crate::copy::write_named(
                                &rootfs,
                                dest,
                                name,
                                &mut f,
                                0o600,
                                Some(mtime),
                                mode,
                            )
                            .map_err(copy_err)?;
                        }
                        (crate::fetch::Fetched::Tree { root, keep_git_dir }, _) => {
                            let ignore = if keep_git_dir {
                                Ignore::default()
                            } else {
                                Ignore::parse(".git").map_err(BuildError::from)?
                            };
                            let tree = SourceTree {
                                root,
                                ignore,
                                what: "git repository".into(),
                            };
                            let all = [crate::context::Selected {
                                rel: String::new(),
                                is_dir: true,
                            }];
                            let dir_dest = if dest.ends_with('/') {
                                dest.clone()
                            } else {
                                format!("{dest}/")
                            };
                            copy_into(&tree, &all, &rootfs, &dir_dest, mode).map_err(copy_err)?;
                        }
                        (crate::fetch::Fetched::File { .. }, _) => {}
                    }
                }
            }
        }
        mounted.release()?;
        crate::run_mounts::drop_copied_up(&upper, &lowers, &copied_up);
        let layer_tmp = self.store.tmp_dir();
        let mut file = tempfile::tempfile_in(&layer_tmp)
            .map_err(|e| BuildError::io("creating a temp file in", &layer_tmp, e))?;
        self.exec.write_layer(&upper, &lowers, &mut file)?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| BuildError::io("reading back the layer in", &layer_tmp, e))?;
        let empty = tar::Archive::new(&mut file)
            .entries()
            .map(|mut e| e.next().is_none())
            .unwrap_or(false);
        file.seek(SeekFrom::Start(0))
            .map_err(|e| BuildError::io("reading back the layer in", &layer_tmp, e))?;
        if matches!(op, FsOp::Run { .. }) {
            berth_store::layers::strip_runtime_made(&upper, &lowers);
        }
        Ok(FsOutput {
            layer: (!empty).then_some(file),
            upper,
            _scratch: scratch,
            _lock: lock,
        })
    }
}

#[cfg(test)]
mod scratch_tests {
    use super::*;

    #[test]
    fn a_scratch_dir_is_locked_before_it_is_a_step_dir_and_goes_on_drop() {
        let tmp = tempfile::TempDir::new().unwrap();
        let (dir, lock) = ScratchDir::create(tmp.path()).unwrap();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("step-"), "{name}");
        // Its lock is held: a cleaner cannot take it.
        assert!(lock_scratch(dir.path(), false).is_err());
        // Nothing else is left in the temp root (no `new-` name behind).
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        let p = dir.path().to_path_buf();
        drop(dir);
        drop(lock);
        assert!(!p.exists());
    }
}
