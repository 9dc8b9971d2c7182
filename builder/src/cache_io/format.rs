//! The exported cache's shape, after BuildKit's registry cache: an OCI image manifest whose
//! config blob (our media type: our keys are not BuildKit's) maps step keys to the images the
//! steps made, and whose layers are the cached layers (gzip, annotated with their uncompressed
//! digest as containerd does) and the chunks of cache-mount contents.

use serde::{Deserialize, Serialize};

use crate::cache::KeyInputs;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.berth.buildcache.config.v1+json";
pub const CHUNK_MEDIA_TYPE: &str = "application/vnd.berth.buildcache.mount-chunk.v1";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const UNCOMPRESSED_ANNOTATION: &str = "containerd.io/uncompressed";

/// The config blob.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    #[serde(default)]
    pub layers: Vec<LayerEntry>,
    #[serde(default)]
    pub records: Vec<RecordEntry>,
    #[serde(default)]
    pub mounts: Vec<MountEntry>,
}

/// A layer as the cached images' manifests name it, and the blob that carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerEntry {
    /// The digest in the images' manifests (a diff ID when the layer is stored uncompressed).
    pub digest: String,
    #[serde(rename = "diffID")]
    pub diff_id: String,
    /// The blob in the cache (gzip of the layer when `digest` is its diff ID).
    pub blob: String,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// A step: its key, what the key was made of (for miss explanations), and the image it made,
/// byte for byte (so the importing side gets the same digests).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordEntry {
    pub key: String,
    pub inputs: KeyInputs,
    pub manifest: String,
    pub config: String,
}

/// A `RUN --mount=type=cache` directory: a tar of it cut into content-defined chunks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountEntry {
    /// The directory's name under `builder/cache-mounts/`.
    pub dir: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes of the tar.
    pub size: u64,
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Chunk {
    pub digest: String,
    pub size: u64,
}
