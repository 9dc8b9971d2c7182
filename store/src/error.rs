//! The store's error type: every variant says what was wrong and with which object, so the CLI
//! can print one clear line.

use std::path::PathBuf;

use crate::extract::ExtractError;
use crate::reference::ReferenceError;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },
    #[error("blob {0} is not in the store")]
    BlobNotFound(String),
    #[error("No such image: {0}")]
    ImageNotFound(String),
    #[error(
        "image reference {input:?} is ambiguous: it matches {count} images; give more of the ID"
    )]
    AmbiguousImage { input: String, count: usize },
    #[error("conflict: unable to delete {id} (must be forced) - {reason}")]
    Conflict { id: String, reason: String },
    #[error(
        "conflict: unable to remove {id}: image is being used by container(s) {containers}; stop and remove them first, or use -f"
    )]
    InUse { id: String, containers: String },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("corrupt store object {what}: {reason} (run `berth system check`)")]
    Corrupt { what: String, reason: String },
    #[error("unsupported {what}: {reason}")]
    Unsupported { what: String, reason: String },
    #[error("{what} is not a valid tar archive: {reason}")]
    BadArchive { what: String, reason: String },
}

impl StoreError {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn corrupt(what: impl Into<String>, reason: impl ToString) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Attach a path and a verb to an I/O error in one call: `fs::read(p).ctx("reading", p)?`.
pub trait IoContext<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| StoreError::io(context, path, e))
    }
}
