//! Volumes: named volumes under `ROOT/volumes/<name>/_data`, anonymous volumes for the image's
//! VOLUME paths, bind mounts, tmpfs and `--volumes-from`.
//!
//! (Being written: the hooks below are what the rest of the runner calls.)

use std::path::Path;

use crate::bundle::ExtraMount;
use crate::container::{Container, CreateOptions, Runner};
use crate::error::Result;
use crate::state::{MountPoint, MountRequest};

/// At create: validate `-v`, `--mount`, `--tmpfs`, `--volumes-from` and the image's VOLUMEs, create
/// named/anonymous volumes, and return what the record keeps: the mount points `inspect` shows
/// and the requests (HostConfig.Mounts).
pub fn plan(
    _runner: &Runner,
    _opts: &CreateOptions,
    _image_volumes: &[String],
) -> Result<(Vec<MountPoint>, Vec<MountRequest>)> {
    Ok((Vec::new(), Vec::new()))
}

/// At each start, with the rootfs mounted at `rootfs`: fill new empty named/anonymous volumes
/// from the image's content at their path (Docker's copy-up), and return the runtime mounts.
pub fn prepare(_runner: &Runner, _c: &Container, _rootfs: &Path) -> Result<Vec<ExtraMount>> {
    Ok(Vec::new())
}

/// At `rm`: with `remove_anonymous` (`rm -v`, `--rm`), delete the container's anonymous volumes
/// unless another container uses them.
pub fn release(_runner: &Runner, _c: &Container, _remove_anonymous: bool) -> Result<()> {
    Ok(())
}
