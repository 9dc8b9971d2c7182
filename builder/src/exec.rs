//! What the builder needs from a sandbox, and nothing more: mounting a step's root filesystem
//! (an overlay of the parent's snapshots under a fresh upper directory), running one process in
//! it, and turning the upper directory into a layer tar. The CLI implements [`Executor`] with the
//! runner's sandbox, so this crate depends only on the store (as BuildKit's solver sees only an
//! executor interface).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A RUN step's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Only a loopback interface (the default for builds here).
    None,
    /// The host's network namespace (`RUN --network=host`).
    Host,
}

/// One process to run in a prepared root filesystem.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    pub argv: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Absolute working directory inside the root.
    pub cwd: String,
    /// `USER` as written (`name`, `uid`, `uid:gid`, empty for root).
    pub user: String,
    pub network: NetworkMode,
    /// A scratch directory the executor may use for the bundle and its files.
    pub scratch: &'a Path,
    /// `RUN --mount`s, their host sides prepared, parents before children.
    pub mounts: Vec<RunMount>,
}

/// One mount a RUN step adds to its container (the mount point already exists in the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// `source` (a host file, directory or socket) bound at `target`.
    Bind {
        target: String,
        source: PathBuf,
        read_only: bool,
    },
    /// A fresh tmpfs at `target`, limited to `size` bytes when given.
    Tmpfs { target: String, size: Option<u64> },
}

impl RunMount {
    pub fn target(&self) -> &str {
        match self {
            RunMount::Bind { target, .. } | RunMount::Tmpfs { target, .. } => target,
        }
    }
}

/// An executor failure (not the process's own non-zero exit, which is an `Ok` exit code).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// The sandbox side of a build.
pub trait Executor {
    /// Mount `lowers` (bottom first) with `upper`/`work` at `target`.
    fn mount(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), ExecError>;
    /// Undo [`Executor::mount`].
    fn unmount(&self, target: &Path) -> Result<(), ExecError>;
    /// Run `spec`, sending its stdout and stderr (merged, as they come) to `output`; the exit
    /// code in Docker's convention (128+signal when killed).
    fn run(&self, spec: &RunSpec<'_>, output: &mut dyn FnMut(&[u8])) -> Result<i32, ExecError>;
    /// The layer tar (OCI whiteouts) for the changes in `upper` over `lowers`.
    fn write_layer(
        &self,
        upper: &Path,
        lowers: &[PathBuf],
        out: &mut dyn Write,
    ) -> Result<(), ExecError>;
    /// Whether the user asked the build to stop (checked between steps).
    fn interrupted(&self) -> bool {
        false
    }
    /// Stop the processes running for this build now, and any started later (another stage
    /// failed: the build fails anyway).
    fn cancel(&self) {}
}
