//! Layers: each unpacked once into `snapshots/<diff-id hex>/`, shared read-only by every
//! container and build that stacks it; and new layers made from an overlay upper directory over
//! such snapshots (`diff`: the change list and layer tar; `tree`: the fd-based tar writer).
//!
//! A snapshot is unpacked into a temp directory beside its final place while the decompressed
//! stream is hashed; only when the hash equals the diff ID and the files are synced is it renamed
//! into place. Two processes racing to unpack the same layer both succeed: the second rename
//! finds the snapshot there and discards its copy.

mod diff;
pub mod tree;

pub use diff::{Change, ChangeKind, changes, strip_runtime_made, write_layer};

use std::fs;
use std::io::{self, BufReader};
use std::path::PathBuf;

use oci_spec::image::{Descriptor, Digest};

use crate::compression::{Compression, decoder};
use crate::digest::HashingReader;
use crate::error::{IoContext, Result, StoreError};
use crate::extract::unpack_layer;
use crate::images::Image;
use crate::root::Store;

/// A layer of an image with the diff ID its config gives it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

impl Store {
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.snapshots_dir().join(diff_id.digest())
    }

    /// The layers of an image, bottom first, paired with their diff IDs.
    pub fn layers(&self, img: &Image) -> Result<Vec<Layer>> {
        let manifest = self.manifest(&img.manifest)?;
        let config = self.config(img)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(StoreError::corrupt(
                format!("image {}", img.short_id()),
                format!(
                    "manifest has {} layers but config lists {} diff IDs",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(d, id)| {
                Ok(Layer {
                    descriptor: d.clone(),
                    diff_id: crate::digest::parse_sha256(id)?,
                })
            })
            .collect()
    }

    /// Unpack every layer of `img` that is not unpacked yet; returns the snapshot directories,
    /// bottom layer first.
    pub fn ensure_snapshots(&self, img: &Image) -> Result<Vec<PathBuf>> {
        let _writing = self.writer_lock()?;
        self.layers(img)?
            .iter()
            .map(|l| self.ensure_snapshot(l))
            .collect()
    }

    fn ensure_snapshot(&self, layer: &Layer) -> Result<PathBuf> {
        let target = self.snapshot_path(&layer.diff_id);
        if target.is_dir() {
            return Ok(target);
        }
        let snapshots = self.snapshots_dir();
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&snapshots)
            .ctx("creating temp snapshot in", &snapshots)?;
        let blob = self.blobs().open(layer.descriptor.digest())?;
        let compression = Compression::from_media_type(layer.descriptor.media_type());
        let what = format!("layer {}", layer.descriptor.digest());
        let decoded =
            decoder(BufReader::with_capacity(1 << 20, blob), compression).map_err(|e| {
                StoreError::BadArchive {
                    what: what.clone(),
                    reason: e.to_string(),
                }
            })?;
        let mut hashing = HashingReader::new(decoded);
        unpack_layer(&mut hashing, tmp.path())?;
        let (actual, _) = hashing.finish().map_err(|e| StoreError::BadArchive {
            what: what.clone(),
            reason: e.to_string(),
        })?;
        if actual != layer.diff_id {
            return Err(StoreError::DigestMismatch {
                what: format!("{what} (uncompressed)"),
                expected: layer.diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        // Make the files durable before the snapshot becomes visible under its name.
        let dir = fs::File::open(tmp.path()).ctx("opening", tmp.path())?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::io("syncing", tmp.path(), e.into()))?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &target) {
            Ok(()) => {}
            Err(e) if target.is_dir() => {
                tracing::debug!(
                    "snapshot {} appeared meanwhile ({e}); using it",
                    target.display()
                );
                remove_tree(&tmp_path)?;
            }
            Err(e) => {
                let _ = remove_tree(&tmp_path);
                return Err(StoreError::io("renaming snapshot to", target, e));
            }
        }
        crate::blobs::sync_dir(&snapshots)?;
        Ok(target)
    }
}

/// Remove a directory tree that may hold read-only directories (layers keep their modes).
pub(crate) fn remove_tree(p: &std::path::Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("removing", p, e)),
    }
}
