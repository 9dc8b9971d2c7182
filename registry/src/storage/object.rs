//! The object-storage backend: everything in one bucket (S3, Azure or GCS, opened by
//! `cloud.rs`; the code only sees `Arc<dyn ObjectStore>` + `Arc<dyn MultipartStore>`), so
//! any number of stateless replicas serve the same registry. Keys under the prefix mirror the
//! filesystem layout (`fs.rs`), which lets `berth registry gc` share its mark logic:
//!
//! ```text
//! blobs/sha256/<hh>/<hex>                                  blob bytes, inline (written only once verified)
//! blobs/ref/sha256/<hh>/<hex>                              blob descriptor: {"data": <uuid>, "size": n}
//! blobs/data/<uuid>                                        a descriptor's bytes (an upload's multipart)
//! repositories/<name>/_layers/sha256/<hex>                 link: holds the digest
//! repositories/<name>/_manifests/revisions/sha256/<hex>    "<media type>\n" + the manifest bytes
//! repositories/<name>/_manifests/tags/<tag>                holds the tagged digest
//! repositories/<name>/_referrers/sha256/<subject>/<hex>    descriptor for the referrers API
//! repositories/<name>/_uploads/<uuid>/state                session: parts, offset, hash state
//! repositories/<name>/_uploads/<uuid>/tail-<offset>        the bytes past the last full part
//! repositories/<name>/_uploads/<uuid>/data                 multipart of a session begun before blobs/data
//! ```
//!
//! `sha256` is the digest algorithm: sha512 digests live beside, under `sha512`. An upload
//! session hashes in one algorithm as its chunks arrive (sha256, or the `digest-algorithm` it
//! was opened with): its parts cannot be read back before the finish completes them.
//!
//! Reads never list: a HEAD is two HEADs (link, blob), a manifest GET by digest one GET (the
//! revision holds the bytes), by tag two. An upload session lives in the bucket, not in a
//! process: every full part of every chunk goes straight into one multipart upload; the rest
//! (< one part) is kept as the tail object; the SHA-256 state is serialised into the state
//! object. Any replica can therefore take the next PATCH or the final PUT, and a replica killed
//! mid-chunk loses only that chunk (its state was never updated). The state object is replaced
//! with a conditional put, so two replicas appending to one session at once cannot both win.
//! Finishing verifies the digest from the saved hash state, completes the multipart upload at
//! `blobs/data/<session uuid>` and then publishes the blob by creating its descriptor (create if
//! absent: of two sessions finishing the same blob one wins, the other deletes its data). No
//! server-side copy: S3 copies at ~its disk speed and only up to 5 GiB in one request.
//!
//! A blob is therefore stored either inline (the monolithic PUT, blobs smaller than a part,
//! manifests, and every blob of buckets written before descriptors existed) or by descriptor;
//! reads look at the inline key first, then the descriptor, so a blob whose own bytes look like
//! a descriptor is never taken for one. Both are looked up at once (a HEAD and a GET of a small
//! object, never a list). gc treats a data object as live while a descriptor names it or its
//! session exists; an orphan (a finish that crashed before its descriptor) goes after the grace.
//!
//! A blob GET is handed to the object store when the bucket has a signer (`redirect`, on by
//! default for S3 as in distribution): the registry answers with a presigned GET URL of the
//! object that holds the bytes — the inline key or the descriptor's data object — and the
//! client's `Range` goes there. If signing fails the registry streams the blob as before.

use crate::storage::hash::Hasher;
use bytes::Bytes;
use futures::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use oci_spec::image::{Descriptor, Digest, DigestAlgorithm};
use uuid::Uuid;

use super::parts::{Hashing, PartBuf, PartWriter, store_err};
use super::{
    BlobLocation, BlobRead, ByteStream, NewManifest, Storage, StorageError, StorageResult,
    StoredManifest, subject_of,
};
use crate::endpoint::{Name, Reference, Tag, parse_digest};

pub(super) use super::bucket::BlobRef;
use super::bucket::{AbortOnDrop, PREFETCH, READ_WINDOW, Session, Stored, corrupt, read_window};
pub use super::bucket::{Bucket, REDIRECT_VALIDITY};

pub struct ObjectStorage {
    b: Bucket,
    part_size: usize,
}

impl ObjectStorage {
    /// A backend over `bucket`. `part_size` is the multipart part size (S3 needs ≥ 5 MiB; tests
    /// of the in-memory store use tiny parts).
    pub fn new(bucket: Bucket, part_size: usize) -> ObjectStorage {
        ObjectStorage {
            b: bucket,
            part_size,
        }
    }

    pub fn bucket(&self) -> &Bucket {
        &self.b
    }

    async fn linked(&self, repo: &Name, d: &Digest) -> StorageResult<bool> {
        Ok(self.b.size(&self.b.link(repo, d)).await?.is_some())
    }

    async fn write_link(&self, repo: &Name, d: &Digest) -> StorageResult<()> {
        self.b.put(&self.b.link(repo, d), d.to_string()).await
    }

