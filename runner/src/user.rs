//! `-u user[:group]` resolved against an image's rootfs, with runc's rules.
//!
//! Owns: reading `/etc/passwd` and `/etc/group` *inside* a rootfs (absolute symlinks and `..`
//! resolve against the rootfs, never the host), and the semantics of moby/sys/user
//! `GetExecUser`, which both Docker and runc use: empty spec = uid 0; a numeric user is always a
//! uid, and may be absent from passwd; a name must be present; an explicit group replaces the
//! primary gid and turns supplementary groups off; otherwise the user's memberships in
//! `/etc/group` become the supplementary gids.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The largest uid/gid Docker and runc accept (`math.MaxInt32`): user namespaces and some libcs
/// treat the top bit as a sign.
const MAX_ID: i64 = i32::MAX as i64;

/// A passwd or group file bigger than this is not a real one; refusing it bounds memory.
const MAX_FILE: u64 = 64 << 20;

/// Kernel's limit on symlinks followed in one lookup; the manual walk uses the same.
const MAX_SYMLINKS: usize = 40;

/// The process identity a container's user spec resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from `/etc/group` (only when the spec named no group, as runc).
    /// Docker's OCI spec additionally lists the primary gid first; that is the bundle's business.
    pub additional_gids: Vec<u32>,
    /// The passwd home directory, `/` when the user has no passwd entry.
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error(
        "invalid user {spec:?}: {id} is out of range: uids and gids must be in range 0-{MAX_ID}"
    )]
    OutOfRange { spec: String, id: i64 },
    #[error("cannot open the container rootfs {}: {source}", rootfs.display())]
    Rootfs { rootfs: PathBuf, source: io::Error },
    #[error("cannot read {file} in the container rootfs {}: {source}", rootfs.display())]
    Read {
        rootfs: PathBuf,
        file: &'static str,
        source: io::Error,
    },
}

struct PasswdEntry {
    name: Vec<u8>,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: Vec<u8>,
    gid: u32,
    members: Vec<Vec<u8>>,
}

/// Resolves Docker's `--user` value (`""`, `name`, `uid`, `name:group`, `uid:gid`, …) against the
/// passwd and group files of `rootfs`. Missing files count as empty.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UserError::Rootfs {
        rootfs: rootfs.to_path_buf(),
        source: e.into(),
    })?;
    let read = |file: &'static str| {
        read_in_root(&root, file).map_err(|source| UserError::Read {
            rootfs: rootfs.to_path_buf(),
            file,
            source,
        })
    };
    let passwd = read("/etc/passwd")?
        .map(|b| parse_passwd(&b))
        .unwrap_or_default();
    // The group file is only needed when a group is named or a passwd entry matched; reading it
    // lazily would save little, so it is read once here for clarity.
    let group = read("/etc/group")?
        .map(|b| parse_group(&b))
        .unwrap_or_default();
    resolve(spec, &passwd, &group)
}

/// GetExecUser with defaults uid 0, gid 0, home "/".
fn resolve(
    spec: &str,
    passwd: &[PasswdEntry],
    group: &[GroupEntry],
) -> Result<ResolvedUser, UserError> {
    // runc splits on ':' and takes the first two fields; anything after a second ':' is ignored.
    let mut parts = spec.split(':');
    let user_arg = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");
    // Go's strconv.Atoi: optional sign, decimal, fits in 64 bits; i64's FromStr agrees.
    let uid_num = user_arg.parse::<i64>().ok();
    let gid_num = group_arg.parse::<i64>().ok();

    let mut out = ResolvedUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".into(),
    };
    let found = passwd
        .iter()
        .find(|u| match (user_arg.is_empty(), uid_num) {
            (true, _) => u.uid == 0,
            // A numeric user is always a uid, even if some user is literally named "1000".
            (false, Some(n)) => i64::from(u.uid) == n,
            (false, None) => u.name == user_arg.as_bytes(),
        });
    let matched_name: Option<&[u8]> = match found {
        Some(u) => {
            out.uid = u.uid;
            out.gid = u.gid;
            out.home = u.home.clone();
            Some(&u.name)
        }
        None if user_arg.is_empty() => None,
        None => {
            let n = uid_num.ok_or_else(|| UserError::UnknownUser(user_arg.to_string()))?;
            out.uid = checked_id(spec, n)?;
            None
        }
    };

    if !group_arg.is_empty() {
        let g = group.iter().find(|g| match gid_num {
            Some(n) => i64::from(g.gid) == n,
            None => g.name == group_arg.as_bytes(),
        });
        out.gid = match g {
            Some(g) => g.gid,
            None => {
                let n = gid_num.ok_or_else(|| UserError::UnknownGroup(group_arg.to_string()))?;
                checked_id(spec, n)?
            }
        };
    } else if let Some(name) = matched_name {
        // Supplementary groups only in the implicit form, as runc: an explicit group means "run
        // with exactly this group".
        out.additional_gids = group
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect();
    }
    Ok(out)
}

