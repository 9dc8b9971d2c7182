//! What each kind of entry becomes: links, whiteouts, modes, owners, times, xattrs.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::*;

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
        E {
            mode: 0o2775,
            gid: 50,
            ..dir("shared/")
        },
        file("shared/root-file", "x"),
        dir("shared/sub/"),
        E {
            gid: 50,
            ..file("shared/staff-file", "y")
        },
        E {
            mode: 0o2755,
            gid: 0,
            ..dir("own/")
        },
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
