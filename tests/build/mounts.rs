//! `RUN --mount` end to end, on a busybox base: cache mounts kept across builds (and their
//! `locked` sharing across two builds at once), binds from the context and from a stage (the
//! context's content in the step's key, writes discarded), tmpfs, secrets (file, env, default
//! target, `required`; never in the image, its history or its config) and an SSH agent socket;
//! no mount point the runtime made is left in a layer.

use crate::common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::Env;

/// A context directory `name` with `files` (path, content).
fn context(env: &Env, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.path(name);
    for (p, c) in files {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
    dir
}

/// `berth build ARGS`: (success, stderr).
fn build(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (bool, String) {
    let out = env
        .berth()
        .arg("build")
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), err)
}

fn build_ok(env: &Env, args: &[&str]) -> String {
    let (ok, err) = build(env, args, &[]);
    assert!(ok, "build {args:?} failed: {err}");
    err
}

fn run(env: &Env, image: &str, cmd: &str) -> String {
    env.ok(&["run", "--rm", "--network", "none", image, "sh", "-c", cmd])
}

/// A layer: its name in the archive and its entries (path, content).
type Layer = (String, Vec<(String, Vec<u8>)>);

/// The image as `berth save` writes it: its layers, and the archive's other files (config,
/// manifest) as text.
fn saved(env: &Env, image: &str) -> (Vec<Layer>, String) {
    let tar = env.path("saved.tar");
    env.ok(&["save", "-o", tar.to_str().unwrap(), image]);
    let mut layers = Vec::new();
    let mut meta = String::new();
    let mut outer = tar::Archive::new(fs::File::open(&tar).unwrap());
    for e in outer.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        let gz = bytes.starts_with(&[0x1f, 0x8b]);
        let data: Vec<u8> = if gz {
            let mut d = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut d)
                .unwrap();
            d
        } else {
            bytes
        };
        let is_tar = data.len() >= 262 && &data[257..262] == b"ustar";
        if !is_tar {
            meta.push_str(&String::from_utf8_lossy(&data));
            continue;
        }
        let mut entries = Vec::new();
        for le in tar::Archive::new(&data[..]).entries().unwrap() {
            let mut le = le.unwrap();
            let path = le.path().unwrap().to_string_lossy().into_owned();
            let mut c = Vec::new();
            le.read_to_end(&mut c).unwrap();
            entries.push((path, c));
        }
        layers.push((name, entries));
    }
    (layers, meta)
}

/// The paths in the layers the build added on top of the base `bb:1`.
fn layer_paths(env: &Env, image: &str) -> Vec<String> {
    let base: Vec<String> = saved(env, "bb:1").0.into_iter().map(|l| l.0).collect();
    saved(env, image)
        .0
        .into_iter()
        .filter(|l| !base.contains(&l.0))
        .flat_map(|l| l.1.into_iter().map(|(p, _)| p))
        .collect()
}

fn no_mounts_left(env: &Env) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = env.root().to_string_lossy().into_owned();
    assert!(
        !mounts.lines().any(|l| l.contains(&root)),
        "mounts left under {root}"
    );
}

const COUNTER: &str = r#"FROM bb:1
RUN --mount=type=cache,target=/root/.cache/c,id=counter n=$(cat /root/.cache/c/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /root/.cache/c/n; echo "count=$n"; echo $n > /count
RUN --mount=type=cache,target=/c2,uid=1000,gid=1000,mode=0700 stat -c '%u:%g %a' /c2 > /owner
"#;

#[test]
fn cache_mounts_persist_across_builds_and_leave_no_trace() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let ctx = context(&env, "ctx", &[("Dockerfile", COUNTER)]);
    let c = ctx.to_str().unwrap();
    let err = build_ok(&env, &["-t", "t:1", c]);
    assert!(err.contains("count=1"), "{err}");
    let err = build_ok(&env, &["--no-cache", "-t", "t:2", c]);
    assert!(err.contains("count=2"), "the cache dir is kept: {err}");
    assert_eq!(run(&env, "t:2", "cat /count"), "2\n");
    // A new cache directory gets the owner and mode asked for.
    assert_eq!(run(&env, "t:2", "cat /owner"), "1000:1000 700\n");
    // Neither the cache contents nor the mount points (nor /root, whose time is restored)
    // are in the layers.
    let paths = layer_paths(&env, "t:2");
    assert!(paths.iter().any(|p| p == "count"), "{paths:?}");
    for p in &paths {
        assert!(
            !p.starts_with("root") && !p.starts_with("c2") && !p.contains(".cache"),
            "{p} in {paths:?}"
        );
    }
    assert_eq!(
        run(&env, "t:2", "ls -A /root; ls -d /c2 2>&1 || true"),
        "ls: /c2: No such file or directory\n"
    );
    let store = env.root().join("builder/cache-mounts");
    assert_eq!(fs::read_dir(&store).unwrap().count(), 2);

    // builder prune removes cache mounts too: the counter starts again.
    env.ok(&["builder", "prune", "-f"]);
    assert!(!store.exists() || fs::read_dir(&store).unwrap().count() == 0);
    let err = build_ok(&env, &["-t", "t:3", c]);
    assert!(err.contains("count=1"), "{err}");
    no_mounts_left(&env);
}

