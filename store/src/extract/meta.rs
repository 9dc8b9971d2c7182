//! An entry's metadata (owner, mode, times, xattrs; PAX records override the ustar fields) and
//! how it is put on what was created: through an fd where there is one (files, directories),
//! by name under the parent's fd without following symlinks otherwise.
//!
//! Order matters: chown clears setuid/setgid and `security.capability`, so owner first, then mode,
//! then xattrs; times last.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::dir_fd::DirFd;

/// Permission bits plus setuid/setgid/sticky.
const MODE_MASK: u32 = 0o7777;
const SPECIAL_BITS: u32 = 0o7000;
/// Overlayfs keeps its own state in these; a layer does not get to set them (opaque directories
/// come from `.wh..wh..opq`, nothing else is meaningful in a layer).
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const DEFAULT_ACL_XATTR: &[u8] = b"system.posix_acl_default";

/// What a new entry gets without being told (our owner, its mode less the umask), so that a
/// `chown` or `chmod` that would change nothing is skipped: most layer files are root's and 0644
/// or 0755, and these calls would otherwise be a third of the syscalls per file.
pub(super) struct Defaults {
    umask: Option<u32>,
    /// A default ACL replaces the umask for new entries below it: then always chmod.
    always_chmod: bool,
    uid: u32,
    gid: u32,
}

impl Defaults {
    /// Reads the umask without changing it (`/proc/self/status`), our ids, and whether the layer
    /// root has a default ACL.
    pub(super) fn detect(root: BorrowedFd<'_>) -> Self {
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            });
        let always = !matches!(
            rustix::fs::fgetxattr_query(root, DEFAULT_ACL_XATTR),
            Err(Errno::NODATA | Errno::OPNOTSUPP)
        );
        Defaults {
            umask,
            always_chmod: always,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    /// Whether an entry created with `mode` needs an explicit chmod (after its chown).
    pub(super) fn needs_chmod(&self, mode: u32) -> bool {
        self.always_chmod
            || mode & SPECIAL_BITS != 0
            || self.umask.is_none_or(|umask| mode & umask != 0)
    }

    /// Whether an entry just created in `parent` needs a chown to be `uid:gid`.
    fn needs_chown(&self, uid: u32, gid: u32, parent: &DirFd) -> bool {
        let inherited_gid = if parent.setgid { parent.gid } else { self.gid };
        !(uid == self.uid && gid == inherited_gid)
    }

    fn saw_default_acl(&mut self) {
        self.always_chmod = true;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Times {
    pub(super) atime: Timespec,
    pub(super) mtime: Timespec,
}

impl Times {
    pub(super) fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

/// What [`Meta::apply_at`] is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AtKind {
    /// A symlink just created (Linux has no symlink modes).
    Symlink,
    /// A device node or FIFO just created with the entry's mode.
    Node,
    /// A new name for an existing inode (which may even be a symlink).
    HardLink,
}

pub(super) struct Meta {
    /// Permission and setuid/setgid/sticky bits.
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) times: Times,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A header field that could not be read: its name and why.
pub(super) type FieldError = (&'static str, io::Error);

impl Meta {
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, FieldError> {
        let header = entry.header();
        let mode = numeric(header, "mode", header.mode())? & MODE_MASK;
        // The tar crate already applied PAX uid/gid to the header.
        let uid = id(numeric(header, "uid", header.uid())?, "uid")?;
        let gid = id(numeric(header, "gid", header.gid())?, "gid")?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(numeric(header, "mtime", header.mtime())?).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| ("pax", e))? {
            for record in pax {
                let record = record.map_err(|e| ("pax", e))?;
                let key = record.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    mtime = pax_time(record.value_bytes()).ok_or_else(|| bad("mtime"))?;
                } else if key == b"atime" {
                    atime = Some(pax_time(record.value_bytes()).ok_or_else(|| bad("atime"))?);
                }
            }
        }
        // As Docker: the access time is never before the modification time.
        let atime = atime.map_or(mtime, |a| a.max(mtime));
        Ok(Meta {
            mode,
            uid,
            gid,
            times: Times { atime, mtime },
            xattrs,
        })
    }

    fn owner(&self) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid)))
    }

    /// Owner, mode and xattrs on an open file or directory. `fresh_in` is the directory it was
    /// just created in with `self.mode` (then chown and chmod may be redundant), `None` for an
    /// entry that existed before.
    pub(super) fn apply_fd(
        &self,
        fd: BorrowedFd<'_>,
        fresh_in: Option<&DirFd>,
        defaults: &mut Defaults,
    ) -> io::Result<()> {
        if fresh_in.is_none_or(|parent| defaults.needs_chown(self.uid, self.gid, parent)) {
            let (uid, gid) = self.owner();
            rustix::fs::fchown(fd, uid, gid)?;
        }
        // A directory made in a setgid directory is setgid itself, whatever its mode said.
        if fresh_in.is_none_or(|parent| parent.setgid) || defaults.needs_chmod(self.mode) {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode))?;
        }
        for (name, value) in &self.xattrs {
            if skip_xattr(name, defaults) {
                continue;
            }
            let set = rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty());
            tolerate_xattr(set, name)?;
        }
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and times on `name` in `parent`, never following a
    /// symlink: for symlinks, devices, FIFOs and hard links.
    pub(super) fn apply_at(
        &self,
        parent: &DirFd,
        name: &[u8],
        kind: AtKind,
        defaults: &mut Defaults,
    ) -> io::Result<()> {
        let fresh = kind != AtKind::HardLink;
        if !fresh || defaults.needs_chown(self.uid, self.gid, parent) {
            let (uid, gid) = self.owner();
            rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        match kind {
            AtKind::Symlink => {}
            AtKind::Node if !defaults.needs_chmod(self.mode) => {}
            AtKind::Node | AtKind::HardLink => chmod_nofollow(parent.as_fd(), name, self.mode)?,
        }
        for (n, value) in &self.xattrs {
            if skip_xattr(n, defaults) {
                continue;
            }
            let path = proc_path(parent.as_fd(), name);
            let set =
                rustix::fs::lsetxattr(path.as_slice(), n.as_slice(), value, XattrFlags::empty());
            tolerate_xattr(set, n)?;
        }
        rustix::fs::utimensat(
            parent,
            name,
            &self.times.timestamps(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }
}

fn field_range(field: &str) -> std::ops::Range<usize> {
    match field {
        "mode" => 100..108,
        "uid" => 108..116,
        "gid" => 116..124,
        "mtime" => 136..148,
        "devmajor" => 329..337,
        _ => 337..345, // devminor
    }
}

/// A numeric header field; an empty one (all NUL or spaces) is 0, as Go's `archive/tar` (which
/// wrote most layers) reads it.
pub(super) fn numeric<T: Default>(
    header: &tar::Header,
    field: &'static str,
    parsed: io::Result<T>,
) -> Result<T, FieldError> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_)
            if header.as_bytes()[field_range(field)]
                .iter()
                .all(|b| *b == 0 || *b == b' ') =>
        {
            Ok(T::default())
        }
        Err(e) => Err((field, e)),
    }
}

