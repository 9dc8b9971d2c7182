//! `cp` between a container and the host, with Docker's rules (`docker container cp`): the
//! source becomes a tar stream (or is one, from stdin), which is unpacked at the destination
//! after Docker's `PrepareArchiveCopy` decided where and under which name: into an existing
//! directory; over an existing file; or as a new file or directory named after the destination.
//! `SRC/.` copies a directory's contents. A stream goes to stdout, or comes from stdin into an
//! existing directory.
//!
//! Container paths are resolved inside the container (`fsview`), and every entry is created
//! relative to an open parent directory without following a symlink in its last component, so
//! nothing outside the container is read or written, whatever the container holds.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::container::{Container, Runner};
use crate::error::{Result, RunnerError};
use crate::fsview::{ContainerFs, Tree, View};
use berth_store::layers::tree::{DIR_FLAGS, TreeWriter, lstat_at, open_dir_at};

#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-a`: keep the uid/gid of the source.
    pub archive: bool,
    /// `-L`: follow a symlink named as the source.
    pub follow_link: bool,
}

fn msg(m: impl Into<String>) -> RunnerError {
    RunnerError::Conflict(m.into())
}

/// Docker's `ValidateOutputPathFileMode`: why an existing file of this type may not be replaced
/// by an output (a device or socket; a regular file, directory or pipe may), for `cp` here and
/// for `save`/`export`/`build -o` in the CLI.
pub fn irregular_kind(t: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() || t.is_block_device() {
        Some("got a device")
    } else if t.is_socket() {
        Some("got an irregular file")
    } else {
        None
    }
}

/// `cp CONTAINER:SRC DEST` (`dest` None: a tar stream to `out`).
pub fn copy_from_container(
    runner: &Runner,
    c: &Container,
    src: &str,
    dest: Option<&Path>,
    out: &mut dyn Write,
    opts: CopyOptions,
) -> Result<()> {
    let fs = ContainerFs::open(runner, c, View::Read)?;
    let tree = Tree {
        root: fs.root(),
        contained: true,
    };
    let not_found = || {
        msg(format!(
            "Could not find the file {src} in container {}",
            c.name()
        ))
    };
    let source = resolve_source(tree, &container_path(src), opts.follow_link, &not_found)?;
    match dest {
        None => {
            let mut tw = TreeWriter::new(out);
            source
                .write(&mut tw)
                .map_err(|e| RunnerError::io("archiving", src, e))?;
            tw.finish()
                .map_err(|e| RunnerError::io("writing", "the archive", e))?;
            Ok(())
        }
        Some(d) => {
            let owner = if opts.archive {
                Owner::FromArchive
            } else {
                Owner::Unchanged
            };
            // Docker refuses to replace a device, socket or other irregular file with the copy
            // (docker/cli#1514): `cp C:/f /dev/sda` must not turn the disk's node into a file.
            if let Ok(m) = std::fs::metadata(d)
                && let Some(why) = irregular_kind(m.file_type())
            {
                return Err(msg(format!(
                    "destination \"{}\" must be a directory or a regular file: {why}",
                    d.display()
                )));
            }
            let host = Tree::host();
            let ds = d.to_string_lossy().into_owned();
            transfer(&source, host, &ds, owner, &|p| {
                msg(format!("lstat {p}: no such file or directory"))
            })
        }
    }
}

/// `cp SRC CONTAINER:DEST` (`src` None: a tar stream from `input`).
pub fn copy_to_container(
    runner: &Runner,
    c: &Container,
    src: Option<&Path>,
    input: &mut dyn Read,
    dest: &str,
    opts: CopyOptions,
) -> Result<()> {
    if c.record.host_config.readonly_rootfs {
        return Err(msg("container rootfs is marked read-only"));
    }
    // The mount the destination falls in (the deepest one), as Docker checks it.
    let d = container_path(dest);
    let under = |m: &&crate::state::MountPoint| {
        let md = m.destination.trim_end_matches('/');
        d == md || d.starts_with(&format!("{md}/"))
    };
    if let Some(m) = c
        .record
        .mounts
        .iter()
        .filter(under)
        .max_by_key(|m| m.destination.len())
        && !m.rw
    {
        return Err(msg("mounted volume is marked read-only"));
    }
    let fs = ContainerFs::open(runner, c, View::Write)?;
    let tree = Tree {
        root: fs.root(),
        contained: true,
    };
    let owner = if opts.archive {
        Owner::FromArchive
    } else {
        Owner::Root
    };
    let dpath = container_path(dest);
    let missing = |p: &str| {
        msg(format!(
            "Could not find the file {} in container {}",
            if p.starts_with('/') {
                p.to_string()
            } else {
                format!("/{p}")
            },
            c.name()
        ))
    };
    match src {
        None => {
            let dir = tree.open(&dpath, OFlags::DIRECTORY | OFlags::RDONLY);
            let dir = match dir {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    return Err(missing(&dpath));
                }
                Err(_) => {
                    return Err(msg(format!(
                        "destination \"{}:{dest}\" must be a directory",
                        c.name()
                    )));
                }
            };
            let mut x = Extractor::new(tree, dir, &dpath, owner, None);
            x.run(input)?;
            Ok(())
        }
        Some(s) => {
            let host = Tree::host();
            let ss = s.to_string_lossy().into_owned();
            let not_found = || msg(format!("lstat {ss}: no such file or directory"));
            let source = resolve_source(host, &ss, opts.follow_link, &not_found)?;
            transfer(&source, tree, &dpath, owner, &missing)
        }
    }
}