#[test]
fn locked_cache_mounts_serialise_concurrent_builds() {
    let env = Env::new();
    env.import_busybox("bb:1");
    // Fails when another step holds the cache at the same time.
    let step =
        "if [ -e /c/busy ]; then echo overlap; exit 1; fi; touch /c/busy; sleep 1; rm /c/busy";
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM bb:1\nRUN --mount=type=cache,target=/c,sharing=locked {step}\n"),
        )],
    );
    let c = ctx.to_str().unwrap().to_string();
    let spawn = |tag: &str| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
            .arg("--root")
            .arg(env.root())
            .args(["build", "--no-cache", "-t", tag, &c])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let start = std::time::Instant::now();
    let (a, b) = (spawn("l:1"), spawn("l:2"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
    }
    assert!(start.elapsed() >= std::time::Duration::from_secs(2));
    no_mounts_left(&env);
}

#[test]
fn bind_mounts_from_the_context_and_a_stage() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let dockerfile = r#"FROM bb:1 AS src
RUN mkdir /out && echo from-stage > /out/f
FROM bb:1
RUN --mount=type=bind,source=data,target=/d cat /d/a.txt > /a && ls /d > /list
RUN --mount=from=src,source=/out,target=/mnt/s cat /mnt/s/f > /sf
RUN --mount=type=bind,target=/w,rw echo x > /w/data/a.txt && echo new > /w/new && cat /w/data/a.txt && ls /w > /wlist
RUN --mount=type=tmpfs,target=/t,size=1m grep ' /t ' /proc/mounts > /tdf && echo gone > /t/f
"#;
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", dockerfile),
            (".dockerignore", "data/skip.txt\n"),
            ("data/a.txt", "one\n"),
            ("data/skip.txt", "ignored\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    build_ok(&env, &["-t", "b:1", c]);
    assert_eq!(run(&env, "b:1", "cat /a /list"), "one\na.txt\n");
    assert_eq!(run(&env, "b:1", "cat /sf"), "from-stage\n");
    // rw: the step saw its writes, which reached neither the context nor the image.
    assert!(run(&env, "b:1", "cat /wlist").contains("new"));
    assert_eq!(fs::read_to_string(ctx.join("data/a.txt")).unwrap(), "one\n");
    assert!(!ctx.join("new").exists());
    // tmpfs: 1 MiB, and its content is not kept.
    let df = run(&env, "b:1", "cat /tdf");
    assert!(
        df.starts_with("tmpfs /t tmpfs") && df.contains("size=1024k"),
        "{df}"
    );
    let paths = layer_paths(&env, "b:1");
    for p in &paths {
        for m in ["d", "mnt", "w", "t"] {
            assert!(
                p != m && !p.starts_with(&format!("{m}/")),
                "{p} in {paths:?}"
            );
        }
    }

    // Unchanged (or only an ignored file changed): cached. A bound file changed: rerun.
    fs::write(ctx.join("data/skip.txt"), "still ignored\n").unwrap();
    let err = build_ok(&env, &["-t", "b:1", c]);
    assert!(!err.contains("DONE"), "{err}");
    fs::write(ctx.join("data/a.txt"), "two\n").unwrap();
    let err = build_ok(&env, &["-t", "b:1", c]);
    assert!(err.contains("context file data/a.txt changed"), "{err}");
    assert_eq!(run(&env, "b:1", "cat /a"), "two\n");
    no_mounts_left(&env);
}

#[test]
fn bad_mounts_fail_clearly_naming_the_line() {
    let env = Env::new();
    env.import_busybox("bb:1");
    for (df, want) in [
        (
            "RUN --mount=type=bind,source=nope,target=/x true",
            "\"nope\" not found in the build context",
        ),
        (
            "RUN --mount=type=bind,source=../etc,target=/x true",
            "outside the build context",
        ),
        // An unknown from= is found while resolving the base images (a registry on a closed
        // loopback port: nothing leaves the machine).
        (
            "RUN --mount=from=127.0.0.1:1/nosuch:9,target=/x true",
            "Dockerfile:2: failed to resolve source metadata for 127.0.0.1:1/nosuch:9",
        ),
        (
            "RUN --mount=type=secret,id=tok,required true",
            "secret tok not found",
        ),
        (
            "RUN --mount=type=ssh,required true",
            "no SSH agent for ssh id default",
        ),
        ("RUN --mount=type=cache true", "mount target is required"),
    ] {
        let ctx = context(
            &env,
            "bad",
            &[("Dockerfile", &format!("FROM bb:1\n{df}\n"))],
        );
        let (ok, err) = build(&env, &[ctx.to_str().unwrap()], &[]);
        assert!(!ok && err.contains(want), "{df}: {err}");
        assert!(err.contains("Dockerfile:2"), "{df}: {err}");
    }
    no_mounts_left(&env);
}

