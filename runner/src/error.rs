//! The runner's error type: each variant names the container, path or option at fault, so the
//! CLI prints one clear line and picks Docker's exit code (125 for berth's own errors, 126 for a
//! command that cannot be invoked, 127 for one that is not found).

use std::path::PathBuf;

pub type Result<T, E = RunnerError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// Setting up a container's network failed (netlink, nftables).
    #[error("network: {0}")]
    Network(String),
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    #[error(
        "container reference {input:?} is ambiguous: it matches {count} containers; give more of the ID"
    )]
    Ambiguous { input: String, count: usize },
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unsupported(String),
    /// The command could not be found in the container (exit code 127).
    #[error(
        "failed to create task for container: exec: {command:?}: executable file not found in $PATH"
    )]
    CommandNotFound { command: String },
    /// The command exists but cannot be executed (exit code 126).
    #[error("failed to create task for container: exec: {command:?}: permission denied")]
    CommandNotExecutable { command: String },
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A failure reported by a supervisor process, with the exit code it chose.
    #[error("{message}")]
    Reported { code: u8, message: String },
}

impl RunnerError {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RunnerError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        RunnerError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// The exit code Docker's CLI uses for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunnerError::CommandNotFound { .. } => 127,
            RunnerError::CommandNotExecutable { .. } => 126,
            RunnerError::Reported { code, .. } => *code,
            _ => 125,
        }
    }
}

/// `.ctx("reading", path)` on io results.
pub trait IoContext<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| RunnerError::io(context, path, e))
    }
}