/// A container path as given (`tmp/x` is `/tmp/x`).
fn container_path(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// The source of a copy, resolved (Docker's `CopyInfoSourcePath`).
struct Source {
    /// The directory holding the entry, or the directory itself for `DIR/.`.
    parent: OwnedFd,
    /// None: the contents of `parent` (`DIR/.`).
    entry: Option<(OsString, Stat)>,
    /// The name the entry has in the archive (a followed link keeps the link's name).
    base: OsString,
}

impl Source {
    fn is_dir(&self) -> bool {
        self.entry
            .as_ref()
            .is_none_or(|(_, st)| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
    }

    fn write<W: Write>(&self, tw: &mut TreeWriter<W>) -> io::Result<()> {
        match &self.entry {
            None => tw.append_tree(self.parent.as_fd(), b"", &mut |_, _| true),
            Some((name, st)) => {
                tw.append(self.parent.as_fd(), name, st, &self.base)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    let sub = open_dir_at(self.parent.as_fd(), name)?;
                    let mut prefix = self.base.as_bytes().to_vec();
                    prefix.push(b'/');
                    tw.append_tree(sub.as_fd(), &prefix, &mut |_, _| true)?;
                }
                Ok(())
            }
        }
    }
}

fn split(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some(("", b)) => ("/".into(), b.into()),
        Some((d, b)) => (d.into(), b.into()),
        None => (".".into(), path.into()),
    }
}

fn resolve_source(
    tree: Tree<'_>,
    path: &str,
    follow: bool,
    not_found: &dyn Fn() -> RunnerError,
) -> Result<Source> {
    let io_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            not_found()
        } else if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) {
            msg(format!("lstat {path}: not a directory"))
        } else {
            RunnerError::io("reading", path, e)
        }
    };
    let contents = path.ends_with("/.") || path == ".";
    let trimmed = path.trim_end_matches("/.").trim_end_matches('/');
    if contents || trimmed.is_empty() {
        let dir = tree
            .open(
                if trimmed.is_empty() { "/" } else { trimmed },
                OFlags::DIRECTORY | OFlags::RDONLY,
            )
            .map_err(io_err)?;
        return Ok(Source {
            parent: dir,
            entry: None,
            base: ".".into(),
        });
    }
    let (_, base) = split(trimmed);
    let mut current = trimmed.to_string();
    for _ in 0..40 {
        let (dir, name) = split(&current);
        let parent = tree
            .open(&dir, OFlags::DIRECTORY | OFlags::RDONLY)
            .map_err(io_err)?;
        let st = lstat_at(parent.as_fd(), OsStr::new(&name)).map_err(io_err)?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Symlink && follow {
            let target = rustix::fs::readlinkat(parent.as_fd(), name.as_str(), Vec::new())
                .map_err(|e| io_err(e.into()))?;
            let t = target.to_string_lossy().into_owned();
            current = if t.starts_with('/') {
                t
            } else {
                format!("{dir}/{t}")
            };
            continue;
        }
        if path.ends_with('/') && ft != FileType::Directory {
            return Err(msg(format!("lstat {path}: not a directory")));
        }
        return Ok(Source {
            parent,
            entry: Some((name.into(), st)),
            base: base.into(),
        });
    }
    Err(msg(format!("{path}: too many levels of symbolic links")))
}

