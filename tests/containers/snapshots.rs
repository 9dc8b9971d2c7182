//! Layers are unpacked once into shared snapshots; whiteouts work on a real overlay mount.

use crate::common;

use std::path::Path;

use common::Env;
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, path, *d).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A docker-archive with the given layers as one image tagged `tag`.
fn docker_archive(out: &Path, tag: &str, layers: &[&[u8]]) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cfg_name = format!("{}.json", &sha(&config)[7..]);
    let layer_names: Vec<String> = diff_ids
        .iter()
        .map(|d| format!("{}.tar", &d[7..]))
        .collect();
    let manifest =
        serde_json::json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": layer_names}]);
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add(&cfg_name, &config);
    for (n, l) in layer_names.iter().zip(layers) {
        add(n, l);
    }
    b.finish().unwrap();
}

struct Unmount<'a>(&'a Env, &'a str);
impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = self.0.berth().args(["image", "unmount", self.1]).output();
    }
}

#[test]
fn whiteouts_hide_lower_files_on_a_real_overlay_and_snapshots_are_shared() {
    let env = Env::new();
    let base = layer(&[
        ("etc/", None),
        ("etc/a", Some(b"A")),
        ("etc/b", Some(b"B")),
        ("opq/", None),
        ("opq/x", Some(b"X")),
    ]);
    let top = layer(&[
        ("etc/.wh.a", Some(b"")),
        ("etc/c", Some(b"C")),
        ("opq/", None),
        ("opq/.wh..wh..opq", Some(b"")),
        ("opq/y", Some(b"Y")),
    ]);
    docker_archive(&env.path("two.tar"), "layered:v1", &[&base, &top]);
    docker_archive(&env.path("one.tar"), "base:v1", &[&base]);
    env.ok(&["load", "-i", env.path("two.tar").to_str().unwrap()]);
    env.ok(&["load", "-i", env.path("one.tar").to_str().unwrap()]);

    let m = env.ok(&["image", "mount", "layered:v1"]);
    let _g1 = Unmount(&env, "layered:v1");
    let m = Path::new(m.trim());
    assert!(!m.join("etc/a").exists(), "whiteout did not hide etc/a");
    assert_eq!(std::fs::read(m.join("etc/b")).unwrap(), b"B");
    assert_eq!(std::fs::read(m.join("etc/c")).unwrap(), b"C");
    assert!(!m.join("opq/x").exists(), "opaque dir did not hide opq/x");
    assert_eq!(std::fs::read(m.join("opq/y")).unwrap(), b"Y");
    assert!(
        std::fs::write(m.join("etc/new"), b"x").is_err(),
        "image mount must be read-only"
    );

    let m1 = env.ok(&["image", "mount", "base:v1"]);
    let _g2 = Unmount(&env, "base:v1");
    assert_eq!(
        std::fs::read(Path::new(m1.trim()).join("etc/a")).unwrap(),
        b"A"
    );

    // The base layer was unpacked once and is shared: two snapshots for three layer uses.
    let snaps: Vec<_> = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snaps.iter().any(|s| s.to_str() == Some(&sha(&base)[7..])));
    env.check_store();

    // A mounted image is not removed underneath its mount.
    let err = env.fails(&["rmi", "layered:v1"]);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("image unmount"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    env.ok(&["image", "unmount", "layered:v1"]);
    env.ok(&["image", "unmount", "base:v1"]);
    env.ok(&["rmi", "layered:v1"]);
    // The top layer's snapshot went with its image; the shared one stays for base:v1.
    let snaps: Vec<_> = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .collect();
    assert_eq!(snaps.len(), 1);
    assert_eq!(
        snaps[0].as_ref().unwrap().file_name().to_str(),
        Some(&sha(&base)[7..])
    );
    env.check_store();
}

#[test]
fn a_damaged_snapshot_or_blob_is_reported_by_system_check() {
    let env = Env::new();
    let base = layer(&[("etc/", None), ("etc/a", Some(b"A")), ("etc/b", Some(b"B"))]);
    docker_archive(&env.path("one.tar"), "base:v1", &[&base]);
    env.ok(&["load", "-i", env.path("one.tar").to_str().unwrap()]);
    env.ok(&["image", "mount", "base:v1"]);
    env.ok(&["image", "unmount", "base:v1"]);
    env.check_store();
    let snap = env.root().join("snapshots").join(&sha(&base)[7..]);
    std::fs::write(snap.join("etc/a"), b"tampered").unwrap();
    let out = env.berth().args(["system", "check"]).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("etc/a"), "{text}");
    std::fs::write(snap.join("etc/a"), b"A").unwrap();
    env.check_store();
    // Flip a byte of the layer blob.
    let blob = env
        .root()
        .join("images/blobs/sha256")
        .join(&sha(&base)[7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let out = env.berth().args(["system", "check"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("is corrupt"));
}
