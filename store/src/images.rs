//! Images in the local store: the index entries that name them (one per tag, or a single
//! untagged "dangling" entry), resolution of what a user typed (`busybox`, `4a1b…`, `sha256:…`,
//! `name@sha256:…`), tagging and removal.
//!
//! An image's ID is its config digest, as Docker's. Index entries carry the ID, creation time and
//! size as annotations so that listing a thousand images reads one file.

mod write;

pub(crate) use write::created_of;
pub use write::{NewImage, config_json};

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs;

use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageManifest, MediaType};

use crate::digest::parse_sha256;
use crate::error::{IoContext, Result, StoreError};
use crate::reference::Reference;
use crate::root::Store;

pub const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANN_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANN_ID: &str = "dev.berth.image.id";
const ANN_CREATED: &str = "dev.berth.image.created";
const ANN_SIZE: &str = "dev.berth.image.size";

#[derive(serde::Deserialize)]
struct RawIndex<'a> {
    #[serde(borrow, default)]
    manifests: Vec<RawEntry<'a>>,
}

#[derive(serde::Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "mediaType", borrow)]
    media_type: Cow<'a, str>,
    #[serde(borrow)]
    digest: Cow<'a, str>,
    size: u64,
    #[serde(borrow, default)]
    annotations: RawAnnotations<'a>,
}

#[derive(serde::Deserialize, Default)]
struct RawAnnotations<'a> {
    #[serde(rename = "org.opencontainers.image.ref.name", borrow)]
    ref_name: Option<Cow<'a, str>>,
    #[serde(rename = "dev.berth.image.id", borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "dev.berth.image.created", borrow)]
    created: Option<Cow<'a, str>>,
    #[serde(rename = "dev.berth.image.size", borrow)]
    size: Option<Cow<'a, str>>,
}

/// One image as `images` lists it: a manifest and all the tags that point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Config digest: the image ID.
    pub id: Digest,
    pub manifest: Digest,
    pub manifest_size: u64,
    pub manifest_media_type: MediaType,
    pub created: Option<String>,
    /// Sum of the layer sizes (as stored).
    pub size: u64,
    /// Sorted full references.
    pub tags: Vec<Reference>,
    /// `repo@digest` references: the digest a registry knows the image by in that repository
    /// (recorded by pull and push; Docker's RepoDigests). Sorted.
    pub digests: Vec<Reference>,
}

impl Image {
    /// Creation time, parsed (configs carry any RFC 3339 offset and precision).
    pub fn created_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    pub fn short_id(&self) -> &str {
        &self.id.digest()[..12]
    }

    /// Neither tagged nor known by a registry digest: what `image prune` removes and `images`
    /// shows as `<none>:<none>`.
    pub fn is_dangling(&self) -> bool {
        self.tags.is_empty() && self.digests.is_empty()
    }

    /// The registry digest this image has in `repository`, if one was recorded.
    pub fn digest_in(&self, repository: &str) -> Option<&Reference> {
        self.digests.iter().find(|d| d.repository() == repository)
    }
}

/// What `rmi` did, in the order Docker prints it.
#[derive(Debug, Clone, PartialEq)]
pub enum Removal {
    Untagged(Reference),
    Deleted(Digest),
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANN_REF_NAME))
        .map(String::as_str)
}

fn entry(img: &NewImage, tag: Option<&Reference>) -> Descriptor {
    let mut ann = HashMap::new();
    ann.insert(ANN_ID.to_string(), img.config.to_string());
    if let Some(c) = &img.created {
        ann.insert(ANN_CREATED.to_string(), c.clone());
    }
    ann.insert(ANN_SIZE.to_string(), img.size.to_string());
    if let Some(t) = tag {
        ann.insert(ANN_REF_NAME.to_string(), t.to_string());
        ann.insert(ANN_CONTAINERD_NAME.to_string(), t.to_string());
    }
    let mut d = Descriptor::new(
        img.media_type.clone(),
        img.manifest_size,
        img.manifest.clone(),
    );
    d.set_annotations(Some(ann));
    d
}

fn new_image_of(d: &Descriptor, id: Digest) -> NewImage {
    let ann = d.annotations().clone().unwrap_or_default();
    NewImage {
        manifest: d.digest().clone(),
        manifest_size: d.size(),
        media_type: d.media_type().clone(),
        config: id,
        created: ann.get(ANN_CREATED).cloned(),
        size: ann.get(ANN_SIZE).and_then(|s| s.parse().ok()).unwrap_or(0),
    }
}

