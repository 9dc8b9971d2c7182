//! End-to-end tests of the image commands against a private state root.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Env, busybox_rootfs_tar};
use serde_json::Value;

fn inspect(env: &Env, name: &str) -> Value {
    let out = env.ok(&["inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

#[test]
fn help_lists_the_command_groups() {
    let env = Env::new();
    let out = env.ok(&["--help"]);
    for cmd in [
        "image", "system", "images", "import", "save", "load", "inspect", "version", "info",
    ] {
        assert!(out.contains(cmd), "--help lacks {cmd}: {out}");
    }
    assert!(env.ok(&["version"]).contains(env!("CARGO_PKG_VERSION")));
    let info: Value = serde_json::from_str(&env.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["Images"], 0);
    assert_eq!(info["BerthRootDir"], env.root().display().to_string());
}

#[test]
fn import_list_inspect_history() {
    let env = Env::new();
    let tar = env.path("rootfs.tar");
    busybox_rootfs_tar(&tar);
    let id = env.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-c",
        "ENV A=1 B=two",
        "-c",
        "WORKDIR /srv",
        "-c",
        "EXPOSE 80",
        "-c",
        "USER app",
        "-c",
        "LABEL team=core",
        "-m",
        "hello import",
        tar.to_str().unwrap(),
        "example/busybox:1.0",
    ]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let list = env.ok(&["images"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("example/busybox")
            && lines[1].contains("1.0")
            && lines[1].contains(&id[7..19]),
        "{list}"
    );

    assert_eq!(env.ok(&["images", "-q"]).trim(), &id[7..19]);
    assert_eq!(env.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    let row: Value = serde_json::from_str(
        env.ok(&["images", "--format", "json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(row["Repository"], "example/busybox");
    assert_eq!(row["Tag"], "1.0");
    assert_eq!(row["ID"], &id[7..19]);
    assert_eq!(
        env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .trim(),
        "example/busybox:1.0"
    );
    // No registry knows an imported image: DIGEST is <none>, as Docker shows it.
    assert_eq!(
        env.ok(&["images", "--digests", "--format", "{{.Digest}}"])
            .trim(),
        "<none>"
    );

    let doc = inspect(&env, "example/busybox:1.0");
    assert_eq!(doc["Id"], id);
    assert_eq!(doc["RepoTags"], serde_json::json!(["example/busybox:1.0"]));
    assert_eq!(doc["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(doc["Config"]["Env"], serde_json::json!(["A=1", "B=two"]));
    assert_eq!(doc["Config"]["WorkingDir"], "/srv");
    assert_eq!(doc["Config"]["User"], "app");
    assert_eq!(doc["Config"]["Labels"]["team"], "core");
    assert!(doc["Config"]["ExposedPorts"]["80/tcp"].is_object());
    assert_eq!(doc["RootFS"]["Type"], "layers");
    assert_eq!(doc["History"][0]["comment"], "hello import");
    assert_eq!(doc["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(doc["Os"], "linux");
    assert!(doc["Size"].as_u64().unwrap() > 100_000);
    // By ID prefix and with a template.
    assert_eq!(env.ok(&["inspect", "-f", "{{.Id}}", &id[7..14]]).trim(), id);
    assert_eq!(
        env.ok(&["image", "inspect", "--format", "{{json .Config.Cmd}}", id])
            .trim(),
        "[\"/bin/sh\"]"
    );

    let hist = env.ok(&["history", "example/busybox:1.0"]);
    assert!(
        hist.contains("hello import") && hist.contains(&id[7..19]),
        "{hist}"
    );
    env.check_store();
}

#[test]
fn compressed_and_stdin_imports_give_the_same_layer() {
    let env = Env::new();
    let tar = env.path("rootfs.tar");
    busybox_rootfs_tar(&tar);
    let plain = std::fs::read(&tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    std::fs::write(env.path("rootfs.tar.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        env.path("rootfs.tar.zst"),
        zstd::encode_all(&plain[..], 3).unwrap(),
    )
    .unwrap();

    env.ok(&["import", tar.to_str().unwrap(), "plain"]);
    env.ok(&["import", env.path("rootfs.tar.gz").to_str().unwrap(), "gz"]);
    env.ok(&[
        "import",
        env.path("rootfs.tar.zst").to_str().unwrap(),
        "zst",
    ]);
    let out = env
        .berth()
        .args(["import", "-", "stdin"])
        .write_stdin(plain)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layers: Vec<Value> = ["plain", "gz", "zst", "stdin"]
        .iter()
        .map(|n| inspect(&env, n)["RootFS"]["Layers"][0].clone())
        .collect();
    assert!(layers.iter().all(|l| l == &layers[0]), "{layers:?}");
    assert_eq!(inspect(&env, "stdin")["Comment"], "Imported from -");
    env.check_store();
}

#[test]
fn tag_and_rmi_follow_docker() {
    let env = Env::new();
    let id = env.import_busybox("busybox");
    env.ok(&["tag", "busybox", "localhost:5000/team/app:v1"]);
    let list = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(
        list.contains("busybox:latest") && list.contains("localhost:5000/team/app:v1"),
        "{list}"
    );

    // Removing one of two tags only untags.
    let out = env.ok(&["rmi", "localhost:5000/team/app:v1"]);
    assert_eq!(out.trim(), "Untagged: localhost:5000/team/app:v1");
    env.ok(&["tag", &id, "second:tag"]);
    // By ID with two tags: refused without -f.
    let err = env.fails(&["rmi", &id[7..19]]);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("must be forced"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    let out = env.ok(&["rmi", "-f", &id[7..19]]);
    assert!(
        out.contains("Untagged: busybox:latest")
            && out.contains("Untagged: second:tag")
            && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert_eq!(env.ok(&["images", "-q"]).trim(), "");
    let blobs = std::fs::read_dir(env.root().join("images/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "rmi left blobs behind");
    let err = env.fails(&["rmi", "busybox"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("No such image"));
    env.check_store();
}

#[test]
fn retagging_leaves_a_dangling_image_that_prune_removes() {
    let env = Env::new();
    let first = env.import_busybox("app:1");
    let second = env.import_busybox("app:1");
    assert_ne!(first, second);
    let dangling = env.ok(&["images", "--filter", "dangling=true", "-q", "--no-trunc"]);
    assert_eq!(dangling.trim(), first);
    assert!(env.ok(&["images"]).contains("<none>"));
    let out = env.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {first}")), "{out}");
    assert_eq!(env.ok(&["images", "-q", "--no-trunc"]).trim(), second);
    env.check_store();
}

#[test]
fn rmi_refuses_an_image_a_container_uses() {
    let env = Env::new();
    let id = env.import_busybox("used");
    // The runner records each container's image here.
    let c = env.root().join("containers/0123456789abcdef");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("image"), &id).unwrap();
    let err = env.fails(&["rmi", "used"]);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("being used by container"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    // A second name is only untagged, container or not.
    env.ok(&["tag", "used", "used:two"]);
    assert_eq!(env.ok(&["rmi", "used:two"]).trim(), "Untagged: used:two");
    // Forced: the name goes, the image and its blobs stay for the container (as Docker).
    let blobs_before = std::fs::read_dir(env.root().join("images/blobs/sha256"))
        .unwrap()
        .count();
    let out = env.ok(&["rmi", "-f", "used"]);
    assert_eq!(out.trim(), "Untagged: used:latest");
    assert_eq!(env.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(
        std::fs::read_dir(env.root().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        blobs_before
    );
    // Prune leaves it too while the container exists.
    env.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(env.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    env.check_store();
}

#[test]
fn save_and_load_roundtrip_through_cli() {
    let env = Env::new();
    let id = env.import_busybox("roundtrip:v1");
    let archive = env.path("out.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "roundtrip:v1"]);
    let other = Env::new();
    let out = other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: roundtrip:v1");
    assert_eq!(inspect(&other, "roundtrip:v1")["Id"], id);
    // Gzipped on stdin, too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&archive).unwrap()).unwrap();
    let third = Env::new();
    let out = third
        .berth()
        .arg("load")
        .write_stdin(gz.finish().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(inspect(&third, "roundtrip:v1")["Id"], id);
    other.check_store();
}

/// Bad input must give one clear line, a non-zero exit, and leave the store as it was.
#[test]
fn bad_input_is_refused_and_store_is_unchanged() {
    let env = Env::new();
    env.import_busybox("keep");
    let before = std::fs::read(env.root().join("images/index.json")).unwrap();
    let tar = std::fs::read(env.path("busybox.tar")).unwrap();

    std::fs::write(
        env.path("garbage"),
        b"this is not a tar archive at all, just some words and more words",
    )
    .unwrap();
    std::fs::write(env.path("truncated.tar"), &tar[..tar.len() / 2]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(env.path("truncated.tar.gz"), &gz[..gz.len() / 2]).unwrap();
    let mut corrupt = tar.clone();
    corrupt[100..140].fill(0x41); // breaks the first header's checksum
    std::fs::write(env.path("corrupt.tar"), &corrupt).unwrap();
    std::fs::write(env.path("empty"), b"").unwrap();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "import".into(),
                env.path("garbage").display().to_string(),
                "bad".into(),
            ],
            "not a valid tar",
        ),
        (
            vec![
                "import".into(),
                env.path("truncated.tar").display().to_string(),
                "bad".into(),
            ],
            "not a valid tar",
        ),
        (
            vec![
                "import".into(),
                env.path("truncated.tar.gz").display().to_string(),
                "bad".into(),
            ],
            "not a valid tar",
        ),
        (
            vec![
                "import".into(),
                env.path("corrupt.tar").display().to_string(),
                "bad".into(),
            ],
            "not a valid tar",
        ),
        (
            vec![
                "import".into(),
                env.path("empty").display().to_string(),
                "bad".into(),
            ],
            "empty",
        ),
        (
            vec![
                "import".into(),
                env.path("missing.tar").display().to_string(),
                "bad".into(),
            ],
            "cannot open",
        ),
        (
            vec![
                "import".into(),
                env.path("busybox.tar").display().to_string(),
                "Bad/Name".into(),
            ],
            "lowercase",
        ),
        (
            vec![
                "import".into(),
                env.path("busybox.tar").display().to_string(),
                "bad:tag!".into(),
            ],
            "tag",
        ),
        (
            vec![
                "import".into(),
                "-c".into(),
                "RUN rm -rf /".into(),
                env.path("busybox.tar").display().to_string(),
                "bad".into(),
            ],
            "run is not a valid change command",
        ),
        (
            vec!["tag".into(), "keep".into(), "UPPER:x".into()],
            "lowercase",
        ),
        (
            vec!["tag".into(), "nothere".into(), "x:y".into()],
            "No such image",
        ),
        (
            vec![
                "load".into(),
                "-i".into(),
                env.path("garbage").display().to_string(),
            ],
            "not a valid",
        ),
        (
            vec![
                "load".into(),
                "-i".into(),
                env.path("truncated.tar").display().to_string(),
            ],
            "truncated",
        ),
        (vec!["inspect".into(), "nothere".into()], "No such object"),
    ];
    for (args, frag) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.fails(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(frag),
            "berth {args:?}: expected {frag:?} in {err:?}"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "berth {args:?}: error is not one line: {err:?}"
        );
        assert!(err.starts_with("Error"), "{err}");
    }
    assert_eq!(
        std::fs::read(env.root().join("images/index.json")).unwrap(),
        before,
        "index changed"
    );
    assert_eq!(
        std::fs::read_dir(env.root().join("tmp")).unwrap().count(),
        0,
        "temp files left behind"
    );
    env.check_store();
}

#[test]
fn concurrent_imports_and_tags_never_corrupt_the_store() {
    let env = Env::new();
    env.import_busybox("base");
    let tar = env.path("busybox.tar");
    let bin = assert_cmd::cargo::cargo_bin("berth");
    let mut children = Vec::new();
    for i in 0..8 {
        let mut c = Command::new(&bin);
        c.arg("--root").arg(env.root());
        if i % 2 == 0 {
            c.args(["import", tar.to_str().unwrap(), &format!("par/img{i}:v1")]);
        } else {
            c.args(["tag", "base", &format!("par/tag{i}:v1")]);
        }
        children.push(
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tags = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for i in 0..8 {
        let want = if i % 2 == 0 {
            format!("par/img{i}:v1")
        } else {
            format!("par/tag{i}:v1")
        };
        assert!(
            tags.lines().any(|l| l == want),
            "{want} missing from {tags}"
        );
    }
    assert!(tags.lines().any(|l| l == "base:latest"));
    env.check_store();
}

#[test]
fn kill_during_import_leaves_no_visible_trace() {
    let env = Env::new();
    env.import_busybox("before");
    let index_before = std::fs::read(env.root().join("images/index.json")).unwrap();
    let blobs_before = std::fs::read_dir(env.root().join("images/blobs/sha256"))
        .unwrap()
        .count();
    let bin = assert_cmd::cargo::cargo_bin("berth");
    let mut child = Command::new(&bin)
        .arg("--root")
        .arg(env.root())
        .args(["import", "-", "killed:v1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Feed half of a tar, then kill -9 while berth waits for the rest.
    let tar = std::fs::read(env.path("busybox.tar")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&tar[..tar.len() / 2]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(
        std::fs::read(env.root().join("images/index.json")).unwrap(),
        index_before
    );
    assert_eq!(
        std::fs::read_dir(env.root().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        blobs_before
    );
    env.check_store();
    env.ok(&["image", "prune", "-f"]);
    assert_eq!(
        std::fs::read_dir(env.root().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn full_disk_fails_cleanly() {
    if !nix_is_root() {
        eprintln!("skipping: needs root to mount a tmpfs");
        return;
    }
    let env = Env::new();
    let root = env.root();
    std::fs::create_dir_all(&root).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(root.clone());
    // A small image fits; a big one does not.
    let small = env.path("small.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&small).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
        b.finish().unwrap();
    }
    env.ok(&["import", small.to_str().unwrap(), "small"]);
    let before = std::fs::read(root.join("images/index.json")).unwrap();
    let big = env.path("big.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&big).unwrap());
        let data = vec![7u8; 8 << 20];
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "big.bin", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let out = env.fails(&["import", big.to_str().unwrap(), "big"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(
        std::fs::read(root.join("images/index.json")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "temp file left on a full disk"
    );
    env.check_store();
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn images_resolve_by_name_digest_id_and_prefix() {
    let env = Env::new();
    let id = env.import_busybox("busybox:1");
    // The stored manifest's digest (no registry digest: the image was imported).
    let doc: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", "busybox:1"])).unwrap();
    let digest = doc[0]["Descriptor"]["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    for spec in [
        "busybox:1".to_string(),
        "docker.io/library/busybox:1".to_string(),
        format!("busybox@{digest}"),
        id.clone(),
        id[7..].to_string(),
        id[7..17].to_string(),
        digest.clone(),
    ] {
        assert_eq!(
            env.ok(&["inspect", "-f", "{{.Id}}", &spec]).trim(),
            id,
            "{spec}"
        );
    }
    // Another repository's name with this digest is not this image; latest is not 1.
    for spec in [
        format!("other@{digest}"),
        "busybox".to_string(),
        "busybox:2".to_string(),
    ] {
        let out = env.fails(&["inspect", &spec]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "{spec}");
        // Docker's `inspect` looks for containers and images: "No such object".
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("No such object"),
            "{spec}"
        );
    }
}

#[test]
fn a_large_failed_import_leaves_no_temp_file_and_bad_ids_are_refused() {
    let env = Env::new();
    // Bigger than the blob writer's 1 MiB chunk, so the writer thread is involved.
    let big = env.path("big.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&big).unwrap());
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "data.bin", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let bytes = std::fs::read(&big).unwrap();
    std::fs::write(env.path("cut.tar"), &bytes[..3 << 20]).unwrap();
    let out = env.fails(&["import", env.path("cut.tar").to_str().unwrap(), "cut"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid tar"));
    assert_eq!(
        std::fs::read_dir(env.root().join("tmp")).unwrap().count(),
        0
    );
    env.import_busybox("one");
    for spec in ["sha256:", "sha256:XYZ"] {
        let out = env.fails(&["rmi", spec]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid digest"),
            "{spec}"
        );
    }
    let out = env.fails(&[
        "import",
        env.path("busybox.tar").to_str().unwrap(),
        &format!("x@sha256:{}", "a".repeat(64)),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("digest"));
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 1);
    env.check_store();
}

#[test]
fn import_change_expands_variables_as_docker_does() {
    let env = Env::new();
    let tar = env.path("rootfs.tar");
    busybox_rootfs_tar(&tar);
    let tar = tar.to_str().unwrap();
    env.ok(&[
        "import",
        "-c",
        "ENV A=1",
        "-c",
        "ENV B=$A/x C=${A:-unset} PATH=/x:$PATH",
        "-c",
        "WORKDIR /srv/$A",
        "-c",
        "LABEL v=${B}",
        tar,
        "expanded",
    ]);
    let doc = inspect(&env, "expanded");
    // An imported image starts with an empty config, so $PATH is empty (as with Docker).
    assert_eq!(
        doc["Config"]["Env"],
        serde_json::json!(["A=1", "B=1/x", "C=1", "PATH=/x:"])
    );
    assert_eq!(doc["Config"]["WorkingDir"], "/srv/1");
    assert_eq!(doc["Config"]["Labels"]["v"], "1/x");
    // An instruction that is no change is refused in Docker's words, before anything is stored.
    let out = env.fails(&["import", "-c", "COPY a b", tar, "refused"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("copy is not a valid change command"), "{err}");
    env.fails(&["inspect", "refused"]);
    env.check_store();
}
