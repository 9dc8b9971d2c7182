//! `save`/`load` against skopeo: archives skopeo writes load with the same image ID and tag, and
//! archives `save` writes are read by skopeo both as docker-archive and as oci-archive.
//!
//! Needs `skopeo` on PATH. Without it the tests are skipped with a note, unless `CI` is set, where
//! a missing peer is a failure.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use berth_store::archive::{load, save};
use berth_store::digest::sha256_of;
use berth_store::oci_spec::image::{Descriptor, Digest, MediaType};
use berth_store::{Reference, Store};
use serde_json::json;

const CREATED: &str = "2024-05-01T12:00:00Z";

/// A temp dir for one test; `BERTH_TEST_KEEP=1` keeps it for a look after a failure.
fn workdir() -> tempfile::TempDir {
    let mut t = tempfile::tempdir().unwrap();
    if std::env::var_os("BERTH_TEST_KEEP").is_some() {
        t.disable_cleanup(true);
        eprintln!("keeping {}", t.path().display());
    }
    t
}

fn have(tool: &str) -> bool {
    match Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ if std::env::var_os("CI").is_some() => panic!("{tool} is required in CI"),
        _ => {
            eprintln!("skipping: {tool} is not installed");
            false
        }
    }
}

fn have_skopeo() -> bool {
    have("skopeo")
}

fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .expect("running a peer tool");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", &all)
}

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

struct Made {
    id: Digest,
    manifest: Digest,
}

/// A two-layer image tagged `busybox:latest`; `gzip_top` stores the second layer gzip-compressed
/// (as a pulled image has it).
fn make_busybox(s: &Store, gzip_top: bool) -> Made {
    let base = layer(&[
        ("bin/busybox", b"#!/bin/true\n"),
        ("etc/hostname", b"box\n"),
    ]);
    let top = layer(&[("etc/motd", b"welcome\n")]);
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (raw, compress) in [(&base, false), (&top, gzip_top)] {
        diff_ids.push(sha256_of(raw).to_string());
        let (bytes, mt) = if compress {
            (gzip(raw), MediaType::ImageLayerGzip)
        } else {
            (raw.clone(), MediaType::ImageLayer)
        };
        let (d, n) = s.blobs().put_bytes(&bytes).unwrap();
        descs.push(Descriptor::new(mt, n, d));
    }
    let config = serde_json::to_vec(&json!({
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": "test"}, {"created": CREATED, "created_by": "test"}],
    }))
    .unwrap();
    let new = s.write_image(&config, descs).unwrap();
    s.add_image(&new, &[Reference::parse("busybox:latest").unwrap()])
        .unwrap();
    Made {
        id: new.config,
        manifest: new.manifest,
    }
}

fn layout_ref(s: &Store) -> String {
    format!(
        "oci:{}:docker.io/library/busybox:latest",
        s.layout_dir().display()
    )
}

fn load_file(s: &Store, path: &Path) -> Vec<berth_store::archive::Loaded> {
    let mut f = std::fs::File::open(path).unwrap();
    load(s, &mut f).unwrap()
}

fn config_digest(transport_ref: &str) -> Digest {
    sha256_of(&skopeo(&["inspect", "--raw", "--config", transport_ref]))
}

#[test]
fn docker_archive_written_by_skopeo_loads() {
    if !have_skopeo() {
        return;
    }
    for gzip_top in [false, true] {
        let t = workdir();
        let a = Store::open(t.path().join("a")).unwrap();
        let made = make_busybox(&a, gzip_top);
        let x = t.path().join("x.tar");
        skopeo(&[
            "copy",
            &layout_ref(&a),
            &format!("docker-archive:{}:busybox:latest", x.display()),
        ]);

        let b = Store::open(t.path().join("b")).unwrap();
        let loaded = load_file(&b, &x);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id, made.id, "gzip_top={gzip_top}");
        let tags: Vec<String> = loaded[0].tags.iter().map(|t| t.to_string()).collect();
        assert_eq!(tags, ["docker.io/library/busybox:latest"]);
        let img = b.resolve_image("busybox:latest").unwrap();
        assert_eq!(img.id, made.id);
        assert_eq!(
            b.config_bytes(&img).unwrap(),
            a.blobs().read_verified(&made.id).unwrap()
        );
        // What we stored reads back through skopeo as well.
        assert_eq!(config_digest(&layout_ref(&b)), made.id);
    }
}

