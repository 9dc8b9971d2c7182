//! `builder prune` and the lock that keeps it away from running builds: each build holds
//! `ROOT/builder/build.lock` shared, prune takes it exclusively, since it removes the step images
//! and snapshots builds stand on.

use std::fs::File;
use std::path::{Path, PathBuf};

use berth_store::{Store, StoreError};

/// What stopped a prune or the build lock.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PruneError {
    let path = path.to_path_buf();
    move |source| PruneError::Io {
        context,
        path,
        source,
    }
}

/// `ROOT/builder/build.lock`: shared by each build, exclusive for `builder prune`; `on_wait`
/// runs when the lock is held elsewhere and this call has to wait for it.
pub fn build_lock(
    state_root: &Path,
    exclusive: bool,
    on_wait: impl FnOnce(),
) -> Result<File, PruneError> {
    use rustix::fs::{FlockOperation, flock};
    let dir = state_root.join("builder");
    std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    let p = dir.join("build.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io_err("opening", &p))?;
    let (try_op, op) = if exclusive {
        (
            FlockOperation::NonBlockingLockExclusive,
            FlockOperation::LockExclusive,
        )
    } else {
        (
            FlockOperation::NonBlockingLockShared,
            FlockOperation::LockShared,
        )
    };
    if flock(&f, try_op).is_err() {
        on_wait();
        flock(&f, op).map_err(|e| io_err("locking", &p)(e.into()))?;
    }
    Ok(f)
}

/// Forget every cached step (and the context hash memo), remove the `RUN --mount=type=cache`
/// directories no build is using, unpin the step images and sweep what nothing else holds
/// (their blobs and snapshots, unless a named image shares them). Returns the bytes freed.
/// The caller holds [`build_lock`] exclusively.
pub fn prune(store: &Store) -> Result<u64, PruneError> {
    let dir = store.root().join("builder");
    // Cache mounts go too, as Docker's prune removes them (those in use by a build stay).
    let mut total = crate::run_mounts::prune_cache_mounts(store.root())
        .map_err(io_err("removing the cache mounts in", &dir))?;
    for p in [
        dir.join("cache"),
        dir.join("context-hashes.json"),
        dir.join("context-hashes"),
        dir.join("http"),
    ] {
        if p.is_dir() {
            total += crate::run_mounts::dir_size(&p);
            std::fs::remove_dir_all(&p).map_err(io_err("removing", &p))?;
        } else if let Ok(m) = std::fs::metadata(&p) {
            total += m.len();
            std::fs::remove_file(&p).map_err(io_err("removing", &p))?;
        }
    }
    store.unpin_all(berth_store::commit::BUILDER_PINS)?;
    total += store.sweep()?.bytes;
    Ok(total)
}
