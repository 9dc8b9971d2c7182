//! Writing an export: layers (gzip-compressed on the way, the compressed digest remembered per
//! diff ID as `push` remembers it, so a second export neither recompresses nor re-uploads),
//! cache-mount chunks (`mode=max`), the config, then the manifest. Every blob is asked for
//! before it is uploaded.

use std::collections::{BTreeMap, BTreeSet};

use berth_store::compression::Compression;
use berth_store::digest::HashingWriter;
use berth_store::remote::Options;
use berth_store::remote::state::{Compressed, State};
use berth_store::{Image, Store};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::backend::Backend;
use super::format::{
    CHUNK_MEDIA_TYPE, CONFIG_MEDIA_TYPE, CacheConfig, LayerEntry, MANIFEST_MEDIA_TYPE, RecordEntry,
    UNCOMPRESSED_ANNOTATION,
};
use super::{CacheIo, CacheTo, Mode, mounts};
use crate::cache::KeyInputs;

const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What an export wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportStats {
    pub records: usize,
    pub layers: usize,
    pub layers_uploaded: usize,
    pub mounts: usize,
    pub chunks: usize,
    pub chunks_uploaded: usize,
}

impl CacheIo {
    /// Export what the build recorded to `to`; the final image is `last`.
    pub fn export(
        &self,
        store: &Store,
        last: &Image,
        to: &CacheTo,
        opts: &Options,
    ) -> Result<ExportStats, String> {
        let (steps, mounts) = match self.recorded.lock() {
            Ok(r) => (r.steps.clone(), r.mounts.clone()),
            Err(_) => return Err("the build's records are unreadable".into()),
        };
        export(self, store, last, to, opts, &steps, &mounts)
    }
}

