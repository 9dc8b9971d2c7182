//! `push`: layers (gzip-compressed on the way up when stored plain), config, then the manifest.
//!
//! An uncompressed layer is read from the blob store, gzipped on every CPU (`gzip`, one gzip
//! member made of blocks compressed in parallel) and streamed into chunked PATCHes while the
//! compressed bytes are hashed; the upload ends with
//! `PUT ?digest=` once the digest is known, so nothing is staged on disk. The compressed digest
//! is remembered per diff ID (`state`), so a later push HEADs it and skips the compression.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::compression::Compression;
use crate::images::Image;
use crate::reference::Reference;
use crate::root::Store;

use super::client::{Operation, Session};
use super::endpoint::Endpoint;
use super::error::{RemoteError, Result};
use super::gzip;
use super::state::{Compressed, State};
use super::upload::{self, ChunkSender, Mount, Source};
use super::{Options, Progress, short};

const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// What was pushed, as typed after normalisation.
    pub reference: Reference,
    pub tag: String,
    pub digest: String,
    pub size: u64,
}

struct Ctx<'a> {
    store: &'a Store,
    s: &'a Session,
    progress: &'a Arc<dyn Progress>,
    /// `domain/repo`, as `state` records locations.
    here: String,
}

impl Ctx<'_> {
    /// Make sure the registry has `digest` without uploading it: HEAD, then mounts from other
    /// repositories of this registry known to hold it. Any mount failure just means "upload".
    async fn present(&self, id: &str, digest: &str) -> Result<bool> {
        if self.s.blob_exists(digest).await? {
            self.progress.end(id, "Layer already exists");
            return Ok(true);
        }
        let sources =
            State::load(self.store)?.mount_sources(digest, &self.s.endpoint.domain, &self.s.repo);
        for from in sources {
            match upload::mount(self.s, digest, &from).await {
                Ok(Mount::Mounted) => {
                    self.progress.end(id, &format!("Mounted from {from}"));
                    return Ok(true);
                }
                Ok(Mount::NotMounted) => {}
                Err(e) => tracing::debug!("mount of {digest} from {from}: {e}"),
            }
        }
        Ok(false)
    }

    /// Upload a blob the store holds as it is.
    async fn upload_file(&self, id: &str, digest: &str, size: u64) -> Result<()> {
        let d = crate::digest::parse_sha256(digest)?;
        let path = self.store.blobs().path(&d);
        self.progress.begin(id, "Pushing", Some(size));
        let p = self.progress.clone();
        let idc = id.to_string();
        let adv = move |n: u64| p.advance(&idc, n);
        upload::upload(
            self.s,
            &format!("uploading blob {digest}"),
            Source::File { path, offset: 0 },
            Some(digest),
            async { Ok((String::new(), 0)) },
            &adv,
        )
        .await?;
        self.progress.end(id, "Pushed");
        Ok(())
    }

    /// Gzip a stored plain layer into an upload; returns the compressed digest and size.
    async fn upload_gzipped(&self, id: &str, diff_id: &str, size: u64) -> Result<(String, u64)> {
        let d = crate::digest::parse_sha256(diff_id)?;
        let file = self.store.blobs().open(&d)?;
        // Pieces of `upload::PIECE`: at most this many wait for the uploader.
        let (tx, rx) = mpsc::channel(8);
        let worker = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
            gzip::compress(file, ChunkSender::new(tx), gzip::threads())?.finish()
        });
        // Progress counts compressed bytes sent against the plain size: a lower bound.
        self.progress.begin(id, "Pushing", Some(size));
        let p = self.progress.clone();
        let idc = id.to_string();
        let adv = move |n: u64| p.advance(&idc, n);
        let what = format!("uploading layer {diff_id} (gzip)");
        let digest_of = async {
            worker
                .await
                .map_err(|e| RemoteError::Other(format!("compressing layer {diff_id}: {e}")))?
                .map_err(|e| RemoteError::Other(format!("compressing layer {diff_id}: {e}")))
        };
        let out = upload::upload(self.s, &what, Source::Channel(rx), None, digest_of, &adv).await?;
        self.progress.end(id, "Pushed");
        Ok(out)
    }

    /// Push one layer; returns the descriptor fields (media type, digest, size) to put in the
    /// manifest.
    async fn layer(&self, desc: &Value, diff_id: &str) -> Result<(String, String, u64)> {
        let mt = desc["mediaType"].as_str().unwrap_or_default().to_string();
        let digest = desc["digest"].as_str().unwrap_or_default().to_string();
        let size = desc["size"].as_u64().unwrap_or(0);
        let id = short(&digest).to_string();
        let comp = Compression::from_media_type(&oci_spec::image::MediaType::from(mt.as_str()));
        if comp != Compression::None {
            if !self.present(&id, &digest).await? {
                self.upload_file(&id, &digest, size).await?;
            }
            self.note(&digest)?;
            return Ok((mt, digest, size));
        }
        let gz_type = if mt.starts_with("application/vnd.docker.") {
            DOCKER_GZIP
        } else {
            OCI_GZIP
        };
        let known = State::load(self.store)?.compressed.get(diff_id).cloned();
        if let Some(k) = &known
            && self.present(&id, &k.digest).await?
        {
            self.note(&k.digest)?;
            return Ok((gz_type.to_string(), k.digest.clone(), k.size));
        }
        let (cd, cs) = self.upload_gzipped(&id, diff_id, size).await?;
        State::update(self.store, |s| {
            s.compressed.insert(
                diff_id.to_string(),
                Compressed {
                    digest: cd.clone(),
                    size: cs,
                    media_type: gz_type.to_string(),
                },
            );
            s.note_location(&cd, &self.here);
        })?;
        Ok((gz_type.to_string(), cd, cs))
    }

    fn note(&self, digest: &str) -> Result<()> {
        State::update(self.store, |s| s.note_location(digest, &self.here))
    }
}

