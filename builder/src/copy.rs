//! COPY and ADD into a step's mounted root filesystem, with Docker's rules: a directory source
//! copies its contents; a file goes to `dest/name` when `dest` ends in `/` or is a directory,
//! else to `dest`; several sources need a directory destination ending in `/`; parents are
//! created (root-owned, 0755); copies belong to root unless `--chown`; `--chmod` sets every
//! copied entry's mode; ADD unpacks a local tar archive (plain, gzip) into the destination.
//! Heredoc bodies and downloaded files are single named files placed by the same rules.
//! Paths in the root are resolved without ever leaving it, whatever symlinks it holds.

use std::fs;
use std::io::{self, Read, Seek};
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Component, Path, PathBuf};

use crate::context::{Selected, SourceTree};

/// Resolves `path` (absolute in the container) to a host path inside `root`, following
/// symlinks of existing components as the container would, but never above `root`. The last
/// component is followed too when `follow_last`.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> PathBuf {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .rev()
        .map(str::to_string)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&cur);
        candidate.push(&c);
        let is_last = pending.is_empty();
        if (!is_last || follow_last)
            && hops < 40
            && let Ok(target) = fs::read_link(&candidate)
        {
            hops += 1;
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                cur.clear();
            }
            pending.extend(
                t.split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .rev()
                    .map(str::to_string),
            );
            continue;
        }
        cur.push(c);
    }
    let mut out = root.to_path_buf();
    out.extend(&cur);
    out
}

/// Owner for copied files: `--chown` resolved against the root's /etc/passwd and /etc/group.
pub fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = fs::read_to_string(resolve_in_root(root, file, true)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| {
                let id = f[2].parse().unwrap_or(0);
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                (id, gid)
            })
        })
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(u) => (u, lookup("/etc/passwd", user).map(|p| p.1).unwrap_or(u)),
        Err(_) => lookup("/etc/passwd", user).ok_or_else(|| {
            format!("unable to find user {user}: no matching entries in passwd file")
        })?,
    };
    let gid = match group {
        None => {
            if user.parse::<u32>().is_ok() {
                uid
            } else {
                primary
            }
        }
        Some(g) => match g.parse::<u32>() {
            Ok(g) => g,
            Err(_) => lookup("/etc/group", g).map(|p| p.0).ok_or_else(|| {
                format!("unable to find group {g}: no matching entries in group file")
            })?,
        },
    };
    Ok((uid, gid))
}

/// Parses `--chmod` (octal, up to 07777).
pub fn parse_chmod(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            format!(
                "invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777"
            )
        })
}

/// How copied entries are owned and moded.
#[derive(Debug, Clone, Copy)]
pub struct CopyMode {
    pub owner: (u32, u32),
    pub chmod: Option<u32>,
    /// ADD: unpack local tar archives.
    pub unpack: bool,
}

/// Creates the directory `host` (inside a root) and its missing parents, root-owned 0755.
pub fn mkdir_all(host: &Path, owner: (u32, u32)) -> io::Result<()> {
    if host.is_dir() {
        return Ok(());
    }
    if let Some(parent) = host.parent() {
        mkdir_all(parent, (0, 0))?;
    }
    match fs::create_dir(host) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && host.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    fs::set_permissions(host, fs::Permissions::from_mode(0o755))?;
    lchown(host, Some(owner.0), Some(owner.1))
}

/// Copies the `selected` sources of `tree` to `dest` (absolute in the container) in `rootfs`.
pub fn copy_into(
    tree: &SourceTree,
    selected: &[Selected],
    rootfs: &Path,
    dest: &str,
    mode: CopyMode,
) -> io::Result<()> {
    let dest_dir_syntax = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    for sel in selected {
        let src = tree.root.join(&sel.rel);
        if sel.is_dir {
            let target = resolve_in_root(rootfs, dest, true);
            mkdir_all(&target, (0, 0))?;
            for rel in tree.walk(&sel.rel)? {
                let sub = rel[sel.rel.len()..].trim_start_matches('/');
                let dst = target.join(sub);
                // An excluded directory's re-included child (`!logs/keep`) still needs it.
                if let Some(parent) = dst.parent() {
                    mkdir_all(parent, (0, 0))?;
                }
                copy_entry(&tree.root.join(&rel), &dst, mode)?;
            }
            continue;
        }
        let resolved = resolve_in_root(rootfs, dest, true);
        let target = if dest_dir_syntax || resolved.is_dir() {
            let name = Path::new(&sel.rel)
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            mkdir_all(&resolved, (0, 0))?;
            resolved.join(name)
        } else {
            let parent = resolved.parent().unwrap_or(rootfs).to_path_buf();
            mkdir_all(&parent, (0, 0))?;
            resolve_in_root(rootfs, dest, false)
        };
        if mode.unpack && is_archive(&src)? {
            // An archive unpacks into the destination, which is a directory then.
            mkdir_all(&resolved, (0, 0))?;
            unpack(&src, &resolved)?;
            continue;
        }
        // A symlink given as a source is followed.
        let md = fs::metadata(&src)?;
        copy_file(&src, &target, &md, mode)?;
    }
    Ok(())
}

