//! The filesystem backend. Layout under the storage root:
//!
//! ```text
//! blobs/sha256/<hh>/<hex>                                  blob bytes, shared by all repositories
//! repositories/<name>/_layers/sha256/<hex>                 blob linked into <name>
//! repositories/<name>/_manifests/revisions/sha256/<hex>    manifest in <name>; holds its media type
//! repositories/<name>/_manifests/tags/<tag>                holds the tagged digest
//! repositories/<name>/_referrers/sha256/<subject>/<hex>    descriptor reported by the referrers API
//! repositories/<name>/_uploads/<uuid>/{state,data}         upload session: offset, bytes so far
//! tmp/                                                     temp files, renamed into place
//! ```
//!
//! Names never contain a component starting with `_`, so the `_…` directories cannot collide
//! with a nested repository. Every file is written to `tmp/`, fsynced and renamed; session data is
//! fsynced before its state file records the new offset, so a crash loses at most the chunk in
//! flight and never publishes a partial blob.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_spec::image::{Descriptor, Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::hash::Hasher;
use super::layout::{Layout, blocking, io_at, not_found_is_none, remove_if_exists};
use super::sink::write_stream;
use super::{
    BlobRead, ByteStream, NewManifest, Storage, StorageError, StorageResult, StoredManifest,
    subject_of,
};
use crate::endpoint::{Name, Reference, Tag, parse_digest};

/// An upload's in-memory hash state: valid only while it covers exactly `offset` bytes. After a
/// restart it is rebuilt by hashing the session's data file once.
type SessionHash = Option<(u64, Hasher)>;

pub struct FsStorage {
    root: PathBuf,
    sessions: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<SessionHash>>>>,
}

