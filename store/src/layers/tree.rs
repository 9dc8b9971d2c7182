//! Tar streams of directory trees that may belong to a container: everything is read through
//! file descriptors, each child opened relative to its parent with `O_NOFOLLOW`, so a symlink
//! (or a directory swapped for one while we walk) never leads outside the tree. Used by `cp`
//! (the source side), `export` (the merged root filesystem), `commit` and build steps (an upper
//! directory, with overlay whiteouts turned into OCI ones).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

pub const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The names in a directory (without `.` and `..`), sorted bytewise as Go's `filepath.Walk`.
pub fn sorted_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// An overlay whiteout: a character device 0:0.
pub fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether an (open) overlay upper directory is opaque.
pub fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 4];
    matches!(
        rustix::fs::fgetxattr(dir, "trusted.overlay.opaque", &mut buf),
        Ok(1) if buf[0] == b'y'
    )
}

/// How entries become tar members.
pub struct TreeWriter<W: Write> {
    builder: tar::Builder<W>,
    /// First name written for each multiply-linked inode, so later ones become hard links.
    links: HashMap<(u64, u64), OsString>,
}

impl<W: Write> TreeWriter<W> {
    pub fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        TreeWriter {
            builder,
            links: HashMap::new(),
        }
    }

    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    /// Write one member named `name` for the entry `entry` of directory `dir`, whose lstat is
    /// `st`. A directory is written without its contents.
    pub fn append(
        &mut self,
        dir: BorrowedFd<'_>,
        entry: &OsStr,
        st: &Stat,
        name: &OsStr,
    ) -> io::Result<()> {
        let ft = FileType::from_raw_mode(st.st_mode);
        let mut h = header(st);
        match ft {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                let mut n = name.as_bytes().to_vec();
                if !n.ends_with(b"/") {
                    n.push(b'/');
                }
                self.builder
                    .append_data(&mut h, OsStr::from_bytes(&n), io::empty())
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, entry, Vec::new())?;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                self.builder
                    .append_link(&mut h, name, OsStr::from_bytes(target.as_bytes()))
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        h.set_size(0);
                        let first = first.clone();
                        return self.builder.append_link(&mut h, name, &first);
                    }
                    self.links.insert(key, name.to_os_string());
                }
                let fd = rustix::fs::openat(
                    dir,
                    entry,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let mut cap = vec![0u8; 256];
                if let Ok(n) = rustix::fs::fgetxattr(&fd, "security.capability", &mut cap[..]) {
                    cap.truncate(n);
                    self.builder.append_pax_extensions([(
                        "SCHILY.xattr.security.capability",
                        cap.as_slice(),
                    )])?;
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                // The size is fixed in the header: a file that grows meanwhile is cut, one that
                // shrinks is an error rather than a corrupt archive.
                let file = File::from(fd);
                self.builder
                    .append_data(&mut h, name, io::Read::take(file, st.st_size as u64))
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                h.set_entry_type(match ft {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                h.set_size(0);
                let rdev = st.st_rdev;
                h.set_device_major(rustix::fs::major(rdev))?;
                h.set_device_minor(rustix::fs::minor(rdev))?;
                self.builder.append_data(&mut h, name, io::empty())
            }
            // Sockets and unknown types are not archived (as Go's archive/tar).
            _ => Ok(()),
        }
    }

    /// An empty regular file named `name` with `st`'s owner and times (OCI whiteouts).
    pub fn append_marker(&mut self, st: &Stat, name: &OsStr) -> io::Result<()> {
        let mut h = header(st);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        self.builder.append_data(&mut h, name, io::empty())
    }

    /// Every entry below the open directory `dir`, depth first in sorted order, each named
    /// `prefix` + its relative path. `keep(relative path, stat)` filters (a directory left out
    /// is not descended into).
    pub fn append_tree(
        &mut self,
        dir: BorrowedFd<'_>,
        prefix: &[u8],
        keep: &mut dyn FnMut(&[u8], &Stat) -> bool,
    ) -> io::Result<()> {
        for n in sorted_names(dir)? {
            let st = match lstat_at(dir, &n) {
                Ok(st) => st,
                // Removed while we walk (a running container).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut name = prefix.to_vec();
            name.extend_from_slice(n.as_bytes());
            if !keep(&name, &st) {
                continue;
            }
            self.append(dir, &n, &st, OsStr::from_bytes(&name))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = open_dir_at(dir, &n)?;
                name.push(b'/');
                self.append_tree(sub.as_fd(), &name, keep)?;
            }
        }
        Ok(())
    }
}

fn header(st: &Stat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h
}
