//! Paths inside a container's rootfs and Docker's copy-up. A path is resolved with symlinks
//! interpreted inside the rootfs (filepath-securejoin's rule: an absolute link or `..` never
//! leaves it), so neither creating a mount point nor copying image content into a volume can
//! touch the host through a link planted in an image.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// `root` joined with `path`, every existing symlink on the way resolved inside `root`.
pub fn secure_join(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut pending: Vec<OsString> = path.split('/').rev().map(OsString::from).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&c);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(io::Error::from_raw_os_error(libc_eloop()));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for part in target.components().rev() {
                    match part {
                        Component::Normal(s) => pending.push(s.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => resolved.push(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(c),
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

/// The in-container path of a resolved host path under `root`.
pub fn container_path(root: &Path, resolved: &Path) -> String {
    match resolved.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => resolved.display().to_string(),
    }
}

/// Whether a directory has no entries (a missing one counts as empty).
pub fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// Copy the contents of `src` into the existing directory `dst`, keeping modes, owners, times,
/// symlinks and device nodes; `dst` itself takes `src`'s mode, owner and times (Docker's copy-up).
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    copy_contents(src, dst)?;
    let m = fs::symlink_metadata(src)?;
    set_meta(dst, &m)
}

fn copy_contents(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (s, d) = (entry.path(), dst.join(entry.file_name()));
        let m = fs::symlink_metadata(&s)?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir(&d)?;
            copy_contents(&s, &d)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
        } else if ft.is_file() {
            let mut from = fs::File::open(&s)?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&d)?;
            io::copy(&mut from, &mut to)?;
        } else {
            use rustix::fs::{FileType, Mode};
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &d,
                FileType::from_raw_mode(m.mode()),
                Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )?;
        }
        set_meta(&d, &m)?;
    }
    Ok(())
}

/// Owner, then mode (chown clears set-id bits), then times; a symlink only gets its owner.
fn set_meta(p: &Path, m: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(m.uid()), Some(m.gid()))?;
    if m.file_type().is_symlink() {
        return Ok(());
    }
    fs::set_permissions(p, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    let ts = |sec: i64, nsec: i64| rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(m.atime(), m.atime_nsec()),
        last_modification: ts(m.mtime(), m.mtime_nsec()),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("/real/sub", root.join("etc")).unwrap();
        assert_eq!(
            secure_join(root, "/abs/sub").unwrap(),
            root.join("real/sub")
        );
        assert_eq!(secure_join(root, "/real/up/x").unwrap(), root.join("x"));
        assert_eq!(
            secure_join(root, "/etc/passwd").unwrap(),
            root.join("real/sub/passwd")
        );
        assert_eq!(
            secure_join(root, "/../../new/dir").unwrap(),
            root.join("new/dir")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(secure_join(root, "/loop").is_err());
    }

    #[test]
    fn copy_keeps_modes_links_and_contents() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), b"hello").unwrap();
        fs::set_permissions(src.join("d/f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o711)).unwrap();
        std::os::unix::fs::symlink("d/f", src.join("l")).unwrap();
        fs::create_dir(&dst).unwrap();
        copy_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("d/f")).unwrap(), b"hello");
        assert_eq!(fs::metadata(dst.join("d/f")).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::metadata(&dst).unwrap().mode() & 0o777, 0o711);
        assert_eq!(fs::read_link(dst.join("l")).unwrap(), PathBuf::from("d/f"));
        assert!(!is_empty_dir(&dst).unwrap());
    }
}
