//! COPY and ADD into a step's mounted root filesystem, with Docker's rules: a directory source
//! copies its contents; a file goes to `dest/name` when `dest` ends in `/` or is a directory,
//! else to `dest`; several sources need a directory destination ending in `/`; parents are
//! created (root-owned, 0755); copies belong to root unless `--chown`; `--chmod` sets every
//! copied entry's mode; ADD unpacks a local tar archive (plain, gzip) into the destination.
//! Heredoc bodies and downloaded files are single named files placed by the same rules.
//! Paths in the root are resolved without ever leaving it, whatever symlinks it holds.

use std::fs;
use std::io::{self, Read, Seek};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, lchown, symlink};
use std::path::{Component, Path, PathBuf};

use berth_store::inroot;

use crate::context::{Selected, SourceTree};

/// A `--chown` name the root does not know, or a `--chmod` that is no mode (BuildKit's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerModeError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    BadChmod(String),
}

/// Owner for copied files: `--chown` resolved against the root's /etc/passwd and /etc/group.
pub fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), OwnerModeError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = fs::read_to_string(inroot::resolve(root, file, true).ok()?).ok()?;
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
        Err(_) => lookup("/etc/passwd", user)
            .ok_or_else(|| OwnerModeError::NoSuchUser(user.to_string()))?,
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
            Err(_) => lookup("/etc/group", g)
                .map(|p| p.0)
                .ok_or_else(|| OwnerModeError::NoSuchGroup(g.to_string()))?,
        },
    };
    Ok((uid, gid))
}

/// Parses `--chmod` (octal, up to 07777).
pub fn parse_chmod(s: &str) -> Result<u32, OwnerModeError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| OwnerModeError::BadChmod(s.to_string()))
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
/// `host` must be resolved inside its root (see [`inroot::resolve`]): a symlink met on the
/// way is never followed (creating it fails instead).
pub fn mkdir_all(host: &Path, owner: (u32, u32)) -> io::Result<()> {
    if is_real_dir(host) {
        return Ok(());
    }
    if let Some(parent) = host.parent() {
        mkdir_all(parent, (0, 0))?;
    }
    match fs::create_dir(host) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_real_dir(host) => return Ok(()),
        Err(e) => return Err(e),
    }
    fs::set_permissions(host, fs::Permissions::from_mode(0o755))?;
    lchown(host, Some(owner.0), Some(owner.1))
}

/// Whether `p` is a directory itself (not a symlink to one).
fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// `host` (inside `root`) as a path in the container.
fn in_container(root: &Path, host: &Path) -> String {
    let rel = host.strip_prefix(root).unwrap_or(Path::new(""));
    format!("/{}", rel.to_string_lossy())
}

/// Copies the `selected` sources of `tree` to `dest` (absolute in the container) in `rootfs`.
/// Sources are resolved inside the tree root (a symlink named as a source is followed there;
/// one inside a copied directory is copied as a symlink); every destination entry is resolved
/// inside `rootfs`, so symlinks in the image (`/var/run -> /run`) lead to the image's own
/// directories, never the host's.
pub fn copy_into(
    tree: &SourceTree,
    selected: &[Selected],
    rootfs: &Path,
    dest: &str,
    mode: CopyMode,
) -> io::Result<()> {
    let dest_dir_syntax = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    for sel in selected {
        let src_rel = tree.resolve(&sel.rel, true)?;
        let src = tree.root.join(&src_rel);
        if sel.is_dir {
            let target = inroot::resolve(rootfs, dest, true)?;
            mkdir_all(&target, (0, 0))?;
            let base = in_container(rootfs, &target);
            for rel in tree.walk(&src_rel)? {
                let sub = rel[src_rel.len()..].trim_start_matches('/');
                let from = tree.root.join(&rel);
                // A directory merges into what is there (a symlink to a directory in the image
                // is followed inside the root); anything else replaces the entry itself.
                let is_dir = fs::symlink_metadata(&from)?.is_dir();
                let dst = inroot::resolve(rootfs, &format!("{base}/{sub}"), is_dir)?;
                // An excluded directory's re-included child (`!logs/keep`) still needs it.
                if let Some(parent) = dst.parent() {
                    mkdir_all(parent, (0, 0))?;
                }
                copy_entry(&from, &dst, mode)?;
            }
            continue;
        }
        let resolved = inroot::resolve(rootfs, dest, true)?;
        let target = if dest_dir_syntax || is_real_dir(&resolved) {
            let name = Path::new(&sel.rel)
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            mkdir_all(&resolved, (0, 0))?;
            resolved.join(name)
        } else {
            let parent = resolved.parent().unwrap_or(rootfs).to_path_buf();
            mkdir_all(&parent, (0, 0))?;
            inroot::resolve(rootfs, dest, false)?
        };
        if mode.unpack && is_archive(&src)? {
            // An archive unpacks into the destination, which is a directory then.
            mkdir_all(&resolved, (0, 0))?;
            unpack(&src, rootfs, &resolved)?;
            continue;
        }
        // A symlink given as a source was followed inside the tree root by `resolve`.
        let md = fs::symlink_metadata(&src)?;
        if !md.is_file() {
            return Err(io::Error::other(format!(
                "{}: not a regular file (a symlink leading out of the {}?)",
                sel.rel, tree.what
            )));
        }
        copy_file(&src, &target, &md, mode)?;
    }
    Ok(())
}

