//! Sharing the build cache between machines: `--cache-to` exports the steps of a build (their
//! keys, the images they made, the layers, and with `mode=max` the contents of cache mounts)
//! to a registry or an OCI layout directory; `--cache-from` imports such an export, so a fresh
//! state root finds the steps CACHED and ends with the same image, byte for byte.
//!
//! Importing is lazy: the cache's config (keys and the small manifests and configs of the
//! step images) is read at the start; a hit writes only the manifest and config into the
//! store. Layers come down only when something needs them: the final image, or a step that
//! runs on a cached parent (or copies from one). Cache mounts come down before the first RUN
//! that uses them runs. A key is a hash of instructions, build args, content hashes and parent
//! keys, nothing of the machine, so keys made on one machine hit on another.
//!
//! - `spec`: the flags' values
//! - `format`: the exported config
//! - `backend`: registry or local directory
//! - `export`: writing an export
//! - `mounts`: cache-mount contents as content-defined chunks

mod backend;
mod export;
mod format;
mod mounts;
pub mod spec;

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use berth_store::digest::sha256_of;
use berth_store::oci_spec::image::{Digest, MediaType};
use berth_store::remote::Options;
use berth_store::{Image, Store};
use serde_json::Value;

use crate::cache::{Cache, KeyInputs};
use backend::Backend;
pub use export::ExportStats;
use format::{CacheConfig, Chunk, LayerEntry, MountEntry, RecordEntry};
pub use spec::{CacheFrom, CacheTo, Location, Mode, SpecError, SpecProblem};

/// An imported record, checked and ready to be a cache hit.
struct Imported {
    image: Image,
    manifest: String,
    config: String,
    /// The layer digests of its manifest.
    layers: Vec<String>,
}

/// The imported caches of a build and what the build did (for export).
pub struct CacheIo {
    sources: Vec<(String, Backend)>,
    records: HashMap<String, Imported>,
    layers: HashMap<String, (usize, LayerEntry)>,
    mounts: HashMap<String, (usize, MountEntry)>,
    /// Only hits whose layers can all be had (set when a lazy hit turned out to be needed).
    strict: AtomicBool,
    /// Layers whose fetch failed (damaged, unreachable): hits needing them are not taken again.
    failed: Mutex<BTreeSet<String>>,
    recorded: Mutex<Recorded>,
}

impl std::fmt::Debug for CacheIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheIo")
            .field("sources", &self.sources.len())
            .field("records", &self.records.len())
            .finish()
    }
}

#[derive(Default)]
struct Recorded {
    /// Steps in the order they were decided, by key.
    steps: Vec<(KeyInputs, Image)>,
    keys: BTreeSet<String>,
    /// Cache-mount directories the build's RUN steps use.
    mounts: BTreeSet<String>,
    /// Manifests of hits that came from an import.
    imported: BTreeSet<String>,
}

fn digest_str(s: &str) -> Option<Digest> {
    berth_store::digest::parse_sha256(s).ok()
}

impl CacheIo {
    /// Nothing imported; records the build for export.
    pub fn empty() -> CacheIo {
        CacheIo {
            sources: Vec::new(),
            records: HashMap::new(),
            layers: HashMap::new(),
            mounts: HashMap::new(),
            strict: AtomicBool::new(false),
            failed: Mutex::new(BTreeSet::new()),
            recorded: Mutex::new(Recorded::default()),
        }
    }

    /// Read the caches `from` names. A cache that cannot be reached, does not exist or is
    /// damaged is skipped with a warning (`warn`), as BuildKit does: the build goes on.
    pub fn import(from: &[CacheFrom], opts: &Options, warn: &mut dyn FnMut(&str)) -> CacheIo {
        let mut io = CacheIo::empty();
        for f in from {
            let shown = f.location.to_string();
            match read_config(&f.location, opts) {
                Ok(Some((backend, cfg))) => {
                    let n = io.sources.len();
                    io.sources.push((shown.clone(), backend));
                    let bad = io.add(n, cfg);
                    if bad > 0 {
                        warn(&format!(
                            "WARNING: cache {shown}: {bad} damaged records ignored"
                        ));
                    }
                }
                Ok(None) => warn(&format!(
                    "WARNING: failed to import cache {shown}: not found (build continues without it)"
                )),
                Err(e) => warn(&format!(
                    "WARNING: failed to import cache {shown}: {e} (build continues without it)"
                )),
            }
        }
        io
    }

    /// Take the records of a config; returns how many were unusable.
    fn add(&mut self, source: usize, cfg: CacheConfig) -> usize {
        for l in cfg.layers {
            self.layers.entry(l.digest.clone()).or_insert((source, l));
        }
        for m in cfg.mounts {
            self.mounts.entry(m.dir.clone()).or_insert((source, m));
        }
        let mut bad = 0;
        for r in cfg.records {
            match checked(r) {
                Some((key, imp)) => {
                    self.records.entry(key).or_insert(imp);
                }
                None => bad += 1,
            }
        }
        bad
    }

    /// Whether anything was imported.
    pub fn imports(&self) -> bool {
        !self.records.is_empty() || !self.mounts.is_empty()
    }