/// Docker's `PrepareArchiveCopy` + extraction: copy `source` to `dest` in `tree`.
fn transfer(
    source: &Source,
    tree: Tree<'_>,
    dest: &str,
    owner: Owner,
    missing: &dyn Fn(&str) -> RunnerError,
) -> Result<()> {
    let asserts_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let trimmed = dest.trim_end_matches("/.").trim_end_matches('/');
    let open_err = |p: &str, e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            missing(p)
        } else {
            RunnerError::io("opening", p.to_string(), e)
        }
    };
    // The destination as it is: an existing directory, an existing file, or nothing.
    let existing_dir = if trimmed.is_empty() {
        Some(
            tree.open("/", OFlags::DIRECTORY | OFlags::RDONLY)
                .map_err(|e| open_err("/", e))?,
        )
    } else {
        tree.open(trimmed, OFlags::DIRECTORY | OFlags::RDONLY).ok()
    };
    if let Some(dir) = existing_dir {
        let mut x = Extractor::new(tree, dir, trimmed, owner, None);
        return pipe_into(source, &mut x);
    }
    let (dparent, dbase) = split(trimmed);
    let parent = tree
        .open(&dparent, OFlags::DIRECTORY | OFlags::RDONLY)
        .map_err(|e| open_err(&dparent, e))?;
    let exists = lstat_at(parent.as_fd(), OsStr::new(&dbase)).is_ok();
    if exists && source.is_dir() {
        return Err(msg("cannot copy directory"));
    }
    if !exists && asserts_dir && !source.is_dir() {
        return Err(msg(format!("no such directory: {dest}")));
    }
    if source.entry.is_none() {
        // `DIR/.` to a new name: the directory is created and the contents go in.
        rustix::fs::mkdirat(parent.as_fd(), dbase.as_str(), Mode::from_raw_mode(0o755))
            .map_err(|e| RunnerError::io("creating", dest.to_string(), e.into()))?;
        let dir = open_dir_at(parent.as_fd(), OsStr::new(&dbase))
            .map_err(|e| RunnerError::io("opening", dest.to_string(), e))?;
        let mut x = Extractor::new(tree, dir, trimmed, owner, None);
        return pipe_into(source, &mut x);
    }
    let rebase = Some((source.base.as_bytes().to_vec(), dbase.as_bytes().to_vec()));
    let mut x = Extractor::new(tree, parent, &dparent, owner, rebase);
    pipe_into(source, &mut x)
}

/// Stream `source` as a tar through a pipe into the extractor.
fn pipe_into(source: &Source, x: &mut Extractor<'_>) -> Result<()> {
    let (reader, writer) = io::pipe().map_err(|e| RunnerError::io("creating", "a pipe", e))?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || -> io::Result<()> {
            let mut tw = TreeWriter::new(io::BufWriter::with_capacity(1 << 20, writer));
            source.write(&mut tw)?;
            tw.finish()?.flush()
        });
        let mut reader = reader;
        let extracted = x.run(&mut reader);
        // Drain, so the producer never blocks on a reader that gave up.
        drop(reader);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("archiving thread panicked")));
        extracted?;
        produced.map_err(|e| RunnerError::io("reading", "the source", e))
    })
}

#[derive(Debug, Clone, Copy)]
enum Owner {
    /// `-a`: the archive's uid/gid.
    FromArchive,
    /// Into a container: its root user.
    Root,
    /// Onto the host: whoever runs berth.
    Unchanged,
}

/// Unpacks a tar into a directory of a tree.
struct Extractor<'a> {
    tree: Tree<'a>,
    dir: OwnedFd,
    /// The directory's path in the tree, to resolve parents (inside the container).
    dir_path: String,
    owner: Owner,
    /// The archive's top name and the one it gets here.
    rebase: Option<(Vec<u8>, Vec<u8>)>,
    dir_times: Vec<(OwnedFd, i64)>,
}