#[test]
fn oci_archive_written_by_skopeo_loads() {
    if !have_skopeo() {
        return;
    }
    let t = workdir();
    let a = Store::open(t.path().join("a")).unwrap();
    let made = make_busybox(&a, true);
    let x = t.path().join("x.tar");
    skopeo(&[
        "copy",
        &layout_ref(&a),
        &format!("oci-archive:{}:busybox:latest", x.display()),
    ]);

    let b = Store::open(t.path().join("b")).unwrap();
    let loaded = load_file(&b, &x);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, made.id);
    let tags: Vec<String> = loaded[0].tags.iter().map(|t| t.to_string()).collect();
    assert_eq!(tags, ["docker.io/library/busybox:latest"]);
    let img = b.resolve_image("busybox").unwrap();
    assert_eq!(img.id, made.id);
    // skopeo compresses the layers on the way, so the manifest is skopeo's, kept as it wrote it.
    let archive_ref = format!("oci-archive:{}:busybox:latest", x.display());
    assert_eq!(
        img.manifest,
        sha256_of(&skopeo(&["inspect", "--raw", &archive_ref]))
    );
}

#[test]
fn skopeo_reads_what_save_writes() {
    if !have_skopeo() {
        return;
    }
    for gzip_top in [false, true] {
        let t = workdir();
        let a = Store::open(t.path().join("a")).unwrap();
        let made = make_busybox(&a, gzip_top);
        let x = t.path().join("x.tar");
        let mut f = std::fs::File::create(&x).unwrap();
        save(&a, &["busybox".to_string()], &mut f).unwrap();
        drop(f);

        let docker = format!("docker-archive:{}", x.display());
        let inspect: serde_json::Value =
            serde_json::from_slice(&skopeo(&["inspect", &docker])).unwrap();
        assert_eq!(
            inspect["RepoTags"],
            json!([]),
            "docker-archive inspect lists no registry tags"
        );
        assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(2));
        assert_eq!(config_digest(&docker), made.id);

        // Kept as a Docker image, the config is copied byte for byte.
        let dir = t.path().join("d");
        skopeo(&["copy", &docker, &format!("dir:{}", dir.display())]);
        let copied: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(
            copied["config"]["digest"],
            made.id.to_string(),
            "gzip_top={gzip_top}"
        );
        // Converted to OCI, skopeo re-serializes the config: the same document, other bytes.
        let oci = t.path().join("o");
        let oci_ref = format!("oci:{}:t", oci.display());
        skopeo(&["copy", &docker, &oci_ref]);
        let ours: serde_json::Value =
            serde_json::from_slice(&a.blobs().read_verified(&made.id).unwrap()).unwrap();
        let theirs: serde_json::Value =
            serde_json::from_slice(&skopeo(&["inspect", "--raw", "--config", &oci_ref])).unwrap();
        assert_eq!(theirs, ours);

        let dir2 = t.path().join("d2");
        let dir2_ref = format!("oci:{}:t", dir2.display());
        let archive_ref = format!("oci-archive:{}:latest", x.display());
        skopeo(&["copy", &archive_ref, &dir2_ref]);
        assert_eq!(
            config_digest(&dir2_ref),
            made.id,
            "via oci-archive, gzip_top={gzip_top}"
        );
        // skopeo reads our manifest as it is in the store (its copy recompresses layers).
        let manifest = skopeo(&["inspect", "--raw", &archive_ref]);
        assert_eq!(sha256_of(&manifest), made.manifest);
    }
}

#[test]
fn umoci_unpacks_what_save_writes() {
    if !have("umoci") {
        return;
    }
    let t = workdir();
    let a = Store::open(t.path().join("a")).unwrap();
    make_busybox(&a, true);
    let mut archive = Vec::new();
    save(&a, &["busybox:latest".to_string()], &mut archive).unwrap();
    let layout = t.path().join("layout");
    tar::Archive::new(&archive[..]).unpack(&layout).unwrap();
    let layout_s = layout.display().to_string();
    let tags = String::from_utf8(run("umoci", &["ls", "--layout", &layout_s])).unwrap();
    assert_eq!(tags.trim(), "latest");
    let bundle = t.path().join("bundle");
    let image = format!("{layout_s}:latest");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &image,
            &bundle.display().to_string(),
        ],
    );
    let motd = std::fs::read(bundle.join("rootfs/etc/motd")).unwrap();
    assert_eq!(motd, b"welcome\n");
}