/// Point `tag` at `img` inside an index being edited; an image that loses its last tag stays
/// as one dangling entry, as Docker leaves `<none>:<none>` behind.
fn retag(entries: &mut Vec<Descriptor>, img: &NewImage, tag: Option<&Reference>) {
    if let Some(t) = tag {
        let name = t.to_string();
        let mut orphaned = Vec::new();
        entries.retain(|d| {
            if ref_name(d) == Some(name.as_str()) {
                orphaned.push(d.clone());
                false
            } else {
                true
            }
        });
        for old in orphaned {
            let still_named = entries.iter().any(|d| d.digest() == old.digest());
            if old.digest() != &img.manifest && !still_named {
                let mut dangling = old.clone();
                if let Some(a) = dangling.annotations().clone() {
                    let mut a = a;
                    a.remove(ANN_REF_NAME);
                    a.remove(ANN_CONTAINERD_NAME);
                    dangling.set_annotations(Some(a));
                }
                entries.push(dangling);
            }
        }
        // A tagged image has no dangling entry.
        entries.retain(|d| !(d.digest() == &img.manifest && ref_name(d).is_none()));
        entries.push(entry(img, Some(t)));
    } else if !entries.iter().any(|d| d.digest() == &img.manifest) {
        entries.push(entry(img, None));
    }
}

