//! Paths inside a container's rootfs and Docker's copy-up. A path is resolved with symlinks
//! interpreted inside the rootfs (filepath-securejoin's rule: an absolute link or `..` never
//! leaves it), so neither creating a mount point nor copying image content into a volume can
//! touch the host through a link planted in an image.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Uid};

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
///
/// Everything is done relative to open directories, never by path: another container sharing
/// the volume can rename, swap (`RENAME_EXCHANGE`) or replace entries of `dst` while we copy,
/// and a path would then lead through its symlink onto the host. Each entry is created with
/// `O_EXCL`/`mkdirat`/`symlinkat` in its open parent, a directory is entered with
/// `O_NOFOLLOW | O_DIRECTORY`, and owner, mode and times are set on the open descriptor (a
/// symlink only gets its owner, with `AT_SYMLINK_NOFOLLOW`). What was swapped in place of our
/// entry makes the copy fail; it never makes us write outside the volume.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let s = rustix::fs::open(src, DIR_FLAGS, Mode::empty())?;
    let d = rustix::fs::open(dst, DIR_FLAGS, Mode::empty())?;
    copy_contents(&s, &d)?;
    set_meta(&d, &rustix::fs::fstat(&s)?)
}

/// Directories are opened for reading, never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn copy_contents(src: &OwnedFd, dst: &OwnedFd) -> io::Result<()> {
    for entry in Dir::read_from(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let m = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        match FileType::from_raw_mode(m.st_mode) {
            FileType::Directory => {
                // Private until its contents and metadata are in place.
                rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
                let d = rustix::fs::openat(dst, name, DIR_FLAGS, Mode::empty())?;
                let s = rustix::fs::openat(src, name, DIR_FLAGS, Mode::empty())?;
                copy_contents(&s, &d)?;
                set_meta(&d, &m)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name)?;
                rustix::fs::chownat(
                    dst,
                    name,
                    Some(Uid::from_raw(m.st_uid)),
                    Some(Gid::from_raw(m.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            FileType::RegularFile => {
                let from = rustix::fs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let to = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let (mut from, mut to) = (fs::File::from(from), fs::File::from(to));
                io::copy(&mut from, &mut to)?;
                set_meta(&to, &m)?;
            }
            kind => {
                // A device node, fifo or socket: made, then opened as a path (which neither
                // blocks on a fifo nor opens the device) and checked to be what we made.
                rustix::fs::mknodat(dst, name, kind, Mode::from_raw_mode(0o600), m.st_rdev)?;
                let node = rustix::fs::openat(
                    dst,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let st = rustix::fs::fstat(&node)?;
                if FileType::from_raw_mode(st.st_mode) != kind || st.st_rdev != m.st_rdev {
                    return Err(io::Error::other(format!(
                        "{}: replaced while being copied into the volume",
                        name.to_string_lossy()
                    )));
                }
                set_meta(&node, &m)?;
            }
        }
    }
    Ok(())
}

/// Owner, then mode (chown clears set-id bits), then times, all on the open descriptor. An
/// `O_PATH` descriptor (a device node, fifo or socket) cannot be fchmod'ed: its
/// `/proc/self/fd` link names exactly that inode, never a path that could have been swapped.
fn set_meta(fd: &impl AsFd, m: &rustix::fs::Stat) -> io::Result<()> {
    let fd = fd.as_fd();
    rustix::fs::chownat(
        fd,
        c"",
        Some(Uid::from_raw(m.st_uid)),
        Some(Gid::from_raw(m.st_gid)),
        AtFlags::EMPTY_PATH,
    )?;
    let mode = Mode::from_raw_mode(m.st_mode & 0o7777);
    let ts = |sec: i64, nsec: u64| rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(m.st_atime, m.st_atime_nsec),
        last_modification: ts(m.st_mtime, m.st_mtime_nsec),
    };
    match rustix::fs::fchmod(fd, mode) {
        Ok(()) => rustix::fs::futimens(fd, &times)?,
        Err(rustix::io::Errno::BADF) => {
            let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
            rustix::fs::chmod(link.as_str(), mode)?;
            rustix::fs::utimensat(rustix::fs::CWD, link.as_str(), &times, AtFlags::empty())?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
        assert_eq!(
            fs::read_link(dst.join("l")).unwrap(),
            std::path::PathBuf::from("d/f")
        );
        assert!(!is_empty_dir(&dst).unwrap());
    }

    /// A second container sharing the volume swaps (`RENAME_EXCHANGE`) the entries copy-up is
    /// making with symlinks to a host file and a host directory, over and over, while copy-up
    /// runs into fresh volumes. Whatever the interleaving, the host file keeps its mode and the
    /// host directory stays empty (copy-up may fail; it never writes through the swap).
    #[test]
    fn swapping_entries_during_copy_up_never_reaches_the_host() {
        use rustix::fs::{RenameFlags, renameat_with};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        // A big file widens the window between creating it and setting its mode.
        fs::write(src.join("f"), vec![7u8; 4 << 20]).unwrap();
        fs::set_permissions(src.join("f"), fs::Permissions::from_mode(0o4777)).unwrap();
        for i in 0..50 {
            fs::write(src.join(format!("d/{i}")), b"x").unwrap();
        }
        let host_file = t.path().join("host-file");
        fs::write(&host_file, b"host").unwrap();
        fs::set_permissions(&host_file, fs::Permissions::from_mode(0o600)).unwrap();
        let host_dir = t.path().join("host-dir");
        fs::create_dir(&host_dir).unwrap();

        let vols = t.path().join("vols");
        fs::create_dir(&vols).unwrap();
        let current = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (vols, current, stop) = (vols.clone(), current.clone(), stop.clone());
            let (host_file, host_dir) = (host_file.clone(), host_dir.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let v = vols.join(current.load(Ordering::Relaxed).to_string());
                    let _ = std::os::unix::fs::symlink(&host_file, v.join("evil-f"));
                    let _ = std::os::unix::fs::symlink(&host_dir, v.join("evil-d"));
                    for (a, b) in [("f", "evil-f"), ("d", "evil-d")] {
                        let _ = renameat_with(
                            rustix::fs::CWD,
                            v.join(a),
                            rustix::fs::CWD,
                            v.join(b),
                            RenameFlags::EXCHANGE,
                        );
                    }
                }
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut n = 0;
        while std::time::Instant::now() < deadline && n < 300 {
            let v = vols.join(n.to_string());
            fs::create_dir(&v).unwrap();
            current.store(n, Ordering::Relaxed);
            let _ = copy_tree(&src, &v);
            n += 1;
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        let mode = fs::metadata(&host_file).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600, "copy-up changed a host file's mode");
        assert_eq!(fs::read(&host_file).unwrap(), b"host");
        let leaked: Vec<_> = fs::read_dir(&host_dir).unwrap().flatten().collect();
        assert!(
            leaked.is_empty(),
            "copy-up wrote into a host directory: {leaked:?}"
        );
    }
}
