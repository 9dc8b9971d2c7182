//! Seccomp filters compiled once and kept under `ROOT/seccomp/` (runner::seccomp::cache): a
//! changed profile or capability set gets its own filter, and a damaged cache file is compiled
//! again, never loaded.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::Env;

fn env_with_image() -> Env {
    let env = Env::new();
    env.import_busybox("bb:1");
    env
}

/// A profile letting everything through except mkdir, answered with `errno`; `excludes_caps`
/// leaves the rule out for a container holding any of them.
fn no_mkdir(errno: u32, excludes_caps: &[&str]) -> String {
    let caps: Vec<String> = excludes_caps.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": {errno},
                "excludes": {{"caps": [{}]}}}}]}}"#,
        caps.join(", ")
    )
}

/// `mkdir /tmp/x` in a container run with `flags`: "ok" or busybox's error message.
fn mkdir(env: &Env, flags: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend(flags);
    args.extend(["bb:1", "mkdir", "/tmp/x"]);
    let out = env.berth().args(&args).output().unwrap();
    if out.status.success() {
        return "ok".into();
    }
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The cache files, sorted.
fn cache_files(env: &Env) -> Vec<PathBuf> {
    let dir = env.root().join("seccomp");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bpf"))
        .collect();
    files.sort();
    files
}

fn with_profile(path: &Path) -> [String; 2] {
    [
        "--security-opt".into(),
        format!("seccomp={}", path.display()),
    ]
}

#[test]
fn a_changed_profile_or_capability_set_gets_its_own_filter() {
    let env = env_with_image();
    let profile = env.path("profile.json");
    let opt = with_profile(&profile);
    let opt: Vec<&str> = opt.iter().map(String::as_str).collect();

    std::fs::write(&profile, no_mkdir(13, &[])).unwrap();
    let out = mkdir(&env, &opt);
    assert!(out.contains("Permission denied"), "EACCES profile: {out}");
    let first = cache_files(&env);
    assert_eq!(first.len(), 1, "one filter compiled: {first:?}");
    let mode = std::fs::metadata(env.root().join("seccomp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the cache directory is private");

    // The same file, now with another answer: the second run sees the second rule.
    std::fs::write(&profile, no_mkdir(1, &[])).unwrap();
    let out = mkdir(&env, &opt);
    assert!(
        out.contains("Operation not permitted"),
        "EPERM profile: {out}"
    );
    assert_eq!(cache_files(&env).len(), 2);
    // And back: the first filter, from the cache.
    std::fs::write(&profile, no_mkdir(13, &[])).unwrap();
    let out = mkdir(&env, &opt);
    assert!(out.contains("Permission denied"), "EACCES again: {out}");
    assert_eq!(cache_files(&env).len(), 2);

    // The same profile under two capability sets: the rule applies only without CAP_CHOWN.
    // (EOPNOTSUPP: with the rule in, the converted filter differs from the ones above.)
    std::fs::write(&profile, no_mkdir(95, &["CAP_CHOWN"])).unwrap();
    assert_eq!(
        mkdir(&env, &opt),
        "ok",
        "default capabilities hold CAP_CHOWN"
    );
    let mut dropped = opt.clone();
    dropped.extend(["--cap-drop", "CHOWN"]);
    let out = mkdir(&env, &dropped);
    assert!(out.contains("not supported"), "without CAP_CHOWN: {out}");
    assert_eq!(mkdir(&env, &opt), "ok", "with CAP_CHOWN again");
    assert_eq!(cache_files(&env).len(), 4);
}

#[test]
fn a_damaged_cache_file_is_compiled_again_not_loaded() {
    let env = env_with_image();
    let (eacces, eperm) = (env.path("eacces.json"), env.path("eperm.json"));
    std::fs::write(&eacces, no_mkdir(13, &[])).unwrap();
    std::fs::write(&eperm, no_mkdir(1, &[])).unwrap();
    let (a, b) = (with_profile(&eacces), with_profile(&eperm));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();

    assert!(mkdir(&env, &a).contains("Permission denied"));
    let files = cache_files(&env);
    assert_eq!(files.len(), 1);
    let file = files[0].clone();
    let good = std::fs::read(&file).unwrap();
    assert!(mkdir(&env, &b).contains("Operation not permitted"));
    let other = cache_files(&env)
        .into_iter()
        .find(|f| *f != file)
        .expect("the second profile's file");
    let other = std::fs::read(other).unwrap();

    // The other profile's program, checksum and all, under this profile's name; its program
    // with this file's header; truncated; a flipped bit; empty; garbage.
    let mut swapped = good[..40].to_vec();
    swapped.extend_from_slice(&other[40..]);
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 0x08;
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("another profile's file", other.clone()),
        ("another profile's program", swapped),
        ("truncated", good[..good.len() - 5].to_vec()),
        ("one instruction short", good[..good.len() - 8].to_vec()),
        ("a flipped bit", flipped),
        ("empty", Vec::new()),
        ("garbage", b"not a filter".to_vec()),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&file, &bytes).unwrap();
        let out = mkdir(&env, &a);
        assert!(
            out.contains("Permission denied"),
            "{what}: the profile's own rule must apply: {out}"
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            good,
            "{what}: the file is compiled again and replaced"
        );
    }
    assert_eq!(cache_files(&env).len(), 2);
    let leftovers: Vec<_> = std::fs::read_dir(env.root().join("seccomp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}