    pub(crate) fn set_strict(&self) {
        self.strict.store(true, Ordering::SeqCst);
    }

    pub(crate) fn strict(&self) -> bool {
        self.strict.load(Ordering::SeqCst)
    }

    /// The image an imported record made for `key`, its manifest and config written into
    /// the store (its layers are fetched when needed: [`CacheIo::complete`]).
    pub(crate) fn lookup(&self, store: &Store, key: &str) -> Option<Image> {
        let r = self.records.get(key)?;
        if self.strict() {
            let failed = self.failed.lock().ok();
            let failed = |d: &String| failed.as_ref().is_some_and(|f| f.contains(d));
            let available = |d: &String| {
                (self.layers.contains_key(d) && !failed(d))
                    || digest_str(d).is_some_and(|d| store.blobs().contains(&d))
            };
            if !r.layers.iter().all(available) {
                return None;
            }
        }
        for (blob, digest) in [(&r.manifest, &r.image.manifest), (&r.config, &r.image.id)] {
            if !store.blobs().contains(digest) {
                store.blobs().put_bytes(blob.as_bytes()).ok()?;
            }
        }
        if let Ok(mut rec) = self.recorded.lock() {
            rec.imported.insert(r.image.manifest.to_string());
        }
        Some(r.image.clone())
    }