/// Where a single file named `name` goes for `dest`: `dest/name` when `dest` ends in `/` (or
/// `/.`) or is a directory, else `dest` itself. Parents are created.
pub fn file_target(rootfs: &Path, dest: &str, name: &str) -> io::Result<PathBuf> {
    let dest_dir_syntax = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let resolved = resolve_in_root(rootfs, dest, true);
    if dest_dir_syntax || resolved.is_dir() {
        mkdir_all(&resolved, (0, 0))?;
        return Ok(resolved.join(name));
    }
    let parent = resolved.parent().unwrap_or(rootfs).to_path_buf();
    mkdir_all(&parent, (0, 0))?;
    Ok(resolve_in_root(rootfs, dest, false))
}

/// Writes a file named `name` with `content` (read to its end) to `dest`, with `mode` unless
/// `--chmod`, the copy's owner and `mtime` when given.
pub fn write_named(
    rootfs: &Path,
    dest: &str,
    name: &str,
    content: &mut dyn Read,
    mode: u32,
    mtime: Option<std::time::SystemTime>,
    how: CopyMode,
) -> io::Result<()> {
    let target = file_target(rootfs, dest, name)?;
    remove_existing(&target)?;
    let mut to = fs::File::create(&target)?;
    io::copy(content, &mut to)?;
    to.set_permissions(fs::Permissions::from_mode(how.chmod.unwrap_or(mode)))?;
    if let Some(t) = mtime {
        to.set_modified(t)?;
    }
    drop(to);
    lchown(&target, Some(how.owner.0), Some(how.owner.1))
}

/// ADD --unpack of a downloaded archive: unpacked into `dest` (a directory then) when it is a
/// tar (plain or gzip); `false` when it is not an archive.
pub fn unpack_into(rootfs: &Path, src: &Path, dest: &str) -> io::Result<bool> {
    if !is_archive(src)? {
        return Ok(false);
    }
    let target = resolve_in_root(rootfs, dest, true);
    mkdir_all(&target, (0, 0))?;
    unpack(src, &target)?;
    Ok(true)
}

fn copy_entry(src: &Path, target: &Path, mode: CopyMode) -> io::Result<()> {
    let md = fs::symlink_metadata(src)?;
    let ft = md.file_type();
    if ft.is_dir() {
        if !target.is_dir() {
            let _ = fs::remove_file(target);
            fs::create_dir(target)?;
        }
        let m = mode.chmod.unwrap_or(md.mode() & 0o7777);
        fs::set_permissions(target, fs::Permissions::from_mode(m))?;
        lchown(target, Some(mode.owner.0), Some(mode.owner.1))?;
    } else if ft.is_symlink() {
        remove_existing(target)?;
        symlink(fs::read_link(src)?, target)?;
        lchown(target, Some(mode.owner.0), Some(mode.owner.1))?;
    } else if ft.is_file() {
        copy_file(src, target, &md, mode)?;
    }
    // Sockets, fifos and devices in a context are skipped, as BuildKit's fsutil does.
    Ok(())
}

fn remove_existing(target: &Path) -> io::Result<()> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(target),
        Ok(_) => fs::remove_file(target),
        Err(_) => Ok(()),
    }
}

fn copy_file(src: &Path, target: &Path, md: &fs::Metadata, mode: CopyMode) -> io::Result<()> {
    remove_existing(target)?;
    let mut from = fs::File::open(src)?;
    let mut to = fs::File::create(target)?;
    io::copy(&mut from, &mut to)?;
    let m = mode.chmod.unwrap_or(md.mode() & 0o7777);
    to.set_permissions(fs::Permissions::from_mode(m))?;
    if let Ok(t) = md.modified() {
        to.set_modified(t)?;
    }
    drop(to);
    lchown(target, Some(mode.owner.0), Some(mode.owner.1))
}

fn is_archive(p: &Path) -> io::Result<bool> {
    let mut f = fs::File::open(p)?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return Ok(true);
    }
    Ok(n >= 262 && &head[257..262] == b"ustar")
}

fn unpack(src: &Path, dir: &Path) -> io::Result<()> {
    let mut f = fs::File::open(src)?;
    let mut magic = [0u8; 2];
    let gz = f.read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
    f.rewind()?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        // Never outside `dir`: tar's unpack_in refuses `..` and absolute paths.
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            continue;
        }
        entry.unpack_in(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolving_never_leaves_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("real")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../..", root.join("up")).unwrap();
        assert_eq!(resolve_in_root(root, "/abs/x", true), root.join("real/x"));
        assert_eq!(resolve_in_root(root, "/up/etc", true), root.join("etc"));
        assert_eq!(resolve_in_root(root, "/abs", false), root.join("abs"));
    }

    #[test]
    fn chown_names_come_from_the_root() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "app:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(dir.path().join("etc/group"), "staff:x:50:\n").unwrap();
        assert_eq!(resolve_chown(dir.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_chown(dir.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_chown(dir.path(), "7:8").unwrap(), (7, 8));
        assert!(resolve_chown(dir.path(), "nobody").is_err());
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert!(parse_chmod("9").is_err());
    }
}
