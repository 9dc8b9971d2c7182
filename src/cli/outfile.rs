//! Writing a command's output to the file a user named (`save -o`, `export -o`, `build -o
//! dest=FILE`): the path is checked as Docker checks it (`ValidateOutputPath`: a directory or a
//! regular file, never a device, socket or other irregular file, whose replacement by a regular
//! file would break the host), then the bytes go to a temp file beside it, are fsynced and renamed
//! over it, so a failed write never leaves a half-written file behind.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Docker's `ValidateOutputPath`: the parent directory exists, and an existing `path` (symlinks
/// followed) is a directory, a regular file or a pipe.
pub fn validate(path: &Path) -> Result<()> {
    let dir = parent(path);
    if dir != Path::new(".") && !dir.exists() {
        bail!(
            "invalid output path: directory {:?} does not exist",
            dir.display().to_string()
        );
    }
    match std::fs::metadata(path) {
        Ok(m) => {
            if let Some(why) = berth_runner::copy::irregular_kind(m.file_type()) {
                bail!(
                    "invalid output path: {:?} must be a directory or a regular file: {why}",
                    path.display().to_string()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("invalid output path: {}", path.display())),
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write `path` atomically through `write` (given a buffered writer); `what` names the command's
/// output in errors ("failed to save image"). The inner result is returned as is, so a command can
/// report its own library error its own way.
pub fn write<E>(
    path: &Path,
    what: &str,
    write: impl FnOnce(&mut dyn Write) -> std::result::Result<(), E>,
) -> Result<std::result::Result<(), E>> {
    validate(path).with_context(|| what.to_string())?;
    let dir = parent(path);
    let mut tmp = tempfile::NamedTempFile::with_prefix_in(".berth-output-", &dir)
        .with_context(|| format!("{what}: cannot write in {}", dir.display()))?;
    {
        let mut w = io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        if let Err(e) = write(&mut w) {
            return Ok(Err(e));
        }
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    // The check above and this rename are not atomic: a device node created in between is
    // replaced, which is what Docker does too; the check is against mistakes, not a race.
    tmp.persist(path)
        .with_context(|| format!("{what}: cannot create {}", path.display()))?;
    Ok(Ok(()))
}
