//! Garbage collection: `image prune` drops dangling (or all) images, then every blob, snapshot
//! and temp file that nothing in the index reaches is swept.
//!
//! Besides the index, *pins* keep images alive: `ROOT/pins/<holder>/<algorithm>-<hex>` names a
//! manifest some other part of berth holds on to without naming it, as the builder holds every
//! step image of its cache (so `image prune` leaves the build cache alone, as Docker's does;
//! `builder prune` drops the builder's pins and sweeps).
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
            let dangling = img.is_dangling();
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

    fn pins_dir(&self) -> std::path::PathBuf {
        self.root().join("pins")
    }

    /// Keep the image of `manifest` (its manifest, config, layers and snapshots) from
    /// garbage collection on behalf of `holder`, until [`Store::unpin_all`].
    pub fn pin(&self, holder: &str, manifest: &oci_spec::image::Digest) -> Result<()> {
        let dir = self.pins_dir().join(holder);
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let p = dir.join(format!("{}-{}", manifest.algorithm(), manifest.digest()));
        if !p.exists() {
            fs::write(&p, b"").ctx("writing", &p)?;
        }
        Ok(())
    }

    /// Drop every pin of `holder`; what they kept goes with the next sweep.
    pub fn unpin_all(&self, holder: &str) -> Result<()> {
        let dir = self.pins_dir().join(holder);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("removing", &dir),
            _ => Ok(()),
        }
    }

    /// The holders that have pins.
    pub fn pin_holders(&self) -> Vec<String> {
        fs::read_dir(self.pins_dir())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Manifests pinned by anyone (whose blob is still stored).
    pub(crate) fn pinned_manifests(&self) -> Result<Vec<oci_spec::image::Digest>> {
        let mut out = Vec::new();
        let root = self.pins_dir();
        let Ok(holders) = fs::read_dir(&root) else {
            return Ok(out);
        };
        for h in holders {
            let h = h.ctx("listing", &root)?;
            let Ok(pins) = fs::read_dir(h.path()) else {
                continue;
            };
            for p in pins.flatten() {
                let name = p.file_name().to_string_lossy().replacen('-', ":", 1);
                if let Ok(d) = crate::digest::parse_sha256(&name)
                    && self.blobs().contains(&d)
                {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// `image prune`'s sweep on its own: what neither the index nor a pin reaches goes.
    pub fn sweep(&self) -> Result<SweepStats> {
        let _gc = self.gc_lock()?;
        self.sweep_locked()
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
        for m in self.pinned_manifests()? {
            let manifest = self.manifest(&m)?;
            let bytes = self.blobs().read_verified(manifest.config().digest())?;
            let cfg: oci_spec::image::ImageConfiguration = serde_json::from_slice(&bytes)
                .map_err(|e| crate::StoreError::corrupt(format!("config of pinned {m}"), e))?;
            for id in cfg.rootfs().diff_ids() {
                live_snapshots.insert(id.trim_start_matches("sha256:").to_string());
            }
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