    /// Store verified bytes as blob `d` unless it is stored already.
    async fn publish_small(&self, d: &Digest, bytes: Bytes) -> StorageResult<()> {
        let len = bytes.len() as u64;
        if self.b.stored(d).await?.map(|s| s.size()) == Some(len) {
            return Ok(());
        }
        match self.b.put(&self.b.blob(d), bytes).await {
            Ok(()) => Ok(()),
            // Writers of one digest write the same bytes: when the store failed this PUT
            // (stores answer concurrent writes of one key with 409 or 500 at times) but the
            // blob is there now, it is published all the same.
            Err(e) => match self.b.stored(d).await {
                Ok(Some(s)) if s.size() == len => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Publish blob `d` as the data object of session `data` by creating its descriptor, unless
    /// one exists already (another session of the same blob finished first). True when the
    /// descriptor names `data`: false tells the caller to delete its data object.
    async fn publish_ref(&self, d: &Digest, data: Uuid, size: u64) -> StorageResult<bool> {
        let key = self.b.blob_ref(d);
        let json = serde_json::to_vec(&BlobRef { data, size }).map_err(|e| corrupt(&key, e))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.b.store.put_opts(&key, json.into(), opts).await {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                // Lost the race — or won it with a response lost and the request retried: the
                // descriptor says which.
                let Some(raw) = self.b.read(&key).await? else {
                    return Err(corrupt(
                        &key,
                        "the descriptor vanished while it was created",
                    ));
                };
                let r: BlobRef = serde_json::from_slice(&raw).map_err(|e| corrupt(&key, e))?;
                Ok(r.data == data)
            }
            Err(e) => Err(store_err(&key, e)),
        }
    }

    /// Size of `digest` if it is stored and linked into `repo`.
    async fn linked_blob(&self, repo: &Name, digest: &Digest) -> StorageResult<Option<Stored>> {
        let (linked, stored) =
            futures::try_join!(self.linked(repo, digest), self.b.stored(digest))?;
        Ok(stored.filter(|_| linked))
    }

    /// A presigned GET URL of `key`, or None (no signer, or signing failed: the caller streams).
    async fn presign(&self, key: &Key) -> Option<String> {
        let signer = self.b.signer.as_ref()?;
        match signer
            .signed_url(object_store::signer::Method::GET, key, REDIRECT_VALIDITY)
            .await
        {
            Ok(url) => Some(url.into()),
            Err(e) => {
                tracing::warn!("presigning a GET of {key}: {e}; streaming the blob instead");
                None
            }
        }
    }

    /// Where session `id`'s multipart upload writes.
    fn session_data(&self, repo: &Name, id: Uuid, s: &Session) -> Key {
        if s.detached {
            self.b.data(id)
        } else {
            self.b.session_key(repo, id, "data")
        }
    }

    async fn read_revision(
        &self,
        repo: &Name,
        d: &Digest,
    ) -> StorageResult<Option<StoredManifest>> {
        let key = self.b.revision(repo, d);
        let Some(raw) = self.b.read(&key).await? else {
            return Ok(None);
        };
        let nl = raw
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| corrupt(&key, "no media type line"))?;
        let media_type = std::str::from_utf8(&raw[..nl])
            .map_err(|e| corrupt(&key, e))?
            .to_string();
        Ok(Some(StoredManifest {
            digest: d.clone(),
            media_type,
            bytes: raw.slice(nl + 1..),
        }))
    }

    async fn read_digest(&self, key: &Key) -> StorageResult<Option<Digest>> {
        let Some(raw) = self.b.read(key).await? else {
            return Ok(None);
        };
        let s = std::str::from_utf8(&raw).map_err(|e| corrupt(key, e))?;
        parse_digest(s.trim())
            .map(Some)
            .map_err(|e| corrupt(key, e.message))
    }

    /// The session's tail bytes (< one part), in a buffer of one part.
    async fn read_tail(
        &self,
        repo: &Name,
        id: Uuid,
        s: &Session,
        part_size: usize,
    ) -> StorageResult<PartBuf> {
        let mut buf = PartBuf::new(part_size)?;
        if s.tail > 0 {
            let key = self
                .b
                .session_key(repo, id, &format!("tail-{}", s.offset()));
            let bytes = self
                .b
                .read(&key)
                .await?
                .ok_or_else(|| corrupt(&key, "the session's tail is missing"))?;
            if bytes.len() as u64 != s.tail || bytes.len() >= part_size {
                return Err(corrupt(
                    &key,
                    format!("tail holds {} bytes, not {}", bytes.len(), s.tail),
                ));
            }
            buf.fill(&bytes);
        }
        Ok(buf)
    }

    /// Remove the session's objects; its data object too unless `published` (a descriptor
    /// names it now).
    async fn drop_session(
        &self,
        repo: &Name,
        id: Uuid,
        s: &Session,
        published: bool,
    ) -> StorageResult<()> {
        if let Some(m) = &s.multipart
            && !published
        {
            let data = self.session_data(repo, id, s);
            if let Err(e) = self.b.parts.abort_multipart(&data, m).await {
                tracing::debug!("aborting {data}: {e}");
            }
            self.b.delete(&data).await?;
        }
        if s.tail > 0 {
            let tail = self
                .b
                .session_key(repo, id, &format!("tail-{}", s.offset()));
            self.b.delete(&tail).await?;
        }
        self.b.delete(&self.b.session_key(repo, id, "state")).await
    }
}

impl Storage for ObjectStorage {
    async fn blob_size(&self, repo: &Name, digest: &Digest) -> StorageResult<Option<u64>> {
        Ok(self.linked_blob(repo, digest).await?.map(|s| s.size()))
    }

