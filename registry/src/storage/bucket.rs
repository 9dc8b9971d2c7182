//! The bucket the object-storage backend works in: where each object of the registry's layout
//! lives under the prefix (see `object.rs` for the layout), the few primitive calls the backend
//! makes on the store (read, size, put, delete, list one level, ranged window reads) and the
//! records it keeps there (blob descriptors, upload sessions).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, UpdateVersion};
use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Sha256, Sha512};
use uuid::Uuid;

use super::hash::{Hasher, alg_dir};
use super::parts::{PartBuf, store_err};
use super::{StorageError, StorageResult};
use crate::endpoint::Name;

/// Bytes per ranged GET when streaming a blob out: one request never outlives the request
/// timeout however slowly the client reads, and a window is what a pull holds in memory.
pub(super) const READ_WINDOW: u64 = 8 << 20;
/// Windows fetched ahead of the one being sent.
pub(super) const PREFETCH: usize = 2;
/// How long a redirect's presigned URL stays valid: as distribution's S3 driver, long enough
/// for a slow client to fetch a large layer, short enough that a leaked URL soon stops working
/// (and a blob deleted since stops being served).
pub const REDIRECT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// Bytes `r` of `key`, whole.
pub(super) async fn read_window(
    store: Arc<dyn ObjectStore>,
    key: Key,
    r: std::ops::Range<u64>,
) -> std::io::Result<Bytes> {
    let opts = GetOptions {
        range: Some(GetRange::Bounded(r.clone())),
        ..GetOptions::default()
    };
    let got = store
        .get_opts(&key, opts)
        .await
        .map_err(std::io::Error::other)?;
    let short = || {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("blob {key} ends before byte {}", r.end),
        )
    };
    if got.range != r {
        return Err(short());
    }
    let want = (r.end - r.start) as usize;
    let mut buf = PartBuf::new(want).map_err(std::io::Error::other)?;
    let mut s = got.into_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if buf.fill(&chunk) < chunk.len() {
            return Err(std::io::Error::other(format!(
                "the store sent more than bytes {}-{} of {key}",
                r.start, r.end
            )));
        }
    }
    if buf.len() != want {
        return Err(short());
    }
    Ok(buf.freeze())
}

/// A task that is stopped when its handle is dropped (a client that goes away stops the
/// reads ahead).
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// The bucket the backend works in, and where under it.
#[derive(Clone)]
pub struct Bucket {
    pub store: Arc<dyn ObjectStore>,
    pub parts: Arc<dyn MultipartStore>,
    /// Key prefix without trailing `/` ("" for the bucket's root).
    pub prefix: String,
    /// Presigns the GET URLs blob reads are redirected to; None streams every read through the
    /// registry.
    pub signer: Option<Arc<dyn Signer>>,
}

