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

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

use crate::digest::{self, parse_sha256};
use crate::error::{IoContext, Result, StoreError};

/// Manifests and configs are read whole; anything bigger than this is not one.
pub const MAX_METADATA_BLOB: u64 = 16 << 20;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

/// Writes are gathered into chunks of this size; from the first full chunk on, hashing and
/// writing run on a second thread, so the caller (decompressing, parsing a tar) overlaps with them.
const CHUNK: usize = 1 << 20;

type Finished = io::Result<(NamedTempFile, Sha256, u64)>;

enum Sink {
    Inline {
        file: NamedTempFile,
        hasher: Sha256,
        size: u64,
    },
    Piped {
        tx: SyncSender<Vec<u8>>,
        recycled: Receiver<Vec<u8>>,
        worker: JoinHandle<Finished>,
    },
    Failed,
}

/// A blob being written. Call [`BlobWriter::commit`] to make it visible; dropping it discards
/// the temp file.
pub struct BlobWriter {
    buf: Vec<u8>,
    sink: Sink,
    dir: PathBuf,
}

fn write_chunk(
    file: &mut NamedTempFile,
    hasher: &mut Sha256,
    size: &mut u64,
    chunk: &[u8],
) -> io::Result<()> {
    file.as_file_mut().write_all(chunk)?;
    hasher.update(chunk);
    *size += chunk.len() as u64;
    Ok(())
}

impl BlobWriter {
    fn dispatch(&mut self) -> io::Result<()> {
        let next = match &self.sink {
            Sink::Piped { recycled, .. } => recycled
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK)),
            _ => Vec::with_capacity(CHUNK),
        };
        let chunk = std::mem::replace(&mut self.buf, next);
        match std::mem::replace(&mut self.sink, Sink::Failed) {
            Sink::Inline {
                mut file,
                mut hasher,
                mut size,
            } => {
                write_chunk(&mut file, &mut hasher, &mut size, &chunk)?;
                let (tx, rx) = sync_channel::<Vec<u8>>(4);
                let (back_tx, recycled) = sync_channel::<Vec<u8>>(4);
                let worker = std::thread::spawn(move || -> Finished {
                    for mut c in rx {
                        write_chunk(&mut file, &mut hasher, &mut size, &c)?;
                        c.clear();
                        let _ = back_tx.try_send(c);
                    }
                    Ok((file, hasher, size))
                });
                self.sink = Sink::Piped {
                    tx,
                    recycled,
                    worker,
                };
                Ok(())
            }
            Sink::Piped {
                tx,
                recycled,
                worker,
            } => {
                if tx.send(chunk).is_err() {
                    // The worker stopped on an error: report it.
                    return Err(match worker.join() {
                        Ok(Err(e)) => e,
                        _ => io::Error::other("blob writer thread failed"),
                    });
                }
                self.sink = Sink::Piped {
                    tx,
                    recycled,
                    worker,
                };
                Ok(())
            }
            Sink::Failed => Err(io::Error::other("blob writer already failed")),
        }
    }

    fn finish(mut self) -> Finished {
        match std::mem::replace(&mut self.sink, Sink::Failed) {
            Sink::Inline {
                mut file,
                mut hasher,
                mut size,
            } => {
                write_chunk(&mut file, &mut hasher, &mut size, &self.buf)?;
                Ok((file, hasher, size))
            }
            Sink::Piped { tx, worker, .. } => {
                let last = std::mem::take(&mut self.buf);
                let sent = last.is_empty() || tx.send(last).is_ok();
                drop(tx);
                let out = worker
                    .join()
                    .map_err(|_| io::Error::other("blob writer thread panicked"))?;
                if !sent && out.is_ok() {
                    return Err(io::Error::other("blob writer thread stopped early"));
                }
                out
            }
            Sink::Failed => Err(io::Error::other("blob writer already failed")),
        }
    }

    /// Verify against `expected` (if given), fsync, and rename into place. Returns the digest
    /// and size. A blob that is already present is kept as it is (content addressing makes the
    /// two identical).
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let dir = self.dir.clone();
        let (tmp, hasher, size) = self
            .finish()
            .map_err(|e| StoreError::io("writing blob into", &dir, e))?;
        let digest = digest::from_hasher(hasher);
        if let Some(exp) = expected
            && exp != &digest
        {
            return Err(StoreError::DigestMismatch {
                what: "blob".into(),
                expected: exp.to_string(),
                actual: digest.to_string(),
            });
        }
        let target = dir.join(digest.digest());
        if target.exists() {
            return Ok((digest, size));
        }
        tmp.as_file().sync_all().ctx("syncing blob", tmp.path())?;
        tmp.persist(&target)
            .map_err(|e| StoreError::io("storing blob", &target, e.error))?;
        sync_dir(&dir)?;
        Ok((digest, size))
    }
}

impl Drop for BlobWriter {
    /// An abandoned writer (an error upstream) must not leave its temp file behind: stop the
    /// worker and let it drop the file before the process moves on or exits.
    fn drop(&mut self) {
        if let Sink::Piped { tx, worker, .. } = std::mem::replace(&mut self.sink, Sink::Failed) {
            drop(tx);
            let _ = worker.join();
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
        let tmp = NamedTempFile::with_prefix_in("blob-", &self.tmp)
            .ctx("creating temp file in", &self.tmp)?;
        Ok(BlobWriter {
            buf: Vec::with_capacity(CHUNK),
            sink: Sink::Inline {
                file: tmp,
                hasher: Sha256::new(),
                size: 0,
            },
            dir: self.dir.clone(),
        })
    }

    /// Stream `r` into the store; with `expected`, refuse content whose digest differs.
    pub fn put_reader(&self, mut r: impl Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        if let Some(d) = expected
            && self.contains(d)
        {
            // Still drain the reader so callers streaming an archive stay in step.
            io::copy(&mut r, &mut io::sink()).ctx("reading blob", self.path(d))?;
            return Ok((d.clone(), self.size(d)?));
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
            return Err(StoreError::corrupt(
                d.to_string(),
                "metadata blob is larger than 16 MiB",
            ));
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

#[cfg(test)]
mod pipelined_tests {
    use super::*;

    #[test]
    fn large_blobs_go_through_the_writer_thread_intact() {
        let t = tempfile::tempdir().unwrap();
        let (dir, tmp) = (t.path().join("blobs"), t.path().join("tmp"));
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        let s = BlobStore::new(dir, tmp.clone());
        // Not a multiple of the chunk size, written in odd-sized pieces.
        let data: Vec<u8> = (0..(5 * CHUNK + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut w = s.writer().unwrap();
        for piece in data.chunks(70_001) {
            w.write_all(piece).unwrap();
        }
        let (d, n) = w.commit(Some(&digest::sha256_of(&data))).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(fs::read(s.path(&d)).unwrap(), data);
        // A wrong expectation on a large blob leaves nothing behind.
        let mut w = s.writer().unwrap();
        w.write_all(&data).unwrap();
        assert!(w.commit(Some(&digest::sha256_of(b"x"))).is_err());
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