    /// Fetch the layers of `img` the store lacks from the imported caches; `Err` names a
    /// layer none of them has (or why fetching failed).
    pub(crate) fn complete(&self, store: &Store, img: &Image) -> Result<(), String> {
        let m = store.manifest(&img.manifest).map_err(|e| e.to_string())?;
        let missing: Vec<&Digest> = m
            .layers()
            .iter()
            .map(|l| l.digest())
            .filter(|d| !store.blobs().contains(d))
            .collect();
        let entries = missing
            .iter()
            .map(|d| {
                self.layers.get(d.as_ref()).ok_or_else(|| {
                    format!("layer {d} is in neither the store nor an imported cache")
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        // Three at a time, as `pull` does.
        for group in entries.chunks(3) {
            let results: Vec<Result<(), String>> = std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .iter()
                    .map(|(src, l)| s.spawn(move || self.fetch_layer(store, *src, l)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("fetching a layer panicked".into()))
                    })
                    .collect()
            });
            for ((_, l), r) in group.iter().zip(results) {
                if let Err(e) = r {
                    if let Ok(mut f) = self.failed.lock() {
                        f.insert(l.digest.clone());
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One layer into the store under the digest the manifests give it: as it is, or (a layer
    /// stored uncompressed) decompressed from its cache blob and verified against its diff ID.
    fn fetch_layer(&self, store: &Store, source: usize, l: &LayerEntry) -> Result<(), String> {
        let (shown, backend) = &self.sources[source];
        let want = digest_str(&l.digest).ok_or_else(|| format!("bad digest {:?}", l.digest))?;
        let err = |e: String| format!("fetching layer {} from cache {shown}: {e}", l.digest);
        if l.blob == l.digest {
            let mut w = store.blobs().writer().map_err(|e| err(e.to_string()))?;
            backend.fetch_blob(&l.blob, l.size, &mut w).map_err(err)?;
            w.commit(Some(&want)).map_err(|e| err(e.to_string()))?;
            return Ok(());
        }
        // Decompressed into a blob writer; committed (under the layer's digest, which it must
        // hash to) only by the caller.
        let inflate = |compressed: &mut dyn Read| {
            let (_, mut plain) = berth_store::compression::auto_decoder(compressed)
                .map_err(|e| format!("decompressing: {e}"))?;
            let mut w = store.blobs().writer().map_err(|e| e.to_string())?;
            io::copy(&mut plain, &mut w).map_err(|e| format!("decompressing: {e}"))?;
            Ok::<_, String>(w)
        };
        // The compressed blob may be here already (a base image pulled from a registry).
        if let Some(d) = digest_str(&l.blob).filter(|d| store.blobs().contains(d)) {
            let mut file = store.blobs().open(&d).map_err(|e| err(e.to_string()))?;
            let w = inflate(&mut file).map_err(err)?;
            return w
                .commit(Some(&want))
                .map(|_| ())
                .map_err(|e| err(e.to_string()));
        }
        // Downloaded and inflated at once through a pipe (hashing the download and inflating
        // and hashing the layer overlap on two cores); the layer is committed only once the
        // download matched its digest too.
        let (reader, mut writer) = std::io::pipe().map_err(|e| err(e.to_string()))?;
        let (fetched, inflated) = std::thread::scope(|s| {
            let fetch = s.spawn(move || {
                let r = backend.fetch_blob(&l.blob, l.size, &mut writer);
                drop(writer);
                r
            });
            let inflated = inflate(&mut &reader).and_then(|w| {
                // Whatever follows the compressed stream, so the download can finish.
                io::copy(&mut &reader, &mut io::sink()).map_err(|e| e.to_string())?;
                Ok(w)
            });
            // An early failure closes the pipe: the download stops with an error too.
            drop(reader);
            let fetched = fetch
                .join()
                .unwrap_or_else(|_| Err("the download panicked".into()));
            (fetched, inflated)
        });
        let w = match (fetched, inflated) {
            (Ok(()), Ok(w)) => w,
            (Err(e), Ok(_)) | (Ok(()), Err(e)) => return Err(err(e)),
            // Each side's failure ends the other; say both.
            (Err(f), Err(i)) => return Err(err(format!("{f}; {i}"))),
        };
        w.commit(Some(&want)).map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    /// Restore the cache mount `dir` from an imported cache if this root has none yet.
    /// Returns the cache it came from when it restored.
    pub(crate) fn restore_mount(&self, store: &Store, dir: &str) -> Result<Option<String>, String> {
        let Some((src, entry)) = self.mounts.get(dir) else {
            return Ok(None);
        };
        let (shown, backend) = &self.sources[*src];
        let fetch = |c: &Chunk, out: &mut dyn Write| backend.fetch_blob(&c.digest, c.size, out);
        match mounts::restore(store.root(), entry, &fetch) {
            Ok(true) => Ok(Some(shown.clone())),
            Ok(false) => Ok(None),
            Err(e) => Err(format!("restoring a cache mount from {shown}: {e}")),
        }
    }

    /// A step's outcome (hit or built), for export.
    pub(crate) fn record(&self, inputs: &KeyInputs, img: &Image) {
        let key = inputs.key();
        if let Ok(mut r) = self.recorded.lock()
            && r.keys.insert(key)
        {
            r.steps.push((inputs.clone(), img.clone()));
        }
    }

    pub(crate) fn record_mount(&self, dir: &str) {
        if let Ok(mut r) = self.recorded.lock() {
            r.mounts.insert(dir.to_string());
        }
    }

    /// Imported hits whose layers are all here now become local cache entries (pinned as
    /// step images are), so the next build hits without `--cache-from`.
    pub(crate) fn settle(&self, store: &Store, cache: &Cache) {
        let Ok(r) = self.recorded.lock() else { return };
        for (inputs, img) in &r.steps {
            if r.imported.contains(&img.manifest.to_string())
                && store.image_complete(img)
                && store
                    .pin(berth_store::commit::BUILDER_PINS, &img.manifest)
                    .is_ok()
            {
                cache.put(inputs, img);
            }
        }
    }

    /// The layer entry an import has for `digest` and the backend holding it.
    fn imported_layer(&self, digest: &str) -> Option<(&Backend, &LayerEntry)> {
        self.layers
            .get(digest)
            .map(|(src, l)| (&self.sources[*src].1, l))
    }
}

/// A record checked: its key is what its inputs hash to, its manifest names its config.
fn checked(r: RecordEntry) -> Option<(String, Imported)> {
    if r.inputs.key() != r.key {
        return None;
    }
    let manifest_d = sha256_of(r.manifest.as_bytes());
    let config_d = sha256_of(r.config.as_bytes());
    let m: Value = serde_json::from_str(&r.manifest).ok()?;
    if m["config"]["digest"].as_str() != Some(config_d.as_ref()) {
        return None;
    }
    let cfg: Value = serde_json::from_str(&r.config).ok()?;
    let mut layers = Vec::new();
    let mut size = 0;
    for l in m["layers"].as_array()? {
        layers.push(l["digest"].as_str()?.to_string());
        size += l["size"].as_u64()?;
    }
    let media_type = m["mediaType"]
        .as_str()
        .map(MediaType::from)
        .unwrap_or(MediaType::ImageManifest);
    let image = Image {
        id: config_d,
        manifest: manifest_d,
        manifest_size: r.manifest.len() as u64,
        manifest_media_type: media_type,
        created: cfg["created"].as_str().map(str::to_string),
        size,
        tags: Vec::new(),
        digests: Vec::new(),
    };
    Some((
        r.key,
        Imported {
            image,
            manifest: r.manifest,
            config: r.config,
            layers,
        },
    ))
}

/// The backend and config of an exported cache; `None` when there is none at `loc`.
fn read_config(loc: &Location, opts: &Options) -> Result<Option<(Backend, CacheConfig)>, String> {
    let backend = Backend::open(loc, false, opts)?;
    let Some(bytes) = backend.manifest()? else {
        return Ok(None);
    };
    let m: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the cache manifest is not JSON: {e}"))?;
    if m["config"]["mediaType"].as_str() != Some(format::CONFIG_MEDIA_TYPE) {
        return Err(format!(
            "{loc} is not a berth build cache (its config is {:?}, expected {})",
            m["config"]["mediaType"].as_str().unwrap_or(""),
            format::CONFIG_MEDIA_TYPE
        ));
    }
    let digest = m["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let size = m["config"]["size"].as_u64().unwrap_or(0);
    let mut bytes = Vec::new();
    backend.fetch_blob(&digest, size, &mut bytes)?;
    let cfg: CacheConfig =
        serde_json::from_slice(&bytes).map_err(|e| format!("the cache config is damaged: {e}"))?;
    if cfg.version != 1 {
        return Err(format!(
            "cache config version {} is not supported (berth reads 1)",
            cfg.version
        ));
    }
    Ok(Some((backend, cfg)))
}
