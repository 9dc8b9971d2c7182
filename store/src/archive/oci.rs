//! Loading an OCI image layout archive (`skopeo copy … oci-archive:`, and the OCI half of a
//! Docker 25+ / `berth save` archive): `index.json` entries -> image manifests (through an
//! image index when the entry is one), every referenced blob checked against the archive.

use oci_spec::image::{Arch, Descriptor, ImageIndex, ImageManifest, MediaType, Os};

use super::ingest::Ingested;
use super::plan::{Plan, normalize_tag};
use super::{INDEX_JSON, MANIFEST_JSON, blob_path, docker};
use crate::blobs::MAX_METADATA_BLOB;
use crate::digest::parse_sha256;
use crate::error::{Result, StoreError};
use crate::images::{ANN_CONTAINERD_NAME, ANN_REF_NAME, NewImage};
use crate::reference::Reference;
use crate::root::Store;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn is_manifest(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageManifest) || mt.to_string() == DOCKER_MANIFEST
}

fn is_index(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageIndex) || mt.to_string() == DOCKER_MANIFEST_LIST
}

pub(super) fn plan(store: &Store, ing: &Ingested) -> Result<Vec<Plan>> {
    let bytes = ing
        .json(INDEX_JSON)
        .ok_or_else(|| StoreError::invalid("image archive", "index.json is not a regular file"))?;
    let index: ImageIndex = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::invalid("index.json in the archive", e.to_string()))?;
    // Docker writes RepoTags in manifest.json too; they name images index.json leaves untagged.
    let repo_tags = match ing.json(MANIFEST_JSON) {
        Some(b) => docker::repo_tags_by_config(b).unwrap_or_else(|e| {
            tracing::warn!("ignoring the archive's manifest.json: {e}");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let mut plans = Vec::new();
    for d in index.manifests() {
        let manifest_desc = if is_manifest(d.media_type()) {
            d.clone()
        } else if is_index(d.media_type()) {
            pick_platform(store, ing, d)?
        } else {
            tracing::warn!(
                "skipping index.json entry {} of media type {}: not an image",
                d.digest(),
                d.media_type()
            );
            continue;
        };
        let Some(image) = check_image(store, ing, &manifest_desc)? else {
            continue;
        };
        let mut tags: Vec<Reference> = tag_of(d).into_iter().collect();
        if tags.is_empty() {
            for (config, names) in &repo_tags {
                if *config == image.config.to_string() {
                    tags.extend(names.iter().cloned());
                }
            }
        }
        plans.push(Plan { image, tags });
    }
    Ok(plans)
}

/// The tag an index entry carries: containerd's full name, else the OCI ref name when it is a
/// reference (`busybox:latest`, `docker.io/library/busybox:latest`); a bare tag (`latest`, as
/// Docker and `skopeo … oci-archive:x.tar:latest` write) names no repository, so none.
fn tag_of(d: &Descriptor) -> Option<Reference> {
    let ann = d.annotations().as_ref()?;
    if let Some(name) = ann.get(ANN_CONTAINERD_NAME) {
        match Reference::parse(name) {
            Ok(r) => {
                if let Some(t) = normalize_tag(&r) {
                    return Some(t);
                }
            }
            Err(e) => tracing::warn!("ignoring annotation {ANN_CONTAINERD_NAME}={name:?}: {e}"),
        }
    }
    let name = ann.get(ANN_REF_NAME)?;
    if !name.contains('/') && !name.contains(':') {
        return None;
    }
    match Reference::parse(name) {
        Ok(r) => normalize_tag(&r),
        Err(e) => {
            tracing::warn!("ignoring annotation {ANN_REF_NAME}={name:?}: {e}");
            None
        }
    }
}

/// Check that the blob a descriptor names arrived in the archive, with the size it claims
/// (its digest was verified as it streamed in).
fn check_blob(ing: &Ingested, d: &Descriptor, what: &str) -> Result<()> {
    parse_sha256(d.digest().as_ref())?;
    let path = blob_path(d.digest());
    let Some(b) = ing.blob(&path) else {
        return Err(StoreError::invalid(
            "image archive",
            format!(
                "{what} {} is missing ({path} is not in the archive)",
                d.digest()
            ),
        ));
    };
    if b.size != d.size() {
        return Err(StoreError::SizeMismatch {
            what: format!("{what} {} in the archive", d.digest()),
            expected: d.size(),
            actual: b.size,
        });
    }
    Ok(())
}

/// Verify an image manifest, its config and layers against the archive; `None` for manifests
/// of other artifacts (signatures, charts), which are not images to load.
fn check_image(store: &Store, ing: &Ingested, d: &Descriptor) -> Result<Option<NewImage>> {
    check_blob(ing, d, "manifest")?;
    let bytes = store.blobs().read_verified(d.digest())?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
        StoreError::invalid(
            format!("manifest {} in the archive", d.digest()),
            e.to_string(),
        )
    })?;
    let config_type = manifest.config().media_type().to_string();
    if config_type != MediaType::ImageConfig.to_string() && config_type != DOCKER_CONFIG {
        tracing::warn!(
            "skipping manifest {}: config type {config_type} is not an image",
            d.digest()
        );
        return Ok(None);
    }
    check_blob(ing, manifest.config(), "config")?;
    if manifest.config().size() > MAX_METADATA_BLOB {
        return Err(StoreError::invalid(
            format!("config {} in the archive", manifest.config().digest()),
            "it is larger than 16 MiB",
        ));
    }
    let mut size = 0u64;
    for l in manifest.layers() {
        check_blob(ing, l, "layer")?;
        size = size.saturating_add(l.size());
    }
    let config = store.blobs().read_verified(manifest.config().digest())?;
    Ok(Some(NewImage {
        manifest: d.digest().clone(),
        manifest_size: d.size(),
        media_type: d.media_type().clone(),
        config: manifest.config().digest().clone(),
        created: crate::images::created_of(&config),
        size,
    }))
}

