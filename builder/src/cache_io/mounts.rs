//! Cache-mount contents in an exported cache: a tar of the directory, written in a stable
//! order with stable headers (no access times), cut into content-defined chunks (FastCDC), each
//! chunk a blob. A small change to the directory changes only the chunks around it, so a second
//! export uploads only those (it asks the cache for each chunk before uploading it). Restoring
//! fetches the chunks, unpacks their concatenation with the store's hardened extractor and
//! renames the result into place.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::FlockOperation;

use crate::lock::flock_file;
use sha2::{Digest as _, Sha256};

use super::backend::Backend;
use super::format::{Chunk, MountEntry};
use crate::run_mounts::CACHE_MOUNTS_DIR;

const MIN_CHUNK: u32 = 64 << 10;
const AVG_CHUNK: u32 = 256 << 10;
const MAX_CHUNK: u32 = 1 << 20;

fn mount_dir(root: &Path, dir: &str) -> std::path::PathBuf {
    root.join("builder").join(CACHE_MOUNTS_DIR).join(dir)
}

fn lock(dir: &Path, op: FlockOperation) -> Result<File, String> {
    let p = dir.join("lock");
    flock_file(&p, op).map_err(|e| format!("locking {}: {e}", p.display()))
}

/// Append `dir` (as `rel`) and what it holds to `b`, children in name order.
fn append_tree(b: &mut tar::Builder<&mut File>, dir: &Path, rel: &str) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let r = format!("{rel}{}", name.to_string_lossy());
        let md = fs::symlink_metadata(&path)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid().into());
        h.set_gid(md.gid().into());
        h.set_mtime(md.mtime().max(0) as u64);
        let ft = md.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{r}/"), io::empty())?;
            append_tree(b, &path, &format!("{r}/"))?;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            b.append_data(&mut h, &r, File::open(&path)?)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &r, fs::read_link(&path)?)?;
        }
        // Sockets, pipes and devices are not cache content.
    }
    Ok(())
}

/// Export the cache mount `dir` into `backend`; `None` when this root has no such directory.
/// Returns the entry and the number of chunks uploaded.
pub(crate) fn export(
    root: &Path,
    dir: &str,
    backend: &Backend,
) -> Result<Option<(MountEntry, usize)>, String> {
    let base = mount_dir(root, dir);
    let data = base.join("data");
    if !data.is_dir() {
        return Ok(None);
    }
    // Shared: builds using the cache may go on (as `sharing=shared` users do), a `locked`
    // user finishes first.
    let _lock = lock(&base, FlockOperation::LockShared)?;
    let md = fs::metadata(&data).map_err(|e| format!("reading {}: {e}", data.display()))?;
    let mut tmp = tempfile::tempfile_in(root.join("builder"))
        .map_err(|e| format!("creating a temp file: {e}"))?;
    {
        let mut b = tar::Builder::new(&mut tmp);
        append_tree(&mut b, &data, "")
            .and_then(|_| b.finish())
            .map_err(|e| format!("reading the cache mount {}: {e}", data.display()))?;
    }
    let size = tmp
        .stream_position()
        .map_err(|e| format!("reading a temp file: {e}"))?;
    tmp.rewind()
        .map_err(|e| format!("reading a temp file: {e}"))?;
    let mut chunks = Vec::new();
    let mut uploaded = 0;
    let mut seen = std::collections::HashSet::new();
    for c in fastcdc::v2020::StreamCDC::new(&mut tmp, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
        let c = c.map_err(|e| format!("chunking the cache mount {}: {e}", data.display()))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&c.data)));
        let size = c.data.len() as u64;
        if seen.insert(digest.clone()) && !backend.has_blob(&digest)? {
            backend.put_blob_bytes(&digest, c.data)?;
            uploaded += 1;
        }
        chunks.push(Chunk { digest, size });
    }
    Ok(Some((
        MountEntry {
            dir: dir.to_string(),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size,
            chunks,
        },
        uploaded,
    )))
}

/// Restore `entry` as this root's cache mount unless it has one already; `fetch` writes a
/// chunk's verified bytes. Returns whether it restored.
pub(crate) fn restore(
    root: &Path,
    entry: &MountEntry,
    fetch: &dyn Fn(&Chunk, &mut dyn Write) -> Result<(), String>,
) -> Result<bool, String> {
    let valid = entry.dir.len() == 64 && entry.dir.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(format!("{:?} is not a cache mount name", entry.dir));
    }
    let base = mount_dir(root, &entry.dir);
    let data = base.join("data");
    if data.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    let _lock = lock(&base, FlockOperation::LockExclusive)?;
    if data.is_dir() {
        return Ok(false);
    }
    let mut tar = tempfile::tempfile_in(&base).map_err(|e| format!("creating a temp file: {e}"))?;
    for c in &entry.chunks {
        let before = tar
            .stream_position()
            .map_err(|e| format!("writing a temp file: {e}"))?;
        fetch(c, &mut tar)?;
        let after = tar
            .stream_position()
            .map_err(|e| format!("writing a temp file: {e}"))?;
        if after - before != c.size {
            return Err(format!(
                "chunk {} has {} bytes, the cache says {}",
                c.digest,
                after - before,
                c.size
            ));
        }
    }
    tar.rewind()
        .map_err(|e| format!("reading a temp file: {e}"))?;
    let tmp = base.join(format!("data.tmp-restore-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let unpacked =
        berth_store::extract::unpack_layer(io::BufReader::new(&mut tar).take(entry.size), &tmp)
            .map_err(|e| format!("unpacking the cache mount: {e}"))
            .and_then(|_| {
                rustix::fs::chown(
                    &tmp,
                    Some(rustix::fs::Uid::from_raw(entry.uid)),
                    Some(rustix::fs::Gid::from_raw(entry.gid)),
                )
                .map_err(|e| format!("setting the owner of {}: {e}", tmp.display()))?;
                fs::set_permissions(
                    &tmp,
                    std::os::unix::fs::PermissionsExt::from_mode(entry.mode & 0o7777),
                )
                .map_err(|e| format!("setting the mode of {}: {e}", tmp.display()))
            })
            .and_then(|_| {
                fs::rename(&tmp, &data)
                    .map_err(|e| format!("renaming into {}: {e}", data.display()))
            });
    if unpacked.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    unpacked.map(|_| true)
}
