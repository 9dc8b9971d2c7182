//! The single streaming pass over an archive: each regular member goes straight into the blob
//! store as it arrives (members may come in any order), except small metadata files, which are
//! kept in memory. Members named `blobs/sha256/<hex>` are verified against their name; other
//! files (docker-archive layers) are hashed as they stream and, when compressed, decompressed
//! and hashed in the same pass to learn their diff ID.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path};

use oci_spec::image::Digest;

use crate::blobs::{BlobWriter, MAX_METADATA_BLOB};
use crate::compression::{self, Compression};
use crate::digest::{HashingReader, parse_sha256};
use crate::error::{Result, StoreError};
use crate::root::Store;

use super::printable;

/// More metadata than this in one archive is not an image archive.
const MAX_METADATA_TOTAL: u64 = 256 << 20;
/// Symlink chains longer than this are refused (and loops end).
const MAX_LINK_HOPS: usize = 16;
const COPY_BUF: usize = 256 << 10;

/// What one archive member turned into.
#[derive(Debug, Clone)]
pub(super) enum Member {
    /// A small metadata file, kept whole.
    Json(Vec<u8>),
    /// Content now in the blob store.
    Blob(StoredBlob),
    /// A symlink or hard link to another member (normalized archive path).
    Link(String),
}

#[derive(Debug, Clone)]
pub(super) struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    diff: DiffId,
}

/// The digest of a layer's uncompressed content, learnt while it streamed in.
#[derive(Debug, Clone)]
enum DiffId {
    Known(Digest, Compression),
    /// Not computed during the pass (blobs of an OCI layout, whose diff IDs only matter when a
    /// Docker manifest.json is the sole description); worked out from the store on demand.
    Deferred,
    /// The content did not decompress; only an error if it is used as a layer.
    Failed(String),
}

/// Everything one pass over the archive learnt.
#[derive(Debug, Default)]
pub(super) struct Ingested {
    members: BTreeMap<String, Member>,
}

fn bad_archive(reason: impl std::fmt::Display) -> StoreError {
    StoreError::BadArchive {
        what: "image archive".into(),
        reason: printable(&reason.to_string()),
    }
}

/// A tar header that does not parse. The tar crate quotes the damaged header bytes, which are
/// noise to a user; keep its words, drop the bytes.
fn bad_header(after: Option<&str>, e: &io::Error) -> StoreError {
    let msg = e.to_string();
    // The reader's refusal of an oversized long name or PAX header (vendor/tar) is already one
    // short line that names the header and says what is wrong.
    if crate::extract::header_too_large(e) {
        return match after {
            None => bad_archive(msg),
            Some(last) => bad_archive(format!("after entry {last}: {msg}")),
        };
    }
    let detail = match msg.split(": ").next().unwrap_or_default() {
        "failed to read entire block" => "it ends in the middle of a tar header (truncated?)",
        d if d.chars().all(|c| c.is_ascii_graphic() || c == ' ') => d,
        _ => "unreadable tar header",
    };
    match after {
        None => StoreError::BadArchive {
            what: "the input".into(),
            reason: format!("{detail} (expected a tar archive, plain or gzip/zstd-compressed)"),
        },
        Some(last) => bad_archive(format!("damaged after entry {last}: {detail}")),
    }
}

impl Ingested {
    pub fn has(&self, path: &str) -> bool {
        self.members.contains_key(path)
    }

    /// The member at `path`, links followed.
    pub fn get(&self, path: &str) -> Option<&Member> {
        let mut path = normalize(Path::new(path))?;
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&path)? {
                Member::Link(target) => path = target.clone(),
                m => return Some(m),
            }
        }
        None
    }

    /// A metadata file by its archive path (`index.json`, `manifest.json`, `<hex>.json`).
    pub fn json(&self, path: &str) -> Option<&[u8]> {
        match self.get(path)? {
            Member::Json(b) => Some(b),
            _ => None,
        }
    }

    /// The stored blob at `path`, links followed.
    pub fn blob(&self, path: &str) -> Option<&StoredBlob> {
        match self.get(path)? {
            Member::Blob(b) => Some(b),
            _ => None,
        }
    }
}