/// The local image `target` (a tagged reference) names; Docker's wording when there is none.
fn local_tag(store: &Store, target: &Reference) -> Result<Image> {
    match store.resolve_image(&target.to_string()) {
        Err(crate::StoreError::ImageNotFound(_)) => {
            Err(RemoteError::TagNotFound(target.familiar_string()))
        }
        r => Ok(r?),
    }
}

async fn connect(target: &Reference, opts: &Options) -> Result<Session> {
    let endpoint = Endpoint::new(target.domain(), &opts.insecure);
    let creds = super::auth::lookup(&endpoint.domain)?;
    Session::connect(endpoint, target.path(), creds, Operation::Push).await
}

/// `push NAME[:TAG]`: a name alone pushes `:latest`, as Docker's CLI does since `-a` exists.
pub(super) async fn push(
    store: &Store,
    spec: &str,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<PushOutcome> {
    let target = Reference::parse_normalized(spec).map_err(crate::StoreError::from)?;
    if target.digest().is_some() {
        return Err(RemoteError::Unsupported {
            what: format!("push of {spec}"),
            reason: "a digest cannot be pushed to; push NAME[:TAG]".into(),
        });
    }
    let img = local_tag(store, &target)?;
    let s = connect(&target, opts).await?;
    let _writing = store.writer_lock()?;
    push_image(store, &s, &img, target, opts, &progress).await
}

/// `push --all-tags NAME`: every local tag of the repository, in tag order, over one session.
/// Blobs the tags share go up once: the later tags find them with HEAD.
pub(super) async fn push_all(
    store: &Store,
    spec: &str,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Vec<PushOutcome>> {
    let repo = Reference::parse(spec).map_err(crate::StoreError::from)?;
    if !repo.is_name_only() {
        return Err(RemoteError::Unsupported {
            what: format!("push of {spec}"),
            reason: "tag can't be used with --all-tags/-a".into(),
        });
    }
    let name = repo.repository();
    let mut tagged: Vec<(Reference, Image)> = Vec::new();
    for img in store.images()? {
        for t in &img.tags {
            if t.repository() == name && t.tag().is_some() && t.digest().is_none() {
                tagged.push((t.clone(), img.clone()));
            }
        }
    }
    if tagged.is_empty() {
        return Err(RemoteError::NoLocalTags(repo.familiar_name()));
    }
    tagged.sort_by(|a, b| a.0.tag().cmp(&b.0.tag()));
    let s = connect(&tagged[0].0, opts).await?;
    let _writing = store.writer_lock()?;
    let mut out = Vec::with_capacity(tagged.len());
    for (target, img) in tagged {
        out.push(push_image(store, &s, &img, target, opts, &progress).await?);
    }
    Ok(out)
}

/// Layers, config and manifest of `img` to `target` (tagged) over `s`.
async fn push_image(
    store: &Store,
    s: &Session,
    img: &Image,
    target: Reference,
    opts: &Options,
    progress: &Arc<dyn Progress>,
) -> Result<PushOutcome> {
    let tag = target.tag().unwrap_or("latest").to_string();
    let manifest_bytes = store.blobs().read_verified(&img.manifest)?;
    let mut manifest: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| crate::StoreError::corrupt(format!("manifest {}", img.manifest), e))?;
    let layers = store.layers(img)?;
    let descs: Vec<Value> = manifest["layers"].as_array().cloned().unwrap_or_default();
    if descs.len() != layers.len() {
        return Err(crate::StoreError::corrupt(
            format!("image {}", img.short_id()),
            "manifest and config disagree on the layer count",
        )
        .into());
    }
    let ctx = Ctx {
        store,
        s,
        progress,
        here: format!("{}/{}", s.endpoint.domain, s.repo),
    };
    for d in &descs {
        progress.begin(short(d["digest"].as_str().unwrap_or("")), "Preparing", None);
    }
    let results: Vec<Result<(String, String, u64)>> = futures::stream::iter(
        descs
            .iter()
            .zip(&layers)
            .map(|(d, l)| ctx.layer(d, l.diff_id.as_ref())),
    )
    .buffered(opts.jobs.max(1))
    .collect()
    .await;
    let mut changed = false;
    let mut new_layers = Vec::with_capacity(descs.len());
    for (mut d, r) in descs.into_iter().zip(results) {
        let (mt, digest, size) = r?;
        if d["digest"].as_str() != Some(digest.as_str()) {
            changed = true;
            d["mediaType"] = Value::String(mt);
            d["digest"] = Value::String(digest);
            d["size"] = Value::from(size);
        }
        new_layers.push(d);
    }

    let config = img.id.to_string();
    let config_size = store.blobs().size(&img.id)?;
    let cid = short(&config).to_string();
    if !ctx.present(&cid, &config).await? {
        ctx.upload_file(&cid, &config, config_size).await?;
    }
    ctx.note(&config)?;

    let media_type = manifest["mediaType"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| img.manifest_media_type.to_string());
    let body = if changed {
        manifest["layers"] = Value::Array(new_layers);
        if media_type == DOCKER_MANIFEST || manifest.get("mediaType").is_some() {
            manifest["mediaType"] = Value::String(media_type.clone());
        }
        serde_json::to_vec(&manifest).expect("manifest serializes")
    } else {
        manifest_bytes
    };
    let pushed = crate::digest::sha256_of(&body);
    let digest = pushed.to_string();
    let size = body.len() as u64;
    s.put_manifest(&tag, body, &media_type).await?;
    // The registry knows the image by this digest now: Docker records it in RepoDigests.
    let known_as = target
        .name_only()
        .with_digest(&pushed)
        .map_err(crate::StoreError::from)?;
    store.add_repo_digest(&img.manifest, &known_as)?;
    Ok(PushOutcome {
        reference: target,
        tag,
        digest,
        size,
    })
}
