//! The state root and its OCI image layout: directory structure, `index.json` and the locks that
//! let several `berth` processes share one root.
//!
//! ```text
//! ROOT/images/            OCI image layout (oci-layout, index.json, blobs/sha256/…)
//! ROOT/snapshots/<hex>/   unpacked layers, by diff ID
//! ROOT/tmp/               temp files; same filesystem, so renames are atomic
//! ROOT/locks/             index.lock (index updates), gc.lock (writers shared, gc exclusive)
//! ```
//!
//! Other parts of berth keep their state beside these: `containers/`, `volumes/`, `networks/`
//! and `runtime/` (the runner), `seccomp/` (compiled seccomp programs, the runner's sandbox
//! cache), `builder/` (the build cache).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::blobs::{BlobStore, sync_dir};
use crate::error::{IoContext, Result, StoreError};

pub const DEFAULT_ROOT: &str = "/var/lib/berth";
const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    layout: PathBuf,
    blobs: BlobStore,
}

/// An advisory lock held until dropped (the kernel releases it if the process dies).
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Make `dir` accessible to its owner only (0700), when it is ours and more open than that.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = fs::metadata(dir).ctx("reading state directory", dir)?;
    if m.mode() & 0o077 != 0 && m.uid() == rustix::process::geteuid().as_raw() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .ctx("making the state directory private (chmod 0700)", dir)?;
    }
    Ok(())
}

impl Store {
    /// Open (creating when missing) the state root at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let given = root.as_ref();
        fs::create_dir_all(given).ctx("creating state directory", given)?;
        // Mount points and mountinfo are absolute and symlink-free; so must our paths be.
        let root = fs::canonicalize(given).ctx("resolving state root", given)?;
        // Nothing under the root may be reachable by other local users: stored images hold
        // setuid binaries and device nodes (unpacked in snapshots/), containers' root
        // filesystems and volumes hold whatever their processes made. Docker keeps
        // /var/lib/docker at 0710; an existing root made more open (by an older berth or by
        // hand) is closed here on open.
        private_dir(&root)?;
        let layout = root.join("images");
        let blobs_dir = layout.join("blobs").join("sha256");
        for d in [
            &blobs_dir,
            &root.join("snapshots"),
            &root.join("tmp"),
            &root.join("locks"),
        ] {
            fs::create_dir_all(d).ctx("creating state directory", d)?;
        }
        private_dir(&root.join("snapshots"))?;
        let store = Store {
            blobs: BlobStore::new(blobs_dir, root.join("tmp")),
            root,
            layout,
        };
        let layout_file = store.layout.join("oci-layout");
        if !layout_file.exists() {
            store.write_atomic(&layout_file, OCI_LAYOUT.as_bytes())?;
        }
        if !store.index_path().exists() {
            let _lock = store.lock_index()?;
            if !store.index_path().exists() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The OCI image layout directory (`skopeo inspect oci:<this>:<ref>` reads it).
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn index_path(&self) -> PathBuf {
        self.layout.join("index.json")
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<LockGuard> {
        let path = self.root.join("locks").join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("opening lock", &path)?;
        if exclusive {
            file.lock().ctx("locking", &path)?;
        } else {
            file.lock_shared().ctx("locking", &path)?;
        }
        Ok(LockGuard { file })
    }

    fn lock_index(&self) -> Result<LockGuard> {
        self.lock("index.lock", true)
    }

    /// Held (shared) by anything that writes blobs it has not yet linked from the index, so a
    /// concurrent garbage collection (exclusive) cannot sweep them.
    pub fn writer_lock(&self) -> Result<LockGuard> {
        self.lock("gc.lock", false)
    }

    /// Held by garbage collection and checks that need a quiet store.
    pub fn gc_lock(&self) -> Result<LockGuard> {
        self.lock("gc.lock", true)
    }

    /// The index entries (one per tag, plus untagged "dangling" images).
    pub fn read_index(&self) -> Result<Vec<Descriptor>> {
        let path = self.index_path();
        let bytes = fs::read(&path).ctx("reading", &path)?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::corrupt(path.display().to_string(), e))?;
        Ok(index.manifests().clone())
    }

    /// Read-modify-write `index.json` under the index lock; the new file replaces the old one
    /// atomically, so readers (who take no lock) see either version, never a mix.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>) -> Result<T> {
        let _lock = self.lock_index()?;
        let mut entries = self.read_index()?;
        let before = entries.clone();
        let out = f(&mut entries)?;
        if entries != before {
            self.write_index(&entries)?;
        }
        Ok(out)
    }

    fn write_index(&self, entries: &[Descriptor]) -> Result<()> {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(entries.to_vec())
            .build()
            .map_err(|e| StoreError::invalid("index", e.to_string()))?;
        let bytes =
            serde_json::to_vec(&index).map_err(|e| StoreError::invalid("index", e.to_string()))?;
        self.write_atomic(&self.index_path(), &bytes)
    }

    /// Write a small file via temp + fsync + rename.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::with_prefix_in(".tmp-", dir)
            .ctx("creating temp file in", dir)?;
        tmp.write_all(bytes)
            .ctx("writing", tmp.path().to_path_buf())?;
        tmp.as_file().sync_all().ctx("syncing", path)?;
        tmp.persist(path)
            .map_err(|e| StoreError::io("replacing", path, e.error))?;
        sync_dir(dir)
    }

    /// Bytes used under the root (blobs and snapshots counted by their files' sizes).
    pub fn disk_usage(&self) -> io::Result<u64> {
        fn walk(p: &Path, total: &mut u64) -> io::Result<()> {
            for e in fs::read_dir(p)? {
                let e = e?;
                let m = e.metadata()?;
                if m.is_dir() {
                    walk(&e.path(), total)?;
                } else {
                    *total += m.len();
                }
            }
            Ok(())
        }
        let mut total = 0;
        walk(&self.root, &mut total)?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_an_oci_layout() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path().join("root")).unwrap();
        let layout = fs::read_to_string(s.layout_dir().join("oci-layout")).unwrap();
        assert!(layout.contains("imageLayoutVersion"));
        let idx: serde_json::Value =
            serde_json::from_slice(&fs::read(s.index_path()).unwrap()).unwrap();
        assert_eq!(idx["schemaVersion"], 2);
        assert_eq!(idx["manifests"], serde_json::json!([]));
        assert!(s.read_index().unwrap().is_empty());
    }
}