    async fn blob_locate(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> StorageResult<Option<BlobLocation>> {
        let Some(stored) = self.linked_blob(repo, digest).await? else {
            return Ok(None);
        };
        let (key, size) = self.b.object_of(digest, &stored);
        Ok(Some(BlobLocation {
            size,
            url: self.presign(&key).await,
        }))
    }

    async fn blob_open(
        &self,
        repo: &Name,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<BlobRead>> {
        let Some(stored) = self.linked_blob(repo, digest).await? else {
            return Ok(None);
        };
        let (key, size) = self.b.object_of(digest, &stored);
        let start = start.min(size);
        let end = start + len.min(size - start);
        let store = self.b.store.clone();
        let windows = (start..end)
            .step_by(READ_WINDOW as usize)
            .map(move |a| a..(a + READ_WINDOW).min(end));
        // Each window is fetched whole by its own task, PREFETCH at a time, so the next one
        // arrives from the store while the client takes this one: at most PREFETCH + 1 windows
        // in memory (one being sent), whatever the blob's size.
        let body = futures::stream::iter(windows)
            .map(move |r| {
                let (store, key) = (store.clone(), key.clone());
                AbortOnDrop(tokio::spawn(read_window(store, key, r)))
            })
            .buffered(PREFETCH)
            .map(|r| r.map_err(std::io::Error::other).and_then(|r| r));
        Ok(Some(BlobRead {
            size,
            body: Box::pin(body),
        }))
    }

    async fn blob_mount(&self, repo: &Name, from: &Name, digest: &Digest) -> StorageResult<bool> {
        if self.linked_blob(from, digest).await?.is_none() {
            return Ok(false);
        }
        self.write_link(repo, digest).await?;
        Ok(true)
    }

    async fn blob_delete(&self, repo: &Name, digest: &Digest) -> StorageResult<bool> {
        if !self.linked(repo, digest).await? {
            return Ok(false);
        }
        self.b.delete(&self.b.link(repo, digest)).await?;
        Ok(true)
    }

    async fn blob_put(
        &self,
        repo: &Name,
        digest: &Digest,
        body: ByteStream,
        len: Option<u64>,
    ) -> StorageResult<u64> {
        // Written straight to the blob key as a multipart upload, completed only once the
        // digest matched: until then none of it is visible.
        let key = self.b.blob(digest);
        let mut w = PartWriter::new(
            self.b.parts.clone(),
            key.clone(),
            self.part_size,
            None,
            0,
            PartBuf::new(self.part_size)?,
        );
        let mut hash = Hashing::new(Hasher::for_digest(digest));
        let res = async {
            let total = w.write(body, &mut hash).await?;
            if let Some(expected) = len.filter(|&e| e != total) {
                return Err(StorageError::SizeMismatch {
                    expected,
                    actual: total,
                });
            }
            let actual = hash.finish().await?.finish();
            if actual != *digest {
                return Err(StorageError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            Ok(total)
        }
        .await;
        let total = match res {
            Ok(t) => t,
            Err(e) => {
                w.abort().await;
                return Err(e);
            }
        };
        if w.multipart.is_none() {
            self.publish_small(digest, w.take_rest()).await?;
        } else {
            let rest = w.take_rest();
            let done = async {
                if !rest.is_empty() {
                    w.upload(rest).await?;
                }
                w.settle().await?;
                let id = w.multipart.clone().expect("multipart");
                self.b
                    .parts
                    .complete_multipart(&key, &id, std::mem::take(&mut w.done))
                    .await
                    .map_err(|e| store_err(&key, e))
            }
            .await;
            if let Err(e) = done {
                w.abort().await;
                return Err(e);
            }
        }
        self.write_link(repo, digest).await?;
        Ok(total)
    }

    async fn upload_start(&self, repo: &Name) -> StorageResult<Uuid> {
        self.upload_start_in(repo, &DigestAlgorithm::Sha256).await
    }

    // The session hashes in `alg` as its chunks arrive (its parts cannot be read back before
    // the finish completes them).
    async fn upload_start_in(&self, repo: &Name, alg: &DigestAlgorithm) -> StorageResult<Uuid> {
        let id = Uuid::new_v4();
        let mut s = Session {
            detached: true,
            multipart: None,
            parts: Vec::new(),
            part_size: self.part_size as u64,
            tail: 0,
            hash: String::new(),
            algorithm: None,
        };
        s.set_hasher(&Hasher::new(alg));
        let key = self.b.session_key(repo, id, "state");
        let json = serde_json::to_vec(&s).map_err(|e| corrupt(&key, e))?;
        self.b.put(&key, json).await?;
        Ok(id)
    }

    async fn upload_offset(&self, repo: &Name, id: Uuid) -> StorageResult<Option<u64>> {
        Ok(self.b.session(repo, id).await?.map(|(s, _)| s.offset()))
    }

    async fn upload_append(
        &self,
        repo: &Name,
        id: Uuid,
        start: Option<u64>,
        body: ByteStream,
        len: Option<u64>,
    ) -> StorageResult<u64> {
        let (mut s, version) = self
            .b
            .session(repo, id)
            .await?
            .ok_or(StorageError::UploadUnknown(id))?;
        let state_key = self.b.session_key(repo, id, "state");
        let offset = s.offset();
        if let Some(start) = start.filter(|&st| st != offset) {
            return Err(StorageError::RangeMismatch { start, offset });
        }
        if s.part_size as usize != self.part_size && !s.parts.is_empty() {
            // Parts already cut at another replica's size; keep cutting at that size.
            tracing::debug!("session {id} uses parts of {} bytes", s.part_size);
        }
        let part_size = if s.parts.is_empty() {
            // A tail left by a replica with larger parts still fits in one.
            self.part_size.max(s.tail as usize + 1)
        } else {
            s.part_size as usize
        };
        let buf = self.read_tail(repo, id, &s, part_size).await?;
        let mut hash = Hashing::new(s.hasher(&state_key)?);
        let mut w = PartWriter::new(
            self.b.parts.clone(),
            self.session_data(repo, id, &s),
            part_size,
            s.multipart.clone(),
            s.parts.len(),
            buf,
        );
        let res = async {
            let total = w.write(body, &mut hash).await?;
            if let Some(expected) = len.filter(|&e| e != total) {
                return Err(StorageError::SizeMismatch {
                    expected,
                    actual: total,
                });
            }
            w.settle().await?;
            Ok(total)
        }
        .await;
        let total = match res {
            Ok(t) => t,
            Err(e) => {
                // Nothing recorded: the parts written are overwritten by the retry.
                w.cancel_in_flight();
                return Err(e);
            }
        };
        if total == 0 {
            return Ok(offset);
        }
        let old_tail = (s.tail > 0).then(|| {
            self.b
                .session_key(repo, id, &format!("tail-{}", s.offset()))
        });
        s.multipart = w.multipart.clone();
        s.parts
            .extend(w.done.iter().map(|p: &PartId| p.content_id.clone()));
        s.part_size = part_size as u64;
        s.tail = w.rest_len() as u64;
        s.set_hasher(&hash.finish().await?);
        let new = s.offset();
        if s.tail > 0 {
            let tail = self.b.session_key(repo, id, &format!("tail-{new}"));
            self.b.put(&tail, w.take_rest()).await?;
        }
        let json = serde_json::to_vec(&s).map_err(|e| corrupt(&state_key, e))?;
        let opts = PutOptions {
            mode: PutMode::Update(version),
            ..PutOptions::default()
        };
        match self.b.store.put_opts(&state_key, json.into(), opts).await {
            Ok(_) => {}
            // Another replica appended to this session meanwhile: its chunk stands.
            Err(object_store::Error::Precondition { .. }) => {
                let now = self.upload_offset(repo, id).await?.unwrap_or(offset);
                return Err(StorageError::RangeMismatch {
                    start: offset,
                    offset: now,
                });
            }
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::UploadUnknown(id));
            }
            Err(e) => return Err(store_err(&state_key, e)),
        }
        if let Some(old) = old_tail
            && let Err(e) = self.b.delete(&old).await
        {
            tracing::debug!("removing an old tail: {e}");
        }
        Ok(new)
    }

    async fn upload_finish(&self, repo: &Name, id: Uuid, digest: &Digest) -> StorageResult<u64> {
        let (s, _) = self
            .b
            .session(repo, id)
            .await?
            .ok_or(StorageError::UploadUnknown(id))?;
        let state_key = self.b.session_key(repo, id, "state");
        let hasher = s.hasher(&state_key)?;
        if hasher.algorithm() != *digest.algorithm() {
            return Err(StorageError::AlgorithmMismatch {
                session: hasher.algorithm().to_string(),
                digest: digest.clone(),
                wanted: digest.algorithm().to_string(),
            });
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let size = s.offset();
        let stored = self.b.stored(digest).await?.map(|st| st.size()) == Some(size);
        // Whether a descriptor now names this session's data object (which must then stay).
        let mut published = false;
        if !stored {
            let tail = self
                .read_tail(repo, id, &s, s.part_size.max(s.tail + 1) as usize)
                .await?
                .freeze();
            match &s.multipart {
                None => self.b.put(&self.b.blob(digest), tail).await?,
                Some(m) => {
                    let data = self.session_data(repo, id, &s);
                    let mut parts: Vec<PartId> = s
                        .parts
                        .iter()
                        .map(|c| PartId {
                            content_id: c.clone(),
                        })
                        .collect();
                    let completed = async {
                        if !tail.is_empty() {
                            let p = self
                                .b
                                .parts
                                .put_part(&data, m, parts.len(), tail.into())
                                .await
                                .map_err(|e| store_err(&data, e))?;
                            parts.push(p);
                        }
                        self.b
                            .parts
                            .complete_multipart(&data, m, parts)
                            .await
                            .map_err(|e| store_err(&data, e))
                    }
                    .await;
                    if let Err(e) = completed {
                        // A finish retried after one that completed the upload and then died
                        // (or timed out): the data object is whole already.
                        if !s.detached || self.b.size(&data).await? != Some(size) {
                            return Err(e);
                        }
                        tracing::debug!("{data} was completed by an earlier attempt ({e})");
                    }
                    // Verified: now it may appear under its digest.
                    if s.detached {
                        published = self.publish_ref(digest, id, size).await?;
                    } else {
                        let blob = self.b.blob(digest);
                        self.b
                            .store
                            .copy(&data, &blob)
                            .await
                            .map_err(|e| store_err(&blob, e))?;
                    }
                }
            }
        }
        self.write_link(repo, digest).await?;
        if let Err(e) = self.drop_session(repo, id, &s, published).await {
            tracing::warn!("removing finished upload session {id}: {e}");
        }
        Ok(size)
    }

    async fn upload_cancel(&self, repo: &Name, id: Uuid) -> StorageResult<bool> {
        let Some((s, _)) = self.b.session(repo, id).await? else {
            return Ok(false);
        };
        self.drop_session(repo, id, &s, false).await?;
        Ok(true)
    }

    async fn manifest_get(
        &self,
        repo: &Name,
        reference: &Reference,
    ) -> StorageResult<Option<StoredManifest>> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                let key = self.b.key(&format!(
                    "{}/_manifests/tags/{}",
                    self.b.repo(repo),
                    t.as_str()
                ));
                match self.read_digest(&key).await? {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
        };
        self.read_revision(repo, &digest).await
    }

    async fn manifest_exists(&self, repo: &Name, digest: &Digest) -> StorageResult<bool> {
        Ok(self.b.size(&self.b.revision(repo, digest)).await?.is_some())
    }

    async fn manifest_put(&self, repo: &Name, m: NewManifest, tags: Vec<Tag>) -> StorageResult<()> {
        // Blob, revision, referrer, then tags: a tag is only ever written after what it names.
        self.publish_small(&m.digest, m.bytes.clone()).await?;
        let mut rev = Vec::with_capacity(m.media_type.len() + 1 + m.bytes.len());
        rev.extend_from_slice(m.media_type.as_bytes());
        rev.push(b'\n');
        rev.extend_from_slice(&m.bytes);
        self.b.put(&self.b.revision(repo, &m.digest), rev).await?;
        if let Some((subject, desc)) = &m.subject {
            let dir = self.b.referrers_dir(repo, subject);
            let json = serde_json::to_vec(desc).map_err(|e| corrupt(&dir, e))?;
            let key = Key::from(format!("{dir}/{}", m.digest.digest()));
            self.b.put(&key, json).await?;
        }
        for t in tags {
            let key = self.b.key(&format!(
                "{}/_manifests/tags/{}",
                self.b.repo(repo),
                t.as_str()
            ));
            self.b.put(&key, m.digest.to_string()).await?;
        }
        Ok(())
    }

    async fn manifest_delete(&self, repo: &Name, digest: &Digest) -> StorageResult<bool> {
        let Some(m) = self.read_revision(repo, digest).await? else {
            return Ok(false);
        };
        if let Some(s) = subject_of(&m.bytes) {
            let dir = self.b.referrers_dir(repo, &s);
            self.b
                .delete(&Key::from(format!("{dir}/{}", digest.digest())))
                .await?;
        }
        for o in self.b.leaves(&self.b.tags_dir(repo)).await? {
            if self.read_digest(&o.location).await?.as_ref() == Some(digest) {
                self.b.delete(&o.location).await?;
            }
        }
        self.b.delete(&self.b.revision(repo, digest)).await?;
        Ok(true)
    }

    async fn tag_delete(&self, repo: &Name, tag: &Tag) -> StorageResult<bool> {
        let key = self.b.key(&format!(
            "{}/_manifests/tags/{}",
            self.b.repo(repo),
            tag.as_str()
        ));
        if self.b.size(&key).await?.is_none() {
            return Ok(false);
        }
        self.b.delete(&key).await?;
        Ok(true)
    }

    async fn tags(&self, repo: &Name) -> StorageResult<Option<Vec<String>>> {
        let dir = self.b.key(&self.b.repo(repo));
        let top = self
            .b
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| store_err(&dir, e))?;
        let exists = top
            .common_prefixes
            .iter()
            .any(|p| matches!(p.filename(), Some("_manifests" | "_layers")));
        if !exists {
            return Ok(None);
        }
        let mut out: Vec<String> = self
            .b
            .leaves(&self.b.tags_dir(repo))
            .await?
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(Some(out))
    }

    async fn repositories(&self) -> StorageResult<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.b.key("repositories"), String::new())];
        while let Some((dir, name)) = stack.pop() {
            let l = self
                .b
                .store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|e| store_err(&dir, e))?;
            let mut is_repo = false;
            for p in l.common_prefixes {
                let Some(n) = p.filename().map(str::to_string) else {
                    continue;
                };
                if n == "_manifests" || n == "_layers" {
                    is_repo = true;
                } else if !n.starts_with('_') {
                    let child = if name.is_empty() {
                        n
                    } else {
                        format!("{name}/{n}")
                    };
                    stack.push((p, child));
                }
            }
            if is_repo && !name.is_empty() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn referrers(&self, repo: &Name, digest: &Digest) -> StorageResult<Vec<Descriptor>> {
        let mut out: Vec<Descriptor> = Vec::new();
        for o in self.b.leaves(&self.b.referrers_dir(repo, digest)).await? {
            let Some(bytes) = self.b.read(&o.location).await? else {
                continue;
            };
            let desc: Descriptor =
                serde_json::from_slice(&bytes).map_err(|e| corrupt(&o.location, e))?;
            if self.manifest_exists(repo, desc.digest()).await? {
                out.push(desc);
            }
        }
        out.sort_by_key(|d| d.digest().to_string());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    fn two_replicas(part: usize) -> (ObjectStorage, ObjectStorage) {
        let mem = Arc::new(InMemory::new());
        let b = Bucket {
            store: mem.clone(),
            parts: mem,
            prefix: "p".into(),
            signer: None,
        };
        (
            ObjectStorage::new(b.clone(), part),
            ObjectStorage::new(b, part),
        )
    }

    fn body(b: &[u8]) -> ByteStream {
        // Split into uneven pieces, as a network would.
        let pieces: Vec<std::io::Result<Bytes>> =
            b.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures::stream::iter(pieces))
    }