impl StoredBlob {
    /// Diff ID and compression of this layer, decompressing it from the store if the streaming
    /// pass did not already.
    pub fn diff_id(&self, store: &Store, member: &str) -> Result<(Digest, Compression)> {
        match &self.diff {
            DiffId::Known(d, c) => Ok((d.clone(), *c)),
            DiffId::Failed(e) => Err(StoreError::invalid(
                format!("layer {member} in the archive"),
                format!("it does not decompress: {e}"),
            )),
            DiffId::Deferred => {
                let f = store.blobs().open(&self.digest)?;
                let path = store.blobs().path(&self.digest);
                let io_err = |e: io::Error| StoreError::io("reading blob", &path, e);
                let mut br = BufReader::with_capacity(1 << 16, f);
                let c = Compression::from_magic(br.fill_buf().map_err(io_err)?).map_err(|e| {
                    StoreError::invalid(format!("layer {member} in the archive"), e.to_string())
                })?;
                if c == Compression::None {
                    return Ok((self.digest.clone(), c));
                }
                let dec = compression::decoder(br, c).map_err(io_err)?;
                let (d, _) = HashingReader::new(dec).finish().map_err(|e| {
                    StoreError::invalid(
                        format!("layer {member} in the archive"),
                        format!("it does not decompress: {e}"),
                    )
                })?;
                Ok((d, c))
            }
        }
    }
}

/// Archive path as a `/`-joined relative path (`./a//b` -> `a/b`; `..` cannot climb above the
/// archive root). `None` for the root itself.
pub(super) fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(printable(&s.to_string_lossy())),
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// What to do with a regular member, decided from its name alone (it arrives before anything
/// that could say what it is).
enum Kind {
    /// `blobs/sha256/<hex>`: verify against the name.
    NamedBlob(Digest),
    /// Small file kept in memory.
    Metadata,
    /// Docker's v1 per-layer `json`/`VERSION` files: nothing reads them.
    Ignored,
    /// Anything else, presumably a layer: store it and learn its diff ID.
    Layer,
}