impl Bucket {
    pub(super) fn key(&self, rel: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix))
        }
    }
    pub(super) fn blob(&self, d: &Digest) -> Key {
        let h = d.digest();
        self.key(&format!("blobs/{}/{}/{h}", alg_dir(d), &h[..2]))
    }
    /// Where blob `d`'s descriptor is, when it is stored by one.
    pub(super) fn blob_ref(&self, d: &Digest) -> Key {
        let h = d.digest();
        self.key(&format!("blobs/ref/{}/{}/{h}", alg_dir(d), &h[..2]))
    }
    pub(super) fn data_dir(&self) -> Key {
        self.key("blobs/data")
    }
    /// The data object of upload session `id`, later named by a descriptor.
    pub(super) fn data(&self, id: Uuid) -> Key {
        self.key(&format!("blobs/data/{}", id.hyphenated()))
    }

    /// How blob `d` is stored, if it is: the inline key wins over a descriptor.
    pub(super) async fn stored(&self, d: &Digest) -> StorageResult<Option<Stored>> {
        let ref_key = self.blob_ref(d);
        let inline_key = self.blob(d);
        let (inline, desc) = futures::try_join!(self.size(&inline_key), self.read(&ref_key))?;
        if let Some(size) = inline {
            return Ok(Some(Stored::Inline(size)));
        }
        let Some(raw) = desc else {
            return Ok(None);
        };
        let r: BlobRef = serde_json::from_slice(&raw).map_err(|e| corrupt(&ref_key, e))?;
        Ok(Some(Stored::Ref(r)))
    }

    /// The object holding blob `d`'s bytes, and its size.
    pub(super) fn object_of(&self, d: &Digest, stored: &Stored) -> (Key, u64) {
        match stored {
            Stored::Inline(n) => (self.blob(d), *n),
            Stored::Ref(r) => (self.data(r.data), r.size),
        }
    }

    /// Blob `d`'s bytes, whole (for manifests: gc reads them to mark).
    pub(super) async fn read_blob(&self, d: &Digest) -> StorageResult<Option<Bytes>> {
        match self.stored(d).await? {
            None => Ok(None),
            Some(Stored::Inline(_)) => self.read(&self.blob(d)).await,
            Some(Stored::Ref(r)) => {
                let key = self.data(r.data);
                let bytes = self
                    .read(&key)
                    .await?
                    .ok_or_else(|| corrupt(&key, format!("the data of blob {d} is missing")))?;
                Ok(Some(bytes))
            }
        }
    }

    /// Remove blob `d` whichever way it is stored: descriptor, its data, the inline object.
    /// A crash in between leaves an orphaned data object, which gc removes later.
    pub(super) async fn remove_blob(&self, d: &Digest) -> StorageResult<bool> {
        let ref_key = self.blob_ref(d);
        let inline = self.blob(d);
        let (size, desc) = futures::try_join!(self.size(&inline), self.read(&ref_key))?;
        if let Some(raw) = &desc {
            self.delete(&ref_key).await?;
            match serde_json::from_slice::<BlobRef>(raw) {
                Ok(r) => self.delete(&self.data(r.data)).await?,
                Err(e) => tracing::warn!("{ref_key}: {e}; its data object is left to gc"),
            }
        }
        if size.is_some() {
            self.delete(&inline).await?;
        }
        Ok(size.is_some() || desc.is_some())
    }

    pub(super) fn repo(&self, r: &Name) -> String {
        format!("repositories/{}", r.as_str())
    }
    pub(super) fn link(&self, r: &Name, d: &Digest) -> Key {
        let (repo, alg) = (self.repo(r), alg_dir(d));
        self.key(&format!("{repo}/_layers/{alg}/{}", d.digest()))
    }
    pub(super) fn revision(&self, r: &Name, d: &Digest) -> Key {
        self.key(&format!(
            "{}/_manifests/revisions/{}/{}",
            self.repo(r),
            alg_dir(d),
            d.digest()
        ))
    }
    pub(super) fn tags_dir(&self, r: &Name) -> Key {
        self.key(&format!("{}/_manifests/tags", self.repo(r)))
    }
    pub(super) fn referrers_dir(&self, r: &Name, subject: &Digest) -> Key {
        self.key(&format!(
            "{}/_referrers/{}/{}",
            self.repo(r),
            alg_dir(subject),
            subject.digest()
        ))
    }
    pub(super) fn upload_dir(&self, r: &Name, id: Uuid) -> String {
        format!("{}/_uploads/{}", self.repo(r), id.hyphenated())
    }
    pub(super) fn session_key(&self, r: &Name, id: Uuid, leaf: &str) -> Key {
        self.key(&format!("{}/{leaf}", self.upload_dir(r, id)))
    }

    /// An object's bytes, None when it does not exist.
    pub(super) async fn read(&self, key: &Key) -> StorageResult<Option<Bytes>> {
        match self.store.get(key).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| store_err(key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(key, e)),
        }
    }

    /// An object's size, None when it does not exist.
    pub(super) async fn size(&self, key: &Key) -> StorageResult<Option<u64>> {
        match self.store.head(key).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(key, e)),
        }
    }

    pub(super) async fn put(&self, key: &Key, bytes: impl Into<PutPayload>) -> StorageResult<()> {
        self.store
            .put(key, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| store_err(key, e))
    }

    /// Delete an object; deleting one that is not there is not an error.
    pub(super) async fn delete(&self, key: &Key) -> StorageResult<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(key, e)),
        }
    }

    /// Names of the objects directly under `dir`.
    pub(super) async fn leaves(&self, dir: &Key) -> StorageResult<Vec<object_store::ObjectMeta>> {
        self.store
            .list_with_delimiter(Some(dir))
            .await
            .map(|l| l.objects)
            .map_err(|e| store_err(dir, e))
    }

    /// The session's state and the version to replace it conditionally.
    pub(super) async fn session(
        &self,
        r: &Name,
        id: Uuid,
    ) -> StorageResult<Option<(Session, UpdateVersion)>> {
        let key = self.session_key(r, id, "state");
        let got = match self.store.get(&key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err(&key, e)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(|e| store_err(&key, e))?;
        let s: Session = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
        Ok(Some((s, version)))
    }
}

