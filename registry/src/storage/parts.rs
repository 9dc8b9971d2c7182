//! Streaming a body into an object store in constant memory: incoming bytes are hashed on a
//! blocking thread in batches while they are cut into fixed-size parts of one multipart upload,
//! with at most [`IN_FLIGHT`] parts uploading at once. Whatever is shorter than a part stays in
//! the buffer for the caller (the tail of an upload session, or a small whole blob).
//!
//! Memory per stream ≤ part size × (parts in flight + 1), whatever the blob's size. Each part
//! is an anonymous mapping of exactly the part size ([`PartBuf`]), unmapped once uploaded: with
//! 8 MiB `Vec`s glibc's malloc raised its dynamic mmap threshold after the first free and then
//! kept freed parts in per-thread arenas — the server held 80–100 MiB after a 256 MiB push
//! instead of the ~40 MiB it needs (bench/RESULTS.md, 2026-11-23, "RSS by phase").

use std::collections::VecDeque;
use std::sync::Arc;

use super::hash::Hasher;
use bytes::Bytes;
use futures::StreamExt;
use memmap2::MmapMut;
use object_store::MultipartId;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use tokio::task::JoinHandle;

use super::{ByteStream, StorageError, StorageResult};

/// Parts uploading concurrently per stream.
pub const IN_FLIGHT: usize = 3;
/// Bytes hashed per trip to the blocking pool.
const HASH_BATCH: usize = 1 << 20;

