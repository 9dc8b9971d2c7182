//! Unpacking a layer tar into a snapshot directory, as Docker/containerd apply a layer as root
//! into an overlay snapshot: OCI whiteouts become overlayfs whiteouts, owners, modes, times and
//! xattrs are kept, later entries replace earlier ones.
//!
//! Whatever the tar contains, nothing is written outside the destination: names are cleaned and
//! `..` out of the root is refused (`entry_path`), every parent directory is resolved inside the
//! root as if it were a chroot and every final name is created with `*at` calls under that
//! parent's fd without following symlinks (`scope`).
//!
//! Speed matters (a layer is unpacked on every pull): per entry there is no `lstat` of parents
//! (recently used parents stay open, the rest are opened in one `openat2`), files are created with
//! `O_CREAT|O_EXCL` and only on `EEXIST` is the old entry removed, data moves in writes of up to
//! 1 MiB, and `chown`/`chmod` happen only when creation cannot have got them right already. A
//! typical file costs `openat`, `write`, `utimensat`, `close` (GNU tar: about twice as many).

mod dir_fd;
mod entry_path;
mod error;
mod meta;
mod scope;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use dir_fd::DirFd;
use entry_path::{CleanPath, PathProblem, Whiteout};
pub use error::ExtractError;
use meta::{AtKind, Defaults, Meta, Times};
use scope::{ResolveError, Scope};

/// What [`unpack_layer`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar members applied, whiteouts and skipped aufs metadata included (PAX and GNU long-name
    /// headers belong to the member they describe and are not counted).
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
}

/// Reads of the tar stream are at least this large (headers of small files share one read).
const READ_BUFFER: usize = 256 * 1024;
/// File data moves through a buffer this large.
const COPY_BUFFER: usize = 1024 * 1024;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Unpack an uncompressed layer tar stream into `dest`, an existing empty directory that the
/// caller owns (nobody else writes into it meanwhile).
///
/// On error, `dest` holds whatever was unpacked before; the caller discards it.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path) -> Result<UnpackStats, ExtractError> {
    unpack(reader, dest, false)
}

fn unpack<R: Read>(reader: R, dest: &Path, walk_only: bool) -> Result<UnpackStats, ExtractError> {
    let mut scope = Scope::open(dest).map_err(|source| ExtractError::Destination {
        path: dest.to_path_buf(),
        source,
    })?;
    if walk_only {
        scope.disable_openat2();
    }
    let defaults = Defaults::detect(scope.root().as_fd());
    let mut unpacker = Unpacker {
        scope,
        defaults,
        dir_times: BTreeMap::new(),
        buf: vec![0; COPY_BUFFER],
        stats: UnpackStats::default(),
    };
    unpacker.run(reader)?;
    Ok(unpacker.stats)
}

struct Unpacker {
    scope: Scope,
    defaults: Defaults,
    /// Directory times, set at the end (deepest first) so that creating entries inside them does
    /// not change them again. Keyed by cleaned path.
    dir_times: BTreeMap<Vec<u8>, Times>,
    buf: Vec<u8>,
    stats: UnpackStats,
}

/// The entry's name for messages.
fn shown(raw: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&entry_path::shown_name(raw)))
}

/// Whether `e` is the tar reader refusing a GNU long name, long link, PAX header or sparse map
/// over its 1 MiB limit (vendor/tar): a message that already says what is wrong, in one short
/// line, not a sign of a truncated archive.
pub fn header_too_large(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("exceeds the 1 MiB limit")
}

/// For readers of tars that unpack through the `tar` crate (build contexts, `ADD`): refuse an
/// entry whose name or link target is longer than any path can be (4096 bytes, as layers do),
/// before the crate fails on it with the whole name, up to 1 MiB, in its message.
pub fn check_name_lengths<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<()> {
    let link = entry.link_name_bytes();
    for raw in [Some(entry.path_bytes()), link].into_iter().flatten() {
        if raw.len() > entry_path::MAX_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tar entry {}: name is longer than {} bytes",
                    shown_name(&raw),
                    entry_path::MAX_PATH
                ),
            ));
        }
    }
    Ok(())
}