/// The manifest of an image index to load: this host's platform (linux), else the only
/// runnable image it lists. Only children present in the archive count (`docker save` of a
/// multi-platform image carries the platforms that were pulled).
fn pick_platform(store: &Store, ing: &Ingested, d: &Descriptor) -> Result<Descriptor> {
    check_blob(ing, d, "image index")?;
    let bytes = store.blobs().read_verified(d.digest())?;
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
        StoreError::invalid(
            format!("image index {} in the archive", d.digest()),
            e.to_string(),
        )
    })?;
    let host = Arch::default();
    let runnable: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|m| is_manifest(m.media_type()))
        // Attestations (buildx) are listed as platform unknown/unknown.
        .filter(|m| !matches!(m.platform(), Some(p) if p.os().to_string() == "unknown"))
        .collect();
    let present: Vec<&Descriptor> = runnable
        .iter()
        .copied()
        .filter(|m| ing.blob(&blob_path(m.digest())).is_some())
        .collect();
    let native = |m: &&Descriptor| matches!(m.platform(), Some(p) if *p.os() == Os::Linux && *p.architecture() == host);
    if let Some(m) = present.iter().find(|m| native(m)) {
        return Ok((*m).clone());
    }
    if present.len() == 1 {
        return Ok(present[0].clone());
    }
    let platforms: Vec<String> = runnable
        .iter()
        .map(|m| match m.platform() {
            Some(p) => format!("{}/{}", p.os(), p.architecture()),
            None => "unknown".into(),
        })
        .collect();
    if present.is_empty() {
        return Err(StoreError::invalid(
            "image archive",
            format!(
                "image index {} lists [{}] but none of their manifests is in the archive",
                d.digest(),
                platforms.join(", ")
            ),
        ));
    }
    Err(StoreError::Unsupported {
        what: format!("image index {}", d.digest()),
        reason: format!(
            "it has no linux/{host} image and several others [{}]; load one platform's archive",
            platforms.join(", ")
        ),
    })
}
