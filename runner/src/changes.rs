//! A container's changes (`diff`, `commit`): the store owns the layer diff
//! ([`berth_store::layers`]); these keep the runner's error type for its callers.

use std::io::Write;
use std::path::{Path, PathBuf};

pub use berth_store::layers::{Change, ChangeKind};

use crate::error::Result;

/// `diff`: the changes in `upper` relative to the image `lowers` (bottom first), in the order
/// Docker lists them.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    Ok(berth_store::layers::changes(upper, lowers)?)
}

/// `commit`: `upper` as an uncompressed OCI layer tar written to `out`.
pub fn write_layer(upper: &Path, lowers: &[PathBuf], out: impl Write) -> Result<()> {
    Ok(berth_store::layers::write_layer(upper, lowers, out)?)
}
