//! `system check`: re-verify the whole store — every blob against its digest, every index entry's
//! manifest/config/layers, and every snapshot against the layer it was unpacked from.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

use crate::compression::{Compression, decoder};
use crate::error::{IoContext, Result};
use crate::layers::Layer;
use crate::root::Store;

#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    pub blobs: u64,
    pub images: u64,
    pub snapshots: u64,
    /// Damage: a wrong blob, a missing object, a snapshot that differs from its layer.
    pub problems: Vec<String>,
    /// Not damage, but worth knowing (leftover temp files, unused snapshots).
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What a layer says a path should be, after later entries overrode earlier ones.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Dir { mode: u32 },
    File { mode: u32, size: u64, sha: [u8; 32] },
    Symlink { target: String },
    HardLink { target: String },
    Whiteout,
    Opaque,
    Other,
}

fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn expected_tree(r: impl Read) -> io::Result<BTreeMap<String, Expect>> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(r);
    for e in ar.entries()? {
        let mut e = e?;
        let path = clean(&String::from_utf8_lossy(&e.path_bytes()));
        let name = path.rsplit('/').next().unwrap_or("").to_string();
        let parent = path
            .rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        if name == ".wh..wh..opq" {
            out.insert(parent, Expect::Opaque);
            continue;
        }
        if name.starts_with(".wh..wh.") {
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let p = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            out.insert(p, Expect::Whiteout);
            continue;
        }
        let mode = e.header().mode()? & 0o7777;
        let kind = e.header().entry_type();
        let exp = if kind.is_dir() {
            Expect::Dir { mode }
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut h = Sha256::new();
            let size = io::copy(&mut e, &mut HashSink(&mut h))?;
            Expect::File {
                mode,
                size,
                sha: h.finalize().into(),
            }
        } else if kind.is_symlink() {
            let t = e
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Expect::Symlink { target: t }
        } else if kind.is_hard_link() {
            let t = e
                .link_name_bytes()
                .map(|b| clean(&String::from_utf8_lossy(&b)))
                .unwrap_or_default();
            Expect::HardLink { target: t }
        } else {
            Expect::Other
        };
        if path.is_empty() {
            continue;
        }
        // A directory entry over an opaque marker keeps the marker's meaning.
        if matches!(exp, Expect::Dir { .. }) && out.get(&path) == Some(&Expect::Opaque) {
            continue;
        }
        out.insert(path, exp);
    }
    Ok(out)
}

struct HashSink<'a>(&'a mut Sha256);
impl io::Write for HashSink<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn file_sha(p: &Path) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    io::copy(
        &mut BufReader::with_capacity(1 << 20, fs::File::open(p)?),
        &mut HashSink(&mut h),
    )?;
    Ok(h.finalize().into())
}

fn compare(root: &Path, path: &str, exp: &Expect) -> Option<String> {
    let p = root.join(path);
    let md = match fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(e) => return Some(format!("{path}: {e}")),
    };
    let ft = md.file_type();
    let mode = md.mode() & 0o7777;
    match exp {
        Expect::Dir { mode: m } if !ft.is_dir() || mode != *m => Some(format!(
            "{path}: expected directory mode {m:o}, found {ft:?} mode {mode:o}"
        )),
        Expect::File { mode: m, size, sha } => {
            if !ft.is_file() || mode != *m || md.len() != *size {
                Some(format!(
                    "{path}: expected file mode {m:o} size {size}, found {ft:?} mode {mode:o} size {}",
                    md.len()
                ))
            } else {
                match file_sha(&p) {
                    Ok(h) if &h == sha => None,
                    Ok(_) => Some(format!("{path}: content differs from the layer")),
                    Err(e) => Some(format!("{path}: {e}")),
                }
            }
        }
        Expect::Symlink { target } => match fs::read_link(&p) {
            Ok(t) if t.as_os_str().as_encoded_bytes() == target.as_bytes() => None,
            Ok(t) => Some(format!(
                "{path}: symlink points to {} instead of {target}",
                t.display()
            )),
            Err(e) => Some(format!("{path}: expected symlink: {e}")),
        },
        Expect::HardLink { target } => match fs::symlink_metadata(root.join(target)) {
            Ok(t) if t.ino() == md.ino() => None,
            _ => Some(format!("{path}: expected a hard link to {target}")),
        },
        Expect::Whiteout if !(ft.is_char_device() && md.rdev() == 0) => {
            Some(format!("{path}: expected a whiteout (char 0:0)"))
        }
        _ => None,
    }
}