impl FsStorage {
    /// Open (creating if needed) a storage root, removing stale temp files.
    pub fn open(root: &Path) -> StorageResult<FsStorage> {
        for d in ["blobs/sha256", "repositories"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        // Temp files a crash left behind; recent ones may belong to another server sharing
        // this storage, so only old ones go.
        for e in fs::read_dir(&tmp).map_err(io_at(&tmp))?.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600));
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(FsStorage {
            root: root.to_path_buf(),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Remove upload sessions untouched for longer than `max_age` (clients that never finished
    /// or cancelled). Returns how many were removed.
    pub fn purge_stale_uploads(&self, max_age: std::time::Duration) -> StorageResult<usize> {
        let base = self.root.join("repositories");
        let mut removed = 0;
        let mut stack = vec![base];
        while let Some(dir) = stack.pop() {
            let Some(entries) = not_found_is_none(fs::read_dir(&dir), &dir)? else {
                continue;
            };
            for e in entries {
                let e = e.map_err(io_at(&dir))?;
                if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                if e.file_name() != "_uploads" {
                    if !e.file_name().to_string_lossy().starts_with('_') {
                        stack.push(e.path());
                    }
                    continue;
                }
                let uploads = e.path();
                for s in fs::read_dir(&uploads).map_err(io_at(&uploads))? {
                    let session = s.map_err(io_at(&uploads))?.path();
                    let touched = fs::metadata(session.join("state"))
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if touched.is_none_or(|age| age > max_age) {
                        fs::remove_dir_all(&session).map_err(io_at(&session))?;
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    fn layout(&self) -> Layout {
        Layout {
            root: self.root.clone(),
        }
    }

    fn session(&self, id: Uuid) -> Arc<tokio::sync::Mutex<SessionHash>> {
        let mut m = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id).or_default().clone()
    }

    fn forget_session(&self, id: Uuid) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

impl Storage for FsStorage {
    async fn blob_size(&self, repo: &Name, digest: &Digest) -> StorageResult<Option<u64>> {
        let (l, repo, d) = (self.layout(), repo.clone(), digest.clone());
        blocking(move || {
            if !l.layer_link(&repo, &d).exists() {
                return Ok(None);
            }
            let p = l.blob(&d);
            Ok(not_found_is_none(fs::metadata(&p), &p)?.map(|m| m.len()))
        })
        .await
    }

    async fn blob_open(
        &self,
        repo: &Name,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<BlobRead>> {
        let (l, repo, d) = (self.layout(), repo.clone(), digest.clone());
        blocking(move || {
            if !l.layer_link(&repo, &d).exists() {
                return Ok(None);
            }
            let p = l.blob(&d);
            let Some(mut f) = not_found_is_none(File::open(&p), &p)? else {
                return Ok(None);
            };
            let size = f.metadata().map_err(io_at(&p))?.len();
            f.seek(SeekFrom::Start(start.min(size)))
                .map_err(io_at(&p))?;
            let start = start.min(size);
            Ok(Some(BlobRead {
                size,
                body: super::chunks::file_chunks(f, start, len.min(size - start)),
            }))
        })
        .await
    }

    async fn blob_mount(&self, repo: &Name, from: &Name, digest: &Digest) -> StorageResult<bool> {
        let (l, repo, from, d) = (self.layout(), repo.clone(), from.clone(), digest.clone());
        blocking(move || {
            if !l.layer_link(&from, &d).exists() || !l.blob(&d).exists() {
                return Ok(false);
            }
            l.link(&repo, &d)?;
            Ok(true)
        })
        .await
    }

    async fn blob_delete(&self, repo: &Name, digest: &Digest) -> StorageResult<bool> {
        let (l, repo, d) = (self.layout(), repo.clone(), digest.clone());
        blocking(move || remove_if_exists(&l.layer_link(&repo, &d))).await
    }

    async fn blob_put(
        &self,
        repo: &Name,
        digest: &Digest,
        body: ByteStream,
        len: Option<u64>,
    ) -> StorageResult<u64> {
        let l = self.layout();
        let tmp_dir = l.tmp();
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_at(&tmp_dir))?;
        let file = tmp.as_file().try_clone().map_err(io_at(tmp.path()))?;
        let (file, hasher, total) =
            write_stream(file, Hasher::for_digest(digest), body, tmp.path()).await?;
        if let Some(expected) = len.filter(|&e| e != total) {
            return Err(StorageError::SizeMismatch {
                expected,
                actual: total,
            });
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let (repo, d) = (repo.clone(), digest.clone());
        blocking(move || {
            file.sync_all().map_err(io_at(tmp.path()))?;
            let (_, path) = tmp.keep().map_err(|e| io_at(&l.tmp())(e.error))?;
            l.publish(&path, &d)?;
            l.link(&repo, &d)?;
            Ok(total)
        })
        .await
    }

    async fn upload_start(&self, repo: &Name) -> StorageResult<Uuid> {
        let (l, repo) = (self.layout(), repo.clone());
        let id = Uuid::new_v4();
        blocking(move || {
            let dir = l.upload(&repo, id);
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            let data = dir.join("data");
            File::create(&data).map_err(io_at(&data))?;
            l.atomic_write(&dir.join("state"), b"0")?;
            Ok(id)
        })
        .await
    }

    async fn upload_offset(&self, repo: &Name, id: Uuid) -> StorageResult<Option<u64>> {
        let (l, repo) = (self.layout(), repo.clone());
        blocking(move || l.read_offset(&l.upload(&repo, id))).await
    }

    async fn upload_append(
        &self,
        repo: &Name,
        id: Uuid,
        start: Option<u64>,
        body: ByteStream,
        len: Option<u64>,
    ) -> StorageResult<u64> {
        let session = self.session(id);
        let mut guard = session.lock().await;
        let l = self.layout();
        let dir = l.upload(repo, id);
        let (l2, dir2) = (l.clone(), dir.clone());
        let cached = guard.take();
        let (offset, hasher, file) = blocking(move || {
            let offset = l2
                .read_offset(&dir2)?
                .ok_or(StorageError::UploadUnknown(id))?;
            if let Some(start) = start.filter(|&s| s != offset) {
                return Err(StorageError::RangeMismatch { start, offset });
            }
            let data = dir2.join("data");
            let hasher = match cached {
                Some((o, h)) if o == offset => h,
                _ => l2.rehash(&data, offset, &DigestAlgorithm::Sha256)?,
            };
            let mut f = OpenOptions::new()
                .write(true)
                .open(&data)
                .map_err(io_at(&data))?;
            // Bytes past the recorded offset are a chunk a crash interrupted: drop them.
            f.set_len(offset).map_err(io_at(&data))?;
            f.seek(SeekFrom::Start(offset)).map_err(io_at(&data))?;
            Ok((offset, hasher, f))
        })
        .await?;
        let data = dir.join("data");
        let saved = hasher.clone();
        let res = write_stream(file, hasher, body, &data).await;
        let failed = match &res {
            Ok((_, _, total)) => {
                len.filter(|&e| e != *total)
                    .map(|expected| StorageError::SizeMismatch {
                        expected,
                        actual: *total,
                    })
            }
            Err(_) => None,
        };
        let outcome = match res {
            Err(e) => Err(e),
            Ok(_) if failed.is_some() => Err(failed.expect("checked")),
            Ok(ok) => Ok(ok),
        };
        match outcome {
            Err(e) => {
                let d2 = data.clone();
                blocking(move || {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&d2)
                        .map_err(io_at(&d2))?;
                    f.set_len(offset).map_err(io_at(&d2))
                })
                .await?;
                *guard = Some((offset, saved));
                Err(e)
            }
            Ok((file, hasher, total)) => {
                let new = offset + total;
                blocking(move || {
                    file.sync_all().map_err(io_at(&data))?;
                    l.atomic_write(&dir.join("state"), new.to_string().as_bytes())
                })
                .await?;
                *guard = Some((new, hasher));
                Ok(new)
            }
        }
    }

    async fn upload_finish(&self, repo: &Name, id: Uuid, digest: &Digest) -> StorageResult<u64> {
        let session = self.session(id);
        let mut guard = session.lock().await;
        let (l, repo2, d) = (self.layout(), repo.clone(), digest.clone());
        let cached = guard.take();
        // Returns the outcome and, when the session stays open, its hash state to keep.
        let res = tokio::task::spawn_blocking(move || -> (StorageResult<u64>, SessionHash) {
            let dir = l.upload(&repo2, id);
            let offset = match l.read_offset(&dir) {
                Ok(Some(o)) => o,
                Ok(None) => return (Err(StorageError::UploadUnknown(id)), None),
                Err(e) => return (Err(e), None),
            };
            let data = dir.join("data");
            // Chunks are hashed in sha256 as they arrive; another algorithm reads them again.
            let hasher = match cached {
                Some((o, h)) if o == offset && h.algorithm() == *d.algorithm() => h,
                _ => match l.rehash(&data, offset, d.algorithm()) {
                    Ok(h) => h,
                    Err(e) => return (Err(e), None),
                },
            };
            let actual = hasher.clone().finish();
            if actual != d {
                return (
                    Err(StorageError::DigestMismatch {
                        expected: d,
                        actual,
                    }),
                    Some((offset, hasher)),
                );
            }
            let fin = || -> StorageResult<u64> {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&data)
                    .map_err(io_at(&data))?;
                f.set_len(offset).map_err(io_at(&data))?;
                f.sync_all().map_err(io_at(&data))?;
                l.publish(&data, &d)?;
                l.link(&repo2, &d)?;
                fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
                Ok(offset)
            };
            (fin(), None)
        })
        .await;
        let (res, keep) = res.unwrap_or_else(|e| {
            (
                Err(StorageError::Io {
                    path: PathBuf::new(),
                    source: io::Error::other(e),
                }),
                None,
            )
        });
        match res {
            Ok(n) => {
                drop(guard);
                self.forget_session(id);
                Ok(n)
            }
            Err(e) => {
                *guard = keep;
                Err(e)
            }
        }
    }

    async fn upload_cancel(&self, repo: &Name, id: Uuid) -> StorageResult<bool> {
        let session = self.session(id);
        let guard = session.lock().await;
        let (l, repo2) = (self.layout(), repo.clone());
        let existed = blocking(move || {
            let dir = l.upload(&repo2, id);
            if l.read_offset(&dir)?.is_none() {
                return Ok(false);
            }
            fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
            Ok(true)
        })
        .await?;
        drop(guard);
        self.forget_session(id);
        Ok(existed)
    }

    async fn manifest_get(
        &self,
        repo: &Name,
        reference: &Reference,
    ) -> StorageResult<Option<StoredManifest>> {
        let (l, repo, reference) = (self.layout(), repo.clone(), reference.clone());
        blocking(move || {
            let digest = match reference {
                Reference::Digest(d) => d,
                Reference::Tag(t) => {
                    match l.read_digest_file(&l.tags_dir(&repo).join(t.as_str()))? {
                        Some(d) => d,
                        None => return Ok(None),
                    }
                }
            };
            let rev = l.revision(&repo, &digest);
            let Some(media_type) = not_found_is_none(fs::read_to_string(&rev), &rev)? else {
                return Ok(None);
            };
            let p = l.blob(&digest);
            let Some(bytes) = not_found_is_none(fs::read(&p), &p)? else {
                return Ok(None);
            };
            Ok(Some(StoredManifest {
                digest,
                media_type,
                bytes: bytes.into(),
            }))
        })
        .await
    }

    async fn manifest_exists(&self, repo: &Name, digest: &Digest) -> StorageResult<bool> {
        let (l, repo, d) = (self.layout(), repo.clone(), digest.clone());
        blocking(move || Ok(l.revision(&repo, &d).exists())).await
    }

    async fn manifest_put(&self, repo: &Name, m: NewManifest, tags: Vec<Tag>) -> StorageResult<()> {
        let (l, repo) = (self.layout(), repo.clone());
        blocking(move || {
            if !l.blob(&m.digest).exists() {
                l.atomic_write(&l.blob(&m.digest), &m.bytes)?;
            }
            l.atomic_write(&l.revision(&repo, &m.digest), m.media_type.as_bytes())?;
            if let Some((subject, desc)) = &m.subject {
                let json = serde_json::to_vec(desc).map_err(|e| StorageError::Io {
                    path: l.referrers_dir(&repo, subject),
                    source: io::Error::other(e),
                })?;
                l.atomic_write(
                    &l.referrers_dir(&repo, subject).join(m.digest.digest()),
                    &json,
                )?;
            }
            for t in tags {
                l.atomic_write(
                    &l.tags_dir(&repo).join(t.as_str()),
                    m.digest.to_string().as_bytes(),
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn manifest_delete(&self, repo: &Name, digest: &Digest) -> StorageResult<bool> {
        let (l, repo, d) = (self.layout(), repo.clone(), digest.clone());
        blocking(move || {
            let rev = l.revision(&repo, &d);
            if !rev.exists() {
                return Ok(false);
            }
            // Drop its referrers entry, if it had a subject.
            if let Ok(bytes) = fs::read(l.blob(&d))
                && let Some(s) = subject_of(&bytes)
            {
                remove_if_exists(&l.referrers_dir(&repo, &s).join(d.digest()))?;
            }
            let tags = l.tags_dir(&repo);
            if let Some(entries) = not_found_is_none(fs::read_dir(&tags), &tags)? {
                for e in entries {
                    let p = e.map_err(io_at(&tags))?.path();
                    if l.read_digest_file(&p)?.as_ref() == Some(&d) {
                        remove_if_exists(&p)?;
                    }
                }
            }
            remove_if_exists(&rev)
        })
        .await
    }

    async fn tag_delete(&self, repo: &Name, tag: &Tag) -> StorageResult<bool> {
        let (l, repo, tag) = (self.layout(), repo.clone(), tag.clone());
        blocking(move || remove_if_exists(&l.tags_dir(&repo).join(tag.as_str()))).await
    }

    async fn tags(&self, repo: &Name) -> StorageResult<Option<Vec<String>>> {
        let (l, repo) = (self.layout(), repo.clone());
        blocking(move || {
            let dir = l.repo(&repo);
            if !dir.join("_manifests").is_dir() && !dir.join("_layers").is_dir() {
                return Ok(None);
            }
            let tags = l.tags_dir(&repo);
            let mut out = Vec::new();
            if let Some(entries) = not_found_is_none(fs::read_dir(&tags), &tags)? {
                for e in entries {
                    let e = e.map_err(io_at(&tags))?;
                    if let Some(n) = e.file_name().to_str() {
                        out.push(n.to_string());
                    }
                }
            }
            out.sort();
            Ok(Some(out))
        })
        .await
    }

    async fn repositories(&self) -> StorageResult<Vec<String>> {
        let l = self.layout();
        blocking(move || {
            let mut out = Vec::new();
            let base = l.root.join("repositories");
            let mut stack = vec![(base.clone(), String::new())];
            while let Some((dir, name)) = stack.pop() {
                let Some(entries) = not_found_is_none(fs::read_dir(&dir), &dir)? else {
                    continue;
                };
                let mut is_repo = false;
                for e in entries {
                    let e = e.map_err(io_at(&dir))?;
                    let Some(n) = e.file_name().to_str().map(str::to_string) else {
                        continue;
                    };
                    if n == "_manifests" || n == "_layers" {
                        is_repo = true;
                    } else if !n.starts_with('_')
                        && e.file_type().map(|t| t.is_dir()).unwrap_or(false)
                    {
                        let child = if name.is_empty() {
                            n.clone()
                        } else {
                            format!("{name}/{n}")
                        };
                        stack.push((e.path(), child));
                    }
                }
                if is_repo && !name.is_empty() {
                    out.push(name);
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn referrers(&self, repo: &Name, digest: &Digest) -> StorageResult<Vec<Descriptor>> {
        let (l, repo, d) = (self.layout(), repo.clone(), digest.clone());
        blocking(move || {
            let dir = l.referrers_dir(&repo, &d);
            let mut out: Vec<Descriptor> = Vec::new();
            let Some(entries) = not_found_is_none(fs::read_dir(&dir), &dir)? else {
                return Ok(out);
            };
            for e in entries {
                let p = e.map_err(io_at(&dir))?.path();
                let bytes = fs::read(&p).map_err(io_at(&p))?;
                let desc: Descriptor =
                    serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                        path: p.clone(),
                        reason: e.to_string(),
                    })?;
                if l.revision(&repo, desc.digest()).exists() {
                    out.push(desc);
                }
            }
            out.sort_by_key(|d| d.digest().to_string());
            Ok(out)
        })
        .await
    }
}

pub fn from_hasher(h: Sha256) -> Digest {
    let hex = hex::encode(h.finalize());
    parse_digest(&format!("sha256:{hex}")).expect("a sha256 hex string is a valid digest")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[tokio::test]
    async fn stale_uploads_are_purged() {
        let dir = tempfile::TempDir::new().unwrap();
        let st = FsStorage::open(dir.path()).unwrap();
        let repo = Name::parse("a/b").unwrap();
        let old = st.upload_start(&repo).await.unwrap();
        let fresh = st.upload_start(&repo).await.unwrap();
        let state = Layout {
            root: dir.path().to_path_buf(),
        }
        .upload(&repo, old)
        .join("state");
        let f = File::options().write(true).open(&state).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3 * 86400))
            .unwrap();
        assert_eq!(
            st.purge_stale_uploads(Duration::from_secs(86400)).unwrap(),
            1
        );
        assert_eq!(st.upload_offset(&repo, old).await.unwrap(), None);
        assert_eq!(st.upload_offset(&repo, fresh).await.unwrap(), Some(0));
    }
}