fn checked_id(spec: &str, n: i64) -> Result<u32, UserError> {
    if (0..=MAX_ID).contains(&n) {
        // In range 0..=i32::MAX, so the conversion cannot fail.
        u32::try_from(n).map_err(|_| UserError::OutOfRange {
            spec: spec.to_string(),
            id: n,
        })
    } else {
        Err(UserError::OutOfRange {
            spec: spec.to_string(),
            id: n,
        })
    }
}

/// Lines of a colon-separated database, trimmed, blank lines dropped (as moby/sys/user).
fn records(data: &[u8]) -> impl Iterator<Item = Vec<&[u8]>> {
    data.split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty())
        .map(|l| l.split(|&b| b == b':').collect())
}

/// A numeric field. Go's parser turns garbage into 0 — which would make a malformed line (or a
/// NIS `+::::::` line) look like root — so such lines are skipped instead.
fn id_field(field: Option<&&[u8]>) -> Option<u32> {
    std::str::from_utf8(field?).ok()?.parse::<u32>().ok()
}

fn parse_passwd(data: &[u8]) -> Vec<PasswdEntry> {
    // name:password:uid:gid:gecos:home:shell
    records(data)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f[0].to_vec(),
                uid: id_field(f.get(2))?,
                gid: id_field(f.get(3))?,
                home: f
                    .get(5)
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(data: &[u8]) -> Vec<GroupEntry> {
    // name:password:gid:member,member,…
    records(data)
        .filter_map(|f| {
            let members = match f.get(3) {
                Some(list) if !list.is_empty() => {
                    list.split(|&b| b == b',').map(<[u8]>::to_vec).collect()
                }
                _ => Vec::new(),
            };
            Some(GroupEntry {
                name: f[0].to_vec(),
                gid: id_field(f.get(2))?,
                members,
            })
        })
        .collect()
}

/// Reads `path` (absolute, as seen inside the container) from the rootfs `root`.
/// `Ok(None)` when it does not exist.
fn read_in_root(root: &OwnedFd, path: &str) -> io::Result<Option<Vec<u8>>> {
    let fd = match open_in_root(root, path) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(c) if c == Errno::NOENT.raw_os_error() || c == Errno::NOTDIR.raw_os_error()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut buf = Vec::new();
    File::from(fd).take(MAX_FILE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE} bytes"),
        ));
    }
    Ok(Some(buf))
}

/// The flags for the final open: NONBLOCK so a FIFO planted at /etc/passwd cannot hang us
/// (it is then refused as not a regular file), NOCTTY for a tty device likewise.
fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
}

fn open_in_root(root: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root, path, read_flags(), Mode::empty(), resolve) {
        Ok(fd) => Ok(fd),
        // ENOSYS: kernel < 5.6. EPERM: seccomp profiles that predate openat2. EAGAIN: the kernel
        // saw a concurrent rename and wants a retry; the manual walk does not need one.
        Err(e) if e == Errno::NOSYS || e == Errno::PERM || e == Errno::AGAIN => {
            walk_in_root(root, path)
        }
        Err(e) => Err(e.into()),
    }
}

