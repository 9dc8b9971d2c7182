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
    /// A lifecycle operation the container's state refuses (pause a paused one, rm a running one).
    #[error(transparent)]
    State(#[from] crate::container::conflict::StateConflict),
    /// A network request that conflicts with what exists (a name, a subnet, an address).
    #[error(transparent)]
    Net(#[from] crate::network::conflict::NetworkConflict),
    /// A volume request that conflicts with what exists (a mount point, a volume's users).
    #[error(transparent)]
    Volume(#[from] crate::volumes::conflict::VolumeConflict),
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

    /// What kind of failure this is, for a caller that must tell them apart (an API's status
    /// code, a retry) without reading the message.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunnerError::NotFound(_)
            | RunnerError::NoSuchNetwork(_)
            | RunnerError::NoSuchVolume(_)
            | RunnerError::CommandNotFound { .. } => ErrorKind::NotFound,
            RunnerError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            RunnerError::Store(
                berth_store::StoreError::ImageNotFound(_)
                | berth_store::StoreError::BlobNotFound(_),
            ) => ErrorKind::NotFound,
            RunnerError::NameInUse { .. }
            | RunnerError::Conflict(_)
            | RunnerError::State(_)
            | RunnerError::Net(_)
            | RunnerError::Volume(_) => ErrorKind::Conflict,
            RunnerError::Invalid { .. } | RunnerError::Ambiguous { .. } => ErrorKind::InvalidInput,
            RunnerError::Unsupported(_) => ErrorKind::Unsupported,
            RunnerError::Io { .. }
            | RunnerError::Store(_)
            | RunnerError::Network(_)
            | RunnerError::CommandNotExecutable { .. }
            | RunnerError::Sandbox(_)
            | RunnerError::Reported { .. } => ErrorKind::System,
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

/// The kinds of [`RunnerError`] a caller tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such container, network, volume or command.
    NotFound,
    /// The request conflicts with what exists or with a container's state.
    Conflict,
    /// Bad input: a flag, a name, a reference that matches several things.
    InvalidInput,
    /// Something berth does not do (a driver, a plugin).
    Unsupported,
    /// The host failed: I/O, the kernel, the sandbox, a supervisor.
    System,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::conflict::StateConflict;

    #[test]
    fn state_conflicts_keep_dockers_words_and_are_conflicts() {
        let e: RunnerError = StateConflict::RemoveRunning { name: "web".into() }.into();
        assert_eq!(
            e.to_string(),
            "cannot remove container \"/web\": container is running: stop the container before removing or force remove"
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.exit_code(), 125);
        let e: RunnerError = StateConflict::KillNotRunning {
            name: "web".into(),
            id: "abc".into(),
        }
        .into();
        assert_eq!(
            e.to_string(),
            "cannot kill container: web: container abc is not running"
        );
        assert_eq!(
            RunnerError::NotFound("x".into()).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            RunnerError::invalid("--ip", "bad").kind(),
            ErrorKind::InvalidInput
        );
        let gone = RunnerError::io("reading", "/x", std::io::ErrorKind::NotFound.into());
        assert_eq!(gone.kind(), ErrorKind::NotFound);
    }
}
