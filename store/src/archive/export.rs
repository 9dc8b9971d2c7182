//! The build exporter (`build --output type=oci|docker`): one image as an OCI image layout tar
//! (`oci-layout`, `index.json` naming the tags, `blobs/sha256/…`), or the same plus Docker's
//! `manifest.json` so `docker load` takes it, as BuildKit's `oci` and `docker` exporters write.
//!
//! The store keeps layers uncompressed; each is compressed here as asked (`gzip` on every CPU
//! with the push path's block-parallel gzip, `zstd` with zstd's own worker threads, or left
//! plain), its digest and size taken from the compressed bytes in the same pass, into a temp
//! file under the store (a tar member's size comes before its content). The config is the
//! stored one, so the image ID is unchanged; the manifest is new, naming the compressed layers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use oci_spec::image::{Digest, ImageManifest};
use serde_json::{Value, json};

use super::docker::{ManifestItem, Repositories};
use super::members::{
    BlobEntry, append_blob, append_bytes, append_dir, header, to_json, write_error,
};
use super::{INDEX_JSON, MANIFEST_JSON, OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE, REPOSITORIES};
use crate::compression::{self, Compression};
use crate::digest::{HashingWriter, sha256_of};
use crate::error::{Result, StoreError};
use crate::images::{ANN_CONTAINERD_NAME, ANN_REF_NAME, Image};
use crate::reference::Reference;
use crate::root::Store;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Which archive to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// An OCI image layout (`--output type=oci`).
    Oci,
    /// A `docker load` archive (`--output type=docker`): the OCI layout plus `manifest.json`,
    /// with Docker's media types (zstd has none, so a zstd export keeps OCI's, as BuildKit).
    Docker,
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: ExportFormat,
    pub compression: Compression,
    /// zstd level (1–22) or gzip level (0–9); `None`: 3 for zstd, 6 for gzip.
    pub level: Option<u32>,
    /// Names for the image inside the archive.
    pub tags: Vec<Reference>,
    /// Compressing threads.
    pub threads: usize,
    /// The members' mtime; `None`: the image's `created`.
    pub mtime: Option<u64>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Exported {
    pub manifest: Digest,
    pub manifest_size: u64,
    /// The config digest (the image ID).
    pub config: Digest,
    /// Per layer: (diff ID, digest in the archive, size in the archive).
    pub layers: Vec<(Digest, Digest, u64)>,
}

/// A layer as it goes into the archive: a stored blob, or compressed bytes in a temp file.
enum LayerBlob {
    Stored(BlobEntry),
    Temp {
        file: tempfile::NamedTempFile,
        digest: Digest,
        size: u64,
    },
}