impl Store {
    pub fn check(&self) -> Result<CheckReport> {
        // Shared with writers, exclusive with gc: a concurrent sweep cannot fake damage.
        let _quiet = self.writer_lock()?;
        let mut rep = CheckReport::default();
        let (blobs, stray) = self.blobs().list()?;
        for p in stray {
            rep.problems
                .push(format!("stray file in blob store: {}", p.display()));
        }
        for d in &blobs {
            rep.blobs += 1;
            match self.blobs().verify(d) {
                Ok(None) => {}
                Ok(Some(actual)) => rep
                    .problems
                    .push(format!("blob {d} is corrupt: content hashes to {actual}")),
                Err(e) => rep.problems.push(format!("blob {d}: {e}")),
            }
        }
        let mut layers_by_diff: HashMap<String, Layer> = HashMap::new();
        for img in self.images()? {
            rep.images += 1;
            let name = img
                .tags
                .first()
                .map(|t| t.familiar_string())
                .unwrap_or_else(|| img.short_id().to_string());
            match self.blobs().size(&img.manifest) {
                Ok(n) if n != img.manifest_size => rep.problems.push(format!(
                    "image {name}: index says manifest is {} bytes, blob is {n}",
                    img.manifest_size
                )),
                Ok(_) => {}
                Err(e) => {
                    rep.problems.push(format!("image {name}: {e}"));
                    continue;
                }
            }
            let layers = match self.layers(&img) {
                Ok(l) => l,
                Err(e) => {
                    rep.problems.push(format!("image {name}: {e}"));
                    continue;
                }
            };
            for l in layers {
                match self.blobs().size(l.descriptor.digest()) {
                    Ok(n) if n != l.descriptor.size() => rep.problems.push(format!(
                        "image {name}: layer {} is {n} bytes, manifest says {}",
                        l.descriptor.digest(),
                        l.descriptor.size()
                    )),
                    Ok(_) => {}
                    Err(e) => rep.problems.push(format!("image {name}: {e}")),
                }
                layers_by_diff.insert(l.diff_id.digest().to_string(), l);
            }
        }
        let snaps = self.snapshots_dir();
        for e in fs::read_dir(&snaps).ctx("listing", &snaps)? {
            let e = e.ctx("listing", &snaps)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                rep.notes.push(format!(
                    "unfinished snapshot {name} (removed by `berth image prune`)"
                ));
                continue;
            }
            rep.snapshots += 1;
            let Some(layer) = layers_by_diff.get(&name) else {
                rep.notes
                    .push(format!("snapshot {name} is not used by any image"));
                continue;
            };
            if let Err(p) = self.check_snapshot(&e.path(), layer) {
                rep.problems.push(format!("snapshot {name}: {p}"));
            }
        }
        let tmp = self.tmp_dir();
        let leftovers = fs::read_dir(&tmp).ctx("listing", &tmp)?.count();
        if leftovers > 0 {
            rep.notes.push(format!("{leftovers} temp file(s) left by interrupted writes (removed by `berth image prune`)"));
        }
        Ok(rep)
    }

    fn check_snapshot(&self, dir: &Path, layer: &Layer) -> std::result::Result<(), String> {
        let blob = self
            .blobs()
            .open(layer.descriptor.digest())
            .map_err(|e| e.to_string())?;
        let r = decoder(
            BufReader::with_capacity(1 << 20, blob),
            Compression::from_media_type(layer.descriptor.media_type()),
        )
        .map_err(|e| e.to_string())?;
        let tree = expected_tree(r)
            .map_err(|e| format!("reading layer {}: {e}", layer.descriptor.digest()))?;
        let mut diffs: Vec<String> = tree
            .iter()
            .filter_map(|(p, exp)| compare(dir, p, exp))
            .collect();
        if diffs.is_empty() {
            return Ok(());
        }
        let n = diffs.len();
        diffs.truncate(3);
        Err(format!(
            "{n} difference(s) from layer {}: {}",
            short(layer.descriptor.digest()),
            diffs.join("; ")
        ))
    }
}

fn short(d: &Digest) -> &str {
    &d.digest()[..12]
}
