//! How the runner's small state files are kept: written to a temp file and renamed over the
//! old one (synced when they must survive a crash), read back as JSON, and the advisory lock
//! file that read-modify-write cycles hold.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, RunnerError};

/// Write `value` as JSON to `path` atomically (temp file, fsync, rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_json_with(path, value, true)
}

/// [`write_json`], synced only when `durable`: the files of a `--rm` container are removed
/// with it, and Docker forgets such a container after a crash too, so they need the atomic
/// rename (a reader never sees half a file) but not the fsync, which costs milliseconds per
/// write on a busy disk.
pub fn write_json_with<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<()> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| RunnerError::invalid(path.display().to_string(), e.to_string()))?;
    write_replacing(path, &bytes, durable)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, true)
}

/// [`write_atomic`], synced only when `durable` (see [`write_json_with`]).
pub fn write_atomic_with(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    write_replacing(path, bytes, durable)
}

/// Replace a file that is regenerated at every start (the bundle, /etc/hosts and friends):
/// atomic like [`write_atomic`] but not synced, as a crash loses nothing that the next start
/// would not write again.
pub fn write_regenerated(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, false)
}

fn write_replacing(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::with_prefix_in(".tmp-", dir).ctx("creating temp file in", dir)?;
    tmp.write_all(bytes)
        .ctx("writing", tmp.path().to_path_buf())?;
    if sync {
        tmp.as_file().sync_all().ctx("syncing", path)?;
    }
    tmp.persist(path)
        .map_err(|e| RunnerError::io("replacing", path, e.error))?;
    Ok(())
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).ctx("reading", path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        RunnerError::invalid(
            format!("container file {}", path.display()),
            format!("{e} (the file is damaged; `berth rm -f` removes the container)"),
        )
    })
}

/// An exclusive advisory lock on a file, released on drop.
pub struct FileLock {
    _file: fs::File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .ctx("opening lock file", path)?;
        file.lock().ctx("locking", path)?;
        Ok(FileLock { _file: file })
    }
}
