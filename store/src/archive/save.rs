//! `save`: the images the user named, as one uncompressed tar in Docker 25's layout. Members
//! are written in lexical path order (blobs, then `index.json`, `manifest.json`, `oci-layout`,
//! `repositories`, as Docker's own tar walk orders them) with fixed headers, so saving the same
//! images twice gives identical bytes. Blob contents stream from the store and are verified on
//! the way out, so a damaged store cannot produce an archive that fails only at load time.

use std::collections::BTreeMap;
use std::io::Write;

use oci_spec::image::{Digest, ImageManifest};
use serde_json::{Value, json};

use super::docker::{ManifestItem, Repositories};
use super::members::{BlobEntry, append_blob, append_bytes, append_dir, to_json, write_error};
use super::{
    INDEX_JSON, MANIFEST_JSON, OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE, REPOSITORIES, blob_path,
};
use crate::error::{Result, StoreError};
use crate::images::{ANN_CONTAINERD_NAME, ANN_REF_NAME, Image};
use crate::reference::Reference;
use crate::root::Store;

/// An image picked for the archive, with the tags to write for it.
struct Selected {
    image: Image,
    tags: Vec<Reference>,
}

/// Write the images `specs` name (as the user typed them) to `out`; returns them in order.
///
/// A name without a tag saves every tag of that repository, `name:tag` that tag, and an ID or
/// digest the image without tags.
pub fn save(store: &Store, specs: &[String], out: &mut dyn Write) -> Result<Vec<Image>> {
    if specs.is_empty() {
        return Err(StoreError::invalid("save", "no image given"));
    }
    // Not a writer, but the same promise is needed: no sweep removes a blob while it streams.
    let _no_gc = store.writer_lock()?;
    let all = store.images()?;
    let mut selected: Vec<Selected> = Vec::new();
    for spec in specs {
        for (image, tag) in select(store, &all, spec)? {
            let pos = match selected
                .iter()
                .position(|s| s.image.manifest == image.manifest)
            {
                Some(p) => p,
                None => {
                    selected.push(Selected {
                        image,
                        tags: Vec::new(),
                    });
                    selected.len() - 1
                }
            };
            if let Some(t) = tag
                && !selected[pos].tags.contains(&t)
            {
                selected[pos].tags.push(t);
            }
        }
    }

    let mut blobs: BTreeMap<String, BlobEntry> = BTreeMap::new();
    let mut add_blob = |digest: &Digest, size: u64, mtime: u64| {
        blobs
            .entry(digest.to_string())
            .or_insert_with(|| BlobEntry {
                digest: digest.clone(),
                size,
                mtime,
            });
    };
    let mut index_entries = Vec::new();
    let mut items = Vec::new();
    let mut repositories = Repositories::new();
    let mut newest = 0u64;
    for s in &selected {
        let img = &s.image;
        let manifest = read_manifest(store, img)?;
        let mtime = mtime_of(img.created.as_deref());
        newest = newest.max(mtime);
        add_blob(&img.manifest, img.manifest_size, mtime);
        add_blob(manifest.config().digest(), manifest.config().size(), mtime);
        for l in manifest.layers() {
            add_blob(l.digest(), l.size(), mtime);
        }

        let descriptor = |annotations: Option<Value>| {
            let mut d = json!({
                "mediaType": img.manifest_media_type.to_string(),
                "digest": img.manifest.to_string(),
                "size": img.manifest_size,
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if s.tags.is_empty() {
            index_entries.push(descriptor(None));
        }
        for t in &s.tags {
            let tag = t
                .tag()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "latest".into());
            index_entries.push(descriptor(Some(json!({
                ANN_CONTAINERD_NAME: t.to_string(),
                ANN_REF_NAME: tag,
            }))));
            if let Some(top) = manifest.layers().last() {
                repositories
                    .entry(t.familiar_name())
                    .or_default()
                    .insert(tag, top.digest().digest().to_string());
            }
        }
        items.push(ManifestItem {
            config: blob_path(manifest.config().digest()),
            repo_tags: (!s.tags.is_empty())
                .then(|| s.tags.iter().map(|t| t.familiar_string()).collect()),
            layers: manifest
                .layers()
                .iter()
                .map(|l| blob_path(l.digest()))
                .collect(),
        });
    }

    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index_entries,
    });
    let index_bytes = to_json(&index)?;
    let manifest_bytes = to_json(&items)?;
    let repositories_bytes = to_json(&repositories)?;

    let mut tar = tar::Builder::new(out);
    append_dir(&mut tar, "blobs/", newest)?;
    append_dir(&mut tar, "blobs/sha256/", newest)?;
    for b in blobs.values() {
        append_blob(store, &mut tar, b)?;
    }
    append_bytes(&mut tar, INDEX_JSON, &index_bytes, newest)?;
    append_bytes(&mut tar, MANIFEST_JSON, &manifest_bytes, newest)?;
    append_bytes(
        &mut tar,
        OCI_LAYOUT_FILE,
        OCI_LAYOUT_CONTENT.as_bytes(),
        newest,
    )?;
    if !repositories.is_empty() {
        append_bytes(&mut tar, REPOSITORIES, &repositories_bytes, newest)?;
    }
    let out = tar.into_inner().map_err(write_error)?;
    out.flush().map_err(write_error)?;
    Ok(selected.into_iter().map(|s| s.image).collect())
}

/// The images one spec names, each with the tag to write for it (if any).
fn select(store: &Store, all: &[Image], spec: &str) -> Result<Vec<(Image, Option<Reference>)>> {
    if let Ok(r) = Reference::parse(spec)
        && r.digest().is_none()
    {
        if r.tag().is_some() {
            let img = store.resolve_image(spec)?;
            let full = r.with_default_tag();
            let tag = img.tags.iter().find(|t| **t == full).cloned();
            return Ok(vec![(img, tag)]);
        }
        // A bare name: every tag of that repository, as `docker save busybox` does.
        let repo = r.repository();
        let mut out = Vec::new();
        for img in all {
            for t in &img.tags {
                if t.repository() == repo {
                    out.push((img.clone(), Some(t.clone())));
                }
            }
        }
        if !out.is_empty() {
            out.sort_by_key(|(_, t)| t.as_ref().map(|t| t.to_string()));
            return Ok(out);
        }
    }
    // An ID, an ID prefix or name@digest: the image, without tags (as Docker).
    Ok(vec![(store.resolve_image(spec)?, None)])
}

fn read_manifest(store: &Store, img: &Image) -> Result<ImageManifest> {
    let bytes = store.blobs().read_verified(&img.manifest)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::corrupt(format!("manifest {}", img.manifest), e))
}

/// Seconds since the epoch of an RFC 3339 `created`, 0 when absent or before 1970.
fn mtime_of(created: Option<&str>) -> u64 {
    created
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0)
}
