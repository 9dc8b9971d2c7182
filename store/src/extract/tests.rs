//! Tests of `unpack_layer` against crafted (often malicious) tars. They need root (owners,
//! device nodes, `trusted.*` xattrs), as CI has.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tar::{EntryType, Header};

use super::*;

/// A temporary directory holding the destination and, beside it, a sentinel directory that no
/// tar may change.
struct Fixture {
    _tmp: tempfile::TempDir,
    outer: PathBuf,
    dest: PathBuf,
    sentinel: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::Builder::new()
        .prefix("berth-extract-")
        .tempdir()
        .unwrap();
    let outer = tmp.path().to_path_buf();
    let dest = outer.join("dest");
    let sentinel = outer.join("sentinel");
    fs::create_dir(&dest).unwrap();
    fs::create_dir(&sentinel).unwrap();
    fs::write(sentinel.join("keep"), b"sentinel").unwrap();
    fs::create_dir(sentinel.join("sub")).unwrap();
    Fixture {
        _tmp: tmp,
        outer,
        dest,
        sentinel,
    }
}

/// Everything observable about a tree (not following symlinks), to prove it unchanged.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let mut desc = format!(
            "{:o} {}:{} n{} m{} s{}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.nlink(),
            m.mtime(),
            m.size()
        );
        if m.file_type().is_file() {
            desc.push_str(&format!(" {:?}", fs::read(&p).unwrap()));
        } else if m.file_type().is_symlink() {
            desc.push_str(&format!(" -> {:?}", fs::read_link(&p).unwrap()));
        } else if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
        out.insert(p.strip_prefix(root).unwrap().to_path_buf(), desc);
    }
    out
}

impl Fixture {
    /// Unpacks `tar` with both resolvers (openat2 and the component walk), each into a fresh
    /// destination, checking every time that nothing outside it changed. Returns the results.
    fn unpack_checked(&self, tar: &[u8]) -> Result<UnpackStats, ExtractError> {
        let before = snapshot(&self.sentinel);
        let walk_dest = self.outer.join("dest-walk");
        fs::create_dir(&walk_dest).unwrap();
        let walked = unpack(tar, &walk_dest, true);
        let result = unpack(tar, &self.dest, false);
        assert_eq!(
            result.as_ref().map_err(|e| e.to_string()),
            walked.as_ref().map_err(|e| e.to_string()),
            "openat2 and the component walk disagree"
        );
        if result.is_ok() {
            assert_eq!(snapshot(&self.dest), snapshot(&walk_dest), "trees differ");
        }
        fs::remove_dir_all(&walk_dest).unwrap();
        self.assert_outside_untouched(&before);
        result
    }

    fn assert_outside_untouched(&self, before: &BTreeMap<PathBuf, String>) {
        assert_eq!(&snapshot(&self.sentinel), before, "sentinel changed");
        let mut names: Vec<_> = fs::read_dir(&self.outer)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["dest", "sentinel"],
            "something was created beside dest"
        );
    }
}

/// Builds tars entry by entry, writing names raw (the `tar` crate refuses `..` in `set_path`).
struct Tar {
    b: tar::Builder<Vec<u8>>,
}

#[derive(Clone, Debug)]
struct E {
    name: Vec<u8>,
    kind: EntryType,
    link: Vec<u8>,
    data: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    dev: (u32, u32),
    pax: Vec<(String, Vec<u8>)>,
    /// A raw type flag instead of `kind`'s.
    flag: Option<u8>,
}

fn e(name: impl AsRef<[u8]>, kind: EntryType) -> E {
    E {
        name: name.as_ref().to_vec(),
        kind,
        link: Vec::new(),
        data: Vec::new(),
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        dev: (0, 0),
        pax: Vec::new(),
        flag: None,
    }
}

fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> E {
    E {
        data: data.as_ref().to_vec(),
        ..e(name, EntryType::Regular)
    }
}

fn dir(name: impl AsRef<[u8]>) -> E {
    e(name, EntryType::Directory)
}

fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
    E {
        link: target.as_ref().to_vec(),
        mode: 0o777,
        ..e(name, EntryType::Symlink)
    }
}

fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
    E {
        link: target.as_ref().to_vec(),
        ..e(name, EntryType::Link)
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl Tar {
    fn new() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn add(mut self, e: E) -> Self {
        let mut pax = e.pax.clone();
        if e.name.len() > 100 {
            pax.push(("path".into(), e.name.clone()));
        }
        if !pax.is_empty() {
            let mut data = Vec::new();
            for (k, v) in &pax {
                data.extend(pax_record(k, v));
            }
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            self.b.append(&h, data.as_slice()).unwrap();
        }
        let mut h = Header::new_ustar();
        let n = e.name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&e.name[..n]);
        let l = e.link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&e.link[..l]);
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
        if let Some(flag) = e.flag {
            h.as_old_mut().linkflag[0] = flag;
        }
        h.set_cksum();
        self.b.append(&h, e.data.as_slice()).unwrap();
        self
    }

    fn build(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn tar_of(entries: impl IntoIterator<Item = E>) -> Vec<u8> {
    entries.into_iter().fold(Tar::new(), Tar::add).build()
}

fn meta(p: impl AsRef<Path>) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(Errno::NODATA) => None,
        Err(e) => panic!("getxattr {}: {e}", p.display()),
    }
}

#[test]
fn dotdot_escape_is_rejected_and_nothing_written_outside() {
    let fx = fixture();
    for name in [
        "../sentinel/evil",
        "../sentinel/keep",
        "a/../../sentinel/keep",
        "/../sentinel/keep",
    ] {
        let tar = tar_of([file("ok", "fine"), file(name, "pwned")]);
        let err = fx.unpack_checked(&tar).unwrap_err();
        assert!(
            matches!(err, ExtractError::PathEscape { .. }),
            "{name}: {err}"
        );
        assert!(
            err.to_string().contains(name),
            "error names the entry: {err}"
        );
        fs::remove_dir_all(&fx.dest).unwrap();
        fs::create_dir(&fx.dest).unwrap();
    }
    // `..` that stays inside is only cleaned.
    let tar = tar_of([file("a/../b", "inside")]);
    fx.unpack_checked(&tar).unwrap();
    assert_eq!(fs::read(fx.dest.join("b")).unwrap(), b"inside");
    assert!(!fx.dest.join("a").exists());
}

#[test]
fn absolute_path_is_contained() {
    let fx = fixture();
    let tar = tar_of([file("/etc/x", "contained"), file("./etc/y", "too")]);
    let stats = fx.unpack_checked(&tar).unwrap();
    assert_eq!(
        stats,
        UnpackStats {
            entries: 2,
            bytes: 12
        }
    );
    assert_eq!(fs::read(fx.dest.join("etc/x")).unwrap(), b"contained");
    assert_eq!(fs::read(fx.dest.join("etc/y")).unwrap(), b"too");
    // Missing parents are 0755 root directories.
    let m = meta(fx.dest.join("etc"));
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o755);
    assert_eq!((m.uid(), m.gid()), (0, 0));
}

#[test]
fn absolute_symlink_out_then_write_through_stays_inside() {
    let fx = fixture();
    let outside = fx.sentinel.to_str().unwrap().to_owned();
    // A file name under /tmp that must not appear there.
    let unique = fx.outer.file_name().unwrap().to_str().unwrap().to_owned() + "-escaped";
    let tar = tar_of([
        symlink("evil", &outside),
        file("evil/file", "through"),
        file("evil/keep", "overwritten?"),
        symlink("hosttmp", "/tmp"),
        file(format!("hosttmp/{unique}"), "through /tmp"),
        dir("evil/newdir"),
    ]);
    fx.unpack_checked(&tar).unwrap();
    assert!(!Path::new("/tmp").join(&unique).exists());
    // Resolved as in a chroot: the absolute target is taken relative to dest.
    let inside = fx.dest.join(outside.trim_start_matches('/'));
    assert_eq!(fs::read(inside.join("file")).unwrap(), b"through");
    assert_eq!(fs::read(inside.join("keep")).unwrap(), b"overwritten?");
    assert!(inside.join("newdir").is_dir());
    assert_eq!(
        fs::read(fx.dest.join("tmp").join(&unique)).unwrap(),
        b"through /tmp"
    );
    assert!(meta(fx.dest.join("evil")).file_type().is_symlink());
    assert_eq!(
        fs::read_link(fx.dest.join("evil")).unwrap(),
        Path::new(&outside)
    );
}