    fn digest(b: &[u8]) -> Digest {
        crate::storage::hash::digest_of(&DigestAlgorithm::Sha256, b)
    }

    #[tokio::test]
    async fn chunks_of_any_size_on_alternating_replicas_make_the_exact_blob() {
        let (a, b) = two_replicas(16);
        let repo = Name::parse("x/y").unwrap();
        let data: Vec<u8> = (0..200u32).map(|i| (i * 31 % 251) as u8).collect();
        let d = digest(&data);
        let id = a.upload_start(&repo).await.unwrap();
        let mut at = 0;
        for (i, n) in [3usize, 16, 40, 1, 0, 60, 80].into_iter().enumerate() {
            let st = if i % 2 == 0 { &a } else { &b };
            let end = st
                .upload_append(
                    &repo,
                    id,
                    Some(at as u64),
                    body(&data[at..at + n]),
                    Some(n as u64),
                )
                .await
                .unwrap();
            at += n;
            assert_eq!(end, at as u64);
        }
        // A chunk at the wrong offset and one shorter than declared change nothing.
        let e = a
            .upload_append(&repo, id, Some(5), body(b"zz"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, StorageError::RangeMismatch { offset: 200, .. }),
            "{e}"
        );
        let e = b
            .upload_append(&repo, id, Some(200), body(b"zz"), Some(9))
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::SizeMismatch { .. }), "{e}");
        assert_eq!(a.upload_offset(&repo, id).await.unwrap(), Some(200));
        let wrong = digest(b"other");
        assert!(b.upload_finish(&repo, id, &wrong).await.is_err());
        assert_eq!(a.blob_size(&repo, &wrong).await.unwrap(), None);
        assert_eq!(b.upload_finish(&repo, id, &d).await.unwrap(), 200);
        assert_eq!(a.blob_size(&repo, &d).await.unwrap(), Some(200));
        let r = a.blob_open(&repo, &d, 10, 150).await.unwrap().unwrap();
        let got: Vec<Bytes> = r.body.try_collect().await.unwrap();
        assert_eq!(got.concat(), data[10..160]);
        assert_eq!(a.upload_offset(&repo, id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_monolithic_put_is_visible_only_when_its_digest_matches() {
        let (a, _) = two_replicas(16);
        let repo = Name::parse("m").unwrap();
        let data = vec![9u8; 100];
        let e = a
            .blob_put(&repo, &digest(b"nope"), body(&data), None)
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::DigestMismatch { .. }), "{e}");
        assert_eq!(a.blob_size(&repo, &digest(b"nope")).await.unwrap(), None);
        let d = digest(&data);
        assert_eq!(
            a.blob_put(&repo, &d, body(&data), Some(100)).await.unwrap(),
            100
        );
        assert_eq!(a.blob_size(&repo, &d).await.unwrap(), Some(100));
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    async fn read_all(
        st: &ObjectStorage,
        repo: &Name,
        d: &Digest,
        start: u64,
        len: u64,
    ) -> Vec<u8> {
        let r = st.blob_open(repo, d, start, len).await.unwrap().unwrap();
        let got: Vec<Bytes> = r.body.try_collect().await.unwrap();
        got.concat()
    }

    /// Push `data` through one session, in chunks of 40, on `st`.
    async fn push_session(st: &ObjectStorage, repo: &Name, data: &[u8]) -> (Uuid, Digest) {
        let id = st.upload_start(repo).await.unwrap();
        let mut at = 0;
        for c in data.chunks(40) {
            at = st
                .upload_append(repo, id, Some(at), body(c), Some(c.len() as u64))
                .await
                .unwrap();
        }
        (id, digest(data))
    }

    async fn keys_under(b: &Bucket, dir: &str) -> Vec<String> {
        let mut keys: Vec<String> = b
            .store
            .list(Some(&b.key(dir)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    fn gc(st: &ObjectStorage, grace: std::time::Duration) -> crate::gc::Summary {
        let inv = crate::storage::object_inventory::ObjectInventory::over(ObjectStorage::new(
            st.bucket().clone(),
            st.part_size,
        ))
        .unwrap();
        let opts = crate::gc::Options {
            dry_run: false,
            grace,
        };
        crate::gc::collect(&inv, opts, |_| {}).unwrap()
    }

    #[tokio::test]
    async fn a_session_blob_is_published_by_descriptor_without_a_copy() {
        let (a, b) = two_replicas(16);
        let repo = Name::parse("s/d").unwrap();
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 % 253) as u8).collect();
        let (id, d) = push_session(&a, &repo, &data).await;
        assert_eq!(a.upload_finish(&repo, id, &d).await.unwrap(), 300);
        // Not inline; a descriptor naming the session's data object, nothing else left.
        let bk = a.bucket();
        assert_eq!(bk.size(&bk.blob(&d)).await.unwrap(), None);
        let Some(Stored::Ref(r)) = bk.stored(&d).await.unwrap() else {
            panic!("not stored by descriptor");
        };
        assert_eq!((r.data, r.size), (id, 300));
        assert_eq!(
            keys_under(bk, "blobs/data").await,
            vec![format!("p/blobs/data/{id}")]
        );
        assert!(keys_under(bk, "repositories/s/d/_uploads").await.is_empty());
        // Whole, and by range, through the other replica.
        assert_eq!(b.blob_size(&repo, &d).await.unwrap(), Some(300));
        assert_eq!(read_all(&b, &repo, &d, 0, 300).await, data);
        assert_eq!(read_all(&b, &repo, &d, 17, 250).await, data[17..267]);
        // Mountable into another repository; unlinked repositories do not see it.
        let other = Name::parse("o").unwrap();
        assert_eq!(b.blob_size(&other, &d).await.unwrap(), None);
        assert!(b.blob_mount(&other, &repo, &d).await.unwrap());
        assert_eq!(read_all(&a, &other, &d, 290, 10).await, data[290..]);
    }

    #[test]
    fn two_sessions_of_one_blob_finishing_at_once_leave_one_blob_and_no_orphan() {
        let rt = rt();
        let (a, b) = two_replicas(16);
        let repo = Name::parse("race").unwrap();
        let data: Vec<u8> = (0..500u32).map(|i| (i * 13 % 241) as u8).collect();
        let d = rt.block_on(async {
            let (ia, d) = push_session(&a, &repo, &data).await;
            let (ib, _) = push_session(&b, &repo, &data).await;
            let (ra, rb) = tokio::join!(
                a.upload_finish(&repo, ia, &d),
                b.upload_finish(&repo, ib, &d)
            );
            assert_eq!((ra.unwrap(), rb.unwrap()), (500, 500));
            let bk = a.bucket();
            let Some(Stored::Ref(r)) = bk.stored(&d).await.unwrap() else {
                panic!("not stored by descriptor");
            };
            assert!(r.data == ia || r.data == ib);
            // The loser deleted its data object: only the winner's is left.
            assert_eq!(
                keys_under(bk, "blobs/data").await,
                vec![format!("p/blobs/data/{}", r.data)]
            );
            assert_eq!(read_all(&b, &repo, &d, 0, 500).await, data);
            d
        });
        // Linked but unreferenced by any manifest: a zero grace sweeps descriptor and data.
        let s = gc(&a, std::time::Duration::ZERO);
        assert_eq!((s.blobs_deleted, s.data_deleted), (1, 0));
        rt.block_on(async {
            let bk = a.bucket();
            assert!(bk.stored(&d).await.unwrap().is_none());
            assert!(keys_under(bk, "blobs").await.is_empty());
        });
    }

    /// A first push into a new repository holds only its session there; gc finds it all
    /// the same (under the bucket's prefix) and purges it once stale, and never a fresh one.
    #[test]
    fn gc_purges_a_stale_session_in_a_repository_that_holds_nothing_else() {
        let rt = rt();
        let (a, _) = two_replicas(16);
        let repo = Name::parse("first/push").unwrap();
        let (id, _) = rt.block_on(push_session(&a, &repo, b"the start of a layer"));
        let kept = gc(&a, std::time::Duration::from_secs(3600));
        assert_eq!(kept.uploads_purged, 0);
        assert_eq!(rt.block_on(a.upload_offset(&repo, id)).unwrap(), Some(20));
        let s = gc(&a, std::time::Duration::ZERO);
        assert_eq!(s.uploads_purged, 1);
        assert_eq!(rt.block_on(a.upload_offset(&repo, id)).unwrap(), None);
        rt.block_on(async {
            assert!(keys_under(a.bucket(), "repositories").await.is_empty());
        });
    }

    #[test]
    fn gc_deletes_an_orphaned_data_object_after_the_grace_only() {
        let rt = rt();
        let (a, _) = two_replicas(16);
        let repo = Name::parse("g").unwrap();
        let data = vec![5u8; 100];
        let (live, pending) = rt.block_on(async {
            let bk = a.bucket();
            // A finish that crashed after completing its data object, before the descriptor.
            bk.put(&bk.data(Uuid::new_v4()), Bytes::from(data.clone()))
                .await
                .unwrap();
            // A session still in progress with parts cut, and a published blob.
            let (pending, _) = push_session(&a, &repo, &data).await;
            let (id, d) = push_session(&a, &repo, &data).await;
            a.upload_finish(&repo, id, &d).await.unwrap();
            (d, pending)
        });
        // Within the grace: all kept.
        let s = gc(&a, std::time::Duration::from_secs(3600));
        assert_eq!(
            (s.blobs_deleted, s.data_deleted, s.uploads_purged),
            (0, 0, 0)
        );
        assert_eq!(rt.block_on(keys_under(a.bucket(), "blobs/data")).len(), 2);
        // Old enough (zero grace): only the orphan goes; a manifest keeps the blob live.
        let cfg = digest(b"{}");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{live}","size":100}}]}}"#
        );
        rt.block_on(async {
            a.blob_put(&repo, &cfg, body(b"{}"), Some(2)).await.unwrap();
            let bytes = Bytes::from(manifest.clone());
            let m = NewManifest {
                digest: digest(&bytes),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                bytes,
                subject: None,
            };
            a.manifest_put(&repo, m, vec![]).await.unwrap();
        });
        let inv = crate::storage::object_inventory::ObjectInventory::over(ObjectStorage::new(
            a.bucket().clone(),
            16,
        ))
        .unwrap();
        use crate::storage::inventory::Inventory;
        // The in-progress session's data is its own (the session is what guards it)…
        let orphans = inv.orphaned_data().unwrap();
        assert_eq!(
            orphans.len(),
            1,
            "{:?}",
            orphans.iter().map(|o| &o.item).collect::<Vec<_>>()
        );
        assert!(!orphans[0].item.ends_with(&pending.to_string()));
        let s = gc(&a, std::time::Duration::ZERO);
        // …and goes with the session when that is purged; the orphan goes; the blob stays.
        assert_eq!(
            (s.blobs_deleted, s.data_deleted, s.uploads_purged),
            (0, 1, 1)
        );
        rt.block_on(async {
            let left = keys_under(a.bucket(), "blobs/data").await;
            assert_eq!(left.len(), 1, "{left:?}");
            assert_eq!(read_all(&a, &repo, &live, 0, 100).await, data);
        });
    }

    #[tokio::test]
    async fn inline_blobs_of_the_old_layout_still_read_and_are_never_taken_for_descriptors() {
        let (a, b) = two_replicas(16);
        let repo = Name::parse("old").unwrap();
        let bk = a.bucket();
        // Bytes that parse as a descriptor naming an existing data object, stored inline.
        let decoy_id = Uuid::new_v4();
        bk.put(&bk.data(decoy_id), Bytes::from_static(b"not this"))
            .await
            .unwrap();
        let fake = format!(r#"{{"data":"{decoy_id}","size":8}}"#).into_bytes();
        let d = digest(&fake);
        bk.put(&bk.blob(&d), Bytes::from(fake.clone()))
            .await
            .unwrap();
        bk.put(&bk.link(&repo, &d), d.to_string()).await.unwrap();
        assert_eq!(
            b.blob_size(&repo, &d).await.unwrap(),
            Some(fake.len() as u64)
        );
        assert_eq!(read_all(&b, &repo, &d, 0, fake.len() as u64).await, fake);
        assert_eq!(read_all(&b, &repo, &d, 2, 4).await, fake[2..6]);
        // A session of the same blob finds it stored and publishes nothing new.
        let (id, _) = push_session(&b, &repo, &fake).await;
        b.upload_finish(&repo, id, &d).await.unwrap();
        assert!(bk.read(&bk.blob_ref(&d)).await.unwrap().is_none());
        assert_eq!(
            keys_under(bk, "blobs/data").await,
            vec![format!("p/blobs/data/{decoy_id}")]
        );
    }

    #[tokio::test]
    async fn a_session_begun_by_an_older_version_finishes_inline() {
        let (a, b) = two_replicas(64);
        let repo = Name::parse("legacy").unwrap();
        let data: Vec<u8> = (0..90u32).map(|i| i as u8).collect();
        let (id, _) = push_session(&a, &repo, &data[..40]).await;
        let d = digest(&data);
        // Rewrite the state as the previous version wrote it: no `detached`, parts at
        // `_uploads/<id>/data` (none cut yet, so the next parts go there).
        let bk = a.bucket();
        let key = bk.session_key(&repo, id, "state");
        let mut v: serde_json::Value =
            serde_json::from_slice(&bk.read(&key).await.unwrap().unwrap()).unwrap();
        assert_eq!(v["multipart"], serde_json::Value::Null, "{v}");
        v.as_object_mut().unwrap().remove("detached");
        bk.put(&key, serde_json::to_vec(&v).unwrap()).await.unwrap();
        b.upload_append(&repo, id, Some(40), body(&data[40..]), None)
            .await
            .unwrap();
        let (s, _) = bk.session(&repo, id).await.unwrap().unwrap();
        assert!(!s.detached && s.multipart.is_some());
        assert_eq!(b.upload_finish(&repo, id, &d).await.unwrap(), 90);
        assert_eq!(bk.size(&bk.blob(&d)).await.unwrap(), Some(90));
        assert!(keys_under(bk, "blobs/data").await.is_empty());
        assert!(
            keys_under(bk, "repositories/legacy/_uploads")
                .await
                .is_empty()
        );
        assert_eq!(read_all(&a, &repo, &d, 0, 90).await, data);
    }

    #[tokio::test]
    async fn a_finish_retried_after_one_that_completed_the_upload_and_died_publishes() {
        let (a, b) = two_replicas(16);
        let repo = Name::parse("retry").unwrap();
        let data: Vec<u8> = (0..100u32).map(|i| (i * 3) as u8).collect();
        let (id, d) = push_session(&a, &repo, &data).await;
        // What the first attempt did before it died: the tail as the last part, and complete.
        let bk = a.bucket();
        let (s, _) = bk.session(&repo, id).await.unwrap().unwrap();
        let tail = a.read_tail(&repo, id, &s, 16).await.unwrap().freeze();
        let key = bk.data(id);
        let m = s.multipart.clone().unwrap();
        let mut parts: Vec<PartId> = s
            .parts
            .iter()
            .map(|c| PartId {
                content_id: c.clone(),
            })
            .collect();
        let p = bk
            .parts
            .put_part(&key, &m, parts.len(), tail.into())
            .await
            .unwrap();
        parts.push(p);
        bk.parts.complete_multipart(&key, &m, parts).await.unwrap();
        assert_eq!(b.upload_finish(&repo, id, &d).await.unwrap(), 100);
        assert_eq!(read_all(&a, &repo, &d, 0, 100).await, data);
        assert!(
            keys_under(bk, "repositories/retry/_uploads")
                .await
                .is_empty()
        );
    }

    #[test]
    fn gc_keeps_the_data_object_of_a_first_push_into_a_new_repository_finishing() {
        let rt = rt();
        let (a, _) = two_replicas(16);
        let repo = Name::parse("brand/new").unwrap();
        let data: Vec<u8> = (0..64u32).map(|i| i as u8).collect();
        // A finish under way: data object completed, descriptor not created yet, the session
        // the only thing of its repository in the bucket.
        let id = rt.block_on(async {
            let (id, _) = push_session(&a, &repo, &data).await;
            let bk = a.bucket();
            let (s, _) = bk.session(&repo, id).await.unwrap().unwrap();
            let key = bk.data(id);
            let m = s.multipart.clone().unwrap();
            let parts: Vec<PartId> = s
                .parts
                .iter()
                .map(|c| PartId {
                    content_id: c.clone(),
                })
                .collect();
            bk.parts.complete_multipart(&key, &m, parts).await.unwrap();
            id
        });
        let inv = crate::storage::object_inventory::ObjectInventory::over(ObjectStorage::new(
            a.bucket().clone(),
            16,
        ))
        .unwrap();
        use crate::storage::inventory::Inventory;
        assert!(inv.repositories().unwrap().is_empty());
        assert!(inv.orphaned_data().unwrap().is_empty());
        // Once the session is gone without a descriptor, it is an orphan.
        rt.block_on(async {
            let bk = a.bucket();
            bk.delete(&bk.session_key(&repo, id, "state"))
                .await
                .unwrap();
        });
        let orphans = inv.orphaned_data().unwrap();
        assert_eq!(orphans.len(), 1);
        assert!(orphans[0].item.ends_with(&id.to_string()));
    }
}
