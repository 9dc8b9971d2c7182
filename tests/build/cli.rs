//! `berth build` end to end: a busybox-based Dockerfile built, run and inspected; the step
//! cache across processes (every step CACHED, unrelated and mtime-only changes ignored, a
//! changed file rerunning from its COPY with the reason); failing RUNs; multi-stage builds;
//! .dockerignore; and a built image running under podman.

use crate::common;

use std::fs;
use std::path::PathBuf;

use common::Env;
use serde_json::Value;

const DOCKERFILE: &str = r#"FROM bb:1
ARG V=1
ENV A=b
WORKDIR /app
COPY a.txt ./
COPY dir /app/d/
RUN echo "run $V $A" && echo made > /app/made && pwd
USER app
EXPOSE 80 53/udp
LABEL k=v
CMD ["cat", "/app/made"]
"#;

/// A context directory with `files` (path, content) and the Dockerfile.
fn context(env: &Env, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    env.context("ctx", dockerfile, files)
}

fn base(env: &Env) {
    env.import_busybox("bb:1");
    // A user for USER and --chown.
    let out = env
        .berth()
        .args(["run", "--name", "mkuser", "--network", "none", "bb:1", "sh", "-c"])
        .arg("echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["commit", "mkuser", "bb:1"]);
    env.ok(&["rm", "mkuser"]);
}

/// `berth build` with `args`; (success, stdout, stderr).
fn build(env: &Env, args: &[&str]) -> (bool, String, String) {
    let out = env.berth().arg("build").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

fn build_ok(env: &Env, args: &[&str]) -> String {
    let (ok, _, err) = build(env, args);
    assert!(ok, "build {args:?} failed: {err}");
    err
}

fn quiet_id(env: &Env, args: &[&str]) -> String {
    let mut a = vec!["-q"];
    a.extend_from_slice(args);
    let (ok, out, err) = build(env, &a);
    assert!(ok, "build failed: {err}");
    out.trim().to_string()
}

fn inspect(env: &Env, image: &str) -> Value {
    let out = env.ok(&["inspect", image]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

fn no_mounts_left(env: &Env) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = env.root().to_string_lossy().into_owned();
    assert!(
        !mounts.lines().any(|l| l.contains(&root)),
        "mounts left under {root}"
    );
}

#[test]
fn build_runs_with_the_config_and_history_docker_gives() {
    let env = Env::new();
    base(&env);
    let ctx = context(
        &env,
        DOCKERFILE,
        &[("a.txt", "hello\n"), ("dir/x", "x\n"), ("dir/sub/y", "y\n")],
    );
    let err = build_ok(&env, &["-t", "t:1", ctx.to_str().unwrap()]);
    assert!(err.contains("[7/11] RUN echo"), "{err}");
    assert!(err.contains("run 1 b"), "RUN output streams: {err}");
    let out = env.ok(&["run", "--rm", "--network", "none", "t:1"]);
    assert_eq!(out, "made\n");
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "t:1",
        "sh",
        "-c",
        "id -u; pwd; cat a.txt d/x d/sub/y; echo $A; stat -c '%u %a' a.txt",
    ]);
    assert_eq!(out, "1000\n/app\nhello\nx\ny\nb\n0 644\n");

    let img = inspect(&env, "t:1");
    let c = &img["Config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["Cmd"], serde_json::json!(["cat", "/app/made"]));
    assert_eq!(c["Labels"]["k"], "v");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "80/tcp": {}})
    );
    let env_list: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env_list.contains(&"A=b"), "{env_list:?}");
    assert!(env_list.iter().any(|e| e.starts_with("PATH=")));

    let history = env.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "t:1"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(
        &lines[..10],
        &[
            r#"CMD ["cat" "/app/made"]"#,
            "LABEL k=v",
            "EXPOSE map[53/udp:{} 80/tcp:{}]",
            "USER app",
            r#"RUN |1 V=1 /bin/sh -c echo "run $V $A" && echo made > /app/made && pwd # buildkit"#,
            "COPY dir /app/d/ # buildkit",
            "COPY a.txt ./ # buildkit",
            "WORKDIR /app",
            "ENV A=b",
            "ARG V=1",
        ]
    );
    // Metadata steps add no layers: base layers + WORKDIR, 2 COPY, RUN.
    let base_layers = inspect(&env, "bb:1")["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        img["RootFS"]["Layers"].as_array().unwrap().len(),
        base_layers + 4
    );
    no_mounts_left(&env);
    env.check_store();
}

