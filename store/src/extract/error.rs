//! What can go wrong unpacking a layer, each naming the entry and what was wrong with it.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The destination directory could not be opened.
    #[error("cannot open layer destination {}: {source}", path.display())]
    Destination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The tar stream ended early or is not a tar (bad checksum, bad header, read error).
    /// `index` counts entries from 1.
    #[error("layer tar is truncated or corrupted at entry {index}: {source}")]
    Corrupt {
        index: u64,
        #[source]
        source: io::Error,
    },

    /// A GNU long name or PAX header over the 1 MiB limit (as Go's archive/tar).
    #[error("layer tar entry {index}: {source}")]
    HeaderTooLarge {
        index: u64,
        #[source]
        source: io::Error,
    },

    /// The stream ended inside an entry's data.
    #[error(
        "layer tar is truncated or corrupted at entry {index} ({}): expected {expected} bytes of \
         data, got {got}",
        path.display()
    )]
    Truncated {
        index: u64,
        path: PathBuf,
        expected: u64,
        got: u64,
    },

    /// A header field could not be parsed.
    #[error("layer entry {}: invalid `{field}` in its header: {source}", path.display())]
    Header {
        path: PathBuf,
        field: &'static str,
        #[source]
        source: io::Error,
    },

    /// `..` in the entry's name climbs above the layer root; nothing was written for it.
    #[error("layer entry {}: path climbs out of the layer root with `..`; refusing it", path.display())]
    PathEscape { path: PathBuf },

    /// The entry's name cannot be created (NUL byte, too long, a non-directory named `/`, a
    /// whiteout of nothing, an empty symlink).
    #[error("layer entry {}: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: &'static str },

    /// A tar entry type that has no meaning in a layer.
    #[error("layer entry {}: unsupported tar entry type {flag:?}", path.display())]
    UnsupportedType { path: PathBuf, flag: char },

    /// A hard link whose target would be outside the layer root.
    #[error(
        "layer entry {}: hard link target {} climbs out of the layer root; refusing it",
        path.display(),
        target.display()
    )]
    HardLinkEscape { path: PathBuf, target: PathBuf },

    /// A hard link whose target (resolved inside the layer root) does not exist.
    #[error(
        "layer entry {}: hard link target {} does not exist in the layer (targets are resolved \
         inside the layer root)",
        path.display(),
        target.display()
    )]
    HardLinkTargetMissing { path: PathBuf, target: PathBuf },

    /// A parent of the entry (symlinks resolved inside the layer root) is not a directory.
    #[error(
        "layer entry {}: its parent {} (inside the layer root) is not a directory",
        path.display(),
        component.display()
    )]
    NotADirectory { path: PathBuf, component: PathBuf },

    /// Resolving the entry's parent met more than 40 symlinks.
    #[error("layer entry {}: too many levels of symbolic links in its parent path", path.display())]
    SymlinkLoop { path: PathBuf },

    /// A filesystem operation failed.
    #[error("layer entry {}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}