impl<'a> Extractor<'a> {
    fn new(
        tree: Tree<'a>,
        dir: OwnedFd,
        dir_path: &str,
        owner: Owner,
        rebase: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Self {
        Extractor {
            tree,
            dir,
            dir_path: if dir_path.is_empty() {
                "/".into()
            } else {
                dir_path.into()
            },
            owner,
            rebase,
            dir_times: Vec::new(),
        }
    }

    fn components(&self, raw: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    return Err(msg(format!(
                        "invalid archive entry {:?}: it leaves the destination",
                        String::from_utf8_lossy(raw)
                    )));
                }
                c => out.push(c.to_vec()),
            }
        }
        if let (Some((from, to)), Some(first)) = (&self.rebase, out.first_mut())
            && first == from
        {
            *first = to.clone();
        }
        Ok(out)
    }

    /// The directory for `comps` below ours, created (0755) where missing.
    fn parent_dir(&self, comps: &[Vec<u8>]) -> io::Result<OwnedFd> {
        let mut fd = rustix::fs::openat(self.dir.as_fd(), ".", DIR_FLAGS, Mode::empty())?;
        for (i, c) in comps.iter().enumerate() {
            let name = OsStr::from_bytes(c);
            match open_dir_at(fd.as_fd(), name) {
                Ok(d) => fd = d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    rustix::fs::mkdirat(fd.as_fd(), name, Mode::from_raw_mode(0o755))?;
                    fd = open_dir_at(fd.as_fd(), name)?;
                }
                // A symlink: resolve it the way the tree does (inside the container).
                Err(_) => {
                    let mut p = self.dir_path.as_bytes().to_vec();
                    for c in &comps[..=i] {
                        p.push(b'/');
                        p.extend_from_slice(c);
                    }
                    fd = self.tree.open(
                        &String::from_utf8_lossy(&p),
                        OFlags::DIRECTORY | OFlags::RDONLY,
                    )?;
                }
            }
        }
        Ok(fd)
    }

    fn run(&mut self, input: &mut dyn Read) -> Result<()> {
        let mut ar = tar::Archive::new(input);
        let bad = |e: io::Error| msg(format!("reading the archive: {e}"));
        for entry in ar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path_bytes().into_owned();
            let comps = self.components(&raw)?;
            let Some((name, parents)) = comps.split_last() else {
                continue;
            };
            let shown = berth_store::extract::shown_name(&raw);
            let fail = |e: io::Error| RunnerError::io("extracting", shown.clone(), e);
            let parent = self.parent_dir(parents).map_err(fail)?;
            self.entry(&mut entry, parent.as_fd(), OsStr::from_bytes(name), &shown)?;
        }
        // Directory times last: creating their entries changed them.
        for (fd, mtime) in self.dir_times.drain(..).rev() {
            let t = Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            };
            let _ = rustix::fs::futimens(
                &fd,
                &Timestamps {
                    last_access: t,
                    last_modification: t,
                },
            );
        }
        Ok(())
    }

    fn entry(
        &mut self,
        e: &mut tar::Entry<'_, &mut dyn Read>,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        shown: &str,
    ) -> Result<()> {
        let fail = |e: io::Error| RunnerError::io("extracting", shown.to_string(), e);
        let h = e.header().clone();
        let kind = h.entry_type();
        let mode = Mode::from_raw_mode(h.mode().unwrap_or(0o644) & 0o7777);
        let mtime = h.mtime().unwrap_or(0) as i64;
        let existing = lstat_at(parent, name).ok();
        let existing_dir = existing
            .as_ref()
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if kind == tar::EntryType::Directory {
            if existing.is_some() && !existing_dir {
                return Err(msg(format!(
                    "cannot overwrite non-directory \"{shown}\" with directory \"{shown}\""
                )));
            }
            if !existing_dir {
                rustix::fs::mkdirat(parent, name, mode).map_err(|e| fail(e.into()))?;
            }
            let fd = open_dir_at(parent, name).map_err(fail)?;
            self.set_owner(parent, name, &h);
            let _ = rustix::fs::fchmod(&fd, mode);
            self.dir_times.push((fd, mtime));
            return Ok(());
        }
        if existing_dir {
            return Err(msg(format!(
                "cannot overwrite directory \"{shown}\" with non-directory \"{shown}\""
            )));
        }
        if existing.is_some() {
            rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(|e| fail(e.into()))?;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| fail(e.into()))?;
                let mut f = File::from(fd);
                io::copy(e, &mut f).map_err(fail)?;
                self.set_owner(parent, name, &h);
                // After chown, which clears set-id bits.
                rustix::fs::fchmod(&f, mode).map_err(|e| fail(e.into()))?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| msg(format!("{shown}: symlink without a target")))?
                    .into_owned();
                rustix::fs::symlinkat(OsStr::from_bytes(&target), parent, name)
                    .map_err(|e| fail(e.into()))?;
                self.set_owner(parent, name, &h);
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| msg(format!("{shown}: hard link without a target")))?
                    .into_owned();
                let comps = self.components(&target)?;
                let Some((tname, tparents)) = comps.split_last() else {
                    return Err(msg(format!("{shown}: invalid hard link target")));
                };
                let tdir = self.parent_dir(tparents).map_err(fail)?;
                rustix::fs::linkat(
                    tdir.as_fd(),
                    OsStr::from_bytes(tname),
                    parent,
                    name,
                    AtFlags::empty(),
                )
                .map_err(|e| fail(e.into()))?;
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                rustix::fs::mknodat(parent, name, ft, mode, dev).map_err(|e| fail(e.into()))?;
                self.set_owner(parent, name, &h);
                let _ = rustix::fs::chmodat(parent, name, mode, AtFlags::SYMLINK_NOFOLLOW);
            }
            // PAX and GNU metadata members are consumed by the reader; others are skipped.
            _ => return Ok(()),
        }
        let t = Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        let _ = rustix::fs::utimensat(
            parent,
            name,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        );
        Ok(())
    }

    fn set_owner(&self, parent: BorrowedFd<'_>, name: &OsStr, h: &tar::Header) {
        let ids = match self.owner {
            Owner::FromArchive => Some((h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)),
            Owner::Root => Some((0, 0)),
            Owner::Unchanged => None,
        };
        if let Some((u, g)) = ids {
            let _ = rustix::fs::chownat(
                parent,
                name,
                Some(rustix::fs::Uid::from_raw(u)),
                Some(rustix::fs::Gid::from_raw(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
        }
    }
}