#[test]
fn secrets_are_seen_by_the_step_and_stored_nowhere() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let dockerfile = r#"FROM bb:1
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-file && stat -c %a /run/secrets/tok > /mode
RUN --mount=type=secret,id=api,env=API_KEY,target=/etc/api --mount=type=secret,id=absent echo "$API_KEY" > /seen-env && cat /etc/api >> /seen-env && ls /run/secrets > /absent 2>&1 || true
"#;
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let file = env.path("tok.txt");
    fs::write(&file, "s3cr3t-file-value").unwrap();
    let src = format!("id=tok,src={}", file.display());
    let (ok, err) = build(
        &env,
        &[
            "--secret",
            &src,
            "--secret",
            "id=api,env=MY_API",
            "-t",
            "s:1",
            ctx.to_str().unwrap(),
        ],
        &[("MY_API", "s3cr3t-env-value")],
    );
    assert!(ok, "{err}");
    assert_eq!(
        run(&env, "s:1", "cat /seen-file; echo; cat /mode"),
        "s3cr3t-file-value\n400\n"
    );
    assert_eq!(
        run(&env, "s:1", "cat /seen-env"),
        "s3cr3t-env-value\ns3cr3t-env-value"
    );
    // The optional, missing secret is simply absent.
    assert!(run(&env, "s:1", "cat /absent").contains("No such file"));

    // `--secret id=ID` takes the variable ID.
    let (ok, err) = build(
        &env,
        &[
            "--no-cache",
            "--secret",
            &src,
            "--secret",
            "id=api",
            "-t",
            "s:2",
            ctx.to_str().unwrap(),
        ],
        &[("api", "s3cr3t-env-value")],
    );
    assert!(ok, "{err}");

    let (layers, meta) = saved(&env, "s:1");
    for (path, content) in layers.iter().flat_map(|l| &l.1) {
        assert!(!path.contains("secrets") && path != "etc/api", "{path}");
        if path.starts_with("seen") {
            continue;
        }
        let text = String::from_utf8_lossy(content);
        assert!(!text.contains("s3cr3t"), "secret in layer entry {path}");
    }
    assert!(!meta.contains("s3cr3t"), "secret in config or manifest");
    let history = env.ok(&["history", "--no-trunc", "s:1"]);
    let inspect = env.ok(&["inspect", "s:1"]);
    assert!(!history.contains("s3cr3t") && !inspect.contains("s3cr3t"));
    let cache = fs::read_dir(env.root().join("builder/cache")).unwrap();
    for e in cache.flatten().filter(|e| e.path().is_file()) {
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        assert!(!text.contains("s3cr3t"), "secret in the build cache");
    }
    no_mounts_left(&env);
}

#[test]
fn ssh_agent_socket_is_forwarded() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let sock: &Path = &env.path("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
    let dockerfile = "FROM bb:1\nRUN --mount=type=ssh echo \"$SSH_AUTH_SOCK\" > /sock && stat -c %F \"$SSH_AUTH_SOCK\" >> /sock\n";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let c = ctx.to_str().unwrap();
    let (ok, err) = build(
        &env,
        &["--ssh", "default", "-t", "h:1", c],
        &[("SSH_AUTH_SOCK", sock.to_str().unwrap())],
    );
    assert!(ok, "{err}");
    assert_eq!(
        run(&env, "h:1", "cat /sock"),
        "/run/buildkit/ssh_agent.0\nsocket\n"
    );
    assert!(
        !layer_paths(&env, "h:1")
            .iter()
            .any(|p| p.starts_with("run"))
    );
    // Not a socket: a clear error before anything runs.
    let (ok, err) = build(&env, &["--ssh", &format!("default={c}/Dockerfile"), c], &[]);
    assert!(!ok && err.contains("not an SSH agent socket"), "{err}");
    no_mounts_left(&env);
}

#[test]
fn an_env_secret_puts_the_step_bundle_on_the_secrets_tmpfs() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let df = "FROM bb:1\nRUN --mount=type=secret,id=tok,env=TOK sleep 2\n";
    let ctx = context(&env, "envsecret", &[("Dockerfile", df)]);
    let root = env.root();
    let watcher = std::thread::spawn(move || {
        // While the step runs: its config.json (which holds TOK) is on the tmpfs, not on disk.
        let tmp = root.join("builder/tmp");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
                let d = e.path();
                if d.join("secrets/bundle/config.json").exists() {
                    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
                    let on_tmpfs = mounts.lines().any(|l| {
                        l.contains(&format!(" {} ", d.join("secrets").display()))
                            && l.contains(" - tmpfs ")
                    });
                    return (on_tmpfs, d.join("bundle/config.json").exists());
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (false, true)
    });
    let (ok, err) = build(
        &env,
        &["--secret", "id=tok,env=SECRET_TOK", ctx.to_str().unwrap()],
        &[("SECRET_TOK", "s3cr3t-value")],
    );
    assert!(ok, "{err}");
    let (on_tmpfs, on_disk) = watcher.join().unwrap();
    assert!(on_tmpfs, "the step's bundle was not on the secrets tmpfs");
    assert!(!on_disk, "a bundle with the secret was written to disk");
}
