//! A new image made of a parent image plus one layer: `commit` (a container's changes) and,
//! later, the builder (each filesystem step). The layer tar is stored uncompressed (digest ==
//! diff ID) as `import` stores its layer; the parent's config is kept member for member (fields
//! berth does not know included), its `config` replaced, the layer's diff ID and a history entry
//! appended, and the result written in the member order Go tools produce.

use std::io::{self, Read};

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::{Map, Value, json};

use crate::error::{Result, StoreError};
use crate::images::{Image, NewImage, config_json};
use crate::import::Tee;
use crate::import::{canonical_container_config, host_arch, now_rfc3339};
use crate::reference::Reference;
use crate::root::Store;

/// What the new image says about itself.
#[derive(Debug, Clone, Default)]
pub struct CommitConfig {
    /// The image config's `config` object (Docker's container config fields: Cmd, Env, …).
    pub config: Map<String, Value>,
    /// History: `created_by`.
    pub created_by: String,
    /// History `comment` (`commit -m`).
    pub comment: Option<String>,
    /// `author` of the image and of its history entry (`commit -a`).
    pub author: Option<String>,
    /// The image config's top-level `container` (the committed container's ID), as Docker.
    pub container: Option<String>,
}

/// The pin holder of build step images (`builder prune` drops them).
pub const BUILDER_PINS: &str = "builder";

/// A build step's result: what [`Store::commit_step`] records beside the config.
#[derive(Debug, Clone, Default)]
pub struct StepCommit {
    /// The new image config's `config` object.
    pub config: Map<String, Value>,
    /// History: `created_by`.
    pub created_by: String,
    /// History `comment` (BuildKit writes `buildkit.dockerfile.v0`).
    pub comment: Option<String>,
    /// `MAINTAINER`: the image's `author`; `None` keeps the parent's.
    pub author: Option<String>,
    /// Top-level config members to set (`os`, `architecture`, …) when the parent has none.
    pub defaults: Map<String, Value>,
    /// `SOURCE_DATE_EPOCH`: the image's and the new history entry's `created`, and the latest
    /// timestamp the layer may carry (later ones are clamped to it, as BuildKit's
    /// `rewrite-timestamp`).
    pub epoch: Option<u64>,
}

impl Store {
    /// Store `layer` (an uncompressed tar, possibly with no members) on top of `parent` (None:
    /// an image with this one layer), with `cfg`; tag it with `tags`. Returns the new image.
    pub fn commit_layer(
        &self,
        parent: Option<&Image>,
        layer: impl Read,
        cfg: &CommitConfig,
        tags: &[Reference],
    ) -> Result<Image> {
        let _writing = self.writer_lock()?;
        let new = self.write_layered(parent, Some(layer), cfg, &Map::new(), None)?;
        self.add_image(&new, tags)?;
        self.resolve_image(new.config.as_ref())
    }

