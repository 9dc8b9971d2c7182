//! Whatever the tar says, nothing is written outside the destination.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::*;

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
