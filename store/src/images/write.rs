//! Writing a new image: its config blob and the OCI manifest naming it and its layers. Every
//! path that makes an image from parts — `import`, `commit`, each build step, `load` of a
//! docker-archive (which carries no manifest) — ends here, so they all write the same manifest.

use oci_spec::image::{Descriptor, Digest, ImageManifestBuilder, MediaType};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::root::Store;

/// An image config as the bytes stored: the image ID is their digest.
pub fn config_json(config: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(config).map_err(|e| StoreError::invalid("image config", e.to_string()))
}

/// Facts about a newly stored image that go into its index entries.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub manifest: Digest,
    pub manifest_size: u64,
    pub media_type: MediaType,
    pub config: Digest,
    pub created: Option<String>,
    pub size: u64,
}

impl Store {
    /// Store `config` (the exact bytes: the image ID is their digest) and an OCI manifest naming
    /// it and `layers` (blobs already in the store), bottom layer first. The image is not named
    /// in the index yet ([`Store::add_image`] does that).
    pub fn write_image(&self, config: &[u8], layers: Vec<Descriptor>) -> Result<NewImage> {
        let (config_digest, config_size) = self.blobs().put_bytes(config)?;
        let size = layers.iter().fold(0u64, |n, l| n.saturating_add(l.size()));
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_size,
                config_digest.clone(),
            ))
            .layers(layers)
            .build()
            .map_err(|e| StoreError::invalid("image manifest", e.to_string()))?;
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| StoreError::invalid("image manifest", e.to_string()))?;
        let (manifest_digest, manifest_size) = self.blobs().put_bytes(&manifest_bytes)?;
        Ok(NewImage {
            manifest: manifest_digest,
            manifest_size,
            media_type: MediaType::ImageManifest,
            config: config_digest,
            created: created_of(config),
            size,
        })
    }
}

/// The config's `created`, as the index records it.
pub(crate) fn created_of(config: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(config).ok()?;
    v.get("created")?.as_str().map(str::to_string)
}