fn id(v: u64, field: &'static str) -> Result<u32, FieldError> {
    u32::try_from(v).map_err(|_| {
        (
            field,
            io::Error::new(io::ErrorKind::InvalidData, format!("{v} is out of range")),
        )
    })
}

fn bad(field: &'static str) -> FieldError {
    (
        field,
        io::Error::new(io::ErrorKind::InvalidData, "not a decimal time"),
    )
}

/// A PAX time: decimal seconds since the epoch, optionally negative, with an optional fraction.
fn pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nsec: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nsec += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !neg {
        Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        }
    } else if nsec == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nsec,
        }
    })
}

fn skip_xattr(name: &[u8], defaults: &mut Defaults) -> bool {
    if name.starts_with(OVERLAY_XATTR_PREFIX) {
        tracing::warn!(
            xattr = %String::from_utf8_lossy(name),
            "ignoring overlayfs-private xattr in layer"
        );
        return true;
    }
    if name == DEFAULT_ACL_XATTR {
        defaults.saw_default_acl();
    }
    false
}

/// Filesystems without (this kind of) xattr support are tolerated, as Docker does.
fn tolerate_xattr(res: rustix::io::Result<()>, name: &[u8]) -> io::Result<()> {
    match res {
        Ok(()) => Ok(()),
        Err(e @ (Errno::OPNOTSUPP | Errno::PERM)) => {
            tracing::warn!(
                xattr = %String::from_utf8_lossy(name),
                error = %e,
                "xattr not supported here; skipped"
            );
            Ok(())
        }
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("set xattr {}: {e}", String::from_utf8_lossy(name)),
        )),
    }
}

/// `/proc/self/fd/<parent>/<name>`: the kernel follows the magic link to `parent` itself and
/// then looks up `name` there, so `l*` calls on it never follow a symlink at `name`.
fn proc_path(parent: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    p
}

/// chmod without following a symlink at `name`: through an `O_PATH` fd of the entry itself
/// (Linux has no `lchmod`; `fchmodat2` is too new to rely on). Symlinks are left alone.
fn chmod_nofollow(parent: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink {
        return Ok(());
    }
    let mode = Mode::from_raw_mode(mode);
    match rustix::fs::chmod(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()), mode) {
        // No /proc: the name was just checked not to be a symlink, and nobody else writes here.
        Err(Errno::NOENT) => rustix::fs::chmodat(parent, name, mode, AtFlags::empty())?,
        other => other?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64, n: i64) -> Option<Timespec> {
        Some(Timespec {
            tv_sec: s,
            tv_nsec: n,
        })
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(b"1700000000"), ts(1700000000, 0));
        assert_eq!(pax_time(b"1700000000.5"), ts(1700000000, 500_000_000));
        assert_eq!(pax_time(b"1.123456789123"), ts(1, 123_456_789));
        assert_eq!(pax_time(b"-1.25"), ts(-2, 750_000_000));
        assert_eq!(pax_time(b"-3"), ts(-3, 0));
        assert_eq!(pax_time(b""), None);
        assert_eq!(pax_time(b"1e9"), None);
        assert_eq!(pax_time(b".5"), None);
        assert_eq!(pax_time(b"99999999999999999999999"), None);
    }

    #[test]
    fn chmod_policy() {
        let p = Defaults {
            umask: Some(0o022),
            always_chmod: false,
            uid: 0,
            gid: 0,
        };
        assert!(!p.needs_chmod(0o755));
        assert!(!p.needs_chmod(0o600));
        assert!(p.needs_chmod(0o777));
        assert!(p.needs_chmod(0o4755));
        let unknown = Defaults {
            umask: None,
            always_chmod: false,
            uid: 0,
            gid: 0,
        };
        assert!(unknown.needs_chmod(0o644));
    }
}
