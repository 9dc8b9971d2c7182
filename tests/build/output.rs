//! `berth build` outputs: `--output type=oci|docker|tar|local` (archives podman, skopeo and
//! `berth load` read; export without naming the image in the store; no partial file on failure),
//! `--compression`, `SOURCE_DATE_EPOCH` reproducibility across state roots, `--check`,
//! `--no-cache-filter` and the tty progress view.

use crate::common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::Env;
use serde_json::Value;
use sha2::Digest as _;

const DOCKERFILE: &str = r#"FROM bb:1
ENV GREETING=hello
WORKDIR /app
COPY a.txt ./
RUN echo "$GREETING from run" > /app/made && mkdir -p /app/gen && for i in 1 2 3; do echo $i > /app/gen/f$i; done
EXPOSE 8080/tcp
LABEL org.example.k=v
CMD ["cat", "/app/made"]
"#;

fn context(env: &Env, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    env.context("ctx", dockerfile, files)
}

/// `berth build ARGS…` with extra environment; (success, stdout, stderr).
fn build_env(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (bool, Vec<u8>, String) {
    let mut c = env.berth();
    c.arg("build").args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), out.stdout, err)
}

fn build_ok(env: &Env, args: &[&str]) -> String {
    let (ok, _, err) = build_env(env, args, &[]);
    assert!(ok, "build {args:?} failed: {err}");
    err
}

/// Members of a tar file: path -> bytes.
fn tar_members(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.insert(p, b);
    }
    out
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn blob<'a>(m: &'a std::collections::BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
    let p = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    m.get(&p)
        .unwrap_or_else(|| panic!("{p} missing from the archive"))
}

fn podman(env: &Env, args: &[&str]) -> std::process::Output {
    std::process::Command::new("podman")
        .arg("--root")
        .arg(env.path("podman-root"))
        .arg("--runroot")
        .arg(env.path("podman-run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .unwrap()
}

/// `podman run --rm IMAGE` as bench/run.sh drives it on this host (see build/cli.rs).
fn podman_run(env: &Env, image: &str) -> std::process::Output {
    let mut cmd = format!(
        "podman --root {} --runroot {} --storage-driver vfs run --rm --network none \
         --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 {image}",
        env.path("podman-root").display(),
        env.path("podman-run").display()
    );
    let hybrid = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|c| !c.trim().is_empty());
    if hybrid {
        cmd = format!("umount -l /sys/fs/cgroup/unified; exec {cmd}");
    }
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &cmd])
        .output()
        .unwrap()
}

