//! The changes in an overlay upper directory over its lower snapshots: `diff`'s A/C/D list,
//! computed as Docker's overlay2 driver does (`archive.OverlayChanges`), and the layer tar that
//! `commit` and every filesystem step of a build store (overlay whiteouts as OCI `.wh.` files,
//! opaque directories as `.wh..wh..opq`).
//!
//! Docker keeps what the runtime itself creates (mount points such as `/proc` or `/etc/hosts`)
//! in a separate init layer that is neither diffed nor committed; berth's runtime creates them in
//! the upper directory, so an entry that is one of those paths, is absent from the image and is
//! empty is left out of both (and [`strip_runtime_made`] drops it from a build step's snapshot).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, Stat};

use super::tree::{TreeWriter, is_opaque, is_whiteout, lstat_at, open_dir_at, sorted_names};
use crate::error::{IoContext, Result};

/// Mount points the runtime creates when the image lacks them (Docker's init layer), deepest
/// first so [`strip_runtime_made`] empties a directory before it looks at it.
const INIT_PATHS: [&str; 12] = [
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/dev/console",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/proc",
    "/sys",
    "/dev",
    "/etc",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modify,
    Add,
    Delete,
}

impl ChangeKind {
    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modify => 'C',
            ChangeKind::Add => 'A',
            ChangeKind::Delete => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute path inside the container.
    pub path: String,
}

/// The image side of a container: its snapshot directories, bottom first.
struct Lowers<'a>(&'a [PathBuf]);

impl Lowers<'_> {
    /// The entry at `path` (absolute, inside the container) as the image has it, following
    /// whiteouts and opaque directories from the top layer down.
    fn lookup(&self, path: &str) -> Option<Stat> {
        let rel = path.trim_start_matches('/');
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        for layer in self.0.iter().rev() {
            let mut opaque_above = false;
            let mut p = layer.clone();
            for (i, c) in comps.iter().enumerate() {
                p.push(c);
                // Missing here: the layers below may have it.
                let Ok(st) = rustix::fs::lstat(&p) else {
                    break;
                };
                if is_whiteout(&st) {
                    return None;
                }
                if i + 1 == comps.len() {
                    return Some(st);
                }
                // A file here hides whatever the layers below have under that name.
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    return None;
                }
                if opaque_dir(&p) {
                    opaque_above = true;
                }
            }
            // A directory made opaque in this layer hides what the layers below have.
            if opaque_above {
                return None;
            }
        }
        None
    }
}

fn opaque_dir(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(p, "trusted.overlay.opaque", &mut buf), Ok(1) if buf[0] == b'y')
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Go's `sameFsTime`: equal, or equal seconds where one side has no sub-second part.
fn same_time(a: &Stat, b: &Stat) -> bool {
    a.st_mtime == b.st_mtime
        && (a.st_mtime_nsec == b.st_mtime_nsec || a.st_mtime_nsec == 0 || b.st_mtime_nsec == 0)
}

fn join(parent: &str, name: &OsStr) -> String {
    let n = String::from_utf8_lossy(name.as_bytes());
    if parent == "/" {
        format!("/{n}")
    } else {
        format!("{parent}/{n}")
    }
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// What a walk of the upper directory found.
struct Walk<'a> {
    lowers: Lowers<'a>,
    changes: Vec<Change>,
    changed_dirs: HashSet<String>,
    /// Runtime-made entries left out of diff and commit.
    skipped: HashSet<String>,
}