    /// A build step: `parent` plus `layer` (or, with `None`, only a history entry marked
    /// `empty_layer`), written to the blob store but not named in the index: the builder keeps
    /// such images in its cache and names only the final one ([`Store::name_image`]). The step
    /// image is pinned ([`BUILDER_PINS`]) so garbage collection leaves the build cache alone.
    pub fn commit_step(
        &self,
        parent: Option<&Image>,
        layer: Option<&mut dyn Read>,
        step: &StepCommit,
    ) -> Result<Image> {
        let _writing = self.writer_lock()?;
        let author = match (&step.author, parent) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(p)) => serde_json::from_slice::<Value>(&self.config_bytes(p)?)
                .ok()
                .and_then(|v| v.get("author").and_then(Value::as_str).map(str::to_string)),
            (None, None) => None,
        };
        let cfg = CommitConfig {
            config: step.config.clone(),
            created_by: step.created_by.clone(),
            comment: step.comment.clone(),
            author,
            container: None,
        };
        let new = match step.epoch {
            Some(epoch) => {
                let clamped = layer.map(|l| crate::epoch::ClampMtimes::new(l, epoch));
                self.write_layered(parent, clamped, &cfg, &step.defaults, Some(epoch))?
            }
            None => self.write_layered(parent, layer, &cfg, &step.defaults, None)?,
        };
        // Pinned before the writer lock goes: a sweep can never catch the step unlinked.
        self.pin(BUILDER_PINS, &new.manifest)?;
        Ok(Image {
            id: new.config.clone(),
            manifest: new.manifest.clone(),
            manifest_size: new.manifest_size,
            manifest_media_type: new.media_type.clone(),
            created: new.created.clone(),
            size: new.size,
            tags: Vec::new(),
            digests: Vec::new(),
        })
    }

    /// Record `img` (made by [`Store::commit_step`]) in the index under `tags`, or as a dangling
    /// image without tags.
    pub fn name_image(&self, img: &Image, tags: &[Reference]) -> Result<Image> {
        let _writing = self.writer_lock()?;
        let new = NewImage {
            manifest: img.manifest.clone(),
            manifest_size: img.manifest_size,
            media_type: img.manifest_media_type.clone(),
            config: img.id.clone(),
            created: img.created.clone(),
            size: img.size,
        };
        self.add_image(&new, tags)?;
        self.resolve_image(img.id.as_ref())
    }

    /// Make `dir` — a layer's content already in snapshot form (overlay whiteouts), such as
    /// the upper directory a build step wrote — the snapshot of `diff_id`, instead of unpacking
    /// the layer again. `dir` is synced and renamed into place (it must be on the state root's
    /// filesystem); when the snapshot exists already, `dir` is left alone for its owner to remove.
    pub fn adopt_snapshot(&self, diff_id: &Digest, dir: &std::path::Path) -> Result<()> {
        let _writing = self.writer_lock()?;
        let target = self.snapshot_path(diff_id);
        if target.is_dir() {
            return Ok(());
        }
        let f = std::fs::File::open(dir).map_err(|e| StoreError::io("opening", dir, e))?;
        rustix::fs::syncfs(&f).map_err(|e| StoreError::io("syncing", dir, e.into()))?;
        match std::fs::rename(dir, &target) {
            Ok(()) => crate::blobs::sync_dir(&self.snapshots_dir()),
            Err(_) if target.is_dir() => Ok(()),
            Err(e) => Err(StoreError::io("renaming snapshot to", target, e)),
        }
    }

    /// Whether every blob `img` needs (manifest, config, layers) is still stored.
    pub fn image_complete(&self, img: &Image) -> bool {
        if !self.blobs().contains(&img.manifest) || !self.blobs().contains(&img.id) {
            return false;
        }
        match self.manifest(&img.manifest) {
            Ok(m) => m.layers().iter().all(|l| self.blobs().contains(l.digest())),
            Err(_) => false,
        }
    }

    /// `parent`'s config and layers plus `layer`, as a new image (not yet in the index).
    fn write_layered<R: Read>(
        &self,
        parent: Option<&Image>,
        layer: Option<R>,
        cfg: &CommitConfig,
        defaults: &Map<String, Value>,
        epoch: Option<u64>,
    ) -> Result<NewImage> {
        let (mut config, mut layers) = match parent {
            Some(p) => {
                let bytes = self.config_bytes(p)?;
                let v: Map<String, Value> = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::corrupt(format!("config {}", p.id), e))?;
                (v, self.manifest(&p.manifest)?.layers().clone())
            }
            None => (Map::new(), Vec::new()),
        };

        // The layer: verified to be a tar while it is hashed and written.
        let new_layer = match layer {
            Some(layer) => {
                let mut writer = self.blobs().writer()?;
                let mut tee = Tee {
                    inner: layer,
                    out: &mut writer,
                    err: None,
                };
                let walked = (|| -> io::Result<()> {
                    let mut archive = tar::Archive::new(&mut tee);
                    for e in archive.entries()? {
                        e?;
                    }
                    io::copy(&mut archive.into_inner(), &mut io::sink())?;
                    Ok(())
                })();
                if let Some(e) = tee.err.take() {
                    return Err(StoreError::io("writing layer into", self.tmp_dir(), e));
                }
                walked.map_err(|e| StoreError::BadArchive {
                    what: "the new layer".into(),
                    reason: e.to_string(),
                })?;
                Some(writer.commit(None)?)
            }
            None => None,
        };

        let created = match epoch {
            Some(e) => epoch_rfc3339(e),
            None => now_rfc3339(),
        };
        config.insert("created".into(), json!(created));
        match &cfg.author {
            Some(a) => {
                config.insert("author".into(), json!(a));
            }
            None => {
                config.remove("author");
            }
        }
        if let Some(c) = &cfg.container {
            config.insert("container".into(), json!(c));
        }
        for (k, v) in defaults {
            config.entry(k.clone()).or_insert_with(|| v.clone());
        }
        config
            .entry("architecture")
            .or_insert_with(|| json!(host_arch()));
        config.entry("os").or_insert_with(|| json!("linux"));
        config.insert(
            "config".into(),
            Value::Object(canonical_container_config(cfg.config.clone())),
        );
        // Docker's own copy of the container config at build time: stale for the new image.
        config.remove("container_config");
        let mut diff_ids: Vec<Value> = config
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some((d, _)) = &new_layer {
            diff_ids.push(json!(d.to_string()));
        }
        config.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        let mut entry = Map::new();
        entry.insert("created".into(), json!(created));
        if let Some(a) = &cfg.author {
            entry.insert("author".into(), json!(a));
        }
        entry.insert("created_by".into(), json!(cfg.created_by));
        if let Some(c) = &cfg.comment {
            entry.insert("comment".into(), json!(c));
        }
        if new_layer.is_none() {
            entry.insert("empty_layer".into(), json!(true));
        }
        let mut history: Vec<Value> = config
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // A config-only change with nothing to say (`build --label`) adds no history entry.
        if !(new_layer.is_none() && cfg.created_by.is_empty()) {
            history.push(Value::Object(entry));
        }
        config.insert("history".into(), Value::Array(history));
        let config = canonical_image_config(config);

        if let Some((layer_digest, layer_size)) = new_layer {
            layers.push(Descriptor::new(
                MediaType::ImageLayer,
                layer_size,
                layer_digest,
            ));
        }
        self.write_image(&config_json(&config)?, layers)
    }
}