fn classify(path: &str, size: u64) -> Result<Kind> {
    if let Some(rest) = path.strip_prefix("blobs/") {
        return match rest.split_once('/') {
            Some(("sha256", hex)) => parse_sha256(&format!("sha256:{hex}"))
                .map(Kind::NamedBlob)
                .map_err(|_| {
                    bad_archive(format!(
                        "entry {} is not named by a sha256 digest (blobs/sha256/<64 hex>)",
                        crate::extract::shown_name(path.as_bytes())
                    ))
                }),
            Some((alg, _)) => {
                tracing::warn!(
                    "ignoring archive entry {path}: digest algorithm {alg} is not supported"
                );
                Ok(Kind::Ignored)
            }
            None => Ok(Kind::Ignored),
        };
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let nested = path.contains('/');
    if nested && (name == "json" || name == "VERSION") {
        return Ok(Kind::Ignored);
    }
    let metadata_name =
        name.ends_with(".json") || name == super::REPOSITORIES || name == super::OCI_LAYOUT_FILE;
    if metadata_name && size <= MAX_METADATA_BLOB {
        return Ok(Kind::Metadata);
    }
    if path == super::INDEX_JSON || path == super::MANIFEST_JSON {
        return Err(bad_archive(format!("{path} is larger than 16 MiB")));
    }
    Ok(Kind::Layer)
}

/// Read the whole archive from `input` (plain, gzip or zstd) into the store.
pub(super) fn ingest(store: &Store, input: &mut dyn Read) -> Result<Ingested> {
    let (compression, reader) = compression::auto_decoder(input).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData {
            StoreError::Unsupported {
                what: "image archive compression".into(),
                reason: e.to_string(),
            }
        } else {
            bad_archive(e)
        }
    })?;
    let mut archive = tar::Archive::new(reader);
    let mut out = Ingested::default();
    let mut metadata_total = 0u64;
    let mut seen = 0usize;
    let mut last: Option<String> = None;
    let entries = archive.entries().map_err(bad_archive)?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_header(last.as_deref(), &e))?;
        seen += 1;
        let raw_path = entry
            .path()
            .map_err(|e| bad_archive(format!("entry {seen} has an unreadable name: {e}")))?
            .into_owned();
        let Some(path) = normalize(&raw_path) else {
            continue;
        };
        last = Some(crate::extract::shown_name(path.as_bytes()));
        let size = entry.size();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let hard = entry.header().entry_type() == tar::EntryType::Link;
                let target = entry.link_name().map_err(|e| {
                    bad_archive(format!("entry {path} has an unreadable link target: {e}"))
                })?;
                let Some(target) = target else { continue };
                // Symlinks are relative to their own directory; hard links to the archive root.
                let base = match (hard, path.rsplit_once('/')) {
                    (false, Some((dir, _))) if !target.is_absolute() => format!("{dir}/"),
                    _ => String::new(),
                };
                let joined = format!("{base}{}", target.to_string_lossy());
                if let Some(t) = normalize(Path::new(&joined)) {
                    out.members.insert(path, Member::Link(t));
                }
                continue;
            }
            _ => continue,
        }
        let member = match classify(&path, size)? {
            Kind::Ignored => continue,
            Kind::Metadata => {
                metadata_total += size;
                if metadata_total > MAX_METADATA_TOTAL {
                    return Err(bad_archive("it holds more than 256 MiB of metadata files"));
                }
                let mut buf = Vec::with_capacity(size as usize);
                let n = entry
                    .by_ref()
                    .take(MAX_METADATA_BLOB + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| read_error(&path, e))?;
                check_complete(&path, size, n as u64)?;
                Member::Json(buf)
            }
            Kind::NamedBlob(d) => Member::Blob(store_named(store, &mut entry, &path, d, size)?),
            Kind::Layer => Member::Blob(store_layer(store, &mut entry, &path, size)?),
        };
        out.members.insert(path, member);
    }
    if seen == 0 {
        return Err(bad_archive(
            "it contains no files (empty input, or not a tar archive)",
        ));
    }
    // Read compressed input to its end so a damaged gzip/zstd trailer is noticed.
    if compression != Compression::None {
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(bad_archive)?;
    }
    Ok(out)
}

fn read_error(path: &str, e: io::Error) -> StoreError {
    bad_archive(format!("reading entry {path}: {e}"))
}

fn check_complete(path: &str, expected: u64, got: u64) -> Result<()> {
    if got != expected {
        return Err(bad_archive(format!(
            "entry {path} is truncated: its header says {expected} bytes, the archive ends after {got}"
        )));
    }
    Ok(())
}

/// Where a copy failed: reading the archive or writing the store.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy(r: &mut dyn Read, w: &mut dyn Write) -> std::result::Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

fn copy_into_store(store: &Store, r: &mut dyn Read, w: &mut dyn Write, path: &str) -> Result<u64> {
    copy(r, w).map_err(|e| match e {
        CopyError::Read(e) => read_error(path, e),
        CopyError::Write(e) => StoreError::io("writing blob into", store.tmp_dir(), e),
    })
}

fn mismatch_at(path: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::DigestMismatch {
            expected, actual, ..
        } => StoreError::DigestMismatch {
            what: format!("archive entry {path}"),
            expected,
            actual,
        },
        e => e,
    }
}