pub(super) fn export(
    io: &CacheIo,
    store: &Store,
    last: &Image,
    to: &CacheTo,
    opts: &Options,
    steps: &[(KeyInputs, Image)],
    used_mounts: &BTreeSet<String>,
) -> Result<ExportStats, String> {
    let backend = Backend::open(&to.location, true, opts)?;
    let mut stats = ExportStats::default();
    // The layers to carry: the final image's; with mode=max every step's.
    let mut images: Vec<&Image> = vec![last];
    if to.mode == Mode::Max {
        images.extend(steps.iter().map(|(_, i)| i));
    }
    let mut layers: BTreeMap<String, LayerEntry> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for img in images {
        let ls = store.layers(img).map_err(|e| e.to_string())?;
        for l in ls {
            let digest = l.descriptor.digest().to_string();
            if layers.contains_key(&digest) {
                continue;
            }
            let (entry, up) = layer(io, store, &backend, &l)?;
            stats.layers_uploaded += usize::from(up);
            layers.insert(digest.clone(), entry);
            order.push(digest);
        }
    }
    stats.layers = layers.len();
    let mut records = Vec::new();
    for (inputs, img) in steps {
        let manifest = store
            .blobs()
            .read_verified(&img.manifest)
            .map_err(|e| e.to_string())?;
        let config = store
            .blobs()
            .read_verified(&img.id)
            .map_err(|e| e.to_string())?;
        records.push(RecordEntry {
            key: inputs.key(),
            inputs: inputs.clone(),
            manifest: String::from_utf8(manifest).map_err(|e| e.to_string())?,
            config: String::from_utf8(config).map_err(|e| e.to_string())?,
        });
    }
    stats.records = records.len();
    let mut mount_entries = Vec::new();
    if to.mode == Mode::Max {
        for dir in used_mounts {
            if let Some((m, up)) = mounts::export(store.root(), dir, &backend)? {
                stats.chunks += m.chunks.len();
                stats.chunks_uploaded += up;
                mount_entries.push(m);
            }
        }
        stats.mounts = mount_entries.len();
    }
    let mut descs: Vec<Value> = order
        .iter()
        .map(|d| {
            let l = &layers[d];
            json!({
                "mediaType": l.media_type,
                "digest": l.blob,
                "size": l.size,
                "annotations": { UNCOMPRESSED_ANNOTATION: l.diff_id },
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for m in &mount_entries {
        for c in &m.chunks {
            if seen.insert(c.digest.clone()) {
                descs.push(json!({
                    "mediaType": CHUNK_MEDIA_TYPE,
                    "digest": c.digest,
                    "size": c.size,
                }));
            }
        }
    }
    let config = CacheConfig {
        version: 1,
        layers: order.iter().map(|d| layers[d].clone()).collect(),
        records,
        mounts: mount_entries,
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config_bytes)));
    let config_size = config_bytes.len();
    if !backend.has_blob(&config_digest)? {
        backend.put_blob_bytes(&config_digest, config_bytes)?;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": descs,
    });
    let body = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    backend.put_manifest(body, MANIFEST_MEDIA_TYPE)?;
    Ok(stats)
}

/// Make sure the cache holds `l`; returns its entry and whether it was uploaded.
fn layer(
    io: &CacheIo,
    store: &Store,
    backend: &Backend,
    l: &berth_store::layers::Layer,
) -> Result<(LayerEntry, bool), String> {
    let digest = l.descriptor.digest().to_string();
    let diff_id = l.diff_id.to_string();
    let compressed = Compression::from_media_type(l.descriptor.media_type()) != Compression::None;
    let local = store.blobs().contains(l.descriptor.digest());
    if compressed {
        let entry = LayerEntry {
            digest: digest.clone(),
            diff_id,
            blob: digest.clone(),
            size: l.descriptor.size(),
            media_type: l.descriptor.media_type().to_string(),
        };
        if backend.has_blob(&digest)? {
            return Ok((entry, false));
        }
        if local {
            backend.put_blob_file(&digest, &store.blobs().path(l.descriptor.digest()))?;
        } else {
            copy_from_import(io, store, backend, &digest)?;
        }
        return Ok((entry, true));
    }
    // Stored uncompressed: carried as gzip.
    let known = State::load(store)
        .map_err(|e| e.to_string())?
        .compressed
        .get(&diff_id)
        .cloned()
        .or_else(|| {
            io.imported_layer(&digest).map(|(_, e)| Compressed {
                digest: e.blob.clone(),
                size: e.size,
                media_type: e.media_type.clone(),
            })
        });
    if let Some(k) = &known
        && backend.has_blob(&k.digest)?
    {
        return Ok((entry_for(&digest, &diff_id, k), false));
    }
    if !local {
        let Some(k) = known else {
            return Err(format!(
                "layer {digest} is neither stored here nor in an imported cache"
            ));
        };
        copy_from_import(io, store, backend, &digest)?;
        return Ok((entry_for(&digest, &diff_id, &k), true));
    }
    let src = store
        .blobs()
        .open(l.descriptor.digest())
        .map_err(|e| e.to_string())?;
    // A named temp file: the uploader reads from a path.
    let (tmp, path) = tempfile::NamedTempFile::new_in(store.tmp_dir())
        .map_err(|e| e.to_string())?
        .into_parts();
    let w = HashingWriter::new(tmp);
    let w = berth_store::remote::gzip::compress(src, w, berth_store::remote::gzip::threads())
        .map_err(|e| format!("compressing layer {diff_id}: {e}"))?;
    let (tmp, gz_digest, size) = w.finish();
    drop(tmp);
    let gz = Compressed {
        digest: gz_digest.to_string(),
        size,
        media_type: OCI_GZIP.into(),
    };
    if !backend.has_blob(&gz.digest)? {
        backend.put_blob_file(&gz.digest, &path)?;
    }
    let _ = State::update(store, |s| {
        s.compressed.insert(diff_id.clone(), gz.clone());
    });
    Ok((entry_for(&digest, &diff_id, &gz), true))
}

fn entry_for(digest: &str, diff_id: &str, c: &Compressed) -> LayerEntry {
    LayerEntry {
        digest: digest.to_string(),
        diff_id: diff_id.to_string(),
        blob: c.digest.clone(),
        size: c.size,
        media_type: c.media_type.clone(),
    }
}

/// A layer this root never downloaded (a lazy hit): its cache blob goes from the imported
/// cache to the new one.
fn copy_from_import(
    io: &CacheIo,
    store: &Store,
    backend: &Backend,
    digest: &str,
) -> Result<(), String> {
    let Some((from, e)) = io.imported_layer(digest) else {
        return Err(format!(
            "layer {digest} is neither stored here nor in an imported cache"
        ));
    };
    let named = tempfile::NamedTempFile::new_in(store.tmp_dir()).map_err(|e| e.to_string())?;
    let (mut out, path) = named.into_parts();
    from.fetch_blob(&e.blob, e.size, &mut out)?;
    drop(out);
    backend.put_blob_file(&e.blob, &path)
}
