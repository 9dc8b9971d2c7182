//! The layer root as a chroot: directories are opened by walking from the root's fd, symlinks
//! met on the way are resolved as if the root were `/` (`..` stops at the root, absolute targets
//! restart from it), and nothing is ever followed out of it. Missing directories are created
//! (0755) when asked. Removal of existing entries (for replacement) lives here as well, because it
//! is the one thing that can invalidate what was resolved before.
//!
//! Fast path: one `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` of the whole parent path, which
//! the kernel guarantees cannot leave the root or cross a symlink; anything unusual (missing
//! component, a symlink, no `openat2` under a seccomp filter) falls back to the component walk.
//! A few recently used parents stay open, since tars list a directory's entries together.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, Dir, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::dir_fd::DirFd;
use super::meta::Defaults;

/// Linux's own limit on symlinks followed in one resolution.
const MAX_SYMLINKS: u32 = 40;
/// How many parent directories stay open.
const CACHE_SIZE: usize = 16;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Why a directory could not be resolved.
#[derive(Debug)]
pub(super) enum ResolveError {
    /// A component does not exist (only when not creating).
    Missing,
    /// This component (path inside the root, symlinks resolved) is neither a directory nor a
    /// symlink to one.
    NotDirectory(Vec<u8>),
    /// More than [`MAX_SYMLINKS`] symlinks.
    Loop,
    /// The kernel refused something.
    Io(&'static str, io::Error),
}

pub(super) struct Scope {
    root: Rc<DirFd>,
    openat2: bool,
    /// Lexical directory path -> open directory, most recently used last.
    cache: Vec<(Vec<u8>, Rc<DirFd>)>,
}

impl Scope {
    pub(super) fn open(dest: &Path) -> io::Result<Self> {
        let root = rustix::fs::open(
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Scope {
            root: Rc::new(DirFd::stat(root)?),
            openat2: true,
            cache: Vec::with_capacity(CACHE_SIZE + 1),
        })
    }

    /// Always walk component by component (as on kernels without `openat2`).
    pub(super) fn disable_openat2(&mut self) {
        self.openat2 = false;
    }

    pub(super) fn root(&self) -> Rc<DirFd> {
        self.root.clone()
    }

    /// Opens the directory at `lexical` (a cleaned path, no `..`), resolved inside the root.
    pub(super) fn dir(
        &mut self,
        lexical: &[u8],
        create: bool,
        defaults: &Defaults,
    ) -> Result<Rc<DirFd>, ResolveError> {
        if lexical.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some(i) = self.cache.iter().rposition(|(p, _)| p == lexical) {
            let hit = self.cache.remove(i);
            let fd = hit.1.clone();
            self.cache.push(hit);
            return Ok(fd);
        }
        let fd = match self.open_beneath(lexical) {
            Some(fd) => fd,
            None => self.walk(lexical, create, defaults)?,
        };
        let dir = DirFd::stat(fd).map_err(|e| ResolveError::Io("stat directory", e))?;
        let dir = Rc::new(dir);
        self.remember_rc(lexical.to_vec(), dir.clone());
        Ok(dir)
    }

    /// Keeps a directory this module's caller just created or opened at `lexical` (its parent
    /// resolved by [`Scope::dir`], its own name opened with `O_NOFOLLOW`).
    pub(super) fn remember(&mut self, lexical: Vec<u8>, dir: DirFd) {
        if lexical.is_empty() {
            return;
        }
        if let Some(i) = self.cache.iter().position(|(p, _)| *p == lexical) {
            self.cache.remove(i);
        }
        self.remember_rc(lexical, Rc::new(dir));
    }

    fn remember_rc(&mut self, lexical: Vec<u8>, fd: Rc<DirFd>) {
        if self.cache.len() >= CACHE_SIZE {
            self.cache.remove(0);
        }
        self.cache.push((lexical, fd));
    }

    fn open_beneath(&mut self, lexical: &[u8]) -> Option<OwnedFd> {
        if !self.openat2 {
            return None;
        }
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(&*self.root, lexical, DIR_FLAGS, Mode::empty(), resolve) {
            Ok(fd) => Some(fd),
            // No openat2 (old kernel, or a seccomp profile that hides it): walk from now on.
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::TOOBIG) => {
                tracing::debug!(
                    "openat2 unavailable; resolving layer paths component by component"
                );
                self.openat2 = false;
                None
            }
            Err(_) => None,
        }
    }

