//! Content-addressed blobs under `images/blobs/sha256/<hex>`.
//!
//! Every blob is hashed while it streams into a temp file in the store's `tmp/` (same
//! filesystem), fsynced, and renamed into place only after its digest is known (and, when the
//! caller expected one, verified). A reader therefore never sees a partial or wrong blob.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use tempfile::NamedTempFile;

use crate::digest::{self, HashingWriter, parse_sha256};
use crate::error::{IoContext, Result, StoreError};

/// Manifests and configs are read whole; anything bigger than this is not one.
pub const MAX_METADATA_BLOB: u64 = 16 << 20;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

/// A blob being written. Call [`BlobWriter::commit`] to make it visible; dropping it discards
/// the temp file.
pub struct BlobWriter {
    out: HashingWriter<io::BufWriter<NamedTempFile>>,
    dir: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Verify against `expected` (if given), fsync, and rename into place. Returns the digest
    /// and size. A blob that is already present is kept as it is (content addressing makes the
    /// two identical).
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let (buf, digest, size) = self.out.finish();
        if let Some(exp) = expected {
            if exp != &digest {
                return Err(StoreError::DigestMismatch {
                    what: "blob".into(),
                    expected: exp.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let tmp = buf
            .into_inner()
            .map_err(|e| StoreError::io("writing blob", &self.dir, e.into_error()))?;
        let target = self.dir.join(digest.digest());
        if target.exists() {
            return Ok((digest, size));
        }
        tmp.as_file().sync_all().ctx("syncing blob", tmp.path())?;
        tmp.persist(&target)
            .map_err(|e| StoreError::io("storing blob", &target, e.error))?;
        sync_dir(&self.dir)?;
        Ok((digest, size))
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("syncing directory", dir)
}

impl BlobStore {
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf) -> Self {
        BlobStore { dir, tmp }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.digest())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    pub fn size(&self, d: &Digest) -> Result<u64> {
        let p = self.path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(d.to_string()))
            }
            Err(e) => Err(StoreError::io("reading blob", p, e)),
        }
    }

    pub fn writer(&self) -> Result<BlobWriter> {
        let tmp = NamedTempFile::with_prefix_in("blob-", &self.tmp).ctx("creating temp file in", &self.tmp)?;
        Ok(BlobWriter {
            out: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)),
            dir: self.dir.clone(),
        })
    }

    /// Stream `r` into the store; with `expected`, refuse content whose digest differs.
    pub fn put_reader(&self, mut r: impl Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        if let Some(d) = expected {
            if self.contains(d) {
                // Still drain the reader so callers streaming an archive stay in step.
                io::copy(&mut r, &mut io::sink()).ctx("reading blob", self.path(d))?;
                return Ok((d.clone(), self.size(d)?));
            }
        }
        let mut w = self.writer()?;
        io::copy(&mut r, &mut w).ctx("writing blob into", &self.tmp)?;
        w.commit(expected)
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let d = digest::sha256_of(bytes);
        if self.contains(&d) {
            return Ok((d, bytes.len() as u64));
        }
        let mut w = self.writer()?;
        w.write_all(bytes).ctx("writing blob into", &self.tmp)?;
        w.commit(Some(&d))
    }

    pub fn open(&self, d: &Digest) -> Result<File> {
        let p = self.path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobNotFound(d.to_string())
            } else {
                StoreError::io("opening blob", p, e)
            }
        })
    }

    /// Read a small blob (manifest, config) whole, verifying its digest.
    pub fn read_verified(&self, d: &Digest) -> Result<Vec<u8>> {
        let f = self.open(d)?;
        let mut buf = Vec::new();
        f.take(MAX_METADATA_BLOB + 1)
            .read_to_end(&mut buf)
            .ctx("reading blob", self.path(d))?;
        if buf.len() as u64 > MAX_METADATA_BLOB {
            return Err(StoreError::corrupt(d.to_string(), "metadata blob is larger than 16 MiB"));
        }
        let actual = digest::sha256_of(&buf);
        if &actual != d {
            return Err(StoreError::corrupt(
                d.to_string(),
                format!("content hashes to {actual}"),
            ));
        }
        Ok(buf)
    }

    pub fn remove(&self, d: &Digest) -> Result<bool> {
        let p = self.path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("removing blob", p, e)),
        }
    }

    /// Every blob present, with names that are not sha256 hex reported separately.
    pub fn list(&self) -> Result<(Vec<Digest>, Vec<PathBuf>)> {
        let mut good = Vec::new();
        let mut stray = Vec::new();
        for e in fs::read_dir(&self.dir).ctx("listing", &self.dir)? {
            let e = e.ctx("listing", &self.dir)?;
            let name = e.file_name();
            match name.to_str().map(|n| parse_sha256(&format!("sha256:{n}"))) {
                Some(Ok(d)) => good.push(d),
                _ => stray.push(e.path()),
            }
        }
        good.sort_by(|a, b| a.digest().cmp(b.digest()));
        Ok((good, stray))
    }

    /// Re-hash a stored blob; `Ok(Some(actual))` when the content does not match its name.
    pub fn verify(&self, d: &Digest) -> Result<Option<Digest>> {
        let f = self.open(d)?;
        let r = crate::digest::HashingReader::new(BufReader::with_capacity(1 << 20, f));
        let (actual, _) = r.finish().ctx("reading blob", self.path(d))?;
        Ok(if &actual == d { None } else { Some(actual) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("blobs");
        let tmp = t.path().join("tmp");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        (t, BlobStore::new(dir, tmp))
    }

    #[test]
    fn put_and_verify_roundtrip() {
        let (_t, s) = store();
        let (d, n) = s.put_bytes(b"hello").unwrap();
        assert_eq!(n, 5);
        assert!(s.contains(&d));
        assert_eq!(s.read_verified(&d).unwrap(), b"hello");
        assert_eq!(s.verify(&d).unwrap(), None);
    }

    #[test]
    fn mismatched_digest_leaves_nothing_visible() {
        let (t, s) = store();
        let wrong = digest::sha256_of(b"other");
        let err = s.put_reader(&b"hello"[..], Some(&wrong)).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!s.contains(&wrong));
        assert_eq!(fs::read_dir(s.dir()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn verify_detects_corruption() {
        let (_t, s) = store();
        let (d, _) = s.put_bytes(b"hello").unwrap();
        fs::write(s.path(&d), b"jello").unwrap();
        assert!(s.verify(&d).unwrap().is_some());
        assert!(s.read_verified(&d).is_err());
    }
}
