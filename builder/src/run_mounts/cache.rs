//! The store of cache mounts: `ROOT/builder/cache-mounts/<hash of id, base and owner>/data`,
//! kept across builds. A `lock` file beside it is held shared by `sharing=shared` users and
//! exclusively by `locked` ones; a `private` user that finds it in use gets a fresh directory
//! for the step. A new directory gets its mode and owner, and `from=`'s content, before it is
//! renamed into place, so a build never sees a half-made one.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::lock::flock_file;

use super::{Origin, Prepared, StepDirs, copy_tree, set_owner_mode};
use crate::context::SourceTree;
use crate::error::BuildError;
use crate::frontend::mount::Sharing;
use crate::ignore::Ignore;
use berth_store::inroot;

/// Where cache mounts live under `ROOT/builder/`.
pub const CACHE_MOUNTS_DIR: &str = "cache-mounts";

impl Prepared<'_> {
    /// The directory of a cache mount, created on first use (mode, owner, base content) and
    /// locked as its sharing mode asks.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cache_dir(
        &mut self,
        dirs: &StepDirs<'_>,
        name: &str,
        sharing: Sharing,
        mode: u32,
        owner: (u32, u32),
        base: Option<&(Origin, String)>,
        i: usize,
        err: &dyn Fn(String) -> BuildError,
    ) -> Result<PathBuf, BuildError> {
        if let Some(p) = self.caches.get(name) {
            return Ok(p.clone());
        }
        let dir = dirs
            .store
            .root()
            .join("builder")
            .join(CACHE_MOUNTS_DIR)
            .join(name);
        fs::create_dir_all(&dir).map_err(|e| BuildError::io("creating", &dir, e))?;
        let lock_path = dir.join("lock");
        let op = match sharing {
            Sharing::Shared => FlockOperation::LockShared,
            Sharing::Locked => FlockOperation::LockExclusive,
            Sharing::Private => FlockOperation::NonBlockingLockExclusive,
        };
        let data = match flock_file(&lock_path, op) {
            Ok(lock) => {
                self._locks.push(lock);
                dir.join("data")
            }
            // In use: a private user gets a directory of its own for this step.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                dirs.scratch.join(format!("cache-{i}"))
            }
            Err(e) => return Err(BuildError::io("locking", &lock_path, e)),
        };
        if !data.is_dir() {
            // Unique per process and call: stages building at once may fill the same new cache.
            static FILLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = FILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = data.with_file_name(format!("data.tmp-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            self.fill_cache(dirs, &tmp, mode, owner, base, i, err)?;
            if let Err(e) = fs::rename(&tmp, &data) {
                let _ = fs::remove_dir_all(&tmp);
                if !data.is_dir() {
                    return Err(BuildError::io("creating the cache mount", &data, e));
                }
            }
        }
        self.caches.insert(name.to_string(), data.clone());
        Ok(data)
    }

    #[allow(clippy::too_many_arguments)]
    fn fill_cache(
        &mut self,
        dirs: &StepDirs<'_>,
        tmp: &Path,
        mode: u32,
        owner: (u32, u32),
        base: Option<&(Origin, String)>,
        i: usize,
        err: &dyn Fn(String) -> BuildError,
    ) -> Result<(), BuildError> {
        let io = |e| BuildError::io("creating the cache mount", tmp, e);
        match base {
            Some((Origin::Root { image, name }, source)) => {
                let root = self.overlay(dirs, image.as_ref().as_ref(), &format!("base-{i}"))?;
                let src = inroot::resolve(&root, source, true)
                    .map_err(|e| err(format!("cache mount source {source:?} in {name}: {e}")))?;
                if !src.is_dir() {
                    return Err(err(format!(
                        "cache mount source {source:?} is not a directory in {name}"
                    )));
                }
                let rel = src
                    .strip_prefix(&root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let tree = SourceTree {
                    root: root.clone(),
                    ignore: Ignore::default(),
                    what: name.clone(),
                };
                copy_tree(&tree, &rel, tmp, false).map_err(io)?;
                if let Some(m) = self.host.pop() {
                    dirs.exec.unmount(&m)?;
                }
            }
            _ => fs::create_dir(tmp).map_err(io)?,
        }
        set_owner_mode(tmp, mode, owner).map_err(io)
    }
}

/// `berth builder prune`: removes the cache mounts no build holds; returns the bytes freed.
pub fn prune_cache_mounts(state_root: &Path) -> io::Result<u64> {
    let dir = state_root.join("builder").join(CACHE_MOUNTS_DIR);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut freed = 0;
    for e in rd {
        let path = e?.path();
        let Ok(lock) = File::options().write(true).open(path.join("lock")) else {
            freed += dir_size(&path);
            fs::remove_dir_all(&path)?;
            continue;
        };
        if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        freed += dir_size(&path);
        fs::remove_dir_all(&path)?;
    }
    Ok(freed)
}

pub(crate) fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
