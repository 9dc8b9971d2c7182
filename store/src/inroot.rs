//! Paths inside a root filesystem (an image's rootfs, a build step's root, a build context): the
//! one resolver the builder and the runner use to turn a path as the container sees it into a
//! host path that stays inside the root, whatever symlinks the root holds.
//!
//! Symlinks are interpreted as the container would, with the root as `/` (an absolute target
//! restarts at the root, `..` stops there), by walking one component at a time from an open
//! descriptor of the root with `O_NOFOLLOW`, so the kernel never follows a link for us. After
//! [`MAX_SYMLINKS`] links the resolution fails with `ELOOP`, as the kernel's own lookup (and
//! `openat2(RESOLVE_IN_ROOT)`) does: stopping early and using the path as it stands would leave
//! an unexpanded symlink in it, which every later path operation follows onto the host.
//!
//! Components that do not exist are kept as they are (the caller is about to create them).

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

/// Linux's own limit on symlinks followed in one lookup (`MAXSYMLINKS`), which is also what a
/// process inside the container meets.
pub const MAX_SYMLINKS: u32 = 40;

/// Resolves `path` (absolute in the root, or relative to it: the same thing here) to a host path
/// below `root`. Symlinks of existing components are followed inside the root; the last
/// component is followed too when `follow_last`. Fails with `ELOOP` (and the path in the message)
/// after [`MAX_SYMLINKS`] links, and when `root` cannot be opened.
pub fn resolve(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut pending: Vec<Vec<u8>> = components(path.as_bytes()).rev().collect();
    // The resolved path so far (no symlinks in it), each with its open descriptor while it
    // exists; below a missing component nothing exists.
    let mut cur: Vec<(Vec<u8>, Option<OwnedFd>)> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == b".." {
            cur.pop();
            continue;
        }
        let is_last = pending.is_empty();
        let parent = match cur.last() {
            None => Some(&root_fd),
            Some((_, fd)) => fd.as_ref(),
        };
        let Some(parent) = parent else {
            cur.push((c, None));
            continue;
        };
        let fd = match rustix::fs::openat(
            parent,
            OsStr::from_bytes(&c),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Missing (or under a non-directory): kept as named, to be created.
            Err(_) => {
                cur.push((c, None));
                continue;
            }
        };
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        if kind != FileType::Symlink || (is_last && !follow_last) {
            cur.push((c, Some(fd)));
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(too_many_links(path));
        }
        // An O_PATH descriptor of the link itself: an empty name reads that link.
        let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
        let target = target.as_bytes();
        if target.starts_with(b"/") {
            cur.clear();
        }
        pending.extend(components(target).rev());
    }
    let mut out = root.to_path_buf();
    out.extend(cur.iter().map(|(c, _)| OsStr::from_bytes(c)));
    Ok(out)
}

/// The error for a chain of more than [`MAX_SYMLINKS`] links: `ELOOP`'s own wording, and where.
fn too_many_links(path: &str) -> io::Error {
    io::Error::other(format!(
        "{path}: too many levels of symbolic links (more than {MAX_SYMLINKS} followed inside \
         the root filesystem: a loop, or a chain longer than Linux follows)"
    ))
}

/// The names of a path, without empty ones and `.`.
fn components(p: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    p.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../..", root.join("real/up")).unwrap();
        symlink("/real/sub", root.join("etc")).unwrap();
        symlink("sub", root.join("real/rel")).unwrap();
        let r = |p: &str, f: bool| resolve(root, p, f).unwrap();
        assert_eq!(r("/abs/sub", true), root.join("real/sub"));
        assert_eq!(r("/real/up/x", true), root.join("x"));
        assert_eq!(r("/etc/passwd", true), root.join("real/sub/passwd"));
        assert_eq!(r("/../../new/dir", true), root.join("new/dir"));
        assert_eq!(r("real/rel/./f", true), root.join("real/sub/f"));
        assert_eq!(r("/abs", false), root.join("abs"));
        assert_eq!(r("/missing/../abs/sub", true), root.join("real/sub"));
        assert_eq!(r("/", true), root.to_path_buf());
    }

    #[test]
    fn a_long_chain_fails_instead_of_leaving_a_link_in_the_path() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        // /l0 -> /l1 -> ... -> /l40 -> /target: 41 links.
        for i in 0..=MAX_SYMLINKS {
            symlink(format!("/l{}", i + 1), root.join(format!("l{i}"))).unwrap();
        }
        symlink("/target", root.join(format!("l{}", MAX_SYMLINKS + 1))).unwrap();
        let e = resolve(&root, "/l0/x", true).unwrap_err();
        assert!(
            e.to_string().contains("too many levels of symbolic links"),
            "{e}"
        );
        // Exactly the limit is fine.
        let ok = resolve(&root, &format!("/l{}/x", 2), true).unwrap();
        assert_eq!(ok, root.join("target/x"));
        symlink("loop", root.join("loop")).unwrap();
        let e = resolve(&root, "/loop", true).unwrap_err();
        assert!(
            e.to_string().contains("too many levels of symbolic links"),
            "{e}"
        );
        assert_eq!(resolve(&root, "/loop", false).unwrap(), root.join("loop"));
    }
}