/// An entry name for an error message: lossy UTF-8, at most 256 bytes of it (see
/// [`entry_path::shown_name`]); for every reader of tars, not only layers.
pub fn shown_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(&entry_path::shown_name(raw)).into_owned()
}

fn io_err(raw: &[u8], op: &'static str, source: impl Into<io::Error>) -> ExtractError {
    ExtractError::Io {
        path: shown(raw),
        op,
        source: source.into(),
    }
}

fn invalid(raw: &[u8], reason: &'static str) -> ExtractError {
    ExtractError::InvalidPath {
        path: shown(raw),
        reason,
    }
}

fn resolve_err(raw: &[u8], e: ResolveError) -> ExtractError {
    match e {
        ResolveError::Missing => io_err(
            raw,
            "resolve parent directory",
            io::Error::from(io::ErrorKind::NotFound),
        ),
        ResolveError::NotDirectory(component) => ExtractError::NotADirectory {
            path: shown(raw),
            component: shown(&component),
        },
        ResolveError::Loop => ExtractError::SymlinkLoop { path: shown(raw) },
        ResolveError::Io(op, source) => io_err(raw, op, source),
    }
}

fn path_err(raw: &[u8], p: PathProblem) -> ExtractError {
    match p {
        PathProblem::Escape => ExtractError::PathEscape { path: shown(raw) },
        PathProblem::Nul => invalid(raw, "name contains a NUL byte"),
        PathProblem::TooLong => invalid(raw, "name is longer than 4096 bytes"),
    }
}

impl Unpacker {
    fn run<R: Read>(&mut self, reader: R) -> Result<(), ExtractError> {
        let mut archive = tar::Archive::new(BufReader::with_capacity(READ_BUFFER, reader));
        let entries = archive
            .entries()
            .map_err(|source| ExtractError::Corrupt { index: 1, source })?;
        let mut index = 0;
        for entry in entries {
            index += 1;
            let entry = entry.map_err(|source| {
                if header_too_large(&source) {
                    ExtractError::HeaderTooLarge { index, source }
                } else {
                    ExtractError::Corrupt { index, source }
                }
            })?;
            self.entry(index, entry)?;
        }
        self.finish()
    }