/// RESOLVE_IN_ROOT by hand: follow the path one component at a time with O_NOFOLLOW, expanding
/// symlinks ourselves so that an absolute target restarts at `root` and `..` never climbs above
/// it. Not race-free against someone renaming inside the rootfs while we walk, which openat2 is;
/// images are not being modified while a container is created.
fn walk_in_root(root: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    let mut todo: VecDeque<Vec<u8>> = components(path.as_bytes()).collect();
    // Directories entered so far; empty = at the root. Popping implements `..`.
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        match name.as_slice() {
            b"." => continue,
            b".." => {
                dirs.pop();
                continue;
            }
            _ => {}
        }
        let cur = dirs.last().unwrap_or(root);
        let name = OsStr::from_bytes(&name);
        let fd = rustix::fs::openat(
            cur,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        if kind == FileType::Symlink {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::LOOP.into());
            }
            let target = rustix::fs::readlinkat(cur, name, Vec::new())?;
            let target = target.as_bytes();
            if target.starts_with(b"/") {
                dirs.clear();
            }
            for c in components(target).rev() {
                todo.push_front(c);
            }
        } else if todo.is_empty() {
            // Last component, not a symlink: open it for reading. O_NOFOLLOW makes a swap to a
            // symlink since the check fail rather than escape.
            return Ok(rustix::fs::openat(
                cur,
                name,
                read_flags() | OFlags::NOFOLLOW,
                Mode::empty(),
            )?);
        } else if kind == FileType::Directory {
            dirs.push(fd);
        } else {
            return Err(Errno::NOTDIR.into());
        }
    }
    // The path ended on a directory (`/`, `/etc/..`): open that, as the kernel would.
    let cur = dirs.last().unwrap_or(root);
    Ok(rustix::fs::openat(cur, ".", read_flags(), Mode::empty())?)
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        \n\
        bad:x:notanumber:0::/bad:/bin/sh\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
        1234:x:1500:1500::/home/numeric:/bin/sh\n\
        alice:x:2000:2000:dup:/home/dup:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,alice\n\
        alice:x:1000:\n\
        audio:x:29:alice\n\
        video:x:44:bob,alice\n\
        staff:x:50:\n";

    fn rootfs(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("etc")).expect("etc");
        if let Some(p) = passwd {
            fs::write(dir.path().join("etc/passwd"), p).expect("passwd");
        }
        if let Some(g) = group {
            fs::write(dir.path().join("etc/group"), g).expect("group");
        }
        dir
    }

    fn user(uid: u32, gid: u32, sgids: &[u32], home: &str) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: sgids.to_vec(),
            home: home.into(),
        }
    }

    #[test]
    fn empty_spec_is_root_from_passwd() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        assert_eq!(
            resolve_user(r.path(), "").expect("root"),
            user(0, 0, &[10], "/root")
        );
    }

    #[test]
    fn empty_spec_without_files_is_root_with_home_slash() {
        let r = rootfs(None, None);
        assert_eq!(
            resolve_user(r.path(), "").expect("root"),
            user(0, 0, &[], "/")
        );
        let bare = tempfile::tempdir().expect("tempdir"); // no /etc at all
        assert_eq!(
            resolve_user(bare.path(), "").expect("root"),
            user(0, 0, &[], "/")
        );
    }

    #[test]
    fn name_gets_passwd_ids_home_and_memberships() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        // First matching passwd line wins; memberships in file order.
        assert_eq!(
            resolve_user(r.path(), "alice").expect("alice"),
            user(1000, 1000, &[10, 29, 44], "/home/alice")
        );
    }

    #[test]
    fn numeric_uid_is_a_uid_even_when_a_user_has_that_name() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        assert_eq!(
            resolve_user(r.path(), "1000").expect("uid"),
            user(1000, 1000, &[10, 29, 44], "/home/alice")
        );
        // "1234" is a user name in passwd, but numeric specs are uids: no entry, so gid 0 and "/".
        assert_eq!(
            resolve_user(r.path(), "1234").expect("uid"),
            user(1234, 0, &[], "/")
        );
    }

    #[test]
    fn explicit_group_replaces_gid_and_drops_supplementary_groups() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        assert_eq!(
            resolve_user(r.path(), "alice:staff").expect("g"),
            user(1000, 50, &[], "/home/alice")
        );
        assert_eq!(
            resolve_user(r.path(), "alice:44").expect("g"),
            user(1000, 44, &[], "/home/alice")
        );
        assert_eq!(
            resolve_user(r.path(), "1000:4242").expect("g"),
            user(1000, 4242, &[], "/home/alice")
        );
        assert_eq!(
            resolve_user(r.path(), "5000:5000").expect("g"),
            user(5000, 5000, &[], "/")
        );
        // Empty user with a group: root's entry, the given group.
        assert_eq!(
            resolve_user(r.path(), ":audio").expect("g"),
            user(0, 29, &[], "/root")
        );
        // Fields after a second ':' are ignored, as runc.
        assert_eq!(
            resolve_user(r.path(), "alice:audio:junk").expect("g"),
            user(1000, 29, &[], "/home/alice")
        );
    }

    #[test]
    fn unknown_names_are_errors_with_runcs_wording() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        let e = resolve_user(r.path(), "mallory").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "unable to find user mallory: no matching entries in passwd file"
        );
        let e = resolve_user(r.path(), "alice:nogroup").expect_err("unknown group");
        assert_eq!(
            e.to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        // Without a passwd file every name is unknown, but numbers still work.
        let r = rootfs(None, None);
        assert!(
            matches!(resolve_user(r.path(), "alice"), Err(UserError::UnknownUser(n)) if n == "alice")
        );
        assert_eq!(
            resolve_user(r.path(), "33:33").expect("numeric"),
            user(33, 33, &[], "/")
        );
    }

    #[test]
    fn ids_out_of_range_are_refused() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        for spec in ["2147483648", "-1", "0:2147483648", "alice:-5"] {
            let e = resolve_user(r.path(), spec).expect_err(spec);
            assert!(matches!(e, UserError::OutOfRange { .. }), "{spec}: {e}");
            assert!(e.to_string().contains("0-2147483647"), "{e}");
        }
        assert_eq!(
            resolve_user(r.path(), "2147483647").expect("max").uid,
            2147483647
        );
    }

    #[test]
    fn malformed_lines_are_skipped_not_mapped_to_root() {
        let r = rootfs(Some(PASSWD), Some(GROUP));
        assert!(matches!(
            resolve_user(r.path(), "bad"),
            Err(UserError::UnknownUser(_))
        ));
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_rootfs() {
        // The host's /etc/passwd must never be read: point the image's passwd at "/etc/real-passwd"
        // (absolute) and at "../../../../../../shadow/passwd" (climbing), both of which exist
        // only inside the rootfs.
        let r = rootfs(None, None);
        fs::write(
            r.path().join("etc/real-passwd"),
            "app:x:777:778::/srv/app:/bin/sh\n",
        )
        .expect("w");
        symlink("/etc/real-passwd", r.path().join("etc/passwd")).expect("symlink");
        fs::create_dir_all(r.path().join("shadow")).expect("dir");
        fs::write(r.path().join("shadow/group"), "appg:x:778:app\n").expect("w");
        symlink("../../../../../../shadow/group", r.path().join("etc/group")).expect("symlink");
        assert_eq!(
            resolve_user(r.path(), "app").expect("app"),
            user(777, 778, &[778], "/srv/app")
        );
    }

    #[test]
    fn manual_walk_matches_in_root_semantics() {
        let r = rootfs(None, None);
        let p = r.path();
        fs::write(p.join("etc/real"), "inside").expect("w");
        fs::create_dir_all(p.join("a/b")).expect("dir");
        symlink("/etc/real", p.join("etc/abs")).expect("s");
        symlink("../../../../etc/real", p.join("a/b/up")).expect("s");
        symlink("/a", p.join("etc/dirlink")).expect("s");
        symlink("loop2", p.join("etc/loop1")).expect("s");
        symlink("loop1", p.join("etc/loop2")).expect("s");
        symlink("/etc/passwd-host-like", p.join("etc/dangling")).expect("s");
        let root =
            rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("root");
        let read = |path: &str| -> io::Result<String> {
            let mut s = String::new();
            File::from(walk_in_root(&root, path)?).read_to_string(&mut s)?;
            Ok(s)
        };
        assert_eq!(read("/etc/abs").expect("abs"), "inside");
        assert_eq!(read("/a/b/up").expect("up"), "inside");
        assert_eq!(read("/../../etc/real").expect("dotdot"), "inside");
        assert_eq!(read("/etc/dirlink/b/up").expect("dir link"), "inside");
        assert_eq!(
            walk_in_root(&root, "/etc/loop1")
                .expect_err("loop")
                .raw_os_error(),
            Some(Errno::LOOP.raw_os_error())
        );
        assert_eq!(
            walk_in_root(&root, "/etc/dangling")
                .expect_err("dangling")
                .kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            walk_in_root(&root, "/etc/real/x")
                .expect_err("notdir")
                .raw_os_error(),
            Some(Errno::NOTDIR.raw_os_error())
        );
    }

    #[test]
    fn non_regular_passwd_is_a_clear_error() {
        let r = rootfs(None, None);
        fs::create_dir_all(r.path().join("etc/passwd")).expect("dir");
        let e = resolve_user(r.path(), "").expect_err("dir");
        assert!(
            e.to_string().contains("/etc/passwd") && e.to_string().contains("not a regular file"),
            "{e}"
        );
    }

    #[test]
    fn missing_rootfs_is_an_error_naming_it() {
        let e = resolve_user(Path::new("/nonexistent/berth-rootfs"), "").expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/berth-rootfs"), "{e}");
    }
}
