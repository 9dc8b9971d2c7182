//! Real peers read and write what berth stores: skopeo and umoci on the store's OCI layout, and
//! skopeo's docker-archive/oci-archive files through `load`/`save`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Env, have};
use serde_json::Value;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config_digest_of(env: &Env, name: &str) -> String {
    env.ok(&["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

#[test]
fn skopeo_inspects_the_store_layout() {
    if !have("skopeo") {
        return;
    }
    let env = Env::new();
    let id = env.import_busybox("busybox");
    let layout = env.root().join("images");
    let out = run(Command::new("skopeo").arg("inspect").arg(format!(
        "oci:{}:docker.io/library/busybox:latest",
        layout.display()
    )));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let cfg = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--config"])
        .arg(format!(
            "oci:{}:docker.io/library/busybox:latest",
            layout.display()
        )));
    let d = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cfg.as_bytes()))
    );
    assert_eq!(d, id);
}

#[test]
fn umoci_unpacks_the_same_files_as_the_rootfs_tar() {
    if !have("umoci") {
        return;
    }
    let env = Env::new();
    env.import_busybox("busybox");
    let bundle = env.path("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!(
            "{}:docker.io/library/busybox:latest",
            env.root().join("images").display()
        ))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    // Every entry of the tar is in the unpacked tree with the same type, mode and content.
    let mut ar = tar::Archive::new(std::fs::File::open(env.path("busybox.tar")).unwrap());
    let mut n = 0;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        let p = rootfs.join(&path);
        let md =
            std::fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        use std::os::unix::fs::PermissionsExt;
        match e.header().entry_type() {
            tar::EntryType::Directory => assert!(md.is_dir(), "{}", path.display()),
            tar::EntryType::Symlink => {
                assert_eq!(
                    std::fs::read_link(&p).unwrap(),
                    e.link_name().unwrap().unwrap().into_owned()
                );
            }
            _ => {
                let mut want = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut want).unwrap();
                assert_eq!(std::fs::read(&p).unwrap(), want, "{}", path.display());
                assert_eq!(
                    md.permissions().mode() & 0o7777,
                    e.header().mode().unwrap() & 0o7777
                );
            }
        }
        n += 1;
    }
    assert!(n > 10);
}

fn skopeo_copy(from: &str, to: &str) {
    run(Command::new("skopeo").args(["copy", "--quiet", from, to]));
}

#[test]
fn skopeo_archives_load_with_the_same_config_digest() {
    if !have("skopeo") {
        return;
    }
    let env = Env::new();
    let id = env.import_busybox("busybox");
    let src = format!(
        "oci:{}:docker.io/library/busybox:latest",
        env.root().join("images").display()
    );
    let da = env.path("docker-archive.tar");
    let oa = env.path("oci-archive.tar");
    skopeo_copy(
        &src,
        &format!("docker-archive:{}:busybox:latest", da.display()),
    );
    skopeo_copy(
        &src,
        &format!("oci-archive:{}:busybox:latest", oa.display()),
    );
    for archive in [&da, &oa] {
        let other = Env::new();
        let out = other.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert!(
            out.contains("busybox:latest"),
            "{}: {out}",
            archive.display()
        );
        assert_eq!(
            config_digest_of(&other, "busybox:latest"),
            id,
            "{}",
            archive.display()
        );
        other.check_store();
    }
}

#[test]
fn berth_save_is_read_by_skopeo_as_docker_and_oci_archive() {
    if !have("skopeo") {
        return;
    }
    let env = Env::new();
    let id = env.import_busybox("busybox");
    let saved = env.path("saved.tar");
    env.ok(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    let inspected: Value = serde_json::from_str(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", saved.display()))))
    .unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
    for (n, src) in [
        format!("docker-archive:{}", saved.display()),
        format!("oci-archive:{}", saved.display()),
    ]
    .iter()
    .enumerate()
    {
        let dir = env.path(&format!("copy{n}"));
        skopeo_copy(src, &format!("oci:{}:t", dir.display()));
        let cfg = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--config"])
            .arg(format!("oci:{}:t", dir.display())));
        let d = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cfg.as_bytes()))
        );
        assert_eq!(d, id, "{src}");
        assert!(Path::new(&dir).join("index.json").exists());
    }
}