#[test]
fn oci_output_is_an_image_layout_that_podman_and_skopeo_read_and_is_not_stored() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let ctx = context(&env, DOCKERFILE, &[("a.txt", "a\n")]);
    let file = env.path("img.oci.tar");
    let iid = env.path("iid");
    build_ok(
        &env,
        &[
            "-t",
            "out-test:1",
            "--output",
            &format!("type=oci,dest={}", file.display()),
            "--iidfile",
            iid.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    // Exported, not named in the store (buildx without --load).
    let images = env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains("out-test"), "{images}");

    let m = tar_members(&file);
    assert_eq!(m["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index: Value = serde_json::from_slice(&m["index.json"]).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        "docker.io/library/out-test:1"
    );
    let manifest_bytes = blob(&m, entry["digest"].as_str().unwrap());
    assert_eq!(sha(manifest_bytes), entry["digest"]);
    let manifest: Value = serde_json::from_slice(manifest_bytes).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    // The image ID is the config's digest, the same as the build reports.
    assert_eq!(fs::read_to_string(&iid).unwrap(), config_digest);
    let config: Value = serde_json::from_slice(blob(&m, config_digest)).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    for (l, d) in layers.iter().zip(diff_ids) {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let gz = blob(&m, l["digest"].as_str().unwrap());
        assert_eq!(sha(gz), l["digest"], "digest of the compressed bytes");
        assert_eq!(gz.len() as u64, l["size"].as_u64().unwrap());
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(&sha(&plain), d, "diff ID of the decompressed layer");
    }

    if common::have("skopeo") {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci-archive:{}", file.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let c = &v["config"];
        assert!(
            c["Env"]
                .as_array()
                .unwrap()
                .contains(&Value::from("GREETING=hello")),
            "{c}"
        );
        assert_eq!(c["Cmd"], serde_json::json!(["cat", "/app/made"]));
        assert_eq!(c["WorkingDir"], "/app");
        assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");
        assert_eq!(c["Labels"]["org.example.k"], "v");
    } else {
        eprintln!("skopeo not installed; skipping its part");
    }
    if common::have("podman") {
        let out = podman_run(&env, &format!("oci-archive:{}", file.display()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from run\n");
        let _ = podman(&env, &["rmi", "-a", "-f"]);
    } else {
        eprintln!("podman not installed; skipping its part");
    }
}

#[test]
fn docker_output_loads_into_a_fresh_root_and_zstd_output_is_readable_by_skopeo() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let ctx = context(&env, DOCKERFILE, &[("a.txt", "a\n")]);
    let file = env.path("img.docker.tar");
    build_ok(
        &env,
        &[
            "-t",
            "dock:1",
            "-o",
            &format!("type=docker,dest={}", file.display()),
            ctx.to_str().unwrap(),
        ],
    );
    let m = tar_members(&file);
    let items: Value = serde_json::from_slice(&m["manifest.json"]).unwrap();
    assert_eq!(items[0]["RepoTags"], serde_json::json!(["dock:1"]));
    let fresh = Env::new();
    let out = fresh.ok(&["load", "-i", file.to_str().unwrap()]);
    assert!(out.contains("dock:1"), "{out}");
    let out = fresh.ok(&["run", "--rm", "--network", "none", "dock:1"]);
    assert_eq!(out, "hello from run\n");
    fresh.check_store();

    // zstd, written to stdout (piped), read back by skopeo with decompression.
    let (ok, bytes, err) = build_env(
        &env,
        &[
            "--compression",
            "zstd",
            "-o",
            "type=oci",
            ctx.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    let zfile = env.path("img.zstd.tar");
    fs::write(&zfile, &bytes).unwrap();
    let m = tar_members(&zfile);
    let index: Value = serde_json::from_slice(&m["index.json"]).unwrap();
    let manifest: Value =
        serde_json::from_slice(blob(&m, index["manifests"][0]["digest"].as_str().unwrap()))
            .unwrap();
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let z = blob(&m, layer["digest"].as_str().unwrap());
    assert_eq!(&z[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    if common::have("skopeo") {
        let dir = env.path("skopeo-dir");
        let out = std::process::Command::new("skopeo")
            .args(["copy", "--dest-decompress"])
            .arg(format!("oci-archive:{}", zfile.display()))
            .arg(format!("dir:{}", dir.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config: Value =
            serde_json::from_slice(blob(&m, manifest["config"]["digest"].as_str().unwrap()))
                .unwrap();
        // Each decompressed layer in the dir is the plain tar its diff ID names.
        for d in config["rootfs"]["diff_ids"].as_array().unwrap() {
            let hex = d.as_str().unwrap().trim_start_matches("sha256:");
            let plain = fs::read(dir.join(hex)).unwrap();
            assert_eq!(sha(&plain), *d);
        }
    }
}

#[test]
fn a_failed_build_leaves_no_output_file() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let ctx = context(&env, "FROM bb:1\nRUN echo partial > /x && false\n", &[]);
    let file = env.path("never.tar");
    let (ok, _, err) = build_env(
        &env,
        &[
            "-o",
            &format!("type=oci,dest={}", file.display()),
            ctx.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok, "{err}");
    assert!(!file.exists());
    let leftovers: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".berth-output-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Bad output specs are refused before anything runs.
    let (ok, _, err) = build_env(&env, &["-o", "type=image", ctx.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("type=image is not supported"), "{err}");
    let (ok, _, err) = build_env(
        &env,
        &[
            "--compression",
            "lz4",
            "-o",
            "type=oci,dest=x",
            ctx.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && err.contains("invalid compression \"lz4\""), "{err}");
}

#[test]
fn tar_and_local_outputs_hold_the_root_filesystem() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let ctx = context(&env, DOCKERFILE, &[("a.txt", "a\n")]);
    let (ok, bytes, err) = build_env(&env, &["-o", "-", ctx.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let f = env.path("rootfs.tar");
    fs::write(&f, bytes).unwrap();
    let m = tar_members(&f);
    assert_eq!(m["app/made"], b"hello from run\n");
    assert_eq!(m["app/a.txt"], b"a\n");
    assert!(
        m.contains_key("bin/busybox"),
        "{:?}",
        m.keys().take(5).collect::<Vec<_>>()
    );

    let dir = env.path("rootfs");
    build_ok(&env, &["-o", dir.to_str().unwrap(), ctx.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(dir.join("app/gen/f3")).unwrap(), "3\n");
    assert!(dir.join("bin/busybox").is_file());
    // A non-empty directory is not overwritten.
    let (ok, _, err) = build_env(
        &env,
        &["-o", dir.to_str().unwrap(), ctx.to_str().unwrap()],
        &[],
    );
    assert!(!ok && err.contains("not empty"), "{err}");
}

#[test]
fn source_date_epoch_gives_the_same_image_on_two_clean_roots() {
    let a = Env::new();
    a.import_busybox("bb:1");
    // The same base in both roots: saved from one, loaded into the other.
    let base = a.path("base.tar");
    a.ok(&["save", "-o", base.to_str().unwrap(), "bb:1"]);
    let b = Env::new();
    b.ok(&["load", "-i", base.to_str().unwrap()]);
    let mut results = Vec::new();
    for (i, env) in [&a, &b].into_iter().enumerate() {
        let ctx = context(env, DOCKERFILE, &[("a.txt", "a\n")]);
        let file = env.path("repro.tar");
        let iid = env.path("iid");
        if i == 1 {
            // A second apart: times that are not clamped would differ.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        let (ok, _, err) = build_env(
            env,
            &[
                "--iidfile",
                iid.to_str().unwrap(),
                "-o",
                &format!("type=oci,dest={}", file.display()),
                ctx.to_str().unwrap(),
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        assert!(ok, "{err}");
        let m = tar_members(&file);
        let index: Value = serde_json::from_slice(&m["index.json"]).unwrap();
        let manifest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        results.push((fs::read_to_string(&iid).unwrap(), manifest, m));
    }
    assert_eq!(results[0].0, results[1].0, "image IDs");
    assert_eq!(results[0].1, results[1].1, "manifest digests");
    let m = &results[0].2;
    let manifest: Value = serde_json::from_slice(blob(m, &results[0].1)).unwrap();
    let config: Value =
        serde_json::from_slice(blob(m, manifest["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["created"], "2023-11-14T22:13:20Z");
    // The RUN layer's files carry the epoch, not the time they were written.
    let run_layer = manifest["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let gz = blob(m, run_layer["digest"].as_str().unwrap());
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut n = 0;
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert!(e.header().mtime().unwrap() <= 1_700_000_000);
        n += 1;
    }
    assert!(n >= 4, "{n} entries");
    // A container of the (cached, now named) image sees the layer's times too: the step's
    // snapshot was clamped as its layer was.
    let (ok, _, err) = build_env(
        &a,
        &["-t", "repro:1", a.path("ctx").to_str().unwrap()],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert!(ok, "{err}");
    let out = a.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "repro:1",
        "stat",
        "-c",
        "%Y",
        "/app/made",
        "/app/gen/f1",
    ]);
    assert_eq!(out, "1700000000\n1700000000\n");
    // The build arg works as the environment does (and wins over it).
    let (ok, _, err) = build_env(
        &a,
        &[
            "--build-arg",
            "SOURCE_DATE_EPOCH=nope",
            a.path("ctx").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && err.contains("invalid SOURCE_DATE_EPOCH"), "{err}");
}

#[test]
fn check_lints_without_base_images_and_exits_as_docker_does() {
    let env = Env::new();
    // No image at all in this root: --check needs none.
    let ctx = context(
        &env,
        "FROM busybox:latest as Build\nMAINTAINER me\nENV PATH /bin\nCMD echo hi\n",
        &[],
    );
    let out = env
        .berth()
        .args(["build", "--check", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("Check complete, 5 warnings have been found!\n"),
        "{stdout}"
    );
    for rule in [
        "WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n'as' and 'FROM' keywords' casing do not match",
        "WARNING: StageNameCasing - https://docs.docker.com/go/dockerfile/rule/stage-name-casing/\nStage name 'Build' should be lowercase",
        "WARNING: MaintainerDeprecated",
        "WARNING: LegacyKeyValueFormat",
        "WARNING: JSONArgsRecommended",
        "Dockerfile:4\n--------------------\n",
        "   4 | >>> CMD echo hi\n",
    ] {
        assert!(stdout.contains(rule), "{rule:?} missing:\n{stdout}");
    }
    assert!(
        !env.root().join("builder").join("cache").exists(),
        "nothing was built"
    );

    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCMD [\"true\"]\n").unwrap();
    let out = env
        .berth()
        .args(["build", "--check", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Check complete, no warnings found.\n"
    );

    fs::write(
        ctx.join("Dockerfile"),
        "# check=skip=JSONArgsRecommended;error=true\nFROM busybox\nCMD true\nMAINTAINER x\n",
    )
    .unwrap();
    let out = env.fails(&["build", "--check", ctx.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lint violation found for rules: MaintainerDeprecated"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("JSONArgsRecommended"));

    fs::write(ctx.join("Dockerfile"), "FROM busybox\nFROBNICATE x\n").unwrap();
    let out = env.fails(&["build", "--check", ctx.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Dockerfile:2:1: unknown instruction: FROBNICATE"),
        "{err}"
    );

    // A normal build prints the same findings at its end.
    env.import_busybox("bb:1");
    fs::write(ctx.join("Dockerfile"), "FROM bb:1\nCMD echo hi\n").unwrap();
    let err = build_ok(&env, &["--progress", "plain", ctx.to_str().unwrap()]);
    assert!(
        err.contains(" 1 warning found:\n - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)"),
        "{err}"
    );
}

#[test]
fn no_cache_filter_reruns_only_the_named_stages() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let df = "FROM bb:1 AS one\nRUN echo one > /one\nFROM bb:1 AS two\nCOPY --from=one /one /one\nRUN echo two > /two\n";
    let ctx = context(&env, df, &[]);
    build_ok(&env, &["--progress", "plain", ctx.to_str().unwrap()]);
    let err = build_ok(
        &env,
        &[
            "--progress",
            "plain",
            "--no-cache-filter",
            "two",
            ctx.to_str().unwrap(),
        ],
    );
    let cached = |title: &str| {
        let n = err
            .lines()
            .find(|l| l.contains(title))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{title} not in {err}"))
            .to_string();
        err.contains(&format!("{n} CACHED"))
    };
    assert!(cached("[one 2/2] RUN echo one"), "{err}");
    assert!(!cached("[two 2/3] COPY --from=one"), "{err}");
    assert!(!cached("[two 3/3] RUN echo two"), "{err}");
}

#[test]
fn tty_progress_redraws_and_piped_auto_stays_plain() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let ctx = context(&env, "FROM bb:1\nRUN echo hi\n", &[]);
    let err = build_ok(
        &env,
        &["--progress", "tty", "--no-cache", ctx.to_str().unwrap()],
    );
    assert!(err.contains("[+] Building"), "{err}");
    assert!(err.contains("FINISHED"), "{err}");
    assert!(err.contains(" => [2/2] RUN echo hi"), "{err}");
    assert!(err.contains("\x1b["), "{err}");
    let err = build_ok(&env, &[ctx.to_str().unwrap()]);
    assert!(err.contains("#2 [2/2] RUN echo hi"), "{err}");
    assert!(!err.contains("\x1b["), "{err}");
}