impl Store {
    /// All images, newest first, each with its tags.
    pub fn images(&self) -> Result<Vec<Image>> {
        let path = self.index_path();
        let bytes = fs::read(&path).ctx("reading", &path)?;
        // A borrowed view of index.json: listing a thousand images must not allocate a
        // HashMap per entry (see bench/images.sh).
        let index: RawIndex = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::corrupt(path.display().to_string(), e))?;
        let mut by_manifest: HashMap<&str, Image> = HashMap::with_capacity(index.manifests.len());
        for d in &index.manifests {
            let img = match by_manifest.entry(&d.digest) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let manifest = parse_sha256(&d.digest)?;
                    let id = match &d.annotations.id {
                        Some(s) => parse_sha256(s)?,
                        // Entries written by other tools (skopeo copy into our layout): read the
                        // manifest to learn the ID.
                        None => self.manifest(&manifest)?.config().digest().clone(),
                    };
                    v.insert(Image {
                        id,
                        manifest,
                        manifest_size: d.size,
                        manifest_media_type: MediaType::from(d.media_type.as_ref()),
                        created: d.annotations.created.as_deref().map(str::to_string),
                        size: d
                            .annotations
                            .size
                            .as_deref()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                        tags: Vec::new(),
                        digests: Vec::new(),
                    })
                }
            };
            if let Some(name) = &d.annotations.ref_name {
                match Reference::parse(name) {
                    Ok(r) if r.digest().is_some() && r.tag().is_none() => img.digests.push(r),
                    Ok(r) => img.tags.push(r),
                    Err(e) => {
                        tracing::warn!("ignoring index entry with bad ref name {name:?}: {e}")
                    }
                }
            }
        }
        let mut out: Vec<Image> = by_manifest.into_values().collect();
        for i in &mut out {
            if i.tags.len() > 1 {
                i.tags.sort_by_key(|t| t.to_string());
            }
            if i.digests.len() > 1 {
                i.digests.sort_by_key(|t| t.to_string());
            }
        }
        out.sort_by(|a, b| {
            b.created_time()
                .cmp(&a.created_time())
                .then(a.id.digest().cmp(b.id.digest()))
        });
        Ok(out)
    }

    /// Resolve what a user typed to one image: a reference (`busybox`, `a/b:tag`,
    /// `name@sha256:…`), a full ID or manifest digest (`sha256:…`), or an ID prefix.
    pub fn resolve_image(&self, spec: &str) -> Result<Image> {
        let images = self.images()?;
        if let Some(hex) = spec.strip_prefix("sha256:") {
            if hex.is_empty() || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(StoreError::InvalidDigest {
                    digest: spec.to_string(),
                    reason: "expected sha256: followed by lowercase hex".into(),
                });
            }
            let found: Vec<&Image> = images
                .iter()
                .filter(|i| i.id.digest().starts_with(hex) || i.manifest.digest() == hex)
                .collect();
            return pick(spec, found);
        }
        let parsed = Reference::parse(spec);
        if let Ok(r) = &parsed {
            if let Some(d) = r.digest() {
                let repo = r.repository();
                let d = d.to_string();
                let found: Vec<&Image> = images
                    .iter()
                    .filter(|i| {
                        // `name@digest` names the image only within that repository (or an
                        // untagged image, which has no repository to disagree with).
                        i.digest_in(&repo)
                            .is_some_and(|r| r.digest().is_some_and(|rd| rd.to_string() == d))
                            || (i.manifest.to_string() == d
                                && (i.is_dangling()
                                    || i.tags.iter().any(|t| t.repository() == repo)
                                    || i.digests.iter().any(|t| t.repository() == repo)))
                    })
                    .collect();
                return pick(spec, found);
            }
            let full = r.with_default_tag().to_string();
            if let Some(i) = images
                .iter()
                .find(|i| i.tags.iter().any(|t| t.to_string() == full))
            {
                return Ok(i.clone());
            }
        }
        let is_hex = !spec.is_empty()
            && spec.len() <= 64
            && spec
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if is_hex {
            let found: Vec<&Image> = images
                .iter()
                .filter(|i| i.id.digest().starts_with(spec))
                .collect();
            if !found.is_empty() {
                return pick(spec, found);
            }
        }
        match parsed {
            Err(e) if !is_hex => Err(e.into()),
            _ => Err(StoreError::ImageNotFound(spec.to_string())),
        }
    }

    pub fn manifest(&self, digest: &Digest) -> Result<ImageManifest> {
        let bytes = self.blobs().read_verified(digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::corrupt(format!("manifest {digest}"), e))
    }

    pub fn config_bytes(&self, img: &Image) -> Result<Vec<u8>> {
        self.blobs().read_verified(&img.id)
    }

    pub fn config(&self, img: &Image) -> Result<ImageConfiguration> {
        let bytes = self.config_bytes(img)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::corrupt(format!("config {}", img.id), e))
    }

    /// Record a stored image (its manifest, config and layers already in the blob store) and
    /// point `tags` at it. Without tags the image is kept as a dangling entry.
    pub fn add_image(&self, img: &NewImage, tags: &[Reference]) -> Result<()> {
        if let Some(t) = tags.iter().find(|t| t.digest().is_some()) {
            return Err(StoreError::invalid(
                format!("name {}", t.familiar_string()),
                "cannot name an image with a digest reference; use NAME[:TAG]",
            ));
        }
        self.update_index(|entries| {
            if tags.is_empty() {
                retag(entries, img, None);
            }
            for t in tags {
                retag(entries, img, Some(&t.with_default_tag()));
            }
            Ok(())
        })
    }

    /// `tag SOURCE TARGET`.
    pub fn tag_image(&self, source: &str, target: &Reference) -> Result<Image> {
        // Shared with writers, exclusive with prune/rmi: a sweep never deletes a just-tagged image.
        let _writing = self.writer_lock()?;
        let img = self.resolve_image(source)?;
        if target.digest().is_some() {
            return Err(StoreError::invalid(
                format!("tag {target}"),
                "a tag cannot contain a digest; use NAME[:TAG]",
            ));
        }
        self.update_index(|entries| {
            let d = entries
                .iter()
                .find(|d| d.digest() == &img.manifest)
                .cloned()
                .ok_or_else(|| StoreError::ImageNotFound(source.to_string()))?;
            retag(
                entries,
                &new_image_of(&d, img.id.clone()),
                Some(&target.with_default_tag()),
            );
            Ok(())
        })?;
        self.resolve_image(&target.to_string())
    }

    /// Record that a registry knows the stored image `manifest` as `reference` (`repo@digest`:
    /// pulled by that digest, or pulled/pushed and answered with it), as Docker keeps
    /// RepoDigests. An image known only so is not dangling. One digest per repository and
    /// image: a newer one replaces it.
    pub fn add_repo_digest(&self, manifest: &Digest, reference: &Reference) -> Result<()> {
        if reference.digest().is_none() || reference.tag().is_some() {
            return Err(StoreError::invalid(
                format!("repository digest {reference}"),
                "must be NAME@DIGEST",
            ));
        }
        let repo = reference.repository();
        self.update_index(|entries| {
            let Some(d) = entries.iter().find(|d| d.digest() == manifest).cloned() else {
                return Err(StoreError::ImageNotFound(manifest.to_string()));
            };
            let id = d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(ANN_ID))
                .and_then(|s| parse_sha256(s).ok());
            let Some(id) = id else {
                return Ok(());
            };
            entries.retain(|e| {
                !(e.digest() == manifest
                    && ref_name(e)
                        .and_then(|n| Reference::parse(n).ok())
                        .is_some_and(|r| {
                            r.digest().is_some() && r.tag().is_none() && r.repository() == repo
                        }))
            });
            retag(entries, &new_image_of(&d, id), Some(reference));
            Ok(())
        })
    }

    /// `rmi`: untag, and delete the image once no tag is left. Blobs and snapshots no other image
    /// uses are swept afterwards.
    pub fn remove_image(&self, spec: &str, force: bool) -> Result<Vec<Removal>> {
        let _gc = self.gc_lock()?;
        let img = self.resolve_image(spec)?;
        // The names `spec` removes: a tag, with the repository's digests when it was the
        // repository's last tag (as Docker cleans them up); or one `repo@digest`.
        let by_name: Option<Vec<Reference>> = Reference::parse(spec).ok().and_then(|r| {
            if r.digest().is_none() {
                let full = r.with_default_tag();
                if !img.tags.contains(&full) {
                    return None;
                }
                let repo = full.repository();
                let mut names = vec![full.clone()];
                if !img
                    .tags
                    .iter()
                    .any(|t| *t != full && t.repository() == repo)
                {
                    names.extend(
                        img.digests
                            .iter()
                            .filter(|d| d.repository() == repo)
                            .cloned(),
                    );
                }
                Some(names)
            } else {
                img.digests.contains(&r).then(|| vec![r])
            }
        });
        // Removing one of several names only untags, whoever uses the image (as Docker).
        let only_untag = by_name
            .as_ref()
            .is_some_and(|n| img.tags.len() + img.digests.len() > n.len());
        let users = if only_untag {
            Vec::new()
        } else {
            self.containers_using(&img.id)?
        };
        if !users.is_empty() && !force {
            return Err(StoreError::InUse {
                id: img.short_id().to_string(),
                containers: users.join(", "),
            });
        }
        if !only_untag && self.image_mounted(&img) {
            if !force {
                return Err(StoreError::Conflict {
                    id: img.short_id().to_string(),
                    reason: format!(
                        "image is mounted at {}; run `berth image unmount {}` first",
                        self.mount_path(&img).display(),
                        img.short_id()
                    ),
                });
            }
            self.unmount_image(&img)?;
        }
        let mut events = Vec::new();
        self.update_index(|entries| {
            // Decide from the index as it is now, not from the listing read before the lock.
            let names: Vec<String> = entries
                .iter()
                .filter(|d| d.digest() == &img.manifest)
                .filter_map(|d| ref_name(d).map(str::to_string))
                .collect();
            let kept = entries
                .iter()
                .find(|d| d.digest() == &img.manifest)
                .cloned();
            if let Some(removed) = &by_name {
                for r in removed {
                    let full = r.to_string();
                    entries.retain(|d| ref_name(d) != Some(full.as_str()));
                    events.push(Removal::Untagged(r.clone()));
                }
                if entries.iter().any(|d| d.digest() == &img.manifest) {
                    return Ok(());
                }
            } else {
                let repos: HashSet<String> = names
                    .iter()
                    .filter_map(|n| Reference::parse(n).ok())
                    .map(|r| r.repository())
                    .collect();
                if repos.len() > 1 && !force {
                    return Err(StoreError::Conflict {
                        id: img.short_id().to_string(),
                        reason: "image is referenced in multiple repositories".into(),
                    });
                }
                entries.retain(|d| d.digest() != &img.manifest);
                for n in names.iter().filter_map(|n| Reference::parse(n).ok()) {
                    events.push(Removal::Untagged(n));
                }
            }
            // A container still uses it (forced): Docker keeps it as an untagged image so the
            // container's layers stay.
            if !users.is_empty() {
                if let Some(d) = kept {
                    retag(entries, &new_image_of(&d, img.id.clone()), None);
                }
                return Ok(());
            }
            events.push(Removal::Deleted(img.id.clone()));
            Ok(())
        })?;
        if events.iter().any(|e| matches!(e, Removal::Deleted(_))) {
            self.sweep_locked()?;
        }
        Ok(events)
    }

    /// Containers (from `containers/<id>/image`, written by the runner) that use image `id`.
    pub fn containers_using(&self, id: &Digest) -> Result<Vec<String>> {
        let dir = self.root().join("containers");
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io("listing", dir, e)),
        };
        for e in rd {
            let e = e.ctx("listing", &dir)?;
            if let Ok(s) = fs::read_to_string(e.path().join("image"))
                && s.trim() == id.as_ref()
            {
                out.push(e.file_name().to_string_lossy().chars().take(12).collect());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every blob digest reachable from the index (manifests, configs, layers).
    pub fn referenced_blobs(&self) -> Result<HashSet<String>> {
        let mut live = HashSet::new();
        for d in self.read_index()? {
            live.insert(d.digest().to_string());
            // An unreadable manifest must stop a sweep, not make its blobs look unused.
            let m = self.manifest(d.digest())?;
            live.insert(m.config().digest().to_string());
            for l in m.layers() {
                live.insert(l.digest().to_string());
            }
        }
        for d in self.pinned_manifests()? {
            live.insert(d.to_string());
            let m = self.manifest(&d)?;
            live.insert(m.config().digest().to_string());
            for l in m.layers() {
                live.insert(l.digest().to_string());
            }
        }
        Ok(live)
    }
}

fn pick(spec: &str, found: Vec<&Image>) -> Result<Image> {
    let mut ids: Vec<&Image> = Vec::new();
    for f in found {
        if !ids.iter().any(|i| i.id == f.id) {
            ids.push(f);
        }
    }
    match ids.len() {
        0 => Err(StoreError::ImageNotFound(spec.to_string())),
        1 => Ok(ids[0].clone()),
        n => Err(StoreError::AmbiguousImage {
            input: spec.to_string(),
            count: n,
        }),
    }
}
