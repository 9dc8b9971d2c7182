//! Writing archive members: fixed headers (owner 0, the given mtime) so the same content gives
//! the same bytes, and blobs streamed from the store verified on their way out. Shared by
//! `save` and the build exporter (`export`).

use std::io::{self, BufReader, Read, Write};

use oci_spec::image::Digest;

use super::blob_path;
use crate::digest::HashingReader;
use crate::error::{Result, StoreError};
use crate::root::Store;

/// A stored blob to write and the mtime of its member.
pub(super) struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    pub mtime: u64,
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::invalid("archive metadata", e.to_string()))
}

pub(super) fn write_error(e: io::Error) -> StoreError {
    StoreError::io("writing", "the image archive", e)
}

pub(super) fn header(kind: tar::EntryType, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

pub(super) fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    mtime: u64,
) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, mtime);
    tar.append_data(&mut h, path, io::empty())
        .map_err(write_error)
}

pub(super) fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, mtime);
    tar.append_data(&mut h, path, bytes).map_err(write_error)
}

/// Remembers a read error so it is not blamed on the output.
struct Recording<R> {
    inner: R,
    err: Option<io::Error>,
}

impl<R: Read> Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.err = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }
}

pub(super) fn append_blob<W: Write>(
    store: &Store,
    tar: &mut tar::Builder<W>,
    b: &BlobEntry,
) -> Result<()> {
    let path = store.blobs().path(&b.digest);
    let stored = store.blobs().size(&b.digest)?;
    if stored != b.size {
        return Err(StoreError::corrupt(
            format!("blob {}", b.digest),
            format!("it is {stored} bytes but its descriptor says {}", b.size),
        ));
    }
    let file = store.blobs().open(&b.digest)?;
    let mut src = Recording {
        inner: HashingReader::new(BufReader::with_capacity(1 << 20, file).take(b.size)),
        err: None,
    };
    let mut h = header(tar::EntryType::Regular, b.size, b.mtime);
    if let Err(e) = tar.append_data(&mut h, blob_path(&b.digest), &mut src) {
        return Err(match src.err.take() {
            Some(r) => StoreError::io("reading blob", &path, r),
            None => write_error(e),
        });
    }
    let (actual, n) = src
        .inner
        .finish()
        .map_err(|e| StoreError::io("reading blob", &path, e))?;
    if n != b.size || actual != b.digest {
        return Err(StoreError::corrupt(
            format!("blob {}", b.digest),
            format!("its content ({n} bytes) hashes to {actual}"),
        ));
    }
    Ok(())
}