impl Walk<'_> {
    /// An entry the runtime made: an init path absent from the image, empty (a directory
    /// holding only such entries counts as empty).
    fn runtime_made(&self, dir: BorrowedFd<'_>, name: &OsStr, path: &str, st: &Stat) -> bool {
        if !INIT_PATHS.contains(&path) || self.lowers.lookup(path).is_some() {
            return false;
        }
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => st.st_size == 0,
            FileType::Directory => {
                let Ok(sub) = open_dir_at(dir, name) else {
                    return false;
                };
                let Ok(names) = sorted_names(sub.as_fd()) else {
                    return false;
                };
                names.iter().all(|n| {
                    let p = join(path, n);
                    lstat_at(sub.as_fd(), n)
                        .map(|s| self.runtime_made(sub.as_fd(), n, &p, &s))
                        .unwrap_or(false)
                })
            }
            _ => false,
        }
    }

    fn walk(&mut self, dir: BorrowedFd<'_>, path: &str) -> io::Result<()> {
        for name in sorted_names(dir)? {
            let p = join(path, &name);
            let st = match lstat_at(dir, &name) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if self.runtime_made(dir, &name, &p, &st) {
                self.skipped.insert(p);
                continue;
            }
            let sub: Option<OwnedFd> = if is_dir(&st) {
                Some(open_dir_at(dir, &name)?)
            } else {
                None
            };
            let lower = self.lowers.lookup(&p);
            let deleted = is_whiteout(&st)
                || sub.as_ref().is_some_and(|d| {
                    is_opaque(d.as_fd()) && lower.as_ref().is_some_and(|l| !is_whiteout(l))
                });
            let mut record = true;
            let kind = if deleted {
                ChangeKind::Delete
            } else if let Some(l) = &lower {
                // A directory that only holds changes is not itself changed.
                if is_dir(l)
                    && is_dir(&st)
                    && ((l.st_size == st.st_size && l.st_mode == st.st_mode && same_time(l, &st))
                        || self.holds_runtime_made(sub.as_ref().map(|d| d.as_fd()), &p))
                {
                    record = false;
                }
                ChangeKind::Modify
            } else {
                ChangeKind::Add
            };
            if record {
                if is_dir(&st) {
                    self.changed_dirs.insert(p.clone());
                }
                if kind != ChangeKind::Modify {
                    let parent = parent_of(&p).to_string();
                    if parent != "/" && !self.changed_dirs.contains(&parent) {
                        self.changes.push(Change {
                            kind: ChangeKind::Modify,
                            path: parent.clone(),
                        });
                        self.changed_dirs.insert(parent);
                    }
                }
                self.changes.push(Change {
                    kind,
                    path: p.clone(),
                });
            }
            if let Some(d) = sub {
                self.walk(d.as_fd(), &p)?;
            }
        }
        Ok(())
    }

    /// Whether the runtime created something in this directory (which changed its times).
    fn holds_runtime_made(&self, dir: Option<BorrowedFd<'_>>, path: &str) -> bool {
        let Some(dir) = dir else { return false };
        INIT_PATHS
            .iter()
            .filter(|i| parent_of(i) == path && **i != path)
            .any(|i| {
                let name = OsStr::new(&i[i.rfind('/').map_or(0, |x| x + 1)..]);
                lstat_at(dir, name)
                    .map(|st| self.runtime_made(dir, name, i, &st))
                    .unwrap_or(false)
            })
    }
}

fn open_upper(upper: &Path) -> Result<OwnedFd> {
    rustix::fs::open(upper, super::tree::DIR_FLAGS, Mode::empty())
        .map_err(io::Error::from)
        .ctx("opening", upper)
}

fn analyse<'a>(upper: &Path, lowers: &'a [PathBuf]) -> Result<Walk<'a>> {
    let fd = open_upper(upper)?;
    let mut w = Walk {
        lowers: Lowers(lowers),
        changes: Vec::new(),
        changed_dirs: HashSet::new(),
        skipped: HashSet::new(),
    };
    w.walk(fd.as_fd(), "/")
        .ctx("reading the changes in", upper)?;
    Ok(w)
}

/// `diff`: the changes in `upper` relative to the image `lowers` (bottom first), in the order
/// Docker lists them.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    Ok(analyse(upper, lowers)?.changes)
}

/// `commit`: `upper` as an uncompressed OCI layer tar written to `out`.
pub fn write_layer(upper: &Path, lowers: &[PathBuf], out: impl Write) -> Result<()> {
    let skipped = analyse(upper, lowers)?.skipped;
    let fd = open_upper(upper)?;
    let mut tw = TreeWriter::new(out);
    layer_dir(&mut tw, fd.as_fd(), "/", b"", &skipped).ctx("archiving the changes in", upper)?;
    tw.finish().ctx("archiving the changes in", upper)?;
    Ok(())
}

fn layer_dir<W: Write>(
    tw: &mut TreeWriter<W>,
    dir: BorrowedFd<'_>,
    path: &str,
    prefix: &[u8],
    skipped: &HashSet<String>,
) -> io::Result<()> {
    for name in sorted_names(dir)? {
        let p = join(path, &name);
        if skipped.contains(&p) {
            continue;
        }
        let st = match lstat_at(dir, &name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if is_whiteout(&st) {
            let mut wh = prefix.to_vec();
            wh.extend_from_slice(b".wh.");
            wh.extend_from_slice(name.as_bytes());
            tw.append_marker(&st, OsStr::from_bytes(&wh))?;
            continue;
        }
        let mut rel = prefix.to_vec();
        rel.extend_from_slice(name.as_bytes());
        tw.append(dir, &name, &st, OsStr::from_bytes(&rel))?;
        if is_dir(&st) {
            let sub = open_dir_at(dir, &name)?;
            rel.push(b'/');
            if is_opaque(sub.as_fd()) {
                let mut opq = rel.clone();
                opq.extend_from_slice(b".wh..wh..opq");
                tw.append_marker(&st, OsStr::from_bytes(&opq))?;
            }
            layer_dir(tw, sub.as_fd(), &p, &rel, skipped)?;
        }
    }
    Ok(())
}

/// Removes what the runtime made in `upper` (empty, absent from every lower), deepest first, so
/// a build step's upper directory, kept as the step's snapshot, matches its layer tar.
pub fn strip_runtime_made(upper: &Path, lowers: &[PathBuf]) {
    for p in INIT_PATHS {
        let rel = p.trim_start_matches('/');
        let host = upper.join(rel);
        let Ok(md) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if lowers
            .iter()
            .any(|l| l.join(rel).symlink_metadata().is_ok())
        {
            continue;
        }
        if md.is_file() && md.len() == 0 {
            let _ = std::fs::remove_file(&host);
        } else if md.is_dir() && std::fs::read_dir(&host).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(&host);
        }
    }
}
