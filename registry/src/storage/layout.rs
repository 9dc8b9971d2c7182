//! Where the filesystem backend keeps each thing (see `fs.rs` for the layout), and the small
//! file operations it is built from: atomic writes, publishing a verified blob, links, offsets.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Digest, DigestAlgorithm};
use uuid::Uuid;

use super::hash::{Hasher, alg_dir};
use super::{StorageError, StorageResult};
use crate::endpoint::{Name, parse_digest};

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            path: PathBuf::new(),
            source: io::Error::other(e),
        })?
}

pub(super) fn not_found_is_none<T>(r: io::Result<T>, path: &Path) -> StorageResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(path)(e)),
    }
}

pub(super) fn remove_if_exists(path: &Path) -> StorageResult<bool> {
    Ok(not_found_is_none(fs::remove_file(path), path)?.is_some())
}

/// Paths of the layout; cheap to clone into blocking tasks.
#[derive(Clone)]
pub(super) struct Layout {
    pub(super) root: PathBuf,
}

impl Layout {
    pub(super) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub(super) fn blob(&self, d: &Digest) -> PathBuf {
        let h = d.digest();
        self.root
            .join("blobs")
            .join(alg_dir(d))
            .join(&h[..2])
            .join(h)
    }
    pub(super) fn repo(&self, r: &Name) -> PathBuf {
        self.root.join("repositories").join(r.as_str())
    }
    pub(super) fn layer_link(&self, r: &Name, d: &Digest) -> PathBuf {
        self.repo(r)
            .join("_layers")
            .join(alg_dir(d))
            .join(d.digest())
    }
    pub(super) fn revision(&self, r: &Name, d: &Digest) -> PathBuf {
        self.repo(r)
            .join("_manifests/revisions")
            .join(alg_dir(d))
            .join(d.digest())
    }
    pub(super) fn tags_dir(&self, r: &Name) -> PathBuf {
        self.repo(r).join("_manifests/tags")
    }
    pub(super) fn referrers_dir(&self, r: &Name, subject: &Digest) -> PathBuf {
        self.repo(r)
            .join("_referrers")
            .join(alg_dir(subject))
            .join(subject.digest())
    }
    pub(super) fn upload(&self, r: &Name, id: Uuid) -> PathBuf {
        self.repo(r)
            .join("_uploads")
            .join(id.hyphenated().to_string())
    }

    /// Write `bytes` to `path` atomically: temp file in `tmp/`, fsync, rename.
    pub(super) fn atomic_write(&self, path: &Path, bytes: &[u8]) -> StorageResult<()> {
        let parent = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(io_at(parent))?;
        let tmp = self.tmp();
        let mut f = tempfile::NamedTempFile::new_in(&tmp).map_err(io_at(&tmp))?;
        f.write_all(bytes).map_err(io_at(f.path()))?;
        f.as_file().sync_all().map_err(io_at(path))?;
        f.persist(path).map_err(|e| io_at(path)(e.error))?;
        Ok(())
    }

    /// Publish a verified file as blob `d` (a concurrent identical publish is harmless).
    pub(super) fn publish(&self, from: &Path, d: &Digest) -> StorageResult<()> {
        let dest = self.blob(d);
        if dest.exists() {
            return remove_if_exists(from).map(|_| ());
        }
        let parent = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(io_at(parent))?;
        fs::rename(from, &dest).map_err(io_at(&dest))
    }

    pub(super) fn link(&self, r: &Name, d: &Digest) -> StorageResult<()> {
        let l = self.layer_link(r, d);
        if l.exists() {
            return Ok(());
        }
        self.atomic_write(&l, d.to_string().as_bytes())
    }

    pub(super) fn read_digest_file(&self, path: &Path) -> StorageResult<Option<Digest>> {
        let Some(s) = not_found_is_none(fs::read_to_string(path), path)? else {
            return Ok(None);
        };
        parse_digest(s.trim())
            .map(Some)
            .map_err(|e| StorageError::Corrupt {
                path: path.to_path_buf(),
                reason: e.message,
            })
    }

    pub(super) fn read_offset(&self, dir: &Path) -> StorageResult<Option<u64>> {
        let p = dir.join("state");
        let Some(s) = not_found_is_none(fs::read_to_string(&p), &p)? else {
            return Ok(None);
        };
        s.trim()
            .parse()
            .map(Some)
            .map_err(|_| StorageError::Corrupt {
                path: p,
                reason: format!("bad offset {s:?}"),
            })
    }

    /// Hash the first `len` bytes of a session's data file in `alg` (after a restart, or to
    /// finish in another algorithm than the one hashed as chunks arrived).
    pub(super) fn rehash(
        &self,
        data: &Path,
        len: u64,
        alg: &DigestAlgorithm,
    ) -> StorageResult<Hasher> {
        let f = File::open(data).map_err(io_at(data))?;
        let mut h = Hasher::new(alg);
        let mut r = f.take(len);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).map_err(io_at(data))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h)
    }
}