#[test]
fn rebuilds_are_cached_and_only_real_changes_rerun() {
    let env = Env::new();
    base(&env);
    let ctx = context(
        &env,
        DOCKERFILE,
        &[
            ("a.txt", "hello\n"),
            ("dir/x", "x\n"),
            ("dir/sub/y", "y\n"),
            ("unrelated", "u\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    let first = quiet_id(&env, &["-t", "t:1", c]);
    assert!(first.starts_with("sha256:"), "{first}");

    // Identical rebuild, in a new process: every step CACHED, the same image.
    let err = build_ok(&env, &["-t", "t:1", c]);
    assert_eq!(err.matches(" CACHED").count(), 11, "{err}");
    assert!(!err.contains("DONE"), "{err}");
    assert_eq!(quiet_id(&env, &["-t", "t:1", c]), first);

    // An unrelated file, and a copied file's mtime: nothing changes.
    fs::write(ctx.join("unrelated"), "changed\n").unwrap();
    let f = fs::File::options()
        .write(true)
        .open(ctx.join("dir/x"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    drop(f);
    assert_eq!(quiet_id(&env, &["-t", "t:1", c]), first);

    // A copied file's content: steps before its COPY stay cached, it and later ones rerun,
    // and the miss names the file.
    fs::write(ctx.join("dir/sub/y"), "new\n").unwrap();
    let err = build_ok(&env, &["-t", "t:1", c]);
    assert_eq!(err.matches(" CACHED").count(), 5, "{err}");
    assert!(
        err.contains("#6 cache miss: context file dir/sub/y changed"),
        "{err}"
    );
    assert!(err.contains("#7 DONE"), "{err}");
    let out = env.ok(&["run", "--rm", "--network", "none", "t:1", "cat", "d/sub/y"]);
    assert_eq!(out, "new\n");
    assert_ne!(quiet_id(&env, &["-t", "t:1", c]), first);

    // A build arg changes the RUN (which uses it) and says so.
    let err = build_ok(&env, &["--build-arg", "V=2", "-t", "t:2", c]);
    assert!(err.contains("build arg V changed"), "{err}");
    assert!(err.contains("run 2 b"), "{err}");

    // --no-cache runs everything.
    let err = build_ok(&env, &["--no-cache", "-t", "t:3", c]);
    assert!(!err.contains("CACHED"), "{err}");

    // image prune leaves the build cache alone (as Docker's): the step images are pinned.
    env.ok(&["rmi", "t:2", "t:3"]);
    env.ok(&["image", "prune", "-f"]);
    let err = build_ok(&env, &["--build-arg", "V=2", "-t", "t:2", c]);
    assert_eq!(err.matches(" CACHED").count(), 11, "{err}");
    env.check_store();
    let blobs = || {
        fs::read_dir(env.root().join("images/blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs();

    // builder prune forgets every step and frees what only the cache held.
    let out = env.ok(&["builder", "prune", "-f"]);
    assert!(out.starts_with("Total:"), "{out}");
    assert!(blobs() < before, "builder prune swept no blob");
    env.check_store();
    let err = build_ok(&env, &["-t", "t:1", c]);
    assert_eq!(err.matches(" CACHED").count(), 1, "only FROM: {err}");
    no_mounts_left(&env);
}

#[test]
fn a_failing_run_reports_its_exit_code_and_tags_nothing() {
    let env = Env::new();
    base(&env);
    let ctx = context(
        &env,
        "FROM bb:1\nRUN echo before\nRUN echo some output; echo last line; exit 3\n",
        &[],
    );
    let (ok, _, err) = build(&env, &["-t", "bad:1", ctx.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(
        err.contains("echo some output; echo last line; exit 3"),
        "{err}"
    );
    assert!(err.contains("> last line"), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");
    env.fails(&["inspect", "bad:1"]);
    no_mounts_left(&env);
    assert!(
        fs::read_dir(env.root().join("builder/tmp"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "scratch directories left"
    );

    // A missing base image is named (on a loopback port nothing listens on: never Docker Hub).
    let ctx = context(&env, "FROM 127.0.0.1:1/nothere:7\nRUN true\n", &[]);
    let (ok, _, err) = build(&env, &[ctx.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("nothere:7"), "{err}");
}

#[test]
fn multi_stage_copy_from_target_and_unused_stages() {
    let env = Env::new();
    base(&env);
    let df = r#"FROM bb:1 AS build
RUN mkdir /out && echo artefact > /out/a && echo second > /out/b
FROM bb:1 AS unused
RUN exit 1
FROM scratch AS assets
COPY --from=build /out/a /a
FROM bb:1
COPY --from=build /out/ /opt/
COPY --from=assets /a /from-assets
COPY --chown=app:app --chmod=700 f.sh /usr/local/bin/
CMD ["sh", "-c", "cat /opt/a /opt/b /from-assets; stat -c '%U %a' /usr/local/bin/f.sh"]
"#;
    let ctx = context(&env, df, &[("f.sh", "#!/bin/sh\n")]);
    let c = ctx.to_str().unwrap();
    let err = build_ok(&env, &["-t", "ms:1", c]);
    assert!(err.contains("[build 2/2] RUN mkdir"), "{err}");
    assert!(!err.contains("exit 1"), "unused stage ran: {err}");
    let out = env.ok(&["run", "--rm", "--network", "none", "ms:1"]);
    assert_eq!(out, "artefact\nsecond\nartefact\napp 700\n");

    // --target stops at a stage.
    build_ok(&env, &["--target", "assets", "-t", "ms:assets", c]);
    let img = inspect(&env, "ms:assets");
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let (ok, _, err) = build(&env, &["--target", "nope", c]);
    assert!(!ok && err.contains("nope"), "{err}");
    no_mounts_left(&env);
}

#[test]
fn dockerignore_globs_and_add_of_a_tar() {
    let env = Env::new();
    base(&env);
    let df = "FROM bb:1\nCOPY . /ctx/\nCOPY *.txt /glob/\nADD arch.tar /unpacked/\nRUN find /ctx /glob /unpacked | sort\n";
    let ctx = context(
        &env,
        df,
        &[
            (".dockerignore", "secret*\nlogs/\n!logs/keep\n"),
            ("a.txt", "a"),
            ("b.txt", "b"),
            ("secret.key", "k"),
            ("logs/x.log", "x"),
            ("logs/keep", "keep"),
        ],
    );
    // A tar to unpack.
    let staging = env.path("staging");
    fs::create_dir_all(staging.join("inner")).unwrap();
    fs::write(staging.join("inner/file"), "in tar").unwrap();
    let st = std::process::Command::new("tar")
        .args(["-C", staging.to_str().unwrap(), "-cf"])
        .arg(ctx.join("arch.tar"))
        .arg("inner")
        .status()
        .unwrap();
    assert!(st.success());
    build_ok(&env, &["-t", "ig:1", ctx.to_str().unwrap()]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "ig:1",
        "sh",
        "-c",
        "ls -a /ctx /ctx/logs /glob; cat /unpacked/inner/file",
    ]);
    assert!(out.contains("a.txt"), "{out}");
    assert!(!out.contains("secret.key"), "{out}");
    assert!(!out.contains("x.log"), "{out}");
    assert!(out.contains("keep"), "{out}");
    assert!(out.ends_with("in tar"), "{out}");
    assert!(
        out.contains("/glob:\na.txt\nb.txt") || out.contains("/glob:\n.\n..\na.txt\nb.txt"),
        "{out}"
    );

    // Changing an ignored file changes nothing.
    let id = quiet_id(&env, &["-t", "ig:1", ctx.to_str().unwrap()]);
    fs::write(ctx.join("secret.key"), "other").unwrap();
    assert_eq!(quiet_id(&env, &["-t", "ig:1", ctx.to_str().unwrap()]), id);
}

#[test]
fn built_image_runs_under_podman() {
    if !common::have("podman") {
        eprintln!("podman not installed; skipping");
        return;
    }
    let env = Env::new();
    base(&env);
    let ctx = context(
        &env,
        DOCKERFILE,
        &[("a.txt", "hello\n"), ("dir/x", "x\n"), ("dir/sub/y", "y\n")],
    );
    build_ok(
        &env,
        &["-t", "berth-build-interop:1", ctx.to_str().unwrap()],
    );
    let archive = env.path("img.tar");
    env.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "berth-build-interop:1",
    ]);
    let podman_root = env.path("podman-root");
    let podman = |args: &[&str]| {
        std::process::Command::new("podman")
            .arg("--root")
            .arg(&podman_root)
            .arg("--runroot")
            .arg(env.path("podman-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = podman(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman(&["image", "inspect", "berth-build-interop:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &v[0]["Config"];
    assert_eq!(c["Cmd"], serde_json::json!(["cat", "/app/made"]));
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/app");
    // podman's view of the filesystem, without a runtime: a created container exported.
    let out = podman(&["create", "--name", "c", "berth-build-interop:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = env.path("exported.tar");
    let out = podman(&["export", "-o", exported.to_str().unwrap(), "c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(fs::File::open(&exported).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if ["app/made", "app/a.txt", "app/d/sub/y"].contains(&p.as_str()) {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            found.insert(p, s);
        }
    }
    assert_eq!(found.get("app/made").map(String::as_str), Some("made\n"));
    assert_eq!(found.get("app/a.txt").map(String::as_str), Some("hello\n"));
    assert_eq!(found.get("app/d/sub/y").map(String::as_str), Some("y\n"));
    // podman run, as bench/run.sh drives crun on a hybrid cgroup host: in a mount namespace
    // without the cgroup2 mount crun refuses, with limits within this host's hard limits.
    let mut cmd = format!(
        "podman --root {} --runroot {} --storage-driver vfs run --rm --network none \
         --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 berth-build-interop:1",
        podman_root.display(),
        env.path("podman-run").display()
    );
    let hybrid = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|c| !c.trim().is_empty());
    if hybrid {
        cmd = format!("umount -l /sys/fs/cgroup/unified; exec {cmd}");
    }
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "made\n");
    let _ = podman(&["rm", "-f", "c"]);
    let _ = podman(&["rmi", "-a", "-f"]);
}

#[test]
fn context_or_dockerfile_from_stdin() {
    let env = Env::new();
    base(&env);
    let ctx = context(
        &env,
        "FROM bb:1\nCOPY a.txt /a.txt\nCMD [\"cat\", \"/a.txt\"]\n",
        &[("a.txt", "from tar\n")],
    );
    // A tar context on stdin gives the image the directory gives.
    let dir_id = quiet_id(&env, &["-t", "s:dir", ctx.to_str().unwrap()]);
    let tar = std::process::Command::new("tar")
        .args(["-C", ctx.to_str().unwrap(), "-cf", "-", "."])
        .output()
        .unwrap()
        .stdout;
    let out = env
        .berth()
        .args(["build", "-q", "-t", "s:tar", "-"])
        .write_stdin(tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), dir_id);
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "s:tar"]),
        "from tar\n"
    );
    // A lone Dockerfile on stdin (no context), and `-f -` with a directory context.
    let out = env
        .berth()
        .args(["build", "-t", "s:lone", "-"])
        .write_stdin("FROM bb:1\nRUN echo lone > /lone\n")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .berth()
        .args(["build", "-q", "-f", "-", ctx.to_str().unwrap()])
        .write_stdin("FROM bb:1\nCOPY a.txt /b.txt\n")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", &id, "cat", "/b.txt"]),
        "from tar\n"
    );
    // Nothing is left of the unpacked contexts.
    assert_eq!(
        fs::read_dir(env.root().join("builder/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn run_heredocs_run_through_the_shell() {
    let env = Env::new();
    base(&env);
    let df = "FROM bb:1\nRUN <<EOF\necho one > /one\necho two >> /one\nEOF\nRUN cat > /two <<-END && echo after >> /two\n\tindented\n\tEND\nCMD [\"cat\", \"/one\", \"/two\"]\n";
    let ctx = context(&env, df, &[]);
    build_ok(&env, &["-t", "hd:1", ctx.to_str().unwrap()]);
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "hd:1"]),
        "one\ntwo\nindented\nafter\n"
    );
}

/// Starts `berth build --progress plain -t TAG CONTEXT` (`-` with `stdin` for a context on
/// stdin) and returns once its output says "started"; the thread collects the rest of its
/// stderr, so the build never blocks on a full pipe.
fn start_build(
    env: &Env,
    tag: &str,
    context: &str,
    stdin: Option<fs::File>,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"));
    cmd.arg("--root")
        .arg(env.root())
        .args(["build", "--progress", "plain", "-t", tag, context])
        .stderr(std::process::Stdio::piped());
    if let Some(f) = stdin {
        cmd.stdin(f);
    }
    let mut child = cmd.spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("started") {
        let n = std::io::Read::read(&mut err, &mut buf).unwrap();
        assert!(
            n > 0,
            "build ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    (child, rest)
}

/// Starts `berth build` of a RUN that prints "started" and sleeps; returns it once the RUN runs.
fn build_until_started(env: &Env, tag: &str, marker: &str) -> std::process::Child {
    let ctx = context(
        env,
        // `st''arted`: the step's own output, not the progress line naming the RUN (a kill
        // then could land while the step's scratch directory is still being made).
        &format!("FROM bb:1\nRUN echo st''arted; exec sleep {marker}\n"),
        &[],
    );
    start_build(env, tag, ctx.to_str().unwrap(), None).0
}

/// Whether a process with exactly this command line (`sleep MARKER`) exists.
fn sleeper_alive(marker: &str) -> bool {
    fs::read_dir("/proc").unwrap().flatten().any(|e| {
        fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| c == format!("sleep\0{marker}\0").as_bytes())
    })
}

/// Nothing of a step's container is left: its process, runtime state, cgroups (named
/// `build-<berth pid>-…`). After a SIGKILL (`orphaned`) the step's child cleans up on its own
/// (its death signal), so its runtime state may take a moment after the process is gone;
/// otherwise the build waited for that cleanup before it exited.
fn no_step_left(env: &Env, marker: &str, berth_pid: u32, orphaned: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sleeper_alive(marker) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!sleeper_alive(marker), "the RUN's process survived");
    let prefix = format!("build-{berth_pid}-");
    let ours = |d: &std::path::Path| {
        fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count()
            })
            .unwrap_or(0)
    };
    let rt = env.root().join("runtime");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while orphaned && ours(&rt) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(ours(&rt), 0, "runtime state left");
    for c in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert_eq!(ours(&c.path().join("berth")), 0, "cgroup left in {c:?}");
    }
}

#[test]
fn ctrl_c_stops_a_build_cleanly_and_a_killed_build_leaves_no_step_running() {
    let env = Env::new();
    base(&env);
    // Ctrl-C (SIGINT): the RUN is stopped, exit 130, nothing tagged, nothing left at all.
    let marker = format!("{}.{}", 3000 + std::process::id() % 1000, 1);
    let mut child = build_until_started(&env, "k:1", &marker);
    let t = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
    env.fails(&["inspect", "k:1"]);
    no_step_left(&env, &marker, child.id(), false);
    no_mounts_left(&env);
    assert_eq!(
        fs::read_dir(env.root().join("builder/tmp"))
            .unwrap()
            .count(),
        0
    );

    // SIGKILL: the step dies with the build; its mounts go with the next build.
    let marker = format!("{}.{}", 3000 + std::process::id() % 1000, 2);
    let mut child = build_until_started(&env, "k:1", &marker);
    child.kill().unwrap();
    child.wait().unwrap();
    env.fails(&["inspect", "k:1"]);
    no_step_left(&env, &marker, child.id(), true);
    let ctx = context(&env, "FROM bb:1\nRUN true\n", &[]);
    build_ok(&env, &["-t", "k:2", ctx.to_str().unwrap()]);
    no_mounts_left(&env);
    let left: Vec<_> = fs::read_dir(env.root().join("builder/tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 0, "left in builder/tmp: {left:?}");
}

/// Waits (up to 20 s) in a shared cache mount for `other`'s file after leaving its own: two
/// stages can only both pass when they run at the same time.
fn rendezvous(me: &str, other: &str) -> String {
    format!(
        "RUN --mount=type=cache,target=/meet,id=meet sh -c 'touch /meet/{me}; i=0; \
         while [ ! -e /meet/{other} ]; do sleep 0.1; i=$((i+1)); \
         if [ $i -gt 200 ]; then echo {me} waited alone; exit 1; fi; done; echo {me} > /{me}'"
    )
}

#[test]
fn independent_stages_build_at_the_same_time_and_a_failure_stops_the_others() {
    let env = Env::new();
    base(&env);
    let df = format!(
        "FROM bb:1 AS a\n{}\nFROM bb:1 AS b\n{}\nFROM bb:1\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nCMD [\"cat\", \"/a\", \"/b\"]\n",
        rendezvous("a", "b"),
        rendezvous("b", "a"),
    );
    let ctx = context(&env, &df, &[]);
    let err = build_ok(&env, &["-t", "par:1", ctx.to_str().unwrap()]);
    // Step numbers follow the Dockerfile whatever the schedule.
    assert!(err.contains("#1 [a 1/2] FROM bb:1 AS a"), "{err}");
    assert!(err.contains("#3 [b 1/2] FROM bb:1 AS b"), "{err}");
    assert!(err.contains("#5 [stage-2 1/4] FROM bb:1"), "{err}");
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "par:1"]),
        "a\nb\n"
    );

    // One stage fails at once while the other waits for it: the failure is the build's, the
    // waiting stage's process is stopped (it would otherwise wait its 20 s and say so).
    let df = "FROM bb:1 AS a\nRUN echo broken; exit 3\nFROM bb:1 AS b\nRUN echo waiting; exec sleep 3131.5\nFROM bb:1\nCOPY --from=a / /x\nCOPY --from=b / /y\n";
    let ctx = context(&env, df, &[]);
    let (ok, _, err) = build(&env, &["--no-cache", "-t", "par:2", ctx.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("exit code: 3"), "{err}");
    env.fails(&["inspect", "par:2"]);
    assert!(!sleeper_alive("3131.5"), "the other stage's RUN still runs");
    no_mounts_left(&env);
}

#[test]
fn review_fixes_prune_waits_locks_in_order_and_unset_build_args_keep_defaults() {
    let env = Env::new();
    base(&env);
    // `--build-arg NAME` with NAME unset in the environment passes nothing: the default holds.
    let ctx = context(
        &env,
        "FROM bb:1\nARG BERTH_TEST_UNSET_ARG=dflt\nRUN echo \"v=$BERTH_TEST_UNSET_ARG\" > /v\n",
        &[],
    );
    let mut cmd = env.berth();
    cmd.env_remove("BERTH_TEST_UNSET_ARG").args([
        "build",
        "-q",
        "--build-arg",
        "BERTH_TEST_UNSET_ARG",
        "-t",
        "ua:1",
        ctx.to_str().unwrap(),
    ]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "ua:1", "cat", "/v"]),
        "v=dflt\n"
    );

    // Two stages locking the same two caches in opposite orders, at once: no deadlock (locks
    // are taken in one order), and the new caches are filled once each.
    let df = "FROM bb:1 AS a\nRUN --mount=type=cache,id=x,target=/x,sharing=locked --mount=type=cache,id=y,target=/y,sharing=locked echo a > /a\nFROM bb:1 AS b\nRUN --mount=type=cache,id=y,target=/y,sharing=locked --mount=type=cache,id=x,target=/x,sharing=locked echo b > /b\nFROM bb:1\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n";
    let ctx = context(&env, df, &[]);
    build_ok(&env, &["-t", "lk:1", ctx.to_str().unwrap()]);

    // builder prune waits for a running build instead of sweeping what it stands on.
    let marker = format!("{}.{}", 3000 + std::process::id() % 1000, 7);
    let mut child = build_until_started(&env, "pr:1", &marker);
    let prune = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .arg("--root")
        .arg(env.root())
        .args(["builder", "prune", "-f"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The build is still running its step; end the step (SIGKILL: it is its namespace's init)
    // so the build can finish.
    std::process::Command::new("pkill")
        .args(["-KILL", "-f", "-x", &format!("sleep {marker}")])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let out = prune.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for the builds"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The RUN was killed by the test: the build failed cleanly, and the store is sound.
    assert!(!status.success());
    env.check_store();
    no_mounts_left(&env);
}

#[test]
fn removing_the_base_image_during_a_build_does_not_pull_the_ground_from_under_it() {
    let env = Env::new();
    base(&env);
    let ctx = context(
        &env,
        "FROM bb:1\nRUN echo started; sleep 2; echo done > /d\nCMD [\"cat\", \"/d\"]\n",
        &[],
    );
    let (mut child, rest) = start_build(&env, "rb:1", ctx.to_str().unwrap(), None);
    // While the RUN runs on the base's snapshots: untag and sweep everything unused.
    env.ok(&["rmi", "bb:1"]);
    env.ok(&["image", "prune", "-a", "-f"]);
    let ok = child.wait().unwrap().success();
    let rest = rest.join().unwrap();
    assert!(ok, "{rest}");
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "rb:1"]),
        "done\n"
    );
    env.check_store();
    // The build's pins went with it.
    assert!(
        fs::read_dir(env.root().join("pins"))
            .unwrap()
            .flatten()
            .all(|h| !h.file_name().to_string_lossy().starts_with("build-"))
    );
}

#[test]
fn a_killed_build_from_stdin_leaves_its_context_for_the_next_build_to_clean() {
    let env = Env::new();
    base(&env);
    let marker = format!("{}.{}", 3000 + std::process::id() % 1000, 9);
    let ctx = context(
        &env,
        // `st''arted`: the step's own output, not the progress line naming the RUN (a kill
        // then could land while the step's scratch directory is still being made).
        &format!("FROM bb:1\nRUN echo st''arted; exec sleep {marker}\n"),
        &[("data.txt", "x\n")],
    );
    let tar = env.path("ctx.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let (mut child, _) = start_build(&env, "sk:1", "-", Some(fs::File::open(&tar).unwrap()));
    child.kill().unwrap();
    child.wait().unwrap();
    no_step_left(&env, &marker, child.id(), true);
    // The unpacked context is still there, then the next build removes it.
    assert!(
        fs::read_dir(env.root().join("builder/tmp"))
            .unwrap()
            .count()
            > 0
    );
    let ctx2 = context(&env, "FROM bb:1\nRUN true\n", &[]);
    build_ok(&env, &["-t", "sk:2", ctx2.to_str().unwrap()]);
    assert_eq!(
        fs::read_dir(env.root().join("builder/tmp"))
            .unwrap()
            .count(),
        0
    );
    no_mounts_left(&env);
}