    /// The component walk: `openat(O_NOFOLLOW)` one name at a time, symlinks expanded in scope.
    fn walk(
        &self,
        lexical: &[u8],
        create: bool,
        defaults: &Defaults,
    ) -> Result<OwnedFd, ResolveError> {
        // Components still to visit, next one last.
        let mut todo: Vec<Vec<u8>> = lexical
            .split(|b| *b == b'/')
            .rev()
            .map(<[u8]>::to_vec)
            .collect();
        // Where we are, as names below the root (symlinks resolved).
        let mut real: Vec<Vec<u8>> = Vec::new();
        let mut cur: Option<OwnedFd> = None; // None = the root
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            match comp.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    // The root is its own parent; below it, `..` of a directory we walked into
                    // is the directory we came from.
                    real.pop();
                    cur = match (&cur, real.is_empty()) {
                        (Some(fd), false) => Some(
                            rustix::fs::openat(fd, "..", DIR_FLAGS, Mode::empty())
                                .map_err(|e| ResolveError::Io("open directory", e.into()))?,
                        ),
                        _ => None,
                    };
                    continue;
                }
                _ => {}
            }
            let at: BorrowedFd<'_> = cur.as_ref().map_or(self.root.as_fd(), |fd| fd.as_fd());
            match rustix::fs::openat(at, comp.as_slice(), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => {
                    cur = Some(fd);
                    real.push(comp);
                }
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(at, comp.as_slice(), Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            let fd =
                                rustix::fs::openat(at, comp.as_slice(), DIR_FLAGS, Mode::empty())
                                    .map_err(|e| ResolveError::Io("open new directory", e.into()))?;
                            if defaults.needs_chmod(0o755) {
                                rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(
                                    |e| ResolveError::Io("chmod new directory", e.into()),
                                )?;
                            }
                            cur = Some(fd);
                            real.push(comp);
                        }
                        // Lost a race with ourselves? Look again.
                        Err(Errno::EXIST) => todo.push(comp),
                        Err(e) => return Err(ResolveError::Io("create directory", e.into())),
                    }
                }
                Err(Errno::NOENT) => return Err(ResolveError::Missing),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let target = match rustix::fs::readlinkat(at, comp.as_slice(), Vec::new()) {
                        Ok(t) => t.into_bytes(),
                        Err(Errno::INVAL) => {
                            real.push(comp);
                            return Err(ResolveError::NotDirectory(real.join(&b'/')));
                        }
                        Err(e) => return Err(ResolveError::Io("read symlink", e.into())),
                    };
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ResolveError::Loop);
                    }
                    if target.first() == Some(&b'/') {
                        cur = None;
                        real.clear();
                    }
                    todo.extend(target.split(|b| *b == b'/').rev().map(<[u8]>::to_vec));
                }
                Err(e) => return Err(ResolveError::Io("open directory", e.into())),
            }
        }
        match cur {
            Some(fd) => Ok(fd),
            None => rustix::fs::openat(self.root.as_fd(), ".", DIR_FLAGS, Mode::empty())
                .map_err(|e| ResolveError::Io("open layer root", e.into())),
        }
    }

    /// Removes whatever is at `name` in `parent` (a whole tree for a directory), never following
    /// a symlink. Everything resolved before may be stale afterwards, so the cache is dropped.
    pub(super) fn remove(&mut self, parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        self.cache.clear();
        match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR | Errno::PERM) => remove_tree(parent, name),
            Err(e) => Err(e.into()),
        }
    }
}

/// Deletes the directory `name` in `parent` and everything below it, holding one directory open
/// at a time whatever the depth (descending by name, climbing back through `..`).
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let mut path: Vec<Vec<u8>> = vec![name.to_vec()];
    let mut cur = rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())?;
    loop {
        let mut names = Vec::new();
        {
            let dir_fd = rustix::fs::openat(&cur, ".", DIR_FLAGS, Mode::empty())?;
            for item in Dir::new(dir_fd)? {
                let item = item?;
                let n = item.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
        }
        let mut descend = None;
        for n in names {
            match rustix::fs::unlinkat(&cur, n.as_slice(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR | Errno::PERM) => {
                    match rustix::fs::unlinkat(&cur, n.as_slice(), AtFlags::REMOVEDIR) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(Errno::NOTEMPTY | Errno::EXIST) => {
                            descend = Some(n);
                            break;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(n) = descend {
            cur = rustix::fs::openat(&cur, n.as_slice(), DIR_FLAGS, Mode::empty())?;
            path.push(n);
            continue;
        }
        // `cur` is empty now: climb and remove it.
        let done = path.pop().unwrap_or_default();
        if path.is_empty() {
            drop(cur);
            return rustix::fs::unlinkat(parent, done.as_slice(), AtFlags::REMOVEDIR)
                .map_err(Into::into);
        }
        cur = rustix::fs::openat(&cur, "..", DIR_FLAGS, Mode::empty())?;
        rustix::fs::unlinkat(&cur, done.as_slice(), AtFlags::REMOVEDIR)?;
    }
}
