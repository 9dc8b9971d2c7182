//! Docker's archive metadata: `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`) and
//! `repositories`, written by `save` and read by `load` for docker-archive layouts (legacy
//! `<id>/layer.tar` + `<hex>.json`, skopeo's `<hex>.tar`, or Docker 25's `blobs/sha256/…`). A
//! docker-archive has no manifest of its own, so loading one writes an OCI manifest for it.

use std::collections::BTreeMap;

use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};

use super::ingest::{Ingested, Member};
use super::plan::{Plan, normalize_tag};
use super::{MANIFEST_JSON, printable};
use crate::blobs::MAX_METADATA_BLOB;
use crate::digest::{parse_sha256, sha256_of};
use crate::error::{Result, StoreError};
use crate::reference::Reference;
use crate::root::Store;

/// One image of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ManifestItem {
    #[serde(rename = "Config")]
    pub config: String,
    /// Familiar references (`busybox:latest`); `null` when the image was saved by ID.
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
}

/// `repositories`: familiar name -> tag -> top layer (hex).
pub(super) type Repositories = BTreeMap<String, BTreeMap<String, String>>;

fn parse_manifest_json(bytes: &[u8]) -> Result<Vec<ManifestItem>> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::invalid("manifest.json in the archive", e.to_string()))
}

fn parse_repo_tags(item: &ManifestItem) -> Result<Vec<Reference>> {
    let mut out = Vec::new();
    for t in item.repo_tags.iter().flatten() {
        let r = Reference::parse(t).map_err(|e| {
            StoreError::invalid(
                format!("RepoTags entry {t:?} in manifest.json"),
                printable(&e.to_string()),
            )
        })?;
        if let Some(r) = normalize_tag(&r)
            && !out.contains(&r)
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// RepoTags by config digest (`sha256:…`), for OCI entries that carry no name.
pub(super) fn repo_tags_by_config(bytes: &[u8]) -> Result<Vec<(String, Vec<Reference>)>> {
    let mut out = Vec::new();
    for item in parse_manifest_json(bytes)? {
        let tags = parse_repo_tags(&item)?;
        let config = item.config.rsplit('/').next().unwrap_or_default();
        let config = config.strip_suffix(".json").unwrap_or(config);
        out.push((format!("sha256:{config}"), tags));
    }
    Ok(out)
}

/// The config's `rootfs.diff_ids`.
fn diff_ids_of(config: &[u8], what: &str) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| StoreError::invalid(what.to_string(), format!("config is not JSON: {e}")))?;
    let ids = v
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(|d| d.as_array())
        .ok_or_else(|| StoreError::invalid(what.to_string(), "config has no rootfs.diff_ids"))?;
    ids.iter()
        .map(|d| {
            d.as_str().map(str::to_string).ok_or_else(|| {
                StoreError::invalid(what.to_string(), "config has a non-string diff ID")
            })
        })
        .collect()
}

/// The config of one manifest.json item, wherever the archive keeps it.
fn config_bytes(store: &Store, ing: &Ingested, path: &str) -> Result<Vec<u8>> {
    let shown = printable(path);
    match ing.get(path) {
        Some(Member::Json(b)) => Ok(b.clone()),
        Some(Member::Blob(b)) if b.size <= MAX_METADATA_BLOB => {
            store.blobs().read_verified(&b.digest)
        }
        Some(_) => Err(StoreError::invalid(
            format!("config {shown} in the archive"),
            "it is larger than 16 MiB",
        )),
        None => Err(StoreError::invalid(
            "image archive",
            format!("config {shown} named in manifest.json is not in the archive"),
        )),
    }
}

pub(super) fn plan(store: &Store, ing: &Ingested) -> Result<Vec<Plan>> {
    let bytes = ing.json(MANIFEST_JSON).ok_or_else(|| {
        StoreError::invalid("image archive", "manifest.json is not a regular file")
    })?;
    let mut plans = Vec::new();
    for item in parse_manifest_json(bytes)? {
        plans.push(plan_item(store, ing, &item)?);
    }
    Ok(plans)
}

fn plan_item(store: &Store, ing: &Ingested, item: &ManifestItem) -> Result<Plan> {
    let tags = parse_repo_tags(item)?;
    let config = config_bytes(store, ing, &item.config)?;
    let what = format!("image {} in the archive", sha256_of(&config));
    let diff_ids = diff_ids_of(&config, &what)?;
    if diff_ids.len() != item.layers.len() {
        return Err(StoreError::invalid(
            what,
            format!(
                "its config lists {} layers (rootfs.diff_ids) but manifest.json lists {}",
                diff_ids.len(),
                item.layers.len()
            ),
        ));
    }
    let mut layers = Vec::with_capacity(item.layers.len());
    for (path, expected) in item.layers.iter().zip(&diff_ids) {
        let shown = printable(path);
        let blob = ing.blob(path).ok_or_else(|| {
            StoreError::invalid(
                "image archive",
                format!("layer {shown} named in manifest.json is not in the archive"),
            )
        })?;
        let (diff_id, compression) = blob.diff_id(store, &shown)?;
        let expected = parse_sha256(expected)?;
        if diff_id != expected {
            return Err(StoreError::DigestMismatch {
                what: format!("layer {shown} of {what} (diff ID)"),
                expected: expected.to_string(),
                actual: diff_id.to_string(),
            });
        }
        layers.push(Descriptor::new(
            compression.layer_media_type(),
            blob.size,
            blob.digest.clone(),
        ));
    }
    Ok(Plan {
        image: store.write_image(&config, layers)?,
        tags,
    })
}
