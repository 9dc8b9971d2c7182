//! What the registry stores, behind one trait: blobs (content-addressed, shared by all
//! repositories), per-repository blob links, manifests, tags, referrers and upload sessions.
//! The filesystem backend ([`fs::FsStorage`]) is the default; [`object::ObjectStorage`] keeps
//! everything in a bucket, for replicas. [`Backend`] is whichever the configuration chose.

mod bucket;
pub mod chunks;
pub mod cloud;
pub mod fs;
pub mod hash;
pub mod inventory;
mod layout;
pub mod object;
pub mod object_inventory;
mod parts;
mod sink;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use oci_spec::image::{Descriptor, Digest, DigestAlgorithm};
use uuid::Uuid;

use crate::endpoint::{Name, Reference, Tag};

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("request body failed: {0}")]
    Body(io::Error),
    #[error("content has digest {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("expected {expected} bytes, received {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("chunk starts at {start} but the upload holds {offset} bytes")]
    RangeMismatch { start: u64, offset: u64 },
    #[error("upload {0} unknown")]
    UploadUnknown(Uuid),
    #[error(
        "this upload session hashes in {session}, not in the algorithm of {digest}: open it with \
         ?digest-algorithm={wanted}"
    )]
    AlgorithmMismatch {
        session: String,
        digest: Digest,
        wanted: String,
    },
    #[error("object store, at {key}: {source}")]
    Store {
        key: String,
        source: Box<object_store::Error>,
    },
    #[error("corrupt registry data at {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Where a GET of a blob is answered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLocation {
    /// Size of the whole blob.
    pub size: u64,
    /// A URL the client may fetch the bytes from directly (a presigned URL of the object that
    /// holds them), or None: the registry streams them itself.
    pub url: Option<String>,
}

/// The requested range of an open blob.
pub struct BlobRead {
    /// Size of the whole blob.
    pub size: u64,
    /// Exactly the requested bytes; ends with an error if the blob turns out shorter.
    pub body: ByteStream,
}

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// A manifest to store: its exact bytes, the media type it was pushed as, and what the referrers
/// API reports for it when it has a subject.
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub subject: Option<(Digest, Descriptor)>,
}

/// The storage every backend provides. Nothing becomes visible under a digest before its bytes
/// were verified against it; every write is atomic.
pub trait Storage: Send + Sync + 'static {
    /// Size of `digest` if it is linked into `repo`.
    fn blob_size(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<Option<u64>>> + Send;
    /// For a GET of `digest` linked into `repo`: its size and, when the backend hands reads to
    /// the object store (as distribution's S3 driver redirects), where the client fetches it.
    /// None when it is not linked.
    fn blob_locate(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<Option<BlobLocation>>> + Send {
        async move {
            let size = self.blob_size(repo, digest).await?;
            Ok(size.map(|size| BlobLocation { size, url: None }))
        }
    }
    /// `len` bytes of `digest` (linked into `repo`) from byte `start`, which the caller has
    /// checked against the size.
    fn blob_open(
        &self,
        repo: &Name,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> impl Future<Output = StorageResult<Option<BlobRead>>> + Send;
    /// Link `digest` into `repo` if `from` has it; false when it does not.
    fn blob_mount(
        &self,
        repo: &Name,
        from: &Name,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<bool>> + Send;
    /// Unlink `digest` from `repo`; false when it was not linked.
    fn blob_delete(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<bool>> + Send;
    /// Store a whole blob from one body, verifying it against `digest`; returns its size.
    fn blob_put(
        &self,
        repo: &Name,
        digest: &Digest,
        body: ByteStream,
        len: Option<u64>,
    ) -> impl Future<Output = StorageResult<u64>> + Send;

    fn upload_start(&self, repo: &Name) -> impl Future<Output = StorageResult<Uuid>> + Send;
    /// A session to be finished with a digest of `alg` (backends that hash as chunks arrive
    /// hash in that algorithm; others read the data again when the digest is not sha256).
    fn upload_start_in(
        &self,
        repo: &Name,
        _alg: &DigestAlgorithm,
    ) -> impl Future<Output = StorageResult<Uuid>> + Send {
        self.upload_start(repo)
    }
    /// Bytes received so far, or None for an unknown session.
    fn upload_offset(
        &self,
        repo: &Name,
        id: Uuid,
    ) -> impl Future<Output = StorageResult<Option<u64>>> + Send;
    /// Append a chunk. `start` (from `Content-Range`) must equal the current offset; `len` (the
    /// chunk's declared length) must match what arrives, else the chunk is discarded.
    fn upload_append(
        &self,
        repo: &Name,
        id: Uuid,
        start: Option<u64>,
        body: ByteStream,
        len: Option<u64>,
    ) -> impl Future<Output = StorageResult<u64>> + Send;
    /// Verify the session's bytes against `digest`, publish the blob and link it; returns its size.
    fn upload_finish(
        &self,
        repo: &Name,
        id: Uuid,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<u64>> + Send;
    fn upload_cancel(
        &self,
        repo: &Name,
        id: Uuid,
    ) -> impl Future<Output = StorageResult<bool>> + Send;

    fn manifest_get(
        &self,
        repo: &Name,
        reference: &Reference,
    ) -> impl Future<Output = StorageResult<Option<StoredManifest>>> + Send;
    fn manifest_exists(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<bool>> + Send;
    /// Store a manifest and point `tags` at it.
    fn manifest_put(
        &self,
        repo: &Name,
        manifest: NewManifest,
        tags: Vec<Tag>,
    ) -> impl Future<Output = StorageResult<()>> + Send;
    /// Remove a manifest, the tags pointing at it and its referrers entry.
    fn manifest_delete(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<bool>> + Send;
    fn tag_delete(
        &self,
        repo: &Name,
        tag: &Tag,
    ) -> impl Future<Output = StorageResult<bool>> + Send;
    /// Sorted tags, or None when the repository does not exist.
    fn tags(&self, repo: &Name) -> impl Future<Output = StorageResult<Option<Vec<String>>>> + Send;
    /// Sorted repository names.
    fn repositories(&self) -> impl Future<Output = StorageResult<Vec<String>>> + Send;
    /// Descriptors of the manifests in `repo` whose subject is `digest`.
    fn referrers(
        &self,
        repo: &Name,
        digest: &Digest,
    ) -> impl Future<Output = StorageResult<Vec<Descriptor>>> + Send;
}

/// The digest of a stored manifest's `subject`, if it has one (which referrers entry to drop
/// when the manifest is deleted).
pub(crate) fn subject_of(manifest: &[u8]) -> Option<Digest> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    crate::endpoint::parse_digest(v.get("subject")?.get("digest")?.as_str()?).ok()
}
