//! Garbage collection: `image prune` drops dangling (or all) images, then every blob, snapshot
//! and temp file that nothing in the index reaches is swept.
//!
//! The sweep runs under the exclusive gc lock; every writer holds it shared from its first blob
//! write until its index update, so a blob that is not linked *yet* is never swept.

use std::collections::HashSet;
use std::fs;

use crate::error::{IoContext, Result};
use crate::images::{ANN_REF_NAME, Removal};
use crate::layers::remove_tree;
use crate::root::Store;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct SweepStats {
    pub blobs: u64,
    pub snapshots: u64,
    pub temp_files: u64,
    pub bytes: u64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct PruneReport {
    pub removed: Vec<Removal>,
    pub swept: SweepStats,
}

impl Store {
    /// `image prune [-a]`: without `all`, dangling images only; with it, every image no container
    /// uses.
    pub fn prune_images(&self, all: bool) -> Result<PruneReport> {
        let _gc = self.gc_lock()?;
        let mut removed = Vec::new();
        let images = self.images()?;
        let mut doomed = HashSet::new();
        for img in &images {
            let dangling = img.tags.is_empty();
            let mounted = crate::mount::is_mount_point(&self.mount_path(img));
            if (dangling || all) && !mounted && self.containers_using(&img.id)?.is_empty() {
                doomed.insert(img.manifest.clone());
                removed.extend(img.tags.iter().cloned().map(Removal::Untagged));
                removed.push(Removal::Deleted(img.id.clone()));
            }
        }
        if !doomed.is_empty() {
            self.update_index(|entries| {
                entries.retain(|d| !doomed.contains(d.digest()));
                Ok(())
            })?;
        }
        let swept = self.sweep_locked()?;
        Ok(PruneReport { removed, swept })
    }

    /// Remove what the index does not reach. The caller holds the gc lock.
    pub(crate) fn sweep_locked(&self) -> Result<SweepStats> {
        let mut stats = SweepStats::default();
        let live = self.referenced_blobs()?;
        let mut live_snapshots = HashSet::new();
        for img in self.images()? {
            let layers = self.layers(&img)?;
            live_snapshots.extend(layers.into_iter().map(|l| l.diff_id.digest().to_string()));
        }
        let (blobs, _) = self.blobs().list()?;
        for d in blobs {
            if !live.contains(&d.to_string()) {
                stats.bytes += self.blobs().size(&d).unwrap_or(0);
                if self.blobs().remove(&d)? {
                    stats.blobs += 1;
                }
            }
        }
        let snaps = self.snapshots_dir();
        for e in fs::read_dir(&snaps).ctx("listing", &snaps)? {
            let e = e.ctx("listing", &snaps)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !live_snapshots.contains(&name) {
                remove_tree(&e.path())?;
                stats.snapshots += 1;
            }
        }
        // Writers are excluded by the lock we hold, so whatever is in tmp/ was left by a process
        // that died mid-write.
        let tmp = self.tmp_dir();
        for e in fs::read_dir(&tmp).ctx("listing", &tmp)? {
            let e = e.ctx("listing", &tmp)?;
            stats.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            remove_tree(&e.path())
                .or_else(|_| fs::remove_file(e.path()).ctx("removing", e.path()))?;
            stats.temp_files += 1;
        }
        Ok(stats)
    }

    /// Number of tags (index entries with a ref name).
    pub fn tag_count(&self) -> Result<usize> {
        Ok(self
            .read_index()?
            .iter()
            .filter(|d| {
                d.annotations()
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ANN_REF_NAME))
            })
            .count())
    }
}