    fn entry<R: Read>(
        &mut self,
        index: u64,
        mut entry: tar::Entry<'_, R>,
    ) -> Result<(), ExtractError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Docker ignores them too; nothing in them applies to a layer.
            return Ok(());
        }
        self.stats.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let path = CleanPath::new(&raw).map_err(|p| path_err(&raw, p))?;
        let header_err = |(field, source)| ExtractError::Header {
            path: shown(&raw),
            field,
            source,
        };
        match entry_path::classify(&path) {
            Whiteout::None => {}
            Whiteout::AufsMeta => {
                tracing::debug!(entry = %shown(&raw).display(), "skipping aufs metadata");
                return Ok(());
            }
            Whiteout::Invalid => return Err(invalid(&raw, "whiteout of an impossible name")),
            Whiteout::Opaque => return self.opaque(&raw, &path),
            Whiteout::Delete(target) => {
                let meta = Meta::read(&mut entry).map_err(header_err)?;
                return self.whiteout(&raw, &path, target, &meta);
            }
        }
        let meta = Meta::read(&mut entry).map_err(header_err)?;
        let flag = entry.header().as_old().linkflag[0];
        // Old tars mark directories only by a trailing slash on a "regular" (`\0`) entry.
        let dir = kind.is_dir() || (flag == 0 && raw.last() == Some(&b'/'));
        if dir {
            return self.directory(&raw, path, &meta);
        }
        if path.is_root() {
            return Err(invalid(&raw, "names the layer root but is not a directory"));
        }
        if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            self.file(index, &raw, &path, &meta, &mut entry)
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().map(|t| t.into_owned());
            self.symlink(&raw, &path, &meta, target.as_deref().unwrap_or_default())
        } else if kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| t.into_owned());
            self.hard_link(&raw, &path, &meta, target.as_deref().unwrap_or_default())
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let (file_type, dev) = if kind.is_fifo() {
                (FileType::Fifo, 0)
            } else {
                let header = entry.header();
                let major =
                    meta::numeric(header, "devmajor", header.device_major()).map_err(header_err)?;
                let minor =
                    meta::numeric(header, "devminor", header.device_minor()).map_err(header_err)?;
                let dev = rustix::fs::makedev(major.unwrap_or(0), minor.unwrap_or(0));
                if kind.is_character_special() {
                    (FileType::CharacterDevice, dev)
                } else {
                    (FileType::BlockDevice, dev)
                }
            };
            self.node(&raw, &path, &meta, file_type, dev)
        } else {
            Err(ExtractError::UnsupportedType {
                path: shown(&raw),
                flag: char::from(flag),
            })
        }
    }

    fn parent(&mut self, raw: &[u8], path: &CleanPath) -> Result<Rc<DirFd>, ExtractError> {
        self.scope
            .dir(path.parent(), true, &self.defaults)
            .map_err(|e| resolve_err(raw, e))
    }

    /// Runs `create`; if the name is taken, removes what is there (a whole tree for a directory)
    /// and runs it once more.
    fn create_replacing<T>(
        &mut self,
        raw: &[u8],
        parent: BorrowedFd<'_>,
        lexical_parent: &[u8],
        name: &[u8],
        op: &'static str,
        mut create: impl FnMut() -> rustix::io::Result<T>,
    ) -> Result<T, ExtractError> {
        match create() {
            Err(Errno::EXIST) => {
                self.remove(raw, parent, lexical_parent, name)?;
                create().map_err(|e| io_err(raw, op, e))
            }
            other => other.map_err(|e| io_err(raw, op, e)),
        }
    }

    fn remove(
        &mut self,
        raw: &[u8],
        parent: BorrowedFd<'_>,
        lexical_parent: &[u8],
        name: &[u8],
    ) -> Result<(), ExtractError> {
        self.scope
            .remove(parent, name)
            .map_err(|e| io_err(raw, "remove the existing entry it replaces", e))?;
        // Directory times recorded at or below the removed path no longer apply.
        if !self.dir_times.is_empty() {
            let mut gone = lexical_parent.to_vec();
            if !gone.is_empty() {
                gone.push(b'/');
            }
            gone.extend_from_slice(name);
            self.dir_times.remove(&gone);
            let mut lo = gone.clone();
            lo.push(b'/');
            let mut hi = gone;
            hi.push(b'/' + 1);
            let below: Vec<Vec<u8>> = self
                .dir_times
                .range(lo..hi)
                .map(|(k, _)| k.clone())
                .collect();
            for k in below {
                self.dir_times.remove(&k);
            }
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        index: u64,
        raw: &[u8],
        path: &CleanPath,
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), ExtractError> {
        let parent = self.parent(raw, path)?;
        let name = path.name();
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let fd = self.create_replacing(
            raw,
            parent.as_fd(),
            path.parent(),
            name,
            "create file",
            || rustix::fs::openat(&*parent, name, flags, mode),
        )?;
        let mut file = File::from(fd);
        let expected = entry.size();
        let mut got = 0u64;
        loop {
            let mut filled = 0;
            let mut eof = false;
            while filled < self.buf.len() {
                match entry.read(&mut self.buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(ExtractError::Corrupt { index, source }),
                }
            }
            if filled > 0 {
                file.write_all(&self.buf[..filled])
                    .map_err(|e| io_err(raw, "write file data", e))?;
                got += filled as u64;
            }
            if eof {
                break;
            }
        }
        if got != expected {
            return Err(ExtractError::Truncated {
                index,
                path: shown(raw),
                expected,
                got,
            });
        }
        meta.apply_fd(file.as_fd(), Some(&parent), &mut self.defaults)
            .map_err(|e| io_err(raw, "set owner, mode and xattrs", e))?;
        rustix::fs::futimens(&file, &meta.times.timestamps())
            .map_err(|e| io_err(raw, "set times", e))?;
        self.stats.bytes += got;
        Ok(())
    }

    fn directory(&mut self, raw: &[u8], path: CleanPath, meta: &Meta) -> Result<(), ExtractError> {
        if path.is_root() {
            meta.apply_fd(self.scope.root().as_fd(), None, &mut self.defaults)
                .map_err(|e| io_err(raw, "set owner, mode and xattrs of the layer root", e))?;
            self.dir_times.insert(Vec::new(), meta.times);
            return Ok(());
        }
        let parent = self.parent(raw, &path)?;
        let name = path.name();
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let mkdir = || rustix::fs::mkdirat(&*parent, name, mode);
        let open = || rustix::fs::openat(&*parent, name, DIR_FLAGS, Mode::empty());
        let (fd, created) = match mkdir() {
            Ok(()) => (
                open().map_err(|e| io_err(raw, "open new directory", e))?,
                true,
            ),
            Err(Errno::EXIST) => match open() {
                // An existing directory keeps its contents; only its metadata changes.
                Ok(fd) => (fd, false),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    self.remove(raw, parent.as_fd(), path.parent(), name)?;
                    mkdir().map_err(|e| io_err(raw, "create directory", e))?;
                    (
                        open().map_err(|e| io_err(raw, "open new directory", e))?,
                        true,
                    )
                }
                Err(e) => return Err(io_err(raw, "open existing directory", e)),
            },
            Err(e) => return Err(io_err(raw, "create directory", e)),
        };
        meta.apply_fd(fd.as_fd(), created.then_some(&*parent), &mut self.defaults)
            .map_err(|e| io_err(raw, "set owner, mode and xattrs", e))?;
        self.dir_times.insert(path.as_bytes().to_vec(), meta.times);
        let dir = DirFd::new(fd, meta.mode & 0o2000 != 0, meta.gid);
        self.scope.remember(path.into_bytes(), dir);
        Ok(())
    }

    fn symlink(
        &mut self,
        raw: &[u8],
        path: &CleanPath,
        meta: &Meta,
        target: &[u8],
    ) -> Result<(), ExtractError> {
        if target.is_empty() {
            return Err(invalid(raw, "symlink with an empty target"));
        }
        let parent = self.parent(raw, path)?;
        let name = path.name();
        // The target is stored as-is: it is only ever followed by the container, inside its root.
        self.create_replacing(
            raw,
            parent.as_fd(),
            path.parent(),
            name,
            "create symlink",
            || rustix::fs::symlinkat(target, &*parent, name),
        )?;
        meta.apply_at(&parent, name, AtKind::Symlink, &mut self.defaults)
            .map_err(|e| io_err(raw, "set owner, xattrs and times of symlink", e))
    }

    fn hard_link(
        &mut self,
        raw: &[u8],
        path: &CleanPath,
        meta: &Meta,
        target_raw: &[u8],
    ) -> Result<(), ExtractError> {
        let escape = || ExtractError::HardLinkEscape {
            path: shown(raw),
            target: shown(target_raw),
        };
        let missing = || ExtractError::HardLinkTargetMissing {
            path: shown(raw),
            target: shown(target_raw),
        };
        let target = match CleanPath::new(target_raw) {
            Ok(t) => t,
            Err(PathProblem::Escape) => return Err(escape()),
            Err(PathProblem::Nul | PathProblem::TooLong) => {
                return Err(invalid(raw, "hard link target is not a valid name"));
            }
        };
        if target.is_root() {
            return Err(invalid(raw, "hard link to the layer root"));
        }
        let tparent = match self.scope.dir(target.parent(), false, &self.defaults) {
            Ok(fd) => fd,
            Err(ResolveError::Missing | ResolveError::NotDirectory(_)) => return Err(missing()),
            Err(e) => return Err(resolve_err(raw, e)),
        };
        let tname = target.name();
        let parent = self.parent(raw, path)?;
        let name = path.name();
        let link = || rustix::fs::linkat(&*tparent, tname, &*parent, name, AtFlags::empty());
        match link() {
            Ok(()) => {}
            Err(Errno::NOENT) => return Err(missing()),
            Err(Errno::EXIST) => {
                let same = |a: rustix::fs::Stat, b: rustix::fs::Stat| {
                    a.st_dev == b.st_dev && a.st_ino == b.st_ino
                };
                let old = rustix::fs::statat(&*parent, name, AtFlags::SYMLINK_NOFOLLOW);
                let new = rustix::fs::statat(&*tparent, tname, AtFlags::SYMLINK_NOFOLLOW);
                match (old, new) {
                    // Already that very inode (a link to itself, or listed twice).
                    (Ok(a), Ok(b)) if same(a, b) => {}
                    (_, Err(Errno::NOENT)) => return Err(missing()),
                    _ => {
                        self.remove(raw, parent.as_fd(), path.parent(), name)?;
                        match link() {
                            Ok(()) => {}
                            Err(Errno::NOENT) => return Err(missing()),
                            Err(e) => return Err(io_err(raw, "create hard link", e)),
                        }
                    }
                }
            }
            Err(e) => return Err(io_err(raw, "create hard link", e)),
        }
        // As Docker: the link's header metadata is applied to the (shared) inode.
        meta.apply_at(&parent, name, AtKind::HardLink, &mut self.defaults)
            .map_err(|e| io_err(raw, "set owner, mode, xattrs and times of hard link", e))
    }

    fn node(
        &mut self,
        raw: &[u8],
        path: &CleanPath,
        meta: &Meta,
        file_type: FileType,
        dev: rustix::fs::Dev,
    ) -> Result<(), ExtractError> {
        let parent = self.parent(raw, path)?;
        let name = path.name();
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        self.create_replacing(
            raw,
            parent.as_fd(),
            path.parent(),
            name,
            "create device node",
            || rustix::fs::mknodat(&*parent, name, file_type, mode, dev),
        )?;
        meta.apply_at(&parent, name, AtKind::Node, &mut self.defaults)
            .map_err(|e| io_err(raw, "set owner, mode, xattrs and times of device node", e))
    }

    /// `.wh.<name>`: `<name>` becomes a 0:0 character device, overlayfs's whiteout.
    fn whiteout(
        &mut self,
        raw: &[u8],
        path: &CleanPath,
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), ExtractError> {
        let parent = self.parent(raw, path)?;
        let dev = rustix::fs::makedev(0, 0);
        self.create_replacing(
            raw,
            parent.as_fd(),
            path.parent(),
            target,
            "create whiteout",
            || {
                rustix::fs::mknodat(
                    &*parent,
                    target,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    dev,
                )
            },
        )?;
        let (uid, gid) = (
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        );
        rustix::fs::chownat(&*parent, target, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(raw, "set owner of whiteout", e))
    }

    /// `.wh..wh..opq`: its directory hides the lower layers' contents.
    fn opaque(&mut self, raw: &[u8], path: &CleanPath) -> Result<(), ExtractError> {
        let dir = self.parent(raw, path)?;
        rustix::fs::fsetxattr(&*dir, "trusted.overlay.opaque", b"y", XattrFlags::empty()).map_err(
            |e| {
                io_err(
                    raw,
                    "mark directory opaque (xattr trusted.overlay.opaque)",
                    e,
                )
            },
        )
    }

    /// Directory times, deepest first, each directory reopened inside the root; a directory that
    /// was replaced since is skipped.
    fn finish(&mut self) -> Result<(), ExtractError> {
        let mut dirs: Vec<(Vec<u8>, Times)> =
            std::mem::take(&mut self.dir_times).into_iter().collect();
        let depth =
            |p: &[u8]| p.iter().filter(|b| **b == b'/').count() + usize::from(!p.is_empty());
        // Stable: siblings stay together and share their open parent.
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(depth(p)));
        for (lexical, times) in dirs {
            let ts = times.timestamps();
            if lexical.is_empty() {
                rustix::fs::futimens(self.scope.root().as_fd(), &ts)
                    .map_err(|e| io_err(b"./", "set times of the layer root", e))?;
                continue;
            }
            let Ok(path) = CleanPath::new(&lexical) else {
                continue;
            };
            let parent = match self.scope.dir(path.parent(), false, &self.defaults) {
                Ok(fd) => fd,
                Err(ResolveError::Missing | ResolveError::NotDirectory(_)) => continue,
                Err(e) => return Err(resolve_err(&lexical, e)),
            };
            let fd = match rustix::fs::openat(&*parent, path.name(), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(io_err(&lexical, "open directory to set its times", e)),
            };
            rustix::fs::futimens(&fd, &ts)
                .map_err(|e| io_err(&lexical, "set directory times", e))?;
        }
        Ok(())
    }
}
