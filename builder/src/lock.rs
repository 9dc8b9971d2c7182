//! The builder's file locks (scratch directories, cache mounts, local cache exports): flock(2)
//! on a lock file, released when the file closes, however the process ends.

use std::fs::File;
use std::path::Path;

use rustix::fs::FlockOperation;

/// Opens (creating) the lock file `path` and takes `op` on it; held until the file is dropped.
pub(crate) fn flock_file(path: &Path, op: FlockOperation) -> std::io::Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    rustix::fs::flock(&f, op)?;
    Ok(f)
}
