//! Streaming a body into an object store in constant memory: incoming bytes are hashed on a
//! blocking thread in batches while they are cut into fixed-size parts of one multipart upload,
//! with at most [`IN_FLIGHT`] parts uploading at once. Whatever is shorter than a part stays in
//! the buffer for the caller (the tail of an upload session, or a small whole blob).
//!
//! Memory per stream ≈ part size × (parts in flight + 1), as the DESIGN spike measured.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::MultipartId;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;

use super::{ByteStream, StorageError, StorageResult};

/// Parts uploading concurrently per stream.
pub const IN_FLIGHT: usize = 2;
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

/// A SHA-256 fed on the blocking pool, one batch while the next one fills.
pub(super) struct Hashing {
    idle: Option<Sha256>,
    busy: Option<JoinHandle<Sha256>>,
    batch: Vec<Bytes>,
    batch_len: usize,
}

impl Hashing {
    pub(super) fn new(h: Sha256) -> Hashing {
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

    async fn take(&mut self) -> StorageResult<Sha256> {
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

    pub(super) async fn finish(mut self) -> StorageResult<Sha256> {
        self.flush().await?;
        self.take().await
    }
}

/// One multipart upload being written: parts `0..first` were written by earlier requests
/// (their ids are the caller's), this writer adds parts from `first` on.
pub(super) struct PartWriter {
    parts_store: Arc<dyn MultipartStore>,
    key: Key,
    part_size: usize,
    pub(super) multipart: Option<MultipartId>,
    next_idx: usize,
    pub(super) done: Vec<PartId>,
    in_flight: VecDeque<JoinHandle<object_store::Result<PartId>>>,
    /// Bytes not yet cut into a part.
    pub(super) buf: BytesMut,
}

impl PartWriter {
    pub(super) fn new(
        parts_store: Arc<dyn MultipartStore>,
        key: Key,
        part_size: usize,
        multipart: Option<MultipartId>,
        first: usize,
        buf: BytesMut,
    ) -> PartWriter {
        PartWriter {
            parts_store,
            key,
            part_size,
            multipart,
            next_idx: first,
            done: Vec::new(),
            in_flight: VecDeque::new(),
            buf,
        }
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
            self.buf.extend_from_slice(&chunk);
            hash.feed(chunk).await?;
            while self.buf.len() >= self.part_size {
                let part = self.buf.split_to(self.part_size).freeze();
                self.upload(part).await?;
            }
        }
        Ok(total)
    }

    /// Start uploading one more part (creating the multipart upload on the first), waiting
    /// for the oldest when [`IN_FLIGHT`] are already uploading.
    pub(super) async fn upload(&mut self, part: Bytes) -> StorageResult<()> {
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
        self.in_flight.push_back(tokio::spawn(async move {
            st.put_part(&key, &id, idx, part.into()).await
        }));
        Ok(())
    }

    async fn settle_one(&mut self) -> StorageResult<()> {
        if let Some(j) = self.in_flight.pop_front() {
            let id = joined(j.await)?.map_err(|e| store_err(&self.key, e))?;
            self.done.push(id);
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
        for j in self.in_flight.drain(..) {
            j.abort();
        }
    }

    /// Abort the multipart upload (best effort: a lifecycle rule catches what this misses).
    pub(super) async fn abort(mut self) {
        for j in self.in_flight.drain(..) {
            j.abort();
        }
        if let Some(id) = &self.multipart
            && let Err(e) = self.parts_store.abort_multipart(&self.key, id).await
        {
            tracing::warn!("aborting multipart upload of {}: {e}", self.key);
        }
    }
}