/// `SOURCE_DATE_EPOCH` as the RFC 3339 UTC time Go writes (`1970-01-01T00:00:00Z`).
fn epoch_rfc3339(epoch: u64) -> String {
    chrono::DateTime::from_timestamp(epoch.min(i64::MAX as u64) as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(now_rfc3339)
}

/// The image config's members in the order of Go's `v1.Image` (then anything else), so Go tools
/// re-marshal it to the same bytes.
fn canonical_image_config(mut cfg: Map<String, Value>) -> Map<String, Value> {
    const ORDER: [&str; 12] = [
        "created",
        "author",
        "architecture",
        "variant",
        "os",
        "os.version",
        "os.features",
        "config",
        "rootfs",
        "history",
        "container",
        "docker_version",
    ];
    let mut out = Map::new();
    for k in ORDER {
        if let Some(v) = cfg.remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(cfg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn commit_appends_a_layer_and_history_to_the_parent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = store
            .import_rootfs(
                &tar_of(&[("a", b"1")])[..],
                Some(&Reference::parse("base").unwrap()),
                &crate::import::ImportOptions {
                    config: [("Env".to_string(), json!(["A=1"]))].into_iter().collect(),
                    source: "-".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let mut cfg = Map::new();
        cfg.insert("Cmd".into(), json!(["sh"]));
        cfg.insert("Env".into(), json!(["A=1"]));
        let img = store
            .commit_layer(
                Some(&base),
                &tar_of(&[("b", b"2"), (".wh.a", b"")])[..],
                &CommitConfig {
                    config: cfg,
                    created_by: "sh".into(),
                    comment: Some("msg".into()),
                    author: Some("me".into()),
                    container: Some("abc".into()),
                },
                &[Reference::parse("new:1").unwrap()],
            )
            .unwrap();
        let c = store.config(&img).unwrap();
        assert_eq!(c.rootfs().diff_ids().len(), 2);
        assert_eq!(c.history().as_ref().unwrap().len(), 2);
        assert_eq!(c.author().as_deref(), Some("me"));
        let h = c.history().as_ref().unwrap()[1].clone();
        assert_eq!(h.comment().as_deref(), Some("msg"));
        assert_eq!(
            c.config().as_ref().unwrap().cmd().as_deref(),
            Some(&["sh".to_string()][..])
        );
        assert_eq!(store.layers(&img).unwrap().len(), 2);
        assert_eq!(store.resolve_image("new:1").unwrap().id, img.id);
        // The new layer unpacks, its whiteout included.
        let snaps = store.ensure_snapshots(&img).unwrap();
        assert_eq!(std::fs::read(snaps[1].join("b")).unwrap(), b"2");
    }

    #[test]
    fn an_empty_layer_is_fine_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = tar::Builder::new(Vec::new()).into_inner().unwrap();
        let img = store
            .commit_layer(None, &empty[..], &CommitConfig::default(), &[])
            .unwrap();
        assert_eq!(store.layers(&img).unwrap().len(), 1);
        let err = store
            .commit_layer(
                None,
                &b"not a tar at all, clearly"[..],
                &CommitConfig::default(),
                &[],
            )
            .unwrap_err();
        assert!(err.to_string().contains("new layer"), "{err}");
    }
}