pub(super) fn store_err(key: &Key, e: object_store::Error) -> StorageError {
    StorageError::Store {
        key: key.to_string(),
        source: Box::new(e),
    }
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> StorageResult<T> {
    r.map_err(|e| StorageError::Body(std::io::Error::other(e)))
}

/// Bytes gathered for one part (or one read window): a private anonymous mapping of a fixed
/// capacity, so its memory goes back to the kernel as soon as the last `Bytes` of it is dropped.
pub(super) struct PartBuf {
    mem: MmapMut,
    len: usize,
}

impl PartBuf {
    pub(super) fn new(capacity: usize) -> StorageResult<PartBuf> {
        // Populated up front: one call instead of a page fault per 4 KiB.
        let mem = memmap2::MmapOptions::new()
            .len(capacity.max(1))
            .populate()
            .map_anon()
            .map_err(|e| {
                StorageError::Body(std::io::Error::new(
                    e.kind(),
                    format!("mapping a {capacity}-byte buffer: {e}"),
                ))
            })?;
        Ok(PartBuf { mem, len: 0 })
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    /// Copy as much of `b` as fits; returns how much that was.
    pub(super) fn fill(&mut self, b: &[u8]) -> usize {
        let n = b.len().min(self.capacity() - self.len);
        self.mem[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        n
    }

    pub(super) fn freeze(self) -> Bytes {
        let len = self.len;
        if len == 0 {
            return Bytes::new();
        }
        Bytes::from_owner(self.mem).slice(..len)
    }

    /// The bytes, and a handle that gives the mapping back (see [`reclaim`]) once every
    /// `Bytes` of it is gone.
    fn freeze_shared(self) -> (Bytes, Arc<MmapMut>) {
        let mem = Arc::new(self.mem);
        let bytes = Bytes::from_owner(Shared(mem.clone())).slice(..self.len);
        (bytes, mem)
    }
}

/// The mapping behind a part's `Bytes`, kept alive by them and by the writer.
struct Shared(Arc<MmapMut>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The mapping back for the next part, if nothing else holds it any more.
fn reclaim(mem: Arc<MmapMut>) -> Option<PartBuf> {
    Arc::try_unwrap(mem).ok().map(|mem| PartBuf { mem, len: 0 })
}

/// A hash fed on the blocking pool, one batch while the next one fills.
pub(super) struct Hashing {
    idle: Option<Hasher>,
    busy: Option<JoinHandle<Hasher>>,
    batch: Vec<Bytes>,
    batch_len: usize,
}

impl Hashing {
    pub(super) fn new(h: Hasher) -> Hashing {
        Hashing {
            idle: Some(h),
            busy: None,
            batch: Vec::new(),
            batch_len: 0,
        }
    }

    pub(super) async fn feed(&mut self, b: Bytes) -> StorageResult<()> {
        self.batch_len += b.len();
        self.batch.push(b);
        if self.batch_len >= HASH_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn take(&mut self) -> StorageResult<Hasher> {
        match self.busy.take() {
            Some(j) => joined(j.await),
            None => Ok(self.idle.take().expect("the hasher is idle or busy")),
        }
    }

    async fn flush(&mut self) -> StorageResult<()> {
        let mut h = self.take().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        self.busy = Some(tokio::task::spawn_blocking(move || {
            for b in batch {
                h.update(&b);
            }
            h
        }));
        Ok(())
    }

    pub(super) async fn finish(mut self) -> StorageResult<Hasher> {
        self.flush().await?;
        self.take().await
    }
}

/// A part uploading, with the mapping its bytes live in (when it is one of ours).
type InFlight = (
    JoinHandle<object_store::Result<PartId>>,
    Option<Arc<MmapMut>>,
);

/// One multipart upload being written: parts `0..first` were written by earlier requests
/// (their ids are the caller's), this writer adds parts from `first` on.
pub(super) struct PartWriter {
    parts_store: Arc<dyn MultipartStore>,
    key: Key,
    part_size: usize,
    pub(super) multipart: Option<MultipartId>,
    next_idx: usize,
    pub(super) done: Vec<PartId>,
    /// Parts uploading, each with the mapping its bytes live in (when it is one of ours).
    in_flight: VecDeque<InFlight>,
    /// Bytes not yet cut into a part (None only while a full one is handed over).
    buf: Option<PartBuf>,
    /// An uploaded part's buffer, for the next part: no new mapping to fault in.
    spare: Option<PartBuf>,
}

impl PartWriter {
    pub(super) fn new(
        parts_store: Arc<dyn MultipartStore>,
        key: Key,
        part_size: usize,
        multipart: Option<MultipartId>,
        first: usize,
        buf: PartBuf,
    ) -> PartWriter {
        PartWriter {
            parts_store,
            key,
            part_size,
            multipart,
            next_idx: first,
            done: Vec::new(),
            in_flight: VecDeque::new(),
            buf: Some(buf),
            spare: None,
        }
    }

    /// Bytes buffered after the last full part.
    pub(super) fn rest_len(&self) -> usize {
        self.buf.as_ref().map_or(0, PartBuf::len)
    }

    /// Take the bytes after the last full part.
    pub(super) fn take_rest(&mut self) -> Bytes {
        self.buf.take().map(PartBuf::freeze).unwrap_or_default()
    }

    /// Copy all of `body` into parts (and the buffer), feeding `hash`; returns the bytes read.
    /// On failure the parts written are not recorded anywhere: the caller drops them.
    pub(super) async fn write(
        &mut self,
        mut body: ByteStream,
        hash: &mut Hashing,
    ) -> StorageResult<u64> {
        let mut total = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            total += chunk.len() as u64;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let buf = match &mut self.buf {
                    Some(b) => b,
                    None => {
                        let b = match self.spare.take() {
                            Some(b) => b,
                            None => PartBuf::new(self.part_size)?,
                        };
                        self.buf.insert(b)
                    }
                };
                rest = &rest[buf.fill(rest)..];
                if buf.is_full() {
                    // Handed over before the next buffer exists: at most IN_FLIGHT parts
                    // uploading plus the one filling.
                    if let Some(full) = self.buf.take() {
                        let (part, mem) = full.freeze_shared();
                        self.upload_reusing(part, Some(mem)).await?;
                    }
                }
            }
            hash.feed(chunk).await?;
        }
        Ok(total)
    }

    /// Start uploading one more part (creating the multipart upload on the first), waiting
    /// for the oldest when [`IN_FLIGHT`] are already uploading.
    pub(super) async fn upload(&mut self, part: Bytes) -> StorageResult<()> {
        self.upload_reusing(part, None).await
    }

    async fn upload_reusing(
        &mut self,
        part: Bytes,
        mem: Option<Arc<MmapMut>>,
    ) -> StorageResult<()> {
        if self.multipart.is_none() {
            let id = self
                .parts_store
                .create_multipart(&self.key)
                .await
                .map_err(|e| store_err(&self.key, e))?;
            self.multipart = Some(id);
        }
        if self.in_flight.len() >= IN_FLIGHT {
            self.settle_one().await?;
        }
        let (st, key, id) = (
            self.parts_store.clone(),
            self.key.clone(),
            self.multipart.clone().expect("created above"),
        );
        let idx = self.next_idx;
        self.next_idx += 1;
        let task = tokio::spawn(async move { st.put_part(&key, &id, idx, part.into()).await });
        self.in_flight.push_back((task, mem));
        Ok(())
    }

    async fn settle_one(&mut self) -> StorageResult<()> {
        if let Some((j, mem)) = self.in_flight.pop_front() {
            let id = joined(j.await)?.map_err(|e| store_err(&self.key, e))?;
            self.done.push(id);
            if self.spare.is_none() {
                self.spare = mem
                    .and_then(reclaim)
                    .filter(|b| b.capacity() == self.part_size);
            }
        }
        Ok(())
    }

    /// Wait for every part in flight.
    pub(super) async fn settle(&mut self) -> StorageResult<()> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Stop the parts still uploading (their part numbers are written again by a retry).
    pub(super) fn cancel_in_flight(&mut self) {
        for (j, _) in self.in_flight.drain(..) {
            j.abort();
        }
    }

    /// Abort the multipart upload (best effort: a lifecycle rule catches what this misses).
    pub(super) async fn abort(mut self) {
        for (j, _) in self.in_flight.drain(..) {
            j.abort();
        }
        if let Some(id) = &self.multipart
            && let Err(e) = self.parts_store.abort_multipart(&self.key, id).await
        {
            tracing::warn!("aborting multipart upload of {}: {e}", self.key);
        }
    }
}