pub(super) fn corrupt(key: &Key, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        path: key.to_string().into(),
        reason: e.to_string(),
    }
}

/// A blob stored by descriptor: its bytes are the data object `blobs/data/<data>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BlobRef {
    #[serde(with = "uuid_text")]
    pub(super) data: Uuid,
    pub(super) size: u64,
}

/// A uuid as its hyphenated text (the `uuid` crate is built without serde here).
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.hyphenated().to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// How a blob is stored.
pub(super) enum Stored {
    /// At `blobs/sha256/…`, this many bytes.
    Inline(u64),
    Ref(BlobRef),
}

impl Stored {
    pub(super) fn size(&self) -> u64 {
        match self {
            Stored::Inline(n) => *n,
            Stored::Ref(r) => r.size,
        }
    }
}

/// An upload session as stored in its `state` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Session {
    /// The multipart upload writes `blobs/data/<uuid>` (false: a session begun by an older
    /// version, whose multipart is at `_uploads/<uuid>/data` and is copied when finished).
    #[serde(default)]
    pub(super) detached: bool,
    /// The multipart upload at `data`, once a full part was cut.
    #[serde(default)]
    pub(super) multipart: Option<String>,
    /// Content ids of parts `0..n`, each exactly `part_size` bytes.
    #[serde(default)]
    pub(super) parts: Vec<String>,
    pub(super) part_size: u64,
    /// Bytes in the tail object, after the parts.
    pub(super) tail: u64,
    /// Hash state over all the bytes so far, hex.
    pub(super) hash: String,
    /// The algorithm of `hash`: sha256 unless the session was opened for another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) algorithm: Option<String>,
}

impl Session {
    pub(super) fn offset(&self) -> u64 {
        self.parts.len() as u64 * self.part_size + self.tail
    }

    pub(super) fn hasher(&self, key: &Key) -> StorageResult<Hasher> {
        let raw = hex::decode(&self.hash).map_err(|e| corrupt(key, e))?;
        let bad = |e| corrupt(key, format!("hash state: {e:?}"));
        let len = || corrupt(key, "hash state has the wrong length");
        match self.algorithm.as_deref() {
            None | Some("sha256") => {
                let state = raw.as_slice().try_into().map_err(|_| len())?;
                Ok(Hasher::Sha256(Sha256::deserialize(state).map_err(bad)?))
            }
            Some("sha512") => {
                let state = raw.as_slice().try_into().map_err(|_| len())?;
                Ok(Hasher::Sha512(Sha512::deserialize(state).map_err(bad)?))
            }
            Some(other) => Err(corrupt(key, format!("hash algorithm {other:?}"))),
        }
    }

    pub(super) fn set_hasher(&mut self, h: &Hasher) {
        (self.hash, self.algorithm) = match h {
            Hasher::Sha256(h) => (hex::encode(h.serialize()), None),
            Hasher::Sha512(h) => (hex::encode(h.serialize()), Some("sha512".into())),
        };
    }
}
