//! Where an exported cache lives: a repository of a registry (through the store's registry
//! client) or an OCI image layout directory, as BuildKit's local cache. Both hold blobs by
//! digest and one manifest under a tag.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use berth_store::remote::Options;
use berth_store::remote::artifact::Artifacts;
use rustix::fs::FlockOperation;

use crate::lock::flock_file;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::spec::Location;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub(crate) enum Backend {
    Registry(Box<Artifacts>),
    Local {
        dir: PathBuf,
        tag: String,
        /// Held by an export for its whole run: exports into one directory take turns.
        _lock: Option<File>,
    },
}

impl Backend {
    /// Open `loc`; `write` for an export (a local directory is created and locked).
    pub(crate) fn open(loc: &Location, write: bool, opts: &Options) -> Result<Backend, String> {
        match loc {
            Location::Registry { reference } => Artifacts::connect(reference, write, opts)
                .map(|a| Backend::Registry(Box::new(a)))
                .map_err(|e| e.to_string()),
            Location::Local { dir, tag } => {
                let lock = if write {
                    fs::create_dir_all(dir.join("blobs").join("sha256"))
                        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                    let p = dir.join(".berth-cache.lock");
                    Some(
                        flock_file(&p, FlockOperation::LockExclusive)
                            .map_err(|e| format!("locking {}: {e}", p.display()))?,
                    )
                } else {
                    if !dir.is_dir() {
                        return Err(format!("{} is not a directory", dir.display()));
                    }
                    None
                };
                Ok(Backend::Local {
                    dir: dir.clone(),
                    tag: tag.clone(),
                    _lock: lock,
                })
            }
        }
    }

    fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, String> {
        let d = berth_store::digest::parse_sha256(digest)
            .map_err(|_| format!("{digest:?} is not a sha256 digest"))?;
        Ok(dir.join("blobs").join("sha256").join(d.digest()))
    }

    /// The cache's manifest; `None` when there is none under the tag.
    pub(crate) fn manifest(&self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Backend::Registry(a) => a.manifest().map_err(|e| e.to_string()),
            Backend::Local { dir, tag, .. } => {
                let p = dir.join("index.json");
                let bytes = match fs::read(&p) {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(format!("reading {}: {e}", p.display())),
                };
                let index: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{} is not an OCI index: {e}", p.display()))?;
                let Some(entry) = index["manifests"].as_array().and_then(|m| {
                    m.iter()
                        .find(|e| e["annotations"][REF_NAME].as_str() == Some(tag.as_str()))
                }) else {
                    return Ok(None);
                };
                let digest = entry["digest"].as_str().unwrap_or_default();
                let mut out = Vec::new();
                self.fetch_blob(digest, 0, &mut out)?;
                Ok(Some(out))
            }
        }
    }

    pub(crate) fn has_blob(&self, digest: &str) -> Result<bool, String> {
        match self {
            Backend::Registry(a) => a.has_blob(digest).map_err(|e| e.to_string()),
            Backend::Local { dir, .. } => Ok(Self::blob_path(dir, digest)?.is_file()),
        }
    }

    /// Blob `digest` into `out`, verified (an error on a mismatch).
    pub(crate) fn fetch_blob(
        &self,
        digest: &str,
        size: u64,
        out: &mut dyn Write,
    ) -> Result<(), String> {
        match self {
            Backend::Registry(a) => a.fetch_blob(digest, size, out).map_err(|e| e.to_string()),
            Backend::Local { dir, .. } => {
                let p = Self::blob_path(dir, digest)?;
                let mut f = File::open(&p).map_err(|e| format!("opening {}: {e}", p.display()))?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(|e| format!("reading {}: {e}", p.display()))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    out.write_all(&buf[..n])
                        .map_err(|e| format!("copying {}: {e}", p.display()))?;
                }
                let got = format!("sha256:{}", hex::encode(h.finalize()));
                if got != digest {
                    return Err(format!(
                        "blob {} is damaged: its content hashes to {got}",
                        p.display()
                    ));
                }
                Ok(())
            }
        }
    }

    /// Store the file at `path` as blob `digest`.
    pub(crate) fn put_blob_file(&self, digest: &str, path: &Path) -> Result<(), String> {
        match self {
            Backend::Registry(a) => a.put_blob_file(digest, path).map_err(|e| e.to_string()),
            Backend::Local { dir, .. } => {
                let mut f =
                    File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
                write_atomic(&Self::blob_path(dir, digest)?, &mut f)
            }
        }
    }

    pub(crate) fn put_blob_bytes(&self, digest: &str, bytes: Vec<u8>) -> Result<(), String> {
        match self {
            Backend::Registry(a) => a.put_blob_bytes(digest, bytes).map_err(|e| e.to_string()),
            Backend::Local { dir, .. } => {
                write_atomic(&Self::blob_path(dir, digest)?, &mut bytes.as_slice())
            }
        }
    }

    /// Put `body` under the tag. A local directory's `index.json` is replaced atomically (its
    /// other tags kept), then blobs no manifest of it names any more are removed.
    pub(crate) fn put_manifest(&self, body: Vec<u8>, media_type: &str) -> Result<(), String> {
        match self {
            Backend::Registry(a) => a.put_manifest(body, media_type).map_err(|e| e.to_string()),
            Backend::Local { dir, tag, .. } => {
                let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
                let size = body.len();
                self.put_blob_bytes(&digest, body)?;
                let p = dir.join("index.json");
                let mut manifests: Vec<Value> = fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| v["manifests"].as_array().cloned())
                    .unwrap_or_default();
                manifests.retain(|e| e["annotations"][REF_NAME].as_str() != Some(tag.as_str()));
                manifests.push(json!({
                    "mediaType": media_type,
                    "digest": digest,
                    "size": size,
                    "annotations": { REF_NAME: tag },
                }));
                let index = json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": manifests,
                });
                let layout = dir.join("oci-layout");
                if !layout.is_file() {
                    write_atomic(&layout, &mut &br#"{"imageLayoutVersion":"1.0.0"}"#[..])?;
                }
                let bytes = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
                write_atomic(&p, &mut bytes.as_slice())?;
                sweep(dir, &manifests);
                Ok(())
            }
        }
    }
}

/// Write `src` to a temp file beside `path`, sync it, rename it into place.
fn write_atomic(path: &Path, src: &mut dyn Read) -> Result<(), String> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| format!("creating a file in {}: {e}", parent.display()))?;
    io::copy(src, &mut tmp).map_err(|e| format!("writing {}: {e}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| format!("syncing {}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| format!("renaming into {}: {e}", path.display()))?;
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Remove the blobs of `dir` that no manifest of its index names (the previous export's
/// layers and chunks that the new one no longer uses).
fn sweep(dir: &Path, manifests: &[Value]) {
    let blobs = dir.join("blobs").join("sha256");
    let mut keep = std::collections::HashSet::new();
    for m in manifests {
        let Some(d) = m["digest"].as_str() else {
            continue;
        };
        keep.insert(d.trim_start_matches("sha256:").to_string());
        let Ok(bytes) = fs::read(blobs.join(d.trim_start_matches("sha256:"))) else {
            // A manifest that cannot be read: keep everything rather than guess.
            return;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            return;
        };
        let refs = v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&v["config"]));
        for r in refs {
            if let Some(d) = r["digest"].as_str() {
                keep.insert(d.trim_start_matches("sha256:").to_string());
            }
        }
    }
    let Ok(rd) = fs::read_dir(&blobs) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            let _ = fs::remove_file(e.path());
        }
    }
}