/// Where a single file named `name` goes for `dest`: `dest/name` when `dest` ends in `/` (or
/// `/.`) or is a directory, else `dest` itself. Parents are created.
pub fn file_target(rootfs: &Path, dest: &str, name: &str) -> io::Result<PathBuf> {
    let dest_dir_syntax = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let resolved = inroot::resolve(rootfs, dest, true)?;
    if dest_dir_syntax || is_real_dir(&resolved) {
        mkdir_all(&resolved, (0, 0))?;
        return Ok(resolved.join(name));
    }
    let parent = resolved.parent().unwrap_or(rootfs).to_path_buf();
    mkdir_all(&parent, (0, 0))?;
    inroot::resolve(rootfs, dest, false)
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
    let mut to = create_new(&target)?;
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
    let target = inroot::resolve(rootfs, dest, true)?;
    mkdir_all(&target, (0, 0))?;
    unpack(src, rootfs, &target)?;
    Ok(true)
}

fn copy_entry(src: &Path, target: &Path, mode: CopyMode) -> io::Result<()> {
    let md = fs::symlink_metadata(src)?;
    let ft = md.file_type();
    if ft.is_dir() {
        // Never chmod/chown through a symlink: only a real directory is kept.
        if !is_real_dir(target) {
            remove_existing(target)?;
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
    let mut to = create_new(target)?;
    io::copy(&mut from, &mut to)?;
    let m = mode.chmod.unwrap_or(md.mode() & 0o7777);
    to.set_permissions(fs::Permissions::from_mode(m))?;
    if let Ok(t) = md.modified() {
        to.set_modified(t)?;
    }
    drop(to);
    lchown(target, Some(mode.owner.0), Some(mode.owner.1))
}

/// A new file at `target`; an entry that appeared there (a symlink) is never followed.
fn create_new(target: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
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

/// Unpacks the archive `src` into `dir` (inside `rootfs`). Every entry is resolved inside
/// `rootfs` as a COPY destination is: a directory merges into what is there (following a
/// symlink inside the root), anything else replaces the entry; `..` entries are skipped and
/// hard links must point inside the root.
fn unpack(src: &Path, rootfs: &Path, dir: &Path) -> io::Result<()> {
    let mut f = fs::File::open(src)?;
    let mut magic = [0u8; 2];
    let gz = f.read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
    f.rewind()?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let base = in_container(rootfs, dir);
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        berth_store::extract::check_name_lengths(&entry)?;
        let Some(rel) = archive_rel(&entry.path()?) else {
            continue;
        };
        if rel.is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let dst = inroot::resolve(rootfs, &format!("{base}/{rel}"), kind.is_dir())?;
        if let Some(parent) = dst.parent() {
            mkdir_all(parent, (0, 0))?;
        }
        if kind.is_hard_link() {
            let Some(link) = entry.link_name()? else {
                continue;
            };
            let Some(link_rel) = archive_rel(&link) else {
                continue;
            };
            let from = inroot::resolve(rootfs, &format!("{base}/{link_rel}"), false)?;
            remove_existing(&dst)?;
            fs::hard_link(&from, &dst)?;
            continue;
        }
        if kind.is_dir() {
            if !is_real_dir(&dst) {
                remove_existing(&dst)?;
            }
        } else {
            remove_existing(&dst)?;
        }
        entry.unpack(&dst)?;
    }
    Ok(())
}

/// An archive entry's path as a relative path ("" for the root); `None` when it climbs (`..`).
fn archive_rel(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => return None,
            _ => {}
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            resolve_chown(dir.path(), "nobody"),
            Err(OwnerModeError::NoSuchUser("nobody".into()))
        );
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert!(parse_chmod("9").is_err());
    }

    fn tree(root: &Path) -> SourceTree {
        SourceTree {
            root: root.to_path_buf(),
            ignore: crate::ignore::Ignore::parse("").unwrap(),
            what: "build context".into(),
        }
    }

    const MODE: CopyMode = CopyMode {
        owner: (0, 0),
        chmod: None,
        unpack: false,
    };

    #[test]
    fn an_absolute_symlink_in_the_image_never_leads_to_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, rootfs, host) = (
            dir.path().join("ctx"),
            dir.path().join("rootfs"),
            dir.path().join("host"),
        );
        fs::create_dir_all(ctx.join("rootfs/var/run")).unwrap();
        fs::write(ctx.join("rootfs/var/run/x"), "x").unwrap();
        fs::set_permissions(
            ctx.join("rootfs/var/run"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        fs::create_dir_all(rootfs.join("var")).unwrap();
        fs::create_dir_all(&host).unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(0o751)).unwrap();
        symlink(&host, rootfs.join("var/run")).unwrap();
        let t = tree(&ctx);
        let sel = t.select("rootfs/").unwrap();
        copy_into(&t, &sel, &rootfs, "/", MODE).unwrap();
        assert!(!host.join("x").exists());
        assert_eq!(fs::metadata(&host).unwrap().mode() & 0o7777, 0o751);
        // The link is followed inside the root instead.
        let inside = rootfs.join(host.strip_prefix("/").unwrap());
        assert_eq!(fs::read_to_string(inside.join("x")).unwrap(), "x");
        assert!(
            fs::symlink_metadata(rootfs.join("var/run"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn sources_are_resolved_inside_their_root() {
        let dir = tempfile::tempdir().unwrap();
        let (src, rootfs, host) = (
            dir.path().join("src"),
            dir.path().join("rootfs"),
            dir.path().join("host"),
        );
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("secret"), "host").unwrap();
        let inside = src.join(host.strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        fs::write(inside.join("secret"), "inroot").unwrap();
        symlink(host.join("secret"), src.join("link")).unwrap();
        symlink(host.join("only-on-host"), src.join("gone")).unwrap();
        symlink(&host, src.join("hostdir")).unwrap();
        fs::create_dir_all(src.join("d")).unwrap();
        symlink(host.join("secret"), src.join("d/l")).unwrap();
        fs::create_dir_all(&rootfs).unwrap();
        let t = tree(&src);
        copy_into(&t, &t.select("link").unwrap(), &rootfs, "/x", MODE).unwrap();
        assert_eq!(fs::read_to_string(rootfs.join("x")).unwrap(), "inroot");
        // A directory named through a link is the one inside the root.
        copy_into(&t, &t.select("hostdir").unwrap(), &rootfs, "/h/", MODE).unwrap();
        assert_eq!(
            fs::read_to_string(rootfs.join("h/secret")).unwrap(),
            "inroot"
        );
        assert_eq!(t.select("hostdir/*").unwrap().len(), 1);
        copy_into(&t, &t.select("hostdir/*").unwrap(), &rootfs, "/g/", MODE).unwrap();
        assert_eq!(
            fs::read_to_string(rootfs.join("g/secret")).unwrap(),
            "inroot"
        );
        assert!(t.select("gone").is_err());
        // A link inside a copied directory stays a link.
        copy_into(&t, &t.select("d").unwrap(), &rootfs, "/d/", MODE).unwrap();
        assert_eq!(
            fs::read_link(rootfs.join("d/l")).unwrap(),
            host.join("secret")
        );
    }

    #[test]
    fn an_archive_unpacks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (rootfs, host) = (dir.path().join("rootfs"), dir.path().join("host"));
        fs::create_dir_all(rootfs.join("var")).unwrap();
        fs::create_dir_all(&host).unwrap();
        symlink(&host, rootfs.join("var/run")).unwrap();
        let tarball = dir.path().join("a.tar");
        let mut b = tar::Builder::new(fs::File::create(&tarball).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "var/run/sub/x", &b"x"[..]).unwrap();
        b.finish().unwrap();
        drop(b);
        assert!(unpack_into(&rootfs, &tarball, "/").unwrap());
        assert!(!host.join("sub").exists());
        let inside = rootfs.join(host.strip_prefix("/").unwrap());
        assert_eq!(fs::read_to_string(inside.join("sub/x")).unwrap(), "x");
    }
}