/// A `blobs/sha256/<hex>` member: its content must hash to its name.
fn store_named(
    store: &Store,
    entry: &mut dyn Read,
    path: &str,
    expected: Digest,
    size: u64,
) -> Result<StoredBlob> {
    let digest = if store.blobs().contains(&expected) {
        // Already stored: still verify the archive's copy, so a tampered archive is reported
        // the same way whatever the store holds.
        let mut h = HashingReader::new(entry);
        let n = copy_into_store(store, &mut h, &mut io::sink(), path)?;
        check_complete(path, size, n)?;
        let (actual, _) = h.finish().map_err(|e| read_error(path, e))?;
        if actual != expected {
            return Err(StoreError::DigestMismatch {
                what: format!("archive entry {path}"),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        actual
    } else {
        let mut w = store.blobs().writer()?;
        let n = copy_into_store(store, entry, &mut w, path)?;
        check_complete(path, size, n)?;
        w.commit(Some(&expected))
            .map_err(|e| mismatch_at(path, e))?
            .0
    };
    Ok(StoredBlob {
        digest,
        size,
        diff: DiffId::Deferred,
    })
}

/// Passes everything read through into the blob being written, remembering which side failed.
struct Tee<'a> {
    inner: &'a mut dyn Read,
    out: &'a mut BlobWriter,
    count: u64,
    read_err: Option<io::Error>,
    write_err: Option<io::Error>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let kind = e.kind();
                self.read_err = Some(e);
                return Err(io::Error::new(kind, "reading the archive failed"));
            }
        };
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.write_err = Some(e);
            return Err(io::Error::other("writing the blob failed"));
        }
        self.count += n as u64;
        Ok(n)
    }
}

impl Tee<'_> {
    /// A fatal error of the underlying streams, if one happened.
    fn fatal(&mut self, store: &Store, path: &str) -> Result<()> {
        if let Some(e) = self.read_err.take() {
            return Err(read_error(path, e));
        }
        if let Some(e) = self.write_err.take() {
            return Err(StoreError::io("writing blob into", store.tmp_dir(), e));
        }
        Ok(())
    }
}

/// Any other member: store it under the digest it hashes to, and learn its diff ID in the
/// same pass (decompressing as it streams when it is gzip or zstd).
fn store_layer(store: &Store, entry: &mut dyn Read, path: &str, size: u64) -> Result<StoredBlob> {
    let mut w = store.blobs().writer()?;
    let mut tee = Tee {
        inner: entry,
        out: &mut w,
        count: 0,
        read_err: None,
        write_err: None,
    };
    let diff = {
        let mut br = BufReader::with_capacity(1 << 16, &mut tee);
        match br.fill_buf().map(Compression::from_magic) {
            Err(_) => None,
            Ok(Err(e)) => Some(DiffId::Failed(e.to_string())),
            Ok(Ok(Compression::None)) => Some(DiffId::Deferred),
            Ok(Ok(c)) => Some(match compression::decoder(&mut br, c) {
                Ok(dec) => {
                    let mut h = HashingReader::new(dec);
                    match io::copy(&mut h, &mut io::sink()) {
                        Ok(_) => match h.finish() {
                            Ok((d, _)) => DiffId::Known(d, c),
                            Err(e) => DiffId::Failed(e.to_string()),
                        },
                        Err(e) => DiffId::Failed(e.to_string()),
                    }
                }
                Err(e) => DiffId::Failed(e.to_string()),
            }),
        }
    };
    tee.fatal(store, path)?;
    // Whatever the decoder left (or everything, for plain content) still goes into the blob.
    let rest = copy(&mut tee, &mut io::sink());
    tee.fatal(store, path)?;
    if let Err(CopyError::Read(e) | CopyError::Write(e)) = rest {
        return Err(read_error(path, e));
    }
    check_complete(path, size, tee.count)?;
    let (digest, stored) = w.commit(None)?;
    let diff = match diff {
        Some(DiffId::Deferred) | None => DiffId::Known(digest.clone(), Compression::None),
        Some(d) => d,
    };
    Ok(StoredBlob {
        digest,
        size: stored,
        diff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(Path::new("./a//b")).as_deref(), Some("a/b"));
        assert_eq!(normalize(Path::new("/a/../../b")).as_deref(), Some("b"));
        assert_eq!(normalize(Path::new("./")), None);
    }
}
