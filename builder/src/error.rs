//! What can stop a build, each with what the user needs to fix it.

use std::path::PathBuf;

/// A failed build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] crate::frontend::ParseError),
    #[error(transparent)]
    Plan(#[from] crate::frontend::plan::PlanError),
    #[error(transparent)]
    Ignore(#[from] crate::ignore::IgnoreError),
    #[error(transparent)]
    Store(Box<berth_store::StoreError>),
    /// FROM or `--from` names an image that is neither in the local store nor pullable.
    #[error("Dockerfile:{line}: failed to resolve source metadata for {reference}: {reason}")]
    MissingImage {
        reference: String,
        line: usize,
        reason: String,
    },
    /// A COPY/ADD source that does not exist or is excluded.
    #[error("{path:?} not found in the {what} (or excluded by .dockerignore)")]
    SourceNotFound { path: String, what: String },
    /// A step that cannot be carried out as written.
    #[error("Dockerfile:{line}: {instruction}: {message}")]
    Step {
        line: usize,
        instruction: String,
        message: String,
    },
    /// A RUN whose command exited non-zero.
    #[error(
        "Dockerfile:{line}: process \"{command}\" did not complete successfully: exit code: {code}{tail}"
    )]
    RunFailed {
        line: usize,
        command: String,
        code: i32,
        /// The last lines of output, already formatted (empty when there was none).
        tail: String,
    },
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox: {0}")]
    Exec(#[from] crate::exec::ExecError),
    /// A result taken from an imported cache turned out to be needed, and its layers could
    /// not be had.
    #[error("the imported build cache is incomplete: {reason}")]
    CacheIncomplete { reason: String },
    /// Ctrl-C (SIGINT), SIGTERM or SIGHUP during the build.
    #[error("the build was interrupted: nothing was tagged")]
    Interrupted,
}

impl From<berth_store::StoreError> for BuildError {
    fn from(e: berth_store::StoreError) -> Self {
        BuildError::Store(Box::new(e))
    }
}

impl BuildError {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BuildError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    /// The exit code `berth build` ends with.
    pub fn exit_code(&self) -> u8 {
        match self {
            // 128 + SIGINT, as a shell reports a command it interrupted.
            BuildError::Interrupted => 130,
            _ => 1,
        }
    }
}