/// Write `img` to `out` as `opts` asks; nothing is written to `out` before every layer is
/// compressed, so a failure leaves at most an empty output.
pub fn export(
    store: &Store,
    img: &Image,
    opts: &ExportOptions,
    out: &mut dyn Write,
) -> Result<Exported> {
    // No sweep may remove a blob while it is read.
    let _no_gc = store.writer_lock()?;
    let manifest_bytes = store.blobs().read_verified(&img.manifest)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| StoreError::corrupt(format!("manifest {}", img.manifest), e))?;
    let config_bytes = store.blobs().read_verified(manifest.config().digest())?;
    let config: Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| StoreError::corrupt(format!("config {}", img.id), e))?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers().len() {
        return Err(StoreError::corrupt(
            format!("image {}", img.id),
            format!(
                "its config lists {} diff IDs for {} layers",
                diff_ids.len(),
                manifest.layers().len()
            ),
        ));
    }
    let mtime = opts.mtime.unwrap_or_else(|| {
        img.created_time()
            .map(|t| t.timestamp().max(0) as u64)
            .unwrap_or(0)
    });
    let docker = opts.format == ExportFormat::Docker && opts.compression != Compression::Zstd;

    let mut blobs: Vec<LayerBlob> = Vec::new();
    let mut layer_descs = Vec::new();
    let mut exported_layers = Vec::new();
    for (l, diff_id) in manifest.layers().iter().zip(&diff_ids) {
        let stored = Compression::from_media_type(l.media_type());
        let (digest, size) = if stored == opts.compression {
            blobs.push(LayerBlob::Stored(BlobEntry {
                digest: l.digest().clone(),
                size: l.size(),
                mtime,
            }));
            (l.digest().clone(), l.size())
        } else {
            let src = store.blobs().open(l.digest())?;
            let src = compression::decoder(BufReader::with_capacity(1 << 20, src), stored)
                .map_err(|e| StoreError::io("reading layer", store.blobs().path(l.digest()), e))?;
            let file = tempfile::NamedTempFile::with_prefix_in("export-", store.tmp_dir())
                .map_err(|e| StoreError::io("creating a temp file in", store.tmp_dir(), e))?;
            let (digest, size) = compress_layer(
                src,
                file.as_file()
                    .try_clone()
                    .map_err(|e| StoreError::io("opening", file.path(), e))?,
                opts.compression,
                opts.level,
                opts.threads,
            )
            .map_err(|e| StoreError::io("compressing layer", diff_id.clone(), e))?;
            blobs.push(LayerBlob::Temp {
                file,
                digest: digest.clone(),
                size,
            });
            (digest, size)
        };
        let media_type = match (docker, opts.compression) {
            (true, Compression::Gzip) => DOCKER_LAYER_GZIP.to_string(),
            (true, _) => DOCKER_LAYER.to_string(),
            (false, c) => c.layer_media_type().to_string(),
        };
        layer_descs
            .push(json!({"mediaType": media_type, "digest": digest.to_string(), "size": size}));
        exported_layers.push((crate::digest::parse_sha256(diff_id)?, digest.clone(), size));
    }
    let config_digest = manifest.config().digest().clone();
    let new_manifest = json!({
        "schemaVersion": 2,
        "mediaType": if docker { DOCKER_MANIFEST } else { OCI_MANIFEST },
        "config": {
            "mediaType": if docker { DOCKER_CONFIG } else { OCI_CONFIG },
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layer_descs,
    });
    let new_manifest_bytes = to_json(&new_manifest)?;
    let manifest_digest = sha256_of(&new_manifest_bytes);

    let descriptor = |annotations: Option<Value>| {
        let mut d = json!({
            "mediaType": if docker { DOCKER_MANIFEST } else { OCI_MANIFEST },
            "digest": manifest_digest.to_string(),
            "size": new_manifest_bytes.len(),
        });
        if let Some(a) = annotations {
            d["annotations"] = a;
        }
        d
    };
    let mut index_entries = Vec::new();
    let mut repositories = Repositories::new();
    if opts.tags.is_empty() {
        index_entries.push(descriptor(None));
    }
    for t in &opts.tags {
        let tag = t.tag().unwrap_or("latest").to_string();
        index_entries.push(descriptor(Some(json!({
            ANN_CONTAINERD_NAME: t.to_string(),
            ANN_REF_NAME: tag,
        }))));
        if let Some((_, top, _)) = exported_layers.last() {
            repositories
                .entry(t.familiar_name())
                .or_default()
                .insert(tag, top.digest().to_string());
        }
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index_entries,
    });
    let index_bytes = to_json(&index)?;

    // Members in path order: blobs by digest, then the metadata files.
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    members.insert(
        manifest_digest.to_string(),
        Member::Bytes(&new_manifest_bytes),
    );
    members.insert(
        config_digest.to_string(),
        Member::Stored(BlobEntry {
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            mtime,
        }),
    );
    for b in &blobs {
        let (d, m) = match b {
            LayerBlob::Stored(e) => (
                e.digest.to_string(),
                Member::Stored(BlobEntry {
                    digest: e.digest.clone(),
                    size: e.size,
                    mtime,
                }),
            ),
            LayerBlob::Temp { file, digest, size } => (
                digest.to_string(),
                Member::File {
                    file: file.as_file(),
                    size: *size,
                },
            ),
        };
        members.insert(d, m);
    }

    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut tar = tar::Builder::new(&mut out);
    append_dir(&mut tar, "blobs/", mtime)?;
    append_dir(&mut tar, "blobs/sha256/", mtime)?;
    for (digest, m) in members {
        let path = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        match m {
            Member::Bytes(b) => append_bytes(&mut tar, &path, b, mtime)?,
            Member::Stored(e) => append_blob(store, &mut tar, &e)?,
            Member::File { mut file, size } => {
                file.rewind().map_err(write_error)?;
                let mut h = header(tar::EntryType::Regular, size, mtime);
                tar.append_data(
                    &mut h,
                    &path,
                    BufReader::with_capacity(1 << 20, file).take(size),
                )
                .map_err(write_error)?;
            }
        }
    }
    append_bytes(&mut tar, INDEX_JSON, &index_bytes, mtime)?;
    if opts.format == ExportFormat::Docker {
        let items = vec![ManifestItem {
            config: format!("blobs/sha256/{}", config_digest.digest()),
            repo_tags: (!opts.tags.is_empty())
                .then(|| opts.tags.iter().map(|t| t.familiar_string()).collect()),
            layers: exported_layers
                .iter()
                .map(|(_, d, _)| format!("blobs/sha256/{}", d.digest()))
                .collect(),
        }];
        append_bytes(&mut tar, MANIFEST_JSON, &to_json(&items)?, mtime)?;
    }
    append_bytes(
        &mut tar,
        OCI_LAYOUT_FILE,
        OCI_LAYOUT_CONTENT.as_bytes(),
        mtime,
    )?;
    if opts.format == ExportFormat::Docker && !repositories.is_empty() {
        append_bytes(&mut tar, REPOSITORIES, &to_json(&repositories)?, mtime)?;
    }
    tar.into_inner().map_err(write_error)?;
    out.flush().map_err(write_error)?;
    Ok(Exported {
        manifest: manifest_digest,
        manifest_size: new_manifest_bytes.len() as u64,
        config: config_digest,
        layers: exported_layers,
    })
}

enum Member<'a> {
    Bytes(&'a [u8]),
    Stored(BlobEntry),
    File { file: &'a File, size: u64 },
}

/// Compress `src` into `out` as `c` says; returns the digest and size of what was written
/// (hashed as it is written, no second read).
pub fn compress_layer<R: Read>(
    mut src: R,
    out: File,
    c: Compression,
    level: Option<u32>,
    threads: usize,
) -> io::Result<(Digest, u64)> {
    let sink = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
    let sink = match c {
        Compression::None => {
            let mut sink = sink;
            io::copy(&mut src, &mut sink)?;
            sink
        }
        Compression::Gzip => {
            crate::remote::gzip::compress_level(src, sink, threads, level.unwrap_or(6))?
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(sink, level.unwrap_or(3) as i32)?;
            if threads > 1 {
                enc.multithread(threads as u32)?;
            }
            io::copy(&mut src, &mut enc)?;
            enc.finish()?
        }
    };
    let (mut w, digest, size) = sink.finish();
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok((digest, size))
}
