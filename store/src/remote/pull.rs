//! `pull`: manifest (an image index resolves to this platform's manifest), config and layers,
//! each streamed into the blob store and verified against its digest before it becomes
//! visible; the tag is written last, so a failed pull leaves no tag and no partial blob.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::images::NewImage;
use crate::reference::Reference;
use crate::root::Store;

use super::client::{Operation, Session};
use super::endpoint::Endpoint;
use super::error::{RemoteError, Result};
use super::state::State;
use super::{Options, Progress, short};

const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub reference: Reference,
    /// Digest of what the reference named (the index, for a multi-platform image).
    pub digest: String,
    pub image_id: String,
    /// False when the reference already pointed at this manifest.
    pub updated: bool,
}

fn is_index(v: &Value) -> bool {
    let mt = v["mediaType"].as_str().unwrap_or_default();
    mt.contains("index") || mt.contains("manifest.list") || v.get("manifests").is_some()
}

/// The index entry for `os`/`arch` (linux/<host arch>), else the only entry.
pub fn pick_platform(index: &Value, os: &str, arch: &str) -> Option<(String, String)> {
    let entries = index["manifests"].as_array()?;
    let entry = |e: &Value| {
        Some((
            e["digest"].as_str()?.to_string(),
            e["mediaType"].as_str().unwrap_or_default().to_string(),
        ))
    };
    entries
        .iter()
        .find(|e| {
            e["platform"]["os"].as_str() == Some(os)
                && e["platform"]["architecture"].as_str() == Some(arch)
        })
        .and_then(entry)
        .or_else(|| match entries.as_slice() {
            [only] => entry(only),
            _ => None,
        })
}