#[test]
fn relative_symlink_climbing_out_then_write_through_stays_inside() {
    let fx = fixture();
    let tar = tar_of([
        symlink("up", "../../.."),
        file("up/sentinel/keep", "pwned"),
        dir("a/b/"),
        symlink("a/b/deep", "../../../../../sentinel"),
        file("a/b/deep/keep", "pwned too"),
        symlink("a/dot", "."),
        file("a/dot/dot/dot/x", "loop-free"),
    ]);
    fx.unpack_checked(&tar).unwrap();
    // `..` stops at the root, as in a chroot.
    assert_eq!(
        fs::read(fx.dest.join("sentinel/keep")).unwrap(),
        b"pwned too"
    );
    assert_eq!(fs::read(fx.dest.join("a/x")).unwrap(), b"loop-free");
    assert_eq!(
        fs::read_link(fx.dest.join("up")).unwrap(),
        Path::new("../../..")
    );
}

#[test]
fn symlink_loops_and_file_parents_are_errors() {
    let fx = fixture();
    let tar = tar_of([symlink("a", "b"), symlink("b", "a"), file("a/x", "")]);
    let err = fx.unpack_checked(&tar).unwrap_err();
    assert!(matches!(err, ExtractError::SymlinkLoop { .. }), "{err}");
    fs::remove_dir_all(&fx.dest).unwrap();
    fs::create_dir(&fx.dest).unwrap();
    let tar = tar_of([file("f", "x"), file("f/x", "")]);
    let err = fx.unpack_checked(&tar).unwrap_err();
    assert!(matches!(err, ExtractError::NotADirectory { .. }), "{err}");
    assert!(err.to_string().contains("f/x"), "{err}");
}

#[test]
fn hard_links_out_of_the_root_are_rejected() {
    let fx = fixture();
    let passwd_links = meta("/etc/passwd").nlink();
    let keep = fx.sentinel.join("keep");
    let cases: Vec<(Vec<E>, &str)> = vec![
        (vec![hardlink("pw", "/etc/passwd")], "missing"),
        (vec![hardlink("pw", "../../outside")], "escape"),
        (vec![hardlink("pw", "../sentinel/keep")], "escape"),
        (
            vec![
                symlink("out", fx.sentinel.to_str().unwrap()),
                hardlink("pw", "out/keep"),
            ],
            "missing",
        ),
        (
            vec![symlink("up", "../.."), hardlink("pw", "up/etc/passwd")],
            "missing",
        ),
        (vec![hardlink("pw", "nothing/here")], "missing"),
    ];
    for (entries, want) in cases {
        let err = fx.unpack_checked(&tar_of(entries)).unwrap_err();
        match want {
            "missing" => assert!(
                matches!(err, ExtractError::HardLinkTargetMissing { .. }),
                "{err}"
            ),
            _ => assert!(matches!(err, ExtractError::HardLinkEscape { .. }), "{err}"),
        }
        assert!(err.to_string().contains("pw"), "{err}");
        assert!(!fx.dest.join("pw").exists());
        fs::remove_dir_all(&fx.dest).unwrap();
        fs::create_dir(&fx.dest).unwrap();
    }
    assert_eq!(meta("/etc/passwd").nlink(), passwd_links);
    assert_eq!(meta(&keep).nlink(), 1);
}