fn check_digest(what: &str, expected: &str, actual: &str) -> Result<()> {
    if expected != actual {
        return Err(RemoteError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// The chunks of a download as a `Read`, for the decompressed-length counter.
struct ChunkReader {
    rx: mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Stream one blob into the store, verifying it; retried from the start on a transport error.
/// Returns its decompressed length (counted as it arrives, or read back from the store when it
/// was there already): Docker reports image sizes uncompressed. None when it does not
/// decompress.
async fn fetch_blob(
    store: &Store,
    s: &Session,
    kind: &str,
    digest: &str,
    size: u64,
    known_unpacked: Option<u64>,
    progress: &Arc<dyn Progress>,
) -> Result<Option<u64>> {
    let d = crate::digest::parse_sha256(digest)?;
    let id = short(digest).to_string();
    if store.blobs().contains(&d) {
        progress.end(&id, "Already exists");
        if known_unpacked.is_some() {
            return Ok(known_unpacked);
        }
        // Stored before sizes were recorded: counted once, then recorded.
        let file = store.blobs().open(&d)?;
        return Ok(tokio::task::spawn_blocking(move || {
            crate::compression::unpacked_len(std::io::BufReader::new(file))
        })
        .await
        .ok()
        .flatten());
    }
    let mut attempt = 0;
    loop {
        progress.begin(&id, "Downloading", Some(size));
        match fetch_once(store, s, kind, &d, size, &id, progress).await {
            Ok(unpacked) => {
                progress.end(&id, "Pull complete");
                return Ok(unpacked);
            }
            Err(RemoteError::Unreachable { .. }) if attempt + 1 < ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn fetch_once(
    store: &Store,
    s: &Session,
    kind: &str,
    d: &oci_spec::image::Digest,
    size: u64,
    id: &str,
    progress: &Arc<dyn Progress>,
) -> Result<Option<u64>> {
    let digest = d.to_string();
    let mut stream = s
        .blob_stream(&digest, size, &format!("{kind} {digest}"))
        .await?;
    let writer = store.blobs().writer()?;
    // `None` tells the writer the download failed: drop the temp file, commit nothing.
    let (tx, mut rx) = mpsc::channel::<Option<bytes::Bytes>>(8);
    let expected = d.clone();
    let sink = tokio::task::spawn_blocking(move || -> crate::Result<bool> {
        use std::io::Write;
        let mut w = writer;
        while let Some(item) = rx.blocking_recv() {
            let Some(b) = item else { return Ok(false) };
            w.write_all(&b)
                .map_err(|e| crate::StoreError::io("writing blob", "tmp", e))?;
        }
        w.commit(Some(&expected)).map(|_| true)
    });
    // The decompressed length is counted on another thread, beside the write, so inflating
    // does not slow the download more than its own speed bounds it.
    // If it stops early (not compressed data), it drops its end and the sends below fail
    // at once, so it never holds the download up.
    let (ctx, crx) = mpsc::channel::<bytes::Bytes>(16);
    let counter = tokio::task::spawn_blocking(move || {
        crate::compression::unpacked_len(ChunkReader {
            rx: crx,
            cur: bytes::Bytes::new(),
        })
    });
    let failed = loop {
        match stream.chunk().await {
            Ok(Some(b)) => {
                progress.advance(id, b.len() as u64);
                let _ = ctx.send(b.clone()).await;
                if tx.send(Some(b)).await.is_err() {
                    break None;
                }
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    if let Some(e) = failed {
        // Wait for the writer to remove its temp file, so nothing of the failed download stays
        // on disk (not even when the process exits right after).
        let _ = tx.send(None).await;
        drop(tx);
        let _ = sink.await;
        return Err(e);
    }
    drop(tx);
    drop(ctx);
    let unpacked = counter.await.ok().flatten();
    sink.await
        .map_err(|e| RemoteError::Other(format!("storing blob {digest}: {e}")))?
        .map(|_| unpacked)
        .map_err(|e| match e {
            crate::StoreError::DigestMismatch {
                expected, actual, ..
            } => RemoteError::DigestMismatch {
                what: format!("blob from {}", s.endpoint.domain),
                expected,
                actual,
            },
            other => other.into(),
        })
}

/// A session with the registry the pull reads from, and the manifest `wanted` names there.
///
/// Docker Hub images come through `registry-mirrors` when the daemon.json lists some: each is
/// tried in order, and any failure (unreachable, unauthorized, not there) moves on to the next
/// and finally to Docker Hub, as Docker's daemon does. The repository path is the same on a
/// mirror (`library/busybox`).
async fn top_manifest(
    target: &Reference,
    wanted: &str,
    shown: &str,
    opts: &Options,
) -> Result<(Session, Vec<u8>, String)> {
    if target.domain() == "docker.io" {
        for m in &opts.mirrors {
            let mut endpoint = Endpoint::new(&m.domain, &opts.insecure);
            if m.plain_http {
                endpoint.scheme = "http";
                endpoint.insecure = false;
            }
            let attempt = async {
                let creds = super::auth::lookup(&endpoint.domain)?;
                let s = Session::connect(endpoint, target.path(), creds, Operation::Pull).await?;
                let (bytes, digest) = s.get_manifest(wanted, shown).await?;
                Ok::<_, RemoteError>((s, bytes, digest))
            };
            match attempt.await {
                Ok(found) => return Ok(found),
                Err(e) => tracing::info!("mirror {} for {shown}: {e}; trying the next", m.domain),
            }
        }
    }
    let endpoint = Endpoint::new(target.domain(), &opts.insecure);
    let creds = super::auth::lookup(&endpoint.domain)?;
    let s = Session::connect(endpoint, target.path(), creds, Operation::Pull).await?;
    let (bytes, digest) = s.get_manifest(wanted, shown).await?;
    Ok((s, bytes, digest))
}

pub(super) async fn pull(
    store: &Store,
    spec: &str,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<PullOutcome> {
    let target = Reference::parse_normalized(spec).map_err(crate::StoreError::from)?;
    let shown = target.familiar_string();
    let wanted = match (target.digest(), target.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let (s, bytes, digest) = top_manifest(&target, &wanted, &shown, opts).await?;
    if let Some(d) = target.digest() {
        check_digest(&format!("manifest of {shown}"), d.as_ref(), &digest)?;
    }
    let top: Value = serde_json::from_slice(&bytes).map_err(|e| RemoteError::Unsupported {
        what: format!("manifest of {shown}"),
        reason: e.to_string(),
    })?;
    let (manifest_bytes, manifest_digest, manifest) = if is_index(&top) {
        let arch = crate::import::host_arch();
        let (d, _) = pick_platform(&top, "linux", arch).ok_or_else(|| RemoteError::NoPlatform {
            reference: shown.clone(),
            platform: format!("linux/{arch}"),
        })?;
        let (b, got) = s.get_manifest(&d, &format!("{shown} ({d})")).await?;
        check_digest(&format!("platform manifest of {shown}"), &d, &got)?;
        let v: Value = serde_json::from_slice(&b).map_err(|e| RemoteError::Unsupported {
            what: format!("manifest of {shown}"),
            reason: e.to_string(),
        })?;
        (b, got, v)
    } else {
        (bytes, digest.clone(), top)
    };
    if manifest["schemaVersion"].as_u64() != Some(2) || manifest.get("config").is_none() {
        return Err(RemoteError::Unsupported {
            what: format!("manifest of {shown}"),
            reason: "only image manifests with schemaVersion 2 can be pulled".into(),
        });
    }

    let tagged = target.digest().is_none().then(|| target.with_default_tag());
    let before = tagged
        .as_ref()
        .and_then(|t| store.resolve_image(&t.to_string()).ok())
        .map(|i| i.manifest.to_string());

    let _writing = store.writer_lock()?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // Every download stops at its descriptor's size, so a descriptor must have one.
    let sized = |d: &Value, what: &str| {
        d["size"].as_u64().ok_or_else(|| RemoteError::Unsupported {
            what: format!("manifest of {shown}"),
            reason: format!("its {what} descriptor has no valid size"),
        })
    };
    let config_size = sized(&manifest["config"], "config")?;
    // The store reads configs whole; refuse a bigger one before downloading it.
    if config_size > crate::blobs::MAX_METADATA_BLOB {
        return Err(RemoteError::Unsupported {
            what: format!("image config of {shown}"),
            reason: format!(
                "the manifest lists it at {config_size} bytes; image configs are limited to \
                 {} MiB",
                crate::blobs::MAX_METADATA_BLOB >> 20
            ),
        });
    }
    let layers: Vec<(String, u64)> = match manifest["layers"].as_array() {
        Some(l) => l
            .iter()
            .map(|d| {
                Ok((
                    d["digest"].as_str().unwrap_or("").to_string(),
                    sized(d, "layer")?,
                ))
            })
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    for (d, _) in &layers {
        progress.begin(short(d), "Pulling fs layer", None);
    }
    let known = State::load(store)?.unpacked;
    // Each result with its layer: they finish in any order.
    let fetched: Vec<(Result<Option<u64>>, &String, u64)> =
        futures::stream::iter(layers.iter().map(|(d, n)| {
            let (s, progress) = (&s, &progress);
            let known = known.get(d).copied();
            async move {
                let r = fetch_blob(store, s, "layer", d, *n, known, progress).await;
                (r, d, *n)
            }
        }))
        .buffer_unordered(opts.jobs.max(1))
        .collect()
        .await;
    // Image size as Docker reports it: the layers decompressed (a layer that does not
    // decompress counts as downloaded; unpacking it will say what is wrong).
    let mut unpacked_size = 0u64;
    let mut unpacked = Vec::new();
    for (r, d, n) in fetched {
        let u = r?;
        if let Some(u) = u {
            unpacked.push((d.clone(), u));
        }
        unpacked_size += u.unwrap_or(n);
    }
    fetch_blob(
        store,
        &s,
        "config",
        &config_digest,
        config_size,
        None,
        &progress,
    )
    .await?;
    let config_d = crate::digest::parse_sha256(&config_digest)?;
    let config: Value =
        serde_json::from_slice(&store.blobs().read_verified(&config_d)?).map_err(|e| {
            RemoteError::Unsupported {
                what: format!("image config of {shown}"),
                reason: e.to_string(),
            }
        })?;
    let (md, msize) = store.blobs().put_bytes(&manifest_bytes)?;
    check_digest("stored manifest", &manifest_digest, md.as_ref())?;
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json");
    let img = NewImage {
        manifest: md.clone(),
        manifest_size: msize,
        media_type: oci_spec::image::MediaType::from(media_type),
        config: config_d.clone(),
        created: config["created"].as_str().map(str::to_string),
        size: unpacked_size,
    };
    let tags: Vec<Reference> = tagged.iter().cloned().collect();
    store.add_image(&img, &tags)?;
    // RepoDigests: the repository knows this image by the digest the reference resolved to
    // (an index's, for a multi-platform image), as Docker records it; an image pulled by
    // digest is then named by it, not dangling.
    let top = crate::digest::parse_sha256(&digest).map_err(RemoteError::from)?;
    let known_as = target
        .name_only()
        .with_digest(&top)
        .map_err(crate::StoreError::from)?;
    store.add_repo_digest(&md, &known_as)?;
    let here = format!("{}/{}", s.endpoint.domain, s.repo);
    State::update(store, |st| {
        for (d, _) in &layers {
            st.note_location(d, &here);
        }
        st.note_location(&config_digest, &here);
        st.unpacked.extend(unpacked);
    })?;
    Ok(PullOutcome {
        reference: target,
        digest,
        image_id: config_digest,
        updated: before.as_deref() != Some(md.to_string().as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_selection() {
        let idx: Value = serde_json::from_str(
            r#"{"manifests": [
                {"digest": "sha256:arm", "mediaType": "m", "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": "sha256:amd", "mediaType": "m", "platform": {"os": "linux", "architecture": "amd64"}}
            ]}"#,
        )
        .unwrap();
        assert!(is_index(&idx));
        assert_eq!(
            pick_platform(&idx, "linux", "amd64").unwrap().0,
            "sha256:amd"
        );
        assert_eq!(pick_platform(&idx, "linux", "s390x"), None);
        let one: Value =
            serde_json::from_str(r#"{"manifests": [{"digest": "sha256:x", "platform": {"os": "linux", "architecture": "riscv64"}}]}"#)
                .unwrap();
        assert_eq!(pick_platform(&one, "linux", "amd64").unwrap().0, "sha256:x");
    }
}