#[test]
fn hard_link_inside_shares_the_inode() {
    let fx = fixture();
    let tar = tar_of([
        file("usr/bin/perl", "#!perl"),
        hardlink("usr/bin/perl5.36", "usr/bin/perl"),
        hardlink("/usr/bin/perl-abs", "/usr/bin/perl"),
        symlink("bin", "usr/bin"),
        hardlink("via-symlink", "bin/perl"),
        // Listed twice: a no-op, not an error.
        hardlink("usr/bin/perl5.36", "usr/bin/perl"),
    ]);
    fx.unpack_checked(&tar).unwrap();
    let a = meta(fx.dest.join("usr/bin/perl"));
    for other in ["usr/bin/perl5.36", "usr/bin/perl-abs", "via-symlink"] {
        assert_eq!(meta(fx.dest.join(other)).ino(), a.ino(), "{other}");
    }
    assert_eq!(meta(fx.dest.join("usr/bin/perl")).nlink(), 4);
}

#[test]
fn device_nodes_and_fifos_are_created_inside() {
    let fx = fixture();
    let tar = tar_of([
        E {
            dev: (1, 3),
            mode: 0o666,
            ..e("dev/null", EntryType::Char)
        },
        E {
            dev: (7, 0),
            mode: 0o660,
            gid: 6,
            ..e("dev/loop0", EntryType::Block)
        },
        E {
            mode: 0o600,
            ..e("run/fifo", EntryType::Fifo)
        },
        // A device over a symlink to outside replaces the symlink.
        symlink("dev/zero", fx.sentinel.join("keep").to_str().unwrap()),
        E {
            dev: (1, 5),
            mode: 0o666,
            ..e("dev/zero", EntryType::Char)
        },
    ]);
    fx.unpack_checked(&tar).unwrap();
    let null = meta(fx.dest.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = meta(fx.dest.join("dev/loop0"));
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), rustix::fs::makedev(7, 0));
    assert_eq!((lp.mode() & 0o7777, lp.gid()), (0o660, 6));
    let fifo = meta(fx.dest.join("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o600);
    let zero = meta(fx.dest.join("dev/zero"));
    assert!(zero.file_type().is_char_device());
    assert_eq!(zero.rdev(), rustix::fs::makedev(1, 5));
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let fx = fixture();
    let tar = tar_of([
        dir("etc/"),
        file("etc/.wh.passwd", ""),
        dir("usr/"),
        file("usr/lib/x", "kept"),
        file("usr/.wh..wh..opq", ""),
        // Opaque marker in a directory not listed before: created.
        file("var/cache/.wh..wh..opq", ""),
        // Opaque root.
        file(".wh..wh..opq", ""),
        // Whiteout of something this very layer created: replaced.
        file("opt/app/data", "old"),
        dir("opt/app/sub/"),
        file("opt/.wh.app", ""),
        // aufs metadata: skipped.
        file(".wh..wh.plnk/123.456", "hardlink store"),
        file(".wh..wh.aufs", ""),
    ]);
    let stats = fx.unpack_checked(&tar).unwrap();
    assert_eq!(stats.entries, 12);
    let wh = meta(fx.dest.join("etc/passwd"));
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!fx.dest.join("etc/.wh.passwd").exists());
    let app = meta(fx.dest.join("opt/app"));
    assert!(app.file_type().is_char_device());
    assert_eq!(app.rdev(), 0);
    for d in ["usr", "var/cache", ""] {
        let p = fx.dest.join(d);
        assert_eq!(
            xattr(&p, "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{d}"
        );
    }
    assert_eq!(xattr(&fx.dest.join("etc"), "trusted.overlay.opaque"), None);
    assert!(!fx.dest.join("usr/.wh..wh..opq").exists());
    assert_eq!(fs::read(fx.dest.join("usr/lib/x")).unwrap(), b"kept");
    assert!(!fx.dest.join(".wh..wh.plnk").exists());
    assert!(!fx.dest.join(".wh..wh.aufs").exists());
    // A whiteout naming nothing is an error that names it.
    fs::remove_dir_all(&fx.dest).unwrap();
    fs::create_dir(&fx.dest).unwrap();
    let err = fx
        .unpack_checked(&tar_of([file("a/.wh..", "")]))
        .unwrap_err();
    assert!(err.to_string().contains("a/.wh.."), "{err}");
}

#[test]
fn later_entries_replace_earlier_ones_without_writing_through() {
    let fx = fixture();
    let keep = fx.sentinel.join("keep");
    let tar = tar_of([
        symlink("f", keep.to_str().unwrap()),
        file("f", "replaced the symlink"),
        symlink("d", fx.sentinel.to_str().unwrap()),
        dir("d/"),
        file("d/x", "in a real dir"),
        dir("t/"),
        file("t/inner/deep", "gone"),
        file("t", "file over dir tree"),
        file("same", "one"),
        file("same", "two"),
        file("l", "plain"),
        symlink("l", "/etc/shadow"),
        dir("kept/"),
        file("kept/child", "survives"),
        E {
            mode: 0o700,
            ..dir("kept/")
        },
    ]);
    fx.unpack_checked(&tar).unwrap();
    assert!(meta(fx.dest.join("f")).is_file());
    assert_eq!(
        fs::read(fx.dest.join("f")).unwrap(),
        b"replaced the symlink"
    );
    assert!(meta(fx.dest.join("d")).is_dir());
    assert_eq!(fs::read(fx.dest.join("d/x")).unwrap(), b"in a real dir");
    assert_eq!(fs::read(fx.dest.join("t")).unwrap(), b"file over dir tree");
    assert_eq!(fs::read(fx.dest.join("same")).unwrap(), b"two");
    assert_eq!(
        fs::read_link(fx.dest.join("l")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert_eq!(fs::read(fx.dest.join("kept/child")).unwrap(), b"survives");
    assert_eq!(meta(fx.dest.join("kept")).mode() & 0o7777, 0o700);
}

#[test]
fn modes_are_exact_including_special_bits() {
    let fx = fixture();
    let tar = tar_of([
        E {
            mode: 0o4755,
            ..file("bin/su", "su")
        },
        E {
            mode: 0o2755,
            ..file("bin/wall", "wall")
        },
        E {
            mode: 0o0000,
            ..file("etc/shadow", "secret")
        },
        E {
            mode: 0o0777,
            ..file("bin/all", "")
        },
        E {
            mode: 0o1777,
            ..dir("tmp/")
        },
        E {
            mode: 0o2775,
            ..dir("srv/")
        },
        E {
            mode: 0o0555,
            ..dir("ro/")
        },
        file("ro/inside", "written after its dir became read-only"),
        E {
            mode: 0o4755,
            uid: 1000,
            ..file("bin/suid-user", "")
        },
    ]);
    fx.unpack_checked(&tar).unwrap();
    for (p, want) in [
        ("bin/su", 0o4755),
        ("bin/wall", 0o2755),
        ("etc/shadow", 0o0000),
        ("bin/all", 0o0777),
        ("tmp", 0o1777),
        ("srv", 0o2775),
        ("ro", 0o0555),
        ("ro/inside", 0o644),
        ("bin/suid-user", 0o4755),
    ] {
        assert_eq!(meta(fx.dest.join(p)).mode() & 0o7777, want, "{p}");
    }
    assert_eq!(fs::read(fx.dest.join("etc/shadow")).unwrap(), b"secret");
}

#[test]
fn owners_are_kept() {
    let fx = fixture();
    let tar = tar_of([
        E {
            uid: 1234,
            gid: 5678,
            ..file("home/u/file", "x")
        },
        E {
            uid: 42,
            gid: 43,
            ..dir("home/u/")
        },
        E {
            uid: 7,
            gid: 8,
            ..symlink("home/u/link", "/nowhere")
        },
        E {
            uid: 65534,
            gid: 65534,
            ..file("nobody", "")
        },
        E {
            uid: 3_000_000,
            gid: 3_000_001,
            ..file("big-ids", "")
        },
    ]);
    fx.unpack_checked(&tar).unwrap();
    let ids = |p: &str| {
        let m = meta(fx.dest.join(p));
        (m.uid(), m.gid())
    };
    assert_eq!(ids("home/u/file"), (1234, 5678));
    assert_eq!(ids("home/u"), (42, 43));
    assert_eq!(ids("home/u/link"), (7, 8));
    assert_eq!(ids("nobody"), (65534, 65534));
    assert_eq!(ids("big-ids"), (3_000_000, 3_000_001));
    assert_eq!(ids("home"), (0, 0));
}

#[test]
fn setgid_directories_do_not_leak_their_group_or_bit() {
    let fx = fixture();
    let tar = tar_of([
        E { mode: 0o2775, gid: 50, ..dir("shared/") },
        file("shared/root-file", "x"),
        dir("shared/sub/"),
        E { gid: 50, ..file("shared/staff-file", "y") },
        E { mode: 0o2755, gid: 0, ..dir("own/") },
        dir("own/plain/"),
        file("implicit/parent/of/file", ""),
    ]);
    fx.unpack_checked(&tar).unwrap();
    let m = |p: &str| {
        let m = meta(fx.dest.join(p));
        (m.mode() & 0o7777, m.gid())
    };
    assert_eq!(m("shared"), (0o2775, 50));
    assert_eq!(m("shared/root-file"), (0o644, 0));
    assert_eq!(m("shared/sub"), (0o755, 0));
    assert_eq!(m("shared/staff-file"), (0o644, 50));
    assert_eq!(m("own"), (0o2755, 0));
    assert_eq!(m("own/plain"), (0o755, 0));
    assert_eq!(m("implicit/parent/of"), (0o755, 0));
}

#[test]
fn mtimes_on_files_dirs_symlinks_and_the_root() {
    let fx = fixture();
    let tar = tar_of([
        E {
            mtime: 1_000_000_001,
            ..dir("./")
        },
        E {
            mtime: 1_100_000_000,
            ..dir("d/")
        },
        E {
            mtime: 1_100_000_001,
            ..dir("d/e/")
        },
        E {
            mtime: 1_000_000_000,
            ..file("d/e/f", "x")
        },
        E {
            mtime: 1_200_000_000,
            ..symlink("d/l", "/bin/busybox")
        },
        // Created after its parents' entries: must not disturb their times.
        file("d/e/late", "y"),
        E {
            pax: vec![("mtime".into(), b"1300000000.25".to_vec())],
            ..file("d/frac", "z")
        },
    ]);
    fx.unpack_checked(&tar).unwrap();
    let mt = |p: &str| {
        let m = meta(fx.dest.join(p));
        (m.mtime(), m.mtime_nsec())
    };
    assert_eq!(mt("d/e/f"), (1_000_000_000, 0));
    assert_eq!(mt("d"), (1_100_000_000, 0));
    assert_eq!(mt("d/e"), (1_100_000_001, 0));
    assert_eq!(mt("d/l"), (1_200_000_000, 0));
    assert_eq!(mt("d/frac"), (1_300_000_000, 250_000_000));
    assert_eq!(mt(""), (1_000_000_001, 0));
    // Access times too (checked on a tree nobody has read yet).
    let fresh = fixture();
    unpack_layer(tar.as_slice(), &fresh.dest).unwrap();
    assert_eq!(meta(fresh.dest.join("d/e/f")).atime(), 1_000_000_000);
}

#[test]
fn pax_xattrs_are_applied() {
    let fx = fixture();
    // VFS_CAP_REVISION_2, CAP_NET_BIND_SERVICE permitted+effective.
    let mut cap = vec![0x01, 0x00, 0x00, 0x02];
    cap.extend([0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let tar = tar_of([
        E {
            pax: vec![
                ("SCHILY.xattr.user.note".into(), b"hello".to_vec()),
                ("SCHILY.xattr.security.capability".into(), cap.clone()),
                // Overlay-private: never taken from a layer.
                ("SCHILY.xattr.trusted.overlay.opaque".into(), b"y".to_vec()),
            ],
            mode: 0o755,
            uid: 5,
            ..file("usr/bin/ping", "ping")
        },
        E {
            pax: vec![("SCHILY.xattr.trusted.mark".into(), b"dir".to_vec())],
            ..dir("data/")
        },
        E {
            pax: vec![("SCHILY.xattr.trusted.mark".into(), b"link".to_vec())],
            ..symlink("lnk", "data")
        },
    ]);
    fx.unpack_checked(&tar).unwrap();
    let ping = fx.dest.join("usr/bin/ping");
    assert_eq!(xattr(&ping, "user.note").as_deref(), Some(&b"hello"[..]));
    // Set after the chown, which would have cleared it.
    assert_eq!(xattr(&ping, "security.capability"), Some(cap));
    assert_eq!(xattr(&ping, "trusted.overlay.opaque"), None);
    assert_eq!(
        xattr(&fx.dest.join("data"), "trusted.mark").as_deref(),
        Some(&b"dir"[..])
    );
    assert_eq!(
        xattr(&fx.dest.join("lnk"), "trusted.mark").as_deref(),
        Some(&b"link"[..])
    );
}

#[test]
fn long_names_and_old_style_directories() {
    let fx = fixture();
    let long = format!("{}/{}", "d".repeat(150), "f".repeat(200));
    let old_dir = E {
        flag: Some(0),
        ..file("olddir/", "")
    };
    let tar = tar_of([file(&long, "long"), old_dir, file("olddir/x", "")]);
    fx.unpack_checked(&tar).unwrap();
    assert_eq!(fs::read(fx.dest.join(&long)).unwrap(), b"long");
    assert!(meta(fx.dest.join("olddir")).is_dir());
    // The GNU long-name form, as the tar crate writes it.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, format!("gnu/{}", "g".repeat(200)), &b"gnu"[..])
        .unwrap();
    let fx = fixture();
    fx.unpack_checked(&b.into_inner().unwrap()).unwrap();
    assert_eq!(
        fs::read(fx.dest.join(format!("gnu/{}", "g".repeat(200)))).unwrap(),
        b"gnu"
    );
}

#[test]
fn truncated_and_garbage_input_are_errors() {
    let fx = fixture();
    let tar = tar_of([file("a", vec![7u8; 10_000]), file("b", "second")]);
    // Inside a's data.
    let err = fx.unpack_checked(&tar[..512 + 5000]).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::Truncated {
                index: 1,
                expected: 10_000,
                got: 5000,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("layer tar is truncated or corrupted at entry 1"),
        "{err}"
    );
    fs::remove_dir_all(&fx.dest).unwrap();
    fs::create_dir(&fx.dest).unwrap();
    // Inside b's header.
    let err = fx.unpack_checked(&tar[..512 + 10_240 + 100]).unwrap_err();
    assert!(
        matches!(err, ExtractError::Corrupt { index: 2, .. }),
        "{err}"
    );
    fs::remove_dir_all(&fx.dest).unwrap();
    fs::create_dir(&fx.dest).unwrap();
    // Inside the padding after a's data: the next header is missing mid-skip.
    let err = fx.unpack_checked(&tar[..512 + 10_100]).unwrap_err();
    assert!(
        matches!(err, ExtractError::Corrupt { index: 2, .. }),
        "{err}"
    );
    fs::remove_dir_all(&fx.dest).unwrap();
    fs::create_dir(&fx.dest).unwrap();
    // Not a tar at all.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 13) as u8).collect();
    let err = fx.unpack_checked(&garbage).unwrap_err();
    assert!(
        matches!(err, ExtractError::Corrupt { index: 1, .. }),
        "{err}"
    );
    // A header whose checksum is wrong.
    let mut bad = tar.clone();
    bad[0] ^= 1;
    assert!(matches!(
        fx.unpack_checked(&bad),
        Err(ExtractError::Corrupt { .. })
    ));
    // An empty stream is an empty layer.
    assert_eq!(fx.unpack_checked(&[]).unwrap(), UnpackStats::default());
}

#[test]
fn unsupported_and_invalid_entries_name_themselves() {
    let fx = fixture();
    let err = fx
        .unpack_checked(&tar_of([e("vol", EntryType::new(b'V'))]))
        .unwrap_err();
    assert!(
        matches!(err, ExtractError::UnsupportedType { flag: 'V', .. }),
        "{err}"
    );
    assert!(err.to_string().contains("vol"), "{err}");
    let err = fx.unpack_checked(&tar_of([file("./", "")])).unwrap_err();
    assert!(matches!(err, ExtractError::InvalidPath { .. }), "{err}");
    let err = fx.unpack_checked(&tar_of([symlink("s", "")])).unwrap_err();
    assert!(matches!(err, ExtractError::InvalidPath { .. }), "{err}");
    let err = fx
        .unpack_checked(&tar_of([E {
            pax: vec![("path".into(), b"a\0b".to_vec())],
            ..file("x", "")
        }]))
        .unwrap_err();
    assert!(matches!(err, ExtractError::InvalidPath { .. }), "{err}");
    let err = fx
        .unpack_checked(&tar_of([E {
            pax: vec![("mtime".into(), b"soon".to_vec())],
            ..file("x", "")
        }]))
        .unwrap_err();
    assert!(
        matches!(err, ExtractError::Header { field: "mtime", .. }),
        "{err}"
    );
}

#[test]
fn stats_count_entries_and_bytes() {
    let fx = fixture();
    let tar = tar_of([
        dir("a/"),
        file("a/one", vec![1u8; 3000]),
        file("a/two", vec![2u8; 2 * 1024 * 1024 + 17]),
        symlink("a/s", "one"),
    ]);
    let stats = fx.unpack_checked(&tar).unwrap();
    assert_eq!(
        stats,
        UnpackStats {
            entries: 4,
            bytes: 3000 + 2 * 1024 * 1024 + 17
        }
    );
    assert_eq!(
        fs::read(fx.dest.join("a/two")).unwrap(),
        vec![2u8; 2 * 1024 * 1024 + 17]
    );
}

/// Names built from components that matter to path handling.
fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    let comp = prop::sample::select(vec![
        "..",
        ".",
        "",
        "a",
        "b",
        "l",
        "/",
        ".wh.a",
        ".wh.l",
        ".wh..wh..opq",
        ".wh..wh.plnk",
        "tmp",
    ]);
    prop::collection::vec(comp, 1..6).prop_map(|c| c.join("/").into_bytes())
}

/// Placeholder for the sentinel's absolute path, filled in per test case.
const OUTSIDE: &[u8] = b"@OUTSIDE@";

fn arb_entry() -> impl Strategy<Value = E> {
    let target = prop_oneof![
        arb_name(),
        Just(OUTSIDE.to_vec()),
        Just(b"/".to_vec()),
        Just(b"/tmp".to_vec()),
        Just(b"../../..".to_vec()),
    ];
    (
        arb_name(),
        0..7u8,
        target,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(name, kind, target, data)| match kind {
            0 | 1 => file(name, data),
            2 => dir(name),
            3 | 4 => symlink(name, target),
            5 => hardlink(name, target),
            _ => E {
                dev: (1, 3),
                ..e(name, EntryType::Char)
            },
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_or_escape(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let fx = fixture();
        let before = snapshot(&fx.sentinel);
        let _ = unpack_layer(bytes.as_slice(), &fx.dest);
        // A valid header followed by random bytes.
        let mut tar = tar_of([file("x", "y")]);
        tar.extend_from_slice(&bytes);
        let _ = unpack_layer(tar.as_slice(), &fx.dest);
        fx.assert_outside_untouched(&before);
    }

    #[test]
    fn random_entries_never_panic_or_escape(entries in prop::collection::vec(arb_entry(), 1..12)) {
        let fx = fixture();
        let outside = fx.sentinel.to_str().unwrap().as_bytes().to_vec();
        let entries = entries.into_iter().map(|mut e| {
            if e.link == OUTSIDE {
                e.link = outside.clone();
            }
            e
        });
        // Both resolvers, same outcome, nothing outside changed (checked inside).
        let _ = fx.unpack_checked(&tar_of(entries));
    }
}
